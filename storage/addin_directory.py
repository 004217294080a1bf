"""The Outlook add-in's view of the database: the Teams directory's look-ups plus "is this Microsoft 365 tenant bound
to a Slotwise tenant at all", which the add-in API reports separately from "no such user" (an admin fixes the first
in the tenant file's `microsoft_tenant_id`, the second in its users' `aad_object_id` or email).

Every add-in API call resolves its rep, and suggested times also read the rep's types, so these are cached per
process. What they read comes only from the tenant file, and every `slotwise apply` that changes a tenant bumps its
`config_version` in the same transaction (admin/rollout.py), the same hook the booking pages' target cache uses
(storage/repositories.py). So a call costs one indexed read of the tenant row (`find_rep`); the cached rep and types
are reused while that version holds, and re-read on the first call after an apply. There is no time-to-live to tune:
the cache is never staler than the version read in the same call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from scheduling.model import TeamsIdentity, TypeSummary
from storage.database import Database
from storage.directory import SqlTeamsDirectory
from storage.tables import bookings, tenants

_MAX_CACHED: Final = 4096
"""Entries per cache before it is cleared: reps of every bound tenant fit many times over."""


@dataclass(frozen=True, slots=True)
class AddinRep:
    """What a token's tenant and user resolve to. `bound` is False when no Slotwise tenant names the Entra tenant;
    `identity` is None when it is bound but no user matches. `config_version` is the tenant's version read in this
    call (0 when unbound)."""

    bound: bool
    identity: TeamsIdentity | None
    config_version: int


class SqlAddinDirectory(SqlTeamsDirectory):
    """AddinDirectory on SQLite or PostgreSQL."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self._reps: dict[tuple[str, str | None, str | None], tuple[int, TeamsIdentity | None]] = {}
        self._types: dict[tuple[str, str], tuple[int, list[TypeSummary]]] = {}

    async def is_bound(self, microsoft_tenant_id: str) -> bool:
        """Whether some Slotwise tenant names this Entra tenant id (stored lower case, as Entra writes GUIDs)."""
        wanted = microsoft_tenant_id.strip().lower()
        if not wanted:
            return False

        def read(conn: Connection) -> bool:
            found = conn.execute(select(tenants.c.id).where(tenants.c.microsoft_tenant_id == wanted)).first()
            return found is not None

        return await self._db.run_read(read)

    async def find_rep(self, microsoft_tenant_id: str, aad_object_id: str | None, email: str | None) -> AddinRep:
        """The rep a verified token names: one read of the bound tenant's id and version, and the user look-up
        (`find_identity`) only when this process has not resolved this rep since the tenant last changed."""
        wanted = microsoft_tenant_id.strip().lower()
        if not wanted:
            return AddinRep(False, None, 0)

        def read(conn: Connection) -> int | None:
            found = conn.execute(
                select(tenants.c.config_version).where(tenants.c.microsoft_tenant_id == wanted)
            ).first()
            return None if found is None else int(found.config_version)

        version = await self._db.run_read(read)
        if version is None:
            return AddinRep(False, None, 0)
        key = (wanted, aad_object_id, email.strip().lower() if email else None)
        cached = self._reps.get(key)
        if cached is not None and cached[0] == version:
            return AddinRep(True, cached[1], version)
        # Read after the version: an apply in between leaves a fresher identity under the older version, which the
        # next call's version read replaces. Never the reverse (an older identity under a newer version).
        identity = await self.find_identity(wanted, aad_object_id, email)
        if len(self._reps) >= _MAX_CACHED:
            self._reps.clear()
        self._reps[key] = (version, identity)
        return AddinRep(True, identity, version)

    async def types_for_user(
        self, tenant_id: str, user_id: str, *, config_version: int | None = None
    ) -> list[TypeSummary]:
        """The rep's types; with the tenant's `config_version` from `find_rep`, reused while it holds."""
        if config_version is None:
            return await super().types_for_user(tenant_id, user_id)
        key = (tenant_id, user_id)
        cached = self._types.get(key)
        if cached is not None and cached[0] == config_version:
            return list(cached[1])
        found = await super().types_for_user(tenant_id, user_id)
        if len(self._types) >= _MAX_CACHED:
            self._types.clear()
        self._types[key] = (config_version, found)
        return list(found)

    async def recipient_time_zone(self, tenant_id: str, email: str) -> str | None:
        """The time zone the client at `email` chose in their latest booking with this tenant (any status), or None.
        Only this tenant's bookings are read: another customer's clients are never looked at."""
        wanted = email.strip().lower()
        if not wanted or "@" not in wanted:
            return None

        def read(conn: Connection) -> str | None:
            found = conn.execute(
                select(bookings.c.client_time_zone)
                .where(bookings.c.tenant_id == tenant_id, func.lower(bookings.c.client_email) == wanted)
                .order_by(bookings.c.created_at.desc(), bookings.c.id.desc())
                .limit(1)
            ).first()
            return None if found is None else str(found.client_time_zone)

        return await self._db.run_read(read)
