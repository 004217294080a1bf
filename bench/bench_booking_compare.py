"""Booking throughput of two commits in the same run: a baseline commit (a git worktree) against the working tree.

Rounds alternate between the two trees so both meet the same machine noise. Each round books 300 distinct slots of
one host with 8 concurrent clients over real HTTP (SQLite, and PostgreSQL when SLOTWISE_TEST_POSTGRES_URL is set),
plus a bare aiohttp INSERT+commit baseline measured in the same process, and prints bookings/s.

Run: .venv/bin/python bench/bench_booking_compare.py [--baseline REV] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs inside one tree (sys.path[0] is that tree), so it uses only APIs both commits share.
WORKER = r"""
import asyncio, json, sys, tempfile, time, uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, sys.argv[1])
import aiohttp, asyncpg, yaml
from aiohttp import web
from sqlalchemy import text
from admin.rollout import apply_plan, plan_changes
try:
    from admin.tenant_yaml import load_tenant_file
except ImportError:  # commits from before the tenant file's reader moved out of admin/rollout.py
    from admin.rollout import load_tenant_file
from app import Overrides, create_app
from settings import Settings
from storage.database import Database

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
COUNT, CONCURRENCY = 300, 8


class Clock:
    def now(self):
        return NOW


async def fresh_url(kind, folder, admin):
    if kind == "sqlite":
        return f"sqlite:///{folder}/b.db", None
    name = "slotwise_bench_" + uuid.uuid4().hex[:10]
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return admin.rsplit("/", 1)[0] + "/" + name, name


async def serve(app):
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def rate(url, make_body):
    queue = list(range(COUNT))
    async with aiohttp.ClientSession() as session:
        async def worker():
            while queue:
                index = queue.pop()
                async with session.post(url, json=make_body(index)) as response:
                    await response.read()
                    assert response.status == 201, await response.text()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return COUNT / (time.perf_counter() - started)


async def main(kind, admin):
    with tempfile.TemporaryDirectory() as raw:
        folder = Path(raw)
        url, name = await fresh_url(kind, folder, admin)
        database = Database(url)
        try:
            await database.migrate()
            everyday = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
            document = {
                "tenant": {"slug": "bench", "name": "Bench", "time_zone": "UTC", "holidays": []},
                "users": [{"slug": "rep0", "name": "Rep", "email": "rep0@bench.example", "time_zone": "UTC",
                           "primary_calendar": "m365", "working_hours": everyday}],
                "appointment_types": [{"slug": "rr", "name": "Call", "duration": 30, "increment": 15,
                                       "buffer_after": 0, "minimum_notice": "0 minutes",
                                       "maximum_window": "60 days", "location": {"kind": "teams"},
                                       "host": {"user": "rep0"}}],
            }
            (folder / "t.yaml").write_text(yaml.safe_dump(document))
            await apply_plan(database, await plan_changes(database, load_tenant_file(folder / "t.yaml")))
            settings = Settings(database_url="sqlite:///unused", secret_key="bench-secret-0123456789-abcdefghij",
                                secret_key_file=folder / "k", rate_limit_per_ip_per_minute=10**9,
                                rate_limit_per_page_per_minute=10**9, run_workflows=False)
            ours, ours_url = await serve(create_app(settings, overrides=Overrides(clock=Clock(), database=database)))

            async def bare(request):
                body = await request.json()
                async with database.write() as conn:
                    await conn.execute(text("INSERT INTO bare_bench (body) VALUES (:b)"), {"b": json.dumps(body)})
                return web.json_response({"ok": True}, status=201)

            async with database.write() as conn:
                await conn.execute(text("CREATE TABLE bare_bench (id SERIAL PRIMARY KEY, body TEXT)"
                                        if kind == "postgres" else
                                        "CREATE TABLE bare_bench (id INTEGER PRIMARY KEY, body TEXT)"))
            bare_app = web.Application()
            bare_app.router.add_post("/bookings", bare)
            baseline, bare_url = await serve(bare_app)

            def booking(index):
                start = NOW + timedelta(hours=2) + timedelta(minutes=30 * index)
                return {"start": start.isoformat(), "name": f"Client {index}", "email": f"c{index}@x.test",
                        "time_zone": "UTC"}

            bare_rate = await rate(bare_url + "/bookings", booking)
            our_rate = await rate(ours_url + "/book/bench/rr/bookings", booking)
            await ours.cleanup()
            await baseline.cleanup()
            print(json.dumps({"bare": bare_rate, "ours": our_rate}))
        finally:
            await database.dispose()
            if name:
                conn = await asyncpg.connect(admin)
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await conn.close()


asyncio.run(main(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""))
"""


def run_round(tree: Path, kind: str, admin: str, script: Path) -> dict[str, float]:
    result = subprocess.run(  # noqa: S603 (our own benchmark program)
        [str(ROOT / ".venv/bin/python"), str(script), str(tree), kind, admin],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(tree)},
    )
    if result.returncode != 0:
        raise SystemExit(f"benchmark round failed in {tree}:\n{result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", default="9e01cd6", help="the commit to compare against (default: 9e01cd6)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    admin = os.environ.get("SLOTWISE_TEST_POSTGRES_URL", "")
    kinds = ["sqlite", *(["postgres"] if admin else [])]
    with tempfile.TemporaryDirectory(prefix="slotwise-bench-") as raw:
        baseline = Path(raw) / "baseline"
        subprocess.run(  # noqa: S603
            ["git", "worktree", "add", "--detach", str(baseline), args.baseline],  # noqa: S607
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        script = Path(raw) / "worker.py"
        script.write_text(WORKER)
        try:
            for kind in kinds:
                samples: dict[str, list[dict[str, float]]] = {"baseline": [], "current": []}
                for _ in range(args.rounds):
                    for label, tree in (("baseline", baseline), ("current", ROOT)):
                        samples[label].append(run_round(tree, kind, admin, script))
                sys.stdout.write(
                    f"Booking throughput, 300 distinct slots of one host, 8 clients ({kind}), "
                    f"{args.rounds} interleaved rounds\n"
                )
                medians = {}
                for label, rounds in samples.items():
                    ours = statistics.median(sample["ours"] for sample in rounds)
                    bare = statistics.median(sample["bare"] for sample in rounds)
                    medians[label] = ours
                    each = ", ".join(f"{sample['ours']:.0f}" for sample in rounds)
                    sys.stdout.write(
                        f"  {label:<8} {ours:7.0f} bookings/s   bare INSERT {bare:7.0f} req/s"
                        f"   ratio {ours / bare:.2f}x   rounds: {each}\n"
                    )
                sys.stdout.write(f"  current / baseline: {medians['current'] / medians['baseline']:.2f}x\n")
        finally:
            subprocess.run(  # noqa: S603
                ["git", "worktree", "remove", "--force", str(baseline)],  # noqa: S607
                cwd=ROOT,
                check=False,
                capture_output=True,
            )


if __name__ == "__main__":
    main()
