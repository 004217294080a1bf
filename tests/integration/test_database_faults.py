"""Database trouble answers 503 with Retry-After within the configured time, and Slotwise recovers without a restart.

A TCP proxy sits between Slotwise and PostgreSQL: it refuses connections (the database is down), or accepts them and
never answers (a stalled network). Connections are exhausted with a dedicated role that has a CONNECTION LIMIT, never
the shared server's own limit. `serve` and `worker` facing a dead database print one clear line and exit non-zero,
or wait with --wait-for-db.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from app import Overrides, create_app
from storage.database import Database, PoolLimits
from tests.conftest import (
    FIXTURES,
    POSTGRES_URL,
    FixedClock,
    _drop_postgres,
    _fresh_postgres,
    apply_file,
    make_settings,
)
from tests.fakes.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]
PAGE = "/book/acme/intro-call"
FAST = PoolLimits(
    pool_size=2, max_overflow=0, pool_timeout_seconds=1.0, connect_timeout_seconds=1.0, statement_timeout_seconds=1.0
)

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="PostgreSQL fault tests: set SLOTWISE_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/postgres)",
)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh database with the test tenants, as a plain postgresql:// URL."""
    name, url = await _fresh_postgres(POSTGRES_URL)
    database = Database(url)
    try:
        await database.migrate()
        await apply_file(database, FIXTURES / "tenant.yaml")
        await database.dispose()
        yield url
    finally:
        await database.dispose()
        await _drop_postgres(POSTGRES_URL, name)


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    tcp = TcpProxy.in_front_of(postgres_url)
    await tcp.start()
    yield tcp
    await tcp.close()


async def start(database: Database, tmp_path: Path, clock: FixedClock) -> TestClient:
    app = create_app(make_settings(tmp_path), overrides=Overrides(clock=clock, database=database))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def timed_get(client: TestClient, path: str, **kwargs: object) -> tuple[int, float, str, dict[str, str]]:
    started = time.monotonic()
    response = await client.get(path, **kwargs)  # type: ignore[arg-type]
    text = await response.text()
    return response.status, time.monotonic() - started, text, dict(response.headers)


async def eventually_ok(client: TestClient, path: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while (await client.get(path)).status != 200:
        assert time.monotonic() < deadline, f"{path} did not recover"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("fault", ["refuse", "stall"])
async def test_a_database_that_refuses_or_stalls_gets_a_503_in_bounded_time_and_recovery_needs_no_restart(
    fault: str, proxy: TcpProxy, postgres_url: str, tmp_path: Path, clock: FixedClock
) -> None:
    database = Database(proxy.url_for(postgres_url), limits=FAST)
    client = await start(database, tmp_path, clock)
    try:
        assert (await client.get(PAGE)).status == 200
        if fault == "refuse":
            await proxy.refuse()
        else:
            proxy.stall()
        # The configured waits are 1 s each (connect, statement, pool); a request may meet two of them.
        for path, wants_json in ((PAGE, False), (f"{PAGE}/slots?start=2026-11-24&end=2026-11-24&tz=UTC", True)):
            status, elapsed, text, headers = await timed_get(client, path)
            assert status == 503, (path, status, text[:300])
            assert elapsed < 5, f"{path} took {elapsed:.1f} s"
            assert headers["Retry-After"] == "30"
            assert "database" in text
            assert ("service_unavailable" in text) == wants_json
        booking = await client.post(
            f"{PAGE}/bookings",
            json={"start": "2026-11-24T15:00:00+00:00", "name": "D", "email": "d@x.test", "answers": {"company": "C"}},
        )
        assert booking.status == 503
        assert (await booking.json())["error"]["code"] == "service_unavailable"
        status, elapsed, _text, _headers = await timed_get(client, "/readyz")
        assert status == 503
        assert elapsed < 5
        await proxy.restore()
        await eventually_ok(client, "/readyz")
        await eventually_ok(client, PAGE)
        booked = await client.post(
            f"{PAGE}/bookings",
            json={"start": "2026-11-24T15:00:00+00:00", "name": "D", "email": "d@x.test", "answers": {"company": "C"}},
        )
        assert booked.status == 201, await booked.text()
    finally:
        await client.close()
        await database.dispose()


async def test_a_role_out_of_connections_gets_503s_never_500s(
    postgres_url: str, tmp_path: Path, clock: FixedClock
) -> None:
    role = f"slotwise_limited_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_url)
    database_name = postgres_url.rsplit("/", 1)[1]
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'limited' CONNECTION LIMIT 2")
        await admin.execute(f'GRANT ALL PRIVILEGES ON DATABASE "{database_name}" TO {role}')
        await admin.execute(f"GRANT ALL ON SCHEMA public TO {role}")
        await admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        await admin.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
        base = postgres_url.split("://", 1)[1].split("@", 1)[1]
        limited_url = f"postgresql://{role}:limited@{base}"
        # The pool may open 6 connections, the role only 2: the third connect is refused with "too many".
        database = Database(
            limited_url,
            limits=PoolLimits(
                pool_size=6,
                max_overflow=0,
                pool_timeout_seconds=1.0,
                connect_timeout_seconds=1.0,
                statement_timeout_seconds=2.0,
            ),
        )
        client = await start(database, tmp_path, clock)
        # Start-up left a connection in our pool; hand it back, then let two sessions of the role elsewhere (another
        # process of the same deployment) take both of the role's connections.
        await database.engine.dispose()
        hogs = [await asyncpg.connect(limited_url) for _ in range(2)]
        try:
            paths = [f"{PAGE}/slots?start=2026-11-{day:02d}&end=2026-11-{day:02d}&tz=UTC" for day in range(23, 29)]
            answers = await asyncio.gather(*(client.get(path) for path in paths * 3))
            statuses = Counter(response.status for response in answers)
            assert set(statuses) <= {200, 503}, statuses
            assert statuses[503] > 0, statuses
            for hog in hogs:
                await hog.close()
            hogs = []
            await eventually_ok(client, paths[0])
        finally:
            for hog in hogs:
                await hog.close()
            await client.close()
            await database.dispose()
    finally:
        await admin.execute(f'REVOKE ALL PRIVILEGES ON DATABASE "{database_name}" FROM {role}')
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


def run_command(args: list[str], url: str, tmp_path: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLOTWISE_DATABASE_URL": url, "SLOTWISE_SECRET_KEY": "x" * 40}
    env["SLOTWISE_DATABASE_CONNECT_TIMEOUT_SECONDS"] = "1"
    return subprocess.run(  # noqa: S603 (our own entry point)
        [sys.executable, str(ROOT / "app.py"), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"]])
async def test_serve_and_worker_facing_a_dead_database_say_so_in_one_line_and_exit_non_zero(
    command: list[str], proxy: TcpProxy, postgres_url: str, tmp_path: Path
) -> None:
    await proxy.refuse()
    url = proxy.url_for(postgres_url)
    result = await asyncio.to_thread(run_command, command, url, tmp_path)
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "cannot reach the database" in lines[0]
    assert "--wait-for-db" in lines[0]
    assert "Traceback" not in result.stderr


async def test_serve_with_wait_for_db_starts_once_the_database_answers(
    proxy: TcpProxy, postgres_url: str, tmp_path: Path
) -> None:
    # The port is chosen while the proxy still listens, so the kernel cannot hand out the proxy's own port.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await proxy.refuse()
    env = {
        **os.environ,
        "SLOTWISE_DATABASE_URL": proxy.url_for(postgres_url),
        "SLOTWISE_SECRET_KEY": "x" * 40,
        "SLOTWISE_DATABASE_CONNECT_TIMEOUT_SECONDS": "1",
        "SLOTWISE_RUN_WORKFLOWS": "false",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "app.py"),
        "serve",
        "--port",
        str(port),
        "--wait-for-db",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    lines: list[str] = []

    async def read_stderr() -> None:
        assert process.stderr is not None
        async for raw in process.stderr:
            lines.append(raw.decode(errors="replace"))

    reader = asyncio.create_task(read_stderr())
    try:
        # Restored only once serve has said it is waiting (its imports alone can take seconds on a busy machine).
        deadline = time.monotonic() + 60
        while not any("waiting for the database" in line for line in lines):
            assert process.returncode is None, "serve gave up instead of waiting:\n" + "".join(lines)[-3000:]
            assert time.monotonic() < deadline, "serve never said it was waiting:\n" + "".join(lines)[-3000:]
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        assert process.returncode is None, "serve gave up instead of waiting"
        await proxy.restore()
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "serve never came up after the database did"
                await asyncio.sleep(0.3)
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=20)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError("serve did not stop on SIGTERM:\n" + "".join(lines)[-3000:]) from None
        finally:
            await asyncio.wait_for(reader, timeout=10)
    assert process.returncode == 0 or process.returncode == -15, "".join(lines)[-3000:]
