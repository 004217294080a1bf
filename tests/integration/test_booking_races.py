"""Races on one booking across three app processes, on SQLite and PostgreSQL: one active hold per booking, always.

Each test starts three real `slotwise serve` processes on one database and fires conflicting changes at them at
the same moment: cancel and reschedule of one booking, twelve reschedules of one booking, and bookings that would
sit inside each other's buffers. Afterwards the database must show exactly one active hold per confirmed booking and
none for cancelled ones, exactly one email job per change that was answered 200, and every freed time bookable.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from app import apply_tenant_file
from storage.database import Database
from storage.tables import bookings, host_slots, workflow_jobs
from tests.conftest import make_settings
from tests.fakes.smtp import running_smtp_server

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 3
SECRET = "test-secret-key-that-is-long-enough-0123456789"

TENANT = """
tenant: {{slug: racy, name: Racy IT, time_zone: UTC, holidays: []}}
users:
  - slug: host
    name: Harper Host
    email: harper@racy.example
    time_zone: UTC
    primary_calendar: m365
    working_hours: {{mon: ["08:00-18:00"], tue: ["08:00-18:00"], wed: ["08:00-18:00"], thu: ["08:00-18:00"],
                    fri: ["08:00-18:00"], sat: ["08:00-18:00"], sun: ["08:00-18:00"]}}
appointment_types:
  - slug: meeting
    name: Meeting
    duration: 30
    increment: 30
    minimum_notice: 0 minutes
    maximum_window: 40 days
    location: {{kind: phone, detail: We call you}}
    host: {{user: host}}
  - slug: buffered
    name: Buffered visit
    duration: 30
    increment: 15
    buffer_before: 30
    buffer_after: 30
    minimum_notice: 0 minutes
    maximum_window: 40 days
    location: {{kind: onsite, detail: Your office}}
    host: {{user: host}}
integrations:
  email:
    vendor: smtp
    host: 127.0.0.1
    port: {smtp_port}
    start_tls: false
    username: {smtp_user}
    from_address: bookings@racy.example
    secrets_from_env: {{password: RACY_SMTP_PASSWORD}}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def app_processes(database: Database, tmp_path: Path) -> Iterator[list[str]]:
    """Three `slotwise serve` processes on one database, without runners: the email jobs stay in the outbox, where
    the test counts them."""
    env = {
        **os.environ,
        "SLOTWISE_DATABASE_URL": database.url,
        "SLOTWISE_SECRET_KEY": SECRET,
        "SLOTWISE_RUN_WORKFLOWS": "false",
        "SLOTWISE_RATE_LIMIT_PER_IP_PER_MINUTE": "1000000",
        "SLOTWISE_RATE_LIMIT_PER_PAGE_PER_MINUTE": "1000000",
        "SLOTWISE_LOG_LEVEL": "WARNING",
    }
    processes: list[subprocess.Popen[bytes]] = []
    bases: list[str] = []
    try:
        for number in range(PROCESSES):
            port = _free_port()
            log = (tmp_path / f"serve-{number}.log").open("wb")
            processes.append(
                subprocess.Popen(  # noqa: S603 (our own entry point)
                    [sys.executable, str(ROOT / "app.py"), "serve", "--host", "127.0.0.1", "--port", str(port)],
                    env={**env, "SLOTWISE_BASE_URL": f"http://127.0.0.1:{port}"},
                    cwd=tmp_path,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            bases.append(f"http://127.0.0.1:{port}")
        yield bases
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def process_logs(tmp_path: Path) -> str:
    return "\n".join(path.read_text(errors="replace")[-2000:] for path in sorted(tmp_path.glob("serve-*.log")))


async def wait_until_ready(session: aiohttp.ClientSession, bases: list[str], tmp_path: Path) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    for base in bases:
        while True:
            try:
                async with session.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"an app process did not become ready:\n{process_logs(tmp_path)}")
            await asyncio.sleep(0.2)


@pytest.fixture
async def racy(database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[str]]:
    with running_smtp_server() as smtp:
        monkeypatch.setenv("RACY_SMTP_PASSWORD", smtp.password)
        path = tmp_path / "racy.yaml"
        path.write_text(TENANT.format(smtp_port=smtp.port, smtp_user=smtp.username))
        await apply_tenant_file(database, make_settings(tmp_path), path, dry_run=False)
    with app_processes(database, tmp_path) as bases:
        async with aiohttp.ClientSession() as session:
            await wait_until_ready(session, bases, tmp_path)
        yield bases


def first_day() -> date:
    """A day far enough ahead of the real clock (the app processes run on it) that every time is bookable."""
    return (datetime.now(UTC) + timedelta(days=3)).date()


def at(day: date, hour: int, minute: int = 0) -> str:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC).isoformat()


async def book(session: aiohttp.ClientSession, base: str, type_slug: str, start: str, email: str) -> tuple[int, Any]:
    body = {"start": start, "name": "Casey Client", "email": email, "time_zone": "UTC"}
    async with session.post(f"{base}/book/racy/{type_slug}/bookings", json=body) as response:
        return response.status, await response.json()


async def fire(calls: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[int, Any]]:
    """POST every (base, path, body) at the same moment: connections open first, then one gate releases them."""
    gate = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(base: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
            await gate.wait()
            async with session.post(f"{base}{path}", json=body) as response:
                return response.status, await response.json()

        tasks = [asyncio.create_task(one(*call)) for call in calls]
        await asyncio.sleep(0.1)
        gate.set()
        return await asyncio.gather(*tasks)


def manage_path(booked: Any) -> str:
    url = str(booked["manage_url"])
    return url[url.index("/m/") :]


async def holds_and_bookings(database: Database) -> tuple[list[Any], list[Any], list[Any]]:
    async with database.read() as conn:
        rows = (await conn.execute(select(bookings.c.id, bookings.c.status, bookings.c.starts_at))).all()
        holds = (
            await conn.execute(
                select(host_slots.c.booking_id, host_slots.c.starts_at).where(host_slots.c.active.is_(True))
            )
        ).all()
        jobs = (
            await conn.execute(select(workflow_jobs.c.booking_id, workflow_jobs.c.run_key, workflow_jobs.c.kind))
        ).all()
    return rows, holds, jobs


def assert_one_hold_per_confirmed_booking(rows: list[Any], holds: list[Any]) -> None:
    held = Counter(booking_id for booking_id, _start in holds)
    for booking_id, status, starts_at in rows:
        if status == "confirmed":
            assert held[booking_id] == 1, f"confirmed booking {booking_id} has {held[booking_id]} active holds"
            [hold_start] = [start for hold_id, start in holds if hold_id == booking_id]
            assert hold_start == starts_at, f"booking {booking_id}'s hold is not at its time"
        else:
            assert held[booking_id] == 0, f"cancelled booking {booking_id} still holds {held[booking_id]} times"


def emails_by_trigger(jobs: list[Any], booking_id: str) -> Counter[str]:
    """How many email jobs each trigger enqueued for one booking (run_key = booking:trigger:occurrence)."""
    return Counter(run_key.split(":")[1] for job_booking, run_key, kind in jobs if job_booking == booking_id)


async def test_fifty_concurrent_cancel_and_reschedule_pairs_leave_one_hold_per_booking(
    racy: list[str], database: Database
) -> None:
    day = first_day()
    async with aiohttp.ClientSession() as session:
        made = []
        for index in range(50):
            when = day + timedelta(days=index // 10)
            status, booked = await book(
                session, racy[index % PROCESSES], "meeting", at(when, 8 + index % 10), f"pair{index}@client.example"
            )
            assert status == 201, booked
            made.append((booked, when, 8 + index % 10))
    calls: list[tuple[str, str, dict[str, Any]]] = []
    for index, (booked, when, hour) in enumerate(made):
        path = manage_path(booked)
        calls.append((racy[index % PROCESSES], f"{path}/cancel", {"reason": "Plans changed"}))
        calls.append((racy[(index + 1) % PROCESSES], f"{path}/reschedule", {"start": at(when, hour, 30)}))
    answers = await fire(calls)
    assert {status for status, _body in answers} <= {200, 409}, answers

    rows, holds, jobs = await holds_and_bookings(database)
    assert_one_hold_per_confirmed_booking(rows, holds)
    status_of = {booking_id: status for booking_id, status, _start in rows}
    for index, (booked, _when, _hour) in enumerate(made):
        (cancel_status, cancel_body), (move_status, move_body) = answers[2 * index], answers[2 * index + 1]
        assert 200 in (cancel_status, move_status), (cancel_body, move_body)
        if cancel_status == 409:
            assert cancel_body["error"]["code"] == "booking_changed"
            assert cancel_body["error"]["booking"]["status"] == status_of[booked["id"]]
        if move_status == 409:
            assert move_body["error"]["code"] in ("booking_changed", "slot_unavailable")
        # A cancel that succeeded is final: nothing may move the booking afterwards.
        expected_status = "cancelled" if cancel_status == 200 else "confirmed"
        assert status_of[booked["id"]] == expected_status
        # The client hears of exactly what happened.
        emails = emails_by_trigger(jobs, booked["id"])
        assert emails["rescheduled"] == (1 if move_status == 200 else 0), emails
        assert emails["cancelled"] == (1 if cancel_status == 200 else 0), emails

    # Every freed time can be booked again: the original times of all, and the new times of cancelled bookings.
    async with aiohttp.ClientSession() as session:
        for index, (_booked, when, hour) in enumerate(made):
            cancelled_ok = answers[2 * index][0] == 200
            moved_ok = answers[2 * index + 1][0] == 200
            if cancelled_ok or moved_ok:
                status, body = await book(session, racy[0], "meeting", at(when, hour), f"again{index}@client.example")
                assert status == 201, body
            if cancelled_ok and moved_ok:
                status, body = await book(session, racy[1], "meeting", at(when, hour, 30), f"also{index}@x.example")
                assert status == 201, body


async def test_twelve_concurrent_reschedules_of_one_booking_move_it_once(racy: list[str], database: Database) -> None:
    day = first_day()
    async with aiohttp.ClientSession() as session:
        status, booked = await book(session, racy[0], "meeting", at(day, 8), "twelve@client.example")
        assert status == 201, booked
    path = manage_path(booked)
    # Each client sends the version it saw, as the manage page's hidden field does.
    calls = [
        (
            racy[index % PROCESSES],
            f"{path}/reschedule",
            {"start": at(day, 9 + index // 2, 30 * (index % 2)), "version": 1},
        )
        for index in range(12)
    ]
    answers = await fire(calls)
    statuses = Counter(status for status, _body in answers)
    assert statuses == Counter({200: 1, 409: 11}), answers
    [(_status, moved)] = [answer for answer in answers if answer[0] == 200]
    for status, body in answers:
        if status == 409:
            assert body["error"]["code"] == "booking_changed"
            assert body["error"]["booking"]["start"] == moved["start"]
            assert body["error"]["booking"]["version"] == 2
    rows, holds, jobs = await holds_and_bookings(database)
    assert_one_hold_per_confirmed_booking(rows, holds)
    assert emails_by_trigger(jobs, booked["id"])["rescheduled"] == 1
    # Every other time is free again.
    async with aiohttp.ClientSession() as session:
        for index in range(12):
            start = at(day, 9 + index // 2, 30 * (index % 2))
            if start != moved["start"]:
                status, body = await book(session, racy[index % PROCESSES], "meeting", start, f"t{index}@x.example")
                assert status == 201, body


def buffer_violations(confirmed: list[tuple[datetime, datetime]], buffer: timedelta) -> list[Any]:
    """Pairs where one meeting sits inside the other's meeting or its buffers (two buffers may overlap)."""
    found = []
    for index, (a_start, a_end) in enumerate(confirmed):
        for b_start, b_end in confirmed[index + 1 :]:
            if b_start < a_end + buffer and a_start - buffer < b_end:
                found.append(((a_start, a_end), (b_start, b_end)))
    return found


async def test_storms_of_bookings_never_put_one_inside_anothers_buffer(racy: list[str], database: Database) -> None:
    day = first_day()
    minutes = [0, 15, 30, 45, 60, 75, 90]
    for storm in range(9):
        when = day + timedelta(days=storm)
        calls = []
        for copy in range(4):
            for offset in minutes:
                start = datetime(when.year, when.month, when.day, 10, tzinfo=UTC) + timedelta(minutes=offset)
                body = {"start": start.isoformat(), "name": "Storm", "email": f"s{storm}-{copy}-{offset}@x.example"}
                calls.append((racy[(copy + offset) % PROCESSES], "/book/racy/buffered/bookings", body))
        answers = await fire(calls)
        assert {status for status, _body in answers} <= {201, 409}, answers
        assert any(status == 201 for status, _body in answers)
    async with database.read() as conn:
        confirmed = sorted(
            (row.starts_at, row.ends_at)
            for row in (
                await conn.execute(
                    select(bookings.c.starts_at, bookings.c.ends_at).where(bookings.c.status == "confirmed")
                )
            ).all()
        )
    assert buffer_violations(confirmed, timedelta(minutes=30)) == []
