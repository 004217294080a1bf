"""The scheduling request → workflow seam: inside the transaction that creates a request, enqueue its triggers.

`request_created` runs for every request; `request_sent` and the `no_response` follow-ups only when Slotwise sent the
link itself (the request names a recipient). Like a booking's runs (workflows/dispatch.py), they commit or roll back
with the request, so a request never exists without its triggers, and a retried API call plans nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Connection

from scheduling.errors import InvalidRequest
from storage.tables import appointment_types, scheduling_requests, tenants, users
from workflows.dispatch import connected_systems
from workflows.outbox import enqueue_jobs
from workflows.triggers import plan_request_runs, workflow_for_type

BookUrlFor = Callable[[str, str, datetime], str]
"""(tenant id, request id, expiry) → the client's booking link for the request."""


class RequestFanOut:
    """A storage hook `(conn, tenant_id, request_id)` → the request's trigger runs, in the same transaction."""

    def __init__(self, book_url_for: BookUrlFor) -> None:
        self._book_url_for = book_url_for

    def __call__(self, conn: Connection, tenant_id: str, request_id: str) -> None:
        request = conn.execute(
            select(scheduling_requests).where(
                scheduling_requests.c.tenant_id == tenant_id, scheduling_requests.c.id == request_id
            )
        ).one()
        settings_row = conn.execute(
            select(appointment_types.c.settings, appointment_types.c.slug).where(
                appointment_types.c.tenant_id == tenant_id, appointment_types.c.id == request.type_id
            )
        ).first()
        if settings_row is None:
            return
        settings: dict[str, Any] = {**settings_row.settings, "slug": settings_row.slug}
        connected = connected_systems(conn, tenant_id)
        if request.sent_at is not None and not connected.email:
            # Raised inside the request's transaction: no request is left behind that promised an email.
            raise InvalidRequest(
                'This tenant has no email connection, so Slotwise cannot send the link: leave out "send" and '
                "share the link yourself, or ask an administrator to connect email (SMTP or Microsoft 365)",
                field="send",
            )
        workflow, _mode = workflow_for_type(settings, _primary_calendar(conn, tenant_id, settings), connected)
        tenant = conn.execute(
            select(
                tenants.c.name,
                tenants.c.default_time_zone,
                tenants.c.holidays,
                tenants.c.branding,
                tenants.c.default_locale,
            ).where(tenants.c.id == tenant_id)
        ).one()
        zone = ZoneInfo(tenant.default_time_zone or "UTC")
        snapshot = self._snapshot(request, settings, tenant.name, zone)
        # The request's emails wear the tenant's branding, as a booking's do (workflows/templates.py).
        snapshot["branding"] = dict(tenant.branding or {})
        # The client has not opened a page yet, so their language is not known: the tenant's default.
        snapshot["locale"] = tenant.default_locale or ""
        jobs = plan_request_runs(
            tenant_id=tenant_id,
            request_id=request_id,
            workflow=workflow,
            request_snapshot=snapshot,
            sent_at=request.sent_at,
            expires_at=request.expires_at,
            zone=zone,
            holidays=frozenset(date.fromisoformat(day) for day in tenant.holidays or ()),
        )
        if jobs:
            enqueue_jobs(conn, jobs, now=request.created_at)

    def _snapshot(self, request: Any, settings: dict[str, Any], tenant_name: str, zone: ZoneInfo) -> dict[str, Any]:
        """The request as its steps see it, frozen when it was made."""
        duration = (
            timedelta(seconds=request.duration_seconds)
            if request.duration_seconds
            else timedelta(minutes=int(settings.get("duration_minutes") or 0))
        )
        ticket = {"id": str(request.ticket_id), "number": str(request.ticket_number or request.ticket_id)}
        return {
            "kind": "request",
            "id": request.id,
            "tenant_id": request.tenant_id,
            "tenant_name": tenant_name,
            "type_name": settings.get("name", ""),
            "type_slug": settings.get("slug", ""),
            "duration_minutes": int(duration / timedelta(minutes=1)),
            "time_zone": str(zone),
            "window_starts_at": _iso(request.window_starts_at),
            "window_ends_at": _iso(request.window_ends_at),
            "expires_at": _iso(request.expires_at),
            "created_by": request.created_by,
            "ticket_label": request.ticket,
            "single_use": bool(request.single_use),
            **({"ticket": ticket} if request.ticket_id else {}),
            "client": {
                "name": request.recipient_name or "",
                "email": request.recipient_email or "",
                "guests": list(request.guests or []),
            },
            "book_url": self._book_url_for(request.tenant_id, request.id, request.expires_at),
        }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _primary_calendar(conn: Connection, tenant_id: str, settings: dict[str, Any]) -> str:
    """The primary calendar of the type's first user host, for Classic mode's choice of actions (request triggers
    only use the email, so this matters little; a team type counts as Microsoft 365)."""
    user_ids = (settings.get("host") or {}).get("user_ids") or []
    if not user_ids:
        return "m365"
    found = conn.execute(
        select(users.c.primary_calendar).where(users.c.tenant_id == tenant_id, users.c.id == user_ids[0])
    ).scalar()
    return str(found or "m365")
