"""Encryption at rest for integration secrets: Fernet (AES-128-CBC + HMAC-SHA256) keyed from the app secret."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretsUnreadable(Exception):
    """Stored secrets cannot be decrypted: the app secret changed or the row was tampered with."""


class SecretBox:
    """Seals a mapping of secret values into one opaque token and opens it again.

    The key is derived with HKDF from SLOTWISE_SECRET_KEY under its own label, so the link-signing key and the
    encryption key are never the same bytes.
    """

    def __init__(self, app_secret: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"slotwise integration secrets v1").derive(
            app_secret.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, secrets: Mapping[str, str]) -> str:
        return self._fernet.encrypt(json.dumps(dict(secrets), sort_keys=True).encode()).decode()

    def open(self, token: str) -> dict[str, str]:
        try:
            data = json.loads(self._fernet.decrypt(token.encode()))
        except (InvalidToken, ValueError) as exc:
            raise SecretsUnreadable(
                "stored integration secrets cannot be decrypted with this SLOTWISE_SECRET_KEY"
            ) from exc
        return {str(key): str(value) for key, value in data.items()}
