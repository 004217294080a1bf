"""Send budgets counted on our side: at most N requests per sliding window, per key (a chat, a vendor database)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence


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
        self._sent: dict[str, deque[float]] = {}

    def reserve(self, key: str) -> float:
        """0.0 if a request was booked now, else the seconds until one would be allowed (nothing is booked)."""
        now = self._clock()
        sent = self._sent.setdefault(key, deque())
        while sent and sent[0] <= now - self._longest:
            sent.popleft()
        wait = 0.0
        for window, count in self._limits:
            inside = [moment for moment in sent if moment > now - window]
            if len(inside) >= count:
                wait = max(wait, inside[-count] + window - now)
        if wait > 0:
            return wait
        sent.append(now)
        return 0.0
