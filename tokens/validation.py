"""The one token validator: signing keys (OpenID metadata → JWKS, cached, refetched on an unknown `kid`) and the JWT
checks every Slotwise entrypoint shares.

The bot (Bot Framework channel tokens and its tenant's Entra tokens), the Outlook add-in API (Entra v2 access tokens)
and, later, the PSA ticket view all verify tokens here; each adds only the rules of its own protocol on top (the bot's
channel endorsements and serviceUrl claim, the add-in's scope and tenant binding). Keeping one copy means a fix to key
caching or to the decode options reaches every caller at once.

Failures are `TokenRejected` with a short machine `reason` and a human `message` that never quotes token contents;
`KeysUnavailable` means the issuer's keys cannot be fetched right now (callers answer 503: the sender is not known to
be wrong)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiohttp
import jwt
from yarl import URL

logger = logging.getLogger(__name__)

CLOCK_SKEW_SECONDS: Final = 300
"""Bot Framework's documented tolerance (botframework-connector `channel_validation.py`); Entra's own libraries use
the same five minutes (Microsoft.IdentityModel `TokenValidationParameters.DefaultClockSkew`)."""

ENTRA_METADATA_TEMPLATE: Final = "https://login.microsoftonline.com/{tenant_id}/v2.0/.well-known/openid-configuration"
"""A tenant's OpenID metadata; with `common` it names the key set shared by every tenant (the add-in's default)."""

ENTRA_V2_ISSUER_TEMPLATE: Final = "https://login.microsoftonline.com/{tenant_id}/v2.0"
"""The issuer of an Entra v2.0 token: the token's own `tid` substituted in
(https://learn.microsoft.com/entra/identity-platform/access-tokens#validate-the-issuer)."""

FETCH_TIMEOUT: Final = aiohttp.ClientTimeout(total=5)
"""Teams gives an invoke 5 s in total and a task pane shows a spinner meanwhile, so a slow key endpoint must fail
fast."""
MAX_DOCUMENT_BYTES: Final = 1024 * 1024
_LOOPBACK_NAMES = frozenset({"localhost"})

Reason = Literal[
    "missing",
    "malformed",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "missing_claim",
    "wrong_issuer",
    "wrong_audience",
    "rejected",
]


class TokenRejected(Exception):
    """A token that fails a check. `reason` names the rule for callers that map it to their own wording or error
    code; `message` is safe to show (it never contains token contents)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message


class KeysUnavailable(Exception):
    """The metadata or key document could not be fetched or made no sense."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    key: jwt.PyJWK
    endorsements: frozenset[str]
    """Channel ids this key may sign for (Bot Framework keys only; Entra keys carry none)."""


@dataclass(frozen=True, slots=True)
class UnverifiedToken:
    """A token whose shape was checked (a JWT, RS256, names its key) but whose signature was not, yet."""

    raw: str
    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    """Untrusted until `verify_token` returns: only for choosing which issuer's keys to try."""
    kid: str


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_fetchable(url: str, what: str) -> None:
    """Raise ValueError unless `url` is https (or http on a loopback host, for test servers): signing keys fetched
    over plain http could be swapped by anyone on the path."""
    parsed = URL(url)
    host = (parsed.raw_host or "").lower()
    if not parsed.is_absolute() or not host:
        raise ValueError(f"{what} must be an absolute URL")
    if parsed.scheme != "https" and not (parsed.scheme == "http" and is_loopback(host)):
        raise ValueError(f"{what} must use https (plain http is accepted for loopback test servers only)")


class KeySet:
    """One issuer's keys: OpenID metadata document → `jwks_uri` → JWKS, cached for `max_age`.

    An unknown `kid` triggers one refetch (keys roll over), but at most once per `refetch_interval`, so a flood of
    tokens with made-up kids costs the key endpoint one request per interval. A failed scheduled refresh keeps the
    previous keys and is retried after `retry_interval`; with no keys at all, callers get `KeysUnavailable`."""

    def __init__(
        self,
        metadata_url: str,
        session: aiohttp.ClientSession,
        *,
        label: str,
        max_age: float,
        refetch_interval: float,
        retry_interval: float,
        clock: Callable[[], float],
    ) -> None:
        require_fetchable(metadata_url, f"the {label} OpenID metadata URL")
        self._metadata_url = metadata_url
        self._session = session
        self._label = label
        self._max_age = max_age
        self._refetch_interval = refetch_interval
        self._retry_interval = retry_interval
        self._clock = clock
        self._keys: dict[str, SigningKey] | None = None
        self._refresh_due = 0.0
        self._last_refetch: float | None = None
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str) -> SigningKey | None:
        """The key named `kid`, or None if the issuer does not publish it. Raises `KeysUnavailable`."""
        if self._keys is None or self._clock() >= self._refresh_due:
            await self._scheduled_refresh()
        if self._keys is None:  # _scheduled_refresh raises first; this keeps the type checker informed
            raise KeysUnavailable("no keys loaded")
        known = self._keys.get(kid)
        if known is not None:
            return known
        async with self._lock:
            # Another request may have refetched while this one waited for the lock.
            known = self._keys.get(kid)
            if known is not None:
                return known
            now = self._clock()
            if self._last_refetch is not None and now - self._last_refetch < self._refetch_interval:
                return None
            self._last_refetch = now
            logger.info("%s signing keys: unknown key id, fetching the key set again", self._label)
            self._store(await self._fetch())
            return self._keys.get(kid)

    async def _scheduled_refresh(self) -> None:
        async with self._lock:
            now = self._clock()
            if self._keys is not None and now < self._refresh_due:
                return
            if self._keys is None and now < self._refresh_due:
                raise KeysUnavailable("the last attempt failed moments ago")
            try:
                keys = await self._fetch()
            except KeysUnavailable:
                self._refresh_due = now + self._retry_interval
                if self._keys is None:
                    raise
                logger.warning("%s signing keys could not be refreshed; still using the cached keys", self._label)
                return
            self._store(keys)

    def _store(self, keys: dict[str, SigningKey]) -> None:
        self._keys = keys
        self._refresh_due = self._clock() + self._max_age

    async def _fetch(self) -> dict[str, SigningKey]:
        metadata = await self._get_json(self._metadata_url, "OpenID metadata")
        jwks_uri = metadata.get("jwks_uri") if isinstance(metadata, dict) else None
        if not isinstance(jwks_uri, str):
            raise KeysUnavailable("the OpenID metadata names no jwks_uri")
        try:
            require_fetchable(jwks_uri, "jwks_uri")
        except ValueError as exc:
            raise KeysUnavailable(str(exc)) from None
        if URL(self._metadata_url).scheme == "https" and URL(jwks_uri).scheme != "https":
            raise KeysUnavailable("the OpenID metadata points at a key set over plain http")
        document = await self._get_json(jwks_uri, "key set")
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise KeysUnavailable("the key set has no keys array")
        keys: dict[str, SigningKey] = {}
        for entry in entries:
            parsed = _signing_key_from(entry)
            if parsed is not None:
                keys[parsed[0]] = parsed[1]
        if not keys:
            raise KeysUnavailable("the key set holds no usable RSA signing key")
        logger.info("%s signing keys loaded: %d keys", self._label, len(keys))
        return keys

    async def _get_json(self, url: str, what: str) -> Any:
        body = bytearray()
        try:
            async with self._session.get(url, timeout=FETCH_TIMEOUT, allow_redirects=False) as response:
                if response.status != 200:
                    raise KeysUnavailable(f"the {what} endpoint answered HTTP {response.status}")
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body.extend(chunk)
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise KeysUnavailable(f"the {what} document is larger than {MAX_DOCUMENT_BYTES} bytes")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KeysUnavailable(f"the {what} endpoint is unreachable ({type(exc).__name__})") from exc
        try:
            return json.loads(body)
        except ValueError:
            raise KeysUnavailable(f"the {what} document is not JSON") from None


def _signing_key_from(entry: object) -> tuple[str, SigningKey] | None:
    if not isinstance(entry, dict):
        return None
    kid = entry.get("kid")
    if not isinstance(kid, str) or not kid or entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
        return None
    try:
        key = jwt.PyJWK(entry, algorithm="RS256")
    except jwt.PyJWTError:
        return None
    endorsements = entry.get("endorsements")
    names = [item for item in endorsements if isinstance(item, str)] if isinstance(endorsements, list) else []
    return kid, SigningKey(key, frozenset(names))


# Claim checks


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header. Raises `TokenRejected` ("missing" without a header,
    "malformed" for any other scheme or shape)."""
    if authorization is None or not authorization.strip():
        raise TokenRejected("missing", "the request has no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(char.isspace() for char in token):
        raise TokenRejected("malformed", "the Authorization header is not a Bearer token")
    return token


def parse_token(token: str) -> UnverifiedToken:
    """Check the token's shape before any key is fetched: a JWT, signed with RS256 (the only algorithm Microsoft uses
    for these tokens; refusing the rest shuts out `none` and HS256-with-a-public-key), naming its key."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenRejected("malformed", "the bearer token is not a well-formed JWT") from None
    if header.get("alg") != "RS256":
        raise TokenRejected("malformed", "the token is not signed with RS256, the only algorithm accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenRejected("malformed", "the token does not name its signing key (no kid)")
    return UnverifiedToken(token, header, unverified, kid)


async def verify_token(
    parsed: UnverifiedToken,
    keys: KeySet,
    *,
    issuers: Iterable[str],
    required: tuple[str, ...] = ("exp", "iss", "aud"),
    leeway: float = CLOCK_SKEW_SECONDS,
) -> tuple[dict[str, Any], SigningKey]:
    """The token's claims once its signature verifies with `keys`, `iss` is one of `issuers` and `exp`/`nbf` hold
    within `leeway` seconds. The audience is the caller's to check (`check_audience`): who "we" are differs per
    entrypoint. Raises `TokenRejected`, or `KeysUnavailable` when the keys cannot be fetched."""
    signing_key = await keys.key_for(parsed.kid)
    if signing_key is None:
        raise TokenRejected("unknown_key", "the token's signing key is not published by its issuer")
    try:
        claims = jwt.decode(
            parsed.raw,
            signing_key.key,
            algorithms=["RS256"],
            issuer=tuple(issuers),
            leeway=leeway,
            options={"require": list(required), "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRejected("expired", "the token has expired") from None
    except jwt.ImmatureSignatureError:
        raise TokenRejected("not_yet_valid", "the token is not valid yet") from None
    except jwt.InvalidSignatureError:
        raise TokenRejected("bad_signature", "the token's signature does not verify") from None
    except jwt.InvalidIssuerError:
        raise TokenRejected("wrong_issuer", "the token was issued by an issuer that is not trusted") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRejected("missing_claim", f"the token lacks the {exc.claim!r} claim") from None
    except jwt.PyJWTError as exc:
        raise TokenRejected("rejected", f"the token was rejected ({type(exc).__name__})") from None
    return dict(claims), signing_key


def check_audience(claims: Mapping[str, Any], audiences: Collection[str]) -> None:
    """Raise `TokenRejected("wrong_audience")` unless `aud` is a single string equal to one of `audiences`, ignoring
    case (app ids are GUIDs and Entra lower-cases them). A list-valued `aud` is refused, as the Agents SDK does."""
    aud = claims.get("aud")
    wanted = {audience.lower() for audience in audiences if audience}
    if not isinstance(aud, str) or aud.lower() not in wanted:
        raise TokenRejected("wrong_audience", "the token is for a different audience")


def entra_v2_issuer(tenant_id: str) -> str:
    return ENTRA_V2_ISSUER_TEMPLATE.format(tenant_id=tenant_id)


def delegated_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """The delegated scopes of an Entra access token: `scp` is one space-separated string
    (https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference#payload-claims)."""
    scp = claims.get("scp")
    return frozenset(scp.split()) if isinstance(scp, str) else frozenset()
