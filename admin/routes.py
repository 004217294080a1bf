"""Admin REST API under /api/v1/admin/: workflow runs and steps of the caller's tenant, and retrying a failed step.

Authentication is a tenant-scoped API key (stored as a SHA-256 hash); every query takes the tenant from the key,
never from the request, so one tenant's key cannot see or touch another's runs.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pages.openapi import STEP_STATES
from pages.routes import PAGES, authenticate_agent
from scheduling.errors import InvalidRequest, NotFound
from storage.database import Database
from workflows.outbox import Job, list_runs, retry_job

ADMIN_DATABASE = web.AppKey("admin_database", Database)


def job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "booking_id": job.booking_id,
        "run": job.run_key,
        "step": job.step,
        "action": job.kind,
        "state": job.state,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "next_attempt_at": job.run_after.isoformat(),
        "last_error": job.last_error,
        "external_ids": dict(job.output or {}),
        "updated_at": job.updated_at.isoformat(),
        # The steps it waits for ({"run", "step", "action", "kind": "hard"|"soft", "uses": [outputs]}) and, when it
        # is blocked, which failed one holds it ("blocked by step 0 (create_ticket)").
        "depends_on": [dependency.to_json() for dependency in job.dependencies],
        "blocked_by": job.blocked_by,
    }


async def list_steps(request: web.Request) -> web.Response:
    tenant_id, _role = await authenticate_agent(request)
    booking_id = request.query.get("booking_id") or None
    state = request.query.get("state")
    if booking_id is not None and len(booking_id) > 40:
        raise InvalidRequest("'booking_id' is not a booking id", field="booking_id")
    if state is not None and state not in STEP_STATES:
        raise InvalidRequest(f"'state' must be one of: {', '.join(STEP_STATES)}", field="state")
    jobs = await list_runs(request.app[ADMIN_DATABASE], tenant_id, booking_id)
    if state is not None:
        jobs = [job for job in jobs if job.state == state]
    return web.json_response({"steps": [job_json(job) for job in jobs]})


async def retry_step(request: web.Request) -> web.Response:
    tenant_id, role = await authenticate_agent(request)
    if role not in ("admin", "agent"):
        raise web.HTTPForbidden(text="This key may not retry steps")
    raw = request.match_info["step_id"]
    # Step ids are 32-bit integers in the database (PostgreSQL refuses larger ones with an error, not a miss).
    # isascii: "²".isdigit() is true, but int("²") fails.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or int(raw) > 2**31 - 1:
        raise NotFound("No such workflow step")
    if not await retry_job(request.app[ADMIN_DATABASE], tenant_id, int(raw)):
        raise InvalidRequest("Only a failed step of your tenant can be retried", field="step_id")
    return web.json_response({"retried": int(raw)}, status=202)


def setup_admin_api(app: web.Application, database: Database) -> None:
    if PAGES not in app:
        raise RuntimeError("the admin API reuses the pages' key check; set up pages first")
    app[ADMIN_DATABASE] = database
    app.router.add_get("/api/v1/admin/steps", list_steps)
    app.router.add_post("/api/v1/admin/steps/{step_id}/retry", retry_step)
