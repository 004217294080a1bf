"""AutotaskPsa: the PsaClient port over the Autotask REST API, idempotent by a marker written into each record."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp

from integrations.autotask.client import NO_RECORD_TEXT, AutotaskClient
from integrations.autotask.config import AutotaskConfig
from integrations.autotask.wire import (
    Filter,
    any_of,
    chunked_ids,
    condition,
    from_wire_contact,
    from_wire_picklist,
    from_wire_ref,
    from_wire_service_call_busy,
    from_wire_ticket_ref,
    marker_filter,
    to_wire_contact,
    to_wire_datetime,
    to_wire_opportunity,
    to_wire_service_call,
    to_wire_service_call_move,
    to_wire_service_call_resource,
    to_wire_service_call_ticket,
    to_wire_status_change,
    to_wire_ticket,
    to_wire_ticket_note,
    to_wire_todo,
)
from integrations.keyed_locks import KeyedLocks
from scheduling.errors import IntegrationRejected, IntegrationUnavailable
from scheduling.model import BusyInterval, PsaContact, PsaDraft, PsaRecordKind, PsaRef


def _number(value: str, what: str) -> int:
    """Autotask ids are integers; anything else is a configuration mistake no retry fixes."""
    try:
        return int(value)
    except ValueError:
        raise IntegrationRejected(f"Autotask {what} must be a number, not {value!r}") from None


class AutotaskPsa:
    """Tickets, opportunities, To-Dos, service calls and ticket notes in one tenant's Autotask database.

    Idempotency: every create writes `[slotwise:KEY]` into the record's description and first queries for it
    with a `contains` filter, so a re-run after a lost response returns the record instead of creating another.
    A schedule entry is several records (service call, its ticket link, the resource assignment); each step looks
    for its own record first, so a re-run also finishes a half-done entry.
    """

    def __init__(
        self,
        config: AutotaskConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._config = config
        self._client = AutotaskClient(config, session)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._fields: dict[str, dict[str, Any]] = {}
        self._contact_locks = KeyedLocks()

    @property
    def client(self) -> AutotaskClient:
        return self._client

    async def test_connection(self) -> None:
        """Re-discover the zone, then read the ticket field metadata: proves the credentials and warms the picklists."""
        await self._client.api_base(refresh=True)
        self._fields["Tickets"] = await self._client.field_info("Tickets")

    async def find_contact(self, email: str) -> PsaContact | None:
        # A contact may hold the address in any of its three email fields (apis.md §2.3).
        items = await self._client.query(
            "Contacts",
            [
                any_of(
                    condition("eq", "emailAddress", email),
                    condition("eq", "emailAddress2", email),
                    condition("eq", "emailAddress3", email),
                )
            ],
        )
        if not items:
            return None
        items.sort(key=lambda item: (not item.get("isActive", True), int(item["id"])))
        return from_wire_contact(items[0], email)

    async def find_or_create_contact(self, name: str, email: str) -> PsaContact | None:
        """A first-time client becomes a Contact of the fallback company (`POST Contacts`, apis.md §2.2).

        Contacts carry no idempotency marker: the e-mail address is the key. So the look-up runs first, and again
        when the create's answer is lost (timeout, dropped connection, bare 5xx): Autotask may have saved the
        contact anyway, and a blind retry would add a second one."""
        address = email.strip()
        company_id = self._config.fallback_company_id
        if not address:
            return None
        async with self._contact_locks.for_key(address):
            found = await self.find_contact(address)
            if found is not None or company_id is None:
                return found
            body = to_wire_contact(name, address, company_id)
            try:
                contact_id = await self._client.create("Contacts", body)
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
                    return await self._create_service_call(draft)
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
        call_id = self._service_call_id(ref)
        await self._client.update("ServiceCalls", to_wire_service_call_move(call_id, starts_at, ends_at))

    async def remove_schedule_entry(self, ref: PsaRef) -> None:
        call_id = self._service_call_id(ref)
        try:
            await self._client.delete("ServiceCalls", call_id)
        except IntegrationRejected as exc:
            # Autotask answers a delete of a missing record with 500 "No matching records found" rather than 404;
            # the entry is gone either way, so a repeated remove succeeds (django-autotask api.py request()).
            if NO_RECORD_TEXT not in str(exc):
                raise

    async def busy_times(self, member: str, starts_at: datetime, ends_at: datetime) -> list[BusyInterval]:
        """The member's service calls overlapping [starts_at, ends_at), sorted by start.

        Autotask keeps the technician on ServiceCallTicketResources, two links away from the call's times, so this
        reads the calls in the window first (bounded by time), then their ticket links, then the assignments.
        """
        resource_id = _number(member, "resource ids")
        calls = await self._client.query(
            "ServiceCalls",
            [
                condition("lt", "startDateTime", to_wire_datetime(ends_at)),
                condition("gt", "endDateTime", to_wire_datetime(starts_at)),
            ],
        )
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
        intervals = [from_wire_service_call_busy(call) for call in calls if int(call["id"]) in busy_calls]
        return sorted(intervals, key=lambda interval: (interval.starts_at, interval.ends_at))

    async def _find_one(self, entity: str, filters: Sequence[Filter]) -> dict[str, Any] | None:
        items = await self._client.query(entity, filters)
        return min(items, key=lambda item: int(item["id"])) if items else None

    async def _picklist_id(self, entity: str, field: str, label: str, *, default: int | None) -> int:
        if not label:
            if default is None:
                raise IntegrationRejected(f"An Autotask {entity} {field} is needed")
            return default
        if entity not in self._fields:
            self._fields[entity] = await self._client.field_info(entity)
        choices = from_wire_picklist(self._fields[entity], field)
        found = choices.get(label.casefold())
        if found is None:
            raise IntegrationRejected(f"Autotask has no active {entity} {field} named {label!r}")
        return found

    async def _create_ticket(self, draft: PsaDraft) -> PsaRef:
        existing = await self._find_one("Tickets", [marker_filter("description", draft.idempotency_key)])
        if existing is None:
            config = self._config
            body = to_wire_ticket(
                draft,
                default_company_id=config.default_company_id,
                queue_id=await self._picklist_id("Tickets", "queueID", draft.board, default=config.ticket_queue_id),
                status_id=await self._picklist_id("Tickets", "status", draft.status, default=config.ticket_status_id),
                priority_id=config.ticket_priority_id,
            )
            ticket_id = await self._client.create("Tickets", body)
            # The create answers only {"itemId": n}; the number people see comes with the record.
            existing = await self._client.get("Tickets", ticket_id) or {"id": ticket_id}
        return from_wire_ticket_ref(existing)

    async def _create_opportunity(self, draft: PsaDraft) -> PsaRef:
        existing = await self._find_one("Opportunities", [marker_filter("description", draft.idempotency_key)])
        if existing is None:
            config = self._config
            body = to_wire_opportunity(
                draft,
                default_company_id=config.default_company_id,
                status_id=await self._picklist_id(
                    "Opportunities", "status", draft.status, default=config.opportunity_status_id
                ),
                probability=config.opportunity_probability,
                closes_at=draft.starts_at or self._clock(),
                stage_id=await self._picklist_id("Opportunities", "stage", draft.stage, default=None)
                if draft.stage
                else None,
            )
            existing = {"id": await self._client.create("Opportunities", body)}
        return from_wire_ref(PsaRecordKind.OPPORTUNITY, existing)

    async def _create_todo(self, draft: PsaDraft) -> PsaRef:
        existing = await self._find_one("CompanyToDos", [marker_filter("activityDescription", draft.idempotency_key)])
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
        existing = await self._find_one(
            "TicketNotes",
            [condition("eq", "ticketID", ticket_id), marker_filter("description", draft.idempotency_key)],
        )
        if existing is None:
            body = to_wire_ticket_note(draft, note_type_id=self._config.note_type_id, publish=self._config.note_publish)
            existing = {"id": await self._client.create("TicketNotes", body, path=f"Tickets/{ticket_id}/Notes")}
        return from_wire_ref(PsaRecordKind.NOTE, existing)

    async def _create_service_call(self, draft: PsaDraft) -> PsaRef:
        resource_id = _number(draft.member, "resource ids")
        call = await self._find_one("ServiceCalls", [marker_filter("description", draft.idempotency_key)])
        if call is None:
            body = to_wire_service_call(
                draft, default_company_id=self._config.default_company_id, status_id=self._config.service_call_status_id
            )
            call = {"id": await self._client.create("ServiceCalls", body)}
        call_id = int(call["id"])
        if draft.ticket_id:
            ticket_id = _number(draft.ticket_id, "ticket ids")
        else:
            # Autotask assigns a technician to a service call only through a ticket (or a project task):
            # ServiceCallTicketResources hang off ServiceCallTickets (ServiceCallsEntity.htm, apis.md §2.3).
            # Without a ticket from the booking, the call gets its own ticket, idempotent under a derived key.
            own_ticket = dataclasses.replace(draft, idempotency_key=f"{draft.idempotency_key}:service-call-ticket")
            ticket_id = int((await self._create_ticket(own_ticket)).record_id)
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
                to_wire_service_call_resource(link_id, resource_id, self._config.resource_role_id),
                path=f"ServiceCallTickets/{link_id}/Resources",
            )
        return PsaRef(PsaRecordKind.SCHEDULE_ENTRY, str(call_id))

    @staticmethod
    def _service_call_id(ref: PsaRef) -> int:
        if ref.kind is not PsaRecordKind.SCHEDULE_ENTRY:
            raise IntegrationRejected(f"Only schedule entries (Autotask service calls) move or go, not {ref.kind}")
        return _number(ref.record_id, "service call ids")
