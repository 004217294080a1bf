"""Drain time of a booking fan-out against the Autotask stand-in, compared with the least time its enforced limits
allow (run: .venv/bin/python bench/bench_drain.py).

The stand-in answers each request after a fixed latency and allows 3 concurrent requests per object endpoint (the
published thread limit). However cleverly a client schedules, endpoint e needs at least requests(e) x latency / 3
seconds, so the busiest endpoint bounds the whole drain. The ratio printed is measured drain / that bound.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import TenantAdapters, apply_tenant_file
from scheduling.model import ClientDetails
from scheduling.service import Scheduler
from settings import Settings
from storage.database import Database
from storage.repositories import SqlBookingStore, SqlTenantCatalog
from storage.secrets import SecretBox
from tests.fakes.autotask import DEMO_QUEUE_ID, DEMO_RESOURCE_ID, DEMO_ROLE_ID, FakeAutotaskServer
from workflows.dispatch import BookingFanOut
from workflows.runner import Runner
from workflows.steps import build_handlers

BOOKINGS = int(os.environ.get("SLOTWISE_DRAIN_BOOKINGS", "200"))
LATENCY = 0.02
SECRET = "bench-secret-0123456789-abcdefghij"  # noqa: S105 (signs nothing outside this run)
CLIENT = "buyer@drain-client.example"

TENANT = """
tenant: {{slug: drain, name: Drain IT, time_zone: UTC, holidays: []}}
users:
  - slug: tech
    name: Terry Tech
    email: terry@drain-it.example
    time_zone: UTC
    primary_calendar: psa
    psa_member: "{member}"
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
          - {{action: create_ticket}}
          - {{action: create_schedule_entry}}
integrations:
  psa:
    vendor: autotask
    username: {username}
    zone_lookup_url: {zone}
    resource_role_id: {role}
    ticket_queue_id: {queue}
    secrets_from_env: {{secret: DRAIN_AT_SECRET, integration_code: DRAIN_AT_CODE}}
"""


async def main() -> None:
    fake = FakeAutotaskServer(latency_seconds=LATENCY)
    await fake.start()
    os.environ["DRAIN_AT_SECRET"] = fake.secret
    os.environ["DRAIN_AT_CODE"] = fake.integration_code
    with tempfile.TemporaryDirectory() as raw:
        folder = Path(raw)
        database = Database(f"sqlite:///{folder}/drain.db")
        await database.migrate()
        path = folder / "drain.yaml"
        path.write_text(
            TENANT.format(
                member=DEMO_RESOURCE_ID,
                username=fake.username,
                zone=fake.zone_lookup_url,
                role=DEMO_ROLE_ID,
                queue=DEMO_QUEUE_ID,
            )
        )
        settings = Settings(database_url="sqlite:///unused", secret_key=SECRET, secret_key_file=folder / "k")  # type: ignore[arg-type]
        await apply_tenant_file(database, settings, path, dry_run=False)
        fake.add_contact("Casey Buyer", CLIENT)
        store = SqlBookingStore(database, on_change=BookingFanOut(lambda booking: "https://book.example/m/x"))

        class Clock:
            def now(self) -> datetime:
                return datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

        scheduler = Scheduler(store, Clock())
        target = await SqlTenantCatalog(database).find_type_target("drain", "visit")
        assert target is not None
        first = datetime(2026, 11, 24, tzinfo=UTC)
        for index in range(BOOKINGS):
            await scheduler.book(
                target, first + timedelta(minutes=30 * index), ClientDetails(f"C{index}", CLIENT, "UTC", {})
            )
        fake.log.clear()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            adapters = TenantAdapters(database, SecretBox(SECRET), session)
            runner = Runner(database, build_handlers(database, adapters), worker_id="bench", concurrency=30)
            started = time.perf_counter()
            await runner.run_until_idle()
            drained = time.perf_counter() - started
        per_endpoint = Counter(entry.entity for entry in fake.log if entry.entity)
        busiest, count = per_endpoint.most_common(1)[0]
        bound = count * LATENCY / fake.thread_limit
        print(f"Drain of {BOOKINGS} bookings x 2 steps (ticket, service call) against Autotask limits")
        print(f"  requests per endpoint: {dict(per_endpoint)}")
        print(
            f"  limit-bound minimum: {bound:.2f} s ({busiest}: {count} requests x {LATENCY * 1000:.0f} ms / 3 threads)"
        )
        print(f"  measured drain:      {drained:.2f} s")
        print(f"  ratio: {drained / bound:.2f}x   target <= 1.25x   limit refusals seen: {len(fake.limit_errors)}")
        await database.dispose()
    await fake.close()


if __name__ == "__main__":
    asyncio.run(main())
