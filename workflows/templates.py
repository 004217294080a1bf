"""Admin-authored email templates in Liquid (sandboxed, HTML auto-escaped) and the booking variables they see."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import css_inline
from babel.dates import format_datetime, get_timezone_location, get_timezone_name
from jinja2 import Environment as JinjaEnvironment
from liquid import BoundTemplate, Environment, StrictUndefined
from liquid.exceptions import LiquidError
from markupsafe import Markup

from i18n import FALLBACK, N_, babel_locale, language_of, translate, translate_plural, translations
from scheduling.errors import IntegrationRejected

# Liquid is the syntax MSP admins already write, and it is safe for untrusted authors: no attribute access to
# Python objects, no imports, no file system (this environment has no loader, so {% include %} fails).
_HTML = Environment(autoescape=True, undefined=StrictUndefined)
_TEXT = Environment(autoescape=False, undefined=StrictUndefined)
# Our own layout around every email is Jinja2 with autoescape, like our pages.
_JINJA = JinjaEnvironment(autoescape=True)

# Our default emails are Liquid templates like an admin's, built per language from the gettext catalog (i18n/).
# A message's %(placeholders)s stand for Liquid expressions, so translators move them, never write Liquid.
_V = {
    "appointment": "{{ appointment.name }}{% if host.phrase %} {{ host.phrase }}{% endif %}",
    "name": "{{ appointment.name }}",
    "when": "{{ appointment.starts_local }}",
    "strong_when": "<strong>{{ appointment.starts_local }}</strong>",
    "ends": "{{ appointment.ends_local }}",
    "minutes": "{{ appointment.duration_minutes }}",
    "previous": "{{ appointment.previous_starts_local }}",
    "client": "{{ client.name }}",
    "hosts": "{{ host.names }}",
    "host_phrase": "{% if host.phrase %} {{ host.phrase }}{% endif %}",
}


@lru_cache(maxsize=8)
def default_emails(locale: str = FALLBACK) -> dict[str, tuple[str, str]]:
    """Subject and body (Liquid) of each default email in the language of `locale`: client_scheduled,
    rescheduled, cancelled, before_appointment and reschedule_requested."""
    _ = translations(locale).gettext
    v = _V
    hi = "<p>" + _("Hi %(client)s,") % v + "</p>"
    when_row = (
        '<tr><td class="label">'
        + _("When")
        + '</td><td class="value">'
        + _("%(when)s to %(ends)s") % v
        + '<br>\n<span class="muted">{{ appointment.time_zone }}</span></td></tr>'
    )
    what_row = '<tr><td class="label">' + _("What") + '</td><td class="value">{{ appointment.name }}</td></tr>'
    ticket_row = (
        '{% if ticket.number %}<tr><td class="label">'
        + _("Ticket")
        + '</td><td class="value">#{{ ticket.number }}</td></tr>{% endif %}'
    )
    # Each optional row sits inside its own {% if %}, so a value that is missing (nil, see _present) leaves the
    # whole row out rather than printing a label with nothing after it.
    details = (
        '<table role="presentation" class="details" width="100%" cellpadding="0" cellspacing="0">\n'
        + what_row
        + "\n"
        + when_row
        + "\n"
        + '{% if host.names %}<tr><td class="label">{{ host.label }}</td><td class="value">{{ host.names }}</td></tr>'
        + "{% endif %}\n"
        + '{% if appointment.location %}<tr><td class="label">'
        + _("Where")
        + "</td>\n"
        + '<td class="value">{{ appointment.location }}</td></tr>{% endif %}\n'
        + ticket_row
        + "\n</table>"
    )
    join = (
        '{% if appointment.join_url %}<p class="actions"><a class="button" href="{{ appointment.join_url }}">'
        + _("Join the meeting")
        + "</a></p>\n"
        + '<p class="muted link">'
        + _("Or open this link:")
        + ' <a href="{{ appointment.join_url }}">{{ appointment.join_url }}</a></p>{% endif %}'
    )
    manage = (
        '<p class="manage">'
        + _("Need to change it?")
        + ' <a href="{{ links.manage }}">'
        + _("Reschedule or cancel")
        + "</a></p>"
    )
    confirmed = "\n".join(
        (
            "<h1>" + _("You're booked") + "</h1>",
            hi,
            "<p>" + _("Your %(appointment)s is confirmed for %(strong_when)s, %(minutes)s minutes.") % v + "</p>",
            details,
            join,
            manage,
        )
    )
    rescheduled = "\n".join(
        (
            "<h1>" + _("Your booking has moved") + "</h1>",
            hi,
            "<p>"
            + _("Your %(appointment)s has moved to %(strong_when)s.") % v
            + "{% if appointment.previous_starts_local %} "
            + _("It was %(previous)s.") % v
            + "{% endif %}</p>",
            details,
            join,
            manage,
        )
    )
    cancelled = "\n".join(
        (
            "<h1>" + _("Your booking is cancelled") + "</h1>",
            hi,
            "<p>" + _("Your %(appointment)s on %(strong_when)s is cancelled.") % v + "</p>",
            '<table role="presentation" class="details" width="100%" cellpadding="0" cellspacing="0">',
            what_row,
            when_row,
            '{% if appointment.cancel_reason %}<tr><td class="label">'
            + _("Reason")
            + '</td><td class="value">{{ appointment.cancel_reason }}</td></tr>{% endif %}',
            ticket_row,
            "</table>",
        )
    )
    reminder = "\n".join(
        (
            "<h1>" + _("Coming up: %(name)s") % v + "</h1>",
            hi,
            "<p>" + _("A reminder: your %(appointment)s is on %(strong_when)s, %(minutes)s minutes.") % v + "</p>",
            details,
            join,
            manage,
        )
    )
    pick_new = "\n".join(
        (
            "<h1>" + _("Please pick a new time") + "</h1>",
            hi,
            "<p>{% if host.names %}"
            + _("%(hosts)s asked us to find a new time for your %(name)s on %(strong_when)s.") % v
            + "{% else %}"
            + _("We were asked to find a new time for your %(name)s on %(strong_when)s.") % v
            + "{% endif %}</p>",
            '<p class="actions"><a class="button" href="{{ links.manage }}">' + _("Pick a new time") + "</a></p>",
            "<p>" + _("Your current time stays booked until you choose a new one.") + "</p>",
        )
    )
    return {
        "client_scheduled": (_("Confirmed: %(name)s on %(when)s") % v, confirmed),
        "rescheduled": (_("Rescheduled: %(name)s on %(when)s") % v, rescheduled),
        "cancelled": (_("Cancelled: %(name)s on %(when)s") % v, cancelled),
        "before_appointment": (_("Reminder: %(name)s on %(when)s") % v, reminder),
        "reschedule_requested": (_("Please pick a new time: %(name)s%(host_phrase)s") % v, pick_new),
    }


def default_email(trigger: str, locale: str = FALLBACK) -> tuple[str, str]:
    """The default email for a trigger, in the client's language: a client who cancels is not sent a
    "Confirmed" message; a trigger without an email of its own gets the confirmation."""
    emails = default_emails(language_of(locale) or FALLBACK)
    return emails.get(trigger, emails["client_scheduled"])


DEFAULT_SUBJECT, DEFAULT_BODY = default_emails()["client_scheduled"]
RESCHEDULED_SUBJECT, RESCHEDULED_BODY = default_emails()["rescheduled"]
CANCELLED_SUBJECT, CANCELLED_BODY = default_emails()["cancelled"]
REMINDER_SUBJECT, REMINDER_BODY = default_emails()["before_appointment"]
RESCHEDULE_REQUESTED_SUBJECT, RESCHEDULE_REQUESTED_BODY = default_emails()["reschedule_requested"]
"""What a host's "Send reschedule link" (Teams) emails the client (workflows/dispatch.py)."""

DEFAULT_TEMPLATES: dict[str, tuple[str, str]] = {
    trigger: default_emails()[trigger]
    for trigger in ("client_scheduled", "rescheduled", "cancelled", "before_appointment")
}
"""The English default email of each booking trigger. Every client-facing phrase of the default emails lives in
this module and in the catalogs (i18n/), so a translation replaces them in one place."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


_LOCAL = "%A %-d %B %Y, %H:%M"
"""The host's records (PSA notes, their calendar entry) are in English."""

_MOMENT_PATTERNS = {"en": "EEEE d MMMM y, HH:mm", "de": "EEEE, d. MMMM y, HH:mm"}
"""How an email names a moment: 'Monday 5 January 2026, 15:00', 'Montag, 5. Januar 2026, 15:00' (CLDR names
through Babel; emails use the 24-hour clock, which no reader misreads)."""


def format_moment(moment: datetime, zone: ZoneInfo, locale: str = FALLBACK) -> str:
    language = language_of(locale) or FALLBACK
    pattern = _MOMENT_PATTERNS.get(language, _MOMENT_PATTERNS[FALLBACK])
    return format_datetime(moment.astimezone(zone), pattern, tzinfo=zone, locale=babel_locale(locale))


def format_day(moment: datetime, zone: ZoneInfo, locale: str = FALLBACK) -> str:
    """'Monday 5 January 2026', 'Montag, 5. Januar 2026'."""
    language = language_of(locale) or FALLBACK
    pattern = _MOMENT_PATTERNS.get(language, _MOMENT_PATTERNS[FALLBACK]).removesuffix(", HH:mm")
    return format_datetime(moment.astimezone(zone), pattern, tzinfo=zone, locale=babel_locale(locale))


LOCATION_LABELS = {
    "teams": N_("Microsoft Teams meeting"),
    "phone": N_("Phone call"),
    "onsite": N_("On site"),
    "custom": N_("Details to follow"),
}
"""How each location kind reads to a person (English; translated where shown); a detail the tenant file gives
follows after a colon."""

LAYOUT_TEXT = {
    "footer": N_("Sent by %(name)s on behalf of %(host)s."),
    "footer_no_host": N_("Sent by %(name)s."),
    "powered": N_("Scheduling by Slotwise"),
    "privacy": N_("Privacy"),
    "terms": N_("Terms"),
}

_UTC_ZONES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Zulu", "Etc/Zulu", "Universal", "Etc/Universal"})


def _present(value: Any) -> str | None:
    """A value a template may test with `{% if %}`: its text, or nil when there is none. Liquid treats an empty
    string as true, so "" would print an empty "Ticket #", "Join:" or "Reason:" line."""
    text = "" if value is None else str(value)
    return text or None


def describe_location(kind: str, detail: str, locale: str = FALLBACK) -> str:
    """'Microsoft Teams meeting', 'Phone call: +1 555 0100', 'On site: 1 Main St': never a raw kind like `teams`;
    in the language of `locale` ('Microsoft Teams-Besprechung', 'Telefonat: ...')."""
    label = LOCATION_LABELS.get(kind)
    if label is None or kind == "custom":
        to_follow = LOCATION_LABELS["custom"]
        return detail or translate(locale, to_follow)
    label = translate(locale, label)
    return f"{label}: {detail}" if detail and detail != kind else label


def describe_zone(zone_name: str, at: datetime, locale: str = FALLBACK) -> str:
    """'Eastern Time (New York), UTC-05:00' (with a real minus sign, U+2212): CLDR's generic zone name and exemplar
    city (Babel), and the offset in effect at `at` (so a summer booking says -04:00). Zones CLDR cannot name
    (Etc/GMT+5) show the offset."""
    zone = ZoneInfo(zone_name)
    offset = at.astimezone(zone).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "\u2212"
    hours, rest = divmod(abs(minutes), 60)
    utc_offset = f"UTC{sign}{hours:02d}:{rest:02d}"
    if zone_name in _UTC_ZONES:
        return translate(locale, "Coordinated Universal Time (UTC)")
    if zone_name.startswith("Etc/"):
        return utc_offset
    names = "en_US" if language_of(locale) in ("", FALLBACK) else babel_locale(locale)
    try:
        generic = get_timezone_name(zone, "long", zone_variant="generic", locale=names)
        city = get_timezone_location(zone, locale=names, return_city=True)
    except (LookupError, ValueError):
        return f"{zone_name.replace('_', ' ')}, {utc_offset}"
    if not generic or "Unknown" in generic:
        return f"{city}, {utc_offset}"
    return f"{generic} ({city}), {utc_offset}"


def _join_names(names: list[str], locale: str = FALLBACK) -> str:
    """'Alice', 'Alice and Bob', 'Alice, Bob and Carol' ('Alice, Bob und Carol')."""
    names = [name for name in names if name]
    joiner = " " + translate(locale, "and") + " "
    if len(names) <= 2:
        return joiner.join(names)
    return f"{', '.join(names[:-1])}{joiner}{names[-1]}"


_WITH_WORDS = (" with ", " mit ")


def _host_phrase(type_name: str, names: list[str], locale: str = FALLBACK) -> str | None:
    """'with Alice Adams' after the type's name, unless that name already says who it is with ("Intro with Alice"
    would read "Intro with Alice with Alice Adams"). A panel reads 'with Alice Adams and Bob Brown'; a round robin
    names the member who was picked."""
    if not names or any(word in f" {type_name.lower()} " for word in _WITH_WORDS):
        return None
    return translate(locale, "with %(names)s") % {"names": _join_names(names, locale)}


def answer_rows(booking: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The client's answers as (label, answer), in the order the type asks its questions; an answer to a question
    the type no longer has keeps its key as the label. Empty answers are left out."""
    answers = dict((booking.get("client") or {}).get("answers") or {})
    rows: list[tuple[str, str]] = []
    for question in booking.get("questions") or ():
        key = str(question.get("key", ""))
        if key in answers:
            value = str(answers.pop(key) or "")
            if value:
                rows.append((str(question.get("label") or key), value))
    rows.extend((str(key), str(value)) for key, value in answers.items() if value)
    return rows


def email_locale(snapshot: Mapping[str, Any]) -> str:
    """The language of a booking's or request's emails: the client's (kept with the booking), else English."""
    client = snapshot.get("client") or {}
    return str(client.get("locale") or snapshot.get("locale") or FALLBACK)


def snapshot_variables(booking: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, Any]:
    """What a workflow's email template sees: the booking snapshot its step carries, and earlier steps' outputs.

    Times are shown in the client's zone, and `appointment.time_zone` reads as a person would say it ("Eastern
    Time (New York), UTC-05:00"; the IANA name is `appointment.time_zone_id`); `appointment.location` likewise
    ("Microsoft Teams meeting", never `teams`). `appointment.previous_starts_local` is set for a reschedule and
    `appointment.cancel_reason` for a cancellation; both are nil otherwise (so `{% if %}` leaves their lines
    out), and one template can serve all triggers. Missing outputs (ticket number, join link) are nil too.
    """
    client = booking["client"]
    locale = email_locale(booking)
    zone = ZoneInfo(client["time_zone"])
    starts = datetime.fromisoformat(booking["starts_at"])
    ends = datetime.fromisoformat(booking["ends_at"])
    previous = booking.get("previous_starts_at")
    hosts = [str(host.get("name", "")) for host in booking.get("hosts", []) if host.get("name")]
    kind = str(booking.get("location_kind") or "")
    raw_location = str(booking.get("location", "") or "")
    location = describe_location(kind or raw_location, "" if raw_location == kind else raw_location, locale)
    branding = dict(booking.get("branding") or {})
    display_name = str(branding.get("display_name") or booking.get("tenant_name", ""))
    return {
        "tenant": {"name": display_name},
        "brand": {
            "name": display_name,
            "logo_url": _present(branding.get("logo_url")),
            "accent": _present(branding.get("accent_colour") or branding.get("accent_color") or branding.get("accent")),
            "privacy_url": _present(branding.get("privacy_url")),
            "terms_url": _present(branding.get("terms_url")),
        },
        "appointment": {
            "id": booking["id"],
            "name": booking["type_name"],
            "starts_at": booking["starts_at"],
            "ends_at": booking["ends_at"],
            "starts_local": format_moment(starts, zone, locale),
            "ends_local": ends.astimezone(zone).strftime("%H:%M"),
            "time_zone": describe_zone(client["time_zone"], starts, locale),
            "time_zone_id": client["time_zone"],
            "duration_minutes": int((ends - starts) / timedelta(minutes=1)),
            "location": _present(location),
            "status": booking.get("status", ""),
            "cancel_reason": _present(booking.get("cancel_reason")),
            "join_url": _present(outputs.get("join_url")),
            "previous_starts_local": format_moment(datetime.fromisoformat(previous), zone, locale)
            if previous
            else None,
        },
        "client": dict(client),
        "answers": [{"label": label, "value": value} for label, value in answer_rows(booking)],
        "host": {
            "names": _join_names(hosts, locale),
            "list": hosts,
            "label": translate_plural(locale, "Host", "Hosts", len(hosts)),
            "phrase": _host_phrase(str(booking["type_name"]), hosts, locale),
        },
        "ticket": {"number": _present(outputs.get("ticket_number"))},
        "opportunity": {"id": _present(outputs.get("opportunity_id"))},
        "links": {"manage": booking.get("manage_url", "")},
        "outputs": dict(outputs),
    }


class _AnyOutputs(dict[str, Any]):
    """Earlier steps' outputs depend on the workflow, so any `outputs.x` is accepted when a template is checked."""

    def __missing__(self, key: str) -> str:
        return ""


SAMPLE_BOOKING: dict[str, Any] = {
    "id": "sample",
    "tenant_name": "Sample IT",
    "type_name": "Sample call",
    "starts_at": "2026-01-05T15:00:00+00:00",
    "ends_at": "2026-01-05T15:30:00+00:00",
    "previous_starts_at": "2026-01-04T15:00:00+00:00",
    "status": "confirmed",
    "cancel_reason": "",
    "sequence": 0,
    "location_kind": "teams",
    "location": "teams",
    "host_mode": "user",
    "hosts": [{"name": "Sam Host", "email": "sam@sample-it.example"}],
    "questions": [],
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
"""A booking to render templates against: `slotwise apply` checks custom templates with it, `slotwise preview`
fills it in with a real type."""


def template_problem(subject_template: str, body_template: str, sample: Mapping[str, Any] | None = None) -> str | None:
    """Why this email template would fail at send time (a Liquid syntax error, or a variable that does not exist),
    found by rendering it once against a sample booking (or the given sample variables, e.g. a scheduling
    request's); None when it renders."""
    variables = dict(sample) if sample is not None else snapshot_variables(SAMPLE_BOOKING, {})
    variables["outputs"] = _AnyOutputs()
    try:
        render_email(subject_template, body_template, variables)
    except IntegrationRejected as exc:
        cause = str(exc.__cause__ or exc).strip()
        # Liquid adds a picture of the offending line; the first line says what is wrong.
        return cause.splitlines()[0] if cause else "the template could not be rendered"
    return None


@lru_cache(maxsize=256)
def _parsed(source: str, *, html: bool) -> BoundTemplate:
    """A template parsed once per process: every booking renders the same few, and parsing was a sixth of the
    CPU an email costs (bench_drain --vendor-down). A template that fails to parse raises and is not cached."""
    return (_HTML if html else _TEXT).from_string(source)


def render_email(subject_template: str, body_template: str, variables: Mapping[str, Any]) -> RenderedEmail:
    """Render an email's own content (no layout); a broken template is a configuration problem, so it fails the
    step without retries."""
    try:
        subject = _parsed(subject_template, html=False).render(**variables)
        body = _parsed(body_template, html=True).render(**variables)
    except LiquidError as exc:
        raise IntegrationRejected(f"The email template could not be rendered: {exc}") from exc
    return RenderedEmail(subject=" ".join(subject.split()), html=body, text=html_to_text(body))


_DEFAULT_ACCENT = "#2456a6"
_HEX_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")


def _luminance(colour: str) -> float:
    digits = colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(char * 2 for char in digits)
    channels = [int(digits[index : index + 2], 16) / 255 for index in (0, 2, 4)]
    linear = [value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4 for value in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def email_accent(colour: str) -> str:
    """The tenant's accent when it is a hex colour that white button text and links on white can be read against
    (WCAG 2.x AA, 4.5:1); otherwise our default. Anything else could also smuggle CSS into the style block."""
    if not _HEX_COLOUR.match(colour):
        return _DEFAULT_ACCENT
    return colour if 1.05 / (_luminance(colour) + 0.05) >= 4.5 else _DEFAULT_ACCENT


# Table-based and narrow (600 px) because Outlook for Windows renders with Word's engine: no flexbox, no grid,
# and only inline styles survive Gmail's clipping, so css-inline copies the rules below onto every element and
# keeps only the media query (phones) as a <style> block.
_STYLES = """
body { margin: 0; padding: 0; background: #f3f4f6; color: #1f2937;
  font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; font-size: 16px; line-height: 1.5; }
.wrapper { background: #f3f4f6; padding: 24px 8px; }
.container { max-width: 600px; width: 100%; background: #ffffff; border-radius: 8px; border: 1px solid #e5e7eb; }
.header { padding: 20px 32px; border-bottom: 1px solid #e5e7eb; }
.brand { font-size: 18px; font-weight: bold; color: #111827; }
.logo { display: block; max-height: 40px; border: 0; }
.content { padding: 24px 32px 8px 32px; }
.content h1 { font-size: 22px; line-height: 1.3; margin: 0 0 16px 0; color: #111827; }
.content p { margin: 0 0 16px 0; }
.details { border-collapse: collapse; margin: 8px 0 20px 0; background: #f9fafb; border-radius: 6px; }
.details td { padding: 10px 14px; vertical-align: top; border-bottom: 1px solid #e5e7eb; }
.details td.label { width: 96px; font-weight: bold; color: #4b5563; white-space: nowrap; }
.muted { color: #6b7280; font-size: 14px; }
.link { word-break: break-all; }
.actions { margin: 8px 0 20px 0; }
.button { display: inline-block; padding: 12px 20px; border-radius: 6px; color: #ffffff; font-weight: bold;
  text-decoration: none; }
.manage { color: #374151; }
.footer { padding: 16px 32px 24px 32px; color: #6b7280; font-size: 13px; }
@media only screen and (max-width: 620px) {
  .wrapper { padding: 0 !important; }
  .container { border-radius: 0 !important; border-left: 0 !important; border-right: 0 !important; }
  .header, .content, .footer { padding-left: 16px !important; padding-right: 16px !important; }
  .details td { display: block !important; width: auto !important; border-bottom: 0 !important; }
  .details td.label { padding-bottom: 0 !important; }
  .button { display: block !important; text-align: center !important; }
}
"""

_LAYOUT = _JINJA.from_string(
    """<!DOCTYPE html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="x-apple-disable-message-reformatting">
<title>{{ subject }}</title>
<style>{{ styles }}
a { color: {{ accent }}; }
.header { border-top: 4px solid {{ accent }}; }
.button { background: {{ accent }}; color: #ffffff; }
</style>
</head>
<body>
<table role="presentation" class="wrapper" width="100%" cellpadding="0" cellspacing="0">
<tr><td align="center">
<table role="presentation" class="container" width="600" cellpadding="0" cellspacing="0">
<tr><td class="header">
{%- if logo_url %}<img class="logo" src="{{ logo_url }}" alt="{{ brand }}" height="40">
{%- else %}<span class="brand">{{ brand }}</span>{% endif -%}
</td></tr>
<tr><td class="content">
{{ body }}
</td></tr>
<tr><td class="footer">{{ footer }}<br>{{ powered }}
{%- if privacy_url %} · <a href="{{ privacy_url }}">{{ privacy }}</a>{% endif %}
{%- if terms_url %} · <a href="{{ terms_url }}">{{ terms }}</a>{% endif %}</td></tr>
</table>
</td></tr>
</table>
</body>
</html>
"""
)


def _https(value: object) -> str:
    """Only https URLs from the tenant's branding reach an email: mail clients block http images, and any other
    scheme (javascript:, data:) has no business in a client's inbox."""
    text = str(value or "")
    return text if text.startswith("https://") else ""


_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def compose_email(
    subject_template: str, body_template: str, variables: Mapping[str, Any], locale: str = FALLBACK
) -> RenderedEmail:
    """The email people receive: the template's content inside the tenant's branded, responsive layout (its words
    in the language of `locale`), CSS inlined (css-inline) for mail clients that drop <style>, and a plain-text part
    that keeps every link."""
    content = render_email(subject_template, body_template, variables)
    brand = variables.get("brand") or {}
    name = str(brand.get("name") or (variables.get("tenant") or {}).get("name") or "")
    accent = str(brand.get("accent") or "")
    logo = str(brand.get("logo_url") or "")
    host_names = str((variables.get("host") or {}).get("names") or "")
    words = {key: translate(locale, message) for key, message in LAYOUT_TEXT.items()}
    footer = (
        words["footer"] % {"name": name, "host": host_names} if host_names else words["footer_no_host"] % {"name": name}
    )
    markup = _LAYOUT.render(
        subject=content.subject,
        styles=_STYLES,
        accent=email_accent(accent),
        logo_url=_https(logo),
        brand=name,
        body=Markup(content.html),  # noqa: S704 (rendered by the autoescaping Liquid environment above)
        footer=footer,
        lang=language_of(locale) or FALLBACK,
        powered=words["powered"],
        privacy_url=_https(brand.get("privacy_url")),
        terms_url=_https(brand.get("terms_url")),
        privacy=words["privacy"],
        terms=words["terms"],
    )
    inlined = _INLINER.inline(markup)
    return RenderedEmail(subject=content.subject, html=inlined, text=html_to_text(inlined))


_BLOCKS = frozenset({"p", "div", "tr", "table", "h1", "h2", "h3", "h4", "ul", "ol", "li", "blockquote", "br", "hr"})
_SKIPPED = frozenset({"head", "style", "script", "title"})
_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "table"})


class _TextWriter(HTMLParser):
    """HTML to readable text: blocks on their own lines, a label cell followed by ': ', and every link kept as
    'text (url)' (or the bare url when that is its text), so a client reading the text part can still click it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skipping = 0
        self._links: list[str | None] = []
        self._link_text: list[str] = []
        self._label_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skipping += 1
            return
        attributes = dict(attrs)
        if tag in _BLOCKS:
            self.out.append("\n\n" if tag in _PARAGRAPHS else "\n")
        elif tag == "td":
            self._label_cell = "label" in (attributes.get("class") or "").split()
        elif tag == "a":
            self._links.append(attributes.get("href"))
            self._link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skipping = max(0, self._skipping - 1)
            return
        if tag in _PARAGRAPHS:
            self.out.append("\n\n")
        elif tag == "td":
            self.out.append(": " if self._label_cell else " ")
            self._label_cell = False
        elif tag == "a" and self._links:
            href = (self._links.pop() or "").strip()
            text = " ".join("".join(self._link_text).split())
            if href and not href.startswith("#") and href != text and f"mailto:{text}" != href:
                self.out.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        # As in a browser, line breaks in the markup are spaces; only blocks and <br> break lines.
        data = re.sub(r"\s+", " ", data)
        if self._links:
            self._link_text.append(data)
        self.out.append(data)


def html_to_text(markup: str) -> str:
    """A readable plain-text alternative: paragraphs become blank lines, table rows lines, labels 'Label: value',
    links 'text (url)'; entities are decoded."""
    writer = _TextWriter()
    writer.feed(markup)
    writer.close()
    lines = [" ".join(line.split()) for line in "".join(writer.out).splitlines()]
    lines = [line.replace(" :", ":") if line.endswith(" :") else line for line in lines]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def describe_booking_for_host(booking: Mapping[str, Any]) -> tuple[str, str]:
    """What the host's calendar entry and PSA records say about a booking, as (text, html): the client, their
    answers under the questions' labels, the guests, notes and the booking's manage link. Values are escaped in
    the HTML; the text is for PSA notes, which store plain text."""
    client = booking["client"]
    zone = ZoneInfo(client["time_zone"])
    starts = datetime.fromisoformat(booking["starts_at"])
    ends = datetime.fromisoformat(booking["ends_at"])
    when = (
        f"{starts.astimezone(zone).strftime(_LOCAL)} to {ends.astimezone(zone).strftime('%H:%M')} "
        f"({describe_zone(client['time_zone'], starts)}, the client's zone)"
    )
    rows: list[tuple[str, str]] = [
        ("Booked through Slotwise", str(booking["type_name"])),
        ("When", when),
        ("Client", f"{client['name']} <{client['email']}>"),
    ]
    if client.get("guests"):
        rows.append(("Guests", ", ".join(str(guest) for guest in client["guests"])))
    rows.extend(answer_rows(booking))
    if client.get("notes"):
        rows.append(("Notes", str(client["notes"])))
    manage = str(booking.get("manage_url") or "")
    if manage:
        rows.append(("Manage booking", manage))
    text = "\n".join(f"{label}: {value}" for label, value in rows)
    cells = "".join(
        f"<tr><td><b>{html.escape(label)}</b></td><td>"
        + (
            f'<a href="{html.escape(value)}">{html.escape(value)}</a>'
            if label == "Manage booking"
            else html.escape(value).replace("\n", "<br>")
        )
        + "</td></tr>"
        for label, value in rows
    )
    return text, f"<table>{cells}</table>"
