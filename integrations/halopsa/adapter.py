"""HaloPsa: the PsaClient port over HaloPSA (tickets, appointments, ticket notes; Halo has no opportunities)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp

from integrations.halopsa.client import NOT_FOUND, HaloPsaClient
from integrations.halopsa.config import HaloPsaConfig
from integrations.halopsa.wire import (
    from_wire_busy,
    from_wire_client_name,
    from_wire_contact,
    from_wire_holiday,
    from_wire_ref,
    from_wire_ticket_user_id,
    from_wire_user_with_email,
    has_marker,
    marker,
    to_wire_appointment,
    to_wire_id,
    to_wire_move,
    to_wire_note,
    to_wire_search,
    to_wire_status,
    to_wire_ticket,
    to_wire_ticket_id,
    to_wire_time,
    to_wire_user,
)
from integrations.rate_windows import InMemoryVendorLimits
from scheduling.errors import IntegrationRejected, IntegrationUnavailable
from scheduling.model import BusyInterval, PsaContact, PsaDraft, PsaRecipientMatch, PsaRecordKind, PsaRef
from scheduling.ports import VendorLimits

_ZONE_SLACK = timedelta(days=1)
"""GET /api/Appointment's `end_date` is a lower bound ("Return appointments with an end date greater than this
value", swagger), and `start_date` is one too ("... a start date greater than this value"): neither is an upper
bound, so only `end_date` is sent, and a day earlier than needed, because whether Halo reads a `Z` time as UTC or
as the agent's local time is not written down [U]. The rows are then cut to the window here."""


class HaloPsa:
    """One tenant's HaloPSA. ACTIVITY and SCHEDULE_ENTRY both become Appointments; OPPORTUNITY is refused."""

    def __init__(
        self,
        config: HaloPsaConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], datetime] | None = None,
        limits: VendorLimits | None = None,
    ) -> None:
        self._config = config
        self._limits: VendorLimits = limits or InMemoryVendorLimits()
        self._client = HaloPsaClient(session, config, clock=clock)
        self._statuses: dict[str, int] | None = None
        self._fallback_site_id: int | None = None

    async def test_connection(self) -> None:
        """Fetch a token and read one client row: proves the URLs, the credentials and the linked agent's rights."""
        await self._client.get("Client", {"pageinate": "true", "page_size": "1", "page_no": "1"})

    async def find_contact(self, email: str) -> PsaContact | None:
        user = await self._find_user(email)
        return from_wire_contact(user) if user is not None else None

    async def ticket_web_url(self, ticket_id: str, number: str) -> str:
        """The agent app's ticket screen, `{web root}/ticket?id={id}`: the web root is the API URL without its
        `/api` (https://acme.halopsa.com/api → https://acme.halopsa.com), the id is the number agents see. Halo
        documents no linking URL; SOURCES.md, "Ticket web links", has the form in use."""
        if not ticket_id.isdigit():
            return ""
        root = self._config.api_base
        root = root[: -len("/api")] if root.lower().endswith("/api") else root
        return f"{root}/ticket?{urlencode({'id': ticket_id})}"

    async def match_recipient(self, email: str) -> PsaRecipientMatch | None:
        """The user (find_contact's look-up) and its client's name: the user row's `client_name` (schema `Users`,
        as GET /Users answers it), else `GET /api/Client/{id}` ("Get one Client", path `id` int32) for `name`.
        HaloPSA has no opportunities (PRODUCT.md; the swagger has no Opportunity path), so none are ever listed."""
        user = await self._find_user(email)
        if user is None:
            return None
        contact = from_wire_contact(user)
        company_name = from_wire_client_name(user)
        if not company_name and contact.company_id.isdigit():
            client = await self._client.get(f"Client/{int(contact.company_id)}", allow_not_found=True)
            company_name = (
                from_wire_client_name({"client_name": client.get("name")}) if isinstance(client, dict) else ""
            )
        return PsaRecipientMatch(contact, company_name, ())

    async def _find_user(self, email: str) -> dict[str, Any] | None:
        """The first user whose `emailaddress` is this address (any case). Halo's `search` may be a LIKE match over
        several columns, where `_` (common in addresses) and `[` are wildcards; the term is a wildcard-free part of
        the address and the exact address is checked here. Text without an `@` is no address and costs no
        request."""
        address = email.strip()
        if not address or "@" not in address:
            return None
        wanted = address.lower()
        users = await self._client.get_pages("Users", {"search": to_wire_search(address)}, "users")
        for user in users:
            if str(user.get("emailaddress", "")).strip().lower() == wanted:
                return user
        return None

    async def find_ticket(self, reference: str) -> PsaRef | None:
        """`GET /api/Tickets/{id}` (swagger "Get one Faults", path parameter `id` int32; 404 for none). Halo shows a
        ticket by its id, so id and number are the same text. An answer without the ticket's id counts as none [U:
        what Halo answers for a deleted ticket]."""
        ticket_id = to_wire_ticket_id(reference)
        if ticket_id is None:
            return None
        answer = await self._client.get(f"Tickets/{ticket_id}", allow_not_found=True)
        if answer is NOT_FOUND or not isinstance(answer, dict) or answer.get("id") != ticket_id:
            return None
        return from_wire_ref(PsaRecordKind.TICKET, answer)

    async def ticket_contact(self, ticket_id: str) -> PsaContact | None:
        """`GET /api/Tickets/{id}` for the ticket's end user, `user_id` (swagger "Get one Faults"), then
        `GET /api/Users/{id}` for `name`, `emailaddress` and `client_id` (swagger "Get one Users", path `id` int32,
        answer schema `Users`). Neither get takes a field list (their optional parameters only add objects, e.g.
        `includedetails`), so none is sent. 404 from either (both `/{id}` paths document it), a ticket without a user,
        and a user without an address (a client's catch-all "General User") are all None."""
        number = to_wire_ticket_id(ticket_id)
        if number is None:
            return None
        ticket = await self._client.get(f"Tickets/{number}", allow_not_found=True)
        if ticket is NOT_FOUND or not isinstance(ticket, dict) or ticket.get("id") != number:
            return None
        user_id = from_wire_ticket_user_id(ticket)
        if user_id is None:
            return None
        user = await self._client.get(f"Users/{user_id}", allow_not_found=True)
        if user is NOT_FOUND or not isinstance(user, dict) or user.get("id") != user_id:
            return None
        return from_wire_user_with_email(user)

    async def find_or_create_contact(self, name: str, email: str) -> PsaContact | None:
        """A first-time client becomes a user on the fallback client's site (`POST /api/Users`, an array).

        Users carry no idempotency marker: the e-mail address is the key. So the look-up runs first, and again
        when the create's answer is lost (timeout, dropped connection, 5xx): Halo may have saved the user anyway,
        and a blind retry would add a second one."""
        address = email.strip()
        client_id = self._config.fallback_client_id
        if not address:
            return None
        # Across processes when the limits are shared: one contact per address, however many workers book it.
        site = f"{self._config.api_url.rstrip('/').lower()}|{self._config.tenant.lower()}"
        async with self._limits.lock(f"contact:halopsa:{site}|{address.casefold()}"):
            found = await self.find_contact(address)
            if found is not None or client_id is None:
                return found
            site_id = await self._site_of(client_id)
            try:
                [created] = await self._client.post_array("Users", [to_wire_user(name, address, site_id)])
            except IntegrationUnavailable:
                found = await self.find_contact(address)
                if found is None:
                    raise
                return found
            # The saved user names its client; should an answer leave it out, the site says which one it is.
            return from_wire_contact({"client_id": client_id, **created})

    async def create_record(self, kind: PsaRecordKind, draft: PsaDraft) -> PsaRef:
        if kind is PsaRecordKind.OPPORTUNITY:
            raise IntegrationRejected("Opportunities are not available in HaloPSA")
        if kind is PsaRecordKind.TICKET:
            return await self._create_ticket(draft)
        if kind is PsaRecordKind.NOTE:
            return await self._create_note(draft)
        return await self._create_appointment(kind, draft)

    async def set_ticket_status(self, ticket_id: str, status: str) -> None:
        status_id = await self._status_id(status)
        await self._client.post_array("Tickets", [to_wire_status(ticket_id, status_id)])

    async def move_schedule_entry(self, ref: PsaRef, starts_at: datetime, ends_at: datetime) -> None:
        await self._client.post_array("Appointment", [to_wire_move(ref.record_id, starts_at, ends_at)])

    async def remove_schedule_entry(self, ref: PsaRef) -> None:
        """Idempotent: an appointment that is already gone counts as removed."""
        appointment_id = to_wire_id(ref.record_id, "appointment")
        await self._client.delete(f"Appointment/{appointment_id}", allow_not_found=True)

    async def busy_times(self, member: str, starts_at: datetime, ends_at: datetime) -> list[BusyInterval]:
        """The agent's appointments (with Halo's holiday appointments, `showholidays`) and the agent's holidays and
        leave (GET /api/Holiday), cut to [starts_at, ends_at). A holiday seen both ways counts once."""
        appointments = await self._appointments(member, starts_at, {"showholidays": "true"})
        holidays = await self._holidays(member)
        busy = [from_wire_busy(row) for row in appointments] + [from_wire_holiday(row) for row in holidays]
        overlapping = {
            (interval.starts_at, interval.ends_at): interval
            for interval in busy
            if interval is not None and interval.starts_at < ends_at and interval.ends_at > starts_at
        }
        return sorted(overlapping.values(), key=lambda interval: (interval.starts_at, interval.ends_at))

    async def _site_of(self, client_id: int) -> int:
        """A Halo user belongs to a site, not directly to a client: the fallback client's first site (lowest id),
        from `GET /api/Site` (list key `sites`, each with its `client_id`, as n8n's HaloPSA node reads them).
        Whether Halo filters by the `client_id` parameter is [U], so the rows are checked here too. Cached."""
        if self._fallback_site_id is None:
            sites = await self._client.get_pages("Site", {"client_id": str(client_id)}, "sites")
            own = sorted(
                int(site["id"])
                for site in sites
                if isinstance(site.get("id"), int) and str(site.get("client_id", "")) == str(client_id)
            )
            if not own:
                raise IntegrationRejected(
                    f"HaloPSA client {client_id} (fallback_client_id) has no site for new users; check the client id"
                )
            self._fallback_site_id = own[0]
        return self._fallback_site_id

    async def _create_ticket(self, draft: PsaDraft) -> PsaRef:
        found = await self._find_ticket(draft.idempotency_key)
        if found is not None:
            return found
        tickettype_id = await self._tickettype_id(draft.board) if draft.board else None
        status_id = await self._status_id(draft.status) if draft.status else None
        body = to_wire_ticket(draft, tickettype_id=tickettype_id, status_id=status_id)
        [created] = await self._client.post_array("Tickets", [body])
        return from_wire_ref(PsaRecordKind.TICKET, created)

    async def _find_ticket(self, idempotency_key: str) -> PsaRef | None:
        """The ticket whose `details` carry this key's marker. `search_details` ("Returns tickets based on the
        details matching the search", swagger GET /Tickets) narrows the list; `search` would match other columns.
        Every hit is checked for the exact marker, and a hit listed without its `details` (the list endpoint has
        no documented flag that includes them [U]) is read on its own."""
        term = to_wire_search(marker(idempotency_key))
        hits = await self._client.get_pages("Tickets", {"search_details": term}, "tickets")
        for ticket in hits:
            if not isinstance(ticket.get("details"), str) and isinstance(ticket.get("id"), int):
                ticket = await self._client.get(f"Tickets/{ticket['id']}", {"includedetails": "true"})
                if not isinstance(ticket, dict):
                    continue
            if has_marker(ticket, "details", idempotency_key):
                return from_wire_ref(PsaRecordKind.TICKET, ticket)
        return None

    async def _create_appointment(self, kind: PsaRecordKind, draft: PsaDraft) -> PsaRef:
        if draft.starts_at is None or draft.ends_at is None:
            raise IntegrationRejected("A HaloPSA appointment needs a start and an end")
        body = to_wire_appointment(draft)
        # Every appointment of the agent that ends after the draft starts, whatever Halo's date reading: the one
        # an earlier, unanswered POST saved is among them. `search` is not used: which columns it covers is [U].
        for appointment in await self._appointments(draft.member, draft.starts_at):
            if has_marker(appointment, "note", draft.idempotency_key):
                return from_wire_ref(kind, appointment)
        [created] = await self._client.post_array("Appointment", [body])
        return from_wire_ref(kind, created)

    async def _create_note(self, draft: PsaDraft) -> PsaRef:
        body = to_wire_note(draft)
        actions = await self._client.get_pages("Actions", {"ticket_id": str(body["ticket_id"])}, "actions")
        for action in actions:
            if has_marker(action, "note", draft.idempotency_key):
                return from_wire_ref(PsaRecordKind.NOTE, action)
        [created] = await self._client.post_array("Actions", [body])
        return from_wire_ref(PsaRecordKind.NOTE, created)

    async def _appointments(
        self, member: str, ending_after: datetime, extra: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every appointment of agent `member` that ends after `ending_after` (and possibly more; see _ZONE_SLACK).
        `agents` is "Comma separated list of agent IDs. Returns these agent's appointments" (swagger)."""
        params = {
            "agents": str(to_wire_id(member, "agent")),
            "end_date": to_wire_time(ending_after - _ZONE_SLACK),
            **(extra or {}),
        }
        return await self._client.get_pages("Appointment", params, "appointments")

    async def _holidays(self, member: str) -> list[dict[str, Any]]:
        """The agent's holidays and leave: GET /api/Holiday with `agent_id` (swagger path /Holiday, tag Holidays).
        Its `start_date`/`end_date`/`inclusive_*` parameters carry no description, so no date filter is sent and
        the rows are cut to the window by the caller; rows of other agents, and public holidays without an agent
        (they belong to a workday, `workday_id`, which we cannot tie to the agent), are left out. The swagger
        gives no response shape: a bare array or an object with a `holidays` list is read [U]."""
        agent_id = to_wire_id(member, "agent")
        answer = await self._client.get("Holiday", {"agent_id": str(agent_id)})
        rows = answer.get("holidays") if isinstance(answer, dict) else answer
        if not isinstance(rows, list):
            return []
        return [row for row in rows if isinstance(row, dict) and row.get("agent_id") == agent_id]

    async def _status_id(self, name: str) -> int:
        """Halo sets a status by id; GET /api/Status lists id and name. Cached, since statuses rarely change."""
        if self._statuses is None or name.strip().lower() not in self._statuses:
            self._statuses = await self._named_ids("Status")
        status_id = self._statuses.get(name.strip().lower())
        if status_id is None:
            known = ", ".join(sorted(self._statuses)) or "none"
            raise IntegrationRejected(f"HaloPSA has no ticket status named {name!r} (known: {known})")
        return status_id

    async def _tickettype_id(self, name: str) -> int:
        """PsaDraft.board names a Halo ticket type (GET /api/TicketType lists id and name)."""
        types = await self._named_ids("TicketType")
        tickettype_id = types.get(name.strip().lower())
        if tickettype_id is None:
            raise IntegrationRejected(f"HaloPSA has no ticket type named {name!r}")
        return tickettype_id

    async def _named_ids(self, path: str) -> dict[str, int]:
        answer = await self._client.get(path)
        if not isinstance(answer, list):
            return {}
        return {
            str(row["name"]).strip().lower(): int(row["id"])
            for row in answer
            if isinstance(row, dict) and isinstance(row.get("id"), int) and row.get("name")
        }
