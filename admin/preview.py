"""`slotwise preview`: what an appointment type's clients and hosts will receive, before any client does.

For one type and trigger it renders, against a sample booking of that type (its real name, location, questions,
hosts and the tenant's branding), the email the workflow sends (its custom template, or the default), the calendar
invitation that email carries and the host's Teams card, into one HTML page an admin opens in a browser.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Connection

from cards.booking_event import render_booking_event
from cards.views import BookingChange, BookingEventView
from i18n import FALLBACK, SUPPORTED, supported_tag
from integrations.mail.wire import to_wire_ics
from storage.database import Database
from storage.tables import appointment_types, teams, tenants, users
from workflows.dispatch import connected_systems
from workflows.steps import booking_invite, host_notification
from workflows.templates import SAMPLE_BOOKING, RenderedEmail, compose_email, default_email, snapshot_variables
from workflows.triggers import ActionKind, Connected, Trigger, workflow_for_type

PREVIEW_TRIGGERS = ("client_scheduled", "rescheduled", "cancelled", "before_appointment")
SAMPLE_JOIN_URL = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_preview%40thread.v2/0"


class PreviewError(Exception):
    """The tenant or type does not exist, or the trigger is not one a booking has; the message says which."""


@dataclass(frozen=True)
class Preview:
    subject: str
    email: RenderedEmail
    ics: str
    """The invitation the email carries, or "" when it carries none (and `notes` say why)."""
    card: dict[str, Any]
    notes: tuple[str, ...]
    page: str


def _load(
    conn: Connection, tenant_slug: str, type_slug: str
) -> tuple[dict[str, Any], dict[str, Any], Connected, list[Any]]:
    tenant = conn.execute(select(tenants).where(tenants.c.slug == tenant_slug)).first()
    if tenant is None:
        raise PreviewError(f"There is no tenant {tenant_slug!r}; `slotwise links` lists them")
    kind = conn.execute(
        select(appointment_types).where(
            appointment_types.c.tenant_id == tenant.id, appointment_types.c.slug == type_slug
        )
    ).first()
    if kind is None:
        raise PreviewError(f"Tenant {tenant_slug!r} has no appointment type {type_slug!r}")
    settings = dict(kind.settings)
    host = settings.get("host") or {}
    user_ids = list(host.get("user_ids") or ())
    if host.get("team_id"):
        team = conn.execute(
            select(teams.c.member_ids).where(teams.c.tenant_id == tenant.id, teams.c.id == host["team_id"])
        ).first()
        # A round robin picks one member per booking; the preview shows the first.
        user_ids = list(team.member_ids[:1]) if team is not None else []
    found = conn.execute(select(users).where(users.c.tenant_id == tenant.id, users.c.id.in_(user_ids))).all()
    rows = sorted(found, key=lambda row: user_ids.index(row.id))
    return (
        dict(tenant._mapping),
        {"row": dict(kind._mapping), "settings": settings},
        connected_systems(conn, tenant.id),
        rows,
    )


def sample_booking(
    tenant: dict[str, Any], kind: dict[str, Any], hosts: list[Any], trigger: str, base_url: str, now: datetime
) -> dict[str, Any]:
    """A booking snapshot of this type as workflows/dispatch.py would freeze it, two days from now at 15:00 UTC."""
    settings = kind["settings"]
    starts = (now + timedelta(days=2)).replace(hour=15, minute=0, second=0, microsecond=0)
    ends = starts + timedelta(minutes=int(settings.get("duration_minutes") or 30))
    location = settings.get("location") or {}
    questions = [q for q in settings.get("questions") or () if isinstance(q, dict)]
    client = dict(SAMPLE_BOOKING["client"])
    client["time_zone"] = str(tenant.get("default_time_zone") or "UTC")
    client["answers"] = {str(q["key"]): f"(the client's answer to “{q['label']}”)" for q in questions}
    client["guests"] = ["guest@client.example"]
    return {
        **SAMPLE_BOOKING,
        "id": "preview",
        "tenant_id": tenant["id"],
        "tenant_name": tenant["name"],
        "branding": dict(tenant.get("branding") or {}),
        "type_name": settings.get("name", ""),
        "type_slug": kind["row"]["slug"],
        "starts_at": starts.isoformat(),
        "ends_at": ends.isoformat(),
        "previous_starts_at": (starts - timedelta(days=1)).isoformat() if trigger == "rescheduled" else None,
        "status": "cancelled" if trigger == "cancelled" else "confirmed",
        "cancel_reason": "Something came up" if trigger == "cancelled" else "",
        "sequence": {"rescheduled": 1, "cancelled": 2}.get(trigger, 0),
        "location_kind": location.get("kind", "custom"),
        "location": location.get("detail", "") or location.get("kind", ""),
        "host_mode": kind["row"]["host_mode"],
        "questions": [{"key": str(q["key"]), "label": str(q["label"])} for q in questions],
        "hosts": [{"user_id": row.id, "name": row.name, "email": row.email} for row in hosts],
        "client": client,
        "manage_url": f"{base_url.rstrip('/')}/m/preview",
    }


async def render_preview(
    database: Database,
    base_url: str,
    tenant_slug: str,
    type_slug: str,
    trigger: str,
    *,
    now: datetime | None = None,
    locale: str | None = None,
) -> Preview:
    """The email, invitation and host card of a type's trigger against a sample booking whose client speaks
    `locale` (default: the tenant's default language, else English)."""
    if trigger not in PREVIEW_TRIGGERS:
        raise PreviewError(f"'--trigger' must be one of: {', '.join(PREVIEW_TRIGGERS)}")
    chosen = supported_tag(locale) if locale else ""
    if locale and not chosen:
        raise PreviewError(f"'--locale' must be a language Slotwise has: {', '.join(SUPPORTED)} (e.g. de-DE)")
    tenant, kind, connected, hosts = await database.run_read(lambda conn: _load(conn, tenant_slug, type_slug))
    booking = sample_booking(tenant, kind, hosts, trigger, base_url, now or datetime.now(UTC))
    booking["client"]["locale"] = chosen or str(tenant.get("default_locale") or "") or FALLBACK
    email_language = str(booking["client"]["locale"])
    primary = hosts[0].primary_calendar if hosts else "m365"
    workflow, mode = workflow_for_type(kind["settings"], primary, connected)
    actions = workflow.actions_for(Trigger(trigger))
    kinds = {step.action for step in actions}
    notes: list[str] = [f"{mode} mode; this trigger runs: {', '.join(a.action.value for a in actions) or 'nothing'}"]
    emails = [step for step in actions if step.action is ActionKind.SEND_EMAIL]
    if not emails:
        notes.append("This trigger sends no email; shown is the default email it would send with send_email.")
    action = emails[0] if emails else None
    outputs: dict[str, Any] = {}
    created = {step.action for step in workflow.actions_for(Trigger.CLIENT_SCHEDULED)}
    if ActionKind.CREATE_TICKET in created or booking.get("ticket"):
        outputs["ticket_number"] = "T-PREVIEW"
    if ActionKind.CREATE_M365_EVENT in created:
        outputs["event_id"] = "preview-event"
        if booking["location_kind"] == "teams":
            outputs["join_url"] = SAMPLE_JOIN_URL
    if action is not None and action.template == "custom":
        variables = snapshot_variables(booking, outputs)
        rendered = compose_email(action.subject or "", action.body or "", variables, email_language)
    else:
        subject, body = default_email(trigger, email_language)
        rendered = compose_email(subject, body, snapshot_variables(booking, outputs), email_language)
    recipients = action.recipients if action is not None else "client_and_guests"
    invite = booking_invite(booking, outputs, trigger, recipients, "bookings@example.com")
    if invite is None:
        notes.append(
            "The email carries no invitation: the host's Microsoft 365 event invites the client"
            if outputs.get("event_id")
            else "The email carries no invitation for this trigger"
        )
    ics = to_wire_ics(invite, now or datetime.now(UTC)).decode() if invite is not None else ""
    notification = host_notification(booking, outputs, trigger)
    card = render_booking_event(
        BookingEventView(
            change=BookingChange(notification.change),
            booking_id=notification.booking_id,
            type_name=notification.type_name,
            client_name=notification.client_name,
            client_email=notification.client_email,
            starts_at=notification.starts_at,
            ends_at=notification.ends_at,
            time_zone=ZoneInfo(hosts[0].time_zone if hosts else "UTC"),
            join_url=notification.join_url or None,
            reason=notification.reason,
            answers=notification.answers,
            previous_starts_at=notification.previous_starts_at,
        )
    )
    if ActionKind.NOTIFY_HOST not in kinds:
        notes.append("This trigger sends the host no Teams card; shown is the card notify_host would send.")
    page = _page(tenant_slug, type_slug, trigger, rendered, ics, card, notes)
    return Preview(rendered.subject, rendered, ics, card, tuple(notes), page)


def _page(
    tenant: str, kind: str, trigger: str, email: RenderedEmail, ics: str, card: dict[str, Any], notes: list[str]
) -> str:
    """One self-contained page: the email in a sandboxed frame (as a mail client shows it), its text part, the
    invitation and the card's JSON (paste it into the Adaptive Cards designer to see it drawn)."""
    escape = html.escape
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Preview: {escape(kind)} ({escape(trigger)})</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#111827;background:#f3f4f6}}
iframe{{width:100%;height:760px;border:1px solid #d1d5db;background:#fff}}
pre{{white-space:pre-wrap;background:#fff;border:1px solid #e5e7eb;padding:12px;font-size:13px}}</style></head>
<body><h1>Preview: {escape(tenant)} / {escape(kind)}, trigger {escape(trigger)}</h1>
<ul>{"".join(f"<li>{escape(note)}</li>" for note in notes)}</ul>
<h2>Email: {escape(email.subject)}</h2>
<iframe title="The email as a mail client shows it" sandbox srcdoc="{escape(email.html, quote=True)}"></iframe>
<h2>Plain-text part</h2><pre>{escape(email.text, quote=False)}</pre>
<h2>Invitation</h2><pre>{escape(ics, quote=False) or "(none)"}</pre>
<h2>Host's Teams card (Adaptive Card JSON)</h2>
<pre>{escape(json.dumps(card, indent=2, ensure_ascii=False), quote=False)}</pre>
</body></html>
"""
