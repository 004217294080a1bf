"""Two `slotwise worker` processes and an app process with its own runner, on one PostgreSQL database, fanning bookings
out to the Autotask stand-in: Autotask's 3 concurrent requests per endpoint and the hourly budget hold for all of them
together, because the counters live in the database, not in each process."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app import apply_tenant_file
from storage.database import Database
from storage.tables import workflow_jobs
from tests.conftest import POSTGRES_URL, FixedClock, make_settings, start_client
from tests.fakes.autotask import DEMO_QUEUE_ID, DEMO_RESOURCE_ID, DEMO_ROLE_ID, FakeAutotaskServer
from tests.integration.test_exactly_once import start_worker

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="Shared vendor limits live in PostgreSQL: set SLOTWISE_TEST_POSTGRES_URL to run this scale-out test",
)

# Less than the 30 bookings need (each ticket and schedule entry takes several requests), more than the ~6 requests
# that each of the 30 tickets, started together, needs to finish: some steps complete and the rest hold back.
BUDGET = 200
TENANT = """
tenant: {{slug: limits, name: Limits IT, time_zone: UTC, holidays: []}}
users:
  - slug: tech
    name: Terry Tech
    email: terry@limits.example
    time_zone: UTC
    primary_calendar: psa
    psa_member: "{resource}"
    working_hours: {{mon: ["00:00-24:00"], tue: ["00:00-24:00"], wed: ["00:00-24:00"], thu: ["00:00-24:00"],
                    fri: ["00:00-24:00"], sat: ["00:00-24:00"], sun: ["00:00-24:00"]}}
appointment_types:
  - slug: visit
    name: Visit
    duration: 30
    increment: 30
    minimum_notice: 0 minutes
    maximum_window: 60 days
    location: {{kind: onsite, detail: Your office}}
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
    requests_per_hour: {budget}
    secrets_from_env: {{secret: LIMITS_AT_SECRET, integration_code: LIMITS_AT_CODE}}
"""


async def test_two_workers_and_the_app_share_autotasks_thread_limit_and_hourly_budget(
    database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite runs one process; the shared counters are PostgreSQL's")
    fake = FakeAutotaskServer(latency_seconds=0.05)
    await fake.start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        monkeypatch.setenv("LIMITS_AT_SECRET", fake.secret)
        monkeypatch.setenv("LIMITS_AT_CODE", fake.integration_code)
        path = tmp_path / "limits.yaml"
        path.write_text(
            TENANT.format(
                resource=DEMO_RESOURCE_ID,
                username=fake.username,
                zone=fake.zone_lookup_url,
                role=DEMO_ROLE_ID,
                queue=DEMO_QUEUE_ID,
                budget=BUDGET,
            )
        )
        settings = make_settings(tmp_path)
        await apply_tenant_file(database, settings, path, dry_run=False)
        setup_requests = len(fake.log)
        # The connection test at apply used some of the hour already; the processes must count from there on.
        workers = [start_worker(database, tmp_path, number) for number in range(2)]
        client = await start_client(database, tmp_path, clock, run_workflows=True)
        try:
            await asyncio.sleep(4)  # both workers are up and polling before the work arrives
            for index in range(30):
                response = await client.post(
                    "/book/limits/visit/bookings",
                    json={
                        "start": f"2026-11-{24 + index // 24:02d}T{index % 24:02d}:00:00+00:00",
                        "name": f"Client {index}",
                        "email": f"c{index}@limits.example",
                    },
                )
                assert response.status == 201, await response.text()
            # Work until nothing more reaches Autotask for several seconds: every process has then spent what the
            # shared budget allows and holds back. (Three separate budgets would let up to three times as much through.)
            deadline = time.monotonic() + 90
            quiet_since, seen = time.monotonic(), len(fake.log)
            while time.monotonic() - quiet_since < 6 and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                if len(fake.log) != seen:
                    quiet_since, seen = time.monotonic(), len(fake.log)
            async with database.read() as conn:
                done = (
                    await conn.execute(
                        select(func.count()).select_from(workflow_jobs).where(workflow_jobs.c.state == "completed")
                    )
                ).scalar_one()
        finally:
            await client.close()
        sent = len(fake.log) - setup_requests
        assert done > 0, "no step completed at all"
        # Counted once across three processes: not three budgets' worth.
        assert sent <= BUDGET, f"{sent} requests reached Autotask with a budget of {BUDGET} per hour"
        assert max(fake.peak_in_flight.values()) <= 3, fake.peak_in_flight
        assert fake.limit_errors == [], fake.limit_errors
        async with database.read() as conn:
            waiting: list[Any] = (await conn.execute(select(workflow_jobs.c.state, workflow_jobs.c.last_error))).all()
        assert any("quota" in (error or "") for _state, error in waiting), "nothing says it is holding back"
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=20)
        await fake.close()
