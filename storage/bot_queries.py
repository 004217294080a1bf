"""What the Teams bot's cards need from the database beyond `SqlTeamsDirectory`: list counts for paging, a booking's
questions, the host phrase of a type, a manager's teams' failed steps and recent reschedule-link requests.

Every query takes the tenant id of a resolved identity and filters on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from storage.database import Database
from storage.tables import appointment_types, bookings, host_slots, teams, users, workflow_jobs

FAILED_STATE = "failed"
"""The outbox state of a dead-lettered step (workflows/outbox.py FAILED; storage may not import workflows)."""


async def count_upcoming(
    database: Database,
    tenant_id: str,
    host_ids: Sequence[str],
    starts_from: datetime,
    *,
    starts_within: tuple[datetime, datetime] | None = None,
) -> int:
    """How many confirmed bookings of any of `host_ids` have not ended by `starts_from` (the same rows
    `SqlTeamsDirectory.upcoming` lists); with `starts_within`, only those starting in [start, end)."""
    if not host_ids:
        return 0
    hosted = select(host_slots.c.booking_id).where(
        host_slots.c.tenant_id == tenant_id,
        host_slots.c.user_id.in_(list(host_ids)),
        host_slots.c.active.is_(True),
        host_slots.c.ends_at > starts_from,
    )
    query = select(func.count()).where(
        bookings.c.tenant_id == tenant_id,
        bookings.c.status == "confirmed",
        bookings.c.ends_at > starts_from,
        bookings.c.id.in_(hosted),
    )
    if starts_within is not None:
        query = query.where(bookings.c.starts_at >= starts_within[0], bookings.c.starts_at < starts_within[1])

    def read(conn: Connection) -> int:
        return int(conn.execute(query).scalar_one())

    return await database.run_read(read)


@dataclass(frozen=True, slots=True)
class TypeFacts:
    """An appointment type as the host card shows it."""

    name: str
    questions: tuple[tuple[str, str], ...]
    """(key, label) in the order the type asks them."""


def labelled_answers(facts: TypeFacts | None, answers: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The client's answers as (label, value): the type's questions first, in its order and under their labels, then
    any answer to a question the type no longer asks, under its key. Empty answers are left out."""
    left = dict(answers)
    rows: list[tuple[str, str]] = []
    for key, label in facts.questions if facts else ():
        value = str(left.pop(key, "") or "")
        if value:
            rows.append((label or key, value))
    rows.extend((str(key), str(value)) for key, value in left.items() if value)
    return rows


async def type_facts(database: Database, tenant_id: str, type_id: str) -> TypeFacts | None:
    """The type's name and questions; None when the type is gone."""
    query = select(appointment_types.c.settings).where(
        appointment_types.c.tenant_id == tenant_id, appointment_types.c.id == type_id
    )

    def read(conn: Connection) -> TypeFacts | None:
        row = conn.execute(query).first()
        if row is None:
            return None
        settings: Mapping[str, Any] = row[0] or {}
        questions = tuple(
            (str(question.get("key", "")), str(question.get("label", "") or question.get("key", "")))
            for question in settings.get("questions") or ()
            if isinstance(question, dict)
        )
        return TypeFacts(name=str(settings.get("name", "")), questions=questions)

    return await database.run_read(read)


async def host_phrases(database: Database, tenant_id: str, type_ids: Sequence[str]) -> dict[str, str]:
    """Who a client books with each type, as "Book time with …" reads: "the Sales team" for round robin, "Alice
    Adams and Bob Brown" for a panel, the host's name for a one-person type. Types not found are left out."""
    if not type_ids:
        return {}

    def read(conn: Connection) -> dict[str, str]:
        names = dict(conn.execute(select(users.c.id, users.c.name).where(users.c.tenant_id == tenant_id)).all())
        team_names = dict(conn.execute(select(teams.c.id, teams.c.name).where(teams.c.tenant_id == tenant_id)).all())
        found: dict[str, str] = {}
        query = select(appointment_types.c.id, appointment_types.c.settings).where(
            appointment_types.c.tenant_id == tenant_id, appointment_types.c.id.in_(list(type_ids))
        )
        for type_id, settings in conn.execute(query):
            host = (settings or {}).get("host") or {}
            if host.get("team_id"):
                team = str(team_names.get(host["team_id"], "") or "").strip()
                found[type_id] = team_phrase(team)
            else:
                found[type_id] = join_names([str(names.get(user_id, "")) for user_id in host.get("user_ids") or ()])
        return found

    return await database.run_read(read)


def team_phrase(team: str) -> str:
    """ "the Sales team"; a name that already says team ("Sales Team") is not doubled; no name: "the team"."""
    if not team:
        return "the team"
    return f"the {team}" if team.lower().endswith("team") else f"the {team} team"


def join_names(names: Sequence[str]) -> str:
    """ "Alice", "Alice and Bob", "Alice, Bob and Carol"; empty names are skipped."""
    kept = [name for name in names if name.strip()]
    if not kept:
        return ""
    if len(kept) == 1:
        return kept[0]
    return f"{', '.join(kept[:-1])} and {kept[-1]}"


async def failed_step_rows(
    database: Database,
    tenant_id: str,
    host_ids: Sequence[str] | None,
    limit: int | None,
    *,
    job_id: int | None = None,
) -> list[Sequence[Any]]:
    """Failed steps, newest first, as full `workflow_jobs` rows; with `host_ids`, only steps of bookings any of
    them hosts (or hosted: a cancelled booking's failed steps count too); with `job_id`, only that step."""
    jobs = workflow_jobs.c
    query = select(workflow_jobs).where(jobs.tenant_id == tenant_id, jobs.state == FAILED_STATE)
    if job_id is not None:
        query = query.where(jobs.id == job_id)
    if host_ids is not None:
        hosted = select(host_slots.c.booking_id).where(
            host_slots.c.tenant_id == tenant_id, host_slots.c.user_id.in_(list(host_ids))
        )
        query = query.where(jobs.booking_id.in_(hosted))
    query = query.order_by(jobs.updated_at.desc(), jobs.id.desc())
    if limit is not None:
        query = query.limit(limit)

    def read(conn: Connection) -> list[Sequence[Any]]:
        return [tuple(row) for row in conn.execute(query)]

    return await database.run_read(read)


async def recently_requested(
    database: Database, tenant_id: str, booking_ids: Sequence[str], run_marker: str, since: datetime
) -> set[str]:
    """Which of `booking_ids` had a step queued at or after `since` whose run key is `<booking>:<run_marker>:…`."""
    if not booking_ids:
        return set()
    jobs = workflow_jobs.c
    query = select(jobs.booking_id, jobs.run_key).where(
        jobs.tenant_id == tenant_id,
        jobs.booking_id.in_(list(booking_ids)),
        jobs.run_key.contains(f":{run_marker}:", autoescape=True),
        jobs.created_at >= since,
    )

    def read(conn: Connection) -> set[str]:
        return {
            booking_id
            for booking_id, run_key in conn.execute(query)
            if str(run_key).startswith(f"{booking_id}:{run_marker}:")
        }

    return await database.run_read(read)
