"""`GET /api/v1/admin/bookings` from an admin's side: the tenant's bookings, filtered by host, team, type, start range
and state, a page at a time; another tenant's key sees none of them; bad filters get a 400 that names the field."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from storage.database import Database
from storage.repositories import SqlAgentKeys
from tests.integration.test_booking_api import booking_body


async def book(client: TestClient, type_slug: str, start: str, email: str) -> dict[str, Any]:
    answers = {"company": "Client Co"} if type_slug == "intro-call" else {}
    answer = await client.post(
        f"/book/acme/{type_slug}/bookings", json=booking_body(start, email=email, answers=answers)
    )
    assert answer.status == 201, await answer.text()
    return dict(await answer.json())


async def test_admins_list_and_filter_their_tenants_bookings_a_page_at_a_time(
    client: TestClient, tenant_db: Database
) -> None:
    keys = SqlAgentKeys(tenant_db)
    acme = {"Authorization": f"Bearer {await keys.create_key('acme', 'ops', 'admin')}"}
    globex = {"Authorization": f"Bearer {await keys.create_key('globex', 'ops', 'admin')}"}
    intro = await book(client, "intro-call", "2026-11-24T15:00:00+00:00", "one@client.test")
    chat = await book(client, "bob-chat", "2026-11-24T10:00:00+00:00", "two@client.test")
    later = await book(client, "intro-call", "2026-11-25T16:00:00+00:00", "three@client.test")
    manage = later["manage_url"].removeprefix("http://testserver")
    assert (await client.post(f"{manage}/cancel", json={"reason": "Changed plans"})).status == 200

    async def listed(headers: dict[str, str] = acme, **params: str) -> dict[str, Any]:
        answer = await client.get("/api/v1/admin/bookings", params=params, headers=headers)
        assert answer.status == 200, await answer.text()
        return dict(await answer.json())

    everything = await listed()
    assert [item["id"] for item in everything["bookings"]] == [chat["id"], intro["id"], later["id"]]
    assert everything["total"] == 3
    assert everything["next_offset"] is None
    first = everything["bookings"][1]
    assert first["type"] == {"slug": "intro-call", "name": "Intro call"}
    assert first["hosts"] == [{"slug": "alice", "name": "Alice Adams"}]
    assert first["client"]["email"] == "one@client.test"
    assert first["answers"] == {"company": "Client Co"}

    assert [item["id"] for item in (await listed(host="bob"))["bookings"]] == [chat["id"]]
    assert [item["id"] for item in (await listed(team="sales"))["bookings"]] == [intro["id"], later["id"]]
    assert [item["id"] for item in (await listed(type="intro-call", state="confirmed"))["bookings"]] == [intro["id"]]
    cancelled = (await listed(state="cancelled"))["bookings"]
    assert [(item["id"], item["cancel_reason"]) for item in cancelled] == [(later["id"], "Changed plans")]
    window = await listed(**{"from": "2026-11-24T12:00:00Z", "to": "2026-11-25T00:00:00+00:00"})
    assert [item["id"] for item in window["bookings"]] == [intro["id"]]

    page = await listed(limit="2")
    assert [item["id"] for item in page["bookings"]] == [chat["id"], intro["id"]]
    assert (page["total"], page["next_offset"]) == (3, 2)
    rest = await listed(limit="2", offset="2")
    assert [item["id"] for item in rest["bookings"]] == [later["id"]]
    assert rest["next_offset"] is None

    # Another tenant's key sees none of these, and cannot even name this tenant's people.
    assert (await listed(globex))["bookings"] == []
    stranger = await client.get("/api/v1/admin/bookings", params={"host": "bob"}, headers=globex)
    assert stranger.status == 400
    assert "no user 'bob'" in (await stranger.json())["error"]["message"]
    assert (await client.get("/api/v1/admin/bookings")).status == 401


async def test_bad_filters_get_a_400_that_names_the_field(client: TestClient, tenant_db: Database) -> None:
    key = await SqlAgentKeys(tenant_db).create_key("acme", "ops", "admin")
    headers = {"Authorization": f"Bearer {key}"}
    for params, field in (
        ({"state": "maybe"}, "state"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-11-24T00:00:00"}, "from"),
        ({"from": "0001-01-01T00:00:00+14:00"}, "from"),
        ({"from": "2026-11-25T00:00:00Z", "to": "2026-11-24T00:00:00Z"}, "to"),
        ({"limit": "0"}, "limit"),
        ({"limit": "²"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"type": "nope"}, "type"),
        ({"team": "x" * 65}, "team"),
        ({"to": ""}, "to"),
        ({"state": ""}, "state"),
    ):
        answer = await client.get("/api/v1/admin/bookings", params=params, headers=headers)
        assert answer.status == 400, (params, await answer.text())
        body = await answer.json()
        assert body["error"]["field"] == field, (params, body)
