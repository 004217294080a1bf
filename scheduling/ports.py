"""Ports: what the core needs from the outside world, as Protocols that adapters implement."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Protocol

from scheduling.model import (
    AppointmentType,
    Booking,
    BookingTarget,
    BusyInterval,
    CalendarEventDraft,
    CalendarEventRef,
    ClientDetails,
    HostLoad,
    HostNotification,
    HostProfile,
    OutgoingEmail,
    PsaBinding,
    PsaContact,
    PsaDraft,
    PsaRecipientMatch,
    PsaRecordKind,
    PsaRef,
    TeamRoster,
    TeamsIdentity,
    TypeSummary,
    UpcomingBooking,
)

MATCHED_OPPORTUNITIES_LIMIT = 5
"""PsaClient.match_recipient names at most this many open opportunities (the newest): a task pane offers a choice,
not the pipeline."""

HostDecision = tuple[tuple[str, ...], str]
"""The chosen host ids and a sentence saying why they were chosen."""

HostDecider = Callable[[Mapping[str, HostLoad]], HostDecision]
"""Pure function run *inside* the booking transaction on authoritative loads; raises SlotUnavailable."""


class Clock(Protocol):
    def now(self) -> datetime: ...


class TenantCatalog(Protocol):
    """Read side of the tenant configuration: pages, types and hosts, always scoped to one tenant."""

    async def find_type_target(self, tenant_slug: str, type_slug: str) -> BookingTarget | None: ...

    async def find_personal_page(
        self, tenant_slug: str, user_slug: str
    ) -> tuple[HostProfile, Sequence[AppointmentType]] | None: ...

    async def find_team_page(
        self, tenant_slug: str, team_slug: str
    ) -> tuple[str, Sequence[AppointmentType]] | None: ...

    async def find_request_target(self, tenant_id: str, request_id: str) -> BookingTarget | None: ...

    async def find_target_for_type(self, tenant_id: str, type_id: str) -> BookingTarget | None: ...


class BookingStore(Protocol):
    """Bookings and host busy time. Every method is scoped by tenant id from the caller's context."""

    async def load_host_loads(
        self, tenant_id: str, host_ids: Sequence[str], starts_at: datetime, ends_at: datetime
    ) -> Mapping[str, HostLoad]: ...

    async def create_booking(
        self,
        target: BookingTarget,
        starts_at: datetime,
        ends_at: datetime,
        client: ClientDetails,
        *,
        decide: HostDecider,
        idempotency_key: str | None,
    ) -> Booking:
        """Run `decide` and insert the booking in one write transaction; raise SlotUnavailable on conflict."""
        ...

    async def find_by_idempotency_key(self, tenant_id: str, key: str) -> Booking | None: ...

    async def get_booking(self, tenant_id: str, booking_id: str) -> Booking | None: ...

    async def reschedule_booking(
        self,
        tenant_id: str,
        booking_id: str,
        starts_at: datetime,
        ends_at: datetime,
        *,
        decide: HostDecider,
        expected_version: int | None = None,
    ) -> Booking:
        """Move a confirmed booking; raises BookingChanged if it was cancelled or is no longer at
        `expected_version`, checked in the same transaction as the move."""
        ...

    async def cancel_booking(
        self, tenant_id: str, booking_id: str, reason: str, *, expected_version: int | None = None
    ) -> Booking:
        """Cancel a confirmed booking and free its time at once; BookingChanged as for reschedule_booking."""
        ...


class RateLimiter(Protocol):
    """Admits or refuses one public write; an exception from it means 'refuse' (the limiter fails closed)."""

    async def admit(self, key: str) -> bool: ...


class AgentKeys(Protocol):
    """Tenant-scoped API keys for agents; only hashes are stored."""

    async def authenticate(self, raw_key: str) -> tuple[str, str] | None:
        """(tenant_id, role) for a live key, else None."""
        ...


class RequestStore(Protocol):
    """Scheduling requests created by agents (optionally bound to a PSA ticket) and by reps (one-off links)."""

    async def create_request(
        self,
        tenant_id: str,
        type_slug: str,
        *,
        ticket: str = "",
        duration: timedelta | None,
        window_starts_at: datetime | None,
        window_ends_at: datetime | None,
        guests: Sequence[str],
        created_by: str,
        expires_at: datetime,
        ticket_id: str = "",
        ticket_number: str = "",
        recipient: tuple[str, str] | None = None,
        now: datetime | None = None,
        single_use: bool = True,
        binding: PsaBinding | None = None,
    ) -> str:
        """Returns the new request id; raises NotFound for an unknown type of this tenant, and InvalidRequest
        (field `duration_minutes`) for a duration that is not a whole number of the type's slot increment.

        `ticket` is what people see (the displayed number when the PSA resolved it); `ticket_id` and `ticket_number`
        are the PSA's ticket, empty when the tenant has no PSA and the ticket is only a label. `recipient` (name,
        email): Slotwise emails the link to them now (`request_sent`), and `no_response` counts from `now`.
        `ticket` "" means no ticket. `single_use` False: the link books any number of times until it expires.
        `binding`: the PSA contact (and opportunity) a booking through the link lands on."""
        ...


class Mailer(Protocol):
    """Sends one email; raises IntegrationAuthError, IntegrationUnavailable (retry) or IntegrationRejected."""

    async def send(self, email: OutgoingEmail) -> str:
        """Returns the Message-ID the mail went out with."""
        ...


class PsaClient(Protocol):
    """One tenant's PSA (ConnectWise, Autotask or HaloPSA). Every create looks up its idempotency key first.

    Raises IntegrationAuthError (credentials), IntegrationUnavailable (429/5xx/timeout; retry later, honouring
    retry_after_seconds) or IntegrationRejected (the vendor refused the content; its message is kept).
    """

    async def test_connection(self) -> None: ...

    async def find_contact(self, email: str) -> PsaContact | None: ...

    async def match_recipient(self, email: str) -> PsaRecipientMatch | None:
        """The contact with this address (as find_contact finds it), its company's display name, and at most
        MATCHED_OPPORTUNITIES_LIMIT of its open opportunities, newest first: the contact's own and its company's,
        except when the company is the tenant's catch-all (fallback) company, whose other opportunities belong to
        other people. HaloPSA has no opportunities: always (). None for an address the PSA does not hold, and for
        text that is no address; nothing is ever created. Every request counts against the vendor's limits like
        any other call, and errors are raised as for every other call."""
        ...

    async def find_ticket(self, reference: str) -> PsaRef | None:
        """An existing ticket, named by its id or by the number the PSA displays (Autotask: id 12345 or number
        T20261124.0001; ConnectWise and HaloPSA display the id). A leading `#` is ignored. None when the PSA has no
        such ticket; nothing is ever created."""
        ...

    async def ticket_web_url(self, ticket_id: str, number: str) -> str:
        """Where a person opens this ticket in the PSA's own web app (the "Open ticket" link on the host's card and
        booking page); "" when it cannot be known. Makes no request, except Autotask's one-time public zone look-up
        (its web host is per database). Sources: integrations/*/SOURCES.md, "Ticket web links"."""
        ...

    async def ticket_contact(self, ticket_id: str) -> PsaContact | None:
        """The contact the ticket is for (its requester/end user), with a name and an email address; None when the
        ticket has none or the contact has no email address. Raises like every other call.

        `ticket_id` is the PSA's id of the ticket (PsaRef.record_id from find_ticket). A ticket the PSA does not hold
        (deleted since, or an id that cannot be one) is None too, never an error: the caller then asks for the
        recipient as it would for a ticket without a contact."""
        ...

    async def find_or_create_contact(self, name: str, email: str) -> PsaContact | None:
        """The contact with this e-mail, created under the tenant's fallback (catch-all) company when there is none.

        Idempotent: it looks up by e-mail first, and again after a create whose answer was lost, so a retry never
        makes a second contact. None when the tenant set no fallback company (then nothing is created).
        """
        ...

    async def create_record(self, kind: PsaRecordKind, draft: PsaDraft) -> PsaRef:
        """Create (or find, by idempotency key) a ticket, opportunity, activity, schedule entry or ticket note."""
        ...

    async def set_ticket_status(self, ticket_id: str, status: str) -> None: ...

    async def move_schedule_entry(self, ref: PsaRef, starts_at: datetime, ends_at: datetime) -> None: ...

    async def remove_schedule_entry(self, ref: PsaRef) -> None: ...

    async def busy_times(self, member: str, starts_at: datetime, ends_at: datetime) -> list[BusyInterval]:
        """Schedule entries, service calls and appointments of one member in [starts_at, ends_at)."""
        ...


class CalendarWriter(Protocol):
    """Writes bookings to a Microsoft 365 calendar (with a Teams meeting when asked)."""

    async def create_event(self, mailbox: str, draft: CalendarEventDraft) -> CalendarEventRef:
        """Idempotent by draft.transaction_id: a retry returns the event created the first time."""
        ...

    async def move_event(self, mailbox: str, event_id: str, starts_at: datetime, ends_at: datetime) -> None: ...

    async def cancel_event(self, mailbox: str, event_id: str, comment: str) -> None: ...


class BusySource(Protocol):
    """Busy time of several mailboxes, for the background refresh of the busy cache (never on a page view)."""

    async def busy_times(
        self, mailboxes: Sequence[str], starts_at: datetime, ends_at: datetime
    ) -> Mapping[str, list[BusyInterval]]: ...


class ProfilePhotoSource(Protocol):
    """Hosts' profile photos from their Microsoft 365 accounts, for the background photo refresh (never on a page
    view). Raises IntegrationAuthError, IntegrationUnavailable or IntegrationRejected like the other ports."""

    async def profile_photo(self, mailbox: str) -> bytes | None:
        """The photo's bytes at a small size, or None when the account has no photo (or no such account)."""
        ...


class TeamsDirectory(Protocol):
    """What the Teams bot reads and remembers; every method but `find_identity` is scoped by a tenant id that came
    from a resolved identity, never from the activity."""

    async def find_identity(
        self, microsoft_tenant_id: str, aad_object_id: str | None, email: str | None
    ) -> TeamsIdentity | None:
        """The user of the tenant bound to `microsoft_tenant_id`: by Entra object id first, then by email."""
        ...

    async def types_for_user(self, tenant_id: str, user_id: str) -> list[TypeSummary]: ...

    async def upcoming(
        self, tenant_id: str, host_ids: Sequence[str], starts_from: datetime, limit: int
    ) -> list[UpcomingBooking]: ...

    async def teams_for(self, identity: TeamsIdentity) -> list[TeamRoster]: ...

    async def save_conversation(
        self, tenant_id: str, user_id: str, reference: Mapping[str, object], time_zone: str | None
    ) -> None: ...

    async def find_conversation(self, tenant_id: str, user_id: str) -> tuple[dict[str, object], str | None] | None:
        """(conversation reference, the zone Teams last reported) for proactive messages, if the user has one."""
        ...


class Notifier(Protocol):
    """Tells a host about a booking change in Teams; raises IntegrationUnavailable (retry) or IntegrationRejected."""

    async def notify_host(self, tenant_id: str, user_id: str, notification: HostNotification) -> str | None:
        """The sent activity's id, or None when the host has no chat with the bot (nothing to deliver to)."""
        ...


class VendorLimits(Protocol):
    """Vendor request limits counted for every process that shares them: concurrency slots, sliding-window budgets
    and a mutual-exclusion lock, each per key (an Autotask endpoint, a Graph mailbox, a Teams chat, a contact's
    address). Keys are namespaced by the caller ("autotask:...", "graph:...").

    Implementations: in memory (one process: SQLite) and in the database (every app process and worker on one
    PostgreSQL database). Raising IntegrationUnavailable means "the bookkeeping is unavailable, try later"."""

    async def acquire_slot(self, key: str, limit: int, lease_seconds: float) -> str:
        """Wait for one of `limit` concurrent slots of `key` and return its token. A holder that dies without
        releasing frees its slot after `lease_seconds` (longer than any request it covers)."""
        ...

    async def release_slot(self, token: str) -> None:
        """Give back a slot taken by acquire_slot; releasing twice, or after the lease lapsed, is harmless."""
        ...

    async def reserve(self, key: str, windows: Sequence[tuple[float, int]]) -> float:
        """Book one request of `key` now and return 0.0, or book nothing and return the seconds until every
        (window seconds, count) limit would admit one."""
        ...

    def lock(self, key: str) -> AbstractAsyncContextManager[None]:
        """Hold `key` (case-insensitive) exclusively, e.g. around a contact's look-up and create."""
        ...
