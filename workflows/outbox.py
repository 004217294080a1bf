"""The workflow outbox: job steps stored next to the bookings they belong to, claimed with leases, River-style.

Lifecycle of one step (`state`):

    waiting ──(dependencies settled)──► available ──claim──► running ──complete──► completed
       │  ▲                                ▲                   │  │
       │  │                                │   retryable ◄─────┘  └──(not retryable / attempts used up)──► failed
       │  │                                └──── claim ◄──┘                                                  │
       │  └──(the failed dependency is retried and completes)── blocked ◄──(a hard dependency failed for good)┘
       └──(a hard dependency failed / was blocked)──────────────────┘
    available ◄──────────────────────────────── retry_job (operator) ◄──────────────────────── failed
    waiting / available / retryable / failed / blocked ──cancel_run──► cancelled

Dependencies (`depends_on`, computed when the run is planned, workflows/triggers.py) name the steps whose outputs a
step uses, by (run key, step): steps of its own run, or of an earlier run of the same booking (a reschedule's move
waits for the first run's create). Two kinds:
  * hard: the step cannot act without the output. It waits until the dependency completed; when the dependency fails
    for good (or is blocked or cancelled) the step is `blocked`, with `blocked_by` saying which one. A blocked step
    is released when that dependency is retried and completes.
  * soft: the step only quotes the output (an email quoting the ticket number). It waits while the dependency is
    pending or retrying, but at most the grace period counted from when the step is due: its `created_at` (when its
    run was enqueued), or its `run_after` when that is later (a reminder planned a day ahead); then, or once the
    dependency failed for good, it runs without that output.
A step planned without dependencies (`JobSpec.depends_on=None`) depends hard on the step before it in its run, as
every step did before dependencies existed.

Steps are not claimable while waiting or blocked; `settle_dependants` moves them when something they depend on
finishes, in the transaction that records that finish: completing or failing for good re-evaluates the waiting and
blocked steps of the same booking (of the same run, for jobs without a booking). That keeps the claim the hot path
it was: a plain index range scan on (state, run_after). Time alone ends a soft wait, so `release_graced_jobs` (run by
the runner about once a second) re-evaluates waiting steps whose grace ran out, found through (state, grace_from).
Evaluation locks the dependants first (FOR UPDATE, in id order): two transactions completing two dependencies of one
step then evaluate it one after the other, and the second sees both finished, so a step is never stranded. The
runner completes with `complete_jobs_and_claim_next`, which leases the steps it just released to itself in the same
transaction, so a run keeps moving instead of queueing behind every older due step.

Delivery is at least once: a worker can die after the vendor accepted a call and before `complete` committed. Handlers
therefore look up by `idempotency_key` at the vendor before every create (reference/perf_reliability.md §3).

Every function that changes rows exists twice: a synchronous `*_job(conn, ...)` that joins the caller's transaction
(the booking transaction, or the runner's batched write) and an async wrapper that runs it as its own transaction.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from sqlalchemy import (
    Integer,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Update

from storage.database import Database
from storage.tables import MAX_ERROR_LENGTH, workflow_jobs

WAITING: Final = "waiting"
AVAILABLE: Final = "available"
RUNNING: Final = "running"
COMPLETED: Final = "completed"
RETRYABLE: Final = "retryable"
FAILED: Final = "failed"
BLOCKED: Final = "blocked"
CANCELLED: Final = "cancelled"
STATES: Final = (WAITING, AVAILABLE, RUNNING, COMPLETED, RETRYABLE, FAILED, BLOCKED, CANCELLED)

HARD: Final = "hard"
SOFT: Final = "soft"
DEFAULT_SOFT_DEPENDENCY_GRACE: Final = timedelta(seconds=600)
_PENDING: Final = (WAITING, AVAILABLE, RUNNING, RETRYABLE)
_GONE: Final = (FAILED, BLOCKED, CANCELLED)
"""A hard dependency in one of these states will not produce its output until someone retries it."""

BACKOFF_BASE_SECONDS: Final = 1.0
BACKOFF_CAP_SECONDS: Final = 300.0
BACKOFF_JITTER: Final = 0.2
DEFAULT_MAX_ATTEMPTS: Final = 10

# UPDATE ... RETURNING, which the SQLite claim is built on, arrived in SQLite 3.35.
_SQLITE_RETURNING = (3, 35, 0)


@dataclass(frozen=True)
class Dependency:
    """A step this step waits for: `step` of run `run_key` (the step's own run, or an earlier run of its booking).

    `kind` is HARD (cannot act without the output) or SOFT (only quotes it); `uses` names the outputs it reads.
    """

    run_key: str
    step: int
    action: str
    kind: Literal["hard", "soft"]
    uses: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run_key,
            "step": self.step,
            "action": self.action,
            "kind": self.kind,
            "uses": list(self.uses),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Dependency:
        kind: Literal["hard", "soft"] = SOFT if value.get("kind") == SOFT else HARD
        return cls(
            str(value["run"]), int(value["step"]), str(value.get("action", "")), kind, tuple(value.get("uses", ()))
        )

    def describe(self, from_run: str) -> str:
        """'step 0 (create_ticket)', naming the run when it is another one than the dependant's."""
        where = "" if self.run_key == from_run else f" of run {self.run_key}"
        action = f" ({self.action})" if self.action else ""
        return f"step {self.step}{action}{where}"


@dataclass(frozen=True)
class JobSpec:
    """One step to enqueue.

    `idempotency_key` is unique across the table, e.g. `step_idempotency_key(booking_id, step, kind)`; enqueueing a
    key that already exists is a silent no-op, so a retried booking request cannot fan out twice. A run that must
    repeat a step (a reschedule) needs a key that says so, e.g. with a version. `run_after=None` means "now".
    """

    tenant_id: str
    run_key: str
    step: int
    kind: str
    idempotency_key: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    booking_id: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    run_after: datetime | None = None
    depends_on: tuple[Dependency, ...] | None = None
    """None: depend hard on the step before this one in its run (the order steps always had)."""


@dataclass(frozen=True)
class Job:
    """A stored step. A job returned by `claim` carries its lease token: `locked_by` plus `attempts`."""

    id: int
    tenant_id: str
    booking_id: str | None
    run_key: str
    step: int
    kind: str
    idempotency_key: str
    payload: Mapping[str, Any]
    state: str
    attempts: int
    max_attempts: int
    run_after: datetime
    locked_by: str | None
    lease_expires_at: datetime | None
    last_error: str
    output: Mapping[str, Any] | None
    created_at: datetime
    updated_at: datetime
    depends_on: Sequence[Mapping[str, Any]] | None = None
    blocked_by: str | None = None
    """Why the step is blocked ('blocked by step 0 (create_ticket)'); None unless it is."""
    grace_from: datetime | None = None
    """Set while the step may wait for soft dependencies: when their grace started (the run's enqueue time)."""

    @property
    def dependencies(self) -> tuple[Dependency, ...]:
        return tuple(Dependency.from_json(value) for value in self.depends_on or ())

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Job:
        """Build from a row of all `workflow_jobs` columns in table order (positional: this is the claim hot path)."""
        return cls(*row)


# from_row relies on the dataclass listing the columns in table order; fail at import, not with shuffled fields.
if tuple(job_field.name for job_field in fields(Job)) != tuple(column.name for column in workflow_jobs.columns):
    raise RuntimeError("Job fields must list the workflow_jobs columns in table order")


def step_idempotency_key(booking_id: str, step: int, kind: str) -> str:
    """The conventional key for one step of a booking's workflow."""
    return f"{booking_id}:{step}:{kind}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def enqueue_jobs(
    conn: Connection,
    jobs: Sequence[JobSpec],
    *,
    now: datetime | None = None,
    grace: timedelta = DEFAULT_SOFT_DEPENDENCY_GRACE,
) -> None:
    """Add steps inside the caller's write transaction: they commit or roll back with it, and stay invisible until then.

    A step with nothing to wait for is available at once; one whose dependencies are unsettled waits, and one whose
    hard dependency (in an earlier run) already failed for good is blocked. Keys that already exist are skipped.
    """
    if not jobs:
        return
    moment = now or _utc_now()
    resolved = _resolve_dependencies(conn, jobs)
    in_batch = {(spec.run_key, spec.step) for spec in jobs}
    outside = {(dep.run_key, dep.step) for deps in resolved for dep in deps} - in_batch
    states = _lock_states(conn, outside)
    # A dependency enqueued in this very batch is pending whatever state it starts in.
    states.update(dict.fromkeys(in_batch, WAITING))
    rows = []
    for spec, deps in zip(jobs, resolved, strict=True):
        # A step due later (a reminder, a follow-up) starts its grace when it is due, not when it was planned.
        grace_start = max(moment, spec.run_after or moment)
        state, reason = _verdict(spec.run_key, grace_start, deps, states, now=moment, grace=grace)
        rows.append(
            {
                "tenant_id": spec.tenant_id,
                "booking_id": spec.booking_id,
                "run_key": spec.run_key,
                "step": spec.step,
                "kind": spec.kind,
                "idempotency_key": spec.idempotency_key,
                "payload": dict(spec.payload),
                "state": state,
                "attempts": 0,
                "max_attempts": spec.max_attempts,
                "run_after": spec.run_after or moment,
                "locked_by": None,
                "lease_expires_at": None,
                "last_error": "",
                "output": None,
                "created_at": moment,
                "updated_at": moment,
                "depends_on": [dep.to_json() for dep in deps],
                "blocked_by": reason,
                "grace_from": grace_start if any(dep.kind == SOFT for dep in deps) else None,
            }
        )
    insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(workflow_jobs).on_conflict_do_nothing(index_elements=["idempotency_key"]), rows)


def _resolve_dependencies(conn: Connection, jobs: Sequence[JobSpec]) -> list[tuple[Dependency, ...]]:
    """Each spec's dependencies; a spec without any (None) depends hard on the step before it in its run, in the
    batch or, for the first step of the batch, already in the table."""
    kinds = {(spec.run_key, spec.step): spec.kind for spec in jobs}
    resolved: list[tuple[Dependency, ...]] = []
    for spec in jobs:
        if spec.depends_on is not None:
            resolved.append(tuple(spec.depends_on))
            continue
        earlier = [step for run_key, step in kinds if run_key == spec.run_key and step < spec.step]
        if earlier:
            previous = max(earlier)
            resolved.append((Dependency(spec.run_key, previous, kinds[(spec.run_key, previous)], HARD),))
            continue
        row = conn.execute(
            select(workflow_jobs.c.step, workflow_jobs.c.kind)
            .where(workflow_jobs.c.run_key == spec.run_key, workflow_jobs.c.step < spec.step)
            .order_by(workflow_jobs.c.step.desc())
            .limit(1)
        ).first()
        resolved.append((Dependency(spec.run_key, int(row.step), str(row.kind), HARD),) if row is not None else ())
    return resolved


def _lock_states(conn: Connection, refs: Collection[tuple[str, int]]) -> dict[tuple[str, int], str]:
    # FOR UPDATE (PostgreSQL; SQLite is single-writer already) closes a race with a concurrent `complete` of one of
    # these steps: either we wait for its commit and then see it finished, or it waits for ours and its settlement
    # then sees the steps we add. Without the lock both could miss each other and strand the new steps.
    if not refs:
        return {}
    jobs = workflow_jobs.c
    query = (
        select(jobs.run_key, jobs.step, jobs.state)
        .where(jobs.run_key.in_(sorted({run_key for run_key, _ in refs})))
        .order_by(jobs.id)
        .with_for_update()
    )
    return {(row.run_key, row.step): row.state for row in conn.execute(query) if (row.run_key, row.step) in refs}


def _verdict(
    run_key: str,
    created_at: datetime,
    dependencies: Sequence[Dependency],
    states: Mapping[tuple[str, int], str],
    *,
    now: datetime,
    grace: timedelta,
) -> tuple[str, str | None]:
    """Where a step that is not running yet belongs: (BLOCKED, why), (WAITING, None) or (AVAILABLE, None).

    A dependency missing from `states` (never enqueued, or pruned) is treated as settled: there is nothing to wait for.
    """
    blocked: str | None = None
    hard_pending = soft_pending = False
    for dependency in dependencies:
        state = states.get((dependency.run_key, dependency.step))
        if state is None:
            continue
        if dependency.kind == HARD:
            if state in _GONE:
                blocked = blocked or f"blocked by {dependency.describe(run_key)}"
            elif state != COMPLETED:
                hard_pending = True
        elif state in _PENDING:
            soft_pending = True
    if blocked is not None:
        return BLOCKED, blocked
    if hard_pending or (soft_pending and now < created_at + grace):
        return WAITING, None
    return AVAILABLE, None


Scope = tuple[str, str | None, str]
"""(tenant id, booking id, run key) of a step: its dependants are among the steps of its booking (or of its run)."""


def scope_of(job: Job) -> Scope:
    return (job.tenant_id, job.booking_id, job.run_key)


def settle_dependants(
    conn: Connection, scopes: Collection[Scope], *, now: datetime, grace: timedelta = DEFAULT_SOFT_DEPENDENCY_GRACE
) -> list[tuple[int, str]]:
    """Re-evaluate the waiting and blocked steps in these scopes after something they may depend on finished.

    Steps whose dependencies settled become available (due now, or at their enqueue time when that is earlier, so
    a run under way keeps its place in the queue); steps with a hard dependency that failed for good become blocked;
    blocked steps whose dependency was retried and completed wait or become available again. Returns the
    (id, kind) of the steps made available, in id order.
    """
    if not scopes:
        return []
    jobs = workflow_jobs.c
    bookings = sorted({(tenant, booking) for tenant, booking, _ in scopes if booking is not None})
    runs = sorted({run_key for _, booking, run_key in scopes if booking is None})
    where = []
    if bookings:
        where.append(tuple_(jobs.tenant_id, jobs.booking_id).in_(bookings))
    if runs:
        where.append(jobs.run_key.in_(runs))
    candidates = conn.execute(
        select(
            jobs.id,
            jobs.run_key,
            jobs.step,
            jobs.kind,
            jobs.state,
            jobs.depends_on,
            jobs.created_at,
            jobs.run_after,
            jobs.blocked_by,
        )
        .where(jobs.state.in_((WAITING, BLOCKED)), or_(*where))
        .order_by(jobs.id)
        .with_for_update()
    ).all()
    if not candidates:
        return []
    dependencies = {row.id: _dependencies_of(row) for row in candidates}
    refs = {(dep.run_key, dep.step) for deps in dependencies.values() for dep in deps}
    states: dict[tuple[str, int], str] = {}
    if refs:
        states = {
            (row.run_key, row.step): row.state
            for row in conn.execute(
                select(jobs.run_key, jobs.step, jobs.state).where(
                    jobs.run_key.in_(sorted({run_key for run_key, _ in refs}))
                )
            )
        }
    for row in candidates:
        states[(row.run_key, row.step)] = row.state
    reasons: dict[int, str | None] = {row.id: row.blocked_by for row in candidates}
    verdicts: dict[int, str] = {row.id: row.state for row in candidates}
    # A step that becomes blocked blocks its own hard dependants, and one released may release others: repeat until
    # nothing moves (each pass is over the few steps of a handful of bookings).
    for _ in range(len(candidates) + 1):
        moved = False
        for row in candidates:
            grace_start = max(row.created_at, row.run_after)
            state, reason = _verdict(row.run_key, grace_start, dependencies[row.id], states, now=now, grace=grace)
            if state != verdicts[row.id] or reason != reasons[row.id]:
                verdicts[row.id], reasons[row.id] = state, reason
                states[(row.run_key, row.step)] = state
                moved = True
        if not moved:
            break
    changed = [row for row in candidates if verdicts[row.id] != row.state or reasons[row.id] != row.blocked_by]
    released = [row.id for row in changed if verdicts[row.id] == AVAILABLE]
    if released:
        conn.execute(_RELEASE, {"ids": released, "now": now})
    rewaiting = [row.id for row in changed if verdicts[row.id] == WAITING]
    if rewaiting:
        conn.execute(
            update(workflow_jobs).where(jobs.id.in_(rewaiting)).values(state=WAITING, blocked_by=None, updated_at=now)
        )
    blocked = [
        {"job_id": row.id, "reason": reasons[row.id], "now": now} for row in changed if verdicts[row.id] == BLOCKED
    ]
    if blocked:
        conn.execute(_BLOCK, blocked)
    kinds = {row.id: str(row.kind) for row in candidates}
    return [(job_id, kinds[job_id]) for job_id in released]


def _dependencies_of(row: Any) -> tuple[Dependency, ...]:
    if row.depends_on is None:
        # Enqueued before steps named their dependencies (revision 0008): it waits for the step before it, as then.
        return (Dependency(row.run_key, row.step - 1, "", HARD),) if row.step > 0 else ()
    return tuple(Dependency.from_json(value) for value in row.depends_on)


def release_graced_jobs(
    conn: Connection, *, now: datetime, grace: timedelta = DEFAULT_SOFT_DEPENDENCY_GRACE, limit: int = 500
) -> int:
    """Re-evaluate waiting steps whose soft-dependency grace has run out (time alone ends it); returns how many
    became available. Those still waiting on a hard dependency drop out of this search: their soft dependencies no
    longer hold them back, and finishing the hard one settles them."""
    jobs = workflow_jobs.c
    rows = conn.execute(
        select(jobs.id, jobs.tenant_id, jobs.booking_id, jobs.run_key)
        .where(jobs.state == WAITING, jobs.grace_from <= now - grace)
        .order_by(jobs.grace_from)
        .limit(limit)
    ).all()
    if not rows:
        return 0
    released = settle_dependants(
        conn, {(row.tenant_id, row.booking_id, row.run_key) for row in rows}, now=now, grace=grace
    )
    conn.execute(
        update(workflow_jobs)
        .where(jobs.id.in_([row.id for row in rows]), jobs.state == WAITING)
        .values(grace_from=None)
    )
    return len(released)


def claim_jobs(
    conn: Connection,
    worker_id: str,
    limit: int,
    lease: timedelta,
    *,
    now: datetime,
    kinds: Collection[str] | None = None,
    other_than: Collection[str] = (),
) -> list[Job]:
    """Lease up to `limit` due steps to `worker_id` in the caller's transaction; each claim counts as one attempt.

    Due: available or retryable with `run_after <= now`, or running under an expired lease (the holder vanished) with
    attempts left. `kinds` keeps only steps of those kinds, `other_than` skips steps of those kinds: the runner uses
    them to give each rate-limited target only as many steps as it can run. PostgreSQL: the inner SELECT takes row
    locks with SKIP LOCKED, so concurrent claimers never wait on or double-claim a row. SQLite: the same statement
    without the lock clause; there is one writer at a time (BEGIN IMMEDIATE), so nothing else can hold those rows.
    """
    if conn.dialect.name == "sqlite" and sqlite3.sqlite_version_info < _SQLITE_RETURNING:
        raise RuntimeError(f"SQLite {sqlite3.sqlite_version} lacks UPDATE ... RETURNING; the runner needs >= 3.35")
    if kinds is not None and other_than:
        raise ValueError("pass either kinds or other_than")
    if limit < 1 or (kinds is not None and not kinds):
        return []
    parameters: dict[str, Any] = {"worker_id": worker_id, "now": now, "lease_expires_at": now + lease, "limit": limit}
    statement = _CLAIM
    if kinds is not None:
        statement, parameters["kinds"] = _CLAIM_KINDS, list(kinds)
    elif other_than:
        statement, parameters["kinds"] = _CLAIM_OTHER_KINDS, list(other_than)
    claimed = [Job.from_row(row) for row in conn.execute(statement, parameters)]
    claimed.sort(key=lambda job: (job.run_after, job.id))
    return claimed


def _build_claim(kind_filter: Literal["in", "not in"] | None = None) -> Update:
    jobs = workflow_jobs.c
    now = bindparam("now", type_=jobs.run_after.type)
    due = select(jobs.id).where(
        or_(
            and_(jobs.state.in_((AVAILABLE, RETRYABLE)), jobs.run_after <= now),
            and_(jobs.state == RUNNING, jobs.lease_expires_at < now, jobs.attempts < jobs.max_attempts),
        )
    )
    if kind_filter == "in":
        due = due.where(jobs.kind.in_(bindparam("kinds", expanding=True)))
    elif kind_filter == "not in":
        due = due.where(jobs.kind.not_in(bindparam("kinds", expanding=True)))
    due = (
        due.order_by(jobs.run_after, jobs.id)
        .limit(bindparam("limit", type_=Integer()))
        .with_for_update(skip_locked=True)
    )
    return update(workflow_jobs).where(jobs.id.in_(due)).values(_leased(now)).returning(*workflow_jobs.columns)


def _leased(now: Any) -> dict[str, Any]:
    """The values that lease a step to the worker in the `worker_id` parameter: one more attempt, a fresh lease."""
    jobs = workflow_jobs.c
    return {
        "state": RUNNING,
        "locked_by": bindparam("worker_id", type_=jobs.locked_by.type),
        "lease_expires_at": bindparam("lease_expires_at", type_=jobs.lease_expires_at.type),
        "attempts": jobs.attempts + 1,
        "updated_at": now,
    }


# The hot statements are built once: constructing a Core statement (and its cache key) per batch cost more than
# executing it.
_CLAIM: Final = _build_claim()
_CLAIM_KINDS: Final = _build_claim("in")
_CLAIM_OTHER_KINDS: Final = _build_claim("not in")


def _held_by(job: Job) -> Any:
    """The compare-and-set guard: still running under the very lease `claim` handed out for this attempt."""
    jobs = workflow_jobs.c
    return and_(
        jobs.id == job.id, jobs.state == RUNNING, jobs.locked_by == job.locked_by, jobs.attempts == job.attempts
    )


def complete_jobs(
    conn: Connection,
    results: Sequence[tuple[Job, Mapping[str, Any]]],
    *,
    now: datetime,
    grace: timedelta = DEFAULT_SOFT_DEPENDENCY_GRACE,
) -> set[int]:
    """Mark claimed steps completed with their outputs and settle their dependants, in the caller's transaction.

    Returns the ids that were accepted; a step whose lease was lost (expired and reclaimed, or cancelled) is left
    unchanged. A constant number of statements per batch, not per step: the runner records dozens of outcomes at once.
    """
    accepted = _mark_completed(conn, results, now=now)
    settle_dependants(conn, {scope_of(job) for job, _ in results if job.id in accepted}, now=now, grace=grace)
    return accepted


def complete_jobs_and_claim_next(
    conn: Connection,
    results: Sequence[tuple[Job, Mapping[str, Any]]],
    worker_id: str,
    lease: timedelta,
    *,
    now: datetime,
    other_than: Collection[str] = (),
    limit: int | None = None,
    grace: timedelta = DEFAULT_SOFT_DEPENDENCY_GRACE,
) -> tuple[set[int], list[Job]]:
    """Like `complete_jobs`, but lease the steps this releases straight to `worker_id` instead of only making them
    available: at most `limit` of them (default: one per completed step), the rest stay available for any worker.

    The released steps inherit their dependencies' slots in the worker. That keeps a run moving the moment a step is
    done: made available instead, they would queue behind every older due step (their `run_after` is now), so a
    backlog of first steps would run to the end before any second step started. Steps of the kinds in `other_than`
    are only made available (the runner claims those under their target's budget). Returns the accepted ids and the
    claimed steps.
    """
    accepted = _mark_completed(conn, results, now=now)
    scopes = {scope_of(job) for job, _ in results if job.id in accepted}
    if not scopes:
        return accepted, []
    released = settle_dependants(conn, scopes, now=now, grace=grace)
    room = len(accepted) if limit is None else limit
    chosen = [job_id for job_id, kind in released if kind not in other_than][: max(room, 0)]
    if not chosen:
        return accepted, []
    parameters = {"ids": chosen, "now": now, "worker_id": worker_id, "lease_expires_at": now + lease}
    claimed = sorted((Job.from_row(row) for row in conn.execute(_LEASE_RELEASED, parameters)), key=lambda job: job.id)
    return accepted, claimed


def _mark_completed(conn: Connection, results: Sequence[tuple[Job, Mapping[str, Any]]], *, now: datetime) -> set[int]:
    if not results:
        return set()
    leases = [(job.id, job.locked_by, job.attempts) for job, _ in results]
    accepted = set(conn.execute(_COMPLETE, {"leases": leases, "now": now, "output": {}}).scalars())
    outputs = [{"job_id": job.id, "output": dict(output)} for job, output in results if job.id in accepted and output]
    if outputs:
        conn.execute(_SET_OUTPUT, outputs)
    return accepted


def complete_job(
    conn: Connection,
    job: Job,
    output: Mapping[str, Any],
    *,
    now: datetime,
    grace: timedelta = DEFAULT_SOFT_DEPENDENCY_GRACE,
) -> bool:
    """Complete one claimed step (see `complete_jobs`); False, changing nothing, when the lease was lost."""
    return job.id in complete_jobs(conn, [(job, output)], now=now, grace=grace)


def promote_ready_steps(
    conn: Connection, run_keys: Collection[str], *, now: datetime, grace: timedelta = DEFAULT_SOFT_DEPENDENCY_GRACE
) -> int:
    """Settle the waiting and blocked steps of these runs (see `settle_dependants`); returns how many became
    available."""
    jobs = workflow_jobs.c
    if not run_keys:
        return 0
    scopes = {
        (row.tenant_id, row.booking_id, row.run_key)
        for row in conn.execute(
            select(jobs.tenant_id, jobs.booking_id, jobs.run_key).where(jobs.run_key.in_(list(run_keys))).distinct()
        )
    }
    return len(settle_dependants(conn, scopes, now=now, grace=grace))


def _build_complete() -> tuple[Update, Update, Update, Update, Update]:
    jobs = workflow_jobs.c
    now = bindparam("now", type_=jobs.updated_at.type)
    # One compare-and-set for the whole batch: still running under the very lease (worker and attempt) that `claim`
    # handed out. RETURNING says which leases still held.
    complete = (
        update(workflow_jobs)
        .where(
            jobs.state == RUNNING,
            tuple_(jobs.id, jobs.locked_by, jobs.attempts).in_(bindparam("leases", expanding=True)),
        )
        .values(
            state=COMPLETED,
            output=bindparam("output", type_=jobs.output.type),
            locked_by=None,
            lease_expires_at=None,
            last_error="",
            updated_at=now,
        )
        .returning(jobs.id)
    )
    set_output = (
        update(workflow_jobs)
        .where(jobs.id == bindparam("job_id", type_=Integer()))
        .values(output=bindparam("output", type_=jobs.output.type))
    )
    # A released step is due now, but keeps its enqueue time when that is earlier: claims go oldest first, so a run
    # already under way keeps its place instead of queueing behind every step enqueued since it started. That also
    # holds when its worker dies: the stalled step is reclaimed ahead of the backlog, not after it.
    due_now = case((jobs.run_after < now, jobs.run_after), else_=now)
    release = (
        update(workflow_jobs)
        .where(jobs.id.in_(bindparam("ids", expanding=True)), jobs.state.in_((WAITING, BLOCKED)))
        .values(state=AVAILABLE, blocked_by=None, grace_from=None, run_after=due_now, updated_at=now)
    )
    lease_released = (
        update(workflow_jobs)
        .where(jobs.id.in_(bindparam("ids", expanding=True)), jobs.state == AVAILABLE)
        .values(_leased(now))
        .returning(*workflow_jobs.columns)
    )
    block = (
        update(workflow_jobs)
        .where(jobs.id == bindparam("job_id", type_=Integer()))
        .values(state=BLOCKED, blocked_by=bindparam("reason", type_=jobs.blocked_by.type), updated_at=now)
    )
    return complete, set_output, release, lease_released, block


_COMPLETE, _SET_OUTPUT, _RELEASE, _LEASE_RELEASED, _BLOCK = _build_complete()


def compute_retry_delay(
    attempts: int, retry_after_seconds: float | None = None, *, rng: random.Random | None = None
) -> timedelta:
    """Backoff before the next attempt, after `attempts` attempts (>= 1) have been made.

    1 s * 2**(attempts - 1), capped at 300 s, with ±20 % jitter so a vendor outage does not end in a thundering herd;
    never earlier than the vendor's Retry-After.
    """
    exponential = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    jitter = (rng or _jitter_rng).uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER)
    return timedelta(seconds=max(retry_after_seconds or 0.0, exponential * jitter))


# Jitter only spreads load; it needs no unpredictability, so the default PRNG is fine.
_jitter_rng = random.Random()  # noqa: S311


def fail_job(
    conn: Connection,
    job: Job,
    error: str,
    *,
    now: datetime,
    retryable: bool = True,
    retry_after_seconds: float | None = None,
    rng: random.Random | None = None,
    progress: Mapping[str, Any] | None = None,
    grace: timedelta = DEFAULT_SOFT_DEPENDENCY_GRACE,
    settle_later: set[Scope] | None = None,
) -> bool:
    """Record a failed attempt in the caller's transaction: retryable with backoff, or failed (the dead letter).

    A step fails for good when `retryable` is False (the vendor rejected it) or its `max_attempts` are used up. Its
    hard dependants are then blocked until an operator retries it and it completes; its soft dependants go without
    it. Returns False when the lease was lost.
    `progress` (what the attempt got done) is merged into the step's output, which the next attempt reads.
    With `settle_later`, a step that failed for good adds its scope there instead of settling its dependants: the
    caller settles a whole batch of failures with one `settle_dependants` (a vendor that refuses every call fails
    hundreds of steps at once, and settling each alone made the runner's write transactions the bottleneck).
    """
    dead = not retryable or job.attempts >= job.max_attempts
    values: dict[str, Any] = {
        "state": FAILED if dead else RETRYABLE,
        "last_error": error[:MAX_ERROR_LENGTH],
        "locked_by": None,
        "lease_expires_at": None,
        "updated_at": now,
    }
    if progress:
        values["output"] = {**(job.output or {}), **progress}
    if not dead:
        values["run_after"] = now + compute_retry_delay(job.attempts, retry_after_seconds, rng=rng)
    result = conn.execute(update(workflow_jobs).where(_held_by(job)).values(**values))
    if result.rowcount != 1:
        return False
    if dead:
        if settle_later is not None:
            settle_later.add(scope_of(job))
        else:
            settle_dependants(conn, {scope_of(job)}, now=now, grace=grace)
    return True


def extend_leases(
    conn: Connection, worker_id: str, lease: timedelta, *, now: datetime, job_ids: Collection[int] | None = None
) -> int:
    """Push the lease of the worker's running steps (only `job_ids`, when given) to now + lease; returns how many."""
    jobs = workflow_jobs.c
    statement = update(workflow_jobs).where(jobs.state == RUNNING, jobs.locked_by == worker_id)
    if job_ids is not None:
        if not job_ids:
            return 0
        statement = statement.where(jobs.id.in_(list(job_ids)))
    return conn.execute(statement.values(lease_expires_at=now + lease, updated_at=now)).rowcount


def dead_letter_stalled_jobs(
    conn: Connection, *, now: datetime, grace: timedelta = DEFAULT_SOFT_DEPENDENCY_GRACE
) -> int:
    """Fail running steps whose lease expired after their last allowed attempt (claim no longer picks them up).

    Without this a step that crashes its worker every time would sit in `running` forever.
    """
    jobs = workflow_jobs.c
    failed = conn.execute(
        update(workflow_jobs)
        .where(jobs.state == RUNNING, jobs.lease_expires_at < now, jobs.attempts >= jobs.max_attempts)
        .values(
            state=FAILED,
            last_error="lease expired on the last attempt (the worker stopped without reporting)",
            locked_by=None,
            lease_expires_at=None,
            updated_at=now,
        )
        .returning(jobs.tenant_id, jobs.booking_id, jobs.run_key)
    ).all()
    if failed:
        settle_dependants(conn, {(row.tenant_id, row.booking_id, row.run_key) for row in failed}, now=now, grace=grace)
    return len(failed)


def count_jobs_by_state(conn: Connection) -> dict[str, int]:
    """How many steps are in each state (every state listed, zeros included)."""
    jobs = workflow_jobs.c
    counts = dict.fromkeys(STATES, 0)
    for state, count in conn.execute(select(jobs.state, func.count()).group_by(jobs.state)):
        counts[str(state)] = int(count)
    return counts


def oldest_due_at(conn: Connection, *, now: datetime) -> datetime | None:
    """Since when the longest-waiting due step has been claimable, or None when nothing is due: the runner lag.

    Due as `claim_jobs` sees it: available or retryable with `run_after <= now` (since `run_after`), or running under
    a lease that expired with attempts left (since the lease expired). Both halves are range scans on the
    (state, run_after) index, so this is cheap enough for every readiness probe.
    """
    jobs = workflow_jobs.c
    waiting = conn.execute(
        select(func.min(jobs.run_after)).where(jobs.state.in_((AVAILABLE, RETRYABLE)), jobs.run_after <= now)
    ).scalar()
    stalled = conn.execute(
        select(func.min(jobs.lease_expires_at)).where(
            jobs.state == RUNNING, jobs.lease_expires_at < now, jobs.attempts < jobs.max_attempts
        )
    ).scalar()
    found = [moment for moment in (waiting, stalled) if moment is not None]
    return min(found) if found else None


async def claim(
    database: Database, worker_id: str, limit: int, lease: timedelta, *, now: datetime | None = None
) -> list[Job]:
    """Lease up to `limit` due steps to `worker_id` for `lease`, in one write transaction (see `claim_jobs`)."""
    moment = now or _utc_now()
    return await database.run_write(lambda conn: claim_jobs(conn, worker_id, limit, lease, now=moment))


async def complete(database: Database, job: Job, output: Mapping[str, Any], *, now: datetime | None = None) -> bool:
    """Complete a claimed step in its own transaction; False when the lease was lost (see `complete_job`)."""
    moment = now or _utc_now()
    return await database.run_write(lambda conn: complete_job(conn, job, output, now=moment))


async def fail(
    database: Database,
    job: Job,
    error: str,
    *,
    retry_after_seconds: float | None = None,
    retryable: bool = True,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> bool:
    """Record a failed attempt in its own transaction; False when the lease was lost (see `fail_job`)."""
    moment = now or _utc_now()
    return await database.run_write(
        lambda conn: fail_job(
            conn, job, error, now=moment, retryable=retryable, retry_after_seconds=retry_after_seconds, rng=rng
        )
    )


async def heartbeat(
    database: Database,
    worker_id: str,
    lease: timedelta,
    *,
    job_ids: Collection[int] | None = None,
    now: datetime | None = None,
) -> int:
    """Extend the leases of a worker's running steps (see `extend_leases`)."""
    moment = now or _utc_now()
    return await database.run_write(lambda conn: extend_leases(conn, worker_id, lease, now=moment, job_ids=job_ids))


async def retry_job(database: Database, tenant_id: str, job_id: int, *, now: datetime | None = None) -> bool:
    """Put a failed step of this tenant back to available with a fresh attempt budget; False if there is none.

    The last error stays visible until the step completes. Steps it blocked stay blocked until then: completing it
    releases them (`settle_dependants`).
    """
    moment = now or _utc_now()
    jobs = workflow_jobs.c

    def transaction(conn: Connection) -> bool:
        result = conn.execute(
            update(workflow_jobs)
            .where(jobs.id == job_id, jobs.tenant_id == tenant_id, jobs.state == FAILED)
            .values(state=AVAILABLE, attempts=0, run_after=moment, updated_at=moment)
        )
        return result.rowcount == 1

    return await database.run_write(transaction)


async def cancel_run(database: Database, tenant_id: str, run_key: str, *, now: datetime | None = None) -> int:
    """Cancel every step of a run that is not running or done (e.g. the booking was cancelled); returns how many.

    A running step is left to finish: its vendor call may already have happened, and its completion is still recorded.
    """
    moment = now or _utc_now()
    jobs = workflow_jobs.c

    def transaction(conn: Connection) -> int:
        cancelled = conn.execute(
            update(workflow_jobs)
            .where(
                jobs.tenant_id == tenant_id,
                jobs.run_key == run_key,
                jobs.state.in_((WAITING, AVAILABLE, RETRYABLE, FAILED, BLOCKED)),
            )
            .values(state=CANCELLED, updated_at=moment)
            .returning(jobs.tenant_id, jobs.booking_id, jobs.run_key)
        ).all()
        # Later runs of the booking may wait on a cancelled step: they are blocked now, not left waiting.
        settle_dependants(conn, {(row.tenant_id, row.booking_id, row.run_key) for row in cancelled}, now=moment)
        return len(cancelled)

    return await database.run_write(transaction)


async def list_runs(
    database: Database,
    tenant_id: str,
    booking_id: str | None = None,
    *,
    run_key: str | None = None,
    limit: int = 1000,
) -> list[Job]:
    """This tenant's steps (optionally of one booking or one run), ordered by run key and step."""
    jobs = workflow_jobs.c
    query = select(workflow_jobs).where(jobs.tenant_id == tenant_id)
    if booking_id is not None:
        query = query.where(jobs.booking_id == booking_id)
    if run_key is not None:
        query = query.where(jobs.run_key == run_key)
    query = query.order_by(jobs.run_key, jobs.step).limit(limit)

    def read(conn: Connection) -> list[Job]:
        return [Job.from_row(row) for row in conn.execute(query)]

    return await database.run_read(read)
