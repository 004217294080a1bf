"""Which host photos Slotwise keeps and serves: small JPEG or PNG images, recognised by their bytes."""

from __future__ import annotations

MAX_PHOTO_BYTES = 200 * 1024
"""A 96x96 profile photo is a few kilobytes; anything near this cap is not the small size we asked for."""

PHOTO_TYPES = ("image/jpeg", "image/png")

_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


def photo_content_type(content: bytes) -> str | None:
    """The content type of a photo we accept ("image/jpeg" or "image/png"), or None for anything else: empty,
    larger than MAX_PHOTO_BYTES, or another format.

    The type comes from the file's own signature, not from whatever header came with it: we serve the bytes from
    our origin with `X-Content-Type-Options: nosniff`, so the declared type must be what the bytes are."""
    if not content or len(content) > MAX_PHOTO_BYTES:
        return None
    return next((kind for signature, kind in _SIGNATURES if content.startswith(signature)), None)
