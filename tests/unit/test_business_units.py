"""Business-hour and business-day notice and windows count only the host's working time and skip holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduling.availability import (
    advance_business_time,
    end_of_business_days,
    epoch,
    from_epoch,
    notice_ends,
    window_ends,
)
from scheduling.model import (
    HostAvailability,
    HostMode,
    SlotQuery,
    SlotRules,
    Span,
    SpanUnit,
    WallInterval,
    WorkingSchedule,
)
from scheduling.slots import compute_slots

HOUR = timedelta(hours=1)
NEW_YORK = ZoneInfo("America/New_York")
OFFICE_HOURS = (WallInterval(time(9), time(17)),)
NO_HOLIDAYS: frozenset[date] = frozenset()
NO_NOTICE = Span(0, SpanUnit.MINUTES)
TWO_MONTHS = Span(60, SpanUnit.DAYS)
# January 2026 in New York is EST (UTC-5) throughout.
FRIDAY_3PM = datetime(2026, 1, 16, 20, 0, tzinfo=UTC)
MONDAY = date(2026, 1, 19)
TUESDAY = date(2026, 1, 20)


def weekdays(zone: ZoneInfo, hours: tuple[WallInterval, ...] = OFFICE_HOURS) -> WorkingSchedule:
    return WorkingSchedule(zone, (hours, hours, hours, hours, hours, (), ()))


def hourly_starts(
    now: datetime,
    *,
    notice: Span = NO_NOTICE,
    window: Span = TWO_MONTHS,
    holidays: frozenset[date] = NO_HOLIDAYS,
    hosts: tuple[HostAvailability, ...] = (HostAvailability("pat", weekdays(NEW_YORK)),),
    mode: HostMode = HostMode.USER,
    days: int = 7,
) -> list[datetime]:
    query = SlotQuery(
        rules=SlotRules(duration=HOUR, increment=HOUR, notice=notice, window=window),
        hosts=hosts,
        mode=mode,
        range_start=now,
        range_end=now + timedelta(days=days),
        now=now,
        holidays=holidays,
    )
    return [slot.starts_at for slot in compute_slots(query)]


def new_york(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=NEW_YORK).astimezone(UTC)


def test_four_business_hours_of_notice_from_friday_at_three_opens_monday_at_eleven() -> None:
    starts = hourly_starts(FRIDAY_3PM, notice=Span(4, SpanUnit.BUSINESS_HOURS))

    assert starts[0] == datetime(2026, 1, 19, 16, 0, tzinfo=UTC)  # Monday 11:00 EST
    assert starts[0] == new_york(MONDAY, 11)


def test_a_holiday_on_monday_pushes_four_business_hours_of_notice_to_tuesday_at_eleven() -> None:
    starts = hourly_starts(FRIDAY_3PM, notice=Span(4, SpanUnit.BUSINESS_HOURS), holidays=frozenset({MONDAY}))

    assert starts[0] == datetime(2026, 1, 20, 16, 0, tzinfo=UTC)  # Tuesday 11:00 EST
    assert all(start.astimezone(NEW_YORK).date() != MONDAY for start in starts)


def test_notice_of_business_hours_is_counted_by_the_availability_function_too() -> None:
    schedule = weekdays(NEW_YORK)
    notice = Span(4, SpanUnit.BUSINESS_HOURS)

    assert from_epoch(notice_ends(schedule, NO_HOLIDAYS, epoch(FRIDAY_3PM), notice)) == new_york(MONDAY, 11)
    assert from_epoch(notice_ends(schedule, frozenset({MONDAY}), epoch(FRIDAY_3PM), notice)) == new_york(TUESDAY, 11)


def test_business_hours_that_run_out_exactly_at_closing_open_the_next_working_morning() -> None:
    friday_1pm = new_york(date(2026, 1, 16), 13)
    schedule = weekdays(NEW_YORK)

    reached = advance_business_time(schedule, NO_HOLIDAYS, epoch(friday_1pm), timedelta(hours=4))

    assert from_epoch(reached) == new_york(date(2026, 1, 16), 17)
    assert hourly_starts(friday_1pm, notice=Span(4, SpanUnit.BUSINESS_HOURS))[0] == new_york(MONDAY, 9)


def test_business_hours_counted_before_opening_start_at_opening() -> None:
    monday_7am = new_york(MONDAY, 7)

    reached = advance_business_time(weekdays(NEW_YORK), NO_HOLIDAYS, epoch(monday_7am), timedelta(hours=2))

    assert from_epoch(reached) == new_york(MONDAY, 11)


def test_business_hours_skip_the_lunch_break() -> None:
    split = (WallInterval(time(9), time(12)), WallInterval(time(13), time(17)))
    monday_11am = new_york(MONDAY, 11)

    reached = advance_business_time(weekdays(NEW_YORK, split), NO_HOLIDAYS, epoch(monday_11am), timedelta(hours=3))

    assert from_epoch(reached) == new_york(MONDAY, 15)  # 11-12, then 13-15


def test_business_hours_over_the_spring_forward_weekend_land_on_the_same_wall_clock_time() -> None:
    friday_3pm_est = datetime(2026, 3, 6, 20, 0, tzinfo=UTC)

    starts = hourly_starts(friday_3pm_est, notice=Span(4, SpanUnit.BUSINESS_HOURS))

    assert starts[0] == datetime(2026, 3, 9, 15, 0, tzinfo=UTC)  # Monday 11:00 EDT, an hour earlier in UTC


def test_each_round_robin_host_counts_business_hours_in_their_own_zone() -> None:
    new_york_host = HostAvailability("ny", weekdays(NEW_YORK))
    london_host = HostAvailability("ldn", weekdays(ZoneInfo("Europe/London")))

    query_starts = hourly_starts(
        FRIDAY_3PM,
        notice=Span(4, SpanUnit.BUSINESS_HOURS),
        hosts=(new_york_host, london_host),
        mode=HostMode.ROUND_ROBIN,
        days=3,
    )

    # Friday 20:00Z is after hours in London, so London counts from Monday 09:00 GMT: first start 13:00Z.
    # New York has two hours left on Friday and needs two more on Monday: first start 11:00 EST = 16:00Z.
    assert query_starts[0] == datetime(2026, 1, 19, 13, 0, tzinfo=UTC)
    assert datetime(2026, 1, 19, 16, 0, tzinfo=UTC) in query_starts
    assert datetime(2026, 1, 19, 15, 0, tzinfo=UTC) in query_starts


def test_round_robin_slots_name_only_hosts_whose_business_hour_notice_has_passed() -> None:
    new_york_host = HostAvailability("ny", weekdays(NEW_YORK))
    london_host = HostAvailability("ldn", weekdays(ZoneInfo("Europe/London")))
    query = SlotQuery(
        rules=SlotRules(duration=HOUR, increment=HOUR, notice=Span(4, SpanUnit.BUSINESS_HOURS)),
        hosts=(new_york_host, london_host),
        mode=HostMode.ROUND_ROBIN,
        range_start=datetime(2026, 1, 19, 0, 0, tzinfo=UTC),
        range_end=datetime(2026, 1, 20, 0, 0, tzinfo=UTC),
        now=FRIDAY_3PM,
    )

    hosts_by_start = {slot.starts_at.hour: slot.host_ids for slot in compute_slots(query)}

    # London works 09:00-17:00Z from 13:00Z on; New York 14:00-22:00Z from 16:00Z on; both are listed at 16:00Z.
    assert hosts_by_start == {
        13: ("ldn",),
        14: ("ldn",),
        15: ("ldn",),
        16: ("ny", "ldn"),
        17: ("ny",),
        18: ("ny",),
        19: ("ny",),
        20: ("ny",),
        21: ("ny",),
    }


@pytest.mark.parametrize(
    ("now", "holidays", "first_start"),
    [
        pytest.param(new_york(MONDAY, 10), NO_HOLIDAYS, new_york(TUESDAY, 9), id="monday-books-tuesday"),
        pytest.param(FRIDAY_3PM, NO_HOLIDAYS, new_york(MONDAY, 9), id="friday-books-monday"),
        pytest.param(FRIDAY_3PM, frozenset({MONDAY}), new_york(TUESDAY, 9), id="holiday-monday-is-skipped"),
        pytest.param(new_york(date(2026, 1, 17), 12), NO_HOLIDAYS, new_york(MONDAY, 9), id="saturday-books-monday"),
    ],
)
def test_one_business_day_of_notice_opens_the_next_working_day(
    now: datetime, holidays: frozenset[date], first_start: datetime
) -> None:
    notice = Span(1, SpanUnit.BUSINESS_DAYS)

    assert hourly_starts(now, notice=notice, holidays=holidays)[0] == first_start
    assert from_epoch(notice_ends(weekdays(NEW_YORK), holidays, epoch(now), notice)) == first_start


def test_two_business_days_of_notice_from_friday_open_tuesday() -> None:
    starts = hourly_starts(FRIDAY_3PM, notice=Span(2, SpanUnit.BUSINESS_DAYS))

    assert starts[0] == new_york(TUESDAY, 9)


def test_a_window_of_two_business_days_from_friday_closes_at_the_end_of_tuesday() -> None:
    starts = hourly_starts(FRIDAY_3PM, window=Span(2, SpanUnit.BUSINESS_DAYS))

    assert starts[:2] == [new_york(date(2026, 1, 16), 15), new_york(date(2026, 1, 16), 16)]
    assert starts[-1] == new_york(TUESDAY, 16)
    assert len(starts) == 2 + 8 + 8


def test_a_holiday_monday_extends_a_two_business_day_window_to_wednesday() -> None:
    starts = hourly_starts(FRIDAY_3PM, window=Span(2, SpanUnit.BUSINESS_DAYS), holidays=frozenset({MONDAY}))

    assert starts[-1] == new_york(date(2026, 1, 21), 16)
    assert all(start.astimezone(NEW_YORK).date() != MONDAY for start in starts)


def test_a_window_of_zero_business_days_keeps_only_the_rest_of_today() -> None:
    starts = hourly_starts(FRIDAY_3PM, window=Span(0, SpanUnit.BUSINESS_DAYS))

    assert starts == [new_york(date(2026, 1, 16), 15), new_york(date(2026, 1, 16), 16)]


def test_end_of_business_days_skips_weekends_and_holidays() -> None:
    schedule = weekdays(NEW_YORK)

    assert from_epoch(end_of_business_days(schedule, NO_HOLIDAYS, epoch(FRIDAY_3PM), 1)) == new_york(MONDAY, 17)
    assert from_epoch(end_of_business_days(schedule, frozenset({MONDAY}), epoch(FRIDAY_3PM), 1)) == new_york(
        TUESDAY, 17
    )


def test_a_window_of_three_business_hours_from_friday_at_three_closes_monday_at_ten() -> None:
    window = Span(3, SpanUnit.BUSINESS_HOURS)

    starts = hourly_starts(FRIDAY_3PM, window=window)

    assert from_epoch(window_ends(weekdays(NEW_YORK), NO_HOLIDAYS, epoch(FRIDAY_3PM), window)) == new_york(MONDAY, 10)
    assert starts == [new_york(date(2026, 1, 16), 15), new_york(date(2026, 1, 16), 16), new_york(MONDAY, 9)]


def test_counting_business_time_in_a_schedule_without_working_hours_is_refused() -> None:
    never = WorkingSchedule(NEW_YORK, ((),) * 7)

    with pytest.raises(ValueError, match="not enough working time"):
        advance_business_time(never, NO_HOLIDAYS, epoch(FRIDAY_3PM), timedelta(hours=1))
    with pytest.raises(ValueError, match="not enough working days"):
        end_of_business_days(never, NO_HOLIDAYS, epoch(FRIDAY_3PM), 1)
