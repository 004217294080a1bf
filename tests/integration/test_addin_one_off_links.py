"""One-off links from the Outlook add-in over real HTTP (`POST /addin/api/one-off-links`): a scheduling request
without a ticket for one of the signed-in rep's types, with its own duration, days ahead, single or multi use, and
guests; the inserted content matches the body type and escapes what it shows; each bad value is a 400 naming the
field; only the rep's own types, never another rep's or tenant's. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from storage.database import Database
from storage.tables import bookings, scheduling_requests
from tests.conftest import FIXTURES, FixedClock, apply_file, start_client
from tests.integration.test_addin_auth import (
    API_CLIENT_ID,
    COMMON_METADATA,
    FABRIKAM,
    FABRIKAM_DANA,
    MAYA,
    Entra,
)
from tests.integration.test_addin_suggested_times import discovery_id

LINKS = "/addin/api/one-off-links"


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
        addin_client_id=API_CLIENT_ID,
        addin_openid_metadata_url=f"{entra.base}{COMMON_METADATA}",
    )
    yield client
    await client.close()


async def make(api: TestClient, entra: Entra, token: str | None = None, **body: Any) -> tuple[int, Any]:
    ask = {"type_id": await discovery_id(api, entra), "body_type": "html", **body}
    response = await api.post(LINKS, json=ask, headers={"Authorization": f"Bearer {token or entra.token()}"})
    return response.status, await response.json()


async def test_a_rep_makes_a_multi_use_link_with_guests_and_a_longer_duration_that_books_twice(
    api: TestClient, entra: Entra, addin_db: Database
) -> None:
    status, made = await make(
        api, entra, duration_minutes=60, window_days=7, single_use=False, guests=["sam@client.test"]
    )
    assert status == 201, made
    assert (made["single_use"], made["guests"], made["duration_minutes"]) == (False, ["sam@client.test"], 60)
    assert "<b>Discovery call</b> (60 minutes, Microsoft Teams meeting)" in made["content"]
    assert f'<a href="{made["url"]}" id="LPNoLP">Book a time with Dana Diaz</a>' in made["content"]
    async with addin_db.read() as conn:
        row = (await conn.execute(select(scheduling_requests).where(scheduling_requests.c.id == made["id"]))).one()
    assert (row.ticket, row.ticket_id, row.single_use, row.guests) == ("", None, False, ["sam@client.test"])
    assert row.created_by == "Outlook: Dana Diaz"
    link = urlsplit(made["url"]).path
    slots = (await (await api.get(f"{link}/slots", params={"start": "2026-11-23", "end": "2026-12-10"})).json())[
        "slots"
    ]
    assert slots
    # Seven days ahead: nothing after 30 November noon UTC.
    assert max(slot["start"] for slot in slots) < "2026-11-30T12:00:00+00:00"
    for index, email in ((0, "jane@client.test"), (2, "lee@client.test")):
        body = {"start": slots[index]["start"], "name": "Client", "email": email, "time_zone": "UTC"}
        booked = await api.post(f"{link}/bookings", json=body)
        assert booked.status == 201, await booked.text()
    async with addin_db.read() as conn:
        made_bookings = (await conn.execute(select(bookings).where(bookings.c.request_id == made["id"]))).all()
    assert sorted(row.client_email for row in made_bookings) == ["jane@client.test", "lee@client.test"]
    assert all(row.guests == ["sam@client.test"] for row in made_bookings)
    assert all(row.ends_at - row.starts_at == timedelta(minutes=60) for row in made_bookings)


async def test_a_single_use_link_into_a_text_body_books_once(api: TestClient, entra: Entra) -> None:
    status, made = await make(api, entra, body_type="text")
    assert status == 201, made
    assert made["single_use"] is True
    assert (
        made["content"]
        == f"Discovery call (30 minutes, Microsoft Teams meeting)\nBook a time with Dana Diaz: {made['url']}\n"
    )
    link = urlsplit(made["url"]).path
    slots = (await (await api.get(f"{link}/slots", params={"start": "2026-11-24", "end": "2026-11-25"})).json())[
        "slots"
    ]
    body = {"name": "Client", "email": "jane@client.test", "time_zone": "UTC"}
    assert (await api.post(f"{link}/bookings", json={**body, "start": slots[0]["start"]})).status == 201
    assert (await api.post(f"{link}/bookings", json={**body, "start": slots[2]["start"]})).status == 410


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"duration_minutes": 45}, "invalid_duration_minutes"),
        ({"duration_minutes": 2}, "invalid_duration_minutes"),
        ({"duration_minutes": "60"}, "invalid_duration_minutes"),
        ({"window_days": 0}, "invalid_window_days"),
        ({"window_days": 1000}, "invalid_window_days"),
        ({"single_use": "yes"}, "invalid_single_use"),
        ({"guests": ["not an address"]}, "invalid_guests"),
        ({"guests": [f"g{n}@client.test" for n in range(11)]}, "invalid_guests"),
        ({"body_type": "rtf"}, "invalid_body_type"),
        ({"type_id": ""}, "invalid_type_id"),
    ],
)
async def test_each_bad_value_is_a_400_naming_it_and_makes_nothing(
    api: TestClient, entra: Entra, addin_db: Database, body: dict[str, Any], code: str
) -> None:
    status, answer = await make(api, entra, **body)
    assert status == 400, answer
    assert answer["error"]["code"] == code
    async with addin_db.read() as conn:
        assert (await conn.execute(select(scheduling_requests.c.id))).first() is None


async def test_only_the_reps_own_types_and_only_when_signed_in(
    api: TestClient, entra: Entra, addin_db: Database
) -> None:
    type_id = await discovery_id(api, entra)
    unsigned = await api.post(LINKS, json={"type_id": type_id, "body_type": "html"})
    assert unsigned.status == 401
    # Maya manages the team but does not host Discovery call.
    maya = entra.token(oid=MAYA, name="Maya Manager", preferred_username="maya@contoso-it.example")
    assert (await make(api, entra, token=maya))[0] == 404
    # Dana of another tenant cannot reach Contoso's type by its id.
    fabrikam = entra.token(tenant=FABRIKAM, oid=FABRIKAM_DANA, preferred_username="dana@fabrikam.example")
    assert (await make(api, entra, token=fabrikam))[0] == 404
    async with addin_db.read() as conn:
        assert (await conn.execute(select(scheduling_requests.c.id))).first() is None
