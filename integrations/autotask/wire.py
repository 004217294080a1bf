"""Our PSA drafts to Autotask REST bodies and back; pure functions, no I/O.

Field names follow the Autotask entity pages cited in apis.md §2.3. Autotask stores and returns times in UTC and
wants ISO-8601 (apis.md §2.2), so every datetime leaves here as `YYYY-MM-DDTHH:MM:SSZ`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from scheduling.model import BusyInterval, BusyKind, PsaContact, PsaDraft, PsaOpportunity, PsaRecordKind, PsaRef

Filter = dict[str, Any]
"""One Autotask query condition: {"op", "field", "value"} or a grouping {"op": "or", "items": [...]}."""

MAX_CONDITIONS_PER_GROUP = 500
"""At most 500 OR conditions per query (apis.md §2.4, SOAP doc; assumed for REST)."""

_MAX_TITLE = 255
_MAX_APPOINTMENT_TITLE = 256
"""Appointments.title is string (256) (AppointmentsEntity.htm)."""
_MAX_DESCRIPTION = 8000
_TICKET_ID = re.compile(r"[0-9]{1,10}")
_MAX_ID = 2**31 - 1
"""Entity ids are `integer` (int32) in the REST swagger (`TicketModel.Id`)."""
_TICKET_NUMBER_LIMIT = 64
"""Longer text is no ticket number; the field's length is not given on TicketsEntity.htm [U], and the request
stores at most 64 characters."""

CONTACT_NAME_LIMIT = 50
"""Contacts `firstName`/`lastName` length [U: Autotask field metadata; apis.md does not give it]."""

MISSING_LAST_NAME = "(not given)"
"""Autotask requires a last name on a contact (companyID, firstName, lastName and isActive are the mandatory
Contact fields in the ecitsolutions/Autotask module's New-AtwsContact); a one-word name gets this instead of a
made-up one, so staff can see it was never given."""


def to_wire_datetime(moment: datetime) -> str:
    """An aware datetime as the UTC ISO-8601 text Autotask expects; naive datetimes are a bug, so they raise."""
    if moment.tzinfo is None:
        raise ValueError("Autotask times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_wire_datetime(text: str) -> datetime:
    """Autotask's UTC timestamps ("2026-11-24T15:00:00Z", sometimes with fractions or without a zone) as aware UTC."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def to_wire_marker(idempotency_key: str) -> str:
    """The text we write into a record so a look-up finds it again after a lost response.

    The closing bracket makes `[slotwise:a]` never match inside `[slotwise:ab]`, so brackets in keys are replaced.
    Records written before the look-up changed carry the same marker, so they are still recognised.
    """
    safe = idempotency_key.replace("[", "(").replace("]", ")")
    return f"[slotwise:{safe}]"


def to_wire_marker_probe(idempotency_key: str) -> str:
    """What a `contains` look-up sends: the marker without its opening bracket.

    Autotask documents `contains` but neither how it is matched nor how to escape (REST_Basic_Query_Calls.htm); it is
    plausibly SQL Server LIKE, where `[...]` is a character class, `_` any one character and `%` any run. Without the
    `[` the probe holds no class (`]` alone is a literal in LIKE), and `_`/`%` from a key can only widen the match,
    never narrow it; so the probe finds the record under either reading, and carries_marker() then drops the extra
    hits. The marker's own `]` still ends the key, so `slotwise:a]` does not hit `[slotwise:ab]`.
    """
    return to_wire_marker(idempotency_key)[1:]


def carries_marker(item: Mapping[str, Any], field: str, idempotency_key: str) -> bool:
    """Whether a record's text holds exactly this booking step's marker (case and brackets included)."""
    return to_wire_marker(idempotency_key) in str(item.get(field) or "")


def condition(op: str, field: str, value: object = None) -> Filter:
    """A leaf condition; `exist`/`notExist` take no value."""
    if op in ("exist", "notExist"):
        return {"op": op, "field": field}
    return {"op": op, "field": field, "value": value}


def any_of(*conditions: Filter) -> Filter:
    """An `or` grouping of conditions (apis.md §2.2)."""
    return {"op": "or", "items": list(conditions)}


def marker_filter(field: str, idempotency_key: str) -> Filter:
    """A `contains` condition with the bracket-free probe; its hits are a superset to check with carries_marker()."""
    return condition("contains", field, to_wire_marker_probe(idempotency_key))


def to_wire_query(filters: Sequence[Filter], *, max_records: int) -> dict[str, Any]:
    return {"filter": list(filters), "MaxRecords": max_records}


def chunked_ids(ids: Iterable[int]) -> list[list[int]]:
    """Ids in groups small enough for one `in` condition (the 500-condition cap)."""
    unique = sorted(set(ids))
    return [
        unique[index : index + MAX_CONDITIONS_PER_GROUP] for index in range(0, len(unique), MAX_CONDITIONS_PER_GROUP)
    ]


def _with_marker(text: str, idempotency_key: str) -> str:
    marker = to_wire_marker(idempotency_key)
    return f"{text[: _MAX_DESCRIPTION - len(marker) - 2]}\n\n{marker}" if text else marker


def _company_id(draft: PsaDraft, default_company_id: int) -> int:
    return int(draft.contact.company_id) if draft.contact else default_company_id


def to_wire_contact(name: str, email: str, company_id: int) -> dict[str, Any]:
    """Contacts body for a first-time client: active, under the tenant's fallback company, with the address in
    `emailAddress`, the field the contact look-up queries first (apis.md §2.3)."""
    words = name.split()
    first = words[0] if words else email.partition("@")[0]
    last = " ".join(words[1:]) or MISSING_LAST_NAME
    return {
        "companyID": company_id,
        "firstName": first[:CONTACT_NAME_LIMIT],
        "lastName": last[:CONTACT_NAME_LIMIT],
        "emailAddress": email,
        "isActive": 1,
    }


def to_wire_ticket(
    draft: PsaDraft,
    *,
    default_company_id: int,
    queue_id: int,
    status_id: int,
    priority_id: int,
    resource_id: int | None,
    role_id: int,
) -> dict[str, Any]:
    """Tickets body: companyID, title, status, priority, a queue, and the host as primary resource.

    The role of the host lives on the ticket (`assignedResourceRoleID`), not on the service call's resource row,
    and Autotask wants the resource and the role together (TicketsEntity.htm: a Resource + Role pair assigned to a
    ticket must belong to at least one queue).
    """
    body: dict[str, Any] = {
        "companyID": _company_id(draft, default_company_id),
        "title": draft.title[:_MAX_TITLE],
        "description": _with_marker(draft.description, draft.idempotency_key),
        "status": status_id,
        "priority": priority_id,
        "queueID": queue_id,
    }
    if resource_id is not None:
        body["assignedResourceID"] = resource_id
        body["assignedResourceRoleID"] = role_id
    if draft.contact:
        body["contactID"] = int(draft.contact.contact_id)
    return body


def to_wire_opportunity(
    draft: PsaDraft,
    *,
    default_company_id: int,
    status_id: int,
    probability: int,
    closes_at: datetime,
    stage_id: int,
) -> dict[str, Any]:
    """Opportunities body with every field the entity's field metadata marks required, stage included
    (OpportunitiesEntity.htm; each tenant's list comes from `Opportunities/entityInformation/fields`)."""
    body: dict[str, Any] = {
        "companyID": _company_id(draft, default_company_id),
        "title": draft.title[:_MAX_TITLE],
        "description": _with_marker(draft.description, draft.idempotency_key),
        "status": status_id,
        "ownerResourceID": int(draft.member),
        "amount": 0,
        "cost": 0,
        "probability": probability,
        "projectedCloseDate": to_wire_datetime(closes_at),
        "useQuoteTotals": False,
        "stage": stage_id,
    }
    if draft.contact:
        body["contactID"] = int(draft.contact.contact_id)
    return body


def to_wire_todo(draft: PsaDraft, *, default_company_id: int, action_type_id: int) -> dict[str, Any]:
    """CompanyToDos body; contact, opportunity and ticket must belong to the same company (CompanyToDosEntity.htm)."""
    if draft.starts_at is None or draft.ends_at is None:
        raise ValueError("An Autotask To-Do needs a start and an end")
    body: dict[str, Any] = {
        "companyID": _company_id(draft, default_company_id),
        "actionType": action_type_id,
        "assignedToResourceID": int(draft.member),
        "startDateTime": to_wire_datetime(draft.starts_at),
        "endDateTime": to_wire_datetime(draft.ends_at),
        "activityDescription": _with_marker(f"{draft.title}\n{draft.description}".strip(), draft.idempotency_key),
    }
    if draft.contact:
        body["contactID"] = int(draft.contact.contact_id)
    if draft.opportunity_id:
        body["opportunityID"] = int(draft.opportunity_id)
    if draft.ticket_id:
        body["ticketID"] = int(draft.ticket_id)
    return body


def to_wire_service_call(
    draft: PsaDraft, *, default_company_id: int, status_id: int, company_id: int | None = None
) -> dict[str, Any]:
    """ServiceCalls body: companyID, startDateTime, endDateTime, status, description (apis.md §2.3). `company_id`
    (the ticket's company) wins over the client's."""
    if draft.starts_at is None or draft.ends_at is None:
        raise ValueError("An Autotask service call needs a start and an end")
    return {
        "companyID": company_id if company_id is not None else _company_id(draft, default_company_id),
        "startDateTime": to_wire_datetime(draft.starts_at),
        "endDateTime": to_wire_datetime(draft.ends_at),
        "status": status_id,
        "description": _with_marker(f"{draft.title}\n{draft.description}".strip(), draft.idempotency_key),
    }


def to_wire_appointment(draft: PsaDraft) -> dict[str, Any]:
    """Appointments body: time on the host's calendar that is not a service call (AppointmentsEntity.htm: resourceID,
    startDateTime, endDateTime, title, description; created at the root `POST Appointments`)."""
    if draft.starts_at is None or draft.ends_at is None:
        raise ValueError("An Autotask appointment needs a start and an end")
    return {
        "resourceID": int(draft.member),
        "startDateTime": to_wire_datetime(draft.starts_at),
        "endDateTime": to_wire_datetime(draft.ends_at),
        "title": (draft.title or "Slotwise booking")[:_MAX_APPOINTMENT_TITLE],
        "description": _with_marker(draft.description, draft.idempotency_key),
    }


def to_wire_move(record_id: int, starts_at: datetime, ends_at: datetime) -> dict[str, Any]:
    """A PATCH body for a service call or an appointment: Autotask updates carry the id in the body (apis.md §2.2)."""
    return {
        "id": record_id,
        "startDateTime": to_wire_datetime(starts_at),
        "endDateTime": to_wire_datetime(ends_at),
    }


def to_wire_service_call_ticket(service_call_id: int, ticket_id: int) -> dict[str, Any]:
    return {"serviceCallID": service_call_id, "ticketID": ticket_id}


def to_wire_service_call_resource(service_call_ticket_id: int, resource_id: int) -> dict[str, Any]:
    """ServiceCallTicketResources has only id, resourceID and serviceCallTicketID (ServiceCallTicketResourceModel in
    the REST swagger); the resource's role comes from its assignment on the ticket."""
    return {"serviceCallTicketID": service_call_ticket_id, "resourceID": resource_id}


def to_wire_ticket_secondary_resource(ticket_id: int, resource_id: int, role_id: int) -> dict[str, Any]:
    """TicketSecondaryResources body: resourceID, roleID, ticketID; created via `Tickets/{id}/SecondaryResources`."""
    return {"ticketID": ticket_id, "resourceID": resource_id, "roleID": role_id}


APPOINTMENT_PREFIX = "appointment:"
"""A schedule entry's record id is `appointment:{id}` for an Appointment; a bare number is a service call, which
is what every schedule entry was before appointments, so refs stored by earlier jobs keep their meaning."""


def to_schedule_entry_id(kind: str, record_id: int) -> str:
    return f"{APPOINTMENT_PREFIX}{record_id}" if kind == "Appointments" else str(record_id)


def from_schedule_entry_id(record_id: str) -> tuple[str, str]:
    """("Appointments" | "ServiceCalls", the numeric id as text) of a schedule entry's record id."""
    if record_id.startswith(APPOINTMENT_PREFIX):
        return "Appointments", record_id.removeprefix(APPOINTMENT_PREFIX)
    return "ServiceCalls", record_id


def to_wire_ticket_note(draft: PsaDraft, *, note_type_id: int, publish: int) -> dict[str, Any]:
    """TicketNotes body; the note goes through its parent ticket (`POST Tickets/{id}/Notes`)."""
    return {
        "ticketID": int(draft.ticket_id),
        "title": (draft.title or "Slotwise")[:_MAX_TITLE],
        "description": _with_marker(draft.description, draft.idempotency_key),
        "noteType": note_type_id,
        "publish": publish,
    }


def to_wire_status_change(ticket_id: int, status_id: int) -> dict[str, Any]:
    return {"id": ticket_id, "status": status_id}


def from_wire_contact(item: Mapping[str, Any], email: str) -> PsaContact:
    """The matching one of the three email fields is the address we report."""
    addresses = [str(item.get(name) or "") for name in ("emailAddress", "emailAddress2", "emailAddress3")]
    matched = next((address for address in addresses if address.casefold() == email.casefold()), email)
    name = " ".join(part for part in (str(item.get("firstName") or ""), str(item.get("lastName") or "")) if part)
    return PsaContact(contact_id=str(item["id"]), company_id=str(item.get("companyID", "")), name=name, email=matched)


def to_wire_ticket_reference(reference: str) -> int | str | None:
    """What an agent typed, as Autotask can look it up: an id (digits, an int32) or a ticket number
    (`T20261124.0001`, TicketsEntity.htm `ticketNumber`). A leading `#` and surrounding blanks go. None for text
    that can be neither (empty, or too long)."""
    text = reference.strip().removeprefix("#").strip()
    if _TICKET_ID.fullmatch(text):
        return int(text) if int(text) <= _MAX_ID else None
    if not text or len(text) > _TICKET_NUMBER_LIMIT:
        return None
    return text


def from_wire_ticket_contact_id(ticket: Mapping[str, Any]) -> int | None:
    """The ticket's `contactID` (TicketsEntity.htm: integer, a reference to Contacts), None when it has none."""
    contact_id = ticket.get("contactID")
    return contact_id if isinstance(contact_id, int) and not isinstance(contact_id, bool) and contact_id > 0 else None


def from_wire_contact_first_email(item: Mapping[str, Any]) -> PsaContact | None:
    """A Contact by the first of its three email fields that holds an address, in the order the contact look-up
    queries them (`emailAddress`, `emailAddress2`, `emailAddress3`; ContactsEntity.htm, apis.md §2.3). None when all
    three are blank."""
    addresses = [str(item.get(name) or "").strip() for name in ("emailAddress", "emailAddress2", "emailAddress3")]
    address = next((address for address in addresses if address), "")
    return from_wire_contact(item, address) if address else None


def from_wire_ticket_ref(item: Mapping[str, Any]) -> PsaRef:
    """People see the ticket number (T20261124.0001), not the id."""
    return PsaRef(PsaRecordKind.TICKET, str(item["id"]), str(item.get("ticketNumber") or item["id"]))


def from_wire_ref(kind: PsaRecordKind, item: Mapping[str, Any]) -> PsaRef:
    return PsaRef(kind, str(item["id"]))


def from_wire_busy(item: Mapping[str, Any], label: str) -> BusyInterval:
    """A service call, appointment or To-Do as busy time; all three carry startDateTime and endDateTime."""
    return BusyInterval(
        from_wire_datetime(str(item["startDateTime"])),
        from_wire_datetime(str(item["endDateTime"])),
        BusyKind.EVENT,
        label,
    )


def _picklist_values(fields_info: Mapping[str, Any], field: str) -> list[Mapping[str, Any]]:
    for info in fields_info.get("fields", []):
        if str(info.get("name", "")).casefold() == field.casefold():
            return [value for value in info.get("picklistValues") or [] if value.get("isActive", True)]
    return []


def from_wire_picklist(fields_info: Mapping[str, Any], field: str) -> dict[str, int]:
    """Active picklist labels (case-folded) to ids, from `GET {Entity}/entityInformation/fields` (apis.md §2.2)."""
    return {str(value["label"]).casefold(): int(value["value"]) for value in _picklist_values(fields_info, field)}


def from_wire_picklist_labels(fields_info: Mapping[str, Any], field: str) -> dict[int, str]:
    """Active picklist ids to their labels as Autotask spells them."""
    return {int(value["value"]): str(value["label"]) for value in _picklist_values(fields_info, field)}


def from_wire_picklist_default(fields_info: Mapping[str, Any], field: str) -> tuple[int, str] | None:
    """(id, label) of the active value the tenant marked `isDefaultValue`, or None (entityInformation/fields)."""
    for value in _picklist_values(fields_info, field):
        if value.get("isDefaultValue") is True:
            return int(value["value"]), str(value["label"])
    return None


OPPORTUNITY_FIELDS = ("id", "title", "status", "stage", "contactID", "companyID")
"""What a recipient match reads of an opportunity (`IncludeFields`, REST_Advanced_Query_Features.htm; the field
names: OpportunitiesEntity.htm)."""

ACTIVE_OPPORTUNITY_STATUS = "active"
"""The Opportunities `status` picklist's open value, "Active"; its other stock values (Lost, Closed, Implemented,
Inactive) all end an opportunity (OpportunitiesEntity.htm, `status` picklist) [U: a tenant cannot add statuses, so
the label is matched by name, case-insensitively]."""


def from_wire_company_id(item: Mapping[str, Any]) -> int | None:
    """A record's `companyID` (an integer reference to Companies); None when it has none."""
    company_id = item.get("companyID")
    return company_id if isinstance(company_id, int) and not isinstance(company_id, bool) else None


def from_wire_company_name(company: Mapping[str, Any]) -> str:
    """`companyName` of a Companies record (CompaniesEntity.htm)."""
    name = company.get("companyName")
    return " ".join(name.split()) if isinstance(name, str) else ""


def from_wire_active_statuses(fields_info: Mapping[str, Any]) -> frozenset[int]:
    """Ids of the active Opportunities `status` picklist values labelled "Active" (entityInformation/fields)."""
    return frozenset(
        status
        for label, status in from_wire_picklist(fields_info, "status").items()
        if label.strip() == ACTIVE_OPPORTUNITY_STATUS
    )


def from_wire_opportunities(
    items: Sequence[Mapping[str, Any]], active: frozenset[int], stages: Mapping[int, str]
) -> tuple[PsaOpportunity, ...]:
    """Opportunities rows as PsaOpportunity, newest (highest id) first; a row whose status is not an active one is
    dropped, whatever the server's filtering did. The stage is shown by its picklist label."""
    found: list[tuple[int, PsaOpportunity]] = []
    for item in items:
        item_id, status, stage = item.get("id"), item.get("status"), item.get("stage")
        if not isinstance(item_id, int) or isinstance(item_id, bool) or status not in active:
            continue
        title = item.get("title")
        found.append(
            (
                item_id,
                PsaOpportunity(
                    opportunity_id=str(item_id),
                    name=" ".join(title.split()) if isinstance(title, str) else "",
                    stage=stages.get(stage, "") if isinstance(stage, int) else "",
                ),
            )
        )
    return tuple(opportunity for _, opportunity in sorted(found, key=lambda pair: pair[0], reverse=True))
