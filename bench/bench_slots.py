"""Slot engine benchmark: a 20-person round robin over 60 days with 10,000 busy intervals, against a straightforward
reference sweep measured in the same run (run: .venv/bin/python bench/bench_slots.py).

The reference is the obvious implementation: per host, merge busy time (events widened by the buffers), subtract it
from each day's working intervals, step through what is left on the increment grid, then union across hosts.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as wall_time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
from scheduling.slots import compute_slots

MEMBERS = 20
BUSY = 10_000
DAYS = 60
RUNS = 30
WARM_UP = 3
TARGET_RATIO = 1.5
TARGET_MS = 10.0
ZONES = ("America/New_York", "Europe/London", "Asia/Kolkata", "UTC", "Australia/Sydney", "America/Los_Angeles")
# Starts before the March changes in New York, London and Sydney so every DST trap is inside the range.
RANGE_START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
NOW = RANGE_START - timedelta(hours=6)


def build_query(seed: int = 20260302) -> SlotQuery:
    generator = random.Random(seed)
    office = (WallInterval(wall_time(9), wall_time(17)),)
    week = (office, office, office, office, office, (), ())
    range_end = RANGE_START + timedelta(days=DAYS)
    span_minutes = DAYS * 24 * 60
    hosts = []
    for index in range(MEMBERS):
        busy = []
        for number in range(BUSY // MEMBERS):
            starts_at = RANGE_START + timedelta(minutes=5 * generator.randrange(span_minutes // 5))
            length = timedelta(minutes=15 * generator.randint(1, 8))
            kind = BusyKind.BUFFER if generator.random() < 0.1 else BusyKind.EVENT
            busy.append(BusyInterval(starts_at, starts_at + length, kind, f"meeting {number}"))
        schedule = WorkingSchedule(ZoneInfo(ZONES[index % len(ZONES)]), week)
        hosts.append(HostAvailability(f"rep{index}", schedule, tuple(busy)))
    return SlotQuery(
        rules=SlotRules(
            duration=timedelta(minutes=30),
            increment=timedelta(minutes=15),
            buffer_before=timedelta(minutes=5),
            buffer_after=timedelta(minutes=10),
            notice=Span(4, SpanUnit.HOURS),
            window=Span(60, SpanUnit.DAYS),
        ),
        hosts=tuple(hosts),
        mode=HostMode.ROUND_ROBIN,
        range_start=RANGE_START,
        range_end=range_end,
        now=NOW,
    )


def seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def reference_slots(query: SlotQuery) -> list[Slot]:
    """Working intervals minus merged busy time, stepped on the grid; calendar notice and window only."""
    rules = query.rules
    duration = int(rules.duration.total_seconds())
    increment = int(rules.increment.total_seconds())
    before = int(rules.buffer_before.total_seconds())
    after = int(rules.buffer_after.total_seconds())
    earliest = max(seconds(query.range_start), seconds(query.now + rules.notice.as_timedelta()))
    latest = min(seconds(query.range_end), seconds(query.now + rules.window.as_timedelta()))
    free_hosts: dict[int, list[str]] = {}
    for host in query.hosts:
        zone = host.schedule.time_zone
        # A meeting may not touch an event with its buffers, so events grow by the buffers; bookings' buffers don't.
        busy = merge(
            [
                (seconds(b.starts_at) - after, seconds(b.ends_at) + before)
                if b.kind is BusyKind.EVENT
                else (seconds(b.starts_at), seconds(b.ends_at))
                for b in host.busy
            ]
        )
        cursor = 0
        day = query.range_start.astimezone(zone).date() - timedelta(days=1)
        last_day = query.range_end.astimezone(zone).date() + timedelta(days=1)
        while day <= last_day:
            midnight = seconds(datetime.combine(day, wall_time(0), tzinfo=zone))
            for work_start, work_end in working_intervals(host.schedule, query.holidays, day):
                while cursor < len(busy) and busy[cursor][1] <= work_start:
                    cursor += 1
                free_start = work_start
                index = cursor
                while free_start < work_end:
                    if index < len(busy) and busy[index][0] < work_end:
                        free_end = min(busy[index][0], work_end)
                    else:
                        free_end = work_end
                    start = max(free_start, earliest)
                    start = midnight + -(-(start - midnight) // increment) * increment
                    while start + duration <= free_end and start < latest:
                        free_hosts.setdefault(start, []).append(host.host_id)
                        start += increment
                    if index < len(busy) and busy[index][0] < work_end:
                        free_start = busy[index][1]
                        index += 1
                    else:
                        break
            day += timedelta(days=1)
    starts = {start: datetime.fromtimestamp(start, UTC) for start in free_hosts}
    return [
        Slot(starts[start], starts[start] + rules.duration, tuple(free_hosts[start])) for start in sorted(free_hosts)
    ]


def working_intervals(schedule: WorkingSchedule, holidays: frozenset[date], day: date) -> list[tuple[int, int]]:
    if day in holidays:
        return []
    zone = schedule.time_zone
    spans = []
    for wall in schedule.intervals_on(day):
        start = seconds(datetime.combine(day, wall.starts, tzinfo=zone))
        end_day = day + timedelta(days=1) if wall.ends == wall_time(0) else day
        end = seconds(datetime.combine(end_day, wall.ends, tzinfo=zone))
        if end > start:
            spans.append((start, end))
    return merge(spans)


def measure(function: Callable[[SlotQuery], list[Slot]], query: SlotQuery) -> list[float]:
    for _ in range(WARM_UP):
        function(query)
    timings = []
    for _ in range(RUNS):
        began = time.perf_counter()
        function(query)
        timings.append((time.perf_counter() - began) * 1000)
    return timings


def p95(timings: list[float]) -> float:
    return statistics.quantiles(timings, n=20)[-1]


def main() -> int:
    query = build_query()
    engine = compute_slots(query)
    reference = reference_slots(query)
    assert [(s.starts_at, s.ends_at, s.host_ids) for s in engine] == [
        (s.starts_at, s.ends_at, s.host_ids) for s in reference
    ], "engine and reference sweep disagree"
    offered = sum(len(slot.host_ids) for slot in engine)
    print(f"{MEMBERS} hosts, {DAYS} days, {BUSY} busy intervals: {len(engine)} slots, {offered} host-slots")

    engine_ms = measure(compute_slots, query)
    reference_ms = measure(reference_slots, query)
    ratio = statistics.median(engine_ms) / statistics.median(reference_ms)
    print(f"engine     median {statistics.median(engine_ms):7.2f} ms  p95 {p95(engine_ms):7.2f} ms  ({RUNS} runs)")
    print(
        f"reference  median {statistics.median(reference_ms):7.2f} ms  p95 {p95(reference_ms):7.2f} ms  ({RUNS} runs)"
    )
    print(f"ratio engine/reference {ratio:.2f}x (target <= {TARGET_RATIO}x, engine <= {TARGET_MS:.0f} ms)")
    within = ratio <= TARGET_RATIO and statistics.median(engine_ms) <= TARGET_MS
    print("within target" if within else "OUTSIDE TARGET")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
