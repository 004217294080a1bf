"""FakeAutotaskServer: a stateful Autotask REST API on loopback HTTP, strict about headers, bodies, queries and limits.

It follows ../shared/reference/apis.md §2: public zone discovery, the ApiIntegrationCode/UserName/Secret headers,
`POST {Entity}/query` with filter JSON (operators and `or`/`and` grouping), `{"items", "pageDetails"}` pages with
`nextPageUrl`, creates answering 200 `{"itemId": n}`, child entities created through their parent URL, errors as
HTTP 500 `{"errors": [...]}`, at most 3 concurrent requests per object endpoint and 10,000 requests per rolling hour
per database (with an injectable clock).

Run it on its own for the demo: `python -m tests.fakes.autotask --port 8712`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import re
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from scheduling.model import PsaContact, PsaRecordKind

DEMO_USERNAME = "slotwise-api@acme-it.example"
DEMO_SECRET = "demo-autotask-secret"
DEMO_INTEGRATION_CODE = "DEMO-TRACKING-IDENTIFIER"
DEMO_RESOURCE_ID = 29682885
DEMO_ROLE_ID = 29683461
DEMO_QUEUE_ID = 29683481
DEMO_FALLBACK_COMPANY_ID = 500
"""The MSP's catch-all "Prospects" company, seeded in every fake, for contacts of first-time clients."""
API_PREFIX = "/ATServicesRest/V1.0/"
ZONE_PATH = "/atservicesrest/v1.0/zoneInformation"
NO_RECORD_MESSAGE = (
    "No message. No matching records found. The logged in Resource may not have the required permissions to "
    "delete the data."
)
OPERATORS = {
    "eq",
    "noteq",
    "gt",
    "gte",
    "lt",
    "lte",
    "beginsWith",
    "endsWith",
    "contains",
    "exist",
    "notExist",
    "in",
    "notIn",
}
GROUPS = {"and", "or"}
MAX_PAGE = 500
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_CONDITIONS = 500


@dataclass(frozen=True)
class EntitySpec:
    """What the fake knows of one Autotask entity: field types, required fields, picklists and references."""

    fields: dict[str, str]
    required: frozenset[str] = frozenset()
    picklists: dict[str, dict[int, str]] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)
    read_only: frozenset[str] = frozenset({"id"})
    creatable: bool = True
    updatable: bool = True
    deletable: bool = False
    parent: tuple[str, str, str] | None = None
    """(parent entity, child URL segment, parent id field) for child entities (apis.md §2.2 child access URLs)."""


_TICKET_STATUS = {1: "New", 5: "Complete", 7: "Waiting Customer", 8: "In Progress", 10: "Dispatched", 21: "Scheduled"}

SPECS: dict[str, EntitySpec] = {
    "Companies": EntitySpec(
        {"id": "integer", "companyName": "string", "companyType": "integer", "isActive": "boolean"}, creatable=False
    ),
    "Contacts": EntitySpec(
        {
            "id": "integer",
            "companyID": "integer",
            "firstName": "string",
            "lastName": "string",
            "emailAddress": "string",
            "emailAddress2": "string",
            "emailAddress3": "string",
            "isActive": "integer",
        },
        # Mandatory Contact fields per the ecitsolutions/Autotask module's New-AtwsContact (AccountID = companyID).
        required=frozenset({"companyID", "firstName", "lastName", "isActive"}),
        references={"companyID": "Companies"},
    ),
    "Resources": EntitySpec(
        {
            "id": "integer",
            "firstName": "string",
            "lastName": "string",
            "email": "string",
            "userName": "string",
            "isActive": "boolean",
        },
        creatable=False,
    ),
    "Tickets": EntitySpec(
        {
            "id": "integer",
            "ticketNumber": "string",
            "companyID": "integer",
            "contactID": "integer",
            "title": "string",
            "description": "string",
            "status": "integer",
            "priority": "integer",
            "queueID": "integer",
            "assignedResourceID": "integer",
            "assignedResourceRoleID": "integer",
            "createDate": "datetime",
        },
        required=frozenset({"companyID", "title", "status", "priority"}),
        picklists={
            "status": _TICKET_STATUS,
            "priority": {1: "High", 2: "Medium", 3: "Low", 4: "Critical"},
            "queueID": {DEMO_QUEUE_ID: "Service Desk", 29683482: "Sales", 29683483: "Projects"},
        },
        references={"companyID": "Companies", "contactID": "Contacts", "assignedResourceID": "Resources"},
        read_only=frozenset({"id", "ticketNumber", "createDate"}),
    ),
    "TicketNotes": EntitySpec(
        {
            "id": "integer",
            "ticketID": "integer",
            "title": "string",
            "description": "string",
            "noteType": "integer",
            "publish": "integer",
            "createDateTime": "datetime",
        },
        required=frozenset({"ticketID", "title", "description", "noteType", "publish"}),
        references={"ticketID": "Tickets"},
        read_only=frozenset({"id", "createDateTime"}),
        parent=("Tickets", "Notes", "ticketID"),
    ),
    "Opportunities": EntitySpec(
        {
            "id": "integer",
            "companyID": "integer",
            "contactID": "integer",
            "title": "string",
            "description": "string",
            "status": "integer",
            "stage": "integer",
            "ownerResourceID": "integer",
            "amount": "decimal",
            "cost": "decimal",
            "probability": "integer",
            "projectedCloseDate": "datetime",
            "useQuoteTotals": "boolean",
            "createDate": "datetime",
        },
        # The required list is apis.md §2.3's (marked [U] there); the fake enforces it so the adapter sends all of it.
        required=frozenset(
            {
                "companyID",
                "title",
                "status",
                "ownerResourceID",
                "amount",
                "cost",
                "probability",
                "projectedCloseDate",
                "useQuoteTotals",
            }
        ),
        picklists={
            "status": {0: "Inactive", 1: "Active", 2: "Lost", 3: "Closed", 4: "Implemented"},
            "stage": {1: "Qualifying", 2: "Discovery", 3: "Proposal", 4: "Negotiation"},
        },
        references={"companyID": "Companies", "contactID": "Contacts", "ownerResourceID": "Resources"},
        read_only=frozenset({"id", "createDate"}),
    ),
    "CompanyToDos": EntitySpec(
        {
            "id": "integer",
            "companyID": "integer",
            "contactID": "integer",
            "opportunityID": "integer",
            "ticketID": "integer",
            "actionType": "integer",
            "assignedToResourceID": "integer",
            "startDateTime": "datetime",
            "endDateTime": "datetime",
            "activityDescription": "string",
            "createDateTime": "datetime",
        },
        required=frozenset({"companyID", "actionType", "assignedToResourceID", "startDateTime", "endDateTime"}),
        references={
            "companyID": "Companies",
            "contactID": "Contacts",
            "opportunityID": "Opportunities",
            "ticketID": "Tickets",
            "assignedToResourceID": "Resources",
        },
        read_only=frozenset({"id", "createDateTime"}),
        parent=("Companies", "ToDos", "companyID"),
    ),
    "ServiceCalls": EntitySpec(
        {
            "id": "integer",
            "companyID": "integer",
            "startDateTime": "datetime",
            "endDateTime": "datetime",
            "status": "integer",
            "description": "string",
            "isComplete": "integer",
            "createDateTime": "datetime",
        },
        required=frozenset({"companyID", "startDateTime", "endDateTime", "status"}),
        picklists={"status": {1: "New", 2: "Complete", 3: "Cancelled"}},
        references={"companyID": "Companies"},
        read_only=frozenset({"id", "createDateTime"}),
        deletable=True,
    ),
    "ServiceCallTickets": EntitySpec(
        {"id": "integer", "serviceCallID": "integer", "ticketID": "integer"},
        required=frozenset({"serviceCallID", "ticketID"}),
        references={"serviceCallID": "ServiceCalls", "ticketID": "Tickets"},
        updatable=False,
        parent=("ServiceCalls", "Tickets", "serviceCallID"),
    ),
    "ServiceCallTicketResources": EntitySpec(
        {"id": "integer", "serviceCallTicketID": "integer", "resourceID": "integer", "roleID": "integer"},
        required=frozenset({"serviceCallTicketID", "resourceID", "roleID"}),
        references={"serviceCallTicketID": "ServiceCallTickets", "resourceID": "Resources"},
        updatable=False,
        parent=("ServiceCallTickets", "Resources", "serviceCallTicketID"),
    ),
}
CHILD_ROUTES = {(spec.parent[0], spec.parent[1]): name for name, spec in SPECS.items() if spec.parent}
KIND_ENTITY = {
    PsaRecordKind.TICKET: "Tickets",
    PsaRecordKind.OPPORTUNITY: "Opportunities",
    PsaRecordKind.ACTIVITY: "CompanyToDos",
    PsaRecordKind.SCHEDULE_ENTRY: "ServiceCalls",
    PsaRecordKind.NOTE: "TicketNotes",
}


Handler = Callable[[web.Request, Any], Awaitable[web.Response]]


class AutotaskError(Exception):
    """An answer in Autotask's error shape: `status` with {"errors": [message]} (apis.md §2.2)."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    entity: str | None
    status: int = 0


def _errors(status: int, *messages: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"errors": list(messages)}, status=status, headers=headers)


def _wire_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("not a string")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class FakeAutotaskServer:
    """One Autotask database with one API user, plus the zone look-up, served by `start()` on 127.0.0.1.

    Limits: `thread_limit` concurrent requests per object endpoint (ThreadLimiting.htm) and `hourly_limit`
    requests per rolling hour for the whole database (apis.md §2.4), measured on `clock`. `latency_seconds` makes
    each API request take that long, so concurrent callers really overlap.
    """

    def __init__(
        self,
        *,
        username: str = DEMO_USERNAME,
        secret: str = DEMO_SECRET,
        integration_code: str = DEMO_INTEGRATION_CODE,
        clock: Callable[[], datetime] | None = None,
        thread_limit: int = 3,
        hourly_limit: int = 10_000,
        latency_seconds: float = 0.0,
    ) -> None:
        self.username = username
        self.secret = secret
        self.integration_code = integration_code
        self.clock = clock or (lambda: datetime.now(UTC))
        self.thread_limit = thread_limit
        self.hourly_limit = hourly_limit
        self.latency_seconds = latency_seconds
        self.log: list[LoggedRequest] = []
        self.zone_log: list[LoggedRequest] = []
        self.zone_url: str | None = None
        """When set, zone discovery answers this URL (a database that moved zones) instead of this server's."""
        self.in_flight: dict[str, int] = {}
        self.peak_in_flight: dict[str, int] = {}
        self.limit_errors: list[str] = []
        """One line per request refused by the thread or hourly limit."""
        self.tables: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in SPECS}
        self._ids = itertools.count(1001)
        self._ticket_sequence = itertools.count(1)
        self._request_times: deque[float] = deque()
        self._faults: list[tuple[int, int | None, str]] = []
        self._lose_next = False
        self.responses_lost = 0
        """How many committed creates had their answer dropped by lose_next_response."""
        self._pages: dict[str, tuple[str, list[dict[str, Any]], int, int]] = {}
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.app = build_app(self)
        self.tables["Companies"][0] = {"id": 0, "companyName": "Acme IT (owner)", "companyType": 5, "isActive": True}
        self.tables["Companies"][DEMO_FALLBACK_COMPANY_ID] = {
            "id": DEMO_FALLBACK_COMPANY_ID,
            "companyName": "Prospects (catch-all)",
            "companyType": 2,
            "isActive": True,
        }
        self.tables["Resources"][DEMO_RESOURCE_ID] = {
            "id": DEMO_RESOURCE_ID,
            "firstName": "Tess",
            "lastName": "Tech",
            "email": "tess@acme-it.example",
            "userName": "ttech",
            "isActive": True,
        }

    @property
    def zone_lookup_url(self) -> str:
        return f"{self.base_url}/atservicesrest/"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def records(self, kind: PsaRecordKind) -> list[dict[str, Any]]:
        """Stored records of that kind, as `GET {Entity}/{id}` returns them.

        Autotask returns picklist fields as integer ids only; so that a test can read a status by name, each
        record here also carries `picklistLabels` ({"status": "Scheduled"}), which no HTTP answer contains.
        """
        entity = KIND_ENTITY[kind]
        spec = SPECS[entity]
        out = []
        for record in sorted(self.tables[entity].values(), key=lambda item: item["id"]):
            copy = dict(record)
            labels = {name: spec.picklists[name].get(record[name], "") for name in spec.picklists if name in record}
            if labels:
                copy["picklistLabels"] = labels
            out.append(copy)
        return out

    def fail_next(self, status: int, *, retry_after: int | None = None, message: str = "", count: int = 1) -> None:
        self._faults.extend([(status, retry_after, message)] * count)

    def lose_next_response(self) -> None:
        self._lose_next = True

    def revoke_credentials(self) -> None:
        self.secret = f"revoked-{uuid.uuid4().hex}"

    def spend_quota(self, requests: int) -> None:
        """Other integrations on this database used `requests` calls just now (the hourly quota is shared)."""
        now = self.clock().timestamp()
        self._request_times.extend([now] * requests)

    def add_contact(self, name: str, email: str) -> PsaContact:
        for contact in self.tables["Contacts"].values():
            if str(contact.get("emailAddress", "")).casefold() == email.casefold():
                return self._as_contact(contact)
        domain = email.rpartition("@")[2]
        company = next(
            (row for row in self.tables["Companies"].values() if row.get("companyName") == domain),
            None,
        )
        if company is None:
            company = {"id": next(self._ids), "companyName": domain, "companyType": 1, "isActive": True}
            self.tables["Companies"][company["id"]] = company
        first, _, last = name.partition(" ")
        contact = {
            "id": next(self._ids),
            "companyID": company["id"],
            "firstName": first,
            "lastName": last,
            "emailAddress": email,
            "emailAddress2": None,
            "emailAddress3": None,
            "isActive": 1,
        }
        self.tables["Contacts"][contact["id"]] = contact
        return self._as_contact(contact)

    def contacts_with_email(self, email: str) -> list[PsaContact]:
        """Every contact holding this address in any of its three email fields (any case)."""
        wanted = email.casefold()
        return [
            self._as_contact(contact)
            for contact in sorted(self.tables["Contacts"].values(), key=lambda row: row["id"])
            if any(
                str(contact.get(name) or "").casefold() == wanted
                for name in ("emailAddress", "emailAddress2", "emailAddress3")
            )
        ]

    def contact_linked_to(self, kind: PsaRecordKind, record_id: str) -> str | None:
        """The contactID of a ticket, opportunity or To-Do, or None."""
        contact_id = self.tables[KIND_ENTITY[kind]][int(record_id)].get("contactID")
        return None if contact_id is None else str(contact_id)

    def add_resource(self, first_name: str, last_name: str, email: str) -> int:
        resource_id = next(self._ids)
        self.tables["Resources"][resource_id] = {
            "id": resource_id,
            "firstName": first_name,
            "lastName": last_name,
            "email": email,
            "userName": email.partition("@")[0],
            "isActive": True,
        }
        return resource_id

    def add_busy(self, member: str, starts_at: Any, ends_at: Any) -> None:
        """A service call on a ticket with the member assigned, the way a dispatcher would book it in Autotask."""
        call = self._insert(
            "ServiceCalls",
            {
                "companyID": 0,
                "startDateTime": _wire_time(starts_at),
                "endDateTime": _wire_time(ends_at),
                "status": 1,
                "description": "Dispatched by the service desk",
            },
        )
        ticket = self._insert(
            "Tickets", {"companyID": 0, "title": "Onsite visit", "status": 10, "priority": 2, "queueID": DEMO_QUEUE_ID}
        )
        link = self._insert("ServiceCallTickets", {"serviceCallID": call["id"], "ticketID": ticket["id"]})
        self._insert(
            "ServiceCallTicketResources",
            {"serviceCallTicketID": link["id"], "resourceID": int(member), "roleID": DEMO_ROLE_ID},
        )

    @staticmethod
    def _as_contact(contact: dict[str, Any]) -> PsaContact:
        name = " ".join(part for part in (contact["firstName"], contact["lastName"]) if part)
        return PsaContact(str(contact["id"]), str(contact["companyID"]), name, contact["emailAddress"])

    def _insert(self, entity: str, values: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        record: dict[str, Any] = dict.fromkeys(SPECS[entity].fields)
        record.update(values)
        record["id"] = next(self._ids)
        if entity == "Tickets":
            record["ticketNumber"] = f"T{now:%Y%m%d}.{next(self._ticket_sequence):04d}"
            record["createDate"] = _wire_time(now)
        for stamp in ("createDateTime", "createDate"):
            if stamp in record and record[stamp] is None:
                record[stamp] = _wire_time(now)
        self.tables[entity][record["id"]] = record
        return record

    def _check_hourly_quota(self) -> float | None:
        """Seconds until a slot frees up when the rolling hour is spent, else None (and the request is counted)."""
        now = self.clock().timestamp()
        while self._request_times and self._request_times[0] <= now - 3600:
            self._request_times.popleft()
        if len(self._request_times) >= self.hourly_limit:
            return max(1.0, math.ceil(self._request_times[0] + 3600 - now))
        self._request_times.append(now)
        return None

    def _validate_values(self, entity: str, body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        spec = SPECS[entity]
        values: dict[str, Any] = {}
        lowered = {name.lower(): name for name in spec.fields}
        for key, value in body.items():
            name = lowered.get(key.lower())
            if name is None:
                # Real Autotask ignores unknown properties; the fake refuses them so a misspelt field cannot slip by.
                raise AutotaskError(f"Unknown field '{key}' on {entity}.")
            if name in spec.read_only:
                continue
            if value is None:
                values[name] = None
                continue
            kind = spec.fields[name]
            ok = {
                "integer": isinstance(value, int) and not isinstance(value, bool),
                "string": isinstance(value, str),
                "decimal": isinstance(value, int | float) and not isinstance(value, bool),
                # apis.md §2.2: booleans must be true/false, not 0/1 or strings.
                "boolean": isinstance(value, bool),
                "datetime": isinstance(value, str),
            }[kind]
            if ok and kind == "datetime":
                try:
                    value = _wire_time(_parse_time(value))
                except ValueError:
                    ok = False
            if not ok:
                raise AutotaskError(f"Value '{value}' is not a valid {kind} for field {name} on {entity}.")
            if name in spec.picklists and value not in spec.picklists[name]:
                raise AutotaskError(f"Value '{value}' is not a valid picklist value for field {name} on {entity}.")
            target = spec.references.get(name)
            if target and value not in self.tables[target]:
                raise AutotaskError(f"Reference value on field {name} of type {target} does not exist: {value}.")
            values[name] = value
        if creating:
            missing = sorted(name for name in spec.required if values.get(name) in (None, ""))
            if missing:
                raise AutotaskError(f"Missing required field(s) on {entity}: {', '.join(missing)}.")
        return values

    def _check_rules(self, entity: str, record: dict[str, Any]) -> None:
        """Cross-field rules Autotask documents for the booking entities (apis.md §2.3)."""
        if (
            entity == "Tickets"
            and record.get("queueID") is None
            and not (record.get("assignedResourceID") and record.get("assignedResourceRoleID"))
        ):
            raise AutotaskError("A ticket needs a queueID or an assignedResourceID with an assignedResourceRoleID.")
        if entity in ("CompanyToDos", "ServiceCalls") and _parse_time(record["endDateTime"]) <= _parse_time(
            record["startDateTime"]
        ):
            raise AutotaskError(f"{entity}: endDateTime must be after startDateTime.")
        if entity == "CompanyToDos":
            # CompanyToDosEntity.htm: contact, opportunity and ticket must belong to the To-Do's company.
            for name, table in (("contactID", "Contacts"), ("opportunityID", "Opportunities"), ("ticketID", "Tickets")):
                if (
                    record.get(name) is not None
                    and self.tables[table][record[name]]["companyID"] != record["companyID"]
                ):
                    raise AutotaskError(f"The {name} must belong to the same company as the To-Do.")
        if entity == "Contacts":
            if record.get("isActive") not in (0, 1):
                raise AutotaskError("Contacts isActive must be 0 or 1.")
            for name in ("emailAddress", "emailAddress2", "emailAddress3"):
                value = record.get(name)
                if value not in (None, "") and not _EMAIL.match(str(value)):
                    raise AutotaskError(f"The value '{value}' of {name} is not a valid email address.")
        contact_id = record.get("contactID")
        contact = self.tables["Contacts"].get(contact_id) if contact_id is not None else None
        if entity == "Tickets" and contact is not None and contact["companyID"] != record["companyID"]:
            raise AutotaskError("The contactID must belong to the ticket's company.")

    def _validate_condition(self, entity: str, item: Any) -> int:
        """Raises AutotaskError for a malformed condition; returns how many leaf conditions it holds."""
        if not isinstance(item, dict) or "op" not in item:
            raise AutotaskError("Each filter item needs an 'op'.")
        op = item["op"]
        if op in GROUPS:
            items = item.get("items")
            if not isinstance(items, list) or not items:
                raise AutotaskError(f"A '{op}' grouping needs a non-empty 'items' array.")
            return sum(self._validate_condition(entity, child) for child in items)
        if op not in OPERATORS:
            raise AutotaskError(f"Unsupported operator '{op}'.")
        name = str(item.get("field", ""))
        if name.lower() not in {field_name.lower() for field_name in SPECS[entity].fields}:
            raise AutotaskError(f"Unable to find field '{name}' in the {entity} entity.")
        if op in ("exist", "notExist"):
            return 1
        if "value" not in item:
            raise AutotaskError(f"The '{op}' condition on {name} needs a value.")
        if op in ("in", "notIn") and not isinstance(item["value"], list):
            raise AutotaskError(f"The '{op}' condition on {name} needs an array value.")
        return len(item["value"]) if op in ("in", "notIn") else 1

    def _matches(self, entity: str, record: dict[str, Any], item: dict[str, Any]) -> bool:
        op = item["op"]
        if op in GROUPS:
            results = (self._matches(entity, record, child) for child in item["items"])
            return any(results) if op == "or" else all(results)
        spec = SPECS[entity]
        name = next(field_name for field_name in spec.fields if field_name.lower() == str(item["field"]).lower())
        kind = spec.fields[name]
        actual = record.get(name)
        if op == "exist":
            return actual not in (None, "")
        if op == "notExist":
            return actual in (None, "")
        if actual is None:
            return op in ("noteq", "notIn")

        def typed(value: Any) -> Any:
            if kind == "datetime":
                return _parse_time(value)
            if kind in ("integer", "decimal"):
                return float(value)
            if kind == "boolean":
                return value in (True, "true", "True", 1, "1")
            # SQL Server's default collation: text comparisons ignore case.
            return str(value).casefold()

        try:
            left = typed(actual)
            if op in ("in", "notIn"):
                contained = left in [typed(value) for value in item["value"]]
                return contained if op == "in" else not contained
            right = typed(item["value"])
        except (TypeError, ValueError) as exc:
            raise AutotaskError(f"Value '{item.get('value')}' cannot be compared with field {name}.") from exc
        comparisons: dict[str, Callable[[], bool]] = {
            "eq": lambda: bool(left == right),
            "noteq": lambda: bool(left != right),
            "gt": lambda: bool(left > right),
            "gte": lambda: bool(left >= right),
            "lt": lambda: bool(left < right),
            "lte": lambda: bool(left <= right),
            "beginsWith": lambda: str(left).startswith(str(right)),
            "endsWith": lambda: str(left).endswith(str(right)),
            "contains": lambda: str(right) in str(left),
        }
        return comparisons[op]()

    def _page(
        self, request: web.Request, entity: str, matches: list[dict[str, Any]], offset: int, size: int
    ) -> web.Response:
        items = matches[offset : offset + size]
        next_url = None
        if offset + size < len(matches):
            token = uuid.uuid4().hex
            self._pages[token] = (entity, matches, offset + size, size)
            next_url = f"{request.scheme}://{request.host}{API_PREFIX}{entity}/query/next?paging={token}"
        return web.json_response(
            {
                "items": items,
                "pageDetails": {
                    "count": len(items),
                    "requestCount": size,
                    "prevPageUrl": None,
                    "nextPageUrl": next_url,
                },
            }
        )

    async def _query(self, request: web.Request, entity: str, body: Any) -> web.Response:
        if not isinstance(body, dict) or not isinstance(body.get("filter"), list) or not body["filter"]:
            # Autotask wants at least one condition; "all records" is {"op": "exist", "field": "id"}.
            raise AutotaskError("The query needs a 'filter' array with at least one condition.")
        leaves = sum(self._validate_condition(entity, item) for item in body["filter"])
        if leaves > MAX_CONDITIONS:
            raise AutotaskError(f"A query may hold at most {MAX_CONDITIONS} conditions; it held {leaves}.")
        size = body.get("MaxRecords", MAX_PAGE)
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_PAGE:
            raise AutotaskError(f"MaxRecords must be between 1 and {MAX_PAGE}.")
        include = body.get("IncludeFields")
        matches = [
            dict(record)
            for record in sorted(self.tables[entity].values(), key=lambda row: row["id"])
            if all(self._matches(entity, record, item) for item in body["filter"])
        ]
        if include:
            wanted = {str(name).lower() for name in include} | {"id"}
            matches = [{key: value for key, value in row.items() if key.lower() in wanted} for row in matches]
        return self._page(request, entity, matches, 0, size)

    async def _create(self, request: web.Request, entity: str, body: Any, parent_id: int | None) -> web.Response:
        spec = SPECS[entity]
        if not isinstance(body, dict):
            raise AutotaskError(f"The {entity} body must be one JSON object.")
        if spec.parent is not None:
            parent_entity, _, parent_field = spec.parent
            if parent_id not in self.tables[parent_entity]:
                raise AutotaskError(f"The parent {parent_entity} {parent_id} does not exist.")
            given = body.get(parent_field)
            if given is not None and given != parent_id:
                raise AutotaskError(f"{parent_field} {given} does not match the parent id {parent_id} in the URL.")
            body = {**body, parent_field: parent_id}
        values = self._validate_values(entity, body, creating=True)
        self._check_rules(entity, dict.fromkeys(spec.fields) | values)
        record = self._insert(entity, values)
        if self._lose_next:
            # Committed, but the caller never hears back: the connection drops before any byte of the answer.
            self._lose_next = False
            self.responses_lost += 1
            if request.transport is not None:
                request.transport.close()
        return web.json_response({"itemId": record["id"]})

    async def _update(self, entity: str, body: Any) -> web.Response:
        spec = SPECS[entity]
        if not spec.updatable:
            raise AutotaskError(f"{entity} cannot be updated.", status=405)
        if not isinstance(body, dict) or not isinstance(body.get("id"), int):
            raise AutotaskError("A PATCH body needs the id of the record to update.")
        current = self.tables[entity].get(body["id"])
        if current is None:
            raise AutotaskError(NO_RECORD_MESSAGE)
        changes = self._validate_values(
            entity, {key: value for key, value in body.items() if key != "id"}, creating=False
        )
        merged = current | changes
        self._check_rules(entity, merged)
        current.update(changes)
        return web.json_response({"itemId": current["id"]})

    async def _delete(self, entity: str, record_id: int) -> web.Response:
        if not SPECS[entity].deletable:
            raise AutotaskError(f"{entity} cannot be deleted.", status=405)
        if record_id not in self.tables[entity]:
            raise AutotaskError(NO_RECORD_MESSAGE)
        del self.tables[entity][record_id]
        if entity == "ServiceCalls":
            links = [
                row["id"] for row in self.tables["ServiceCallTickets"].values() if row["serviceCallID"] == record_id
            ]
            for link in links:
                del self.tables["ServiceCallTickets"][link]
                for resource in [
                    row["id"]
                    for row in self.tables["ServiceCallTicketResources"].values()
                    if row["serviceCallTicketID"] == link
                ]:
                    del self.tables["ServiceCallTicketResources"][resource]
        return web.json_response({"itemId": record_id})

    def _fields_info(self, entity: str) -> web.Response:
        spec = SPECS[entity]
        fields = []
        for name, kind in spec.fields.items():
            picklist = spec.picklists.get(name, {})
            fields.append(
                {
                    "name": name,
                    "dataType": {"datetime": "dateTime", "decimal": "decimal"}.get(kind, kind),
                    "length": 0,
                    "isRequired": name in spec.required,
                    "isReadOnly": name in spec.read_only,
                    "isQueryable": True,
                    "isReference": name in spec.references,
                    "referenceEntityType": spec.references.get(name, ""),
                    "isPickList": bool(picklist),
                    "picklistValues": [
                        {
                            "value": str(value),
                            "label": label,
                            "isDefaultValue": index == 0,
                            "sortOrder": index,
                            "parentValue": "",
                            "isActive": True,
                            "isSystem": True,
                        }
                        for index, (value, label) in enumerate(picklist.items())
                    ]
                    or None,
                    "picklistParentValueField": "",
                    "isSupportedWebhookField": False,
                }
            )
        return web.json_response({"fields": fields})

    def resolve_route(self, method: str, tail: str) -> tuple[str, Handler]:
        """(entity, handler) for a path below /ATServicesRest/V1.0/; the entity is what the thread limit counts."""
        parts = [part for part in tail.split("/") if part]

        def entity_named(name: str) -> str:
            for known in SPECS:
                if known.lower() == name.lower():
                    return known
            raise AutotaskError(f"No such entity: {name}.", status=404)

        if not parts:
            raise AutotaskError("No entity in the path.", status=404)
        entity = entity_named(parts[0])
        rest = parts[1:]
        if method == "POST" and rest == ["query"]:
            return entity, lambda request, body: self._query(request, entity, body)
        if method == "GET" and rest == ["query", "next"]:
            return entity, lambda request, body: self._next_page(request, entity)
        if method == "GET" and [part.lower() for part in rest] == ["entityinformation", "fields"]:
            return entity, lambda request, body: self._fields_async(entity)
        if method == "POST" and not rest:
            if SPECS[entity].parent is not None:
                parent = SPECS[entity].parent
                assert parent is not None
                raise AutotaskError(
                    f"{entity} are created through their parent: POST {parent[0]}/{{id}}/{parent[1]}.", status=405
                )
            if not SPECS[entity].creatable:
                raise AutotaskError(f"{entity} cannot be created through the API.", status=405)
            return entity, lambda request, body: self._create(request, entity, body, None)
        if method == "PATCH" and not rest:
            return entity, lambda request, body: self._update(entity, body)
        if len(rest) == 1 and rest[0].isdigit():
            record_id = int(rest[0])
            if method == "GET":
                return entity, lambda request, body: self._get_async(entity, record_id)
            if method == "DELETE":
                return entity, lambda request, body: self._delete(entity, record_id)
        if method == "POST" and len(rest) == 2 and rest[0].isdigit():
            child = next(
                (
                    name
                    for (parent, segment), name in CHILD_ROUTES.items()
                    if parent == entity and segment.lower() == rest[1].lower()
                ),
                None,
            )
            if child is None:
                raise AutotaskError(f"{entity} has no child {rest[1]}.", status=404)
            parent_id = int(rest[0])
            return child, lambda request, body: self._create(request, child, body, parent_id)
        raise AutotaskError(f"No route for {method} {tail}.", status=404)

    async def _fields_async(self, entity: str) -> web.Response:
        return self._fields_info(entity)

    async def _get_async(self, entity: str, record_id: int) -> web.Response:
        record = self.tables[entity].get(record_id)
        return web.json_response({"item": dict(record) if record else None})

    async def _next_page(self, request: web.Request, entity: str) -> web.Response:
        saved = self._pages.pop(request.query.get("paging", ""), None)
        if saved is None or saved[0] != entity:
            raise AutotaskError("The paging token is unknown or expired.")
        _, matches, offset, size = saved
        return self._page(request, entity, matches, offset, size)

    async def handle_zone(self, request: web.Request) -> web.Response:
        self.zone_log.append(
            LoggedRequest(request.method, request.path, dict(request.query), dict(request.headers), None, None)
        )
        user = request.query.get("user", "")
        if user.casefold() != self.username.casefold():
            # "AT returns 500 if username is blank or incorrect" (django-autotask api.py get_zone_info).
            return _errors(500, f"Zone information could not be determined for user '{user}'.")
        zone = self.zone_url or f"{request.scheme}://{request.host}/ATServicesRest/"
        return web.json_response({"url": zone, "dataBaseType": "Production", "ciLevel": 1, "webUrl": zone, "ci": 1})

    async def handle_api(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        logged = LoggedRequest(request.method, request.path, dict(request.query), dict(request.headers), None, None)
        self.log.append(logged)
        try:
            logged.body = json.loads(raw) if raw else None
        except ValueError:
            logged.status = 400
            return _errors(400, "The request body is not valid JSON.")
        response = await self._answer(request, logged)
        logged.status = response.status
        return response

    async def _answer(self, request: web.Request, logged: LoggedRequest) -> web.StreamResponse:
        headers = request.headers
        if not (
            headers.get("ApiIntegrationCode") == self.integration_code
            and headers.get("UserName", "").casefold() == self.username.casefold()
            and headers.get("Secret") == self.secret
        ):
            # Autotask answers bad or missing credentials with a bare 401; clients go by the status alone
            # (django-autotask api.py fetch_resource), so the fake sends no body either.
            return web.Response(status=401)
        if self._faults:
            status, retry_after, message = self._faults.pop(0)
            extra = {"Retry-After": str(retry_after)} if retry_after is not None else None
            if message or status == 429:
                return _errors(status, message or "Too many requests.", headers=extra)
            return web.Response(status=status, text="Service Unavailable", headers=extra)
        try:
            entity, handler = self.resolve_route(request.method, request.match_info["tail"])
        except AutotaskError as exc:
            return _errors(exc.status, str(exc))
        logged.entity = entity
        wait = self._check_hourly_quota()
        if wait is not None:
            self.limit_errors.append(f"hourly {entity}")
            # apis.md §2.4: at 100% of the 10,000/hour quota Autotask returns errors and suspends access; the fake
            # answers 429 with Autotask's error body and a Retry-After for when the oldest request leaves the hour.
            return _errors(
                429,
                f"Request threshold exceeded: {self.hourly_limit} requests per rolling hour for this database.",
                headers={"Retry-After": str(int(wait))},
            )
        if "application/json" not in headers.get("Content-Type", ""):
            # apis.md §2.1: every call but the zone look-up carries Content-Type: application/json, GETs included.
            return _errors(415, "Content-Type must be application/json.")
        running = self.in_flight.get(entity, 0)
        if running >= self.thread_limit:
            self.limit_errors.append(f"threads {entity}")
            # apis.md §2.4 (ThreadLimiting.htm) documents the limit, 3 concurrent threads per object endpoint per
            # tracking identifier, but not the exact refusal; the fake answers 429 with Autotask's {"errors": [...]}.
            return _errors(
                429,
                f"Thread threshold exceeded: at most {self.thread_limit} concurrent requests to {entity}.",
                headers={"Retry-After": "1"},
            )
        self.in_flight[entity] = running + 1
        self.peak_in_flight[entity] = max(self.peak_in_flight.get(entity, 0), running + 1)
        try:
            if self.latency_seconds:
                await asyncio.sleep(self.latency_seconds)
            try:
                response: web.StreamResponse = await handler(request, logged.body)
            except AutotaskError as exc:
                response = _errors(exc.status, str(exc))
            return response
        finally:
            self.in_flight[entity] -= 1


def build_app(server: FakeAutotaskServer | None = None) -> web.Application:
    """The fake's aiohttp application; builds a fresh demo database when no server is given."""
    if server is None:
        return FakeAutotaskServer().app
    app = web.Application()
    app.router.add_get(ZONE_PATH, server.handle_zone)
    app.router.add_route("*", API_PREFIX + "{tail:.*}", server.handle_api)
    return app


@asynccontextmanager
async def running_autotask_server(**options: Any) -> AsyncIterator[FakeAutotaskServer]:
    server = FakeAutotaskServer(**options)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def _serve(host: str, port: int) -> None:
    server = FakeAutotaskServer()
    await server.start(host, port)
    print(f"Fake Autotask on {server.base_url}")  # noqa: T201
    print(f"  zone_lookup_url     {server.zone_lookup_url}")  # noqa: T201
    print(f"  username            {server.username}")  # noqa: T201
    print(f"  secret              {server.secret}")  # noqa: T201
    print(f"  integration_code    {server.integration_code}")  # noqa: T201
    print(f"  resource (member)   {DEMO_RESOURCE_ID}  role {DEMO_ROLE_ID}  queue {DEMO_QUEUE_ID}")  # noqa: T201
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake Autotask REST API with demo credentials.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8712)
    arguments = parser.parse_args()
    with suppress(KeyboardInterrupt):
        asyncio.run(_serve(arguments.host, arguments.port))


if __name__ == "__main__":
    main()
