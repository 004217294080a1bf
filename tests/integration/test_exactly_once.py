"""Exactly once under crashes: book many appointments whose workflow creates a ConnectWise ticket, an opportunity, a
schedule entry and an email, while the network drops and throttles, and SIGKILL the worker twice right after the vendor committed a
create and before our database recorded it. Every effect must exist exactly once, and none may be lost.

Email is the one effect with no lookup: SMTP cannot be asked "did you already take this message?". So a third SIGKILL
lands right after the SMTP server accepted a message and before the worker heard the 250. The step runs again and
sends the same message again, byte for byte, under the same Message-ID; the recipient's mailbox (Exchange, Gmail)
keeps one copy. The test holds exactly that: one message per booking in every client's mailbox, and every re-send at
the SMTP hop an identical copy of a message that was in flight when a worker died.

Every booking comes from a first-time client (an address ConnectWise has never seen), so its ticket step also creates
the client's contact under the fallback company: exactly one contact per address, linked from its ticket and opportunity.

SLOTWISE_CRASH_BOOKINGS sets the size (1,000 by default, as the product promises).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from app import apply_tenant_file
from scheduling.model import ClientDetails, PsaRecordKind
from scheduling.service import Scheduler
from storage.database import Database
from storage.repositories import SqlBookingStore, SqlTenantCatalog
from storage.tables import workflow_jobs
from tests.conftest import FixedClock, make_settings
from tests.fakes.chaos import ChaosProxy
from tests.fakes.connectwise import DEMO_FALLBACK_COMPANY_ID, DEMO_MEMBER, FakeConnectWiseServer
from tests.fakes.smtp import FakeSmtpServer, ReceivedMail, running_smtp_server
from workflows.dispatch import BookingFanOut

BOOKINGS = int(os.environ.get("SLOTWISE_CRASH_BOOKINGS", "1000"))
ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 5
STEPS = 4
CLIENT_EMAIL = "buyer{index}@crash-client.example"

TENANT = """
tenant: {{slug: crash, name: Crash Test IT, time_zone: UTC, holidays: []}}
users:
  - slug: tech
    name: Terry Tech
    email: terry@crash-it.example
    time_zone: UTC
    primary_calendar: psa
    psa_member: {member}
    working_hours: {{mon: ["00:00-24:00"], tue: ["00:00-24:00"], wed: ["00:00-24:00"], thu: ["00:00-24:00"],
                    fri: ["00:00-24:00"], sat: ["00:00-24:00"], sun: ["00:00-24:00"]}}
appointment_types:
  - slug: visit
    name: Visit
    duration: 30
    increment: 30
    maximum_window: 365 days
    location: {{kind: onsite, detail: Client office}}
    host: {{user: tech}}
    mode: workflow
    workflow:
      triggers:
        client_scheduled:
          - {{action: create_ticket, ticket_board: Service Desk}}
          - {{action: find_or_create_opportunity, opportunity_owner: {member}, pipeline_stage: Prospect}}
          - {{action: create_schedule_entry}}
          - {{action: send_email, subject: "x", body: "y", template: custom}}
integrations:
  psa:
    vendor: connectwise
    site_url: {site}
    codebase: {codebase}
    company_id: {company}
    public_key: {public_key}
    fallback_company_identifier: Catchall
    secrets_from_env: {{private_key: CRASH_CW_PRIVATE_KEY, client_id: CRASH_CW_CLIENT_ID}}
  email:
    vendor: smtp
    host: 127.0.0.1
    port: {smtp_port}
    start_tls: false
    username: {smtp_user}
    from_address: bookings@crash-it.example
    secrets_from_env: {{password: CRASH_SMTP_PASSWORD}}
"""


@dataclass
class FlakySmtp(FakeSmtpServer):
    """One message in five is refused with a temporary 421, as a busy relay does. With `kill_at_message` set, every
    live worker is killed right after that message was accepted, before the 250 reply reaches its sender (which
    worker sent it is not known here, so all of them go)."""

    rng: random.Random = field(default_factory=lambda: random.Random(11))
    kill_at_message: int = 0
    victims: Any = None
    kills: list[int] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.rng.random() < 0.2:
            return "421 4.3.2 Try again later"
        reply = await super().handle_DATA(server, session, envelope)
        if len(self.received) == self.kill_at_message and self.victims is not None:
            for pid in self.victims():
                os.kill(pid, signal.SIGKILL)
                self.kills.append(len(self.received))
        return reply


def content_of(mail: ReceivedMail) -> tuple[object, ...]:
    """What a reader sees: recipients, sender, subject, both bodies and the invitation's event (its DTSTAMP and the
    Date header say when this copy was made, and MIME boundaries are random, so those are left out)."""
    parts = [part.get_content() for part in mail.message.walk() if not part.is_multipart()]
    invite = [
        re.sub(r"(?m)^DTSTAMP:.*\r?\n", "", part.decode() if isinstance(part, bytes) else str(part))
        for part in parts
        if "BEGIN:VCALENDAR" in (part.decode() if isinstance(part, bytes) else str(part))
    ]
    texts = [part for part in parts if isinstance(part, str) and "BEGIN:VCALENDAR" not in part]
    return (
        tuple(mail.envelope_to),
        str(mail.message["From"]),
        str(mail.message["Subject"]),
        tuple(texts),
        tuple(invite),
    )


def start_worker(database: Database, tmp_path: Path, number: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SLOTWISE_DATABASE_URL": database.url,
        "SLOTWISE_SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "SLOTWISE_LOG_LEVEL": "WARNING",
    }
    log = (tmp_path / f"worker-{number}.log").open("wb")
    return subprocess.Popen(  # noqa: S603 (our own entry point)
        [
            sys.executable,
            str(ROOT / "app.py"),
            "worker",
            "--lease-seconds",
            str(LEASE_SECONDS),
            "--worker-id",
            f"w{number}",
        ],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def job_states(database: Database) -> Counter[str]:
    async with database.read() as conn:
        rows = await conn.execute(select(workflow_jobs.c.state, func.count()).group_by(workflow_jobs.c.state))
        return Counter(dict(rows.all()))


async def leases(database: Database) -> set[tuple[int, str]]:
    """(job id, holder) of every step currently leased."""
    async with database.read() as conn:
        rows = await conn.execute(
            select(workflow_jobs.c.id, workflow_jobs.c.locked_by).where(workflow_jobs.c.state == "running")
        )
        return {(job_id, holder) for job_id, holder in rows}


async def test_every_effect_happens_exactly_once_though_workers_are_killed_mid_step(
    database: Database, tmp_path: Path, monkeypatch: Any
) -> None:
    cw = FakeConnectWiseServer()
    cw_server = TestServer(cw.build_app(), host="127.0.0.1", port=0)
    await cw_server.start_server()
    workers: list[subprocess.Popen[bytes]] = []
    creates_per_booking = 4  # contact, ticket, opportunity, schedule entry
    proxy = ChaosProxy(
        upstream=str(cw_server.make_url("")).rstrip("/"),
        kill_at_creates=frozenset({BOOKINGS * creates_per_booking // 3, 2 * BOOKINGS * creates_per_booking // 3}),
        victim=lambda: workers[0].pid if workers and workers[0].poll() is None else None,
    )
    proxy_server = TestServer(proxy.build_app(), host="127.0.0.1", port=0)
    await proxy_server.start_server()
    with running_smtp_server() as plain_smtp:
        smtp = FlakySmtp(username=plain_smtp.username, password=plain_smtp.password, port=plain_smtp.port)
        smtp.kill_at_message = BOOKINGS // 2
        smtp.victims = lambda: [process.pid for process in workers if process.poll() is None]
        plain_smtp.handle_DATA = smtp.handle_DATA  # type: ignore[method-assign]
        smtp.received = plain_smtp.received
        monkeypatch.setenv("CRASH_CW_PRIVATE_KEY", cw.private_key)
        monkeypatch.setenv("CRASH_CW_CLIENT_ID", cw.client_id)
        monkeypatch.setenv("CRASH_SMTP_PASSWORD", plain_smtp.password)
        path = tmp_path / "crash.yaml"
        path.write_text(
            TENANT.format(
                member=DEMO_MEMBER,
                site=str(proxy_server.make_url("")).rstrip("/"),
                codebase=cw.codebase,
                company=cw.company_id,
                public_key=cw.public_key,
                smtp_port=plain_smtp.port,
                smtp_user=plain_smtp.username,
            )
        )
        settings = make_settings(tmp_path)
        await apply_tenant_file(database, settings, path, dry_run=False)

        # The bookings, each committing its three workflow steps in its own transaction.
        clock = FixedClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
        store = SqlBookingStore(
            database, on_change=BookingFanOut(lambda booking: f"https://book.example/m/{booking.booking_id}")
        )
        scheduler = Scheduler(store, clock)
        target = await SqlTenantCatalog(database).find_type_target("crash", "visit")
        assert target is not None
        first = datetime(2026, 11, 24, tzinfo=UTC)
        for index in range(BOOKINGS):
            client = ClientDetails(f"Client {index}", CLIENT_EMAIL.format(index=index), "UTC", {})
            await scheduler.book(target, first + timedelta(minutes=30 * index), client)
        # Only the schedule entry waits (for its ticket); the opportunity and the email use no other step's output.
        initial = await job_states(database)
        assert (initial["available"], initial["waiting"]) == (3 * BOOKINGS, BOOKINGS)

        # Work it off, restarting whichever worker dies, and time how long stalled leases take to be reclaimed.
        count = 2 if not database.is_sqlite else 1  # PostgreSQL: two workers at once, claiming with SKIP LOCKED.
        workers.extend(start_worker(database, tmp_path, number) for number in range(count))
        reclaim_seconds: list[float] = []
        pending: list[tuple[set[tuple[int, str]], float]] = []
        names = [f"w{number}" for number in range(count)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 900
        try:
            while True:
                states = await job_states(database)
                current = await leases(database)
                for stalled, restarted_at in list(pending):
                    # Reclaimed once no lease of the dead worker is left (taken over, or finished by others).
                    if not stalled & current:
                        reclaim_seconds.append(loop.time() - restarted_at)
                        pending.remove((stalled, restarted_at))
                if states["completed"] + states["failed"] == STEPS * BOOKINGS and not pending:
                    break
                assert loop.time() < deadline, f"did not drain: {states}"
                for slot, process in enumerate(workers):
                    if process.poll() is not None:
                        dead = names[slot]
                        names[slot] = f"w{len(names) + len(reclaim_seconds) + len(pending) + 10}"
                        workers[slot] = start_worker(database, tmp_path, int(names[slot][1:]))
                        pending.append(({lease for lease in current if lease[1] == dead}, loop.time()))
                await asyncio.sleep(0.2)
        finally:
            for process in workers:
                process.terminate()
                process.wait(timeout=30)
            await proxy_server.close()
            await cw_server.close()

        states = await job_states(database)
        assert states == Counter({"completed": STEPS * BOOKINGS}), states
        assert proxy.kills, "the worker was never killed; the test did not test what it claims"
        assert len(proxy.kills) == 2
        # Whoever sent that message was alive to send it, so it is among those killed.
        assert smtp.kills, "no worker was killed at the email's worst moment"
        assert set(smtp.kills) == {BOOKINGS // 2}
        assert proxy.transient > 0
        assert proxy.lost > 0
        assert all(seconds <= 15 for seconds in reclaim_seconds), reclaim_seconds

        markers = Counter(
            match.group(0)
            for ticket in cw.records(PsaRecordKind.TICKET)
            for match in [re.search(r"\[slotwise:[^\]]+\]", ticket["summary"])]
            if match
        )
        assert len(markers) == BOOKINGS
        assert set(markers.values()) == {1}, ("tickets", {m: n for m, n in markers.items() if n != 1})
        assert len(cw.records(PsaRecordKind.TICKET)) == BOOKINGS
        opportunity_markers = Counter(
            match.group(0)
            for opportunity in cw.records(PsaRecordKind.OPPORTUNITY)
            for match in [re.search(r"\[slotwise:[^\]]+\]", opportunity["name"])]
            if match
        )
        assert len(opportunity_markers) == BOOKINGS
        assert set(opportunity_markers.values()) == {1}, (
            "opportunities",
            {m: n for m, n in opportunity_markers.items() if n != 1},
        )
        assert len(cw.records(PsaRecordKind.SCHEDULE_ENTRY)) == BOOKINGS

        # One contact per client address, on the fallback company; each ticket and each opportunity names its own.
        emails = [CLIENT_EMAIL.format(index=index) for index in range(BOOKINGS)]
        contacts = {email: cw.contacts_with_email(email) for email in emails}
        assert all(len(found) == 1 for found in contacts.values()), [e for e, f in contacts.items() if len(f) != 1]
        assert len(cw.contacts) == BOOKINGS
        assert {found[0].company_id for found in contacts.values()} == {str(DEMO_FALLBACK_COMPANY_ID)}
        email_of = {found[0].contact_id: email for email, found in contacts.items()}
        booked_text = {str(opportunity["id"]): opportunity["notes"] for opportunity in cw.opportunities.values()}
        # A ticket's description (which names the client's address) is stored as its initial note.
        booked_text |= {str(note["ticketId"]): note["text"] for note in cw.notes.values() if note.get("initial")}
        for kind in (PsaRecordKind.TICKET, PsaRecordKind.OPPORTUNITY):
            linked = {str(record["id"]): cw.contact_linked_to(kind, str(record["id"])) for record in cw.records(kind)}
            assert Counter(linked.values()) == Counter(dict.fromkeys(email_of, 1)), kind
            assert all(f"<{email_of[str(contact)]}>" in booked_text[record] for record, contact in linked.items()), kind
        # Email: exactly one message per booking in each client's mailbox, none lost.
        for email in emails:
            assert len(smtp.mailbox(email)) == 1, (email, [str(m["Message-ID"]) for m in smtp.mailbox(email)])
        message_ids = Counter(str(mail.message["Message-ID"]) for mail in smtp.received)
        assert len(message_ids) == BOOKINGS
        # At the SMTP hop, a message is sent again only when a worker died with it in flight, and then identically.
        resent = {message_id: count for message_id, count in message_ids.items() if count > 1}
        killed_mid_send = str(smtp.received[BOOKINGS // 2 - 1].message["Message-ID"])
        assert killed_mid_send in resent, "the message in flight at the kill was not sent again: it would be lost"
        in_flight_limit = 20  # the worker's concurrency: no more steps than this can be in flight when it dies
        assert sum(count - 1 for count in resent.values()) <= in_flight_limit * (len(proxy.kills) + len(smtp.kills))
        for message_id in resent:
            copies = {content_of(mail) for mail in smtp.received if str(mail.message["Message-ID"]) == message_id}
            assert len(copies) == 1, f"{message_id} was re-sent with different content"
