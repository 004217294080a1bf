"""FakeHaloPsaServer: a stateful HaloPSA over real loopback HTTP (OAuth2 token endpoint plus /api), with faults.

It is built from Halo's own documents, not from our client: the swagger (`redanthrax/halopsa-node:swagger.json`,
OpenAPI 3.0.1 "Halo API" v2, `servers: [{url: "/api"}]`) for paths, query parameters, field names and types, and
../shared/reference/apis.md §3 for the token endpoint. Each rule below names its source; "[U]" marks a behaviour the
documents leave open. Where they allow more than one reading, the fake can run each one (`readings`,
`use_reading`), and our client has to work under all of them:

- "" (default): `start_date`/`end_date` on GET /Appointment are strict lower bounds ("greater than this value"),
  searches are case-insensitive substrings, list rows carry every field, holidays show in the calendar when
  `showholidays=true`.
- "inclusive": the same date filters compare with >= ("greater than" implemented as "not before").
- "like": `search` and `search_details` run as SQL Server `LIKE '%term%'`, where `%`, `_` and `[...]` are wildcards.
- "lean_lists": GET /Tickets list rows carry no `details` (the list has no documented flag to include them;
  GET /Tickets/{id} has `includedetails`).
- "holidays_apart": holidays are only in GET /Holiday; `showholidays` adds nothing to GET /Appointment.

Run it alone for the demo: `python -m tests.fakes.halopsa --port 8083`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import sys
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from aiohttp import web

from scheduling.model import PsaContact, PsaRecordKind

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DEMO_CLIENT_ID = "slotwise-demo"
DEMO_CLIENT_SECRET = "halo-demo-secret"
DEMO_TENANT = "slotwise"
DEMO_AGENT_ID = 7
DEMO_FALLBACK_CLIENT_ID = 12
"""The MSP's catch-all "Prospects" client, seeded in every fake with one site (DEMO_FALLBACK_SITE_ID)."""
DEMO_FALLBACK_SITE_ID = 34

READINGS = ("inclusive", "like", "lean_lists", "holidays_apart")
BUSY_KINDS = ("appointment", "holiday")
TICKETS_MAX_PAGE_SIZE = 100
"""Swagger GET /Tickets: "page_size (int) When using Pagination, the size of the page. Maximum size: 100"."""

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SCOPE = re.compile(r"^(all|(read|edit):[a-z_]+)( (all|(read|edit):[a-z_]+))*$")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _halo_time(moment: datetime) -> str:
    # Halo answers UTC times without a zone suffix; the client must read them as UTC. [U: seen in Halo answers,
    # not stated in apis.md]
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


class HaloBadRequest(Exception):
    """A 400 with a plain-text message. The swagger lists 400 "Bad Request" for the main operations but gives no
    body shape [U]; our client keeps whatever text comes back."""


def _parse_time(value: Any, field_name: str) -> datetime:
    """Date-times: the Appointment filters are typed `string` ("(string) Return appointments ..."), the record
    fields `format: date-time` (swagger schemas `Appointment`, `Holidays`); an unreadable one is a 400 [U]."""
    if not isinstance(value, str) or not value:
        raise HaloBadRequest(f"{field_name} must be an ISO-8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HaloBadRequest(f"{field_name} is not a valid date: {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _int_field(item: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    """Ids in bodies are `integer`/`int32` in every swagger schema (`agent_id`, `client_id`, `ticket_id`, ...)."""
    value = item.get(name)
    if value is None:
        if required:
            raise HaloBadRequest(f"{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise HaloBadRequest(f"{name} must be an integer id")
    return value


def _int_query(query: Any, name: str) -> int | None:
    """An `(int)` query parameter (the swagger types them `integer`); anything else is a 400."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise HaloBadRequest(f"{name} must be an integer") from None


def _bool_query(query: Any, name: str) -> bool:
    """A `(bool)` query parameter (the swagger types them `boolean`): true/false, any case; anything else is a 400."""
    raw = str(query.get(name, "false")).lower()
    if raw not in ("true", "false"):
        raise HaloBadRequest(f"{name} must be true or false")
    return raw == "true"


def _class_members(body: str) -> str:
    """The inside of a LIKE `[...]` class for a regex: single characters and `a-f` ranges, escaped; a reversed
    range such as `t-l` matches nothing, and an empty class matches nothing either [U: SQL Server's behaviour]."""
    members, index = [], 0
    while index < len(body):
        if index + 2 < len(body) and body[index + 1] == "-":
            low, high = body[index], body[index + 2]
            if low <= high:
                members.append(f"{re.escape(low)}-{re.escape(high)}")
            index += 3
        else:
            members.append(re.escape(body[index]))
            index += 1
    return "".join(members) or "^\\s\\S"


def _like_regex(term: str) -> re.Pattern[str]:
    """`LIKE '%term%'` in SQL Server as a regex: `%` any run, `_` one character, `[abc]`/`[a-f]`/`[^a]` a class;
    case-insensitive, as SQL Server's default collation is. An unclosed `[` is taken literally."""
    out, index = [".*"], 0
    while index < len(term):
        char = term[index]
        if char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        elif char == "[":
            close = term.find("]", index + 2 if term[index + 1 : index + 2] in ("^", "]") else index + 1)
            if close == -1:
                out.append(re.escape(char))
            else:
                body = term[index + 1 : close]
                negate = body.startswith("^")
                body = body[1:] if negate else body
                out.append("[" + ("^" if negate else "") + _class_members(body) + "]")
                index = close
        else:
            out.append(re.escape(char))
        index += 1
    out.append(".*")
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


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
    headers: dict[str, str]
    body: str
    status: int = 0


@dataclass
class FakeHaloPsaServer:
    """One Halo tenant. `clock` drives token expiry and the rate window; `latency_seconds` keeps requests in
    flight long enough for concurrency to be observable.

    Halo publishes no numeric rate limit (apis.md §3 [U]); `rate_limit` requests per `rate_window` per client
    is a configurable stand-in that answers 429 with Retry-After like the swagger's documented 429."""

    client_id: str = DEMO_CLIENT_ID
    client_secret: str = DEMO_CLIENT_SECRET
    tenant: str = DEMO_TENANT
    clock: Callable[[], datetime] = _utc_now
    token_lifetime: timedelta = timedelta(hours=1)
    rate_limit: int | None = None
    rate_window: timedelta = timedelta(minutes=5)
    latency_seconds: float = 0.0
    request_log: list[LoggedRequest] = field(default_factory=list)
    agents: dict[int, dict[str, Any]] = field(default_factory=dict)
    clients: dict[int, dict[str, Any]] = field(default_factory=dict)
    sites: dict[int, dict[str, Any]] = field(default_factory=dict)
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    appointments: dict[int, dict[str, Any]] = field(default_factory=dict)
    holidays: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Rows of the swagger's `Holidays` schema, keyed by `holid`: agents' holidays and leave."""
    actions: dict[int, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[int, str] = field(
        default_factory=lambda: {1: "New", 2: "In Progress", 3: "Scheduled", 4: "Waiting on Customer", 9: "Closed"}
    )
    tickettypes: dict[int, str] = field(default_factory=lambda: {1: "Incident", 2: "Service Request", 3: "Sales"})
    tokens: dict[str, datetime] = field(default_factory=dict)
    """Issued bearer tokens and when each expires."""
    busy_kinds: tuple[str, ...] = BUSY_KINDS
    """"appointment": an appointment in the agent's calendar; "holiday": a `Holidays` row of the agent (leave)."""
    readings: tuple[str, ...] = READINGS
    """The alternative readings of Halo's documents this fake can run (see the module docstring)."""
    reading: str = ""
    in_flight: int = 0
    max_in_flight: int = 0
    throttled: int = 0
    _faults: list[Fault] = field(default_factory=list)
    responses_lost: int = 0
    """How many committed creates had their answer dropped by lose_next_response."""
    _lose_next: bool = False
    _lean_users: bool = False
    _revoked: bool = False
    _next_id: int = 1000
    _window_started: datetime | None = None
    _window_count: int = 0

    def __post_init__(self) -> None:
        if not self.agents:
            self.agents[DEMO_AGENT_ID] = {"id": DEMO_AGENT_ID, "name": "Alex Agent", "email": "alex@msp.example"}
        if not self.clients:
            self.clients[DEMO_FALLBACK_CLIENT_ID] = {
                "id": DEMO_FALLBACK_CLIENT_ID,
                "name": "Prospects (catch-all)",
                "site_id": DEMO_FALLBACK_SITE_ID,
            }
            self.sites[DEMO_FALLBACK_SITE_ID] = {
                "id": DEMO_FALLBACK_SITE_ID,
                "name": "Main",
                "client_id": DEMO_FALLBACK_CLIENT_ID,
                "clientsite_name": "Prospects (catch-all)/Main",
            }

    # FakePsaControl

    def records(self, kind: PsaRecordKind) -> list[dict[str, Any]]:
        if kind is PsaRecordKind.TICKET:
            return [self._ticket_view(ticket) for ticket in self.tickets.values()]
        if kind is PsaRecordKind.NOTE:
            return [dict(action) for action in self.actions.values()]
        if kind in (PsaRecordKind.SCHEDULE_ENTRY, PsaRecordKind.ACTIVITY):
            # Halo has one Appointment entity for both: they cannot be told apart at the vendor.
            return [self._appointment_view(appointment) for appointment in self.appointments.values()]
        return []

    def fail_next(self, status: int, *, retry_after: int | None = None, message: str = "", count: int = 1) -> None:
        self._faults.extend(Fault(status, retry_after, message) for _ in range(count))

    def lose_next_response(self) -> None:
        self._lose_next = True

    def revoke_credentials(self) -> None:
        """The application's secret is regenerated in Halo: the token endpoint refuses it and issued tokens die."""
        self._revoked = True
        self.tokens.clear()

    def add_contact(self, name: str, email: str) -> PsaContact:
        domain = email.rpartition("@")[2].lower()
        client = next((row for row in self.clients.values() if row["name"] == domain), None)
        if client is None:
            client_id = self._new_id()
            client = {"id": client_id, "name": domain, "site_id": self._new_id()}
            self.clients[client_id] = client
            self.sites[client["site_id"]] = {
                "id": client["site_id"],
                "name": "Main",
                "client_id": client_id,
                "clientsite_name": f"{domain}/Main",
            }
        user_id = self._new_id()
        self.users[user_id] = {
            "id": user_id,
            "name": name,
            "emailaddress": email,
            "client_id": client["id"],
            "client_name": client["name"],
            "site_id": client["site_id"],
        }
        return PsaContact(contact_id=str(user_id), company_id=str(client["id"]), name=name, email=email)

    def contacts_with_email(self, email: str) -> list[PsaContact]:
        """Every user with this address (any case), as our client should see it."""
        wanted = email.casefold()
        return [
            PsaContact(contact_id=str(user["id"]), company_id=str(user["client_id"]), name=user["name"], email=email)
            for user in sorted(self.users.values(), key=lambda row: row["id"])
            if str(user.get("emailaddress") or "").casefold() == wanted
        ]

    def contact_linked_to(self, kind: PsaRecordKind, record_id: str) -> str | None:
        """The user_id of a ticket or appointment, or None (Halo has no opportunities)."""
        table = self.tickets if kind is PsaRecordKind.TICKET else self.appointments
        user_id = table[int(record_id)].get("user_id")
        return None if user_id is None else str(user_id)

    def add_ticket(self, summary: str, *, contact: PsaContact | int | None = None) -> int:
        """A ticket an agent logged in Halo itself (the catch-all client, status New).

        `contact`: the end user the ticket is for, a user add_contact made or the id of one (e.g. add_general_user's):
        the ticket's `user_id`, on that user's client, since a ticket's user belongs to its client (the 400 of
        `_check_contact`)."""
        ticket_id = self._new_id()
        self.tickets[ticket_id] = {
            "id": ticket_id,
            "summary": summary,
            "details": "Logged by the service desk",
            "client_id": DEMO_FALLBACK_CLIENT_ID,
            "status_id": 1,
            "tickettype_id": 1,
            "dateoccurred": _halo_time(self.clock()),
        }
        if contact is not None:
            user = self.users[int(contact.contact_id) if isinstance(contact, PsaContact) else contact]
            self.tickets[ticket_id] |= {"user_id": user["id"], "client_id": user["client_id"]}
        return ticket_id

    def add_general_user(self, client_id: int = DEMO_FALLBACK_CLIENT_ID) -> int:
        """A client's catch-all "General User", the user a ticket gets when nobody in particular logged it: it has no
        email address (swagger GET /Users `exclude_generaluser` "(int) Exclude Users that are General Users."; the
        blank address [U: usual setup, the Users schema does not require one])."""
        client = self.clients[client_id]
        user_id = self._new_id()
        self.users[user_id] = {
            "id": user_id,
            "name": "General User",
            "emailaddress": "",
            "client_id": client_id,
            "client_name": client["name"],
            "site_id": client["site_id"],
        }
        return user_id

    def company_name(self, company_id: str) -> str:
        """The name of a client (add_contact names a new one after the address's domain)."""
        return str(self.clients[int(company_id)]["name"])

    def add_opportunity(
        self, name: str, *, contact: PsaContact, open_: bool = True, for_company_only: bool = False, stage: str = ""
    ) -> str:
        """HaloPSA has no opportunities (apis.md §3 lists none; PRODUCT.md): there is nothing to seed."""
        raise NotImplementedError("HaloPSA has no opportunities")

    def drop_client_names(self) -> None:
        """User rows stop carrying `client_name` (a Halo version or list that leaves it out [U]), so a reader must
        ask for the client itself."""
        self._lean_users = True

    def ticket_number(self, ticket_id: int) -> str:
        """The number Halo shows for a ticket: its id."""
        return str(self.tickets[ticket_id]["id"])

    def use_reading(self, name: str) -> None:
        if name and name not in self.readings:
            raise ValueError(f"unknown reading {name!r}; this fake knows {self.readings}")
        self.reading = name

    def add_busy(self, member: str, starts_at: Any, ends_at: Any, kind: str = "") -> None:
        """ "appointment": someone booked the agent in Halo; "holiday": the agent's leave, a `Holidays` row."""
        kind = kind or self.busy_kinds[0]
        if kind not in self.busy_kinds:
            raise ValueError(f"unknown busy kind {kind!r}; this fake knows {self.busy_kinds}")
        if kind == "holiday":
            holid = self._new_id()
            # Field names and types from the swagger's `Holidays` schema: `id` is a uuid, `holid` the int32 key,
            # `date`/`end_date` date-times, `agent_id` int32. The approval status values are [U].
            self.holidays[holid] = {
                "id": str(uuid.uuid4()),
                "holid": holid,
                "agent_id": int(member),
                "date": starts_at.astimezone(UTC),
                "end_date": ends_at.astimezone(UTC),
                "allday": False,
                "name": "Annual leave",
                "holiday_type": 0,
                "approval_status": 1,
            }
            return
        appointment_id = self._new_id()
        self.appointments[appointment_id] = {
            "id": appointment_id,
            "subject": "Busy (booked in Halo)",
            "start_date": starts_at.astimezone(UTC),
            "end_date": ends_at.astimezone(UTC),
            "agent_id": int(member),
            "note": "",
        }

    # Serving

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._log_middleware, self._api_middleware])
        app.router.add_post("/auth/token", self._token)
        app.router.add_get("/api/Tickets", self._list_tickets)
        app.router.add_get("/api/Tickets/{id}", self._get_ticket)
        app.router.add_post("/api/Tickets", self._post_tickets)
        app.router.add_get("/api/Appointment", self._list_appointments)
        app.router.add_post("/api/Appointment", self._post_appointments)
        app.router.add_delete("/api/Appointment/{id}", self._delete_appointment)
        app.router.add_get("/api/Holiday", self._list_holidays)
        app.router.add_get("/api/Actions", self._list_actions)
        app.router.add_post("/api/Actions", self._post_actions)
        app.router.add_get("/api/Users", self._list_users)
        app.router.add_get("/api/Users/{id}", self._get_user)
        app.router.add_post("/api/Users", self._post_users)
        app.router.add_get("/api/Site", self._list_sites)
        app.router.add_get("/api/Client", self._list_clients)
        app.router.add_get("/api/Client/{id}", self._get_client)
        app.router.add_get("/api/Agent", self._list_agents)
        app.router.add_get("/api/Status", self._list_statuses)
        app.router.add_get("/api/TicketType", self._list_tickettypes)
        return app

    @web.middleware
    async def _log_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        entry = LoggedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=await request.text() if request.can_read_body else "",
        )
        self.request_log.append(entry)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_seconds:
                await asyncio.sleep(self.latency_seconds)
            response = await handler(request)
        except web.HTTPException as exc:
            entry.status = exc.status
            raise
        finally:
            self.in_flight -= 1
        entry.status = response.status
        if response.status == 429:
            self.throttled += 1
        return response

    @web.middleware
    async def _api_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        authorization = request.headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        expires_at = self.tokens.get(token) if scheme == "Bearer" else None
        if expires_at is None or self.clock() >= expires_at:
            self.tokens.pop(token, None)
            return web.Response(
                status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}, text="Unauthorized"
            )
        if self._faults:
            fault = self._faults.pop(0)
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return web.Response(
                status=fault.status, headers=headers, text=fault.message or HTTPStatus(fault.status).phrase
            )
        throttled = self._throttle()
        if throttled is not None:
            return throttled
        try:
            return await handler(request)
        except HaloBadRequest as exc:
            return web.Response(status=400, text=str(exc))

    def _throttle(self) -> web.Response | None:
        if self.rate_limit is None:
            return None
        now = self.clock()
        if self._window_started is None or now >= self._window_started + self.rate_window:
            self._window_started, self._window_count = now, 0
        if self._window_count >= self.rate_limit:
            wait = max(1, int((self._window_started + self.rate_window - now).total_seconds() + 0.999))
            return web.Response(status=429, headers={"Retry-After": str(wait)}, text="Too Many Requests")
        self._window_count += 1
        return None

    # OAuth2 token endpoint

    async def _token(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-www-form-urlencoded":
            return self._oauth_error(400, "invalid_request", "The token request must be form-encoded")
        form = await request.post()
        if request.query.get("tenant") != self.tenant:
            return self._oauth_error(400, "invalid_request", "Unknown tenant")
        if form.get("grant_type") != "client_credentials":
            return self._oauth_error(400, "unsupported_grant_type", "Only client_credentials is enabled")
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret or self._revoked:
            return self._oauth_error(400, "invalid_client", "Invalid client credentials")
        scope = str(form.get("scope", ""))
        if not _SCOPE.match(scope):
            return self._oauth_error(400, "invalid_scope", f"Unknown scope {scope!r}")
        token = secrets.token_urlsafe(24)
        self.tokens[token] = self.clock() + self.token_lifetime
        return web.json_response(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": int(self.token_lifetime.total_seconds()),
                "scope": scope,
            }
        )

    @staticmethod
    def _oauth_error(status: int, error: str, description: str) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=status)

    # Request helpers

    async def _array_body(self, request: web.Request) -> list[dict[str, Any]]:
        """Halo's POST bodies are JSON arrays (the swagger types them `type: array`); a bare object is a 400."""
        try:
            body = await request.json(loads=json.loads)
        except (ValueError, json.JSONDecodeError):
            raise HaloBadRequest("The request body is not valid JSON") from None
        if not isinstance(body, list):
            raise HaloBadRequest("The request body must be a JSON array of records")
        if not body or not all(isinstance(item, dict) for item in body):
            raise HaloBadRequest("The request body must be a non-empty array of objects")
        return body

    @staticmethod
    def _paged(request: web.Request, rows: list[dict[str, Any]], list_key: str) -> web.Response:
        """Swagger: `pageinate` "(bool) Whether to use Pagination in the response", `page_no` "(int) When using
        Pagination, the page number to return", `page_size` "(int) ... the size of the page". The answer's shape
        (`record_count` plus a named list) is n8n's `haloPSAApiRequestAllItems` (apis.md §3); the swagger has none."""
        query = request.query
        if query.get("pageinate", "").lower() != "true":
            return web.json_response({"record_count": len(rows), list_key: rows})
        try:
            size = int(query.get("page_size", "50"))
            page_no = int(query.get("page_no", "1"))
        except ValueError:
            raise HaloBadRequest("page_size and page_no must be integers") from None
        if size < 1 or page_no < 1:
            raise HaloBadRequest("page_size and page_no start at 1")
        start = (page_no - 1) * size
        return web.json_response(
            {"page_no": page_no, "page_size": size, "record_count": len(rows), list_key: rows[start : start + size]}
        )

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def _maybe_drop(self, request: web.Request) -> None:
        """lose_next_response: the record is committed, then the connection dies before the answer is written."""
        if self._lose_next:
            self._lose_next = False
            self.responses_lost += 1
            if request.transport is not None:
                request.transport.close()

    def _matches(self, search: str, *texts: Any) -> bool:
        """The swagger says only "like this search string" (GET /Appointment `search`), "Filters response based on
        the search string" (GET /Tickets `search`) and "details matching the search" (`search_details`) [U]: a
        case-insensitive substring by default, SQL Server `LIKE '%term%'` in the "like" reading."""
        if self.reading == "like":
            pattern = _like_regex(search)
            return any(isinstance(text, str) and pattern.fullmatch(text) is not None for text in texts)
        needle = search.lower()
        return any(isinstance(text, str) and needle in text.lower() for text in texts)

    # Tickets

    def _ticket_view(self, ticket: dict[str, Any]) -> dict[str, Any]:
        view = dict(ticket)
        view["status_name"] = self.statuses.get(ticket.get("status_id", 1), "")
        return view

    async def _list_tickets(self, request: web.Request) -> web.Response:
        query = request.query
        if (_int_query(query, "page_size") or 0) > TICKETS_MAX_PAGE_SIZE:
            raise HaloBadRequest(f"page_size may be at most {TICKETS_MAX_PAGE_SIZE}")
        # Swagger GET /Tickets: `search` "(string) Filters response based on the search string" (here: summary,
        # details and id [U]); `search_details` "(string) Returns tickets based on the details matching the search".
        search = query.get("search", "")
        search_details = query.get("search_details", "")
        rows = []
        for ticket in self.tickets.values():
            if search and not self._matches(search, ticket["summary"], ticket.get("details"), str(ticket["id"])):
                continue
            if search_details and not self._matches(search_details, ticket.get("details")):
                continue
            view = self._ticket_view(ticket)
            if self.reading == "lean_lists":
                view.pop("details", None)
            rows.append(view)
        return self._paged(request, rows, "tickets")

    async def _get_ticket(self, request: web.Request) -> web.Response:
        """Swagger GET /Tickets/{id} ("Get one Faults"); a missing one is the 404 the `/{id}` paths document."""
        ticket = self.tickets.get(int(request.match_info["id"])) if request.match_info["id"].isdigit() else None
        if ticket is None:
            return web.Response(status=404, text="Ticket not found")
        return web.json_response(self._ticket_view(ticket))

    def _check_contact(self, item: dict[str, Any]) -> None:
        client_id = _int_field(item, "client_id")
        user_id = _int_field(item, "user_id")
        if client_id is not None and client_id not in self.clients:
            raise HaloBadRequest(f"Client {client_id} does not exist")
        if user_id is not None:
            user = self.users.get(user_id)
            if user is None:
                raise HaloBadRequest(f"User {user_id} does not exist")
            if client_id is not None and user["client_id"] != client_id:
                raise HaloBadRequest(f"User {user_id} does not belong to client {client_id}")

    def _check_agent(self, item: dict[str, Any], *, required: bool) -> None:
        agent_id = _int_field(item, "agent_id", required=required)
        if agent_id is not None and agent_id not in self.agents:
            raise HaloBadRequest(f"Agent {agent_id} does not exist")

    async def _post_tickets(self, request: web.Request) -> web.Response:
        """Swagger POST /Tickets: an array of `Faults`. `summary` required is from n8n/halopsa-node's ticket create
        ("Required Parameters: Summary", redanthrax/halopsa-node docs/tickets.md); ids must name existing rows [U].
        A body element with `id` updates that ticket (Halo's upsert-by-id, apis.md §3)."""
        items = await self._array_body(request)
        saved: list[dict[str, Any]] = []
        for item in items:
            status_id = _int_field(item, "status_id")
            if status_id is not None and status_id not in self.statuses:
                raise HaloBadRequest(f"Status {status_id} does not exist")
            tickettype_id = _int_field(item, "tickettype_id")
            if tickettype_id is not None and tickettype_id not in self.tickettypes:
                raise HaloBadRequest(f"Ticket type {tickettype_id} does not exist")
            self._check_contact(item)
            self._check_agent(item, required=False)
            existing_id = _int_field(item, "id")
            if existing_id is not None:
                if existing_id not in self.tickets:
                    raise HaloBadRequest(f"Ticket {existing_id} does not exist")
                self.tickets[existing_id].update({key: value for key, value in item.items() if key != "id"})
                saved.append(self._ticket_view(self.tickets[existing_id]))
                continue
            if not isinstance(item.get("summary"), str) or not item["summary"].strip():
                raise HaloBadRequest("summary is required")
            if "details" in item and not isinstance(item["details"], str):
                raise HaloBadRequest("details must be a string")
            ticket_id = self._new_id()
            ticket = {"status_id": 1, "tickettype_id": 1, **item, "id": ticket_id}
            ticket["dateoccurred"] = _halo_time(self.clock())
            self.tickets[ticket_id] = ticket
            saved.append(self._ticket_view(ticket))
        if any("id" not in item for item in items):
            await self._maybe_drop(request)
        return self._created(saved)

    @staticmethod
    def _created(saved: list[dict[str, Any]]) -> web.Response:
        # Halo answers a one-element array with the record itself (apis.md §3: "the created ticket(s)").
        return web.json_response(saved[0] if len(saved) == 1 else saved, status=201)

    # Appointments

    def _appointment_view(self, appointment: dict[str, Any]) -> dict[str, Any]:
        view = dict(appointment)
        view["start_date"] = _halo_time(appointment["start_date"])
        view["end_date"] = _halo_time(appointment["end_date"])
        return view

    def _after(self, moment: datetime, bound: datetime) -> bool:
        """Swagger GET /Appointment: "greater than this value". Strictly greater by default; >= when "inclusive"."""
        return moment >= bound if self.reading == "inclusive" else moment > bound

    def _holiday_appointments(self) -> list[dict[str, Any]]:
        """Holidays as calendar rows, for `showholidays` ("(bool) Include the appointment type 'holiday' in the
        response", swagger GET /Appointment). The row's type field name is [U]."""
        return [
            {
                "id": holiday["holid"],
                "subject": holiday["name"],
                "start_date": holiday["date"],
                "end_date": holiday["end_date"],
                "agent_id": holiday["agent_id"],
                "appointment_type_name": "Holiday",
                "note": "",
            }
            for holiday in self.holidays.values()
            if holiday.get("agent_id") is not None
        ]

    async def _list_appointments(self, request: web.Request) -> web.Response:
        query = request.query
        agents: set[int] | None = None
        if query.get("agents"):
            # "(string) Comma separated list of agent IDs. Returns these agent's appointments."
            try:
                agents = {int(part) for part in query["agents"].split(",") if part.strip()}
            except ValueError:
                raise HaloBadRequest("agents must be a comma separated list of agent ids") from None
        # "(string) Return appointments with a start date greater than this value." and "... with an end date
        # greater than this value.": two lower bounds, neither an upper one.
        starts = _parse_time(query["start_date"], "start_date") if "start_date" in query else None
        ends = _parse_time(query["end_date"], "end_date") if "end_date" in query else None
        # "(int) Return appointments assigned to a particular ticket."
        ticket_id = _int_query(query, "ticket_id")
        search = query.get("search", "")
        candidates = list(self.appointments.values())
        if _bool_query(query, "showholidays") and self.reading != "holidays_apart":
            candidates += self._holiday_appointments()
        rows = []
        for appointment in sorted(candidates, key=lambda row: (row["start_date"], row["id"])):
            if agents is not None and appointment["agent_id"] not in agents:
                continue
            if starts is not None and not self._after(appointment["start_date"], starts):
                continue
            if ends is not None and not self._after(appointment["end_date"], ends):
                continue
            if ticket_id is not None and appointment.get("ticket_id") != ticket_id:
                continue
            if search and not self._matches(search, appointment["subject"], appointment.get("note")):
                continue
            rows.append(self._appointment_view(appointment))
        if not _bool_query(query, "pageinate"):
            # Without `pageinate` ("(bool) Whether to use Pagination in the response") the list is a bare array [U].
            return web.json_response(rows)
        return self._paged(request, rows, "appointments")

    async def _list_holidays(self, request: web.Request) -> web.Response:
        """Swagger GET /Holiday (tag Holidays): `agent_id` (integer), `start_date`/`end_date` (DateTime),
        `inclusive_start`/`inclusive_end` (boolean), `approved_only` (boolean), all without a description [U].
        Here: `agent_id` keeps that agent's rows; `start_date` keeps rows ending after it and `end_date` rows
        starting before it (>= / <= with the `inclusive_*` flags). The answer is a bare array of `Holidays` [U]."""
        query = request.query
        agent_id = _int_query(query, "agent_id")
        starts = _parse_time(query["start_date"], "start_date") if "start_date" in query else None
        ends = _parse_time(query["end_date"], "end_date") if "end_date" in query else None
        inclusive_start, inclusive_end = _bool_query(query, "inclusive_start"), _bool_query(query, "inclusive_end")
        approved_only = _bool_query(query, "approved_only")
        rows = []
        for holiday in sorted(self.holidays.values(), key=lambda row: (row["date"], row["holid"])):
            if agent_id is not None and holiday.get("agent_id") != agent_id:
                continue
            if starts is not None and not (
                holiday["end_date"] >= starts if inclusive_start else holiday["end_date"] > starts
            ):
                continue
            if ends is not None and not (holiday["date"] <= ends if inclusive_end else holiday["date"] < ends):
                continue
            if approved_only and holiday.get("approval_status") != 1:
                continue
            rows.append({**holiday, "date": _halo_time(holiday["date"]), "end_date": _halo_time(holiday["end_date"])})
        return web.json_response(rows)

    async def _post_appointments(self, request: web.Request) -> web.Response:
        """Swagger POST /Appointment: an array of `Appointment`. A new one needs `subject`, `start_date`,
        `end_date` and an existing `agent_id`, and must end after it starts [U: the schema marks nothing required;
        these are the fields every appointment in Halo's calendar has]. An element with `id` moves that one."""
        items = await self._array_body(request)
        saved: list[dict[str, Any]] = []
        for item in items:
            existing_id = _int_field(item, "id")
            current = self.appointments.get(existing_id) if existing_id is not None else None
            if existing_id is not None and current is None:
                raise HaloBadRequest(f"Appointment {existing_id} does not exist")
            merged = {**(current or {}), **item}
            if current is None and (not isinstance(merged.get("subject"), str) or not merged["subject"].strip()):
                raise HaloBadRequest("subject is required")
            starts = _parse_time(item["start_date"], "start_date") if "start_date" in item else merged.get("start_date")
            ends = _parse_time(item["end_date"], "end_date") if "end_date" in item else merged.get("end_date")
            if starts is None or ends is None:
                raise HaloBadRequest("start_date and end_date are required")
            if ends <= starts:
                raise HaloBadRequest("end_date must be after start_date")
            self._check_agent(merged, required=True)
            self._check_contact(item)
            linked_ticket = _int_field(item, "ticket_id")
            if linked_ticket is not None and linked_ticket not in self.tickets:
                raise HaloBadRequest(f"Ticket {linked_ticket} does not exist")
            appointment_id = existing_id if existing_id is not None else self._new_id()
            merged.update({"id": appointment_id, "start_date": starts, "end_date": ends})
            self.appointments[appointment_id] = merged
            saved.append(self._appointment_view(merged))
        if any("id" not in item for item in items):
            await self._maybe_drop(request)
        return self._created(saved)

    async def _delete_appointment(self, request: web.Request) -> web.Response:
        """Swagger DELETE /Appointment/{id} ("Delete one Appointment"); an unknown id is a 404 [U]."""
        raw = request.match_info["id"]
        if not raw.isdigit() or self.appointments.pop(int(raw), None) is None:
            return web.Response(status=404, text="Appointment not found")
        return web.Response(status=200)

    # Actions (ticket notes)

    async def _list_actions(self, request: web.Request) -> web.Response:
        # Swagger GET /Actions: "ticket_id (int) The ID of the Ticket to get actions for." (required here [U]).
        ticket_id = _int_query(request.query, "ticket_id")
        if ticket_id is None:
            raise HaloBadRequest("ticket_id is required")
        rows = [dict(action) for action in self.actions.values() if action["ticket_id"] == ticket_id]
        return self._paged(request, rows, "actions")

    async def _post_actions(self, request: web.Request) -> web.Response:
        """Swagger POST /Actions: an array of `Actions`. A note needs the `ticket_id` it belongs to and a `note`
        [U: the schema marks nothing required]."""
        items = await self._array_body(request)
        saved: list[dict[str, Any]] = []
        for item in items:
            ticket_id = _int_field(item, "ticket_id", required=True)
            if ticket_id not in self.tickets:
                raise HaloBadRequest(f"Ticket {ticket_id} does not exist")
            if not isinstance(item.get("note"), str) or not item["note"].strip():
                raise HaloBadRequest("note is required")
            action_id = self._new_id()
            action = {"outcome": "Note", **item, "id": action_id, "datetime": _halo_time(self.clock())}
            self.actions[action_id] = action
            saved.append(dict(action))
        await self._maybe_drop(request)
        return self._created(saved)

    # Look-ups

    async def _get_user(self, request: web.Request) -> web.Response:
        """Swagger GET /Users/{id} ("Get one Users", path `id` int32, answer schema `Users`); a missing one is its
        documented 404."""
        user = self.users.get(int(request.match_info["id"])) if request.match_info["id"].isdigit() else None
        if user is None:
            return web.Response(status=404, text="User not found")
        return web.json_response(dict(user))

    async def _list_users(self, request: web.Request) -> web.Response:
        # Swagger GET /Users: `search` (the columns it covers are [U]: name and address here) and `client_id`
        # "(int) Filters by Users belonging to a particular client".
        search = request.query.get("search", "")
        client_id = _int_query(request.query, "client_id")
        rows = [
            {key: value for key, value in user.items() if not (self._lean_users and key == "client_name")}
            for user in self.users.values()
            if (not search or self._matches(search, user["name"], user["emailaddress"]))
            and (client_id is None or user["client_id"] == client_id)
        ]
        return self._paged(request, rows, "users")

    async def _post_users(self, request: web.Request) -> web.Response:
        """A new user needs a `name` and an existing `site_id` (n8n's HaloPSA node marks both required); it belongs
        to that site's client. `emailaddress` is optional but must be an address when given. Halo does not refuse a
        second user with the same address [U], so the fake accepts it and a client that creates twice is caught by
        counting."""
        items = await self._array_body(request)
        saved: list[dict[str, Any]] = []
        for item in items:
            if "id" in item:
                raise HaloBadRequest("Updating users is not supported by this fake")
            if not isinstance(item.get("name"), str) or not item["name"].strip():
                raise HaloBadRequest("name is required")
            site_id = _int_field(item, "site_id", required=True)
            site = self.sites.get(site_id) if site_id is not None else None
            if site is None:
                raise HaloBadRequest(f"Site {site_id} does not exist")
            email = item.get("emailaddress")
            if email is not None and (not isinstance(email, str) or (email and not _EMAIL.match(email))):
                raise HaloBadRequest(f"emailaddress {email!r} is not a valid email address")
            client = self.clients[site["client_id"]]
            user_id = self._new_id()
            user = {
                **item,
                "id": user_id,
                "name": item["name"],
                "emailaddress": email or "",
                "site_id": site["id"],
                "client_id": client["id"],
                "client_name": client["name"],
                "inactive": False,
            }
            self.users[user_id] = user
            saved.append(dict(user))
        await self._maybe_drop(request)
        return self._created(saved)

    async def _list_sites(self, request: web.Request) -> web.Response:
        client_id = request.query.get("client_id")
        rows = [
            dict(site)
            for site in sorted(self.sites.values(), key=lambda row: row["id"])
            if client_id is None or str(site["client_id"]) == client_id
        ]
        return self._paged(request, rows, "sites")

    async def _list_clients(self, request: web.Request) -> web.Response:
        search = request.query.get("search", "")
        rows = [dict(client) for client in self.clients.values() if not search or self._matches(search, client["name"])]
        return self._paged(request, rows, "clients")

    async def _get_client(self, request: web.Request) -> web.Response:
        """GET /Client/{id}: one client, 404 for an unknown id [U: the path and its 404 by analogy with the
        swagger's `/Users/{id}` "Get one Users" and `/Tickets/{id}`; this stand-in's client rows carry `id` and
        `name`]."""
        raw = request.match_info["id"]
        client = self.clients.get(int(raw)) if raw.isdigit() else None
        if client is None:
            return web.Response(status=404, text="Client not found")
        return web.json_response(dict(client))

    async def _list_agents(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.agents.values()))

    async def _list_statuses(self, request: web.Request) -> web.Response:
        return web.json_response([{"id": key, "name": name} for key, name in self.statuses.items()])

    async def _list_tickettypes(self, request: web.Request) -> web.Response:
        return web.json_response([{"id": key, "name": name} for key, name in self.tickettypes.items()])


def build_app(fake: FakeHaloPsaServer | None = None) -> web.Application:
    """The fake as an aiohttp app (with demo credentials unless a configured fake is given)."""
    return (fake or FakeHaloPsaServer()).build_app()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local fake HaloPSA for demos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--records-port", type=int, default=None, help="serve GET /records (JSON) there")
    args = parser.parse_args(argv)
    fake = FakeHaloPsaServer()
    fake.add_contact("Dana Client", "dana@client.example")
    base = f"http://{args.host}:{args.port}"
    sys.stdout.write(
        "Fake HaloPSA\n"
        f"  api_url:       {base}/api\n"
        f"  auth_url:      {base}/auth\n"
        f"  tenant:        {fake.tenant}\n"
        f"  client_id:     {fake.client_id}\n"
        f"  client_secret: {fake.client_secret}\n"
        f"  agent id:      {DEMO_AGENT_ID}\n"
    )
    sys.stdout.flush()
    from tests.fakes.demo_inspector import run_app_with_records

    def describe() -> dict[str, list[dict[str, Any]]]:
        kinds = (PsaRecordKind.TICKET, PsaRecordKind.NOTE, PsaRecordKind.SCHEDULE_ENTRY)
        return {kind.value: fake.records(kind) for kind in kinds}

    with suppress(KeyboardInterrupt):
        asyncio.run(run_app_with_records(fake.build_app(), args.host, args.port, describe, args.records_port))


if __name__ == "__main__":
    main()
