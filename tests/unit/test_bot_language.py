"""The bot's pure parts: phrasings to commands, the Teams per-conversation send windows, zones from activities."""

from __future__ import annotations

import pytest

from bot.handlers import Intent, parse_intent
from bot.identity import caller_from_activity, zone_for
from bot.proactive import teams_thread_limiter


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("links", Intent.LINKS),
        ("my appointment types", Intent.LINKS),
        ("<at>Slotwise</at> links", Intent.LINKS),
        ("can I have my booking URL?", Intent.LINKS),
        ("page", Intent.PAGE),
        ("my personal page", Intent.PAGE),
        ("upcoming", Intent.UPCOMING),
        ("what's coming up?", Intent.UPCOMING),
        ("my next meetings", Intent.UPCOMING),
        ("team", Intent.TEAM),
        ("show team bookings", Intent.TEAM),
        ("failures", Intent.FAILURES),
        ("what failed?", Intent.FAILURES),
        ("help", Intent.HELP),
        ("Hi!", Intent.HELP),
        ("", Intent.HELP),
        ("what can you do", Intent.HELP),
        ("purple elephants", Intent.UNKNOWN),
    ],
)
def test_natural_phrasings_map_to_commands(text: str, intent: Intent) -> None:
    assert parse_intent(text) is intent


def test_the_send_windows_match_teams_limits_per_conversation() -> None:
    now = [0.0]
    limiter = teams_thread_limiter(clock=lambda: now[0], margin=0.0)
    assert [limiter.reserve("a") for _ in range(7)] == [0.0] * 7
    assert limiter.reserve("a") == pytest.approx(1.0), "the 8th message in one second waits for the window"
    assert limiter.reserve("b") == 0.0, "another conversation has its own windows"
    now[0] = 1.0
    assert limiter.reserve("a") == 0.0, "8 in 2 seconds is still allowed"
    assert limiter.reserve("a") > 0, "the 9th within 2 seconds is not"
    sent = 8
    while sent < 60:
        now[0] += 1.0
        for _ in range(min(4, 60 - sent)):
            assert limiter.reserve("a") == 0.0
            sent += 1
    assert limiter.reserve("a") > 1.0, "60 in 30 seconds is the next ceiling"
    now[0] += 30.0
    assert limiter.reserve("a") == 0.0


def test_the_hour_window_holds_at_1800() -> None:
    now = [0.0]
    limiter = teams_thread_limiter(clock=lambda: now[0], margin=0.0)
    for _ in range(1800):
        while (wait := limiter.reserve("a")) > 0:
            now[0] += wait
    assert now[0] < 3600
    assert limiter.reserve("a") > 0, "the 1,801st message in the hour waits"


def test_zone_comes_from_teams_then_the_profile() -> None:
    activity = {
        "from": {"id": "29:x", "aadObjectId": "oid"},
        "conversation": {"id": "a:1", "tenantId": "ABC"},
        "entities": [{"type": "clientInfo", "timezone": "Asia/Kolkata"}],
    }
    caller = caller_from_activity(activity)
    assert caller.microsoft_tenant_id == "abc"
    assert str(zone_for(caller.time_zone, "Europe/London")) == "Asia/Kolkata"
    broken = caller_from_activity({**activity, "entities": [{"type": "clientInfo", "timezone": "Mars/Olympus"}]})
    assert str(zone_for(broken.time_zone, "Europe/London")) == "Europe/London"
    assert str(zone_for(None, "not a zone")) == "UTC"
    assert caller_from_activity({"from": "nonsense", "conversation": 5}).microsoft_tenant_id == ""
