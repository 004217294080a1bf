"""FakeTeamsConnector: a stateful Bot Framework Connector (REST v3, as Teams serves it) over real loopback HTTP.

What a bot sees when it talks back to Teams (the `serviceUrl` of an incoming activity):
- `POST v3/conversations/{conversationId}/activities` (send, proactive) and `.../activities/{activityId}` (reply) answer
  201 `{"id": "<new activity id>"}`; `PUT .../activities/{activityId}` (update) answers 200 `{"id"}`; `DELETE` 200.
- `POST v3/conversations` creates a conversation from `bot`, `members`, `isGroup`, `tenantId` or
  `channelData.tenant.id` and an optional first `activity`. Like Teams, a 1:1 chat with the same user comes back with the
  same id; a post into a channel (`channelData.channel.id`) starts a thread `19:…@thread.tacv2;messageid=…`.
- `GET v3/conversations/{id}/members`, `.../members/{memberId}`, `.../pagedmembers` from registered members.
- Conversation ids arrive raw (`19:abc@thread.v2`, which the SDK does not escape) or percent-encoded (`19%3Aabc…`);
  aiohttp decodes path parameters exactly once, so both name the same conversation.
- Errors use the Bot Framework `ErrorResponse` shape `{"error": {"code", "message"}}`.

Limits, from MicrosoftDocs/msteams-docs `msteams-platform/bots/how-to/rate-limit.md` (per bot per thread) and
`bots/how-to/format-your-bot-messages.md` (size):
- Send to conversation (send, reply, update, delete) and Create conversation, each per conversation id:
  7 per 1 s, 8 per 2 s, 60 per 30 s, 1,800 per 3,600 s. Get members: 14/1 s, 16/2 s, 120/30 s, 3,600/3,600 s.
  Over a limit the answer is 429 with `Retry-After` in whole seconds; sliding windows on an injectable clock.
  Only accepted operations count, so a client that honours `Retry-After` is never refused twice for the same reason.
  Not modelled: the all-bots-per-thread limits (one bot here) and the 30 RPS per app per tenant.
- Message size: 100 KB counted over the activity encoded as UTF-16 -> 413 `MessageSizeTooBig`. Each Adaptive Card
  is also held to 28 KB (the budget of Teams' own card validator, reference/agents_sdk.md); that is stricter than the
  service and can be switched off with `max_card_bytes=None`.

Run it alone for the demo: `python -m tests.fakes.teams_connector --port 3979`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import math
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import jwt
from aiohttp import web
from multidict import CIMultiDict

Operation = Literal["send", "reply", "update", "delete", "create"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TokenCheck = Callable[[str], bool]

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
MAX_MESSAGE_BYTES = 100 * 1024
"""format-your-bot-messages.md: "The bot message size limit is 100 KB ... encoded as UTF-16"."""
MAX_CARD_BYTES = 28 * 1024
BOT_FRAMEWORK_AUDIENCE = "https://api.botframework.com"
"""The `aud` of the token a bot gets for calling the connector (apis.md §5.1, outbound)."""
_TOKEN_LEEWAY_SECONDS = 300
"""Bot Framework allows 5 minutes of clock skew (apis.md §5.1)."""


@dataclass(frozen=True)
class RateWindow:
    seconds: float
    limit: int


SEND_LIMITS: tuple[RateWindow, ...] = (
    RateWindow(1, 7),
    RateWindow(2, 8),
    RateWindow(30, 60),
    RateWindow(3600, 1800),
)
CREATE_LIMITS = SEND_LIMITS
MEMBER_LIMITS: tuple[RateWindow, ...] = (
    RateWindow(1, 14),
    RateWindow(2, 16),
    RateWindow(30, 120),
    RateWindow(3600, 3600),
)


class ManualClock:
    """A monotonic clock for the rate windows that moves only when a test says so."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        self.now += seconds


class SlidingWindowLimiter:
    """Counts accepted operations per key inside every window; `try_acquire` says how long to wait when one is full."""

    def __init__(self, windows: Sequence[RateWindow], clock: Callable[[], float]) -> None:
        self.windows = tuple(windows)
        self.clock = clock
        self._longest = max((window.seconds for window in self.windows), default=0.0)
        self._times: dict[str, list[float]] = {}

    def try_acquire(self, key: str) -> float:
        """0.0 when the operation is accepted (and counted), else the seconds until every window has room."""
        if not self.windows:
            return 0.0
        now = self.clock()
        times = self._times.setdefault(key, [])
        # An operation at `t` is inside a window of W seconds while now - t < W: it leaves exactly at t + W.
        expired = bisect.bisect_right(times, now - self._longest)
        if expired:
            del times[:expired]
        wait = 0.0
        for window in self.windows:
            first = bisect.bisect_right(times, now - window.seconds)
            inside = len(times) - first
            if inside >= window.limit:
                # Room appears when the oldest (inside - limit + 1) operations of this window have left it.
                wait = max(wait, times[first + inside - window.limit] + window.seconds - now)
        if wait > 0:
            return wait
        times.append(now)
        return 0.0

    def reset(self) -> None:
        self._times.clear()


class ConnectorError(Exception):
    """Answered as the Bot Framework ErrorResponse `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def error_response(error: ConnectorError) -> web.Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else {}
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return web.json_response(
        {"error": {"code": error.code, "message": error.message}}, status=error.status, headers=headers
    )


_STATUS_CODES = {
    400: "BadArgument",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    412: "PreconditionFailed",
    413: "MessageSizeTooBig",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


@dataclass
class RecordedActivity:
    """One accepted write, as the connector stored it."""

    operation: Operation
    conversation_id: str
    activity_id: str
    """The id the connector gave (send, reply, create) or the one the path named (update, delete)."""
    reply_to_id: str | None
    method: str
    path: str
    has_authorization: bool
    received_at: datetime
    body: dict[str, Any]
    """The JSON activity as received; `{}` for a delete."""

    @property
    def type(self) -> str | None:
        value = self.body.get("type")
        return value if isinstance(value, str) else None

    @property
    def text(self) -> str | None:
        value = self.body.get("text")
        return value if isinstance(value, str) else None

    @property
    def attachments(self) -> list[dict[str, Any]]:
        value = self.body.get("attachments")
        return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []

    @property
    def cards(self) -> list[dict[str, Any]]:
        """The Adaptive Card payloads among the attachments."""
        return [
            item["content"]
            for item in self.attachments
            if item.get("contentType") == ADAPTIVE_CARD and isinstance(item.get("content"), dict)
        ]


@dataclass
class LoggedRequest:
    method: str
    path: str
    """Decoded path, as the route matched it."""
    raw_path: str
    headers: CIMultiDict[str]
    body: str
    status: int = 0
    peer: str = ""
    """The caller's address and port: one value per TCP connection."""


@dataclass
class Rejection:
    """A request the rate limiter refused."""

    operation: str
    conversation_id: str
    retry_after: int
    at: float


@dataclass
class Conversation:
    id: str
    is_group: bool = False
    conversation_type: str = "personal"
    tenant_id: str | None = None
    members: list[dict[str, Any]] = field(default_factory=list)
    activity_ids: set[str] = field(default_factory=set)
    """Ids of live activities the connector issued here; update and delete must name one of them."""


@dataclass
class _Fault:
    kind: Literal["status", "delay"]
    status: int = 0
    code: str = ""
    message: str = ""
    retry_after: int | None = None
    seconds: float = 0.0


def _utf16_size(body: Any) -> int:
    # The service counts the payload as UTF-16; compact JSON is the smallest honest serialisation of it.
    return len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-16-le"))


class FakeTeamsConnector:
    """The Teams side of one bot registration, served by `start()` on 127.0.0.1 under `path_prefix`.

    `require_token`: None accepts anonymous calls (a bot with auth disabled); a string is the audience the bearer
    JWT must carry (signature not checked: there are no Microsoft keys offline); a callable decides on the raw token.
    `known_conversations_only`: when True, a conversation must be registered (or created through the API) first,
    otherwise any id is accepted and remembered on first use. `clock` drives the rate windows only.
    """

    def __init__(
        self,
        *,
        require_token: str | TokenCheck | None = None,
        known_conversations_only: bool = False,
        clock: Callable[[], float] = time.monotonic,
        send_limits: Sequence[RateWindow] = SEND_LIMITS,
        create_limits: Sequence[RateWindow] = CREATE_LIMITS,
        member_limits: Sequence[RateWindow] = MEMBER_LIMITS,
        max_message_bytes: int | None = MAX_MESSAGE_BYTES,
        max_card_bytes: int | None = MAX_CARD_BYTES,
        latency_seconds: float = 0.0,
        path_prefix: str = "",
    ) -> None:
        self.require_token = require_token
        self.known_conversations_only = known_conversations_only
        self.clock = clock
        self.max_message_bytes = max_message_bytes
        self.max_card_bytes = max_card_bytes
        self.latency_seconds = latency_seconds
        self.path_prefix = "/" + path_prefix.strip("/") if path_prefix.strip("/") else ""
        self.conversations: dict[str, Conversation] = {}
        self.activities: list[RecordedActivity] = []
        self.request_log: list[LoggedRequest] = []
        self.rejections: list[Rejection] = []
        self._limiters: dict[str, SlidingWindowLimiter] = {
            "send": SlidingWindowLimiter(send_limits, clock),
            "create": SlidingWindowLimiter(create_limits, clock),
            "members": SlidingWindowLimiter(member_limits, clock),
        }
        self._faults: list[_Fault] = []
        self._lose: list[Literal["drop", "502"]] = []
        self._recorded = asyncio.Event()
        # Teams message ids are epoch milliseconds; counting up from now keeps them unique and ordered.
        self._activity_ids = itertools.count(int(time.time() * 1000))
        self._runner: web.AppRunner | None = None
        self.url = ""

    # Lifecycle

    @property
    def service_url(self) -> str:
        """What Teams puts in `activity.serviceUrl`: the base URL with the region path and a trailing slash."""
        return f"{self.url}{self.path_prefix}/"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner = web.AppRunner(self.build_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.url = f"http://{bound_host}:{bound_port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def build_app(self) -> web.Application:
        # The service limit is checked by the fake itself (413 in Bot Framework shape), so aiohttp must not cut first.
        app = web.Application(middlewares=[self._middleware], client_max_size=8 * 1024 * 1024)
        base = self.path_prefix + "/v3/conversations"
        app.router.add_post(base, self._create_conversation)
        app.router.add_get(base, self._list_conversations)
        app.router.add_post(base + "/{conversation}/activities", self._send)
        app.router.add_post(base + "/{conversation}/activities/{activity}", self._reply)
        app.router.add_put(base + "/{conversation}/activities/{activity}", self._update)
        app.router.add_delete(base + "/{conversation}/activities/{activity}", self._delete)
        app.router.add_get(base + "/{conversation}/members", self._members)
        app.router.add_get(base + "/{conversation}/members/{member}", self._member)
        app.router.add_get(base + "/{conversation}/pagedmembers", self._paged_members)
        app.router.add_get(base + "/{conversation}/pagedMembers", self._paged_members)
        app.router.add_route("*", "/{tail:.*}", self._unknown_route)
        return app

    # Control

    def register_conversation(
        self,
        conversation_id: str | None = None,
        *,
        members: Iterable[dict[str, Any]] = (),
        tenant_id: str | None = None,
        is_group: bool = False,
        conversation_type: str | None = None,
    ) -> str:
        """Make a conversation known (and give it members for the members API); returns its id."""
        conversation_id = conversation_id or _personal_conversation_id()
        self.conversations[conversation_id] = Conversation(
            id=conversation_id,
            is_group=is_group,
            conversation_type=conversation_type or ("groupChat" if is_group else "personal"),
            tenant_id=tenant_id,
            members=[dict(member) for member in members],
        )
        return conversation_id

    def fail_next(
        self, status: int, *, retry_after: int | None = None, code: str | None = None, message: str = "", count: int = 1
    ) -> None:
        """The next `count` API calls answer `status` with the Bot Framework error body, before anything is stored."""
        fault = _Fault(
            "status",
            status=status,
            code=code or _STATUS_CODES.get(status, "ServiceError"),
            message=message or f"Injected {status}",
            retry_after=retry_after,
        )
        self._faults.extend([fault] * count)

    def delay_next(self, seconds: float, *, count: int = 1) -> None:
        """The next `count` API calls wait `seconds` before they are handled. A client that gives up earlier still
        has its activity stored afterwards, as a real service would."""
        self._faults.extend([_Fault("delay", seconds=seconds)] * count)

    def lose_next_response(self, mode: Literal["drop", "502"] = "drop", *, count: int = 1) -> None:
        """The next `count` successful writes are stored, then the caller hears nothing (`drop`: the connection
        closes) or a 502 from the gateway in front of the service: the "did it go through?" case."""
        self._lose.extend([mode] * count)

    def clear(self) -> None:
        """Forget recorded activities, the request log, rejections, rate windows and pending faults."""
        self.activities.clear()
        self.request_log.clear()
        self.rejections.clear()
        self._faults.clear()
        self._lose.clear()
        for limiter in self._limiters.values():
            limiter.reset()

    # Inspection

    def recorded(
        self,
        *,
        conversation_id: str | None = None,
        operation: Operation | None = None,
        where: Callable[[RecordedActivity], bool] | None = None,
    ) -> list[RecordedActivity]:
        return [
            item
            for item in self.activities
            if (conversation_id is None or item.conversation_id == conversation_id)
            and (operation is None or item.operation == operation)
            and (where is None or where(item))
        ]

    def cards(self, *, conversation_id: str | None = None) -> list[dict[str, Any]]:
        """Every Adaptive Card posted (send, reply, update, create), oldest first."""
        return [card for item in self.recorded(conversation_id=conversation_id) for card in item.cards]

    async def wait_for(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109 - tests read better with the deadline next to the count
        *,
        conversation_id: str | None = None,
        operation: Operation | None = None,
        where: Callable[[RecordedActivity], bool] | None = None,
    ) -> list[RecordedActivity]:
        """Wait until at least `count` matching activities were recorded; returns them all (oldest first)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = self.recorded(conversation_id=conversation_id, operation=operation, where=where)
                    if len(found) >= count:
                        return found
                    self._recorded.clear()
                    await self._recorded.wait()
        except TimeoutError:
            found = self.recorded(conversation_id=conversation_id, operation=operation, where=where)
            summary = ", ".join(f"{item.operation} {item.type} to {item.conversation_id}" for item in found[-5:])
            raise TimeoutError(
                f"expected {count} matching activities within {timeout} s, got {len(found)}"
                + (f" (latest: {summary})" if summary else "")
            ) from None

    # Serving

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        entry = LoggedRequest(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path,
            headers=CIMultiDict(request.headers),
            body=await request.text() if request.can_read_body else "",
            peer=str(request.transport.get_extra_info("peername") if request.transport else ""),
        )
        self.request_log.append(entry)
        try:
            self._check_token(request)
            if self._faults:
                fault = self._faults.pop(0)
                if fault.kind == "status":
                    raise ConnectorError(fault.status, fault.code, fault.message, retry_after=fault.retry_after)
                await asyncio.sleep(fault.seconds)
            if self.latency_seconds:
                await asyncio.sleep(self.latency_seconds)
            response = await handler(request)
        except ConnectorError as error:
            response = error_response(error)
        entry.status = response.status
        if self._lose and request.method != "GET" and response.status < 300:
            mode = self._lose.pop(0)
            if mode == "502":
                entry.status = 502
                return error_response(ConnectorError(502, "BadGateway", "The upstream response was lost."))
            # Stored, but the caller never hears back: the connection closes before any byte of the answer.
            entry.status = 0
            if request.transport is not None:
                request.transport.close()
        return response

    def _check_token(self, request: web.Request) -> None:
        if self.require_token is None:
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ConnectorError(401, "Unauthorized", "Authorization has been denied for this request.")
        token = token.strip()
        if callable(self.require_token):
            accepted = self.require_token(token)
        else:
            accepted = _token_has_audience(token, self.require_token)
        if not accepted:
            raise ConnectorError(401, "Unauthorized", "Authorization has been denied for this request.")

    async def _unknown_route(self, request: web.Request) -> web.Response:
        # A serviceUrl joined without its trailing slash loses the region path and lands here.
        raise ConnectorError(404, "NotFound", f"No connector endpoint at {request.method} {request.path}.")

    def _conversation(self, conversation_id: str) -> Conversation:
        known = self.conversations.get(conversation_id)
        if known is not None:
            return known
        # A reply thread in a channel is `<channel id>;messageid=<root>`: it belongs to the channel's conversation.
        base = conversation_id.split(";messageid=", 1)[0]
        if base != conversation_id and base in self.conversations:
            parent = self.conversations[base]
            thread = Conversation(
                id=conversation_id,
                is_group=True,
                conversation_type=parent.conversation_type,
                tenant_id=parent.tenant_id,
                members=parent.members,
            )
            self.conversations[conversation_id] = thread
            return thread
        if self.known_conversations_only:
            raise ConnectorError(404, "ConversationNotFound", "Conversation not found.")
        conversation = Conversation(id=conversation_id, is_group=not conversation_id.startswith("a:"))
        self.conversations[conversation_id] = conversation
        return conversation

    async def _activity_body(self, request: web.Request) -> dict[str, Any]:
        text = await request.text()
        try:
            body = json.loads(text) if text else None
        except ValueError:
            raise ConnectorError(400, "BadSyntax", "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ConnectorError(400, "BadArgument", "The request body must be an Activity object.")
        _validate_activity(body)
        return body

    def _check_size(self, body: dict[str, Any]) -> None:
        if self.max_message_bytes is not None:
            size = _utf16_size(body)
            if size > self.max_message_bytes:
                raise ConnectorError(
                    413,
                    "MessageSizeTooBig",
                    f"Message size {size} bytes (UTF-16) exceeds the limit of {self.max_message_bytes} bytes.",
                )
        if self.max_card_bytes is not None:
            for attachment in body.get("attachments") or []:
                if attachment.get("contentType") != ADAPTIVE_CARD:
                    continue
                size = len(json.dumps(attachment.get("content"), separators=(",", ":")).encode())
                if size > self.max_card_bytes:
                    raise ConnectorError(
                        413,
                        "MessageSizeTooBig",
                        f"Adaptive Card of {size} bytes exceeds the card limit of {self.max_card_bytes} bytes.",
                    )

    def _admit(self, kind: str, conversation_id: str) -> None:
        wait = self._limiters[kind].try_acquire(conversation_id)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            self.rejections.append(Rejection(kind, conversation_id, retry_after, self.clock()))
            raise ConnectorError(
                429,
                "TooManyRequests",
                f"Too many requests to conversation {conversation_id}; retry after {retry_after} s.",
                retry_after=retry_after,
            )

    def _new_activity_id(self) -> str:
        return str(next(self._activity_ids))

    def _record(
        self,
        request: web.Request,
        operation: Operation,
        conversation: Conversation,
        activity_id: str,
        body: dict[str, Any],
        reply_to_id: str | None = None,
    ) -> None:
        self.activities.append(
            RecordedActivity(
                operation=operation,
                conversation_id=conversation.id,
                activity_id=activity_id,
                reply_to_id=reply_to_id,
                method=request.method,
                path=request.path,
                has_authorization="Authorization" in request.headers,
                received_at=datetime.now(UTC),
                body=body,
            )
        )
        self._recorded.set()

    async def _send(self, request: web.Request) -> web.Response:
        conversation = self._conversation(request.match_info["conversation"])
        body = await self._activity_body(request)
        self._check_size(body)
        self._admit("send", conversation.id)
        activity_id = self._new_activity_id()
        conversation.activity_ids.add(activity_id)
        reply_to = body.get("replyToId")
        self._record(request, "send", conversation, activity_id, body, reply_to if isinstance(reply_to, str) else None)
        return web.json_response({"id": activity_id}, status=201)

    async def _reply(self, request: web.Request) -> web.Response:
        conversation = self._conversation(request.match_info["conversation"])
        body = await self._activity_body(request)
        self._check_size(body)
        self._admit("send", conversation.id)
        activity_id = self._new_activity_id()
        conversation.activity_ids.add(activity_id)
        self._record(request, "reply", conversation, activity_id, body, request.match_info["activity"])
        return web.json_response({"id": activity_id}, status=201)

    def _existing_activity(self, conversation: Conversation, activity_id: str) -> None:
        if activity_id not in conversation.activity_ids:
            raise ConnectorError(404, "ActivityNotFound", f"Activity {activity_id} not found in the conversation.")

    async def _update(self, request: web.Request) -> web.Response:
        conversation = self._conversation(request.match_info["conversation"])
        activity_id = request.match_info["activity"]
        body = await self._activity_body(request)
        self._existing_activity(conversation, activity_id)
        self._check_size(body)
        self._admit("send", conversation.id)
        self._record(request, "update", conversation, activity_id, body)
        return web.json_response({"id": activity_id})

    async def _delete(self, request: web.Request) -> web.Response:
        conversation = self._conversation(request.match_info["conversation"])
        activity_id = request.match_info["activity"]
        self._existing_activity(conversation, activity_id)
        self._admit("send", conversation.id)
        conversation.activity_ids.discard(activity_id)
        self._record(request, "delete", conversation, activity_id, {})
        return web.Response(status=200)

    async def _create_conversation(self, request: web.Request) -> web.Response:
        text = await request.text()
        try:
            body = json.loads(text) if text else None
        except ValueError:
            raise ConnectorError(400, "BadSyntax", "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ConnectorError(400, "BadArgument", "The request body must be ConversationParameters.")
        members = body.get("members")
        if not isinstance(members, list) or not all(
            isinstance(item, dict) and isinstance(item.get("id"), str) for item in members
        ):
            raise ConnectorError(400, "BadArgument", "members must be a list of accounts with an id.")
        tenant = body.get("tenantId") or _dig(body, "channelData", "tenant", "id")
        if not isinstance(tenant, str) or not tenant:
            # Teams needs the tenant to find the user: channelData.tenant.id (or the newer top-level tenantId).
            raise ConnectorError(400, "BadArgument", "A tenant id is required (channelData.tenant.id).")
        bot = body.get("bot")
        if bot is not None and not (isinstance(bot, dict) and isinstance(bot.get("id"), str)):
            raise ConnectorError(400, "BadArgument", "bot must be an account with an id.")
        is_group = bool(body.get("isGroup"))
        activity = body.get("activity")
        if activity is not None:
            if not isinstance(activity, dict):
                raise ConnectorError(400, "BadArgument", "activity must be an Activity object.")
            _validate_activity(activity)
            self._check_size(activity)
        channel = _dig(body, "channelData", "channel", "id")
        if isinstance(channel, str) and channel:
            # Posting into a channel starts a new thread whose conversation id names its root message.
            if activity is None:
                raise ConnectorError(400, "BadArgument", "A new channel thread needs an activity.")
            parent = self._conversation(channel)
            # The thread is new, the channel is not: the per-thread budget is the channel's.
            self._admit("create", parent.id)
            root_id = self._new_activity_id()
            conversation_id = f"{parent.id};messageid={root_id}"
            conversation = Conversation(
                id=conversation_id,
                is_group=True,
                conversation_type="channel",
                tenant_id=tenant,
                members=parent.members,
            )
            self.conversations[conversation_id] = conversation
            conversation.activity_ids.add(root_id)
            self._record(request, "create", conversation, root_id, activity)
            return web.json_response({"id": conversation_id, "activityId": root_id}, status=201)
        if not members or (not is_group and len(members) != 1):
            raise ConnectorError(400, "BadArgument", "A 1:1 conversation needs exactly one member.")
        existing = None if is_group else self._personal_chat(tenant, members[0]["id"])
        conversation_id = existing or (_personal_conversation_id() if not is_group else _group_conversation_id())
        self._admit("create", conversation_id)
        if existing is None:
            self.register_conversation(conversation_id, members=members, tenant_id=tenant, is_group=is_group)
        conversation = self.conversations[conversation_id]
        answer: dict[str, Any] = {"id": conversation_id}
        if activity is not None:
            activity_id = self._new_activity_id()
            conversation.activity_ids.add(activity_id)
            self._record(request, "create", conversation, activity_id, activity)
            answer["activityId"] = activity_id
        return web.json_response(answer, status=201)

    def _personal_chat(self, tenant_id: str, member_id: str) -> str | None:
        # Teams answers a repeated create for the same user with the existing 1:1 chat rather than a new one.
        for conversation in self.conversations.values():
            if (
                not conversation.is_group
                and conversation.tenant_id == tenant_id
                and [member.get("id") for member in conversation.members] == [member_id]
            ):
                return conversation.id
        return None

    async def _list_conversations(self, request: web.Request) -> web.Response:
        rows = [
            {"id": item.id, "members": item.members}
            for item in self.conversations.values()
            if ";messageid=" not in item.id
        ]
        return web.json_response({"conversations": rows, "continuationToken": None})

    async def _members(self, request: web.Request) -> web.Response:
        conversation = self._conversation(request.match_info["conversation"])
        self._admit("members", conversation.id)
        return web.json_response(conversation.members)

    async def _member(self, request: web.Request) -> web.Response:
        conversation = self._conversation(request.match_info["conversation"])
        self._admit("members", conversation.id)
        wanted = request.match_info["member"]
        for member in conversation.members:
            if wanted in (member.get("id"), member.get("aadObjectId")):
                return web.json_response(member)
        raise ConnectorError(404, "MemberNotFoundInConversation", "The member was not found in the conversation.")

    async def _paged_members(self, request: web.Request) -> web.Response:
        conversation = self._conversation(request.match_info["conversation"])
        self._admit("members", conversation.id)
        try:
            size = int(request.query.get("pageSize", "0")) or len(conversation.members) or 1
            start = int(request.query.get("continuationToken", "0"))
        except ValueError:
            raise ConnectorError(400, "BadArgument", "pageSize and continuationToken must be numbers.") from None
        page = conversation.members[start : start + size]
        more = start + size < len(conversation.members)
        return web.json_response({"members": page, "continuationToken": str(start + size) if more else None})


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _validate_activity(body: dict[str, Any]) -> None:
    kind = body.get("type")
    if not isinstance(kind, str) or not kind:
        raise ConnectorError(400, "BadArgument", "Activity type is required.")
    attachments = body.get("attachments")
    if attachments is None:
        return
    if not isinstance(attachments, list) or not all(
        isinstance(item, dict) and isinstance(item.get("contentType"), str) for item in attachments
    ):
        raise ConnectorError(400, "BadArgument", "attachments must be objects with a contentType.")
    for item in attachments:
        if item["contentType"] == ADAPTIVE_CARD and not isinstance(item.get("content"), dict):
            raise ConnectorError(400, "BadArgument", "An Adaptive Card attachment needs its card as content.")


def _token_has_audience(token: str, audience: str) -> bool:
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError:
        return False
    expires = claims.get("exp")
    if isinstance(expires, int | float) and expires + _TOKEN_LEEWAY_SECONDS < time.time():
        return False
    granted = claims.get("aud")
    return audience == granted or (isinstance(granted, list) and audience in granted)


def _personal_conversation_id() -> str:
    # Teams 1:1 conversation ids look like `a:1` followed by a long opaque string.
    return "a:1" + secrets.token_urlsafe(48).replace("-", "").replace("_", "")[:60]


def _group_conversation_id() -> str:
    return f"19:{secrets.token_hex(16)}@thread.v2"


def build_app(fake: FakeTeamsConnector | None = None) -> web.Application:
    """The fake as an aiohttp app (anonymous, any conversation accepted, unless a configured fake is given)."""
    return (fake or FakeTeamsConnector()).build_app()


@asynccontextmanager
async def running_teams_connector(**options: Any) -> AsyncIterator[FakeTeamsConnector]:
    fake = FakeTeamsConnector(**options)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


async def _serve(host: str, port: int, options: dict[str, Any]) -> None:
    fake = FakeTeamsConnector(**options)
    await fake.start(host, port)
    sys.stdout.write(
        "Fake Bot Framework Connector (Teams)\n"
        f"  service_url: {fake.service_url}\n"
        f"  auth:        {'bearer token with aud ' + str(fake.require_token) if fake.require_token else 'anonymous'}\n"
    )
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await fake.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local Bot Framework Connector that behaves like Teams'")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3979)
    parser.add_argument("--path-prefix", default="", help="region path in the serviceUrl, e.g. /amer")
    parser.add_argument("--require-audience", default=None, help=f"demand a bearer JWT, e.g. {BOT_FRAMEWORK_AUDIENCE}")
    parser.add_argument("--known-conversations-only", action="store_true")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API call")
    args = parser.parse_args(argv)
    options = {
        "path_prefix": args.path_prefix,
        "require_token": args.require_audience,
        "known_conversations_only": args.known_conversations_only,
        "latency_seconds": args.latency,
    }
    with suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, options))


if __name__ == "__main__":
    main()
