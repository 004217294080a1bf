"""What the bot answers: natural phrasings mapped to commands, and each command or card action turned into a card.

Nothing here knows the Agents SDK; `bot/app.py` feeds it the resolved identity and sends what it returns. Every
action re-checks that the caller may act on what the card's data names: card data comes back from the client and
is never trusted on its own.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from cards.booking_event import render_booking_event
from cards.booking_link import render_booking_link, render_booking_link_preview
from cards.failures import render_failures
from cards.links import render_links
from cards.notice import render_notice
from cards.page import render_page
from cards.personal_chat import PersonalChatView, render_personal_chat
from cards.team import render_team
from cards.text import format_clock, format_moment
from cards.upcoming import render_upcoming
from cards.views import (
    BookingChange,
    BookingEventView,
    BookingItem,
    BookingLinkView,
    Command,
    FailedStep,
    FailuresView,
    LinksView,
    NoticeView,
    PageView,
    TeamChoice,
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
from storage.bot_queries import (
    count_upcoming,
    failed_step_rows,
    host_phrases,
    labelled_answers,
    recently_requested,
    type_facts,
)
from storage.database import Database
from workflows.dispatch import RESCHEDULE_REQUESTED, AlreadyRequested, NoEmailConnection
from workflows.outbox import Job, retry_job
from workflows.status import join_urls, step_links

Card = dict[str, Any]
MAX_TEXT = 2000
"""Longer messages are not commands; Teams itself caps a chat message at about 28 KB."""
MAX_OFFSET = 1000
"""How far "Show more" pages into a list; past that, filters are the better tool (and each page stays cheap)."""
TEAM_PAGE = 15
"""Bookings per page of the team card (cards/team.py shows at most 15)."""
FAILURES_SHOWN = 11
"""Failed steps fetched for the card: its 10, and one more so it can say there are more."""
RESCHEDULE_LINK_QUIET = timedelta(minutes=5)
"""After a reschedule link went to a client, further presses within this time send nothing: a host who presses
three times (or a card whose answer was slow) must not email the client three identical links."""


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


RequestReschedule = Callable[[Booking, str, datetime], Awaitable[None]]
"""Queues the 'pick a new time' email to a booking's client; raises NoEmailConnection when the tenant has none and
AlreadyRequested when one was queued since the given moment (checked under a lock, across processes)."""


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
    """Bookings per page of the "upcoming" card."""
    host_url_for: Callable[[Booking], str] | None = None
    """The booking's host page ("Open booking" on the host's card); None leaves the button out."""


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
        summaries = [
            summary
            for summary in await self._deps.directory.types_for_user(identity.tenant_id, identity.user_id)
            if all(word in f"{summary.name} {summary.slug} {summary.description}".lower() for word in words)
        ]
        # Round robin books the team, a panel books everyone on it: the card says so, not just this rep's name.
        hosts = await host_phrases(self._deps.database, identity.tenant_id, [s.type_id for s in summaries])
        for summary in summaries:
            view = BookingLinkView(
                host_name=hosts.get(summary.type_id) or identity.name,
                type_name=summary.name,
                duration_minutes=summary.duration_minutes,
                location=summary.location.describe(),
                url=self._type_url(identity, summary),
                description=summary.description,
            )
            found.append((render_booking_link(view), render_booking_link_preview(view)))
        return found

    async def _items(
        self, identity: TeamsIdentity, found: Sequence[UpcomingBooking], *, sent_to: str | None = None
    ) -> tuple[BookingItem, ...]:
        ids = [item.booking_id for item in found]
        links = await join_urls(self._deps.database, identity.tenant_id, ids)
        # A link sent a moment ago reads "sent" on every card that lists the booking, not only the one pressed.
        sent = await recently_requested(
            self._deps.database, identity.tenant_id, ids, RESCHEDULE_REQUESTED, _quiet_since()
        )
        if sent_to is not None:
            sent.add(sent_to)
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
                reschedule_link_sent=item.booking_id in sent,
            )
            for item in found
        )

    async def upcoming(
        self,
        identity: TeamsIdentity,
        zone: ZoneInfo,
        notice: str | None = None,
        *,
        offset: int = 0,
        sent_to: str | None = None,
    ) -> Card:
        """One page of the rep's upcoming bookings from `offset`, with the whole list's count. `sent_to` is a booking
        whose reschedule link just went out: its button then reads "sent"."""
        page = self._deps.upcoming_limit
        now = self._deps.clock.now()
        found = await self._deps.directory.upcoming(identity.tenant_id, [identity.user_id], now, offset + page)
        total = await count_upcoming(self._deps.database, identity.tenant_id, [identity.user_id], now)
        items = await self._items(identity, found[offset : offset + page], sent_to=sent_to)
        return render_upcoming(UpcomingView(time_zone=zone, bookings=items, notice=notice, total=total, offset=offset))

    async def team(self, identity: TeamsIdentity, zone: ZoneInfo, data: Mapping[str, Any]) -> Card:
        if not identity.is_manager:
            return _manager_only("team bookings")
        rosters = await self._deps.directory.teams_for(identity)
        if not rosters:
            return notice_card("No team to show", "You don't manage a team in Slotwise yet.")
        # The team picker's input ("team") wins over the button's team ("teamId"): a manager who picks another
        # team and presses Filter wants that team. A page of the old team makes no sense in the new one.
        shown = str(data.get("teamId") or "")
        wanted = str(data.get("team") or "") or shown
        roster = next((item for item in rosters if item.team_id == wanted), rosters[0])
        offset = _offset(data) if roster.team_id == shown else 0
        member_ids = [member for member, _name in roster.members]
        member = str(data.get("member") or "") or None
        if member is not None and member not in member_ids:
            member = None
        hosts = [member] if member else member_ids
        day = _parse_day(data.get("day"))
        now = self._deps.clock.now()
        starts_from = now
        within = None
        if day is not None:
            day_start = datetime.combine(day, datetime.min.time(), zone)
            within = (day_start, datetime.combine(day + timedelta(days=1), datetime.min.time(), zone))
            starts_from = max(now, day_start)
        # A day's bookings follow any that started the day before and run past midnight, so a day view reads a
        # little further than its page.
        found = await self._deps.directory.upcoming(
            identity.tenant_id, hosts, starts_from, offset + TEAM_PAGE + (200 if day else 0)
        )
        if day is not None:
            found = [item for item in found if item.starts_at.astimezone(zone).date() == day]
        total = await count_upcoming(self._deps.database, identity.tenant_id, hosts, now, starts_within=within)
        return render_team(
            TeamView(
                team_id=roster.team_id,
                team_name=roster.name,
                time_zone=zone,
                members=tuple(TeamMember(user_id, name) for user_id, name in roster.members),
                bookings=await self._items(identity, found[offset : offset + TEAM_PAGE]),
                member_filter=member,
                day_filter=day.isoformat() if day else None,
                total=total,
                offset=offset,
                teams=tuple(TeamChoice(item.team_id, item.name) for item in rosters),
            )
        )

    async def _visible_hosts(self, identity: TeamsIdentity) -> list[str] | None:
        """Whose bookings' failed steps this manager sees: their teams' members; None (everyone) for an admin."""
        if identity.role == "admin":
            return None
        rosters = await self._deps.directory.teams_for(identity)
        return sorted({member for roster in rosters for member, _name in roster.members})

    async def failures(self, identity: TeamsIdentity, zone: ZoneInfo, notice: str | None = None) -> Card:
        if not identity.is_manager:
            return _manager_only("failed workflow steps")
        hosts = await self._visible_hosts(identity)
        rows = await failed_step_rows(self._deps.database, identity.tenant_id, hosts, FAILURES_SHOWN)
        jobs = [Job.from_row(row) for row in rows]
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
            return await self.upcoming(identity, zone, offset=_offset(data))
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
        from_event = data.get("card") == "event"
        try:
            booking = await self._booking_for_action(identity, data)
        except (ActionRefused, SlotwiseError) as exc:
            return await self.upcoming(identity, zone, notice=f"Nothing was cancelled: {_message(exc)}")
        try:
            reason = data.get(f"reason_{booking.booking_id}", "")
            reason = reason.strip() if isinstance(reason, str) else ""
            cancelled = await self._deps.scheduler.cancel(booking, reason or f"Cancelled by {identity.name}")
        except SlotwiseError as exc:
            notice = f"Nothing was cancelled: {_message(exc)}"
            if from_event:
                return await self._event_card(identity, booking, zone, data, notice)
            return await self.upcoming(identity, zone, notice=notice)
        when = format_moment(cancelled.starts_at, zone)
        notice = f"Cancelled {when} with {cancelled.client.name}. The client is told by email."
        if from_event:
            return await self._event_card(identity, cancelled, zone, data, notice)
        return await self.upcoming(identity, zone, notice=notice)

    async def _send_reschedule_link(self, identity: TeamsIdentity, data: Mapping[str, Any], zone: ZoneInfo) -> Card:
        from_event = data.get("card") == "event"
        try:
            booking = await self._booking_for_action(identity, data)
        except (ActionRefused, SlotwiseError) as exc:
            return await self.upcoming(identity, zone, notice=f"No link was sent: {_message(exc)}")

        async def answer(notice: str, *, sent: bool) -> Card:
            if from_event:
                return await self._event_card(identity, booking, zone, data, notice, link_sent=sent)
            return await self.upcoming(identity, zone, notice=notice, sent_to=booking.booking_id if sent else None)

        try:
            self._deps.scheduler.check_changeable(booking)
        except SlotwiseError as exc:
            return await answer(f"No link was sent: {_message(exc)}", sent=False)
        # The quiet window is checked in the enqueue transaction, under a lock on the booking's row: presses in this
        # process or another queue one email between them.
        try:
            await self._deps.request_reschedule(booking, identity.name, _quiet_since())
        except AlreadyRequested as already:
            at = format_clock(already.at.astimezone(zone))
            return await answer(
                f"A link to pick a new time already went to {booking.client.name} at {at}; "
                "I won't send another within a few minutes.",
                sent=True,
            )
        except NoEmailConnection as exc:
            link = self._deps.manage_url_for(booking)
            return await answer(f"{exc}. Send the client this link yourself: {link}", sent=False)
        return await answer(
            f"Sent {booking.client.name} a link to pick a new time ({booking.client.email}).", sent=True
        )

    async def _event_card(
        self,
        identity: TeamsIdentity,
        booking: Booking,
        zone: ZoneInfo,
        data: Mapping[str, Any],
        notice: str,
        *,
        link_sent: bool = False,
    ) -> Card:
        """The host's booking card again, from the database, with `notice` under its headline: an action on that
        card answers in place, and the client's answers (a phone number, say) must not vanish from the chat."""
        facts = await type_facts(self._deps.database, identity.tenant_id, booking.type_id)
        rows = labelled_answers(facts, booking.client.answers)
        if booking.status.value == "cancelled":
            change = BookingChange.CANCELLED
        else:
            raw = str(data.get("change") or "")
            change = BookingChange(raw) if raw in _EVENT_CHANGES else BookingChange.BOOKED
        links = await step_links(self._deps.database, identity.tenant_id, booking.booking_id)
        ticket = links.get("ticket_number") or data.get("ticket")
        host_url_for = self._deps.host_url_for
        view = BookingEventView(
            change=change,
            booking_id=booking.booking_id,
            type_name=facts.name if facts else "",
            client_name=booking.client.name,
            client_email=booking.client.email,
            starts_at=booking.starts_at,
            ends_at=booking.ends_at,
            time_zone=zone,
            join_url=links.get("join_url"),
            reason=booking.cancel_reason,
            answers=tuple(rows),
            # Shown back only to the host who pressed the button, escaped like everything else on the card.
            ticket_number=ticket[:64] if isinstance(ticket, str) else "",
            notice=notice,
            reschedule_link_sent=link_sent,
            booking_url=host_url_for(booking) if host_url_for is not None else "",
            ticket_url=links.get("ticket_url", ""),
        )
        return render_booking_event(view)

    async def _retry(self, identity: TeamsIdentity, data: Mapping[str, Any], zone: ZoneInfo) -> Card:
        if not identity.is_manager:
            return _manager_only("retrying failed steps")
        raw = data.get("jobId")
        raw = str(raw) if isinstance(raw, (str, int)) else ""
        if not raw.isdigit() or len(raw) > 18:
            return await self.failures(identity, zone, notice="That card did not say which step to retry.")
        hosts = await self._visible_hosts(identity)
        if hosts is not None:
            # A manager retries only their teams' steps, the ones their card lists.
            mine = await failed_step_rows(self._deps.database, identity.tenant_id, hosts, None, job_id=int(raw))
            if not mine:
                return await self.failures(
                    identity, zone, notice="That step is no longer failed, so there is nothing to retry."
                )
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


_EVENT_CHANGES = frozenset(change.value for change in BookingChange)


def _quiet_since() -> datetime:
    """The start of the reschedule-link quiet window. Outbox rows are stamped with the system clock
    (workflows/outbox.py), not the app's Clock, so the window is measured on it too."""
    return datetime.now(UTC) - RESCHEDULE_LINK_QUIET


def _offset(data: Mapping[str, Any]) -> int:
    """The "Show more" button's offset: a whole number from 0 to MAX_OFFSET, anything else is 0."""
    raw = data.get("offset")
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        return 0
    text = str(raw)
    return min(int(text), MAX_OFFSET) if text.isdigit() and len(text) <= 6 else 0


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
