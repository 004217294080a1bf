"""HTTP benchmarks: GET PATH/slots for a 20-person round robin, and booking throughput, each against a bare
aiohttp baseline measured in the same run (run: .venv/bin/python bench/bench_pages.py), and the booking page's warm
server time against the same page served by an earlier commit in the same run (`--against REV`, default
BASELINE_COMMIT: the commit issue #12 was filed against; target <= 2x)."""

from __future__ import annotations

import asyncio
import json
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from admin.rollout import apply_plan, plan_changes
from admin.tenant_yaml import load_tenant_file
from app import Overrides, create_app
from settings import Settings
from storage.database import Database
from storage.repositories import SqlBookingStore
from storage.tables import users

MEMBERS = 20
BUSY = 10_000
DAYS = 60
ZONES = ["America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London", "Asia/Kolkata"]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return NOW


def tenant_document() -> dict[str, Any]:
    week = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
    people = [
        {
            "slug": f"rep{i}",
            "name": f"Rep {i}",
            "email": f"rep{i}@bench.example",
            "time_zone": ZONES[i % len(ZONES)],
            "primary_calendar": "m365",
            "working_hours": week,
        }
        for i in range(MEMBERS)
    ]
    return {
        "tenant": {"slug": "bench", "name": "Bench", "time_zone": "UTC", "holidays": []},
        "users": people,
        "teams": [{"slug": "sales", "name": "Sales", "members": [p["slug"] for p in people], "managers": []}],
        "appointment_types": [
            {
                "slug": "rr",
                "name": "Round robin",
                "duration": 30,
                "increment": 15,
                "minimum_notice": "0 minutes",
                "maximum_window": f"{DAYS} days",
                "location": {"kind": "teams"},
                "host": {"team": "sales", "mode": "round_robin"},
            }
        ],
    }


async def prepare(folder: Path) -> Database:
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(tenant_document()))
    database = Database(f"sqlite:///{folder}/bench.db")
    await database.migrate()
    await apply_plan(database, await plan_changes(database, load_tenant_file(path)))
    rng = random.Random(7)
    async with database.read() as conn:
        ids = [row[0] for row in await conn.execute(users.select().with_only_columns(users.c.id))]
        tenant_id = (await conn.execute(users.select().with_only_columns(users.c.tenant_id).limit(1))).scalar_one()
    per_user: dict[str, list[tuple[datetime, datetime, str]]] = {user_id: [] for user_id in ids}
    for _ in range(BUSY):
        start = NOW + timedelta(minutes=15 * rng.randrange(0, DAYS * 96))
        per_user[rng.choice(ids)].append((start, start + timedelta(minutes=rng.choice((15, 30, 60, 90))), "busy"))
    store = SqlBookingStore(database)
    for user_id, intervals in per_user.items():
        await store.replace_external_busy(tenant_id, user_id, "m365", intervals)
    return database


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def time_gets(session: aiohttp.ClientSession, url: str, runs: int) -> list[float]:
    for _ in range(5):
        async with session.get(url) as response:
            await response.read()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        async with session.get(url) as response:
            await response.read()
            assert response.status == 200
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


async def bench_slots(database: Database, folder: Path) -> None:
    settings = Settings(
        database_url="sqlite:///unused", secret_key="bench-secret-0123456789-abcdefghij", secret_key_file=folder / "k"
    )  # type: ignore[arg-type]
    ours, ours_url = await serve(create_app(settings, overrides=Overrides(clock=FixedClock(), database=database)))
    path = f"/book/bench/rr/slots?start=2026-11-23&end={(NOW + timedelta(days=DAYS - 1)).date()}&tz=UTC"
    async with aiohttp.ClientSession() as session:
        async with session.get(ours_url + path) as response:
            payload = await response.json()
        # Baseline: a bare handler answering the same JSON with web.json_response (what "return this JSON" costs).
        # The floor: the same JSON already encoded, no work per request at all. Both are reported.
        encoded = json.dumps(payload).encode()

        async def bare(_request: web.Request) -> web.Response:
            return web.json_response(payload)

        async def floor(_request: web.Request) -> web.Response:
            return web.Response(body=encoded, content_type="application/json")

        bare_app = web.Application()
        bare_app.router.add_get("/slots", bare)
        bare_app.router.add_get("/floor", floor)
        baseline, bare_url = await serve(bare_app)
        bare_samples = await time_gets(session, bare_url + "/slots", 60)
        floor_samples = await time_gets(session, bare_url + "/floor", 60)
        our_samples = await time_gets(session, ours_url + path, 60)
        await baseline.cleanup()
    await ours.cleanup()
    (bare_median, bare_p95), (our_median, our_p95) = summary(bare_samples), summary(our_samples)
    floor_median, floor_p95 = summary(floor_samples)
    print(
        f"GET PATH/slots, {MEMBERS}-person round robin, {DAYS} days, {BUSY} busy intervals, {len(payload['slots'])} slots"
    )
    print(f"  bare aiohttp json_response (same JSON): median {bare_median:.2f} ms  p95 {bare_p95:.2f} ms")
    print(f"  bare pre-encoded bytes (floor):         median {floor_median:.2f} ms  p95 {floor_p95:.2f} ms")
    print(f"  slotwise (warm caches):                 median {our_median:.2f} ms  p95 {our_p95:.2f} ms")
    print(
        f"  ratio vs json_response: median {our_median / bare_median:.2f}x  p95 {our_p95 / bare_p95:.2f}x   target <= 3x"
    )
    print(f"  ratio vs pre-encoded floor: median {our_median / floor_median:.2f}x  p95 {our_p95 / floor_p95:.2f}x")


PAGE_WEIGHT_LIMIT = 60 * 1024
BASELINE_COMMIT = "9e01cd6"
"""The code base as it was when the page redesign (issue #12) was asked for: its booking page is the baseline."""
ROOT = Path(__file__).resolve().parent.parent

# Run in a child process with an earlier commit's tree first on sys.path: that commit's own bench_pages.prepare
# builds the same tenant and busy times on its own schema, and its app serves the page under the same fixed clock.
_OLD_SERVER = """
import asyncio, sys, tempfile
from pathlib import Path
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/bench"]
import bench_pages as old
from app import Overrides, create_app
from settings import Settings

async def main():
    with tempfile.TemporaryDirectory() as raw:
        folder = Path(raw)
        database = await old.prepare(folder)
        settings = Settings(
            database_url="sqlite:///unused", secret_key="bench-secret-0123456789-abcdefghij", secret_key_file=folder / "k"
        )
        runner, url = await old.serve(create_app(settings, overrides=Overrides(clock=old.FixedClock(), database=database)))
        print(url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await runner.cleanup()

asyncio.run(main())
"""


async def bench_page(database: Database, folder: Path) -> None:
    """The booking page as a browser first loads it: HTML + CSS + JS bytes (uncompressed, no images) against the
    60 KB budget, that its first times are in the HTML (no JavaScript needed), and warm server time per view."""
    settings = Settings(
        database_url="sqlite:///unused", secret_key="bench-secret-0123456789-abcdefghij", secret_key_file=folder / "k"
    )  # type: ignore[arg-type]
    ours, ours_url = await serve(create_app(settings, overrides=Overrides(clock=FixedClock(), database=database)))
    page = "/book/bench/rr?tz=America/New_York"
    async with aiohttp.ClientSession(headers={"Accept-Language": "en-US,en;q=0.9"}) as session:
        async with session.get(ours_url + page) as response:
            html = await response.text()
        assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', html)
        sizes = {"html": len(html.encode())}
        for asset in assets:
            async with session.get(ours_url + asset) as response:
                sizes[asset] = len(await response.read())
        samples = await time_gets(session, ours_url + page, 60)
    await ours.cleanup()
    total = sum(sizes.values())
    median, p95 = summary(samples)
    first_times = len(re.findall(r'class="slot[ "]', html))
    print(f"GET {page} (booking page, {MEMBERS}-person round robin)")
    print("  weight: " + ", ".join(f"{name} {size / 1024:.1f} KB" for name, size in sizes.items()))
    print(f"  total {total / 1024:.1f} KB   limit {PAGE_WEIGHT_LIMIT / 1024:.0f} KB   times in the HTML: {first_times}")
    print(f"  warm server time: median {median:.2f} ms  p95 {p95:.2f} ms")


async def bench_page_against(database: Database, folder: Path, revision: str) -> None:
    """Warm server time of the booking page, ours against `revision`'s, sampled in turns in this one run."""
    tree = folder / "baseline"
    tree.mkdir()
    archive = await asyncio.create_subprocess_exec(
        "git", "-C", str(ROOT), "archive", revision, stdout=asyncio.subprocess.PIPE
    )
    tar = await asyncio.create_subprocess_exec("tar", "-x", "-C", str(tree), stdin=asyncio.subprocess.PIPE)
    assert archive.stdout is not None
    assert tar.stdin is not None
    tar.stdin.write(await archive.stdout.read())
    tar.stdin.close()
    if await archive.wait() or await tar.wait():
        raise RuntimeError(f"could not check out {revision}")
    old = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _OLD_SERVER,
        str(tree),
        cwd=tree,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert old.stdout is not None
    assert old.stdin is not None
    old_url = (await old.stdout.readline()).decode().strip()
    if not old_url.startswith("http"):
        raise RuntimeError(f"{revision}'s server did not start")
    settings = Settings(
        database_url="sqlite:///unused", secret_key="bench-secret-0123456789-abcdefghij", secret_key_file=folder / "k"
    )  # type: ignore[arg-type]
    ours, ours_url = await serve(create_app(settings, overrides=Overrides(clock=FixedClock(), database=database)))
    page = "/book/bench/rr?tz=America/New_York"
    ours_samples: list[float] = []
    old_samples: list[float] = []
    try:
        async with aiohttp.ClientSession(headers={"Accept-Language": "en-US,en;q=0.9"}) as session:
            for _ in range(6):  # alternate short batches, so machine noise falls on both alike
                ours_samples += await time_gets(session, ours_url + page, 10)
                old_samples += await time_gets(session, old_url + page, 10)
    finally:
        await ours.cleanup()
        old.stdin.write(b"\n")
        await old.stdin.drain()
        await old.wait()
    ours_median, ours_p95 = summary(ours_samples)
    old_median, old_p95 = summary(old_samples)
    ratio = ours_median / old_median
    print(f"GET {page}: this commit against {revision} (the page before the redesign), in turns, same run")
    print(f"  {revision}: median {old_median:.2f} ms  p95 {old_p95:.2f} ms")
    print(f"  this commit: median {ours_median:.2f} ms  p95 {ours_p95:.2f} ms")
    print(f"  ratio: {ratio:.2f}x   target <= 2x   {'OK' if ratio <= 2 else 'MISSED'}")


async def bench_booking_throughput(folder: Path) -> None:
    database = Database(f"sqlite:///{folder}/throughput.db")
    await database.migrate()
    path = folder / "t.yaml"
    document = tenant_document()
    document["appointment_types"][0]["host"] = {"user": "rep0"}
    document["users"][0]["time_zone"] = "UTC"
    document["users"][0]["working_hours"] = {
        d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    }
    path.write_text(yaml.safe_dump(document))
    await apply_plan(database, await plan_changes(database, load_tenant_file(path)))
    settings = Settings(  # type: ignore[arg-type]
        database_url="sqlite:///unused",
        secret_key="bench-secret-0123456789-abcdefghij",
        secret_key_file=folder / "k",
        rate_limit_per_ip_per_minute=10**9,
        rate_limit_per_page_per_minute=10**9,
    )
    ours, ours_url = await serve(create_app(settings, overrides=Overrides(clock=FixedClock(), database=database)))

    bare_db = Database(f"sqlite:///{folder}/bare.db")
    async with bare_db.write() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))

    async def bare(request: web.Request) -> web.Response:
        body = await request.json()
        async with bare_db.write() as conn:
            await conn.execute(text("INSERT INTO t (body) VALUES (:b)"), {"b": json.dumps(body)})
        return web.json_response({"ok": True}, status=201)

    bare_app = web.Application()
    bare_app.router.add_post("/bookings", bare)
    baseline, bare_url = await serve(bare_app)
    count, concurrency = 300, 8

    async def run(url: str, make_body: Any) -> float:
        queue = list(range(count))
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                while queue:
                    index = queue.pop()
                    async with session.post(url, json=make_body(index)) as response:
                        await response.read()
                        assert response.status == 201, await response.text()

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return count / (time.perf_counter() - started)

    def booking(index: int) -> dict[str, Any]:
        start = NOW + timedelta(hours=2) + timedelta(minutes=30 * index)
        return {"start": start.isoformat(), "name": f"Client {index}", "email": f"c{index}@x.test", "time_zone": "UTC"}

    bare_rate = await run(bare_url + "/bookings", booking)
    our_rate = await run(ours_url + "/book/bench/rr/bookings", booking)
    await ours.cleanup()
    await baseline.cleanup()
    await bare_db.dispose()
    await database.dispose()
    print(f"Booking throughput, {count} distinct slots, {concurrency} concurrent clients (SQLite)")
    print(f"  bare aiohttp INSERT+commit: {bare_rate:.0f} req/s")
    print(f"  slotwise POST bookings:     {our_rate:.0f} bookings/s")
    print(f"  ratio: {our_rate / bare_rate:.2f}x   target >= 0.5x")


async def main(against: str) -> None:
    with tempfile.TemporaryDirectory() as raw:
        folder = Path(raw)
        database = await prepare(folder)
        await bench_slots(database, folder)
        await bench_page(database, folder)
        await bench_page_against(database, folder, against)
        await database.dispose()
        await bench_booking_throughput(folder)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    revision = arguments[arguments.index("--against") + 1] if "--against" in arguments else BASELINE_COMMIT
    asyncio.run(main(revision))
