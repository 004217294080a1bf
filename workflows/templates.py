"""Admin-authored email templates in Liquid (sandboxed, HTML auto-escaped) and the booking variables they see."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from liquid import Environment, StrictUndefined
from liquid.exceptions import LiquidError

from scheduling.errors import IntegrationRejected

# Liquid is the syntax MSP admins already write, and it is safe for untrusted authors: no attribute access to
# Python objects, no imports, no file system (this environment has no loader, so {% include %} fails).
_HTML = Environment(autoescape=True, undefined=StrictUndefined)
_TEXT = Environment(autoescape=False, undefined=StrictUndefined)

DEFAULT_SUBJECT = "Confirmed: {{ appointment.name }} on {{ appointment.starts_local }}"
DEFAULT_BODY = """<p>Hi {{ client.name }},</p>
<p>Your {{ appointment.name }} with {{ host.names }} is booked for
<strong>{{ appointment.starts_local }}</strong> ({{ appointment.time_zone }}),
{{ appointment.duration_minutes }} minutes.</p>
<p>Where: {{ appointment.location }}</p>
{% if ticket.number %}<p>Ticket #{{ ticket.number }}</p>{% endif %}
<p>Need to change it? <a href="{{ links.manage }}">Reschedule or cancel</a>.</p>
<p>{{ tenant.name }}</p>"""

RESCHEDULED_SUBJECT = "Rescheduled: {{ appointment.name }} on {{ appointment.starts_local }}"
RESCHEDULED_BODY = """<p>Hi {{ client.name }},</p>
<p>Your {{ appointment.name }} with {{ host.names }} has moved to
<strong>{{ appointment.starts_local }}</strong> ({{ appointment.time_zone }}),
{{ appointment.duration_minutes }} minutes.{% if appointment.previous_starts_local %}
It was {{ appointment.previous_starts_local }}.{% endif %}</p>
<p>Where: {{ appointment.location }}</p>
{% if ticket.number %}<p>Ticket #{{ ticket.number }}</p>{% endif %}
<p>Need to change it again? <a href="{{ links.manage }}">Reschedule or cancel</a>.</p>
<p>{{ tenant.name }}</p>"""

CANCELLED_SUBJECT = "Cancelled: {{ appointment.name }} on {{ appointment.starts_local }}"
CANCELLED_BODY = """<p>Hi {{ client.name }},</p>
<p>Your {{ appointment.name }} with {{ host.names }} on
<strong>{{ appointment.starts_local }}</strong> ({{ appointment.time_zone }}) is cancelled.</p>
{% if appointment.cancel_reason %}<p>Reason: {{ appointment.cancel_reason }}</p>{% endif %}
{% if ticket.number %}<p>Ticket #{{ ticket.number }}</p>{% endif %}
<p>{{ tenant.name }}</p>"""

REMINDER_SUBJECT = "Reminder: {{ appointment.name }} on {{ appointment.starts_local }}"
REMINDER_BODY = """<p>Hi {{ client.name }},</p>
<p>A reminder: your {{ appointment.name }} with {{ host.names }} is on
<strong>{{ appointment.starts_local }}</strong> ({{ appointment.time_zone }}),
{{ appointment.duration_minutes }} minutes.</p>
<p>Where: {{ appointment.location }}</p>
{% if appointment.join_url %}<p>Join: <a href="{{ appointment.join_url }}">{{ appointment.join_url }}</a></p>{% endif %}
{% if ticket.number %}<p>Ticket #{{ ticket.number }}</p>{% endif %}
<p>Need to change it? <a href="{{ links.manage }}">Reschedule or cancel</a>.</p>
<p>{{ tenant.name }}</p>"""

DEFAULT_TEMPLATES: dict[str, tuple[str, str]] = {
    "client_scheduled": (DEFAULT_SUBJECT, DEFAULT_BODY),
    "rescheduled": (RESCHEDULED_SUBJECT, RESCHEDULED_BODY),
    "cancelled": (CANCELLED_SUBJECT, CANCELLED_BODY),
    "before_appointment": (REMINDER_SUBJECT, REMINDER_BODY),
}
"""The default email for each trigger: a client who cancels is not sent a "Confirmed" message."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


_LOCAL = "%A %-d %B %Y, %H:%M"


def _present(value: Any) -> str | None:
    """A value a template may test with `{% if %}`: its text, or nil when there is none. Liquid treats an empty
    string as true, so "" would print an empty "Ticket #", "Join:" or "Reason:" line."""
    text = "" if value is None else str(value)
    return text or None


def snapshot_variables(booking: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, Any]:
    """What a workflow's email template sees: the booking snapshot its step carries, and earlier steps' outputs.

    Times are shown in the client's zone. `appointment.previous_starts_local` is set for a reschedule and
    `appointment.cancel_reason` for a cancellation; both are nil otherwise (so `{% if %}` leaves their lines
    out), and one template can serve all triggers. Missing outputs (ticket number, join link) are nil too.
    """
    client = booking["client"]
    zone = ZoneInfo(client["time_zone"])
    starts = datetime.fromisoformat(booking["starts_at"])
    ends = datetime.fromisoformat(booking["ends_at"])
    previous = booking.get("previous_starts_at")
    hosts = [str(host.get("name", "")) for host in booking.get("hosts", [])]
    return {
        "tenant": {"name": booking.get("tenant_name", "")},
        "appointment": {
            "id": booking["id"],
            "name": booking["type_name"],
            "starts_at": booking["starts_at"],
            "ends_at": booking["ends_at"],
            "starts_local": starts.astimezone(zone).strftime(_LOCAL),
            "ends_local": ends.astimezone(zone).strftime("%H:%M"),
            "time_zone": client["time_zone"],
            "duration_minutes": int((ends - starts) / timedelta(minutes=1)),
            "location": booking.get("location", ""),
            "status": booking.get("status", ""),
            "cancel_reason": _present(booking.get("cancel_reason")),
            "join_url": _present(outputs.get("join_url")),
            "previous_starts_local": datetime.fromisoformat(previous).astimezone(zone).strftime(_LOCAL)
            if previous
            else None,
        },
        "client": dict(client),
        "host": {"names": ", ".join(hosts), "list": hosts},
        "ticket": {"number": _present(outputs.get("ticket_number"))},
        "opportunity": {"id": _present(outputs.get("opportunity_id"))},
        "links": {"manage": booking.get("manage_url", "")},
        "outputs": dict(outputs),
    }


class _AnyOutputs(dict[str, Any]):
    """Earlier steps' outputs depend on the workflow, so any `outputs.x` is accepted when a template is checked."""

    def __missing__(self, key: str) -> str:
        return ""


_SAMPLE_BOOKING: dict[str, Any] = {
    "id": "sample",
    "tenant_name": "Sample IT",
    "type_name": "Sample call",
    "starts_at": "2026-01-05T15:00:00+00:00",
    "ends_at": "2026-01-05T15:30:00+00:00",
    "previous_starts_at": "2026-01-04T15:00:00+00:00",
    "status": "confirmed",
    "cancel_reason": "",
    "location": "Microsoft Teams",
    "hosts": [{"name": "Sam Host"}],
    "client": {
        "name": "Casey Client",
        "email": "casey@client.example",
        "time_zone": "UTC",
        "answers": {},
        "guests": [],
        "notes": "",
    },
    "manage_url": "https://book.example/m/sample",
}


def template_problem(subject_template: str, body_template: str, sample: Mapping[str, Any] | None = None) -> str | None:
    """Why this email template would fail at send time (a Liquid syntax error, or a variable that does not exist),
    found by rendering it once against a sample booking (or the given sample variables, e.g. a scheduling
    request's); None when it renders."""
    variables = dict(sample) if sample is not None else snapshot_variables(_SAMPLE_BOOKING, {})
    variables["outputs"] = _AnyOutputs()
    try:
        render_email(subject_template, body_template, variables)
    except IntegrationRejected as exc:
        cause = str(exc.__cause__ or exc).strip()
        # Liquid adds a picture of the offending line; the first line says what is wrong.
        return cause.splitlines()[0] if cause else "the template could not be rendered"
    return None


def render_email(subject_template: str, body_template: str, variables: Mapping[str, Any]) -> RenderedEmail:
    """Render an email; a broken template is a configuration problem, so it fails the step without retries."""
    try:
        subject = _TEXT.from_string(subject_template).render(**variables)
        body = _HTML.from_string(body_template).render(**variables)
    except LiquidError as exc:
        raise IntegrationRejected(f"The email template could not be rendered: {exc}") from exc
    return RenderedEmail(subject=" ".join(subject.split()), html=body, text=html_to_text(body))


_TAGS = re.compile(r"<[^>]+>")
_BREAKS = re.compile(r"</p>|<br\s*/?>", re.IGNORECASE)


def html_to_text(markup: str) -> str:
    """A readable plain-text alternative: paragraphs become blank lines, tags go, entities are decoded."""
    text = _TAGS.sub("", _BREAKS.sub("\n\n", markup))
    lines = [" ".join(line.split()) for line in html.unescape(text).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
