"""SlidingWindows: our own send budgets (Teams per chat, Autotask per database), with a clock we move by hand."""

from __future__ import annotations

from integrations.rate_windows import SWEEP_EVERY, SlidingWindows


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_every_window_holds_and_says_how_long_to_wait() -> None:
    clock = Clock()
    windows = SlidingWindows(((1.0, 7), (30.0, 60)), clock)
    assert [windows.reserve("chat") for _ in range(7)] == [0.0] * 7
    assert windows.reserve("chat") == 1.0, "the eighth message inside one second waits for the first to leave"
    assert windows.reserve("other chat") == 0.0, "each key has its own budget"
    accepted = 7
    while accepted < 60:
        clock.now += 1.0
        accepted += sum(windows.reserve("chat") == 0.0 for _ in range(min(7, 60 - accepted)))
    clock.now += 1.0
    wait = windows.reserve("chat")
    assert 1.0 < wait <= 30.0, "sixty inside thirty seconds: the next waits for the oldest to leave the window"


def test_keys_idle_for_longer_than_the_longest_window_are_forgotten() -> None:
    clock = Clock()
    windows = SlidingWindows(((1.0, 7), (3600.0, 1800)), clock)
    for number in range(SWEEP_EVERY - 1):
        windows.reserve(f"chat {number}")
    assert len(windows) == SWEEP_EVERY - 1
    clock.now += 3600.5
    windows.reserve("one more")
    assert len(windows) == 1, "chats silent for an hour are no longer tracked"
    # A forgotten chat starts afresh, with its full budget.
    assert [windows.reserve("chat 1") for _ in range(7)] == [0.0] * 7
