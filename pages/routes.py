"""Booking pages (server-rendered HTML) and their JSON API: slots, bookings, manage links, scheduling requests."""

from __future__ import annotations

import functools
import json
import logging
import math
import zoneinfo
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import icalendar
import jinja2
from aiohttp import web

from i18n import FALLBACK, LANGUAGE_NAMES, N_, SUPPORTED, language_of, negotiate_locale, translate, translations
from i18n.messages import translate_message
from pages.branding import DEFAULT_BRANDING, Branding, branding_from, initials
from pages.links import LinkSigner, ManageLinks, csrf_matches, new_csrf_token
from pages.locale import Formatter
from pages.photos import PHOTO_ROUTE, HostPhotoReader, photo_handler, photo_path
from scheduling.availability import epoch_ceil, from_epoch, window_ends
from scheduling.errors import (
    BookingChanged,
    IdempotencyKeyReused,
    IntegrationError,
    IntegrationRejected,
    IntegrationUnavailable,
    InvalidRequest,
    LinkExpired,
    LinkInvalid,
    NotFound,
    ServiceUnavailable,
    SlotUnavailable,
    SlotwiseError,
)
from scheduling.model import (
    Booking,
    BookingStatus,
    BookingTarget,
    ClientDetails,
    Location,
    LocationKind,
    PsaRef,
    SchedulingRequest,
    Slot,
)
from scheduling.ports import AgentKeys, Clock, PsaClient, RateLimiter, RequestStore, TenantCatalog
from scheduling.service import Scheduler, check_day, effective_rules, parse_time_zone, validate_email

log = logging.getLogger("slotwise.pages")
CSRF_COOKIE = "sw_csrf"
STATIC_DIR = Path(__file__).parent / "static"
DAYS_SHOWN = 14


@dataclass(frozen=True)
class PagesContext:
    catalog: TenantCatalog
    scheduler: Scheduler
    signer: LinkSigner
    ip_limiter: RateLimiter
    page_limiter: RateLimiter
    agent_keys: AgentKeys
    requests: RequestStore
    clock: Clock
    base_url: str
    manage_links: ManageLinks
    request_link_days: int
    templates: jinja2.Environment
    tenant_psa: TenantPsa | None = None
    """The tenant's PSA, for resolving the ticket a scheduling request names; None (or an answer of None) means the
    tenant has no PSA connected, and the ticket is then kept as a label."""
    tenant_looks: TenantLooks | None = None
    """Branding and host photos; None: every tenant looks like Slotwise's default."""
    join_url_of: JoinUrlOf | None = None
    """The online meeting's join link of a booking, once a workflow step made one; None: never shown."""
    host_photos: HostPhotoReader | None = None
    """Hosts' stored Microsoft 365 photos, served at /photos/{tenant}/{user}; None: no such route."""


@dataclass(frozen=True)
class TenantLook:
    """How a tenant's pages look: its branding and its people's photo URLs (by user id)."""

    branding: Branding = DEFAULT_BRANDING
    photos: Mapping[str, str] = field(default_factory=dict)
    teams: Mapping[str, str] = field(default_factory=dict)
    """Team names by team id, so a round-robin page names the team rather than whoever happens to be free."""
    locale: str = ""
    """The tenant file's `tenant.locale`: the language of clients whose browser asks for none we have."""


TenantLooks = Callable[[str], Awaitable[TenantLook]]
"""A tenant's look by tenant slug (the tenant file's `branding` section, users' `photo_url`, else their stored
Microsoft 365 photo)."""


class LookSource(Protocol):
    """Where a tenant's look is stored (storage's SqlTenantLooks): plain data, turned into a TenantLook here."""

    async def look(self, tenant_slug: str) -> Mapping[str, Any]: ...


def tenant_looks_of(source: LookSource) -> TenantLooks:
    async def looks(tenant_slug: str) -> TenantLook:
        stored = await source.look(tenant_slug)
        return TenantLook(
            branding=branding_from(stored.get("branding")),
            # A photo_url from the tenant file wins over the stored Microsoft 365 photo.
            photos={
                **{
                    user_id: photo_path(tenant_slug, user_id, digest)
                    for user_id, digest in (stored.get("photo_digests") or {}).items()
                },
                **(stored.get("photos") or {}),
            },
            teams=dict(stored.get("teams") or {}),
            locale=str(stored.get("locale") or ""),
        )

    return looks


JoinUrlOf = Callable[[str, str], Awaitable[str]]
"""The join link (or "") of a booking, by tenant id and booking id."""

TenantPsa = Callable[[str], Awaitable[PsaClient | None]]
"""The PSA adapter of a tenant (by tenant id), or None when the tenant has not connected one."""

PAGES = web.AppKey("pages", PagesContext)


def build_templates(language: str = FALLBACK) -> jinja2.Environment:
    """The pages' templates in one language: `{{ _("...") }}` and `ngettext` come from that language's gettext
    catalog (jinja2.ext.i18n, new-style: placeholders are filled and escaped by the call)."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("pages", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    catalog = translations(language)
    environment.install_gettext_translations(catalog, newstyle=True)  # type: ignore[attr-defined]
    environment.filters["qs"] = _query_string
    environment.globals["place"] = lambda location: describe_place(catalog.gettext, location)
    environment.globals["lang"] = language
    return environment


_LOCALIZED: dict[tuple[int, str], jinja2.Environment] = {}


def _templates_for(ctx: PagesContext, locale: str) -> jinja2.Environment:
    """The context's templates for English; an environment per other language, built once per process."""
    language = language_of(locale)
    if language not in SUPPORTED or language == FALLBACK:
        return ctx.templates
    key = (id(ctx.templates), language)
    found = _LOCALIZED.get(key)
    if found is None:
        found = _LOCALIZED[key] = build_templates(language)
    return found


def describe_place(_: Callable[[str], str], location: Location) -> str:
    """Where the meeting is, in the page's language: 'Microsoft Teams meeting', 'Phone call: +1 555 0100'; a custom
    location is the tenant's own text."""
    if location.kind is LocationKind.TEAMS:
        return _("Microsoft Teams meeting")
    if location.kind is LocationKind.PHONE:
        return _("Phone call") + (f": {location.detail}" if location.detail else "")
    if location.kind is LocationKind.ONSITE:
        return _("On site") + (f": {location.detail}" if location.detail else "")
    return location.detail or _("Details to follow")


def _chosen_language(request: web.Request, form: Mapping[str, Any] | None = None) -> str:
    """The language picked with the page's switch ('de', 'en'): in the query of a link or the form of a post."""
    chosen = language_of(request.query.get("lang") or str((form or {}).get("lang", "")))
    return chosen if chosen in SUPPORTED else ""


def _page_locale(request: web.Request, default: str = "", form: Mapping[str, Any] | None = None) -> str:
    """The page's locale: the switch, else Accept-Language, else `default` (the booking's or tenant's), else en."""
    return negotiate_locale(request.headers.get("Accept-Language", ""), _chosen_language(request, form), default)


def _lang_of(request: web.Request, form: Mapping[str, Any]) -> dict[str, str]:
    chosen = _chosen_language(request, form)
    return {"lang": chosen} if chosen else {}


def _query_string(params: Mapping[str, str], keep: Mapping[str, str]) -> str:
    """Query string for page links: `keep` (zone, clock, reschedule action) so links stay in the client's choices;
    `params` win over it."""
    values = {key: value for key, value in {**keep, **params}.items() if value}
    return urlencode(values)


def _clock_of(form: Mapping[str, Any]) -> dict[str, str]:
    """The 12/24-hour choice a form carried, for the page it redirects to (only the two values the pages make)."""
    clock = str(form.get("clock", ""))
    return {"clock": clock} if clock in ("12", "24") else {}


def _chosen_clock(request: web.Request, form: Mapping[str, Any] | None = None) -> str:
    """The 12/24-hour choice made on the page: in the query of a link, or in the form of a post; "" for none."""
    clock = request.query.get("clock") or str((form or {}).get("clock", ""))
    return clock if clock in ("12", "24") else ""


def _formatter(
    request: web.Request, zone: ZoneInfo, form: Mapping[str, Any] | None = None, locale: str = ""
) -> Formatter:
    clock = _chosen_clock(request, form)
    return Formatter.for_client(zone, request.headers.get("Accept-Language", "")[:500], clock, locale or "en")


# ---------------------------------------------------------------- errors


_STATUS: list[tuple[type[SlotwiseError], int, str]] = [
    (SlotUnavailable, 409, "slot_unavailable"),
    (BookingChanged, 409, "booking_changed"),
    (IdempotencyKeyReused, 422, "idempotency_key_reused"),
    (ServiceUnavailable, 503, "service_unavailable"),
    (LinkExpired, 410, "link_expired"),
    (LinkInvalid, 404, "link_invalid"),
    (NotFound, 404, "not_found"),
    (InvalidRequest, 400, "invalid_request"),
]


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _wants_json(request: web.Request) -> bool:
    path = request.path
    if path.startswith("/api/") or path.endswith(("/slots", "/explain")):
        return True
    if request.method == "POST":
        # Only the no-JavaScript form posts get pages; every other POST is an API call and gets JSON errors.
        return request.content_type not in _FORM_TYPES
    return "application/json" in request.headers.get("Accept", "") and "text/html" not in request.headers.get(
        "Accept", ""
    )


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn our errors into specific 4xx answers, as JSON for the API and as a page for people."""
    try:
        # A NUL in the path or query would reach the database (PostgreSQL refuses it with an error) or zoneinfo.
        check_text(request.path, "the address")
        for name, value in request.query.items():
            check_text(name, "a query parameter")
            check_text(value, name)
        return await handler(request)
    except SlotwiseError as exc:
        status, code = next(((s, c) for kind, s, c in _STATUS if isinstance(exc, kind)), (400, "invalid_request"))
        extra: dict[str, Any] = {}
        if isinstance(exc, InvalidRequest) and exc.field:
            extra["field"] = exc.field
        if isinstance(exc, SlotUnavailable):
            extra["next_free"] = [moment.isoformat() for moment in exc.next_free]
        response = _error_response(request, status, code, str(exc), extra)
        if isinstance(exc, ServiceUnavailable):
            response.headers["Retry-After"] = str(exc.retry_after_seconds)
        return response
    except web.HTTPException as exc:
        if exc.status >= 400:
            # JSON for the API; for people a styled page that says what happened and what to do next.
            response = _error_response(
                request, exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason, {}
            )
            # Keep what the answer means beyond its body: Allow on a 405 (RFC 9110 §15.5.6), Retry-After on 429/503.
            for name in ("Allow", "Retry-After"):
                if name in exc.headers:
                    response.headers[name] = exc.headers[name]
            return response
        raise


def _error_response(request: web.Request, status: int, code: str, message: str, extra: dict[str, Any]) -> web.Response:
    if _wants_json(request):
        return web.json_response(error_body(code, message, **extra), status=status)
    title, next_step = _ERROR_PAGES.get(status, _ERROR_PAGES[400])
    back = _page_of(request.path)
    locale = _page_locale(request)
    return _html(
        request,
        "error.html",
        status=status,
        locale=locale,
        title=translate(locale, title),
        message=translate_message(locale, message),
        next_step=translate(locale, next_step),
        # A link back to the page the form was on; none when this page is that page (a GET of an expired link).
        back=back if back != request.path or request.method != "GET" else None,
    )


_ERROR_PAGES: dict[int, tuple[str, str]] = {
    400: (
        N_("Something needs attention"),
        N_("Nothing was booked or changed. Go back, check what you entered and try again."),
    ),
    403: (
        N_("Your session expired"),
        N_("Nothing was booked or changed. Go back to the page, check your details and send the form again."),
    ),
    404: (
        N_("We couldn't find that page"),
        N_("Check the link with the person who sent it, or ask them for a new one."),
    ),
    405: (N_("That didn't work"), N_("Go back to the page and use its buttons and links.")),
    409: (N_("That time is no longer available"), N_("Go back to the page to see the times that are still free.")),
    410: (
        N_("This link has expired"),
        N_(
            "Ask the person who sent it for a new link. If you still need a meeting, book again from their "
            "booking page."
        ),
    ),
    413: (N_("That was too much to send"), N_("Go back, shorten what you entered and try again.")),
    415: (N_("That didn't work"), N_("Go back to the page and send the form again.")),
    422: (N_("Something needs attention"), N_("Go back, check what you entered and try again.")),
    429: (N_("Too many attempts"), N_("Nothing was booked or changed. Wait a minute, then go back and try again.")),
    503: (N_("We can't take bookings right now"), N_("Nothing was booked or changed. Wait a minute, then try again.")),
}
"""Title and next step of each error page a person can meet; the specific message sits between them."""


def _page_of(path: str) -> str:
    """The page a form on `path` was posted from: /book/t/x/bookings → /book/t/x, /m/token/cancel → /m/token."""
    for suffix in ("/bookings", "/cancel", "/reschedule", "/slots"):
        if path.endswith(suffix):
            return path.removesuffix(suffix)
    return path


_PRIVACY = (
    N_(
        "Slotwise stores what you enter to book a meeting (your name, email address, time zone and answers) and shares "
        "it with the person you booked and their organisation's systems (their PSA, Microsoft 365 calendar and email) "
        "so the meeting can happen."
    ),
    N_(
        "Your booking links are signed and expire. Your details are kept for as long as the organisation you booked "
        "with keeps its records; ask them to correct or delete them."
    ),
    N_(
        "For the Microsoft Teams app, Slotwise reads your Teams user id and tenant id to find your Slotwise account "
        "and keeps the chat reference so it can send you booking cards. It does not read your messages to other "
        "people."
    ),
)
_TERMS = (
    N_(
        "Slotwise is provided to organisations that schedule meetings with their clients. By booking you agree that "
        "the organisation may contact you about the meeting."
    ),
    "Use booking pages only to book real meetings; automated or abusive use is rate limited and refused.",
)


async def privacy_page(request: web.Request) -> web.Response:
    locale = _page_locale(request)
    return _html(request, "policy.html", locale=locale, title=translate(locale, "Privacy"), paragraphs=_PRIVACY)


async def terms_page(request: web.Request) -> web.Response:
    locale = _page_locale(request)
    return _html(request, "policy.html", locale=locale, title=translate(locale, "Terms of use"), paragraphs=_TERMS)


# ---------------------------------------------------------------- helpers


def _zone_from(request: web.Request, default: str) -> tuple[str, ZoneInfo]:
    name = request.query.get("tz") or default
    return name, parse_time_zone(name)


def _parse_day(value: str, field: str) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidRequest(f"'{value[:20]}' is not a date; use YYYY-MM-DD", field=field) from exc
    return check_day(day, field)


def parse_instant(value: Any, field: str = "start") -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidRequest("Give the time as ISO-8601 with an offset, e.g. 2026-11-24T15:00:00+00:00", field=field)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest(f"'{value}' is not an ISO-8601 time", field=field) from exc
    if moment.tzinfo is None:
        raise InvalidRequest("The time needs a UTC offset, e.g. 2026-11-24T15:00:00+00:00", field=field)
    # The wall date is checked before converting: year 1 at +01:00 would overflow on the way to UTC.
    check_day(moment.date(), field)
    return moment.astimezone(UTC)


MAX_JSON_DEPTH = 16
"""No request of ours nests deeper; refusing deeper bodies keeps a 5,000-level array from exhausting the stack."""


def check_text(value: str, field: str) -> str:
    """Text a person could have typed: no NUL (PostgreSQL cannot store it) and no lone surrogate (not Unicode)."""
    if "\x00" in value:
        raise InvalidRequest(f"'{field[:40]}' contains a NUL character; remove it and try again", field=field[:40])
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"'{field[:40]}' contains characters that are not valid text", field=field[:40]) from None
    return value


def check_clean(value: Any, field: str = "body", depth: int = 0) -> None:
    """Walk a parsed JSON document: every key and string passes check_text, and nesting stays within bounds."""
    if depth > MAX_JSON_DEPTH:
        raise InvalidRequest(f"The request body is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
    if isinstance(value, str):
        check_text(value, field)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, "a field name")
            check_clean(item, key, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_clean(item, field, depth + 1)


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest("The request body is not valid JSON") from exc
    except RecursionError as exc:
        raise InvalidRequest(f"The request body is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    check_clean(body)
    return body


async def read_form(request: web.Request) -> Mapping[str, Any]:
    """The posted form, every value checked like JSON text; a malformed multipart body is a 400, not a crash."""
    try:
        form = await request.post()
    except (ValueError, AssertionError, UnicodeDecodeError) as exc:
        # aiohttp raises these for multipart/form-data without a boundary or with broken parts.
        raise InvalidRequest("The form could not be read; reload the page and try again") from exc
    for key, value in form.items():
        check_text(key, "a field name")
        if isinstance(value, str):
            check_text(value, key)
    return form


def idempotency_key_of(request: web.Request) -> str | None:
    """The Idempotency-Key header: visible ASCII only (it names a request; it is not free text)."""
    key = request.headers.get("Idempotency-Key")
    if key is None or key == "":
        return None
    if len(key) > 200 or not all("!" <= char <= "~" for char in key):
        raise InvalidRequest(
            "Idempotency-Key must be 1 to 200 visible ASCII characters (a UUID works well)", field="Idempotency-Key"
        )
    return key


def _slot_json(slot: Slot, zone: ZoneInfo) -> dict[str, str]:
    return {"start": slot.starts_at.astimezone(zone).isoformat(), "end": slot.ends_at.astimezone(zone).isoformat()}


async def _admit(request: web.Request, page_key: str) -> None:
    """Rate-limit a public POST per client IP and per page; a limiter failure refuses (fail closed)."""
    ctx = request.app[PAGES]
    ip = request.remote or "unknown"
    try:
        allowed = await ctx.ip_limiter.admit(f"ip:{ip}") and await ctx.page_limiter.admit(f"page:{page_key}")
    except Exception:
        log.exception("rate limiter failed; refusing the request")
        raise web.HTTPServiceUnavailable(
            text="We can't accept bookings right now. Please try again in a minute.", headers={"Retry-After": "60"}
        ) from None
    if not allowed:
        raise web.HTTPTooManyRequests(
            text="Too many attempts from your network. Please wait a minute and try again.",
            headers={"Retry-After": "60"},
        )


def booking_json(ctx: PagesContext, target: BookingTarget, booking: Booking, zone: ZoneInfo) -> dict[str, Any]:
    names = {host.user_id: host.name for host in target.hosts}
    kind = target.appointment_type
    return {
        "id": booking.booking_id,
        "status": booking.status.value,
        "start": booking.starts_at.astimezone(zone).isoformat(),
        "end": booking.ends_at.astimezone(zone).isoformat(),
        "time_zone": str(zone),
        "appointment_type": {"slug": kind.slug, "name": kind.name},
        "location": {"kind": kind.location.kind.value, "description": kind.location.describe()},
        "hosts": [{"name": names.get(host_id, "")} for host_id in booking.host_ids],
        "client": {"name": booking.client.name, "email": booking.client.email},
        "guests": list(booking.client.guests),
        "manage_url": manage_url(ctx, booking),
        "version": booking.version,
    }


def manage_path(ctx: PagesContext, booking: Booking) -> str:
    return ctx.manage_links.path_for(booking)


def manage_url(ctx: PagesContext, booking: Booking) -> str:
    return ctx.manage_links.url_for(booking)


def _client_from(body: Mapping[str, Any], default_zone: str) -> ClientDetails:
    def text(key: str, limit: int) -> str:
        value = body.get(key, "")
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InvalidRequest(f"'{key}' must be text", field=key)
        if len(value) > limit:
            raise InvalidRequest(f"'{key}' is too long (at most {limit} characters)", field=key)
        return value

    answers = body.get("answers")
    if answers is None:
        answers = {}
    if not isinstance(answers, dict) or not all(isinstance(v, str) for v in answers.values()):
        raise InvalidRequest("'answers' must be an object of text answers", field="answers")
    guests = body.get("guests")
    if guests is None:
        guests = []
    if not isinstance(guests, list) or not all(isinstance(g, str) for g in guests):
        raise InvalidRequest("'guests' must be a list of email addresses", field="guests")
    return ClientDetails(
        name=text("name", 200),
        email=text("email", 254),
        time_zone=text("time_zone", 64) or default_zone,
        answers={str(k)[:64]: v for k, v in answers.items()},
        guests=tuple(guests),
        notes=text("notes", 2000),
    )


# ---------------------------------------------------------------- targets


async def _type_target(request: web.Request) -> BookingTarget:
    ctx = request.app[PAGES]
    target = await ctx.catalog.find_type_target(request.match_info["tenant"], request.match_info["type"])
    if target is None or not target.hosts:
        raise NotFound("We couldn't find that booking page. Check the link with the person who sent it.")
    return target


async def _request_target(request: web.Request) -> BookingTarget:
    ctx = request.app[PAGES]
    claims = ctx.signer.verify("request", request.match_info["token"], ctx.clock.now())
    target = await ctx.catalog.find_request_target(claims.tenant_id, claims.subject_id)
    if target is None:
        raise LinkInvalid("This link is not valid")
    if target.request is not None and target.request.used:
        raise LinkExpired("This scheduling link has already been used to book an appointment")
    return target


async def _manage_target(request: web.Request) -> tuple[BookingTarget, Booking]:
    ctx = request.app[PAGES]
    claims = ctx.signer.verify("manage", request.match_info["token"], ctx.clock.now())
    booking = await ctx.scheduler.get_booking(claims.tenant_id, claims.subject_id)
    target = await ctx.catalog.find_target_for_type(claims.tenant_id, booking.type_id)
    if target is None:
        raise NotFound("This booking's appointment type no longer exists")
    return target, booking


TargetLoader = Callable[[web.Request], Awaitable[BookingTarget]]


# ---------------------------------------------------------------- JSON API


def _slots_handler(load: TargetLoader) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        ctx = request.app[PAGES]
        target = await load(request)
        zone_name, zone = _zone_from(request, target.hosts[0].schedule.time_zone.key)
        today = ctx.clock.now().astimezone(zone).date()
        first = _parse_day(request.query["start"], "start") if "start" in request.query else today
        last = _parse_day(request.query["end"], "end") if "end" in request.query else first + timedelta(days=6)
        if last < first:
            raise InvalidRequest("'end' must not be before 'start'", field="end")
        range_start = datetime.combine(first, time(0), tzinfo=zone)
        range_end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone)
        slots = await ctx.scheduler.list_slots(target, range_start, range_end)
        # The scheduler returns the very same list while nothing changed, so the encoded body can be reused too.
        key = (id(slots), zone_name)
        cached = bodies.get(key)
        if cached is None or cached[0] is not slots:
            payload = {"time_zone": zone_name, "slots": [_slot_json(slot, zone) for slot in slots]}
            if len(bodies) > 256:
                bodies.clear()
            cached = bodies[key] = (slots, json.dumps(payload).encode())
        return web.Response(body=cached[1], content_type="application/json")

    bodies: dict[tuple[int, str], tuple[list[Slot], bytes]] = {}
    return handler


def _bookings_handler(load: TargetLoader) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        ctx = request.app[PAGES]
        target = await load(request)
        await _admit(request, f"{target.tenant_id}:{target.appointment_type.type_id}")
        default_zone = target.hosts[0].schedule.time_zone.key
        if request.content_type == "application/json":
            body = await read_json(request)
            look = await _look(request, target.tenant_slug)
            client = replace(_client_from(body, default_zone), locale=_page_locale(request, look.locale))
            zone = parse_time_zone(client.time_zone)
            booking, created = await ctx.scheduler.book(
                target, parse_instant(body.get("start")), client, idempotency_key=idempotency_key_of(request)
            )
            return web.json_response(booking_json(ctx, target, booking, zone), status=201 if created else 200)
        return await _form_booking(request, target, default_zone)

    return handler


def _require_json_or_form(request: web.Request) -> None:
    if request.content_type != "application/json" and request.content_type not in _FORM_TYPES:
        raise web.HTTPUnsupportedMediaType(text="Send the body as JSON (Content-Type: application/json) or as a form")


async def _form_booking(request: web.Request, target: BookingTarget, default_zone: str) -> web.StreamResponse:
    """The no-JavaScript path: a form post with a CSRF token, answered by a redirect to the confirmation."""
    ctx = request.app[PAGES]
    _require_json_or_form(request)
    form = await read_form(request)
    if not csrf_matches(request.cookies.get(CSRF_COOKIE), str(form.get("csrf_token", ""))):
        raise web.HTTPForbidden(text="Your session expired. Reload the page and try again.")
    body: dict[str, Any] = {
        "name": str(form.get("name", "")),
        "email": str(form.get("email", "")),
        "time_zone": str(form.get("time_zone", default_zone)),
        "notes": str(form.get("notes", "")),
        "guests": [part.strip() for part in str(form.get("guests", "")).replace(";", ",").split(",") if part.strip()],
        "answers": {
            key.removeprefix("answer_"): str(value) for key, value in form.items() if key.startswith("answer_")
        },
    }
    look = await _look(request, target.tenant_slug)
    client = replace(_client_from(body, default_zone), locale=_page_locale(request, look.locale, form))
    zone = parse_time_zone(client.time_zone)
    start = parse_instant(str(form.get("start", "")))
    # The form's key names the visit; with the start it names this attempt, so booking an offered alternative
    # after a lost time is a new booking and pressing the same button twice is one.
    base_key = str(form.get("idempotency_key") or "")[:120]
    try:
        booking, _created = await ctx.scheduler.book(
            target, start, client, idempotency_key=f"{base_key}@{start.isoformat()}" if base_key else None
        )
    except (InvalidRequest, SlotUnavailable) as exc:
        status = 409 if isinstance(exc, SlotUnavailable) else 400
        return await _render_booking_page(
            request, target, zone, start.astimezone(zone).date(), start, exc, status, form
        )
    raise web.HTTPSeeOther(
        manage_path(ctx, booking)
        + "?"
        + urlencode({"booked": "1", "tz": str(zone), **_clock_of(form), **_lang_of(request, form)})
    )


async def explain_handler(request: web.Request) -> web.Response:
    """Why isn't a time offered? For authenticated agents of the page's own tenant only."""
    ctx = request.app[PAGES]
    tenant_id, _role = await authenticate_agent(request)
    target = await _type_target(request)
    if target.tenant_id != tenant_id:
        raise NotFound("We couldn't find that booking page. Check the link with the person who sent it.")
    start = parse_instant(request.query.get("start"))
    reasons = await ctx.scheduler.explain(target, start)
    names = {host.user_id: host.name for host in target.hosts}
    return web.json_response(
        {
            "start": start.isoformat(),
            "offered": _offered(target, reasons),
            "reasons": [
                {"code": r.code.value, "host": names.get(r.host_id, r.host_id), "message": r.message} for r in reasons
            ],
        }
    )


def _offered(target: BookingTarget, reasons: list[Any]) -> bool:
    blocked = {reason.host_id for reason in reasons}
    if target.appointment_type.mode.value == "round_robin":
        return any(host.user_id not in blocked for host in target.hosts)
    return not reasons


async def authenticate_agent(request: web.Request) -> tuple[str, str]:
    ctx = request.app[PAGES]
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw or len(raw) > 200:
        raise web.HTTPUnauthorized(text="Send an agent API key as 'Authorization: Bearer <key>'")
    found = await ctx.agent_keys.authenticate(raw.strip())
    if found is None:
        raise web.HTTPUnauthorized(text="This API key is not valid or was revoked")
    return found


MAX_REQUEST_WINDOW_DAYS = 366
"""`window_days` at most: a year ahead (the type's maximum scheduling window clips it further)."""


@dataclass(frozen=True)
class RequestOverrides:
    """A scheduling request's checked overrides: duration, window, guests, and whether the link books once."""

    duration: timedelta | None
    window_start: datetime | None
    window_end: datetime | None
    guests: list[str]
    single_use: bool


def request_overrides(body: Mapping[str, Any], now: datetime) -> RequestOverrides:
    """Check a scheduling request's overrides (shared by the agent API and the Outlook add-in's one-off link); each
    bad value is an InvalidRequest naming its field. `window_days` (whole days from now) is the short form of a
    window that ends that many days ahead; it cannot be combined with `window_end`."""
    duration = body.get("duration_minutes")
    if isinstance(duration, float) and duration.is_integer():
        # JSON has one number type: 30.0 is the whole number 30 (and a JSON Schema "integer").
        duration = int(duration)
    if duration is not None and (
        not isinstance(duration, int) or isinstance(duration, bool) or not 5 <= duration <= 480
    ):
        raise InvalidRequest("'duration_minutes' must be a whole number from 5 to 480", field="duration_minutes")
    # Absent, null and "" all mean "no window"; anything else must be a time.
    window_start = parse_instant(body["window_start"], "window_start") if body.get("window_start", "") != "" else None
    window_end = parse_instant(body["window_end"], "window_end") if body.get("window_end", "") != "" else None
    days = body.get("window_days")
    if isinstance(days, float) and days.is_integer():
        days = int(days)
    if days is not None:
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_REQUEST_WINDOW_DAYS:
            raise InvalidRequest(
                f"'window_days' must be a whole number of days from 1 to {MAX_REQUEST_WINDOW_DAYS}", field="window_days"
            )
        if window_end is not None:
            raise InvalidRequest("Give either 'window_days' or 'window_end', not both", field="window_days")
        window_end = (window_start or now) + timedelta(days=days)
    if window_start and window_end and window_end <= window_start:
        raise InvalidRequest("'window_end' must be after 'window_start'", field="window_end")
    if window_end is not None and window_end <= now:
        raise InvalidRequest("'window_end' is in the past: the link would offer no time", field="window_end")
    guests = body.get("guests")
    if guests is None:
        guests = []
    if not isinstance(guests, list) or len(guests) > 10:
        raise InvalidRequest("'guests' must be a list of at most 10 email addresses", field="guests")
    # One address given twice (in any case) is one guest; the first spelling is kept.
    by_address: dict[str, str] = {}
    for guest in guests:
        address = validate_email(guest if isinstance(guest, str) else "", field="guests")
        by_address.setdefault(address.lower(), address)
    clean_guests = list(by_address.values())
    single_use = body.get("single_use", True)
    if single_use is None:
        single_use = True
    if not isinstance(single_use, bool):
        raise InvalidRequest("'single_use' must be true or false", field="single_use")
    return RequestOverrides(
        timedelta(minutes=duration) if duration else None, window_start, window_end, clean_guests, single_use
    )


async def create_request_handler(request: web.Request) -> web.Response:
    """An agent creates a scheduling link, optionally for a PSA ticket, with ad-hoc duration, window and guests;
    single-use unless `single_use` is false."""
    ctx = request.app[PAGES]
    tenant_id, role = await authenticate_agent(request)
    body = await read_json(request)
    type_slug = body.get("appointment_type")
    ticket = body.get("ticket")
    if not isinstance(type_slug, str) or not type_slug:
        raise InvalidRequest("'appointment_type' (a slug) is required", field="appointment_type")
    if ticket is None:
        ticket = ""
    if not isinstance(ticket, str) or len(ticket) > 64:
        raise InvalidRequest(
            "'ticket' is the PSA ticket's id or the number the PSA shows, at most 64 characters (leave it out for a "
            "link without a ticket)",
            field="ticket",
        )
    now = ctx.clock.now()
    overrides = request_overrides(body, now)
    recipient = _recipient_of(body)
    reference = check_text(ticket.strip(), "ticket")
    found = await _resolve_ticket(ctx, tenant_id, reference) if reference else None
    if found is _UNKNOWN_TICKET:
        return web.json_response(
            error_body(
                "unknown_ticket",
                f"Your PSA has no ticket {reference!r}. Give the ticket's id or the number the PSA shows for it "
                "(Autotask: e.g. T20261124.0001); no link was made.",
                field="ticket",
            ),
            status=422,
        )
    bound = found if isinstance(found, PsaRef) else None
    if recipient is _TICKET_CONTACT:
        recipient = await _ticket_contact(ctx, tenant_id, bound, reference)
    expires = now + timedelta(days=ctx.request_link_days)
    if overrides.window_end is not None:
        expires = min(expires, overrides.window_end)
    request_id = await ctx.requests.create_request(
        tenant_id,
        type_slug,
        ticket=bound.number if bound else reference,
        duration=overrides.duration,
        window_starts_at=overrides.window_start,
        window_ends_at=overrides.window_end,
        guests=overrides.guests,
        created_by=role,
        expires_at=expires,
        ticket_id=bound.record_id if bound else "",
        ticket_number=bound.number if bound else "",
        recipient=recipient,
        now=now,
        single_use=overrides.single_use,
    )
    token = ctx.signer.sign("request", tenant_id, request_id, expires)
    answer: dict[str, Any] = {
        "id": request_id,
        "ticket": (bound.number if bound else reference) or None,
        "ticket_id": bound.record_id if bound else None,
        "ticket_number": bound.number if bound else None,
        "ticket_bound": bound is not None,
        "single_use": overrides.single_use,
        "guests": overrides.guests,
        "url": f"{ctx.base_url}/r/{token}",
        "expires_at": expires.isoformat(),
        "sent_to": {"name": recipient[0], "email": recipient[1]} if recipient else None,
    }
    if bound is None and reference:
        answer["notice"] = (
            f"No PSA is connected for this tenant, so {reference!r} is kept as a label only: the booking page shows "
            "it, but nothing is added to a ticket. Connect a PSA to book onto the ticket."
        )
    return web.json_response(answer, status=201)


_TICKET_CONTACT = ("", "")
"""`send: true` without a recipient: the link goes to the ticket's contact, looked up in the PSA."""


def _recipient_of(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """`send: true` with `recipient` ({"email", "name"} or an address): Slotwise emails the link (request_sent);
    without `recipient`, to the ticket's contact (_TICKET_CONTACT). Without `send`, the agent shares the link and no
    recipient is kept."""
    send = body.get("send", False)
    if send is None:
        send = False
    if not isinstance(send, bool):
        raise InvalidRequest("'send' must be true or false", field="send")
    given = body.get("recipient")
    if not send:
        if given not in (None, "", {}):
            raise InvalidRequest(
                "'recipient' is who Slotwise emails the link to: add \"send\": true, or leave 'recipient' out and "
                "share the link yourself",
                field="recipient",
            )
        return None
    if given in (None, "", {}):
        return _TICKET_CONTACT
    if isinstance(given, str):
        given = {"email": given}
    if not isinstance(given, dict) or not isinstance(given.get("email"), str):
        raise InvalidRequest(
            '\'recipient\' must be an email address or {"email": ..., "name": ...}: the client Slotwise emails '
            "the link to",
            field="recipient",
        )
    name = given.get("name", "")
    if name is None:
        name = ""
    if not isinstance(name, str) or len(name) > 200:
        raise InvalidRequest("'recipient.name' must be text of at most 200 characters", field="recipient")
    return check_text(name.strip(), "recipient"), validate_email(given["email"], field="recipient")


async def _ticket_contact(ctx: PagesContext, tenant_id: str, ticket: PsaRef | None, reference: str) -> tuple[str, str]:
    """The ticket's contact, for `send: true` without a recipient; a clear 400 when there is none to send to."""
    if not reference:
        raise InvalidRequest(
            "This link names no ticket, so there is no ticket contact to send it to: give 'recipient' (the client's "
            "email address)",
            field="recipient",
        )
    psa = await ctx.tenant_psa(tenant_id) if ctx.tenant_psa is not None and ticket is not None else None
    if psa is None or ticket is None:
        raise InvalidRequest(
            f"Ticket {reference!r} is not a PSA ticket Slotwise can read, so it has no contact to send the link to: "
            "give 'recipient' (the client's email address)",
            field="recipient",
        )
    try:
        contact = await psa.ticket_contact(ticket.record_id)
    except IntegrationError as exc:
        raise ServiceUnavailable(
            f"Slotwise could not look up the contact of ticket {reference!r} in your PSA right now ({exc}). No link "
            "was made; try again in a minute, or give 'recipient'.",
            retry_after_seconds=_PSA_RETRY_AFTER_SECONDS,
        ) from exc
    if contact is None or not contact.email:
        raise InvalidRequest(
            f"Ticket #{ticket.number or reference} has no contact with an email address in your PSA: give "
            "'recipient' (the client's email address)",
            field="recipient",
        )
    return contact.name, contact.email


_UNKNOWN_TICKET = object()
"""What _resolve_ticket answers when the PSA has no such ticket."""

_PSA_RETRY_AFTER_SECONDS = 30


async def _resolve_ticket(ctx: PagesContext, tenant_id: str, reference: str) -> PsaRef | object | None:
    """The ticket a scheduling request names, looked up in the tenant's PSA when the request is made, so a typo is
    caught now rather than when a client books. None: the tenant has no PSA (the ticket stays a label).

    A PSA that cannot be asked right now is a 503 (nothing was made; Retry-After), as is one that refuses our
    credentials: neither is the agent's input at fault, and the message says what happened."""
    psa = await ctx.tenant_psa(tenant_id) if ctx.tenant_psa is not None else None
    if psa is None:
        return None
    try:
        found = await psa.find_ticket(reference)
    except IntegrationRejected as exc:
        raise InvalidRequest(f"Your PSA refused the look-up of ticket {reference!r}: {exc}", field="ticket") from exc
    except IntegrationError as exc:
        retry_after = exc.retry_after_seconds if isinstance(exc, IntegrationUnavailable) else None
        raise ServiceUnavailable(
            f"Slotwise could not look up ticket {reference!r} in your PSA right now ({exc}). No link was made; "
            "try again in a minute, and if it keeps failing ask an administrator to check the PSA connection.",
            retry_after_seconds=max(1, math.ceil(retry_after)) if retry_after else _PSA_RETRY_AFTER_SECONDS,
        ) from exc
    return found if found is not None else _UNKNOWN_TICKET


# ---------------------------------------------------------------- HTML pages


def _csrf(request: web.Request) -> str:
    return request.cookies.get(CSRF_COOKIE) or new_csrf_token()


def _language_links(
    request: web.Request, language: str, query: Mapping[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """The page's language switch: (code, name in that language, link or "" for the current one), each link this
    page's address with `lang` set (and `query` in place of the request's own, where a page has checked it). Only
    on pages reached by a link (GET): a form's answer has no address to switch."""
    if request.method != "GET":
        return []
    base = request.rel_url if query is None else request.rel_url.with_query(query)
    links = []
    for code in SUPPORTED:
        href = "" if code == language else str(base.update_query({"lang": code}))
        links.append((code, LANGUAGE_NAMES[code], href))
    return links


def _html(
    request: web.Request,
    template: str,
    status: int = 200,
    brand: Branding = DEFAULT_BRANDING,
    locale: str = "",
    switch_query: Mapping[str, str] | None = None,
    **values: Any,
) -> web.Response:
    ctx = request.app[PAGES]
    token = _csrf(request)
    locale = locale or _page_locale(request)
    language = language_of(locale) or FALLBACK
    # The tenant's accent colour is the one inline style; a per-response nonce admits only that <style> element.
    nonce = new_csrf_token()[:22]
    html = (
        _templates_for(ctx, locale)
        .get_template(template)
        .render(
            csrf_token=token,
            brand=brand,
            style_nonce=nonce,
            lang=language,
            language_links=_language_links(request, language, switch_query),
            **values,
        )
    )
    response = web.Response(text=html, status=status, content_type="text/html")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; style-src 'self' 'nonce-{nonce}'; script-src 'self'; img-src 'self' data: https:; "
        "form-action 'self'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Language"] = language
    response.headers["Vary"] = "Accept-Language"
    if CSRF_COOKIE not in request.cookies:
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="Lax", path="/")
    return response


async def _look(request: web.Request, tenant_slug: str) -> TenantLook:
    ctx = request.app[PAGES]
    if ctx.tenant_looks is None:
        return TenantLook()
    return await ctx.tenant_looks(tenant_slug)


@dataclass(frozen=True)
class HostFace:
    """A host as the page shows them: name, photo URL or initials."""

    name: str
    photo_url: str
    initials: str


def _faces(look: TenantLook, target: BookingTarget) -> list[HostFace]:
    """The people a client meets: each host of a user or panel type; for round robin the team (one face, its name)."""
    kind = target.appointment_type
    if kind.mode.value == "round_robin":
        team = look.teams.get(kind.team_id or "", "") or target.tenant_name
        return [HostFace(team, "", initials(team))]
    return [HostFace(host.name, look.photos.get(host.user_id, ""), initials(host.name)) for host in target.hosts]


def _group_by_day(slots: list[Slot], zone: ZoneInfo) -> dict[date, list[Slot]]:
    days: dict[date, list[Slot]] = {}
    for slot in slots:
        days.setdefault(slot.starts_at.astimezone(zone).date(), []).append(slot)
    return days


async def _render_booking_page(
    request: web.Request,
    target: BookingTarget,
    zone: ZoneInfo,
    chosen_day: date | None,
    chosen_start: datetime | None,
    error: SlotwiseError | None,
    status: int,
    form: Mapping[str, Any] | None = None,
    *,
    mode: str = "book",
    booking: Booking | None = None,
) -> web.Response:
    """The booking page: a month of days (those without times disabled), the chosen day's times and, once a time
    is chosen, the details form. `error` is what went wrong with a post of that form: a field's error is shown
    next to the field; a time lost meanwhile shows the next free times in place of the lost one."""
    ctx = request.app[PAGES]
    now = ctx.clock.now()
    today = now.astimezone(zone).date()
    last_day = (window_end(target, now) - timedelta(microseconds=1)).astimezone(zone).date()
    wanted = chosen_day or today
    # The shown month: the chosen day's, kept between today's month and the scheduling window's last month.
    month = min(max(wanted, today), max(last_day, today)).replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    first = max(month, today)
    range_start = datetime.combine(first, time(0), tzinfo=zone)
    range_end = datetime.combine(next_month, time(0), tzinfo=zone)
    slots = await ctx.scheduler.list_slots(target, range_start, range_end) if first < next_month else []
    by_day = _group_by_day(slots, zone)
    if chosen_day not in by_day:
        # The asked-for day has nothing left: show the first day that does, rather than an empty list.
        chosen_day = min(by_day) if by_day else None
    lost = isinstance(error, SlotUnavailable)
    alternatives = list(error.next_free) if isinstance(error, SlotUnavailable) else []
    field = _form_field(error.field) if isinstance(error, InvalidRequest) and error.field else None
    look = await _look(request, target.tenant_slug)
    locale = _page_locale(request, (booking.client.locale if booking else "") or look.locale, form)
    fmt = _formatter(request, zone, form, locale)
    return _html(
        request,
        "booking.html",
        status=status,
        locale=locale,
        fmt=fmt,
        keep_clock=_chosen_clock(request, form),
        keep={
            "tz": str(zone),
            "clock": _chosen_clock(request, form),
            "action": "reschedule" if mode == "reschedule" else "",
            "lang": _chosen_language(request, form),
        },
        brand=look.branding,
        host_faces=_faces(look, target),
        target=target,
        kind=target.appointment_type,
        hosts=target.hosts,
        zone=str(zone),
        zones=_zone_choices(str(zone), now),
        weeks=_month_weeks(month),
        month=month,
        today=today,
        by_day=by_day,
        chosen_day=chosen_day,
        # A lost time is never offered again: the form then books one of the alternatives instead.
        chosen_start=None if lost else chosen_start,
        lost_start=chosen_start if lost else None,
        alternatives=alternatives,
        error=translate_message(locale, str(error)) if error is not None and field is None and not lost else None,
        field_error=(field, translate_message(locale, str(error))) if field else None,
        form=form or _prefilled(target),
        page_path=_page_of(request.path),
        prev_month=(month - timedelta(days=1)).replace(day=1) if month > today.replace(day=1) else None,
        next_month=next_month if next_month <= last_day else None,
        mode=mode,
        action="reschedule" if mode == "reschedule" else "",
        booking=booking,
        duration_minutes=int(target.duration.total_seconds() // 60),
    )


def _prefilled(target: BookingTarget) -> dict[str, str]:
    """A link a rep bound to a PSA contact names its client: the form starts with their name and address (from the
    stored request the signed link names, never from the URL)."""
    binding = target.request.binding if target.request is not None else None
    if binding is None:
        return {}
    return {"name": binding.contact.name, "email": binding.contact.email}


def window_end(target: BookingTarget, now: datetime) -> datetime:
    """The instant before which every offered time starts: the latest host's scheduling window (a request's own
    window end when it has one). Paging stops here instead of walking into empty months."""
    window = effective_rules(target).window
    ends = max(
        (window_ends(host.schedule, target.holidays, epoch_ceil(now), window) for host in target.hosts),
        default=epoch_ceil(now),
    )
    end = from_epoch(ends)
    if target.request is not None and target.request.window_ends_at is not None:
        end = min(end, target.request.window_ends_at)
    return max(end, now)


def _month_weeks(month: date) -> list[list[date | None]]:
    """The month's days as weeks from Monday; None pads the first and last week."""
    weeks: list[list[date | None]] = []
    week: list[date | None] = [None] * month.weekday()
    day = month
    while day.month == month.month:
        week.append(day)
        if len(week) == 7:
            weeks.append(week)
            week = []
        day += timedelta(days=1)
    if week:
        weeks.append(week + [None] * (7 - len(week)))
    return weeks


_FORM_FIELDS = {"name": "name", "email": "email", "guests": "guests", "notes": "notes", "reason": "reason"}


def _form_field(field: str) -> str | None:
    """The id of the form input an error's `field` names (answers.company → answer_company); None for others."""
    if field.startswith("answers."):
        return "answer_" + field.removeprefix("answers.")
    return _FORM_FIELDS.get(field)


_COMMON_ZONES = (
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Toronto",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Berlin",
    "Europe/Paris",
    "Europe/Amsterdam",
    "Africa/Johannesburg",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
    "UTC",
)


def _zone_choices(current: str, now: datetime | None = None) -> list[tuple[str, str]]:
    """The picker's zones (the common ones and the current one) labelled with their offset now, west to east.
    Offsets move only at DST changes, so the list is reused within the hour."""
    moment = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    return _zone_choices_at(current, moment)


@functools.lru_cache(maxsize=256)
def _zone_choices_at(current: str, moment: datetime) -> list[tuple[str, str]]:
    zones = [
        (name, moment.astimezone(ZoneInfo(name)).utcoffset() or timedelta(0)) for name in {*_COMMON_ZONES, current}
    ]
    zones.sort(key=lambda item: (item[1], item[0]))
    return [(name, f"{name.replace('_', ' ')} (UTC{_offset(offset)})") for name, offset in zones]


def _offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "\u2212"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@functools.cache
def _all_zones() -> tuple[str, ...]:
    """Every IANA zone this Python knows (tzdata), without the legacy aliases a person would not look for."""
    legacy = ("Etc/", "SystemV/", "US/", "posixrules", "Factory", "localtime")
    return tuple(
        sorted(
            name
            for name in zoneinfo.available_timezones()
            if ("/" in name and not name.startswith(legacy)) or name == "UTC"
        )
    )


def _safe_back(value: str) -> str:
    """Where the zone list returns to: a path on this site only (never //host or a scheme), else the site root."""
    # Browsers drop tabs and newlines from URLs and read \ as /, so "/\t/evil" and "/\\evil" would mean //evil.
    if any(char <= " " or char == "\\" for char in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//"):
        return "/"
    return value


def _with_zone(back: str, zone: str) -> str:
    parts = urlsplit(back)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "tz"]
    return urlunsplit(("", "", parts.path, urlencode([*query, ("tz", zone)]), ""))


async def zones_page(request: web.Request) -> web.Response:
    """The full IANA zone list with each zone's offset now, searchable without JavaScript (the search is a GET
    form); picking one returns to the page the client came from, showing times in that zone."""
    ctx = request.app[PAGES]
    back = _safe_back(request.query.get("back", "/"))
    search = request.query.get("q", "").strip()[:100]
    wanted = search.lower().replace(" ", "_")
    now = ctx.clock.now()
    zones = [
        (name, f"UTC{_offset(now.astimezone(ZoneInfo(name)).utcoffset() or timedelta(0))}", _with_zone(back, name))
        for name in _all_zones()
        if wanted in name.lower()
    ]
    locale = _page_locale(request)
    title = translate(locale, "Choose your time zone")
    return _html(
        request,
        "zones.html",
        locale=locale,
        switch_query={"back": back, "q": search},
        chosen_lang=_chosen_language(request),
        title=title,
        zones=zones,
        search=search,
        back=back,
    )


def _page_handler(load: TargetLoader) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        target = await load(request)
        _zone_name, zone = _zone_from(request, target.hosts[0].schedule.time_zone.key)
        day = _parse_day(request.query["date"], "date") if "date" in request.query else None
        start = parse_instant(request.query["start"]) if "start" in request.query else None
        if start is not None and day is None:
            day = start.astimezone(zone).date()
        return await _render_booking_page(request, target, zone, day, start, None, 200)

    return handler


async def personal_page(request: web.Request) -> web.Response:
    ctx = request.app[PAGES]
    found = await ctx.catalog.find_personal_page(request.match_info["tenant"], request.match_info["user"])
    if found is None:
        raise NotFound("We couldn't find that page. Check the link with the person who sent it.")
    host, types = found
    tenant = request.match_info["tenant"]
    look = await _look(request, tenant)
    locale = _page_locale(request, look.locale)
    return _html(
        request,
        "listing.html",
        locale=locale,
        brand=look.branding,
        face=HostFace(host.name, look.photos.get(host.user_id, ""), initials(host.name)),
        title=translate(locale, "Book time with %(name)s") % {"name": host.name},
        heading=host.name,
        types=types,
        tenant=tenant,
        base_url=ctx.base_url,
    )


async def team_page(request: web.Request) -> web.Response:
    ctx = request.app[PAGES]
    found = await ctx.catalog.find_team_page(request.match_info["tenant"], request.match_info["team"])
    if found is None:
        raise NotFound("We couldn't find that page. Check the link with the person who sent it.")
    name, types = found
    tenant = request.match_info["tenant"]
    look = await _look(request, tenant)
    locale = _page_locale(request, look.locale)
    return _html(
        request,
        "listing.html",
        locale=locale,
        brand=look.branding,
        face=HostFace(name, "", initials(name)),
        title=translate(locale, "Book time with %(name)s") % {"name": name},
        heading=name,
        types=types,
        tenant=tenant,
        base_url=ctx.base_url,
    )


async def manage_page(request: web.Request) -> web.Response:
    target, booking = await _manage_target(request)
    _zone_name, zone = _zone_from(request, booking.client.time_zone)
    if request.query.get("action") == "reschedule" and booking.status is BookingStatus.CONFIRMED:
        day = _parse_day(request.query["date"], "date") if "date" in request.query else None
        start = parse_instant(request.query["start"]) if "start" in request.query else None
        if start is not None and day is None:
            day = start.astimezone(zone).date()
        return await _render_booking_page(
            request,
            _reschedule_target(target, booking),
            zone,
            day,
            start,
            None,
            200,
            mode="reschedule",
            booking=booking,
        )
    return await _manage_html(
        request,
        target,
        booking,
        zone,
        just_booked=request.query.get("booked") == "1",
        just_moved=request.query.get("moved") == "1",
        confirm_cancel=request.query.get("action") == "cancel",
    )


async def _manage_html(
    request: web.Request,
    target: BookingTarget,
    booking: Booking,
    zone: ZoneInfo,
    *,
    status: int = 200,
    error: str | None = None,
    just_booked: bool = False,
    just_moved: bool = False,
    confirm_cancel: bool = False,
    reason_error: str | None = None,
    form: Mapping[str, Any] | None = None,
) -> web.Response:
    ctx = request.app[PAGES]
    names = {host.user_id: host.name for host in target.hosts}
    look = await _look(request, target.tenant_slug)
    join_url = ""
    if ctx.join_url_of is not None and booking.status is BookingStatus.CONFIRMED:
        join_url = await ctx.join_url_of(booking.tenant_id, booking.booking_id)
    page_path = request.path.removesuffix("/cancel").removesuffix("/reschedule")
    locale = _page_locale(request, booking.client.locale or look.locale, form)
    calendar_links = (
        _calendar_links(target, booking, join_url, locale) if booking.status is BookingStatus.CONFIRMED else []
    )
    return _html(
        request,
        "manage.html",
        locale=locale,
        join_url=join_url if join_url.startswith("https://") else "",
        calendar_links=calendar_links,
        ics_path=f"{page_path}/invite.ics",
        status=status,
        brand=look.branding,
        fmt=_formatter(request, zone, form, locale),
        keep_clock=_chosen_clock(request, form),
        keep_lang=_chosen_language(request, form),
        confirm_cancel=confirm_cancel or reason_error is not None,
        reason_error=translate(locale, reason_error) if reason_error else None,
        target=target,
        kind=target.appointment_type,
        booking=booking,
        hosts=[names.get(host_id, "") for host_id in booking.host_ids],
        starts=booking.starts_at.astimezone(zone),
        ends=booking.ends_at.astimezone(zone),
        zone=str(zone),
        error=translate_message(locale, error) if error else None,
        just_booked=just_booked,
        just_moved=just_moved,
        cancelled=booking.status is BookingStatus.CANCELLED,
        can_change=booking.status is BookingStatus.CONFIRMED and booking.starts_at > ctx.clock.now(),
        page_path=page_path,
    )


def _event_title(target: BookingTarget, booking: Booking, locale: str = FALLBACK) -> str:
    names = {host.user_id: host.name for host in target.hosts}
    hosts = [names[host_id] for host_id in booking.host_ids if host_id in names]
    kind = target.appointment_type.name
    if hosts:
        return translate(locale, "%(type)s with %(hosts)s") % {"type": kind, "hosts": ", ".join(hosts)}
    return f"{kind} ({target.tenant_name})"


def _calendar_links(target: BookingTarget, booking: Booking, join_url: str, locale: str) -> list[tuple[str, str]]:
    """Add-to-calendar links for web calendars. They carry the title, times, place and join link, never the manage
    link: that is a bearer token, and these URLs go to Google's and Microsoft's servers. The .ics file has it."""
    title = _event_title(target, booking, locale)
    where = join_url or describe_place(translations(locale).gettext, target.appointment_type.location)
    details = translate(locale, "Booked with %(name)s.") % {"name": target.tenant_name} + (
        " " + translate(locale, "Join: %(url)s") % {"url": join_url} if join_url else ""
    )
    compact = "%Y%m%dT%H%M%SZ"
    google = urlencode(
        {
            "action": "TEMPLATE",
            "text": title,
            "dates": f"{booking.starts_at.astimezone(UTC):{compact}}/{booking.ends_at.astimezone(UTC):{compact}}",
            "details": details,
            "location": where,
        }
    )
    # Outlook's compose deep link, the same for Outlook.com and Microsoft 365 (only the host differs).
    outlook = urlencode(
        {
            "path": "/calendar/action/compose",
            "rru": "addevent",
            "subject": title,
            "startdt": booking.starts_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "enddt": booking.ends_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "body": details,
            "location": where,
        }
    )
    return [
        ("Google Calendar", f"https://calendar.google.com/calendar/render?{google}"),
        ("Outlook.com", f"https://outlook.live.com/calendar/0/deeplink/compose?{outlook}"),
        ("Office 365", f"https://outlook.office.com/calendar/0/deeplink/compose?{outlook}"),
    ]


async def manage_ics(request: web.Request) -> web.Response:
    """The booking as an .ics file (RFC 5545, METHOD:PUBLISH) for Apple Calendar and any other calendar app. Its
    UID is the one our email invitations use, so importing it after accepting the invitation updates that entry
    rather than adding a second one."""
    ctx = request.app[PAGES]
    target, booking = await _manage_target(request)
    if booking.status is not BookingStatus.CONFIRMED:
        raise LinkExpired("This appointment is cancelled, so there is nothing to add to a calendar")
    join_url = await ctx.join_url_of(booking.tenant_id, booking.booking_id) if ctx.join_url_of is not None else ""
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//Slotwise//Booking pages//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    event = icalendar.Event()
    event.add("uid", f"{booking.booking_id}@slotwise")
    event.add("dtstamp", ctx.clock.now().astimezone(UTC))
    event.add("dtstart", booking.starts_at.astimezone(UTC))
    event.add("dtend", booking.ends_at.astimezone(UTC))
    event.add("sequence", max(0, booking.version - 1))
    look = await _look(request, target.tenant_slug)
    locale = _page_locale(request, booking.client.locale or look.locale)
    event.add("summary", _event_title(target, booking, locale))
    event.add("location", join_url or describe_place(translations(locale).gettext, target.appointment_type.location))
    manage = manage_url(ctx, booking)
    event.add(
        "description",
        translate(locale, "Booked with %(name)s.") % {"name": target.tenant_name}
        + ("\n" + translate(locale, "Join: %(url)s") % {"url": join_url} if join_url else "")
        + "\n"
        + translate(locale, "Reschedule or cancel: %(url)s") % {"url": manage},
    )
    event.add("url", manage)
    calendar.add_component(event)
    response = web.Response(body=calendar.to_ical(), content_type="text/calendar", charset="utf-8")
    response.headers["Content-Disposition"] = 'attachment; filename="appointment.ics"'
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _reschedule_target(target: BookingTarget, booking: Booking) -> BookingTarget:
    """The booking's own type and hosts, with its booked length; the original link's window no longer applies."""
    return BookingTarget(
        target.tenant_id,
        target.tenant_slug,
        target.tenant_name,
        target.appointment_type,
        target.hosts,
        target.holidays,
        SchedulingRequest("", "", booking.ends_at - booking.starts_at, None, None, (), used=False),
    )


async def manage_slots(request: web.Request) -> web.Response:
    async def load(req: web.Request) -> BookingTarget:
        target, booking = await _manage_target(req)
        return _reschedule_target(target, booking)

    return await _slots_handler(load)(request)


def _version_from(request: web.Request, given: object) -> int | None:
    """The booking version the client last saw: `version` in the body or form, else an If-Match header ("3" or
    W/"3"). None when the client sent neither; the version the booking was loaded at then applies."""
    raw = request.headers.get("If-Match") if given is None or given == "" else given
    if raw is None or raw == "":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    text = str(raw).strip().removeprefix("W/").strip('"')
    # isascii: "²".isdigit() is true, but int("²") fails.
    if not (isinstance(raw, str) and text.isascii() and text.isdigit() and len(text) <= 9):
        raise InvalidRequest("'version' must be the booking's version number as you last saw it", field="version")
    return int(text)


async def _changed_response(
    request: web.Request, target: BookingTarget, changed: BookingChanged, zone: ZoneInfo
) -> web.Response:
    """409 with the booking as it is now: JSON for the API, the manage page (with the message) for people."""
    ctx = request.app[PAGES]
    current: Booking = changed.current
    if request.content_type == "application/json":
        body = error_body("booking_changed", str(changed), booking=booking_json(ctx, target, current, zone))
        return web.json_response(body, status=409)
    return await _manage_html(request, target, current, zone, status=409, error=str(changed))


async def manage_reschedule(request: web.Request) -> web.StreamResponse:
    ctx = request.app[PAGES]
    target, booking = await _manage_target(request)
    await _admit(request, f"{target.tenant_id}:manage")
    _require_json_or_form(request)
    if request.content_type == "application/json":
        body = await read_json(request)
        # Everything is parsed and checked before anything is written.
        start = parse_instant(body.get("start"))
        zone = parse_time_zone(str(body.get("time_zone") or booking.client.time_zone))
        version = _version_from(request, body.get("version"))
        try:
            moved = await ctx.scheduler.reschedule(target, booking, start, version=version)
        except BookingChanged as changed:
            return await _changed_response(request, target, changed, zone)
        return web.json_response(booking_json(ctx, target, moved, zone))
    form = await read_form(request)
    if not csrf_matches(request.cookies.get(CSRF_COOKIE), str(form.get("csrf_token", ""))):
        raise web.HTTPForbidden(text="Your session expired. Reload the page and try again.")
    zone = parse_time_zone(str(form.get("time_zone") or booking.client.time_zone))
    start = parse_instant(str(form.get("start", "")))
    version = _version_from(request, form.get("version"))
    try:
        moved = await ctx.scheduler.reschedule(target, booking, start, version=version)
    except BookingChanged as changed:
        return await _changed_response(request, target, changed, zone)
    except (InvalidRequest, SlotUnavailable) as exc:
        status = 409 if isinstance(exc, SlotUnavailable) else 400
        return await _render_booking_page(
            request,
            _reschedule_target(target, booking),
            zone,
            start.astimezone(zone).date(),
            start,
            exc,
            status,
            form,
            mode="reschedule",
            booking=booking,
        )
    raise web.HTTPSeeOther(
        manage_path(ctx, moved)
        + "?"
        + urlencode({"moved": "1", "tz": str(zone), **_clock_of(form), **_lang_of(request, form)})
    )


async def manage_cancel(request: web.Request) -> web.StreamResponse:
    ctx = request.app[PAGES]
    target, booking = await _manage_target(request)
    await _admit(request, f"{target.tenant_id}:manage")
    _require_json_or_form(request)
    if request.content_type == "application/json":
        body = await read_json(request)
        reason = body.get("reason")
        if reason is None:
            reason = ""
        if not isinstance(reason, str):
            raise InvalidRequest("'reason' must be text", field="reason")
        zone = parse_time_zone(booking.client.time_zone)
        version = _version_from(request, body.get("version"))
        try:
            cancelled = await ctx.scheduler.cancel(booking, reason, version=version)
        except BookingChanged as changed:
            return await _changed_response(request, target, changed, zone)
        return web.json_response(booking_json(ctx, target, cancelled, zone))
    form = await read_form(request)
    if not csrf_matches(request.cookies.get(CSRF_COOKIE), str(form.get("csrf_token", ""))):
        raise web.HTTPForbidden(text="Your session expired. Reload the page and try again.")
    zone_name = str(form.get("time_zone") or booking.client.time_zone)
    zone = parse_time_zone(zone_name)
    version = _version_from(request, form.get("version"))
    reason = str(form.get("reason", "")).strip()
    if not reason and booking.status is BookingStatus.CONFIRMED:
        # People confirm a cancellation by saying why; the host reads it (the JSON API keeps it optional).
        return await _manage_html(
            request,
            target,
            booking,
            zone,
            status=400,
            reason_error=N_("Please tell us why you are cancelling."),
            form=form,
        )
    try:
        await ctx.scheduler.cancel(booking, reason, version=version)
    except BookingChanged as changed:
        return await _changed_response(request, target, changed, zone)
    page = request.path.removesuffix("/cancel")
    raise web.HTTPSeeOther(f"{page}?" + urlencode({"tz": zone_name, **_clock_of(form), **_lang_of(request, form)}))


def setup_pages(app: web.Application, ctx: PagesContext) -> None:
    app[PAGES] = ctx
    app.middlewares.append(error_middleware)
    r = app.router
    r.add_get("/privacy", privacy_page)
    r.add_get("/terms", terms_page)
    r.add_get("/zones", zones_page)
    r.add_get("/book/{tenant}/{type}", _page_handler(_type_target))
    r.add_get("/book/{tenant}/{type}/slots", _slots_handler(_type_target))
    r.add_post("/book/{tenant}/{type}/bookings", _bookings_handler(_type_target))
    r.add_get("/book/{tenant}/{type}/explain", explain_handler)
    r.add_get("/u/{tenant}/{user}", personal_page)
    r.add_get("/t/{tenant}/{team}", team_page)
    r.add_get("/r/{token}", _page_handler(_request_target))
    r.add_get("/r/{token}/slots", _slots_handler(_request_target))
    r.add_post("/r/{token}/bookings", _bookings_handler(_request_target))
    r.add_get("/m/{token}", manage_page)
    r.add_get("/m/{token}/slots", manage_slots)
    r.add_post("/m/{token}/reschedule", manage_reschedule)
    r.add_post("/m/{token}/cancel", manage_cancel)
    r.add_get("/m/{token}/invite.ics", manage_ics)
    r.add_post("/api/v1/scheduling-requests", create_request_handler)
    if ctx.host_photos is not None:
        r.add_get(PHOTO_ROUTE, photo_handler(ctx.host_photos))
    r.add_static("/static", str(STATIC_DIR), name="static")
