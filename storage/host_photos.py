"""Hosts' Microsoft 365 profile photos: which are due for a refresh, storing what Graph answered, and reading one back
for the pages. Every query is scoped by tenant."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduling.photos import photo_content_type
from storage.database import Database
from storage.tables import host_photos, tenants, users


@dataclass(frozen=True)
class PhotoDue:
    user_id: str
    mailbox: str


@dataclass(frozen=True)
class StoredPhoto:
    content_type: str
    content: bytes
    digest: str
    """SHA-256 of the content (hex): the ETag, and the cache-busting `v` of the pages' photo URLs."""


class SqlHostPhotos:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def due(self, tenant_id: str, now: datetime, max_age: timedelta) -> list[PhotoDue]:
        """Users of the tenant whose tenant file names no photo_url and whose photo was never asked for, was asked for
        before `now - max_age`, or was asked for under another address (the user's email changed)."""
        query = (
            select(users.c.id, users.c.email)
            .select_from(
                users.outerjoin(
                    host_photos, and_(host_photos.c.tenant_id == users.c.tenant_id, host_photos.c.user_id == users.c.id)
                )
            )
            .where(
                users.c.tenant_id == tenant_id,
                users.c.photo_url.is_(None),
                or_(
                    host_photos.c.user_id.is_(None),
                    host_photos.c.fetched_at <= now - max_age,
                    host_photos.c.mailbox != users.c.email,
                ),
            )
            .order_by(users.c.id)
        )
        async with self._db.read() as conn:
            return [PhotoDue(row.id, row.email) for row in await conn.execute(query)]

    async def save(self, tenant_id: str, user_id: str, mailbox: str, content: bytes | None, now: datetime) -> bool:
        """Record what Graph answered for one user at `now`: a photo (content) or none (None, which removes a stored
        photo). Content that is not a photo we keep (scheduling/photos.py) raises ValueError and changes nothing.
        Returns whether the photo the pages show changed; only then does the tenant's photos_version move."""
        content_type = photo_content_type(content) if content is not None else None
        if content is not None and content_type is None:
            raise ValueError("not a JPEG or PNG photo within the size limit")
        digest = hashlib.sha256(content).hexdigest() if content is not None else None
        values: dict[str, Any] = {
            "mailbox": mailbox,
            "content_type": content_type,
            "content": content,
            "digest": digest,
            "fetched_at": now,
        }

        def write(conn: Connection) -> bool:
            before = conn.execute(
                select(host_photos.c.digest).where(
                    host_photos.c.tenant_id == tenant_id, host_photos.c.user_id == user_id
                )
            ).first()
            # One statement: two processes refreshing the same user's first photo at once must not both insert.
            upsert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
            conn.execute(
                upsert(host_photos)
                .values(tenant_id=tenant_id, user_id=user_id, **values)
                .on_conflict_do_update(index_elements=["tenant_id", "user_id"], set_=values)
            )
            changed = (before.digest if before is not None else None) != digest
            if changed:
                conn.execute(
                    update(tenants).where(tenants.c.id == tenant_id).values(photos_version=tenants.c.photos_version + 1)
                )
            return changed

        return await self._db.run_write(write)

    async def prune(self, tenant_id: str) -> None:
        """Drop the rows of users the tenant file no longer has."""
        async with self._db.write() as conn:
            await conn.execute(
                delete(host_photos).where(
                    host_photos.c.tenant_id == tenant_id,
                    host_photos.c.user_id.not_in(select(users.c.id).where(users.c.tenant_id == tenant_id)),
                )
            )

    async def photo(self, tenant_slug: str, user_id: str) -> StoredPhoto | None:
        """The stored photo of a user of the tenant with this slug; None for another tenant's user, an unknown one,
        or one without a stored photo."""
        query = (
            select(host_photos.c.content_type, host_photos.c.content, host_photos.c.digest)
            .select_from(
                host_photos.join(tenants, tenants.c.id == host_photos.c.tenant_id).join(
                    users, and_(users.c.tenant_id == host_photos.c.tenant_id, users.c.id == host_photos.c.user_id)
                )
            )
            .where(tenants.c.slug == tenant_slug, host_photos.c.user_id == user_id, host_photos.c.content.is_not(None))
        )
        async with self._db.read() as conn:
            found = (await conn.execute(query)).first()
        if found is None:
            return None
        return StoredPhoto(found.content_type, bytes(found.content), found.digest)


async def photo_digests(conn: AsyncConnection, tenant_id: str) -> dict[str, str]:
    """{user id: digest} of the tenant's stored photos, for the pages' looks."""
    rows = await conn.execute(
        select(host_photos.c.user_id, host_photos.c.digest).where(
            host_photos.c.tenant_id == tenant_id, host_photos.c.digest.is_not(None)
        )
    )
    return {row.user_id: row.digest for row in rows}
