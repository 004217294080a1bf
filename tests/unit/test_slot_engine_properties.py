"""Hypothesis properties of the slot engine, checked against a brute-force minute-grid oracle."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scheduling.model import (
    BusyInterval,
    BusyKind,
    HostAvailability,
    HostMode,
    SlotQuery,
    SlotRules,
    WallInterval,
    WorkingSchedule,
)
from scheduling.slots import compute_slots
from tests.unit.slot_oracle import HostOracle, as_pairs, expected_slots, minutes_of, slot_queries, to_minute

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def oracles_by_host(query: SlotQuery) -> dict[str, HostOracle]:
    return {host.host_id: HostOracle(host, query.holidays) for host in query.hosts}


@pytest.mark.parametrize("mode", list(HostMode))
@PROPERTY_SETTINGS
@given(data=st.data())
def test_engine_offers_exactly_the_starts_the_minute_grid_oracle_finds(mode: HostMode, data: st.DataObject) -> None:
    query = data.draw(slot_queries(modes=(mode,)))

    assert as_pairs(compute_slots(query)) == expected_slots(query)


@PROPERTY_SETTINGS
@given(query=slot_queries())
def test_slots_are_sorted_unique_utc_and_exactly_one_meeting_long(query: SlotQuery) -> None:
    slots = compute_slots(query)

    starts = [slot.starts_at for slot in slots]
    assert starts == sorted(set(starts))
    for slot in slots:
        assert slot.starts_at.utcoffset() == timedelta(0)
        assert slot.starts_at.tzinfo is UTC
        assert slot.ends_at - slot.starts_at == query.rules.duration


@PROPERTY_SETTINGS
@given(query=slot_queries())
def test_slots_never_overlap_busy_time_or_buffers(query: SlotQuery) -> None:
    rules = query.rules
    hosts = {host.host_id: host for host in query.hosts}

    for slot in compute_slots(query):
        buffered_start = slot.starts_at - rules.buffer_before
        buffered_end = slot.ends_at + rules.buffer_after
        for host_id in slot.host_ids:
            for busy in hosts[host_id].busy:
                assert not (busy.starts_at < slot.ends_at and slot.starts_at < busy.ends_at), (slot, busy)
                if busy.kind is BusyKind.EVENT:
                    assert not (busy.starts_at < buffered_end and buffered_start < busy.ends_at), (slot, busy)


@PROPERTY_SETTINGS
@given(query=slot_queries())
def test_slots_lie_inside_one_working_interval_of_one_local_day(query: SlotQuery) -> None:
    oracles = oracles_by_host(query)

    for slot in compute_slots(query):
        for host_id in slot.host_ids:
            oracle = oracles[host_id]
            start = to_minute(slot.starts_at)
            day = oracle.local_date(start)
            assert day not in query.holidays
            working = oracle.working_set(day)
            assert all(minute in working for minute in range(start, to_minute(slot.ends_at))), (slot, host_id)


@PROPERTY_SETTINGS
@given(query=slot_queries())
def test_slots_respect_range_notice_window_and_increment(query: SlotQuery) -> None:
    rules = query.rules
    oracles = oracles_by_host(query)
    now = to_minute(query.now)

    for slot in compute_slots(query):
        assert query.range_start <= slot.starts_at < query.range_end
        start = to_minute(slot.starts_at)
        for host_id in slot.host_ids:
            oracle = oracles[host_id]
            assert start >= oracle.earliest_start(now, rules.notice), (slot, host_id)
            assert start < oracle.latest_start_exclusive(now, rules.window), (slot, host_id)
            assert (start - oracle.midnight(oracle.local_date(start))) % minutes_of(rules.increment) == 0


@PROPERTY_SETTINGS
@given(query=slot_queries(modes=(HostMode.ROUND_ROBIN,)))
def test_every_round_robin_slot_lists_exactly_its_free_hosts_in_configured_order(query: SlotQuery) -> None:
    free = {host.host_id: HostOracle(host, query.holidays).free_starts(query) for host in query.hosts}
    configured = [host.host_id for host in query.hosts]

    for slot in compute_slots(query):
        start = to_minute(slot.starts_at)
        assert slot.host_ids, slot
        assert list(slot.host_ids) == [host_id for host_id in configured if start in free[host_id]]


@PROPERTY_SETTINGS
@given(query=slot_queries(modes=(HostMode.USER, HostMode.PANEL)))
def test_user_and_panel_slots_name_every_host(query: SlotQuery) -> None:
    everyone = tuple(host.host_id for host in query.hosts)

    assert all(slot.host_ids == everyone for slot in compute_slots(query))


@PROPERTY_SETTINGS
@given(query=slot_queries(modes=(HostMode.USER,)), data=st.data())
def test_a_slot_stays_offered_when_events_end_and_start_exactly_at_its_buffer_edges(
    query: SlotQuery, data: st.DataObject
) -> None:
    slots = compute_slots(query)
    assume(slots)
    slot = data.draw(st.sampled_from(slots))
    rules = query.rules
    host = query.hosts[0]
    before_edge = slot.starts_at - rules.buffer_before
    after_edge = slot.ends_at + rules.buffer_after
    hemmed_in = replace(
        host,
        busy=(
            *host.busy,
            BusyInterval(before_edge - timedelta(minutes=30), before_edge, BusyKind.EVENT, "earlier call"),
            BusyInterval(after_edge, after_edge + timedelta(minutes=30), BusyKind.EVENT, "later call"),
        ),
    )
    one_minute_closer = replace(
        host,
        busy=(*host.busy, BusyInterval(after_edge - timedelta(minutes=1), after_edge, BusyKind.EVENT, "later call")),
    )

    assert slot.starts_at in {found.starts_at for found in compute_slots(replace(query, hosts=(hemmed_in,)))}
    assert slot.starts_at not in {
        found.starts_at for found in compute_slots(replace(query, hosts=(one_minute_closer,)))
    }


def office_hours_query(now: datetime, busy: tuple[BusyInterval, ...] = ()) -> SlotQuery:
    office = (WallInterval(time(9), time(17)),)
    schedule = WorkingSchedule(ZoneInfo("UTC"), (office,) * 7)
    return SlotQuery(
        rules=SlotRules(duration=timedelta(minutes=30), increment=timedelta(minutes=30)),
        hosts=(HostAvailability("pat", schedule, busy),),
        mode=HostMode.USER,
        range_start=datetime(2026, 1, 5, tzinfo=UTC),
        range_end=datetime(2026, 1, 6, tzinfo=UTC),
        now=now,
    )


def test_a_start_a_fraction_of_a_second_in_the_past_is_not_offered() -> None:
    query = office_hours_query(now=datetime(2026, 1, 5, 9, 0, 0, 400_000, tzinfo=UTC))

    assert datetime(2026, 1, 5, 9, 0, tzinfo=UTC) not in {slot.starts_at for slot in compute_slots(query)}


def test_a_start_half_a_second_before_an_event_ends_is_not_offered() -> None:
    overrun = BusyInterval(
        datetime(2026, 1, 5, 9, 0, tzinfo=UTC), datetime(2026, 1, 5, 9, 30, 0, 500_000, tzinfo=UTC), BusyKind.EVENT
    )
    query = office_hours_query(now=datetime(2026, 1, 4, tzinfo=UTC), busy=(overrun,))

    assert datetime(2026, 1, 5, 9, 30, tzinfo=UTC) not in {slot.starts_at for slot in compute_slots(query)}
