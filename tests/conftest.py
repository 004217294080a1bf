"""Shared fixtures: real databases (SQLite file, or a fresh PostgreSQL database), the app on a real port, a clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from admin.rollout import apply_plan, plan_changes
from admin.tenant_yaml import load_tenant_file
from app import Overrides, create_app
from settings import Settings
from storage.database import Database

FIXTURES = Path(__file__).parent / "fixtures"
POSTGRES_URL = os.environ.get("SLOTWISE_TEST_POSTGRES_URL")


@dataclass
class FixedClock:
    """A clock the test moves by hand."""

    moment: datetime = field(default_factory=lambda: datetime(2026, 11, 23, 12, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self.moment


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


async def _fresh_postgres(admin_url: str) -> tuple[str, str]:
    name = f"slotwise_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_url.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


async def _drop_postgres(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """The same tests run on SQLite and on PostgreSQL (when SLOTWISE_TEST_POSTGRES_URL is set)."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path}/slotwise.db")
        await db.migrate()
        yield db
        await db.dispose()
        return
    if not POSTGRES_URL:
        pytest.skip(
            "PostgreSQL variant: set SLOTWISE_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/postgres)"
        )
    name, url = await _fresh_postgres(POSTGRES_URL)
    db = Database(url)
    try:
        await db.migrate()
        yield db
    finally:
        await db.dispose()
        await _drop_postgres(POSTGRES_URL, name)


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite:///{tmp_path}/slotwise.db")
    await db.migrate()
    yield db
    await db.dispose()


async def apply_file(database: Database, path: Path) -> None:
    await apply_plan(database, await plan_changes(database, load_tenant_file(path)))


def make_settings(tmp_path: Path, **changes: object) -> Settings:
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path}/unused.db",
        "base_url": "http://testserver",
        "secret_key": "test-secret-key-that-is-long-enough-0123456789",
        "secret_key_file": tmp_path / "secret.key",
        "rate_limit_per_ip_per_minute": 100_000,
        "rate_limit_per_page_per_minute": 100_000,
        "run_workflows": False,
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


async def start_client(
    database: Database, tmp_path: Path, clock: FixedClock, overrides: Overrides | None = None, **settings: object
) -> TestClient:
    base = overrides or Overrides()
    app = create_app(
        make_settings(tmp_path, **settings),
        overrides=Overrides(clock=clock, database=database, ip_limiter=base.ip_limiter, page_limiter=base.page_limiter),
    )
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def tenant_db(database: Database) -> Database:
    """A database (SQLite or PostgreSQL) with the test tenants applied."""
    await apply_file(database, FIXTURES / "tenant.yaml")
    await apply_file(database, FIXTURES / "other_tenant.yaml")
    return database


@pytest.fixture
async def client(tenant_db: Database, tmp_path: Path, clock: FixedClock) -> AsyncIterator[TestClient]:
    test_client = await start_client(tenant_db, tmp_path, clock)
    yield test_client
    await test_client.close()
