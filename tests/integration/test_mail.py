"""Email from the recipient's side: real SMTP to a local server, escaped HTML, no header or ICS injection."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from integrations.mail.adapter import SmtpMailer
from integrations.mail.config import SmtpConfig
from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable
from scheduling.model import (
    AppointmentType,
    Booking,
    BookingStatus,
    BookingTarget,
    CalendarInvite,
    ClientDetails,
    HostMode,
    HostProfile,
    Location,
    LocationKind,
    OutgoingEmail,
    SlotRules,
    WorkingSchedule,
)
from tests.fakes.smtp import FakeSmtpServer, running_smtp_server
from workflows.templates import DEFAULT_BODY, DEFAULT_SUBJECT, compose_email, render_email, snapshot_variables

EVIL = 'Eve\r\nBcc: victim@example.com\r\n<script>alert("x")</script>'
STARTS = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    with running_smtp_server() as server:
        yield server


def mailer_for(server: FakeSmtpServer, *, password: str | None = None) -> SmtpMailer:
    return SmtpMailer(
        SmtpConfig(
            host="127.0.0.1",
            port=server.port,
            username=server.username,
            password=password or server.password,
            start_tls=False,
            from_address="bookings@acme-it.example",
            from_name="Acme IT",
        )
    )


def sample_booking(name: str = "Dana Client") -> tuple[BookingTarget, Booking]:
    schedule = WorkingSchedule(ZoneInfo("America/New_York"), ((),) * 7)
    kind = AppointmentType(
        type_id="t1",
        tenant_id="acme",
        slug="intro-call",
        name="Intro call",
        internal_name="Intro",
        rules=SlotRules(duration=timedelta(minutes=30), increment=timedelta(minutes=30)),
        location=Location(LocationKind.TEAMS),
        mode=HostMode.USER,
        host_ids=("u1",),
    )
    target = BookingTarget(
        "acme",
        "acme",
        "Acme <Managed> IT",
        kind,
        (HostProfile("u1", "alice", "Alice Adams", "alice@acme-it.example", schedule),),
    )
    booking = Booking(
        booking_id="b1",
        tenant_id="acme",
        type_id="t1",
        host_ids=("u1",),
        starts_at=STARTS,
        ends_at=STARTS + timedelta(minutes=30),
        status=BookingStatus.CONFIRMED,
        client=ClientDetails(
            name, "dana@client.example", "Europe/London", {"company": "<b>Co</b>"}, ("guest@client.example",)
        ),
        assignment_reason="",
        created_at=STARTS - timedelta(days=1),
    )
    return target, booking


def variables_for(target: BookingTarget, booking: Booking, manage_url: str, **outputs: str) -> dict[str, Any]:
    """What a send_email step sees: the booking snapshot its job carries (as workflows/dispatch.py freezes it)."""
    names = {host.user_id: host.name for host in target.hosts}
    snapshot = {
        "id": booking.booking_id,
        "tenant_name": target.tenant_name,
        "type_name": target.appointment_type.name,
        "starts_at": booking.starts_at.isoformat(),
        "ends_at": booking.ends_at.isoformat(),
        "status": booking.status.value,
        "location": target.appointment_type.location.describe(),
        "hosts": [{"name": names.get(host_id, "")} for host_id in booking.host_ids],
        "client": {
            "name": booking.client.name,
            "email": booking.client.email,
            "time_zone": booking.client.time_zone,
            "answers": dict(booking.client.answers),
            "guests": list(booking.client.guests),
            "notes": booking.client.notes,
        },
        "manage_url": manage_url,
    }
    return snapshot_variables(snapshot, outputs)


def confirmation(target: BookingTarget, booking: Booking, *, ticket: str = "") -> OutgoingEmail:
    variables = variables_for(target, booking, "https://book.example.com/m/abc", ticket_number=ticket)
    rendered = compose_email(DEFAULT_SUBJECT, DEFAULT_BODY, variables)
    return OutgoingEmail(
        message_id="<b1.confirmation@slotwise.acme-it.example>",
        from_name="Acme IT",
        from_address="bookings@acme-it.example",
        to=(booking.client.email, *booking.client.guests),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        invite=CalendarInvite(
            uid="b1@slotwise",
            starts_at=booking.starts_at,
            ends_at=booking.ends_at,
            summary=f"{target.appointment_type.name} with {booking.client.name}",
            description=booking.client.notes,
            location=target.appointment_type.location.describe(),
            organizer_name="Alice Adams",
            organizer_email="alice@acme-it.example",
            attendees=((booking.client.name, booking.client.email),),
        ),
    )


async def test_the_confirmation_arrives_over_smtp_with_the_ticket_number_and_an_invite(smtp: FakeSmtpServer) -> None:
    target, booking = sample_booking()
    message_id = await mailer_for(smtp).send(confirmation(target, booking, ticket="T-4711"))
    assert message_id == "<b1.confirmation@slotwise.acme-it.example>"
    [mail] = smtp.received
    assert mail.envelope_to == ["dana@client.example", "guest@client.example"]
    assert mail.message["Subject"] == "Confirmed: Intro call on Tuesday 24 November 2026, 15:00"
    html_part = mail.message.get_body(preferencelist=("html",))
    text_part = mail.message.get_body(preferencelist=("plain",))
    assert html_part is not None
    assert text_part is not None
    assert "#T-4711" in html_part.get_content()
    assert "Ticket: #T-4711" in text_part.get_content()
    assert "Acme &lt;Managed&gt; IT" in html_part.get_content()
    [invite] = [part for part in mail.message.iter_attachments() if part.get_content_type() == "text/calendar"]
    event = Calendar.from_ical(invite.get_content()).walk("VEVENT")[0]
    assert event["UID"] == "b1@slotwise"
    assert event.decoded("DTSTART") == STARTS


async def test_a_hostile_name_cannot_add_headers_or_html_or_ics_properties(smtp: FakeSmtpServer) -> None:
    target, booking = sample_booking(name=EVIL)
    email = confirmation(target, booking)
    email = dataclasses.replace(email, subject=f"Booked: {EVIL}")
    await mailer_for(smtp).send(email)
    [mail] = smtp.received
    assert mail.message.get_all("Bcc") is None
    assert "victim@example.com" not in mail.envelope_to
    assert "\n" not in str(mail.message["Subject"])
    html_part = mail.message.get_body(preferencelist=("html",))
    assert html_part is not None
    assert "<script>" not in html_part.get_content()
    assert "&lt;script&gt;" in html_part.get_content()
    [invite] = [part for part in mail.message.iter_attachments() if part.get_content_type() == "text/calendar"]
    ics = invite.get_content()
    ics_text = ics.decode() if isinstance(ics, bytes) else ics
    property_names = {
        line.split(":", 1)[0].split(";", 1)[0] for line in ics_text.splitlines() if line and not line.startswith(" ")
    }
    assert "BCC" not in property_names
    assert sum(1 for line in ics_text.splitlines() if line.startswith("ATTENDEE")) == 1


async def test_wrong_credentials_raise_an_auth_error(smtp: FakeSmtpServer) -> None:
    target, booking = sample_booking()
    with pytest.raises(IntegrationAuthError):
        await mailer_for(smtp, password="wrong").send(confirmation(target, booking))
    assert smtp.received == []


async def test_a_temporary_smtp_refusal_is_retryable_and_a_permanent_one_is_not(smtp: FakeSmtpServer) -> None:
    target, booking = sample_booking()
    smtp.faults = ["421 4.3.2 Service not available, try again later", "550 5.1.1 Mailbox unavailable"]
    with pytest.raises(IntegrationUnavailable):
        await mailer_for(smtp).send(confirmation(target, booking))
    with pytest.raises(IntegrationRejected, match="550"):
        await mailer_for(smtp).send(confirmation(target, booking))
    await mailer_for(smtp).send(confirmation(target, booking))
    assert len(smtp.received) == 1


async def test_an_unreachable_server_is_retryable() -> None:
    target, booking = sample_booking()
    mailer = SmtpMailer(
        SmtpConfig(host="127.0.0.1", port=9, start_tls=False, from_address="x@acme-it.example", timeout_seconds=2)
    )
    with pytest.raises(IntegrationUnavailable):
        await mailer.send(confirmation(target, booking))


def test_templates_are_sandboxed_and_broken_ones_fail_without_retry() -> None:
    target, booking = sample_booking()
    variables = variables_for(target, booking, "https://x")
    for template in ("{{ client.__class__ }}", "{% include 'secrets.txt' %}", "{{ nope.nothing }}", "{% if %}"):
        with pytest.raises(IntegrationRejected):
            render_email("Subject", template, variables)
    rendered = render_email("Hi {{ client.name }}", "<p>{{ client.answers.company }}</p>", variables)
    assert rendered.html == "<p>&lt;b&gt;Co&lt;/b&gt;</p>"
    assert rendered.subject == "Hi Dana Client"


def test_no_template_can_read_a_file_that_exists_on_the_server(tmp_path: Path) -> None:
    """{% include %} and {% render %} of a real file (by a path from the file system's root, and relative to the
    working directory) fail: the sandbox has no loader, so no admin template reads the server's files."""
    target, booking = sample_booking()
    variables = variables_for(target, booking, "https://x")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    from_root = str(secret.relative_to("/"))
    for template in (
        f"{{% include '{from_root}' %}}",
        f"{{% render '{from_root}' %}}",
        f"{{% include '{secret}' %}}",
        "{% include 'README.md' %}",
    ):
        with pytest.raises(IntegrationRejected) as refused:
            render_email("Subject", template, variables)
        assert "TOP-SECRET" not in str(refused.value)


def test_default_emails_leave_out_lines_whose_value_is_missing() -> None:
    """Liquid treats "" as true; a missing ticket number, join link, cancel reason or previous time must leave its
    line out of the default emails instead of printing an empty label."""
    from workflows.templates import DEFAULT_TEMPLATES

    target, booking = sample_booking()
    for trigger, (subject, body) in DEFAULT_TEMPLATES.items():
        variables = variables_for(target, booking, "https://x", ticket_number="", join_url="")
        rendered = render_email(subject, body, variables)
        for label in ("Ticket", "Join:", "Join the meeting", "Reason:", "It was"):
            assert label not in rendered.text, (trigger, label, rendered.text)
    with_ticket = variables_for(target, booking, "https://x", ticket_number="T2026.1", join_url="https://t.example/j")
    rendered = render_email(*DEFAULT_TEMPLATES["before_appointment"], with_ticket)
    assert "Ticket: #T2026.1" in rendered.text
    assert "Join the meeting (https://t.example/j)" in rendered.text
