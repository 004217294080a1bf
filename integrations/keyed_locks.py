"""One asyncio lock per key (a client's email address), alive only while someone holds or waits for it."""

from __future__ import annotations

import asyncio
import weakref


class KeyedLocks:
    """`for_key(key)` is the same lock for the same key (case-insensitive) as long as anyone still uses it.

    PSA adapters use it so that one contact is created per address in this process: two bookings by the same new
    client, run side by side, would otherwise both miss the look-up and both create. Weak values, so locks of
    addresses nobody is working on are not kept.
    """

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def for_key(self, key: str) -> asyncio.Lock:
        folded = key.casefold()
        lock = self._locks.get(folded)
        if lock is None:
            lock = self._locks[folded] = asyncio.Lock()
        return lock
