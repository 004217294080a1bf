"""Encrypted, expiring client links (manage a booking, book through a scheduling request) and CSRF tokens."""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadSignature, URLSafeSerializer

from scheduling.errors import LinkExpired, LinkInvalid
from scheduling.model import Booking

_VERSION = 2
_NONCE_BYTES = 12
_TAG_BYTES = 16
_PACKED_HEX_ID = 0xFF
"""Length byte meaning "16 bytes follow, which were a 32-character lowercase hex id" (our ids are uuid4().hex)."""
_MAX_TOKEN_CHARS = 400


@dataclass(frozen=True, slots=True)
class LinkClaims:
    tenant_id: str
    subject_id: str
    expires_at: datetime


class LinkSigner:
    """Encrypted tokens scoped by purpose ('manage', 'request'); a token for one purpose fails for another.

    A token is AES-256-GCM over (expiry, tenant id, subject id) with a random nonce and the purpose as associated
    data, so without the key it reveals nothing but its length, and any change to it fails authentication. The key
    is derived with HKDF from the app secret under its own label: it is never the secret itself, nor the key that
    SecretBox uses for integration secrets.

    Links made before tokens were encrypted were itsdangerous-signed (readable) tokens; `verify` still accepts
    them until the expiry they carry, so links already sent keep working, but `sign` makes only the new kind.
    The two kinds cannot be confused: a signed token always contains a '.', the base64url alphabet never does.
    """

    def __init__(self, secret: str) -> None:
        self._secret = secret
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"slotwise link tokens v2").derive(
            secret.encode()
        )
        self._aead = AESGCM(key)

    def sign(self, purpose: str, tenant_id: str, subject_id: str, expires_at: datetime) -> str:
        """A URL-safe token: 90 characters for two uuid4().hex ids. Raises ValueError for ids too long for a link
        (`verify` refuses tokens over 400 characters, so none is ever made)."""
        plaintext = struct.pack(">I", int(expires_at.timestamp())) + _pack_id(tenant_id) + _pack_id(subject_id)
        nonce = os.urandom(_NONCE_BYTES)
        header = bytes([_VERSION])
        sealed = self._aead.encrypt(nonce, plaintext, _associated_data(header, purpose))
        token = base64.urlsafe_b64encode(header + nonce + sealed).rstrip(b"=").decode("ascii")
        if len(token) > _MAX_TOKEN_CHARS:
            raise ValueError(f"link ids too long: the token would exceed {_MAX_TOKEN_CHARS} characters")
        return token

    def verify(self, purpose: str, token: str, now: datetime) -> LinkClaims:
        """Raises LinkInvalid for tampered or foreign tokens and LinkExpired once past expiry."""
        if len(token) > _MAX_TOKEN_CHARS:
            raise LinkInvalid("This link is not valid")
        if "." in token:
            tenant_id, subject_id, expires_at = self._open_legacy(purpose, token)
        else:
            tenant_id, subject_id, expires_at = self._open(purpose, token)
        if now >= expires_at:
            raise LinkExpired("This link has expired")
        return LinkClaims(tenant_id, subject_id, expires_at)

    def _open(self, purpose: str, token: str) -> tuple[str, str, datetime]:
        invalid = LinkInvalid("This link is not valid. Check that you copied the whole link.")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError) as exc:
            raise invalid from exc
        # base64 leaves spare bits in the last character of some lengths; insisting on the canonical spelling
        # makes every character of the token count, so no two different links open the same booking.
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
            raise invalid
        if len(raw) < 1 + _NONCE_BYTES + _TAG_BYTES or raw[0] != _VERSION:
            raise invalid
        header, nonce, sealed = raw[:1], raw[1 : 1 + _NONCE_BYTES], raw[1 + _NONCE_BYTES :]
        try:
            plaintext = self._aead.decrypt(nonce, sealed, _associated_data(header, purpose))
        except InvalidTag as exc:
            raise invalid from exc
        try:
            (expires,) = struct.unpack_from(">I", plaintext)
            tenant_id, rest = _unpack_id(plaintext[4:])
            subject_id, rest = _unpack_id(rest)
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            raise invalid from exc
        if rest:
            raise invalid
        return tenant_id, subject_id, datetime.fromtimestamp(expires, UTC)

    def _open_legacy(self, purpose: str, token: str) -> tuple[str, str, datetime]:
        """The format `sign` made before issue 9 (itsdangerous, readable without the key); remove once the last
        such link has expired (manage_link_days / request_link_days after the release that stopped making them)."""
        try:
            payload = URLSafeSerializer(self._secret, salt=f"slotwise.{purpose}").loads(token)
        except BadSignature as exc:
            raise LinkInvalid("This link is not valid. Check that you copied the whole link.") from exc
        if not (isinstance(payload, list) and len(payload) == 3 and isinstance(payload[2], int)):
            raise LinkInvalid("This link is not valid")
        tenant_id, subject_id, expires = payload
        return str(tenant_id), str(subject_id), datetime.fromtimestamp(expires, UTC)


def _associated_data(header: bytes, purpose: str) -> bytes:
    return header + b"slotwise." + purpose.encode()


def _pack_id(value: str) -> bytes:
    if len(value) == 32 and all(char in "0123456789abcdef" for char in value):
        return bytes([_PACKED_HEX_ID]) + bytes.fromhex(value)
    encoded = value.encode()
    if len(encoded) >= _PACKED_HEX_ID:
        raise ValueError("link ids must be shorter than 255 bytes")
    return bytes([len(encoded)]) + encoded


def _unpack_id(data: bytes) -> tuple[str, bytes]:
    length = data[0]
    if length == _PACKED_HEX_ID:
        if len(data) < 17:
            raise IndexError("truncated id")
        return data[1:17].hex(), data[17:]
    if len(data) < 1 + length:
        raise IndexError("truncated id")
    return data[1 : 1 + length].decode(), data[1 + length :]


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_matches(cookie: str | None, submitted: str | None) -> bool:
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())


class ManageLinks:
    """Builds the encrypted manage link of a booking; it expires when the appointment ends (at most `days` ahead)."""

    def __init__(self, signer: LinkSigner, now: Callable[[], datetime], base_url: str, days: int) -> None:
        self._signer = signer
        self._now = now
        self._base_url = base_url.rstrip("/")
        self._days = days

    def path_for(self, booking: Booking) -> str:
        now = self._now()
        expires = max(min(booking.ends_at, now + timedelta(days=self._days)), now + timedelta(hours=1))
        return "/m/" + self._signer.sign("manage", booking.tenant_id, booking.booking_id, expires)

    def url_for(self, booking: Booking) -> str:
        return self._base_url + self.path_for(booking)


HOST_LINK_DAYS_AFTER = 30
"""How long after the appointment a host's "Open booking" link still opens it (notes, answers, what ran)."""


class HostLinks:
    """Builds the encrypted link to a booking's host page (`/h/{token}`), the "Open booking" of the host's Teams
    card. Its own purpose ('host'), so a client's manage link never opens it and it never opens the manage page;
    it lives until HOST_LINK_DAYS_AFTER days after the appointment (cards stay in the chat that long and more)."""

    def __init__(self, signer: LinkSigner, now: Callable[[], datetime], base_url: str) -> None:
        self._signer = signer
        self._now = now
        self._base_url = base_url.rstrip("/")

    def url_for(self, booking: Booking) -> str:
        expires = max(booking.ends_at, self._now()) + timedelta(days=HOST_LINK_DAYS_AFTER)
        return f"{self._base_url}/h/" + self._signer.sign("host", booking.tenant_id, booking.booking_id, expires)
