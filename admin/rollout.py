"""Tenant as code: validate a YAML tenant file, diff it against the database, and apply it in one transaction.

The file describes one tenant completely: the tenant itself, its users, teams and appointment types. Rows of that
tenant which the file no longer lists are deleted, so the file is the single source of truth. Secrets never live in
the file; they come from the environment (PRODUCT.md, section 7).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from admin.tenant_file import AppointmentTypeSpec, RolloutError, TenantFile, UserSpec, _reference_problems, render_loc
from scheduling.errors import NotFound
from storage.database import Database
from storage.repositories import WEEKDAYS, new_id
from storage.tables import (
    appointment_types,
    bookings,
    busy_cache,
    host_slots,
    scheduling_requests,
    teams,
    teams_conversations,
    tenants,
    users,
)

_TENANTS = tenants
_USERS = users
_TEAMS = teams
_TYPES = appointment_types
_BOOKINGS = bookings
_REQUESTS = scheduling_requests
_HOST_SLOTS = host_slots
_BUSY_CACHE = busy_cache
_TEAMS_CONVERSATIONS = teams_conversations

Kind = Literal["tenant", "user", "team", "appointment_type"]
Action = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One changed column (or appointment-type setting), with both values already formatted for people."""

    name: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class Change:
    """One row to create, update or delete; `row` holds every column to write (just `id` for a delete)."""

    kind: Kind
    action: Action
    slug: str
    title: str
    row: Mapping[str, Any]
    fields: tuple[FieldChange, ...] = ()

    def render(self) -> str:
        if self.action == "create":
            return f"+ {self.kind} {self.slug} ({self.title})"
        if self.action == "delete":
            return f"- {self.kind} {self.slug}"
        changed = ", ".join(f"{field.name} {field.before} -> {field.after}" for field in self.fields)
        return f"~ {self.kind} {self.slug}: {changed}"


@dataclass(frozen=True, slots=True)
class Plan:
    """What applying `tenant_file` would change; `blockers` are reasons it cannot be applied as it stands."""

    tenant_file: TenantFile
    tenant_id: str
    changes: tuple[Change, ...]
    blockers: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def render(self) -> str:
        if not self.changes and not self.blockers:
            return "No changes."
        lines = [change.render() for change in self.changes]
        lines.extend(f"! {blocker}" for blocker in self.blockers)
        if self.changes:
            counts = {action: sum(1 for change in self.changes if change.action == action) for action in _ACTIONS}
            lines.append(f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete.")
        return "\n".join(lines)

    def _signature(self) -> tuple[object, ...]:
        # Ids of rows still to be created are drawn afresh each time, so they are left out of the comparison.
        return tuple((change.kind, change.action, change.slug, change.fields) for change in self.changes)


_ACTIONS: tuple[Action, ...] = ("create", "update", "delete")


def _split_interval(text: str) -> list[str]:
    start, end = text.split("-")
    return [start, end]


def _span_document(text: str) -> dict[str, Any]:
    amount, unit = text.split(" ")
    return {"amount": int(amount), "unit": unit}


def _user_row(spec: UserSpec, row_id: str, tenant_id: str) -> dict[str, Any]:
    return {
        "id": row_id,
        "tenant_id": tenant_id,
        "slug": spec.slug,
        "name": spec.name,
        "email": spec.email,
        "time_zone": spec.time_zone,
        "weekly_hours": {day: [_split_interval(text) for text in getattr(spec.working_hours, day)] for day in WEEKDAYS},
        "date_overrides": {
            day: [_split_interval(text) for text in spec.date_overrides[day]] for day in sorted(spec.date_overrides)
        },
        "primary_calendar": spec.primary_calendar,
        "blocking_calendars": list(spec.blocking_calendars),
        "aad_object_id": spec.aad_object_id,
        "psa_member": spec.psa_member,
        "role": spec.role,
        "photo_url": spec.photo_url,
    }


def _type_row(
    spec: AppointmentTypeSpec,
    row_id: str,
    tenant_id: str,
    user_ids: Mapping[str, str],
    team_ids: Mapping[str, str],
    *,
    reminders: bool = True,
) -> dict[str, Any]:
    host = spec.host
    host_document: dict[str, Any]
    if host.user is not None:
        host_document = {"user_ids": [user_ids[host.user]]}
    elif host.team is not None:
        host_document = {"team_id": team_ids[host.team]}
    else:
        host_document = {"user_ids": [user_ids[slug] for slug in host.panel or ()]}
    settings = {
        "name": spec.name,
        "internal_name": spec.internal_name if spec.internal_name is not None else spec.name,
        "description": spec.description,
        "duration_minutes": spec.duration,
        "increment_minutes": spec.increment if spec.increment is not None else spec.duration,
        "buffer_before_minutes": spec.buffer_before,
        "buffer_after_minutes": spec.buffer_after,
        "buffers_on_calendar": spec.buffers_on_calendar,
        "minimum_notice": _span_document(spec.minimum_notice),
        "maximum_window": _span_document(spec.maximum_window),
        "location": {"kind": spec.location.kind, "detail": spec.location.detail},
        "questions": [question.model_dump() for question in spec.questions],
        "host": host_document,
        "mode": spec.mode,
        "workflow": spec.workflow,
    }
    if not reminders:
        # Only when off, so the settings of every tenant that keeps the default stay as they were (no diff).
        settings["classic_reminders"] = False
    return {"id": row_id, "tenant_id": tenant_id, "slug": spec.slug, "host_mode": host.host_mode, "settings": settings}


# Identity and bookkeeping columns: never written by a tenant file, so never part of its diff.
_NOT_CONFIGURED = frozenset({"id", "tenant_id", "slug", "config_version", "busy_version", "photos_version"})


def _comparable(kind: Kind, row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a diff reports: columns, with an appointment type's settings flattened to their own names."""
    fields = {key: value for key, value in row.items() if key not in _NOT_CONFIGURED}
    if kind == "appointment_type":
        settings = fields.pop("settings") or {}
        fields.update(settings)
    return fields


def _show(name: str, value: Any, labels: Mapping[str, str]) -> str:
    """Format a value for the diff: row ids become slugs, spans read as '4 business_hours', long JSON is cut."""
    if name in ("member_ids", "manager_ids") and isinstance(value, list):
        return "[" + ", ".join(labels.get(item, item) for item in value) + "]"
    if name == "host" and isinstance(value, dict):
        if "team_id" in value:
            return f"team {labels.get(value['team_id'], value['team_id'])}"
        return "users [" + ", ".join(labels.get(item, item) for item in value.get("user_ids", [])) + "]"
    if isinstance(value, dict) and set(value) == {"amount", "unit"}:
        return f"{value['amount']} {value['unit']}"
    if isinstance(value, str):
        return repr(value)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= 80 else text[:77] + "..."


def _diff(
    kind: Kind,
    desired: Sequence[tuple[str, dict[str, Any]]],
    existing: Mapping[str, Mapping[str, Any]],
    labels: Mapping[str, str],
) -> list[Change]:
    """Creates and updates in file order, then deletes of rows the file no longer lists, by slug."""
    changes: list[Change] = []
    for title, row in desired:
        current = existing.get(row["slug"])
        if current is None:
            changes.append(Change(kind, "create", row["slug"], title, row))
            continue
        before, after = _comparable(kind, current), _comparable(kind, row)
        fields = tuple(
            FieldChange(name, _show(name, before.get(name), labels), _show(name, after.get(name), labels))
            for name in dict.fromkeys([*after, *before])
            if before.get(name) != after.get(name)
        )
        if fields:
            changes.append(Change(kind, "update", row["slug"], title, row, fields))
    wanted = {row["slug"] for _, row in desired}
    for slug in sorted(set(existing) - wanted):
        changes.append(Change(kind, "delete", slug, slug, {"id": existing[slug]["id"]}))
    return changes


async def _rows_of(conn: AsyncConnection, table: Table, tenant_id: str) -> dict[str, dict[str, Any]]:
    result = await conn.execute(select(table).where(table.c.tenant_id == tenant_id))
    return {row["slug"]: dict(row) for row in result.mappings()}


async def _count(conn: AsyncConnection, table: Table, tenant_id: str, column: str, row_id: str) -> int:
    result = await conn.execute(
        select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id, table.c[column] == row_id)
    )
    return int(result.scalar_one())


async def _blockers(conn: AsyncConnection, tenant_id: str, changes: Sequence[Change]) -> list[str]:
    """Deletes the database would refuse (foreign keys from bookings), explained before anything is written."""
    blockers: list[str] = []
    for change in changes:
        if change.action != "delete":
            continue
        row_id = change.row["id"]
        if change.kind == "appointment_type":
            bookings = await _count(conn, _BOOKINGS, tenant_id, "type_id", row_id)
            requests = await _count(conn, _REQUESTS, tenant_id, "type_id", row_id)
            if bookings or requests:
                blockers.append(
                    f"appointment_type {change.slug} cannot be deleted: {bookings} booking(s) and {requests}"
                    " scheduling request(s) refer to it; keep it in the file"
                )
        elif change.kind == "user":
            hosted = await _count(conn, _HOST_SLOTS, tenant_id, "user_id", row_id)
            if hosted:
                blockers.append(
                    f"user {change.slug} cannot be deleted: they host {hosted} booking slot(s); keep them in the file"
                )
    return blockers


async def _compute_plan(conn: AsyncConnection, file: TenantFile) -> Plan:
    problems = _reference_problems(file)
    if problems:
        raise RolloutError([f"{render_loc(loc)}: {message}" for loc, message in problems])

    spec = file.tenant
    found = (await conn.execute(select(_TENANTS).where(_TENANTS.c.slug == spec.slug))).mappings().first()
    current_tenant = dict(found) if found is not None else None
    tenant_id = current_tenant["id"] if current_tenant is not None else new_id()
    if current_tenant is not None:
        users = await _rows_of(conn, _USERS, tenant_id)
        teams = await _rows_of(conn, _TEAMS, tenant_id)
        types = await _rows_of(conn, _TYPES, tenant_id)
    else:
        users, teams, types = {}, {}, {}

    # Stable ids: a row keeps its id as long as its slug stays, so bookings and links keep pointing at it.
    user_ids = {user.slug: users[user.slug]["id"] if user.slug in users else new_id() for user in file.users}
    team_ids = {team.slug: teams[team.slug]["id"] if team.slug in teams else new_id() for team in file.teams}
    labels = {row["id"]: slug for slug, row in (*users.items(), *teams.items())}
    labels.update({row_id: slug for slug, row_id in (*user_ids.items(), *team_ids.items())})

    tenant_row = {
        "id": tenant_id,
        "slug": spec.slug,
        "name": spec.name,
        "default_time_zone": spec.time_zone,
        "holidays": list(spec.holidays),
        "microsoft_tenant_id": spec.microsoft_tenant_id,
        "branding": file.branding.model_dump(exclude_none=True) if file.branding else None,
        "default_locale": spec.locale,
    }
    changes = _diff("tenant", [(spec.name, tenant_row)], {spec.slug: current_tenant} if current_tenant else {}, labels)
    changes += _diff(
        "user", [(user.name, _user_row(user, user_ids[user.slug], tenant_id)) for user in file.users], users, labels
    )
    team_rows = [
        (
            team.name,
            {
                "id": team_ids[team.slug],
                "tenant_id": tenant_id,
                "slug": team.slug,
                "name": team.name,
                "member_ids": [user_ids[slug] for slug in team.members],
                "manager_ids": [user_ids[slug] for slug in team.managers],
            },
        )
        for team in file.teams
    ]
    changes += _diff("team", team_rows, teams, labels)
    type_rows = [
        (
            kind.name,
            _type_row(
                kind,
                types[kind.slug]["id"] if kind.slug in types else new_id(),
                tenant_id,
                user_ids,
                team_ids,
                reminders=spec.reminders,
            ),
        )
        for kind in file.appointment_types
    ]
    changes += _diff("appointment_type", type_rows, types, labels)
    blockers = await _blockers(conn, tenant_id, changes)
    if file.tenant.microsoft_tenant_id is not None:
        claimed = (
            await conn.execute(
                select(_TENANTS.c.slug).where(
                    _TENANTS.c.microsoft_tenant_id == file.tenant.microsoft_tenant_id, _TENANTS.c.id != tenant_id
                )
            )
        ).scalar()
        if claimed is not None:
            blockers.append(
                f"tenant.microsoft_tenant_id: Microsoft 365 tenant {file.tenant.microsoft_tenant_id} is already "
                f"bound to Slotwise tenant '{claimed}'; one Microsoft 365 tenant maps to one Slotwise tenant"
            )
    return Plan(file, tenant_id, tuple(changes), tuple(blockers))


async def plan_changes(database: Database, tenant_file: TenantFile) -> Plan:
    """The dry run: what `apply_plan` would create, update and delete for this tenant. Writes nothing."""
    async with database.read() as conn:
        return await _compute_plan(conn, tenant_file)


_TABLES: Mapping[Kind, Table] = {"tenant": _TENANTS, "user": _USERS, "team": _TEAMS, "appointment_type": _TYPES}
_DELETE_ORDER: tuple[Kind, ...] = ("appointment_type", "team", "user")


async def _write_changes(conn: AsyncConnection, plan: Plan) -> None:
    by_kind: dict[Kind, list[Change]] = {kind: [] for kind in _TABLES}
    for change in plan.changes:
        by_kind[change.kind].append(change)

    async def upsert(change: Change) -> None:
        table = _TABLES[change.kind]
        if change.action == "create":
            await conn.execute(table.insert().values(**change.row))
        elif table is _TENANTS:
            await conn.execute(update(table).where(table.c.id == plan.tenant_id).values(**change.row))
        else:
            await conn.execute(
                update(table)
                .where(table.c.tenant_id == plan.tenant_id, table.c.id == change.row["id"])
                .values(**change.row)
            )

    for change in by_kind["tenant"]:
        await upsert(change)
    # Deletes first, so a new row may take a slug or email a removed row had; types, then teams, then users,
    # the reverse of how they refer to each other.
    for kind in _DELETE_ORDER:
        for change in by_kind[kind]:
            if change.action != "delete":
                continue
            table = _TABLES[kind]
            if kind == "user":
                # Busy times are a cache of external calendars and the Teams chat is how the bot reached this
                # user; both go with the user.
                for owned in (_BUSY_CACHE, _TEAMS_CONVERSATIONS):
                    await conn.execute(
                        delete(owned).where(owned.c.tenant_id == plan.tenant_id, owned.c.user_id == change.row["id"])
                    )
            await conn.execute(delete(table).where(table.c.tenant_id == plan.tenant_id, table.c.id == change.row["id"]))
    # Two users swapping emails would trip the unique (tenant, email) index half-way; park changed emails first.
    for change in by_kind["user"]:
        if change.action == "update" and any(field.name == "email" for field in change.fields):
            await conn.execute(
                update(_USERS)
                .where(_USERS.c.tenant_id == plan.tenant_id, _USERS.c.id == change.row["id"])
                .values(email=f"{change.row['id']}@rollout.invalid")
            )
    for kind in reversed(_DELETE_ORDER):
        for change in by_kind[kind]:
            if change.action != "delete":
                await upsert(change)


async def apply_plan(
    database: Database, plan: Plan, *, extra_writes: Callable[[AsyncConnection, str], Awaitable[None]] | None = None
) -> Plan:
    """Apply a reviewed plan in one write transaction and return what was applied.

    The plan is recomputed inside the transaction; if the database moved on since the dry run, nothing is written
    and RolloutError asks for a fresh plan, so what was reviewed is exactly what happens. Blocked deletes (rows that
    bookings refer to) also raise RolloutError before any write.
    """
    try:
        async with database.write() as conn:
            current = await _compute_plan(conn, plan.tenant_file)
            if current.blockers:
                raise RolloutError(list(current.blockers))
            if current._signature() != plan._signature():
                raise RolloutError(["the database changed since this plan was made; plan again and review the diff"])
            await _write_changes(conn, current)
            if extra_writes is not None:
                # Connections and anything else planned outside this module commit in the same transaction.
                await extra_writes(conn, current.tenant_id)
            if current.changes:
                # Tell every process's page cache that this tenant's configuration moved.
                await conn.execute(
                    update(_TENANTS)
                    .where(_TENANTS.c.id == current.tenant_id)
                    .values(config_version=_TENANTS.c.config_version + 1, busy_version=_TENANTS.c.busy_version + 1)
                )
    except IntegrityError as exc:
        raise RolloutError([f"the database refused the change, nothing was applied: {exc.orig}"]) from exc
    return current


async def list_links(database: Database, base_url: str, tenant_slug: str | None = None) -> list[dict[str, str]]:
    """Every bookable URL of one tenant (or of all): shareable per type, personal and team pages that list a type.

    Pages without any appointment type are left out: they exist but offer nothing to book. Raises NotFound for an
    unknown `tenant_slug`.
    """
    base = base_url.rstrip("/")
    links: list[dict[str, str]] = []
    async with database.read() as conn:
        query = select(_TENANTS.c.id, _TENANTS.c.slug).order_by(_TENANTS.c.slug)
        if tenant_slug is not None:
            query = query.where(_TENANTS.c.slug == tenant_slug)
        tenants = (await conn.execute(query)).all()
        if tenant_slug is not None and not tenants:
            raise NotFound(f"No tenant '{tenant_slug}'")
        for tenant_id, slug in tenants:
            types = sorted((await _rows_of(conn, _TYPES, tenant_id)).values(), key=lambda row: row["slug"])
            users = await _rows_of(conn, _USERS, tenant_id)
            teams = await _rows_of(conn, _TEAMS, tenant_id)
            personal: set[str] = set()
            team_pages: set[str] = set()
            for row in types:
                links.append(_link(slug, "shareable", row["slug"], row["settings"]["name"], f"{base}/book/{slug}"))
                host = row["settings"].get("host", {})
                # Same rule as SqlTenantCatalog.find_personal_page / find_team_page.
                if row["host_mode"] == "user" and len(host.get("user_ids", [])) == 1:
                    personal.add(host["user_ids"][0])
                if host.get("team_id"):
                    team_pages.add(host["team_id"])
            for user_slug in sorted(users):
                if users[user_slug]["id"] in personal:
                    links.append(_link(slug, "personal", user_slug, users[user_slug]["name"], f"{base}/u/{slug}"))
            for team_slug in sorted(teams):
                if teams[team_slug]["id"] in team_pages:
                    links.append(_link(slug, "team", team_slug, teams[team_slug]["name"], f"{base}/t/{slug}"))
    return links


def _link(tenant: str, kind: str, slug: str, name: str, prefix: str) -> dict[str, str]:
    return {"tenant": tenant, "kind": kind, "slug": slug, "name": name, "url": f"{prefix}/{slug}"}
