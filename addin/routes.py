"""The Outlook add-in's HTTP surface: the task pane (static files from our origin) and the `/addin/api/*` JSON API.

Every API route runs behind `AddinAuthenticator`: the rep is whoever the Entra access token says, and every read is
scoped by the tenant that identity resolved to, never by anything in the request."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import aiohttp
import jinja2
from aiohttp import web
from babel.dates import format_date, format_time
from yarl import URL

from addin.auth import AddinAuthenticator, AddinAuthError, AddinAuthSettings, AddinDirectory, Rep
from addin.recipients import MAX_ADDRESSES, RecipientMatcher, clean_addresses
from addin.snippets import LinkSnippet, render_link_html, render_link_text
from addin.suggestions import (
    SuggestedTime,
    SuggestionLinkExpired,
    SuggestionLinkInvalid,
    SuggestionLinks,
    TimesBlock,
    TimesInvite,
    describe_clock,
    describe_day,
    describe_start,
    new_block_id,
    render_times_html,
    render_times_text,
)
from addin.zones import zone_named
from i18n import babel_locale, negotiate_locale, translate
from i18n.messages import translate_message
from scheduling.errors import IdempotencyKeyReused, InvalidRequest, ServiceUnavailable, SlotUnavailable, SlotwiseError
from scheduling.model import (
    Booking,
    BookingStatus,
    BookingTarget,
    ClientDetails,
    PsaBinding,
    Slot,
    TeamsIdentity,
    TypeSummary,
)
from scheduling.ports import BookingStore, Clock, RequestStore, TenantCatalog
from scheduling.service import Scheduler, validate_email


@dataclass(frozen=True, slots=True)
class AddinContext:
    auth: AddinAuthSettings
    directory: AddinDirectory
    base_url: str
    session_factory: Callable[[], aiohttp.ClientSession]
    office_js_url: str
    """Microsoft's CDN in production (AppSource requires it); the only script the pane loads from elsewhere."""
    msal_script: Path
    """MSAL.js as `npm ci` (scripts/bootstrap) put it in node_modules, served from our origin."""
    booking: BookingDeps | None = None
    """What suggested times need; None leaves them out (the API answers 503)."""
    recipients: RecipientMatcher | None = None
    """Matches the email's recipients to the tenant's PSA; None leaves it out (the API answers 503)."""
    one_off: OneOffDeps | None = None
    """What one-off links need (the scheduling-request store and link signer); None: the API answers 503."""


@dataclass(frozen=True, slots=True)
class OneOffDeps:
    requests: RequestStore
    clock: Clock
    url_for: Callable[[str, str, datetime], str]
    """(tenant id, request id, expiry) → the signed `/r/{token}` link a client books through."""
    link_days: int = 14


@dataclass(frozen=True, slots=True)
class BookingDeps:
    scheduler: Scheduler
    catalog: TenantCatalog
    store: BookingStore
    clock: Clock
    links: SuggestionLinks
    manage_url_for: Callable[[Booking], str]
    link_days: int = 14
    search_days: int = 14
    """How far ahead suggested times are looked for."""


@dataclass
class _AddinState:
    context: AddinContext
    authenticator: AddinAuthenticator | None = None
    targets: dict[tuple[str, str], tuple[int, BookingTarget | None]] = field(default_factory=dict)
    """A type's booking target by (tenant, type), with the tenant's config_version it was read under (see
    storage/addin_directory.py: every apply that changes a tenant bumps it, so a hit is never stale)."""


ADDIN: Final = web.AppKey("addin", _AddinState)
STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
"""The task pane's script and style, and the Outlook icons the manifest names by URL (manifest/build.py)."""
TEMPLATES: Final = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"), autoescape=True
)
DIALOG_PATH: Final = "/addin/auth-dialog.html"
ENTRA_AUTHORITY: Final = "https://login.microsoftonline.com/organizations"
"""Work and school accounts only: the API maps reps by their Entra tenant, so personal accounts cannot sign in."""
_MAX_BODY_BYTES: Final = 16 * 1024

ApiHandler = Callable[[web.Request, Rep], Awaitable[web.Response]]


def api_error(status: int, code: str, message: str) -> web.Response:
    """The project's JSON error shape (`{"error": {"code", "message"}}`), so the task pane reads one format."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _authenticated(handler: ApiHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def run(request: web.Request) -> web.Response:
        state = request.app[ADDIN]
        if state.authenticator is None:
            return api_error(503, "starting", "Slotwise is still starting; try again in a moment")
        try:
            rep = await state.authenticator.authenticate_rep(request.headers.get("Authorization"))
        except AddinAuthError as exc:
            response = api_error(exc.status, exc.code, exc.message)
            if exc.status == 401:
                # RFC 6750 §3: a refused bearer token names the scheme and the error class (never the token).
                detail = "" if exc.code == "missing" else ', error="invalid_token"'
                response.headers["WWW-Authenticate"] = f'Bearer realm="slotwise-addin"{detail}'
            return response
        return await handler(request, rep)

    return run


def type_url(base_url: str, identity: TeamsIdentity, summary: TypeSummary) -> str:
    return f"{base_url}/book/{identity.tenant_slug}/{summary.slug}"


async def _types_of(request: web.Request, rep: Rep) -> list[TypeSummary]:
    directory = request.app[ADDIN].context.directory
    return await directory.types_for_user(
        rep.identity.tenant_id, rep.identity.user_id, config_version=rep.config_version
    )


async def me(request: web.Request, rep: Rep) -> web.Response:
    identity = rep.identity
    return web.json_response({"name": identity.name, "email": identity.email, "time_zone": identity.time_zone})


async def appointment_types(request: web.Request, rep: Rep) -> web.Response:
    """The rep's own types, the panels they sit on and their teams' round-robin types, each with its booking URL."""
    context = request.app[ADDIN].context
    identity = rep.identity
    summaries = await _types_of(request, rep)
    return web.json_response(
        {
            "types": [
                {
                    "id": summary.type_id,
                    "name": summary.name,
                    "duration_minutes": summary.duration_minutes,
                    "location": summary.location.describe(),
                    "description": summary.description,
                    "url": type_url(context.base_url, identity, summary),
                }
                for summary in summaries
            ]
        }
    )


async def link_snippet(request: web.Request, rep: Rep) -> web.Response:
    """`{"type_id", "body_type": "html"|"text"}` → the content Insert link puts at the cursor, already escaped for
    that body type. The task pane asks Outlook for the body type first (`body.getTypeAsync`): HTML coercion on a
    text body fails with InvalidFormatError."""
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    type_id, body_type = body.get("type_id"), body.get("body_type")
    if not isinstance(type_id, str) or not type_id:
        return api_error(400, "invalid_request", "type_id must name one of your appointment types")
    if body_type not in ("html", "text"):
        return api_error(400, "invalid_request", 'body_type must be "html" or "text"')
    context = request.app[ADDIN].context
    identity = rep.identity
    summaries = await _types_of(request, rep)
    summary = next((item for item in summaries if item.type_id == type_id), None)
    if summary is None:
        return api_error(404, "unknown_type", "that appointment type is not one of yours")
    snippet = LinkSnippet(
        type_name=summary.name,
        duration_minutes=summary.duration_minutes,
        location=summary.location.describe(),
        host_name=identity.name,
        url=type_url(context.base_url, identity, summary),
    )
    content = render_link_html(snippet) if body_type == "html" else render_link_text(snippet)
    return web.json_response({"coercion": body_type, "content": content, "url": snippet.url})


_CSRF_COOKIE: Final = "slotwise_time_csrf"
_MAX_SUGGESTED: Final = 5
_MAX_CANDIDATES: Final = 60
"""Free times the pane lists for the rep to pick from (checkboxes), soonest first."""
_MAX_LISTED: Final = 120
"""Free times a "see all times" page lists: each is a sealed link, and the page is public (anyone with the link)."""


async def _target_for(request: web.Request, rep: Rep, type_id: str) -> BookingTarget | None:
    """One of the rep's types as a booking target, or None. Both look-ups are per-process caches checked against
    the tenant's config_version read while authenticating, so a warm call reads nothing here."""
    state = request.app[ADDIN]
    deps = state.context.booking
    if deps is None or not any(summary.type_id == type_id for summary in await _types_of(request, rep)):
        return None
    key = (rep.identity.tenant_id, type_id)
    cached = state.targets.get(key)
    if cached is not None and cached[0] == rep.config_version:
        return cached[1]
    target = await deps.catalog.find_target_for_type(rep.identity.tenant_id, type_id)
    if len(state.targets) > 1024:
        state.targets.clear()
    state.targets[key] = (rep.config_version, target)
    return target


async def _free_slots(deps: BookingDeps, target: BookingTarget) -> list[Slot]:
    """The free times of the next `search_days` whole days in the host's zone, from now on. Whole days, as the
    booking page asks for them: the scheduler and the store cache by range, so a range that moved with `now` would
    re-read every calendar event on each call."""
    if not target.hosts:
        return []
    now = deps.clock.now()
    zone = target.hosts[0].schedule.time_zone
    first = now.astimezone(zone).date()
    range_start = datetime.combine(first, time(0), tzinfo=zone)
    range_end = datetime.combine(first + timedelta(days=deps.search_days), time(0), tzinfo=zone)
    slots = await deps.scheduler.list_slots(target, range_start, range_end)
    return [slot for slot in slots if slot.starts_at >= now]


@dataclass(frozen=True, slots=True)
class _TimesAsk:
    type_id: str
    target: BookingTarget
    zone: ZoneInfo
    zone_source: str
    """"chosen" (the rep typed it), "recipient" (their earlier booking) or "yours" (the rep's Outlook zone)."""
    name: str
    email: str


async def _read_times_ask(request: web.Request, rep: Rep, body: dict[str, Any]) -> _TimesAsk | web.Response:
    """The fields both suggested-time calls share: the type, the recipient and the zone to show times in.

    The zone is the one the rep chose (`time_zone`), else the one the recipient chose in their latest booking with
    this tenant, else the rep's Outlook zone (`rep_time_zone`), else the rep's zone in Slotwise."""
    context = request.app[ADDIN].context
    identity = rep.identity
    type_id, chosen_zone, rep_zone = body.get("type_id"), body.get("time_zone"), body.get("rep_time_zone")
    recipient = body.get("recipient") or {}
    if not isinstance(type_id, str) or not type_id:
        return api_error(400, "invalid_request", "type_id must name one of your appointment types")
    if not isinstance(recipient, dict):
        return api_error(400, "invalid_request", "recipient must be an object with name and email")
    name, email = recipient.get("name", ""), recipient.get("email", "")
    if not isinstance(name, str) or not isinstance(email, str) or len(name) > 200 or len(email) > 254:
        return api_error(400, "invalid_request", "recipient name and email must be short text")
    for value in (chosen_zone, rep_zone):
        if value is not None and not isinstance(value, str):
            return api_error(400, "invalid_time_zone", "time zones must be text")
    zone: ZoneInfo | None = None
    source = "chosen"
    if chosen_zone and chosen_zone.strip():
        zone = zone_named(chosen_zone)
        if zone is None:
            return api_error(
                400, "invalid_time_zone", "time_zone must be an IANA zone (Europe/London) or a Windows zone"
            )
    if zone is None and email.strip():
        known = await context.directory.recipient_time_zone(identity.tenant_id, email)
        zone, source = (zone_named(known) if known else None), "recipient"
    if zone is None:
        zone, source = zone_named(rep_zone or "") or zone_named(identity.time_zone), "yours"
    if zone is None:
        return api_error(400, "invalid_time_zone", "time_zone must be an IANA zone (Europe/London) or a Windows zone")
    target = await _target_for(request, rep, type_id)
    if target is None:
        return api_error(404, "unknown_type", "that appointment type is not one of yours")
    return _TimesAsk(type_id, target, zone, source, name.strip(), email.strip())


async def free_times(request: web.Request, rep: Rep) -> web.Response:
    """`{"type_id", "recipient": {"name", "email"}, "time_zone"?, "rep_time_zone"?}` → the zone to show times in
    (and where it came from) and the next free times of one of the rep's types, for the rep to pick from."""
    deps = request.app[ADDIN].context.booking
    if deps is None:
        return api_error(503, "unavailable", "suggested times are not available on this server")
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    ask = await _read_times_ask(request, rep, body)
    if isinstance(ask, web.Response):
        return ask
    slots = (await _free_slots(deps, ask.target))[:_MAX_CANDIDATES]
    return web.json_response(
        {
            "time_zone": ask.zone.key,
            "time_zone_source": ask.zone_source,
            "times": [
                {
                    "starts_at": slot.starts_at.isoformat(),
                    "label": describe_start(slot.starts_at, ask.zone),
                    "day": describe_day(slot.starts_at, ask.zone),
                    "clock": describe_clock(slot.starts_at, ask.zone),
                }
                for slot in slots
            ],
        }
    )


def _chosen_starts(value: object) -> list[datetime] | None:
    if not isinstance(value, list) or not 1 <= len(value) <= _MAX_SUGGESTED:
        return None
    starts: list[datetime] = []
    for item in value:
        if not isinstance(item, str) or len(item) > 40:
            return None
        try:
            start = datetime.fromisoformat(item)
        except ValueError:
            return None
        if start.tzinfo is None:
            return None
        starts.append(start)
    return sorted(set(starts))


async def suggested_times(request: web.Request, rep: Rep) -> web.Response:
    """`{"type_id", "starts": [ISO instants] | "count": 1-5, "time_zone"?, "rep_time_zone"?, "recipient": {"name",
    "email"}}` → the chosen free times (`starts`, as the rep ticked them) or the next `count`, each with its own
    signed link, and the block to insert (HTML and text) ending with a signed "see all times" link."""
    context = request.app[ADDIN].context
    deps = context.booking
    if deps is None:
        return api_error(503, "unavailable", "suggested times are not available on this server")
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    count, wanted = body.get("count", 3), body.get("starts")
    if wanted is None and (not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= _MAX_SUGGESTED):
        return api_error(400, "invalid_request", f"count must be a whole number from 1 to {_MAX_SUGGESTED}")
    starts = None if wanted is None else _chosen_starts(wanted)
    if wanted is not None and starts is None:
        return api_error(
            400, "invalid_request", f"starts must list 1 to {_MAX_SUGGESTED} times as ISO 8601 with an offset"
        )
    ask = await _read_times_ask(request, rep, body)
    if isinstance(ask, web.Response):
        return ask
    target, zone = ask.target, ask.zone
    slots = await _free_slots(deps, target)
    if starts is None:
        picked = [slot.starts_at for slot in slots[:count]]
    else:
        free = {slot.starts_at for slot in slots}
        taken = [start for start in starts if start not in free]
        if taken:
            return api_error(
                409,
                "time_not_free",
                "these times are no longer free: " + ", ".join(describe_start(start, zone) for start in taken),
            )
        picked = starts
    now = deps.clock.now()
    invite = TimesInvite(
        rep.identity.tenant_id,
        ask.type_id,
        new_block_id(),
        ask.name,
        ask.email,
        zone.key,
        now + timedelta(days=deps.link_days),
    )
    times = [
        (start, describe_start(start, zone), f"{context.base_url}/addin/t/{deps.links.seal(invite.time_at(start))}")
        for start in picked
    ]
    block = TimesBlock(
        type_name=target.appointment_type.name,
        duration_minutes=int(target.duration.total_seconds() // 60),
        zone_name=zone.key,
        times=tuple((label, url) for _, label, url in times),
        see_all_url=f"{context.base_url}/addin/all/{deps.links.seal_all(invite)}",
    )
    return web.json_response(
        {
            "time_zone": zone.key,
            "time_zone_source": ask.zone_source,
            "times": [{"starts_at": start.isoformat(), "label": label, "url": url} for start, label, url in times],
            "see_all_url": block.see_all_url,
            "html": render_times_html(block),
            "text": render_times_text(block),
        }
    )


def _locale_of(request: web.Request) -> str:
    """The client's language for the pages a suggested time opens: their browser's Accept-Language (en or de)."""
    return negotiate_locale(request.headers.get("Accept-Language", ""))


def _when(moment: datetime, zone: ZoneInfo, locale: str) -> str:
    """ "Tuesday, November 24, 2026, 3:00 PM" (English) or "Dienstag, 24. November 2026, 15:00" (German): in the
    client's zone, in their language's own date and clock format (CLDR through Babel)."""
    local = moment.astimezone(zone)
    where = babel_locale(locale)
    return f"{format_date(local, 'full', locale=where)}, {format_time(local, 'short', locale=where)}"


def _day(moment: datetime, zone: ZoneInfo, locale: str) -> str:
    return format_date(moment.astimezone(zone), "full", locale=babel_locale(locale))


def _clock(moment: datetime, zone: ZoneInfo, locale: str) -> str:
    return format_time(moment.astimezone(zone), "short", locale=babel_locale(locale))


def _zone_label(zone: ZoneInfo) -> str:
    return zone.key.replace("_", " ")


def _time_page(
    request: web.Request,
    locale: str,
    title: str,
    lines: list[str],
    *,
    status: int = 200,
    confirm: bool = False,
    ask_details: bool = False,
    alternatives: list[tuple[str, str]] | None = None,
    links: list[tuple[str, str]] | None = None,
    days: list[tuple[str, list[tuple[str, str]]]] | None = None,
) -> web.Response:
    """A page a client reaches from suggested times in an email; every text on it is already in `locale`."""
    csrf = request.cookies.get(_CSRF_COOKIE) or secrets.token_urlsafe(24)
    html = TEMPLATES.get_template("suggested_time.html").render(
        lang=locale,
        title=title,
        lines=lines,
        confirm=confirm,
        ask_details=ask_details,
        csrf_token=csrf,
        alternatives=alternatives or [],
        links=links or [],
        days=days or [],
        labels={
            "name": translate(locale, "Your name"),
            "email": translate(locale, "Your email"),
            "confirm": translate(locale, "Confirm this time"),
            "others": translate(locale, "Other free times"),
        },
    )
    response = web.Response(text=html, status=status, content_type="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Language"] = locale
    response.headers["Vary"] = "Accept-Language"
    if _CSRF_COOKIE not in request.cookies:
        response.set_cookie(_CSRF_COOKIE, csrf, httponly=True, samesite="Strict", path="/addin/t/")
    return response


def _unavailable(request: web.Request, locale: str) -> web.Response:
    return _time_page(
        request,
        locale,
        translate(locale, "Not available"),
        [translate(locale, "Booking from email is not available here.")],
        status=503,
    )


def _invalid(request: web.Request, locale: str) -> web.Response:
    return _time_page(
        request,
        locale,
        translate(locale, "Link not valid"),
        [translate(locale, "This link is not valid. Check that you opened the whole link.")],
        status=400,
    )


def _expired(request: web.Request, locale: str) -> web.Response:
    return _time_page(
        request,
        locale,
        translate(locale, "Link expired"),
        [translate(locale, "This link has expired. Ask the sender for new times.")],
        status=410,
    )


def _gone(request: web.Request, locale: str) -> web.Response:
    return _time_page(
        request,
        locale,
        translate(locale, "No longer offered"),
        [translate(locale, "This appointment type is no longer offered.")],
        status=410,
    )


def _taken_by_another(
    request: web.Request, locale: str, *, status: int = 200, links: list[tuple[str, str]] | None = None
) -> web.Response:
    return _time_page(
        request,
        locale,
        translate(locale, "Already booked"),
        [translate(locale, "A time from this email is already booked. Each email's times book once.")],
        status=status,
        links=links,
    )


async def _open_time(
    request: web.Request, locale: str
) -> tuple[BookingDeps, SuggestedTime, BookingTarget] | web.Response:
    deps = request.app[ADDIN].context.booking
    if deps is None:
        return _unavailable(request, locale)
    try:
        chosen = deps.links.open(request.match_info["token"], deps.clock.now())
    except SuggestionLinkInvalid:
        return _invalid(request, locale)
    except SuggestionLinkExpired:
        return _expired(request, locale)
    target = await deps.catalog.find_target_for_type(chosen.tenant_id, chosen.type_id)
    if target is None:
        return _gone(request, locale)
    return deps, chosen, target


def _block_key(chosen: SuggestedTime) -> str:
    return f"suggested:{chosen.block_id}"


def _booked_page(
    request: web.Request, locale: str, deps: BookingDeps, booking: Booking, zone: ZoneInfo, *, just_now: bool
) -> web.Response:
    when = {"when": _when(booking.starts_at, zone, locale), "zone": _zone_label(zone)}
    lines = (
        [
            translate(locale, "You're booked for %(when)s (%(zone)s).") % when,
            translate(locale, "A confirmation goes to %(email)s.") % {"email": booking.client.email},
        ]
        if just_now
        else [
            translate(locale, "A time from this email is already booked: %(when)s (%(zone)s).") % when,
            translate(locale, "Each email's times book once; use the link below to change or cancel that booking."),
        ]
    )
    return _time_page(
        request,
        locale,
        translate(locale, "Booked") if just_now else translate(locale, "Already booked"),
        lines,
        links=[(translate(locale, "Change or cancel this booking"), deps.manage_url_for(booking))],
    )


def _about(target: BookingTarget, locale: str) -> str:
    return translate(locale, "%(type)s with %(tenant)s, %(minutes)d minutes.") % {
        "type": target.appointment_type.name,
        "tenant": target.tenant_name,
        "minutes": int(target.duration.total_seconds() // 60),
    }


def _booking_for(name: str, email: str, locale: str) -> str:
    return translate(locale, "Booking for %(name)s <%(email)s>.") % {"name": name or email, "email": email}


async def time_link(request: web.Request) -> web.Response:
    """GET: show the time and a Confirm button. Never books (link scanners open every URL in an email)."""
    locale = _locale_of(request)
    opened = await _open_time(request, locale)
    if isinstance(opened, web.Response):
        return opened
    deps, chosen, target = opened
    zone = ZoneInfo(chosen.zone)
    existing = await deps.store.find_by_idempotency_key(chosen.tenant_id, _block_key(chosen))
    if existing is not None and existing.status is BookingStatus.CONFIRMED:
        if chosen.email and existing.client.email.casefold() == chosen.email.casefold():
            return _booked_page(request, locale, deps, existing, zone, just_now=False)
        # Booked by someone who typed their own details: its time and manage link are theirs alone.
        return _taken_by_another(request, locale)
    lines = [
        _about(target, locale),
        translate(locale, "When: %(when)s (%(zone)s).")
        % {"when": _when(chosen.starts_at, zone, locale), "zone": _zone_label(zone)},
        _booking_for(chosen.name, chosen.email, locale) if chosen.email else "",
    ]
    # Times inserted before the email had a recipient carry no one: the client types their own details then.
    return _time_page(
        request,
        locale,
        translate(locale, "Confirm your time"),
        [line for line in lines if line],
        confirm=True,
        ask_details=not chosen.email,
    )


async def book_time_link(request: web.Request) -> web.Response:
    """POST (the Confirm button): book the chosen time once per email block; a taken time shows the next free ones."""
    locale = _locale_of(request)
    opened = await _open_time(request, locale)
    if isinstance(opened, web.Response):
        return opened
    deps, chosen, target = opened
    form = await request.post()
    submitted = form.get("csrf_token")
    cookie = request.cookies.get(_CSRF_COOKIE)
    if not cookie or not isinstance(submitted, str) or not secrets.compare_digest(cookie, submitted):
        return _time_page(
            request,
            locale,
            translate(locale, "Please try again"),
            [translate(locale, "The form expired. Open the link again and confirm.")],
            status=403,
        )
    zone = ZoneInfo(chosen.zone)
    if chosen.email:
        name, email = chosen.name or chosen.email, chosen.email
    else:
        typed_name, typed_email = form.get("name"), form.get("email")
        name = typed_name.strip() if isinstance(typed_name, str) else ""
        email = typed_email.strip() if isinstance(typed_email, str) else ""
    # The booking keeps the client's language, so its emails and reminders are written in it.
    client = ClientDetails(name=name, email=email, time_zone=chosen.zone, answers={}, locale=locale)
    see_all = [(translate(locale, "See all times"), _see_all_path(deps, chosen))]
    try:
        booking, created = await deps.scheduler.book(
            target, chosen.starts_at, client, idempotency_key=_block_key(chosen)
        )
    except SlotUnavailable as taken:
        alternatives = []
        for start in list(taken.next_free)[:_MAX_SUGGESTED]:
            token = deps.links.seal(
                SuggestedTime(
                    chosen.tenant_id,
                    chosen.type_id,
                    start,
                    chosen.block_id,
                    chosen.name,
                    chosen.email,
                    chosen.zone,
                    chosen.expires_at,
                )
            )
            alternatives.append((_when(start, zone, locale), f"/addin/t/{token}"))
        return _time_page(
            request,
            locale,
            translate(locale, "That time was just taken"),
            [
                translate(locale, "%(when)s is no longer free. Pick another time (%(zone)s):")
                % {"when": _when(chosen.starts_at, zone, locale), "zone": _zone_label(zone)}
            ],
            status=409,
            alternatives=alternatives,
            links=see_all,
        )
    except IdempotencyKeyReused:
        # Someone else already booked from this email's times: say so, without showing their booking.
        return _taken_by_another(request, locale, status=409, links=see_all)
    except InvalidRequest as problem:
        return _time_page(
            request,
            locale,
            translate(locale, "More details needed"),
            [translate_message(locale, str(problem)), translate(locale, "Please book on the booking page instead.")],
            status=422,
            links=[
                (
                    translate(locale, "Open the booking page"),
                    f"/book/{target.tenant_slug}/{target.appointment_type.slug}",
                )
            ],
        )
    except SlotwiseError as problem:
        return _time_page(
            request, locale, translate(locale, "Not booked"), [translate_message(locale, str(problem))], status=409
        )
    just_now = created or booking.starts_at == chosen.starts_at
    return _booked_page(request, locale, deps, booking, zone, just_now=just_now)


def _see_all_path(deps: BookingDeps, chosen: SuggestedTime) -> str:
    invite = TimesInvite(
        chosen.tenant_id, chosen.type_id, chosen.block_id, chosen.name, chosen.email, chosen.zone, chosen.expires_at
    )
    return f"/addin/all/{deps.links.seal_all(invite)}"


async def see_all_times(request: web.Request) -> web.Response:
    """GET the block's "see all times" link: every free time of the next days, grouped by day in the recipient's
    zone, each a link of the same block (so the name and email stay filled in from the signed token, and the block
    still books once). Once a time of the block is booked, it says so and points to that booking instead."""
    locale = _locale_of(request)
    deps = request.app[ADDIN].context.booking
    if deps is None:
        return _unavailable(request, locale)
    try:
        invite = deps.links.open_all(request.match_info["token"], deps.clock.now())
    except SuggestionLinkInvalid:
        return _invalid(request, locale)
    except SuggestionLinkExpired:
        return _expired(request, locale)
    target = await deps.catalog.find_target_for_type(invite.tenant_id, invite.type_id)
    if target is None:
        return _gone(request, locale)
    zone = ZoneInfo(invite.zone)
    existing = await deps.store.find_by_idempotency_key(invite.tenant_id, f"suggested:{invite.block_id}")
    if existing is not None and existing.status is BookingStatus.CONFIRMED:
        if invite.email and existing.client.email.casefold() == invite.email.casefold():
            return _booked_page(request, locale, deps, existing, zone, just_now=False)
        return _taken_by_another(request, locale)
    days: dict[str, list[tuple[str, str]]] = {}
    free = await _free_slots(deps, target)
    for slot in free[:_MAX_LISTED]:
        day = days.setdefault(_day(slot.starts_at, zone, locale), [])
        day.append(
            (_clock(slot.starts_at, zone, locale), f"/addin/t/{deps.links.seal(invite.time_at(slot.starts_at))}")
        )
    lines = [
        _about(target, locale),
        translate(locale, "Times in %(zone)s.") % {"zone": _zone_label(zone)},
        _booking_for(invite.name, invite.email, locale) if invite.email else "",
        translate(locale, "Pick a time to book it.")
        if days
        else translate(locale, "There are no free times in the next two weeks. Ask the sender."),
        translate(locale, "These are the first %(count)d free times.") % {"count": _MAX_LISTED}
        if len(free) > _MAX_LISTED
        else "",
    ]
    return _time_page(
        request, locale, translate(locale, "All free times"), [line for line in lines if line], days=list(days.items())
    )


async def recipients(request: web.Request, rep: Rep) -> web.Response:
    """The email's recipients as the tenant's PSA knows them: `{"addresses": [...]}` in, one answer per address out
    (matched with contact, company and open opportunities; unknown; or unavailable with a reason)."""
    matcher = request.app[ADDIN].context.recipients
    if matcher is None:
        return api_error(503, "unavailable", "Recipient look-ups are not available on this Slotwise server")
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    addresses = clean_addresses(body.get("addresses"))
    if addresses is None:
        return api_error(
            400,
            "invalid_addresses",
            f"'addresses' must be a list of at most {MAX_ADDRESSES} email addresses",
        )
    try:
        answers = await matcher.match(rep.identity.tenant_id, addresses)
    except ServiceUnavailable as exc:
        return api_error(503, "starting", str(exc))
    if answers is None:
        return web.json_response({"psa": False, "recipients": []})
    return web.json_response({"psa": True, "recipients": [answer.to_json() for answer in answers]})


_MAX_ONE_OFF_DAYS: Final = 366
_MAX_ONE_OFF_GUESTS: Final = 10


def _whole_number(value: object) -> int | None:
    """A JSON whole number (30 or 30.0), else None."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


async def one_off_link(request: web.Request, rep: Rep) -> web.Response:
    """`{"type_id", "body_type", "duration_minutes"?, "window_days"?, "single_use"?, "guests"?}` → a scheduling
    request (no ticket) for one of the rep's types, and the content Insert puts at the cursor. Its request triggers
    run as for any request; each bad value is a 400 whose code names the field."""
    context = request.app[ADDIN].context
    deps = context.one_off
    if deps is None:
        return api_error(503, "unavailable", "One-off links are not available on this Slotwise server")
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    type_id, body_type = body.get("type_id"), body.get("body_type")
    if not isinstance(type_id, str) or not type_id:
        return api_error(400, "invalid_type_id", "type_id must name one of your appointment types")
    if body_type not in ("html", "text"):
        return api_error(400, "invalid_body_type", 'body_type must be "html" or "text"')
    duration = body.get("duration_minutes")
    minutes = _whole_number(duration) if duration is not None else None
    if duration is not None and (minutes is None or not 5 <= minutes <= 480):
        return api_error(400, "invalid_duration_minutes", "duration_minutes must be a whole number from 5 to 480")
    days_given = body.get("window_days")
    days = _whole_number(days_given) if days_given is not None else None
    if days_given is not None and (days is None or not 1 <= days <= _MAX_ONE_OFF_DAYS):
        return api_error(
            400, "invalid_window_days", f"window_days must be a whole number of days from 1 to {_MAX_ONE_OFF_DAYS}"
        )
    single_use = body.get("single_use", True)
    if single_use is None:
        single_use = True
    if not isinstance(single_use, bool):
        return api_error(400, "invalid_single_use", "single_use must be true or false")
    given_guests = body.get("guests") or []
    if not isinstance(given_guests, list) or len(given_guests) > _MAX_ONE_OFF_GUESTS:
        return api_error(
            400, "invalid_guests", f"guests must be a list of at most {_MAX_ONE_OFF_GUESTS} email addresses"
        )
    guests: dict[str, str] = {}
    for guest in given_guests:
        try:
            address = validate_email(guest if isinstance(guest, str) else "", field="guests")
        except InvalidRequest as exc:
            return api_error(400, "invalid_guests", str(exc))
        guests.setdefault(address.lower(), address)
    summary = next((item for item in await _types_of(request, rep) if item.type_id == type_id), None)
    if summary is None:
        return api_error(404, "unknown_type", "that appointment type is not one of yours")
    binding = await _binding_of(request, rep, body.get("bind"))
    if isinstance(binding, web.Response):
        return binding
    identity = rep.identity
    now = deps.clock.now()
    window_end = now + timedelta(days=days) if days is not None else None
    expires = now + timedelta(days=deps.link_days)
    if window_end is not None:
        expires = min(expires, window_end)
    try:
        request_id = await deps.requests.create_request(
            identity.tenant_id,
            summary.slug,
            duration=timedelta(minutes=minutes) if minutes else None,
            window_starts_at=None,
            window_ends_at=window_end,
            guests=list(guests.values()),
            created_by=f"Outlook: {identity.name}"[:200],
            expires_at=expires,
            now=now,
            single_use=single_use,
            binding=binding,
        )
    except InvalidRequest as exc:
        return api_error(400, f"invalid_{exc.field or 'request'}", str(exc))
    url = deps.url_for(identity.tenant_id, request_id, expires)
    snippet = LinkSnippet(
        type_name=summary.name,
        duration_minutes=minutes or summary.duration_minutes,
        location=summary.location.describe(),
        host_name=identity.name,
        url=url,
    )
    content = render_link_html(snippet) if body_type == "html" else render_link_text(snippet)
    return web.json_response(
        {
            "id": request_id,
            "url": url,
            "expires_at": expires.isoformat(),
            "single_use": single_use,
            "guests": list(guests.values()),
            "duration_minutes": snippet.duration_minutes,
            "coercion": body_type,
            "content": content,
            "bound_to": _bound_json(binding),
        },
        status=201,
    )


async def _binding_of(request: web.Request, rep: Rep, given: object) -> PsaBinding | web.Response | None:
    """`bind: {"email", "opportunity_id"?}`: the PSA contact the rep matched among the email's recipients (and one of
    its open opportunities), taken from the server's own look-up, never from ids the pane sends; so a link can only
    be bound to a contact of the rep's own tenant that has this address. None without `bind`; else a clear error."""
    if given is None:
        return None
    if not isinstance(given, dict) or not isinstance(given.get("email"), str):
        return api_error(400, "invalid_bind", 'bind must be {"email": a recipient\'s address, "opportunity_id"?: ...}')
    addresses = clean_addresses([given["email"]])
    deal_id = given.get("opportunity_id")
    if not addresses or (deal_id is not None and not isinstance(deal_id, str)):
        return api_error(400, "invalid_bind", "bind.email must be an email address and bind.opportunity_id text")
    matcher = request.app[ADDIN].context.recipients
    if matcher is None:
        return api_error(503, "unavailable", "Recipient look-ups are not available on this Slotwise server")
    try:
        answers = await matcher.match(rep.identity.tenant_id, addresses)
    except ServiceUnavailable as exc:
        return api_error(503, "starting", str(exc))
    if answers is None:
        return api_error(400, "no_psa", "Your tenant has no PSA connected, so a link cannot be bound to a PSA contact")
    answer = answers[0]
    if answer.status == "unavailable":
        return api_error(503, "psa_unavailable", f"{answer.message}; the link was not made")
    if answer.match is None:
        return api_error(
            404, "unknown_contact", f"Your PSA has no contact with the address {answer.email}; add the contact first"
        )
    deal = None
    if deal_id:
        deal = next((item for item in answer.match.opportunities if item.opportunity_id == deal_id), None)
        if deal is None:
            return api_error(
                404,
                "unknown_opportunity",
                f"That opportunity is not one of {answer.match.contact.name}'s open opportunities in your PSA",
            )
    return PsaBinding(answer.match.contact, answer.match.company_name, deal)


def _bound_json(binding: PsaBinding | None) -> dict[str, Any] | None:
    if binding is None:
        return None
    contact, deal = binding.contact, binding.opportunity
    return {
        "contact": {"id": contact.contact_id, "name": contact.name, "email": contact.email},
        "company": binding.company_name,
        "opportunity": {"id": deal.opportunity_id, "name": deal.name} if deal is not None else None,
    }


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    if request.content_type != "application/json":
        return api_error(415, "unsupported_media_type", "send the request body as application/json")
    raw = await request.read()  # the application's client_max_size caps it first
    if len(raw) > _MAX_BODY_BYTES:
        return api_error(413, "too_large", f"the request body is larger than {_MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except ValueError:
        return api_error(400, "invalid_json", "the request body is not valid JSON")
    if not isinstance(body, dict):
        return api_error(400, "invalid_request", "the request body must be a JSON object")
    return body


def _page_config(context: AddinContext) -> dict[str, Any]:
    scope_base = context.auth.app_id_uri or context.auth.client_id or ""
    return {
        "clientId": context.auth.client_id or "",
        "authority": ENTRA_AUTHORITY,
        "scopes": [f"{scope_base}/{context.auth.scope}"],
        "apiBase": "",
        "dialogPath": DIALOG_PATH,
    }


def _page(template: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def render(request: web.Request) -> web.Response:
        context = request.app[ADDIN].context
        html = TEMPLATES.get_template(template).render(
            office_js_url=context.office_js_url, config=_page_config(context)
        )
        response = web.Response(text=html, content_type="text/html")
        # Outlook frames the pane, so no frame-ancestors here; scripts come from us and the Office.js URL only.
        office_origin = str(URL(context.office_js_url).origin())
        response.headers["Content-Security-Policy"] = (
            f"script-src 'self' {office_origin}; object-src 'none'; base-uri 'none'; form-action 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-cache"
        return response

    return render


async def msal_script(request: web.Request) -> web.StreamResponse:
    """MSAL.js from our own origin. Missing (scripts/bootstrap not run) is a 404 the pane turns into a clear message."""
    path = request.app[ADDIN].context.msal_script
    if not path.is_file():
        return web.Response(
            status=404,
            text="// MSAL.js is not installed on this Slotwise server: run scripts/bootstrap\n",
            content_type="text/javascript",
        )
    return web.FileResponse(path, headers={"Content-Type": "text/javascript", "Cache-Control": "max-age=3600"})


def setup_addin(app: web.Application, context: AddinContext) -> None:
    """Mount the add-in API; its authenticator (and the HTTP session it fetches signing keys with) lives as long as
    the application."""
    state = _AddinState(context)
    app[ADDIN] = state
    app.router.add_static("/addin/static/", STATIC_DIR)
    app.router.add_get("/addin/taskpane.html", _page("taskpane.html"))
    app.router.add_get(DIALOG_PATH, _page("auth-dialog.html"))
    app.router.add_get("/addin/vendor/msal-browser.min.js", msal_script)
    app.router.add_get("/addin/api/me", _authenticated(me))
    app.router.add_get("/addin/api/appointment-types", _authenticated(appointment_types))
    app.router.add_post("/addin/api/link", _authenticated(link_snippet))
    app.router.add_post("/addin/api/free-times", _authenticated(free_times))
    app.router.add_post("/addin/api/suggested-times", _authenticated(suggested_times))
    app.router.add_post("/addin/api/recipients", _authenticated(recipients))
    app.router.add_post("/addin/api/one-off-links", _authenticated(one_off_link))
    app.router.add_get("/addin/t/{token}", time_link)
    app.router.add_post("/addin/t/{token}", book_time_link)
    app.router.add_get("/addin/all/{token}", see_all_times)

    async def addin_ctx(_app: web.Application) -> AsyncIterator[None]:
        session = context.session_factory()
        state.authenticator = AddinAuthenticator(context.auth, session, context.directory)
        yield
        state.authenticator = None
        await session.close()

    app.cleanup_ctx.append(addin_ctx)
