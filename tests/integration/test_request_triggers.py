"""A scheduling request's own triggers, as an agent and a client live them: `request_created` when the request is
made (a note on its ticket), `send: true` emailing the client the link and the window (`request_sent`, plus its
ticket status), `no_response` follow-ups business days later, repeated up to a count, stopped the moment the client
books, fired once across a restart, and never planned past the link's expiry. Over real HTTP to the ConnectWise
stand-in and SMTP, with the runner on the test's clock; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import delete, func, select

from app import TenantAdapters
from storage.database import Database
from storage.secrets import SecretBox
from storage.tables import integration_connections, scheduling_requests, workflow_jobs
from tests.conftest import FixedClock
from tests.fakes.smtp import FakeSmtpServer, running_smtp_server
from tests.integration.test_fanout_every_psa import Vendor, eventually, running_vendor
from tests.integration.test_reminders import SECRET, run_at
from tests.integration.test_ticket_bound_scheduling import (
    API,
    TENANT,
    apply_tenant,
    records_on_ticket,
    seed_ticket,
    start_wired_client,
    status_of,
)
from workflows.runner import Runner
from workflows.steps import build_handlers

REQUEST_TRIGGERS = """        request_created:
          - {{action: add_ticket_note, note: Scheduling link created for the client.}}
        request_sent:
          - {{action: set_ticket_status, status_after_scheduling: Scheduled}}
        no_response:
          after: 1 business day
          repeat: 2
        client_scheduled:
"""
CLIENT = {"email": "dana@client.test", "name": "Dana <Client>"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class Desk:
    """The service desk's world: the PSA stand-in with one ticket, SMTP, the app, and an agent key."""

    vendor: Vendor
    smtp: FakeSmtpServer
    client: TestClient
    auth: dict[str, str]
    ticket_id: int
    number: str

    async def request(self, **body: Any) -> dict[str, Any]:
        answer = await self.client.post(
            API, json={"appointment_type": "visit", "ticket": self.number, **body}, headers=self.auth
        )
        assert answer.status == 201, await answer.text()
        created: dict[str, Any] = await answer.json()
        return created


@asynccontextmanager
async def service_desk(
    database: Database,
    tmp_path: Path,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
    *,
    triggers: str = REQUEST_TRIGGERS,
) -> AsyncIterator[Desk]:
    async with running_vendor("connectwise") as vendor:
        ticket_id, _ = seed_ticket(vendor)
        with running_smtp_server() as smtp:
            for key, value in {**vendor.env, "ONTICKET_SMTP_PASSWORD": smtp.password}.items():
                monkeypatch.setenv(key, value)
            tenant = TENANT.replace("        client_scheduled:\n", triggers, 1)
            assert tenant != TENANT
            monkeypatch.setattr("tests.integration.test_ticket_bound_scheduling.TENANT", tenant)
            auth = await apply_tenant(database, tmp_path, vendor, smtp.port, smtp.username)
            client = await start_wired_client(database, tmp_path, clock)
            try:
                yield Desk(vendor, smtp, client, auth, ticket_id, vendor.fake.ticket_number(ticket_id))
            finally:
                await client.close()


def subjects(smtp: FakeSmtpServer) -> list[str]:
    return [str(mail.message["Subject"]) for mail in smtp.received]


def text_of(smtp: FakeSmtpServer, index: int) -> str:
    part = smtp.received[index].message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(smtp: FakeSmtpServer, index: int) -> str:
    part = smtp.received[index].message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


async def request_steps(database: Database, request_id: str) -> list[tuple[str, str, str, datetime]]:
    """(run key without the request id, kind, state, due) of the request's steps, by due time."""
    jobs = workflow_jobs.c
    async with database.read() as conn:
        rows = await conn.execute(
            select(jobs.run_key, jobs.kind, jobs.state, jobs.run_after)
            .where(jobs.booking_id == request_id)
            .order_by(jobs.run_after, jobs.id)
        )
        return [(str(row.run_key).split(":", 1)[1], str(row.kind), str(row.state), row.run_after) for row in rows]


async def test_sending_a_request_emails_the_client_the_link_and_window_and_runs_its_triggers(
    database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service_desk(database, tmp_path, clock, monkeypatch) as desk:
        created = await desk.request(
            send=True,
            recipient=CLIENT,
            guests=["boss@client.test"],
            window_start="2026-11-25T00:00:00+00:00",
            window_end="2026-12-04T00:00:00+00:00",
        )
        assert created["sent_to"] == {"name": "Dana <Client>", "email": "dana@client.test"}
        assert await request_steps(database, created["id"]) == [
            ("request_created:1", "add_ticket_note", "available", at("2026-11-23T12:00:00")),
            ("request_sent:1", "send_email", "available", at("2026-11-23T12:00:00")),
            ("request_sent:1", "set_ticket_status", "available", at("2026-11-23T12:00:00")),
            ("no_response:1", "send_email", "available", at("2026-11-24T12:00:00")),
            ("no_response:2", "send_email", "available", at("2026-11-25T12:00:00")),
        ]
        await run_at(database, clock, "2026-11-23T12:00:00")

        assert subjects(desk.smtp) == [f"Please choose a time: Site visit (ticket #{desk.number})"]
        mail = desk.smtp.received[0].message
        assert mail["To"] == "dana@client.test, boss@client.test"
        assert "Content-Type: text/calendar" not in mail.as_string(), "nothing is booked, so there is no invitation"
        text = text_of(desk.smtp, 0)
        assert "Hi Dana <Client>," in text
        assert "from Wednesday 25 November 2026 to Friday 4 December 2026" in text
        assert "The link works until" in text
        html = html_of(desk.smtp, 0)
        assert "Dana &lt;Client&gt;" in html
        assert "Dana <Client>" not in html
        # The emailed link is the client's booking page for this ticket.
        [link] = set(re.findall(r"http://testserver(/r/[A-Za-z0-9_\-.~]+)", text))
        page = await desk.client.get(link)
        assert page.status == 200
        assert f"Regarding ticket #{desk.number}" in await page.text()

        notes = [note["text"] for note in records_on_ticket(desk.vendor, desk.ticket_id)["notes"]]
        assert len(notes) == 1
        assert notes[0].startswith("Scheduling link created for the client.")
        assert status_of(desk.vendor, desk.ticket_id) == "Scheduled"
        assert [state for _, _, state, _ in await request_steps(database, created["id"])] == [
            "completed",
            "completed",
            "completed",
            "available",
            "available",
        ]


async def test_a_request_the_agent_shares_runs_request_created_only(
    database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service_desk(database, tmp_path, clock, monkeypatch) as desk:
        created = await desk.request()
        assert created["sent_to"] is None
        assert [run for run, _, _, _ in await request_steps(database, created["id"])] == ["request_created:1"]
        await run_at(database, clock, "2026-11-30T12:00:00")
        assert desk.smtp.received == []
        assert len(records_on_ticket(desk.vendor, desk.ticket_id)["notes"]) == 1


async def test_follow_ups_go_business_days_later_repeat_and_stop_the_moment_the_client_books(
    database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service_desk(database, tmp_path, clock, monkeypatch) as desk:
        clock.moment = at("2026-11-27T16:00:00")  # a Friday afternoon
        created = await desk.request(send=True, recipient="dana@client.test")
        follow_ups = [
            (run, due) for run, _, _, due in await request_steps(database, created["id"]) if "no_response" in run
        ]
        # One business day after Friday 16:00 is Monday 16:00, the next Tuesday 16:00.
        assert follow_ups == [
            ("no_response:1", at("2026-11-30T16:00:00")),
            ("no_response:2", at("2026-12-01T16:00:00")),
        ]
        await run_at(database, clock, "2026-11-27T16:00:00")
        assert len(desk.smtp.received) == 1

        await run_at(database, clock, "2026-11-30T15:59:59")
        assert len(desk.smtp.received) == 1
        await run_at(database, clock, "2026-11-30T16:00:00")
        assert subjects(desk.smtp)[1] == f"Reminder: please choose a time for Site visit (ticket #{desk.number})"
        assert desk.smtp.received[1].message["To"] == "dana@client.test"
        assert "We have not found a time" in text_of(desk.smtp, 1)

        # Tuesday morning the client books through the link from the email.
        clock.moment = at("2026-12-01T09:00:00")
        [link] = set(re.findall(r"http://testserver(/r/[A-Za-z0-9_\-.~]+)", text_of(desk.smtp, 1)))
        booked = await desk.client.post(
            f"{link}/bookings",
            json={
                "start": "2026-12-02T14:00:00+00:00",
                "name": "Dana",
                "email": "dana@client.test",
                "time_zone": "UTC",
            },
        )
        assert booked.status == 201, await booked.text()
        steps = await request_steps(database, created["id"])
        assert [(run, state) for run, _, state, _ in steps if "no_response" in run] == [
            ("no_response:1", "completed"),
            ("no_response:2", "cancelled"),
        ]
        await run_at(database, clock, "2026-12-01T16:00:00")
        assert not any(subject.startswith("Reminder: please choose") for subject in subjects(desk.smtp)[2:])


async def test_a_follow_up_survives_a_restart_and_is_sent_once(
    database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service_desk(database, tmp_path, clock, monkeypatch) as desk:
        await desk.request(send=True, recipient="dana@client.test")
        await run_at(database, clock, "2026-11-23T12:00:00", worker_id="before-restart")
        # Another process, started after the first was stopped, finds the follow-up in the database when it is due.
        await run_at(database, clock, "2026-11-24T12:00:00", worker_id="after-restart")
        await run_at(database, clock, "2026-11-24T12:00:01", worker_id="third")
        follow_ups = [subject for subject in subjects(desk.smtp) if subject.startswith("Reminder: please choose")]
        assert len(follow_ups) == 1


async def test_no_follow_up_is_planned_after_the_link_expires(
    database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service_desk(database, tmp_path, clock, monkeypatch) as desk:
        # The window closes (and the link expires) on Wednesday evening: Tuesday's follow-up fits, Wednesday's too,
        # but with a window ending Tuesday morning neither would point at a live link.
        created = await desk.request(send=True, recipient="dana@client.test", window_end="2026-11-24T09:00:00+00:00")
        assert [run for run, _, _, _ in await request_steps(database, created["id"]) if "no_response" in run] == []


async def test_send_is_refused_clearly_without_a_recipient_or_an_email_connection(
    database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service_desk(database, tmp_path, clock, monkeypatch) as desk:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"send": True}, "give 'recipient'"),
            ({"send": "yes", "recipient": "dana@client.test"}, "'send' must be true or false"),
            ({"recipient": "dana@client.test"}, 'add "send": true'),
            ({"send": True, "recipient": {"email": "not an address"}}, "is not a valid email address"),
            ({"send": True, "recipient": {"email": "dana@client.test", "name": 7}}, "'recipient.name'"),
        ]
        for body, message in cases:
            answer = await desk.client.post(
                API, json={"appointment_type": "visit", "ticket": desk.number, **body}, headers=desk.auth
            )
            assert answer.status == 400, (body, await answer.text())
            error = (await answer.json())["error"]
            assert message in error["message"], (body, error)
        async with database.read() as conn:
            assert (await conn.execute(select(func.count()).select_from(scheduling_requests))).scalar_one() == 0
        assert desk.smtp.received == []


async def test_send_without_an_email_connection_makes_no_request(
    database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service_desk(database, tmp_path, clock, monkeypatch) as desk:
        # The email connection is gone (an administrator removed it).
        async with database.write() as conn:
            await conn.execute(delete(integration_connections).where(integration_connections.c.kind == "email"))
        answer = await desk.client.post(
            API,
            json={"appointment_type": "visit", "ticket": desk.number, "send": True, "recipient": "dana@client.test"},
            headers=desk.auth,
        )
        assert answer.status == 400, await answer.text()
        error = (await answer.json())["error"]
        assert error["field"] == "send"
        assert "no email connection" in error["message"]
        async with database.read() as conn:
            assert (await conn.execute(select(func.count()).select_from(scheduling_requests))).scalar_one() == 0


async def test_a_follow_up_fires_on_time_in_a_short_real_time_run(
    database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No injected clock in the runner: the request is made 58 seconds "ago" with a follow-up after 1 minute, so it
    is due about two seconds from now, and a runner on the system clock must send it then, not before."""
    triggers = REQUEST_TRIGGERS.replace("after: 1 business day\n          repeat: 2", "after: 1 minute")
    async with service_desk(database, tmp_path, clock, monkeypatch, triggers=triggers) as desk:
        clock.moment = datetime.now(UTC) - timedelta(seconds=58)
        created = await desk.request(send=True, recipient="dana@client.test")
        [(_, _, _, due)] = [step for step in await request_steps(database, created["id"]) if "no_response" in step[0]]
        stop = asyncio.Event()
        async with aiohttp.ClientSession() as session:
            adapters = TenantAdapters(database, SecretBox(SECRET), session)
            runner = Runner(database, build_handlers(database, adapters), worker_id="real-time")
            task = asyncio.create_task(runner.run_forever(stop))
            try:
                await eventually(lambda: len(desk.smtp.received) >= 1, "the link email")
                # Until it is due, the follow-up stays unsent.
                while datetime.now(UTC) < due - timedelta(milliseconds=100):
                    assert len(desk.smtp.received) == 1
                    await asyncio.sleep(0.05)
                await eventually(lambda: len(desk.smtp.received) >= 2, "the follow-up", seconds=15)
                sent = datetime.now(UTC)
            finally:
                stop.set()
                await task
        assert sent >= due
        assert sent - due < timedelta(seconds=5)
        assert subjects(desk.smtp)[1].startswith("Reminder: please choose a time")


async def test_send_without_a_recipient_emails_the_tickets_contact(
    database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service_desk(database, tmp_path, clock, monkeypatch) as desk:
        fake = desk.vendor.fake
        requester = fake.add_contact("Casey Requester", "casey@requester.test")
        ticket = fake.add_ticket("Laptop will not boot", contact=requester)
        answer = await desk.client.post(
            API, json={"appointment_type": "visit", "ticket": str(ticket), "send": True}, headers=desk.auth
        )
        assert answer.status == 201, await answer.text()
        assert (await answer.json())["sent_to"] == {"name": "Casey Requester", "email": "casey@requester.test"}
        await run_at(database, clock, "2026-11-23T12:00:00")
        assert desk.smtp.received[0].message["To"] == "casey@requester.test"
        assert "Hi Casey Requester," in text_of(desk.smtp, 0)
        # The seeded ticket has no contact: the agent is told to name the recipient, and nothing is made.
        refused = await desk.client.post(
            API, json={"appointment_type": "visit", "ticket": desk.number, "send": True}, headers=desk.auth
        )
        assert refused.status == 400, await refused.text()
        error = (await refused.json())["error"]
        assert error["field"] == "recipient"
        assert f"Ticket #{desk.number} has no contact with an email address" in error["message"]
