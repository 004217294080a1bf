"""The async engine, write transactions that cannot double book, and Alembic upgrades."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")


def normalise_url(url: str) -> str:
    """Accept plain sqlite:/// and postgresql:// URLs and pick the async drivers we ship."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


@dataclass(frozen=True)
class PoolLimits:
    """How many connections one process may hold, and how long any wait on the database may last.

    Every wait is bounded so that a database that refuses, stalls or is out of connections costs a request a few
    seconds and a 503, never a hang or a 500 (see is_database_fault)."""

    pool_size: int = 5
    max_overflow: int = 5
    pool_timeout_seconds: float = 5.0
    connect_timeout_seconds: float = 5.0
    statement_timeout_seconds: float = 10.0


class DatabaseUnavailable(Exception):
    """The database could not be reached, answered too slowly, or had no connection to spare."""


def is_database_fault(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the database is unreachable, slow or full, rather than that our query
    or the client's input was wrong. Those answer 503 with Retry-After; anything else stays a bug to see."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DatabaseUnavailable | ConnectionError | TimeoutError | socket.gaierror):
            return True
        if isinstance(current, sa_exc.TimeoutError | sa_exc.OperationalError | sa_exc.InterfaceError):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        name = type(current).__name__
        # asyncpg's own classes, without importing the driver here: refused or lost connections, "too many clients",
        # a server starting up or shutting down, and a statement cancelled by statement_timeout.
        if name in _ASYNCPG_FAULTS:
            return True
        current = current.__cause__ or current.__context__
    return False


_ASYNCPG_FAULTS = frozenset(
    {
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "InterfaceError",
        "TooManyConnectionsError",
        "CannotConnectNowError",
        "QueryCanceledError",
        "AdminShutdownError",
        "CrashShutdownError",
    }
)


class Database:
    """Owns the engine. `write()` is the only way to change rows, so every write is serialised correctly."""

    def __init__(self, url: str, *, echo: bool = False, limits: PoolLimits | None = None) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.limits = limits = limits or PoolLimits()
        if self.is_sqlite:
            path = self.url.split(":///", 1)[1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(
                self.url, echo=echo, connect_args={"timeout": 30}, pool_size=8, max_overflow=16
            )
            _configure_sqlite(self.engine.sync_engine)
            # Hot write transactions run as one synchronous function on a plain sqlite3 connection in a worker
            # thread: one thread hop per booking instead of one per statement (see run_write).
            self._sync_engine: Engine | None = create_engine(
                "sqlite:///" + self.url.split(":///", 1)[1],
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=4,
                max_overflow=4,
            )
            _configure_sqlite(self._sync_engine)
        else:
            self.engine = create_async_engine(
                self.url,
                echo=echo,
                pool_size=limits.pool_size,
                max_overflow=limits.max_overflow,
                pool_timeout=limits.pool_timeout_seconds,
                pool_pre_ping=True,
                connect_args={
                    # asyncpg: `timeout` bounds connecting, `command_timeout` every statement on the client side (a
                    # stalled network), and the server's statement_timeout a statement stuck on a lock.
                    "timeout": limits.connect_timeout_seconds,
                    "command_timeout": limits.statement_timeout_seconds,
                    "server_settings": {"statement_timeout": str(int(limits.statement_timeout_seconds * 1000))},
                },
            )
            self._sync_engine = None
        # One process writes to SQLite at a time anyway; queueing writers here rather than in SQLite's busy
        # handler keeps latency fair and never surfaces SQLITE_BUSY. Other processes are held off by
        # BEGIN IMMEDIATE plus the busy timeout.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: BEGIN IMMEDIATE on SQLite (write lock before the first read), BEGIN on PostgreSQL."""
        if self._write_lock is not None:
            async with self._write_lock, self.engine.connect() as conn:
                conn = await conn.execution_options(slotwise_immediate=True)
                async with conn.begin():
                    yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` as one write transaction and return its result; an exception rolls everything back.

        SQLite: under the process's write lock, BEGIN IMMEDIATE, in a worker thread. PostgreSQL: on the async
        engine through run_sync. Either way `work` sees a plain synchronous Connection.
        """
        if self._write_lock is not None and self._sync_engine is not None:
            sync_engine = self._sync_engine

            def run() -> T:
                with sync_engine.connect() as conn:
                    immediate = conn.execution_options(slotwise_immediate=True)
                    with immediate.begin():
                        return work(immediate)

            async with self._write_lock:
                return await asyncio.to_thread(run)
        async with self.engine.begin() as conn:
            return await conn.run_sync(work)

    async def run_read(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on a read connection in one go (one thread hop on SQLite) and return its result."""
        if self._sync_engine is not None:
            sync_engine = self._sync_engine

            def run() -> T:
                with sync_engine.connect() as conn:
                    return work(conn)

            return await asyncio.to_thread(run)
        async with self.engine.connect() as conn:
            return await conn.run_sync(work)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._sync_engine is not None:
            self._sync_engine.dispose()

    async def ping(self) -> None:
        from sqlalchemy import text

        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def migrate(self) -> None:
        """Upgrade the schema to the newest Alembic revision, keeping every row."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so we can issue BEGIN IMMEDIATE ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("slotwise_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_to(database: Database, revision: str) -> None:
    """Upgrade to a specific revision (tests use it to build an older schema before `migrate`)."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with database.engine.begin() as conn:
        await conn.run_sync(run)
