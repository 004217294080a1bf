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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

from sqlalchemy.engine import Connection

from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable
from storage.database import Database
from workflows.outbox import (
    Job,
    claim_jobs,
    complete_jobs,
    complete_jobs_and_claim_next,
    dead_letter_stalled_jobs,
    extend_leases,
    fail_job,
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


@dataclass(frozen=True)
class _Outcome:
    output: Mapping[str, Any] | None = None
    error: str = ""
    retryable: bool = True
    retry_after_seconds: float | None = None
    progress: Mapping[str, Any] | None = None
    """What a failed attempt got done; kept with the step for the next attempt."""

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
    _registry: dict[str, StepHandler] = field(init=False)
    _semaphores: dict[str, asyncio.Semaphore] = field(init=False, default_factory=dict)
    _in_flight: dict[asyncio.Task[_Outcome], Job] = field(init=False, default_factory=dict)
    _budgets: dict[str, tuple[tuple[str, ...], int]] = field(init=False, default_factory=dict)
    """String target -> (the step kinds that talk to it, how many of its steps may be claimed at once)."""
    _kind_targets: dict[str, str] = field(init=False, default_factory=dict)
    _budgeted_kinds: tuple[str, ...] = field(init=False, default=())
    _held: Counter[str] = field(init=False, default_factory=Counter)
    """Claimed, unfinished steps per budgeted target."""

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

    async def run_until_idle(self) -> int:
        """Process steps until none is due and none is in flight; returns how many attempts it ran (tests, CLI)."""
        return await self._work(stop=None)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Process steps until `stop` is set, then let the steps in flight finish and record them."""
        await self._work(stop=stop)

    async def _work(self, stop: asyncio.Event | None) -> int:
        keeper = asyncio.create_task(self._keep_leases())
        attempts = 0
        try:
            while True:
                claiming = stop is None or not stop.is_set()
                if not self._in_flight:
                    if claiming:
                        self._start(await self._record([], claiming=True))
                    if not self._in_flight:
                        if not claiming or stop is None:
                            return attempts
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(self.poll_interval.total_seconds()):
                                await stop.wait()
                        continue
                done, _ = await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
                outcomes = [(self._finish(task), task.result()) for task in done]
                attempts += len(outcomes)
                self._start(await self._record(outcomes, claiming=stop is None or not stop.is_set()))
        finally:
            keeper.cancel()
            for task in self._in_flight:
                task.cancel()
            # Cancelled steps keep their lease until it expires; another worker then reclaims them.
            self._in_flight.clear()
            self._held.clear()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _attempt(self, job: Job) -> _Outcome:
        handler = self._registry.get(job.kind)
        if handler is None:
            return _Outcome(error=f"no handler registered for step kind {job.kind!r}", retryable=False)
        limit = self._semaphore(handler, job)
        async with limit if limit is not None else contextlib.nullcontext():
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

        def transaction(conn: Connection) -> tuple[list[bool], list[Job]]:
            claimed: list[Job] = []
            if free:
                completed, claimed = complete_jobs_and_claim_next(
                    conn, completions, self.worker_id, self.lease, now=now, other_than=self._budgeted_kinds
                )
            else:
                completed = complete_jobs(conn, completions, now=now)
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
                )
                for job, outcome in outcomes
            ]
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

        accepted, claimed = await self.database.run_write(transaction)
        for (job, outcome), held in zip(outcomes, accepted, strict=True):
            if not held:
                # Our lease expired and another worker took the step over; its outcome is the one that counts.
                self.stats.refused += 1
                log.warning("step %s (%s): lease lost, outcome dropped", job.id, job.kind)
            elif outcome.succeeded:
                self.stats.completed += 1
            elif outcome.retryable and job.attempts < job.max_attempts:
                self.stats.retried += 1
            else:
                self.stats.failed += 1
                log.warning("step %s (%s) failed: %s", job.id, job.kind, outcome.error)
        return claimed

    async def _keep_leases(self) -> None:
        # A third of the lease between heartbeats tolerates two missed beats before another worker may reclaim.
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                ids = [job.id for job in self._in_flight.values()]
                now = self.clock()

                def transaction(conn: Connection, ids: list[int] = ids, now: datetime = now) -> None:
                    extend_leases(conn, self.worker_id, self.lease, now=now, job_ids=ids)
                    dead_letter_stalled_jobs(conn, now=now)

                await self.database.run_write(transaction)
            except Exception:
                # A missed heartbeat is survivable (the lease has slack); a dead heartbeat task is not.
                log.exception("heartbeat failed")


def _describe(error: BaseException) -> str:
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
