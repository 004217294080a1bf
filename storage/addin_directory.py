"""The Outlook add-in's view of the database: the Teams directory's look-ups plus "is this Microsoft 365 tenant bound
to a Slotwise tenant at all", which the add-in API reports separately from "no such user" (an admin fixes the first
in the tenant file's `microsoft_tenant_id`, the second in its users' `aad_object_id` or email)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from storage.directory import SqlTeamsDirectory
from storage.tables import tenants


class SqlAddinDirectory(SqlTeamsDirectory):
    """AddinDirectory on SQLite or PostgreSQL."""

    async def is_bound(self, microsoft_tenant_id: str) -> bool:
        """Whether some Slotwise tenant names this Entra tenant id (stored lower case, as Entra writes GUIDs)."""
        wanted = microsoft_tenant_id.strip().lower()
        if not wanted:
            return False

        def read(conn: Connection) -> bool:
            found = conn.execute(select(tenants.c.id).where(tenants.c.microsoft_tenant_id == wanted)).first()
            return found is not None

        return await self._db.run_read(read)
