"""Golden slot lists on the days clocks change, with every expected instant written out in UTC by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduling.model import HostAvailability, HostMode, SlotQuery, SlotRules, WallInterval, WorkingSchedule
from scheduling.slots import compute_slots

HOUR = timedelta(hours=1)


def every_day(zone: str, *hours: WallInterval) -> WorkingSchedule:
    """The same hours all seven days, so Sunday DST changes are working days."""
    return WorkingSchedule(ZoneInfo(zone), tuple(hours for _ in range(7)))


def slot_starts_on(
    schedule: WorkingSchedule,
    day: date,
    *,
    duration: timedelta = HOUR,
    increment: timedelta = HOUR,
) -> list[datetime]:
    """Starts offered on `day` (searched with a day of margin either side in UTC), asked a week ahead."""
    query = SlotQuery(
        rules=SlotRules(duration=duration, increment=increment),
        hosts=(HostAvailability("pat", schedule),),
        mode=HostMode.USER,
        range_start=datetime.combine(day, time(0), tzinfo=UTC) - timedelta(days=1),
        range_end=datetime.combine(day, time(0), tzinfo=UTC) + timedelta(days=2),
        now=datetime.combine(day, time(0), tzinfo=UTC) - timedelta(days=7),
    )
    zone = schedule.time_zone
    return [slot.starts_at for slot in compute_slots(query) if slot.starts_at.astimezone(zone).date() == day]


def utc_hours(day: date, *hours: float) -> list[datetime]:
    return [datetime.combine(day, time(0), tzinfo=UTC) + timedelta(hours=hour) for hour in hours]


NINE_TO_FIVE = WallInterval(time(9), time(17))


@pytest.mark.parametrize(
    ("zone", "day", "first_utc_hour"),
    [
        pytest.param("America/New_York", date(2026, 3, 7), 14, id="new-york-saturday-before-spring-forward-est"),
        pytest.param("America/New_York", date(2026, 3, 8), 13, id="new-york-spring-forward-edt"),
        pytest.param("America/New_York", date(2026, 10, 31), 13, id="new-york-saturday-before-fall-back-edt"),
        pytest.param("America/New_York", date(2026, 11, 1), 14, id="new-york-fall-back-est"),
        pytest.param("Europe/London", date(2026, 3, 28), 9, id="london-saturday-before-spring-forward-gmt"),
        pytest.param("Europe/London", date(2026, 3, 29), 8, id="london-spring-forward-bst"),
        pytest.param("Europe/London", date(2026, 10, 24), 8, id="london-saturday-before-fall-back-bst"),
        pytest.param("Europe/London", date(2026, 10, 25), 9, id="london-fall-back-gmt"),
        pytest.param("Asia/Kolkata", date(2026, 3, 8), 3.5, id="kolkata-ist-never-changes"),
        pytest.param("Australia/Sydney", date(2026, 4, 5), 23, id="sydney-fall-back-aest"),
        pytest.param("Australia/Sydney", date(2026, 10, 4), 22, id="sydney-spring-forward-aedt"),
    ],
)
def test_a_nine_to_five_day_offers_eight_hourly_slots_at_the_same_wall_clock_times(
    zone: str, day: date, first_utc_hour: float
) -> None:
    starts = slot_starts_on(every_day(zone, NINE_TO_FIVE), day)

    # Sydney is ahead of UTC, so its 09:00 is the previous UTC evening.
    utc_day = day - timedelta(days=1) if zone == "Australia/Sydney" else day
    assert starts == utc_hours(utc_day, *(first_utc_hour + offset for offset in range(8)))
    assert [start.astimezone(ZoneInfo(zone)).time() for start in starts] == [time(hour) for hour in range(9, 17)]


def test_new_york_spring_forward_slots_are_written_out_in_utc() -> None:
    starts = slot_starts_on(every_day("America/New_York", NINE_TO_FIVE), date(2026, 3, 8))

    assert starts == [
        datetime(2026, 3, 8, 13, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 14, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 15, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 16, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 17, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 18, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 19, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 20, 0, tzinfo=UTC),
    ]


def test_new_york_day_before_spring_forward_is_still_on_eastern_standard_time() -> None:
    starts = slot_starts_on(every_day("America/New_York", NINE_TO_FIVE), date(2026, 3, 7))

    assert starts[0] == datetime(2026, 3, 7, 14, 0, tzinfo=UTC)
    assert starts[-1] == datetime(2026, 3, 7, 21, 0, tzinfo=UTC)


def test_midnight_to_six_on_new_york_spring_forward_day_has_only_five_hours() -> None:
    starts = slot_starts_on(every_day("America/New_York", WallInterval(time(0), time(6))), date(2026, 3, 8))

    # 00:00 EST = 05:00Z; the clocks jump from 02:00 EST to 03:00 EDT (07:00Z); 06:00 EDT = 10:00Z.
    assert starts == [
        datetime(2026, 3, 8, 5, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 6, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 7, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 8, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 9, 0, tzinfo=UTC),
    ]
    zone = ZoneInfo("America/New_York")
    assert [start.astimezone(zone).hour for start in starts] == [0, 1, 3, 4, 5]


def test_half_hour_slots_run_straight_across_the_new_york_spring_gap() -> None:
    schedule = every_day("America/New_York", WallInterval(time(1), time(4)))

    starts = slot_starts_on(schedule, date(2026, 3, 8), duration=timedelta(minutes=30), increment=timedelta(minutes=30))

    # 01:00 EST = 06:00Z to 04:00 EDT = 08:00Z: two real hours, and no slot is lost or invented at the jump.
    assert starts == utc_hours(date(2026, 3, 8), 6, 6.5, 7, 7.5)


def test_midnight_to_six_on_london_spring_forward_day_has_only_five_hours() -> None:
    starts = slot_starts_on(every_day("Europe/London", WallInterval(time(0), time(6))), date(2026, 3, 29))

    # 00:00 GMT = 00:00Z; 01:00 GMT becomes 02:00 BST; 06:00 BST = 05:00Z.
    assert starts == utc_hours(date(2026, 3, 29), 0, 1, 2, 3, 4)


def test_midnight_to_six_on_new_york_fall_back_day_has_seven_hours() -> None:
    starts = slot_starts_on(every_day("America/New_York", WallInterval(time(0), time(6))), date(2026, 11, 1))

    # 00:00 EDT = 04:00Z; 01:00 happens twice (05:00Z EDT, 06:00Z EST); 06:00 EST = 11:00Z.
    assert starts == utc_hours(date(2026, 11, 1), 4, 5, 6, 7, 8, 9, 10)


def test_the_whole_new_york_fall_back_day_is_twenty_five_hourly_slots() -> None:
    schedule = every_day("America/New_York", WallInterval(time(0), time(0)))

    starts = slot_starts_on(schedule, date(2026, 11, 1))

    # From 00:00 EDT (04:00Z on the 1st) to the next midnight, 00:00 EST (05:00Z on the 2nd).
    assert len(starts) == 25
    assert starts[0] == datetime(2026, 11, 1, 4, 0, tzinfo=UTC)
    assert starts[-1] == datetime(2026, 11, 2, 4, 0, tzinfo=UTC)
    assert starts == [starts[0] + HOUR * index for index in range(25)]
    zone = ZoneInfo("America/New_York")
    wall_hours = [start.astimezone(zone).hour for start in starts]
    assert wall_hours == [0, 1, 1, *range(2, 24)]


def test_the_whole_london_fall_back_day_is_twenty_five_hourly_slots() -> None:
    schedule = every_day("Europe/London", WallInterval(time(0), time(0)))

    starts = slot_starts_on(schedule, date(2026, 10, 25))

    # From 00:00 BST (23:00Z on the 24th) to 00:00 GMT on the 26th (00:00Z).
    assert starts == [datetime(2026, 10, 24, 23, 0, tzinfo=UTC) + HOUR * index for index in range(25)]


def test_the_whole_new_york_spring_forward_day_is_twenty_three_hourly_slots() -> None:
    schedule = every_day("America/New_York", WallInterval(time(0), time(0)))

    starts = slot_starts_on(schedule, date(2026, 3, 8))

    # From 00:00 EST (05:00Z on the 8th) to 00:00 EDT on the 9th (04:00Z).
    assert starts == [datetime(2026, 3, 8, 5, 0, tzinfo=UTC) + HOUR * index for index in range(23)]


def test_a_kolkata_day_is_offered_on_the_half_hour_in_utc() -> None:
    starts = slot_starts_on(every_day("Asia/Kolkata", NINE_TO_FIVE), date(2026, 3, 29))

    # IST is UTC+05:30 all year: 09:00 IST = 03:30Z and 16:00 IST = 10:30Z.
    assert starts == [datetime(2026, 3, 29, 3, 30, tzinfo=UTC) + HOUR * index for index in range(8)]


def test_a_panel_across_new_york_and_london_shares_more_hours_in_the_weeks_their_clocks_disagree() -> None:
    # 2026-03-16: New York is already on EDT (UTC-4), London still on GMT: 09:00-17:00 overlap is 13:00Z-17:00Z.
    # 2026-03-30: both on summer time (UTC-4 and UTC+1): the overlap shrinks to 13:00Z-16:00Z.
    new_york = HostAvailability("ny", every_day("America/New_York", NINE_TO_FIVE))
    london = HostAvailability("ldn", every_day("Europe/London", NINE_TO_FIVE))

    def panel_starts(day: date) -> list[datetime]:
        query = SlotQuery(
            rules=SlotRules(duration=HOUR, increment=HOUR),
            hosts=(new_york, london),
            mode=HostMode.PANEL,
            range_start=datetime.combine(day, time(0), tzinfo=UTC),
            range_end=datetime.combine(day, time(0), tzinfo=UTC) + timedelta(days=1),
            now=datetime(2026, 3, 1, tzinfo=UTC),
        )
        return [slot.starts_at for slot in compute_slots(query)]

    assert panel_starts(date(2026, 3, 16)) == utc_hours(date(2026, 3, 16), 13, 14, 15, 16)
    assert panel_starts(date(2026, 3, 30)) == utc_hours(date(2026, 3, 30), 13, 14, 15)
