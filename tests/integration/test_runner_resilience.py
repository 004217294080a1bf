"""A runner that cannot die quietly: the in-process runner and `slotwise worker` ride out a database that goes away
and comes back, every step still runs exactly once, and /readyz says when the runner cannot keep up.

PostgreSQL outages go through a TCP proxy that refuses connections for ten seconds. On SQLite, another connection
holds an exclusive lock for ten seconds (CI runs as root, so file permissions would prove nothing). The email server
takes a second per message, so emails are in flight when the database goes away and their outcomes must wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from app import Overrides, apply_tenant_file, create_app
from storage.database import Database, PoolLimits
from storage.tables import tenants, workflow_jobs
from tests.conftest import (
    FIXTURES,
    POSTGRES_URL,
    FixedClock,
    _drop_postgres,
    _fresh_postgres,
    apply_file,
    make_settings,
)
from tests.fakes.smtp import FakeSmtpServer, running_smtp_server
from tests.fakes.tcp_proxy import TcpProxy
from tests.integration.test_booking_api import PAGE, booking_body
from tests.integration.test_fanout import tenant_file_with_email
from workflows.outbox import COMPLETED, FAILED, Job, JobSpec, enqueue_jobs, list_runs
from workflows.runner import Runner

ROOT = Path(__file__).resolve().parents[2]
OUTAGE_SECONDS = 10.0
LAG_SECONDS = 2.0
SECRET = "test-secret-key-that-is-long-enough-0123456789"
FAST = PoolLimits(
    pool_size=5, max_overflow=5, pool_timeout_seconds=2.0, connect_timeout_seconds=1.0, statement_timeout_seconds=3.0
)
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="PostgreSQL variant: set SLOTWISE_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/postgres)",
)
log = logging.getLogger("tests.resilience")


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    """An SMTP server that takes a second to accept each message, so steps are in flight when the database goes."""
    with running_smtp_server() as server:
        accept = server.handle_DATA

        async def slowly(*args: Any) -> str:
            await asyncio.sleep(1.0)
            return await accept(*args)

        server.handle_DATA = slowly  # type: ignore[method-assign]
        yield server


@pytest.fixture
async def postgres_url(smtp: FakeSmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """A fresh PostgreSQL database with the test tenant and its email connection, as a postgresql:// URL."""
    if not POSTGRES_URL:
        pytest.skip("needs SLOTWISE_TEST_POSTGRES_URL")
    name, url = await _fresh_postgres(POSTGRES_URL)
    database = Database(url)
    try:
        await database.migrate()
        monkeypatch.setenv("ACME_SMTP_PASSWORD", smtp.password)
        await apply_tenant_file(
            database, make_settings(tmp_path), tenant_file_with_email(tmp_path, smtp, reminders=False), dry_run=False
        )
        await database.dispose()
        yield url
    finally:
        await database.dispose()
        await _drop_postgres(POSTGRES_URL, name)


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    tcp = TcpProxy.in_front_of(postgres_url)
    await tcp.start()
    yield tcp
    await tcp.close()


async def start_app(database: Database, tmp_path: Path, clock: FixedClock, **settings: object) -> TestClient:
    app = create_app(make_settings(tmp_path, **settings), overrides=Overrides(clock=clock, database=database))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def start_of(index: int) -> str:
    """The index-th free half hour: Alice's working day (14:00-22:00 UTC) from Tuesday 24 November on."""
    day, slot = divmod(index, 16)
    day += 1 if day >= 2 else 0  # Thursday 26 November is a holiday
    return (datetime(2026, 11, 24, 14, tzinfo=UTC) + timedelta(days=day, minutes=30 * slot)).isoformat()


def client_address(index: int) -> str:
    return f"client{index}@outage.test"


async def book(client: TestClient, index: int) -> int:
    response = await client.post(
        f"{PAGE}/bookings", json=booking_body(start_of(index), email=client_address(index), name=f"Client {index}")
    )
    await response.read()
    return response.status


async def eventually(condition: Any, seconds: float, what: str) -> float:
    """Wait until `condition()` (sync or async) holds; returns how long it took."""
    started = time.monotonic()
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, f"timed out after {seconds:g} s waiting for {what}"
        await asyncio.sleep(0.2)


async def readyz_status(client: TestClient) -> int:
    response = await client.get("/readyz")
    await response.read()
    return response.status


async def steps_of(database: Database) -> list[tuple[str | None, str, str, int]]:
    async with database.read() as conn:
        rows = await conn.execute(
            select(workflow_jobs.c.booking_id, workflow_jobs.c.kind, workflow_jobs.c.state, workflow_jobs.c.attempts)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def assert_one_email_per_booking(smtp: FakeSmtpServer, booked: list[int]) -> None:
    """Exactly one message accepted per booking (raw, before any mailbox de-duplication), and none for anyone else."""
    per_address = Counter(address for mail in smtp.received for address in mail.envelope_to)
    assert {client_address(index): per_address[client_address(index)] for index in booked} == dict.fromkeys(
        (client_address(index) for index in booked), 1
    )
    clients = {address for address in per_address if address.endswith("@outage.test")}
    assert clients == {client_address(index) for index in booked}


async def assert_every_step_completed_once(database: Database, booked: int) -> None:
    steps = await steps_of(database)
    assert len(steps) == booked
    assert {(kind, state) for _, kind, state, _ in steps} == {("send_email", COMPLETED)}
    assert len({booking_id for booking_id, *_ in steps}) == booked


async def ride_out(
    client: TestClient, outage: Any, recover: Any, next_index: int
) -> tuple[list[int], list[int], set[int], float]:
    """Book during `outage()` for ten seconds while watching /readyz, then `recover()`. Returns the indexes booked
    during the outage (201), the statuses seen, the /readyz statuses seen, and when the outage ended."""
    booked: list[int] = []
    statuses: list[int] = []
    ready: set[int] = set()
    await outage()
    ends = time.monotonic() + OUTAGE_SECONDS
    index = next_index
    pending: set[asyncio.Task[int]] = set()
    tasks: dict[asyncio.Task[int], int] = {}
    while time.monotonic() < ends:
        task = asyncio.create_task(book(client, index))
        tasks[task] = index
        pending.add(task)
        index += 1
        ready.add(await readyz_status(client))
        await asyncio.sleep(1.0)
    await recover()
    restored = time.monotonic()
    for task, task_index in tasks.items():
        status = await task
        statuses.append(status)
        if status == 201:
            booked.append(task_index)
    return booked, statuses, ready, restored


@needs_postgres
async def test_bookings_through_a_ten_second_postgres_outage_each_get_exactly_one_email_and_readyz_recovers(
    proxy: TcpProxy, postgres_url: str, smtp: FakeSmtpServer, tmp_path: Path, clock: FixedClock, caplog: Any
) -> None:
    caplog.set_level(logging.INFO)
    database = Database(proxy.url_for(postgres_url), limits=FAST)
    direct = Database(postgres_url)
    client = await start_app(database, tmp_path, clock, run_workflows=True, runner_lag_unhealthy_seconds=LAG_SECONDS)
    try:
        assert await readyz_status(client) == 200
        booked = [index for index in range(4) if await book(client, index) == 201]
        assert booked == [0, 1, 2, 3]
        during, statuses, ready, restored = await ride_out(client, proxy.refuse, proxy.restore, next_index=4)
        assert set(statuses) <= {201, 503}, statuses
        assert 503 in ready, "/readyz never noticed the database was gone"
        booked += during
        ready_after = await eventually(lambda: _is_200(client), 30, "/readyz")
        for index in range(40, 43):
            await eventually(lambda index=index: _books(client, index, booked), 30, "a booking after the outage")
        delivered_after = await eventually(
            lambda: len(smtp.received) >= len(booked), 60, "an email for every booking made"
        )
        log.info(
            "postgres outage: /readyz ready %.1f s and every email out %.1f s after the restore",
            ready_after,
            time.monotonic() - restored,
        )
        assert delivered_after < 60
        await eventually(lambda: _all_completed(direct, len(booked)), 30, "every step recorded as completed")
        await asyncio.sleep(2)  # a duplicate would arrive now
        assert_one_email_per_booking(smtp, booked)
        await assert_every_step_completed_once(direct, len(booked))
        runner_lines = [
            record
            for record in caplog.records
            if record.name == "slotwise.workflows" and "database is unavailable" in record.getMessage()
        ]
        # One line when the outage starts for the loop (and at most one for its heartbeat), not one per poll.
        assert 1 <= len(runner_lines) <= 2, [record.getMessage() for record in runner_lines]
        assert any("recovered after" in record.getMessage() for record in caplog.records)
        assert not [
            record for record in caplog.records if record.name.startswith("slotwise.workflows") and record.exc_info
        ]
    finally:
        await client.close()
        await database.dispose()
        await direct.dispose()


async def _is_200(client: TestClient) -> bool:
    return await readyz_status(client) == 200


async def _books(client: TestClient, index: int, booked: list[int]) -> bool:
    status = await book(client, index)
    assert status in (201, 503), status
    if status == 201:
        booked.append(index)
    return status == 201


async def _all_completed(database: Database, count: int) -> bool:
    steps = await steps_of(database)
    return len(steps) == count and all(state == COMPLETED for _, _, state, _ in steps)


async def test_bookings_through_a_ten_second_sqlite_exclusive_lock_each_get_exactly_one_email_and_readyz_recovers(
    sqlite_database: Database, smtp: FakeSmtpServer, tmp_path: Path, clock: FixedClock, monkeypatch: Any
) -> None:
    monkeypatch.setenv("ACME_SMTP_PASSWORD", smtp.password)
    await apply_tenant_file(
        sqlite_database, make_settings(tmp_path), tenant_file_with_email(tmp_path, smtp, reminders=False), dry_run=False
    )
    client = await start_app(
        sqlite_database, tmp_path, clock, run_workflows=True, runner_lag_unhealthy_seconds=LAG_SECONDS
    )
    path = sqlite_database.url.split(":///", 1)[1]
    locker = sqlite3.connect(path, timeout=20, isolation_level=None, check_same_thread=False)
    try:
        assert await readyz_status(client) == 200
        booked = [index for index in range(4) if await book(client, index) == 201]
        assert booked == [0, 1, 2, 3]

        async def lock() -> None:
            await asyncio.to_thread(locker.execute, "BEGIN EXCLUSIVE")

        async def unlock() -> None:
            await asyncio.to_thread(locker.execute, "ROLLBACK")

        during, statuses, ready, restored = await ride_out(client, lock, unlock, next_index=4)
        assert set(statuses) <= {201, 503}, statuses
        assert 503 in ready, "/readyz never noticed that the runner could not write"
        booked += during
        ready_after = await eventually(lambda: _is_200(client), 30, "/readyz")
        for index in range(40, 43):
            await eventually(lambda index=index: _books(client, index, booked), 30, "a booking after the lock")
        await eventually(lambda: len(smtp.received) >= len(booked), 60, "an email for every booking made")
        log.info(
            "sqlite lock: /readyz ready %.1f s and every email out %.1f s after the lock ended",
            ready_after,
            time.monotonic() - restored,
        )
        await eventually(lambda: _all_completed(sqlite_database, len(booked)), 30, "every step completed")
        await asyncio.sleep(2)
        assert_one_email_per_booking(smtp, booked)
        await assert_every_step_completed_once(sqlite_database, len(booked))
    finally:
        locker.close()
        await client.close()


@needs_postgres
async def test_slotwise_worker_keeps_running_through_a_database_outage_and_completes_jobs_enqueued_after_it(
    proxy: TcpProxy, postgres_url: str, smtp: FakeSmtpServer, tmp_path: Path, clock: FixedClock
) -> None:
    database = Database(postgres_url)
    # The web side talks to the database directly and runs no workflows: bookings keep coming while the worker's
    # own path to the database is cut.
    web = await start_app(database, tmp_path, clock, run_workflows=False)
    env = {
        **os.environ,
        "SLOTWISE_DATABASE_URL": proxy.url_for(postgres_url),
        "SLOTWISE_SECRET_KEY": SECRET,
        "SLOTWISE_DATABASE_CONNECT_TIMEOUT_SECONDS": "1",
        "SLOTWISE_DATABASE_STATEMENT_TIMEOUT_SECONDS": "3",
        "SLOTWISE_LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as output:
        worker = subprocess.Popen(  # noqa: S603, ASYNC220 (our own entry point; started once, then polled)
            [sys.executable, str(ROOT / "app.py"), "worker", "--worker-id", "outage-worker"],
            env=env,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        assert await book(web, 0) == 201
        await eventually(lambda: len(smtp.received) == 1, 30, "the first email")
        assert await book(web, 1) == 201  # its email is in flight when the database goes
        await asyncio.sleep(0.3)
        await proxy.refuse()
        assert await book(web, 2) == 201
        await asyncio.sleep(OUTAGE_SECONDS)
        assert worker.poll() is None, log_path.read_text()[-3000:]
        await proxy.restore()
        restored = time.monotonic()
        assert await book(web, 3) == 201
        await eventually(lambda: len(smtp.received) >= 4, 60, "every email after the outage")
        log.info("worker: every email out %.1f s after the restore", time.monotonic() - restored)
        await eventually(lambda: _all_completed(database, 4), 30, "every step completed")
        await asyncio.sleep(2)
        assert worker.poll() is None, log_path.read_text()[-3000:]
        assert_one_email_per_booking(smtp, [0, 1, 2, 3])
        await assert_every_step_completed_once(database, 4)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(worker.wait, 20)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise
        await web.close()
        await database.dispose()
    text = log_path.read_text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    outage_lines = [line for line in text.splitlines() if "database is unavailable" in line]
    assert 1 <= len(outage_lines) <= 3, text[-3000:]
    assert "recovered after" in text, text[-3000:]


@needs_postgres
async def test_readyz_is_503_while_due_work_waits_unclaimed_in_a_runner_process_and_200_in_a_web_only_one(
    tmp_path: Path, clock: FixedClock
) -> None:
    assert POSTGRES_URL is not None
    name, url = await _fresh_postgres(POSTGRES_URL)
    database = Database(url)
    holder = None
    runner_app = web_app = None
    try:
        await database.migrate()
        await apply_file(database, FIXTURES / "tenant.yaml")
        async with database.read() as conn:
            tenant_id = (await conn.execute(select(tenants.c.id).where(tenants.c.slug == "acme"))).scalar_one()
        due = datetime.now(UTC) - timedelta(seconds=1)
        spec = JobSpec(tenant_id=tenant_id, run_key="stuck:1", step=0, kind="post_webhook", idempotency_key="stuck:1")
        await database.run_write(lambda conn: enqueue_jobs(conn, [spec], now=due))
        # Another session holds the due step's row (as a worker mid-claim would): SKIP LOCKED passes it over, so it
        # waits, unclaimed, for as long as the lock is held.
        holder = await asyncpg.connect(url)
        locked = holder.transaction()
        await locked.start()
        await holder.fetch("SELECT id FROM workflow_jobs WHERE run_key = 'stuck:1' FOR UPDATE")
        runner_app = await start_app(
            database, tmp_path, clock, run_workflows=True, runner_lag_unhealthy_seconds=LAG_SECONDS
        )
        web_app = await start_app(database, tmp_path, clock, run_workflows=False)
        took = await eventually(lambda: _status_is(runner_app, 503), 15, "/readyz to notice the waiting step")
        assert took < 10
        body = await (await runner_app.get("/readyz")).json()
        assert "unclaimed" in body["runner"]
        assert await readyz_status(web_app) == 200
        await locked.rollback()
        await eventually(lambda: _status_is(runner_app, 200), 15, "/readyz to recover once the step was claimed")
        [job] = await list_runs(database, tenant_id, run_key="stuck:1")
        assert job.state == FAILED  # post_webhook is refused by this version: claimed, run, recorded
    finally:
        for test_client in (runner_app, web_app):
            if test_client is not None:
                await test_client.close()
        if holder is not None:
            await holder.close()
        await database.dispose()
        await _drop_postgres(POSTGRES_URL, name)


async def _status_is(client: TestClient, status: int) -> bool:
    return await readyz_status(client) == status


class FlakyObserver:
    """A metrics observer with a bug: it raises for every outcome."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def vendor_of(self, job: Job) -> str:
        return "none"

    def step_finished(self, job: Job, vendor: str, result: str, seconds: float) -> None:
        self.seen.append(result)
        raise RuntimeError("observer bug")


async def test_a_runner_loop_broken_by_a_bug_is_restarted_and_the_step_that_broke_it_is_dead_lettered(
    database: Database, caplog: Any
) -> None:
    from tests.integration.test_workflow_runner import add_tenant, booking_run

    await add_tenant(database, "tenant-a")
    specs = [*booking_run("poison", ["unstorable"], max_attempts=2)]
    specs += [spec for number in range(3) for spec in booking_run(f"good{number}", ["noop"])]
    await database.run_write(lambda conn: enqueue_jobs(conn, specs))

    async def noop(job: Job) -> Mapping[str, Any]:
        return {"done": True}

    async def unstorable(job: Job) -> Mapping[str, Any]:
        # A bug: an output that cannot be stored as JSON breaks the write that records it, every time.
        return {"when": object()}

    observer = FlakyObserver()
    runner = Runner(
        database,
        {"noop": noop, "unstorable": unstorable},
        worker_id="flaky",
        concurrency=1,
        lease=timedelta(seconds=1),
        poll_interval=timedelta(milliseconds=50),
        observer=observer,
        backoff_cap=timedelta(milliseconds=200),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run_forever(stop))

    async def settled() -> bool:
        return {step.state for step in await list_runs(database, "tenant-a")} <= {COMPLETED, FAILED}

    try:
        await eventually(settled, 20, "every step to complete or be dead-lettered")
        assert runner.running
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert not runner.running
    states = {step.run_key: (step.state, step.attempts) for step in await list_runs(database, "tenant-a")}
    assert states["confirm:poison"] == (FAILED, 2)
    assert {states[f"confirm:good{number}"][0] for number in range(3)} == {COMPLETED}
    # The observer's failures are logged once, and disturb nothing.
    assert len([record for record in caplog.records if "step observer" in record.getMessage()]) == 1
    crashes = [record for record in caplog.records if record.exc_info and "runner flaky failed" in record.getMessage()]
    # One traceback per time the loop broke (the poison step's two attempts), not one per poll or per retry.
    assert 1 <= len(crashes) <= 2, [record.getMessage() for record in caplog.records]
