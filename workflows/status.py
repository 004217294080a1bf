"""Read-side questions about runs that the chat surfaces ask: which steps failed, and what a booking's steps created."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.engine import Connection

from storage.database import Database
from storage.tables import workflow_jobs
from workflows.outbox import COMPLETED, FAILED, Job


async def failed_steps(database: Database, tenant_id: str, limit: int = 50) -> list[Job]:
    """This tenant's failed (dead-lettered) steps, newest first."""
    jobs = workflow_jobs.c
    query = (
        select(workflow_jobs)
        .where(jobs.tenant_id == tenant_id, jobs.state == FAILED)
        .order_by(jobs.updated_at.desc(), jobs.id.desc())
        .limit(limit)
    )

    def read(conn: Connection) -> list[Job]:
        return [Job.from_row(row) for row in conn.execute(query)]

    return await database.run_read(read)


async def step_links(database: Database, tenant_id: str, booking_id: str) -> dict[str, str]:
    """What the booking's completed steps made that a host opens: `join_url`, `ticket_number` and `ticket_url`
    (the newest of each wins, as after a reschedule); absent keys were not made (yet)."""
    jobs = workflow_jobs.c
    query = (
        select(jobs.output)
        .where(jobs.tenant_id == tenant_id, jobs.booking_id == booking_id, jobs.state == COMPLETED)
        .order_by(jobs.id)
    )

    def read(conn: Connection) -> dict[str, str]:
        found: dict[str, str] = {}
        for (output,) in conn.execute(query):
            if isinstance(output, dict):
                for key in ("join_url", "ticket_number", "ticket_url"):
                    if output.get(key):
                        found[key] = str(output[key])
        return found

    return await database.run_read(read)


async def join_urls(database: Database, tenant_id: str, booking_ids: Sequence[str]) -> dict[str, str]:
    """The online-meeting join link each booking's completed steps produced (the newest wins after a reschedule)."""
    if not booking_ids:
        return {}
    jobs = workflow_jobs.c
    query = (
        select(jobs.booking_id, jobs.output)
        .where(jobs.tenant_id == tenant_id, jobs.booking_id.in_(list(booking_ids)), jobs.state == COMPLETED)
        .order_by(jobs.id)
    )

    def read(conn: Connection) -> dict[str, str]:
        found: dict[str, str] = {}
        for booking_id, output in conn.execute(query):
            if isinstance(output, dict) and output.get("join_url"):
                found[str(booking_id)] = str(output["join_url"])
        return found

    return await database.run_read(read)
