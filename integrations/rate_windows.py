"""Send budgets counted on our side: at most N requests per sliding window, per key (a chat, a vendor database)."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence

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
