"""Suggested times in an email: their links and the block of text or HTML the task pane inserts.

Each time is a link to our page with that time chosen, carrying who it is for. The link is a token, AES-GCM over
(tenant, type, start, block, recipient name and email, zone, expiry) under a key derived from the app secret for this
purpose only, so it reveals nothing without the key, cannot be altered, and expires. The recipient's name and email
come from the token, never from query parameters.

Link scanners (Microsoft Defender Safe Links and others) open every URL in an email, so opening a link only shows
the time with a Confirm button; only the POST books. All times of one email share a block id, used as the booking's
idempotency key: once one of them is booked, every other link of the block answers with that booking instead of
making a second one (and a double click books once).

The block ends with a "see all times" link: a token of its own kind (same block and recipient, no time) that opens
a page of every free time, each a link of the same block, so the recipient's name and email stay filled in from the
signed token and the block still books once."""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Final
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION: Final = 1
_NONCE_BYTES: Final = 12
_MAX_TOKEN_CHARS: Final = 1500


class SuggestionLinkInvalid(Exception):
    """Tampered, truncated or foreign."""


class SuggestionLinkExpired(Exception):
    """Past its expiry."""


@dataclass(frozen=True, slots=True)
class SuggestedTime:
    tenant_id: str
    type_id: str
    starts_at: datetime
    block_id: str
    name: str
    email: str
    zone: str
    expires_at: datetime


def new_block_id() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class TimesInvite:
    """What a block's "see all times" link carries: every field of its times but the time itself."""

    tenant_id: str
    type_id: str
    block_id: str
    name: str
    email: str
    zone: str
    expires_at: datetime

    def time_at(self, starts_at: datetime) -> SuggestedTime:
        """One time of the same block, for the same recipient: it books once with the block's other times."""
        return SuggestedTime(
            self.tenant_id, self.type_id, starts_at, self.block_id, self.name, self.email, self.zone, self.expires_at
        )


_TIME_PURPOSE: Final = b"slotwise.suggested-time"
_ALL_PURPOSE: Final = b"slotwise.see-all-times"
"""A different associated data per kind of link, so a "see all times" token never opens as a time, or back."""


class SuggestionLinks:
    """Seals and opens suggested-time and see-all-times tokens."""

    def __init__(self, secret: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"slotwise addin suggested times v1").derive(
            secret.encode()
        )
        self._aead = AESGCM(key)

    def seal(self, time: SuggestedTime) -> str:
        return self._seal(
            [
                time.tenant_id,
                time.type_id,
                int(time.starts_at.timestamp()),
                time.block_id,
                time.name,
                time.email,
                time.zone,
                int(time.expires_at.timestamp()),
            ],
            _TIME_PURPOSE,
        )

    def seal_all(self, invite: TimesInvite) -> str:
        return self._seal(
            [
                invite.tenant_id,
                invite.type_id,
                0,
                invite.block_id,
                invite.name,
                invite.email,
                invite.zone,
                int(invite.expires_at.timestamp()),
            ],
            _ALL_PURPOSE,
        )

    def _seal(self, values: list[object], purpose: bytes) -> str:
        payload = json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, payload, purpose)
        token = base64.urlsafe_b64encode(bytes([_VERSION]) + nonce + sealed).rstrip(b"=").decode("ascii")
        if len(token) > _MAX_TOKEN_CHARS:
            raise ValueError("the recipient's name and email are too long for a link")
        return token

    def open(self, token: str, now: datetime) -> SuggestedTime:
        tenant_id, type_id, starts, block_id, name, email, zone, expires_at = self._open(token, now, _TIME_PURPOSE)
        return SuggestedTime(
            tenant_id, type_id, datetime.fromtimestamp(starts, UTC), block_id, name, email, zone, expires_at
        )

    def open_all(self, token: str, now: datetime) -> TimesInvite:
        tenant_id, type_id, _, block_id, name, email, zone, expires_at = self._open(token, now, _ALL_PURPOSE)
        return TimesInvite(tenant_id, type_id, block_id, name, email, zone, expires_at)

    def _open(self, token: str, now: datetime, purpose: bytes) -> tuple[str, str, int, str, str, str, str, datetime]:
        if len(token) > _MAX_TOKEN_CHARS:
            raise SuggestionLinkInvalid
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError) as exc:
            raise SuggestionLinkInvalid from exc
        if len(raw) < 1 + _NONCE_BYTES + 16 or raw[0] != _VERSION:
            raise SuggestionLinkInvalid
        try:
            payload = self._aead.decrypt(raw[1 : 1 + _NONCE_BYTES], raw[1 + _NONCE_BYTES :], purpose)
            tenant_id, type_id, starts, block_id, name, email, zone, expires = json.loads(payload)
            expires_at = datetime.fromtimestamp(int(expires), UTC)
            opened = (str(tenant_id), str(type_id), int(starts), str(block_id), str(name), str(email), str(zone))
        except (InvalidTag, ValueError, TypeError, OverflowError) as exc:
            raise SuggestionLinkInvalid from exc
        if now >= expires_at:
            raise SuggestionLinkExpired
        return (*opened, expires_at)


def describe_day(starts_at: datetime, zone: ZoneInfo) -> str:
    """ "Tuesday 24 November": the day a time falls on in the recipient's zone."""
    local = starts_at.astimezone(zone)
    return f"{local:%A} {local.day} {local:%B}"


def describe_clock(starts_at: datetime, zone: ZoneInfo) -> str:
    return f"{starts_at.astimezone(zone):%H:%M}"


def describe_start(starts_at: datetime, zone: ZoneInfo) -> str:
    """ "Tuesday 24 November, 15:00": the day and a 24-hour time in the recipient's zone (the zone is named once,
    above the list)."""
    local = starts_at.astimezone(zone)
    return f"{local:%A} {local.day} {local:%B}, {local:%H:%M}"


@dataclass(frozen=True, slots=True)
class TimesBlock:
    type_name: str
    duration_minutes: int
    zone_name: str
    times: tuple[tuple[str, str], ...]
    """(label, url) per suggested time."""
    see_all_url: str


def render_times_html(block: TimesBlock) -> str:
    """Structural HTML only (table, bold, links), like Insert link: Outlook strips inline CSS."""
    rows = "".join(
        f'<tr><td><a href="{escape(url, quote=True)}" id="LPNoLP">{escape(label)}</a></td></tr>'
        for label, url in block.times
    )
    title = escape(f"{block.type_name} ({block.duration_minutes} minutes)")
    zone = escape(f"Times in {block.zone_name}. Pick one to book it:")
    see_all = escape(block.see_all_url, quote=True)
    return (
        f"<table><tbody><tr><td><b>{title}</b></td></tr><tr><td>{zone}</td></tr>{rows}"
        f'<tr><td><a href="{see_all}" id="LPNoLP">See all times</a></td></tr></tbody></table>'
    )


def render_times_text(block: TimesBlock) -> str:
    lines = [
        f"{block.type_name} ({block.duration_minutes} minutes)",
        f"Times in {block.zone_name}. Pick one to book it:",
    ]
    lines += [f"- {label}: {url}" for label, url in block.times]
    lines.append(f"See all times: {block.see_all_url}")
    return "\n".join(lines) + "\n"


def link_lifetime(days: int) -> timedelta:
    return timedelta(days=days)
