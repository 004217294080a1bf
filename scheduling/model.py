"""Frozen value types of the scheduling core; every datetime is aware and every interval half-open."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo


class SpanUnit(StrEnum):
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"
    BUSINESS_HOURS = "business_hours"
    BUSINESS_DAYS = "business_days"


@dataclass(frozen=True, slots=True)
class Span:
    """A notice or window length; business units count only the host's working time."""

    amount: int
    unit: SpanUnit

    @property
    def is_business(self) -> bool:
        return self.unit in (SpanUnit.BUSINESS_HOURS, SpanUnit.BUSINESS_DAYS)

    def as_timedelta(self) -> timedelta:
        """Calendar length; only valid for minutes, hours and days."""
        if self.unit is SpanUnit.MINUTES:
            return timedelta(minutes=self.amount)
        if self.unit is SpanUnit.HOURS:
            return timedelta(hours=self.amount)
        if self.unit is SpanUnit.DAYS:
            return timedelta(days=self.amount)
        raise ValueError(f"{self.unit} is counted in working time, not calendar time")

    def describe(self) -> str:
        return f"{self.amount} {self.unit.value.replace('_', ' ')}"


@dataclass(frozen=True, slots=True)
class WallInterval:
    """Working time on one local day, in wall-clock terms; `ends` of 00:00 means the following midnight."""

    starts: time
    ends: time


@dataclass(frozen=True, slots=True)
class WorkingSchedule:
    """A host's weekly hours (Monday first) in their IANA zone, plus per-date overrides."""

    time_zone: ZoneInfo
    weekly: tuple[tuple[WallInterval, ...], ...]
    overrides: Mapping[date, tuple[WallInterval, ...]] = field(default_factory=dict)

    def intervals_on(self, day: date) -> tuple[WallInterval, ...]:
        if day in self.overrides:
            return self.overrides[day]
        return self.weekly[day.weekday()]


class BusyKind(StrEnum):
    EVENT = "event"
    """A meeting or calendar event: neither a meeting nor its buffers may overlap it."""
    BUFFER = "buffer"
    """Buffer time kept around an existing booking: a new meeting may not overlap it, buffers may."""


@dataclass(frozen=True, slots=True)
class BusyInterval:
    """Busy time [starts_at, ends_at). Integer epoch bounds are computed once at construction, because the engine
    compares thousands of them per computation; the start rounds down and the end up, so a sub-second edge
    still blocks the whole second it touches."""

    starts_at: datetime
    ends_at: datetime
    kind: BusyKind = BusyKind.EVENT
    label: str = "busy"
    start_second: int = field(init=False, repr=False, compare=False)
    end_second: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "start_second", math.floor(self.starts_at.timestamp()))
        object.__setattr__(self, "end_second", math.ceil(self.ends_at.timestamp()))


@dataclass(frozen=True, slots=True)
class HostAvailability:
    """Everything the engine needs about one host: when they work and when they are busy."""

    host_id: str
    schedule: WorkingSchedule
    busy: tuple[BusyInterval, ...] = ()


class HostMode(StrEnum):
    USER = "user"
    ROUND_ROBIN = "round_robin"
    PANEL = "panel"


@dataclass(frozen=True, slots=True)
class SlotRules:
    duration: timedelta
    increment: timedelta
    buffer_before: timedelta = timedelta(0)
    buffer_after: timedelta = timedelta(0)
    notice: Span = Span(0, SpanUnit.MINUTES)
    window: Span = Span(60, SpanUnit.DAYS)


@dataclass(frozen=True, slots=True)
class SlotQuery:
    """Every input of a slot computation, `now` included, so results are reproducible."""

    rules: SlotRules
    hosts: tuple[HostAvailability, ...]
    mode: HostMode
    range_start: datetime
    range_end: datetime
    now: datetime
    holidays: frozenset[date] = frozenset()


@dataclass(frozen=True, slots=True)
class Slot:
    """A bookable start; `host_ids` are the hosts free for it (all of them for a panel)."""

    starts_at: datetime
    ends_at: datetime
    host_ids: tuple[str, ...]


class ReasonCode(StrEnum):
    OUTSIDE_RANGE = "outside_range"
    OUTSIDE_HOURS = "outside_hours"
    HOLIDAY = "holiday"
    NOTICE = "notice"
    WINDOW = "window"
    BUSY = "busy"
    BUFFER = "buffer"
    INCREMENT = "increment"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a host cannot take a given start; `message` is written for an agent to read."""

    code: ReasonCode
    host_id: str
    message: str


def utc(moment: datetime) -> datetime:
    """Normalise an aware datetime to UTC; naive datetimes are a programming error."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to the scheduling core")
    return moment.astimezone(UTC)


class LocationKind(StrEnum):
    TEAMS = "teams"
    PHONE = "phone"
    ONSITE = "onsite"
    CUSTOM = "custom"


@dataclass(frozen=True, slots=True)
class Location:
    kind: LocationKind
    detail: str = ""

    def describe(self) -> str:
        if self.kind is LocationKind.TEAMS:
            return "Microsoft Teams meeting"
        if self.kind is LocationKind.PHONE:
            return f"Phone call{': ' + self.detail if self.detail else ''}"
        if self.kind is LocationKind.ONSITE:
            return f"On site{': ' + self.detail if self.detail else ''}"
        return self.detail or "Details to follow"


@dataclass(frozen=True, slots=True)
class Question:
    key: str
    label: str
    required: bool = False
    multiline: bool = False
    max_length: int = 500


@dataclass(frozen=True, slots=True)
class HostProfile:
    """A Slotwise user as a host: identity, working schedule and primary calendar."""

    user_id: str
    slug: str
    name: str
    email: str
    schedule: WorkingSchedule
    primary_calendar: str = "m365"


@dataclass(frozen=True, slots=True)
class AppointmentType:
    type_id: str
    tenant_id: str
    slug: str
    name: str
    internal_name: str
    rules: SlotRules
    location: Location
    mode: HostMode
    host_ids: tuple[str, ...]
    description: str = ""
    questions: tuple[Question, ...] = ()
    team_id: str | None = None


@dataclass(frozen=True, slots=True)
class SchedulingRequest:
    """An agent's or rep's link, optionally tied to a PSA ticket, overriding duration, window and guests; single-use
    unless made multi-use."""

    request_id: str
    ticket: str
    """The ticket as people see it: the PSA's displayed number once resolved, else the agent's text (a label)."""
    duration: timedelta | None
    window_starts_at: datetime | None
    window_ends_at: datetime | None
    guests: tuple[str, ...]
    used: bool
    ticket_id: str = ""
    """The PSA's id of the ticket, resolved when the request was created; empty when no PSA is connected."""
    ticket_number: str = ""
    """The number the PSA displays (Autotask T20261124.0001; ConnectWise and HaloPSA show the id)."""
    single_use: bool = True
    """False: every booking through the link is independent, until the link expires."""
    binding: PsaBinding | None = None
    """The PSA contact (and opportunity) the rep bound the link to; None: the steps find or create the contact."""


@dataclass(frozen=True, slots=True)
class BookingTarget:
    """What a booking page books: a type, its candidate hosts, the tenant's holidays and any request overrides."""

    tenant_id: str
    tenant_slug: str
    tenant_name: str
    appointment_type: AppointmentType
    hosts: tuple[HostProfile, ...]
    holidays: frozenset[date] = frozenset()
    request: SchedulingRequest | None = None

    @property
    def duration(self) -> timedelta:
        if self.request is not None and self.request.duration is not None:
            return self.request.duration
        return self.appointment_type.rules.duration


@dataclass(frozen=True, slots=True)
class ClientDetails:
    name: str
    email: str
    time_zone: str
    answers: Mapping[str, str]
    guests: tuple[str, ...] = ()
    notes: str = ""
    locale: str = ""
    """The language tag the client booked in ('de-DE', 'en-US'); later emails and reminders use it. "" for bookings
    made before it was kept (then the tenant's default applies)."""


class BookingStatus(StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Booking:
    booking_id: str
    tenant_id: str
    type_id: str
    host_ids: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime
    status: BookingStatus
    client: ClientDetails
    assignment_reason: str
    created_at: datetime
    request_id: str | None = None
    cancel_reason: str = ""
    version: int = 1
    """Bumped by every change (reschedule, cancel); clients send the version they saw with their change."""


@dataclass(frozen=True, slots=True)
class HostLoad:
    """Facts the round-robin picker needs about a host: their busy time and when they were last booked."""

    busy: tuple[BusyInterval, ...]
    last_booked_at: datetime | None


UTC_ZONE = ZoneInfo("UTC")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CalendarInvite:
    """What an ICS attachment describes; times are aware, UTC inside."""

    uid: str
    starts_at: datetime
    ends_at: datetime
    summary: str
    description: str
    location: str
    organizer_name: str
    organizer_email: str
    attendees: tuple[tuple[str, str], ...]
    """(display name, email) of each attendee."""
    sequence: int = 0
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One email to send. `message_id` is deterministic per effect, so a resend is recognisable as the same mail."""

    message_id: str
    from_name: str
    from_address: str
    to: tuple[str, ...]
    subject: str
    text: str
    html: str
    reply_to: str | None = None
    invite: CalendarInvite | None = None


class PsaRecordKind(StrEnum):
    TICKET = "ticket"
    OPPORTUNITY = "opportunity"
    ACTIVITY = "activity"
    """The non-ticket item: ConnectWise Activity, Autotask To-Do, HaloPSA Appointment."""
    SCHEDULE_ENTRY = "schedule_entry"
    """ConnectWise schedule entry, Autotask service call on a ticket (an Autotask appointment without one), HaloPSA
    appointment."""
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class PsaRef:
    """A record at the PSA: its id, and the number people see (a ticket number) where the vendor has one."""

    kind: PsaRecordKind
    record_id: str
    number: str = ""


@dataclass(frozen=True, slots=True)
class PsaContact:
    contact_id: str
    company_id: str
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class PsaOpportunity:
    """An open opportunity at the PSA (ConnectWise, Autotask; HaloPSA has none): its id, name and pipeline stage."""

    opportunity_id: str
    name: str
    stage: str


@dataclass(frozen=True, slots=True)
class PsaRecipientMatch:
    """What the PSA knows of an email's recipient: the contact with that address, its company's display name, and
    the contact's (or its company's) open opportunities, newest first."""

    contact: PsaContact
    company_name: str
    opportunities: tuple[PsaOpportunity, ...] = ()


@dataclass(frozen=True, slots=True)
class PsaBinding:
    """The PSA records a rep bound a link to, as the PSA named them when it was made: a booking through the link lands
    on this contact (never a duplicate of it) and, when one was chosen, on this open opportunity."""

    contact: PsaContact
    company_name: str = ""
    opportunity: PsaOpportunity | None = None

    def to_json(self) -> dict[str, Any]:
        contact = self.contact
        body: dict[str, Any] = {
            "contact": {
                "id": contact.contact_id,
                "company_id": contact.company_id,
                "name": contact.name,
                "email": contact.email,
            },
            "company_name": self.company_name,
        }
        if self.opportunity is not None:
            item = self.opportunity
            body["opportunity"] = {"id": item.opportunity_id, "name": item.name, "stage": item.stage}
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any] | None) -> PsaBinding | None:
        """The stored form back (None for None or a record without a contact id)."""
        if not body or not (body.get("contact") or {}).get("id"):
            return None
        contact = body["contact"]
        deal = body.get("opportunity") or {}
        return cls(
            PsaContact(
                str(contact["id"]),
                str(contact.get("company_id") or ""),
                str(contact.get("name") or ""),
                str(contact.get("email") or ""),
            ),
            str(body.get("company_name") or ""),
            PsaOpportunity(str(deal["id"]), str(deal.get("name") or ""), str(deal.get("stage") or ""))
            if deal.get("id")
            else None,
        )


@dataclass(frozen=True, slots=True)
class PsaDraft:
    """What any PSA create needs; each adapter maps it to its vendor's fields (to_wire_*).

    `idempotency_key` is written into the record (in a field the vendor lets us query) so a re-run after a lost
    response finds the record instead of creating a second one.
    """

    idempotency_key: str
    title: str
    description: str
    contact: PsaContact | None
    member: str
    """The PSA member/resource/agent identifier of the host."""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    board: str = ""
    """Ticket board (ConnectWise), queue (Autotask) or ticket type (HaloPSA)."""
    status: str = ""
    stage: str = ""
    ticket_id: str = ""
    opportunity_id: str = ""
    activity_id: str = ""
    """The non-ticket item (ConnectWise activity, Autotask To-Do, Halo appointment) an earlier step made, if any."""


@dataclass(frozen=True, slots=True)
class CalendarEventDraft:
    """A Microsoft 365 event to write on a host's calendar; `transaction_id` makes the create idempotent."""

    transaction_id: str
    subject: str
    body_html: str
    starts_at: datetime
    ends_at: datetime
    attendees: tuple[tuple[str, str], ...]
    """(display name, email) of each attendee."""
    location: str = ""
    teams_meeting: bool = True


@dataclass(frozen=True, slots=True)
class CalendarEventRef:
    event_id: str
    join_url: str = ""


@dataclass(frozen=True, slots=True)
class TeamsIdentity:
    """A Teams user mapped to a Slotwise user of the tenant bound to their Microsoft 365 tenant."""

    tenant_id: str
    tenant_slug: str
    user_id: str
    user_slug: str
    name: str
    email: str
    time_zone: str
    role: str
    managed_team_ids: tuple[str, ...] = ()

    @property
    def is_manager(self) -> bool:
        """Managers see their teams' bookings and the tenant's failed steps; admins see every team."""
        return self.role in ("manager", "admin") or bool(self.managed_team_ids)


@dataclass(frozen=True, slots=True)
class TypeSummary:
    """An appointment type as a rep sees it in chat."""

    type_id: str
    slug: str
    name: str
    duration_minutes: int
    location: Location
    description: str = ""


@dataclass(frozen=True, slots=True)
class UpcomingBooking:
    booking_id: str
    type_name: str
    client_name: str
    client_email: str
    starts_at: datetime
    ends_at: datetime
    host_ids: tuple[str, ...]
    host_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TeamRoster:
    team_id: str
    name: str
    members: tuple[tuple[str, str], ...]
    """(user id, name) in the team's order."""


@dataclass(frozen=True, slots=True)
class HostNotification:
    """What the host is told, in chat, when a client books, reschedules or cancels."""

    change: str
    """'booked', 'rescheduled', 'cancelled' or 'upcoming' (a reminder before the start)."""
    booking_id: str
    type_name: str
    client_name: str
    client_email: str
    starts_at: datetime
    ends_at: datetime
    join_url: str = ""
    reason: str = ""
    answers: tuple[tuple[str, str], ...] = ()
    previous_starts_at: datetime | None = None
    """For a reschedule: when it was before."""
    ticket_number: str = ""
    """The PSA ticket the booking is on, as the PSA shows it (the request's ticket, or the one a step created)."""
    ticket_url: str = ""
    """Where the host opens that ticket in the PSA's web app ("" when unknown)."""
    booking_url: str = ""
    """The booking's host page (pages/links.py HostLinks): details, answers, and what Slotwise did about it."""
