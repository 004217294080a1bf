"""The runner shares its slots fairly: a slow target's backlog does not hold up other targets or later steps of runs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest

from storage.database import Database
from storage.tables import tenants
from tests.conftest import FixedClock
from workflows.outbox import COMPLETED, RUNNING, Job, JobSpec, enqueue_jobs, list_runs, step_idempotency_key
from workflows.runner import Runner, StepHandler

TENANT = "tenant-fair"


@pytest.fixture
async def db(database: Database) -> Database:
    await database.run_write(
        lambda conn: conn.execute(
            tenants.insert().values(id=TENANT, slug=TENANT, name=TENANT, default_time_zone="UTC", holidays=[])
        )
    )
    return database


def run_specs(booking_id: str, kinds: list[str]) -> list[JobSpec]:
    return [
        JobSpec(
            tenant_id=TENANT,
            booking_id=booking_id,
            run_key=f"confirm:{booking_id}",
            step=step,
            kind=kind,
            idempotency_key=step_idempotency_key(booking_id, step, kind),
        )
        for step, kind in enumerate(kinds)
    ]


async def enqueue(database: Database, specs: list[JobSpec], clock: FixedClock) -> None:
    await database.run_write(lambda conn: enqueue_jobs(conn, specs, now=clock.now()))


async def test_a_slow_targets_backlog_does_not_starve_a_fast_target(db: Database, clock: FixedClock) -> None:
    # Vendor A's 20 steps are older than vendor B's 10, so oldest-first claiming alone would fill the worker's slots
    # with A steps that then wait for A's 2 threads, and B would start only once A's backlog was nearly claimed.
    await enqueue(db, [spec for index in range(20) for spec in run_specs(f"a{index}", ["vendor_a.create"])], clock)
    await enqueue(db, [spec for index in range(10) for spec in run_specs(f"b{index}", ["vendor_b.create"])], clock)
    finished: list[str] = []
    running = {"vendor_a.create": 0, "vendor_b.create": 0}
    peaks = dict(running)

    def step(seconds: float, target: str) -> StepHandler:
        async def handle(job: Job) -> Mapping[str, Any]:
            running[job.kind] += 1
            peaks[job.kind] = max(peaks[job.kind], running[job.kind])
            await asyncio.sleep(seconds)
            running[job.kind] -= 1
            finished.append(job.kind)
            return {}

        return StepHandler(handle, target=target, max_concurrency=2)

    runner = Runner(
        db,
        {"vendor_a.create": step(0.08, "vendor-a"), "vendor_b.create": step(0.002, "vendor-b")},
        worker_id="w1",
        concurrency=6,
        clock=clock.now,
    )
    assert await runner.run_until_idle() == 30

    a_before_last_b = finished[: len(finished) - finished[::-1].index("vendor_b.create")].count("vendor_a.create")
    assert a_before_last_b <= 5, f"B finished only after {a_before_last_b} of A's 20 steps: {finished}"
    assert peaks == {"vendor_a.create": 2, "vendor_b.create": 2}
    assert {step.state for step in await list_runs(db, TENANT)} == {COMPLETED}


async def test_a_budgeted_target_never_holds_more_claimed_steps_than_it_may_run(
    db: Database, clock: FixedClock
) -> None:
    await enqueue(db, [spec for index in range(12) for spec in run_specs(f"m{index}", ["graph.create_event"])], clock)
    await enqueue(db, [spec for index in range(12) for spec in run_specs(f"n{index}", ["mail.send"])], clock)
    held_at_once: list[int] = []

    async def event(job: Job) -> Mapping[str, Any]:
        # Claimed = running under a lease in the table, whether or not the handler has started yet.
        steps = await list_runs(db, TENANT)
        held_at_once.append(sum(1 for step in steps if step.kind == job.kind and step.state == RUNNING))
        await asyncio.sleep(0.005)
        return {}

    async def mail(job: Job) -> Mapping[str, Any]:
        await asyncio.sleep(0.005)
        return {}

    runner = Runner(
        db,
        {
            "graph.create_event": StepHandler(event, target="mailbox:host@example.com", max_concurrency=3),
            "mail.send": mail,
        },
        worker_id="w1",
        concurrency=10,
        clock=clock.now,
    )
    assert await runner.run_until_idle() == 24
    assert max(held_at_once) == 3


async def test_the_next_step_of_a_run_does_not_queue_behind_a_backlog_of_first_steps(
    db: Database, clock: FixedClock
) -> None:
    # 30 bookings whose first step talks to one vendor and second step to another. Promoted to available, each
    # second step would be due later than every first step and wait for the whole backlog; the runner instead
    # leases it on completion of the first, so the two vendors work side by side.
    def ticking() -> datetime:
        # Time moves on between claims, as it does in production; under a frozen clock a promoted step would tie
        # with the first steps and be claimed in id order.
        clock.moment += timedelta(milliseconds=1)
        return clock.moment

    await enqueue(
        db,
        [spec for index in range(30) for spec in run_specs(f"r{index:02}", ["psa.create_ticket", "psa.schedule"])],
        clock,
    )
    finished: list[tuple[str, str]] = []

    async def handle(job: Job) -> Mapping[str, Any]:
        await asyncio.sleep(0.005)
        finished.append((job.run_key, job.kind))
        return {"done": job.kind}

    runner = Runner(
        db, {"psa.create_ticket": handle, "psa.schedule": handle}, worker_id="w1", concurrency=4, clock=ticking
    )
    assert await runner.run_until_idle() == 60

    first_second_step = next(index for index, (_, kind) in enumerate(finished) if kind == "psa.schedule")
    assert first_second_step <= 8, f"the first second step finished only after {first_second_step} steps"
    for run_key in {run_key for run_key, _ in finished}:
        assert [kind for key, kind in finished if key == run_key] == ["psa.create_ticket", "psa.schedule"]
    steps = await list_runs(db, TENANT)
    assert {step.state for step in steps} == {COMPLETED}
    assert {step.attempts for step in steps} == {1}


async def test_a_worker_that_is_stopping_only_promotes_next_steps_for_others(db: Database, clock: FixedClock) -> None:
    await enqueue(db, run_specs("s1", ["psa.create_ticket", "psa.schedule"]), clock)
    stop = asyncio.Event()

    async def first(job: Job) -> Mapping[str, Any]:
        stop.set()
        return {"ticket_id": "T-1"}

    async def second(job: Job) -> Mapping[str, Any]:
        raise AssertionError("a stopping worker must not start new steps")

    runner = Runner(db, {"psa.create_ticket": first, "psa.schedule": second}, worker_id="w1", clock=clock.now)
    await asyncio.wait_for(runner.run_forever(stop), timeout=5)

    done, waiting = await list_runs(db, TENANT, "s1")
    assert (done.state, waiting.state, waiting.attempts, waiting.locked_by) == (COMPLETED, "available", 0, None)
