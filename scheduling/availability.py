"""Working time of a host: expansion of weekly hours into UTC instants, and business-hour/day arithmetic."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

from scheduling.model import Span, SpanUnit, WorkingSchedule

# Intervals inside the engine are (start, end) in integer UTC epoch seconds: comparing ints is several times
# faster than comparing aware datetimes, and the 10,000-interval benchmark depends on it.
Seconds = int
_MIDNIGHT = time(0, 0)
_DAY = timedelta(days=1)


def epoch(moment: datetime) -> Seconds:
    """Whole seconds since the epoch, rounded down (for instants that open an interval)."""
    return math.floor(moment.timestamp())


def epoch_ceil(moment: datetime) -> Seconds:
    """Whole seconds since the epoch, rounded up: for `now` and range ends, so a fraction is never lost."""
    return math.ceil(moment.timestamp())


def from_epoch(seconds: Seconds) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def local_midnight(schedule: WorkingSchedule, day: date) -> Seconds:
    """Start of `day` in the host's zone; where midnight is skipped by DST, zoneinfo maps it past the gap."""
    return epoch(datetime.combine(day, _MIDNIGHT, tzinfo=schedule.time_zone))


def working_day(schedule: WorkingSchedule, holidays: frozenset[date], day: date) -> list[tuple[Seconds, Seconds]]:
    """Merged working intervals of one local day as epoch seconds; empty on holidays and days off.

    Wall-clock bounds go through zoneinfo on the day itself, so 09:00-17:00 stays 09:00-17:00 local on the
    23- and 25-hour DST days (8 hours either way), which is what a person with a 9-to-5 expects.
    """
    if day in holidays:
        return []
    zone = schedule.time_zone
    spans: list[tuple[Seconds, Seconds]] = []
    for wall in schedule.intervals_on(day):
        start = epoch(datetime.combine(day, wall.starts, tzinfo=zone))
        if wall.ends == _MIDNIGHT or wall.ends <= wall.starts:
            end = epoch(datetime.combine(day + _DAY, _MIDNIGHT, tzinfo=zone))
        else:
            end = epoch(datetime.combine(day, wall.ends, tzinfo=zone))
        if end > start:
            spans.append((start, end))
    spans.sort()
    merged: list[tuple[Seconds, Seconds]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def local_dates(schedule: WorkingSchedule, start: Seconds, end: Seconds) -> Iterator[date]:
    """Every local date of the host that touches [start, end), plus one day either side for safety."""
    zone = schedule.time_zone
    first = from_epoch(start).astimezone(zone).date() - _DAY
    last = from_epoch(end).astimezone(zone).date() + _DAY
    day = first
    while day <= last:
        yield day
        day += _DAY


def advance_business_time(
    schedule: WorkingSchedule, holidays: frozenset[date], start: Seconds, amount: timedelta, *, horizon_days: int = 366
) -> Seconds:
    """The instant reached after `amount` of working time from `start`, skipping nights, days off and holidays.

    Raises ValueError if the schedule has too little working time within `horizon_days`.
    """
    remaining = int(amount.total_seconds())
    day = from_epoch(start).astimezone(schedule.time_zone).date()
    if remaining <= 0:
        return start
    for _ in range(horizon_days):
        for work_start, work_end in working_day(schedule, holidays, day):
            begin = max(work_start, start)
            if begin >= work_end:
                continue
            available = work_end - begin
            if available >= remaining:
                return begin + remaining
            remaining -= available
        day += _DAY
    raise ValueError("not enough working time in the schedule to count business hours")


def end_of_business_days(
    schedule: WorkingSchedule, holidays: frozenset[date], start: Seconds, count: int, *, horizon_days: int = 366
) -> Seconds:
    """End of the `count`-th working day after the local day of `start` (that day's remainder is always included).

    A working day is a local date with working hours that is not a holiday. With count 0 the window closes at
    the end of today's working time.
    """
    day = from_epoch(start).astimezone(schedule.time_zone).date()
    today = working_day(schedule, holidays, day)
    last_end = today[-1][1] if today else start
    seen = 0
    for _ in range(horizon_days):
        if seen >= count:
            return max(last_end, start)
        day += _DAY
        spans = working_day(schedule, holidays, day)
        if spans:
            seen += 1
            last_end = spans[-1][1]
    raise ValueError("not enough working days in the schedule to count business days")


def notice_ends(schedule: WorkingSchedule, holidays: frozenset[date], now: Seconds, notice: Span) -> Seconds:
    """Earliest bookable start given the minimum notice."""
    if notice.unit is SpanUnit.BUSINESS_HOURS:
        return advance_business_time(schedule, holidays, now, timedelta(hours=notice.amount))
    if notice.unit is SpanUnit.BUSINESS_DAYS:
        # N business days of notice: bookable from the start of the N-th working day after today, so on Monday
        # with 1 business day of notice Tuesday is open, and Friday's visitor can book Monday.
        if notice.amount <= 0:
            return now
        return _start_of_nth_working_day(schedule, holidays, now, notice.amount)
    return now + int(notice.as_timedelta().total_seconds())


def window_ends(schedule: WorkingSchedule, holidays: frozenset[date], now: Seconds, window: Span) -> Seconds:
    """Instant before which every offered slot must start, given the maximum scheduling window."""
    if window.unit is SpanUnit.BUSINESS_HOURS:
        return advance_business_time(schedule, holidays, now, timedelta(hours=window.amount))
    if window.unit is SpanUnit.BUSINESS_DAYS:
        return end_of_business_days(schedule, holidays, now, window.amount)
    return now + int(window.as_timedelta().total_seconds())


def _start_of_nth_working_day(
    schedule: WorkingSchedule, holidays: frozenset[date], now: Seconds, count: int
) -> Seconds:
    """Start of the `count`-th working day after the local date of `now` (today never counts)."""
    day = from_epoch(now).astimezone(schedule.time_zone).date()
    seen = 0
    for _ in range(366):
        day += _DAY
        spans = working_day(schedule, holidays, day)
        if spans:
            seen += 1
            if seen == count:
                return spans[0][0]
    raise ValueError("not enough working days in the schedule to count business days")
