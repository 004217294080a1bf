"""Our email and invitation values to MIME and iCalendar (RFC 5545), safe against header and ICS injection."""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from icalendar import Calendar, Event, vCalAddress, vText

from scheduling.model import CalendarInvite, OutgoingEmail

_MAX_HEADER = 300


def clean_header(value: str) -> str:
    """One line of header text: CR, LF and other control characters become spaces, so a client's name or a
    template's subject can never start a new header (CWE-93). Long values are cut."""
    flattened = "".join(" " if ord(char) < 32 or ord(char) == 127 else char for char in value)
    return " ".join(flattened.split())[:_MAX_HEADER]


def _address(display_name: str, email: str) -> Address:
    local, _, domain = email.rpartition("@")
    return Address(display_name=clean_header(display_name), username=clean_header(local), domain=clean_header(domain))


def to_wire_ics(invite: CalendarInvite, stamped_at: datetime) -> bytes:
    """An iCalendar REQUEST (or CANCEL) for the invite. icalendar escapes text values, so commas, semicolons and
    newlines inside names and notes stay inside their property."""
    calendar = Calendar()
    calendar.add("prodid", "-//Slotwise//Booking//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "CANCEL" if invite.cancelled else "REQUEST")
    event = Event()
    event.add("uid", invite.uid)
    event.add("sequence", invite.sequence)
    event.add("dtstamp", stamped_at)
    event.add("dtstart", invite.starts_at)
    event.add("dtend", invite.ends_at)
    event.add("summary", vText(invite.summary))
    event.add("description", vText(invite.description))
    event.add("location", vText(invite.location))
    event.add("status", "CANCELLED" if invite.cancelled else "CONFIRMED")
    organizer = vCalAddress(f"mailto:{clean_header(invite.organizer_email)}")
    organizer.params["cn"] = vText(clean_header(invite.organizer_name))
    event.add("organizer", organizer)
    for name, email in invite.attendees:
        attendee = vCalAddress(f"mailto:{clean_header(email)}")
        attendee.params["cn"] = vText(clean_header(name))
        attendee.params["role"] = vText("REQ-PARTICIPANT")
        event.add("attendee", attendee, encode=False)
    calendar.add_component(event)
    return bytes(calendar.to_ical())


def to_wire_message(email: OutgoingEmail, sent_at: datetime) -> EmailMessage:
    """A multipart/alternative message (text and HTML), with the invitation attached as text/calendar."""
    message = EmailMessage()
    message["Message-ID"] = clean_header(email.message_id)
    message["From"] = _address(email.from_name, email.from_address)
    message["To"] = [_address("", recipient) for recipient in email.to]
    if email.reply_to:
        message["Reply-To"] = _address("", email.reply_to)
    message["Subject"] = clean_header(email.subject)
    message["Date"] = format_datetime(sent_at)
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    if email.invite is not None:
        method = "CANCEL" if email.invite.cancelled else "REQUEST"
        message.add_attachment(
            to_wire_ics(email.invite, sent_at),
            maintype="text",
            subtype="calendar",
            filename="invite.ics",
            params={"method": method},
        )
    return message
