"""Who is calling `/addin/api/*`: an Entra v2 access token for our API, issued to a rep of a bound tenant.

The task pane gets the token with nested app authentication (MSAL.js `createNestablePublicClientApplication`) or the
Office dialog fallback, for the scope `<app id URI>/access_as_user`, and sends it as `Authorization: Bearer`. The
checks follow Microsoft's guidance for web APIs (https://learn.microsoft.com/entra/identity-platform/access-tokens,
reference/outlook_and_pods.md §1.4), using the shared validator in `tokens/validation.py` for keys and signatures:

1. signature (RS256) with a key from the JWKS of `openid_metadata_url` (by default the multi-tenant `common` keys),
   cached and refetched when an unknown `kid` appears;
2. `iss` is exactly `https://login.microsoftonline.com/{tid}/v2.0` for the token's own `tid` (a v1 token, or one whose
   issuer names another tenant, is refused);
3. `exp`/`nbf` with five minutes of skew;
4. `aud` is our API's client id or its app ID URI;
5. `scp` contains `access_as_user` (an app-only token has no `scp` and is refused: the API acts for a person);
6. `tid` is some Slotwise tenant's `microsoft_tenant_id`, and the user maps by `oid`, then by email, to a user of
   that tenant only.

Every failure is an `AddinAuthError` with a distinct code the task pane can act on (401), or 503 when the keys cannot
be fetched (the caller is not known to be wrong)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiohttp

from scheduling.model import TeamsIdentity, TypeSummary
from tokens.validation import (
    CLOCK_SKEW_SECONDS,
    ENTRA_METADATA_TEMPLATE,
    KeySet,
    KeysUnavailable,
    TokenRejected,
    bearer_token,
    check_audience,
    delegated_scopes,
    entra_v2_issuer,
    parse_token,
    require_fetchable,
    verify_token,
)

logger = logging.getLogger(__name__)

DEFAULT_METADATA_URL: Final = ENTRA_METADATA_TEMPLATE.format(tenant_id="common")
"""The keys Entra signs every tenant's v2 tokens with; the issuer is then checked against the token's own `tid`."""
DEFAULT_SCOPE: Final = "access_as_user"
_MAX_REMEMBERED_TOKENS: Final = 4096


class RepLookup(Protocol):
    """What a token's tenant and user resolve to (see `AddinDirectory.find_rep`)."""

    @property
    def bound(self) -> bool: ...

    @property
    def identity(self) -> TeamsIdentity | None: ...

    @property
    def config_version(self) -> int: ...


class AddinDirectory(Protocol):
    """What the add-in API reads about reps; every method but `find_rep` takes a tenant id that came from a resolved
    identity, never from the request."""

    async def find_rep(self, microsoft_tenant_id: str, aad_object_id: str | None, email: str | None) -> RepLookup:
        """Whether a Slotwise tenant names this Entra tenant, the user of that tenant only, and the tenant's
        configuration version (what per-process caches of the tenant file's content are checked against)."""
        ...

    async def types_for_user(
        self, tenant_id: str, user_id: str, *, config_version: int | None = None
    ) -> list[TypeSummary]: ...

    async def recipient_time_zone(self, tenant_id: str, email: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Rep:
    """An authenticated rep, with the tenant's configuration version read while resolving them: anything derived
    from the tenant file alone (the rep's types, a type's booking target) may be reused while it holds."""

    identity: TeamsIdentity
    config_version: int


@dataclass(frozen=True, slots=True)
class AddinAuthSettings:
    """Which Entra app the add-in API is. Built from `settings.Settings` by the composition root."""

    client_id: str | None
    """The API's Entra app (client) id: by default the bot's app, which then also exposes `access_as_user`."""
    app_id_uri: str | None
    """The API's application ID URI (`api://<host>/<client id>`); tokens may name it instead of the client id."""
    openid_metadata_url: str = DEFAULT_METADATA_URL
    scope: str = DEFAULT_SCOPE


class AddinAuthError(Exception):
    """A refused add-in API call. `code` is one of: missing, malformed, invalid_signature, expired, not_yet_valid,
    wrong_audience, wrong_tenant, unbound_tenant, missing_scope, unknown_user, not_configured, keys_unavailable."""

    def __init__(self, code: str, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


_REASON_CODES: Final = {
    "missing": "missing",
    "malformed": "malformed",
    "missing_claim": "malformed",
    "rejected": "malformed",
    "unknown_key": "invalid_signature",
    "bad_signature": "invalid_signature",
    "expired": "expired",
    "not_yet_valid": "not_yet_valid",
    "wrong_issuer": "wrong_tenant",
    "wrong_audience": "wrong_audience",
}
_MESSAGES: Final = {
    "wrong_issuer": "the token's issuer is not the Entra v2.0 issuer of its own tenant (tid)",
    "wrong_audience": "the token is not for the Slotwise add-in API (aud is neither its client id nor its app ID URI)",
}


class AddinAuthenticator:
    """Turns an Authorization header into the rep it speaks for. One instance per application: it caches keys."""

    def __init__(
        self,
        settings: AddinAuthSettings,
        session: aiohttp.ClientSession,
        directory: AddinDirectory,
        *,
        key_max_age: float = 24 * 3600,
        refetch_interval: float = 60.0,
        retry_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        require_fetchable(settings.openid_metadata_url, "addin_openid_metadata_url")
        self._settings = settings
        self._directory = directory
        self._audiences = tuple(value for value in (settings.client_id, settings.app_id_uri) if value)
        self._keys = KeySet(
            settings.openid_metadata_url,
            session,
            label="Entra (add-in API)",
            max_age=key_max_age,
            refetch_interval=refetch_interval,
            retry_interval=retry_interval,
            clock=clock,
        )
        self._wall_clock = wall_clock
        self._verified: dict[str, dict[str, Any]] = {}
        if not settings.client_id:
            logger.error("The Outlook add-in API has no Entra client id configured: every call will be refused")

    async def authenticate(self, authorization: str | None) -> TeamsIdentity:
        return (await self.authenticate_rep(authorization)).identity

    async def authenticate_rep(self, authorization: str | None) -> Rep:
        try:
            return await self._authenticate(authorization)
        except AddinAuthError as exc:
            log = logger.warning if exc.status >= 500 else logger.info
            log("Add-in API call refused with %d (%s): %s", exc.status, exc.code, exc.message)
            raise

    async def _authenticate(self, authorization: str | None) -> Rep:
        claims = await self.verified_claims(authorization)
        tid = str(claims["tid"]).lower()
        oid = claims.get("oid")
        found = await self._directory.find_rep(tid, oid if isinstance(oid, str) and oid else None, _email(claims))
        if not found.bound:
            raise AddinAuthError(
                "unbound_tenant", "this Microsoft 365 tenant is not connected to Slotwise (no tenant names it)"
            )
        if found.identity is None:
            raise AddinAuthError(
                "unknown_user", "you are not a Slotwise user of your organisation; ask its admin to add you"
            )
        return Rep(found.identity, found.config_version)

    async def verified_claims(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims once rules 1 to 5 hold (the tenant binding and user are `authenticate`'s).

        A token that passed them is remembered, by its exact text, until it expires: the pane sends the same token
        (MSAL caches it for about an hour) with every call, and its signature and claims cannot have changed.
        Expiry is checked again on every use."""
        if not self._settings.client_id:
            raise AddinAuthError("not_configured", "the add-in API has no Entra app configured", status=503)
        try:
            raw = bearer_token(authorization)
        except TokenRejected as exc:
            raise AddinAuthError(_REASON_CODES[exc.reason], exc.message) from None
        remembered = self._verified.get(raw)
        if remembered is not None:
            if self._wall_clock() < float(remembered["exp"]) + CLOCK_SKEW_SECONDS:
                return remembered
            del self._verified[raw]
        claims = await self._verify(raw)
        if isinstance(claims.get("exp"), int | float):
            if len(self._verified) >= _MAX_REMEMBERED_TOKENS:
                self._verified.clear()
            self._verified[raw] = claims
        return claims

    async def _verify(self, raw: str) -> dict[str, Any]:
        try:
            parsed = parse_token(raw)
        except TokenRejected as exc:
            raise AddinAuthError(_REASON_CODES[exc.reason], exc.message) from None
        tid = parsed.claims.get("tid")
        if not isinstance(tid, str) or not tid.strip():
            raise AddinAuthError("malformed", "the token names no tenant (tid)")
        try:
            claims, _ = await verify_token(
                parsed,
                self._keys,
                issuers=(entra_v2_issuer(tid),),
                required=("exp", "iss", "aud", "tid"),
            )
            check_audience(claims, self._audiences)
        except KeysUnavailable as exc:
            logger.warning("Cannot load the add-in API's signing keys: %s", exc)
            raise AddinAuthError(
                "keys_unavailable", "cannot verify your sign-in right now; try again in a minute", status=503
            ) from None
        except TokenRejected as exc:
            raise AddinAuthError(_REASON_CODES[exc.reason], _MESSAGES.get(exc.reason, exc.message)) from None
        if self._settings.scope not in delegated_scopes(claims):
            raise AddinAuthError("missing_scope", f"the token does not grant the {self._settings.scope} scope")
        return claims


def _email(claims: dict[str, Any]) -> str | None:
    """The rep's address: the optional `email` claim, else the sign-in name, which for work accounts is the UPN and
    usually the mail address (`preferred_username`, `upn`). Only used within the tenant the token was issued for."""
    for name in ("email", "preferred_username", "upn"):
        value = claims.get(name)
        if isinstance(value, str) and "@" in value:
            return value.strip()
    return None
