"""Runner lag (due -> claimed) under a steady load on PostgreSQL with two worker processes, against the raw claim
loop's lag under the same load in the same run (run: .venv/bin/python bench/bench_runner_lag.py --postgres URL).

A producer books at a steady rate (50 bookings/s by default, each booking a run of three independent no-op steps due
at once) for a fixed time (60 s), first while two raw claim-loop processes drain the table, then while two processes
run the real `Runner` (leases, heartbeats, dependency settling, outcome bookkeeping). Each process measures, for
every step it claims, how long after its due time it was claimed; the parent prints p50/p95/p99 of both and the p99
ratio. Target (issue #10): Runner p99 <= 2x raw p99.

Both sides poll an empty queue at the same interval (`--poll`, default 1 s, the Runner's default), so the ratio shows
what the Runner adds on top of the claim, not a different polling choice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

import asyncpg
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from storage.database import Database
from storage.tables import UtcDateTime, tenants
from workflows.outbox import Job, JobSpec, enqueue_jobs
from workflows.runner import Runner

TENANT = "lag-tenant"
STEPS_PER_BOOKING = 3
BATCH = 20
TARGET = 2.0
CLAIM = (
    "UPDATE workflow_jobs SET state = 'running', locked_by = :worker, lease_expires_at = :lease_until, "
    "attempts = attempts + 1, updated_at = :now WHERE id IN (SELECT id FROM workflow_jobs "
    "WHERE state IN ('available', 'retryable') AND run_after <= :now ORDER BY run_after, id LIMIT :limit "
    "FOR UPDATE SKIP LOCKED) RETURNING id, run_after"
)
COMPLETE = (
    "UPDATE workflow_jobs SET state = 'completed', output = '{}', locked_by = NULL, lease_expires_at = NULL, "
    "updated_at = :now WHERE id = :id"
)


def now() -> datetime:
    return datetime.now(UTC)


async def raw_worker(database: Database, name: str, poll: float, stop: asyncio.Event, lags: list[float]) -> None:
    """The least a worker can do: claim a batch (one statement), complete it (one executemany), repeat; sleep
    `poll` when nothing is due."""
    claim_sql = text(CLAIM).bindparams(
        bindparam("now", type_=UtcDateTime()), bindparam("lease_until", type_=UtcDateTime())
    )
    complete_sql = text(COMPLETE).bindparams(bindparam("now", type_=UtcDateTime()))

    def claim(conn: Connection) -> list[tuple[int, datetime]]:
        moment = now()
        parameters = {"worker": name, "lease_until": moment + timedelta(seconds=30), "now": moment, "limit": BATCH}
        return [(int(row[0]), row[1]) for row in conn.execute(claim_sql, parameters)]

    while not stop.is_set():
        rows = await database.run_write(claim)
        claimed = now()
        if not rows:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll)
            continue
        lags.extend((claimed - due.replace(tzinfo=due.tzinfo or UTC)).total_seconds() for _, due in rows)
        completions = [{"id": job_id, "now": now()} for job_id, _ in rows]

        def complete(conn: Connection, completions: list[dict[str, Any]] = completions) -> None:
            conn.execute(complete_sql, completions)

        await database.run_write(complete)


async def runner_worker(database: Database, name: str, poll: float, stop: asyncio.Event, lags: list[float]) -> None:
    async def noop(job: Job) -> Mapping[str, Any]:
        # The handler starts the moment its batch is claimed; the claim's own time is when the lease began.
        lags.append((now() - job.run_after).total_seconds())
        return {}

    runner = Runner(database, {"noop": noop}, worker_id=name, concurrency=BATCH, poll_interval=timedelta(seconds=poll))
    await runner.run_forever(stop)


async def worker_main(url: str, kind: str, name: str, poll: float) -> None:
    """A worker process: drain until SIGTERM, then print every lag it measured as one JSON line."""
    database = Database(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    lags: list[float] = []
    work = raw_worker if kind == "raw" else runner_worker
    print("ready", flush=True)
    await work(database, name, poll, stop, lags)
    await database.dispose()
    print(json.dumps(lags), flush=True)


async def produce(database: Database, label: str, rate: float, seconds: float) -> int:
    """Book at `rate` per second for `seconds`, on a fixed schedule (a late tick books at once, never skips)."""
    started = time.perf_counter()
    count = 0
    while (elapsed := time.perf_counter() - started) < seconds:
        target = count / rate
        if target > elapsed:
            await asyncio.sleep(target - elapsed)
        specs = [
            JobSpec(
                tenant_id=TENANT,
                booking_id=f"{label}-{count}",
                run_key=f"{label}-{count}:client_scheduled:1",
                step=step,
                kind="noop",
                idempotency_key=f"{label}-{count}:{step}",
                depends_on=(),
            )
            for step in range(STEPS_PER_BOOKING)
        ]
        await database.run_write(lambda conn, specs=specs: enqueue_jobs(conn, specs))
        count += 1
    return count


async def phase(url: str, database: Database, kind: str, args: argparse.Namespace) -> list[float]:
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            kind,
            "--url",
            url,
            "--name",
            f"{kind}-{index}",
            "--poll",
            str(args.poll),
            stdout=asyncio.subprocess.PIPE,
        )
        for index in range(args.workers)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert (await worker.stdout.readline()).strip() == b"ready"
    booked = await produce(database, kind, args.rate, args.seconds)
    # Let the last bookings drain before stopping.
    await asyncio.sleep(args.poll + 2)
    lags: list[float] = []
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.stdout is not None
        lags += json.loads((await worker.stdout.readline()).decode())
        await worker.wait()
    if len(lags) != booked * STEPS_PER_BOOKING:
        raise SystemExit(f"{kind}: claimed {len(lags)} steps of {booked * STEPS_PER_BOOKING}")
    return lags


def percentiles(lags: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(lags, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


async def main(args: argparse.Namespace) -> int:
    admin = args.postgres
    name = f"slotwise_lag_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = f"{admin.rsplit('/', 1)[0]}/{name}"
    database = Database(url)
    try:
        await database.migrate()
        await database.run_write(
            lambda conn: conn.execute(
                tenants.insert().values(id=TENANT, slug=TENANT, name="Lag", default_time_zone="UTC", holidays=[])
            )
        )
        raw = await phase(url, database, "raw", args)
        runner = await phase(url, database, "runner", args)
    finally:
        await database.dispose()
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
    print(
        f"Runner lag (due -> claimed): {args.rate:g} bookings/s x {STEPS_PER_BOOKING} steps for {args.seconds:g} s, "
        f"{args.workers} worker processes, PostgreSQL, poll {args.poll:g} s, batch {BATCH}"
    )
    for label, lags in (("raw claim loop", raw), ("Runner", runner)):
        p50, p95, p99 = percentiles(lags)
        print(
            f"  {label:>14}: {len(lags)} steps  p50 {p50 * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms"
        )
    ratio = percentiles(runner)[2] / max(percentiles(raw)[2], 1e-6)
    verdict = "OK" if ratio <= TARGET else "MISSED"
    print(f"  p99 ratio Runner / raw: {ratio:.2f}x   target <= {TARGET:g}x   {verdict}")
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", help="admin URL, e.g. postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rate", type=float, default=50.0, help="bookings per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long each phase books")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between polls of an empty queue")
    parser.add_argument("--worker", choices=["raw", "runner"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    arguments.postgres = arguments.postgres or os.environ.get("SLOTWISE_TEST_POSTGRES_URL")
    if arguments.worker:
        asyncio.run(worker_main(arguments.url, arguments.worker, arguments.name, arguments.poll))
    elif not arguments.postgres:
        # run_all.py runs every benchmark without arguments: skip, saying why, rather than fail.
        print("bench_runner_lag: skipped: give --postgres URL or set SLOTWISE_TEST_POSTGRES_URL (PostgreSQL only)")
    else:
        raise SystemExit(asyncio.run(main(arguments)))
