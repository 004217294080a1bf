"""The public-POST rate limiter: a sliding window per key that never lets a request through when it cannot count it."""

from __future__ import annotations

from pages.ratelimit import InMemoryRateLimiter


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_key_gets_its_limit_per_window_and_then_waits_for_the_window_to_slide() -> None:
    clock = ManualClock()
    limiter = InMemoryRateLimiter(3, window_seconds=60, clock=clock)
    assert [await limiter.admit("ip:1") for _ in range(4)] == [True, True, True, False]
    assert await limiter.admit("ip:2")
    clock.now += 59.9
    assert not await limiter.admit("ip:1")
    clock.now += 0.2
    assert await limiter.admit("ip:1")


async def test_when_the_key_table_is_full_a_new_key_is_refused_until_old_keys_expire() -> None:
    clock = ManualClock()
    limiter = InMemoryRateLimiter(5, window_seconds=60, max_keys=2, clock=clock)
    assert await limiter.admit("ip:1")
    assert await limiter.admit("ip:2")
    # Fails closed: a third address cannot be counted, so it is not let through.
    assert not await limiter.admit("ip:3")
    assert not await limiter.admit("ip:3")
    # Keys already counted keep their own budget meanwhile.
    assert await limiter.admit("ip:1")
    clock.now += 61
    assert await limiter.admit("ip:3")
