"""The add-in's recipient look-up over real HTTP against the ConnectWise stand-in: the email's recipients as the
tenant's PSA knows them, cached per tenant, one vendor look-up per address however often the pane asks, failures
not cached, bad input a clear 400, and never another tenant's contacts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from storage.database import Database
from tests.conftest import FIXTURES, FixedClock, apply_file, make_settings, start_client
from tests.fakes.connectwise import FakeConnectWiseServer
from tests.integration.test_addin_auth import (
    API_CLIENT_ID,
    COMMON_METADATA,
    FABRIKAM,
    FABRIKAM_DANA,
    Entra,
)

PSA = """integrations:
  psa:
    vendor: connectwise
    site_url: {site}
    codebase: {codebase}
    company_id: {company}
    public_key: {public_key}
    secrets_from_env: {{private_key: RECIPIENTS_CW_PRIVATE_KEY, client_id: RECIPIENTS_CW_CLIENT_ID}}
"""


@pytest.fixture
async def connectwise() -> AsyncIterator[tuple[FakeConnectWiseServer, str]]:
    fake = FakeConnectWiseServer()
    server = TestServer(fake.build_app(), host="127.0.0.1", port=0)
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def api(
    database: Database,
    entra: Entra,
    connectwise: tuple[FakeConnectWiseServer, str],
    tmp_path: Path,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[TestClient]:
    fake, site = connectwise
    monkeypatch.setenv("RECIPIENTS_CW_PRIVATE_KEY", fake.private_key)
    monkeypatch.setenv("RECIPIENTS_CW_CLIENT_ID", fake.client_id)
    text = (FIXTURES / "teams_tenant.yaml").read_text(encoding="utf-8").rstrip("\n") + "\n"
    path = tmp_path / "contoso.yaml"
    path.write_text(
        text + PSA.format(site=site, codebase=fake.codebase, company=fake.company_id, public_key=fake.public_key)
    )
    from app import apply_tenant_file

    await apply_tenant_file(database, make_settings(tmp_path), path, dry_run=False)
    await apply_file(database, FIXTURES / "teams_other_tenant.yaml")
    client = await start_client(
        database,
        tmp_path,
        clock,
        addin_client_id=API_CLIENT_ID,
        addin_openid_metadata_url=f"{entra.base}{COMMON_METADATA}",
    )
    yield client
    await client.close()


async def look_up(api: TestClient, entra: Entra, body: Any, **claims: Any) -> tuple[int, Any]:
    response = await api.post(
        "/addin/api/recipients", json=body, headers={"Authorization": f"Bearer {entra.token(**claims)}"}
    )
    return response.status, await response.json()


async def test_recipients_match_contacts_companies_and_open_opportunities_once_per_address(
    api: TestClient, entra: Entra, connectwise: tuple[FakeConnectWiseServer, str]
) -> None:
    fake, _site = connectwise
    pat = fake.add_contact("Pat <Buyer>", "pat@client.example")
    deal = fake.add_opportunity("Managed services for Client", contact=pat)
    fake.add_opportunity("Old hardware refresh", contact=pat, open_=False)
    before = len(fake.request_log)
    status, body = await look_up(api, entra, {"addresses": ["Pat@Client.example", "nobody@elsewhere.example"]})
    assert status == 200, body
    assert body["psa"] is True
    matched, unknown = body["recipients"]
    assert matched["email"] == "pat@client.example"
    assert matched["status"] == "matched"
    assert matched["contact"] == {"id": pat.contact_id, "name": "Pat <Buyer>", "email": "pat@client.example"}
    assert matched["company"] == {"id": pat.company_id, "name": fake.company_name(pat.company_id)}
    assert [item["id"] for item in matched["opportunities"]] == [deal], "only the open opportunity"
    assert unknown == {"email": "nobody@elsewhere.example", "status": "unknown"}
    asked = len(fake.request_log) - before
    assert asked > 0

    # The pane asks again as the rep edits the email, several times at once: the PSA is not asked again.
    answers = await asyncio.gather(
        *(look_up(api, entra, {"addresses": ["pat@client.example", "nobody@elsewhere.example"]}) for _ in range(5))
    )
    assert all(status == 200 and answer == body for status, answer in answers)
    assert len(fake.request_log) - before == asked


async def test_concurrent_first_look_ups_of_one_address_reach_the_psa_once(
    api: TestClient, entra: Entra, connectwise: tuple[FakeConnectWiseServer, str]
) -> None:
    fake, _site = connectwise
    fake.add_contact("Lee Chen", "lee@client.example")
    fake.add_contact("Kim Park", "kim@client.example")
    fake.add_contact("Warm Up", "warm@client.example")
    warm_up = await look_up(api, entra, {"addresses": ["warm@client.example"]})  # statuses are read once per connection
    assert warm_up[0] == 200
    before = len(fake.request_log)
    answers = await asyncio.gather(*(look_up(api, entra, {"addresses": ["lee@client.example"]}) for _ in range(4)))
    assert {answer["recipients"][0]["status"] for _status, answer in answers} == {"matched"}
    single = len(fake.request_log) - before
    await look_up(api, entra, {"addresses": ["kim@client.example"]})
    # One look-up's worth of requests for four callers: what another known address costs alone.
    assert single == len(fake.request_log) - before - single


async def test_a_psa_that_is_down_says_so_and_is_asked_again_next_time(
    api: TestClient, entra: Entra, connectwise: tuple[FakeConnectWiseServer, str]
) -> None:
    fake, _site = connectwise
    fake.add_contact("Sam Doe", "sam@client.example")
    fake.fail_next(503, message="ConnectWise is down", count=50)
    status, body = await look_up(api, entra, {"addresses": ["sam@client.example"]})
    assert status == 200
    [answer] = body["recipients"]
    assert answer["status"] == "unavailable"
    assert answer["message"] == "Your PSA did not answer; try again in a moment"
    fake._faults.clear()
    status, body = await look_up(api, entra, {"addresses": ["sam@client.example"]})
    assert body["recipients"][0]["status"] == "matched"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"addresses": "pat@client.example"},
        {"addresses": ["not an address"]},
        {"addresses": [42]},
        {"addresses": [f"r{index}@client.example" for index in range(11)]},
        {"addresses": ["a@b@c.example"]},
    ],
)
async def test_bad_addresses_get_a_400_that_says_what_is_expected(api: TestClient, entra: Entra, body: Any) -> None:
    status, answer = await look_up(api, entra, body)
    assert status == 400
    assert answer["error"]["code"] == "invalid_addresses"
    assert "at most 10 email addresses" in answer["error"]["message"]


async def test_no_token_no_answer_and_another_tenant_never_sees_these_contacts(
    api: TestClient, entra: Entra, connectwise: tuple[FakeConnectWiseServer, str]
) -> None:
    fake, _site = connectwise
    fake.add_contact("Pat Buyer", "pat@client.example")
    refused = await api.post("/addin/api/recipients", json={"addresses": ["pat@client.example"]})
    assert refused.status == 401
    status, body = await look_up(api, entra, {"addresses": ["pat@client.example"]})
    assert body["recipients"][0]["status"] == "matched"
    # A rep of another Slotwise tenant (no PSA connected) asks for the same, now cached, address.
    status, body = await look_up(api, entra, {"addresses": ["pat@client.example"]}, tenant=FABRIKAM, oid=FABRIKAM_DANA)
    assert status == 200, body
    assert body == {"psa": False, "recipients": []}
