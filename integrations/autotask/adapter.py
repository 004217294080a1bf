"""AutotaskPsa: the PsaClient port over the Autotask REST API, idempotent by a marker written into each record."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp

from integrations.autotask.client import NO_RECORD_TEXT, AutotaskClient
from integrations.autotask.config import AutotaskConfig
from integrations.autotask.wire import (
    OPPORTUNITY_FIELDS,
    Filter,
    any_of,
    carries_marker,
    chunked_ids,
    condition,
    from_schedule_entry_id,
    from_wire_active_statuses,
    from_wire_busy,
    from_wire_company_id,
    from_wire_company_name,
    from_wire_contact,
    from_wire_contact_first_email,
    from_wire_opportunities,
    from_wire_picklist,
    from_wire_picklist_default,
    from_wire_picklist_labels,
    from_wire_ref,
    from_wire_ticket_contact_id,
    from_wire_ticket_ref,
    marker_filter,
    to_schedule_entry_id,
    to_wire_appointment,
    to_wire_contact,
    to_wire_datetime,
    to_wire_move,
    to_wire_opportunity,
    to_wire_service_call,
    to_wire_service_call_resource,
    to_wire_service_call_ticket,
    to_wire_status_change,
    to_wire_ticket,
    to_wire_ticket_note,
    to_wire_ticket_reference,
    to_wire_ticket_secondary_resource,
    to_wire_todo,
)
from integrations.rate_windows import InMemoryVendorLimits
from scheduling.errors import IntegrationRejected, IntegrationUnavailable
from scheduling.model import BusyInterval, PsaContact, PsaDraft, PsaRecipientMatch, PsaRecordKind, PsaRef
from scheduling.ports import MATCHED_OPPORTUNITIES_LIMIT, VendorLimits

PIPELINE_STAGE_SETTING = "pipeline_stage"
"""The workflow action setting that names an opportunity's stage (workflows/steps.py)."""


def _number(value: str, what: str) -> int:
    """Autotask ids are integers; anything else is a configuration mistake no retry fixes."""
    try:
        return int(value)
    except ValueError:
        raise IntegrationRejected(f"Autotask {what} must be a number, not {value!r}") from None


def _ticket_company(ticket: Mapping[str, Any]) -> int | None:
    """The company a ticket is for: a service call on it is a visit to that company, whoever booked it (an existing
    ticket's customer need not be the booking client's company) [U: ServiceCallsEntity.htm does not say the two must
    match; this is the reading that keeps the call and its ticket together]."""
    company = ticket.get("companyID")
    return company if isinstance(company, int) and not isinstance(company, bool) else None


class AutotaskPsa:
    """Tickets, opportunities, To-Dos, appointments, service calls and ticket notes in one tenant's Autotask database.

    Idempotency: every create writes `[slotwise:KEY]` into the record's text and first looks for it, so a re-run
    after a lost response returns the record instead of creating another. The look-up sends a `contains` probe
    without the `[` (to_wire_marker_probe), reads every page of hits, and adopts only a record whose text holds the
    exact marker. Link records (ticket secondary resource, service-call ticket, service-call resource) are found by
    their ids instead. A schedule entry of several records looks for each one first, so a re-run finishes it.
    """

    def __init__(
        self,
        config: AutotaskConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], datetime] | None = None,
        limits: VendorLimits | None = None,
    ) -> None:
        self._config = config
        self._limits: VendorLimits = limits or InMemoryVendorLimits()
        self._client = AutotaskClient(config, session, limits)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._fields: dict[str, dict[str, Any]] = {}

    @property
    def client(self) -> AutotaskClient:
        return self._client

    async def test_connection(self) -> None:
        """Re-discover the zone, then read the ticket field metadata: proves the credentials and warms the picklists."""
        await self._client.api_base(refresh=True)
        self._fields["Tickets"] = await self._client.field_info("Tickets")

    async def ticket_web_url(self, ticket_id: str, number: str) -> str:
        """Autotask's ExecuteCommand "Ticket Detail by Ticket Number" link, which Autotask documents for opening a
        ticket from an email: `{webUrl}Autotask/AutotaskExtend/ExecuteCommand.aspx?Code=OpenTicketDetail&
        TicketNumber=T20261124.0001` (TicketID=<id> when the number is unknown). SOURCES.md, "Ticket web links"."""
        root = (await self._client.web_url()).rstrip("/")
        if not root or not (number or ticket_id):
            return ""
        which = {"TicketNumber": number} if number and number != ticket_id else {"TicketID": ticket_id}
        return f"{root}/Autotask/AutotaskExtend/ExecuteCommand.aspx?" + urlencode({"Code": "OpenTicketDetail", **which})

    async def find_contact(self, email: str) -> PsaContact | None:
        item = await self._find_contact_item(email)
        return from_wire_contact(item, email) if item is not None else None

    async def match_recipient(self, email: str) -> PsaRecipientMatch | None:
        """Three requests, each one query or get with a filter: the contact (find_contact's query), its company
        (`GET Companies/{id}` for `companyName`, CompaniesEntity.htm), and one page of its open opportunities
        (`POST Opportunities/query` with `status in [active ids]` and `contactID eq` or `companyID eq`, only the
        fields shown, `IncludeFields`; REST_Basic_Query_Calls.htm, REST_Advanced_Query_Features.htm). "Open" is the
        status picklist's "Active" (OpportunitiesEntity.htm; ids from `entityInformation/fields`, read once per
        connection, as the stage picklist is). Autotask sorts nothing, so the newest (highest ids) are picked here
        from the first page of at most `page_size` (500) rows. A contact of the catch-all company gets its own
        opportunities only."""
        address = email.strip()
        item = await self._find_contact_item(address)
        if item is None:
            return None
        contact = from_wire_contact(item, address)
        company_id = from_wire_company_id(item)
        company = await self._client.get("Companies", company_id) if company_id is not None else None
        company_name = from_wire_company_name(company) if company else ""
        info = await self._field_info("Opportunities")
        active = from_wire_active_statuses(info)
        if not active:
            return PsaRecipientMatch(contact, company_name, ())
        whose = [condition("eq", "contactID", _number(contact.contact_id, "contact ids"))]
        if company_id is not None and company_id != self._config.fallback_company_id:
            whose.append(condition("eq", "companyID", company_id))
        items = await self._client.query_page(
            "Opportunities",
            [condition("in", "status", sorted(active)), any_of(*whose) if len(whose) > 1 else whose[0]],
            include_fields=OPPORTUNITY_FIELDS,
        )
        opportunities = from_wire_opportunities(items, active, from_wire_picklist_labels(info, "stage"))
        return PsaRecipientMatch(contact, company_name, opportunities[:MATCHED_OPPORTUNITIES_LIMIT])

    async def _find_contact_item(self, email: str) -> dict[str, Any] | None:
        """The contact holding this address in any of its three email fields (apis.md §2.3), active ones first,
        then the oldest; text without an `@` is no address and costs no request."""
        address = email.strip()
        if not address or "@" not in address:
            return None
        items = await self._client.query(
            "Contacts",
            [
                any_of(
                    condition("eq", "emailAddress", address),
                    condition("eq", "emailAddress2", address),
                    condition("eq", "emailAddress3", address),
                )
            ],
        )
        if not items:
            return None
        items.sort(key=lambda item: (not item.get("isActive", True), int(item["id"])))
        return items[0]

    async def find_ticket(self, reference: str) -> PsaRef | None:
        """By id (`GET Tickets/{id}`, which answers `{"item": null}` for none) when the text is a number, else by the
        number people see (`POST Tickets/query` with `ticketNumber eq`, TicketsEntity.htm; REST_Basic_Query_Calls.htm).
        Ids and numbers never look alike: numbers are `T` + date + sequence (T20261124.0001)."""
        wanted = to_wire_ticket_reference(reference)
        if wanted is None:
            return None
        if isinstance(wanted, int):
            item = await self._client.get("Tickets", wanted)
        else:
            item = await self._find_one("Tickets", [condition("eq", "ticketNumber", wanted)])
        return from_wire_ticket_ref(item) if item else None

    async def ticket_contact(self, ticket_id: str) -> PsaContact | None:
        """`GET Tickets/{id}` for the ticket's `contactID` (TicketsEntity.htm), then `GET Contacts/{id}` for
        `firstName`, `lastName`, `companyID` and the first address of `emailAddress`, `emailAddress2`,
        `emailAddress3` (ContactsEntity.htm; the order find_contact queries them). Autotask's get by id takes no
        field list (`IncludeFields` belongs to the query body only, apis.md §2.2), so each call reads the whole
        record. A ticket or contact Autotask answers `{"item": null}` for, a ticket without a contact and a contact
        without any address are all None."""
        wanted = to_wire_ticket_reference(ticket_id)
        if not isinstance(wanted, int):
            return None
        ticket = await self._client.get("Tickets", wanted)
        contact_id = from_wire_ticket_contact_id(ticket) if ticket else None
        if contact_id is None:
            return None
        contact = await self._client.get("Contacts", contact_id)
        return from_wire_contact_first_email(contact) if contact else None

    async def find_or_create_contact(self, name: str, email: str) -> PsaContact | None:
        """A first-time client becomes a Contact of the fallback company.

        Contacts is a child of Companies: it is created only through `POST Companies/{id}/Contacts`; the root
        `Contacts` offers query and get by id alone (REST swagger: CompanyContactsChild_CreateEntity; Contacts has no
        create operation). Contacts carry no idempotency marker: the e-mail address is the key. So the look-up runs
        first, and again when the create's answer is lost (timeout, dropped connection, bare 5xx): Autotask may have
        saved the contact anyway, and a blind retry would add a second one."""
        address = email.strip()
        company_id = self._config.fallback_company_id
        if not address:
            return None
        # Held across processes when the limits are shared: two workers booking the same new client at once would
        # otherwise both miss the look-up and both create.
        async with self._limits.lock(f"contact:autotask:{self._client.database_key}|{address.casefold()}"):
            found = await self.find_contact(address)
            if found is not None or company_id is None:
                return found
            body = to_wire_contact(name, address, company_id)
            try:
                contact_id = await self._client.create("Contacts", body, path=f"Companies/{company_id}/Contacts")
            except IntegrationUnavailable:
                found = await self.find_contact(address)
                if found is None:
                    raise
                return found
            return from_wire_contact({**body, "id": contact_id}, address)

    async def create_record(self, kind: PsaRecordKind, draft: PsaDraft) -> PsaRef:
        try:
            match kind:
                case PsaRecordKind.TICKET:
                    return await self._create_ticket(draft)
                case PsaRecordKind.OPPORTUNITY:
                    return await self._create_opportunity(draft)
                case PsaRecordKind.ACTIVITY:
                    return await self._create_todo(draft)
                case PsaRecordKind.SCHEDULE_ENTRY:
                    if draft.ticket_id:
                        return await self._create_service_call(draft)
                    return await self._create_appointment(draft)
                case PsaRecordKind.NOTE:
                    return await self._create_note(draft)
        except ValueError as exc:
            # The wire mapping refuses drafts Autotask cannot hold (e.g. a service call without times).
            raise IntegrationRejected(str(exc)) from exc
        raise IntegrationRejected(f"Autotask has no record kind {kind!r}")

    async def set_ticket_status(self, ticket_id: str, status: str) -> None:
        status_id = await self._picklist_id("Tickets", "status", status, default=None)
        await self._client.update("Tickets", to_wire_status_change(_number(ticket_id, "ticket ids"), status_id))

    async def move_schedule_entry(self, ref: PsaRef, starts_at: datetime, ends_at: datetime) -> None:
        entity, record_id = self._schedule_entry(ref)
        await self._client.update(entity, to_wire_move(record_id, starts_at, ends_at))

    async def remove_schedule_entry(self, ref: PsaRef) -> None:
        entity, record_id = self._schedule_entry(ref)
        try:
            await self._client.delete(entity, record_id)
        except IntegrationRejected as exc:
            # Autotask answers a delete of a missing record with 500 "No matching records found" rather than 404;
            # the entry is gone either way, so a repeated remove succeeds (django-autotask api.py request()).
            if NO_RECORD_TEXT not in str(exc):
                raise

    async def busy_times(self, member: str, starts_at: datetime, ends_at: datetime) -> list[BusyInterval]:
        """The member's service calls, appointments and To-Dos overlapping [starts_at, ends_at), sorted by start.

        The three reads go to three endpoints at once (each within its own 3-thread limit) and each is bounded by
        the window, so a busy calendar costs pages of that window only.
        """
        resource_id = _number(member, "resource ids")
        window = [
            condition("lt", "startDateTime", to_wire_datetime(ends_at)),
            condition("gt", "endDateTime", to_wire_datetime(starts_at)),
        ]
        calls, appointments, todos = await asyncio.gather(
            self._busy_service_calls(resource_id, window),
            # AppointmentsEntity.htm: an appointment is "scheduled time that is not a service call", on resourceID.
            self._client.query("Appointments", [condition("eq", "resourceID", resource_id), *window]),
            # CompanyToDosEntity.htm: a To-Do is assigned to assignedToResourceID and has start and end times.
            self._client.query("CompanyToDos", [condition("eq", "assignedToResourceID", resource_id), *window]),
        )
        intervals = [
            *(from_wire_busy(item, "Autotask service call") for item in calls),
            *(from_wire_busy(item, "Autotask appointment") for item in appointments),
            *(from_wire_busy(item, "Autotask To-Do") for item in todos),
        ]
        return sorted(intervals, key=lambda interval: (interval.starts_at, interval.ends_at))

    async def _busy_service_calls(self, resource_id: int, window: list[Filter]) -> list[dict[str, Any]]:
        """Autotask keeps the technician on ServiceCallTicketResources, two links away from the call's times, so this
        reads the calls in the window first (bounded by time), then their ticket links, then the assignments."""
        calls = await self._client.query("ServiceCalls", window)
        if not calls:
            return []
        links: list[dict[str, Any]] = []
        for chunk in chunked_ids(int(call["id"]) for call in calls):
            links += await self._client.query("ServiceCallTickets", [condition("in", "serviceCallID", chunk)])
        assigned: set[int] = set()
        for chunk in chunked_ids(int(link["id"]) for link in links):
            resources = await self._client.query(
                "ServiceCallTicketResources",
                [condition("in", "serviceCallTicketID", chunk), condition("eq", "resourceID", resource_id)],
            )
            assigned |= {int(resource["serviceCallTicketID"]) for resource in resources}
        busy_calls = {int(link["serviceCallID"]) for link in links if int(link["id"]) in assigned}
        return [call for call in calls if int(call["id"]) in busy_calls]

    async def resolved_opportunity_stage(self, label: str) -> tuple[int, str]:
        """(id, label) of the opportunity stage a create would use: the named one, else the tenant's default.

        Autotask requires a stage on every opportunity (its field metadata marks `stage` required). Without a
        configured `pipeline_stage`, the picklist value marked `isDefaultValue` in `Opportunities/entityInformation/
        fields` is used; a tenant without one gets a rejection that names the setting to fill in.
        Raises IntegrationRejected for an unknown label or a missing default.
        """
        info = await self._field_info("Opportunities")
        labels = from_wire_picklist_labels(info, "stage")
        if label:
            stage_id = from_wire_picklist(info, "stage").get(label.casefold())
            if stage_id is None:
                raise IntegrationRejected(
                    f"Autotask has no active Opportunities stage named {label!r} (set {PIPELINE_STAGE_SETTING} to one "
                    f"of: {', '.join(sorted(labels.values())) or 'none'})"
                )
            return stage_id, labels[stage_id]
        default = from_wire_picklist_default(info, "stage")
        if default is None:
            raise IntegrationRejected(
                "Autotask requires a stage on every opportunity and this database's stage picklist has no default: "
                f"set {PIPELINE_STAGE_SETTING} on the opportunity step to one of: "
                f"{', '.join(sorted(labels.values())) or 'none'}"
            )
        return default

    async def _field_info(self, entity: str) -> dict[str, Any]:
        if entity not in self._fields:
            self._fields[entity] = await self._client.field_info(entity)
        return self._fields[entity]

    async def _find_one(self, entity: str, filters: Sequence[Filter]) -> dict[str, Any] | None:
        items = await self._client.query(entity, filters)
        return min(items, key=lambda item: int(item["id"])) if items else None

    async def _find_marked(
        self, entity: str, field: str, idempotency_key: str, filters: Sequence[Filter] = ()
    ) -> dict[str, Any] | None:
        """The oldest record whose `field` holds this exact marker; the query's extra hits are other bookings'."""
        items = await self._client.query(entity, [*filters, marker_filter(field, idempotency_key)])
        marked = [item for item in items if carries_marker(item, field, idempotency_key)]
        return min(marked, key=lambda item: int(item["id"])) if marked else None

    async def _picklist_id(self, entity: str, field: str, label: str, *, default: int | None) -> int:
        if not label:
            if default is None:
                raise IntegrationRejected(f"An Autotask {entity} {field} is needed")
            return default
        choices = from_wire_picklist(await self._field_info(entity), field)
        found = choices.get(label.casefold())
        if found is None:
            raise IntegrationRejected(f"Autotask has no active {entity} {field} named {label!r}")
        return found

    async def _create_ticket(self, draft: PsaDraft) -> PsaRef:
        existing = await self._find_marked("Tickets", "description", draft.idempotency_key)
        if existing is None:
            config = self._config
            body = to_wire_ticket(
                draft,
                default_company_id=config.default_company_id,
                queue_id=await self._picklist_id("Tickets", "queueID", draft.board, default=config.ticket_queue_id),
                status_id=await self._picklist_id("Tickets", "status", draft.status, default=config.ticket_status_id),
                priority_id=config.ticket_priority_id,
                # A ticket we create is the host's: they are its primary resource, in the configured role.
                resource_id=_number(draft.member, "resource ids") if draft.member else None,
                role_id=config.resource_role_id,
            )
            ticket_id = await self._client.create("Tickets", body)
            # The create answers only {"itemId": n}; the number people see comes with the record.
            existing = await self._client.get("Tickets", ticket_id) or {"id": ticket_id}
        return from_wire_ticket_ref(existing)

    async def _create_opportunity(self, draft: PsaDraft) -> PsaRef:
        existing = await self._find_marked("Opportunities", "description", draft.idempotency_key)
        if existing is None:
            config = self._config
            stage_id, _ = await self.resolved_opportunity_stage(draft.stage)
            body = to_wire_opportunity(
                draft,
                default_company_id=config.default_company_id,
                status_id=await self._picklist_id(
                    "Opportunities", "status", draft.status, default=config.opportunity_status_id
                ),
                probability=config.opportunity_probability,
                closes_at=draft.starts_at or self._clock(),
                stage_id=stage_id,
            )
            existing = {"id": await self._client.create("Opportunities", body)}
        return from_wire_ref(PsaRecordKind.OPPORTUNITY, existing)

    async def _create_todo(self, draft: PsaDraft) -> PsaRef:
        existing = await self._find_marked("CompanyToDos", "activityDescription", draft.idempotency_key)
        if existing is None:
            body = to_wire_todo(
                draft,
                default_company_id=self._config.default_company_id,
                action_type_id=self._config.todo_action_type_id,
            )
            # CompanyToDos is a child of Companies: created through the parent URL (apis.md §2.3).
            path = f"Companies/{body['companyID']}/ToDos"
            existing = {"id": await self._client.create("CompanyToDos", body, path=path)}
        return from_wire_ref(PsaRecordKind.ACTIVITY, existing)

    async def _create_note(self, draft: PsaDraft) -> PsaRef:
        if not draft.ticket_id:
            raise IntegrationRejected("An Autotask ticket note needs the ticket it belongs to")
        ticket_id = _number(draft.ticket_id, "ticket ids")
        existing = await self._find_marked(
            "TicketNotes", "description", draft.idempotency_key, [condition("eq", "ticketID", ticket_id)]
        )
        if existing is None:
            body = to_wire_ticket_note(draft, note_type_id=self._config.note_type_id, publish=self._config.note_publish)
            existing = {"id": await self._client.create("TicketNotes", body, path=f"Tickets/{ticket_id}/Notes")}
        return from_wire_ref(PsaRecordKind.NOTE, existing)

    async def _create_appointment(self, draft: PsaDraft) -> PsaRef:
        """A schedule entry without a ticket: an Appointment on the host's calendar, the calendar item Autotask keeps
        for "scheduled time that is not a service call" (AppointmentsEntity.htm; root `POST Appointments`)."""
        resource_id = _number(draft.member, "resource ids")
        existing = await self._find_marked(
            "Appointments", "description", draft.idempotency_key, [condition("eq", "resourceID", resource_id)]
        )
        if existing is None:
            existing = {"id": await self._client.create("Appointments", to_wire_appointment(draft))}
        return PsaRef(PsaRecordKind.SCHEDULE_ENTRY, to_schedule_entry_id("Appointments", int(existing["id"])))

    async def _create_service_call(self, draft: PsaDraft) -> PsaRef:
        """A schedule entry on a ticket: ServiceCalls + ServiceCallTickets + ServiceCallTicketResources.

        ServiceCallTicketResources holds no role (swagger: id, resourceID, serviceCallTicketID); the host's role is
        their assignment on the ticket. So the host is made sure of on the ticket first: the primary resource as it
        is (never replaced), else a secondary resource in the configured role (TicketSecondaryResources, child of
        Tickets). Every record is looked up before it is created, so a re-run after a lost answer finishes the entry.
        """
        resource_id = _number(draft.member, "resource ids")
        ticket_id = _number(draft.ticket_id, "ticket ids")
        ticket = await self._ensure_on_ticket(ticket_id, resource_id)
        call = await self._find_marked("ServiceCalls", "description", draft.idempotency_key)
        if call is None:
            body = to_wire_service_call(
                draft,
                default_company_id=self._config.default_company_id,
                status_id=self._config.service_call_status_id,
                company_id=_ticket_company(ticket),
            )
            call = {"id": await self._client.create("ServiceCalls", body)}
        call_id = int(call["id"])
        link = await self._find_one(
            "ServiceCallTickets",
            [condition("eq", "serviceCallID", call_id), condition("eq", "ticketID", ticket_id)],
        )
        link_id = (
            int(link["id"])
            if link
            else await self._client.create(
                "ServiceCallTickets",
                to_wire_service_call_ticket(call_id, ticket_id),
                path=f"ServiceCalls/{call_id}/Tickets",
            )
        )
        assignment = await self._find_one(
            "ServiceCallTicketResources",
            [condition("eq", "serviceCallTicketID", link_id), condition("eq", "resourceID", resource_id)],
        )
        if assignment is None:
            await self._client.create(
                "ServiceCallTicketResources",
                to_wire_service_call_resource(link_id, resource_id),
                path=f"ServiceCallTickets/{link_id}/Resources",
            )
        return PsaRef(PsaRecordKind.SCHEDULE_ENTRY, to_schedule_entry_id("ServiceCalls", call_id))

    async def _ensure_on_ticket(self, ticket_id: int, resource_id: int) -> dict[str, Any]:
        """The host is the ticket's primary resource or one of its secondary resources, adding them as a secondary.

        TicketsEntity.htm: the API refuses a secondary resource that already is one, and (as for task secondary
        resources, TaskSecondaryResourcesEntity.htm) a secondary resource may not be the primary one; so both are
        checked first, which also makes a re-run after a lost answer add nothing. Returns the ticket.
        """
        ticket = await self._client.get("Tickets", ticket_id)
        if ticket is None:
            raise IntegrationRejected(f"Autotask has no ticket {ticket_id} to schedule on")
        if ticket.get("assignedResourceID") == resource_id:
            return ticket
        secondary = await self._find_one(
            "TicketSecondaryResources",
            [condition("eq", "ticketID", ticket_id), condition("eq", "resourceID", resource_id)],
        )
        if secondary is None:
            await self._client.create(
                "TicketSecondaryResources",
                to_wire_ticket_secondary_resource(ticket_id, resource_id, self._config.resource_role_id),
                path=f"Tickets/{ticket_id}/SecondaryResources",
            )
        return ticket

    @staticmethod
    def _schedule_entry(ref: PsaRef) -> tuple[str, int]:
        if ref.kind is not PsaRecordKind.SCHEDULE_ENTRY:
            raise IntegrationRejected(
                f"Only schedule entries (Autotask appointments and service calls) move or go, not {ref.kind}"
            )
        entity, record_id = from_schedule_entry_id(ref.record_id)
        return entity, _number(record_id, "schedule entry ids")
