"""Encryption at rest for integration secrets (Fernet: AES-128-CBC + HMAC-SHA256) and their keyed fingerprints."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretsUnreadable(Exception):
    """Stored secrets cannot be decrypted: the app secret changed or the row was tampered with."""


class SecretBox:
    """Seals a mapping of secret values into one opaque token and opens it again.

    The keys are derived with HKDF from SLOTWISE_SECRET_KEY, each under its own label, so the link key, the
    encryption key and the fingerprint key are never the same bytes.
    """

    def __init__(self, app_secret: str) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(app_secret, b"slotwise integration secrets v1")))
        self._fingerprint_key = _derive(app_secret, b"slotwise integration secret fingerprints v1")

    def fingerprint(self, tenant: str, kind: str, secrets: Mapping[str, str]) -> str:
        """A 64-character hex HMAC-SHA256 that changes when the secrets change, to tell whether a connection must
        be tested again without decrypting what is stored.

        Keyed, so a leaked fingerprint cannot be checked offline against guessed passwords; the tenant and the
        connection kind are part of the input, so one password shared by two tenants (or two connections) does
        not show up as two equal fingerprints.
        """
        message = json.dumps([tenant, kind, dict(secrets)], sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(self._fingerprint_key, message, hashlib.sha256).hexdigest()

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


def _derive(app_secret: str, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(app_secret.encode())
