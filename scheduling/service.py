"""Booking use cases: list slots, book, reschedule, cancel and explain, on top of the pure engine and the ports."""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scheduling.errors import (
    BookingChanged,
    DuplicateRequest,
    IdempotencyKeyReused,
    InvalidRequest,
    LinkExpired,
    NotFound,
    SlotUnavailable,
)
from scheduling.model import (
    Booking,
    BookingStatus,
    BookingTarget,
    ClientDetails,
    HostAvailability,
    HostLoad,
    HostMode,
    Reason,
    SchedulingRequest,
    Slot,
    SlotQuery,
    SlotRules,
    utc,
)
from scheduling.ports import BookingStore, Clock, HostDecision
from scheduling.slots import compute_slots, explain_start, next_free_starts

MAX_RANGE = timedelta(days=62)
MAX_NAME = 200
MAX_EMAIL = 254
MAX_NOTES = 2000
MAX_GUESTS = 10
# Deliberately simple: one @, a dot in the domain, no spaces or control characters. Deliverability is the
# mail server's job; this only catches typos a person would want pointed out.
_EMAIL = re.compile(r"^[^@\s\x00-\x1f<>\"]+@[^@\s\x00-\x1f<>\"]+\.[^@\s\x00-\x1f<>\".]+$")


EARLIEST_DAY = date(1970, 1, 1)
LATEST_DAY = date(2999, 12, 31)
"""The dates Slotwise schedules in. Outside them a client gets a clear 400, never a datetime overflow (year 1 minus
a day, year 9999 plus a fortnight) or a time before the epoch that PostgreSQL and SQLite store differently."""


def check_day(day: date, field: str) -> date:
    """`day` itself if Slotwise can schedule on it; raises InvalidRequest naming `field` otherwise."""
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise InvalidRequest(
            f"{day.isoformat()} is outside the dates Slotwise can schedule ({EARLIEST_DAY.year} to {LATEST_DAY.year})",
            field=field,
        )
    return day


def parse_time_zone(name: str) -> ZoneInfo:
    """An IANA zone such as Europe/London; raises InvalidRequest with a readable message otherwise.

    A tzdata folder ("America") raises IsADirectoryError and a NUL raises ValueError inside zoneinfo, so every
    failure to load counts as "not a time zone"."""
    if not name or len(name) > 64 or ".." in name or name.startswith("/") or "\x00" in name:
        raise InvalidRequest(
            f"'{name[:64]}' is not a time zone; use an IANA name such as Europe/London", field="time_zone"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidRequest(
            f"'{name}' is not a time zone; use an IANA name such as Europe/London", field="time_zone"
        ) from exc


def validate_email(value: str, *, field: str = "email") -> str:
    email = value.strip()
    if len(email) > MAX_EMAIL or not _EMAIL.match(email):
        raise InvalidRequest(f"'{email[:80]}' is not a valid email address", field=field)
    return email


def validate_client(target: BookingTarget, client: ClientDetails) -> ClientDetails:
    """Check lengths, emails, zone and required answers; returns the cleaned details."""
    name = client.name.strip()
    if not name:
        raise InvalidRequest("Please enter your name", field="name")
    if len(name) > MAX_NAME:
        raise InvalidRequest(f"Name is too long (at most {MAX_NAME} characters)", field="name")
    email = validate_email(client.email)
    parse_time_zone(client.time_zone)
    if len(client.notes) > MAX_NOTES:
        raise InvalidRequest(f"Notes are too long (at most {MAX_NOTES} characters)", field="notes")
    if len(client.guests) > MAX_GUESTS:
        raise InvalidRequest(f"At most {MAX_GUESTS} guests can be invited", field="guests")
    guests = tuple(validate_email(guest, field="guests") for guest in client.guests)
    if target.request is not None:
        guests = tuple(dict.fromkeys(target.request.guests + guests))
    answers: dict[str, str] = {}
    known = {question.key: question for question in target.appointment_type.questions}
    for key in client.answers:
        if key not in known:
            raise InvalidRequest(f"Unknown question '{key[:40]}'", field=f"answers.{key[:40]}")
    for question in target.appointment_type.questions:
        answer = str(client.answers.get(question.key, "")).strip()
        if question.required and not answer:
            raise InvalidRequest(f"Please answer: {question.label}", field=f"answers.{question.key}")
        if len(answer) > question.max_length:
            raise InvalidRequest(
                f"The answer to '{question.label}' is too long (at most {question.max_length} characters)",
                field=f"answers.{question.key}",
            )
        if answer:
            answers[question.key] = answer
    return ClientDetails(name, email, client.time_zone, answers, guests, client.notes.strip(), client.locale)


def effective_rules(target: BookingTarget) -> SlotRules:
    rules = target.appointment_type.rules
    request = target.request
    if request is None:
        return rules
    return SlotRules(
        duration=target.duration,
        increment=rules.increment,
        buffer_before=rules.buffer_before,
        buffer_after=rules.buffer_after,
        notice=rules.notice,
        # The request's own window bounds are applied to the range (build_query); the type's maximum scheduling
        # window still holds, so a request's window is clipped to it.
        window=rules.window,
    )


def build_query(
    target: BookingTarget, loads: Mapping[str, HostLoad], range_start: datetime, range_end: datetime, now: datetime
) -> SlotQuery:
    request = target.request
    if request is not None:
        if request.window_starts_at is not None:
            range_start = max(range_start, request.window_starts_at)
        if request.window_ends_at is not None:
            range_end = min(range_end, request.window_ends_at)
    hosts = tuple(
        HostAvailability(host.user_id, host.schedule, loads[host.user_id].busy if host.user_id in loads else ())
        for host in target.hosts
    )
    return SlotQuery(
        rules=effective_rules(target),
        hosts=hosts,
        mode=target.appointment_type.mode,
        range_start=utc(range_start),
        range_end=utc(max(range_start, range_end)),
        now=utc(now),
        holidays=target.holidays,
    )


def decide_hosts(
    target: BookingTarget,
    starts_at: datetime,
    now: datetime,
    loads: Mapping[str, HostLoad],
    *,
    prefer: tuple[str, ...] = (),
) -> HostDecision:
    """Pick the host(s) for `starts_at` from authoritative loads, or raise SlotUnavailable with alternatives.

    Round robin picks the free member booked least recently (never-booked first, ties by configured order), so
    bookings spread evenly; the returned sentence says why, for the run log and the agent.
    """
    # Only the one requested start is evaluated: this runs under the write lock, so it must stay cheap.
    # Alternatives for a refusal are computed afterwards, outside the transaction.
    start = utc(starts_at)
    slots = compute_slots(build_query(target, loads, start, start + timedelta(seconds=1), now))
    match = slots[0] if slots and slots[0].starts_at == start else None
    if match is None:
        raise SlotUnavailable("That time is no longer available")
    if target.appointment_type.mode is not HostMode.ROUND_ROBIN:
        if len(match.host_ids) == 1:
            return match.host_ids, "the appointment type has one host"
        return match.host_ids, "panel: every member is free"
    order = {host.user_id: index for index, host in enumerate(target.hosts)}
    names = {host.user_id: host.name for host in target.hosts}
    kept = [host_id for host_id in prefer if host_id in match.host_ids]
    if kept:
        return (kept[0],), f"round robin: kept {names.get(kept[0], kept[0])}, who is free at the new time"

    def fairness(host_id: str) -> tuple[int, datetime, int]:
        last = loads[host_id].last_booked_at if host_id in loads else None
        return (0 if last is None else 1, last or now, order.get(host_id, 0))

    chosen = min(match.host_ids, key=fairness)
    last = loads[chosen].last_booked_at if chosen in loads else None
    others = len(match.host_ids) - 1
    since = "has not been booked yet" if last is None else f"was booked least recently ({last.isoformat()})"
    return (chosen,), f"round robin: {names.get(chosen, chosen)} is free and {since}; {others} other member(s) free"


def _target_signature(target: BookingTarget) -> tuple[Hashable, ...]:
    """Everything about a target that changes its slots, as a hashable value."""
    request = target.request
    return (
        target.tenant_id,
        target.appointment_type.type_id,
        target.appointment_type.rules,
        target.appointment_type.mode,
        target.holidays,
        None
        if request is None
        else (request.request_id, request.duration, request.window_starts_at, request.window_ends_at),
        tuple(
            (
                host.user_id,
                host.schedule.time_zone.key,
                host.schedule.weekly,
                tuple(sorted(host.schedule.overrides.items())),
            )
            for host in target.hosts
        ),
    )


def _replayed(target: BookingTarget, client: ClientDetails, existing: Booking) -> Booking:
    """The booking a repeated Idempotency-Key names, only to the client who made it, on the page it was made on.

    Keys are chosen by clients, so another client (or another page) sending the same key gets a 422, never the first
    client's name, email and manage link."""
    request_id = target.request.request_id if target.request is not None else None
    same_page = existing.type_id == target.appointment_type.type_id and existing.request_id == request_id
    if not same_page or existing.client.email.casefold() != client.email.casefold():
        raise IdempotencyKeyReused()
    return existing


class Scheduler:
    """The booking use cases, as called by pages, the bot, the add-in and the admin API."""

    def __init__(self, store: BookingStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._slot_cache: dict[tuple[Hashable, ...], tuple[Mapping[str, HostLoad], list[Slot]]] = {}

    async def list_slots(self, target: BookingTarget, range_start: datetime, range_end: datetime) -> list[Slot]:
        """Slots for display, in UTC; raises InvalidRequest for an empty or over-long range.

        Results are reused while their inputs are unchanged: the store hands back the same loads object until a
        booking or calendar refresh changes them, and `now` is rounded *up* to the minute, so a cached answer is
        at most stricter about notice than a fresh one, never looser. Booking always re-checks authoritatively.
        """
        if range_end <= range_start:
            raise InvalidRequest("The end date must be after the start date", field="end")
        if range_end - range_start > MAX_RANGE:
            raise InvalidRequest("Ask for at most 62 days of slots at a time", field="end")
        self._check_request_usable(target)
        loads = await self._store.load_host_loads(
            target.tenant_id,
            [host.user_id for host in target.hosts],
            range_start - timedelta(days=1),
            range_end + timedelta(days=1),
        )
        now = self._clock.now()
        rounded = now.replace(second=0, microsecond=0)
        if rounded < now:
            rounded += timedelta(minutes=1)
        key = (_target_signature(target), utc(range_start), utc(range_end), rounded)
        cached = self._slot_cache.get(key)
        if cached is not None and cached[0] is loads:
            return cached[1]
        slots = compute_slots(build_query(target, loads, range_start, range_end, rounded))
        if len(self._slot_cache) > 256:
            self._slot_cache.clear()
        self._slot_cache[key] = (loads, slots)
        return slots

    async def explain(self, target: BookingTarget, starts_at: datetime) -> list[Reason]:
        loads = await self._store.load_host_loads(
            target.tenant_id,
            [host.user_id for host in target.hosts],
            starts_at - timedelta(days=1),
            starts_at + timedelta(days=1),
        )
        query = build_query(
            target, loads, starts_at - timedelta(days=1), starts_at + timedelta(days=1), self._clock.now()
        )
        return explain_start(query, starts_at)

    async def book(
        self, target: BookingTarget, starts_at: datetime, client: ClientDetails, *, idempotency_key: str | None = None
    ) -> tuple[Booking, bool]:
        """Book `starts_at`; returns (booking, created). A repeated idempotency key returns the original booking."""
        cleaned = validate_client(target, client)
        if idempotency_key is not None:
            if len(idempotency_key) > 200:
                raise InvalidRequest("Idempotency-Key is too long (at most 200 characters)", field="Idempotency-Key")
            existing = await self._store.find_by_idempotency_key(target.tenant_id, idempotency_key)
            if existing is not None:
                return _replayed(target, cleaned, existing), False
        self._check_request_usable(target)
        start = utc(starts_at)
        now = self._clock.now()

        def decide(loads: Mapping[str, HostLoad]) -> HostDecision:
            return decide_hosts(target, start, now, loads)

        try:
            booking = await self._store.create_booking(
                target, start, start + target.duration, cleaned, decide=decide, idempotency_key=idempotency_key
            )
        except DuplicateRequest as duplicate:
            return _replayed(target, cleaned, await self.get_booking(target.tenant_id, duplicate.booking_id)), False
        except SlotUnavailable as conflict:
            raise await self._with_alternatives(target, start, conflict) from conflict
        return booking, True

    async def _with_alternatives(
        self, target: BookingTarget, start: datetime, conflict: SlotUnavailable
    ) -> SlotUnavailable:
        if conflict.next_free:
            return conflict
        slots = await self.list_slots(target, start, start + timedelta(days=14))
        return SlotUnavailable(str(conflict), next_free=next_free_starts(slots, start))

    async def reschedule(
        self, target: BookingTarget, booking: Booking, starts_at: datetime, *, version: int | None = None
    ) -> Booking:
        """Move `booking` to `starts_at`. `version` is the version the client saw (a hidden field or If-Match); by
        default the version `booking` was loaded at. Either way, of concurrent changes exactly one wins and the
        others raise BookingChanged with the booking's current state."""
        self._check_active(booking)
        expected = self._expected_version(booking, version)
        start = utc(starts_at)
        now = self._clock.now()
        duration = booking.ends_at - booking.starts_at

        moved = BookingTarget(
            tenant_id=target.tenant_id,
            tenant_slug=target.tenant_slug,
            tenant_name=target.tenant_name,
            appointment_type=target.appointment_type,
            hosts=target.hosts,
            holidays=target.holidays,
            # Keep the booked length (a ticket link may have overridden it); the link's own window and single use
            # applied to the first booking, not to moving it.
            request=SchedulingRequest("", "", duration, None, None, (), used=False),
        )

        def decide(loads: Mapping[str, HostLoad]) -> HostDecision:
            return decide_hosts(moved, start, now, loads, prefer=booking.host_ids)

        try:
            return await self._store.reschedule_booking(
                booking.tenant_id, booking.booking_id, start, start + duration, decide=decide, expected_version=expected
            )
        except SlotUnavailable as conflict:
            raise await self._with_alternatives(moved, start, conflict) from conflict

    async def cancel(self, booking: Booking, reason: str, *, version: int | None = None) -> Booking:
        """Cancel `booking`; `version` as for reschedule."""
        self._check_active(booking)
        if len(reason) > MAX_NOTES:
            raise InvalidRequest(f"The reason is too long (at most {MAX_NOTES} characters)", field="reason")
        expected = self._expected_version(booking, version)
        return await self._store.cancel_booking(
            booking.tenant_id, booking.booking_id, reason.strip(), expected_version=expected
        )

    @staticmethod
    def _expected_version(booking: Booking, version: int | None) -> int:
        if version is not None and version != booking.version:
            raise BookingChanged(
                "This booking was just changed by someone else; here is its current state", current=booking
            )
        return booking.version if version is None else version

    async def get_booking(self, tenant_id: str, booking_id: str) -> Booking:
        booking = await self._store.get_booking(tenant_id, booking_id)
        if booking is None:
            raise NotFound("No such booking")
        return booking

    def check_changeable(self, booking: Booking) -> None:
        """Raise InvalidRequest if the booking can no longer be moved or cancelled (cancelled, or already started)."""
        self._check_active(booking)

    def _check_active(self, booking: Booking) -> None:
        if booking.status is BookingStatus.CANCELLED:
            raise BookingChanged("This booking was already cancelled", current=booking)
        if booking.starts_at <= self._clock.now():
            raise InvalidRequest("This appointment has already started and can no longer be changed", field="booking")

    @staticmethod
    def _check_request_usable(target: BookingTarget) -> None:
        if target.request is not None and target.request.used:
            raise LinkExpired("This scheduling link has already been used to book an appointment")
