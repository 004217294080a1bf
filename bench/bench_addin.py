"""Outlook add-in benchmarks (run: .venv/bin/python bench/bench_addin.py; exit 0 when the target holds, 1 when missed).

1. `POST /addin/api/suggested-times` for a rep with 2,000 calendar events over 60 days, against `GET
   /book/{tenant}/{type}/slots` for that rep's type over the same window (what suggested times searches: the next
   `BookingDeps.search_days` days) and a bare aiohttp handler answering the same JSON, all three over real HTTP in this
   run. The app runs in-process on a loopback socket; every add-in call carries an Entra v2 access token signed
   against a local JWKS (tests/fakes/bot_identity.py), so the cost of validating it is part of what is measured.
   The requests are interleaved round by round, so drift on a shared, noisy machine hits all three alike.
   Two variants: "warm" (a fixed clock: the scheduler's slot cache answers, like bench_pages.py) and "recomputed"
   (the clock moves a minute per request, so both routes compute their slots afresh every time, as in production
   where `now` moves). Target: suggested-times p50 <= 1.5x the slots p50, in both.
2. Task pane first load: bytes shipped (HTML, JS, CSS and MSAL.js as the pane requests them, excluding Office.js),
   uncompressed and gzipped, and time to interactive in Debian Chromium via Playwright, the median of 5 loads, each in
   a fresh browser context (empty cache). Interactive means: the type list is rendered and its Insert link button is
   enabled, stamped in the page by a MutationObserver (performance.now(), from navigation start). Office.js is the
   recording stand-in of tests/fakes/office_js/; the real MSAL.js is served by Slotwise and executed, and only its
   token acquisition is answered by the MSAL stand-in (a plain browser has no Outlook NAA bridge nor Entra ID).
   No target: the figures are printed.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from addin.routes import BookingDeps
from admin.rollout import apply_plan, plan_changes
from admin.tenant_yaml import load_tenant_file
from app import Overrides, create_app
from settings import Settings
from storage.database import Database
from storage.repositories import SqlBookingStore
from storage.tables import users
from tests.fakes.bot_identity import FakeBotIdentity, SigningKey, generate_rsa_key, mint

EVENTS = 2_000
DAYS = 60
SEARCH_DAYS: int = next(item.default for item in fields(BookingDeps) if item.name == "search_days")  # type: ignore[assignment]
ROUNDS = 300
WARM_UP = 10
TARGET_RATIO = 1.5
PANE_LOADS = 5
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
API_CLIENT_ID = "6f1d2c3b-4a59-4e68-8d7c-0b1a2f3e4d5c"
MICROSOFT_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
REP_OBJECT_ID = "11111111-aaaa-4aaa-8aaa-000000000001"
BASE_URL = "https://slotwise.bench"
OFFICE_JS_URL = "https://office-js.test/lib/1/hosted/office.js"
STAND_INS = Path(__file__).resolve().parent.parent / "tests" / "fakes" / "office_js"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()


@dataclass
class BenchClock:
    """Fixed by default; `ticking` moves it a minute per reading, so no two requests share a slot-cache key."""

    moment: datetime = NOW
    ticking: bool = False

    def now(self) -> datetime:
        if self.ticking:
            self.moment += timedelta(minutes=1)
        return self.moment


def tenant_document() -> dict[str, Any]:
    week = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
    return {
        "tenant": {
            "slug": "bench",
            "name": "Bench",
            "time_zone": "America/Chicago",
            "holidays": [],
            "microsoft_tenant_id": MICROSOFT_TENANT,
        },
        "users": [
            {
                "slug": "dana",
                "name": "Dana Diaz",
                "email": "dana@bench.example",
                "aad_object_id": REP_OBJECT_ID,
                "time_zone": "America/Chicago",
                "primary_calendar": "m365",
                "working_hours": week,
            }
        ],
        "appointment_types": [
            {
                "slug": "discovery",
                "name": "Discovery call",
                "duration": 30,
                "increment": 15,
                "minimum_notice": "0 minutes",
                "maximum_window": f"{DAYS} days",
                "location": {"kind": "teams"},
                "host": {"user": "dana"},
            }
        ],
    }


async def prepare(folder: Path) -> Database:
    """The tenant, and the rep's 2,000 calendar events stored as the calendar sync stores them (busy_cache)."""
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(tenant_document()))
    database = Database(f"sqlite:///{folder}/bench.db")
    await database.migrate()
    await apply_plan(database, await plan_changes(database, load_tenant_file(path)))
    async with database.read() as conn:
        user_id, tenant_id = (await conn.execute(users.select().with_only_columns(users.c.id, users.c.tenant_id))).one()
    rng = random.Random(11)
    events = []
    for _ in range(EVENTS):
        start = NOW + timedelta(minutes=15 * rng.randrange(0, DAYS * 96))
        events.append((start, start + timedelta(minutes=rng.choice((15, 30, 60, 90))), "busy"))
    await SqlBookingStore(database).replace_external_busy(tenant_id, user_id, "m365", events)
    return database


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def access_token(key: SigningKey) -> str:
    """A delegated Entra v2 access token for the add-in API, as nested app authentication obtains it."""
    moment = int(time.time())
    return mint(
        key,
        {
            "aud": API_CLIENT_ID,
            "iss": f"https://login.microsoftonline.com/{MICROSOFT_TENANT}/v2.0",
            "iat": moment - 5,
            "nbf": moment - 5,
            "exp": moment + 3600,
            "tid": MICROSOFT_TENANT,
            "oid": REP_OBJECT_ID,
            "ver": "2.0",
            "azp": API_CLIENT_ID,
            "scp": "access_as_user",
            "name": "Dana Diaz",
            "preferred_username": "dana@bench.example",
        },
    )


@dataclass
class Slotwise:
    url: str
    token: str
    clock: BenchClock
    close: Callable[[], Awaitable[None]]


async def start_slotwise(database: Database, folder: Path) -> Slotwise:
    identity = FakeBotIdentity()
    key = identity.add_tenant_key("common", "bench-key", private_key=generate_rsa_key())
    keys, keys_url = await serve(identity.build_app())
    clock = BenchClock()
    settings = Settings(
        database_url="sqlite:///unused",
        base_url=BASE_URL,
        secret_key="bench-secret-0123456789-abcdefghij",  # type: ignore[arg-type]
        secret_key_file=folder / "k",
        rate_limit_per_ip_per_minute=10**9,
        rate_limit_per_page_per_minute=10**9,
        run_workflows=False,
        addin_client_id=API_CLIENT_ID,
        addin_openid_metadata_url=f"{keys_url}/common/v2.0/.well-known/openid-configuration",
        office_js_url=OFFICE_JS_URL,
    )
    ours, ours_url = await serve(create_app(settings, overrides=Overrides(clock=clock, database=database)))

    async def close() -> None:
        await ours.cleanup()
        await keys.cleanup()

    return Slotwise(ours_url, access_token(key), clock, close)


@dataclass
class Probe:
    """One kind of request, and its timings in milliseconds."""

    label: str
    send: Callable[[aiohttp.ClientSession], Awaitable[bytes]]
    samples: list[float] = field(default_factory=list)

    def p50(self) -> float:
        return statistics.median(self.samples)

    def p95(self) -> float:
        return statistics.quantiles(self.samples, n=20)[-1]


async def fetch(response_context: Any, expected: int = 200) -> bytes:
    async with response_context as response:
        body: bytes = await response.read()
        if response.status != expected:
            raise RuntimeError(f"{response.url} answered {response.status}: {body[:300]!r}")
        return body


async def run_rounds(session: aiohttp.ClientSession, probes: list[Probe], rounds: int) -> None:
    """Every round times each probe once, in an order that rotates, so no probe always goes first."""
    for probe in probes:
        for _ in range(WARM_UP):
            await probe.send(session)
    for number in range(rounds):
        order = probes[number % len(probes) :] + probes[: number % len(probes)]
        for probe in order:
            started = time.perf_counter()
            await probe.send(session)
            probe.samples.append((time.perf_counter() - started) * 1000)


async def bench_suggested_times(slotwise: Slotwise, *, ticking: bool) -> bool:
    headers = {"Authorization": f"Bearer {slotwise.token}"}
    async with aiohttp.ClientSession() as session:
        types = json.loads(await fetch(session.get(f"{slotwise.url}/addin/api/appointment-types", headers=headers)))
        request = {
            "type_id": types["types"][0]["id"],
            "count": 3,
            "time_zone": "GMT Standard Time",
            "recipient": {"name": "Jane Client", "email": "jane@client.example"},
        }
        slotwise.clock.moment, slotwise.clock.ticking = NOW, False
        answer = json.loads(
            await fetch(session.post(f"{slotwise.url}/addin/api/suggested-times", json=request, headers=headers))
        )
        if len(answer["times"]) != 3:
            raise RuntimeError(f"expected 3 suggested times, got {answer['times']}")
        # The window suggested times searches, now to now + search_days (Monday 12:00 UTC, 06:00 in Chicago), as the
        # whole days in the rep's zone the booking page asks for: the same working hours, so the same slots.
        first = NOW.date()
        last = (NOW + timedelta(days=SEARCH_DAYS - 1)).date()
        slots_path = f"/book/bench/discovery/slots?start={first}&end={last}&tz=America/Chicago"
        slots = json.loads(await fetch(session.get(slotwise.url + slots_path)))
        offered = [datetime.fromisoformat(item["start"]) for item in slots["slots"][:3]]
        suggested_starts = [datetime.fromisoformat(item["starts_at"]) for item in answer["times"]]
        if offered != suggested_starts:
            raise RuntimeError(f"the two routes disagree: slots {offered}, suggested times {suggested_starts}")

        async def bare(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response(answer)

        bare_app = web.Application()
        bare_app.router.add_post("/suggested-times", bare)
        baseline, bare_url = await serve(bare_app)
        probes = [
            Probe(
                "suggested",
                lambda s: fetch(s.post(f"{slotwise.url}/addin/api/suggested-times", json=request, headers=headers)),
            ),
            Probe("slots", lambda s: fetch(s.get(slotwise.url + slots_path))),
            Probe("bare", lambda s: fetch(s.post(f"{bare_url}/suggested-times", json=request))),
            Probe("me", lambda s: fetch(s.get(f"{slotwise.url}/addin/api/me", headers=headers))),
        ]
        slotwise.clock.ticking = ticking
        try:
            await run_rounds(session, probes, ROUNDS)
        finally:
            slotwise.clock.ticking = False
            await baseline.cleanup()
    suggested, listed, bare_probe, me = probes
    ratio = suggested.p50() / listed.p50()
    ok = ratio <= TARGET_RATIO
    variant = (
        "recomputed (the clock moves a minute per request: slots computed afresh)"
        if ticking
        else "warm (fixed clock: the slot cache answers)"
    )
    print(f"  {variant}, {ROUNDS} interleaved rounds")
    print(
        f"    bare aiohttp json_response (same JSON):  p50 {bare_probe.p50():6.2f} ms  p95 {bare_probe.p95():6.2f} ms"
    )
    print(
        f"    GET slots ({len(slots['slots'])} slots, {SEARCH_DAYS} days):          "
        f"p50 {listed.p50():6.2f} ms  p95 {listed.p95():6.2f} ms"
    )
    print(f"    POST suggested-times (3 times):          p50 {suggested.p50():6.2f} ms  p95 {suggested.p95():6.2f} ms")
    print(
        f"    GET /addin/api/me (token check and rep look-up only, for attribution):  "
        f"p50 {me.p50():6.2f} ms  p95 {me.p95():6.2f} ms"
    )
    print(
        f"    suggested-times / bare:  p50 {suggested.p50() / bare_probe.p50():.2f}x  "
        f"p95 {suggested.p95() / bare_probe.p95():.2f}x"
    )
    print(
        f"    slots / bare:            p50 {listed.p50() / bare_probe.p50():.2f}x  "
        f"p95 {listed.p95() / bare_probe.p95():.2f}x"
    )
    print(
        f"    suggested-times / slots: p50 {ratio:.2f}x  p95 {suggested.p95() / listed.p95():.2f}x   "
        f"target p50 <= {TARGET_RATIO}x   {'OK' if ok else 'MISSED'}"
    )
    return ok


# ---------------------------------------------------------------- task pane first load

INTERACTIVE_PROBE = """
(() => {
  // Interactive: the type list is shown and its first Insert link button can be clicked.
  const ready = () => {
    const section = document.getElementById("types-section");
    const button = document.querySelector('#types button[aria-label^="Insert link to"]');
    return Boolean(section && !section.hidden && button && !button.disabled && button.isConnected);
  };
  const observer = new MutationObserver(() => {
    if (window.__interactiveAt === undefined && ready()) {
      window.__interactiveAt = performance.now();
      observer.disconnect();
    }
  });
  observer.observe(document, { subtree: true, childList: true, attributes: true });
})();
"""

REAL_MSAL_THEN_STAND_IN = """
(() => {
  // The MSAL stand-in (defined just above) answers token requests; the real library, served by Slotwise, still
  // downloads and runs, and what it exports is kept aside as window.__realMsal to prove it did.
  const standIn = window.msal;
  Object.defineProperty(window, "msal", {
    configurable: true,
    get: () => standIn,
    set: (value) => { window.__realMsal = value; },
  });
})();
"""


async def bench_task_pane(slotwise: Slotwise) -> None:
    if not HAVE_CHROMIUM:
        print("  task pane: skipped: Debian chromium is not installed (scripts/test installs it with apt-get)")
        return
    from playwright.async_api import Route, async_playwright, expect

    office_js = (STAND_INS / "office.js").read_text()
    msal_stand_in = (STAND_INS / "msal.js").read_text()
    setup = (
        "window.__officeStandIn = {bodyType: 'html', body: '<p>Hi Jane,</p>'};"
        f"window.__msalStandIn = {json.dumps({'token': slotwise.token})};"
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )

        async def load() -> tuple[float, dict[str, tuple[str, bytes, str | None]], dict[str, float]]:
            context = await browser.new_context(viewport={"width": 360, "height": 700})
            await context.add_init_script(setup + msal_stand_in + REAL_MSAL_THEN_STAND_IN + INTERACTIVE_PROBE)

            async def office(route: Route) -> None:
                await route.fulfill(body=office_js, content_type="text/javascript")

            await context.route(OFFICE_JS_URL, office)
            page = await context.new_page()
            responses: list[Any] = []
            page.on("response", lambda response: responses.append(response))
            await page.goto(f"{slotwise.url}/addin/taskpane.html")
            await expect(page.get_by_role("button", name="Insert link to Discovery call")).to_be_enabled()
            interactive = float(await page.evaluate("window.__interactiveAt"))
            real_msal = await page.evaluate(
                "typeof (window.__realMsal || {}).createNestablePublicClientApplication === 'function'"
            )
            if not real_msal:
                raise RuntimeError("the real MSAL.js did not load from Slotwise: run scripts/bootstrap")
            await page.wait_for_load_state("load")
            timing = await page.evaluate(
                "(() => { const n = performance.getEntriesByType('navigation')[0];"
                " return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd}; })()"
            )
            shipped: dict[str, tuple[str, bytes, str | None]] = {}
            for response in responses:
                kind = response.request.resource_type
                if response.url.startswith(slotwise.url) and kind in ("document", "script", "stylesheet"):
                    body = await response.body()
                    shipped[response.url.removeprefix(slotwise.url)] = (
                        kind,
                        body,
                        response.headers.get("content-encoding"),
                    )
            await context.close()
            return interactive, shipped, timing

        await load()  # starts Chromium's renderer machinery once; each measured load has a fresh, empty cache
        loads = [await load() for _ in range(PANE_LOADS)]
        await browser.close()

    shipped = loads[0][1]
    print("  task pane first load (bytes as the pane requests them, Office.js excluded; gzip level 6)")
    total_raw = total_gzip = 0
    for path, (kind, body, encoding) in sorted(shipped.items(), key=lambda item: item[0]):
        packed = len(gzip.compress(body, compresslevel=6))
        total_raw += len(body)
        total_gzip += packed
        sent = f"  (served with Content-Encoding: {encoding})" if encoding else ""
        print(f"    {kind:<10} {path:<40} {len(body):>9,} B  gzip {packed:>8,} B{sent}")
    print(f"    {'total':<51} {total_raw:>9,} B  gzip {total_gzip:>8,} B")
    if not any(encoding for _, _, encoding in shipped.values()):
        print("    (Slotwise sent them uncompressed; the gzip column is what a compressing proxy in front would send)")
    interactive = [entry[0] for entry in loads]
    loaded = [entry[2]["load"] for entry in loads]
    print(
        f"    time to interactive (types listed, Insert link enabled), {PANE_LOADS} cold loads: median "
        f"{statistics.median(interactive):.0f} ms  (min {min(interactive):.0f}, max {max(interactive):.0f}); "
        f"load event median {statistics.median(loaded):.0f} ms"
    )


async def main() -> int:
    with tempfile.TemporaryDirectory() as raw:
        folder = Path(raw)
        database = await prepare(folder)
        slotwise = await start_slotwise(database, folder)
        try:
            print(
                f"POST /addin/api/suggested-times vs GET slots, one rep, {EVENTS:,} calendar events over {DAYS} days "
                f"(searching the next {SEARCH_DAYS} days)"
            )
            verdicts = [await bench_suggested_times(slotwise, ticking=ticking) for ticking in (False, True)]
            print("Outlook task pane")
            await bench_task_pane(slotwise)
        finally:
            await slotwise.close()
            await database.dispose()
    if all(verdicts):
        return 0
    print("MISSED: suggested-times p50 is above the target ratio to the slots request")
    return 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
