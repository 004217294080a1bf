"""The Outlook add-in API over real HTTP: Entra v2 access tokens signed by a local JWKS, every refusal with its own
reason, the rep mapped inside their own tenant only, and what the API answers them."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import rsa

from storage.database import Database
from tests.conftest import FIXTURES, FixedClock, apply_file, start_client
from tests.fakes.bot_identity import FakeBotIdentity, SigningKey, generate_rsa_key, mint

API_CLIENT_ID = "6f1d2c3b-4a59-4e68-8d7c-0b1a2f3e4d5c"
TASKPANE_CLIENT_ID = API_CLIENT_ID  # NAA: the task pane is the same app registration (an SPA redirect on it)
CONTOSO = "72f988bf-86f1-41af-91ab-2d7cd011db47"
FABRIKAM = "0b0b0b0b-1111-4222-8333-444444444444"
UNBOUND = "3c3c3c3c-5555-4666-8777-888888888888"
DANA = "11111111-aaaa-4aaa-8aaa-000000000001"
MAYA = "11111111-aaaa-4aaa-8aaa-000000000003"
FABRIKAM_DANA = "22222222-bbbb-4bbb-8bbb-000000000001"
COMMON_METADATA = "/common/v2.0/.well-known/openid-configuration"


@functools.cache
def pooled_key(index: int) -> rsa.RSAPrivateKey:
    return generate_rsa_key()


def user_claims(
    tenant: str = CONTOSO, oid: str | None = DANA, *, now: float | None = None, **extra: Any
) -> dict[str, Any]:
    """A delegated Entra v2.0 access token for our API, as NAA obtains it (access-token-claims-reference)."""
    moment = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "aud": API_CLIENT_ID,
        "iss": f"https://login.microsoftonline.com/{tenant}/v2.0",
        "iat": moment - 5,
        "nbf": moment - 5,
        "exp": moment + 3600,
        "tid": tenant,
        "ver": "2.0",
        "azp": TASKPANE_CLIENT_ID,
        "scp": "access_as_user",
        "name": "Dana Diaz",
        "preferred_username": "dana@contoso-it.example",
    }
    if oid is not None:
        claims["oid"] = oid
    claims.update(extra)
    return {key: value for key, value in claims.items() if value is not None}


@dataclass
class Entra:
    fake: FakeBotIdentity
    key: SigningKey
    base: str

    def token(self, **claims: Any) -> str:
        return mint(self.key, user_claims(**claims))


@pytest.fixture
async def addin_db(database: Database) -> Database:
    await apply_file(database, FIXTURES / "teams_tenant.yaml")
    await apply_file(database, FIXTURES / "teams_other_tenant.yaml")
    return database


@pytest.fixture
async def api(addin_db: Database, entra: Entra, tmp_path: Path, clock: FixedClock) -> AsyncIterator[TestClient]:
    client = await start_client(
        addin_db,
        tmp_path,
        clock,
        base_url="https://slotwise.test",
        addin_client_id=API_CLIENT_ID,
        addin_openid_metadata_url=f"{entra.base}{COMMON_METADATA}",
    )
    yield client
    await client.close()


async def call(client: TestClient, token: str | None, path: str = "/addin/api/me", **kwargs: Any) -> Any:
    headers = {} if token is None else {"Authorization": token if " " in token else f"Bearer {token}"}
    method = client.post if "json" in kwargs or "data" in kwargs else client.get
    response = await method(path, headers=headers, **kwargs)
    return response.status, await response.json(), response.headers


# Accepted


async def test_a_reps_token_maps_to_them_by_object_id(api: TestClient, entra: Entra) -> None:
    status, body, _ = await call(api, entra.token(preferred_username="someone-else@contoso-it.example"))
    assert status == 200, body
    assert body == {"name": "Dana Diaz", "email": "dana@contoso-it.example", "time_zone": "America/Chicago"}


async def test_the_app_id_uri_is_accepted_as_audience(api: TestClient, entra: Entra) -> None:
    token = entra.token(aud=f"api://slotwise.test/{API_CLIENT_ID}")
    assert (await call(api, token))[0] == 200


async def test_a_rep_without_a_known_object_id_maps_by_email(api: TestClient, entra: Entra) -> None:
    token = entra.token(oid=str(uuid.uuid4()), preferred_username="ELI@contoso-it.example")
    status, body, _ = await call(api, token)
    assert status == 200, body
    assert body["name"] == "Eli Evans"


# Refused: one distinct reason each


def _hs256() -> str:
    return jwt.encode(user_claims(), "a-shared-secret-of-32-bytes-long!", algorithm="HS256", headers={"kid": "x"})


REFUSALS: dict[str, tuple[Any, str, str]] = {
    "no Authorization header": (lambda e: None, "missing", "no Authorization header"),
    "a Basic header": (lambda e: "Basic dXNlcjpwYXNz", "malformed", "not a Bearer token"),
    "a garbled token": (lambda e: "not.a.jwt", "malformed", "not a well-formed JWT"),
    "an HS256 token": (lambda e: _hs256(), "malformed", "RS256"),
    "a token without a tid": (lambda e: e.token(tid=None), "malformed", "no tenant"),
    "a token signed by another key under the published kid": (
        lambda e: mint(pooled_key(1), user_claims(), kid="entra-common-1"),
        "invalid_signature",
        "signature does not verify",
    ),
    "a token signed by a key nobody publishes": (
        lambda e: mint(pooled_key(1), user_claims(), kid="made-up"),
        "invalid_signature",
        "not published",
    ),
    "an expired token": (lambda e: e.token(now=time.time() - 7200), "expired", "expired"),
    "a token for Microsoft Graph": (
        lambda e: e.token(aud="00000003-0000-0000-c000-000000000000"),
        "wrong_audience",
        "not for the Slotwise add-in API",
    ),
    "a token for another API of ours": (lambda e: e.token(aud=str(uuid.uuid4())), "wrong_audience", "aud"),
    "an issuer of another tenant than its tid": (
        lambda e: e.token(iss=f"https://login.microsoftonline.com/{FABRIKAM}/v2.0"),
        "wrong_tenant",
        "issuer",
    ),
    "a v1.0 token": (lambda e: e.token(iss=f"https://sts.windows.net/{CONTOSO}/"), "wrong_tenant", "v2.0"),
    "a tenant no Slotwise tenant names": (
        lambda e: e.token(tenant=UNBOUND),
        "unbound_tenant",
        "not connected to Slotwise",
    ),
    "a token for Graph scopes only": (lambda e: e.token(scp="User.Read Mail.Read"), "missing_scope", "access_as_user"),
    "an app-only token (roles, no scp)": (
        lambda e: e.token(scp=None, roles=["access_as_user"]),
        "missing_scope",
        "access_as_user",
    ),
    "a person who is not a Slotwise user": (
        lambda e: e.token(oid=str(uuid.uuid4()), preferred_username="stranger@contoso-it.example"),
        "unknown_user",
        "not a Slotwise user",
    ),
    "another tenant's rep (object id) in a Contoso token": (
        lambda e: e.token(oid=FABRIKAM_DANA, preferred_username="dana@fabrikam.example"),
        "unknown_user",
        "not a Slotwise user",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS), ids=list(REFUSALS))
async def test_a_call_is_refused_with_its_reason_for(api: TestClient, entra: Entra, case: str) -> None:
    build, code, words = REFUSALS[case]
    status, body, headers = await call(api, build(entra))
    assert status == 401, body
    assert body["error"]["code"] == code
    assert words in body["error"]["message"]
    assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_every_api_route_requires_the_token(api: TestClient, entra: Entra) -> None:
    for path, kwargs in (
        ("/addin/api/me", {}),
        ("/addin/api/appointment-types", {}),
        ("/addin/api/link", {"json": {"type_id": "x", "body_type": "html"}}),
    ):
        status, body, _ = await call(api, entra.token(scp="User.Read"), path, **kwargs)
        assert (status, body["error"]["code"]) == (401, "missing_scope"), path


async def test_a_token_within_five_minutes_of_expiry_skew_is_accepted(api: TestClient, entra: Entra) -> None:
    assert (await call(api, entra.token(now=time.time() - 3600 - 200)))[0] == 200
    assert (await call(api, entra.token(now=time.time() - 3600 - 400)))[0] == 401


async def test_a_token_the_api_remembers_as_verified_is_refused_once_it_expires(api: TestClient, entra: Entra) -> None:
    # Expired 298 s ago: inside the five-minute skew for one to two more seconds.
    token = entra.token(now=time.time() - 3600 - 298)
    for _ in range(3):
        assert (await call(api, token))[0] == 200
    await asyncio.sleep(2.5)
    status, body, _ = await call(api, token)
    assert (status, body["error"]["code"]) == (401, "expired")


# Keys


async def test_keys_are_cached_and_a_rolled_key_is_found_by_one_refetch(api: TestClient, entra: Entra) -> None:
    for _ in range(5):
        assert (await call(api, entra.token()))[0] == 200
    assert entra.fake.key_fetches() == 1
    rolled = entra.fake.add_tenant_key("common", "entra-common-2", private_key=pooled_key(2))
    assert (await call(api, mint(rolled, user_claims())))[0] == 200
    assert (await call(api, mint(rolled, user_claims())))[0] == 200
    assert entra.fake.key_fetches() == 2


async def test_a_key_endpoint_outage_answers_503_not_401(api: TestClient, entra: Entra) -> None:
    entra.fake.unavailable = True
    status, body, _ = await call(api, entra.token())
    assert status == 503
    assert body["error"]["code"] == "keys_unavailable"


async def test_without_an_entra_app_the_api_says_it_is_not_configured(
    addin_db: Database, entra: Entra, tmp_path: Path, clock: FixedClock
) -> None:
    client = await start_client(addin_db, tmp_path, clock, addin_openid_metadata_url=f"{entra.base}{COMMON_METADATA}")
    try:
        status, body, _ = await call(client, entra.token())
        assert (status, body["error"]["code"]) == (503, "not_configured")
    finally:
        await client.close()


async def test_the_bots_app_is_the_api_by_default(
    addin_db: Database, entra: Entra, tmp_path: Path, clock: FixedClock
) -> None:
    client = await start_client(
        addin_db,
        tmp_path,
        clock,
        base_url="https://slotwise.test",
        bot_app_id=API_CLIENT_ID,
        bot_allow_anonymous=True,
        addin_openid_metadata_url=f"{entra.base}{COMMON_METADATA}",
    )
    try:
        assert (await call(client, entra.token()))[0] == 200
        assert (await call(client, entra.token(aud=f"api://slotwise.test/{API_CLIENT_ID}")))[0] == 200
    finally:
        await client.close()


# What a signed-in rep gets


async def test_a_rep_sees_their_types_and_their_teams_round_robin_types(api: TestClient, entra: Entra) -> None:
    status, body, _ = await call(api, entra.token(), "/addin/api/appointment-types")
    assert status == 200, body
    assert [(item["name"], item["url"]) for item in body["types"]] == [
        ("Discovery call", "https://slotwise.test/book/contoso/discovery"),
        ("Onsite audit", "https://slotwise.test/book/contoso/onsite-audit"),
    ]
    assert body["types"][0]["duration_minutes"] == 30
    assert body["types"][1]["location"] == "On site: Your office"
    eli = entra.token(oid=None, preferred_username="eli@contoso-it.example")
    assert [item["name"] for item in (await call(api, eli, "/addin/api/appointment-types"))[1]["types"]] == [
        "Onsite audit"
    ]


async def test_another_tenants_rep_sees_only_their_tenants_types(api: TestClient, entra: Entra) -> None:
    token = entra.token(tenant=FABRIKAM, oid=FABRIKAM_DANA, preferred_username="dana@fabrikam.example")
    status, body, _ = await call(api, token, "/addin/api/appointment-types")
    assert status == 200, body
    assert [item["url"] for item in body["types"]] == ["https://slotwise.test/book/fabrikam/secret-type"]


async def _type_id(api: TestClient, token: str, name: str) -> str:
    types = (await call(api, token, "/addin/api/appointment-types"))[1]["types"]
    return next(item["id"] for item in types if item["name"] == name)


async def test_the_link_is_structural_html_for_html_bodies_and_text_for_text_bodies(
    api: TestClient, entra: Entra
) -> None:
    token = entra.token()
    type_id = await _type_id(api, token, "Discovery call")
    status, body, _ = await call(api, token, "/addin/api/link", json={"type_id": type_id, "body_type": "html"})
    assert status == 200, body
    assert body["coercion"] == "html"
    assert body["content"] == (
        "<table><tbody><tr><td><b>Discovery call</b> (30 minutes, Microsoft Teams meeting)</td></tr>"
        '<tr><td><a href="https://slotwise.test/book/contoso/discovery" id="LPNoLP">Book a time with Dana Diaz</a>'
        "</td></tr></tbody></table>"
    )
    assert "style=" not in body["content"]
    status, body, _ = await call(api, token, "/addin/api/link", json={"type_id": type_id, "body_type": "text"})
    assert status == 200, body
    assert body["content"] == (
        "Discovery call (30 minutes, Microsoft Teams meeting)\n"
        "Book a time with Dana Diaz: https://slotwise.test/book/contoso/discovery\n"
    )


async def test_a_link_for_another_tenants_type_is_not_found(api: TestClient, entra: Entra) -> None:
    fabrikam = entra.token(tenant=FABRIKAM, oid=FABRIKAM_DANA, preferred_username="dana@fabrikam.example")
    secret_type = await _type_id(api, fabrikam, "Fabrikam secret type")
    status, body, _ = await call(
        api, entra.token(), "/addin/api/link", json={"type_id": secret_type, "body_type": "html"}
    )
    assert (status, body["error"]["code"]) == (404, "unknown_type")


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": b"type_id=x", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415, None),
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json"),
        ({"json": ["a list"]}, 400, "invalid_request"),
        ({"json": {"body_type": "html"}}, 400, "invalid_request"),
        ({"json": {"type_id": "x", "body_type": "rtf"}}, 400, "invalid_request"),
    ],
)
async def test_bad_link_requests_get_a_specific_4xx(
    api: TestClient, entra: Entra, kwargs: dict[str, Any], status: int, code: str | None
) -> None:
    kwargs = dict(kwargs)  # the parameters are shared by the SQLite and PostgreSQL runs
    headers = {"Authorization": f"Bearer {entra.token()}", **kwargs.pop("headers", {})}
    response = await api.post("/addin/api/link", headers=headers, **kwargs)
    body = await response.json()
    assert response.status == status, body
    if code:
        assert body["error"]["code"] == code


def test_names_and_urls_in_the_inserted_html_are_escaped() -> None:
    from addin.snippets import LinkSnippet, render_link_html, render_link_text

    snippet = LinkSnippet(
        type_name='<img src=x onerror="alert(1)"> & Co',
        duration_minutes=45,
        location="On site: <b>HQ</b>",
        host_name="O'Brien <script>",
        url='https://slotwise.test/book/a/b?x="><script>',
    )
    html = render_link_html(snippet)
    assert "<img" not in html
    assert "<script>" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; Co" in html
    assert 'href="https://slotwise.test/book/a/b?x=&quot;&gt;&lt;script&gt;"' in html
    assert "O&#x27;Brien &lt;script&gt;" in html
    # A text body shows text literally: nothing is escaped there.
    assert render_link_text(snippet).startswith('<img src=x onerror="alert(1)"> & Co (45 minutes')
