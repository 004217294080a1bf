"""Bot security over real loopback HTTP: every inbound JWT rule, key caching and rollover, outbound tokens, allow-list."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import rsa
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.core import (
    AgentApplication,
    ApplicationOptions,
    MemoryStorage,
    RestChannelServiceClientFactory,
    TurnContext,
    TurnState,
)
from microsoft_agents.hosting.core.authorization import ClaimsIdentity
from microsoft_agents.hosting.core.connector.client import ConnectorClient

from bot.auth import (
    BOT_FRAMEWORK_SCOPE,
    BotAuthError,
    BotAuthSettings,
    InboundAuthenticator,
    MsalConnections,
    check_service_url,
)
from scheduling.errors import IntegrationAuthError, IntegrationRejected
from tests.fakes.bot_identity import (
    BOT_APP_ID,
    CALLER_APP_ID,
    CHANNEL_METADATA_PATH,
    OTHER_TENANT_ID,
    TEAMS_SERVICE_URL,
    TENANT_ID,
    FakeBotIdentity,
    SigningKey,
    channel_claims,
    entra_claims,
    generate_rsa_key,
    mint,
    tenant_metadata_path,
)
from tests.fakes.graph import FakeGraphServer, serve_fake_graph

APP_PASSWORD = "bot-secret-Zq8~do-not-leak"
AUTHENTICATOR = web.AppKey("authenticator", InboundAuthenticator)


@functools.cache
def pooled_key(index: int) -> rsa.RSAPrivateKey:
    """RSA key generation costs ~50 ms; the same few keys serve every test."""
    return generate_rsa_key()


def teams_activity(**overrides: Any) -> dict[str, Any]:
    activity: dict[str, Any] = {
        "type": "message",
        "id": "1730000000000",
        "channelId": "msteams",
        "serviceUrl": TEAMS_SERVICE_URL,
        "from": {"id": "29:user", "aadObjectId": str(uuid.uuid4())},
        "recipient": {"id": f"28:{BOT_APP_ID}"},
        "conversation": {"id": "a:conversation", "tenantId": TENANT_ID},
        "text": "hello",
    }
    activity.update(overrides)
    return {key: value for key, value in activity.items() if value is not None}


@dataclass
class KeyServer:
    fake: FakeBotIdentity
    channel: SigningKey
    tenant: SigningKey
    other_tenant: SigningKey
    base: str

    def settings(self, **overrides: Any) -> BotAuthSettings:
        settings = BotAuthSettings(
            app_id=BOT_APP_ID,
            app_password=APP_PASSWORD,
            tenant_id=TENANT_ID,
            allow_anonymous=False,
            openid_metadata_url=f"{self.base}{CHANNEL_METADATA_PATH}",
            tenant_openid_metadata_url=f"{self.base}{tenant_metadata_path(TENANT_ID)}",
        )
        return replace(settings, **overrides)


@dataclass
class ManualClock:
    moment: float = 1000.0

    def __call__(self) -> float:
        return self.moment


@pytest.fixture
async def keys() -> AsyncIterator[KeyServer]:
    fake = FakeBotIdentity()
    channel = fake.add_channel_key("bf-1", ("msteams", "webchat"), private_key=pooled_key(0))
    tenant = fake.add_tenant_key(TENANT_ID, "entra-1", private_key=pooled_key(1))
    other = fake.add_tenant_key(OTHER_TENANT_ID, "other-1", private_key=pooled_key(2))
    server = TestServer(fake.build_app())
    await server.start_server()
    yield KeyServer(fake, channel, tenant, other, base=str(server.make_url("")).rstrip("/"))
    await server.close()


async def messages(request: web.Request) -> web.Response:
    """What bot/app.py's /api/messages does before handing over to the SDK adapter."""
    activity = await request.json()
    if not isinstance(activity, dict):
        return web.json_response({"error": "the body is not an activity"}, status=400)
    try:
        identity = await request.app[AUTHENTICATOR].authenticate(request.headers.get("Authorization"), activity)
    except BotAuthError as exc:
        return web.json_response({"error": exc.message}, status=exc.status)
    return web.json_response({"claims": identity.claims, "anonymous": identity.allow_anonymous}, status=202)


def bot_app(settings: BotAuthSettings, **authenticator_options: Any) -> web.Application:
    app = web.Application()

    async def authenticator(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            app[AUTHENTICATOR] = InboundAuthenticator(settings, session, **authenticator_options)
            yield

    app.cleanup_ctx.append(authenticator)
    app.router.add_post("/api/messages", messages)
    return app


StartBot = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def start_bot() -> AsyncIterator[StartBot]:
    clients: list[TestClient[web.Request, web.Application]] = []

    async def start(
        settings: BotAuthSettings, **authenticator_options: Any
    ) -> TestClient[web.Request, web.Application]:
        client = TestClient(TestServer(bot_app(settings, **authenticator_options)))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


async def post(
    client: TestClient[web.Request, web.Application],
    *,
    token: str | None = None,
    authorization: str | None = None,
    activity: Any = None,
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": authorization or f"Bearer {token}"} if (token or authorization) else {}
    response = await client.post(
        "/api/messages", json=teams_activity() if activity is None else activity, headers=headers
    )
    return response.status, await response.json()


# Configuration and anonymous mode


async def test_without_an_app_id_or_anonymous_mode_every_request_is_refused(
    keys: KeyServer, start_bot: StartBot
) -> None:
    client = await start_bot(keys.settings(app_id=None, app_password=None))
    for token in (None, mint(keys.channel, channel_claims())):
        status, body = await post(client, token=token)
        assert (status, body["error"]) == (401, "bot authentication is not configured")
    assert keys.fake.fetches.total() == 0


async def test_anonymous_mode_admits_a_request_without_a_header_and_warns_once(
    keys: KeyServer, start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.auth")
    settings = keys.settings(
        app_id=None,
        app_password=None,
        allow_anonymous=True,
        allowed_service_hosts=("127.0.0.1",),
        allow_http_loopback=True,
    )
    client = await start_bot(settings)
    for _ in range(3):
        status, body = await post(client, activity=teams_activity(serviceUrl="http://127.0.0.1:56150/"))
        assert (status, body) == (202, {"claims": {}, "anonymous": True})
    warnings = [record for record in caplog.records if "ANONYMOUS" in record.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert keys.fake.fetches.total() == 0


async def test_the_anonymous_identity_makes_the_sdk_reply_without_a_token(keys: KeyServer) -> None:
    async with aiohttp.ClientSession() as session:
        settings = keys.settings(app_id=None, app_password=None, allow_anonymous=True)
        identity = await InboundAuthenticator(settings, session).authenticate(None, teams_activity())
    assert identity.allow_anonymous
    assert identity.claims == {}
    provider = MsalConnections(settings).get_token_provider(identity, TEAMS_SERVICE_URL)
    assert await provider.get_access_token("https://api.botframework.com", [BOT_FRAMEWORK_SCOPE]) == ""


async def test_anonymous_mode_still_validates_a_header_that_is_sent(keys: KeyServer, start_bot: StartBot) -> None:
    client = await start_bot(keys.settings(allow_anonymous=True))
    status, body = await post(client, token=mint(keys.channel, channel_claims()))
    assert status == 202
    assert body["anonymous"] is False
    assert body["claims"]["aud"] == BOT_APP_ID
    forged = mint(pooled_key(3), channel_claims(), kid="bf-1")
    assert (await post(client, token=forged))[0] == 401
    assert (await post(client, authorization="Bearer garbage"))[0] == 401


async def test_anonymous_mode_without_an_app_id_refuses_any_token(keys: KeyServer, start_bot: StartBot) -> None:
    client = await start_bot(keys.settings(app_id=None, app_password=None, allow_anonymous=True))
    status, body = await post(client, token=mint(keys.channel, channel_claims()))
    assert status == 401
    assert "no bot app id is configured" in body["error"]


async def test_anonymous_mode_still_applies_the_service_url_allow_list(keys: KeyServer, start_bot: StartBot) -> None:
    client = await start_bot(keys.settings(app_id=None, app_password=None, allow_anonymous=True))
    status, body = await post(client, activity=teams_activity(serviceUrl="http://127.0.0.1:56150/"))
    assert status == 403
    assert "serviceUrl" in body["error"]


# The valid cases


async def test_a_bot_framework_channel_token_is_accepted_with_its_claims(keys: KeyServer, start_bot: StartBot) -> None:
    client = await start_bot(keys.settings())
    claims = channel_claims()
    status, body = await post(client, token=mint(keys.channel, claims))
    assert status == 202
    assert body == {"claims": claims, "anonymous": False}


async def test_the_identity_carries_the_token_for_the_sdk(keys: KeyServer) -> None:
    token = mint(keys.channel, channel_claims())
    async with aiohttp.ClientSession() as session:
        identity = await InboundAuthenticator(keys.settings(), session).authenticate(
            f"bearer {token}", teams_activity()
        )
    assert isinstance(identity, ClaimsIdentity)
    assert identity.security_token == token
    assert not identity.allow_anonymous
    assert identity.get_token_scope() == [BOT_FRAMEWORK_SCOPE]


@pytest.mark.parametrize("version", ["2.0", "1.0"])
async def test_an_entra_token_of_the_bots_own_tenant_from_an_allowed_caller_is_accepted(
    keys: KeyServer, start_bot: StartBot, version: str
) -> None:
    client = await start_bot(keys.settings(allowed_callers=(CALLER_APP_ID.upper(),)))
    status, body = await post(client, token=mint(keys.tenant, entra_claims(version=version)))
    assert status == 202
    assert body["claims"]["tid"] == TENANT_ID
    assert keys.fake.fetches[tenant_metadata_path(TENANT_ID)] == 1


@pytest.mark.parametrize("version", ["2.0", "1.0"])
async def test_an_entra_token_from_an_app_that_is_not_an_allowed_caller_is_refused(
    keys: KeyServer, start_bot: StartBot, version: str
) -> None:
    """Any app registered in the tenant can get an Entra token for the bot's app id: issuer and tid say nothing
    about who is calling, so the calling app (azp in v2.0 tokens, appid in v1.0) must be one the admin listed."""
    client = await start_bot(keys.settings(allowed_callers=(str(uuid.uuid4()), CALLER_APP_ID)))
    for claims in (
        entra_claims(version=version, caller_app_id=str(uuid.uuid4())),
        _without(entra_claims(version=version), "azp" if version == "2.0" else "appid"),
        entra_claims(version=version, **{"azp" if version == "2.0" else "appid": ["not", "a", "string"]}),
    ):
        status, body = await post(client, token=mint(keys.tenant, claims))
        assert status == 401
        assert "not one of the bot's allowed callers" in body["error"]


async def test_without_allowed_callers_entra_tokens_are_refused_before_any_key_is_fetched(
    keys: KeyServer, start_bot: StartBot
) -> None:
    client = await start_bot(keys.settings())
    for version in ("2.0", "1.0"):
        status, body = await post(client, token=mint(keys.tenant, entra_claims(version=version)))
        assert status == 401
        assert "allowed callers only" in body["error"]
    assert keys.fake.fetches.total() == 0
    assert (await post(client, token=mint(keys.channel, channel_claims())))[0] == 202


async def test_an_entra_token_with_a_matching_service_url_claim_is_accepted(
    keys: KeyServer, start_bot: StartBot
) -> None:
    client = await start_bot(keys.settings(allowed_callers=(CALLER_APP_ID,)))
    token = mint(keys.tenant, entra_claims(serviceurl=TEAMS_SERVICE_URL))
    assert (await post(client, token=token))[0] == 202


@pytest.mark.parametrize(
    ("claim", "activity_url"),
    [
        ("https://smba.trafficmanager.net/emea/", "https://smba.trafficmanager.net/emea"),
        ("https://smba.trafficmanager.net/emea", "https://smba.trafficmanager.net/emea/"),
        ("https://SMBA.TrafficManager.net/emea/", "https://smba.trafficmanager.net/emea/"),
        ("HTTPS://smba.trafficmanager.net:443/emea/", "https://smba.trafficmanager.net/emea/"),
    ],
)
async def test_service_urls_compare_ignoring_host_case_default_port_and_a_trailing_slash(
    keys: KeyServer, start_bot: StartBot, claim: str, activity_url: str
) -> None:
    client = await start_bot(keys.settings())
    token = mint(keys.channel, channel_claims(service_url=claim))
    assert (await post(client, token=token, activity=teams_activity(serviceUrl=activity_url)))[0] == 202


@pytest.mark.parametrize(("offset", "status"), [(-240, 202), (-600, 401)])
async def test_an_expired_token_is_accepted_within_five_minutes_of_skew_only(
    keys: KeyServer, start_bot: StartBot, offset: int, status: int
) -> None:
    client = await start_bot(keys.settings())
    claims = channel_claims(now=time.time() + offset - 3600)  # exp = now + offset
    result, body = await post(client, token=mint(keys.channel, claims))
    assert result == status
    if status == 401:
        assert body["error"] == "the token has expired"


@pytest.mark.parametrize(("offset", "status"), [(120, 202), (600, 401)])
async def test_a_token_not_valid_yet_is_accepted_within_five_minutes_of_skew_only(
    keys: KeyServer, start_bot: StartBot, offset: int, status: int
) -> None:
    client = await start_bot(keys.settings())
    claims = channel_claims(nbf=int(time.time()) + offset)
    result, body = await post(client, token=mint(keys.channel, claims))
    assert result == status
    if status == 401:
        assert body["error"] == "the token is not valid yet"


# Every rejection rule: (what is wrong, how to build the request, the status, words from the message)

Build = Callable[[KeyServer], tuple[str | None, dict[str, Any]]]


def _header(token: str) -> str:
    return f"Bearer {token}"


def _without(claims: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in claims.items() if key != name}


def _with_tenant(activity: dict[str, Any], tenant_id: str) -> dict[str, Any]:
    """The activity as Teams would send it from `tenant_id`: both places that name the tenant agree."""
    return {
        **activity,
        "conversation": {**activity["conversation"], "tenantId": tenant_id},
        "channelData": {"tenant": {"id": tenant_id}},
    }


def _hs256_token() -> str:
    return jwt.encode(channel_claims(), "a-shared-secret-of-32-bytes-long!", algorithm="HS256", headers={"kid": "bf-1"})


def _unsigned_token() -> str:
    no_key: Any = None  # the "none" algorithm signs with nothing
    return jwt.encode(channel_claims(), no_key, algorithm="none", headers={"kid": "bf-1"})


REJECTIONS: dict[str, tuple[Build, int, str]] = {
    "no Authorization header": (lambda k: (None, teams_activity()), 401, "no Authorization header"),
    "a Basic header": (lambda k: ("Basic dXNlcjpwYXNz", teams_activity()), 401, "not a Bearer token"),
    "Bearer without a token": (lambda k: ("Bearer ", teams_activity()), 401, "not a Bearer token"),
    "Bearer with two words": (lambda k: ("Bearer a b", teams_activity()), 401, "not a Bearer token"),
    "a garbled token": (lambda k: ("Bearer not.a.jwt", teams_activity()), 401, "not a well-formed JWT"),
    "a signature by another key under a published kid": (
        lambda k: (_header(mint(pooled_key(3), channel_claims(), kid="bf-1")), teams_activity()),
        401,
        "signature does not verify",
    ),
    "a kid nobody publishes": (
        lambda k: (_header(mint(pooled_key(3), channel_claims(), kid="made-up")), teams_activity()),
        401,
        "not published",
    ),
    "no kid": (
        lambda k: (_header(mint(k.channel.private_key, channel_claims(), kid=None)), teams_activity()),
        401,
        "no kid",
    ),
    "HS256 with a published kid": (lambda k: (_header(_hs256_token()), teams_activity()), 401, "RS256"),
    "alg none": (lambda k: (_header(_unsigned_token()), teams_activity()), 401, "RS256"),
    "RS512": (
        lambda k: (_header(mint(k.channel, channel_claims(), algorithm="RS512")), teams_activity()),
        401,
        "RS256",
    ),
    "another audience": (
        lambda k: (_header(mint(k.channel, channel_claims(app_id=str(uuid.uuid4())))), teams_activity()),
        401,
        "different audience",
    ),
    "a list audience": (
        lambda k: (_header(mint(k.channel, channel_claims(aud=[BOT_APP_ID]))), teams_activity()),
        401,
        "different audience",
    ),
    "no exp": (
        lambda k: (_header(mint(k.channel, _without(channel_claims(), "exp"))), teams_activity()),
        401,
        "lacks the 'exp' claim",
    ),
    "an untrusted issuer signed with a channel key": (
        lambda k: (_header(mint(k.channel, channel_claims(issuer="https://evil.example"))), teams_activity()),
        401,
        "issuer this bot does not trust",
    ),
    "another tenant's Entra token": (
        lambda k: (_header(mint(k.other_tenant, entra_claims(tenant_id=OTHER_TENANT_ID))), teams_activity()),
        401,
        "issuer this bot does not trust",
    ),
    "an Entra token of our tenant signed with a channel key": (
        lambda k: (_header(mint(k.channel, entra_claims())), teams_activity()),
        401,
        "not published",
    ),
    "an Entra token whose tid is another tenant": (
        lambda k: (_header(mint(k.tenant, entra_claims(tid=OTHER_TENANT_ID))), teams_activity()),
        401,
        "tenant",
    ),
    "a key not endorsed for the activity's channel": (
        lambda k: (_header(mint(k.channel, channel_claims())), teams_activity(channelId="slack")),
        401,
        "not endorsed",
    ),
    "an activity without a channelId": (
        lambda k: (_header(mint(k.channel, channel_claims())), teams_activity(channelId=None)),
        401,
        "not endorsed",
    ),
    "a serviceurl claim for another host": (
        lambda k: (
            _header(mint(k.channel, channel_claims(service_url="https://smba.trafficmanager.net/emea/"))),
            teams_activity(serviceUrl="https://evil.botframework.com/emea/"),
        ),
        401,
        "serviceurl claim does not match",
    ),
    "a serviceurl claim for another path on the same host": (
        lambda k: (
            _header(mint(k.channel, channel_claims(service_url="https://smba.trafficmanager.net/amer/"))),
            teams_activity(serviceUrl="https://smba.trafficmanager.net/emea/"),
        ),
        401,
        "serviceurl claim does not match",
    ),
    "an activity without a serviceUrl": (
        lambda k: (_header(mint(k.channel, channel_claims())), teams_activity(serviceUrl=None)),
        401,
        "serviceurl claim does not match",
    ),
    "a channel token without a serviceurl claim": (
        lambda k: (_header(mint(k.channel, channel_claims(service_url=None))), teams_activity()),
        401,
        "no serviceurl claim",
    ),
    "an Entra token with a mismatched serviceurl claim": (
        lambda k: (
            _header(mint(k.tenant, entra_claims(serviceurl="https://smba.trafficmanager.net/amer/"))),
            teams_activity(),
        ),
        401,
        "serviceurl claim does not match",
    ),
    "a channel token for an activity of another tenant": (
        lambda k: (
            _header(mint(k.channel, channel_claims())),
            _with_tenant(teams_activity(), OTHER_TENANT_ID),
        ),
        403,
        "activity's tenant is not this bot's tenant",
    ),
    "a channel token whose tid is another tenant": (
        lambda k: (_header(mint(k.channel, channel_claims(tid=OTHER_TENANT_ID))), teams_activity()),
        403,
        "token's tenant is not this bot's tenant",
    ),
    "an activity that names two tenants": (
        lambda k: (
            _header(mint(k.channel, channel_claims())),
            teams_activity(channelData={"tenant": {"id": OTHER_TENANT_ID}}),
        ),
        403,
        "names two different tenants",
    ),
    "an activity that names no tenant": (
        lambda k: (_header(mint(k.channel, channel_claims())), teams_activity(conversation={"id": "a:1"})),
        403,
        "names no tenant",
    ),
    "an allowed caller's Entra token for an activity of another tenant": (
        lambda k: (_header(mint(k.tenant, entra_claims())), _with_tenant(teams_activity(), OTHER_TENANT_ID)),
        403,
        "activity's tenant is not this bot's tenant",
    ),
    "an Entra token from an app that is not an allowed caller": (
        lambda k: (_header(mint(k.tenant, entra_claims(caller_app_id=str(uuid.uuid4())))), teams_activity()),
        401,
        "not one of the bot's allowed callers",
    ),
    "a valid token for a serviceUrl outside the allow-list": (
        lambda k: (
            _header(mint(k.channel, channel_claims(service_url="https://collector.evil.example/"))),
            teams_activity(serviceUrl="https://collector.evil.example/"),
        ),
        403,
        "not in allowed_service_hosts",
    ),
}


@pytest.mark.parametrize("case", list(REJECTIONS), ids=list(REJECTIONS))
async def test_a_request_is_refused_for(keys: KeyServer, start_bot: StartBot, case: str) -> None:
    build, expected_status, words = REJECTIONS[case]
    authorization, activity = build(keys)
    # With an allowed caller, so the Entra cases reach the rule they are about.
    client = await start_bot(keys.settings(allowed_callers=(CALLER_APP_ID,)))
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = await client.post("/api/messages", json=activity, headers=headers)
    body = await response.json()
    assert response.status == expected_status, body
    assert words in body["error"]


async def test_without_a_tenant_no_entra_token_is_trusted(
    keys: KeyServer, start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    client = await start_bot(
        keys.settings(tenant_id=None, tenant_openid_metadata_url=None, allowed_callers=(CALLER_APP_ID,))
    )
    status, body = await post(client, token=mint(keys.tenant, entra_claims()))
    assert status == 401
    assert "issuer this bot does not trust" in body["error"]
    assert keys.fake.fetches.total() == 0
    assert "allowed callers are ignored" in caplog.text


async def test_a_multi_tenant_bot_serves_activities_of_any_tenant_but_not_of_two(
    keys: KeyServer, start_bot: StartBot
) -> None:
    client = await start_bot(keys.settings(tenant_id=None, tenant_openid_metadata_url=None))
    token = mint(keys.channel, channel_claims())
    for tenant in (TENANT_ID, OTHER_TENANT_ID):
        assert (await post(client, token=token, activity=_with_tenant(teams_activity(), tenant)))[0] == 202
    mixed = teams_activity(channelData={"tenant": {"id": OTHER_TENANT_ID}})
    status, body = await post(client, token=token, activity=mixed)
    assert status == 403
    assert "names two different tenants" in body["error"]


async def test_a_single_tenant_bot_compares_tenant_ids_ignoring_case_and_reads_either_field(
    keys: KeyServer, start_bot: StartBot
) -> None:
    client = await start_bot(keys.settings(tenant_id=TENANT_ID.upper()))
    token = mint(keys.channel, channel_claims())
    only_channel_data = teams_activity(conversation={"id": "a:1"}, channelData={"tenant": {"id": TENANT_ID.upper()}})
    assert (await post(client, token=token, activity=only_channel_data))[0] == 202
    assert (await post(client, token=token, activity=_with_tenant(teams_activity(), TENANT_ID)))[0] == 202


# Keys: caching, rollover, floods and outages


async def test_keys_are_fetched_once_and_cached(keys: KeyServer, start_bot: StartBot) -> None:
    client = await start_bot(keys.settings())
    results = await asyncio.gather(*(post(client, token=mint(keys.channel, channel_claims())) for _ in range(20)))
    assert {status for status, _ in results} == {202}
    assert keys.fake.fetches[CHANNEL_METADATA_PATH] == 1
    assert keys.fake.key_fetches() == 1


async def test_a_key_that_appears_after_the_first_fetch_is_found_by_one_refetch(
    keys: KeyServer, start_bot: StartBot
) -> None:
    client = await start_bot(keys.settings())
    assert (await post(client, token=mint(keys.channel, channel_claims())))[0] == 202
    rolled = keys.fake.add_channel_key("bf-2", private_key=pooled_key(4))
    assert (await post(client, token=mint(rolled, channel_claims())))[0] == 202
    assert (await post(client, token=mint(rolled, channel_claims())))[0] == 202
    assert keys.fake.key_fetches() == 2


async def test_concurrent_requests_signed_with_a_new_key_share_one_refetch(
    keys: KeyServer, start_bot: StartBot
) -> None:
    client = await start_bot(keys.settings())
    assert (await post(client, token=mint(keys.channel, channel_claims())))[0] == 202
    rolled = keys.fake.add_channel_key("bf-2", private_key=pooled_key(4))
    results = await asyncio.gather(*(post(client, token=mint(rolled, channel_claims())) for _ in range(10)))
    assert [status for status, _ in results] == [202] * 10
    assert keys.fake.key_fetches() == 2


async def test_a_flood_of_unknown_kids_fetches_the_key_set_a_bounded_number_of_times(
    keys: KeyServer, start_bot: StartBot
) -> None:
    client = await start_bot(keys.settings())
    for _ in range(60):
        token = mint(pooled_key(3), channel_claims(), kid=uuid.uuid4().hex)
        assert (await post(client, token=token))[0] == 401
    # The first fetch, plus one refetch per refetch interval (60 s): two in all.
    assert keys.fake.key_fetches() == 2
    assert (await post(client, token=mint(keys.channel, channel_claims())))[0] == 202
    assert keys.fake.key_fetches() == 2


async def test_refetching_for_unknown_kids_resumes_after_the_interval(keys: KeyServer, start_bot: StartBot) -> None:
    clock = ManualClock()
    client = await start_bot(keys.settings(), clock=clock)
    for _ in range(3):
        await post(client, token=mint(pooled_key(3), channel_claims(), kid=uuid.uuid4().hex))
    assert keys.fake.key_fetches() == 2
    clock.moment += 61
    rolled = keys.fake.add_channel_key("bf-late", private_key=pooled_key(4))
    assert (await post(client, token=mint(rolled, channel_claims())))[0] == 202
    assert keys.fake.key_fetches() == 3


async def test_keys_are_refreshed_after_a_day(keys: KeyServer, start_bot: StartBot) -> None:
    clock = ManualClock()
    client = await start_bot(keys.settings(), clock=clock)
    assert (await post(client, token=mint(keys.channel, channel_claims())))[0] == 202
    clock.moment += 23 * 3600
    assert (await post(client, token=mint(keys.channel, channel_claims())))[0] == 202
    assert keys.fake.key_fetches() == 1
    clock.moment += 2 * 3600
    assert (await post(client, token=mint(keys.channel, channel_claims())))[0] == 202
    assert keys.fake.key_fetches() == 2


async def test_a_key_endpoint_outage_answers_503_and_is_not_hammered(keys: KeyServer, start_bot: StartBot) -> None:
    clock = ManualClock()
    client = await start_bot(keys.settings(), clock=clock)
    keys.fake.unavailable = True
    for _ in range(10):
        status, body = await post(client, token=mint(keys.channel, channel_claims()))
        assert status == 503
        assert "cannot verify the sender right now" in body["error"]
    assert keys.fake.fetches[CHANNEL_METADATA_PATH] == 1
    keys.fake.unavailable = False
    assert (await post(client, token=mint(keys.channel, channel_claims())))[0] == 503
    clock.moment += 11
    assert (await post(client, token=mint(keys.channel, channel_claims())))[0] == 202


async def test_a_large_key_set_is_read_whole_and_an_oversized_one_is_refused(
    keys: KeyServer, start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    for index in range(300):  # ~150 kB: several network chunks
        keys.fake.add_channel_key(f"filler-{index}", private_key=pooled_key(5))
    last = keys.fake.add_channel_key("bf-last", private_key=pooled_key(4))
    client = await start_bot(keys.settings())
    assert (await post(client, token=mint(last, channel_claims())))[0] == 202

    for index in range(300, 2600):  # beyond 1 MiB
        keys.fake.add_channel_key(f"filler-{index}", private_key=pooled_key(5))
    oversized = await start_bot(keys.settings())
    assert (await post(oversized, token=mint(last, channel_claims())))[0] == 503
    assert "document is larger than 1048576 bytes" in caplog.text


async def test_a_tenant_id_configured_in_upper_case_still_matches_entra_issuers(
    keys: KeyServer, start_bot: StartBot
) -> None:
    client = await start_bot(keys.settings(tenant_id=TENANT_ID.upper(), allowed_callers=(CALLER_APP_ID,)))
    assert (await post(client, token=mint(keys.tenant, entra_claims())))[0] == 202


async def test_an_unreachable_key_endpoint_answers_503(keys: KeyServer, start_bot: StartBot) -> None:
    with_closed_port = keys.settings(openid_metadata_url="http://127.0.0.1:9/v1/.well-known/openidconfiguration")
    client = await start_bot(with_closed_port)
    assert (await post(client, token=mint(keys.channel, channel_claims())))[0] == 503


async def test_cached_keys_keep_working_when_a_refresh_fails(
    keys: KeyServer, start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    client = await start_bot(keys.settings(), clock=clock)
    assert (await post(client, token=mint(keys.channel, channel_claims())))[0] == 202
    clock.moment += 25 * 3600
    keys.fake.unavailable = True
    assert (await post(client, token=mint(keys.channel, channel_claims())))[0] == 202
    assert (await post(client, token=mint(keys.channel, channel_claims())))[0] == 202
    assert keys.fake.fetches[CHANNEL_METADATA_PATH] == 2
    assert "still using the cached keys" in caplog.text


def test_metadata_urls_must_be_https_except_on_loopback() -> None:
    async def build(url: str) -> None:
        async with aiohttp.ClientSession() as session:
            settings = BotAuthSettings(BOT_APP_ID, APP_PASSWORD, None, False, openid_metadata_url=url)
            InboundAuthenticator(settings, session)

    with pytest.raises(ValueError, match="https"):
        asyncio.run(build("http://login.botframework.com/v1/.well-known/openidconfiguration"))
    asyncio.run(build("https://login.botframework.com/v1/.well-known/openidconfiguration"))


# Secrets


async def test_neither_the_password_nor_tokens_appear_in_repr_or_logs(
    keys: KeyServer, start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = keys.settings(allow_anonymous=True)
    assert APP_PASSWORD not in repr(settings)
    assert APP_PASSWORD not in str(settings)
    client = await start_bot(settings)
    good = mint(keys.channel, channel_claims())
    forged = mint(pooled_key(3), channel_claims(), kid="bf-1")
    expired = mint(keys.channel, channel_claims(now=time.time() - 7200))
    for token in (good, forged, expired, "not.a.jwt"):
        await post(client, token=token)
    await post(client)
    async with serve_fake_graph(FakeGraphServer(tenant_id=TENANT_ID, client_id=BOT_APP_ID)) as running:
        outbound = replace(settings, token_authority=running.authority, authority_ca_file=str(running.ca_file))
        with pytest.raises(IntegrationAuthError) as refused:
            await (
                MsalConnections(outbound)
                .get_default_connection()
                .get_access_token("https://api.botframework.com", [BOT_FRAMEWORK_SCOPE])
            )
    assert APP_PASSWORD not in str(refused.value)
    assert "Bot request refused" in caplog.text
    for secret in (APP_PASSWORD, good.split(".")[2], forged.split(".")[2], expired.split(".")[2]):
        assert secret not in caplog.text


# Outbound: check_service_url


ALLOWED = [
    "https://smba.trafficmanager.net/teams/",
    "https://smba.trafficmanager.net/emea/",
    "https://SMBA.trafficmanager.net/amer",
    "https://webchat.botframework.com/",
    "https://europe.webchat.botframework.com/",
    "https://smba.infra.gcc.teams.microsoft.com/teams",
    "https://smba.infra.gov.teams.microsoft.us/teams",
    "https://smba.infra.dod.teams.microsoft.us/teams",
]
DENIED = [
    "http://smba.trafficmanager.net/teams/",
    "https://user:pass@smba.trafficmanager.net/teams/",
    "https://smba.trafficmanager.net%2F@evil.example/",
    "https://evil.example\\@smba.trafficmanager.net/",
    "https://botframework.com/",
    "https://evilbotframework.com/",
    "https://smba.trafficmanager.net.evil.example/",
    "https://smba.trafficmanager.net./teams/",
    "https://graph.microsoft.com/v1.0/",
    "https://teams.microsoft.com/",
    "https://127.0.0.1/",
    "http://127.0.0.1:3978/",
    "ftp://smba.trafficmanager.net/",
    "/v3/conversations",
    "",
    "https://smba.trafficmanager.net /teams/",
]


@pytest.mark.parametrize("url", ALLOWED)
def test_microsoft_connector_hosts_are_allowed_by_default(url: str) -> None:
    check_service_url(url, BotAuthSettings(BOT_APP_ID, APP_PASSWORD, None, False))


@pytest.mark.parametrize("url", DENIED)
def test_other_service_urls_are_forbidden(url: str) -> None:
    with pytest.raises(BotAuthError) as refused:
        check_service_url(url, BotAuthSettings(BOT_APP_ID, APP_PASSWORD, None, False))
    assert refused.value.status == 403


def test_http_loopback_needs_both_the_flag_and_a_listed_loopback_host() -> None:
    base = BotAuthSettings(BOT_APP_ID, APP_PASSWORD, None, False, allowed_service_hosts=("127.0.0.1", "localhost"))
    for url in ("http://127.0.0.1:3978/", "http://localhost:56150/"):
        with pytest.raises(BotAuthError):
            check_service_url(url, base)
        check_service_url(url, replace(base, allow_http_loopback=True))
    check_service_url("https://127.0.0.1:8443/", base)
    with pytest.raises(BotAuthError):
        check_service_url("http://[::1]:3978/", replace(base, allow_http_loopback=True))
    check_service_url("http://[::1]:3978/", replace(base, allow_http_loopback=True, allowed_service_hosts=("::1",)))
    with pytest.raises(BotAuthError):
        check_service_url("http://smba.trafficmanager.net/", replace(base, allow_http_loopback=True))


def test_a_wildcard_matches_subdomains_only() -> None:
    settings = BotAuthSettings(BOT_APP_ID, APP_PASSWORD, None, False, allowed_service_hosts=("*.example.net",))
    check_service_url("https://a.example.net/", settings)
    check_service_url("https://a.b.example.net/", settings)
    for url in ("https://example.net/", "https://badexample.net/", "https://a.example.net.evil/"):
        with pytest.raises(BotAuthError):
            check_service_url(url, settings)


# Outbound: MsalConnections


async def test_outbound_tokens_come_from_msal_for_the_bot_framework_scope_and_are_cached() -> None:
    fake = FakeGraphServer(tenant_id=TENANT_ID, client_id=BOT_APP_ID, client_secret=APP_PASSWORD)
    async with serve_fake_graph(fake) as running:
        settings = BotAuthSettings(
            BOT_APP_ID,
            APP_PASSWORD,
            TENANT_ID,
            False,
            token_authority=running.authority,
            authority_ca_file=str(running.ca_file),
        )
        connections = MsalConnections(settings)
        identity = ClaimsIdentity(channel_claims(), authentication_type="Bearer")
        provider = connections.get_token_provider(identity, TEAMS_SERVICE_URL)
        first = await provider.get_access_token("https://api.botframework.com", identity.get_token_scope())
        second = await provider.get_access_token("https://api.botframework.com", [BOT_FRAMEWORK_SCOPE])
        # The SDK asks for `{azp}/.default` on Entra tokens; the bot still only mints Bot Connector tokens.
        agent = await provider.get_access_token("https://api.botframework.com", [f"{uuid.uuid4()}/.default"])
        refreshed = await provider.get_access_token("https://api.botframework.com", [], force_refresh=True)
    assert first in fake.tokens
    assert first == second == agent
    assert refreshed != first
    token_requests = [entry for entry in fake.request_log if entry.path.endswith("/oauth2/v2.0/token")]
    assert len(token_requests) == 2
    form = dict(pair.split("=", 1) for pair in token_requests[0].body.split("&"))
    assert form["scope"] == "https%3A%2F%2Fapi.botframework.com%2F.default"
    assert form["client_id"] == BOT_APP_ID
    assert form["grant_type"] == "client_credentials"


async def test_the_sdk_connector_factory_builds_an_authenticated_client_from_our_connections() -> None:
    fake = FakeGraphServer(tenant_id=TENANT_ID, client_id=BOT_APP_ID, client_secret=APP_PASSWORD)
    async with serve_fake_graph(fake) as running:
        settings = BotAuthSettings(
            BOT_APP_ID, APP_PASSWORD, TENANT_ID, False, token_authority=running.authority,
            authority_ca_file=str(running.ca_file),
        )  # fmt: skip
        factory = RestChannelServiceClientFactory(MsalConnections(settings))
        identity = ClaimsIdentity(channel_claims(), authentication_type="Bearer")
        client = await factory.create_connector_client(
            None, identity, TEAMS_SERVICE_URL, "https://api.botframework.com"
        )
        assert isinstance(client, ConnectorClient)
        try:
            header = client.client.headers["Authorization"]
        finally:
            await client.client.close()
    assert header.removeprefix("Bearer ") in fake.tokens


async def test_a_wrong_client_secret_raises_a_clear_error() -> None:
    fake = FakeGraphServer(tenant_id=TENANT_ID, client_id=BOT_APP_ID, client_secret="the-right-secret")
    async with serve_fake_graph(fake) as running:
        settings = BotAuthSettings(
            BOT_APP_ID,
            APP_PASSWORD,
            TENANT_ID,
            False,
            token_authority=running.authority,
            authority_ca_file=str(running.ca_file),
        )
        provider = MsalConnections(settings).get_default_connection()
        with pytest.raises(IntegrationAuthError) as refused:
            await provider.get_access_token("https://api.botframework.com", [BOT_FRAMEWORK_SCOPE])
    message = str(refused.value)
    assert "refused the bot's client credentials" in message
    assert "invalid_client" in message
    assert APP_PASSWORD not in message
    assert "the-right-secret" not in message


async def test_an_app_without_a_secret_raises_a_clear_error() -> None:
    provider = MsalConnections(BotAuthSettings(BOT_APP_ID, None, TENANT_ID, False)).get_default_connection()
    with pytest.raises(IntegrationAuthError, match="no client secret"):
        await provider.get_access_token("https://api.botframework.com", [BOT_FRAMEWORK_SCOPE])


async def test_tokens_for_other_resources_are_refused() -> None:
    provider = MsalConnections(BotAuthSettings(BOT_APP_ID, APP_PASSWORD, TENANT_ID, False)).get_default_connection()
    with pytest.raises(IntegrationRejected, match="Bot Connector tokens only"):
        await provider.get_access_token("https://graph.microsoft.com", ["https://graph.microsoft.com/.default"])


def test_no_token_provider_is_handed_out_for_a_service_url_outside_the_allow_list() -> None:
    connections = MsalConnections(BotAuthSettings(BOT_APP_ID, APP_PASSWORD, TENANT_ID, False))
    identity = ClaimsIdentity(channel_claims(), authentication_type="Bearer")
    with pytest.raises(BotAuthError) as refused:
        connections.get_token_provider(identity, "https://collector.evil.example/")
    assert refused.value.status == 403
    assert connections.get_token_provider(identity, TEAMS_SERVICE_URL) is connections.get_default_connection()


def test_the_default_configuration_names_the_app_and_holds_no_secret() -> None:
    single_tenant = MsalConnections(BotAuthSettings(BOT_APP_ID, APP_PASSWORD, TENANT_ID, False))
    configuration = single_tenant.get_default_connection_configuration()
    assert configuration.CLIENT_ID == BOT_APP_ID
    assert configuration.CLIENT_SECRET is None
    assert configuration.ANONYMOUS_ALLOWED is False
    tenant_authority = f"https://login.microsoftonline.com/{TENANT_ID}"
    assert configuration.authority == tenant_authority
    multi_tenant = MsalConnections(BotAuthSettings(BOT_APP_ID, APP_PASSWORD, None, False))
    assert multi_tenant.get_default_connection_configuration().authority == (
        "https://login.microsoftonline.com/botframework.com"
    )
    with pytest.raises(ValueError, match="only SERVICE_CONNECTION"):
        single_tenant.get_connection("GRAPH")
    assert APP_PASSWORD not in json.dumps(vars(configuration), default=str)


# Through the SDK: what bot/app.py will do with these pieces


@pytest.mark.parametrize("anonymous", [False, True], ids=["channel token", "anonymous"])
async def test_a_message_is_answered_through_the_sdk_adapter_with_the_right_outbound_token(
    keys: KeyServer, anonymous: bool
) -> None:
    replies: list[tuple[str, str | None]] = []

    async def connector(request: web.Request) -> web.Response:
        replies.append((request.path, request.headers.get("Authorization")))
        return web.json_response({"id": "reply-1"})

    connector_app = web.Application()
    connector_app.router.add_post("/{tail:.*}", connector)
    fake_graph = FakeGraphServer(tenant_id=TENANT_ID, client_id=BOT_APP_ID, client_secret=APP_PASSWORD)
    async with TestServer(connector_app) as connector_server, serve_fake_graph(fake_graph) as running:
        service_url = str(connector_server.make_url("/teams/"))
        settings = keys.settings(
            allow_anonymous=anonymous,
            token_authority=running.authority,
            authority_ca_file=str(running.ca_file),
            allowed_service_hosts=("127.0.0.1",),
            allow_http_loopback=True,
        )
        connections = MsalConnections(settings)
        adapter = CloudAdapter(connection_manager=connections)
        agent = AgentApplication[TurnState](
            ApplicationOptions(storage=MemoryStorage(), start_typing_timer=False), connection_manager=connections
        )

        @agent.activity("message")
        async def pong(context: TurnContext, state: TurnState) -> None:
            await context.send_activity("pong")

        async def route(request: web.Request) -> web.StreamResponse:
            activity = await request.json()
            try:
                request["claims_identity"] = await request.app[AUTHENTICATOR].authenticate(
                    request.headers.get("Authorization"), activity
                )
            except BotAuthError as exc:
                return web.json_response({"error": exc.message}, status=exc.status)
            return await adapter.process(request, agent) or web.Response(status=500)

        app = bot_app(settings)
        app.router.add_post("/api/sdk", route)
        async with TestClient(TestServer(app)) as client:
            headers = (
                {}
                if anonymous
                else {"Authorization": f"Bearer {mint(keys.channel, channel_claims(service_url=service_url))}"}
            )
            response = await client.post("/api/sdk", json=teams_activity(serviceUrl=service_url), headers=headers)
            assert response.status == 202, await response.text()
    assert [path for path, _ in replies] == ["/teams/v3/conversations/a:conversation/activities/1730000000000"]
    authorization = replies[0][1]
    if anonymous:
        assert authorization is None
        assert fake_graph.tokens == {}
    else:
        assert authorization is not None
        assert authorization.removeprefix("Bearer ") in fake_graph.tokens
