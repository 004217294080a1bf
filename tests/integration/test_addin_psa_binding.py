"""A rep binds an Outlook one-off link to the recipient's PSA contact (and one of its open opportunities), over real
HTTP against the ConnectWise stand-in: the server takes the contact from its own look-up, never from ids the pane
sends; the link's page starts with the contact's name and address; every booking through it lands on that contact
and opportunity (no contact or opportunity is created, even when the client books from another address); and each
way a binding can be wrong is a clear error that makes no link. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from scheduling.model import PsaRecordKind
from storage.database import Database
from storage.tables import scheduling_requests, workflow_jobs
from tests.conftest import FIXTURES, FixedClock, apply_file, make_settings, start_client
from tests.fakes.connectwise import DEMO_FALLBACK_COMPANY, DEMO_MEMBER, FakeConnectWiseServer
from tests.integration.test_addin_auth import API_CLIENT_ID, COMMON_METADATA, FABRIKAM, FABRIKAM_DANA, Entra
from tests.integration.test_addin_recipients import PSA, connectwise
from tests.integration.test_addin_suggested_times import discovery_id

__all__ = ["connectwise"]  # the ConnectWise stand-in fixture, shared with the recipient tests

LINKS = "/addin/api/one-off-links"
WORKFLOW = """    mode: workflow
    workflow:
      triggers:
        client_scheduled:
          - {action: find_or_create_opportunity}
          - {action: create_activity}
          - {action: create_ticket}
"""


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
    discovery = "    location: {kind: teams}\n    host: {user: dana}\n"
    assert discovery in text
    # An on-site visit: a Teams type would also need Microsoft 365 connected (apply refuses a Teams promise without it).
    text = text.replace(
        discovery, "    location: {kind: onsite, detail: Your office}\n    host: {user: dana}\n" + WORKFLOW
    )
    dana = "    email: dana@contoso-it.example\n"
    text = text.replace(dana, dana + f"    psa_member: {DEMO_MEMBER}\n", 1)
    path = tmp_path / "contoso.yaml"
    psa = PSA.format(site=site, codebase=fake.codebase, company=fake.company_id, public_key=fake.public_key)
    # First-time clients become contacts of the MSP's catch-all company (what an unbound link does).
    path.write_text(text + psa + f"    fallback_company_identifier: {DEMO_FALLBACK_COMPANY}\n")
    from app import apply_tenant_file

    await apply_tenant_file(database, make_settings(tmp_path), path, dry_run=False)
    await apply_file(database, FIXTURES / "teams_other_tenant.yaml")
    client = await start_client(
        database,
        tmp_path,
        clock,
        addin_client_id=API_CLIENT_ID,
        addin_openid_metadata_url=f"{entra.base}{COMMON_METADATA}",
        run_workflows=True,
    )
    yield client
    await client.close()


async def make(api: TestClient, entra: Entra, token: str | None = None, **body: Any) -> tuple[int, Any]:
    ask = {"type_id": await discovery_id(api, entra), "body_type": "html", **body}
    response = await api.post(LINKS, json=ask, headers={"Authorization": f"Bearer {token or entra.token()}"})
    return response.status, await response.json()


async def eventually(check: Callable[[], Any], seconds: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the workflow did not finish in time")
        await asyncio.sleep(0.1)


async def book(api: TestClient, link: str, email: str, index: int) -> None:
    slots = (await (await api.get(f"{link}/slots", params={"start": "2026-11-24", "end": "2026-11-27"})).json())[
        "slots"
    ]
    body = {"start": slots[index]["start"], "name": "Pat Buyer", "email": email, "time_zone": "UTC"}
    booked = await api.post(f"{link}/bookings", json=body)
    assert booked.status == 201, await booked.text()


async def test_bookings_through_a_bound_link_land_on_the_matched_contact_and_opportunity(
    api: TestClient, entra: Entra, connectwise: tuple[FakeConnectWiseServer, str], database: Database
) -> None:
    fake, _site = connectwise
    pat = fake.add_contact("Pat Buyer", "pat@client.example")
    deal = fake.add_opportunity("Managed services for Client", contact=pat)
    contacts_before = len(fake.contacts)
    status, made = await make(
        api, entra, single_use=False, bind={"email": "Pat@Client.example", "opportunity_id": deal}
    )
    assert status == 201, made
    assert made["bound_to"] == {
        "contact": {"id": pat.contact_id, "name": "Pat Buyer", "email": "pat@client.example"},
        "company": fake.company_name(pat.company_id),
        "opportunity": {"id": deal, "name": "Managed services for Client"},
    }
    async with database.read() as conn:
        stored = (await conn.execute(select(scheduling_requests.c.psa_binding))).scalar_one()
    assert stored["contact"]["id"] == pat.contact_id
    assert stored["opportunity"]["id"] == deal

    # The client opens the link: the form already names them (from the stored request, not the URL).
    link = urlsplit(made["url"]).path
    slots = (await (await api.get(f"{link}/slots", params={"start": "2026-11-24", "end": "2026-11-27"})).json())[
        "slots"
    ]
    page = await (await api.get(link, params={"start": slots[0]["start"]})).text()
    assert 'value="Pat Buyer"' in page
    assert 'value="pat@client.example"' in page

    # Two bookings, the second from the client's other mailbox: both land on Pat's contact and the bound deal.
    await book(api, link, "pat@client.example", 0)
    await book(api, link, "pat.personal@client.example", 2)
    await eventually(lambda: len(fake.records(PsaRecordKind.TICKET)) == 2 and len(fake.activities) >= 2)
    await eventually(lambda: len([row for row in fake.activities.values() if row.get("opportunity")]) == 2)
    # The vendor has the records before the runner records each step as done: wait for the runner too.
    for _ in range(300):
        async with database.read() as conn:
            states = (await conn.execute(select(workflow_jobs.c.kind, workflow_jobs.c.state))).all()
        if {state for _kind, state in states} == {"completed"}:
            break
        await asyncio.sleep(0.1)
    assert {state for _kind, state in states} == {"completed"}, states
    assert len(fake.contacts) == contacts_before, "no contact was created"
    assert [row["id"] for row in fake.records(PsaRecordKind.OPPORTUNITY)] == [int(deal)], "no opportunity made"
    for ticket in fake.records(PsaRecordKind.TICKET):
        assert fake.contact_linked_to(PsaRecordKind.TICKET, str(ticket["id"])) == pat.contact_id
    booked_activities = [row for row in fake.activities.values() if row.get("opportunity")]
    for activity in booked_activities:
        assert str(activity["opportunity"]["id"]) == deal
        assert fake.contact_linked_to(PsaRecordKind.ACTIVITY, str(activity["id"])) == pat.contact_id


async def test_an_unbound_link_booked_from_another_address_makes_a_contact_and_an_opportunity(
    api: TestClient, entra: Entra, connectwise: tuple[FakeConnectWiseServer, str]
) -> None:
    """The contrast that shows what binding buys: without it, the client's other address is a new contact."""
    fake, _site = connectwise
    fake.add_contact("Pat Buyer", "pat@client.example")
    contacts_before = len(fake.contacts)
    status, made = await make(api, entra)
    assert status == 201, made
    assert made["bound_to"] is None
    await book(api, urlsplit(made["url"]).path, "pat.personal@client.example", 0)
    await eventually(lambda: len(fake.records(PsaRecordKind.TICKET)) == 1)
    await eventually(lambda: len(fake.records(PsaRecordKind.OPPORTUNITY)) == 1)
    assert len(fake.contacts) == contacts_before + 1


@pytest.mark.parametrize(
    ("bind", "status", "code"),
    [
        ("pat@client.example", 400, "invalid_bind"),
        ({"email": "not an address"}, 400, "invalid_bind"),
        ({"email": "pat@client.example", "opportunity_id": 7}, 400, "invalid_bind"),
        ({"email": "nobody@elsewhere.example"}, 404, "unknown_contact"),
        ({"email": "pat@client.example", "opportunity_id": "closed"}, 404, "unknown_opportunity"),
        ({"email": "pat@client.example", "opportunity_id": "other"}, 404, "unknown_opportunity"),
    ],
)
async def test_each_wrong_binding_is_a_clear_error_and_makes_no_link(
    api: TestClient,
    entra: Entra,
    connectwise: tuple[FakeConnectWiseServer, str],
    database: Database,
    bind: Any,
    status: int,
    code: str,
) -> None:
    fake, _site = connectwise
    pat = fake.add_contact("Pat Buyer", "pat@client.example")
    closed = fake.add_opportunity("Old hardware refresh", contact=pat, open_=False)
    lee = fake.add_contact("Lee Other", "lee@other.example")
    others = fake.add_opportunity("Lee's deal", contact=lee)
    if isinstance(bind, dict) and bind.get("opportunity_id") in ("closed", "other"):
        bind = {**bind, "opportunity_id": closed if bind["opportunity_id"] == "closed" else others}
    answered, body = await make(api, entra, bind=bind)
    assert answered == status, body
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    async with database.read() as conn:
        assert (await conn.execute(select(scheduling_requests.c.id))).first() is None


async def test_a_psa_that_is_down_or_missing_makes_no_bound_link(
    api: TestClient, entra: Entra, connectwise: tuple[FakeConnectWiseServer, str], database: Database
) -> None:
    fake, _site = connectwise
    fake.add_contact("Pat Buyer", "pat@client.example")
    fake.fail_next(503, count=20)
    answered, body = await make(api, entra, bind={"email": "pat@client.example"})
    assert answered == 503, body
    assert body["error"]["code"] == "psa_unavailable"
    assert "did not answer" in body["error"]["message"]
    # A tenant without a PSA (Fabrikam) cannot bind at all, and never reaches Contoso's contacts.
    fabrikam = entra.token(tenant=FABRIKAM, oid=FABRIKAM_DANA)
    types = await api.get("/addin/api/appointment-types", headers={"Authorization": f"Bearer {fabrikam}"})
    type_id = (await types.json())["types"][0]["id"]
    response = await api.post(
        LINKS,
        json={"type_id": type_id, "body_type": "text", "bind": {"email": "pat@client.example"}},
        headers={"Authorization": f"Bearer {fabrikam}"},
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "no_psa"
    async with database.read() as conn:
        assert (await conn.execute(select(scheduling_requests.c.id))).first() is None
