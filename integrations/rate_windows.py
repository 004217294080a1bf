"""Send budgets counted on our side: at most N requests per sliding window, per key (a chat, a vendor database), and
the in-memory VendorLimits (slots, windows, locks) for a deployment of one process."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from integrations.keyed_locks import KeyedLocks
from scheduling.ports import VendorLimits

SWEEP_EVERY = 1024
"""Every this many reservations, keys idle for longer than the longest window are forgotten."""


class SlidingWindows:
    """Several (window seconds, count) limits at once; `reserve` books a request now or says how long to wait.

    `margin` widens every window: our clock starts when a request leaves, the vendor's when it arrives, so a first
    request slower on the wire than a later one would otherwise let the vendor count one more inside its window.
    """

    def __init__(
        self,
        limits: Sequence[tuple[float, int]],
        clock: Callable[[], float] = time.monotonic,
        margin: float = 0.0,
    ) -> None:
        self._limits = tuple((window + margin, count) for window, count in limits)
        self._longest = max(window for window, _count in self._limits)
        self._clock = clock
        self._sent: dict[str, list[float]] = {}
        self._calls = 0

    def __len__(self) -> int:
        """Keys currently tracked."""
        return len(self._sent)

    def reserve(self, key: str) -> float:
        """0.0 if a request was booked now, else the seconds until one would be allowed (nothing is booked)."""
        now = self._clock()
        self._calls += 1
        if self._calls % SWEEP_EVERY == 0:
            self._forget_idle(now)
        sent = self._sent.setdefault(key, [])
        # Moments are appended in order, so each window's count is a binary search, not a scan: the Autotask
        # budget keeps up to 10,000 moments per database.
        expired = bisect.bisect_right(sent, now - self._longest)
        if expired:
            del sent[:expired]
        wait = 0.0
        for window, count in self._limits:
            inside = len(sent) - bisect.bisect_right(sent, now - window)
            if inside >= count:
                wait = max(wait, sent[len(sent) - count] + window - now)
        if wait > 0:
            return wait
        sent.append(now)
        return 0.0

    def _forget_idle(self, now: float) -> None:
        """Drop keys with nothing inside the longest window: a bot talks to thousands of chats a day, most once."""
        idle = [key for key, sent in self._sent.items() if not sent or sent[-1] <= now - self._longest]
        for key in idle:
            del self._sent[key]


Windows = tuple[tuple[float, int], ...]


class InMemoryVendorLimits:
    """VendorLimits for one process (SQLite deployments, tests): semaphores, SlidingWindows and asyncio locks.

    Nothing here is seen by another process; on PostgreSQL the composition root uses storage's database-backed
    implementation instead. `windows` may be shared between instances (the Autotask hourly quota outlives the
    client objects that are rebuilt when a connection changes)."""

    def __init__(
        self,
        windows: dict[tuple[str, Windows], SlidingWindows] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._windows: dict[tuple[str, Windows], SlidingWindows] = {} if windows is None else windows
        self._clock = clock
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._held: dict[str, asyncio.Semaphore] = {}
        self._tokens = itertools.count(1)
        self._locks = KeyedLocks()

    async def acquire_slot(self, key: str, limit: int, lease_seconds: float) -> str:
        # One process cannot die and leave a slot behind, so the lease is not needed here.
        slot = self._slots.get((key, limit))
        if slot is None:
            slot = self._slots[(key, limit)] = asyncio.Semaphore(limit)
        await slot.acquire()
        token = f"{key}#{next(self._tokens)}"
        self._held[token] = slot
        return token

    async def release_slot(self, token: str) -> None:
        slot = self._held.pop(token, None)
        if slot is not None:
            slot.release()

    async def reserve(self, key: str, windows: Sequence[tuple[float, int]]) -> float:
        limits = tuple(windows)
        counter = self._windows.get((key, limits))
        if counter is None:
            counter = self._windows[(key, limits)] = SlidingWindows(limits, self._clock)
        return counter.reserve(key)

    @asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        async with self._locks.for_key(key):
            yield


@asynccontextmanager
async def vendor_slot(limits: VendorLimits, key: str, limit: int, lease_seconds: float) -> AsyncIterator[None]:
    """Hold one of `limit` concurrent slots of `key` for the body (one vendor request)."""
    token = await limits.acquire_slot(key, limit, lease_seconds)
    try:
        yield
    finally:
        await limits.release_slot(token)
