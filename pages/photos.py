"""Hosts' Microsoft 365 photos served from our own origin: `GET /photos/{tenant}/{user}`.

Booking pages never call Graph; the background refresh stores each photo (workflows/photo_sync.py) and the pages link
here with the photo's digest in the URL, so browsers and proxies may cache each version and a new photo gets a new
URL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import quote

from aiohttp import web

from scheduling.errors import NotFound

PHOTO_ROUTE = "/photos/{tenant}/{user}"
_NOT_FOUND = "We couldn't find that page. Check the link with the person who sent it."
_MAX_USER_ID = 40


class HostPhoto(Protocol):
    @property
    def content_type(self) -> str: ...

    @property
    def content(self) -> bytes: ...

    @property
    def digest(self) -> str: ...


class HostPhotoReader(Protocol):
    """Where the photos are stored (storage's SqlHostPhotos)."""

    async def photo(self, tenant_slug: str, user_id: str) -> HostPhoto | None:
        """The photo of this tenant's user; None for an unknown tenant or user, another tenant's user, or no photo."""
        ...


def photo_path(tenant_slug: str, user_id: str, digest: str) -> str:
    """The URL the pages show for a stored photo; `v` changes with the photo, so a cached old one is never shown."""
    return f"/photos/{quote(tenant_slug, safe='')}/{quote(user_id, safe='')}?v={digest[:12]}"


def photo_handler(reader: HostPhotoReader) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def host_photo(request: web.Request) -> web.StreamResponse:
        tenant_slug, user_id = request.match_info["tenant"], request.match_info["user"]
        # The tenant in the path must be the user's own: storage looks the user up within that tenant only.
        photo = await reader.photo(tenant_slug, user_id) if len(user_id) <= _MAX_USER_ID else None
        if photo is None:
            raise NotFound(_NOT_FOUND)
        etag = f'"{photo.digest}"'
        headers = {
            "ETag": etag,
            # An hour: the page's URL changes with the photo, so this only bounds how long a removed photo lingers.
            "Cache-Control": "public, max-age=3600",
            # The type was read from the bytes when stored (scheduling/photos.py); browsers must not guess another.
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        }
        if _matches(request.headers.get("If-None-Match", ""), etag):
            return web.Response(status=304, headers=headers)
        return web.Response(body=photo.content, content_type=photo.content_type, headers=headers)

    return host_photo


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 §13.1.2: `*` or any listed tag, compared weakly (a W/ prefix does not matter for GET)."""
    tags = [tag.strip() for tag in if_none_match.split(",") if tag.strip()]
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)
