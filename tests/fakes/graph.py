"""FakeGraphServer: a stateful Microsoft Graph and Entra token endpoint over real loopback HTTP, with faults.

Behaviour follows ../shared/reference/apis.md §4, toolchain.md §6 and perf_reliability.md §2:
- `/{tenant}/v2.0/.well-known/openid-configuration` and `/{tenant}/oauth2/v2.0/token` (client credentials), which
  msal needs. msal accepts only an **https** authority (`msal.authority.canonicalize` raises for anything else), so
  `serve_fake_graph` serves the same app twice: plain http for `/v1.0` (kiota allows http for 127.0.0.1 only) and
  TLS with a throwaway self-signed certificate for the login routes.
- `/v1.0/users/{id}/calendar/getSchedule` (keys read case-insensitively: the SDK sends PascalCase), events with
  `transactionId` de-duplication, `/cancel`, `calendarView` (expands a simple weekly series) and `sendMail` (202).
- Profile photos: `/v1.0/users/{id}/photo/$value` and `/photos/{size}/$value` (image bytes, or 404 ImageNotFound).
- Bearer tokens on every `/v1.0` call; 401s and every other error carry Graph's JSON error body.
- At most 4 concurrent requests per mailbox: the 5th gets 429 `ApplicationThrottled` (MailboxConcurrency).

Run it alone for the demo: `python -m tests.fakes.graph --port 8084` (login on port + 1, over TLS).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import secrets
import ssl
import struct
import sys
import tempfile
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DEMO_TENANT_ID = "00000000-0000-4000-8000-00000000f00d"
DEMO_CLIENT_ID = "11111111-2222-4333-8444-555555555555"
DEMO_CLIENT_SECRET = "graph-demo-secret"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MAX_SCHEDULE_DAYS = 42
MAX_SCHEDULES_PER_CALL = 100
"""Graph documents no hard cap on `schedules`; 100 stands in for "slow beyond 15-20" (apis.md §4) [U]."""

_ERROR_CODES = {
    400: "ErrorInvalidRequest",
    401: "InvalidAuthenticationToken",
    403: "ErrorAccessDenied",
    404: "ErrorItemNotFound",
    429: "ApplicationThrottled",
    500: "InternalServerError",
    503: "ServiceNotAvailable",
    504: "GatewayTimeout",
}


PHOTO_SIZES = ("48x48", "64x64", "96x96", "120x120", "240x240", "360x360", "432x432", "504x504", "648x648")
"""The HD sizes Microsoft 365 keeps a profile photo in
(https://learn.microsoft.com/en-us/graph/api/profilephoto-get?view=graph-rest-1.0, "Path parameters")."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def generated_png(pixels: int = 96, colour: tuple[int, int, int] = (0x2B, 0x6C, 0xB0)) -> bytes:
    """A real PNG (8-bit RGB, one colour with a lighter disc in the middle), built with zlib and struct so the demo
    and tests need no imaging library. Chunk layout: https://www.w3.org/TR/png-3/#5Chunk-layout"""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    lighter = tuple(min(255, channel + 90) for channel in colour)
    centre, radius = (pixels - 1) / 2, pixels * 0.3
    rows = b"".join(
        b"\x00"
        + b"".join(
            bytes(lighter if (x - centre) ** 2 + (y - centre) ** 2 <= radius**2 else colour) for x in range(pixels)
        )
        for y in range(pixels)
    )
    header = struct.pack(">IIBBBBB", pixels, pixels, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class GraphError(Exception):
    """Answered as Graph's JSON error shape `{"error": {"code", "message", "innerError"}}`."""

    def __init__(self, status: int, message: str, *, code: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _ERROR_CODES.get(status, "UnknownError")
        self.message = message
        self.retry_after = retry_after


def graph_error_response(error: GraphError) -> web.Response:
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "innerError": {"date": _utc_now().strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4())},
        }
    }
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else {}
    return web.json_response(body, status=error.status, headers=headers)


def _graph_time(moment: datetime) -> dict[str, str]:
    # Graph answers in UTC unless `Prefer: outlook.timezone` says otherwise, with seven fractional digits.
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}


def _parse_graph_time(value: Any, name: str) -> datetime:
    """A `dateTimeTimeZone`: a wall-clock `dateTime` and an IANA or "UTC" `timeZone` (Windows zone names are not
    modelled here)."""
    if not isinstance(value, dict):
        raise GraphError(400, f"{name} must be a dateTimeTimeZone object", code="ErrorInvalidParameter")
    lowered = {key.lower(): item for key, item in value.items()}
    raw, zone_name = lowered.get("datetime"), lowered.get("timezone") or "UTC"
    if not isinstance(raw, str) or not isinstance(zone_name, str):
        raise GraphError(400, f"{name}.dateTime is required", code="ErrorInvalidParameter")
    try:
        zone = ZoneInfo("UTC" if zone_name.upper() in ("UTC", "Z") else zone_name)
        parsed = datetime.fromisoformat(raw.replace("Z", "").split(".")[0])
    except (ValueError, ZoneInfoNotFoundError):
        raise GraphError(400, f"{name} is not a valid date and time zone", code="ErrorInvalidParameter") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def _caseless(body: dict[str, Any]) -> dict[str, Any]:
    # Graph reads property names case-insensitively; the SDK's getSchedule body is PascalCase (toolchain.md §6).
    return {key.lower(): value for key, value in body.items() if not key.startswith("@odata")}


@dataclass
class Fault:
    status: int
    retry_after: int | None
    message: str


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    """Case-insensitive, as HTTP header names are."""
    body: str
    status: int = 0

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Photo:
    content: bytes
    content_type: str
    pixels: int
    """The uploaded photo's width (and height); Microsoft 365 offers it at that HD size and every smaller one."""


@dataclass
class SentMail:
    mailbox: str
    message: dict[str, Any]
    save_to_sent_items: bool


@dataclass
class FakeGraphServer:
    """One Entra tenant with one app registration, and the mailboxes it can reach.

    `clock` drives token expiry; `latency_seconds` keeps requests in flight long enough for the per-mailbox
    concurrency limit to be observable."""

    tenant_id: str = DEMO_TENANT_ID
    client_id: str = DEMO_CLIENT_ID
    client_secret: str = DEMO_CLIENT_SECRET
    clock: Callable[[], datetime] = _utc_now
    token_lifetime: timedelta = timedelta(hours=1)
    latency_seconds: float = 0.0
    mailbox_concurrency: int = 4
    request_log: list[LoggedRequest] = field(default_factory=list)
    events: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """Mailbox (lower case) -> event id -> event resource."""
    busy: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Mailbox (lower case) -> schedule items added with add_busy."""
    outbox: list[SentMail] = field(default_factory=list)
    photos: dict[str, Photo] = field(default_factory=dict)
    """Mailbox (lower case) -> its profile photo, set with set_photo."""
    tokens: dict[str, datetime] = field(default_factory=dict)
    """Issued bearer tokens and when each expires."""
    in_flight: Counter[str] = field(default_factory=Counter)
    max_in_flight: Counter[str] = field(default_factory=Counter)
    """Highest number of concurrent requests seen per mailbox."""
    concurrency_throttled: int = 0
    """How many requests were refused with MailboxConcurrency."""
    _faults: list[Fault] = field(default_factory=list)
    _lose_next: bool = False
    _revoked: bool = False

    # Control

    def fail_next(self, status: int, *, retry_after: int | None = None, message: str = "", count: int = 1) -> None:
        """The next `count` Graph (/v1.0) calls answer `status` with Graph's error body (and Retry-After if given)."""
        self._faults.extend(Fault(status, retry_after, message) for _ in range(count))

    def lose_next_response(self) -> None:
        """The next Graph call is processed and committed, then the connection drops before the answer."""
        self._lose_next = True

    def revoke_credentials(self) -> None:
        """The app's client secret is deleted in Entra: the token endpoint refuses it and issued tokens die."""
        self._revoked = True
        self.tokens.clear()

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def add_busy(
        self, mailbox: str, starts_at: datetime, ends_at: datetime, status: str = "busy", **extra: Any
    ) -> None:
        """A schedule item as getSchedule reports it; `extra` may carry `subject`, `location` or `isPrivate`."""
        if status not in ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown"):
            raise ValueError(f"not a freeBusyStatus: {status}")
        self.busy.setdefault(mailbox.lower(), []).append(
            {"status": status, "starts_at": starts_at.astimezone(UTC), "ends_at": ends_at.astimezone(UTC), **extra}
        )

    def set_photo(self, mailbox: str, content: bytes, *, content_type: str = "image/jpeg", pixels: int = 648) -> None:
        """Give the account a profile photo. The fake does not resize: every size it is offered at answers with
        these bytes, as they were uploaded."""
        self.photos[mailbox.lower()] = Photo(content, content_type, pixels)

    def remove_photo(self, mailbox: str) -> None:
        self.photos.pop(mailbox.lower(), None)

    def mailbox_events(self, mailbox: str) -> list[dict[str, Any]]:
        return list(self.events.get(mailbox.lower(), {}).values())

    def graph_requests(self, suffix: str = "") -> list[LoggedRequest]:
        return [entry for entry in self.request_log if entry.path.startswith("/v1.0/") and entry.path.endswith(suffix)]

    # Serving

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._log_middleware, self._graph_middleware])
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._openid_configuration)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_post("/v1.0/users/{user}/calendar/getSchedule", self._get_schedule)
        app.router.add_post("/v1.0/users/{user}/events", self._create_event)
        app.router.add_get("/v1.0/users/{user}/events/{event}", self._get_event)
        app.router.add_patch("/v1.0/users/{user}/events/{event}", self._update_event)
        app.router.add_post("/v1.0/users/{user}/events/{event}/cancel", self._cancel_event)
        app.router.add_get("/v1.0/users/{user}/calendarView", self._calendar_view)
        app.router.add_get("/v1.0/users/{user}/calendar/calendarView", self._calendar_view)
        app.router.add_post("/v1.0/users/{user}/sendMail", self._send_mail)
        app.router.add_get("/v1.0/users/{user}/photo/$value", self._photo_value)
        app.router.add_get("/v1.0/users/{user}/photos/{size}/$value", self._photo_value)
        return app

    @web.middleware
    async def _log_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        entry = LoggedRequest(
            method=request.method,
            path=unquote(request.path),
            query=dict(request.query),
            headers=CIMultiDict(request.headers),
            body=await request.text() if request.can_read_body else "",
        )
        self.request_log.append(entry)
        try:
            response = await handler(request)
        except GraphError as error:
            response = graph_error_response(error)
        except web.HTTPException as exc:
            response = graph_error_response(GraphError(exc.status, exc.reason))
        entry.status = response.status
        return response

    @web.middleware
    async def _graph_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1.0/"):
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expires_at = self.tokens.get(token) if scheme == "Bearer" else None
        if expires_at is None or self.clock() >= expires_at:
            self.tokens.pop(token, None)
            message = "Lifetime validation failed, the token is expired." if expires_at else "Access token is empty."
            raise GraphError(401, message, code="InvalidAuthenticationToken")
        if self._faults:
            fault = self._faults.pop(0)
            raise GraphError(fault.status, fault.message or f"Injected {fault.status}", retry_after=fault.retry_after)
        mailbox = unquote(request.match_info.get("user", "")).lower()
        if self.in_flight[mailbox] >= self.mailbox_concurrency:
            # Outlook's per-mailbox limit (perf_reliability.md §2): the 5th concurrent request is refused.
            self.concurrency_throttled += 1
            raise GraphError(
                429,
                "Application is over its MailboxConcurrency limit.",
                code="ApplicationThrottled",
                retry_after=1,
            )
        self.in_flight[mailbox] += 1
        self.max_in_flight[mailbox] = max(self.max_in_flight[mailbox], self.in_flight[mailbox])
        try:
            if self.latency_seconds:
                await asyncio.sleep(self.latency_seconds)
            response = await handler(request)
        finally:
            self.in_flight[mailbox] -= 1
        if self._lose_next:
            self._lose_next = False
            if request.transport is not None:
                request.transport.close()
        return response

    # Login (Entra ID v2.0)

    def _require_tenant(self, request: web.Request) -> None:
        if request.match_info["tenant"] not in (self.tenant_id, "organizations"):
            raise GraphError(
                400, f"AADSTS90002: Tenant '{request.match_info['tenant']}' not found.", code="invalid_tenant"
            )

    async def _openid_configuration(self, request: web.Request) -> web.Response:
        self._require_tenant(request)
        base = f"{request.scheme}://{request.host}/{self.tenant_id}"
        return web.json_response(
            {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "jwks_uri": f"{request.scheme}://{request.host}/{self.tenant_id}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "tenant_region_scope": "EU",
            }
        )

    async def _token(self, request: web.Request) -> web.Response:
        self._require_tenant(request)
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return self._oauth_error(400, "unsupported_grant_type", "AADSTS70003: The grant type is not supported.")
        client_id = str(form.get("client_id", ""))
        if client_id != self.client_id:
            return self._oauth_error(
                400, "unauthorized_client", f"AADSTS700016: Application '{client_id}' was not found."
            )
        if self._revoked or not secrets.compare_digest(str(form.get("client_secret", "")), self.client_secret):
            # Entra answers a wrong or deleted secret with 401 invalid_client (AADSTS7000215).
            return self._oauth_error(
                401, "invalid_client", "AADSTS7000215: Invalid client secret provided for the application."
            )
        scope = str(form.get("scope", ""))
        if not scope.endswith("/.default") or " " in scope.strip():
            return self._oauth_error(
                400, "invalid_scope", "AADSTS1002012: The client credentials flow needs a single '/.default' scope."
            )
        token = "fake-graph-" + secrets.token_urlsafe(24)
        self.tokens[token] = self.clock() + self.token_lifetime
        seconds = int(self.token_lifetime.total_seconds())
        return web.json_response(
            {"token_type": "Bearer", "expires_in": seconds, "ext_expires_in": seconds, "access_token": token}
        )

    @staticmethod
    def _oauth_error(status: int, error: str, description: str) -> web.Response:
        return web.json_response(
            {"error": error, "error_description": description, "error_codes": [int(description[6:13])]},
            status=status,
        )

    # Graph: free/busy

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise GraphError(400, "Unable to read JSON request payload.", code="BadRequest") from None
        if not isinstance(body, dict):
            raise GraphError(400, "The request body must be a JSON object.", code="BadRequest")
        return body

    async def _get_schedule(self, request: web.Request) -> web.Response:
        body = _caseless(await self._json_body(request))
        schedules = body.get("schedules")
        if not isinstance(schedules, list) or not schedules or not all(isinstance(s, str) for s in schedules):
            raise GraphError(400, "schedules must be a non-empty list of addresses.", code="ErrorInvalidParameter")
        if len(schedules) > MAX_SCHEDULES_PER_CALL:
            raise GraphError(400, "Too many schedules in one request.", code="ErrorInvalidParameter")
        starts_at = _parse_graph_time(body.get("starttime"), "startTime")
        ends_at = _parse_graph_time(body.get("endtime"), "endTime")
        if ends_at <= starts_at:
            raise GraphError(400, "endTime must be after startTime.", code="ErrorInvalidParameter")
        if ends_at - starts_at >= timedelta(days=MAX_SCHEDULE_DAYS):
            # "The lookup window must be shorter than 42 days" (perf_reliability.md §2). Code and wording [U].
            raise GraphError(
                400,
                "The duration between startTime and endTime must be less than 42 days.",
                code="ErrorInvalidParameter",
            )
        interval = body.get("availabilityviewinterval") or 30
        if not isinstance(interval, int) or not 5 <= interval <= 1440:
            raise GraphError(400, "availabilityViewInterval must be 5 to 1440 minutes.", code="ErrorInvalidParameter")
        value = [self._schedule_of(address, starts_at, ends_at, interval) for address in schedules]
        return web.json_response({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata", "value": value})

    def _schedule_of(self, address: str, starts_at: datetime, ends_at: datetime, interval: int) -> dict[str, Any]:
        items = [
            {**{k: v for k, v in item.items() if k not in ("starts_at", "ends_at")}, "s": s, "e": e}
            for item in self.busy.get(address.lower(), [])
            for s, e in [(item["starts_at"], item["ends_at"])]
            if s < ends_at and e > starts_at
        ]
        for event in self._occurrences(address, starts_at, ends_at):
            items.append(
                {
                    "status": event["showAs"],
                    "subject": event["subject"],
                    "isPrivate": False,
                    "s": event["_s"],
                    "e": event["_e"],
                }
            )
        digits = {"free": "0", "tentative": "1", "busy": "2", "oof": "3", "workingElsewhere": "4", "unknown": "0"}
        view = []
        cursor = starts_at
        while cursor < ends_at:
            block_end = cursor + timedelta(minutes=interval)
            states = [digits[item["status"]] for item in items if item["s"] < block_end and item["e"] > cursor]
            view.append(max(states, default="0"))
            cursor = block_end
        return {
            "scheduleId": address,
            "availabilityView": "".join(view),
            "scheduleItems": [
                {
                    "isPrivate": bool(item.get("isPrivate", False)),
                    "status": item["status"],
                    "subject": item.get("subject", ""),
                    "location": item.get("location", ""),
                    "start": _graph_time(item["s"]),
                    "end": _graph_time(item["e"]),
                }
                for item in sorted(items, key=lambda row: row["s"])
            ],
            "workingHours": {
                "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                "startTime": "08:00:00.0000000",
                "endTime": "17:00:00.0000000",
                "timeZone": {"name": "UTC"},
            },
        }

    # Graph: events

    def _mailbox(self, request: web.Request) -> dict[str, dict[str, Any]]:
        return self.events.setdefault(unquote(request.match_info["user"]).lower(), {})

    def _event(self, request: web.Request) -> dict[str, Any]:
        event = self._mailbox(request).get(request.match_info["event"])
        if event is None:
            raise GraphError(404, "The specified object was not found in the store.", code="ErrorItemNotFound")
        return event

    @staticmethod
    def _view(event: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in event.items() if not key.startswith("_")}

    async def _create_event(self, request: web.Request) -> web.Response:
        body = _caseless(await self._json_body(request))
        mailbox = self._mailbox(request)
        transaction_id = body.get("transactionid")
        if transaction_id is not None:
            # Graph returns the event created first for a repeated transactionId instead of a duplicate
            # (apis.md §4: "transactionId ... to avoid redundant POST operations in case of client retries").
            for existing in mailbox.values():
                if existing.get("transactionId") == transaction_id:
                    return web.json_response(self._view(existing), status=201)
        subject = body.get("subject")
        if not isinstance(subject, str):
            raise GraphError(400, "subject is required.", code="ErrorInvalidRequest")
        starts_at = _parse_graph_time(body.get("start"), "start")
        ends_at = _parse_graph_time(body.get("end"), "end")
        if ends_at < starts_at:
            raise GraphError(400, "The end of the event is before its start.", code="ErrorInvalidRequest")
        attendees = body.get("attendees") or []
        if not isinstance(attendees, list) or not all(
            isinstance(a, dict) and isinstance((a.get("emailAddress") or {}).get("address"), str) for a in attendees
        ):
            raise GraphError(400, "attendees must carry emailAddress.address.", code="ErrorInvalidRequest")
        event_id = "AAMkAD" + secrets.token_urlsafe(18)
        online = bool(body.get("isonlinemeeting"))
        provider = body.get("onlinemeetingprovider") or ("teamsForBusiness" if online else "unknown")
        if online and provider != "teamsForBusiness":
            raise GraphError(400, f"Online meeting provider {provider} is not allowed.", code="ErrorInvalidRequest")
        meeting_id = secrets.token_hex(16)
        event: dict[str, Any] = {
            "@odata.etag": f'W/"{secrets.token_hex(8)}"',
            "id": event_id,
            "createdDateTime": self.clock().isoformat(),
            "transactionId": transaction_id,
            "subject": subject,
            "body": body.get("body") or {"contentType": "text", "content": ""},
            "start": _graph_time(starts_at),
            "end": _graph_time(ends_at),
            "location": body.get("location") or {"displayName": ""},
            "attendees": attendees,
            "showAs": body.get("showas") or "busy",
            "isCancelled": False,
            "isOnlineMeeting": online,
            "onlineMeetingProvider": provider,
            "onlineMeeting": (
                {"joinUrl": f"https://teams.microsoft.com/l/meetup-join/19%3ameeting_{meeting_id}%40thread.v2/0"}
                if online
                else None
            ),
            "recurrence": body.get("recurrence"),
            "_s": starts_at,
            "_e": ends_at,
        }
        mailbox[event_id] = event
        return web.json_response(self._view(event), status=201)

    async def _get_event(self, request: web.Request) -> web.Response:
        return web.json_response(self._view(self._event(request)))

    async def _update_event(self, request: web.Request) -> web.Response:
        event = self._event(request)
        body = await self._json_body(request)
        changes = _caseless(body)
        if event["isCancelled"]:
            raise GraphError(400, "The meeting was cancelled.", code="ErrorInvalidRequest")
        starts_at = _parse_graph_time(changes["start"], "start") if "start" in changes else event["_s"]
        ends_at = _parse_graph_time(changes["end"], "end") if "end" in changes else event["_e"]
        if ends_at < starts_at:
            raise GraphError(400, "The end of the event is before its start.", code="ErrorInvalidRequest")
        for key, value in body.items():
            if not key.startswith("@odata") and key.lower() not in ("start", "end", "id"):
                event[key[0].lower() + key[1:]] = value
        event.update(_s=starts_at, _e=ends_at, start=_graph_time(starts_at), end=_graph_time(ends_at))
        return web.json_response(self._view(event))

    async def _cancel_event(self, request: web.Request) -> web.Response:
        event = self._event(request)
        body = _caseless(await self._json_body(request)) if request.body_exists else {}
        comment = body.get("comment", "")
        if not isinstance(comment, str):
            raise GraphError(400, "comment must be a string.", code="ErrorInvalidRequest")
        # Graph removes a cancelled meeting from the organizer's calendar; we keep it marked so tests can see it.
        event.update(isCancelled=True, _cancel_comment=comment)
        return web.Response(status=202)

    def _occurrences(self, address: str, starts_at: datetime, ends_at: datetime) -> list[dict[str, Any]]:
        """Events overlapping the range, with a weekly `recurrence` (interval, daysOfWeek of the first start,
        endDate or numberOfOccurrences) expanded into occurrences."""
        found = []
        for event in self.events.get(address.lower(), {}).values():
            if event["isCancelled"]:
                continue
            recurrence = event.get("recurrence") or {}
            pattern = recurrence.get("pattern") or {}
            if pattern.get("type") != "weekly":
                if event["_s"] < ends_at and event["_e"] > starts_at:
                    found.append(event)
                continue
            step = timedelta(weeks=int(pattern.get("interval") or 1))
            limit = recurrence.get("range") or {}
            count = int(limit.get("numberOfOccurrences") or 0) if limit.get("type") == "numbered" else 0
            last_day = limit.get("endDate") if limit.get("type") == "endDate" else None
            occurrence, index = event["_s"], 0
            length = event["_e"] - event["_s"]
            while occurrence < ends_at and index < 1000:
                if (count and index >= count) or (last_day and occurrence.date().isoformat() > last_day):
                    break
                if occurrence + length > starts_at:
                    found.append(
                        {
                            **event,
                            "id": f"{event['id']}_{occurrence:%Y%m%d}",
                            "type": "occurrence",
                            "seriesMasterId": event["id"],
                            "start": _graph_time(occurrence),
                            "end": _graph_time(occurrence + length),
                            "_s": occurrence,
                            "_e": occurrence + length,
                        }
                    )
                occurrence, index = occurrence + step, index + 1
        return found

    async def _calendar_view(self, request: web.Request) -> web.Response:
        try:
            starts_at = datetime.fromisoformat(request.query["startDateTime"].replace("Z", "+00:00"))
            ends_at = datetime.fromisoformat(request.query["endDateTime"].replace("Z", "+00:00"))
        except (KeyError, ValueError):
            raise GraphError(
                400,
                "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.",
                code="ErrorInvalidParameter",
            ) from None
        if starts_at.tzinfo is None:
            starts_at = starts_at.replace(tzinfo=UTC)
        if ends_at.tzinfo is None:
            ends_at = ends_at.replace(tzinfo=UTC)
        address = unquote(request.match_info["user"])
        rows = sorted(self._occurrences(address, starts_at, ends_at), key=lambda row: row["_s"])
        return web.json_response({"value": [self._view(row) for row in rows]})

    # Graph: mail

    async def _send_mail(self, request: web.Request) -> web.Response:
        body = _caseless(await self._json_body(request))
        message = body.get("message")
        if not isinstance(message, dict):
            raise GraphError(400, "message is required.", code="ErrorInvalidRequest")
        recipients = message.get("toRecipients") or []
        if not recipients or not all(
            isinstance((r.get("emailAddress") or {}).get("address"), str) for r in recipients if isinstance(r, dict)
        ):
            raise GraphError(400, "At least one recipient is required.", code="ErrorInvalidRecipients")
        for attachment in message.get("attachments") or []:
            if attachment.get("@odata.type") != "#microsoft.graph.fileAttachment" or not attachment.get("contentBytes"):
                raise GraphError(
                    400, "Attachments must be fileAttachments with contentBytes.", code="ErrorInvalidRequest"
                )
        save = body.get("savetosentitems")
        self.outbox.append(SentMail(unquote(request.match_info["user"]), message, save is not False))
        return web.Response(status=202)

    # Graph: profile photos

    async def _photo_value(self, request: web.Request) -> web.Response:
        """The photo's binary data with its media type (200), or 404 when the account has none or not at the size
        asked for: https://learn.microsoft.com/en-us/graph/api/profilephoto-get?view=graph-rest-1.0 ("If no photo
        exists, the operation returns 404 Not Found"; "if the user uploads a photo that is 504x504 pixels, all but
        the 648x648 size of photo will be available")."""
        photo = self.photos.get(unquote(request.match_info["user"]).lower())
        size = request.match_info.get("size")
        if size is not None and size.lower() in PHOTO_SIZES:
            wanted = int(size.lower().partition("x")[0])
        else:
            wanted = None if size is None else 0
        if photo is None or wanted == 0 or (wanted is not None and wanted > photo.pixels):
            # Graph's error code and message for an account without a photo, as answered to an app
            # (https://learn.microsoft.com/en-us/answers/questions/2079017/accessing-users-profile-picture-using-users-email).
            raise GraphError(
                404,
                "Exception of type 'Microsoft.Fast.Profile.Core.Exception.ImageNotFoundException' was thrown.",
                code="ImageNotFound",
            )
        return web.Response(body=photo.content, content_type=photo.content_type)


def build_app(fake: FakeGraphServer | None = None) -> web.Application:
    """The fake as an aiohttp app (with demo credentials unless a configured fake is given)."""
    return (fake or FakeGraphServer()).build_app()


def write_loopback_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, valid for a day: (certificate file, key file).
    The certificate doubles as the CA bundle a client trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fake Entra ID (loopback)")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fake-graph.crt", directory / "fake-graph.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass(frozen=True)
class RunningFakeGraph:
    fake: FakeGraphServer
    graph_base_url: str
    """Plain http, e.g. http://127.0.0.1:PORT/v1.0."""
    authority_host: str
    """https://127.0.0.1:TLS_PORT; the msal authority is `{authority_host}/{tenant_id}`."""
    ca_file: Path

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.fake.tenant_id}"


@asynccontextmanager
async def serve_fake_graph(
    fake: FakeGraphServer | None = None, *, host: str = "127.0.0.1", port: int = 0, tls_port: int = 0
) -> AsyncIterator[RunningFakeGraph]:
    """One app on two loopback sites: http for Graph, https (self-signed) for the login routes msal calls."""
    fake = fake or FakeGraphServer()
    runner = web.AppRunner(fake.build_app(), access_log=None)
    await runner.setup()
    with tempfile.TemporaryDirectory(prefix="fake-graph-") as directory:
        cert_path, key_path = write_loopback_certificate(Path(directory))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
        plain = web.TCPSite(runner, host, port)
        secure = web.TCPSite(runner, host, tls_port, ssl_context=context)
        try:
            await plain.start()
            await secure.start()
            plain_port = plain._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            secure_port = secure._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            yield RunningFakeGraph(
                fake=fake,
                graph_base_url=f"http://{host}:{plain_port}/v1.0",
                authority_host=f"https://{host}:{secure_port}",
                ca_file=cert_path,
            )
        finally:
            await runner.cleanup()


def demo_records(fake: FakeGraphServer) -> dict[str, list[dict[str, Any]]]:
    """What the demo inspector lists: every calendar event (with its mailbox) and every message sent through Graph."""
    return {
        "event": [
            {"mailbox": mailbox, **event} for mailbox, events in fake.events.items() for event in events.values()
        ],
        "sent_mail": [{"mailbox": sent.mailbox, **sent.message} for sent in fake.outbox],
    }


async def _serve_forever(
    host: str, port: int, tls_port: int, records_port: int | None = None, photos: tuple[str, ...] = ()
) -> None:
    fake = FakeGraphServer()
    for mailbox in photos:
        fake.set_photo(mailbox, generated_png(), content_type="image/png", pixels=96)
    async with serve_fake_graph(fake, host=host, port=port, tls_port=tls_port) as running:
        if records_port:
            from tests.fakes.demo_inspector import start_records

            await start_records(lambda: demo_records(running.fake), host, records_port)
        persistent = Path(tempfile.gettempdir()) / "fake-graph-ca.crt"
        persistent.write_bytes(running.ca_file.read_bytes())
        sys.stdout.write(
            "Fake Microsoft Graph\n"
            f"  graph_base_url: {running.graph_base_url}\n"
            f"  authority_host: {running.authority_host}   (TLS; trust {persistent})\n"
            f"  tenant_id:      {running.fake.tenant_id}\n"
            f"  client_id:      {running.fake.client_id}\n"
            f"  client_secret:  {running.fake.client_secret}\n"
        )
        sys.stdout.flush()
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local fake Microsoft Graph and Entra token endpoint for demos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8084)
    parser.add_argument("--tls-port", type=int, default=None, help="login (TLS) port; default --port + 1")
    parser.add_argument("--records-port", type=int, default=None, help="serve GET /records (JSON) there")
    parser.add_argument(
        "--photo", action="append", default=[], metavar="MAILBOX", help="give this account a profile photo"
    )
    args = parser.parse_args(argv)
    tls_port = args.tls_port if args.tls_port is not None else args.port + 1
    with suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.host, args.port, tls_port, args.records_port, tuple(args.photo)))


if __name__ == "__main__":
    main()
