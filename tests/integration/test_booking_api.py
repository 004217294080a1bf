"""The public booking API from the client's side: HTTP in, HTTP and database rows out."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from storage.database import Database
from storage.tables import BookingRow, HostSlotRow
from tests.conftest import FixedClock

PAGE = "/book/acme/intro-call"


def booking_body(start: str, **changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "start": start,
        "name": "Dana Client",
        "email": "dana@client.test",
        "time_zone": "Europe/London",
        "answers": {"company": "Client Co"},
    }
    body.update(changes)
    return body


async def count_bookings(database: Database) -> int:
    async with database.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(BookingRow))).scalar_one())


async def test_slots_are_listed_in_the_clients_time_zone_and_respect_notice(client: TestClient) -> None:
    response = await client.get(
        f"{PAGE}/slots", params={"start": "2026-11-23", "end": "2026-11-23", "tz": "Europe/London"}
    )
    assert response.status == 200
    body = await response.json()
    assert body["time_zone"] == "Europe/London"
    starts = [slot["start"] for slot in body["slots"]]
    # Alice works 09:00-17:00 New York (14:00-22:00 London); now is 07:00 New York plus 2 hours of notice.
    assert starts[0] == "2026-11-23T14:00:00+00:00"
    assert starts[-1] == "2026-11-23T21:30:00+00:00"
    assert len(starts) == 16
    assert body["slots"][0]["end"] == "2026-11-23T14:30:00+00:00"


async def test_a_tenant_holiday_has_no_slots(client: TestClient) -> None:
    response = await client.get(
        f"{PAGE}/slots", params={"start": "2026-11-26", "end": "2026-11-26", "tz": "America/New_York"}
    )
    assert response.status == 200
    assert (await response.json())["slots"] == []


async def test_booking_returns_201_with_a_manage_url_and_removes_the_slot(
    client: TestClient, tenant_db: Database
) -> None:
    response = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))
    assert response.status == 201, await response.text()
    booking = await response.json()
    assert booking["status"] == "confirmed"
    assert booking["start"] == "2026-11-24T15:00:00+00:00"
    assert booking["hosts"] == [{"name": "Alice Adams"}]
    assert booking["manage_url"].startswith("http://testserver/m/")
    assert await count_bookings(tenant_db) == 1
    slots = await (
        await client.get(f"{PAGE}/slots", params={"start": "2026-11-24", "end": "2026-11-24", "tz": "UTC"})
    ).json()
    assert "2026-11-24T15:00:00+00:00" not in [slot["start"] for slot in slots["slots"]]


async def test_a_taken_slot_answers_409_with_the_next_free_slots(client: TestClient) -> None:
    first = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))
    assert first.status == 201
    second = await client.post(
        f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00", email="eve@client.test")
    )
    assert second.status == 409
    error = (await second.json())["error"]
    assert error["code"] == "slot_unavailable"
    assert error["next_free"][0] == "2026-11-24T15:30:00+00:00"


async def test_a_repeated_idempotency_key_returns_the_original_booking(client: TestClient, tenant_db: Database) -> None:
    headers = {"Idempotency-Key": "retry-123"}
    first = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"), headers=headers)
    again = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"), headers=headers)
    assert first.status == 201
    assert again.status == 200
    assert (await again.json())["id"] == (await first.json())["id"]
    assert await count_bookings(tenant_db) == 1


async def test_someone_elses_idempotency_key_gets_a_422_and_never_their_booking(
    client: TestClient, tenant_db: Database
) -> None:
    headers = {"Idempotency-Key": "shared-key-1"}
    first = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"), headers=headers)
    assert first.status == 201
    manage_url = (await first.json())["manage_url"]
    attempts = [
        # Another client, same page.
        (f"{PAGE}/bookings", booking_body("2026-11-24T16:00:00+00:00", name="Eve", email="eve@evil.test")),
        # The same client's address, another page.
        ("/book/acme/bob-chat/bookings", booking_body("2026-11-24T16:00:00+00:00", answers={})),
    ]
    for path, body in attempts:
        stolen = await client.post(path, json=body, headers=headers)
        assert stolen.status == 422, await stolen.text()
        text = await stolen.text()
        error = (await stolen.json())["error"]
        assert error["code"] == "idempotency_key_reused"
        assert error["field"] == "Idempotency-Key"
        assert "dana@client.test" not in text
        assert "Dana" not in text
        assert manage_url.rsplit("/", 1)[-1] not in text
    assert await count_bookings(tenant_db) == 1


async def test_bad_input_gets_a_specific_4xx_and_never_a_500(client: TestClient) -> None:
    ok_start = "2026-11-24T15:00:00+00:00"
    cases = [
        ("malformed json", f"{PAGE}/bookings", b"{not json", 400, "invalid_request"),
        ("unknown page", "/book/acme/no-such-type/bookings", booking_body(ok_start), 404, "not_found"),
        ("unknown tenant", "/book/nobody/intro-call/bookings", booking_body(ok_start), 404, "not_found"),
        ("bad time zone", f"{PAGE}/bookings", booking_body(ok_start, time_zone="Mars/Olympus"), 400, "invalid_request"),
        ("too-long name", f"{PAGE}/bookings", booking_body(ok_start, name="x" * 201), 400, "invalid_request"),
        ("bad email", f"{PAGE}/bookings", booking_body(ok_start, email="not-an-email"), 400, "invalid_request"),
        ("missing answer", f"{PAGE}/bookings", booking_body(ok_start, answers={}), 400, "invalid_request"),
        (
            "unknown question",
            f"{PAGE}/bookings",
            booking_body(ok_start, answers={"company": "x", "zzz": "y"}),
            400,
            "invalid_request",
        ),
        ("naive time", f"{PAGE}/bookings", booking_body("2026-11-24T15:00:00"), 400, "invalid_request"),
        ("not a time", f"{PAGE}/bookings", booking_body("tomorrow"), 400, "invalid_request"),
        ("outside hours", f"{PAGE}/bookings", booking_body("2026-11-24T03:00:00+00:00"), 409, "slot_unavailable"),
        ("off grid", f"{PAGE}/bookings", booking_body("2026-11-24T15:10:00+00:00"), 409, "slot_unavailable"),
        ("guests not a list", f"{PAGE}/bookings", booking_body(ok_start, guests=5), 400, "invalid_request"),
        ("bad guest", f"{PAGE}/bookings", booking_body(ok_start, guests=["nope"]), 400, "invalid_request"),
        ("json array", f"{PAGE}/bookings", [1, 2], 400, "invalid_request"),
    ]
    for label, path, body, status, code in cases:
        if isinstance(body, bytes):
            response = await client.post(path, data=body, headers={"Content-Type": "application/json"})
        else:
            response = await client.post(path, json=body)
        assert response.status == status, (label, await response.text())
        payload = await response.json()
        assert payload["error"]["code"] == code, label
        assert payload["error"]["message"], label


async def test_bad_slot_queries_get_a_clear_400(client: TestClient) -> None:
    for params in (
        {"start": "2026-13-01"},
        {"tz": "Not/AZone"},
        {"tz": "../../etc/passwd"},
        {"start": "2026-11-30", "end": "2026-11-01"},
        {"start": "2026-11-01", "end": "2027-03-01"},
    ):
        response = await client.get(f"{PAGE}/slots", params=params)
        assert response.status == 400, params
        assert (await response.json())["error"]["message"]


async def test_an_oversized_body_is_refused_with_413(client: TestClient) -> None:
    response = await client.post(
        f"{PAGE}/bookings", data=b"{" + b" " * 100_000 + b"}", headers={"Content-Type": "application/json"}
    )
    assert response.status == 413


async def test_the_client_reschedules_and_cancels_through_the_manage_link(client: TestClient) -> None:
    booked = await (await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))).json()
    manage = booked["manage_url"].removeprefix("http://testserver")
    moved = await client.post(f"{manage}/reschedule", json={"start": "2026-11-25T16:00:00+00:00"})
    assert moved.status == 200, await moved.text()
    assert (await moved.json())["start"].startswith("2026-11-25T16:00:00")
    slots = await (
        await client.get(f"{PAGE}/slots", params={"start": "2026-11-24", "end": "2026-11-25", "tz": "UTC"})
    ).json()
    starts = [slot["start"] for slot in slots["slots"]]
    assert "2026-11-24T15:00:00+00:00" in starts
    assert "2026-11-25T16:00:00+00:00" not in starts
    cancelled = await client.post(f"{manage}/cancel", json={"reason": "Plans changed"})
    assert cancelled.status == 200
    assert (await cancelled.json())["status"] == "cancelled"
    again = await client.post(f"{manage}/cancel", json={})
    assert again.status == 409
    refused = (await again.json())["error"]
    assert refused["code"] == "booking_changed"
    assert "already cancelled" in refused["message"]
    assert refused["booking"]["status"] == "cancelled"
    slots = await (
        await client.get(f"{PAGE}/slots", params={"start": "2026-11-25", "end": "2026-11-25", "tz": "UTC"})
    ).json()
    assert "2026-11-25T16:00:00+00:00" in [slot["start"] for slot in slots["slots"]]


async def test_a_tampered_manage_link_is_404_and_an_expired_one_is_410(client: TestClient, clock: FixedClock) -> None:
    booked = await (await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))).json()
    manage = booked["manage_url"].removeprefix("http://testserver")
    tampered = manage[:-3] + ("AAA" if not manage.endswith("AAA") else "BBB")
    response = await client.post(f"{tampered}/cancel", json={})
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "link_invalid"
    clock.moment = datetime(2026, 11, 24, 15, 31, tzinfo=UTC)
    response = await client.post(f"{manage}/cancel", json={})
    assert response.status == 410
    assert "expired" in (await response.json())["error"]["message"]
    page = await client.get(manage)
    assert page.status == 410
    assert "expired" in await page.text()


async def test_round_robin_assigns_a_different_free_member_each_time_and_says_why(
    client: TestClient, tenant_db: Database
) -> None:
    slot = "2026-11-24T16:00:00+00:00"  # 11:00 New York: Alice and Carol both work then.
    results = []
    for email in ("a@x.test", "b@x.test", "c@x.test"):
        response = await client.post("/book/acme/demo/bookings", json=booking_body(slot, email=email, answers={}))
        results.append((response.status, await response.json()))
    assert [status for status, _ in results] == [201, 201, 409]
    hosts = {body["hosts"][0]["name"] for _, body in results[:2]}
    assert hosts == {"Alice Adams", "Carol Chen"}
    async with tenant_db.read() as conn:
        reasons = (await conn.execute(select(BookingRow.assignment_reason))).scalars().all()
    assert all(reason.startswith("round robin:") for reason in reasons)
    assert any("has not been booked yet" in reason for reason in reasons)


async def test_round_robin_prefers_the_member_booked_least_recently(client: TestClient) -> None:
    first = await client.post("/book/acme/demo/bookings", json=booking_body("2026-11-24T16:00:00+00:00", answers={}))
    second = await client.post("/book/acme/demo/bookings", json=booking_body("2026-11-25T16:00:00+00:00", answers={}))
    third = await client.post("/book/acme/demo/bookings", json=booking_body("2026-11-27T16:00:00+00:00", answers={}))
    names = [(await r.json())["hosts"][0]["name"] for r in (first, second, third)]
    assert names[0] != names[1]
    assert names[2] == names[0]


async def test_a_panel_books_every_member_and_blocks_each_of_their_calendars(
    client: TestClient, tenant_db: Database
) -> None:
    response = await client.post(
        "/book/acme/review/bookings", json=booking_body("2026-11-24T16:00:00+00:00", answers={})
    )
    assert response.status == 201, await response.text()
    assert {host["name"] for host in (await response.json())["hosts"]} == {"Alice Adams", "Carol Chen"}
    async with tenant_db.read() as conn:
        rows = (await conn.execute(select(func.count()).select_from(HostSlotRow))).scalar_one()
    assert rows == 2
    intro = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T16:00:00+00:00"))
    assert intro.status == 409


async def test_buffers_keep_time_free_around_a_booking(client: TestClient) -> None:
    await client.post("/book/acme/review/bookings", json=booking_body("2026-11-24T16:00:00+00:00", answers={}))
    slots = await (
        await client.get(f"{PAGE}/slots", params={"start": "2026-11-24", "end": "2026-11-24", "tz": "UTC"})
    ).json()
    starts = [slot["start"] for slot in slots["slots"]]
    # The review runs 16:00-16:45 with 15-minute buffers; a 30-minute intro may not sit inside 15:45-17:00.
    assert "2026-11-24T15:30:00+00:00" not in starts
    assert "2026-11-24T16:30:00+00:00" not in starts
    assert "2026-11-24T15:00:00+00:00" in starts
    assert "2026-11-24T17:00:00+00:00" in starts


async def test_healthz_readyz_and_openapi_answer(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await (await client.get("/readyz")).json())["status"] == "ready"
    document = await (await client.get("/api/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    assert "/book/{tenant}/{type}/bookings" in document["paths"]


async def test_booking_far_beyond_the_window_is_refused(client: TestClient) -> None:
    start = (datetime(2026, 11, 23, 15, 0, tzinfo=UTC) + timedelta(days=45)).isoformat()
    response = await client.post(f"{PAGE}/bookings", json=booking_body(start))
    assert response.status == 409


async def test_unknown_routes_answer_404_as_json_for_api_clients(client: TestClient, tmp_path: Path) -> None:
    del tmp_path
    response = await client.get("/api/v1/nothing-here")
    assert response.status == 404


async def test_a_stale_manage_page_cannot_undo_a_newer_change_and_shows_the_current_state(client: TestClient) -> None:
    booked = await (await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))).json()
    assert booked["version"] == 1
    manage = booked["manage_url"].removeprefix("http://testserver")
    reschedule_page = await client.get(
        manage, params={"action": "reschedule", "tz": "UTC", "start": "2026-11-25T16:00:00+00:00"}
    )
    html = await reschedule_page.text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token
    assert 'name="version" value="1"' in html
    # Meanwhile the client moves it from another device (the API names the version through If-Match).
    moved = await client.post(
        f"{manage}/reschedule", json={"start": "2026-11-24T17:00:00+00:00"}, headers={"If-Match": '"1"'}
    )
    assert moved.status == 200, await moved.text()
    assert (await moved.json())["version"] == 2
    stale = await client.post(
        f"{manage}/reschedule",
        data={"csrf_token": token.group(1), "start": "2026-11-25T16:00:00+00:00", "time_zone": "UTC", "version": "1"},
        allow_redirects=False,
    )
    assert stale.status == 409
    page = await stale.text()
    assert "just changed" in page
    assert "17:00" in page
    stale_json = await client.post(f"{manage}/cancel", json={"version": 1})
    assert stale_json.status == 409
    body = (await stale_json.json())["error"]
    assert body["code"] == "booking_changed"
    assert body["booking"]["start"].startswith("2026-11-24T17:00:00")
    bad = await client.post(f"{manage}/cancel", json={"version": "latest"})
    assert bad.status == 400
    assert (await bad.json())["error"]["field"] == "version"
    assert (await client.post(f"{manage}/cancel", json={"version": 2})).status == 200


async def test_a_booking_that_overlaps_another_or_sits_in_its_buffer_is_refused_whatever_its_start(
    client: TestClient, tenant_db: Database
) -> None:
    """The account review is 45 minutes with 15-minute buffers, on Alice and Carol together. Every refusal below
    starts at a different time than the first booking, so no unique index on the start time can be what stops it."""
    review = "/book/acme/review/bookings"
    first = await client.post(review, json=booking_body("2026-11-25T15:00:00+00:00", answers={}))
    assert first.status == 201, await first.text()
    for start in ("2026-11-25T15:30:00+00:00", "2026-11-25T14:30:00+00:00", "2026-11-25T15:45:00+00:00"):
        refused = await client.post(review, json=booking_body(start, email="other@client.test", answers={}))
        assert refused.status == 409, (start, await refused.text())
    # Buffers may overlap each other: a meeting that starts where the first one's buffer ends is fine.
    after = await client.post(review, json=booking_body("2026-11-25T16:00:00+00:00", email="o@c.test", answers={}))
    assert after.status == 201, await after.text()
    # Another type on one of the same hosts cannot land inside the review either.
    intro = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-25T15:30:00+00:00", email="i@c.test"))
    assert intro.status == 409, await intro.text()
    assert await count_bookings(tenant_db) == 2
