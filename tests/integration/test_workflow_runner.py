"""The workflow outbox and runner on SQLite and PostgreSQL: atomic enqueue, ordered steps, retries, leases, scoping."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable
from storage.database import Database
from storage.tables import metadata, tenants
from tests.conftest import FixedClock
from workflows.outbox import (
    AVAILABLE,
    BLOCKED,
    COMPLETED,
    FAILED,
    RETRYABLE,
    RUNNING,
    WAITING,
    Job,
    JobSpec,
    cancel_run,
    claim,
    claim_jobs,
    complete,
    complete_jobs_and_claim_next,
    enqueue_jobs,
    fail,
    list_runs,
    retry_job,
    step_idempotency_key,
)
from workflows.runner import Runner, StepHandler

TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"


async def add_tenant(database: Database, tenant_id: str) -> None:
    await database.run_write(
        lambda conn: conn.execute(
            tenants.insert().values(id=tenant_id, slug=tenant_id, name=tenant_id, default_time_zone="UTC", holidays=[])
        )
    )


@pytest.fixture
async def db(database: Database) -> Database:
    await add_tenant(database, TENANT)
    await add_tenant(database, OTHER_TENANT)
    return database


def booking_run(booking_id: str, kinds: list[str], *, max_attempts: int = 10, tenant_id: str = TENANT) -> list[JobSpec]:
    return [
        JobSpec(
            tenant_id=tenant_id,
            booking_id=booking_id,
            run_key=f"confirm:{booking_id}",
            step=step,
            kind=kind,
            idempotency_key=step_idempotency_key(booking_id, step, kind),
            payload={"booking_id": booking_id},
            max_attempts=max_attempts,
        )
        for step, kind in enumerate(kinds)
    ]


async def enqueue(database: Database, specs: list[JobSpec], clock: FixedClock) -> None:
    await database.run_write(lambda conn: enqueue_jobs(conn, specs, now=clock.now()))


def states(steps: list[Job]) -> list[str]:
    return [step.state for step in steps]


async def test_jobs_enqueued_in_a_transaction_that_then_raises_are_never_visible(
    db: Database, clock: FixedClock
) -> None:
    def booking_that_fails(conn: Connection) -> None:
        enqueue_jobs(conn, booking_run("b1", ["psa.create_ticket", "graph.create_event"]), now=clock.now())
        raise RuntimeError("the booking insert failed after the outbox rows were added")

    with pytest.raises(RuntimeError):
        await db.run_write(booking_that_fails)

    assert await list_runs(db, TENANT) == []
    calls: list[int] = []

    async def record(job: Job) -> dict[str, Any]:
        calls.append(job.id)
        return {}

    runner = Runner(db, {"psa.create_ticket": record, "graph.create_event": record}, worker_id="w1", clock=clock.now)
    assert await runner.run_until_idle() == 0
    assert calls == []


async def test_enqueueing_an_existing_idempotency_key_again_adds_nothing(db: Database, clock: FixedClock) -> None:
    await enqueue(db, booking_run("b1", ["psa.create_ticket", "graph.create_event"]), clock)
    await enqueue(db, booking_run("b1", ["psa.create_ticket", "graph.create_event"]), clock)

    steps = await list_runs(db, TENANT, "b1")
    assert [(step.step, step.state) for step in steps] == [(0, AVAILABLE), (1, WAITING)]


async def test_steps_run_in_order_and_later_steps_see_the_outputs_of_earlier_ones(
    db: Database, clock: FixedClock
) -> None:
    specs = booking_run("b1", ["psa.create_ticket", "graph.create_event", "mail.send_confirmation"])
    # Enqueued out of order on purpose: the step number, not the insertion order, decides.
    await enqueue(db, [specs[2], specs[0], specs[1]], clock)
    assert states(await list_runs(db, TENANT, "b1")) == [AVAILABLE, WAITING, WAITING]
    order: list[str] = []

    async def earlier_outputs(job: Job) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for step in await list_runs(db, job.tenant_id, run_key=job.run_key):
            if step.step < job.step:
                assert step.state == COMPLETED
                merged.update(step.output or {})
        return merged

    async def create_ticket(job: Job) -> dict[str, Any]:
        order.append(job.kind)
        return {"ticket_id": "T-100"}

    async def create_event(job: Job) -> dict[str, Any]:
        order.append(job.kind)
        return {"event_id": "E-7", "for_ticket": (await earlier_outputs(job))["ticket_id"]}

    async def send_mail(job: Job) -> dict[str, Any]:
        order.append(job.kind)
        seen = await earlier_outputs(job)
        return {"message_id": f"M-{seen['ticket_id']}-{seen['event_id']}"}

    runner = Runner(
        db,
        {"psa.create_ticket": create_ticket, "graph.create_event": create_event, "mail.send_confirmation": send_mail},
        worker_id="w1",
        clock=clock.now,
    )
    assert await runner.run_until_idle() == 3

    steps = await list_runs(db, TENANT, "b1")
    assert order == ["psa.create_ticket", "graph.create_event", "mail.send_confirmation"]
    assert states(steps) == [COMPLETED, COMPLETED, COMPLETED]
    assert [step.output for step in steps] == [
        {"ticket_id": "T-100"},
        {"event_id": "E-7", "for_ticket": "T-100"},
        {"message_id": "M-T-100-E-7"},
    ]
    assert [step.attempts for step in steps] == [1, 1, 1]


async def test_a_retryable_failure_waits_for_retry_after_then_completes_and_counts_attempts(
    db: Database, clock: FixedClock
) -> None:
    await enqueue(db, booking_run("b1", ["psa.create_ticket"]), clock)
    calls = 0

    async def throttled_once(job: Job) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise IntegrationUnavailable("429 Too Many Requests", retry_after_seconds=30)
        return {"ticket_id": "T-1"}

    runner = Runner(db, {"psa.create_ticket": throttled_once}, worker_id="w1", clock=clock.now)
    failed_at = clock.now()
    assert await runner.run_until_idle() == 1
    [step] = await list_runs(db, TENANT, "b1")
    assert (step.state, step.attempts) == (RETRYABLE, 1)
    assert "429 Too Many Requests" in step.last_error
    # Retry-After (30 s) beats the first exponential backoff (1 s ± 20 %), so it decides the delay exactly.
    assert step.run_after == failed_at + timedelta(seconds=30)

    clock.moment += timedelta(seconds=29)
    assert await runner.run_until_idle() == 0
    clock.moment += timedelta(seconds=1)
    assert await runner.run_until_idle() == 1

    [step] = await list_runs(db, TENANT, "b1")
    assert (step.state, step.attempts, step.output, step.last_error) == (COMPLETED, 2, {"ticket_id": "T-1"}, "")
    assert (runner.stats.retried, runner.stats.completed) == (1, 1)


async def test_a_rejection_fails_the_step_at_once_holds_later_steps_and_retry_job_resumes_the_run(
    db: Database, clock: FixedClock
) -> None:
    await enqueue(db, booking_run("b1", ["psa.create_ticket", "graph.create_event"]), clock)
    board_exists = False
    events: list[str] = []

    async def create_ticket(job: Job) -> dict[str, Any]:
        if not board_exists:
            raise IntegrationRejected("ConnectWise 400: board 'Service Desk' does not exist")
        return {"ticket_id": "T-9"}

    async def create_event(job: Job) -> dict[str, Any]:
        events.append(job.idempotency_key)
        return {"event_id": "E-1"}

    runner = Runner(
        db, {"psa.create_ticket": create_ticket, "graph.create_event": create_event}, worker_id="w1", clock=clock.now
    )
    assert await runner.run_until_idle() == 1
    first, second = await list_runs(db, TENANT, "b1")
    # Steps planned without dependencies wait hard for the step before them: blocked, with the reason.
    assert (first.state, first.attempts, second.state) == (FAILED, 1, BLOCKED)
    assert second.blocked_by == "blocked by step 0 (psa.create_ticket)"
    assert first.last_error == "IntegrationRejected: ConnectWise 400: board 'Service Desk' does not exist"
    assert events == []

    board_exists = True
    assert await retry_job(db, TENANT, first.id, now=clock.now())
    assert await runner.run_until_idle() == 2

    first, second = await list_runs(db, TENANT, "b1")
    assert (first.state, first.attempts, first.output) == (COMPLETED, 1, {"ticket_id": "T-9"})
    assert (second.state, second.output) == (COMPLETED, {"event_id": "E-1"})
    assert events == ["b1:1:graph.create_event"]


async def test_an_auth_error_and_an_unknown_kind_fail_without_retrying(db: Database, clock: FixedClock) -> None:
    await enqueue(db, booking_run("b1", ["psa.create_ticket"]), clock)
    await enqueue(db, booking_run("b2", ["teleport.booking"]), clock)

    async def expired_credentials(job: Job) -> dict[str, Any]:
        raise IntegrationAuthError("Autotask 401: API user is inactive")

    runner = Runner(db, {"psa.create_ticket": expired_credentials}, worker_id="w1", clock=clock.now)
    assert await runner.run_until_idle() == 2

    [auth] = await list_runs(db, TENANT, "b1")
    [unknown] = await list_runs(db, TENANT, "b2")
    assert (auth.state, auth.attempts, auth.last_error) == (
        FAILED,
        1,
        "IntegrationAuthError: Autotask 401: API user is inactive",
    )
    assert (unknown.state, unknown.last_error) == (FAILED, "no handler registered for step kind 'teleport.booking'")


@pytest.mark.parametrize(
    "error",
    [
        IntegrationUnavailable("Teams answered 503", retry_after_seconds=0),
        IntegrationRejected("Teams answered 404"),
        IntegrationAuthError("Teams answered 401"),
    ],
    ids=["transient", "rejected", "credentials"],
)
async def test_what_a_failed_attempt_got_done_is_kept_for_the_next_attempt(
    db: Database, clock: FixedClock, error: Exception
) -> None:
    """A step that does several things (tell each host of a panel) reports what it finished before failing; the
    next attempt, automatic or started by an operator, sees it and does only the rest."""
    await enqueue(db, booking_run("b1", ["teams.notify_host"]), clock)
    told: list[str] = []
    seen: list[dict[str, Any]] = []

    async def notify_hosts(job: Job) -> dict[str, Any]:
        seen.append(dict(job.output or {}))
        done = dict(job.output or {})
        for host in ("dana", "eli"):
            if host in done:
                continue
            if host == "eli" and len(seen) == 1:
                error.progress = done  # type: ignore[attr-defined]
                raise error
            told.append(host)
            done[host] = f"activity-{host}"
        return done

    runner = Runner(db, {"teams.notify_host": notify_hosts}, worker_id="w1", clock=clock.now)
    await runner.run_until_idle()
    [step] = await list_runs(db, TENANT, "b1")
    if step.state == FAILED:
        assert step.output == {"dana": "activity-dana"}, "the failed step shows what it got done"
        assert await retry_job(db, TENANT, step.id, now=clock.now())
    clock.moment += timedelta(minutes=10)
    await runner.run_until_idle()
    [step] = await list_runs(db, TENANT, "b1")
    assert step.state == COMPLETED
    assert step.output == {"dana": "activity-dana", "eli": "activity-eli"}
    assert told == ["dana", "eli"], "Dana was told twice"
    assert seen[1] == {"dana": "activity-dana"}


async def test_a_step_that_keeps_failing_is_dead_lettered_after_max_attempts(db: Database, clock: FixedClock) -> None:
    await enqueue(db, booking_run("b1", ["psa.create_ticket", "graph.create_event"], max_attempts=3), clock)
    calls = 0

    async def always_down(job: Job) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise IntegrationUnavailable("503 Service Unavailable " + "x" * 3000)

    runner = Runner(db, {"psa.create_ticket": always_down}, worker_id="w1", clock=clock.now)
    for _ in range(5):
        await runner.run_until_idle()
        # Past the 300 s backoff cap, so every pass finds the step due again if it is still retryable.
        clock.moment += timedelta(seconds=400)

    first, second = await list_runs(db, TENANT, "b1")
    assert (first.state, first.attempts, calls) == (FAILED, 3, 3)
    assert first.last_error.startswith("IntegrationUnavailable: 503 Service Unavailable")
    assert len(first.last_error) == 2000
    assert (second.state, second.blocked_by) == (BLOCKED, "blocked by step 0 (psa.create_ticket)")
    assert (runner.stats.retried, runner.stats.failed) == (2, 1)


async def test_completing_a_step_can_lease_the_runs_next_step_to_the_same_worker(
    db: Database, clock: FixedClock
) -> None:
    await enqueue(db, booking_run("b1", ["psa.create_ticket", "graph.create_event", "mail.send_confirmation"]), clock)
    await enqueue(db, booking_run("b2", ["psa.create_ticket", "mail.send_confirmation"]), clock)
    lease = timedelta(seconds=30)
    first_b1, first_b2 = await claim(db, "w1", 10, lease, now=clock.now())
    clock.moment += timedelta(seconds=1)

    def complete_both(conn: Connection) -> tuple[set[int], list[Job]]:
        return complete_jobs_and_claim_next(
            conn,
            [(first_b1, {"ticket_id": "T-1"}), (first_b2, {"ticket_id": "T-2"})],
            "w1",
            lease,
            now=clock.now(),
            other_than={"mail.send_confirmation"},
        )

    accepted, [event] = await db.run_write(complete_both)
    assert accepted == {first_b1.id, first_b2.id}
    assert (event.run_key, event.step, event.state, event.locked_by, event.attempts) == (
        "confirm:b1",
        1,
        RUNNING,
        "w1",
        1,
    )
    assert event.lease_expires_at == clock.now() + lease
    # It keeps its place in the queue (its enqueue time), should its lease ever have to be reclaimed.
    assert event.run_after == first_b1.run_after < clock.now()
    # The kind left out was only made available, for whoever claims it next; the step after the event still waits.
    assert states(await list_runs(db, TENANT, "b2")) == [COMPLETED, AVAILABLE]
    assert states(await list_runs(db, TENANT, "b1")) == [COMPLETED, RUNNING, WAITING]
    # The lease is an ordinary one: another worker cannot take the step meanwhile, and it completes under it.
    assert [job.run_key for job in await claim(db, "w2", 10, lease, now=clock.now())] == ["confirm:b2"]
    assert await complete(db, event, {"event_id": "E-1"}, now=clock.now())
    assert states(await list_runs(db, TENANT, "b1")) == [COMPLETED, COMPLETED, AVAILABLE]


async def test_claims_can_be_limited_to_some_kinds_or_skip_some(db: Database, clock: FixedClock) -> None:
    await enqueue(db, booking_run("b1", ["psa.create_ticket"]), clock)
    await enqueue(db, booking_run("b2", ["graph.create_event"]), clock)
    await enqueue(db, booking_run("b3", ["mail.send_confirmation"]), clock)
    lease = timedelta(seconds=30)

    def claim_some(conn: Connection) -> tuple[list[Job], list[Job], list[Job]]:
        only = claim_jobs(conn, "w1", 10, lease, now=clock.now(), kinds={"graph.create_event"})
        others = claim_jobs(conn, "w1", 1, lease, now=clock.now(), other_than={"psa.create_ticket"})
        rest = claim_jobs(conn, "w1", 10, lease, now=clock.now(), kinds=())
        return only, others, rest

    only, others, rest = await db.run_write(claim_some)
    assert [job.kind for job in only] == ["graph.create_event"]
    assert [job.kind for job in others] == ["mail.send_confirmation"]
    assert rest == []
    assert states(await list_runs(db, TENANT, "b1")) == [AVAILABLE]


async def test_a_stalled_lease_is_reclaimed_by_another_worker_and_the_late_completion_is_refused(
    db: Database, clock: FixedClock
) -> None:
    await enqueue(db, booking_run("b1", ["psa.create_ticket"]), clock)
    [stalled] = await claim(db, "worker-a", 10, timedelta(seconds=5), now=clock.now())
    assert (stalled.state, stalled.locked_by, stalled.attempts) == (RUNNING, "worker-a", 1)

    async def create_ticket(job: Job) -> dict[str, Any]:
        return {"ticket_id": "T-from-b"}

    rescuer = Runner(db, {"psa.create_ticket": create_ticket}, worker_id="worker-b", clock=clock.now)
    clock.moment += timedelta(seconds=4)
    assert await rescuer.run_until_idle() == 0, "the lease is still valid"
    clock.moment += timedelta(seconds=2)
    assert await rescuer.run_until_idle() == 1

    assert not await complete(db, stalled, {"ticket_id": "T-from-a"}, now=clock.now())
    assert not await fail(db, stalled, "late failure", retryable=False, now=clock.now())
    [step] = await list_runs(db, TENANT, "b1")
    assert (step.state, step.attempts, step.output, step.locked_by) == (COMPLETED, 2, {"ticket_id": "T-from-b"}, None)


async def test_a_worker_that_reclaims_its_own_stalled_step_refuses_the_first_attempts_late_result(
    db: Database, clock: FixedClock
) -> None:
    await enqueue(db, booking_run("b1", ["psa.create_ticket"]), clock)
    [first_attempt] = await claim(db, "worker-a", 1, timedelta(seconds=5), now=clock.now())
    clock.moment += timedelta(seconds=6)
    [second_attempt] = await claim(db, "worker-a", 1, timedelta(seconds=5), now=clock.now())

    assert not await complete(db, first_attempt, {"ticket_id": "stale"}, now=clock.now())
    assert await complete(db, second_attempt, {"ticket_id": "fresh"}, now=clock.now())


async def test_two_runners_on_one_database_complete_each_of_200_jobs_exactly_once(
    db: Database, clock: FixedClock
) -> None:
    specs = [
        JobSpec(
            tenant_id=TENANT,
            booking_id=f"b{index}",
            run_key=f"confirm:b{index}",
            step=0,
            kind="noop",
            idempotency_key=step_idempotency_key(f"b{index}", 0, "noop"),
        )
        for index in range(200)
    ]
    await enqueue(db, specs, clock)
    invocations: Counter[str] = Counter()

    async def noop(job: Job) -> dict[str, Any]:
        invocations[job.idempotency_key] += 1
        await asyncio.sleep(0)
        return {}

    # A second engine on the same database, as a second process would have: on PostgreSQL the runners race through
    # FOR UPDATE SKIP LOCKED, on SQLite through BEGIN IMMEDIATE.
    second = Database(db.url)
    try:
        first_runner = Runner(db, {"noop": noop}, worker_id="w1", concurrency=8, clock=clock.now)
        second_runner = Runner(second, {"noop": noop}, worker_id="w2", concurrency=8, clock=clock.now)
        await asyncio.gather(first_runner.run_until_idle(), second_runner.run_until_idle())
    finally:
        await second.dispose()

    steps = await list_runs(db, TENANT)
    assert len(steps) == 200
    assert set(states(steps)) == {COMPLETED}
    assert set(invocations.values()) == {1}
    assert len(invocations) == 200
    assert first_runner.stats.completed + second_runner.stats.completed == 200
    assert first_runner.stats.refused + second_runner.stats.refused == 0


async def test_retry_job_list_runs_and_cancel_run_only_see_the_callers_tenant(db: Database, clock: FixedClock) -> None:
    await enqueue(db, booking_run("b1", ["psa.create_ticket", "graph.create_event"]), clock)

    async def rejected(job: Job) -> dict[str, Any]:
        raise IntegrationRejected("no such company")

    await Runner(db, {"psa.create_ticket": rejected}, worker_id="w1", clock=clock.now).run_until_idle()
    failed, _ = await list_runs(db, TENANT, "b1")
    assert failed.state == FAILED

    assert not await retry_job(db, OTHER_TENANT, failed.id)
    assert await list_runs(db, OTHER_TENANT) == []
    assert await list_runs(db, OTHER_TENANT, "b1") == []
    assert await list_runs(db, OTHER_TENANT, run_key="confirm:b1") == []
    assert await cancel_run(db, OTHER_TENANT, "confirm:b1") == 0
    assert states(await list_runs(db, TENANT, "b1")) == [FAILED, BLOCKED]

    assert await cancel_run(db, TENANT, "confirm:b1") == 2
    assert not await retry_job(db, TENANT, failed.id), "a cancelled step is not retried"


async def test_a_per_target_limit_caps_concurrent_steps_of_that_target(db: Database, clock: FixedClock) -> None:
    await enqueue(db, [spec for index in range(6) for spec in booking_run(f"b{index}", ["graph.create_event"])], clock)
    running = 0
    peak = 0

    async def create_event(job: Job) -> dict[str, Any]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return {}

    handler = StepHandler(create_event, target="graph:mailbox@example.com", max_concurrency=2)
    runner = Runner(db, {"graph.create_event": handler}, worker_id="w1", concurrency=6, clock=clock.now)
    assert await runner.run_until_idle() == 6
    assert peak == 2


async def test_run_forever_drains_due_steps_and_stops_when_asked(db: Database, clock: FixedClock) -> None:
    await enqueue(db, booking_run("b1", ["psa.create_ticket", "graph.create_event"]), clock)
    done = asyncio.Event()

    async def step(job: Job) -> Mapping[str, Any]:
        if job.step == 1:
            done.set()
        return {"step": job.step}

    stop = asyncio.Event()
    runner = Runner(
        db,
        {"psa.create_ticket": step, "graph.create_event": step},
        worker_id="w1",
        poll_interval=timedelta(milliseconds=20),
        clock=clock.now,
    )
    task = asyncio.create_task(runner.run_forever(stop))
    await asyncio.wait_for(done.wait(), timeout=5)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert states(await list_runs(db, TENANT, "b1")) == [COMPLETED, COMPLETED]


async def test_migration_0003_builds_exactly_the_workflow_jobs_table(db: Database) -> None:
    def differences(conn: Connection) -> list[Any]:
        found = compare_metadata(MigrationContext.configure(conn), metadata)
        return [difference for difference in found if "workflow_jobs" in repr(difference)]

    async with db.read() as conn:
        assert await conn.run_sync(differences) == []
