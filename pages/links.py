"""Signed, expiring client links (manage a booking, book through a scheduling request) and CSRF tokens."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer

from scheduling.errors import LinkExpired, LinkInvalid
from scheduling.model import Booking


@dataclass(frozen=True, slots=True)
class LinkClaims:
    tenant_id: str
    subject_id: str
    expires_at: datetime


class LinkSigner:
    """HMAC-signed tokens scoped by purpose ('manage', 'request'); a token for one purpose fails for another."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def _serializer(self, purpose: str) -> URLSafeSerializer:
        return URLSafeSerializer(self._secret, salt=f"slotwise.{purpose}")

    def sign(self, purpose: str, tenant_id: str, subject_id: str, expires_at: datetime) -> str:
        return self._serializer(purpose).dumps([tenant_id, subject_id, int(expires_at.timestamp())])

    def verify(self, purpose: str, token: str, now: datetime) -> LinkClaims:
        """Raises LinkInvalid for tampered or foreign tokens and LinkExpired once past expiry."""
        if len(token) > 400:
            raise LinkInvalid("This link is not valid")
        try:
            payload = self._serializer(purpose).loads(token)
        except BadSignature as exc:
            raise LinkInvalid("This link is not valid. Check that you copied the whole link.") from exc
        if not (isinstance(payload, list) and len(payload) == 3 and isinstance(payload[2], int)):
            raise LinkInvalid("This link is not valid")
        tenant_id, subject_id, expires = payload
        expires_at = datetime.fromtimestamp(expires, UTC)
        if now >= expires_at:
            raise LinkExpired("This link has expired")
        return LinkClaims(str(tenant_id), str(subject_id), expires_at)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_matches(cookie: str | None, submitted: str | None) -> bool:
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())


class ManageLinks:
    """Builds the signed manage link of a booking; it expires when the appointment ends (at most `days` ahead)."""

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
