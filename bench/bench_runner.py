"""Workflow runner overhead: no-op steps per second through Runner against a raw claim loop on the same database
(run: .venv/bin/python bench/bench_runner.py; set SLOTWISE_TEST_POSTGRES_URL to add a fresh PostgreSQL database).

The baseline is the least a database queue can do per batch: one plain-SQL claim statement (UPDATE ... RETURNING *,
with FOR UPDATE SKIP LOCKED on PostgreSQL; every worker must read the claimed rows' payloads) in one transaction, then
one executemany marking the batch completed in a second, with the same batch size as the runner's concurrency, and
raw driver rows instead of typed objects. The runner adds typed jobs, handler tasks with timeouts, the lease
compare-and-set, step promotion and outcome bookkeeping. Goal G4 (reference/perf_reliability.md §5.3): ratio >= 0.5.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from storage.database import Database
from storage.tables import UtcDateTime, tenants
from workflows.outbox import Job, JobSpec, enqueue_jobs
from workflows.runner import Runner

TENANT = "bench-tenant"
BATCH = 50
ROUNDS = 3
JOBS = {"sqlite": 3_000, "postgresql": 3_000}
SQLITE_CLAIM = (
    "UPDATE workflow_jobs SET state = 'running', locked_by = :worker, lease_expires_at = :lease_until, "
    "attempts = attempts + 1, updated_at = :now WHERE id IN (SELECT id FROM workflow_jobs "
    "WHERE state IN ('available', 'retryable') AND run_after <= :now ORDER BY run_after, id LIMIT :limit) "
    "RETURNING *"
)
POSTGRES_CLAIM = (
    "UPDATE workflow_jobs SET state = 'running', locked_by = :worker, lease_expires_at = :lease_until, "
    "attempts = attempts + 1, updated_at = :now WHERE id IN (SELECT id FROM workflow_jobs "
    "WHERE state IN ('available', 'retryable') AND run_after <= :now ORDER BY run_after, id LIMIT :limit "
    "FOR UPDATE SKIP LOCKED) RETURNING *"
)


def now() -> datetime:
    return datetime.now(UTC)


async def enqueue_round(database: Database, label: str, count: int) -> None:
    specs = [
        JobSpec(
            tenant_id=TENANT,
            booking_id=None,
            run_key=f"{label}:{index}",
            step=0,
            kind="noop",
            idempotency_key=f"{label}:{index}:noop",
        )
        for index in range(count)
    ]
    await database.run_write(lambda conn: enqueue_jobs(conn, specs))


async def drain_with_runner(database: Database, label: str, count: int) -> float:
    await enqueue_round(database, label, count)

    async def noop(job: Job) -> Mapping[str, Any]:
        return {}

    runner = Runner(database, {"noop": noop}, worker_id=f"runner-{label}", concurrency=BATCH)
    started = time.perf_counter()
    handled = await runner.run_until_idle()
    elapsed = time.perf_counter() - started
    assert handled == count, (handled, count)
    return count / elapsed


async def drain_with_raw_loop(database: Database, label: str, count: int) -> float:
    await enqueue_round(database, label, count)
    claim_sql = text(SQLITE_CLAIM if database.is_sqlite else POSTGRES_CLAIM).bindparams(
        bindparam("now", type_=UtcDateTime()), bindparam("lease_until", type_=UtcDateTime())
    )
    complete_sql = text(
        "UPDATE workflow_jobs SET state = 'completed', output = '{}', locked_by = NULL, lease_expires_at = NULL, "
        "updated_at = :now WHERE id = :id"
    ).bindparams(bindparam("now", type_=UtcDateTime()))

    def claim(conn: Connection) -> list[int]:
        moment = now()
        parameters = {"worker": "raw", "lease_until": moment + timedelta(seconds=30), "now": moment, "limit": BATCH}
        return [row[0] for row in conn.execute(claim_sql, parameters)]

    done = 0
    started = time.perf_counter()
    while True:
        ids = await database.run_write(claim)
        if not ids:
            break
        completions = [{"id": id_, "now": now()} for id_ in ids]

        def complete(conn: Connection, completions: list[dict[str, Any]] = completions) -> None:
            conn.execute(complete_sql, completions)

        await database.run_write(complete)
        done += len(ids)
    elapsed = time.perf_counter() - started
    assert done == count, (done, count)
    return count / elapsed


async def bench(database: Database, name: str) -> float:
    await database.migrate()
    await database.run_write(
        lambda conn: conn.execute(
            tenants.insert().values(id=TENANT, slug=TENANT, name="Bench", default_time_zone="UTC", holidays=[])
        )
    )
    count = JOBS[name]
    await drain_with_raw_loop(database, "warm-raw", 200)
    await drain_with_runner(database, "warm-runner", 200)
    raw_rates: list[float] = []
    runner_rates: list[float] = []
    # Interleaved rounds, so drift in the machine or the table's size hits both sides alike.
    for round_ in range(ROUNDS):
        raw_rates.append(await drain_with_raw_loop(database, f"raw-{round_}", count))
        runner_rates.append(await drain_with_runner(database, f"runner-{round_}", count))
    raw = statistics.median(raw_rates)
    runner = statistics.median(runner_rates)
    ratio = runner / raw
    print(
        f"{name:>10}: {count} no-op steps x {ROUNDS} rounds, batch {BATCH}: raw claim loop {raw:,.0f} jobs/s, "
        f"Runner {runner:,.0f} jobs/s, ratio {ratio:.2f} (target >= 0.5) {'OK' if ratio >= 0.5 else 'MISSED'}",
        flush=True,
    )
    return ratio


async def fresh_postgres(admin_url: str) -> tuple[str, str]:
    name = f"slotwise_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, f"{admin_url.rsplit('/', 1)[0]}/{name}"


async def drop_postgres(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def main() -> int:
    ratios: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        database = Database(f"sqlite:///{directory}/bench.db")
        try:
            ratios.append(await bench(database, "sqlite"))
        finally:
            await database.dispose()
    admin_url = os.environ.get("SLOTWISE_TEST_POSTGRES_URL")
    if admin_url:
        admin_url = admin_url.replace("postgresql+asyncpg://", "postgresql://")
        name, url = await fresh_postgres(admin_url)
        database = Database(url)
        try:
            ratios.append(await bench(database, "postgresql"))
        finally:
            await database.dispose()
            await drop_postgres(admin_url, name)
    else:
        print("postgresql: skipped (set SLOTWISE_TEST_POSTGRES_URL)")
    return 0 if min(ratios) >= 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
