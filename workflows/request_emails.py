"""The emails of a scheduling request (`request_sent`, `no_response`): the link and the window, before anything is
booked, and the Liquid variables their templates see.

A request has no time, host or booking yet, so its variables are a different set from a booking's
(workflows/templates.py): `links.book` instead of `links.manage`, `request.window` instead of
`appointment.starts_local`. Custom templates on request triggers are checked against `request_sample_variables` at
`slotwise apply`, so a template that quotes a booking's time is refused there rather than failing at send time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from workflows.templates import _AnyOutputs, _present, describe_zone

REQUEST_SENT_SUBJECT = (
    "Please choose a time: {{ appointment.name }}{% if ticket.number %} (ticket #{{ ticket.number }}){% endif %}"
)
REQUEST_SENT_BODY = """<p>Hi {{ client.name }},</p>
<p>{{ tenant.name }} would like to find a time with you for your {{ appointment.name }}
({{ appointment.duration_minutes }} minutes){% if ticket.number %} about ticket #{{ ticket.number }}{% endif %}.</p>
<p class="actions"><a class="button" href="{{ links.book }}">Choose a time that suits you</a></p>
<p>{% if request.window %}The times offered are {{ request.window }}. {% endif %}The link works until
{{ request.expires_local }} ({{ request.time_zone }}).</p>
<p>If the button does not work, copy this address into your browser: {{ links.book }}</p>
<p>{{ tenant.name }}</p>"""

NO_RESPONSE_SUBJECT = (
    "Reminder: please choose a time for {{ appointment.name }}"
    "{% if ticket.number %} (ticket #{{ ticket.number }}){% endif %}"
)
NO_RESPONSE_BODY = """<p>Hi {{ client.name }},</p>
<p>We have not found a time for your {{ appointment.name }} with {{ tenant.name }} yet
({{ appointment.duration_minutes }} minutes){% if ticket.number %}, about ticket #{{ ticket.number }}{% endif %}.</p>
<p class="actions"><a class="button" href="{{ links.book }}">Choose a time that suits you</a></p>
<p>{% if request.window %}The times offered are {{ request.window }}. {% endif %}The link works until
{{ request.expires_local }} ({{ request.time_zone }}).</p>
<p>If the button does not work, copy this address into your browser: {{ links.book }}</p>
<p>{{ tenant.name }}</p>"""

REQUEST_TEMPLATES: dict[str, tuple[str, str]] = {
    "request_sent": (REQUEST_SENT_SUBJECT, REQUEST_SENT_BODY),
    "no_response": (NO_RESPONSE_SUBJECT, NO_RESPONSE_BODY),
    # request_created has no default email (the client has not been told anything yet); a custom one may be set.
    "request_created": (REQUEST_SENT_SUBJECT, REQUEST_SENT_BODY),
}

_DAY = "%A %-d %B %Y"
_MOMENT = "%A %-d %B %Y, %H:%M"


def request_variables(request: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, Any]:
    """What a request trigger's email template sees: the request snapshot its step carries and earlier outputs.

    Times are shown in the request's zone (the tenant's default: the client's own zone is not known until they open
    the page). `request.window` is nil when the request has no window of its own."""
    zone = ZoneInfo(str(request.get("time_zone") or "UTC"))
    starts = request.get("window_starts_at")
    ends = request.get("window_ends_at")
    window: str | None = None
    if starts and ends:
        window = (
            f"from {datetime.fromisoformat(starts).astimezone(zone).strftime(_DAY)} "
            f"to {datetime.fromisoformat(ends).astimezone(zone).strftime(_DAY)}"
        )
    elif starts:
        window = f"from {datetime.fromisoformat(starts).astimezone(zone).strftime(_DAY)}"
    elif ends:
        window = f"until {datetime.fromisoformat(ends).astimezone(zone).strftime(_DAY)}"
    ticket = request.get("ticket") or {}
    return {
        "tenant": {"name": request.get("tenant_name", "")},
        "appointment": {"name": request.get("type_name", ""), "duration_minutes": request.get("duration_minutes")},
        "client": dict(request.get("client") or {}),
        "ticket": {"number": _present(outputs.get("ticket_number") or ticket.get("number"))},
        "request": {
            "id": request.get("id", ""),
            "window": window,
            "expires_local": datetime.fromisoformat(str(request["expires_at"])).astimezone(zone).strftime(_MOMENT),
            "time_zone": describe_zone(str(zone), datetime.fromisoformat(str(request["expires_at"]))),
            "follow_up": int(request.get("follow_up") or 0),
        },
        "links": {"book": request.get("book_url", "")},
        "outputs": dict(outputs),
    }


_SAMPLE_REQUEST: dict[str, Any] = {
    "kind": "request",
    "id": "sample",
    "tenant_name": "Sample IT",
    "type_name": "Sample call",
    "duration_minutes": 30,
    "time_zone": "UTC",
    "window_starts_at": "2026-01-05T00:00:00+00:00",
    "window_ends_at": "2026-01-09T00:00:00+00:00",
    "expires_at": "2026-01-09T00:00:00+00:00",
    "client": {"name": "Casey Client", "email": "casey@client.example", "guests": []},
    "ticket": {"id": "1001", "number": "1001"},
    "book_url": "https://book.example/r/sample",
    "follow_up": 1,
}


def request_sample_variables() -> dict[str, Any]:
    """Variables of a sample request, for checking a request trigger's custom template at `apply`."""
    variables = request_variables(_SAMPLE_REQUEST, {})
    variables["outputs"] = _AnyOutputs()
    return variables
