"""The Teams bot's view of the database: identities, a rep's types, upcoming bookings, teams and chat references.

Every query but `find_identity` takes a tenant id that came from a resolved identity; `find_identity` itself only
matches users of the one tenant bound to the Microsoft 365 tenant the activity came from, so a Teams user can never
be mapped into another customer's data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from scheduling.model import Location, LocationKind, TeamRoster, TeamsIdentity, TypeSummary, UpcomingBooking
from storage.database import Database
from storage.repositories import new_id
from storage.tables import appointment_types, bookings, host_slots, teams, teams_conversations, tenants, users


class SqlTeamsDirectory:
    """TeamsDirectory on SQLite or PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def find_identity(
        self, microsoft_tenant_id: str, aad_object_id: str | None, email: str | None
    ) -> TeamsIdentity | None:
        if not microsoft_tenant_id:
            return None

        def read(conn: Connection) -> TeamsIdentity | None:
            tenant = conn.execute(
                select(tenants.c.id, tenants.c.slug).where(
                    tenants.c.microsoft_tenant_id == microsoft_tenant_id.strip().lower()
                )
            ).first()
            if tenant is None:
                return None
            row = None
            if aad_object_id:
                row = conn.execute(
                    select(users).where(users.c.tenant_id == tenant.id, users.c.aad_object_id == aad_object_id)
                ).first()
            if row is None and email:
                # Email is the fallback for users whose Entra object id the admin has not entered.
                row = conn.execute(
                    select(users).where(
                        users.c.tenant_id == tenant.id, func.lower(users.c.email) == email.strip().lower()
                    )
                ).first()
            if row is None:
                return None
            managed = tuple(
                team.id
                for team in conn.execute(select(teams.c.id, teams.c.manager_ids).where(teams.c.tenant_id == tenant.id))
                if row.id in (team.manager_ids or [])
            )
            return TeamsIdentity(
                tenant_id=tenant.id,
                tenant_slug=tenant.slug,
                user_id=row.id,
                user_slug=row.slug,
                name=row.name,
                email=row.email,
                time_zone=row.time_zone,
                role=row.role,
                managed_team_ids=managed,
            )

        return await self._db.run_read(read)

    async def types_for_user(self, tenant_id: str, user_id: str) -> list[TypeSummary]:
        """Types the user hosts alone, sits on a panel for, or takes through a team they belong to."""

        def read(conn: Connection) -> list[TypeSummary]:
            team_ids = {
                team.id
                for team in conn.execute(select(teams.c.id, teams.c.member_ids).where(teams.c.tenant_id == tenant_id))
                if user_id in (team.member_ids or [])
            }
            found: list[TypeSummary] = []
            query = (
                select(appointment_types.c.id, appointment_types.c.slug, appointment_types.c.settings)
                .where(appointment_types.c.tenant_id == tenant_id)
                .order_by(appointment_types.c.slug)
            )
            for row in conn.execute(query):
                settings: Mapping[str, Any] = row.settings
                host = settings.get("host", {})
                if user_id in host.get("user_ids", []) or host.get("team_id") in team_ids:
                    location = settings.get("location", {})
                    found.append(
                        TypeSummary(
                            type_id=row.id,
                            slug=row.slug,
                            name=settings.get("name", row.slug),
                            duration_minutes=int(settings.get("duration_minutes", 0)),
                            location=Location(LocationKind(location.get("kind", "custom")), location.get("detail", "")),
                            description=settings.get("description", "") or "",
                        )
                    )
            return found

        return await self._db.run_read(read)

    async def upcoming(
        self, tenant_id: str, host_ids: Sequence[str], starts_from: datetime, limit: int
    ) -> list[UpcomingBooking]:
        """Confirmed bookings of any of `host_ids` that have not ended by `starts_from`, soonest first."""

        def read(conn: Connection) -> list[UpcomingBooking]:
            names = dict(conn.execute(select(users.c.id, users.c.name).where(users.c.tenant_id == tenant_id)).all())
            type_names = {
                row.id: row.settings.get("name", row.id)
                for row in conn.execute(
                    select(appointment_types.c.id, appointment_types.c.settings).where(
                        appointment_types.c.tenant_id == tenant_id
                    )
                )
            }
            # host_slots holds one row per (booking, host) with an index on (tenant, user, start), so the hosts'
            # bookings are found there rather than by scanning every booking's JSON host list.
            hosted = select(host_slots.c.booking_id).where(
                host_slots.c.tenant_id == tenant_id,
                host_slots.c.user_id.in_(list(host_ids)),
                host_slots.c.active.is_(True),
                host_slots.c.ends_at > starts_from,
            )
            query = (
                select(bookings)
                .where(
                    bookings.c.tenant_id == tenant_id,
                    bookings.c.status == "confirmed",
                    bookings.c.ends_at > starts_from,
                    bookings.c.id.in_(hosted),
                )
                .order_by(bookings.c.starts_at, bookings.c.id)
                .limit(limit)
            )
            found: list[UpcomingBooking] = []
            for row in conn.execute(query):
                hosts = tuple(row.host_ids or [])
                found.append(
                    UpcomingBooking(
                        booking_id=row.id,
                        type_name=str(type_names.get(row.type_id, "")),
                        client_name=row.client_name,
                        client_email=row.client_email,
                        starts_at=row.starts_at,
                        ends_at=row.ends_at,
                        host_ids=hosts,
                        host_names=tuple(str(names.get(host, "")) for host in hosts),
                    )
                )
            return found

        return await self._db.run_read(read)

    async def teams_for(self, identity: TeamsIdentity) -> list[TeamRoster]:
        """The teams a manager manages; an admin sees every team of the tenant."""

        def read(conn: Connection) -> list[TeamRoster]:
            names = dict(
                conn.execute(select(users.c.id, users.c.name).where(users.c.tenant_id == identity.tenant_id)).all()
            )
            rosters: list[TeamRoster] = []
            query = select(teams).where(teams.c.tenant_id == identity.tenant_id).order_by(teams.c.name)
            for row in conn.execute(query):
                if identity.role != "admin" and row.id not in identity.managed_team_ids:
                    continue
                members = tuple((member, str(names.get(member, member))) for member in row.member_ids or [])
                rosters.append(TeamRoster(team_id=row.id, name=row.name, members=members))
            return rosters

        return await self._db.run_read(read)

    async def save_conversation(
        self, tenant_id: str, user_id: str, reference: Mapping[str, object], time_zone: str | None
    ) -> None:
        conversation = reference.get("conversation")
        conversation_id = str(conversation.get("id", "")) if isinstance(conversation, dict) else ""
        service_url = str(reference.get("serviceUrl", "") or reference.get("service_url", ""))
        now = datetime.now(UTC)

        def write(conn: Connection) -> None:
            values = {
                "conversation_id": conversation_id[:400],
                "service_url": service_url[:400],
                "reference": dict(reference),
                "time_zone": time_zone,
                "updated_at": now,
            }
            # One statement: two processes (or two turns) saving a user's first chat at once must not both insert.
            insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
            conn.execute(
                insert(teams_conversations)
                .values(id=new_id(), tenant_id=tenant_id, user_id=user_id, **values)
                .on_conflict_do_update(index_elements=["tenant_id", "user_id"], set_=values)
            )

        await self._db.run_write(write)

    async def find_conversation(self, tenant_id: str, user_id: str) -> tuple[dict[str, object], str | None] | None:
        """The reference and the zone to show times in: what Teams last reported, else the user's profile zone."""

        def read(conn: Connection) -> tuple[dict[str, object], str | None] | None:
            row = conn.execute(
                select(teams_conversations.c.reference, teams_conversations.c.time_zone, users.c.time_zone.label("tz"))
                .join(users, and_(users.c.id == teams_conversations.c.user_id, users.c.tenant_id == tenant_id))
                .where(teams_conversations.c.tenant_id == tenant_id, teams_conversations.c.user_id == user_id)
            ).first()
            if row is None:
                return None
            return dict(row.reference), row.time_zone or row.tz

        return await self._db.run_read(read)
