"""The booking's host page (`/h/{token}`): what the host's Teams card links to as "Open booking".

Everything the host needs about one booking on one page: when and where, the client and guests, every answer under
its question's label, the notes, the ticket (a step's, else the one its scheduling request named; with "Open ticket" in
the PSA), and what Slotwise did about it, step by step, failures with the vendor's reason. The link is an encrypted
token of its own purpose ('host', pages/links.py HostLinks) sent only in the host's personal chat; it reads one booking
of one tenant and changes nothing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.engine import Connection

from cards.failures import humanise_action, system_name
from pages.links import LinkSigner
from scheduling.errors import IntegrationError, LinkExpired, NotFound, ServiceUnavailable
from scheduling.model import Booking, BookingStatus
from scheduling.ports import Clock, PsaClient
from storage.bot_queries import labelled_answers, type_facts
from storage.database import Database
from storage.repositories import SqlBookingStore
from storage.tables import integration_connections, scheduling_requests, users
from workflows.outbox import BLOCKED, CANCELLED, COMPLETED, FAILED, RETRYABLE, Job, list_runs
from workflows.status import step_links
from workflows.steps import ticket_link
from workflows.triggers import M365_KINDS, PSA_KINDS

_TEMPLATES: Final = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"), autoescape=True
)
_ERROR_CLASS: Final = re.compile(r"^[A-Z][A-Za-z]+: ")
_STATE_WORDS: Final = {
    COMPLETED: "Done",
    FAILED: "Failed",
    RETRYABLE: "Trying again",
    BLOCKED: "Not run: an earlier step failed",
    CANCELLED: "Not needed any more",
}


TICKET_LINK_SECONDS: Final = 5
"""How long the page waits for the PSA to name a ticket's web address before it shows the ticket without one."""


@dataclass(frozen=True, slots=True)
class HostViewDeps:
    database: Database
    signer: LinkSigner
    clock: Clock
    tenant_psa: Callable[[str], Awaitable[PsaClient | None]] | None = None
    """The tenant's PSA adapter, for the web address of a ticket the booking's scheduling request named."""


HOST_VIEW: Final = web.AppKey("host_view", HostViewDeps)


@dataclass(frozen=True, slots=True)
class StepLine:
    what: str
    state: str
    failed: bool
    detail: str


def _system_of(kind: str, psa_vendor: str) -> str:
    """Where a step acts, as people call it: the tenant's PSA by its name, Microsoft 365, email, Teams, a webhook."""
    if kind in PSA_KINDS:
        return system_name(psa_vendor) if psa_vendor else "your PSA"
    if kind in M365_KINDS:
        return "Microsoft 365"
    return {"send_email": "Email", "notify_host": "Microsoft Teams", "post_webhook": "Webhook"}.get(kind, "")


def _step_line(job: Job, zone: ZoneInfo, psa_vendor: str) -> StepLine:
    system = _system_of(job.kind, psa_vendor)
    what = f"{humanise_action(job.kind)} in {system}" if system else humanise_action(job.kind)
    state = _STATE_WORDS.get(job.state, "Waiting")
    detail = ""
    if job.state in (FAILED, RETRYABLE) and job.last_error:
        # The log's "IntegrationRejected: ..." reads as the vendor's reason without the error class in front.
        detail = _ERROR_CLASS.sub("", job.last_error, count=1)
    if job.state == RETRYABLE:
        detail = f"Next try {job.run_after.astimezone(zone):%d %b %H:%M}. {detail}".strip()
    if job.state == BLOCKED and job.blocked_by:
        detail = job.blocked_by
    return StepLine(what, state, job.state == FAILED, detail)


def _psa_vendor(conn: Connection, tenant_id: str) -> str:
    return str(
        conn.execute(
            select(integration_connections.c.vendor).where(
                integration_connections.c.tenant_id == tenant_id, integration_connections.c.kind == "psa"
            )
        ).scalar()
        or ""
    )


def _hosts(conn: Connection, booking: Booking) -> list[tuple[str, str]]:
    """(name, time zone) of each host, in the booking's order."""
    rows = {
        row.id: (str(row.name), str(row.time_zone))
        for row in conn.execute(
            select(users.c.id, users.c.name, users.c.time_zone).where(
                users.c.tenant_id == booking.tenant_id, users.c.id.in_(list(booking.host_ids))
            )
        )
    }
    return [rows[host_id] for host_id in booking.host_ids if host_id in rows]


def _request_ticket(conn: Connection, booking: Booking) -> tuple[str, str] | None:
    """(id, number) of the existing ticket the booking's scheduling request named, if any."""
    if booking.request_id is None:
        return None
    row = conn.execute(
        select(scheduling_requests.c.ticket_id, scheduling_requests.c.ticket_number).where(
            scheduling_requests.c.tenant_id == booking.tenant_id, scheduling_requests.c.id == booking.request_id
        )
    ).first()
    if row is None or not row.ticket_id:
        return None
    return str(row.ticket_id), str(row.ticket_number or row.ticket_id)


async def _ticket_links(deps: HostViewDeps, booking: Booking, links: Mapping[str, str]) -> Mapping[str, str]:
    """The steps' links, plus the ticket the booking's scheduling request named when no step reported it (a workflow
    that only adds notes to that ticket, say): its number, and its page in the PSA when the PSA names it in time."""
    if links.get("ticket_number") and links.get("ticket_url"):
        return links
    ticket = await deps.database.run_read(lambda conn: _request_ticket(conn, booking))
    if ticket is None:
        return links
    ticket_id, number = ticket
    found = {"ticket_number": number, **links}
    if found.get("ticket_url") or deps.tenant_psa is None:
        return found
    try:
        psa = await asyncio.wait_for(deps.tenant_psa(booking.tenant_id), TICKET_LINK_SECONDS)
        url = await asyncio.wait_for(ticket_link(psa, ticket_id, number), TICKET_LINK_SECONDS)
    except (TimeoutError, IntegrationError, ServiceUnavailable):
        url = ""
    return {**found, "ticket_url": url} if url else found


def _when(starts: datetime, ends: datetime, zone: ZoneInfo) -> str:
    start, end = starts.astimezone(zone), ends.astimezone(zone)
    return f"{start:%A} {start.day} {start:%B %Y}, {start:%H:%M}\u2013{end:%H:%M} ({zone.key.replace('_', ' ')})"


async def host_page(request: web.Request) -> web.Response:
    deps = request.app[HOST_VIEW]
    try:
        claims = deps.signer.verify("host", request.match_info["token"], deps.clock.now())
    except LinkExpired:
        raise LinkExpired(
            "This booking link has expired. Ask Slotwise in Teams for 'upcoming' to see your bookings."
        ) from None
    booking = await SqlBookingStore(deps.database).get_booking(claims.tenant_id, claims.subject_id)
    if booking is None:
        raise NotFound("This booking no longer exists")
    facts = await type_facts(deps.database, booking.tenant_id, booking.type_id)
    hosts = await deps.database.run_read(lambda conn: _hosts(conn, booking))
    psa_vendor = await deps.database.run_read(lambda conn: _psa_vendor(conn, booking.tenant_id))
    zone = ZoneInfo(hosts[0][1]) if hosts else ZoneInfo(booking.client.time_zone)
    rows = labelled_answers(facts, booking.client.answers)
    links = await _ticket_links(deps, booking, await step_links(deps.database, booking.tenant_id, booking.booking_id))
    jobs = await list_runs(deps.database, booking.tenant_id, booking.booking_id)
    values: dict[str, Any] = {
        "type_name": facts.name if facts else "Appointment",
        "booking": booking,
        "cancelled": booking.status is BookingStatus.CANCELLED,
        "when": _when(booking.starts_at, booking.ends_at, zone),
        "client_when": _when(booking.starts_at, booking.ends_at, ZoneInfo(booking.client.time_zone)),
        "hosts": [name for name, _zone in hosts],
        "answers": rows,
        "links": links,
        "steps": [_step_line(job, zone, psa_vendor) for job in jobs],
        "failed": sum(1 for job in jobs if job.state == FAILED),
    }
    html = _TEMPLATES.get_template("host_booking.html").render(**values)
    response = web.Response(text=html, content_type="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; style-src 'self'; script-src 'none'; img-src 'self'; form-action 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    # The page names a client and their answers: never cached, never sent on as a referrer.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "private, no-store"
    return response


def setup_host_view(app: web.Application, deps: HostViewDeps) -> None:
    app[HOST_VIEW] = deps
    app.router.add_get("/h/{token}", host_page)
