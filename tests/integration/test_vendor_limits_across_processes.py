"""Vendor limits hold across processes on PostgreSQL: Autotask's 3 per endpoint and hourly budget, Graph's 4 per
mailbox, a SIGKILLed holder's slots, and one PSA contact per address, with separate OS processes sharing one database.

Each child process is this module run with `python -m` (see `main`): its own event loop, engine and adapters, as an
app process or `slotwise worker` has. They start together at an agreed wall-clock moment so their requests overlap.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import event

from bot.proactive import teams_thread_key, teams_thread_windows
from integrations.autotask.adapter import AutotaskPsa
from integrations.autotask.config import AutotaskConfig
from integrations.graph.client import GraphClient
from integrations.graph.config import GraphConfig
from integrations.rate_windows import InMemoryVendorLimits
from integrations.registry import REGISTRY
from scheduling.errors import IntegrationUnavailable
from storage.database import Database
from storage.vendor_limits import PostgresVendorLimits
from tests.fakes.autotask import DEMO_FALLBACK_COMPANY_ID, DEMO_QUEUE_ID, DEMO_ROLE_ID, FakeAutotaskServer
from tests.fakes.graph import FakeGraphServer, serve_fake_graph

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:msgraph"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:kiota_abstractions"),
]

ROOT = Path(__file__).resolve().parents[2]
MAILBOX = "alex@msp.example"


@pytest.fixture
async def pg(database: Database) -> Database:
    if database.is_sqlite:
        pytest.skip("SQLite runs one process; its limits are in memory (see the last test)")
    return database


def autotask_values(fake: FakeAutotaskServer, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "username": fake.username,
        "secret": fake.secret,
        "integration_code": fake.integration_code,
        "zone_lookup_url": fake.zone_lookup_url,
        "timeout_seconds": 5.0,
        "resource_role_id": DEMO_ROLE_ID,
        "ticket_queue_id": DEMO_QUEUE_ID,
        "fallback_company_id": DEMO_FALLBACK_COMPANY_ID,
    }
    values.update(changes)
    return values


def start_child(mode: str, database: Database, **args: Any) -> subprocess.Popen[str]:
    payload = json.dumps({"database_url": database.url, **args})
    return subprocess.Popen(  # noqa: S603 (this module, as a child process)
        [sys.executable, "-m", "tests.integration.test_vendor_limits_across_processes", mode, payload],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def results_of(children: list[subprocess.Popen[str]], seconds: float = 60) -> list[dict[str, Any]]:
    outputs = await asyncio.gather(*(asyncio.to_thread(child.communicate, timeout=seconds) for child in children))
    results = []
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.fixture
async def autotask() -> AsyncIterator[FakeAutotaskServer]:
    fake = FakeAutotaskServer(latency_seconds=0.15, hourly_limit=30)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


async def test_three_processes_never_run_more_than_3_per_endpoint_and_spend_the_hourly_budget_once(
    pg: Database, autotask: FakeAutotaskServer
) -> None:
    config = autotask_values(autotask, requests_per_hour=30)
    start_at = time.time() + 4
    children = [start_child("autotask", pg, config=config, requests=20, start_at=start_at) for _ in range(3)]
    results = await results_of(children)
    served = sum(result["served"] for result in results)
    held_back = [wait for result in results for wait in result["held_back"]]
    # 60 asked, the budget is 30: exactly 30 reached Autotask, the rest were held back on our side with a wait
    # until the oldest request leaves the hour, and Autotask never had to refuse one.
    assert served == 30
    assert len(held_back) == 30
    assert all(3500 < wait <= 3600 for wait in held_back)
    assert autotask.limit_errors == []
    assert autotask.peak_in_flight["Contacts"] == 3
    assert len([entry for entry in autotask.log if entry.entity == "Contacts"]) == 30


async def test_three_processes_never_run_more_than_4_requests_at_once_against_one_mailbox(pg: Database) -> None:
    fake = FakeGraphServer(latency_seconds=0.1)
    async with serve_fake_graph(fake) as running:
        config = {
            "tenant_id": fake.tenant_id,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "authority_host": running.authority_host,
            "graph_base_url": running.graph_base_url,
            "authority_ca_file": str(running.ca_file),
            "from_address": MAILBOX,
        }
        start_at = time.time() + 5
        children = [start_child("graph", pg, config=config, events=12, start_at=start_at) for _ in range(3)]
        results = await results_of(children)
    assert sum(result["created"] for result in results) == 36
    assert fake.max_in_flight[MAILBOX] == 4
    assert fake.concurrency_throttled == 0


async def test_a_sigkilled_workers_slots_free_themselves_and_the_others_continue(
    pg: Database, autotask: FakeAutotaskServer
) -> None:
    config = AutotaskConfig(**autotask_values(autotask, requests_per_hour=None))
    limits = PostgresVendorLimits(pg)
    try:
        async with aiohttp.ClientSession() as session:
            psa = AutotaskPsa(config, session, limits=limits)
            key = f"autotask:{psa.client.database_key}|Contacts"
            holder = start_child("hold", pg, key=key, slots=3, lease_seconds=3.0)
            assert holder.stdout is not None
            assert (await asyncio.to_thread(holder.stdout.readline)).strip() == "held"
            # While the holder lives, its three slots are taken: nobody else gets a Contacts request through.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(psa.find_contact("someone@client.example"), 1.0)
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            started = time.monotonic()
            assert await psa.find_contact("someone@client.example") is None
            assert time.monotonic() - started < 4.0
            assert autotask.peak_in_flight["Contacts"] == 1
    finally:
        await limits.aclose()


async def test_two_processes_booking_one_first_time_clients_address_create_one_contact(
    pg: Database, autotask: FakeAutotaskServer
) -> None:
    config = autotask_values(autotask, requests_per_hour=None)
    start_at = time.time() + 4
    address = "pat.new@first-time.example"
    children = [start_child("contact", pg, config=config, address=address, start_at=start_at) for _ in range(2)]
    results = await results_of(children)
    contacts = [row for row in autotask.tables["Contacts"].values() if row.get("emailAddress") == address]
    assert len(contacts) == 1
    assert {result["contact_id"] for result in results} == {str(contacts[0]["id"])}


async def test_each_vendor_request_costs_at_most_three_statements_on_postgresql(
    pg: Database, autotask: FakeAutotaskServer
) -> None:
    limits = PostgresVendorLimits(pg)
    statements: list[str] = []
    event.listen(limits.engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    autotask.latency_seconds = 0
    try:
        async with aiohttp.ClientSession() as session:
            psa = AutotaskPsa(AutotaskConfig(**autotask_values(autotask)), session, limits=limits)
            await psa.find_contact("warm-up@client.example")
            statements.clear()
            started = time.perf_counter()
            for index in range(20):
                await psa.find_contact(f"c{index}@client.example")
            per_call = (time.perf_counter() - started) / 20
            # The hourly reservation, the endpoint slot and its release. The engine is in AUTOCOMMIT, where
            # SQLAlchemy's asyncpg adapter sends no BEGIN/COMMIT, and has no pre-ping: one round trip per statement.
            assert len(statements) == 60
            async with limits.engine.connect() as conn:
                raw = await conn.get_raw_connection()
                assert raw.driver_connection is not None
                assert not raw.driver_connection.is_in_transaction()
            started = time.perf_counter()
            for _ in range(50):
                token = await limits.acquire_slot("bench", 3, 10)
                await limits.release_slot(token)
                await limits.reserve("bench", ((3600.0, 100_000),))
            overhead = (time.perf_counter() - started) / 50
            sys.stderr.write(f"\nAutotask call {per_call * 1000:.2f} ms, limit bookkeeping {overhead * 1000:.2f} ms\n")
    finally:
        await limits.aclose()


async def test_many_contact_locks_held_at_once_still_leave_connections_to_take_slots(pg: Database) -> None:
    # Twelve tasks each hold a contact lock (a connection kept across the guarded vendor calls) and, inside it, take
    # and release a vendor slot. With one pool of 4 + 8 connections for both, the holders took every connection and
    # the slot statements waited for a checkout until the pool timed out (bench_drain with two workers: minutes).
    limits = PostgresVendorLimits(pg, pool_size=2, max_overflow=2, lock_connections=12)
    inside = 0
    everyone_in = asyncio.Event()

    async def book(index: int) -> None:
        nonlocal inside
        async with limits.lock(f"client{index}@client.example"):
            inside += 1
            if inside == 12:
                everyone_in.set()
            await asyncio.wait_for(everyone_in.wait(), 5)
            token = await limits.acquire_slot("lock-test|Contacts", 3, 10)
            await limits.release_slot(token)

    try:
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(book(index) for index in range(12))), 8)
        assert time.monotonic() - started < pg.limits.pool_timeout_seconds
    finally:
        await limits.aclose()


async def test_teams_windows_of_one_conversation_are_counted_once_for_two_processes(pg: Database) -> None:
    first, second = PostgresVendorLimits(pg), PostgresVendorLimits(pg)
    try:
        key, windows = teams_thread_key("19:chat-with-alex"), teams_thread_windows()
        waits = [await (first if index % 2 else second).reserve(key, windows) for index in range(8)]
        # Seven messages a second into one chat, whichever process sends them; the eighth waits for the window.
        assert waits[:7] == [0.0] * 7
        assert 0 < waits[7] <= 1.1
    finally:
        await first.aclose()
        await second.aclose()


async def test_on_sqlite_the_registry_builds_adapters_with_in_memory_limits(tmp_path: Path) -> None:
    limits = InMemoryVendorLimits()
    config = AutotaskConfig(
        username="api@x.example", secret=SecretStr("s"), integration_code=SecretStr("c"), resource_role_id=1,
        ticket_queue_id=1,
    )  # fmt: skip
    async with aiohttp.ClientSession() as session:
        built = REGISTRY[("psa", "autotask")].build(config, session, limits)
        default = REGISTRY[("psa", "autotask")].build(config, session)
    assert built._limits is limits
    assert isinstance(default._limits, InMemoryVendorLimits)
    assert await limits.reserve("k", ((60.0, 1),)) == 0.0
    assert await limits.reserve("k", ((60.0, 1),)) > 59


async def _child_autotask(args: dict[str, Any], limits: PostgresVendorLimits) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        psa = AutotaskPsa(AutotaskConfig(**args["config"]), session, limits=limits)
        await psa.client.api_base()
        await asyncio.sleep(max(0.0, args["start_at"] - time.time()))

        async def one(index: int) -> float | None:
            try:
                await psa.find_contact(f"nobody-{os.getpid()}-{index}@client.example")
            except IntegrationUnavailable as exc:
                return exc.retry_after_seconds
            return None

        outcomes = await asyncio.gather(*(one(index) for index in range(args["requests"])))
    return {"served": outcomes.count(None), "held_back": [wait for wait in outcomes if wait is not None]}


async def _child_graph(args: dict[str, Any], limits: PostgresVendorLimits) -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta

    from integrations.graph.adapter import GraphCalendar
    from scheduling.model import CalendarEventDraft

    client = GraphClient(GraphConfig(**args["config"]), limits=limits)
    try:
        await client.check_credentials()
        calendar = GraphCalendar(client)
        starts = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
        await asyncio.sleep(max(0.0, args["start_at"] - time.time()))
        drafts = [
            CalendarEventDraft(
                transaction_id=f"{os.getpid()}-{index}",
                subject="Intro call",
                body_html="<p>Booked</p>",
                starts_at=starts,
                ends_at=starts + timedelta(minutes=30),
                attendees=(("Dana", "dana@client.example"),),
                teams_meeting=False,
            )
            for index in range(args["events"])
        ]
        refs = await asyncio.gather(*(calendar.create_event(MAILBOX, draft) for draft in drafts))
    finally:
        await client.aclose()
    return {"created": len(refs)}


async def _child_contact(args: dict[str, Any], limits: PostgresVendorLimits) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        psa = AutotaskPsa(AutotaskConfig(**args["config"]), session, limits=limits)
        await psa.client.api_base()
        await asyncio.sleep(max(0.0, args["start_at"] - time.time()))
        contact = await psa.find_or_create_contact("Pat New", args["address"])
    assert contact is not None
    return {"contact_id": contact.contact_id}


async def _child(mode: str, args: dict[str, Any]) -> None:
    database = Database(args["database_url"])
    limits = PostgresVendorLimits(database)
    try:
        if mode == "hold":
            for _ in range(args["slots"]):
                await limits.acquire_slot(args["key"], args["slots"], args["lease_seconds"])
            sys.stdout.write("held\n")
            sys.stdout.flush()
            await asyncio.Event().wait()
        work = {"autotask": _child_autotask, "graph": _child_graph, "contact": _child_contact}[mode]
        result = await work(args, limits)
        sys.stdout.write(json.dumps(result) + "\n")
    finally:
        await limits.aclose()
        await database.dispose()


def main() -> None:
    asyncio.run(_child(sys.argv[1], json.loads(sys.argv[2])))


if __name__ == "__main__":
    main()
