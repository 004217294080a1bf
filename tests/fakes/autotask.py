"""FakeAutotaskServer: a stateful Autotask REST API on loopback HTTP, strict about headers, bodies, queries and limits.

Its rules come from Autotask's documents, not from our adapter; each carries the page it comes from (SPECS and the
comments below; the table in integrations/autotask/SOURCES.md): public zone discovery, the ApiIntegrationCode/
UserName/Secret headers, `POST {Entity}/query` with filter JSON (operators and `or`/`and` grouping),
`{"items", "pageDetails"}` pages with `nextPageUrl`, creates answering 200 `{"itemId": n}`, child entities created
only through their parent URL, field metadata (`isRequired`, picklists with `isDefaultValue`) enforced on create,
errors as HTTP 500 `{"errors": [...]}`, at most 3 concurrent requests per object endpoint and 10,000 requests per
rolling hour per database (with an injectable clock).

Readings: where the documents leave a behaviour open, the default reading is the plain one and `use_reading(name)`
switches to a stricter one the adapter must also survive: "like" runs `contains`/`beginsWith`/`endsWith` as SQL
Server LIKE (Autotask does not say how they match or how to escape).

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


_DOCS = "https://www.autotask.net/help/developerhelp/Content/APIs/REST/"
ENTITY_DOCS = _DOCS + "Entities/"
CHILD_URLS_DOC = _DOCS + "API_Calls/REST_Resource_Child_Access_URLs.htm"
"""Child entities: "you must perform all Create, Update, and Delete actions on the parent entity"."""
QUERY_DOC = _DOCS + "API_Calls/REST_Basic_Query_Calls.htm"
CREATE_DOC = _DOCS + "API_Calls/REST_Creating_Resources_POST.htm"
SWAGGER = "panoramicdata/AutoTask.Psa.Api:swagger.v1.json (Interfaces/*.cs and Data/*Model.cs generated from it)"


@dataclass(frozen=True)
class EntitySpec:
    """What the stand-in knows of one Autotask entity: field types, required fields, picklists and references.

    `required` is what `{Entity}/entityInformation/fields` serves as `isRequired` and what a create is checked
    against, so the adapter can learn the same list the way apis.md §2.2 tells it to. `source` is the entity page.
    """

    source: str
    fields: dict[str, str]
    required: frozenset[str] = frozenset()
    picklists: dict[str, dict[int, str]] = field(default_factory=dict)
    defaults: dict[str, int] = field(default_factory=dict)
    """Picklist value marked `isDefaultValue` per picklist field (a tenant may have none)."""
    references: dict[str, str] = field(default_factory=dict)
    read_only: frozenset[str] = frozenset({"id"})
    creatable: bool = True
    updatable: bool = True
    deletable: bool = False
    parent: tuple[str, str, str] | None = None
    """(parent entity, child URL segment, parent id field): created only through `POST {Parent}/{id}/{segment}`."""


_TICKET_STATUS = {1: "New", 5: "Complete", 7: "Waiting Customer", 8: "In Progress", 10: "Dispatched", 21: "Scheduled"}
_OPPORTUNITY_STAGES = {1: "Qualifying", 2: "Discovery", 3: "Proposal", 4: "Negotiation"}

SPECS: dict[str, EntitySpec] = {
    # CompaniesEntity.htm. Creating companies is documented but not modelled here (the adapter never does it).
    "Companies": EntitySpec(
        ENTITY_DOCS + "CompaniesEntity.htm",
        {"id": "integer", "companyName": "string", "companyType": "integer", "isActive": "boolean"},
        creatable=False,
    ),
    # ContactsEntity.htm; swagger: Contacts offers query and get only, create is CompanyContactsChild_CreateEntity at
    # `POST Companies/{parentId}/Contacts`. Required: companyID, firstName, lastName, isActive [U: the page marks
    # them with images; the list is ecitsolutions/Autotask's New-AtwsContact mandatory parameters]. isActive is an
    # integer on Contacts, unlike most entities.
    "Contacts": EntitySpec(
        ENTITY_DOCS + "ContactsEntity.htm",
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
        required=frozenset({"companyID", "firstName", "lastName", "isActive"}),
        references={"companyID": "Companies"},
        parent=("Companies", "Contacts", "companyID"),
    ),
    # ResourcesEntity.htm: Can Create false.
    "Resources": EntitySpec(
        ENTITY_DOCS + "ResourcesEntity.htm",
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
    # TicketsEntity.htm: root create; a Resource + Role pair on a ticket must belong to a queue. Required list [U].
    "Tickets": EntitySpec(
        ENTITY_DOCS + "TicketsEntity.htm",
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
        defaults={"status": 1, "priority": 2},
        references={"companyID": "Companies", "contactID": "Contacts", "assignedResourceID": "Resources"},
        read_only=frozenset({"id", "ticketNumber", "createDate"}),
    ),
    # TicketNotesEntity.htm; swagger: created only at `POST Tickets/{parentId}/Notes`.
    "TicketNotes": EntitySpec(
        ENTITY_DOCS + "TicketNotesEntity.htm",
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
    # TicketSecondaryResourcesEntity.htm; swagger: TicketSecondaryResourceModel = id, resourceID, roleID, ticketID,
    # created at `POST Tickets/{parentId}/SecondaryResources` (child has POST and DELETE, no PATCH).
    "TicketSecondaryResources": EntitySpec(
        ENTITY_DOCS + "TicketSecondaryResourcesEntity.htm",
        {"id": "integer", "ticketID": "integer", "resourceID": "integer", "roleID": "integer"},
        required=frozenset({"ticketID", "resourceID", "roleID"}),
        references={"ticketID": "Tickets", "resourceID": "Resources"},
        updatable=False,
        parent=("Tickets", "SecondaryResources", "ticketID"),
    ),
    # OpportunitiesEntity.htm: root create. Stage is required (field metadata); a tenant's stage picklist may or may
    # not mark a default. The rest of the required list is apis.md §2.3's [U].
    "Opportunities": EntitySpec(
        ENTITY_DOCS + "OpportunitiesEntity.htm",
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
        required=frozenset(
            {
                "companyID",
                "title",
                "status",
                "stage",
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
            "stage": _OPPORTUNITY_STAGES,
        },
        defaults={"status": 1, "stage": 1},
        references={"companyID": "Companies", "contactID": "Contacts", "ownerResourceID": "Resources"},
        read_only=frozenset({"id", "createDate"}),
    ),
    # CompanyToDosEntity.htm; swagger: created only at `POST Companies/{parentId}/ToDos`.
    "CompanyToDos": EntitySpec(
        ENTITY_DOCS + "CompanyToDosEntity.htm",
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
    # AppointmentsEntity.htm: "scheduled time that is not a service call"; entity path /atservicesrest/v1.0/Appointments
    # with create, update, query and delete (swagger: POST, PATCH, DELETE Appointments/{id} at the root). Required:
    # resourceID, startDateTime, endDateTime, title [U: the page marks them with images].
    "Appointments": EntitySpec(
        ENTITY_DOCS + "AppointmentsEntity.htm",
        {
            "id": "integer",
            "resourceID": "integer",
            "startDateTime": "datetime",
            "endDateTime": "datetime",
            "title": "string",
            "description": "string",
            "creatorResourceID": "integer",
            "createDateTime": "datetime",
            "updateDateTime": "datetime",
        },
        required=frozenset({"resourceID", "startDateTime", "endDateTime", "title"}),
        references={"resourceID": "Resources"},
        read_only=frozenset({"id", "creatorResourceID", "createDateTime", "updateDateTime"}),
        deletable=True,
    ),
    # ServiceCallsEntity.htm: root create, update, delete. Required list apis.md §2.3 [U].
    "ServiceCalls": EntitySpec(
        ENTITY_DOCS + "ServiceCallsEntity.htm",
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
        defaults={"status": 1},
        references={"companyID": "Companies"},
        read_only=frozenset({"id", "createDateTime"}),
        deletable=True,
    ),
    # ServiceCallsEntity.htm: "ServiceCallTickets ... require a serviceCallID value"; swagger: created only at
    # `POST ServiceCalls/{parentId}/Tickets` (POST and DELETE, no PATCH).
    "ServiceCallTickets": EntitySpec(
        ENTITY_DOCS + "ServiceCallTicketsEntity.htm",
        {"id": "integer", "serviceCallID": "integer", "ticketID": "integer"},
        required=frozenset({"serviceCallID", "ticketID"}),
        references={"serviceCallID": "ServiceCalls", "ticketID": "Tickets"},
        updatable=False,
        parent=("ServiceCalls", "Tickets", "serviceCallID"),
    ),
    # ServiceCallsEntity.htm: "ServiceCallTicketResources ... requires a serviceCallTicketID value"; swagger:
    # ServiceCallTicketResourceModel = id, resourceID, serviceCallTicketID (no role), created only at
    # `POST ServiceCallTickets/{parentId}/Resources`.
    "ServiceCallTicketResources": EntitySpec(
        ENTITY_DOCS + "ServiceCallTicketResourcesEntity.htm",
        {"id": "integer", "serviceCallTicketID": "integer", "resourceID": "integer"},
        required=frozenset({"serviceCallTicketID", "resourceID"}),
        references={"serviceCallTicketID": "ServiceCallTickets", "resourceID": "Resources"},
        updatable=False,
        parent=("ServiceCallTickets", "Resources", "serviceCallTicketID"),
    ),
}
CHILD_ROUTES = {(spec.parent[0], spec.parent[1]): name for name, spec in SPECS.items() if spec.parent}
KIND_ENTITIES = {
    PsaRecordKind.TICKET: ("Tickets",),
    PsaRecordKind.OPPORTUNITY: ("Opportunities",),
    PsaRecordKind.ACTIVITY: ("CompanyToDos",),
    PsaRecordKind.SCHEDULE_ENTRY: ("ServiceCalls", "Appointments"),
    PsaRecordKind.NOTE: ("TicketNotes",),
}
BUSY_KINDS = ("service_call", "appointment", "todo")
READINGS = ("like",)


def like_pattern(pattern: str) -> re.Pattern[str] | None:
    """SQL Server LIKE as a regex: `%` any run, `_` one character, `[abc]`/`[a-c]` a class, `[^...]` its negation,
    `]` alone a literal; case-insensitive like the default collation. None for a pattern that can match nothing
    (an unclosed or empty class). https://learn.microsoft.com/sql/t-sql/language-elements/like-transact-sql"""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        elif char == "[":
            close = pattern.find("]", index + 1)
            body = pattern[index + 1 : close] if close != -1 else ""
            negate = body.startswith("^")
            members = body[1:] if negate else body
            if close == -1 or not members:
                return None
            escaped = "".join(member if member == "-" else re.escape(member) for member in members)
            out.append(f"[{'^' if negate else ''}{escaped}]")
            index = close
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("".join(out), re.DOTALL | re.IGNORECASE)


Handler = Callable[[web.Request, Any], Awaitable[web.Response]]


class AutotaskError(Exception):
    """An answer in Autotask's error shape: `status` with {"errors": [message]} (apis.md §2.2)."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


class MethodNotAllowed(Exception):
    """The web framework's own 405 for a route without that method (not Autotask's {"errors"} shape)."""


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
        self._lose_next: list[str] = []
        """Entities whose next create loses its answer; "" = any entity."""
        self.responses_lost = 0
        """How many committed creates had their answer dropped by lose_next_response."""
        self._pages: dict[str, tuple[str, list[dict[str, Any]], int, int]] = {}
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.reading = ""
        """"" (plain substring matching) or one of READINGS."""
        self.picklist_defaults: dict[tuple[str, str], int | None] = {
            (entity, name): value for entity, spec in SPECS.items() for name, value in spec.defaults.items()
        }
        """The tenant's `isDefaultValue` per picklist; set one to None for a tenant without a default."""
        self.queue_roles: set[tuple[int, int, int]] = {(DEMO_RESOURCE_ID, DEMO_ROLE_ID, DEMO_QUEUE_ID)}
        """(resource, role, queue) associations (ResourceRoleQueues): a Resource + Role pair on a ticket must belong
        to at least one queue (TicketsEntity.htm)."""
        self.made_through_api: set[tuple[str, int]] = set()
        """(entity, id) of every record a create request made, as opposed to seeded ones."""
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

    busy_kinds: tuple[str, ...] = BUSY_KINDS
    readings: tuple[str, ...] = READINGS

    def use_reading(self, name: str) -> None:
        if name and name not in self.readings:
            raise ValueError(f"unknown reading {name!r}; this fake knows {self.readings}")
        self.reading = name

    def records(self, kind: PsaRecordKind) -> list[dict[str, Any]]:
        """Records of that kind that create requests made (seeded busy time excluded), as `GET {Entity}/{id}` returns
        them, by id; a SCHEDULE_ENTRY is a service call or an appointment.

        Autotask returns picklist fields as integer ids only; so that a test can read a status by name, each
        record here also carries `picklistLabels` ({"status": "Scheduled"}), which no HTTP answer contains.
        """
        out = []
        for entity in KIND_ENTITIES[kind]:
            spec = SPECS[entity]
            for record in self.tables[entity].values():
                if (entity, record["id"]) not in self.made_through_api:
                    continue
                copy = dict(record)
                labels = {name: spec.picklists[name].get(record[name], "") for name in spec.picklists if name in record}
                if labels:
                    copy["picklistLabels"] = labels
                out.append(copy)
        return sorted(out, key=lambda item: int(item["id"]))

    def fail_next(self, status: int, *, retry_after: int | None = None, message: str = "", count: int = 1) -> None:
        self._faults.extend([(status, retry_after, message)] * count)

    def lose_next_response(self, entity: str = "") -> None:
        """Commit the next create (of `entity`, or of any entity), then drop the connection before the answer."""
        self._lose_next.append(entity)

    def set_picklist_default(self, entity: str, field_name: str, value: int | None) -> None:
        """Mark a picklist value `isDefaultValue` (None: the tenant has no default for that picklist)."""
        self.picklist_defaults[(entity, field_name)] = value

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
        [entity] = KIND_ENTITIES[kind]
        contact_id = self.tables[entity][int(record_id)].get("contactID")
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
        self.queue_roles.add((resource_id, DEMO_ROLE_ID, DEMO_QUEUE_ID))
        return resource_id

    def add_ticket(
        self, title: str, *, primary: int | None = None, company_id: int = 0, contact: PsaContact | None = None
    ) -> int:
        """A ticket the service desk opened (not through the API), optionally with a primary resource, and optionally
        for a contact (one add_contact made): its `contactID`, on the contact's company, since a ticket's contact
        must belong to the ticket's company (the rule `_check` enforces for Tickets)."""
        if contact is not None:
            company_id = int(self.tables["Contacts"][int(contact.contact_id)]["companyID"])
        values: dict[str, Any] = {
            "companyID": company_id,
            "title": title,
            "description": "Opened by the service desk",
            "status": 1,
            "priority": 2,
            "queueID": DEMO_QUEUE_ID,
        }
        if primary is not None:
            values |= {"assignedResourceID": primary, "assignedResourceRoleID": DEMO_ROLE_ID}
        if contact is not None:
            values["contactID"] = int(contact.contact_id)
        return int(self._insert("Tickets", values)["id"])

    def company_name(self, company_id: str) -> str:
        """`companyName` of a company (add_contact names a new one after the address's domain)."""
        return str(self.tables["Companies"][int(company_id)]["companyName"])

    def add_opportunity(
        self, name: str, *, contact: PsaContact, open_: bool = True, for_company_only: bool = False, stage: str = ""
    ) -> str:
        """An opportunity a rep entered in Autotask itself, on `contact`'s company (one add_contact made): for that
        contact, or with `for_company_only` for the company alone (no `contactID`). `open_`: status "Active", else
        "Lost". `stage`: a stage label (the picklist's first when empty). Returns its id."""
        company_id = int(self.tables["Contacts"][int(contact.contact_id)]["companyID"])
        spec = SPECS["Opportunities"]
        status = next(
            value for value, label in spec.picklists["status"].items() if label == ("Active" if open_ else "Lost")
        )
        stage_id = next((value for value, label in spec.picklists["stage"].items() if label == stage), 1)
        values: dict[str, Any] = {
            "companyID": company_id,
            "title": name,
            "description": "Entered by a rep",
            "status": status,
            "stage": stage_id,
            "ownerResourceID": DEMO_RESOURCE_ID,
            "amount": 0,
            "cost": 0,
            "probability": 50,
            "projectedCloseDate": _wire_time(self.clock()),
            "useQuoteTotals": False,
        }
        if not for_company_only:
            values["contactID"] = int(contact.contact_id)
        return str(self._insert("Opportunities", values)["id"])

    def ticket_number(self, ticket_id: int) -> str:
        """The number Autotask shows for a ticket (`ticketNumber`, T20261124.0001), which is not its id."""
        return str(self.tables["Tickets"][ticket_id]["ticketNumber"])

    def add_busy(self, member: str, starts_at: Any, ends_at: Any, kind: str = "") -> None:
        """Busy time booked in Autotask itself: a service call on a ticket the member is assigned to (the way a
        dispatcher books one), an appointment on their calendar, or a To-Do assigned to them."""
        if kind not in ("", *self.busy_kinds):
            raise ValueError(f"unknown busy kind {kind!r}; this fake knows {self.busy_kinds}")
        resource_id = int(member)
        times = {"startDateTime": _wire_time(starts_at), "endDateTime": _wire_time(ends_at)}
        if kind == "appointment":
            self._insert("Appointments", {"resourceID": resource_id, "title": "Dentist", **times})
            return
        if kind == "todo":
            self._insert(
                "CompanyToDos",
                {"companyID": 0, "actionType": 3, "assignedToResourceID": resource_id, **times},
            )
            return
        call = self._insert(
            "ServiceCalls", {"companyID": 0, "status": 1, "description": "Dispatched by the service desk", **times}
        )
        ticket = self.add_ticket("Onsite visit", primary=resource_id)
        link = self._insert("ServiceCallTickets", {"serviceCallID": call["id"], "ticketID": ticket})
        self._insert("ServiceCallTicketResources", {"serviceCallTicketID": link["id"], "resourceID": resource_id})

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
                # How Autotask treats a property its entity does not have in a create or update body is not
                # documented [U]; the stand-in refuses it with the 500 message Autotask gives for an unknown field in
                # a query ("Unable to find projectID in the TimeEntry Entity", WYRE-AI/autotask-mcp#282). Refusing is
                # the conservative reading: a field we think we set but Autotask drops is a silent loss.
                raise AutotaskError(f"Unable to find {key} in the {entity} Entity.")
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
            # Picklist fields take one of the tenant's values (entityInformation/fields picklistValues).
            if name in spec.picklists and value not in spec.picklists[name]:
                raise AutotaskError(f"Value '{value}' is not a valid picklist value for field {name} on {entity}.")
            target = spec.references.get(name)
            if target and value not in self.tables[target]:
                raise AutotaskError(f"Reference value on field {name} of type {target} does not exist: {value}.")
            values[name] = value
        if creating:
            # Every field the metadata marks isRequired must come with the create (apis.md §2.2, entityInformation).
            missing = sorted(name for name in spec.required if values.get(name) in (None, ""))
            if missing:
                raise AutotaskError(f"Missing required field(s) on {entity}: {', '.join(missing)}.")
        return values

    def _check_rules(self, entity: str, record: dict[str, Any]) -> None:
        """Cross-field rules Autotask documents for the booking entities (apis.md §2.3)."""
        if entity == "Tickets":
            self._check_ticket_resources(record)
        if entity == "TicketSecondaryResources":
            self._check_secondary_resource(record)
        if entity == "ServiceCallTicketResources":
            self._check_service_call_resource(record)
        if entity in ("CompanyToDos", "ServiceCalls", "Appointments") and _parse_time(
            record["endDateTime"]
        ) <= _parse_time(record["startDateTime"]):
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

    def _secondary_resources(self, ticket_id: int) -> list[dict[str, Any]]:
        return [row for row in self.tables["TicketSecondaryResources"].values() if row["ticketID"] == ticket_id]

    def _check_ticket_resources(self, record: dict[str, Any]) -> None:
        resource, role = record.get("assignedResourceID"), record.get("assignedResourceRoleID")
        if record.get("queueID") is None and not (resource and role):
            # TicketsEntity.htm: a ticket needs a queue or a primary resource (apis.md §2.3).
            raise AutotaskError("A ticket needs a queueID or an assignedResourceID with an assignedResourceRoleID.")
        if (resource is None) != (role is None):
            # The message Autotask answers (WYRE-AI/msp-claude-plugins#32).
            raise AutotaskError(
                "When assigning a Resource, you must assign both a assignedResourceID and assignedResourceRoleID."
            )
        if resource is not None and not any(
            (resource, role) == (known_resource, known_role) for known_resource, known_role, _ in self.queue_roles
        ):
            # TicketsEntity.htm: "A Resource + Role combination assigned to a ticket must be associated with at
            # least one Service Desk Queue."
            raise AutotaskError(f"Resource {resource} with role {role} is not associated with any queue.")
        # TicketsEntity.htm: "The API will not allow you to add a primary resource that is already assigned as a
        # secondary resource."
        if record.get("id") is not None and any(
            row["resourceID"] == resource for row in self._secondary_resources(record["id"])
        ):
            raise AutotaskError(f"Resource {resource} is already a secondary resource on this ticket.")

    def _check_secondary_resource(self, record: dict[str, Any]) -> None:
        ticket = self.tables["Tickets"][record["ticketID"]]
        if any(row["resourceID"] == record["resourceID"] for row in self._secondary_resources(ticket["id"])):
            # TicketsEntity.htm: "You also will not be able to add a secondary resource that is already assigned as
            # a secondary resource."
            raise AutotaskError(f"Resource {record['resourceID']} is already a secondary resource on this ticket.")
        if ticket.get("assignedResourceID") == record["resourceID"]:
            # TaskSecondaryResourcesEntity.htm says so for tasks ("The secondary resource cannot be the primary
            # resource"); the ticket page is read the same way [U].
            raise AutotaskError(f"Resource {record['resourceID']} is the primary resource on this ticket.")
        if not any((record["resourceID"], record["roleID"]) == (res, role) for res, role, _ in self.queue_roles):
            # TaskSecondaryResourcesEntity.htm: "resourceID and roleID must be an existing Resource/Role pair" [U for
            # tickets].
            raise AutotaskError(f"Resource {record['resourceID']} has no role {record['roleID']}.")

    def _check_service_call_resource(self, record: dict[str, Any]) -> None:
        link = self.tables["ServiceCallTickets"][record["serviceCallTicketID"]]
        ticket = self.tables["Tickets"][link["ticketID"]]
        on_ticket = {ticket.get("assignedResourceID")} | {
            row["resourceID"] for row in self._secondary_resources(ticket["id"])
        }
        if record["resourceID"] not in on_ticket:
            # ServiceCallTicketResources carries no role (swagger ServiceCallTicketResourceModel), so the role a
            # resource works the call in can only be its assignment on the ticket: the stand-in wants the resource
            # to be the ticket's primary or a secondary resource [U: inferred, not stated].
            raise AutotaskError(f"Resource {record['resourceID']} is not assigned to ticket {ticket['id']}.")

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
            # HTTP 500 "Unable to find projectID in the TimeEntry Entity" (WYRE-AI/autotask-mcp#282).
            raise AutotaskError(f"Unable to find {name} in the {entity} Entity.")
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
        if op in ("beginsWith", "endsWith", "contains") and self.reading == "like":
            # The "like" reading: Autotask's text operators as SQL Server LIKE with the value as the pattern, `%`,
            # `_` and `[...]` being wildcards (REST_Basic_Query_Calls.htm documents the operators, not the matching).
            wrapped = {"beginsWith": "{}%", "endsWith": "%{}", "contains": "%{}%"}[op].format(item["value"])
            pattern = like_pattern(str(wrapped))
            return pattern is not None and pattern.fullmatch(str(actual)) is not None
        comparisons: dict[str, Callable[[], bool]] = {
            "eq": lambda: bool(left == right),
            "noteq": lambda: bool(left != right),
            "gt": lambda: bool(left > right),
            "gte": lambda: bool(left >= right),
            "lt": lambda: bool(left < right),
            "lte": lambda: bool(left <= right),
            # The default reading: plain, case-insensitive substring matching.
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
        if include is not None:
            # REST_Advanced_Query_Features.htm: IncludeFields is a list of the entity's field names. A name the
            # entity lacks is refused the way an unknown filter field is (HTTP 500 "Unable to find X in the Y
            # Entity", WYRE-AI/autotask-mcp#282) [U: Autotask's exact answer for an unknown IncludeFields name].
            if not isinstance(include, list) or not all(isinstance(name, str) for name in include):
                raise AutotaskError("IncludeFields must be an array of field names.")
            known = {field_name.lower() for field_name in SPECS[entity].fields}
            for name in include:
                if name.lower() not in known:
                    raise AutotaskError(f"Unable to find {name} in the {entity} Entity.")
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
                # Autotask's answer to a missing parent is not documented [U]; the stand-in answers as for any other
                # reference to a missing record.
                raise AutotaskError(
                    f"Reference value on field {parent_field} of type {parent_entity} does not exist: {parent_id}."
                )
            given = body.get(parent_field)
            if given is not None and given != parent_id:
                raise AutotaskError(f"{parent_field} {given} does not match the parent id {parent_id} in the URL.")
            body = {**body, parent_field: parent_id}
        values = self._validate_values(entity, body, creating=True)
        self._check_rules(entity, dict.fromkeys(spec.fields) | values)
        record = self._insert(entity, values)
        self.made_through_api.add((entity, record["id"]))
        lose = next((wanted for wanted in self._lose_next if wanted in ("", entity)), None)
        if lose is not None:
            # Committed, but the caller never hears back: the connection drops before any byte of the answer.
            self._lose_next.remove(lose)
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
                            "isDefaultValue": self.picklist_defaults.get((entity, name)) == value,
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
                # REST_Resource_Child_Access_URLs.htm: a child's creates go through its parent; the swagger has no
                # POST on the child's root. What Autotask answers there is not documented [U]: the stand-in answers
                # as the web framework does for a method a route lacks, 405 {"Message": ...} (the shape seen for GET
                # on a root, Anteris-Dev/autotask-client#12).
                raise MethodNotAllowed("POST")
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
        # webUrl is the web app's root for the database (getZoneInfo: "the proper URL for the Autotask application
        # UI"), not the API's: https://ww5.autotask.net/ against https://webservices5.autotask.net/ATServicesRest/.
        web_root = f"{request.scheme}://{request.host}/"
        return web.json_response({"url": zone, "dataBaseType": "Production", "ciLevel": 1, "webUrl": web_root, "ci": 1})

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
        except MethodNotAllowed as exc:
            return web.json_response(
                {"Message": f"The requested resource does not support http method '{exc}'."}, status=405
            )
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


async def _serve(host: str, port: int, records_port: int | None = None) -> None:
    server = FakeAutotaskServer()
    await server.start(host, port)
    if records_port:
        from tests.fakes.demo_inspector import start_records

        await start_records(lambda: {kind.value: server.records(kind) for kind in PsaRecordKind}, host, records_port)
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
    parser.add_argument("--records-port", type=int, default=None, help="serve GET /records (JSON) there")
    arguments = parser.parse_args()
    with suppress(KeyboardInterrupt):
        asyncio.run(_serve(arguments.host, arguments.port, arguments.records_port))


if __name__ == "__main__":
    main()
