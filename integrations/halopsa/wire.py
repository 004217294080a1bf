"""Our PSA drafts to HaloPSA JSON and back: tickets, appointments, actions (notes), users, holidays and busy time.

The Halo swagger this follows is `redanthrax/halopsa-node:swagger.json`; SOURCES.md lists each rule and where it is
written down."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduling.errors import IntegrationRejected
from scheduling.model import BusyInterval, BusyKind, PsaContact, PsaDraft, PsaRecordKind, PsaRef

BUSY_LABEL = "HaloPSA appointment"
HOLIDAY_LABEL = "HaloPSA holiday"

_LIKE_WILDCARDS = re.compile(r"[%_\[\]]+")
"""SQL Server LIKE's special characters. Halo's swagger says only that `search` "filters based on the search string"
and `search_details` returns tickets whose details are "matching the search" [U: substring or LIKE]."""

_TICKET_ID = re.compile(r"[0-9]{1,10}")
_MAX_ID = 2**31 - 1
"""Ticket ids are whole numbers (`/Tickets/{id}`); the int32 bound is ours [U], so an absurd number is no ticket."""

_MARKER_EDGE = frozenset(" \t\r\n<>")
"""What may stand right before or after a marker: the start or end of the text, white space, or an HTML tag's
bracket (should Halo store the text as HTML [U])."""


def marker(idempotency_key: str) -> str:
    """The tag written into a record's text so a re-run can find it; Halo has no external-reference field on
    tickets, appointments and actions that we could filter on instead."""
    return f"[slotwise:{idempotency_key}]"


def has_marker(record: dict[str, Any], field: str, idempotency_key: str) -> bool:
    """True only for this key's own marker, standing alone: `[slotwise:b[x]1]` is not found inside
    `[slotwise:b[x]1]z]` (another booking's key), which a plain `in` would accept."""
    text = record.get(field)
    if not isinstance(text, str):
        return False
    tag = marker(idempotency_key)
    start = text.find(tag)
    while start != -1:
        end = start + len(tag)
        before_ok = start == 0 or text[start - 1] in _MARKER_EDGE
        after_ok = end == len(text) or text[end] in _MARKER_EDGE
        if before_ok and after_ok:
            return True
        start = text.find(tag, start + 1)
    return False


def to_wire_search(text: str) -> str:
    """A search term that finds `text` whether Halo matches a plain substring or runs SQL Server LIKE: the longest
    stretch of `text` without `%`, `_`, `[` or `]`. Under LIKE, `[x]` is a character class, so the whole marker
    `[slotwise:b[x]1]` would not even match itself; the stretch matches under both readings. The answer is a
    superset, so callers match the record exactly afterwards."""
    pieces = [piece for piece in _LIKE_WILDCARDS.split(text) if piece.strip()]
    return max(pieces, key=len) if pieces else ""


def to_wire_ticket_id(reference: str) -> int | None:
    """The ticket id in what an agent typed ("1001" or "#1001"): Halo shows a ticket by its id (the `$FAULTID` a
    custom tab receives is that id too). None for anything that cannot be one (an int32, 1 and up)."""
    text = reference.strip().removeprefix("#").strip()
    if not _TICKET_ID.fullmatch(text) or not 0 < int(text) <= _MAX_ID:
        return None
    return int(text)


def to_wire_id(value: str, what: str) -> int:
    """Halo ids are integers (the swagger types them int32); our ports carry them as strings."""
    try:
        return int(value)
    except ValueError:
        raise IntegrationRejected(f"HaloPSA {what} ids are numbers, not {value!r}") from None


def to_wire_time(moment: datetime) -> str:
    """ISO-8601 in UTC with a `Z`, the shape Halo's own examples send (apis.md §3)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to the HaloPSA wire format")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_wire_time(value: str) -> datetime:
    """Halo answers UTC times, often without a zone suffix ("2026-11-24T15:00:00"); a missing zone means UTC."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _with_marker(text: str, idempotency_key: str) -> str:
    return f"{text}\n\n{marker(idempotency_key)}" if text else marker(idempotency_key)


def _contact_fields(contact: PsaContact | None) -> dict[str, Any]:
    if contact is None:
        return {}
    return {"client_id": to_wire_id(contact.company_id, "client"), "user_id": to_wire_id(contact.contact_id, "user")}


def to_wire_user(name: str, email: str, site_id: int) -> dict[str, Any]:
    """One element of the array POST /api/Users takes: a user needs a `name` and the `site_id` it belongs to, and
    `emailaddress` is where the look-up finds it again (n8n's HaloPSA node, user create; apis.md §3). A blank name
    falls back to the address's local part."""
    return {"name": " ".join(name.split()) or email.partition("@")[0], "emailaddress": email, "site_id": site_id}


def to_wire_ticket(draft: PsaDraft, *, tickettype_id: int | None, status_id: int | None) -> dict[str, Any]:
    """One element of the array POST /api/Tickets takes. The marker goes into `details`, which GET /api/Tickets
    filters with `search_details` ("Returns tickets based on the details matching the search", swagger)."""
    ticket: dict[str, Any] = {
        "summary": draft.title,
        "details": _with_marker(draft.description, draft.idempotency_key),
        **_contact_fields(draft.contact),
    }
    if draft.member:
        ticket["agent_id"] = to_wire_id(draft.member, "agent")
    if tickettype_id is not None:
        ticket["tickettype_id"] = tickettype_id
    if status_id is not None:
        ticket["status_id"] = status_id
    return ticket


def to_wire_appointment(draft: PsaDraft) -> dict[str, Any]:
    """One element of the array POST /api/Appointment takes (field names from the Appointment schema, apis.md §3).
    Halo has no opportunities, so `draft.opportunity_id` has nowhere to go; a ticket link is kept."""
    if draft.starts_at is None or draft.ends_at is None:
        raise IntegrationRejected("A HaloPSA appointment needs a start and an end")
    appointment: dict[str, Any] = {
        "subject": draft.title,
        "start_date": to_wire_time(draft.starts_at),
        "end_date": to_wire_time(draft.ends_at),
        "agent_id": to_wire_id(draft.member, "agent"),
        "note": _with_marker(draft.description, draft.idempotency_key),
        "allday": False,
        "is_private": False,
        **_contact_fields(draft.contact),
    }
    if draft.ticket_id:
        appointment["ticket_id"] = to_wire_id(draft.ticket_id, "ticket")
    return appointment


def to_wire_move(record_id: str, starts_at: datetime, ends_at: datetime) -> dict[str, Any]:
    """Halo updates by POSTing the record with its `id` (the same array endpoint that creates)."""
    return {
        "id": to_wire_id(record_id, "appointment"),
        "start_date": to_wire_time(starts_at),
        "end_date": to_wire_time(ends_at),
    }


def to_wire_note(draft: PsaDraft) -> dict[str, Any]:
    """One element of the array POST /api/Actions takes: a note on ticket `draft.ticket_id`."""
    if not draft.ticket_id:
        raise IntegrationRejected("A HaloPSA note needs the ticket it belongs to")
    return {
        "ticket_id": to_wire_id(draft.ticket_id, "ticket"),
        "note": _with_marker(draft.description, draft.idempotency_key),
    }


def to_wire_status(ticket_id: str, status_id: int) -> dict[str, Any]:
    return {"id": to_wire_id(ticket_id, "ticket"), "status_id": status_id}


def from_wire_ref(kind: PsaRecordKind, record: dict[str, Any]) -> PsaRef:
    """A Halo ticket's id is also the number agents see, so it doubles as `number`."""
    record_id = str(record["id"])
    return PsaRef(kind=kind, record_id=record_id, number=record_id if kind is PsaRecordKind.TICKET else "")


def from_wire_contact(user: dict[str, Any]) -> PsaContact:
    return PsaContact(
        contact_id=str(user["id"]),
        company_id=str(user.get("client_id", "")),
        name=str(user.get("name", "")),
        email=str(user.get("emailaddress", "")),
    )


def from_wire_client_name(user: dict[str, Any]) -> str:
    """The client's display name a user row carries, `client_name` (the `Users` schema, as GET /Users and
    GET /Users/{id} answer it); "" when it carries none."""
    name = user.get("client_name")
    return " ".join(name.split()) if isinstance(name, str) else ""


def from_wire_ticket_user_id(ticket: dict[str, Any]) -> int | None:
    """The ticket's end user, `user_id` (the Faults schema's link to Users), None when it has none."""
    user_id = ticket.get("user_id")
    return user_id if isinstance(user_id, int) and not isinstance(user_id, bool) and user_id > 0 else None


def from_wire_user_with_email(user: dict[str, Any]) -> PsaContact | None:
    """A user as a contact when it has an address in `emailaddress`; a client's catch-all "General User" (swagger
    GET /Users `exclude_generaluser`) normally has none, so it gives None rather than someone to write to."""
    address = user.get("emailaddress")
    if not isinstance(address, str) or not address.strip():
        return None
    contact = from_wire_contact(user)
    return PsaContact(contact.contact_id, contact.company_id, " ".join(contact.name.split()), address.strip())


def from_wire_busy(appointment: dict[str, Any]) -> BusyInterval | None:
    """An appointment row (start_date/end_date, the Appointment schema) as busy time; None when it has no times."""
    starts, ends = appointment.get("start_date"), appointment.get("end_date")
    if not isinstance(starts, str) or not starts or not isinstance(ends, str) or not ends:
        return None
    starts_at, ends_at = from_wire_time(starts), from_wire_time(ends)
    if ends_at <= starts_at:
        # An all-day row may carry the same start and end [U]; block the day rather than nothing.
        ends_at = starts_at + timedelta(days=1)
    return BusyInterval(starts_at=starts_at, ends_at=ends_at, kind=BusyKind.EVENT, label=BUSY_LABEL)


def from_wire_holiday(holiday: dict[str, Any]) -> BusyInterval | None:
    """A row of GET /api/Holiday (swagger schema `Holidays`: `date`, `end_date`, `allday`, `agent_id`, all
    date-times nullable) as busy time. Where the row leaves it open, the reading that blocks more is taken:
    an all-day holiday covers whole UTC days [U: Halo may mean the agent's own days], and a missing or empty
    end blocks one day from the start [U]."""
    starts = holiday.get("date") or holiday.get("date_datetime")
    if not isinstance(starts, str) or not starts:
        return None
    starts_at = from_wire_time(starts)
    ends = holiday.get("end_date")
    ends_at = from_wire_time(ends) if isinstance(ends, str) and ends else starts_at
    if holiday.get("allday") is True:
        starts_at = starts_at.replace(hour=0, minute=0, second=0, microsecond=0)
        ends_at = ends_at.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    if ends_at <= starts_at:
        ends_at = starts_at + timedelta(days=1)
    return BusyInterval(starts_at=starts_at, ends_at=ends_at, kind=BusyKind.EVENT, label=HOLIDAY_LABEL)
