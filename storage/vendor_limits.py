"""VendorLimits in PostgreSQL: every app process and worker on one database shares the vendors' limits.

- Concurrency slots are rows (key, slot number) with a lease expiry. Taking one is a single INSERT ... ON CONFLICT
  DO UPDATE that succeeds only on an absent or lapsed row, so two processes never hold the same slot, and a
  SIGKILLed holder's slot is free again once its lease (longer than the request it covers) runs out.
- Sliding windows are a log of (key, at) rows, counted and booked by one PL/pgSQL call (migration 0009) under a
  transaction-scoped advisory lock on the key, with the database's clock.
- The lock (a contact's look-up + create) is a session-level advisory lock on a connection kept for the critical
  section. The create is an HTTP call, so a transaction-scoped lock would keep a transaction open across it; a
  session lock only keeps the connection, in autocommit, and the server frees it the moment the holder's process
  dies (its socket closes), so no lease has to guess how long a vendor takes. Waiters poll `pg_try_advisory_lock`
  and hold no connection between tries. (Needs session pooling: a transaction-mode pgbouncer would break it.)

Every statement runs in autocommit: one round trip each, no BEGIN/COMMIT. Per vendor request that is the
reservation (if the vendor has a window), the slot and its release. They use an engine of their own without
pre-ping, so a pool checkout adds no `SELECT 1`, and vendor waits never queue behind booking transactions.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from scheduling.errors import IntegrationUnavailable
from storage.database import Database, is_database_fault

log = logging.getLogger(__name__)

LOCK_NAMESPACE = 7302
"""First key of the two-key advisory locks taken by `lock` (7301 is the reservation function's)."""

_ACQUIRE = text(
    """
    WITH free AS (
        SELECT s FROM generate_series(0, CAST(:limit AS integer) - 1) AS s
        WHERE NOT EXISTS (
            SELECT 1 FROM vendor_slots v
            WHERE v.key = :key AND v.slot = s AND v.lease_expires_at > clock_timestamp()
        )
        ORDER BY random()
        LIMIT 1
    )
    INSERT INTO vendor_slots (key, slot, holder, lease_expires_at)
    SELECT :key, s, :holder, clock_timestamp() + make_interval(secs => :lease) FROM free
    ON CONFLICT (key, slot) DO UPDATE
        SET holder = excluded.holder, lease_expires_at = excluded.lease_expires_at
        WHERE vendor_slots.lease_expires_at <= clock_timestamp()
    RETURNING slot
    """
)
_RELEASE = text("DELETE FROM vendor_slots WHERE key = :key AND slot = :slot AND holder = :holder")
_RESERVE = text(
    "SELECT slotwise_vendor_reserve(:key, CAST(:windows AS double precision[]), CAST(:counts AS integer[]))"
)
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:space, hashtext(:key))")
_UNLOCK = text("SELECT pg_advisory_unlock(:space, hashtext(:key))")

FIRST_POLL_SECONDS = 0.01
LONGEST_POLL_SECONDS = 0.25


class PostgresVendorLimits:
    """The VendorLimits port on the shared PostgreSQL database (see the module docstring)."""

    def __init__(
        self,
        database: Database,
        *,
        pool_size: int = 4,
        max_overflow: int = 8,
        lock_connections: int = 16,
        lock_wait_seconds: float = 60.0,
    ) -> None:
        if database.is_sqlite:
            raise ValueError("PostgresVendorLimits needs PostgreSQL; one SQLite process counts in memory")
        self._database = database
        self._pool_size = pool_size
        self._max_overflow = max_overflow
        self._lock_connections = lock_connections
        self._lock_wait_seconds = lock_wait_seconds
        self._engine: AsyncEngine | None = None
        self._lock_engine: AsyncEngine | None = None
        # A process holds at most this many contact locks at once; the rest wait here, not for a pool checkout.
        self._lock_holders = asyncio.Semaphore(lock_connections)
        # In front of the database: a process never needs to poll for more slots than the limit, nor for a lock
        # one of its own tasks already holds.
        self._local_slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._local_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._held: dict[str, asyncio.Semaphore] = {}

    @property
    def engine(self) -> AsyncEngine:
        """Built on first use (inside the running loop), not when the composition root creates this object."""
        if self._engine is None:
            self._engine = self._build_engine(self._pool_size, self._max_overflow)
        return self._engine

    @property
    def lock_engine(self) -> AsyncEngine:
        """The connections that hold contact locks, a pool of their own.

        A lock holder keeps its connection across the vendor calls it guards, and those calls need slots. Sharing one
        pool, a burst of holders would take every connection and then wait for a checkout to take a slot: a deadlock
        that only the pool timeout breaks (seen in bench_drain with two workers as minutes of drain).
        """
        if self._lock_engine is None:
            self._lock_engine = self._build_engine(1, self._lock_connections - 1)
        return self._lock_engine

    def _build_engine(self, pool_size: int, max_overflow: int) -> AsyncEngine:
        limits = self._database.limits
        return create_async_engine(
            self._database.url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=limits.pool_timeout_seconds,
            isolation_level="AUTOCOMMIT",
            connect_args={
                "timeout": limits.connect_timeout_seconds,
                "command_timeout": limits.statement_timeout_seconds,
                "server_settings": {"statement_timeout": str(int(limits.statement_timeout_seconds * 1000))},
            },
        )

    async def aclose(self) -> None:
        for engine in (self._engine, self._lock_engine):
            if engine is not None:
                await engine.dispose()
        self._engine = self._lock_engine = None

    async def acquire_slot(self, key: str, limit: int, lease_seconds: float) -> str:
        local = self._local_slots.get((key, limit))
        if local is None:
            local = self._local_slots[(key, limit)] = asyncio.Semaphore(limit)
        await local.acquire()
        try:
            token = await self._acquire_shared(key, limit, lease_seconds)
        except BaseException:
            local.release()
            raise
        self._held[token] = local
        return token

    async def _acquire_shared(self, key: str, limit: int, lease_seconds: float) -> str:
        holder = uuid.uuid4().hex
        params = {"key": key, "limit": limit, "holder": holder, "lease": float(lease_seconds)}
        pause = FIRST_POLL_SECONDS
        # Another process's slot frees when its request ends, or at the latest when its lease runs out.
        deadline = asyncio.get_running_loop().time() + 2 * lease_seconds
        while True:
            slot = await self._scalar(_ACQUIRE, params, "take a vendor concurrency slot")
            if slot is not None:
                return f"{int(slot)}|{holder}|{key}"
            if asyncio.get_running_loop().time() > deadline:
                raise IntegrationUnavailable(
                    "Holding back: every concurrent request slot for this vendor is busy", retry_after_seconds=5.0
                )
            await asyncio.sleep(pause * random.uniform(0.5, 1.5))  # noqa: S311 (jitter, not security)
            pause = min(pause * 1.5, LONGEST_POLL_SECONDS)

    async def release_slot(self, token: str) -> None:
        local = self._held.pop(token, None)
        if local is None:
            return
        slot, holder, key = token.split("|", 2)
        try:
            await self._scalar(_RELEASE, {"key": key, "slot": int(slot), "holder": holder}, "release a slot")
        except IntegrationUnavailable:
            # The lease frees it in the database; what matters to the caller is the answer it already has.
            log.warning("could not release vendor slot %s of %s; its lease will free it", slot, key[:80])
        finally:
            local.release()

    async def reserve(self, key: str, windows: Sequence[tuple[float, int]]) -> float:
        params = {
            "key": key,
            "windows": [float(window) for window, _count in windows],
            "counts": [int(count) for _window, count in windows],
        }
        wait = await self._scalar(_RESERVE, params, "count a vendor request budget")
        return max(0.0, float(wait or 0.0))

    @asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        folded = key.casefold()
        local = self._local_locks.get(folded)
        if local is None:
            local = self._local_locks[folded] = asyncio.Lock()
        async with local, self._lock_holders:
            conn = await self._take_lock(folded)
            try:
                yield
            finally:
                await self._give_back_lock(conn, folded)

    async def _take_lock(self, folded: str) -> AsyncConnection:
        params = {"space": LOCK_NAMESPACE, "key": folded}
        deadline = asyncio.get_running_loop().time() + self._lock_wait_seconds
        pause = FIRST_POLL_SECONDS
        while True:
            conn: AsyncConnection | None = None
            try:
                conn = await self.lock_engine.connect()
                taken = (await conn.execute(_TRY_LOCK, params)).scalar()
            except Exception as exc:
                if conn is not None:
                    await _discard(conn)
                if is_database_fault(exc):
                    raise _unavailable(exc, "take a contact lock") from exc
                raise
            except BaseException:
                if conn is not None:
                    await _discard(conn)
                raise
            if taken:
                return conn
            await conn.close()
            if asyncio.get_running_loop().time() > deadline:
                raise IntegrationUnavailable(
                    "Another Slotwise process is still creating this contact; trying again later",
                    retry_after_seconds=10.0,
                )
            await asyncio.sleep(pause * random.uniform(0.5, 1.5))  # noqa: S311 (jitter, not security)
            pause = min(pause * 1.5, LONGEST_POLL_SECONDS)

    async def _give_back_lock(self, conn: AsyncConnection, folded: str) -> None:
        try:
            await conn.execute(_UNLOCK, {"space": LOCK_NAMESPACE, "key": folded})
        except BaseException:
            # A connection that may still hold the lock must never go back to the pool: closing it for good is
            # what releases the lock on the server.
            await _discard(conn)
            raise
        await conn.close()

    async def _scalar(self, statement: Any, params: dict[str, Any], what: str) -> Any:
        try:
            async with self.engine.connect() as conn:
                result = await conn.execute(statement, params)
                return result.scalar() if result.returns_rows else None
        except Exception as exc:
            if is_database_fault(exc):
                raise _unavailable(exc, what) from exc
            raise


async def _discard(conn: AsyncConnection) -> None:
    try:
        await conn.invalidate()
        await conn.close()
    except Exception:  # noqa: S110 (already failing; the server drops the session with the socket)
        pass


def _unavailable(exc: Exception, what: str) -> IntegrationUnavailable:
    return IntegrationUnavailable(f"Could not {what}: the database is unavailable ({type(exc).__name__})")
