"""What the bot answers: natural phrasings mapped to commands, and each command or card action turned into a card.

Nothing here knows the Agents SDK; `bot/app.py` feeds it the resolved identity and sends what it returns. Every
action re-checks that the caller may act on what the card's data names: card data comes back from the client and
is never trusted on its own.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from cards.booking_link import render_booking_link, render_booking_link_preview
from cards.failures import render_failures
from cards.links import render_links
from cards.notice import render_notice
from cards.page import render_page
from cards.personal_chat import PersonalChatView, render_personal_chat
from cards.team import render_team
from cards.upcoming import render_upcoming
from cards.views import (
    BookingItem,
    BookingLinkView,
    Command,
    FailedStep,
    FailuresView,
    LinksView,
    NoticeView,
    PageView,
    TeamMember,
    TeamView,
    TypeLink,
    UpcomingView,
    WelcomeView,
)
from cards.welcome import render_welcome
from scheduling.errors import SlotwiseError
from scheduling.model import Booking, TeamsIdentity, TypeSummary, UpcomingBooking
from scheduling.ports import Clock, TeamsDirectory
from scheduling.service import Scheduler
from storage.database import Database
from workflows.dispatch import NoEmailConnection
from workflows.outbox import retry_job
from workflows.status import failed_steps, join_urls

Card = dict[str, Any]
MAX_TEXT = 2000
"""Longer messages are not commands; Teams itself caps a chat message at about 28 KB."""


class Intent(StrEnum):
    HELP = "help"
    LINKS = "links"
    PAGE = "page"
    UPCOMING = "upcoming"
    TEAM = "team"
    FAILURES = "failures"
    UNKNOWN = "unknown"


# Checked in order: "my appointment types" must mean links before "appointment" can mean upcoming bookings.
_RULES: tuple[tuple[Intent, re.Pattern[str]], ...] = (
    (Intent.HELP, re.compile(r"^(help|\?|hi|hello|hey|start|menu|commands?|what can you do.*|how does this work.*)$")),
    (Intent.FAILURES, re.compile(r"\b(failures?|failed|errors?|broken|stuck|retr(y|ies))\b")),
    (Intent.TEAM, re.compile(r"\b(team|teams|my reps|everyone'?s?)\b")),
    (
        Intent.LINKS,
        re.compile(r"\b(links?|urls?|appointment types?|meeting types?|types|event types?|share|sharing)\b"),
    ),
    (Intent.PAGE, re.compile(r"\b(page|personal|profile|my site)\b")),
    (
        Intent.UPCOMING,
        re.compile(
            r"\b(upcoming|coming up|next|bookings?|booked|meetings?|appointments?|schedule|agenda|calendar|today"
            r"|tomorrow|this week|what'?s on)\b"
        ),
    ),
    (Intent.HELP, re.compile(r"\b(help|commands?|options)\b")),
)


def parse_intent(text: str) -> Intent:
    """The command a free-text message asks for; @mentions and punctuation are ignored."""
    cleaned = re.sub(r"<at>.*?</at>", " ", text or "", flags=re.IGNORECASE | re.DOTALL)
    cleaned = re.sub(r"[^\w\s'?]", " ", cleaned.lower())
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    if not cleaned:
        return Intent.HELP
    for intent, pattern in _RULES:
        if pattern.search(cleaned):
            return intent
    return Intent.UNKNOWN


COMMANDS = (
    Command("links", "Your appointment types with their booking links to share", "my appointment types"),
    Command("page", "Your personal booking page", "my personal page"),
    Command("upcoming", "Your next bookings, with cancel and reschedule", "what's coming up?"),
    Command("help", "What I can do", "help"),
)
MANAGER_COMMANDS = (
    Command("team", "Your team's upcoming bookings, by member and day", "team bookings"),
    Command("failures", "Workflow steps that failed, with retry", "what failed?"),
)


def not_set_up_card() -> Card:
    return render_notice(
        NoticeView(
            title="You're not set up in Slotwise yet",
            text="I couldn't find a Slotwise user for your Microsoft 365 account. Ask your Slotwise admin to add you "
            "(with your work email or Entra object id) to your organisation's tenant file, then try again.",
            tone="warning",
        )
    )


def notice_card(title: str, text: str, tone: str = "default") -> Card:
    return render_notice(NoticeView(title=title, text=text, tone=tone))


class ActionRefused(Exception):
    """The caller may not do what the card asked; the message is shown to them."""


RequestReschedule = Callable[[Booking, str], Awaitable[None]]
"""Queues the 'pick a new time' email to a booking's client; raises NoEmailConnection when the tenant has none."""


@dataclass(frozen=True)
class ChatDeps:
    directory: TeamsDirectory
    database: Database
    scheduler: Scheduler
    clock: Clock
    base_url: str
    manage_url_for: Callable[[Booking], str]
    request_reschedule: RequestReschedule
    upcoming_limit: int = 10


class ChatService:
    def __init__(self, deps: ChatDeps) -> None:
        self._deps = deps

    def welcome(self, identity: TeamsIdentity) -> Card:
        commands = COMMANDS + MANAGER_COMMANDS if identity.is_manager else COMMANDS
        return render_welcome(WelcomeView(user_name=identity.name, commands=commands, is_manager=identity.is_manager))

    async def reply_to_text(
        self, identity: TeamsIdentity, text: str, zone: ZoneInfo, *, personal_chat_url: str | None = None
    ) -> Card:
        """The card answering a typed message. `personal_chat_url` is set when the conversation is shared (a group
        chat or channel): answers that show bookings, clients or failed steps become a note linking there."""
        if len(text) > MAX_TEXT:
            return notice_card(
                "That message is too long for me",
                "I answer short requests such as 'links', 'upcoming' or 'help'.",
            )
        intent = parse_intent(text)
        if personal_chat_url is not None and intent in _PRIVATE_INTENTS:
            return _personal_chat_note(_PRIVATE_INTENTS[intent], personal_chat_url)
        if intent is Intent.LINKS:
            return await self.links(identity)
        if intent is Intent.PAGE:
            return await self.page(identity)
        if intent is Intent.UPCOMING:
            return await self.upcoming(identity, zone)
        if intent is Intent.TEAM:
            return await self.team(identity, zone, {})
        if intent is Intent.FAILURES:
            return await self.failures(identity, zone)
        if intent is Intent.UNKNOWN:
            card = self.welcome(identity)
            card["body"].insert(
                0,
                {"type": "TextBlock", "text": "Sorry, I didn't catch that. Here is what I can do:", "wrap": True},
            )
            return card
        return self.welcome(identity)

    def _type_url(self, identity: TeamsIdentity, summary: TypeSummary) -> str:
        return f"{self._deps.base_url}/book/{identity.tenant_slug}/{summary.slug}"

    def _page_url(self, identity: TeamsIdentity) -> str:
        return f"{self._deps.base_url}/u/{identity.tenant_slug}/{identity.user_slug}"

    async def links(self, identity: TeamsIdentity) -> Card:
        types = await self._deps.directory.types_for_user(identity.tenant_id, identity.user_id)
        return render_links(
            LinksView(
                user_name=identity.name,
                personal_page_url=self._page_url(identity),
                types=tuple(
                    TypeLink(
                        type_id=summary.type_id,
                        name=summary.name,
                        duration_minutes=summary.duration_minutes,
                        location=summary.location.describe(),
                        url=self._type_url(identity, summary),
                    )
                    for summary in types
                ),
            )
        )

    async def page(self, identity: TeamsIdentity) -> Card:
        types = await self._deps.directory.types_for_user(identity.tenant_id, identity.user_id)
        return render_page(
            PageView(user_name=identity.name, personal_page_url=self._page_url(identity), type_count=len(types))
        )

    async def booking_links(self, identity: TeamsIdentity, query: str) -> list[tuple[Card, Card]]:
        """(card, preview) pairs for the message extension, filtered by the words the rep typed."""
        words = query.lower().split()
        found = []
        for summary in await self._deps.directory.types_for_user(identity.tenant_id, identity.user_id):
            haystack = f"{summary.name} {summary.slug} {summary.description}".lower()
            if all(word in haystack for word in words):
                view = BookingLinkView(
                    host_name=identity.name,
                    type_name=summary.name,
                    duration_minutes=summary.duration_minutes,
                    location=summary.location.describe(),
                    url=self._type_url(identity, summary),
                    description=summary.description,
                )
                found.append((render_booking_link(view), render_booking_link_preview(view)))
        return found

    async def _items(self, identity: TeamsIdentity, found: Sequence[UpcomingBooking]) -> tuple[BookingItem, ...]:
        links = await join_urls(self._deps.database, identity.tenant_id, [item.booking_id for item in found])
        return tuple(
            BookingItem(
                booking_id=item.booking_id,
                type_name=item.type_name,
                client_name=item.client_name,
                client_email=item.client_email,
                starts_at=item.starts_at,
                ends_at=item.ends_at,
                join_url=links.get(item.booking_id),
                host_names=item.host_names,
            )
            for item in found
        )

    async def upcoming(self, identity: TeamsIdentity, zone: ZoneInfo, notice: str | None = None) -> Card:
        found = await self._deps.directory.upcoming(
            identity.tenant_id, [identity.user_id], self._deps.clock.now(), self._deps.upcoming_limit + 1
        )
        items = await self._items(identity, found)
        return render_upcoming(UpcomingView(time_zone=zone, bookings=items, notice=notice))

    async def team(self, identity: TeamsIdentity, zone: ZoneInfo, data: Mapping[str, Any]) -> Card:
        if not identity.is_manager:
            return _manager_only("team bookings")
        rosters = await self._deps.directory.teams_for(identity)
        if not rosters:
            return notice_card("No team to show", "You don't manage a team in Slotwise yet.")
        wanted = str(data.get("teamId") or "")
        roster = next((item for item in rosters if item.team_id == wanted), rosters[0])
        member_ids = [member for member, _name in roster.members]
        member = str(data.get("member") or "") or None
        if member is not None and member not in member_ids:
            member = None
        day = _parse_day(data.get("day"))
        now = self._deps.clock.now()
        starts_from = now
        if day is not None:
            starts_from = max(now, datetime.combine(day, datetime.min.time(), zone))
        found = await self._deps.directory.upcoming(
            identity.tenant_id, [member] if member else member_ids, starts_from, 200
        )
        if day is not None:
            found = [item for item in found if item.starts_at.astimezone(zone).date() == day]
        return render_team(
            TeamView(
                team_id=roster.team_id,
                team_name=roster.name,
                time_zone=zone,
                members=tuple(TeamMember(user_id, name) for user_id, name in roster.members),
                bookings=await self._items(identity, found),
                member_filter=member,
                day_filter=day.isoformat() if day else None,
            )
        )

    async def failures(self, identity: TeamsIdentity, zone: ZoneInfo, notice: str | None = None) -> Card:
        if not identity.is_manager:
            return _manager_only("failed workflow steps")
        jobs = await failed_steps(self._deps.database, identity.tenant_id, limit=11)
        steps = tuple(
            FailedStep(
                job_id=str(job.id),
                booking_id=job.booking_id or "",
                client_name=str(job.payload.get("booking", {}).get("client", {}).get("name", "")),
                type_name=str(job.payload.get("booking", {}).get("type_name", "")),
                action=job.kind,
                target=_target_of(job.kind),
                attempts=job.attempts,
                last_error=job.last_error,
                failed_at=job.updated_at,
            )
            for job in jobs
        )
        return render_failures(FailuresView(time_zone=zone, steps=steps, notice=notice))

    async def execute(
        self,
        identity: TeamsIdentity,
        verb: str,
        data: Mapping[str, Any],
        zone: ZoneInfo,
        *,
        personal_chat_url: str | None = None,
    ) -> Card:
        """The refreshed card for an `Action.Execute`; unknown verbs get a card that says so. In a shared
        conversation (`personal_chat_url` set) no verb that shows or changes bookings or failed steps runs: their
        cards are only ever sent to a personal chat, so such a button arriving from a group gets the note, and
        nothing is changed."""
        if personal_chat_url is not None and verb in _PRIVATE_VERBS:
            return _personal_chat_note(_PRIVATE_VERBS[verb], personal_chat_url)
        if verb == "refreshUpcoming":
            return await self.upcoming(identity, zone)
        if verb == "cancelBooking":
            return await self._cancel(identity, data, zone)
        if verb == "sendRescheduleLink":
            return await self._send_reschedule_link(identity, data, zone)
        if verb == "filterTeam":
            return await self.team(identity, zone, data)
        if verb == "refreshFailures":
            return await self.failures(identity, zone)
        if verb == "retryStep":
            return await self._retry(identity, data, zone)
        return notice_card(
            "That button is no longer supported", "Ask me for 'help' to get a fresh card.", tone="warning"
        )

    async def _booking_for_action(self, identity: TeamsIdentity, data: Mapping[str, Any]) -> Booking:
        booking_id = data.get("bookingId")
        if not isinstance(booking_id, str) or not booking_id or len(booking_id) > 40:
            raise ActionRefused("That card did not say which booking to change.")
        booking = await self._deps.scheduler.get_booking(identity.tenant_id, booking_id)
        if identity.user_id in booking.host_ids or identity.role == "admin":
            return booking
        if identity.managed_team_ids:
            for roster in await self._deps.directory.teams_for(identity):
                if set(booking.host_ids) & {member for member, _name in roster.members}:
                    return booking
        # Same answer as an unknown id: a card cannot probe for other people's bookings.
        raise ActionRefused("I couldn't find that booking among yours.")

    async def _cancel(self, identity: TeamsIdentity, data: Mapping[str, Any], zone: ZoneInfo) -> Card:
        try:
            booking = await self._booking_for_action(identity, data)
            reason = data.get(f"reason_{booking.booking_id}", "")
            reason = reason.strip() if isinstance(reason, str) else ""
            cancelled = await self._deps.scheduler.cancel(booking, reason or f"Cancelled by {identity.name}")
        except (ActionRefused, SlotwiseError) as exc:
            return await self.upcoming(identity, zone, notice=f"Nothing was cancelled: {_message(exc)}")
        when = cancelled.starts_at.astimezone(zone).strftime("%a %d %b %H:%M")
        return await self.upcoming(
            identity, zone, notice=f"Cancelled {when} with {cancelled.client.name}. The client is told by email."
        )

    async def _send_reschedule_link(self, identity: TeamsIdentity, data: Mapping[str, Any], zone: ZoneInfo) -> Card:
        try:
            booking = await self._booking_for_action(identity, data)
            self._deps.scheduler.check_changeable(booking)
        except (ActionRefused, SlotwiseError) as exc:
            return await self.upcoming(identity, zone, notice=f"No link was sent: {_message(exc)}")
        try:
            await self._deps.request_reschedule(booking, identity.name)
        except NoEmailConnection as exc:
            link = self._deps.manage_url_for(booking)
            return await self.upcoming(identity, zone, notice=f"{exc}. Send the client this link yourself: {link}")
        return await self.upcoming(
            identity, zone, notice=f"Sent {booking.client.name} a link to pick a new time ({booking.client.email})."
        )

    async def _retry(self, identity: TeamsIdentity, data: Mapping[str, Any], zone: ZoneInfo) -> Card:
        if not identity.is_manager:
            return _manager_only("retrying failed steps")
        raw = data.get("jobId")
        raw = str(raw) if isinstance(raw, (str, int)) else ""
        if not raw.isdigit() or len(raw) > 18:
            return await self.failures(identity, zone, notice="That card did not say which step to retry.")
        if await retry_job(self._deps.database, identity.tenant_id, int(raw)):
            return await self.failures(identity, zone, notice="Retrying now. The step will run again in a moment.")
        return await self.failures(
            identity, zone, notice="That step is no longer failed, so there is nothing to retry."
        )


_PRIVATE_INTENTS = {
    Intent.UPCOMING: "your upcoming bookings",
    Intent.TEAM: "your team's bookings",
    Intent.FAILURES: "failed workflow steps",
}
"""Commands whose cards show client names and emails (or colleagues' bookings): personal chat only."""
_PRIVATE_VERBS = {
    "refreshUpcoming": "your upcoming bookings",
    "cancelBooking": "booking changes",
    "sendRescheduleLink": "booking changes",
    "filterTeam": "your team's bookings",
    "refreshFailures": "failed workflow steps",
    "retryStep": "failed workflow steps",
}


def _personal_chat_note(what: str, chat_url: str) -> Card:
    return render_personal_chat(PersonalChatView(what=what, chat_url=chat_url))


def _manager_only(what: str) -> Card:
    return notice_card(
        "That's for managers",
        f"Sorry, {what} are only shown to team managers. Ask me for 'upcoming' to see your own bookings.",
    )


def _message(exc: Exception) -> str:
    return str(exc) or "that isn't possible right now."


def _parse_day(value: Any) -> date | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


_TARGETS = {
    "create_m365_event": "Microsoft 365",
    "update_m365_event": "Microsoft 365",
    "cancel_m365_event": "Microsoft 365",
    "send_email": "Email",
    "notify_host": "Teams",
    "post_webhook": "Webhook",
}


def _target_of(kind: str) -> str:
    return _TARGETS.get(kind, "PSA")
