"""A brute-force minute-grid oracle for the slot engine, and the Hypothesis strategies that feed both.

The oracle walks every minute and checks every rule with plain datetime arithmetic and zoneinfo. It shares no code
with `scheduling.availability` or `scheduling.slots`; only the frozen model types are common. Inputs are
minute-aligned, so an epoch minute (an int) stands for the minute [m, m + 1).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from scheduling.model import (
    BusyInterval,
    BusyKind,
    HostAvailability,
    HostMode,
    Slot,
    SlotQuery,
    SlotRules,
    Span,
    SpanUnit,
    WallInterval,
    WorkingSchedule,
)

ZONE_NAMES = ("America/New_York", "Europe/London", "Asia/Kolkata", "UTC", "Australia/Sydney")
DST_DATES_2026 = (
    date(2026, 3, 8),  # New York springs forward at 02:00
    date(2026, 11, 1),  # New York falls back at 02:00
    date(2026, 3, 29),  # London springs forward at 01:00
    date(2026, 10, 25),  # London falls back at 02:00
    date(2026, 4, 5),  # Sydney falls back at 03:00
    date(2026, 10, 4),  # Sydney springs forward at 02:00
)
INCREMENTS = (5, 10, 15, 20, 30, 60)
MIDNIGHT = time(0, 0)
ONE_DAY = timedelta(days=1)
SEARCH_DAYS = 400


def to_minute(moment: datetime) -> int:
    """Epoch minute of a minute-aligned aware datetime."""
    seconds = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
    assert seconds % 60 == 0, f"{moment} is not minute-aligned"
    return seconds // 60


def from_minute(minute: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)


def wall_to_utc(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The instant a wall-clock reading names, disambiguated the way RFC 5545 and Temporal's 'compatible' do.

    A reading that happens twice (autumn) means the earlier instant; a reading skipped by the clocks (spring) is
    read with the offset in force before the jump, which lands it later by the length of the gap.
    """
    naive = datetime.combine(day, wall)
    # Offsets in force from two days before to two days after: both sides of any transition on `day`.
    offsets = {
        (naive.replace(tzinfo=UTC) + timedelta(days=shift)).astimezone(zone).utcoffset() for shift in range(-2, 3)
    }
    readings = []
    for offset in offsets:
        assert offset is not None
        candidate = (naive - offset).replace(tzinfo=UTC)
        if candidate.astimezone(zone).replace(tzinfo=None) == naive:
            readings.append(candidate)
    if readings:
        return min(readings)
    offset_before = (naive - timedelta(days=1)).replace(tzinfo=UTC).astimezone(zone).utcoffset()
    assert offset_before is not None
    return (naive - offset_before).replace(tzinfo=UTC)


class HostOracle:
    """Working minutes of one host, derived from the WallInterval definitions and cached per local date."""

    def __init__(self, host: HostAvailability, holidays: frozenset[date]) -> None:
        self.host = host
        self.zone = host.schedule.time_zone
        self.holidays = holidays
        self._days: dict[date, list[int]] = {}
        self._sets: dict[date, frozenset[int]] = {}
        self.event_minutes: set[int] = set()
        self.any_busy_minutes: set[int] = set()
        for busy in host.busy:
            minutes = range(to_minute(busy.starts_at), to_minute(busy.ends_at))
            self.any_busy_minutes.update(minutes)
            if busy.kind is BusyKind.EVENT:
                self.event_minutes.update(minutes)

    def local_date(self, minute: int) -> date:
        return from_minute(minute).astimezone(self.zone).date()

    def midnight(self, day: date) -> int:
        return to_minute(wall_to_utc(day, MIDNIGHT, self.zone))

    def working_minutes(self, day: date) -> list[int]:
        """Sorted working minutes of one local date: the union of its wall intervals, none on a holiday."""
        if day not in self._days:
            minutes: set[int] = set()
            if day not in self.holidays:
                schedule = self.host.schedule
                walls = schedule.overrides[day] if day in schedule.overrides else schedule.weekly[day.weekday()]
                for wall in walls:
                    first = to_minute(wall_to_utc(day, wall.starts, self.zone))
                    if wall.ends == MIDNIGHT:
                        stop = to_minute(wall_to_utc(day + ONE_DAY, MIDNIGHT, self.zone))
                    else:
                        stop = to_minute(wall_to_utc(day, wall.ends, self.zone))
                    minutes.update(range(first, stop))
            self._days[day] = sorted(minutes)
            self._sets[day] = frozenset(minutes)
        return self._days[day]

    def working_set(self, day: date) -> frozenset[int]:
        self.working_minutes(day)
        return self._sets[day]

    def walk_working_minutes(self, now: int, count: int) -> int:
        """End of the `count`-th working minute at or after `now`; `now` itself when count is 0."""
        if count == 0:
            return now
        seen = 0
        day = self.local_date(now)
        for _ in range(SEARCH_DAYS):
            for minute in self.working_minutes(day):
                if minute >= now:
                    seen += 1
                    if seen == count:
                        return minute + 1
            day += ONE_DAY
        raise AssertionError("oracle ran out of working time")

    def next_working_days(self, now: int) -> list[date]:
        """The working dates strictly after the local date of `now`, enough of them for any generated span."""
        found: list[date] = []
        day = self.local_date(now)
        for _ in range(SEARCH_DAYS):
            day += ONE_DAY
            if self.working_minutes(day):
                found.append(day)
                if len(found) == 12:
                    return found
        raise AssertionError("oracle ran out of working days")

    def earliest_start(self, now: int, notice: Span) -> int:
        if notice.unit is SpanUnit.BUSINESS_HOURS:
            return self.walk_working_minutes(now, notice.amount * 60)
        if notice.unit is SpanUnit.BUSINESS_DAYS:
            if notice.amount == 0:
                return now
            # Bookable from the opening of the N-th working date after today (today never counts).
            return self.working_minutes(self.next_working_days(now)[notice.amount - 1])[0]
        return now + calendar_minutes(notice)

    def latest_start_exclusive(self, now: int, window: Span) -> int:
        if window.unit is SpanUnit.BUSINESS_HOURS:
            return self.walk_working_minutes(now, window.amount * 60)
        if window.unit is SpanUnit.BUSINESS_DAYS:
            today = self.working_minutes(self.local_date(now))
            closes = today[-1] + 1 if today else now
            if window.amount:
                closes = self.working_minutes(self.next_working_days(now)[window.amount - 1])[-1] + 1
            return max(closes, now)
        return now + calendar_minutes(window)

    def free_starts(self, query: SlotQuery) -> set[int]:
        """Every minute this host could start the meeting at, checked rule by rule."""
        rules = query.rules
        duration = minutes_of(rules.duration)
        increment = minutes_of(rules.increment)
        before = minutes_of(rules.buffer_before)
        after = minutes_of(rules.buffer_after)
        now = to_minute(query.now)
        earliest = self.earliest_start(now, rules.notice)
        latest = self.latest_start_exclusive(now, rules.window)
        starts: set[int] = set()
        for start in range(to_minute(query.range_start), to_minute(query.range_end)):
            if start < earliest or start >= latest:
                continue
            day = self.local_date(start)
            working = self.working_set(day)
            if any(minute not in working for minute in range(start, start + duration)):
                continue
            if (start - self.midnight(day)) % increment:
                continue
            if any(minute in self.any_busy_minutes for minute in range(start, start + duration)):
                continue
            if any(minute in self.event_minutes for minute in range(start - before, start + duration + after)):
                continue
            starts.add(start)
        return starts


def minutes_of(length: timedelta) -> int:
    return length // timedelta(minutes=1)


def calendar_minutes(span: Span) -> int:
    per_unit = {SpanUnit.MINUTES: 1, SpanUnit.HOURS: 60, SpanUnit.DAYS: 1440}
    return span.amount * per_unit[span.unit]


def expected_slots(query: SlotQuery) -> set[tuple[int, tuple[str, ...]]]:
    """The oracle's answer as (start minute, host ids) pairs."""
    free = [HostOracle(host, query.holidays).free_starts(query) for host in query.hosts]
    if not free:
        return set()
    if query.mode is HostMode.ROUND_ROBIN:
        union = set().union(*free)
        return {
            (start, tuple(host.host_id for host, starts in zip(query.hosts, free, strict=True) if start in starts))
            for start in union
        }
    everyone = tuple(host.host_id for host in query.hosts)
    return {(start, everyone) for start in set.intersection(*free)}


def as_pairs(slots: list[Slot]) -> set[tuple[int, tuple[str, ...]]]:
    return {(to_minute(slot.starts_at), slot.host_ids) for slot in slots}


def clock(minute_of_day: int) -> time:
    return MIDNIGHT if minute_of_day == 1440 else time(minute_of_day // 60, minute_of_day % 60)


@st.composite
def day_hours(draw: st.DrawFn) -> tuple[WallInterval, ...]:
    """0-2 wall intervals on a 5-minute grid, possibly overlapping or touching, possibly running to midnight."""
    intervals = []
    for _ in range(draw(st.integers(0, 2))):
        starts = draw(st.integers(0, 287)) * 5
        ends = draw(st.integers(starts // 5 + 1, 288)) * 5
        intervals.append(WallInterval(clock(starts), clock(ends)))
    return tuple(intervals)


def wall_minutes(hours: tuple[WallInterval, ...]) -> int:
    """Nominal length of a day's wall intervals, overlaps counted twice; only used to reject sparse weeks."""
    total = 0
    for wall in hours:
        ends = 1440 if wall.ends == MIDNIGHT else wall.ends.hour * 60 + wall.ends.minute
        total += ends - (wall.starts.hour * 60 + wall.starts.minute)
    return total


OFFICE_HOURS = (WallInterval(time(9), time(17)),)
SPLIT_HOURS = (WallInterval(time(8, 30), time(12)), WallInterval(time(13), time(17, 30)))
NIGHT_SHIFT = (WallInterval(time(0), time(6)), WallInterval(time(22), MIDNIGHT))


@st.composite
def weekly_hours(draw: st.DrawFn) -> tuple[tuple[WallInterval, ...], ...]:
    template = draw(st.sampled_from(("office", "office", "split", "night", "random")))
    if template == "random":
        week = [draw(day_hours()) for _ in range(7)]
    else:
        hours = {"office": OFFICE_HOURS, "split": SPLIT_HOURS, "night": NIGHT_SHIFT}[template]
        weekend = draw(st.sampled_from(((), hours)))
        week = [hours] * 5 + [weekend, weekend]
    if sum(wall_minutes(hours) for hours in week) < 8 * 60:
        week[0] = OFFICE_HOURS  # the engine rightly refuses to count business time a sparse week never reaches
    return tuple(week)


@st.composite
def hosts(draw: st.DrawFn, around: datetime, span: timedelta, count: int) -> tuple[HostAvailability, ...]:
    result = []
    first_day = (around - ONE_DAY).date()
    days = [first_day + ONE_DAY * offset for offset in range(span // ONE_DAY + 4)]
    team_zone = draw(st.sampled_from(ZONE_NAMES))
    for index in range(count):
        zone = ZoneInfo(draw(st.sampled_from((team_zone, *ZONE_NAMES))))
        overrides = {}
        if draw(st.booleans()):
            overrides[draw(st.sampled_from(days))] = draw(day_hours())
        schedule = WorkingSchedule(zone, draw(weekly_hours()), overrides)
        busy = []
        total = int((span + 2 * ONE_DAY) / timedelta(minutes=1))
        # Busy edges on a 5-minute grid, like real calendars, so back-to-back events and exact fits are common.
        step = draw(st.sampled_from((5, 1)))
        for number in range(draw(st.integers(0, 10))):
            starts_at = around - ONE_DAY + timedelta(minutes=step * draw(st.integers(0, total // step)))
            length = timedelta(minutes=step * draw(st.integers(1, 240 // step)))
            kind = draw(st.sampled_from(BusyKind))
            busy.append(BusyInterval(starts_at, starts_at + length, kind, f"event {number} of host {index}"))
        result.append(HostAvailability(f"host-{index}", schedule, tuple(busy)))
    return tuple(result)


@st.composite
def spans(draw: st.DrawFn, *, window: bool) -> Span:
    if window:
        unit = draw(st.sampled_from((SpanUnit.DAYS, SpanUnit.BUSINESS_DAYS, SpanUnit.HOURS, SpanUnit.BUSINESS_HOURS)))
    else:
        unit = draw(st.sampled_from(SpanUnit))
    # Windows are mostly long enough to reach the range and notices mostly short enough to leave some of it.
    limits = {
        SpanUnit.MINUTES: (0, 600),
        SpanUnit.HOURS: (0, 24) if not window else (12, 150),
        SpanUnit.DAYS: (0, 1) if not window else (2, 10),
        SpanUnit.BUSINESS_HOURS: (0, 8) if not window else (4, 60),
        SpanUnit.BUSINESS_DAYS: (0, 2) if not window else (0, 8),
    }
    low, high = limits[unit]
    return Span(draw(st.integers(low, high)), unit)


@st.composite
def slot_queries(draw: st.DrawFn, modes: tuple[HostMode, ...] = tuple(HostMode), max_hosts: int = 3) -> SlotQuery:
    """A minute-aligned query over 1-4 days of 2026, often around a DST change, with 1-3 hosts."""
    anchor = draw(st.one_of(st.sampled_from(DST_DATES_2026), st.dates(date(2026, 1, 1), date(2026, 12, 31))))
    range_start = datetime.combine(anchor, MIDNIGHT, tzinfo=UTC) + timedelta(minutes=draw(st.integers(-1440, 1440)))
    span = timedelta(minutes=draw(st.integers(1440, 4 * 1440)))
    now = range_start + timedelta(minutes=draw(st.integers(-1440, 720)))
    rules = SlotRules(
        duration=timedelta(minutes=5 * draw(st.integers(1, 24))),
        increment=timedelta(minutes=draw(st.sampled_from(INCREMENTS))),
        buffer_before=timedelta(minutes=draw(st.integers(0, 30))),
        buffer_after=timedelta(minutes=draw(st.integers(0, 30))),
        notice=draw(spans(window=False)),
        window=draw(spans(window=True)),
    )
    mode = draw(st.sampled_from(modes))
    # A USER type books one person; panels and round robins get 1-3, often sharing a zone as real teams do.
    host_count = 1 if mode is HostMode.USER else draw(st.integers(1, max_hosts))
    host_list = draw(hosts(range_start, span, host_count))
    local_days = [range_start.date() + ONE_DAY * offset for offset in range(-1, span.days + 2)]
    holidays = frozenset(draw(st.lists(st.sampled_from(local_days), max_size=2)))
    return SlotQuery(
        rules=rules,
        hosts=host_list,
        mode=mode,
        range_start=range_start,
        range_end=range_start + span,
        now=now,
        holidays=holidays,
    )
