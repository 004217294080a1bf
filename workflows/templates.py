"""Admin-authored email templates in Liquid (sandboxed, HTML auto-escaped) and the booking variables they see."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from liquid import Environment, StrictUndefined
from liquid.exceptions import LiquidError

from scheduling.errors import IntegrationRejected
from scheduling.model import Booking, BookingTarget

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


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def booking_variables(
    target: BookingTarget, booking: Booking, *, manage_url: str, outputs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Every booking field a template may use, as plain mappings and strings (nothing callable)."""
    zone = ZoneInfo(booking.client.time_zone)
    kind = target.appointment_type
    names = {host.user_id: host.name for host in target.hosts}
    hosts = [names.get(host_id, "") for host_id in booking.host_ids]
    produced = dict(outputs or {})
    return {
        "tenant": {"name": target.tenant_name, "slug": target.tenant_slug},
        "appointment": {
            "id": booking.booking_id,
            "name": kind.name,
            "internal_name": kind.internal_name,
            "starts_at": booking.starts_at.isoformat(),
            "ends_at": booking.ends_at.isoformat(),
            "starts_local": booking.starts_at.astimezone(zone).strftime("%A %-d %B %Y, %H:%M"),
            "ends_local": booking.ends_at.astimezone(zone).strftime("%H:%M"),
            "time_zone": str(zone),
            "duration_minutes": int((booking.ends_at - booking.starts_at).total_seconds() // 60),
            "location": kind.location.describe(),
            "status": booking.status.value,
        },
        "client": {
            "name": booking.client.name,
            "email": booking.client.email,
            "notes": booking.client.notes,
            "answers": dict(booking.client.answers),
            "guests": list(booking.client.guests),
        },
        "host": {"names": ", ".join(hosts), "list": hosts},
        "ticket": {"number": str(produced.get("ticket_number", ""))},
        "opportunity": {"id": str(produced.get("opportunity_id", ""))},
        "links": {"manage": manage_url},
        "outputs": produced,
    }


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
