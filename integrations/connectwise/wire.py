"""Our PSA drafts to ConnectWise PSA JSON and back, plus the `conditions` strings we send (apis.md §1.2, §1.3)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from scheduling.errors import IntegrationRejected
from scheduling.model import BusyInterval, BusyKind, PsaContact, PsaDraft, PsaOpportunity, PsaRecordKind, PsaRef

BUSY_LABEL = "PSA schedule entry"

SUMMARY_LIMIT = 100
"""Ticket `summary` and activity `name` hold at most 100 characters ("Max length: 100", ai-connor/connectwise:
model_ticket.go, model_activity.go); opportunity `name` likewise [U: not checked in model_opportunity.go]. The title
is shortened to make room for the marker, never the marker."""

ENTRY_NAME_LIMIT = 250
"""Schedule entry `name`: "Max length: 250" (ai-connor/connectwise:model_schedule_entry.go)."""

CONTACT_NAME_LIMIT = 30
"""Contact `firstName` and `lastName` hold 1-30 characters [U: the ConnectWiseManageAPI PowerShell module's
New-CWMCompanyContact validates these lengths; apis.md does not give them]."""

EMAIL_COMMUNICATION_TYPE = "Email"
"""The stock contact communication type for e-mail. A communication item references its type by
`CommunicationTypeReference` = `{id?, name?, _info?}`, all optional (ai-connor/connectwise:
model_communication_type_reference.go); the type itself (`GET /company/communicationTypes`) is named by its required
`description` and flagged `emailFlag` / `phoneFlag` / `faxFlag` (Jetbuilt/connect_wise:docs/CommunicationType.md).
A tenant may rename or add e-mail types, so the id is resolved once per connection (see `pick_email_type_id`) and
sent as `{"id": n}`; the category an item then carries, `communicationType`, is the `"Email"` the contact look-up
filters on (apis.md §1.2)."""

SERVICE_TICKET_TYPE = "S"
ACTIVITY_TYPE = "C"
"""Schedule entry type identifiers: `S` service ticket, `C` activity/CRM (apis.md §1.2 [U]; `GET /schedule/types`)."""

_READABLE_KEY = re.compile(r"^[A-Za-z0-9:.\-]{1,40}$")
_TICKET_ID = re.compile(r"[0-9]{1,10}")
_MAX_ID = 2**31 - 1
"""Record ids are `integer` (int32) in the spec (`model_ticket.go`: `Id *int32`)."""


def marker(idempotency_key: str) -> str:
    """The tag written into a record's text so a re-run can find it.

    Readable keys are used as they are. Anything longer, or with characters that mean something inside a
    `conditions` string (quotes, backslashes) or a SQL LIKE pattern (`%`, `_`, `[`), becomes a short digest of
    the key: it must fit beside a title in 100 characters and survive a `contains` search unharmed.
    """
    if _READABLE_KEY.match(idempotency_key):
        return f"[slotwise:{idempotency_key}]"
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
    return f"[slotwise:h{digest}]"


def marker_probe(idempotency_key: str) -> str:
    """What we search for with `contains`: the marker without its opening bracket.

    ConnectWise may run `contains` as a SQL Server LIKE [U: undocumented; apis.md §1.3 documents `like` with `%`],
    where `%`, `_` and `[...]` are wildcards. The probe holds none of them whatever the key (`marker` keeps only
    letters, digits, `:`, `.` and `-`, or a hex digest; a lone `]` is an ordinary character in LIKE), so it means the
    same under a plain-substring reading and a LIKE reading. The closing bracket stays so `booking-1` cannot match
    `booking-10`. Whatever the server matches, the caller still checks the full marker with `has_marker` on every
    hit before trusting one.
    """
    return marker(idempotency_key)[1:]


_STOCK_EMAIL = EMAIL_COMMUNICATION_TYPE.casefold()


def pick_email_type_id(rows: list[dict[str, Any]]) -> int | None:
    """The e-mail communication type among `GET /company/communicationTypes?conditions=emailFlag=true` rows: the
    one described "Email" (the stock name), else the tenant's default e-mail type (`defaultFlag`), else the first."""
    usable = [row for row in rows if isinstance(row.get("id"), int) and row.get("emailFlag") is not False]
    stock = [row for row in usable if str(row.get("description", "")).strip().casefold() == _STOCK_EMAIL]
    default = [row for row in usable if row.get("defaultFlag") is True]
    for candidates in (stock, default, usable):
        if candidates:
            return int(candidates[0]["id"])
    return None


def has_marker(record: Mapping[str, Any], field: str, idempotency_key: str) -> bool:
    text = record.get(field)
    return isinstance(text, str) and marker(idempotency_key) in text


def with_marker(text: str, idempotency_key: str, limit: int) -> str:
    tag = marker(idempotency_key)
    room = limit - len(tag) - 1
    title = " ".join(text.split())
    if len(title) > room:
        title = title[: max(room - 1, 0)].rstrip() + "…"
    return f"{title} {tag}".strip()


def to_wire_string(value: str) -> str:
    """A string literal for `conditions`: double quotes (apis.md §1.3), quotes and backslashes escaped with a
    backslash [U: ConnectWise documents no escape rule]. Client-typed values (an e-mail address) pass through here,
    so a quote inside one can never end the literal and smuggle in a condition of its own."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_wire_time(moment: datetime) -> str:
    """ISO-8601 UTC as `yyyy-MM-ddTHH:mm:ssZ`, the format ConnectWise documents (apis.md §1.1)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to the ConnectWise wire format")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_wire_condition_time(moment: datetime) -> str:
    """Datetimes inside `conditions` go in square brackets: `dateStart < [2026-11-24T15:00:00Z]` (apis.md §1.3)."""
    return f"[{to_wire_time(moment)}]"


def from_wire_time(value: Any) -> datetime:
    if not isinstance(value, str) or not value:
        raise IntegrationRejected(f"ConnectWise answered a date that is not a string: {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise IntegrationRejected(f"ConnectWise answered an unreadable date: {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def to_wire_id(value: str, what: str) -> int:
    """ConnectWise record ids are integers; our ports carry them as strings."""
    try:
        return int(value)
    except ValueError:
        raise IntegrationRejected(f"ConnectWise {what} ids are numbers, not {value!r}") from None


def to_wire_ticket_id(reference: str) -> int | None:
    """The ticket id in what an agent typed ("1001" or "#1001"): ConnectWise shows a ticket by its id ("ticket
    #1234", so the displayed number is the id). None for anything that cannot be one (an int32, 1 and up)."""
    text = reference.strip().removeprefix("#").strip()
    if not _TICKET_ID.fullmatch(text) or int(text) > _MAX_ID:
        return None
    return int(text)


def to_wire_company(contact: PsaContact | None, fallback_identifier: str) -> dict[str, Any] | None:
    """References are `{"id": n}` or `{"identifier": "..."}` (apis.md §1.2)."""
    if contact is not None and contact.company_id:
        return {"id": to_wire_id(contact.company_id, "company")}
    if fallback_identifier:
        return {"identifier": fallback_identifier}
    return None


def to_wire_contact(name: str, email: str, company_identifier: str, *, email_type_id: int) -> dict[str, Any]:
    """`POST /company/contacts` for a first-time client: the e-mail goes into `communicationItems[]`, where the
    look-up by `childConditions` finds it again (apis.md §1.2), with its type referenced by id (`{"id": n}`, see
    EMAIL_COMMUNICATION_TYPE); the company is the tenant's fallback company, referenced by identifier
    (`{"identifier": "..."}`, apis.md §1.2). The spec requires none of the contact's fields (`NewContact()` takes no
    arguments, ai-connor/connectwise:model_contact.go); `firstName` is sent always [U: the ConnectWiseManageAPI
    module makes it mandatory], so a one-word name leaves `lastName` out, and a blank one falls back to the
    address's local part."""
    words = name.split()
    first = words[0] if words else email.partition("@")[0]
    body: dict[str, Any] = {
        "firstName": first[:CONTACT_NAME_LIMIT],
        "company": {"identifier": company_identifier},
        "communicationItems": [{"type": {"id": email_type_id}, "value": email, "defaultFlag": True}],
    }
    if len(words) > 1:
        body["lastName"] = " ".join(words[1:])[:CONTACT_NAME_LIMIT]
    return body


def to_wire_ticket(
    draft: PsaDraft, *, board_id: int, company: dict[str, Any], status_id: int | None = None
) -> dict[str, Any]:
    """`POST /service/tickets`: `summary` and `company` are required, `board` is needed in practice (apis.md §1.2).
    The marker also goes into the description, which becomes the ticket's first note."""
    body: dict[str, Any] = {
        "summary": with_marker(draft.title, draft.idempotency_key, SUMMARY_LIMIT),
        "board": {"id": board_id},
        "company": company,
        "initialDescription": f"{draft.description}\n\n{marker(draft.idempotency_key)}".strip(),
    }
    if draft.contact is not None:
        body["contact"] = {"id": to_wire_id(draft.contact.contact_id, "contact")}
    if status_id is not None:
        body["status"] = {"id": status_id}
    return body


def to_wire_opportunity(draft: PsaDraft, *, stage_id: int | None = None) -> dict[str, Any]:
    """`POST /sales/opportunities`: `name`, `primarySalesRep`, `company` and `contact` are required (apis.md §1.2)."""
    contact = draft.contact
    if contact is None or not contact.company_id:
        raise IntegrationRejected(
            "A ConnectWise opportunity needs a contact and its company: set fallback_company_identifier so that"
            " first-time clients become contacts of that company"
        )
    body: dict[str, Any] = {
        "name": with_marker(draft.title, draft.idempotency_key, SUMMARY_LIMIT),
        "primarySalesRep": {"identifier": draft.member},
        "company": {"id": to_wire_id(contact.company_id, "company")},
        "contact": {"id": to_wire_id(contact.contact_id, "contact")},
        "notes": draft.description,
    }
    if draft.starts_at is not None:
        body["expectedCloseDate"] = to_wire_time(draft.starts_at)
    if stage_id is not None:
        body["stage"] = {"id": stage_id}
    return body


def to_wire_activity(draft: PsaDraft) -> dict[str, Any]:
    """`POST /sales/activities`: `name` and `assignTo` are required (apis.md §1.2); linked to the opportunity."""
    body: dict[str, Any] = {
        "name": with_marker(draft.title, draft.idempotency_key, SUMMARY_LIMIT),
        "assignTo": {"identifier": draft.member},
        "notes": draft.description,
    }
    if draft.contact is not None:
        body["contact"] = {"id": to_wire_id(draft.contact.contact_id, "contact")}
        if draft.contact.company_id:
            body["company"] = {"id": to_wire_id(draft.contact.company_id, "company")}
    if draft.opportunity_id:
        body["opportunity"] = {"id": to_wire_id(draft.opportunity_id, "opportunity")}
    if draft.starts_at is not None:
        body["dateStart"] = to_wire_time(draft.starts_at)
    if draft.ends_at is not None:
        body["dateEnd"] = to_wire_time(draft.ends_at)
    return body


def to_wire_schedule_entry(draft: PsaDraft, *, type_identifier: str, object_id: int) -> dict[str, Any]:
    """`POST /schedule/entries` for `draft.member` (apis.md §1.2). Conflicts are allowed on purpose: the booking is
    already promised to the client, and an entry refused for overlapping would hide it from the technician's
    schedule; the overlap stays visible on the dispatch board instead."""
    if draft.starts_at is None or draft.ends_at is None:
        raise IntegrationRejected("A ConnectWise schedule entry needs a start and an end")
    return {
        "name": with_marker(draft.title, draft.idempotency_key, ENTRY_NAME_LIMIT),
        "objectId": object_id,
        "member": {"identifier": draft.member},
        "type": {"identifier": type_identifier},
        "dateStart": to_wire_time(draft.starts_at),
        "dateEnd": to_wire_time(draft.ends_at),
        "allowScheduleConflictsFlag": True,
    }


def to_wire_note(draft: PsaDraft) -> dict[str, Any]:
    """`POST /service/tickets/{id}/notes`. ConnectWise wants at least one of the detail / internal / resolution
    flags set [U]; a booking note is part of the discussion the client may see."""
    return {
        "text": f"{draft.description}\n\n{marker(draft.idempotency_key)}".strip(),
        "detailDescriptionFlag": True,
        "internalAnalysisFlag": False,
        "resolutionFlag": False,
    }


def to_wire_patch(changes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """ConnectWise PATCH bodies are JSON Patch operation arrays (RFC 6902), e.g. `[{"op": "replace", "path":
    "status", "value": {"id": 7}}]` [V: covenanttechnologysolutions/connectwise-rest README examples]."""
    return [{"op": "replace", "path": path, "value": value} for path, value in changes.items()]


def from_wire_contact(row: Mapping[str, Any], email: str) -> PsaContact:
    company = row.get("company") if isinstance(row.get("company"), dict) else {}
    name = " ".join(part for part in (row.get("firstName"), row.get("lastName")) if isinstance(part, str) and part)
    found = email
    for item in row.get("communicationItems") or []:
        value = item.get("value") if isinstance(item, dict) else None
        if isinstance(value, str) and value.strip().lower() == email.strip().lower():
            found = value
            break
    return PsaContact(
        contact_id=str(row["id"]),
        company_id=str(company.get("id", "")) if isinstance(company, dict) else "",
        name=name,
        email=found,
    )


TICKET_CONTACT_FIELDS = "id,company,contact,contactName,contactEmailAddress"
"""What `ticket_contact` reads of a ticket: its `contact` (`ContactReference`), the ticket's own copy of the contact's
name and address (`contactName`, max 62; `contactEmailAddress`, max 250) and `company` (ai-connor/connectwise:
model_ticket.go)."""

CONTACT_FIELDS = "id,firstName,lastName,company,communicationItems"
"""What `ticket_contact` reads of a contact when the ticket carries no address of its own (model_contact.go)."""


def from_wire_ticket_contact_id(ticket: Mapping[str, Any]) -> int | None:
    """The id in the ticket's `contact` reference, None when the ticket names no contact."""
    reference = ticket.get("contact")
    contact_id = reference.get("id") if isinstance(reference, dict) else None
    return contact_id if isinstance(contact_id, int) and not isinstance(contact_id, bool) else None


def _reference_id(row: Mapping[str, Any], name: str) -> str:
    reference = row.get(name)
    value = reference.get("id") if isinstance(reference, dict) else None
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else ""


def from_wire_ticket_contact(ticket: Mapping[str, Any]) -> PsaContact | None:
    """The ticket's contact as the ticket itself states it: the address an agent typed on this ticket (it may differ
    from the contact's own, e.g. a shared mailbox's contact with the real requester's address) is the one ConnectWise
    mails the ticket's updates to [3P: a service desk's ConnectWise training notes, training.jolera.com "Human
    generated tickets"]. None when the ticket names no contact or holds no address of its own."""
    contact_id = from_wire_ticket_contact_id(ticket)
    address = ticket.get("contactEmailAddress")
    if contact_id is None or not isinstance(address, str) or not address.strip():
        return None
    name = ticket.get("contactName")
    if not isinstance(name, str) or not name.strip():
        reference = ticket.get("contact")
        name = reference.get("name") if isinstance(reference, dict) else ""
    return PsaContact(
        contact_id=str(contact_id),
        company_id=_reference_id(ticket, "company"),
        name=" ".join(str(name or "").split()),
        email=address.strip(),
    )


def from_wire_contact_email(row: Mapping[str, Any]) -> PsaContact | None:
    """A contact by its e-mail communication item: the items whose category `communicationType` is "Email" (the
    category the contact look-up searches, apis.md §1.2), the one with `defaultFlag` first, else the first of them
    (`ContactCommunicationItem`, Jetbuilt/connect_wise:docs/ContactCommunicationItem.md). None without one."""
    items = [
        item
        for item in row.get("communicationItems") or []
        if isinstance(item, dict)
        and item.get("communicationType") == "Email"
        and isinstance(item.get("value"), str)
        and item["value"].strip()
    ]
    if not items:
        return None
    chosen = next((item for item in items if item.get("defaultFlag") is True), items[0])
    name = " ".join(part for part in (row.get("firstName"), row.get("lastName")) if isinstance(part, str) and part)
    return PsaContact(
        contact_id=str(row["id"]), company_id=_reference_id(row, "company"), name=name, email=chosen["value"].strip()
    )


def from_wire_ref(kind: PsaRecordKind, row: Mapping[str, Any]) -> PsaRef:
    """A ticket's id is the number people see ("ticket #1234"), so it doubles as `number`."""
    record_id = str(row["id"])
    return PsaRef(kind=kind, record_id=record_id, number=record_id if kind is PsaRecordKind.TICKET else "")


def from_wire_busy(row: Mapping[str, Any]) -> BusyInterval:
    return BusyInterval(
        starts_at=from_wire_time(row.get("dateStart")),
        ends_at=from_wire_time(row.get("dateEnd")),
        kind=BusyKind.EVENT,
        label=BUSY_LABEL,
    )


OPPORTUNITY_FIELDS = "id,name,stage,status"
"""What a recipient match reads of an opportunity (`fields`, apis.md §1.2): `name`, `stage`
(`OpportunityStageReference` `{id, name}`) and `status` (`OpportunityStatusReference`), ai-connor/connectwise:
build/docs/Opportunity.md."""


def from_wire_company_name(row: Mapping[str, Any]) -> str:
    """The display name in a record's `company` reference (`CompanyReference` `{id, identifier, name}`, all optional;
    ai-connor/connectwise:build/docs/CompanyReference.md); "" when it carries none."""
    reference = row.get("company")
    name = reference.get("name") if isinstance(reference, dict) else None
    return " ".join(name.split()) if isinstance(name, str) else ""


def from_wire_company_identifier(row: Mapping[str, Any]) -> str:
    """The `identifier` in a record's `company` reference; "" when it carries none."""
    reference = row.get("company")
    identifier = reference.get("identifier") if isinstance(reference, dict) else None
    return identifier.strip() if isinstance(identifier, str) else ""


def from_wire_open_statuses(rows: list[dict[str, Any]]) -> frozenset[int]:
    """Ids of `GET /sales/opportunities/statuses?conditions=closedFlag=false` rows that really are open: a row whose
    `closedFlag` is true (a server that ignored the condition) is left out; a missing flag reads as open, as the
    spec makes it nullable (ai-connor/connectwise:build/docs/OpportunityStatus.md)."""
    return frozenset(
        int(row["id"])
        for row in rows
        if isinstance(row.get("id"), int) and not isinstance(row.get("id"), bool) and row.get("closedFlag") is not True
    )


def to_wire_open_opportunities(statuses: frozenset[int], contact_id: str, company_id: str) -> str:
    """`conditions` for a recipient's open opportunities: an open status (`in`, apis.md §1.3) and the contact, or
    the contact's company when `company_id` is given (nested reference fields with `/`, apis.md §1.3). Ids are
    numbers here, so nothing a client typed reaches the expression."""
    ids = ",".join(str(status) for status in sorted(statuses))
    contact = to_wire_id(contact_id, "contact")
    who = f"contact/id={contact}"
    if company_id:
        who = f"({who} OR company/id={to_wire_id(company_id, 'company')})"
    return f"status/id in ({ids}) AND {who}"


def from_wire_opportunities(rows: list[dict[str, Any]], open_statuses: frozenset[int]) -> tuple[PsaOpportunity, ...]:
    """Opportunity rows as PsaOpportunity, newest (highest id) first; a row whose status is not one of the open ones
    is dropped, whatever the server's filtering did."""
    found: list[tuple[int, PsaOpportunity]] = []
    for row in rows:
        row_id = row.get("id")
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            continue
        status = row.get("status")
        status_id = status.get("id") if isinstance(status, dict) else None
        if status_id not in open_statuses:
            continue
        stage = row.get("stage")
        stage_name = stage.get("name") if isinstance(stage, dict) else None
        name = row.get("name")
        found.append(
            (
                row_id,
                PsaOpportunity(
                    opportunity_id=str(row_id),
                    name=" ".join(name.split()) if isinstance(name, str) else "",
                    stage=stage_name.strip() if isinstance(stage_name, str) else "",
                ),
            )
        )
    return tuple(opportunity for _, opportunity in sorted(found, key=lambda pair: pair[0], reverse=True))
