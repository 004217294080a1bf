"""Background refresh of hosts' Microsoft 365 profile photos into host_photos, for the booking pages' faces.

Page views never call Graph: they link to the stored copy (pages/photos.py). Only users whose tenant file names no
photo_url are asked for, each at most once per `max_age`; a user without a photo is asked again no sooner either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from scheduling.errors import IntegrationAuthError, SlotwiseError
from scheduling.photos import MAX_PHOTO_BYTES, photo_content_type
from scheduling.ports import ProfilePhotoSource
from storage.database import Database
from storage.host_photos import SqlHostPhotos
from storage.tables import integration_connections
from workflows.runner import FaultStreak, pause

log = logging.getLogger("slotwise.photo_sync")

PhotosFor = Callable[[str], Awaitable[ProfilePhotoSource | None]]
"""A tenant's Microsoft 365 photos by tenant id, or None when the tenant has not connected Microsoft 365."""


class HostPhotoRefresher:
    def __init__(
        self,
        database: Database,
        photos_for: PhotosFor,
        *,
        interval: timedelta = timedelta(minutes=10),
        max_age: timedelta = timedelta(hours=12),
        rest_after_failure: timedelta = timedelta(minutes=30),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._database = database
        self._photos_for = photos_for
        self._store = SqlHostPhotos(database)
        self._interval = interval
        self._max_age = max_age
        self._rest_after_failure = rest_after_failure
        self._clock = clock
        self._resting_until: dict[str, datetime] = {}

    async def refresh_all(self) -> int:
        """Refresh the due photos of every tenant with Microsoft 365 connected; returns how many users were asked."""
        async with self._database.read() as conn:
            tenant_ids = sorted(
                set(
                    (
                        await conn.execute(
                            select(integration_connections.c.tenant_id).where(integration_connections.c.kind == "m365")
                        )
                    ).scalars()
                )
            )
        asked = 0
        for tenant_id in tenant_ids:
            asked += await self.refresh_tenant(tenant_id)
        return asked

    async def refresh_tenant(self, tenant_id: str) -> int:
        """Ask Graph for each due user's photo and store the answer. The first failure ends the tenant's round and
        rests it for `rest_after_failure`: the same cause (a missing permission, Graph down) would fail every other
        user too. The photos stored before stay as they are."""
        now = self._clock()
        if self._resting_until.get(tenant_id, now) > now:
            return 0
        if await self._photos_for(tenant_id) is None:
            return 0
        await self._store.prune(tenant_id)
        asked = 0
        for due in await self._store.due(tenant_id, now, self._max_age):
            # Looked up per user: the tenant's adapters are rebuilt (and the old ones closed) after a minute.
            source = await self._photos_for(tenant_id)
            if source is None:
                break
            try:
                content = await source.profile_photo(due.mailbox)
            except SlotwiseError as exc:
                # Our integration errors carry Graph's code and message, never the token or the client secret.
                hint = (
                    " (the Entra app needs the User.Read.All application permission)"
                    if isinstance(exc, IntegrationAuthError)
                    else ""
                )
                log.warning("Microsoft 365 photo refresh failed for tenant %s%s: %s", tenant_id, hint, exc)
                self._resting_until[tenant_id] = now + self._rest_after_failure
                break
            if content is not None and photo_content_type(content) is None:
                log.info(
                    "Microsoft 365 photo of user %s (tenant %s) is not a JPEG or PNG of at most %d bytes; the pages "
                    "show initials",
                    due.user_id,
                    tenant_id,
                    MAX_PHOTO_BYTES,
                )
                content = None
            await self._store.save(tenant_id, due.user_id, due.mailbox, content, now)
            asked += 1
        return asked

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Refresh every `interval` until `stop` is set; a failed round (the database is unavailable, or a bug) is
        logged once per streak and tried again with backoff, as the busy refresh does."""
        interval = self._interval.total_seconds()
        trouble = FaultStreak(log, "photo refresh", cap=min(30.0, interval))
        while not stop.is_set():
            try:
                await self.refresh_all()
            except Exception as exc:
                await pause(min(trouble.failed(exc), interval), stop)
                continue
            trouble.succeeded()
            await pause(interval, stop)
