"""Admin REST API under /api/v1/admin/: bookings, workflow runs and steps of the caller's tenant, and retrying a
failed step.

Authentication is a tenant-scoped API key (stored as a SHA-256 hash); every query takes the tenant from the key,
never from the request, so one tenant's key cannot see or touch another's runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from pages.openapi import STEP_STATES
from pages.routes import PAGES, authenticate_agent
from scheduling.errors import InvalidRequest, NotFound
from storage.database import Database
from storage.tables import appointment_types, bookings, host_slots, teams, users
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


BOOKING_STATES = ("confirmed", "cancelled")
MAX_PAGE = 200
_SLUG_LIMIT = 64


def _slug_filter(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if len(value) > _SLUG_LIMIT:
        raise InvalidRequest(f"'{name}' is not a slug (at most {_SLUG_LIMIT} characters)", field=name)
    return value


def _moment_filter(request: web.Request, name: str) -> datetime | None:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if len(value) <= 40 else None
        # In UTC, as stored; year 1 at +14:00 has no UTC equivalent, which is bad input, not a server error.
        moment = parsed.astimezone(UTC) if parsed is not None and parsed.tzinfo is not None else parsed
    except (ValueError, OverflowError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidRequest(
            f"'{name}' must be a date and time with its UTC offset, e.g. 2026-11-24T00:00:00Z", field=name
        )
    return moment


def _int_filter(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query.get(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 7 or not low <= int(value) <= high:
        raise InvalidRequest(f"'{name}' must be a whole number from {low} to {high}", field=name)
    return int(value)


async def list_bookings(request: web.Request) -> web.Response:
    """Bookings of the key's tenant, oldest start first, filtered by host (user slug), team (slug; bookings any
    member hosts), type (slug), start time range [from, to) and state, a page at a time (limit, offset). The
    tenant comes from the key; a slug is looked up in that tenant only, so an unknown one (or another tenant's)
    is a 400 that names it."""
    tenant_id, _role = await authenticate_agent(request)
    host = _slug_filter(request, "host")
    team = _slug_filter(request, "team")
    kind = _slug_filter(request, "type")
    starts_from = _moment_filter(request, "from")
    starts_to = _moment_filter(request, "to")
    if starts_from is not None and starts_to is not None and starts_to <= starts_from:
        raise InvalidRequest("'to' must be after 'from'", field="to")
    state = request.query.get("state")
    if state is not None and state not in BOOKING_STATES:
        raise InvalidRequest(f"'state' must be one of: {', '.join(BOOKING_STATES)}", field="state")
    limit = _int_filter(request, "limit", 50, 1, MAX_PAGE)
    offset = _int_filter(request, "offset", 0, 0, 1_000_000)

    def query(conn: Connection) -> dict[str, Any]:
        people = {row.id: row for row in conn.execute(select(users).where(users.c.tenant_id == tenant_id))}
        kinds = {
            row.id: row
            for row in conn.execute(select(appointment_types).where(appointment_types.c.tenant_id == tenant_id))
        }
        where = [bookings.c.tenant_id == tenant_id]
        hosted_by: set[str] | None = None
        if host is not None:
            found = [user_id for user_id, row in people.items() if row.slug == host]
            if not found:
                raise InvalidRequest(f"Your tenant has no user '{host}'", field="host")
            hosted_by = set(found)
        if team is not None:
            row = conn.execute(select(teams).where(teams.c.tenant_id == tenant_id, teams.c.slug == team)).first()
            if row is None:
                raise InvalidRequest(f"Your tenant has no team '{team}'", field="team")
            members = set(row.member_ids)
            hosted_by = members if hosted_by is None else hosted_by & members
        if hosted_by is not None:
            where.append(
                bookings.c.id.in_(
                    select(host_slots.c.booking_id).where(
                        host_slots.c.tenant_id == tenant_id, host_slots.c.user_id.in_(sorted(hosted_by))
                    )
                )
            )
        if kind is not None:
            type_ids = [type_id for type_id, row in kinds.items() if row.slug == kind]
            if not type_ids:
                raise InvalidRequest(f"Your tenant has no appointment type '{kind}'", field="type")
            where.append(bookings.c.type_id.in_(type_ids))
        if starts_from is not None:
            where.append(bookings.c.starts_at >= starts_from)
        if starts_to is not None:
            where.append(bookings.c.starts_at < starts_to)
        if state is not None:
            where.append(bookings.c.status == state)
        total = int(conn.execute(select(func.count()).select_from(bookings).where(*where)).scalar_one())
        rows = conn.execute(
            select(bookings).where(*where).order_by(bookings.c.starts_at, bookings.c.id).limit(limit).offset(offset)
        ).all()
        found_bookings = []
        for row in rows:
            type_row = kinds.get(row.type_id)
            found_bookings.append(
                {
                    "id": row.id,
                    "state": row.status,
                    "starts_at": row.starts_at.isoformat(),
                    "ends_at": row.ends_at.isoformat(),
                    "type": {
                        "slug": type_row.slug if type_row is not None else None,
                        "name": type_row.settings.get("name") if type_row is not None else None,
                    },
                    "hosts": [
                        {"slug": people[user_id].slug, "name": people[user_id].name}
                        for user_id in row.host_ids
                        if user_id in people
                    ],
                    "client": {"name": row.client_name, "email": row.client_email, "time_zone": row.client_time_zone},
                    "guests": list(row.guests),
                    "answers": dict(row.answers),
                    "cancel_reason": row.cancel_reason or None,
                    "version": row.version,
                    "created_at": row.created_at.isoformat(),
                }
            )
        return {
            "bookings": found_bookings,
            "total": total,
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if offset + limit < total else None,
        }

    return web.json_response(await request.app[ADMIN_DATABASE].run_read(query))


def setup_admin_api(app: web.Application, database: Database) -> None:
    if PAGES not in app:
        raise RuntimeError("the admin API reuses the pages' key check; set up pages first")
    app[ADMIN_DATABASE] = database
    app.router.add_get("/api/v1/admin/bookings", list_bookings)
    app.router.add_get("/api/v1/admin/steps", list_steps)
    app.router.add_post("/api/v1/admin/steps/{step_id}/retry", retry_step)
