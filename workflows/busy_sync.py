"""Background refresh of external busy time (Microsoft 365 and the PSA) into the busy cache.

Page views never call Graph or the PSA: they read busy_cache, which this loop keeps fresh. A user contributes the
calendars that are their primary one or marked "Block Conflicting Appointments".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from scheduling.errors import SlotwiseError
from scheduling.model import BusyInterval
from storage.database import Database
from storage.repositories import SqlBookingStore
from storage.tables import integration_connections, users
from workflows.runner import FaultStreak, pause
from workflows.steps import IntegrationsFor

log = logging.getLogger("slotwise.busy_sync")


class BusyRefresher:
    def __init__(
        self,
        database: Database,
        integrations_for: IntegrationsFor,
        *,
        interval: timedelta = timedelta(minutes=5),
        horizon: timedelta = timedelta(days=62),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._database = database
        self._integrations_for = integrations_for
        self._store = SqlBookingStore(database)
        self._interval = interval
        self._horizon = horizon
        self._clock = clock

    async def refresh_all(self) -> int:
        """Refresh every tenant with a calendar connected; returns how many users were refreshed."""
        async with self._database.read() as conn:
            tenant_ids = sorted(
                set(
                    (
                        await conn.execute(
                            select(integration_connections.c.tenant_id).where(
                                integration_connections.c.kind.in_(("psa", "m365"))
                            )
                        )
                    ).scalars()
                )
            )
        refreshed = 0
        for tenant_id in tenant_ids:
            refreshed += await self.refresh_tenant(tenant_id)
        return refreshed

    async def refresh_tenant(self, tenant_id: str) -> int:
        integrations = await self._integrations_for(tenant_id)
        async with self._database.read() as conn:
            people = (
                await conn.execute(
                    select(
                        users.c.id,
                        users.c.email,
                        users.c.psa_member,
                        users.c.primary_calendar,
                        users.c.blocking_calendars,
                    ).where(users.c.tenant_id == tenant_id)
                )
            ).all()
        start = self._clock()
        end = start + self._horizon
        refreshed = 0
        m365_people = [p for p in people if "m365" in (p.primary_calendar, *p.blocking_calendars)]
        if integrations.busy is not None and m365_people:
            try:
                found = await integrations.busy.busy_times([p.email for p in m365_people], start, end)
            except SlotwiseError as exc:
                log.warning("Microsoft 365 busy refresh failed for tenant %s: %s", tenant_id, exc)
            else:
                for person in m365_people:
                    await self._store.replace_external_busy(
                        tenant_id, person.id, "m365", _rows(found.get(person.email, []))
                    )
                    refreshed += 1
        psa = integrations.psa
        if psa is not None:
            for person in people:
                if not person.psa_member or "psa" not in (person.primary_calendar, *person.blocking_calendars):
                    continue
                try:
                    intervals = await psa.busy_times(person.psa_member, start, end)
                except SlotwiseError as exc:
                    log.warning("PSA busy refresh failed for tenant %s: %s", tenant_id, exc)
                    continue
                await self._store.replace_external_busy(tenant_id, person.id, "psa", _rows(intervals))
                refreshed += 1
        return refreshed

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Refresh every `interval` until `stop` is set. A failed round (the database is unavailable, or a bug) is
        logged once per streak, not per round, and tried again with backoff (1 s doubling to 30 s, never later than
        the next regular round) instead of waiting a whole interval."""
        interval = self._interval.total_seconds()
        trouble = FaultStreak(log, "busy refresh", cap=min(30.0, interval))
        while not stop.is_set():
            try:
                await self.refresh_all()
            except Exception as exc:
                await pause(min(trouble.failed(exc), interval), stop)
                continue
            trouble.succeeded()
            await pause(interval, stop)


def _rows(intervals: list[BusyInterval]) -> list[tuple[datetime, datetime, str]]:
    return [(interval.starts_at, interval.ends_at, interval.label) for interval in intervals]
