"""The workflow runner: claims due steps from the outbox, runs their handlers concurrently, records the outcomes.

One loop per worker: run each claimed step's handler as a task, and write every outcome that is ready in one
transaction that also refills the free slots. Batching the writes matters on SQLite, where each write transaction is
a thread hop under the process's write lock. A background task extends the leases of the steps in flight and
dead-letters steps whose worker vanished on their last attempt.

What fills a free slot, so that no queue of steps for one vendor holds up the others (head-of-line blocking):
  1. The next step of a run that just completed, leased to this worker in the same statement that promotes it. Made
     available instead, it would queue behind every older due step, so a backlog of first steps (create_ticket for
     1,000 bookings) would all run before any second step (create_schedule_entry, other endpoints) started.
  2. For each target with a declared limit (`StepHandler` with a string `target` and `max_concurrency`), due steps
     of its kinds up to what it can still run: more would only sit in the worker waiting for the target.
  3. Any other due steps, oldest first.

Handlers raise our integration errors: `IntegrationUnavailable` is retried with backoff (honouring its Retry-After),
`IntegrationRejected` and `IntegrationAuthError` fail the step at once. Anything else is treated as transient, so a
bug dead-letters the step after `max_attempts` instead of losing it.

Once running (`run_forever`), the runner cannot die quietly. A database that refuses, stalls or restarts makes it back
off (1 s doubling to 30 s, jittered) and keep the outcomes of the steps that finished meanwhile, to record them when
the database answers: their leases (30 s) outlast a short outage, so nothing runs twice. Each outage is logged once
when it starts and once when it ends. Anything else that breaks the loop (a bug) is logged with its traceback once
per streak and the loop is restarted after the same backoff; the steps it had in flight run again once their leases
expire. `stalled_seconds()` and `running` tell /readyz whether the loop is working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeAlias

from sqlalchemy.engine import Connection

from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable
from storage.database import Database, is_database_fault
from workflows.outbox import (
    Job,
    Scope,
    claim_jobs,
    complete_jobs,
    complete_jobs_and_claim_next,
    dead_letter_stalled_jobs,
    extend_leases,
    fail_job,
    oldest_due_at,
    release_graced_jobs,
    settle_dependants,
)

log = logging.getLogger("slotwise.workflows")

Handler: TypeAlias = Callable[[Job], Awaitable[Mapping[str, Any]]]
"""Runs one step and returns its output (external ids it created), which later steps can read."""


@dataclass(frozen=True)
class StepHandler:
    """A handler plus the limits it runs under.

    `target` names the external system the step talks to (a string, or a function of the job, e.g. per tenant and
    mailbox); at most `max_concurrency` steps of one target run at once in this worker. With a string target the
    runner also claims no more steps of that target than it can run, so a slow target's backlog cannot fill the
    worker's slots while other targets' steps wait unclaimed. `timeout` bounds one attempt: without it a hung vendor
    call would hold its lease forever, because the heartbeat keeps extending it.
    """

    handle: Handler
    target: str | Callable[[Job], str] | None = None
    max_concurrency: int | None = None
    timeout: timedelta = timedelta(minutes=5)


@dataclass
class RunnerStats:
    """Counters since the runner was built; `refused` counts outcomes dropped because the lease was lost."""

    completed: int = 0
    retried: int = 0
    failed: int = 0
    refused: int = 0


class StepObserver(Protocol):
    """Sees every recorded attempt (metrics). `vendor_of` runs after the handler, in the attempt's task."""

    async def vendor_of(self, job: Job) -> str: ...

    def step_finished(self, job: Job, vendor: str, result: str, seconds: float) -> None:
        """`result` is "completed", "retried" or "failed"; `seconds` is how long the handler ran."""


class FaultStreak:
    """A run of consecutive failures of a background loop, logged when it starts and when it ends, not per attempt.

    A database fault (`is_database_fault`) is one line with its cause: it is the database's trouble, and a traceback
    per poll would bury everything else. Anything else is a bug: its first occurrence in the streak is logged with the
    traceback. `failed` returns how long to wait before the next try: `initial` doubling up to `cap` seconds, times a
    random factor in [0.5, 1], so that processes sharing a database do not all come back in the same instant.
    """

    def __init__(self, logger: logging.Logger, activity: str, *, initial: float = 1.0, cap: float = 30.0) -> None:
        self._log = logger
        self._activity = activity
        self._initial = initial
        self._cap = cap
        self._logged: set[str] = set()
        self.since: float | None = None
        """`time.monotonic()` of the first failure of the current streak; None while things work."""
        self.failures = 0

    def failed(self, error: BaseException) -> float:
        if self.since is None:
            self.since = time.monotonic()
        self.failures += 1
        fault = is_database_fault(error)
        key = "database" if fault else type(error).__name__
        if key not in self._logged:
            self._logged.add(key)
            if fault:
                self._log.warning(
                    "%s: the database is unavailable (%s); backing off until it answers",
                    self._activity,
                    cause_of(error),
                )
            else:
                self._log.error("%s failed; retrying with backoff", self._activity, exc_info=error)
        exponential = min(self._cap, self._initial * 2 ** (self.failures - 1))
        return float(exponential * _jitter_rng.uniform(0.5, 1.0))

    def succeeded(self) -> None:
        if self.since is None:
            return
        self._log.warning(
            "%s recovered after %.1f s (%d failed attempts)",
            self._activity,
            time.monotonic() - self.since,
            self.failures,
        )
        self.since = None
        self.failures = 0
        self._logged.clear()

    def seconds(self, now: float | None = None) -> float:
        """How long the current streak has lasted (0 when there is none)."""
        return 0.0 if self.since is None else (now if now is not None else time.monotonic()) - self.since


def cause_of(error: BaseException) -> str:
    """The innermost cause's type and first line, short: what an operator needs, without SQL or a traceback."""
    innermost = error
    seen = {id(error)}
    while (inner := innermost.__cause__ or innermost.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        innermost = inner
    lines = str(innermost).strip().splitlines()
    return f"{type(innermost).__name__}: {lines[0][:200]}" if lines else type(innermost).__name__


# Jitter only spreads load; it needs no unpredictability, so the default PRNG is fine.
_jitter_rng = random.Random()  # noqa: S311


async def pause(seconds: float, stop: asyncio.Event) -> None:
    """Sleep for `seconds`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


@dataclass(frozen=True)
class _Outcome:
    output: Mapping[str, Any] | None = None
    error: str = ""
    retryable: bool = True
    retry_after_seconds: float | None = None
    progress: Mapping[str, Any] | None = None
    """What a failed attempt got done; kept with the step for the next attempt."""
    seconds: float = 0.0
    vendor: str = ""

    @property
    def succeeded(self) -> bool:
        return self.output is not None


def _system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runner:
    """Works off the outbox. Build one per process (several may share a database); `worker_id` must be unique."""

    database: Database
    handlers: Mapping[str, Handler | StepHandler]
    worker_id: str
    concurrency: int = 20
    lease: timedelta = timedelta(seconds=30)
    poll_interval: timedelta = timedelta(seconds=1)
    clock: Callable[[], datetime] = _system_clock
    stats: RunnerStats = field(default_factory=RunnerStats)
    observer: StepObserver | None = None
    backoff_cap: timedelta = timedelta(seconds=30)
    """The longest wait between tries while the database is unavailable or the loop keeps failing."""
    soft_dependency_grace: timedelta = timedelta(seconds=600)
    """How long a step waits for a dependency it only quotes (an email quoting the ticket number), counted from when
    its run was enqueued; then it goes without (settings.workflow_soft_dependency_grace_seconds)."""
    running: bool = field(init=False, default=False)
    """True while `run_forever` is working (or backing off); False before it starts and after it returns."""
    _trouble: FaultStreak = field(init=False)
    _heartbeat_trouble: FaultStreak = field(init=False)
    _in_transaction_since: float | None = field(init=False, default=None)
    _unrecorded: list[tuple[Job, _Outcome]] = field(init=False, default_factory=list)
    """Finished attempts whose outcomes a failed write could not record yet; they keep their leases meanwhile."""
    _observer_failed: bool = field(init=False, default=False)
    _leases_unsure: bool = field(init=False, default=False)
    """A heartbeat or a write failed: the leases of the steps in flight may have run out, so the next write extends
    them before it claims anything (else this very runner could reclaim, and re-run, a step it is still running)."""
    _registry: dict[str, StepHandler] = field(init=False)
    _semaphores: dict[str, asyncio.Semaphore] = field(init=False, default_factory=dict)
    _in_flight: dict[asyncio.Task[_Outcome], Job] = field(init=False, default_factory=dict)
    _budgets: dict[str, tuple[tuple[str, ...], int]] = field(init=False, default_factory=dict)
    """String target -> (the step kinds that talk to it, how many of its steps may be claimed at once)."""
    _kind_targets: dict[str, str] = field(init=False, default_factory=dict)
    _budgeted_kinds: tuple[str, ...] = field(init=False, default=())
    _held: Counter[str] = field(init=False, default_factory=Counter)
    """Claimed, unfinished steps per budgeted target."""
    _graces_checked: float = field(init=False, default=float("-inf"))
    """`time.monotonic()` of the last search for steps whose soft-dependency grace ran out."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._registry = {
            kind: handler if isinstance(handler, StepHandler) else StepHandler(handler)
            for kind, handler in self.handlers.items()
        }
        limits: dict[str, int] = {}
        for kind, handler in self._registry.items():
            if isinstance(handler.target, str) and handler.max_concurrency is not None:
                self._kind_targets[kind] = handler.target
                # Kinds sharing a target share its semaphore, so they share one budget: the strictest limit.
                limits[handler.target] = min(
                    handler.max_concurrency, limits.get(handler.target, handler.max_concurrency)
                )
        for target, limit in limits.items():
            kinds = tuple(kind for kind, kind_target in self._kind_targets.items() if kind_target == target)
            self._budgets[target] = (kinds, limit)
        self._budgeted_kinds = tuple(self._kind_targets)
        cap = self.backoff_cap.total_seconds()
        self._trouble = FaultStreak(log, f"workflow runner {self.worker_id}", cap=cap)
        self._heartbeat_trouble = FaultStreak(log, f"workflow runner {self.worker_id} heartbeat", cap=cap)

    async def run_until_idle(self) -> int:
        """Process steps until none is due and none is in flight; returns how many attempts it ran (tests, CLI).

        Unlike `run_forever`, an error (the database is unavailable) is raised to the caller."""
        # The caller may have moved the clock: look for soft waits whose grace ran out on the first write.
        self._graces_checked = float("-inf")
        return await self._work(stop=None)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Process steps until `stop` is set, then let the steps in flight finish and record them.

        Rides out database outages (see the module docstring); a loop broken by anything else is restarted."""
        self.running = True
        try:
            while not stop.is_set():
                try:
                    await self._work(stop=stop)
                    return
                except Exception as error:
                    # The steps in flight were cancelled; their leases expire and they run again (a step whose
                    # outcome breaks the loop every time is dead-lettered after its max_attempts).
                    delay = self._trouble.failed(error)
                await pause(delay, stop)
        finally:
            self.running = False

    def stalled_seconds(self) -> float:
        """How long the loop has been unable to use the database: failing, or stuck in one transaction (0 if fine)."""
        now = time.monotonic()
        stuck = now - self._in_transaction_since if self._in_transaction_since is not None else 0.0
        return max(stuck, self._trouble.seconds(now))

    async def _work(self, stop: asyncio.Event | None) -> int:
        keeper = asyncio.create_task(self._keep_leases())
        attempts = 0
        unrecorded = self._unrecorded
        try:
            while True:
                claiming = stop is None or not stop.is_set()
                if self._in_flight:
                    if unrecorded:
                        # The last write failed: take whatever finished meanwhile and try again, without waiting.
                        done = {task for task in self._in_flight if task.done()}
                    else:
                        done, _ = await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
                    finished = [(self._finish(task), task.result()) for task in done]
                    attempts += len(finished)
                    unrecorded += finished
                    # A handler may have asked the worker to stop while it ran.
                    claiming = stop is None or not stop.is_set()
                elif not unrecorded and not claiming:
                    return attempts
                try:
                    claimed = await self._record(unrecorded, claiming=claiming)
                except Exception as error:
                    if stop is None or not is_database_fault(error):
                        raise
                    # Outcomes stay in memory to be recorded once the database answers: the steps keep their leases
                    # meanwhile (the heartbeat, or the write that records them, extends them).
                    self._leases_unsure = True
                    delay = self._trouble.failed(error)
                    if not claiming:
                        log.warning(
                            "stopping with %d step outcomes not recorded; those steps run again once their leases "
                            "expire",
                            len(unrecorded),
                        )
                        return attempts
                    await pause(delay, stop)
                    continue
                self._trouble.succeeded()
                unrecorded.clear()
                self._start(claimed)
                if not self._in_flight:
                    if not claiming or stop is None:
                        return attempts
                    await pause(self.poll_interval.total_seconds(), stop)
        finally:
            keeper.cancel()
            for task in self._in_flight:
                task.cancel()
            # Cancelled steps keep their lease until it expires; another worker then reclaims them.
            self._in_flight.clear()
            self._held.clear()
            self._unrecorded.clear()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _attempt(self, job: Job) -> _Outcome:
        handler = self._registry.get(job.kind)
        if handler is None:
            return _Outcome(error=f"no handler registered for step kind {job.kind!r}", retryable=False)
        limit = self._semaphore(handler, job)
        async with limit if limit is not None else contextlib.nullcontext():
            started = time.monotonic()
            outcome = await self._run_handler(handler, job)
            seconds = time.monotonic() - started
        vendor = ""
        if self.observer is not None:
            try:
                vendor = await self.observer.vendor_of(job)
            except Exception:
                vendor = "unknown"
        return _Outcome(
            output=outcome.output,
            error=outcome.error,
            retryable=outcome.retryable,
            retry_after_seconds=outcome.retry_after_seconds,
            progress=outcome.progress,
            seconds=seconds,
            vendor=vendor,
        )

    async def _run_handler(self, handler: StepHandler, job: Job) -> _Outcome:
        try:
            async with asyncio.timeout(handler.timeout.total_seconds()):
                output = await handler.handle(job)
        except IntegrationUnavailable as error:
            return _Outcome(
                error=_describe(error), retry_after_seconds=error.retry_after_seconds, progress=error.progress
            )
        except (IntegrationRejected, IntegrationAuthError) as error:
            return _Outcome(error=_describe(error), retryable=False, progress=error.progress)
        except TimeoutError:
            return _Outcome(error=f"attempt timed out after {handler.timeout.total_seconds():g} s")
        except Exception as error:
            if is_database_fault(error):
                # Our own database, read by the handler, is unavailable: the loop logs the outage once; a traceback
                # per step would say the same thing a hundred times.
                return _Outcome(error=f"database unavailable: {cause_of(error)}")
            log.exception("step %s (%s) raised unexpectedly", job.id, job.kind)
            return _Outcome(error=_describe(error))
        return _Outcome(output=dict(output))

    def _semaphore(self, handler: StepHandler, job: Job) -> asyncio.Semaphore | None:
        if handler.target is None or handler.max_concurrency is None:
            return None
        target = handler.target if isinstance(handler.target, str) else handler.target(job)
        if target not in self._semaphores:
            budget = self._budgets.get(target)
            self._semaphores[target] = asyncio.Semaphore(budget[1] if budget else handler.max_concurrency)
        return self._semaphores[target]

    def _start(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._in_flight[asyncio.create_task(self._attempt(job))] = job
            target = self._kind_targets.get(job.kind)
            if target is not None:
                self._held[target] += 1

    def _finish(self, task: asyncio.Task[_Outcome]) -> Job:
        job = self._in_flight.pop(task)
        target = self._kind_targets.get(job.kind)
        if target is not None:
            self._held[target] -= 1
        return job

    async def _record(self, outcomes: list[tuple[Job, _Outcome]], *, claiming: bool) -> list[Job]:
        """Write the outcomes in one transaction and, in the same one (when `claiming`), fill the free slots.

        In the order the module docstring gives. Claims are part of the transaction that records the outcomes anyway,
        so refilling at once costs a statement, not a transaction; waiting for more slots to free up would drain the
        queue in front of the slowest target between refills.
        """
        now = self.clock()
        free = self.concurrency - len(self._in_flight) if claiming else 0
        rooms = {target: limit - self._held[target] for target, (_, limit) in self._budgets.items()}
        completions = [(job, outcome.output) for job, outcome in outcomes if outcome.output is not None]
        leases_unsure = self._leases_unsure
        in_flight = [job.id for job in self._in_flight.values()]
        grace = self.soft_dependency_grace
        # Time alone ends a soft wait; looking once a second is precise enough for a grace of minutes.
        check_graces = claiming and time.monotonic() - self._graces_checked >= 1.0

        def transaction(conn: Connection) -> tuple[list[bool], list[Job]]:
            if leases_unsure and in_flight:
                # Before any claim: a step still running here whose lease ran out during an outage is due again.
                extend_leases(conn, self.worker_id, self.lease, now=now, job_ids=in_flight)
            claimed: list[Job] = []
            if free:
                completed, claimed = complete_jobs_and_claim_next(
                    conn,
                    completions,
                    self.worker_id,
                    self.lease,
                    now=now,
                    other_than=self._budgeted_kinds,
                    limit=free,
                    grace=grace,
                )
            else:
                completed = complete_jobs(conn, completions, now=now, grace=grace)
            dead: set[Scope] = set()
            accepted = [
                job.id in completed
                if outcome.output is not None
                else fail_job(
                    conn,
                    job,
                    outcome.error,
                    now=now,
                    retryable=outcome.retryable,
                    retry_after_seconds=outcome.retry_after_seconds,
                    progress=outcome.progress,
                    grace=grace,
                    settle_later=dead,
                )
                for job, outcome in outcomes
            ]
            settle_dependants(conn, dead, now=now, grace=grace)
            if check_graces:
                release_graced_jobs(conn, now=now, grace=grace)
            remaining = free - len(claimed)
            for target, (kinds, _) in self._budgets.items():
                room = min(remaining, rooms[target])
                if room > 0:
                    batch = claim_jobs(conn, self.worker_id, room, self.lease, now=now, kinds=kinds)
                    claimed += batch
                    remaining -= len(batch)
            if remaining > 0:
                claimed += claim_jobs(
                    conn, self.worker_id, remaining, self.lease, now=now, other_than=self._budgeted_kinds
                )
            return accepted, claimed

        self._in_transaction_since = time.monotonic()
        try:
            accepted, claimed = await self.database.run_write(transaction)
        finally:
            self._in_transaction_since = None
        if check_graces:
            self._graces_checked = time.monotonic()
        if leases_unsure:
            self._leases_unsure = False
        for (job, outcome), held in zip(outcomes, accepted, strict=True):
            if not held:
                # Our lease expired and another worker took the step over; its outcome is the one that counts.
                self.stats.refused += 1
                log.warning("step %s (%s): lease lost, outcome dropped", job.id, job.kind)
                continue
            if outcome.succeeded:
                self.stats.completed += 1
                result = "completed"
            elif outcome.retryable and job.attempts < job.max_attempts:
                self.stats.retried += 1
                result = "retried"
            else:
                self.stats.failed += 1
                result = "failed"
                log.warning("step %s (%s) failed: %s", job.id, job.kind, outcome.error)
            if self.observer is not None:
                self._observe(self.observer, job, outcome, result)
        return claimed

    def _observe(self, observer: StepObserver, job: Job, outcome: _Outcome, result: str) -> None:
        # After the commit: an observer's failure must not look like a failed write, or the outcomes just recorded
        # would be recorded again and the steps just claimed never started.
        try:
            observer.step_finished(job, outcome.vendor, result, outcome.seconds)
        except Exception:
            if not self._observer_failed:
                self._observer_failed = True
                log.exception("the step observer (metrics) failed; further failures are not logged")

    async def _keep_leases(self) -> None:
        # A third of the lease between heartbeats tolerates two missed beats before another worker may reclaim.
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                ids = [job.id for job in self._in_flight.values()] + [job.id for job, _ in self._unrecorded]
                now = self.clock()

                def transaction(conn: Connection, ids: list[int] = ids, now: datetime = now) -> None:
                    extend_leases(conn, self.worker_id, self.lease, now=now, job_ids=ids)
                    dead_letter_stalled_jobs(conn, now=now, grace=self.soft_dependency_grace)

                await self.database.run_write(transaction)
            except Exception as error:
                # A missed heartbeat is survivable (the lease has slack); a dead heartbeat task is not. The next
                # write extends the leases before it claims anything.
                self._leases_unsure = True
                self._heartbeat_trouble.failed(error)
            else:
                self._heartbeat_trouble.succeeded()


@dataclass
class RunnerWatch:
    """What /readyz looks at in a process that runs the workflow runner; filled in when the runner starts."""

    runner: Runner | None = None
    task: asyncio.Task[None] | None = None

    async def problem(self, unhealthy_after: timedelta) -> str | None:
        """Why this process should be taken out of service, or None. Database faults of the lag query propagate.

        Not ready when the runner's task ended (it never should while the process serves), when its loop has been
        unable to use the database for `unhealthy_after`, or when a due step has waited that long unclaimed."""
        runner, task = self.runner, self.task
        if runner is None or task is None:
            return None
        if task.done():
            return "the workflow runner has stopped"
        limit = unhealthy_after.total_seconds()
        if limit <= 0:
            return None
        stalled = runner.stalled_seconds()
        if stalled > limit:
            return f"the workflow runner has been unable to use the database for {stalled:.0f} s"
        now = runner.clock()
        oldest = await runner.database.run_read(lambda conn: oldest_due_at(conn, now=now))
        if oldest is not None and (now - oldest).total_seconds() > limit:
            return f"a due workflow step has waited {(now - oldest).total_seconds():.0f} s unclaimed"
        return None


def _describe(error: BaseException) -> str:
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
