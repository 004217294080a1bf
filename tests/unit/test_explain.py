"""explain_start names every reason a start is refused, and has nothing to say about a start that is offered."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduling.model import (
    BusyInterval,
    BusyKind,
    HostAvailability,
    HostMode,
    ReasonCode,
    SlotQuery,
    SlotRules,
    Span,
    SpanUnit,
    WallInterval,
    WorkingSchedule,
)
from scheduling.slots import compute_slots, explain_start
from tests.unit.slot_oracle import slot_queries

HOUR = timedelta(hours=1)
LONDON = ZoneInfo("Europe/London")
OFFICE_HOURS = (WallInterval(time(9), time(17)),)
NO_NOTICE = Span(0, SpanUnit.MINUTES)
TWO_WEEKS = Span(14, SpanUnit.DAYS)
# 2026-02-02 is a Monday; London is on GMT, so local times equal UTC.
MONDAY = date(2026, 2, 2)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def london_query(
    *,
    busy: tuple[BusyInterval, ...] = (),
    buffer_before: timedelta = timedelta(0),
    buffer_after: timedelta = timedelta(0),
    notice: Span = NO_NOTICE,
    window: Span = TWO_WEEKS,
    holidays: frozenset[date] = frozenset(),
    increment: timedelta = timedelta(minutes=30),
) -> SlotQuery:
    schedule = WorkingSchedule(LONDON, (OFFICE_HOURS,) * 5 + ((), ()))
    return SlotQuery(
        rules=SlotRules(
            duration=HOUR,
            increment=increment,
            buffer_before=buffer_before,
            buffer_after=buffer_after,
            notice=notice,
            window=window,
        ),
        hosts=(HostAvailability("sam", schedule, busy),),
        mode=HostMode.USER,
        range_start=at(MONDAY, 0),
        range_end=at(MONDAY + timedelta(days=7), 0),
        now=at(MONDAY - timedelta(days=1), 12),
        holidays=holidays,
    )


def codes(query: SlotQuery, starts_at: datetime) -> list[ReasonCode]:
    return [reason.code for reason in explain_start(query, starts_at)]


def test_an_offered_start_has_no_reasons() -> None:
    query = london_query()

    assert at(MONDAY, 10) in {slot.starts_at for slot in compute_slots(query)}
    assert explain_start(query, at(MONDAY, 10)) == []


def test_a_start_that_overlaps_an_event_names_the_event_by_its_label() -> None:
    review = BusyInterval(at(MONDAY, 10, 30), at(MONDAY, 11, 30), BusyKind.EVENT, "Quarterly review")

    reasons = explain_start(london_query(busy=(review,)), at(MONDAY, 10))

    assert [reason.code for reason in reasons] == [ReasonCode.BUSY]
    assert "Quarterly review" in reasons[0].message
    assert reasons[0].host_id == "sam"


def test_a_start_that_overlaps_another_bookings_buffer_is_a_buffer_reason() -> None:
    cool_down = BusyInterval(at(MONDAY, 10, 45), at(MONDAY, 11, 15), BusyKind.BUFFER, "Onboarding call")

    reasons = explain_start(london_query(busy=(cool_down,)), at(MONDAY, 10))

    assert [reason.code for reason in reasons] == [ReasonCode.BUFFER]
    assert "Onboarding call" in reasons[0].message


def test_a_start_whose_own_buffer_touches_an_event_is_a_buffer_reason_naming_the_event() -> None:
    stand_up = BusyInterval(at(MONDAY, 11, 0), at(MONDAY, 11, 15), BusyKind.EVENT, "Stand-up")
    query = london_query(busy=(stand_up,), buffer_after=timedelta(minutes=15))

    reasons = explain_start(query, at(MONDAY, 10))

    assert [reason.code for reason in reasons] == [ReasonCode.BUFFER]
    assert "Stand-up" in reasons[0].message
    assert at(MONDAY, 10) not in {slot.starts_at for slot in compute_slots(query)}


def test_a_meeting_ending_exactly_when_an_event_starts_is_fine_without_buffers() -> None:
    stand_up = BusyInterval(at(MONDAY, 11, 0), at(MONDAY, 11, 15), BusyKind.EVENT, "Stand-up")

    assert explain_start(london_query(busy=(stand_up,)), at(MONDAY, 10)) == []


def test_a_start_before_opening_or_running_past_closing_is_outside_hours() -> None:
    query = london_query()

    assert codes(query, at(MONDAY, 7)) == [ReasonCode.OUTSIDE_HOURS]
    assert codes(query, at(MONDAY, 16, 30)) == [ReasonCode.OUTSIDE_HOURS]
    assert codes(query, at(MONDAY + timedelta(days=5), 10)) == [ReasonCode.OUTSIDE_HOURS]  # Saturday


def test_a_start_on_a_holiday_is_a_holiday_reason_naming_the_date() -> None:
    reasons = explain_start(london_query(holidays=frozenset({MONDAY})), at(MONDAY, 10))

    assert [reason.code for reason in reasons] == [ReasonCode.HOLIDAY]
    assert "2026-02-02" in reasons[0].message


def test_a_start_off_the_increment_grid_is_an_increment_reason() -> None:
    reasons = explain_start(london_query(increment=timedelta(minutes=30)), at(MONDAY, 10, 10))

    assert [reason.code for reason in reasons] == [ReasonCode.INCREMENT]
    assert "30 minutes" in reasons[0].message


def test_a_start_inside_the_minimum_notice_is_a_notice_reason() -> None:
    query = london_query(notice=Span(2, SpanUnit.DAYS))

    reasons = explain_start(query, at(MONDAY, 10))

    assert [reason.code for reason in reasons] == [ReasonCode.NOTICE]
    assert "2 days" in reasons[0].message
    assert explain_start(query, at(MONDAY + timedelta(days=1), 12)) == []


def test_a_start_beyond_the_scheduling_window_is_a_window_reason() -> None:
    query = london_query(window=Span(2, SpanUnit.BUSINESS_DAYS))

    reasons = explain_start(query, at(MONDAY + timedelta(days=2), 10))

    # Sunday's window of two business days covers Monday and Tuesday only.
    assert [reason.code for reason in reasons] == [ReasonCode.WINDOW]
    assert "2 business days" in reasons[0].message
    assert explain_start(query, at(MONDAY + timedelta(days=1), 15)) == []


def test_a_start_outside_the_requested_range_is_an_outside_range_reason() -> None:
    assert codes(london_query(), at(MONDAY + timedelta(days=7), 10)) == [ReasonCode.OUTSIDE_RANGE]


def test_every_reason_is_listed_when_several_apply() -> None:
    lunch = BusyInterval(at(MONDAY, 12), at(MONDAY, 13), BusyKind.EVENT, "Lunch with client")
    query = london_query(busy=(lunch,), notice=Span(2, SpanUnit.DAYS))

    assert set(codes(query, at(MONDAY, 12, 10))) == {ReasonCode.INCREMENT, ReasonCode.NOTICE, ReasonCode.BUSY}


def test_reasons_are_given_per_host_of_a_panel() -> None:
    busy_host = HostAvailability(
        "ana",
        WorkingSchedule(LONDON, (OFFICE_HOURS,) * 7),
        (BusyInterval(at(MONDAY, 10), at(MONDAY, 11), BusyKind.EVENT, "Dentist"),),
    )
    free_host = HostAvailability("ben", WorkingSchedule(LONDON, (OFFICE_HOURS,) * 7))
    query = SlotQuery(
        rules=SlotRules(duration=HOUR, increment=HOUR),
        hosts=(free_host, busy_host),
        mode=HostMode.PANEL,
        range_start=at(MONDAY, 0),
        range_end=at(MONDAY, 23),
        now=at(MONDAY, 0),
    )

    reasons = explain_start(query, at(MONDAY, 10))

    assert [(reason.code, reason.host_id) for reason in reasons] == [(ReasonCode.BUSY, "ana")]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(query=slot_queries(modes=(HostMode.USER, HostMode.PANEL)), data=st.data())
def test_explain_start_is_empty_exactly_for_the_starts_compute_slots_offers(
    query: SlotQuery, data: st.DataObject
) -> None:
    offered = {slot.starts_at for slot in compute_slots(query)}
    span_minutes = int((query.range_end - query.range_start) / timedelta(minutes=1))
    probes = data.draw(st.lists(st.integers(-60, span_minutes + 60), max_size=40))

    for starts_at in offered:
        assert explain_start(query, starts_at) == [], starts_at
    for minute in probes:
        starts_at = query.range_start + timedelta(minutes=minute)
        assert (explain_start(query, starts_at) == []) == (starts_at in offered), starts_at


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(query=slot_queries(modes=(HostMode.ROUND_ROBIN,)))
def test_explain_start_clears_exactly_the_hosts_a_round_robin_slot_lists(query: SlotQuery) -> None:
    for slot in compute_slots(query):
        refused = {reason.host_id for reason in explain_start(query, slot.starts_at)}
        assert tuple(host.host_id for host in query.hosts if host.host_id not in refused) == slot.host_ids
