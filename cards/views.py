"""What each card shows: frozen view models the bot fills from the database; cards never query anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class Command:
    """One thing a rep can ask the bot, with an example phrasing."""

    name: str
    """The word to type, e.g. "links"."""
    description: str
    example: str


@dataclass(frozen=True, slots=True)
class WelcomeView:
    user_name: str
    commands: tuple[Command, ...]
    is_manager: bool


@dataclass(frozen=True, slots=True)
class NoticeView:
    """A short message: a polite refusal, "not set up", an error the user can act on."""

    title: str
    text: str
    tone: str = "default"
    """"default", "warning" or "attention"."""


@dataclass(frozen=True, slots=True)
class TypeLink:
    type_id: str
    name: str
    duration_minutes: int
    location: str
    """Human description, e.g. "Microsoft Teams meeting" or "Phone call"."""
    url: str
    """The type's Shareable URL."""


@dataclass(frozen=True, slots=True)
class LinksView:
    user_name: str
    personal_page_url: str
    types: tuple[TypeLink, ...]


@dataclass(frozen=True, slots=True)
class PageView:
    user_name: str
    personal_page_url: str
    type_count: int


@dataclass(frozen=True, slots=True)
class BookingItem:
    booking_id: str
    type_name: str
    client_name: str
    client_email: str
    starts_at: datetime
    ends_at: datetime
    join_url: str | None
    host_names: tuple[str, ...] = ()
    """Shown on the team card; empty on a rep's own list."""
    reschedule_link_sent: bool = False
    """A reschedule link went to the client a moment ago: the button says so and is disabled."""


@dataclass(frozen=True, slots=True)
class UpcomingView:
    time_zone: ZoneInfo
    bookings: tuple[BookingItem, ...]
    notice: str | None = None
    """A line shown above the list after an action, e.g. "Cancelled the 10:00 call with Dana Fox"."""
    total: int | None = None
    """How many upcoming bookings there are in all (None: `bookings` is everything there is)."""
    offset: int = 0
    """How many came before `bookings[0]`: the page's place in the whole list, for "Show more"."""


@dataclass(frozen=True, slots=True)
class TeamMember:
    user_id: str
    name: str


@dataclass(frozen=True, slots=True)
class TeamChoice:
    team_id: str
    name: str


@dataclass(frozen=True, slots=True)
class TeamView:
    team_id: str
    team_name: str
    time_zone: ZoneInfo
    members: tuple[TeamMember, ...]
    bookings: tuple[BookingItem, ...]
    member_filter: str | None = None
    """A user id from `members`, or None for everyone."""
    day_filter: str | None = None
    """An ISO date (YYYY-MM-DD) in `time_zone`, or None for every upcoming day."""
    total: int | None = None
    """How many bookings match the filter in all (None: `bookings` is everything there is)."""
    offset: int = 0
    """How many matching bookings came before `bookings[0]`."""
    teams: tuple[TeamChoice, ...] = ()
    """Every team the manager may look at, to switch between; the card shows no picker for fewer than two."""


@dataclass(frozen=True, slots=True)
class FailedStep:
    job_id: str
    booking_id: str
    client_name: str
    type_name: str
    action: str
    """The workflow action, e.g. "create_ticket"."""
    target: str
    """The system, e.g. "connectwise", "graph", "email"."""
    attempts: int
    last_error: str
    failed_at: datetime


@dataclass(frozen=True, slots=True)
class FailuresView:
    time_zone: ZoneInfo
    steps: tuple[FailedStep, ...]
    notice: str | None = None


class BookingChange(StrEnum):
    BOOKED = "booked"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"
    UPCOMING = "upcoming"
    """A `before_appointment` reminder."""


@dataclass(frozen=True, slots=True)
class BookingEventView:
    """The proactive card a host gets when a client books, reschedules or cancels."""

    change: BookingChange
    booking_id: str
    type_name: str
    client_name: str
    client_email: str
    starts_at: datetime
    ends_at: datetime
    time_zone: ZoneInfo
    join_url: str | None = None
    previous_starts_at: datetime | None = None
    reason: str = ""
    answers: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    """Intake form answers as (label, value)."""
    ticket_number: str = ""
    """The PSA ticket the booking is on, as the PSA shows it; empty when there is none (yet)."""
    notice: str | None = None
    """A line shown under the headline after the host acted on this card, e.g. "Sent Dana a link"."""
    reschedule_link_sent: bool = False
    booking_url: str = ""
    """The booking's host page ("Open booking"); "" leaves the button out."""
    ticket_url: str = ""
    """The ticket in the PSA's web app ("Open ticket"); "" leaves the button out."""


@dataclass(frozen=True, slots=True)
class BookingLinkView:
    """The card a rep inserts into any chat from the message extension."""

    host_name: str
    """Who the client books: the rep, "the Sales team" (round robin) or "Alice and Bob" (a panel)."""
    type_name: str
    duration_minutes: int
    location: str
    url: str
    description: str = ""
