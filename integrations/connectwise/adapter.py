"""ConnectWisePsa: the PsaClient port over ConnectWise PSA (tickets, notes, opportunities, activities, schedule)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from integrations.connectwise.client import MAX_PAGE_SIZE, NOT_FOUND, ConnectWiseClient
from integrations.connectwise.config import ConnectWiseConfig
from integrations.connectwise.wire import (
    ACTIVITY_TYPE,
    CONTACT_FIELDS,
    OPPORTUNITY_FIELDS,
    SERVICE_TICKET_TYPE,
    TICKET_CONTACT_FIELDS,
    from_wire_busy,
    from_wire_company_identifier,
    from_wire_company_name,
    from_wire_contact,
    from_wire_contact_email,
    from_wire_open_statuses,
    from_wire_opportunities,
    from_wire_ref,
    from_wire_ticket_contact,
    from_wire_ticket_contact_id,
    has_marker,
    marker_probe,
    pick_email_type_id,
    to_wire_activity,
    to_wire_company,
    to_wire_condition_time,
    to_wire_contact,
    to_wire_id,
    to_wire_note,
    to_wire_open_opportunities,
    to_wire_opportunity,
    to_wire_patch,
    to_wire_schedule_entry,
    to_wire_string,
    to_wire_ticket,
    to_wire_ticket_id,
    to_wire_time,
)
from integrations.rate_windows import InMemoryVendorLimits
from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable
from scheduling.model import BusyInterval, PsaContact, PsaDraft, PsaRecipientMatch, PsaRecordKind, PsaRef
from scheduling.ports import MATCHED_OPPORTUNITIES_LIMIT, VendorLimits

_LOOKUP_PAGE_SIZE = MAX_PAGE_SIZE
"""Idempotency look-ups read every candidate the `contains` probe returns, in pages of the largest size ConnectWise
allows (apis.md §1.4), and check the exact marker on each: a server that runs `contains` as a LIKE, or text that
merely quotes a marker, may return many more hits than the one record we made."""

_MARKED_FIELD: dict[PsaRecordKind, tuple[str, str]] = {
    PsaRecordKind.TICKET: ("service/tickets", "summary"),
    PsaRecordKind.OPPORTUNITY: ("sales/opportunities", "name"),
    PsaRecordKind.ACTIVITY: ("sales/activities", "name"),
    PsaRecordKind.SCHEDULE_ENTRY: ("schedule/entries", "name"),
}
"""Where each kind lives and which text field carries its `[slotwise:KEY]` marker."""


class ConnectWisePsa:
    """One tenant's ConnectWise PSA. Every create first searches for its idempotency marker with `conditions`."""

    def __init__(
        self,
        config: ConnectWiseConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], datetime] | None = None,
        limits: VendorLimits | None = None,
    ) -> None:
        self._config = config
        self._limits: VendorLimits = limits or InMemoryVendorLimits()
        self._client = ConnectWiseClient(session, config, clock=clock)
        self._board_ids: dict[str, int] = {}
        self._status_ids: dict[tuple[int, str], int] = {}
        self._email_type_id: int | None = None
        self._open_statuses: frozenset[int] | None = None

    async def test_connection(self) -> None:
        """`GET /system/info`: one cheap authenticated call (the ConnectWiseManageAPI PowerShell module validates
        logins the same way). On cloud, a 404 here usually means a wrong company id, codebase or keys rather than a
        missing endpoint (ConnectWise "PSA API Requests", apis.md §1.5)."""
        answer = await self._client.get("system/info", allow_not_found=True)
        if answer is NOT_FOUND:
            raise IntegrationAuthError(
                "ConnectWise answered 404 for /system/info: check the site URL, codebase, company id and keys"
            )

    async def find_contact(self, email: str) -> PsaContact | None:
        """E-mail lives in the contact's `communicationItems[]`, searched with `childConditions` (apis.md §1.2)."""
        address = email.strip()
        row = await self._find_contact_row(address)
        return from_wire_contact(row, address) if row is not None else None

    async def ticket_web_url(self, ticket_id: str, number: str) -> str:
        """The service-ticket screen of ConnectWise PSA's web app:
        `https://{site}/{codebase}/services/system_io/Service/fv_sr100_request.rails?service_recid={id}&companyName=
        {company}`. ConnectWise documents no linking URL; this is the form integrations have used since 2017
        (SOURCES.md, "Ticket web links"). The web app's host is the API's without its `api-` prefix
        (api-na.myconnectwise.net serves the API of na.myconnectwise.net)."""
        if not ticket_id.isdigit():
            return ""
        site = urlsplit(self._config.site_url)
        host = site.netloc.removeprefix("api-")
        query = urlencode({"service_recid": ticket_id, "companyName": self._config.company_id})
        return (
            f"{site.scheme}://{host}/{self._config.codebase}/services/system_io/Service/fv_sr100_request.rails?{query}"
        )

    async def match_recipient(self, email: str) -> PsaRecipientMatch | None:
        """The contact (find_contact's look-up), its company's name from the contact's own `company` reference
        (`CompanyReference` `{id, identifier, name}`, ai-connor/connectwise:model_company_reference.go; read by id only
        when the reference carries no name), and its open opportunities: `GET /sales/opportunities` with
        `conditions=status/id in (...) AND (contact/id=C OR company/id=K)`, `orderBy=id desc`, one page of
        MATCHED_OPPORTUNITIES_LIMIT. "Open" is a status whose `closedFlag` is false (`OpportunityStatus`,
        `GET /sales/opportunities/statuses`, ai-connor/connectwise:build/docs/OpportunityStatus.md): the Opportunity
        model has no closed flag of its own (build/docs/Opportunity.md), and tenants name their statuses, so the
        open ones are read once per connection. A contact of the catch-all company gets its own opportunities
        only."""
        address = email.strip()
        row = await self._find_contact_row(address)
        if row is None:
            return None
        contact = from_wire_contact(row, address)
        company_name = from_wire_company_name(row)
        if not company_name and contact.company_id:
            company = await self._client.get(
                f"company/companies/{to_wire_id(contact.company_id, 'company')}",
                {"fields": "id,name"},
                allow_not_found=True,
            )
            company_name = str(company.get("name") or "") if isinstance(company, dict) else ""
        catch_all = from_wire_company_identifier(row).casefold() == self._config.fallback_company_identifier.casefold()
        statuses = await self._open_opportunity_statuses()
        if not statuses:
            return PsaRecipientMatch(contact, company_name, ())
        rows = await self._client.get_list(
            "sales/opportunities",
            {
                "conditions": to_wire_open_opportunities(
                    statuses, contact.contact_id, "" if catch_all else contact.company_id
                ),
                "orderBy": "id desc",
                "fields": OPPORTUNITY_FIELDS,
            },
            limit=MATCHED_OPPORTUNITIES_LIMIT,
        )
        opportunities = from_wire_opportunities(rows, statuses)[:MATCHED_OPPORTUNITIES_LIMIT]
        return PsaRecipientMatch(contact, company_name, opportunities)

    async def _open_opportunity_statuses(self) -> frozenset[int]:
        """Ids of the tenant's opportunity statuses that are not closed, read once per connection."""
        if self._open_statuses is None:
            rows = await self._client.get_list(
                "sales/opportunities/statuses", {"conditions": "closedFlag=false", "orderBy": "id asc"}
            )
            self._open_statuses = from_wire_open_statuses(rows)
        return self._open_statuses

    async def _find_contact_row(self, address: str) -> dict[str, Any] | None:
        """The oldest active contact holding this exact address (any case) in an e-mail communication item; text
        without an `@` is no address and costs no request."""
        if not address or "@" not in address:
            return None
        rows = await self._client.get_list(
            "company/contacts",
            {
                "childConditions": f"communicationItems/value={to_wire_string(address)}"
                ' AND communicationItems/communicationType="Email"',
                "conditions": "inactiveFlag=false",
                "orderBy": "id asc",
            },
        )
        wanted = address.lower()
        for row in rows:
            values = [item.get("value") for item in row.get("communicationItems") or [] if isinstance(item, dict)]
            if any(isinstance(value, str) and value.strip().lower() == wanted for value in values):
                return row
        return None

    async def find_ticket(self, reference: str) -> PsaRef | None:
        """`GET /service/tickets/{id}`, the spec's get-by-id operation (`ai-connor/connectwise:api_tickets.go`).
        ConnectWise displays a ticket by its id, so id and number are the same text; 404 means no such ticket
        (apis.md §1.5). Only `id` is asked for (`fields`, apis.md §1.2): the look-up reads nothing it does not need."""
        ticket_id = to_wire_ticket_id(reference)
        if ticket_id is None:
            return None
        answer = await self._client.get(f"service/tickets/{ticket_id}", {"fields": "id"}, allow_not_found=True)
        if answer is NOT_FOUND or not isinstance(answer, dict) or answer.get("id") != ticket_id:
            return None
        return from_wire_ref(PsaRecordKind.TICKET, answer)

    async def ticket_contact(self, ticket_id: str) -> PsaContact | None:
        """`GET /service/tickets/{id}?fields=id,company,contact,contactName,contactEmailAddress` (get by id with
        `fields`, `ai-connor/connectwise:api_tickets.go`; the fields: `model_ticket.go`). A ticket that states its
        contact's address itself answers in that one call: it is the address ConnectWise mails the ticket's updates
        to, which an agent may have changed on this ticket (wire.from_wire_ticket_contact). Otherwise the contact
        is read, `GET /company/contacts/{id}?fields=id,firstName,lastName,company,communicationItems` (get by id,
        `Jetbuilt/connect_wise:docs/ContactsApi.md` `get_company_contacts_by_id`), and its e-mail item gives the
        address, the default one first. A ticket or contact ConnectWise answers 404 for (apis.md §1.5), a ticket
        without a contact, and a contact without an e-mail item are all None."""
        number = to_wire_ticket_id(ticket_id)
        if number is None:
            return None
        ticket = await self._client.get(
            f"service/tickets/{number}", {"fields": TICKET_CONTACT_FIELDS}, allow_not_found=True
        )
        if ticket is NOT_FOUND or not isinstance(ticket, dict) or ticket.get("id") != number:
            return None
        stated = from_wire_ticket_contact(ticket)
        if stated is not None:
            return stated
        contact_id = from_wire_ticket_contact_id(ticket)
        if contact_id is None:
            return None
        contact = await self._client.get(
            f"company/contacts/{contact_id}", {"fields": CONTACT_FIELDS}, allow_not_found=True
        )
        if contact is NOT_FOUND or not isinstance(contact, dict) or contact.get("id") != contact_id:
            return None
        return from_wire_contact_email(contact)

    async def find_or_create_contact(self, name: str, email: str) -> PsaContact | None:
        """A first-time client becomes a contact of the fallback company (`POST /company/contacts`, apis.md §1.2).

        Contacts carry no idempotency marker: the e-mail address is the key. So the look-up runs first, and again
        when the create's answer is lost (timeout, dropped connection, 5xx): ConnectWise may have saved the contact
        anyway, and a blind retry would add a second one."""
        address = email.strip()
        company = self._config.fallback_company_identifier
        if not address:
            return None
        # Across processes when the limits are shared: one contact per address, however many workers book it.
        site = f"{self._config.api_base.lower()}|{self._config.company_id.lower()}"
        async with self._limits.lock(f"contact:connectwise:{site}|{address.casefold()}"):
            found = await self.find_contact(address)
            if found is not None or not company:
                return found
            body = to_wire_contact(name, address, company, email_type_id=await self._email_communication_type())
            try:
                created = await self._client.post("company/contacts", body)
            except IntegrationUnavailable:
                found = await self.find_contact(address)
                if found is None:
                    raise
                return found
            return from_wire_contact(created, address)

    async def create_record(self, kind: PsaRecordKind, draft: PsaDraft) -> PsaRef:
        if kind is PsaRecordKind.NOTE:
            return await self._create_note(draft)
        existing = await self._find_marked(kind, draft.idempotency_key)
        if existing is not None:
            return from_wire_ref(kind, existing)
        if kind is PsaRecordKind.TICKET:
            created = await self._client.post("service/tickets", await self._ticket_body(draft))
        elif kind is PsaRecordKind.OPPORTUNITY:
            stage_id = await self._stage_id(draft.stage) if draft.stage else None
            created = await self._client.post("sales/opportunities", to_wire_opportunity(draft, stage_id=stage_id))
        elif kind is PsaRecordKind.ACTIVITY:
            created = await self._client.post("sales/activities", to_wire_activity(draft))
        elif draft.ticket_id:
            body = to_wire_schedule_entry(
                draft, type_identifier=SERVICE_TICKET_TYPE, object_id=to_wire_id(draft.ticket_id, "ticket")
            )
            created = await self._client.post("schedule/entries", body)
        elif draft.activity_id:
            created = await self._schedule_on_activity(draft, to_wire_id(draft.activity_id, "activity"))
        else:
            created = await self._schedule_through_activity(draft)
        return from_wire_ref(kind, created)

    async def set_ticket_status(self, ticket_id: str, status: str) -> None:
        """Statuses belong to a board (`/service/boards/{id}/statuses`), so the name is resolved on the ticket's."""
        ticket_number = to_wire_id(ticket_id, "ticket")
        ticket = await self._client.get(f"service/tickets/{ticket_number}")
        board = ticket.get("board") if isinstance(ticket, dict) else None
        if not isinstance(board, dict) or not isinstance(board.get("id"), int):
            raise IntegrationRejected(f"ConnectWise ticket {ticket_number} has no service board")
        status_id = await self._status_id(board["id"], status)
        await self._client.patch(f"service/tickets/{ticket_number}", to_wire_patch({"status": {"id": status_id}}))

    async def move_schedule_entry(self, ref: PsaRef, starts_at: datetime, ends_at: datetime) -> None:
        entry_id = to_wire_id(ref.record_id, "schedule entry")
        changes = {"dateStart": to_wire_time(starts_at), "dateEnd": to_wire_time(ends_at)}
        await self._client.patch(f"schedule/entries/{entry_id}", to_wire_patch(changes))

    async def remove_schedule_entry(self, ref: PsaRef) -> None:
        """Idempotent: an entry that is already gone counts as removed (DELETE answers 204, apis.md §1.5)."""
        entry_id = to_wire_id(ref.record_id, "schedule entry")
        await self._client.delete(f"schedule/entries/{entry_id}", allow_not_found=True)

    async def busy_times(self, member: str, starts_at: datetime, ends_at: datetime) -> list[BusyInterval]:
        """The member's schedule entries overlapping [starts_at, ends_at): start before the end, end after the start."""
        conditions = (
            f"member/identifier={to_wire_string(member)}"
            f" AND dateStart < {to_wire_condition_time(ends_at)}"
            f" AND dateEnd > {to_wire_condition_time(starts_at)}"
        )
        rows = await self._client.get_list("schedule/entries", {"conditions": conditions, "orderBy": "dateStart asc"})
        busy = [from_wire_busy(row) for row in rows if row.get("dateStart") and row.get("dateEnd")]
        return sorted(busy, key=lambda interval: (interval.starts_at, interval.ends_at))

    async def _find_marked(self, kind: PsaRecordKind, key: str) -> dict[str, Any] | None:
        """Every record whose marked field `contains` the probe, all pages of them, oldest first; the first that
        holds the exact marker is ours. `fields` keeps the pages small (apis.md §1.2 list parameters)."""
        path, field = _MARKED_FIELD[kind]
        rows = await self._client.get_list(
            path,
            {
                "conditions": f"{field} contains {to_wire_string(marker_probe(key))}",
                "orderBy": "id asc",
                "fields": f"id,{field}",
            },
            page_size=_LOOKUP_PAGE_SIZE,
        )
        return next((row for row in rows if has_marker(row, field, key)), None)

    async def _email_communication_type(self) -> int:
        """The id of the tenant's e-mail communication type, read once per connection (see wire.EMAIL_COMMUNICATION_
        TYPE for why an id rather than the name)."""
        if self._email_type_id is None:
            rows = await self._client.get_list(
                "company/communicationTypes", {"conditions": "emailFlag=true", "orderBy": "id asc"}
            )
            type_id = pick_email_type_id(rows)
            if type_id is None:
                raise IntegrationRejected(
                    "ConnectWise has no communication type for e-mail (emailFlag) to give a contact"
                )
            self._email_type_id = type_id
        return self._email_type_id

    async def _create_note(self, draft: PsaDraft) -> PsaRef:
        """Notes of one ticket are few, so the look-up reads them all and matches the marker here, instead of relying
        on `conditions` over the long `text` column [U: whether ConnectWise filters on it]."""
        if not draft.ticket_id:
            raise IntegrationRejected("A ConnectWise ticket note needs the ticket it belongs to")
        ticket_number = to_wire_id(draft.ticket_id, "ticket")
        path = f"service/tickets/{ticket_number}/notes"
        for note in await self._client.get_list(path, {"orderBy": "id asc"}):
            if has_marker(note, "text", draft.idempotency_key):
                return from_wire_ref(PsaRecordKind.NOTE, note)
        created = await self._client.post(path, to_wire_note(draft))
        return from_wire_ref(PsaRecordKind.NOTE, created)

    async def _ticket_body(self, draft: PsaDraft) -> dict[str, Any]:
        company = to_wire_company(draft.contact, self._config.fallback_company_identifier)
        if company is None:
            raise IntegrationRejected(
                "A ConnectWise ticket needs a company: the booking has no PSA contact and no fallback company is set"
            )
        board_id = await self._board_id(draft.board or self._config.default_board)
        status_id = await self._status_id(board_id, draft.status) if draft.status else None
        return to_wire_ticket(draft, board_id=board_id, company=company, status_id=status_id)

    async def _schedule_through_activity(self, draft: PsaDraft) -> dict[str, Any]:
        """A schedule entry needs an object to schedule: the ticket (type `S`) or an activity (type `C`, apis.md
        §1.2). With neither a ticket nor an activity from an earlier step, the booking becomes a dated activity for
        the member, found or created by its own key (`KEY:activity`), and the entry goes on it."""
        activity = await self.create_record(
            PsaRecordKind.ACTIVITY,
            PsaDraft(
                idempotency_key=f"{draft.idempotency_key}:activity",
                title=draft.title,
                description=draft.description,
                contact=draft.contact,
                member=draft.member,
                starts_at=draft.starts_at,
                ends_at=draft.ends_at,
                opportunity_id=draft.opportunity_id,
            ),
        )
        return await self._schedule_on_activity(draft, to_wire_id(activity.record_id, "activity"))

    async def _schedule_on_activity(self, draft: PsaDraft, activity_id: int) -> dict[str, Any]:
        """A type-`C` entry whose `objectId` is the activity (see SOURCES.md, decision 8). Whether ConnectWise puts
        a dated activity on its assignee's schedule by itself is not documented [U], so an existing type-`C` entry of
        this member on the activity is reused, and one is created only when there is none."""
        conditions = (
            f"objectId={activity_id} AND type/identifier={to_wire_string(ACTIVITY_TYPE)}"
            f" AND member/identifier={to_wire_string(draft.member)}"
        )
        existing = await self._client.get_list(
            "schedule/entries", {"conditions": conditions, "orderBy": "id asc"}, limit=1
        )
        if existing:
            return existing[0]
        body = to_wire_schedule_entry(draft, type_identifier=ACTIVITY_TYPE, object_id=activity_id)
        return await self._client.post("schedule/entries", body)

    async def _board_id(self, name: str) -> int:
        if name not in self._board_ids:
            rows = await self._client.get_list(
                "service/boards", {"conditions": f"name={to_wire_string(name)} AND inactiveFlag=false"}, limit=1
            )
            if not rows or not isinstance(rows[0].get("id"), int):
                raise IntegrationRejected(f"ConnectWise has no active service board named {name!r}")
            self._board_ids[name] = rows[0]["id"]
        return self._board_ids[name]

    async def _status_id(self, board_id: int, name: str) -> int:
        if (board_id, name) not in self._status_ids:
            rows = await self._client.get_list(
                f"service/boards/{board_id}/statuses", {"conditions": f"name={to_wire_string(name)}"}, limit=1
            )
            if not rows or not isinstance(rows[0].get("id"), int):
                raise IntegrationRejected(f"ConnectWise service board {board_id} has no status named {name!r}")
            self._status_ids[(board_id, name)] = rows[0]["id"]
        return self._status_ids[(board_id, name)]

    async def _stage_id(self, name: str) -> int:
        rows = await self._client.get_list("sales/stages", {"conditions": f"name={to_wire_string(name)}"}, limit=1)
        if not rows or not isinstance(rows[0].get("id"), int):
            raise IntegrationRejected(f"ConnectWise has no opportunity stage named {name!r}")
        stage_id: int = rows[0]["id"]
        return stage_id
