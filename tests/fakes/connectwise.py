"""FakeConnectWiseServer: a stateful ConnectWise PSA REST API 3.0 over real loopback HTTP, with fault injection.

Behaviour follows ../shared/reference/apis.md §1: `/{codebase}/apis/3.0/` paths, Basic auth of
`companyId+publicKey:privateKey` plus the mandatory `clientId` header, `conditions` / `childConditions` / `orderBy` /
`page` / `pageSize` (hard maximum 1000) with a `Link` header, JSON Patch updates, 201 + record on create, 204 on
delete, and errors as `{"code", "message", "errors": [{"code", "message", "resource", "field"}]}`.

Every rule it enforces cites where it comes from, next to the code: apis.md (../shared/reference/apis.md §1), the
models openapi-generator built from ConnectWise's OpenAPI (`ai-connor/connectwise:model_*.go`, whose `NewX(...)`
arguments are the required fields; `Jetbuilt/connect_wise:docs/*.md` for the same spec rendered as tables), or
public client code [3P]. Rules no document states are marked [U] with the reason the fake still enforces them;
none is taken from our own adapter. ../../integrations/connectwise/SOURCES.md has the table.

Where the documents allow two readings, the fake can enforce either (`readings`, `use_reading`): "like" runs
`contains` and `like` as SQL Server LIKE, where `%`, `_` and `[...]` inside a value are wildcards.

ConnectWise publishes no fixed request quota (apis.md §1.5); `rate_limit` per `rate_window` and
`max_concurrent_requests` are configurable stand-ins that answer 429 with Retry-After the documented way.

Run it alone for the demo: `python -m tests.fakes.connectwise --port 8081`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import re
import sys
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from aiohttp import web
from yarl import URL

from scheduling.model import PsaContact, PsaRecordKind

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DEMO_COMPANY_ID = "slotwise_demo"
DEMO_PUBLIC_KEY = "cwDemoPublicKey01"
DEMO_PRIVATE_KEY = "cwDemoPrivateKey01"
DEMO_CLIENT_ID = "7a1f3c52-4b8e-4d2a-9c61-0e5b2f8d4a17"
DEMO_CODEBASE = "v4_6_release"
DEMO_MEMBER = "jdoe"
DEMO_FALLBACK_COMPANY = "Catchall"
"""Identifier of the partner's catch-all company, seeded in every fake (id DEMO_FALLBACK_COMPANY_ID)."""
DEMO_FALLBACK_COMPANY_ID = 2

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 1000
"""apis.md §1.4: "We have set a hard limit of 1,000 records". A larger pageSize is cut to 1000 [U: whether the real
server cuts or refuses; the Link header then tells the client that more pages exist]."""

_WIRE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _cw_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CwError(Exception):
    """An answer in ConnectWise's error shape."""

    def __init__(self, status: int, code: str, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def response(self) -> web.Response:
        return web.json_response(
            {"code": self.code, "message": self.message, "errors": self.errors}, status=self.status
        )


def _invalid(resource: str, field_name: str, message: str, code: str = "InvalidField") -> CwError:
    """Validation failures: 400, `InvalidObject`, one entry per field (apis.md §1.5 `ValidationError`)."""
    return CwError(
        400,
        "InvalidObject",
        f"{resource} object is invalid",
        [{"code": code, "message": message, "resource": resource, "field": field_name}],
    )


def _bad_query(message: str) -> CwError:
    return CwError(
        400, "InvalidObject", message, [{"code": "InvalidQuery", "message": message, "resource": "", "field": ""}]
    )


# `conditions` language (apis.md §1.3): a small parser and evaluator.

_MISSING = object()
_KEYWORDS = {"and", "or", "not", "contains", "like", "in", "true", "false", "null"}


@dataclass(frozen=True)
class _Token:
    kind: str
    """'word', 'string', 'number', 'datetime', 'op', '(', ')', ','."""
    value: Any
    position: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
        elif char in "(),":
            tokens.append(_Token(char, char, index))
            index += 1
        elif char in "\"'":
            # Strings go in double quotes; single quotes are accepted in practice (apis.md §1.3).
            start, index, chars = index, index + 1, []
            while True:
                if index >= len(text):
                    raise _bad_query(f"Unterminated string starting at position {start}")
                if text[index] == "\\" and index + 1 < len(text):
                    chars.append(text[index + 1])
                    index += 2
                    continue
                if text[index] == char:
                    index += 1
                    break
                chars.append(text[index])
                index += 1
            tokens.append(_Token("string", "".join(chars), start))
        elif char == "[":
            end = text.find("]", index)
            if end < 0:
                raise _bad_query(f"Unterminated datetime starting at position {index}")
            raw = text[index + 1 : end].strip()
            try:
                moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                raise _bad_query(f"Invalid datetime [{raw}] at position {index}") from None
            tokens.append(_Token("datetime", moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment, index))
            index = end + 1
        elif text.startswith(("!=", "<=", ">="), index):
            tokens.append(_Token("op", text[index : index + 2], index))
            index += 2
        elif char in "=<>":
            tokens.append(_Token("op", char, index))
            index += 1
        elif char.isdigit() or (char == "-" and index + 1 < len(text) and text[index + 1].isdigit()):
            match = re.compile(r"-?\d+(\.\d+)?").match(text, index)
            assert match is not None
            number = float(match.group()) if match.group(1) else int(match.group())
            tokens.append(_Token("number", number, index))
            index = match.end()
        elif char.isalpha() or char == "_":
            match = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*").match(text, index)
            assert match is not None
            tokens.append(_Token("word", match.group(), index))
            index = match.end()
        else:
            raise _bad_query(f"Unexpected character {char!r} at position {index}")
    return tokens


Predicate = Callable[[dict[str, Any]], bool]


class _ConditionParser:
    """expr := and (OR and)* ; and := unary (AND unary)* ; unary := NOT unary | '(' expr ')' | comparison ;
    comparison := path [NOT] (= | != | < | <= | > | >= | contains | like) value | path [NOT] IN '(' value, ... ')'."""

    def __init__(self, text: str, known_roots: set[str], reading: str = "") -> None:
        self.tokens = _tokenize(text)
        self.index = 0
        self.known_roots = known_roots
        self.reading = reading
        self.paths: list[str] = []

    def parse(self) -> Predicate:
        if not self.tokens:
            return lambda _row: True
        predicate = self._or()
        if self.index < len(self.tokens):
            token = self.tokens[self.index]
            raise _bad_query(f"Unexpected {token.value!r} at position {token.position}")
        return predicate

    def _peek_word(self, *words: str) -> bool:
        token = self.tokens[self.index] if self.index < len(self.tokens) else None
        return token is not None and token.kind == "word" and str(token.value).lower() in words

    def _next(self, what: str) -> _Token:
        if self.index >= len(self.tokens):
            raise _bad_query(f"Expected {what} at the end of the conditions")
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._peek_word("or"):
            self.index += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda row: any(part(row) for part in parts))

    def _and(self) -> Predicate:
        parts = [self._unary()]
        while self._peek_word("and"):
            self.index += 1
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else (lambda row: all(part(row) for part in parts))

    def _unary(self) -> Predicate:
        if self._peek_word("not"):
            self.index += 1
            inner = self._unary()
            return lambda row: not inner(row)
        token = self._next("a condition")
        if token.kind == "(":
            inner = self._or()
            closing = self._next("')'")
            if closing.kind != ")":
                raise _bad_query(f"Expected ')' at position {closing.position}")
            return inner
        if token.kind != "word" or str(token.value).lower() in _KEYWORDS:
            raise _bad_query(f"Expected a field name at position {token.position}, found {token.value!r}")
        return self._comparison(str(token.value), token.position)

    def _comparison(self, path: str, position: int) -> Predicate:
        root = path.split("/", 1)[0]
        if root not in self.known_roots:
            raise _bad_query(f"Unknown field '{path}' in conditions at position {position}")
        self.paths.append(path)
        negate = False
        if self._peek_word("not"):
            self.index += 1
            negate = True
        operator_token = self._next(f"an operator after '{path}'")
        if operator_token.kind == "op":
            operator = str(operator_token.value)
        elif operator_token.kind == "word" and str(operator_token.value).lower() in ("contains", "like", "in"):
            operator = str(operator_token.value).lower()
        else:
            raise _bad_query(f"Expected an operator after '{path}' at position {operator_token.position}")
        if negate and operator not in ("contains", "like", "in"):
            raise _bad_query(f"'not' cannot precede '{operator}' at position {operator_token.position}")
        values = self._value_list() if operator == "in" else [self._value()]
        if operator in ("contains", "like") and not isinstance(values[0], str):
            raise _bad_query(f"'{operator}' needs a quoted string at position {operator_token.position}")
        compared = "=" if operator == "in" else operator
        reading = self.reading

        def test(actual: Any) -> bool:
            return any(_compare(actual, compared, value, reading) for value in values)

        def predicate(row: dict[str, Any]) -> bool:
            actual = _resolve(row, path)
            if isinstance(actual, list):
                hit = any(test(item) for item in actual)
            else:
                hit = actual is not _MISSING and test(actual)
            return hit != negate

        return predicate

    def _value(self) -> Any:
        token = self._next("a value")
        if token.kind in ("string", "number", "datetime"):
            return token.value
        if token.kind == "word" and str(token.value).lower() in ("true", "false"):
            return str(token.value).lower() == "true"
        if token.kind == "word" and str(token.value).lower() == "null":
            return None
        raise _bad_query(
            f"Expected a value at position {token.position} (strings in double quotes, datetimes in [...]),"
            f" found {token.value!r}"
        )

    def _value_list(self) -> list[Any]:
        opening = self._next("'('")
        if opening.kind != "(":
            raise _bad_query(f"'in' needs a list in parentheses at position {opening.position}")
        values = [self._value()]
        while True:
            token = self._next("',' or ')'")
            if token.kind == ")":
                return values
            if token.kind != ",":
                raise _bad_query(f"Expected ',' or ')' at position {token.position}")
            values.append(self._value())


_INFO_ALIASES = {"lastUpdated", "dateEntered", "enteredBy", "updatedBy"}


def _resolve(row: Any, path: str) -> Any:
    current = row
    for index, part in enumerate(path.split("/")):
        if isinstance(current, list):
            rest = "/".join(path.split("/")[index:])
            return [_resolve(item, rest) for item in current]
        if not isinstance(current, dict):
            return _MISSING
        if part not in current and index == 0 and part in _INFO_ALIASES:
            # ConnectWise lets conditions name `lastUpdated` directly although it is returned under `_info`.
            current = (current.get("_info") or {}).get(part, _MISSING)
            continue
        current = current.get(part, _MISSING)
        if current is _MISSING:
            return _MISSING
    return current


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    return None


def _sql_server_like(pattern: str) -> re.Pattern[str] | None:
    """A T-SQL LIKE pattern as a regex: `%` any run, `_` any one character, `[abc]` / `[a-f]` / `[^a]` a character
    class; everything else, a lone `]` included, is literal (https://learn.microsoft.com/en-us/sql/t-sql/language-
    elements/like-transact-sql). An unclosed `[` makes the pattern match nothing [U]. Case-insensitive, as SQL
    Server's default collation is [U: a tenant's collation is not published]."""
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        elif char == "[":
            end = pattern.find("]", index + 1)
            if end < 0 or end == index + 1:
                return None
            body = pattern[index + 1 : end]
            negate = body.startswith("^") and len(body) > 1
            body = body[1:] if negate else body
            members: list[str] = []
            position = 0
            while position < len(body):
                if position + 2 < len(body) and body[position + 1] == "-":
                    members.append(f"{re.escape(body[position])}-{re.escape(body[position + 2])}")
                    position += 3
                else:
                    members.append(re.escape(body[position]))
                    position += 1
            parts.append("[" + ("^" if negate else "") + "".join(members) + "]")
            index = end
        else:
            parts.append(re.escape(char))
        index += 1
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _like(actual: Any, pattern: str, reading: str) -> bool:
    """`like`: apis.md §1.3 documents only the `%` wildcard; the default reading also takes `_` (both are LIKE
    wildcards everywhere). The "like" reading runs the whole T-SQL LIKE, `[...]` classes included."""
    if not isinstance(actual, str):
        return False
    if reading == "like":
        compiled = _sql_server_like(pattern)
        return compiled is not None and compiled.fullmatch(actual) is not None
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, actual, re.IGNORECASE | re.DOTALL) is not None


def _compare(actual: Any, operator: str, expected: Any, reading: str = "") -> bool:
    """SQL-Server-like semantics: text compares case-insensitively [U: collation], null only equals null.

    `contains` is documented as an operator (apis.md §1.3; the `-condition` example `summary contains "test"` in
    christaylorcodes/ConnectWiseManageAPI:Docs/Get-CWMCommunicationType.md) but not how it matches. The default
    reading is a plain substring; the "like" reading runs it as `LIKE '%value%'`, where `%`, `_` and `[` inside the
    value are wildcards, since ConnectWise sits on SQL Server and documents no escaping [U]."""
    if expected is None or actual is None:
        same = expected is None and actual is None
        return same if operator == "=" else (not same if operator == "!=" else False)
    if operator == "contains":
        if reading == "like":
            return _like(actual, f"%{expected}%", reading)
        return isinstance(actual, str) and expected.casefold() in actual.casefold()
    if operator == "like":
        return _like(actual, expected, reading)
    left: Any
    right: Any
    if isinstance(expected, datetime):
        left, right = _as_time(actual), expected
        if left is None:
            return False
    elif isinstance(expected, bool):
        if not isinstance(actual, bool):
            return False
        left, right = actual, expected
    elif isinstance(expected, int | float):
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            return False
        left, right = actual, expected
    else:
        if not isinstance(actual, str | int | float) or isinstance(actual, bool):
            return False
        left, right = str(actual).casefold(), str(expected).casefold()
    if operator == "=":
        return bool(left == right)
    if operator == "!=":
        return bool(left != right)
    if operator == "<":
        return bool(left < right)
    if operator == "<=":
        return bool(left <= right)
    if operator == ">":
        return bool(left > right)
    return bool(left >= right)


def parse_conditions(text: str, known_roots: Iterable[str], reading: str = "") -> Predicate:
    """A predicate over records for a `conditions` string; raises CwError(400) for anything malformed."""
    return _ConditionParser(text, set(known_roots), reading).parse()


def parse_child_conditions(text: str, children: Iterable[str], reading: str = "") -> Predicate:
    """`childConditions` names fields of an array child (`communicationItems/value`); a record matches when one
    child satisfies the whole expression, so value and type are checked on the same communication item."""
    children = set(children)
    parser = _ConditionParser(text, children, reading)
    predicate = parser.parse()
    roots = {path.split("/", 1)[0] for path in parser.paths}
    if len(roots) > 1:
        raise _bad_query("childConditions must name fields of one child collection")
    if not roots:
        return lambda _row: True
    [root] = roots
    if any("/" not in path for path in parser.paths):
        raise _bad_query(f"childConditions must name a field of {root}, e.g. {root}/value")

    def matches(row: dict[str, Any]) -> bool:
        return any(predicate({root: child}) for child in row.get(root) or [])

    return matches


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


def _names(text: str) -> set[str]:
    return set(text.split())


_RESOURCE_FIELDS: dict[str, set[str]] = {
    "tickets": _names(
        "id summary recordType board status company contact owner priority initialDescription closedFlag _info lastUpdated dateEntered"
    ),
    "notes": _names("id ticketId text detailDescriptionFlag internalAnalysisFlag resolutionFlag member"),
    # The Opportunity model has no closed flag; whether one is open is its status's `closedFlag`
    # (ai-connor/connectwise:build/docs/Opportunity.md, OpportunityStatus.md), so `closedFlag` here is a 400.
    "opportunities": _names(
        "id name primarySalesRep company contact stage status notes expectedCloseDate closedDate _info lastUpdated"
        " dateEntered"
    ),
    # OpportunityStatus: id, name (max 30), wonFlag, lostFlag, closedFlag, inactiveFlag, defaultFlag, enteredBy,
    # dateEntered (ai-connor/connectwise:build/docs/OpportunityStatus.md), listed at GET /sales/opportunities/statuses
    # (build/docs/OpportunityStatusesAPI.md).
    "opportunityStatuses": _names("id name wonFlag lostFlag closedFlag inactiveFlag defaultFlag _info"),
    "activities": _names(
        "id name assignTo company contact opportunity ticket dateStart dateEnd notes type status _info lastUpdated"
    ),
    "entries": _names(
        "id objectId name member type dateStart dateEnd status doneFlag allowScheduleConflictsFlag _info lastUpdated"
    ),
    "contacts": _names("id firstName lastName company inactiveFlag defaultFlag title _info"),
    "companies": _names("id identifier name deletedFlag _info"),
    "members": _names("id identifier firstName lastName officeEmail inactiveFlag"),
    "boards": _names("id name inactiveFlag"),
    "statuses": _names("id name boardId closedStatus sortOrder inactive"),
    "stages": _names("id name"),
    "types": _names("id identifier name"),
    "communicationTypes": _names("id description phoneFlag faxFlag emailFlag defaultFlag _info"),
}
"""Fields each resource can be filtered and sorted on; a condition naming any other field is a 400."""
_CHILD_COLLECTIONS: dict[str, set[str]] = {"contacts": {"communicationItems"}}


def stock_communication_types() -> list[dict[str, Any]]:
    """A stock tenant's contact communication types (`GET /company/communicationTypes`). A type is named by its
    required `description` and has `phoneFlag` / `faxFlag` / `emailFlag`, "at least one flag is required to be true"
    (Jetbuilt/connect_wise:docs/CommunicationType.md, generated from ConnectWise's OpenAPI). The descriptions and
    ids are those seen in stock tenants [U]."""
    return [
        {"id": 1, "description": "Email", "emailFlag": True, "phoneFlag": False, "faxFlag": False, "defaultFlag": True},
        {
            "id": 2,
            "description": "Direct",
            "emailFlag": False,
            "phoneFlag": True,
            "faxFlag": False,
            "defaultFlag": True,
        },
        {
            "id": 3,
            "description": "Mobile",
            "emailFlag": False,
            "phoneFlag": True,
            "faxFlag": False,
            "defaultFlag": False,
        },
        {"id": 4, "description": "Fax", "emailFlag": False, "phoneFlag": False, "faxFlag": True, "defaultFlag": True},
    ]


def _category(kind: dict[str, Any]) -> str:
    """An item's `communicationType` (ContactCommunicationItem, ai-connor/connectwise) is its type's category, the
    `"Email"` the documented look-up filters on (apis.md §1.2) [U: derived from the flags]."""
    return "Email" if kind.get("emailFlag") else "Fax" if kind.get("faxFlag") else "Phone"


def stock_opportunity_statuses() -> list[dict[str, Any]]:
    """A tenant's opportunity statuses (`OpportunityStatus`, ai-connor/connectwise:build/docs/OpportunityStatus.md):
    one open default and three closed ones. Names and ids are those of a stock tenant [U]; tenants rename and add
    their own, which is why a client must go by `closedFlag`, never by a name."""
    return [
        {
            "id": 1,
            "name": "Open",
            "wonFlag": False,
            "lostFlag": False,
            "closedFlag": False,
            "inactiveFlag": False,
            "defaultFlag": True,
        },
        {
            "id": 2,
            "name": "Won",
            "wonFlag": True,
            "lostFlag": False,
            "closedFlag": True,
            "inactiveFlag": False,
            "defaultFlag": False,
        },
        {
            "id": 3,
            "name": "Lost",
            "wonFlag": False,
            "lostFlag": True,
            "closedFlag": True,
            "inactiveFlag": False,
            "defaultFlag": False,
        },
        {
            "id": 4,
            "name": "No Decision",
            "wonFlag": False,
            "lostFlag": False,
            "closedFlag": True,
            "inactiveFlag": False,
            "defaultFlag": False,
        },
        {
            "id": 5,
            "name": "Waiting on Budget",
            "wonFlag": False,
            "lostFlag": False,
            "closedFlag": False,
            "inactiveFlag": False,
            "defaultFlag": False,
        },
    ]


_SCHEDULE_TYPES = [
    {"id": 1, "identifier": "S", "name": "Service"},
    {"id": 2, "identifier": "C", "name": "Activity"},
    {"id": 3, "identifier": "P", "name": "Project"},
]
"""`GET /schedule/types`: `S` service ticket, `C` activity, `P` project (apis.md §1.2 [U: identifiers from memory])."""


@dataclass
class FakeConnectWiseServer:
    """One ConnectWise PSA site. `clock` drives the rate window; `latency_seconds` keeps requests in flight long
    enough for concurrency to be observable."""

    company_id: str = DEMO_COMPANY_ID
    public_key: str = DEMO_PUBLIC_KEY
    private_key: str = DEMO_PRIVATE_KEY
    client_id: str = DEMO_CLIENT_ID
    codebase: str = DEMO_CODEBASE
    clock: Callable[[], datetime] = _utc_now
    rate_limit: int | None = None
    rate_window: timedelta = timedelta(minutes=1)
    max_concurrent_requests: int | None = None
    latency_seconds: float = 0.0
    activities_schedule_themselves: bool = True
    """A dated activity with an assignee lands on that member's schedule as a type-C entry, the way ConnectWise's
    own screens show activities on the calendar [U: not stated in apis.md for the API; False models the other
    reading, where only an explicit POST /schedule/entries schedules an activity]."""
    busy_kinds: tuple[str, ...] = ("schedule_entry",)
    """The only busy time our client reads is the member's schedule entries (`GET /schedule/entries`, apis.md §1.2);
    activities, tickets and projects reach a member's calendar as schedule entries of type C, S or P."""
    readings: tuple[str, ...] = ("like",)
    """"like": `contains` and `like` run as SQL Server LIKE (see `_compare`)."""
    reading: str = ""
    communication_types: list[dict[str, Any]] = field(default_factory=stock_communication_types)
    opportunity_statuses: list[dict[str, Any]] = field(default_factory=stock_opportunity_statuses)
    request_log: list[LoggedRequest] = field(default_factory=list)
    members: dict[int, dict[str, Any]] = field(default_factory=dict)
    companies: dict[int, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    boards: dict[int, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[int, dict[str, Any]] = field(default_factory=dict)
    stages: dict[int, dict[str, Any]] = field(default_factory=dict)
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: dict[int, dict[str, Any]] = field(default_factory=dict)
    opportunities: dict[int, dict[str, Any]] = field(default_factory=dict)
    activities: dict[int, dict[str, Any]] = field(default_factory=dict)
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    throttled: int = 0
    _faults: list[Fault] = field(default_factory=list)
    responses_lost: int = 0
    """How many committed creates had their answer dropped by lose_next_response."""
    _lose_next: str | None = None
    """None = keep answering; otherwise the path suffix ("" for any) of the create whose answer is dropped next."""
    _revoked: bool = False
    _next_id: int = 100
    _window_started: datetime | None = None
    _window_count: int = 0

    def __post_init__(self) -> None:
        if not self.members:
            self.members[176] = {
                "id": 176,
                "identifier": DEMO_MEMBER,
                "firstName": "Jamie",
                "lastName": "Doe",
                "officeEmail": "jdoe@msp.example",
                "inactiveFlag": False,
            }
        if not self.boards:
            self.boards[1] = {"id": 1, "name": "Service Desk", "inactiveFlag": False}
            self.boards[2] = {"id": 2, "name": "Onsite", "inactiveFlag": False}
            names = ["New", "Scheduled", "In Progress", "Waiting on Customer", "Closed"]
            status_id = 10
            for board_id in self.boards:
                for order, name in enumerate(names):
                    status_id += 1
                    self.statuses[status_id] = {
                        "id": status_id,
                        "name": name,
                        "boardId": board_id,
                        "closedStatus": name == "Closed",
                        "sortOrder": order,
                        "inactive": False,
                    }
        if not self.stages:
            self.stages = {1: {"id": 1, "name": "Prospect"}, 2: {"id": 2, "name": "Qualified"}}
        if not self.companies:
            self.companies[DEMO_FALLBACK_COMPANY_ID] = {
                "id": DEMO_FALLBACK_COMPANY_ID,
                "identifier": DEMO_FALLBACK_COMPANY,
                "name": DEMO_FALLBACK_COMPANY,
                "deletedFlag": False,
            }

    # FakePsaControl

    def records(self, kind: PsaRecordKind) -> list[dict[str, Any]]:
        table = {
            PsaRecordKind.TICKET: self.tickets,
            PsaRecordKind.NOTE: self.notes,
            PsaRecordKind.OPPORTUNITY: self.opportunities,
            PsaRecordKind.ACTIVITY: self.activities,
            PsaRecordKind.SCHEDULE_ENTRY: self.entries,
        }[kind]
        # A ticket's initial description is stored as its first note (GET .../notes lists it, as ConnectWise does
        # [U]), but it is part of the ticket, not a note anyone added, so it is not counted as a NOTE record here.
        rows = [row for row in table.values() if not row.get("initial")]
        return [{key: value for key, value in json.loads(json.dumps(row)).items() if key != "initial"} for row in rows]

    def fail_next(self, status: int, *, retry_after: int | None = None, message: str = "", count: int = 1) -> None:
        self._faults.extend(Fault(status, retry_after, message) for _ in range(count))

    def lose_next_response(self, *, path: str = "") -> None:
        """Commit the next create (the next one whose path ends with `path`, if given), then drop the answer."""
        self._lose_next = path

    def use_reading(self, name: str) -> None:
        if name and name not in self.readings:
            raise ValueError(f"unknown reading {name!r}; this fake knows {self.readings}")
        self.reading = name

    def revoke_credentials(self) -> None:
        """The API member's keys are deleted in ConnectWise: every call with them is a 401 from now on."""
        self._revoked = True

    def add_contact(self, name: str, email: str) -> PsaContact:
        domain = email.rpartition("@")[2].lower()
        company = next((row for row in self.companies.values() if row["name"] == domain), None)
        if company is None:
            company_id = self._new_id()
            identifier = re.sub(r"[^A-Za-z0-9]", "", domain.title())[:25] or f"Company{company_id}"
            company = {"id": company_id, "identifier": identifier, "name": domain, "deletedFlag": False}
            self.companies[company_id] = company
        first, _, last = name.partition(" ")
        email_type = next(row for row in self.communication_types if row.get("emailFlag"))
        contact_id = self._new_id()
        self.contacts[contact_id] = {
            "id": contact_id,
            "firstName": first,
            "lastName": last,
            "company": self._company_ref(company),
            "inactiveFlag": False,
            "communicationItems": [
                {
                    "id": self._new_id(),
                    "type": {"id": email_type["id"], "name": email_type["description"]},
                    "value": email,
                    "defaultFlag": True,
                    "communicationType": "Email",
                }
            ],
        }
        return PsaContact(contact_id=str(contact_id), company_id=str(company["id"]), name=name, email=email)

    def contacts_with_email(self, email: str) -> list[PsaContact]:
        """Every contact with a communication item holding this address (any case), as our client should see it."""
        wanted = email.casefold()
        return [
            PsaContact(
                contact_id=str(row["id"]),
                company_id=str(row["company"]["id"]) if row.get("company") else "",
                name=f"{row['firstName']} {row.get('lastName') or ''}".strip(),
                email=email,
            )
            for row in sorted(self.contacts.values(), key=lambda row: row["id"])
            if any(str(item.get("value", "")).casefold() == wanted for item in row.get("communicationItems") or [])
        ]

    def contact_linked_to(self, kind: PsaRecordKind, record_id: str) -> str | None:
        """The contact id a ticket, opportunity or activity names, or None."""
        table = {
            PsaRecordKind.TICKET: self.tickets,
            PsaRecordKind.OPPORTUNITY: self.opportunities,
            PsaRecordKind.ACTIVITY: self.activities,
        }[kind]
        contact = table[int(record_id)].get("contact")
        return str(contact["id"]) if isinstance(contact, dict) else None

    def add_busy(self, member: str, starts_at: Any, ends_at: Any, kind: str = "") -> None:
        """Something a dispatcher booked in ConnectWise itself: an activity on the member's calendar, which shows
        there as its type-C schedule entry."""
        if kind not in ("", *self.busy_kinds):
            raise ValueError(f"unknown busy kind {kind!r}; this fake knows {self.busy_kinds}")
        member_row = self._member_by_identifier(member)
        activity_id = self._new_id()
        self.activities[activity_id] = {
            "id": activity_id,
            "name": "Internal meeting",
            "assignTo": self._member_ref(member_row),
            "dateStart": _cw_time(starts_at),
            "dateEnd": _cw_time(ends_at),
            "_info": self._info(),
        }
        entry_id = self._new_id()
        self.entries[entry_id] = {
            "id": entry_id,
            "objectId": activity_id,
            "name": "Internal meeting",
            "member": self._member_ref(member_row),
            "type": {"id": 2, "identifier": "C", "name": "Activity"},
            "dateStart": _cw_time(starts_at),
            "dateEnd": _cw_time(ends_at),
            "doneFlag": False,
            "allowScheduleConflictsFlag": False,
            "_info": self._info(),
        }

    def add_ticket(self, summary: str, *, contact: PsaContact | None = None, stated_email: str = "") -> int:
        """A ticket someone typed in ConnectWise itself (first board, its first status, the catch-all company).

        `contact`: the ticket is for that contact (one add_contact made): its `contact` reference
        (`ContactReference` `{id, name}`) and the contact's company, since a ticket's contact belongs to its company
        (the 400 of `_find_contact`). `stated_email`: the address typed on the ticket itself, with the contact's
        name, in `contactEmailAddress` / `contactName` (ai-connor/connectwise:model_ticket.go). Whether ConnectWise
        copies the contact's address there by itself is not documented [U], so without it the ticket states none
        and a reader has to read the contact."""
        board = self.boards[min(self.boards)]
        status = min(
            (row for row in self.statuses.values() if row["boardId"] == board["id"]), key=lambda row: row["sortOrder"]
        )
        ticket_id = self._new_id()
        self.tickets[ticket_id] = {
            "id": ticket_id,
            "summary": summary,
            "recordType": "ServiceTicket",
            "board": {"id": board["id"], "name": board["name"]},
            "status": {"id": status["id"], "name": status["name"]},
            "company": self._company_ref(self.companies[DEMO_FALLBACK_COMPANY_ID]),
            "closedFlag": False,
            "_info": self._info(),
        }
        if contact is not None:
            row = self.contacts[int(contact.contact_id)]
            name = f"{row['firstName']} {row.get('lastName') or ''}".strip()
            self.tickets[ticket_id]["contact"] = {"id": row["id"], "name": name}
            self.tickets[ticket_id]["company"] = self._company_ref(self.companies[row["company"]["id"]])
            if stated_email:
                self.tickets[ticket_id] |= {"contactName": name, "contactEmailAddress": stated_email}
        return ticket_id

    def ticket_number(self, ticket_id: int) -> str:
        """The number ConnectWise shows for a ticket ("ticket #1234"): its id."""
        return str(self.tickets[ticket_id]["id"])

    def company_name(self, company_id: str) -> str:
        """The display name of a company (add_contact names a new one after the address's domain)."""
        return str(self.companies[int(company_id)]["name"])

    def add_opportunity(
        self, name: str, *, contact: PsaContact, open_: bool = True, for_company_only: bool = False, stage: str = ""
    ) -> str:
        """An opportunity a rep entered in ConnectWise itself, for `contact` (one add_contact made) and its company.
        `open_`: in the open default status, else in a closed one ("Won"). `for_company_only`: for another contact
        of the same company (made here), so it is the company's, not this contact's. `stage`: a stage name (the
        first stage when empty). Returns its id."""
        row = self.contacts[int(contact.contact_id)]
        company = self.companies[row["company"]["id"]]
        person = row
        if for_company_only:
            other = self._new_id()
            person = {
                "id": other,
                "firstName": "Colleague",
                "lastName": str(other),
                "company": self._company_ref(company),
                "inactiveFlag": False,
                "communicationItems": [],
            }
            self.contacts[other] = person
        statuses = [status for status in self.opportunity_statuses if status["closedFlag"] is not open_]
        status = next((item for item in statuses if item.get("defaultFlag")), statuses[0])
        stage_row = next(
            (item for item in self.stages.values() if item["name"] == stage), self.stages[min(self.stages)]
        )
        member = self.members[min(self.members)]
        opportunity_id = self._new_id()
        self.opportunities[opportunity_id] = {
            "id": opportunity_id,
            "name": name,
            "primarySalesRep": self._member_ref(member),
            "company": self._company_ref(company),
            "contact": {"id": person["id"], "name": f"{person['firstName']} {person['lastName']}".strip()},
            "stage": {"id": stage_row["id"], "name": stage_row["name"]},
            "status": {"id": status["id"], "name": status["name"]},
            "notes": "",
            "expectedCloseDate": _cw_time(self.clock() + timedelta(days=30)),
            "_info": self._info(),
        }
        return str(opportunity_id)

    def _default_opportunity_status(self) -> dict[str, Any]:
        """A new opportunity without a status gets the tenant's default one (`defaultFlag`, OpportunityStatus) [U:
        the spec does not say what a create without `status` gets; the default is the reading a tenant expects]."""
        status = next((item for item in self.opportunity_statuses if item.get("defaultFlag")), None)
        status = status or self.opportunity_statuses[0]
        return {"id": status["id"], "name": status["name"]}

    # Serving

    @property
    def api_prefix(self) -> str:
        return f"/{self.codebase}/apis/3.0"

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._log_middleware, self._api_middleware])
        prefix = self.api_prefix
        router = app.router
        router.add_get(f"{prefix}/system/info", self._system_info)
        router.add_get(f"{prefix}/system/members", self._list_members)
        router.add_get(f"{prefix}/company/companies", self._list_companies)
        router.add_get(f"{prefix}/company/companies/{{id}}", self._get_company)
        router.add_get(f"{prefix}/company/communicationTypes", self._list_communication_types)
        router.add_get(f"{prefix}/company/contacts", self._list_contacts)
        router.add_post(f"{prefix}/company/contacts", self._post_contact)
        router.add_get(f"{prefix}/company/contacts/{{id}}", self._get_contact)
        router.add_get(f"{prefix}/service/boards", self._list_boards)
        router.add_get(f"{prefix}/service/boards/{{id}}/statuses", self._list_statuses)
        router.add_get(f"{prefix}/service/tickets", self._list_tickets)
        router.add_post(f"{prefix}/service/tickets", self._post_ticket)
        router.add_get(f"{prefix}/service/tickets/{{id}}", self._get_ticket)
        router.add_patch(f"{prefix}/service/tickets/{{id}}", self._patch_ticket)
        router.add_get(f"{prefix}/service/tickets/{{id}}/notes", self._list_notes)
        router.add_post(f"{prefix}/service/tickets/{{id}}/notes", self._post_note)
        router.add_get(f"{prefix}/sales/opportunities", self._list_opportunities)
        router.add_get(f"{prefix}/sales/opportunities/statuses", self._list_opportunity_statuses)
        router.add_post(f"{prefix}/sales/opportunities", self._post_opportunity)
        router.add_get(f"{prefix}/sales/stages", self._list_stages)
        router.add_get(f"{prefix}/sales/activities", self._list_activities)
        router.add_post(f"{prefix}/sales/activities", self._post_activity)
        router.add_get(f"{prefix}/schedule/types", self._list_schedule_types)
        router.add_get(f"{prefix}/schedule/entries", self._list_entries)
        router.add_post(f"{prefix}/schedule/entries", self._post_entry)
        router.add_get(f"{prefix}/schedule/entries/{{id}}", self._get_entry)
        router.add_patch(f"{prefix}/schedule/entries/{{id}}", self._patch_entry)
        router.add_delete(f"{prefix}/schedule/entries/{{id}}", self._delete_entry)
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
        try:
            self._authenticate(request)
            if self._faults:
                fault = self._faults.pop(0)
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                body = {
                    "code": HTTPStatus(fault.status).phrase.replace(" ", ""),
                    "message": fault.message or HTTPStatus(fault.status).phrase,
                    "errors": [],
                }
                return web.json_response(body, status=fault.status, headers=headers)
            throttled = self._throttle()
            if throttled is not None:
                return throttled
            if self.max_concurrent_requests is not None and self.in_flight > self.max_concurrent_requests:
                return self._too_many(1, "Too many concurrent requests for this integration")
            if self.latency_seconds:
                await asyncio.sleep(self.latency_seconds)
            return await handler(request)
        except CwError as exc:
            return exc.response()

    def _authenticate(self, request: web.Request) -> None:
        # clientId is "a required header that must be included with all API Requests" (apis.md §1.1) [U: the exact
        # status and body ConnectWise uses for a missing one; 401 matches "bad keys" in apis.md §1.5].
        client_id = request.headers.get("clientId", "")
        if not client_id:
            raise CwError(401, "Unauthorized", "The clientId header is required on every request")
        if client_id != self.client_id:
            raise CwError(401, "Unauthorized", "The clientId is not registered")
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise CwError(401, "Unauthorized", "Basic authentication is required")
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise CwError(401, "Unauthorized", "Malformed Basic credentials") from None
        # `companyId+publicKey:privateKey` (apis.md §1.1). Company ids are case-insensitive at login [U].
        user, _, private_key = decoded.partition(":")
        company, _, public_key = user.partition("+")
        valid = (
            company.lower() == self.company_id.lower()
            and public_key == self.public_key
            and private_key == self.private_key
        )
        if not valid or self._revoked:
            raise CwError(401, "Unauthorized", "Invalid API key or company")

    def _throttle(self) -> web.Response | None:
        if self.rate_limit is None:
            return None
        now = self.clock()
        if self._window_started is None or now >= self._window_started + self.rate_window:
            self._window_started, self._window_count = now, 0
        if self._window_count >= self.rate_limit:
            wait = max(1, int((self._window_started + self.rate_window - now).total_seconds() + 0.999))
            return self._too_many(wait, "Request limit exceeded")
        self._window_count += 1
        return None

    @staticmethod
    def _too_many(wait: int, message: str) -> web.Response:
        # apis.md §1.5: "429 carries Retry-After (seconds)".
        return web.json_response(
            {"code": "TooManyRequests", "message": message, "errors": []},
            status=429,
            headers={"Retry-After": str(wait)},
        )

    # Request helpers

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _info(self) -> dict[str, str]:
        now = _cw_time(self.clock())
        return {"dateEntered": now, "lastUpdated": now, "enteredBy": "api", "updatedBy": "api"}

    async def _json_object(self, request: web.Request, resource: str) -> dict[str, Any]:
        try:
            body = await request.json()
        except (ValueError, json.JSONDecodeError):
            raise CwError(400, "InvalidObject", "The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise CwError(400, "InvalidObject", f"The request body must be a {resource} object")
        return body

    def _listed(self, request: web.Request, rows: list[dict[str, Any]], resource: str) -> web.Response:
        """conditions, childConditions, orderBy, fields, page and pageSize, as every ConnectWise list accepts them
        (apis.md §1.2-§1.4), with the navigable-pagination Link header."""
        query = request.query
        known = _RESOURCE_FIELDS[resource]
        if query.get("conditions", "").strip():
            predicate = parse_conditions(query["conditions"], known, self.reading)
            rows = [row for row in rows if predicate(row)]
        if query.get("childConditions", "").strip():
            children = _CHILD_COLLECTIONS.get(resource, set())
            if not children:
                raise _bad_query(f"{resource} has no child collections for childConditions")
            child_predicate = parse_child_conditions(query["childConditions"], children, self.reading)
            rows = [row for row in rows if child_predicate(row)]
        rows = self._ordered(rows, query.get("orderBy", ""), known)
        try:
            page = int(query.get("page", "1"))
            size = int(query.get("pageSize", str(DEFAULT_PAGE_SIZE)))
        except ValueError:
            raise _bad_query("page and pageSize must be integers") from None
        if page < 1 or size < 1:
            raise _bad_query("page and pageSize start at 1")
        size = min(size, MAX_PAGE_SIZE)
        start = (page - 1) * size
        chunk = rows[start : start + size]
        if query.get("fields"):
            wanted = [name.strip() for name in query["fields"].split(",") if name.strip()]
            chunk = [{name: row[name] for name in wanted if name in row} for row in chunk]
        last = max(1, -(-len(rows) // size))
        links = []
        url = request.url

        def page_url(number: int) -> str:
            return str(url.update_query(page=str(number), pageSize=str(size)))

        if page < last:
            links.append(f'<{page_url(page + 1)}>; rel="next"')
            links.append(f'<{page_url(last)}>; rel="last"')
        if page > 1:
            links.append(f'<{page_url(1)}>; rel="first"')
            links.append(f'<{page_url(min(page - 1, last))}>; rel="prev"')
        headers = {"Link": ", ".join(links)} if links else {}
        return web.json_response(json.loads(json.dumps(chunk)), headers=headers)

    @staticmethod
    def _ordered(rows: list[dict[str, Any]], order_by: str, known: set[str]) -> list[dict[str, Any]]:
        keys: list[tuple[str, bool]] = []
        for part in (piece.strip() for piece in order_by.split(",")):
            if not part:
                continue
            words = part.split()
            direction = words[1].lower() if len(words) > 1 else "asc"
            if len(words) > 2 or direction not in ("asc", "desc") or words[0].split("/")[0] not in known:
                raise _bad_query(f"Invalid orderBy {part!r}")
            keys.append((words[0], direction == "desc"))
        ordered = sorted(rows, key=lambda row: row["id"])
        for path, descending in reversed(keys):

            def sort_key(row: dict[str, Any], path: str = path) -> tuple[int, Any]:
                value = _resolve(row, path)
                if value is _MISSING or value is None or isinstance(value, dict | list):
                    return (0, "")
                return (1, value if not isinstance(value, str) else value.casefold())

            ordered.sort(key=sort_key, reverse=descending)
        return ordered

    def _maybe_drop(self, request: web.Request) -> None:
        """lose_next_response: the record is committed, then the connection dies before the answer is written."""
        if self._lose_next is not None and request.path.endswith(self._lose_next):
            self._lose_next = None
            self.responses_lost += 1
            if request.transport is not None:
                request.transport.close()

    @staticmethod
    def _record_id(request: web.Request, table: dict[int, dict[str, Any]], what: str) -> int:
        raw = request.match_info["id"]
        if not raw.isdigit() or int(raw) not in table:
            raise CwError(404, "NotFound", f"{what} ID {raw} was not found.")
        return int(raw)

    # References: `{"id": n}` or `{"identifier": "..."}` (apis.md §1.2)

    @staticmethod
    def _company_ref(company: dict[str, Any]) -> dict[str, Any]:
        return {"id": company["id"], "identifier": company["identifier"], "name": company["name"]}

    @staticmethod
    def _member_ref(member: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": member["id"],
            "identifier": member["identifier"],
            "name": f"{member['firstName']} {member['lastName']}",
        }

    def _member_by_identifier(self, identifier: str) -> dict[str, Any]:
        for member in self.members.values():
            if member["identifier"].lower() == identifier.lower():
                return member
        raise KeyError(identifier)

    @staticmethod
    def _reference(body: dict[str, Any], name: str, resource: str, *, required: bool) -> dict[str, Any] | None:
        """References are objects: `{"id": n}` or `{"identifier": "..."}` (apis.md §1.2; e.g. `MemberReference`,
        `CompanyReference` in ai-connor/connectwise), `{"name": ...}` where the reference has a name. A bare id or
        string is a 400 [U: ConnectWise's message]."""
        value = body.get(name)
        if value is None:
            if required:
                raise _invalid(resource, name, f"The {name} field is required.", "NullValue")
            return None
        if not isinstance(value, dict) or not (
            (isinstance(value.get("id"), int) and not isinstance(value.get("id"), bool))
            or isinstance(value.get("identifier"), str)
            or isinstance(value.get("name"), str)
        ):
            raise _invalid(resource, name, f'{name} must be a reference like {{"id": 1}} or {{"identifier": "x"}}.')
        return value

    def _find_company(self, body: dict[str, Any], resource: str, *, required: bool) -> dict[str, Any] | None:
        ref = self._reference(body, "company", resource, required=required)
        if ref is None:
            return None
        for company in self.companies.values():
            if ref.get("id") == company["id"] or (
                isinstance(ref.get("identifier"), str) and ref["identifier"].lower() == company["identifier"].lower()
            ):
                return company
        raise _invalid(resource, "company", "Company not found.", "InvalidObject")

    def _find_contact(
        self, body: dict[str, Any], resource: str, company: dict[str, Any] | None, *, required: bool
    ) -> dict[str, Any] | None:
        ref = self._reference(body, "contact", resource, required=required)
        if ref is None:
            return None
        contact = self.contacts.get(ref.get("id", -1)) if isinstance(ref.get("id"), int) else None
        if contact is None:
            raise _invalid(resource, "contact", "Contact not found.", "InvalidObject")
        if company is not None and (contact.get("company") or {}).get("id") != company["id"]:
            raise _invalid(resource, "contact", "The contact does not belong to the company.", "InvalidObject")
        return contact

    def _find_member(self, body: dict[str, Any], name: str, resource: str, *, required: bool) -> dict[str, Any] | None:
        ref = self._reference(body, name, resource, required=required)
        if ref is None:
            return None
        for member in self.members.values():
            if ref.get("id") == member["id"] or (
                isinstance(ref.get("identifier"), str) and ref["identifier"].lower() == member["identifier"].lower()
            ):
                if member["inactiveFlag"]:
                    raise _invalid(resource, name, "The member is inactive.", "InvalidObject")
                return member
        raise _invalid(resource, name, "Member not found.", "InvalidObject")

    @staticmethod
    def _text(body: dict[str, Any], name: str, resource: str, *, required: bool, limit: int) -> str | None:
        value = body.get(name)
        if value is None or (isinstance(value, str) and not value.strip() and required):
            if required:
                raise _invalid(resource, name, f"The {name} field is required.", "NullValue")
            return None
        if not isinstance(value, str):
            raise _invalid(resource, name, f"{name} must be a string.")
        if len(value) > limit:
            raise _invalid(resource, name, f"{name} cannot be longer than {limit} characters.", "InvalidLength")
        return value

    @staticmethod
    def _time(body: dict[str, Any], name: str, resource: str, *, required: bool) -> str | None:
        """Dates are ISO-8601 UTC `yyyy-MM-ddTHH:mm:ssZ` (apis.md §1.1); this fake refuses anything else so a
        zone-less local time can never slip through."""
        value = body.get(name)
        if value is None:
            if required:
                raise _invalid(resource, name, f"The {name} field is required.", "NullValue")
            return None
        if not isinstance(value, str) or not _WIRE_TIME.match(value):
            raise _invalid(resource, name, f"{name} must be a UTC date-time like 2026-01-31T15:00:00Z.")
        return value

    # System and look-ups

    async def _system_info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "version": "v2025.1.95000",
                "isCloud": True,
                "serverTimeZone": "Eastern Standard Time",
                "cloudRegion": "NA",
            }
        )

    async def _list_members(self, request: web.Request) -> web.Response:
        return self._listed(request, list(self.members.values()), "members")

    async def _list_companies(self, request: web.Request) -> web.Response:
        return self._listed(request, list(self.companies.values()), "companies")

    async def _get_company(self, request: web.Request) -> web.Response:
        """`GET /company/companies/{id}` (get by id with `fields`, as the lists take it; 404 with the error body for
        an unknown id, apis.md §1.5)."""
        return self._single(request, self.companies[self._record_id(request, self.companies, "Company")])

    async def _get_contact(self, request: web.Request) -> web.Response:
        """`GET /company/contacts/{id}` (Jetbuilt/connect_wise:docs/ContactsApi.md `get_company_contacts_by_id`);
        404 with the error body for an unknown id (apis.md §1.5)."""
        return self._single(request, self.contacts[self._record_id(request, self.contacts, "Contact")])

    async def _list_contacts(self, request: web.Request) -> web.Response:
        return self._listed(request, list(self.contacts.values()), "contacts")

    async def _list_communication_types(self, request: web.Request) -> web.Response:
        return self._listed(request, list(self.communication_types), "communicationTypes")

    def _communication_type(self, item: dict[str, Any]) -> dict[str, Any]:
        """An item's `type` is a `CommunicationTypeReference`: an object of `id` (int32), `name` (string) and
        `_info`, each optional (ai-connor/connectwise:model_communication_type_reference.go). Anything else in it,
        or a wrong type, is a 400. `id` names the type; `name` is its `description` as the API returns it in a
        reference (`{"id": 1, "name": "Email", "_info": {"type_href": ".../company/communicationTypes/1"}}` in
        public client code) [3P]. A reference with neither cannot be resolved, and an item without a type has no
        category for the e-mail look-up to find [U: whether ConnectWise then refuses or picks a default]; when id
        and name disagree, the id wins [U]."""
        ref = item.get("type")
        if not isinstance(ref, dict):
            raise _invalid("contact", "communicationItems/type", "The type field is required.", "NullValue")
        unknown = set(ref) - {"id", "name", "_info"}
        if unknown:
            raise _invalid(
                "contact", "communicationItems/type", f"CommunicationTypeReference has no field {sorted(unknown)[0]}."
            )
        type_id, name = ref.get("id"), ref.get("name")
        if type_id is not None and (not isinstance(type_id, int) or isinstance(type_id, bool)):
            raise _invalid("contact", "communicationItems/type/id", "id must be an integer.")
        if name is not None and not isinstance(name, str):
            raise _invalid("contact", "communicationItems/type/name", "name must be a string.")
        if type_id is None and name is None:
            raise _invalid("contact", "communicationItems/type", "The type needs an id or a name.", "NullValue")
        for row in self.communication_types:
            if type_id is not None and type_id == row["id"]:
                return row
        for row in self.communication_types:
            if type_id is None and isinstance(name, str) and name.casefold() == row["description"].casefold():
                return row
        raise _invalid("contact", "communicationItems/type", "Communication type not found.", "InvalidObject")

    def _communication_items(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """`communicationItems[]` of `ContactCommunicationItem` {id, type, value, extension, defaultFlag, domain,
        communicationType}, all optional in the spec (Jetbuilt/connect_wise:docs/ContactCommunicationItem.md). An
        item without a `value` carries nothing, and an e-mail type's value must be an address [U: ConnectWise's
        exact checks]. Stored with the type's category as `communicationType`, as ConnectWise answers."""
        items = body.get("communicationItems", [])
        if not isinstance(items, list):
            raise _invalid("contact", "communicationItems", "communicationItems must be an array.")
        stored = []
        for item in items:
            if not isinstance(item, dict):
                raise _invalid("contact", "communicationItems", "Each communication item must be an object.")
            kind = self._communication_type(item)
            value = item.get("value")
            if not isinstance(value, str) or not value.strip():
                raise _invalid("contact", "communicationItems", "The value field is required.", "NullValue")
            if kind.get("emailFlag") and not _EMAIL.match(value):
                raise _invalid("contact", "communicationItems", f"{value!r} is not a valid email address.")
            flag = item.get("defaultFlag", False)
            if not isinstance(flag, bool):
                raise _invalid("contact", "communicationItems", "defaultFlag must be true or false.")
            stored.append(
                {
                    "id": self._new_id(),
                    "type": {"id": kind["id"], "name": kind["description"]},
                    "value": value,
                    "defaultFlag": flag,
                    "communicationType": _category(kind),
                }
            )
        return stored

    async def _post_contact(self, request: web.Request) -> web.Response:
        """`POST /company/contacts`. The spec requires no field (`NewContact()`, ai-connor/connectwise:
        model_contact.go); `firstName` is required here, 1-30 characters like `lastName`, because the
        ConnectWiseManageAPI module makes it mandatory and validates those lengths [3P:
        christaylorcodes/ConnectWiseManageAPI:Docs/New-CWMContact.md]. `company` is optional, as in the spec, but
        must exist when given. Duplicate addresses are accepted, as ConnectWise does not refuse them either [U], so
        a client that creates twice is caught by counting."""
        body = await self._json_object(request, "contact")
        first = self._text(body, "firstName", "contact", required=True, limit=30)
        last = self._text(body, "lastName", "contact", required=False, limit=30)
        company = self._find_company(body, "contact", required=False)
        items = self._communication_items(body)
        contact_id = self._new_id()
        contact = {
            "id": contact_id,
            "firstName": first,
            "lastName": last or "",
            **({"company": self._company_ref(company)} if company is not None else {}),
            "inactiveFlag": False,
            "communicationItems": items,
            "_info": self._info(),
        }
        self.contacts[contact_id] = contact
        self._maybe_drop(request)
        return web.json_response(contact, status=201)

    async def _list_boards(self, request: web.Request) -> web.Response:
        return self._listed(request, list(self.boards.values()), "boards")

    async def _list_statuses(self, request: web.Request) -> web.Response:
        board_id = self._record_id(request, self.boards, "Board")
        rows = [row for row in self.statuses.values() if row["boardId"] == board_id]
        return self._listed(request, rows, "statuses")

    async def _list_stages(self, request: web.Request) -> web.Response:
        return self._listed(request, list(self.stages.values()), "stages")

    async def _list_schedule_types(self, request: web.Request) -> web.Response:
        return self._listed(request, list(_SCHEDULE_TYPES), "types")

    # Tickets and their notes

    async def _list_tickets(self, request: web.Request) -> web.Response:
        return self._listed(request, list(self.tickets.values()), "tickets")

    async def _get_ticket(self, request: web.Request) -> web.Response:
        return self._single(request, self.tickets[self._record_id(request, self.tickets, "Ticket")])

    @staticmethod
    def _single(request: web.Request, row: dict[str, Any]) -> web.Response:
        """A get-by-id answer: the record, cut to `fields` when asked (the get-by-id operations take `fields` as the
        lists do, ai-connor/connectwise:api_tickets.go get by id)."""
        if request.query.get("fields"):
            wanted = [name.strip() for name in request.query["fields"].split(",") if name.strip()]
            row = {name: row[name] for name in wanted if name in row}
        return web.json_response(json.loads(json.dumps(row)))

    def _board_and_status(self, body: dict[str, Any], resource: str) -> tuple[dict[str, Any], dict[str, Any]]:
        board_ref = self._reference(body, "board", resource, required=True)
        assert board_ref is not None
        board = next(
            (
                row
                for row in self.boards.values()
                if board_ref.get("id") == row["id"]
                or (isinstance(board_ref.get("name"), str) and board_ref["name"].lower() == row["name"].lower())
            ),
            None,
        )
        if board is None or board["inactiveFlag"]:
            raise _invalid(resource, "board", "Board not found.", "InvalidObject")
        status_ref = self._reference(body, "status", resource, required=False)
        statuses = sorted(
            (row for row in self.statuses.values() if row["boardId"] == board["id"]), key=lambda row: row["sortOrder"]
        )
        if status_ref is None:
            return board, statuses[0]
        status = next(
            (
                row
                for row in statuses
                if status_ref.get("id") == row["id"]
                or (isinstance(status_ref.get("name"), str) and status_ref["name"].lower() == row["name"].lower())
            ),
            None,
        )
        if status is None:
            raise _invalid(resource, "status", f"Status is not valid for board {board['name']}.", "InvalidObject")
        return board, status

    async def _post_ticket(self, request: web.Request) -> web.Response:
        """`POST /service/tickets`: `summary` (at most 100 characters) and `company` are required
        (`NewTicket(summary, company)`, "Max length: 100", ai-connor/connectwise:model_ticket.go). `board` is
        optional in the spec but required here [U: apis.md §1.2 "in practice you need to set it"]; a `status` must
        belong to that board (statuses live under `/service/boards/{id}/statuses`). `contact`, when given, must be
        of the ticket's company [U]. `initialDescription` is "only available for POST" (model_ticket.go) and
        becomes the first discussion note [U]."""
        body = await self._json_object(request, "ticket")
        summary = self._text(body, "summary", "ticket", required=True, limit=100)
        company = self._find_company(body, "ticket", required=True)
        contact = self._find_contact(body, "ticket", company, required=False)
        board, status = self._board_and_status(body, "ticket")
        self._text(body, "initialDescription", "ticket", required=False, limit=100_000)
        assert company is not None
        ticket_id = self._new_id()
        ticket: dict[str, Any] = {
            "id": ticket_id,
            "summary": summary,
            "recordType": "ServiceTicket",
            "board": {"id": board["id"], "name": board["name"]},
            "status": {"id": status["id"], "name": status["name"]},
            "company": self._company_ref(company),
            "closedFlag": False,
            "_info": self._info(),
        }
        if contact is not None:
            ticket["contact"] = {"id": contact["id"], "name": f"{contact['firstName']} {contact['lastName']}".strip()}
        self.tickets[ticket_id] = ticket
        if body.get("initialDescription"):
            # The initial description becomes the ticket's first (discussion) note.
            note_id = self._new_id()
            self.notes[note_id] = {
                "id": note_id,
                "ticketId": ticket_id,
                "text": body["initialDescription"],
                "detailDescriptionFlag": True,
                "internalAnalysisFlag": False,
                "resolutionFlag": False,
                "_info": self._info(),
                "initial": True,
            }
        self._maybe_drop(request)
        return web.json_response(ticket, status=201)

    async def _json_patch(self, request: web.Request, resource: str) -> list[dict[str, Any]]:
        """PATCH bodies are JSON Patch arrays: `[{"op": "replace", "path": "status", "value": {...}}]`
        (covenanttechnologysolutions/connectwise-rest README examples; `PatchOperation` in ai-connor/connectwise)."""
        try:
            body = await request.json()
        except (ValueError, json.JSONDecodeError):
            raise CwError(400, "InvalidObject", "The request body is not valid JSON") from None
        if not isinstance(body, list) or not body:
            raise CwError(400, "InvalidObject", "A PATCH body must be a non-empty array of operations")
        for operation in body:
            if (
                not isinstance(operation, dict)
                or operation.get("op") not in ("replace", "add", "remove")
                or not isinstance(operation.get("path"), str)
                or (operation["op"] != "remove" and "value" not in operation)
            ):
                raise CwError(400, "InvalidObject", f"Invalid patch operation for {resource}: {operation!r}")
            operation["path"] = operation["path"].lstrip("/")
        return body

    async def _patch_ticket(self, request: web.Request) -> web.Response:
        ticket_id = self._record_id(request, self.tickets, "Ticket")
        ticket = self.tickets[ticket_id]
        for operation in await self._json_patch(request, "ticket"):
            path, value = operation["path"], operation.get("value")
            if path == "status":
                _board, status = self._board_and_status({"board": ticket["board"], "status": value}, "ticket")
                ticket["status"] = {"id": status["id"], "name": status["name"]}
                ticket["closedFlag"] = bool(status["closedStatus"])
            elif path == "summary":
                ticket["summary"] = self._text({"summary": value}, "summary", "ticket", required=True, limit=100)
            else:
                raise _invalid("ticket", path, f"{path} cannot be patched in this fake.")
        ticket["_info"]["lastUpdated"] = _cw_time(self.clock())
        return web.json_response(ticket)

    async def _list_notes(self, request: web.Request) -> web.Response:
        ticket_id = self._record_id(request, self.tickets, "Ticket")
        rows = [
            {key: value for key, value in note.items() if key != "initial"}
            for note in self.notes.values()
            if note["ticketId"] == ticket_id
        ]
        return self._listed(request, rows, "notes")

    async def _post_note(self, request: web.Request) -> web.Response:
        """`POST /service/tickets/{id}/notes`. The spec requires no field (every `ServiceNote` field is optional
        in tjone270/pyconnectwise-psa:docs/ServiceNote.md); `text` and at least one of the three flags are required
        here [U: ConnectWise refuses a note with neither in practice; not in the spec]."""
        ticket_id = self._record_id(request, self.tickets, "Ticket")
        body = await self._json_object(request, "note")
        text = self._text(body, "text", "note", required=True, limit=100_000)
        flags = {
            name: body.get(name, False) for name in ("detailDescriptionFlag", "internalAnalysisFlag", "resolutionFlag")
        }
        if not all(isinstance(flag, bool) for flag in flags.values()):
            raise _invalid("note", "detailDescriptionFlag", "The note flags must be true or false.")
        if not any(flags.values()):
            raise _invalid(
                "note",
                "detailDescriptionFlag",
                "At least one of detailDescriptionFlag, internalAnalysisFlag or resolutionFlag must be true.",
            )
        note_id = self._new_id()
        note = {"id": note_id, "ticketId": ticket_id, "text": text, **flags, "_info": self._info()}
        self.notes[note_id] = note
        self._maybe_drop(request)
        return web.json_response(note, status=201)

    # Opportunities and activities

    async def _list_opportunities(self, request: web.Request) -> web.Response:
        return self._listed(request, list(self.opportunities.values()), "opportunities")

    async def _list_opportunity_statuses(self, request: web.Request) -> web.Response:
        """`GET /sales/opportunities/statuses` (ai-connor/connectwise:build/docs/OpportunityStatusesAPI.md "Get List
        of OpportunityStatus"), filtered and paged like every list."""
        return self._listed(request, list(self.opportunity_statuses), "opportunityStatuses")

    async def _post_opportunity(self, request: web.Request) -> web.Response:
        """`POST /sales/opportunities`: `name`, `primarySalesRep`, `company` and `contact` are required
        (`NewOpportunity(name, primarySalesRep, company, contact)`, ai-connor/connectwise:model_opportunity.go);
        `name` at most 100 characters [U]; the contact must be of the company [U]."""
        body = await self._json_object(request, "opportunity")
        name = self._text(body, "name", "opportunity", required=True, limit=100)
        rep = self._find_member(body, "primarySalesRep", "opportunity", required=True)
        company = self._find_company(body, "opportunity", required=True)
        contact = self._find_contact(body, "opportunity", company, required=True)
        close = self._time(body, "expectedCloseDate", "opportunity", required=False)
        stage_ref = self._reference(body, "stage", "opportunity", required=False)
        stage = self.stages[min(self.stages)]
        if stage_ref is not None:
            stage = next((row for row in self.stages.values() if stage_ref.get("id") == row["id"]), {})
            if not stage:
                raise _invalid("opportunity", "stage", "Stage not found.", "InvalidObject")
        assert rep is not None
        assert company is not None
        assert contact is not None
        opportunity_id = self._new_id()
        opportunity = {
            "id": opportunity_id,
            "name": name,
            "primarySalesRep": self._member_ref(rep),
            "company": self._company_ref(company),
            "contact": {"id": contact["id"], "name": f"{contact['firstName']} {contact['lastName']}".strip()},
            "stage": {"id": stage["id"], "name": stage["name"]},
            "status": self._default_opportunity_status(),
            "notes": body.get("notes") if isinstance(body.get("notes"), str) else "",
            "expectedCloseDate": close or _cw_time(self.clock() + timedelta(days=30)),
            "_info": self._info(),
        }
        self.opportunities[opportunity_id] = opportunity
        self._maybe_drop(request)
        return web.json_response(opportunity, status=201)

    async def _list_activities(self, request: web.Request) -> web.Response:
        return self._listed(request, list(self.activities.values()), "activities")

    async def _post_activity(self, request: web.Request) -> web.Response:
        """`POST /sales/activities`: `name` (at most 100 characters) and `assignTo` are required
        (`NewActivity(name, assignTo)`, "Max length: 100", ai-connor/connectwise:model_activity.go); an
        `opportunity` reference must exist. With `activities_schedule_themselves`, a dated activity also lands on
        its assignee's schedule as a type-C entry [U: see the field]."""
        body = await self._json_object(request, "activity")
        name = self._text(body, "name", "activity", required=True, limit=100)
        assignee = self._find_member(body, "assignTo", "activity", required=True)
        company = self._find_company(body, "activity", required=False)
        contact = self._find_contact(body, "activity", company, required=False)
        starts = self._time(body, "dateStart", "activity", required=False)
        ends = self._time(body, "dateEnd", "activity", required=False)
        if starts and ends and ends <= starts:
            raise _invalid("activity", "dateEnd", "dateEnd must be after dateStart.")
        opportunity_ref = self._reference(body, "opportunity", "activity", required=False)
        if opportunity_ref is not None and opportunity_ref.get("id") not in self.opportunities:
            raise _invalid("activity", "opportunity", "Opportunity not found.", "InvalidObject")
        assert assignee is not None
        activity_id = self._new_id()
        activity: dict[str, Any] = {
            "id": activity_id,
            "name": name,
            "assignTo": self._member_ref(assignee),
            "notes": body.get("notes") if isinstance(body.get("notes"), str) else "",
            "status": {"id": 1, "name": "Open"},
            "_info": self._info(),
        }
        if company is not None:
            activity["company"] = self._company_ref(company)
        if contact is not None:
            activity["contact"] = {"id": contact["id"], "name": f"{contact['firstName']} {contact['lastName']}".strip()}
        if opportunity_ref is not None:
            opportunity = self.opportunities[opportunity_ref["id"]]
            activity["opportunity"] = {"id": opportunity["id"], "name": opportunity["name"]}
        if starts:
            activity["dateStart"] = starts
        if ends:
            activity["dateEnd"] = ends
        self.activities[activity_id] = activity
        if self.activities_schedule_themselves and starts and ends:
            entry_id = self._new_id()
            self.entries[entry_id] = {
                "id": entry_id,
                "objectId": activity_id,
                "name": name,
                "member": self._member_ref(assignee),
                "type": dict(_SCHEDULE_TYPES[1]),
                "dateStart": starts,
                "dateEnd": ends,
                "doneFlag": False,
                "allowScheduleConflictsFlag": True,
                "_info": self._info(),
            }
        self._maybe_drop(request)
        return web.json_response(activity, status=201)

    # Schedule entries

    async def _list_entries(self, request: web.Request) -> web.Response:
        return self._listed(request, list(self.entries.values()), "entries")

    async def _get_entry(self, request: web.Request) -> web.Response:
        return web.json_response(self.entries[self._record_id(request, self.entries, "ScheduleEntry")])

    def _check_conflict(self, entry: dict[str, Any]) -> None:
        """With allowScheduleConflictsFlag false, an overlapping entry of the same member is refused [U: the exact
        ConnectWise message]."""
        if entry.get("allowScheduleConflictsFlag"):
            return
        for other in self.entries.values():
            if (
                other["id"] != entry.get("id")
                and other["member"]["id"] == entry["member"]["id"]
                and other["dateStart"] < entry["dateEnd"]
                and entry["dateStart"] < other["dateEnd"]
            ):
                raise _invalid(
                    "scheduleEntry", "dateStart", f"Schedule conflict with entry {other['id']}.", "ScheduleConflict"
                )

    async def _post_entry(self, request: web.Request) -> web.Response:
        """`POST /schedule/entries`: `type` is required, a `ScheduleTypeReference` `{id, identifier}`
        (`NewScheduleEntry(type_)`, ai-connor/connectwise:model_schedule_entry.go); `name` at most 250 characters
        (same file). `objectId` names what is scheduled: a ticket for type S, an activity for type C (apis.md §1.2
        [U: the identifiers]). The spec leaves `objectId`, `member`, `dateStart` and `dateEnd` optional; they are
        required here because an entry without them schedules nothing on anyone's calendar [U]."""
        body = await self._json_object(request, "scheduleEntry")
        type_ref = self._reference(body, "type", "scheduleEntry", required=True)
        assert type_ref is not None
        schedule_type = next(
            (
                row
                for row in _SCHEDULE_TYPES
                if type_ref.get("id") == row["id"] or type_ref.get("identifier") == row["identifier"]
            ),
            None,
        )
        if schedule_type is None:
            raise _invalid("scheduleEntry", "type", "Schedule type not found.", "InvalidObject")
        member = self._find_member(body, "member", "scheduleEntry", required=True)
        object_id = body.get("objectId")
        if not isinstance(object_id, int) or isinstance(object_id, bool):
            raise _invalid("scheduleEntry", "objectId", "The objectId field is required.", "NullValue")
        targets = {"S": self.tickets, "C": self.activities}.get(str(schedule_type["identifier"]))
        if targets is None:
            raise _invalid("scheduleEntry", "type", "Project schedule entries are not supported by this fake.")
        if object_id not in targets:
            what = "Ticket" if schedule_type["identifier"] == "S" else "Activity"
            raise _invalid("scheduleEntry", "objectId", f"{what} {object_id} was not found.", "InvalidObject")
        starts = self._time(body, "dateStart", "scheduleEntry", required=True)
        ends = self._time(body, "dateEnd", "scheduleEntry", required=True)
        assert starts is not None
        assert ends is not None
        assert member is not None
        if ends <= starts:
            raise _invalid("scheduleEntry", "dateEnd", "dateEnd must be after dateStart.")
        name = self._text(body, "name", "scheduleEntry", required=False, limit=250)
        flag = body.get("allowScheduleConflictsFlag", False)
        if not isinstance(flag, bool):
            raise _invalid(
                "scheduleEntry", "allowScheduleConflictsFlag", "allowScheduleConflictsFlag must be true or false."
            )
        entry: dict[str, Any] = {
            "objectId": object_id,
            "name": name or (targets[object_id].get("summary") or targets[object_id].get("name") or ""),
            "member": self._member_ref(member),
            "type": dict(schedule_type),
            "dateStart": starts,
            "dateEnd": ends,
            "doneFlag": False,
            "allowScheduleConflictsFlag": flag,
        }
        self._check_conflict(entry)
        entry_id = self._new_id()
        entry = {"id": entry_id, **entry, "_info": self._info()}
        self.entries[entry_id] = entry
        self._maybe_drop(request)
        return web.json_response(entry, status=201)

    async def _patch_entry(self, request: web.Request) -> web.Response:
        entry_id = self._record_id(request, self.entries, "ScheduleEntry")
        changed = dict(self.entries[entry_id])
        for operation in await self._json_patch(request, "scheduleEntry"):
            path, value = operation["path"], operation.get("value")
            if path in ("dateStart", "dateEnd"):
                changed[path] = self._time({path: value}, path, "scheduleEntry", required=True)
            elif path == "name":
                changed["name"] = self._text({"name": value}, "name", "scheduleEntry", required=False, limit=250)
            elif path in ("doneFlag", "allowScheduleConflictsFlag") and isinstance(value, bool):
                changed[path] = value
            else:
                raise _invalid("scheduleEntry", path, f"{path} cannot be patched in this fake.")
        if changed["dateEnd"] <= changed["dateStart"]:
            raise _invalid("scheduleEntry", "dateEnd", "dateEnd must be after dateStart.")
        self._check_conflict(changed)
        changed["_info"] = {**changed["_info"], "lastUpdated": _cw_time(self.clock())}
        self.entries[entry_id] = changed
        return web.json_response(changed)

    async def _delete_entry(self, request: web.Request) -> web.Response:
        entry_id = self._record_id(request, self.entries, "ScheduleEntry")
        del self.entries[entry_id]
        return web.Response(status=204)


def build_app(fake: FakeConnectWiseServer | None = None) -> web.Application:
    """The fake as an aiohttp app (with demo credentials unless a configured fake is given)."""
    return (fake or FakeConnectWiseServer()).build_app()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local fake ConnectWise PSA for demos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--records-port", type=int, default=None, help="serve GET /records (JSON) there")
    args = parser.parse_args(argv)
    fake = FakeConnectWiseServer()
    fake.add_contact("Dana Client", "dana@client.example")
    site = str(URL.build(scheme="http", host=args.host, port=args.port))
    sys.stdout.write(
        "Fake ConnectWise PSA\n"
        f"  site_url:    {site}\n"
        f"  codebase:    {fake.codebase}  (API base {site}{fake.api_prefix})\n"
        f"  company_id:  {fake.company_id}\n"
        f"  public_key:  {fake.public_key}\n"
        f"  private_key: {fake.private_key}\n"
        f"  client_id:   {fake.client_id}\n"
        f"  member:      {DEMO_MEMBER}\n"
    )
    sys.stdout.flush()
    from tests.fakes.demo_inspector import run_app_with_records

    def describe() -> dict[str, list[dict[str, Any]]]:
        return {kind.value: fake.records(kind) for kind in PsaRecordKind}

    with suppress(KeyboardInterrupt):
        asyncio.run(run_app_with_records(fake.build_app(), args.host, args.port, describe, args.records_port))


if __name__ == "__main__":
    main()
