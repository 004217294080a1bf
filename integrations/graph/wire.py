"""Our calendar, busy-time and email values to and from Microsoft Graph's models (msgraph-sdk generated classes)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msgraph.generated.models.attendee import Attendee
from msgraph.generated.models.attendee_type import AttendeeType
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.event import Event
from msgraph.generated.models.file_attachment import FileAttachment
from msgraph.generated.models.free_busy_status import FreeBusyStatus
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.location import Location
from msgraph.generated.models.message import Message
from msgraph.generated.models.online_meeting_provider_type import OnlineMeetingProviderType
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.models.schedule_item import ScheduleItem
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody

from integrations.mail.wire import clean_header, to_wire_ics
from scheduling.errors import IntegrationRejected
from scheduling.model import BusyInterval, CalendarEventDraft, OutgoingEmail

BUSY_LABEL = "Microsoft 365: busy"
"""The only label busy time from Graph gets: subjects of other people's meetings are private."""

_BLOCKING = frozenset(
    {FreeBusyStatus.Busy, FreeBusyStatus.Oof, FreeBusyStatus.Tentative, FreeBusyStatus.WorkingElsewhere}
)
"""Tentative blocks too: a host who half-accepted a meeting should not be offered that time."""

_UTC_NAMES = frozenset({"utc", "z", "coordinated universal time", "etc/utc"})


def to_wire_time(moment: datetime) -> DateTimeTimeZone:
    """A `dateTimeTimeZone` in UTC, so no Windows zone names are involved."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime sent to Graph")
    return DateTimeTimeZone(date_time=moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), time_zone="UTC")


def from_wire_time(value: DateTimeTimeZone | None) -> datetime:
    """Graph answers wall-clock `dateTime` with seven fractional digits and a zone name (UTC, because we ask for
    it with `Prefer: outlook.timezone="UTC"`); Python's parser takes at most six digits."""
    if value is None or not value.date_time:
        raise IntegrationRejected("Graph answered a time without dateTime")
    text = value.date_time.rstrip("Z")
    head, dot, fraction = text.partition(".")
    if dot:
        text = f"{head}.{fraction[:6]}"
    zone_name = (value.time_zone or "UTC").strip()
    try:
        zone = ZoneInfo("UTC") if zone_name.lower() in _UTC_NAMES else ZoneInfo(zone_name)
        parsed = datetime.fromisoformat(text)
    except (ValueError, ZoneInfoNotFoundError) as exc:
        raise IntegrationRejected(f"Graph answered an unreadable time: {value.date_time} {zone_name}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def to_wire_event(draft: CalendarEventDraft) -> Event:
    """The event to create. `transactionId` lets Graph recognise a retried create (apis.md §4); Teams meetings
    ask for `teamsForBusiness` explicitly rather than relying on the mailbox's default provider."""
    event = Event(
        subject=clean_header(draft.subject),
        body=ItemBody(content_type=BodyType.Html, content=draft.body_html),
        start=to_wire_time(draft.starts_at),
        end=to_wire_time(draft.ends_at),
        attendees=[
            Attendee(email_address=EmailAddress(address=email, name=clean_header(name)), type=AttendeeType.Required)
            for name, email in draft.attendees
        ],
        allow_new_time_proposals=False,
        transaction_id=draft.transaction_id,
    )
    if draft.location:
        event.location = Location(display_name=clean_header(draft.location))
    if draft.teams_meeting:
        event.is_online_meeting = True
        event.online_meeting_provider = OnlineMeetingProviderType.TeamsForBusiness
    return event


def to_wire_move(starts_at: datetime, ends_at: datetime) -> Event:
    return Event(start=to_wire_time(starts_at), end=to_wire_time(ends_at))


def from_wire_schedule_items(items: Sequence[ScheduleItem] | None) -> list[BusyInterval]:
    """Blocking items as busy intervals, labelled without subject or location, sorted and without duplicates
    (an item that spans two lookup windows is reported by both)."""
    found: set[tuple[datetime, datetime]] = set()
    for item in items or ():
        if item.status not in _BLOCKING:
            continue
        starts_at, ends_at = from_wire_time(item.start), from_wire_time(item.end)
        if ends_at > starts_at:
            found.add((starts_at, ends_at))
    return [BusyInterval(starts_at, ends_at, label=BUSY_LABEL) for starts_at, ends_at in sorted(found)]


def schedule_windows(starts_at: datetime, ends_at: datetime, max_days: int) -> Iterator[tuple[datetime, datetime]]:
    """[starts_at, ends_at) cut into consecutive windows of at most `max_days` days (getSchedule takes < 42)."""
    step = timedelta(days=max_days)
    cursor = starts_at
    while cursor < ends_at:
        window_end = min(cursor + step, ends_at)
        yield cursor, window_end
        cursor = window_end


def batches(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for index in range(0, len(items), size):
        yield list(items[index : index + size])


def to_wire_mail(email: OutgoingEmail, stamped_at: datetime) -> SendMailPostRequestBody:
    """A sendMail body: the HTML alternative as the body (Graph sends one body; clients render HTML), the
    invitation as an `invite.ics` file attachment. Subjects are plain text at Graph, so they are only flattened
    to one line, never HTML-escaped."""
    message = Message(
        subject=clean_header(email.subject),
        body=ItemBody(content_type=BodyType.Html, content=email.html),
        to_recipients=[Recipient(email_address=EmailAddress(address=address)) for address in email.to],
        internet_message_id=clean_header(email.message_id),
    )
    if email.from_name:
        message.from_ = Recipient(
            email_address=EmailAddress(address=email.from_address, name=clean_header(email.from_name))
        )
    if email.reply_to:
        message.reply_to = [Recipient(email_address=EmailAddress(address=email.reply_to))]
    if email.invite is not None:
        method = "CANCEL" if email.invite.cancelled else "REQUEST"
        message.attachments = [
            FileAttachment(
                name="invite.ics",
                content_type=f"text/calendar; method={method}; charset=UTF-8",
                content_bytes=to_wire_ics(email.invite, stamped_at),
            )
        ]
    return SendMailPostRequestBody(message=message, save_to_sent_items=True)
