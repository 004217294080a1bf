"""Sliding-window limiter for public POSTs; callers treat any exception as 'refuse' (fail closed)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class InMemoryRateLimiter:
    """Per-key limit of `limit` events in `window_seconds`, for one process.

    A scale-out deployment puts a shared limiter behind the same RateLimiter port; each process still
    enforces its own share, so the limit never fails open.
    """

    def __init__(
        self,
        limit: int,
        window_seconds: float = 60.0,
        max_keys: int = 100_000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window_seconds
        self._max_keys = max_keys
        self._events: dict[str, deque[float]] = {}

    async def admit(self, key: str) -> bool:
        now = self._clock()
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= self._max_keys:
                self._evict(now)
                if len(self._events) >= self._max_keys:
                    return False
            events = self._events[key] = deque()
        while events and events[0] <= now - self._window:
            events.popleft()
        if len(events) >= self._limit:
            return False
        events.append(now)
        return True

    def _evict(self, now: float) -> None:
        stale = [key for key, events in self._events.items() if not events or events[-1] <= now - self._window]
        for key in stale:
            del self._events[key]
