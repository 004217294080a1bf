"""The slot engine: which starts are bookable, for whom, and why a given start is not."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from scheduling.availability import (
    Seconds,
    epoch,
    epoch_ceil,
    from_epoch,
    local_dates,
    local_midnight,
    notice_ends,
    window_ends,
    working_day,
)
from scheduling.model import (
    BusyKind,
    HostAvailability,
    HostMode,
    Reason,
    ReasonCode,
    Slot,
    SlotQuery,
    utc,
)


def compute_slots(query: SlotQuery) -> list[Slot]:
    """Bookable slots in [range_start, range_end), sorted by start, in UTC.

    A start is offered to a host when the meeting lies inside one working interval of a local day, on that day's
    increment grid (counted from local midnight), its buffers touch no calendar event, the meeting touches no
    event and no other booking's buffer, it is at or after the minimum notice and before the window closes.
    USER and PANEL need every host free; ROUND_ROBIN needs at least one, and lists all free ones.
    """
    per_host = [_host_starts(query, host) for host in query.hosts]
    duration = query.rules.duration
    if not per_host:
        return []
    if query.mode is HostMode.ROUND_ROBIN:
        free: dict[Seconds, list[str]] = {}
        for host, starts in zip(query.hosts, per_host, strict=True):
            host_id = host.host_id
            for start in starts:
                bucket = free.get(start)
                if bucket is None:
                    free[start] = [host_id]
                else:
                    bucket.append(host_id)
        ordered = sorted(free)
        return [
            Slot(moment, moment + duration, tuple(free[start]))
            for start, moment in zip(ordered, map(from_epoch, ordered), strict=True)
        ]
    common = set(per_host[0])
    for starts in per_host[1:]:
        common.intersection_update(starts)
    everyone = tuple(host.host_id for host in query.hosts)
    return [Slot(moment, moment + duration, everyone) for moment in map(from_epoch, sorted(common))]


def _host_starts(query: SlotQuery, host: HostAvailability) -> list[Seconds]:
    rules = query.rules
    schedule = host.schedule
    duration = int(rules.duration.total_seconds())
    increment = int(rules.increment.total_seconds())
    before = int(rules.buffer_before.total_seconds())
    after = int(rules.buffer_after.total_seconds())
    now = epoch_ceil(query.now)
    earliest = max(epoch_ceil(query.range_start), notice_ends(schedule, query.holidays, now, rules.notice))
    latest = min(epoch_ceil(query.range_end), window_ends(schedule, query.holidays, now, rules.window))
    if earliest >= latest:
        return []
    blocked = _blocked_starts(host, duration, before, after)
    count = len(blocked)
    starts: list[Seconds] = []
    append = starts.append
    j = 0
    for day in local_dates(schedule, earliest, latest):
        midnight = local_midnight(schedule, day)
        for work_start, work_end in working_day(schedule, query.holidays, day):
            last = min(work_end - duration, latest - 1)
            first = max(work_start, earliest)
            if first > last:
                continue
            start = midnight - ((midnight - first) // increment) * increment
            # Blocked ranges are sorted by their left edge and merged, so one forward pointer serves the whole walk.
            while start <= last:
                while j < count and blocked[j][1] <= start:
                    j += 1
                if j < count and blocked[j][0] < start:
                    edge = blocked[j][1]
                    start = midnight - ((midnight - edge) // increment) * increment
                    continue
                append(start)
                start += increment
    return starts


def _blocked_starts(host: HostAvailability, duration: int, before: int, after: int) -> list[tuple[int, int]]:
    """Open intervals (a, b) of starts that would collide, merged; a start equal to an edge is fine."""
    event = BusyKind.EVENT
    event_left = duration + after
    spans = [
        (busy.start_second - event_left, busy.end_second + before)
        if busy.kind is event
        else (busy.start_second - duration, busy.end_second)
        for busy in host.busy
    ]
    spans.sort()
    merged: list[tuple[int, int]] = []
    append = merged.append
    last_left, last_right = 0, None
    for left, right in spans:
        if last_right is not None and left < last_right:
            if right > last_right:
                last_right = right
        else:
            if last_right is not None:
                append((last_left, last_right))
            last_left, last_right = left, right
    if last_right is not None:
        append((last_left, last_right))
    return merged


def explain_start(query: SlotQuery, starts_at: datetime) -> list[Reason]:
    """Every reason each host cannot take `starts_at`; an empty list means it would be offered.

    For ROUND_ROBIN the start is offered if any host has no reasons, so callers check per host.
    """
    start_at = utc(starts_at)
    start = epoch(start_at)
    rules = query.rules
    duration = int(rules.duration.total_seconds())
    increment = int(rules.increment.total_seconds())
    before = int(rules.buffer_before.total_seconds())
    after = int(rules.buffer_after.total_seconds())
    end = start + duration
    now = epoch_ceil(query.now)
    reasons: list[Reason] = []
    for host in query.hosts:
        schedule = host.schedule
        host_id = host.host_id
        local = start_at.astimezone(schedule.time_zone)

        def add(code: ReasonCode, message: str, host_id: str = host_id) -> None:
            reasons.append(Reason(code, host_id, message))

        if not epoch_ceil(query.range_start) <= start < epoch_ceil(query.range_end):
            add(ReasonCode.OUTSIDE_RANGE, "the time is outside the requested date range")
        day = local.date()
        if day in query.holidays:
            add(ReasonCode.HOLIDAY, f"{day.isoformat()} is a company holiday")
        else:
            inside = any(
                work_start <= start and end <= work_end
                for work_start, work_end in working_day(schedule, query.holidays, day)
            )
            if not inside:
                local_end = from_epoch(end).astimezone(schedule.time_zone)
                add(
                    ReasonCode.OUTSIDE_HOURS,
                    f"{local:%H:%M}-{local_end:%H:%M} ({schedule.time_zone.key}) is outside working hours",
                )
            elif (start - local_midnight(schedule, day)) % increment:
                add(ReasonCode.INCREMENT, f"slots start every {increment // 60} minutes")
        earliest = notice_ends(schedule, query.holidays, now, rules.notice)
        if start < earliest:
            add(
                ReasonCode.NOTICE,
                f"needs {rules.notice.describe()} notice (earliest {from_epoch(earliest).isoformat()})",
            )
        if start >= window_ends(schedule, query.holidays, now, rules.window):
            add(ReasonCode.WINDOW, f"beyond the {rules.window.describe()} scheduling window")
        for busy in host.busy:
            busy_start = busy.start_second
            busy_end = busy.end_second
            if busy_start < end and start < busy_end:
                code = ReasonCode.BUSY if busy.kind is BusyKind.EVENT else ReasonCode.BUFFER
                what = "overlaps" if code is ReasonCode.BUSY else "overlaps buffer time of"
                add(code, f"{what} {busy.label} ({busy.starts_at.isoformat()} to {busy.ends_at.isoformat()})")
            elif busy.kind is BusyKind.EVENT and busy_start < end + after and start - before < busy_end:
                add(ReasonCode.BUFFER, f"the buffer around this meeting overlaps {busy.label}")
    return reasons


def next_free_starts(slots: Iterable[Slot], after: datetime, limit: int = 3) -> list[datetime]:
    """The first `limit` slot starts strictly after `after`; used to suggest alternatives on a conflict."""
    found: list[datetime] = []
    for slot in slots:
        if slot.starts_at > after:
            found.append(slot.starts_at)
            if len(found) == limit:
                break
    return found
