"""Repositories implementing the core's ports on SQLAlchemy; every statement filters on tenant_id."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from scheduling.errors import BookingChanged, DuplicateRequest, InvalidRequest, LinkExpired, NotFound, SlotUnavailable
from scheduling.model import (
    AppointmentType,
    Booking,
    BookingStatus,
    BookingTarget,
    BusyInterval,
    BusyKind,
    ClientDetails,
    HostLoad,
    HostMode,
    HostProfile,
    Location,
    LocationKind,
    PsaBinding,
    Question,
    SchedulingRequest,
    SlotRules,
    Span,
    SpanUnit,
    WallInterval,
    WorkingSchedule,
)
from scheduling.ports import HostDecider
from storage.database import Database
from storage.host_photos import photo_digests
from storage.tables import (
    AppointmentTypeRow,
    BookingRow,
    SchedulingRequestRow,
    TeamRow,
    TenantRow,
    UserRow,
    api_keys,
    appointment_types,
    bookings,
    busy_cache,
    host_slots,
    scheduling_requests,
    teams,
    tenants,
    users,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_BOOKING_LABEL = "another Slotwise booking"


def new_id() -> str:
    return uuid.uuid4().hex


def _wall(pairs: Sequence[Sequence[str]]) -> tuple[WallInterval, ...]:
    return tuple(
        WallInterval(time.fromisoformat(start), time(0, 0) if end == "24:00" else time.fromisoformat(end))
        for start, end in pairs
    )


def to_schedule(row: UserRow) -> WorkingSchedule:
    weekly = tuple(_wall(row.weekly_hours.get(day, [])) for day in WEEKDAYS)
    overrides = {date.fromisoformat(day): _wall(pairs) for day, pairs in row.date_overrides.items()}
    return WorkingSchedule(ZoneInfo(row.time_zone), weekly, overrides)


def to_host(row: UserRow) -> HostProfile:
    return HostProfile(row.id, row.slug, row.name, row.email, to_schedule(row), row.primary_calendar)


def _span(document: Mapping[str, Any]) -> Span:
    return Span(int(document["amount"]), SpanUnit(document["unit"]))


def to_appointment_type(row: AppointmentTypeRow, host_ids: tuple[str, ...]) -> AppointmentType:
    settings = row.settings
    rules = SlotRules(
        duration=timedelta(minutes=settings["duration_minutes"]),
        increment=timedelta(minutes=settings["increment_minutes"]),
        buffer_before=timedelta(minutes=settings.get("buffer_before_minutes", 0)),
        buffer_after=timedelta(minutes=settings.get("buffer_after_minutes", 0)),
        notice=_span(settings["minimum_notice"]),
        window=_span(settings["maximum_window"]),
    )
    location = settings.get("location", {"kind": "custom", "detail": ""})
    questions = tuple(
        Question(
            key=q["key"],
            label=q["label"],
            required=bool(q.get("required", False)),
            multiline=bool(q.get("multiline", False)),
            max_length=int(q.get("max_length", 500)),
        )
        for q in settings.get("questions", [])
    )
    return AppointmentType(
        type_id=row.id,
        tenant_id=row.tenant_id,
        slug=row.slug,
        name=settings["name"],
        internal_name=settings.get("internal_name", settings["name"]),
        rules=rules,
        location=Location(LocationKind(location["kind"]), location.get("detail", "")),
        mode=HostMode(row.host_mode),
        host_ids=host_ids,
        description=settings.get("description", ""),
        questions=questions,
        team_id=settings.get("host", {}).get("team_id"),
    )


def _to_booking(row: BookingRow) -> Booking:
    return Booking(
        booking_id=row.id,
        tenant_id=row.tenant_id,
        type_id=row.type_id,
        host_ids=tuple(row.host_ids),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        status=BookingStatus(row.status),
        client=ClientDetails(
            row.client_name,
            row.client_email,
            row.client_time_zone,
            dict(row.answers),
            tuple(row.guests),
            row.notes,
            row.client_locale or "",
        ),
        assignment_reason=row.assignment_reason,
        created_at=row.created_at,
        request_id=row.request_id,
        cancel_reason=row.cancel_reason,
        version=row.version,
    )


def _rows(model: type[Any], result: Any) -> list[Any]:
    return [model.model_validate(dict(mapping)) for mapping in result.mappings()]


class SqlTenantLooks:
    """How a tenant's pages look, as stored from its tenant file: the `branding` section, users' photo URLs and
    team names. Cached per process until the tenant's config_version moves (one indexed lookup per page view)."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._looks: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}

    async def look(self, tenant_slug: str) -> dict[str, Any]:
        """{"branding": dict | None, "locale": default tag or "", "photos": {user id: url}, "photo_digests": {user
        id: digest of the stored Microsoft 365 photo}, "teams": {team id: name}}; empty for no tenant. Cached until
        the tenant's config_version or photos_version moves."""
        async with self._db.read() as conn:
            found = (
                await conn.execute(
                    select(
                        tenants.c.id,
                        tenants.c.config_version,
                        tenants.c.photos_version,
                        tenants.c.branding,
                        tenants.c.default_locale,
                    ).where(tenants.c.slug == tenant_slug)
                )
            ).first()
            if found is None:
                return {"branding": None, "photos": {}, "teams": {}}
            version = (found.config_version, found.photos_version)
            cached = self._looks.get(tenant_slug)
            if cached is not None and cached[0] == version:
                return cached[1]
            photos = await conn.execute(
                select(users.c.id, users.c.photo_url).where(
                    users.c.tenant_id == found.id, users.c.photo_url.is_not(None)
                )
            )
            names = await conn.execute(select(teams.c.id, teams.c.name).where(teams.c.tenant_id == found.id))
            look = {
                "branding": found.branding,
                "locale": found.default_locale or "",
                "photos": {row.id: row.photo_url for row in photos},
                "photo_digests": await photo_digests(conn, found.id),
                "teams": {row.id: row.name for row in names},
            }
        if len(self._looks) > 1024:
            self._looks.clear()
        self._looks[tenant_slug] = (version, look)
        return look


class SqlTenantCatalog:
    """TenantCatalog on the configuration tables."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._targets: dict[tuple[str, str], tuple[int, BookingTarget | None]] = {}

    async def _tenant_by_slug(self, conn: AsyncConnection, slug: str) -> TenantRow | None:
        rows = _rows(TenantRow, await conn.execute(select(tenants).where(tenants.c.slug == slug)))
        return rows[0] if rows else None

    async def _tenant_by_id(self, conn: AsyncConnection, tenant_id: str) -> TenantRow | None:
        rows = _rows(TenantRow, await conn.execute(select(tenants).where(tenants.c.id == tenant_id)))
        return rows[0] if rows else None

    async def _host_ids(self, conn: AsyncConnection, tenant_id: str, row: AppointmentTypeRow) -> tuple[str, ...]:
        host = row.settings.get("host", {})
        team_id = host.get("team_id")
        if team_id:
            found_teams = _rows(
                TeamRow,
                await conn.execute(select(teams).where(teams.c.tenant_id == tenant_id, teams.c.id == team_id)),
            )
            return tuple(found_teams[0].member_ids) if found_teams else ()
        return tuple(host.get("user_ids", []))

    async def _target(
        self, conn: AsyncConnection, tenant: TenantRow, row: AppointmentTypeRow, request: SchedulingRequest | None
    ) -> BookingTarget:
        host_ids = await self._host_ids(conn, tenant.id, row)
        found_users = _rows(
            UserRow,
            await conn.execute(select(users).where(users.c.tenant_id == tenant.id, users.c.id.in_(host_ids))),
        )
        by_id = {user.id: user for user in found_users}
        hosts = tuple(to_host(by_id[host_id]) for host_id in host_ids if host_id in by_id)
        return BookingTarget(
            tenant_id=tenant.id,
            tenant_slug=tenant.slug,
            tenant_name=tenant.name,
            appointment_type=to_appointment_type(row, tuple(host.user_id for host in hosts)),
            hosts=hosts,
            holidays=frozenset(date.fromisoformat(day) for day in tenant.holidays),
            request=request,
        )

    async def find_type_target(self, tenant_slug: str, type_slug: str) -> BookingTarget | None:
        """The target behind a shareable URL. Cached per process until the tenant's config_version moves, so a
        page view costs one indexed lookup instead of four."""
        version = await self._db.run_read(
            lambda conn: conn.execute(
                select(tenants.c.config_version).where(tenants.c.slug == tenant_slug)
            ).scalar_one_or_none()
        )
        if version is None:
            return None
        key = (tenant_slug, type_slug)
        cached = self._targets.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        async with self._db.read() as conn:
            tenant = await self._tenant_by_slug(conn, tenant_slug)
            if tenant is None:
                return None
            rows = _rows(
                AppointmentTypeRow,
                await conn.execute(
                    select(appointment_types).where(
                        appointment_types.c.tenant_id == tenant.id,
                        appointment_types.c.slug == type_slug,
                    )
                ),
            )
            target = await self._target(conn, tenant, rows[0], None) if rows else None
        if len(self._targets) > 1024:
            self._targets.clear()
        self._targets[key] = (tenant.config_version, target)
        return target

    async def find_target_for_type(self, tenant_id: str, type_id: str) -> BookingTarget | None:
        async with self._db.read() as conn:
            tenant = await self._tenant_by_id(conn, tenant_id)
            if tenant is None:
                return None
            rows = _rows(
                AppointmentTypeRow,
                await conn.execute(
                    select(appointment_types).where(
                        appointment_types.c.tenant_id == tenant_id,
                        appointment_types.c.id == type_id,
                    )
                ),
            )
            return await self._target(conn, tenant, rows[0], None) if rows else None

    async def find_request_target(self, tenant_id: str, request_id: str) -> BookingTarget | None:
        async with self._db.read() as conn:
            tenant = await self._tenant_by_id(conn, tenant_id)
            requests = _rows(
                SchedulingRequestRow,
                await conn.execute(
                    select(scheduling_requests).where(
                        scheduling_requests.c.tenant_id == tenant_id,
                        scheduling_requests.c.id == request_id,
                    )
                ),
            )
            if tenant is None or not requests:
                return None
            req = requests[0]
            types = _rows(
                AppointmentTypeRow,
                await conn.execute(
                    select(appointment_types).where(
                        appointment_types.c.tenant_id == tenant_id,
                        appointment_types.c.id == req.type_id,
                    )
                ),
            )
            if not types:
                return None
            request = SchedulingRequest(
                request_id=req.id,
                ticket=req.ticket,
                duration=timedelta(seconds=req.duration_seconds) if req.duration_seconds else None,
                window_starts_at=req.window_starts_at,
                window_ends_at=req.window_ends_at,
                guests=tuple(req.guests),
                used=req.single_use and req.used_at is not None,
                ticket_id=req.ticket_id or "",
                ticket_number=req.ticket_number or "",
                single_use=req.single_use,
                binding=PsaBinding.from_json(req.psa_binding),
            )
            return await self._target(conn, tenant, types[0], request)

    async def _types_of_tenant(self, conn: AsyncConnection, tenant_id: str) -> list[AppointmentTypeRow]:
        return _rows(
            AppointmentTypeRow,
            await conn.execute(
                select(appointment_types)
                .where(appointment_types.c.tenant_id == tenant_id)
                .order_by(appointment_types.c.slug)
            ),
        )

    async def find_personal_page(
        self, tenant_slug: str, user_slug: str
    ) -> tuple[HostProfile, Sequence[AppointmentType]] | None:
        async with self._db.read() as conn:
            tenant = await self._tenant_by_slug(conn, tenant_slug)
            if tenant is None:
                return None
            found_users = _rows(
                UserRow,
                await conn.execute(select(users).where(users.c.tenant_id == tenant.id, users.c.slug == user_slug)),
            )
            if not found_users:
                return None
            user = found_users[0]
            types = [
                to_appointment_type(row, (user.id,))
                for row in await self._types_of_tenant(conn, tenant.id)
                if row.host_mode == HostMode.USER.value and row.settings.get("host", {}).get("user_ids") == [user.id]
            ]
            return to_host(user), types

    async def find_team_page(self, tenant_slug: str, team_slug: str) -> tuple[str, Sequence[AppointmentType]] | None:
        async with self._db.read() as conn:
            tenant = await self._tenant_by_slug(conn, tenant_slug)
            if tenant is None:
                return None
            found_teams = _rows(
                TeamRow,
                await conn.execute(select(teams).where(teams.c.tenant_id == tenant.id, teams.c.slug == team_slug)),
            )
            if not found_teams:
                return None
            team = found_teams[0]
            types = [
                to_appointment_type(row, tuple(team.member_ids))
                for row in await self._types_of_tenant(conn, tenant.id)
                if row.settings.get("host", {}).get("team_id") == team.id
            ]
            return team.name, types


def _booked_query(tenant_id: str, host_ids: Sequence[str], starts_at: datetime, ends_at: datetime) -> Select[Any]:
    """Active host slots near [starts_at, ends_at); a day either side because buffers reach beyond a meeting."""
    margin = timedelta(days=1)
    return (
        select(
            host_slots.c.user_id,
            host_slots.c.starts_at,
            host_slots.c.ends_at,
            host_slots.c.buffer_before_seconds,
            host_slots.c.buffer_after_seconds,
        )
        .where(
            host_slots.c.tenant_id == tenant_id,
            host_slots.c.user_id.in_(host_ids),
            host_slots.c.active.is_(True),
            host_slots.c.starts_at < ends_at + margin,
            host_slots.c.ends_at > starts_at - margin,
        )
        .order_by(host_slots.c.id)
    )


def _external_query(tenant_id: str, host_ids: Sequence[str], starts_at: datetime, ends_at: datetime) -> Select[Any]:
    return select(busy_cache.c.user_id, busy_cache.c.starts_at, busy_cache.c.ends_at, busy_cache.c.label).where(
        busy_cache.c.tenant_id == tenant_id,
        busy_cache.c.user_id.in_(host_ids),
        busy_cache.c.starts_at < ends_at,
        busy_cache.c.ends_at > starts_at,
    )


def _last_booked_query(tenant_id: str, host_ids: Sequence[str]) -> Select[Any]:
    return (
        select(host_slots.c.user_id, func.max(bookings.c.created_at))
        .join(bookings, and_(bookings.c.id == host_slots.c.booking_id, bookings.c.tenant_id == tenant_id))
        .where(host_slots.c.tenant_id == tenant_id, host_slots.c.user_id.in_(host_ids), host_slots.c.active.is_(True))
        .group_by(host_slots.c.user_id)
    )


def _parse_last_booked(rows: Iterable[Any]) -> dict[str, datetime]:
    last_booked: dict[str, datetime] = {}
    for user_id, created_at in rows:
        if created_at is None:
            continue
        # func.max() bypasses the column type, so SQLite hands back its text form.
        moment = created_at if isinstance(created_at, datetime) else datetime.fromisoformat(created_at)
        last_booked[user_id] = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return last_booked


class BookingChangeHook(Protocol):
    """Called inside the write transaction of every booking change with the trigger name ('client_scheduled',
    'rescheduled', 'cancelled'), and for a reschedule the booking as it was; the workflow outbox uses it so jobs
    commit, or roll back, with the booking."""

    def __call__(self, conn: Connection, trigger: str, booking: Booking, previous: Booking | None = None) -> None: ...


class SqlBookingStore:
    """BookingStore: the overlap check and the insert share one write transaction (see Database.run_write)."""

    def __init__(self, database: Database, *, on_change: BookingChangeHook | None = None) -> None:
        self._db = database
        self._on_change = on_change
        self._loads_cache: dict[
            tuple[str, tuple[str, ...], datetime, datetime],
            tuple[tuple[tuple[Any, ...], ...], int | None, Mapping[str, HostLoad], list[tuple[Any, ...]]],
        ] = {}

    async def load_host_loads(
        self, tenant_id: str, host_ids: Sequence[str], starts_at: datetime, ends_at: datetime
    ) -> Mapping[str, HostLoad]:
        """Busy time for display. Returns the *same* mapping object while nothing changed, so callers can cache
        derived results by identity. Bookings are read live (few rows); external busy rows (thousands per team)
        are re-read only when the tenant's busy_version moves, which replace_external_busy() guarantees."""
        key = (tenant_id, tuple(host_ids), starts_at, ends_at)
        cached = self._loads_cache.get(key)

        def read(conn: Connection) -> tuple[tuple[tuple[Any, ...], ...], int | None, list[tuple[Any, ...]] | None]:
            booked = tuple(tuple(row) for row in conn.execute(_booked_query(tenant_id, host_ids, starts_at, ends_at)))
            version = conn.execute(select(tenants.c.busy_version).where(tenants.c.id == tenant_id)).scalar_one_or_none()
            if cached is not None and cached[1] == version:
                return booked, version, None
            external = [tuple(row) for row in conn.execute(_external_query(tenant_id, host_ids, starts_at, ends_at))]
            return booked, version, external

        booked, fingerprint, fresh = await self._db.run_read(read)
        if fresh is None and cached is not None:
            if cached[0] == booked:
                return cached[2]
            external = cached[3]
        else:
            external = fresh or []
        loads = self._assemble(host_ids, booked, external, {})
        if len(self._loads_cache) > 512:
            self._loads_cache.clear()
        self._loads_cache[key] = (booked, fingerprint, loads, external)
        return loads

    @classmethod
    def _loads_in(
        cls, conn: Connection, tenant_id: str, host_ids: Sequence[str], starts_at: datetime, ends_at: datetime
    ) -> dict[str, HostLoad]:
        """Authoritative loads inside a write transaction: no caches, and with last-booked times for round robin.

        External busy time is padded by a day each side because buffers reach beyond the meeting itself."""
        pad = timedelta(days=1)
        booked = tuple(tuple(row) for row in conn.execute(_booked_query(tenant_id, host_ids, starts_at, ends_at)))
        external = [
            tuple(row) for row in conn.execute(_external_query(tenant_id, host_ids, starts_at - pad, ends_at + pad))
        ]
        last = _parse_last_booked(conn.execute(_last_booked_query(tenant_id, host_ids))) if len(host_ids) > 1 else {}
        return cls._assemble(host_ids, booked, external, last)

    @staticmethod
    def _assemble(
        host_ids: Sequence[str],
        booked: tuple[tuple[Any, ...], ...],
        external: Sequence[tuple[Any, ...]],
        last_booked: Mapping[str, datetime],
    ) -> dict[str, HostLoad]:
        busy: dict[str, list[BusyInterval]] = {host_id: [] for host_id in host_ids}
        for user_id, slot_start, slot_end, before, after in booked:
            bucket = busy[user_id]
            bucket.append(BusyInterval(slot_start, slot_end, BusyKind.EVENT, _BOOKING_LABEL))
            if before:
                bucket.append(
                    BusyInterval(slot_start - timedelta(seconds=before), slot_start, BusyKind.BUFFER, _BOOKING_LABEL)
                )
            if after:
                bucket.append(
                    BusyInterval(slot_end, slot_end + timedelta(seconds=after), BusyKind.BUFFER, _BOOKING_LABEL)
                )
        for user_id, busy_start, busy_end, label in external:
            busy[user_id].append(BusyInterval(busy_start, busy_end, BusyKind.EVENT, label))
        return {host_id: HostLoad(tuple(intervals), last_booked.get(host_id)) for host_id, intervals in busy.items()}

    async def replace_external_busy(
        self, tenant_id: str, user_id: str, source: str, intervals: Sequence[tuple[datetime, datetime, str]]
    ) -> None:
        """Swap one user's cached busy time from one calendar source, and bump the tenant's busy_version."""
        now = datetime.now(UTC)
        async with self._db.write() as conn:
            await conn.execute(
                busy_cache.delete().where(
                    busy_cache.c.tenant_id == tenant_id, busy_cache.c.user_id == user_id, busy_cache.c.source == source
                )
            )
            if intervals:
                await conn.execute(
                    busy_cache.insert(),
                    [
                        {
                            "tenant_id": tenant_id,
                            "user_id": user_id,
                            "source": source,
                            "starts_at": starts_at,
                            "ends_at": ends_at,
                            "label": label[:200],
                            "fetched_at": now,
                        }
                        for starts_at, ends_at, label in intervals
                    ],
                )
            await conn.execute(
                update(tenants).where(tenants.c.id == tenant_id).values(busy_version=tenants.c.busy_version + 1)
            )

    async def create_booking(
        self,
        target: BookingTarget,
        starts_at: datetime,
        ends_at: datetime,
        client: ClientDetails,
        *,
        decide: HostDecider,
        idempotency_key: str | None,
    ) -> Booking:
        now = datetime.now(UTC)
        booking_id = new_id()
        rules = target.appointment_type.rules
        host_ids = [host.user_id for host in target.hosts]

        def transaction(conn: Connection) -> BookingRow:
            if idempotency_key is not None:
                found = conn.execute(
                    select(bookings.c.id).where(
                        bookings.c.tenant_id == target.tenant_id, bookings.c.idempotency_key == idempotency_key
                    )
                ).scalar_one_or_none()
                if found is not None:
                    raise DuplicateRequest(found)
            _lock_hosts(conn, target.tenant_id, host_ids)
            chosen, reason = decide(self._loads_in(conn, target.tenant_id, host_ids, starts_at, ends_at))
            row = BookingRow(
                id=booking_id,
                tenant_id=target.tenant_id,
                type_id=target.appointment_type.type_id,
                request_id=target.request.request_id if target.request else None,
                starts_at=starts_at,
                ends_at=ends_at,
                status=BookingStatus.CONFIRMED.value,
                host_ids=list(chosen),
                client_name=client.name,
                client_email=client.email,
                client_time_zone=client.time_zone,
                client_locale=client.locale or None,
                answers=dict(client.answers),
                guests=list(client.guests),
                notes=client.notes,
                assignment_reason=reason,
                idempotency_key=idempotency_key,
                created_at=now,
                updated_at=now,
            )
            conn.execute(bookings.insert().values(**row.model_dump()))
            conn.execute(
                host_slots.insert(), _host_slot_rows(target.tenant_id, booking_id, chosen, starts_at, ends_at, rules)
            )
            if target.request is not None:
                used = conn.execute(
                    update(scheduling_requests)
                    .where(
                        scheduling_requests.c.tenant_id == target.tenant_id,
                        scheduling_requests.c.id == target.request.request_id,
                        scheduling_requests.c.used_at.is_(None),
                    )
                    .values(used_at=now, booking_id=booking_id)
                )
                # A multi-use link keeps its first booking as `booking_id` and books on: each booking is independent.
                if used.rowcount != 1 and target.request.single_use:
                    raise LinkExpired("This scheduling link has already been used to book an appointment")
            if self._on_change is not None:
                self._on_change(conn, "client_scheduled", _to_booking(row))
            return row

        try:
            row = await self._db.run_write(transaction)
        except IntegrityError as exc:
            if idempotency_key is not None and "idempotency" in str(exc.orig).lower():
                existing_id = await self._booking_id_for_key(target.tenant_id, idempotency_key)
                if existing_id is not None:
                    raise DuplicateRequest(existing_id) from exc
            # The exclusion constraint (PostgreSQL) or the partial unique index (SQLite) caught a race the
            # check could not see: a concurrent transaction committed the same host and time first.
            raise SlotUnavailable("That time was just booked by someone else") from exc
        return _to_booking(row)

    async def _booking_id_for_key(self, tenant_id: str, key: str) -> str | None:
        async with self._db.read() as conn:
            result = await conn.execute(
                select(bookings.c.id).where(
                    bookings.c.tenant_id == tenant_id,
                    bookings.c.idempotency_key == key,
                )
            )
            return result.scalar_one_or_none()

    async def find_by_idempotency_key(self, tenant_id: str, key: str) -> Booking | None:
        async with self._db.read() as conn:
            rows = _rows(
                BookingRow,
                await conn.execute(
                    select(bookings).where(
                        bookings.c.tenant_id == tenant_id,
                        bookings.c.idempotency_key == key,
                    )
                ),
            )
            return _to_booking(rows[0]) if rows else None

    async def get_booking(self, tenant_id: str, booking_id: str) -> Booking | None:
        async with self._db.read() as conn:
            return _first_booking(await conn.execute(_booking_query(tenant_id, booking_id)))

    async def reschedule_booking(
        self,
        tenant_id: str,
        booking_id: str,
        starts_at: datetime,
        ends_at: datetime,
        *,
        decide: HostDecider,
        expected_version: int | None = None,
    ) -> Booking:
        now = datetime.now(UTC)

        def transaction(conn: Connection) -> Booking | None:
            current = _lock_changeable(conn, tenant_id, booking_id, expected_version)
            before, after = conn.execute(
                select(host_slots.c.buffer_before_seconds, host_slots.c.buffer_after_seconds).where(
                    host_slots.c.tenant_id == tenant_id, host_slots.c.booking_id == booking_id
                )
            ).first() or (0, 0)
            # Free the old time first, so a move by a few minutes does not collide with itself.
            conn.execute(
                update(host_slots)
                .where(host_slots.c.tenant_id == tenant_id, host_slots.c.booking_id == booking_id)
                .values(active=False)
            )
            candidates = list(current.host_ids)
            settings = conn.execute(
                select(appointment_types.c.host_mode, appointment_types.c.settings).where(
                    appointment_types.c.tenant_id == tenant_id, appointment_types.c.id == current.type_id
                )
            ).first()
            team_id = settings[1].get("host", {}).get("team_id") if settings else None
            if team_id and settings is not None and settings[0] == HostMode.ROUND_ROBIN.value:
                members = conn.execute(
                    select(teams.c.member_ids).where(teams.c.tenant_id == tenant_id, teams.c.id == team_id)
                ).scalar_one_or_none()
                candidates = list(dict.fromkeys([*current.host_ids, *(members or [])]))
            _lock_hosts(conn, tenant_id, candidates)
            chosen, reason = decide(self._loads_in(conn, tenant_id, candidates, starts_at, ends_at))
            rules = SlotRules(
                duration=ends_at - starts_at,
                increment=timedelta(minutes=1),
                buffer_before=timedelta(seconds=before),
                buffer_after=timedelta(seconds=after),
            )
            conn.execute(host_slots.insert(), _host_slot_rows(tenant_id, booking_id, chosen, starts_at, ends_at, rules))
            conn.execute(
                update(bookings)
                .where(bookings.c.tenant_id == tenant_id, bookings.c.id == booking_id)
                .values(
                    starts_at=starts_at,
                    ends_at=ends_at,
                    host_ids=list(chosen),
                    assignment_reason=reason,
                    updated_at=now,
                    version=current.version + 1,
                )
            )
            moved = _first_booking(conn.execute(_booking_query(tenant_id, booking_id)))
            if moved is not None and self._on_change is not None:
                self._on_change(conn, "rescheduled", moved, current)
            return moved

        try:
            updated = await self._db.run_write(transaction)
        except IntegrityError as exc:
            raise SlotUnavailable("That time was just booked by someone else") from exc
        if updated is None:
            raise NotFound("No such booking")
        return updated

    async def cancel_booking(
        self, tenant_id: str, booking_id: str, reason: str, *, expected_version: int | None = None
    ) -> Booking:
        now = datetime.now(UTC)

        def transaction(conn: Connection) -> Booking | None:
            current = _lock_changeable(conn, tenant_id, booking_id, expected_version)
            conn.execute(
                update(bookings)
                .where(bookings.c.tenant_id == tenant_id, bookings.c.id == booking_id)
                .values(
                    status=BookingStatus.CANCELLED.value,
                    cancel_reason=reason,
                    updated_at=now,
                    version=current.version + 1,
                )
            )
            conn.execute(
                update(host_slots)
                .where(host_slots.c.tenant_id == tenant_id, host_slots.c.booking_id == booking_id)
                .values(active=False)
            )
            gone = _first_booking(conn.execute(_booking_query(tenant_id, booking_id)))
            if gone is not None and self._on_change is not None:
                self._on_change(conn, "cancelled", gone)
            return gone

        cancelled = await self._db.run_write(transaction)
        if cancelled is None:
            raise NotFound("No such booking")
        return cancelled


def _lock_changeable(conn: Connection, tenant_id: str, booking_id: str, expected_version: int | None) -> Booking:
    """The booking, locked for this transaction, if it may still change: confirmed, and at the version the caller
    saw. The state and the version are checked in the same transaction as the hold change, so of two concurrent
    changes (a cancel and a reschedule, or twelve reschedules) exactly one wins and the others get BookingChanged.
    SQLite serialises write transactions (BEGIN IMMEDIATE), so FOR UPDATE matters only on PostgreSQL."""
    current = _first_booking(conn.execute(_booking_query(tenant_id, booking_id).with_for_update()))
    if current is None:
        raise NotFound("No such booking")
    if current.status is not BookingStatus.CONFIRMED:
        raise BookingChanged("This booking has been cancelled, so it can no longer be changed", current=current)
    if expected_version is not None and current.version != expected_version:
        raise BookingChanged(
            "This booking was just changed by someone else; here is its current state", current=current
        )
    return current


def _lock_hosts(conn: Connection, tenant_id: str, host_ids: Sequence[str]) -> None:
    """Serialise bookings per host: the check that follows sees every booking committed before it.

    PostgreSQL's exclusion constraint stops two meetings overlapping but cannot express the engine's buffer rule (a
    meeting may not sit inside another booking's buffer, while two buffers may overlap), so without this two bookings
    fired together could each pass the buffer check. Rows are locked in id order, so two transactions never wait
    on each other in a cycle. On SQLite BEGIN IMMEDIATE already serialises every write."""
    conn.execute(
        select(users.c.id)
        .where(users.c.tenant_id == tenant_id, users.c.id.in_(sorted(set(host_ids))))
        .order_by(users.c.id)
        .with_for_update()
    )


def _booking_query(tenant_id: str, booking_id: str) -> Select[Any]:
    return select(bookings).where(bookings.c.tenant_id == tenant_id, bookings.c.id == booking_id)


def _first_booking(result: Any) -> Booking | None:
    rows = _rows(BookingRow, result)
    return _to_booking(rows[0]) if rows else None


def _host_slot_rows(
    tenant_id: str, booking_id: str, host_ids: Sequence[str], starts_at: datetime, ends_at: datetime, rules: SlotRules
) -> list[dict[str, Any]]:
    return [
        {
            "tenant_id": tenant_id,
            "booking_id": booking_id,
            "user_id": host_id,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "buffer_before_seconds": int(rules.buffer_before.total_seconds()),
            "buffer_after_seconds": int(rules.buffer_after.total_seconds()),
            "active": True,
        }
        for host_id in host_ids
    ]


class SqlAgentKeys:
    """AgentKeys on the api_keys table: SHA-256 of the presented key, compared by unique index lookup."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def authenticate(self, raw_key: str) -> tuple[str, str] | None:
        digest = hash_api_key(raw_key)
        async with self._db.read() as conn:
            result = await conn.execute(
                select(api_keys.c.tenant_id, api_keys.c.role).where(
                    api_keys.c.key_hash == digest,
                    api_keys.c.revoked_at.is_(None),
                )
            )
            row = result.first()
        return (row[0], row[1]) if row else None

    async def create_key(self, tenant_slug: str, name: str, role: str = "agent") -> str:
        """Create a key for a tenant and return it; it is shown once and only its hash is kept."""
        raw = "sw_" + secrets.token_urlsafe(32)
        async with self._db.write() as conn:
            tenant = (
                await conn.execute(select(tenants.c.id).where(tenants.c.slug == tenant_slug))
            ).scalar_one_or_none()
            if tenant is None:
                raise NotFound(f"No tenant '{tenant_slug}'")
            await conn.execute(
                api_keys.insert().values(
                    id=new_id(),
                    tenant_id=tenant,
                    name=name,
                    key_hash=hash_api_key(raw),
                    role=role,
                    created_at=datetime.now(UTC),
                    revoked_at=None,
                )
            )
        return raw


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


class RequestChangeHook(Protocol):
    """Called inside the write transaction that creates a scheduling request, with the tenant and request ids; the
    workflow outbox uses it so the request's triggers (request_created, request_sent, no_response) commit, or roll
    back, with the request."""

    def __call__(self, conn: Connection, tenant_id: str, request_id: str) -> None: ...


class SqlRequestStore:
    """RequestStore on scheduling_requests."""

    def __init__(self, database: Database, *, on_created: RequestChangeHook | None = None) -> None:
        self._db = database
        self._on_created = on_created

    async def create_request(
        self,
        tenant_id: str,
        type_slug: str,
        *,
        ticket: str = "",
        duration: timedelta | None,
        window_starts_at: datetime | None,
        window_ends_at: datetime | None,
        guests: Sequence[str],
        created_by: str,
        expires_at: datetime,
        ticket_id: str = "",
        ticket_number: str = "",
        recipient: tuple[str, str] | None = None,
        now: datetime | None = None,
        single_use: bool = True,
        binding: PsaBinding | None = None,
    ) -> str:
        request_id = new_id()
        created_at = now or datetime.now(UTC)

        def transaction(conn: Connection) -> None:
            found = conn.execute(
                select(appointment_types.c.id, appointment_types.c.settings).where(
                    appointment_types.c.tenant_id == tenant_id,
                    appointment_types.c.slug == type_slug,
                )
            ).first()
            if found is None:
                raise NotFound(f"No appointment type '{type_slug[:64]}'")
            type_id = found.id
            increment = int(dict(found.settings).get("increment_minutes") or 0)
            if duration is not None and increment > 0 and (duration.total_seconds() / 60) % increment:
                raise InvalidRequest(
                    f"'duration_minutes' must be a multiple of this type's {increment}-minute slot increment",
                    field="duration_minutes",
                )
            conn.execute(
                scheduling_requests.insert().values(
                    id=request_id,
                    tenant_id=tenant_id,
                    type_id=type_id,
                    ticket=ticket,
                    ticket_id=ticket_id or None,
                    ticket_number=(ticket_number or ticket) if ticket_id else None,
                    duration_seconds=int(duration.total_seconds()) if duration else None,
                    window_starts_at=window_starts_at,
                    window_ends_at=window_ends_at,
                    guests=list(guests),
                    created_by=created_by,
                    created_at=created_at,
                    expires_at=expires_at,
                    used_at=None,
                    booking_id=None,
                    recipient_name=recipient[0] if recipient else None,
                    recipient_email=recipient[1] if recipient else None,
                    sent_at=created_at if recipient else None,
                    single_use=single_use,
                    psa_binding=binding.to_json() if binding is not None else None,
                )
            )
            if self._on_created is not None:
                self._on_created(conn, tenant_id, request_id)

        await self._db.run_write(transaction)
        return request_id
