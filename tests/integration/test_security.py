"""Security promises from the outside: agent keys, tenant isolation, rate limits that fail closed, CSRF, escaping."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp.test_utils import TestClient

from app import Overrides
from pages.links import LinkSigner
from pages.ratelimit import InMemoryRateLimiter
from storage.database import Database
from storage.repositories import SqlAgentKeys
from tests.conftest import FixedClock, start_client
from tests.integration.test_booking_api import PAGE, booking_body


async def test_explain_needs_an_agent_key_and_names_the_conflicting_booking(
    client: TestClient, tenant_db: Database
) -> None:
    await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))
    unauthenticated = await client.get(f"{PAGE}/explain", params={"start": "2026-11-24T15:00:00+00:00"})
    assert unauthenticated.status == 401
    bad = await client.get(
        f"{PAGE}/explain", params={"start": "2026-11-24T15:00:00+00:00"}, headers={"Authorization": "Bearer sw_wrong"}
    )
    assert bad.status == 401
    key = await SqlAgentKeys(tenant_db).create_key("acme", "support desk")
    headers = {"Authorization": f"Bearer {key}"}
    busy = await (
        await client.get(f"{PAGE}/explain", params={"start": "2026-11-24T15:00:00+00:00"}, headers=headers)
    ).json()
    assert busy["offered"] is False
    assert [reason["code"] for reason in busy["reasons"]] == ["busy"]
    assert "another Slotwise booking" in busy["reasons"][0]["message"]
    night = await (
        await client.get(f"{PAGE}/explain", params={"start": "2026-11-24T03:00:00+00:00"}, headers=headers)
    ).json()
    assert "outside_hours" in [reason["code"] for reason in night["reasons"]]
    holiday = await (
        await client.get(f"{PAGE}/explain", params={"start": "2026-11-26T15:00:00+00:00"}, headers=headers)
    ).json()
    assert "holiday" in [reason["code"] for reason in holiday["reasons"]]
    soon = await (
        await client.get(f"{PAGE}/explain", params={"start": "2026-11-23T12:30:00+00:00"}, headers=headers)
    ).json()
    assert "notice" in [reason["code"] for reason in soon["reasons"]]
    free = await (
        await client.get(f"{PAGE}/explain", params={"start": "2026-11-24T16:00:00+00:00"}, headers=headers)
    ).json()
    assert free == {"start": "2026-11-24T16:00:00+00:00", "offered": True, "reasons": []}


async def test_an_agent_key_of_another_tenant_cannot_see_or_create_anything_here(
    client: TestClient, tenant_db: Database
) -> None:
    other_key = await SqlAgentKeys(tenant_db).create_key("globex", "globex desk")
    headers = {"Authorization": f"Bearer {other_key}"}
    explain = await client.get(f"{PAGE}/explain", params={"start": "2026-11-24T15:00:00+00:00"}, headers=headers)
    assert explain.status == 404
    # Globex has its own 'intro-call'; a request for that slug must bind to Globex's type, never Acme's.
    created = await client.post(
        "/api/v1/scheduling-requests", json={"appointment_type": "demo", "ticket": "42"}, headers=headers
    )
    assert created.status == 404


async def test_a_manage_token_signed_for_another_tenant_finds_nothing(client: TestClient, tenant_db: Database) -> None:
    booked = await (await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))).json()
    del tenant_db
    signer = LinkSigner("test-secret-key-that-is-long-enough-0123456789")
    from datetime import UTC, datetime

    forged = signer.sign("manage", "some-other-tenant-id", booked["id"], datetime(2027, 1, 1, tzinfo=UTC))
    response = await client.post(f"/m/{forged}/cancel", json={})
    assert response.status == 404
    request_token_as_manage = signer.sign("request", "x", booked["id"], datetime(2027, 1, 1, tzinfo=UTC))
    assert (await client.post(f"/m/{request_token_as_manage}/cancel", json={})).status == 404


async def test_the_same_slug_in_two_tenants_books_only_its_own_host(client: TestClient) -> None:
    acme = await (await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))).json()
    globex = await client.post(
        "/book/globex/intro-call/bookings", json=booking_body("2026-11-24T15:00:00+00:00", answers={})
    )
    assert globex.status == 201
    assert (await globex.json())["hosts"] == [{"name": "Alice Other"}]
    assert acme["hosts"] == [{"name": "Alice Adams"}]


async def test_a_scheduling_request_books_once_with_its_overrides(client: TestClient, tenant_db: Database) -> None:
    key = await SqlAgentKeys(tenant_db).create_key("acme", "desk")
    created = await client.post(
        "/api/v1/scheduling-requests",
        json={
            "appointment_type": "intro-call",
            "ticket": "T-1001",
            "duration_minutes": 60,
            "window_start": "2026-11-25T00:00:00+00:00",
            "window_end": "2026-11-26T00:00:00+00:00",
            "guests": ["boss@client.test"],
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    assert created.status == 201, await created.text()
    link = (await created.json())["url"].removeprefix("http://testserver")
    slots = (
        await (
            await client.get(f"{link}/slots", params={"start": "2026-11-24", "end": "2026-11-26", "tz": "UTC"})
        ).json()
    )["slots"]
    assert slots
    assert all(slot["start"].startswith("2026-11-25") for slot in slots)
    assert slots[0]["end"] == "2026-11-25T15:00:00+00:00"
    first = await client.post(f"{link}/bookings", json=booking_body(slots[0]["start"]))
    assert first.status == 201, await first.text()
    assert (await first.json())["guests"] == ["boss@client.test"]
    second = await client.post(f"{link}/bookings", json=booking_body(slots[2]["start"]))
    assert second.status == 410
    assert "already been used" in (await second.json())["error"]["message"]
    page = await client.get(link)
    assert page.status == 410


async def test_scheduling_request_input_is_validated(client: TestClient, tenant_db: Database) -> None:
    key = await SqlAgentKeys(tenant_db).create_key("acme", "desk")
    headers = {"Authorization": f"Bearer {key}"}
    for body in (
        {"ticket": "1"},
        {"appointment_type": "intro-call", "ticket": "1", "duration_minutes": 9999},
        {"appointment_type": "intro-call", "ticket": "1", "guests": ["x"]},
        {
            "appointment_type": "intro-call",
            "ticket": "1",
            "window_start": "2026-11-26T00:00:00Z",
            "window_end": "2026-11-25T00:00:00Z",
        },
    ):
        response = await client.post("/api/v1/scheduling-requests", json=body, headers=headers)
        assert response.status == 400, body
    assert (
        await client.post(
            "/api/v1/scheduling-requests", json={"appointment_type": "nope", "ticket": "1"}, headers=headers
        )
    ).status == 404


async def test_public_posts_are_rate_limited_per_ip(tenant_db: Database, tmp_path: Path, clock: FixedClock) -> None:
    client = await start_client(tenant_db, tmp_path, clock, overrides=Overrides(ip_limiter=InMemoryRateLimiter(2)))
    try:
        statuses = []
        for hour in (15, 16, 17):
            response = await client.post(f"{PAGE}/bookings", json=booking_body(f"2026-11-24T{hour}:00:00+00:00"))
            statuses.append(response.status)
        assert statuses == [201, 201, 429]
    finally:
        await client.close()


class BrokenLimiter:
    async def admit(self, key: str) -> bool:
        raise ConnectionError("limiter backend down")


async def test_the_rate_limiter_fails_closed(tenant_db: Database, tmp_path: Path, clock: FixedClock) -> None:
    client = await start_client(tenant_db, tmp_path, clock, overrides=Overrides(page_limiter=BrokenLimiter()))
    try:
        response = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))
        assert response.status == 503
        assert response.headers["Retry-After"] == "60"
    finally:
        await client.close()


async def test_a_form_post_without_the_csrf_token_is_refused(client: TestClient) -> None:
    response = await client.post(
        f"{PAGE}/bookings",
        data={"start": "2026-11-24T15:00:00+00:00", "name": "X", "email": "x@y.test", "answer_company": "c"},
    )
    assert response.status == 403


async def test_client_text_is_escaped_on_the_confirmation_page(client: TestClient) -> None:
    evil = '<script>alert("x")</script>'
    booked = await client.post(
        f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00", name=evil, answers={"company": evil})
    )
    assert booked.status == 201
    page = await client.get((await booked.json())["manage_url"].removeprefix("http://testserver"))
    html = await page.text()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "Acme &lt;Managed&gt; IT" in (await (await client.get(PAGE)).text())


async def test_the_booking_form_round_trip_works_without_javascript(client: TestClient) -> None:
    page = await client.get(PAGE, params={"tz": "UTC", "date": "2026-11-24", "start": "2026-11-24T15:00:00+00:00"})
    html = await page.text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token
    response = await client.post(
        f"{PAGE}/bookings",
        data={
            "csrf_token": token.group(1),
            "start": "2026-11-24T15:00:00+00:00",
            "time_zone": "UTC",
            "name": "Form Person",
            "email": "form@client.test",
            "answer_company": "Form Co",
        },
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    assert "/m/" in response.headers["Location"]


async def test_the_manage_pages_forms_refuse_a_post_without_the_csrf_token(client: TestClient) -> None:
    booked = await (await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))).json()
    manage = booked["manage_url"].removeprefix("http://testserver")
    page = await client.get(manage, params={"action": "cancel"})
    token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    assert token
    for action, form in (
        ("cancel", {"reason": "forged", "time_zone": "UTC", "version": "1"}),
        ("reschedule", {"start": "2026-11-25T16:00:00+00:00", "time_zone": "UTC", "version": "1"}),
    ):
        for csrf in ({}, {"csrf_token": "not-the-token"}):
            response = await client.post(f"{manage}/{action}", data={**form, **csrf}, allow_redirects=False)
            assert response.status == 403, (action, csrf)
    current = await client.post(f"{manage}/cancel", json={"version": 1})
    assert (await current.json())["status"] == "cancelled"
    assert (await current.json())["start"].startswith("2026-11-24T15:00:00")
