"""The workflow outbox: job steps stored next to the bookings they belong to, claimed with leases, River-style.

Lifecycle of one step (`state`):

    waiting ──(previous step completed)──► available ──claim──► running ──complete──► completed
                                              ▲                   │  │
                                              │   retryable ◄─────┘  └──(not retryable / attempts used up)──► failed
                                              └──── claim ◄──┘                                                  │
                                              ▲                                                                  │
                                              └──────────────────────── retry_job (operator) ◄───────────────────┘
    waiting / available / retryable / failed ──cancel_run──► cancelled

Ordering within a run: `enqueue_jobs` makes only the lowest step of each run `available` and parks the rest as
`waiting`; completing a step promotes, in the same transaction, the waiting step whose earlier steps are all completed
(or cancelled). So a step only ever runs after every earlier step of its run completed, and it can read their outputs
(`list_runs(..., run_key=...)`). We chose promotion over a "no unfinished earlier step" clause in the claim query
because the claim is the hot path: it stays a plain index range scan on (state, run_after). The runner completes
with `complete_jobs_and_claim_next`, which leases the promoted step to itself in the same statement, so a run keeps
moving instead of queueing its next step behind every older due step.

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
    JSON,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
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
from storage.tables import UtcDateTime, metadata

WAITING: Final = "waiting"
AVAILABLE: Final = "available"
RUNNING: Final = "running"
COMPLETED: Final = "completed"
RETRYABLE: Final = "retryable"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
STATES: Final = (WAITING, AVAILABLE, RUNNING, COMPLETED, RETRYABLE, FAILED, CANCELLED)

MAX_ERROR_LENGTH: Final = 2000
BACKOFF_BASE_SECONDS: Final = 1.0
BACKOFF_CAP_SECONDS: Final = 300.0
BACKOFF_JITTER: Final = 0.2
DEFAULT_MAX_ATTEMPTS: Final = 10

# UPDATE ... RETURNING, which the SQLite claim is built on, arrived in SQLite 3.35.
_SQLITE_RETURNING = (3, 35, 0)

workflow_jobs = Table(
    "workflow_jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False),
    Column("booking_id", String(40), nullable=True),
    Column("run_key", String(80), nullable=False),
    Column("step", Integer, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("run_after", UtcDateTime(), nullable=False),
    Column("locked_by", String(64), nullable=True),
    Column("lease_expires_at", UtcDateTime(), nullable=True),
    Column("last_error", String(MAX_ERROR_LENGTH), nullable=False),
    Column("output", JSON, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("idempotency_key", name="uq_workflow_jobs_idempotency_key"),
    # Step numbers are unique within a run, which keeps "the next step" well defined; the index also serves promotion.
    UniqueConstraint("run_key", "step", name="uq_workflow_jobs_run_step"),
    Index("ix_workflow_jobs_state_run_after", "state", "run_after"),
    Index("ix_workflow_jobs_tenant_booking", "tenant_id", "booking_id"),
)


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


def enqueue_jobs(conn: Connection, jobs: Sequence[JobSpec], *, now: datetime | None = None) -> None:
    """Add steps inside the caller's write transaction: they commit or roll back with it, and stay invisible until then.

    The lowest step of each run in `jobs` becomes available at once unless an earlier step of that run is still
    unfinished in the table (then the whole batch waits for promotion). Keys that already exist are skipped.
    """
    if not jobs:
        return
    moment = now or _utc_now()
    first_step: dict[str, int] = {}
    for spec in jobs:
        first_step[spec.run_key] = min(spec.step, first_step.get(spec.run_key, spec.step))
    blocked = {run_key for run_key, step in first_step.items() if _has_unfinished_step_before(conn, run_key, step)}
    rows = [
        {
            "tenant_id": spec.tenant_id,
            "booking_id": spec.booking_id,
            "run_key": spec.run_key,
            "step": spec.step,
            "kind": spec.kind,
            "idempotency_key": spec.idempotency_key,
            "payload": dict(spec.payload),
            "state": AVAILABLE if spec.step == first_step[spec.run_key] and spec.run_key not in blocked else WAITING,
            "attempts": 0,
            "max_attempts": spec.max_attempts,
            "run_after": spec.run_after or moment,
            "locked_by": None,
            "lease_expires_at": None,
            "last_error": "",
            "output": None,
            "created_at": moment,
            "updated_at": moment,
        }
        for spec in jobs
    ]
    insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(workflow_jobs).on_conflict_do_nothing(index_elements=["idempotency_key"]), rows)


def _has_unfinished_step_before(conn: Connection, run_key: str, step: int) -> bool:
    # FOR UPDATE (PostgreSQL; SQLite is single-writer already) closes a race with a concurrent `complete` of that
    # earlier step: either we wait for its commit and then see it completed, or it waits for ours and its promotion
    # query then sees the steps we add. Without the lock both could miss each other and strand the new steps.
    query = (
        select(workflow_jobs.c.id)
        .where(
            workflow_jobs.c.run_key == run_key,
            workflow_jobs.c.step < step,
            workflow_jobs.c.state.not_in((COMPLETED, CANCELLED)),
        )
        .with_for_update()
    )
    return conn.execute(query).first() is not None


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


def complete_jobs(conn: Connection, results: Sequence[tuple[Job, Mapping[str, Any]]], *, now: datetime) -> set[int]:
    """Mark claimed steps completed with their outputs and promote their runs' next steps, in the caller's transaction.

    Returns the ids that were accepted; a step whose lease was lost (expired and reclaimed, or cancelled) is left
    unchanged. A constant number of statements per batch, not per step: the runner records dozens of outcomes at once.
    """
    accepted = _mark_completed(conn, results, now=now)
    promote_ready_steps(conn, {job.run_key for job, _ in results if job.id in accepted}, now=now)
    return accepted


def complete_jobs_and_claim_next(
    conn: Connection,
    results: Sequence[tuple[Job, Mapping[str, Any]]],
    worker_id: str,
    lease: timedelta,
    *,
    now: datetime,
    other_than: Collection[str] = (),
) -> tuple[set[int], list[Job]]:
    """Like `complete_jobs`, but lease each run's next step straight to `worker_id` instead of making it available.

    The step inherits its predecessor's slot in the worker. That keeps a run moving the moment its previous step
    is done: made available instead, it would queue behind every older due step (its `run_after` is now), so a
    backlog of first steps would run to the end before any second step started. Next steps of the kinds in
    `other_than` are only made available (the runner claims those under their target's budget). Returns the accepted
    ids and the claimed next steps.
    """
    accepted = _mark_completed(conn, results, now=now)
    run_keys = [job.run_key for job, _ in results if job.id in accepted]
    if not run_keys:
        return accepted, []
    parameters: dict[str, Any] = {
        "run_keys": run_keys,
        "now": now,
        "worker_id": worker_id,
        "lease_expires_at": now + lease,
    }
    statement = _PROMOTE_AND_CLAIM
    if other_than:
        statement, parameters["kinds"] = _PROMOTE_AND_CLAIM_OTHER_KINDS, list(other_than)
    claimed = sorted((Job.from_row(row) for row in conn.execute(statement, parameters)), key=lambda job: job.id)
    if other_than:
        promote_ready_steps(conn, run_keys, now=now)
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


def complete_job(conn: Connection, job: Job, output: Mapping[str, Any], *, now: datetime) -> bool:
    """Complete one claimed step (see `complete_jobs`); False, changing nothing, when the lease was lost."""
    return job.id in complete_jobs(conn, [(job, output)], now=now)


def promote_ready_steps(conn: Connection, run_keys: Collection[str], *, now: datetime) -> int:
    """Make each waiting step of these runs available once every earlier step of its run is completed or cancelled.

    Only the lowest waiting step of a run can qualify, so runs advance one step at a time.
    """
    if not run_keys:
        return 0
    return conn.execute(_PROMOTE, {"run_keys": list(run_keys), "now": now}).rowcount


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
    earlier = workflow_jobs.alias("earlier")
    unfinished_before = (
        select(earlier.c.id)
        .where(
            earlier.c.run_key == jobs.run_key,
            earlier.c.step < jobs.step,
            earlier.c.state.not_in((COMPLETED, CANCELLED)),
        )
        .exists()
    )
    ready = (jobs.state == WAITING, jobs.run_key.in_(bindparam("run_keys", expanding=True)), ~unfinished_before)
    # A promoted step is due now, but keeps its enqueue time when that is earlier: claims go oldest first, so a run
    # already under way keeps its place instead of queueing behind every step enqueued since it started. That also
    # holds when its worker dies: the stalled step is reclaimed ahead of the backlog, not after it.
    due_now = case((jobs.run_after < now, jobs.run_after), else_=now)
    promote = update(workflow_jobs).where(*ready).values(state=AVAILABLE, run_after=due_now, updated_at=now)
    promote_and_claim = (
        update(workflow_jobs)
        .where(*ready)
        .values({**_leased(now), "run_after": due_now})
        .returning(*workflow_jobs.columns)
    )
    promote_and_claim_other_kinds = promote_and_claim.where(jobs.kind.not_in(bindparam("kinds", expanding=True)))
    return complete, set_output, promote, promote_and_claim, promote_and_claim_other_kinds


_COMPLETE, _SET_OUTPUT, _PROMOTE, _PROMOTE_AND_CLAIM, _PROMOTE_AND_CLAIM_OTHER_KINDS = _build_complete()


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
) -> bool:
    """Record a failed attempt in the caller's transaction: retryable with backoff, or failed (the dead letter).

    A step fails for good when `retryable` is False (the vendor rejected it) or its `max_attempts` are used up.
    Later steps of the run stay waiting until an operator retries it. Returns False when the lease was lost.
    `progress` (what the attempt got done) is merged into the step's output, which the next attempt reads.
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
    return result.rowcount == 1


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


def dead_letter_stalled_jobs(conn: Connection, *, now: datetime) -> int:
    """Fail running steps whose lease expired after their last allowed attempt (claim no longer picks them up).

    Without this a step that crashes its worker every time would sit in `running` forever.
    """
    jobs = workflow_jobs.c
    return conn.execute(
        update(workflow_jobs)
        .where(jobs.state == RUNNING, jobs.lease_expires_at < now, jobs.attempts >= jobs.max_attempts)
        .values(
            state=FAILED,
            last_error="lease expired on the last attempt (the worker stopped without reporting)",
            locked_by=None,
            lease_expires_at=None,
            updated_at=now,
        )
    ).rowcount


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

    The last error stays visible until the step completes.
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
        return conn.execute(
            update(workflow_jobs)
            .where(
                jobs.tenant_id == tenant_id,
                jobs.run_key == run_key,
                jobs.state.in_((WAITING, AVAILABLE, RETRYABLE, FAILED)),
            )
            .values(state=CANCELLED, updated_at=moment)
        ).rowcount

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
