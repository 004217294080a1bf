"""LinkSigner on its own: what goes in comes out, for the right purpose and key, until it expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pages.links import LinkSigner
from scheduling.errors import LinkExpired, LinkInvalid

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SIGNER = LinkSigner("unit-test-secret-key-that-is-long-enough-0123")


@pytest.mark.parametrize(
    ("tenant_id", "subject_id"),
    [
        ("e6dde8ba375e4770bc8fc942239cf32b", "9fb62e97a22145f8bb1dfa4b55a9a4bf"),
        ("x", "E6DDE8BA375E4770BC8FC942239CF32B"),
        ("tenant-ü", "a" * 254),
    ],
)
def test_any_ids_come_back_exactly_as_they_were_signed(tenant_id: str, subject_id: str) -> None:
    expires = NOW + timedelta(days=3)
    claims = SIGNER.verify("request", SIGNER.sign("request", tenant_id, subject_id, expires), NOW)
    assert (claims.tenant_id, claims.subject_id, claims.expires_at) == (tenant_id, subject_id, expires)


def test_a_token_is_valid_until_the_second_it_expires() -> None:
    expires = NOW + timedelta(hours=1)
    token = SIGNER.sign("manage", "t", "b", expires)
    assert SIGNER.verify("manage", token, expires - timedelta(seconds=1)).subject_id == "b"
    with pytest.raises(LinkExpired):
        SIGNER.verify("manage", token, expires)


def test_garbage_and_overlong_tokens_are_invalid_not_errors() -> None:
    for token in ("", "A", "!!!!", "AAAA" * 30, "a.b", "x" * 401):
        with pytest.raises(LinkInvalid):
            SIGNER.verify("manage", token, NOW)


def test_ids_too_long_for_a_link_are_refused_when_signing_not_when_opening() -> None:
    with pytest.raises(ValueError, match="shorter than 255"):
        SIGNER.sign("manage", "t", "a" * 255, NOW)
    with pytest.raises(ValueError, match="exceed 400"):
        SIGNER.sign("manage", "b" * 200, "a" * 200, NOW)
