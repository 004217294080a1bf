"""FakeBotIdentity: Bot Framework and Entra OpenID metadata + JWKS over real loopback HTTP, and a token minter.

Shapes follow what Microsoft publishes (reference/apis.md §5.1):
- `/v1/.well-known/openidconfiguration` → `{"issuer": "https://api.botframework.com", "jwks_uri": …}` and
  `/v1/.well-known/keys`, whose RSA keys carry `"endorsements": ["msteams", …]` (the channels a key may sign for);
- `/{tenant}/v2.0/.well-known/openid-configuration` and `/{tenant}/discovery/v2.0/keys` for a tenant's Entra keys
  (no endorsements).
Every GET is counted per path, and `unavailable` makes every route answer 503, so key caching, rollover and outage
handling are observable. `mint` signs tokens with a key the fake publishes (or with any other key, to forge).

Run it alone: `python -m tests.fakes.bot_identity --port 8086` prints the metadata URLs and a sample token.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CHANNEL_ISSUER = "https://api.botframework.com"
BOT_APP_ID = "3b1f0c6e-6a0e-4f1e-9d54-7a0c2f0d1b01"
TENANT_ID = "5c4e2d1a-0b9f-4c8e-8d7a-6f5e4d3c2b1a"
OTHER_TENANT_ID = "9e8d7c6b-5a49-4838-a726-150493827160"
CALLER_APP_ID = "00000000-0000-0000-0000-00000000a9e5"
"""The app that requests `entra_claims` tokens (their `azp`/`appid`): a service of the bot's tenant."""
TEAMS_SERVICE_URL = "https://smba.trafficmanager.net/emea/"
CHANNEL_METADATA_PATH = "/v1/.well-known/openidconfiguration"
CHANNEL_KEYS_PATH = "/v1/.well-known/keys"


def tenant_metadata_path(tenant_id: str) -> str:
    return f"/{tenant_id}/v2.0/.well-known/openid-configuration"


def tenant_keys_path(tenant_id: str) -> str:
    return f"/{tenant_id}/discovery/v2.0/keys"


def generate_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class SigningKey:
    """An RSA key pair and the channels it is endorsed for."""

    kid: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    endorsements: tuple[str, ...] = ("msteams",)

    def public_jwk(self, *, with_endorsements: bool = True) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig"})
        if with_endorsements:
            jwk["endorsements"] = list(self.endorsements)
        return jwk


def mint(
    key: SigningKey | rsa.RSAPrivateKey,
    claims: Mapping[str, Any],
    *,
    kid: str | None = None,
    algorithm: str = "RS256",
    headers: Mapping[str, Any] | None = None,
) -> str:
    """A signed JWT. `kid` defaults to the key's; pass a plain private key plus a published kid to forge."""
    private_key = key.private_key if isinstance(key, SigningKey) else key
    name = kid if kid is not None else (key.kid if isinstance(key, SigningKey) else None)
    header: dict[str, Any] = {"kid": name} if name is not None else {}
    header.update(headers or {})
    return jwt.encode(dict(claims), private_key, algorithm=algorithm, headers=header)


def channel_claims(
    app_id: str = BOT_APP_ID,
    service_url: str | None = TEAMS_SERVICE_URL,
    *,
    issuer: str = CHANNEL_ISSUER,
    now: float | None = None,
    lifetime: float = 3600,
    **extra: Any,
) -> dict[str, Any]:
    """The claims of a Bot Framework channel token (what Teams sends): serviceurl, nbf, exp, iss, aud."""
    moment = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"nbf": moment - 5, "exp": int(moment + lifetime), "iss": issuer, "aud": app_id}
    if service_url is not None:
        claims["serviceurl"] = service_url
    claims.update(extra)
    return claims


def entra_claims(
    app_id: str = BOT_APP_ID,
    tenant_id: str = TENANT_ID,
    *,
    version: str = "2.0",
    caller_app_id: str = CALLER_APP_ID,
    now: float | None = None,
    lifetime: float = 3600,
    **extra: Any,
) -> dict[str, Any]:
    """The claims of an app-only Entra token for the bot's app (v2.0: login.microsoftonline.com issuer, `azp`;
    v1.0: sts.windows.net issuer, `appid`)."""
    moment = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "aud": app_id,
        "iat": moment - 5,
        "nbf": moment - 5,
        "exp": int(moment + lifetime),
        "tid": tenant_id,
        "ver": version,
        "oid": str(uuid.uuid4()),
    }
    if version == "2.0":
        claims.update(iss=f"https://login.microsoftonline.com/{tenant_id}/v2.0", azp=caller_app_id)
    else:
        claims.update(iss=f"https://sts.windows.net/{tenant_id}/", appid=caller_app_id)
    claims.update(extra)
    return claims


@dataclass
class FakeBotIdentity:
    """The key publishers a bot trusts: Bot Framework's channel keys and per-tenant Entra keys."""

    channel_keys: list[SigningKey] = field(default_factory=list)
    tenant_keys: dict[str, list[SigningKey]] = field(default_factory=dict)
    fetches: Counter[str] = field(default_factory=Counter)
    """GET requests per path."""
    unavailable: bool = False
    """Every route answers 503 while set."""

    def add_channel_key(
        self, kid: str | None = None, endorsements: Iterable[str] = ("msteams",), *, private_key: Any = None
    ) -> SigningKey:
        key = SigningKey(kid or f"bf-{uuid.uuid4().hex[:10]}", private_key or generate_rsa_key(), tuple(endorsements))
        self.channel_keys.append(key)
        return key

    def add_tenant_key(
        self, tenant_id: str = TENANT_ID, kid: str | None = None, *, private_key: Any = None
    ) -> SigningKey:
        key = SigningKey(kid or f"entra-{uuid.uuid4().hex[:10]}", private_key or generate_rsa_key(), ())
        self.tenant_keys.setdefault(tenant_id, []).append(key)
        return key

    def key_fetches(self) -> int:
        """How often any key set (not metadata) was fetched."""
        return sum(count for path, count in self.fetches.items() if path.endswith("/keys"))

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._count])
        app.router.add_get(CHANNEL_METADATA_PATH, self._channel_metadata)
        app.router.add_get(CHANNEL_KEYS_PATH, self._channel_key_set)
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._tenant_metadata)
        app.router.add_get("/{tenant}/discovery/v2.0/keys", self._tenant_key_set)
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.fetches[request.path] += 1
        if self.unavailable:
            return web.json_response({"error": "temporarily_unavailable"}, status=503)
        response: web.StreamResponse = await handler(request)
        return response

    async def _channel_metadata(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": CHANNEL_ISSUER,
                "authorization_endpoint": "https://invalid.botframework.com",
                "jwks_uri": f"{request.scheme}://{request.host}{CHANNEL_KEYS_PATH}",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }
        )

    async def _channel_key_set(self, request: web.Request) -> web.Response:
        return web.json_response({"keys": [key.public_jwk() for key in self.channel_keys]})

    async def _tenant_metadata(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        if tenant not in self.tenant_keys:
            return web.json_response({"error": "invalid_tenant"}, status=400)
        return web.json_response(
            {
                "issuer": f"https://login.microsoftonline.com/{tenant}/v2.0",
                "jwks_uri": f"{request.scheme}://{request.host}{tenant_keys_path(tenant)}",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def _tenant_key_set(self, request: web.Request) -> web.Response:
        keys = self.tenant_keys.get(request.match_info["tenant"])
        if keys is None:
            return web.json_response({"error": "invalid_tenant"}, status=400)
        return web.json_response({"keys": [key.public_jwk(with_endorsements=False) for key in keys]})


async def _serve_forever(port: int) -> None:
    fake = FakeBotIdentity()
    key = fake.add_channel_key("demo-channel-key")
    fake.add_tenant_key(TENANT_ID, "demo-tenant-key")
    runner = web.AppRunner(fake.build_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    base = f"http://127.0.0.1:{port}"
    sys.stdout.write(
        "Fake Bot Framework / Entra key publisher\n"
        f"  openid_metadata_url:        {base}{CHANNEL_METADATA_PATH}\n"
        f"  tenant_openid_metadata_url: {base}{tenant_metadata_path(TENANT_ID)}\n"
        f"  app_id: {BOT_APP_ID}   tenant_id: {TENANT_ID}\n"
        f"  channel token (1 h, serviceurl {TEAMS_SERVICE_URL}):\n    {mint(key, channel_claims())}\n"
    )
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8086)
    args = parser.parse_args(argv)
    asyncio.run(_serve_forever(args.port))


if __name__ == "__main__":
    main()
