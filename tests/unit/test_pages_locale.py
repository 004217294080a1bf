"""Times and dates in the client's conventions (CLDR through Babel)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pages.locale import Formatter, preferred_locales

UTC_ZONE = ZoneInfo("UTC")


def test_accept_language_is_read_best_first() -> None:
    assert preferred_locales("da, en-gb;q=0.8, en;q=0.7") == ["da", "en-gb", "en"]
    assert preferred_locales("en;q=0.5, de-DE") == ["de-DE", "en"]
    assert preferred_locales("*, fr;q=0, es;q=bad, <script>") == []
    assert preferred_locales("") == []


@pytest.mark.parametrize(
    ("header", "hour12", "day"),
    [
        ("en-US,en;q=0.9", True, "Tuesday, November 24"),
        ("en-GB", False, "Tuesday, 24 November"),
        ("de-DE,de;q=0.9", False, "Tuesday, 24 November"),
        ("en-AU", True, "Tuesday, 24 November"),
        ("", False, "Tuesday, November 24"),
        ("xx-nonsense", False, "Tuesday, November 24"),
    ],
)
def test_the_clock_and_date_order_follow_the_clients_locale(header: str, hour12: bool, day: str) -> None:
    formatter = Formatter.for_client(UTC_ZONE, header)
    assert formatter.hour12 is hour12
    assert formatter.day(date(2026, 11, 24)) == day


def test_the_page_switch_overrides_the_locale() -> None:
    assert Formatter.for_client(UTC_ZONE, "en-US", "24").hour12 is False
    assert Formatter.for_client(UTC_ZONE, "de-DE", "12").hour12 is True
    assert Formatter.for_client(UTC_ZONE, "de-DE", "13").hour12 is False, "anything else: the locale's own"


@pytest.mark.parametrize("header", ["en-US", "en-GB", "en-IN", "de-DE"])
@pytest.mark.parametrize("clock", ["12", "24"])
def test_the_fast_time_format_equals_babels_for_every_minute_of_a_day(header: str, clock: str) -> None:
    formatter = Formatter.for_client(ZoneInfo("America/New_York"), header, clock)
    moment = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    for minute in range(0, 24 * 60, 5):
        instant = moment + timedelta(minutes=minute)
        assert formatter.time(instant) == formatter.babel_time(instant)


def test_instants_are_shown_in_the_clients_zone() -> None:
    formatter = Formatter.for_client(ZoneInfo("America/Chicago"), "en-US")
    assert formatter.when(datetime(2026, 11, 24, 15, 0, tzinfo=UTC)) == "Tuesday, November 24, 2026, 9:00 AM"
    assert formatter.month(date(2026, 11, 24)) == "November 2026"


@pytest.mark.parametrize(
    ("header", "language", "hour12", "day", "when"),
    [
        ("de-DE,de;q=0.9", "de-DE", False, "Dienstag, 24. November", "Dienstag, 24. November 2026, 15:00"),
        ("de-AT", "de-AT", False, "Dienstag, 24. November", "Dienstag, 24. November 2026, 15:00"),
        # An American who picks Deutsch on the page reads German names on German's 24-hour clock.
        ("en-US", "de", False, "Dienstag, 24. November", "Dienstag, 24. November 2026, 15:00"),
        # A German browser on an English page (the switch): English names, the 24-hour clock of its region.
        ("de-DE", "en", False, "Tuesday, 24 November", "Tuesday, 24 November 2026, 15:00"),
    ],
)
def test_a_german_page_names_days_and_months_in_german_on_the_24_hour_clock(
    header: str, language: str, hour12: bool, day: str, when: str
) -> None:
    formatter = Formatter.for_client(UTC_ZONE, header, "", language)
    assert formatter.hour12 is hour12
    assert formatter.day(date(2026, 11, 24)) == day
    assert formatter.when(datetime(2026, 11, 24, 15, 0, tzinfo=UTC)) == when
