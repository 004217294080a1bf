"""Scheduling requests without a ticket (one-off links), as an agent and a client live them: a single-use link
books once and then says it was used; a multi-use link books again and again until it expires; the link's guests
land on the booking and in its emails; a duration override changes the offered slots and the booking's length; a
window override limits the offered days and is clipped to the type's maximum scheduling window; each bad value is a
400 naming its field; another tenant's key reaches nothing here. HTTP in, HTTP and the database out, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from storage.database import Database
from storage.repositories import SqlAgentKeys
from storage.tables import bookings, scheduling_requests, tenants
from tests.conftest import FixedClock
from tests.integration.test_booking_api import PAGE, booking_body
from tests.integration.test_reminders import run_at
from tests.integration.test_request_triggers import service_desk

API = "/api/v1/scheduling-requests"


async def agent(tenant_db: Database, tenant: str = "acme") -> dict[str, str]:
    key = await SqlAgentKeys(tenant_db).create_key(tenant, "desk")
    return {"Authorization": f"Bearer {key}"}


async def make_link(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    answer = await client.post(API, json={"appointment_type": "intro-call", **body}, headers=headers)
    assert answer.status == 201, await answer.text()
    created: dict[str, Any] = await answer.json()
    return created


def path_of(created: dict[str, Any]) -> str:
    return str(created["url"]).removeprefix("http://testserver")


async def slots_of(client: TestClient, page: str, start: str, end: str) -> list[dict[str, str]]:
    answer = await client.get(f"{page}/slots", params={"start": start, "end": end, "tz": "UTC"})
    assert answer.status == 200, await answer.text()
    slots: list[dict[str, str]] = (await answer.json())["slots"]
    return slots


async def request_row(database: Database, request_id: str) -> Any:
    async with database.read() as conn:
        return (await conn.execute(select(scheduling_requests).where(scheduling_requests.c.id == request_id))).one()


async def bookings_through(database: Database, request_id: str) -> list[Any]:
    async with database.read() as conn:
        return list(
            (
                await conn.execute(
                    select(bookings).where(bookings.c.request_id == request_id).order_by(bookings.c.starts_at)
                )
            ).all()
        )


async def test_a_link_without_a_ticket_books_once_then_says_it_was_used(
    client: TestClient, tenant_db: Database
) -> None:
    created = await make_link(client, await agent(tenant_db))
    assert created["ticket"] is None
    assert created["ticket_bound"] is False
    assert created["single_use"] is True
    assert "notice" not in created
    link = path_of(created)
    page = await client.get(link)
    assert page.status == 200
    assert "Regarding ticket" not in await page.text()
    slots = await slots_of(client, link, "2026-11-24", "2026-11-25")
    first = await client.post(f"{link}/bookings", json=booking_body(slots[0]["start"]))
    assert first.status == 201, await first.text()
    second = await client.post(f"{link}/bookings", json=booking_body(slots[2]["start"]))
    assert second.status == 410
    assert "already been used" in (await second.json())["error"]["message"]
    assert (await client.get(link)).status == 410
    row = await request_row(tenant_db, created["id"])
    assert (row.ticket, row.ticket_id, row.single_use) == ("", None, True)
    assert row.booking_id == (await first.json())["id"]
    assert len(await bookings_through(tenant_db, created["id"])) == 1


async def test_a_multi_use_link_books_every_time_and_each_booking_stands_alone(
    client: TestClient, tenant_db: Database
) -> None:
    created = await make_link(client, await agent(tenant_db), single_use=False)
    assert created["single_use"] is False
    link = path_of(created)
    slots = await slots_of(client, link, "2026-11-24", "2026-11-25")
    first = await client.post(f"{link}/bookings", json=booking_body(slots[0]["start"]))
    second = await client.post(
        f"{link}/bookings", json=booking_body(slots[3]["start"], name="Erin Other", email="erin@client.test")
    )
    assert (first.status, second.status) == (201, 201), await second.text()
    assert (await client.get(link)).status == 200
    made = await bookings_through(tenant_db, created["id"])
    assert [(row.client_email, row.status) for row in made] == [
        ("dana@client.test", "confirmed"),
        ("erin@client.test", "confirmed"),
    ]
    # Cancelling one leaves the other, and the link still books.
    manage = (await first.json())["manage_url"].removeprefix("http://testserver")
    assert (await client.post(f"{manage}/cancel", json={})).status == 200
    third = await client.post(f"{link}/bookings", json=booking_body(slots[5]["start"]))
    assert third.status == 201, await third.text()
    states = sorted(row.status for row in await bookings_through(tenant_db, created["id"]))
    assert states == ["cancelled", "confirmed", "confirmed"]
    # The same time is not offered twice: the second booking's time is gone from the link.
    again = await client.post(f"{link}/bookings", json=booking_body(slots[3]["start"]))
    assert again.status == 409


async def test_the_links_guests_land_on_every_booking(client: TestClient, tenant_db: Database) -> None:
    created = await make_link(
        client, await agent(tenant_db), single_use=False, guests=["Boss@Client.test", "boss@client.test", "it@c.test"]
    )
    assert created["guests"] == ["Boss@Client.test", "it@c.test"]
    link = path_of(created)
    slots = await slots_of(client, link, "2026-11-24", "2026-11-25")
    booked = await client.post(f"{link}/bookings", json=booking_body(slots[0]["start"], guests=["pa@client.test"]))
    assert booked.status == 201, await booked.text()
    answer = await booked.json()
    assert set(answer["guests"]) == {*created["guests"], "pa@client.test"}
    rows = await bookings_through(tenant_db, created["id"])
    assert set(rows[0].guests) == {*created["guests"], "pa@client.test"}


async def test_a_duration_override_changes_the_offered_slots_and_the_booking(
    client: TestClient, tenant_db: Database
) -> None:
    created = await make_link(client, await agent(tenant_db), duration_minutes=90)
    link = path_of(created)
    plain = [slot for slot in await slots_of(client, PAGE, "2026-11-24", "2026-11-25") if "-24T" in slot["start"]]
    longer = [slot for slot in await slots_of(client, link, "2026-11-24", "2026-11-25") if "-24T" in slot["start"]]
    assert all(
        datetime.fromisoformat(slot["end"]) - datetime.fromisoformat(slot["start"]) == timedelta(minutes=90)
        for slot in longer
    )
    # Alice works 09:00-17:00 New York (14:00-22:00 UTC): a 90-minute call cannot start after 20:30 UTC.
    assert plain[-1]["start"] == "2026-11-24T21:30:00+00:00"
    assert longer[-1]["start"] == "2026-11-24T20:30:00+00:00"
    booked = await client.post(f"{link}/bookings", json=booking_body(longer[-1]["start"]))
    assert booked.status == 201, await booked.text()
    row = (await bookings_through(tenant_db, created["id"]))[0]
    assert row.ends_at - row.starts_at == timedelta(minutes=90)
    # The 90 minutes are taken: the plain page no longer offers 21:00 UTC that day.
    after = await slots_of(client, PAGE, "2026-11-24", "2026-11-25")
    assert "2026-11-24T21:00:00+00:00" not in [slot["start"] for slot in after]


async def test_a_window_override_limits_the_offered_days_and_the_types_window_clips_it(
    client: TestClient, tenant_db: Database
) -> None:
    headers = await agent(tenant_db)
    three_days = path_of(await make_link(client, headers, window_days=3))
    offered = {slot["start"][:10] for slot in await slots_of(client, three_days, "2026-11-23", "2026-11-30")}
    everything = {slot["start"][:10] for slot in await slots_of(client, PAGE, "2026-11-23", "2026-11-30")}
    assert offered == {"2026-11-23", "2026-11-24", "2026-11-25"}
    assert "2026-11-27" in everything
    assert "2026-11-27" not in offered
    # The type's maximum window is 30 days: a 200-day window offers nothing past it.
    long = path_of(await make_link(client, headers, window_days=200, single_use=False))
    assert await slots_of(client, long, "2027-01-04", "2027-01-08") == []
    assert await slots_of(client, long, "2026-12-14", "2026-12-16") != []
    starts = path_of(
        await make_link(client, headers, window_start="2026-11-30T00:00:00+00:00", window_end="2026-12-02T00:00:00Z")
    )
    days = {slot["start"][:10] for slot in await slots_of(client, starts, "2026-11-23", "2026-12-10")}
    assert days == {"2026-11-30", "2026-12-01"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"duration_minutes": 45}, "duration_minutes"),  # not on intro-call's 30-minute increment
        ({"duration_minutes": 0}, "duration_minutes"),
        ({"duration_minutes": 9999}, "duration_minutes"),
        ({"duration_minutes": "60"}, "duration_minutes"),
        ({"single_use": "no"}, "single_use"),
        ({"guests": ["x"]}, "guests"),
        ({"guests": [7]}, "guests"),
        ({"guests": "a@b.test"}, "guests"),
        ({"guests": [f"g{n}@client.test" for n in range(11)]}, "guests"),
        ({"window_days": 0}, "window_days"),
        ({"window_days": 400}, "window_days"),
        ({"window_days": "3"}, "window_days"),
        ({"window_days": 3, "window_end": "2026-12-01T00:00:00Z"}, "window_days"),
        ({"window_start": "2026-11-26T00:00:00Z", "window_end": "2026-11-25T00:00:00Z"}, "window_end"),
        ({"window_end": "2026-11-01T00:00:00Z"}, "window_end"),
        ({"window_start": "tomorrow"}, "window_start"),
        ({"ticket": 42}, "ticket"),
        ({"appointment_type": ""}, "appointment_type"),
    ],
)
async def test_each_bad_value_is_a_400_naming_its_field(
    client: TestClient, tenant_db: Database, body: dict[str, Any], field: str
) -> None:
    answer = await client.post(API, json={"appointment_type": "intro-call", **body}, headers=await agent(tenant_db))
    assert answer.status == 400, await answer.text()
    assert (await answer.json())["error"]["field"] == field
    async with tenant_db.read() as conn:
        assert (await conn.execute(select(scheduling_requests.c.id))).first() is None


async def test_another_tenants_key_reaches_only_its_own_types_and_hosts(
    client: TestClient, tenant_db: Database
) -> None:
    globex = await agent(tenant_db, "globex")
    # 'review' is only Acme's.
    assert (await client.post(API, json={"appointment_type": "review"}, headers=globex)).status == 404
    # Both tenants have 'intro-call': Globex's key makes a link to Globex's, booked with Globex's host.
    created = await make_link(client, globex, single_use=False)
    link = path_of(created)
    slots = await slots_of(client, link, "2026-11-24", "2026-11-25")
    booked = await client.post(f"{link}/bookings", json=booking_body(slots[0]["start"], answers={}))
    assert booked.status == 201, await booked.text()
    assert (await booked.json())["hosts"] == [{"name": "Alice Other"}]
    row = await request_row(tenant_db, created["id"])
    booking = (await bookings_through(tenant_db, created["id"]))[0]
    assert row.tenant_id == booking.tenant_id
    async with tenant_db.read() as conn:
        slug = (await conn.execute(select(tenants.c.slug).where(tenants.c.id == row.tenant_id))).scalar_one()
    assert slug == "globex"


async def test_guests_of_a_link_without_a_ticket_get_the_bookings_emails(
    database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service_desk(database, tmp_path, clock, monkeypatch) as desk:
        answer = await desk.client.post(
            API,
            json={"appointment_type": "visit", "guests": ["ops@client.test"], "single_use": False},
            headers=desk.auth,
        )
        assert answer.status == 201, await answer.text()
        link = path_of(await answer.json())
        slots = await slots_of(desk.client, link, "2026-11-24", "2026-11-25")
        body = {"start": slots[0]["start"], "name": "Dana Client", "email": "dana@client.test", "time_zone": "UTC"}
        booked = await desk.client.post(f"{link}/bookings", json=body)
        assert booked.status == 201, await booked.text()
        # The booking's steps are due from the wall clock's now (the outbox stamps them so): run them then.
        await run_at(database, clock, (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S"))
        mails = [mail for mail in desk.smtp.received if str(mail.message["Subject"]).startswith("Booked")]
        assert mails, [str(mail.message["Subject"]) for mail in desk.smtp.received]
        recipients = {address.lower() for mail in mails for address in mail.envelope_to}
        assert {"dana@client.test", "ops@client.test"} <= recipients
        # No ticket was named, so the workflow made its own, and the email quotes it.
        assert "#" in str(mails[0].message["Subject"])
