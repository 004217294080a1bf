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
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from i18n import FALLBACK, translate, translations
from workflows.templates import _AnyOutputs, _present, describe_zone, email_locale, format_day, format_moment

_RV = {
    "client": "{{ client.name }}",
    "tenant": "{{ tenant.name }}",
    "name": "{{ appointment.name }}",
    "minutes": "{{ appointment.duration_minutes }}",
    "number": "{{ ticket.number }}",
    "window": "{{ request.window }}",
    "expires": "{{ request.expires_local }}",
    "zone": "{{ request.time_zone }}",
    "link": "{{ links.book }}",
}


@lru_cache(maxsize=8)
def request_emails(locale: str = FALLBACK) -> dict[str, tuple[str, str]]:
    """Subject and body (Liquid) of a request's default emails in the language of `locale` (the tenant's default:
    the client has not opened a page yet)."""
    _ = translations(locale).gettext
    v = _RV
    ticket = "{% if ticket.number %} " + _("(ticket #%(number)s)") % v + "{% endif %}"
    tail = "\n".join(
        (
            '<p class="actions"><a class="button" href="{{ links.book }}">'
            + _("Choose a time that suits you")
            + "</a></p>",
            "<p>{% if request.window %}"
            + _("The times offered are %(window)s.") % v
            + " {% endif %}"
            + _("The link works until %(expires)s (%(zone)s).") % v
            + "</p>",
            "<p>" + _("If the button does not work, copy this address into your browser: %(link)s") % v + "</p>",
            "<p>{{ tenant.name }}</p>",
        )
    )
    sent = "\n".join(
        (
            "<p>" + _("Hi %(client)s,") % v + "</p>",
            "<p>"
            + _("%(tenant)s would like to find a time with you for your %(name)s (%(minutes)s minutes).") % v
            + "{% if ticket.number %} "
            + _("It is about ticket #%(number)s.") % v
            + "{% endif %}</p>",
            tail,
        )
    )
    follow_up = "\n".join(
        (
            "<p>" + _("Hi %(client)s,") % v + "</p>",
            "<p>"
            + _("We have not found a time for your %(name)s with %(tenant)s yet (%(minutes)s minutes).") % v
            + "{% if ticket.number %} "
            + _("It is about ticket #%(number)s.") % v
            + "{% endif %}</p>",
            tail,
        )
    )
    sent_subject = _("Please choose a time: %(name)s") % v + ticket
    return {
        "request_sent": (sent_subject, sent),
        "no_response": (_("Reminder: please choose a time for %(name)s") % v + ticket, follow_up),
        # request_created has no default email (the client has not been told anything yet); a custom one may be set.
        "request_created": (sent_subject, sent),
    }


REQUEST_TEMPLATES: dict[str, tuple[str, str]] = request_emails()
"""The English defaults."""
REQUEST_SENT_SUBJECT, REQUEST_SENT_BODY = REQUEST_TEMPLATES["request_sent"]
NO_RESPONSE_SUBJECT, NO_RESPONSE_BODY = REQUEST_TEMPLATES["no_response"]


def request_variables(request: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, Any]:
    """What a request trigger's email template sees: the request snapshot its step carries and earlier outputs.

    Times are shown in the request's zone (the tenant's default: the client's own zone is not known until they open
    the page). `request.window` is nil when the request has no window of its own."""
    zone = ZoneInfo(str(request.get("time_zone") or "UTC"))
    locale = email_locale(request)
    starts = request.get("window_starts_at")
    ends = request.get("window_ends_at")

    def day(value: str) -> str:
        return format_day(datetime.fromisoformat(value), zone, locale)

    window: str | None = None
    if starts and ends:
        window = translate(locale, "from %(start)s to %(end)s") % {"start": day(starts), "end": day(ends)}
    elif starts:
        window = translate(locale, "from %(start)s") % {"start": day(starts)}
    elif ends:
        window = translate(locale, "until %(end)s") % {"end": day(ends)}
    ticket = request.get("ticket") or {}
    return {
        "tenant": {"name": request.get("tenant_name", "")},
        "appointment": {"name": request.get("type_name", ""), "duration_minutes": request.get("duration_minutes")},
        "client": dict(request.get("client") or {}),
        "ticket": {"number": _present(outputs.get("ticket_number") or ticket.get("number"))},
        "request": {
            "id": request.get("id", ""),
            "window": window,
            "expires_local": format_moment(datetime.fromisoformat(str(request["expires_at"])), zone, locale),
            "time_zone": describe_zone(str(zone), datetime.fromisoformat(str(request["expires_at"])), locale),
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
