"""The Teams bot in the real Teams client emulator (Microsoft 365 Agents Playground), driven through its UI with
Playwright and Debian's chromium: the rep asks for links, sees the card, and cancels a booking from a card."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import expect
from sqlalchemy import select

from storage.database import Database
from storage.tables import bookings
from tests.conftest import FIXTURES, FixedClock, apply_file, start_client
from tests.e2e.playground import (
    PlaygroundIdentity,
    PlaygroundUser,
    click_card_button,
    count_cards,
    fill_card_input,
    launched_chromium,
    open_chat,
    running_playground,
    send_message,
    wait_for_card,
)

pytestmark = pytest.mark.browser

MS_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
DANA = PlaygroundUser("11111111-aaaa-4aaa-8aaa-000000000001", "Dana Diaz", "dana@contoso-it.example")


@pytest.fixture
async def bot(sqlite_database: Database, tmp_path: Path, clock: FixedClock) -> AsyncIterator[TestClient]:
    await apply_file(sqlite_database, FIXTURES / "teams_tenant.yaml")
    client = await start_client(
        sqlite_database,
        tmp_path,
        clock,
        bot_allow_anonymous=True,
        bot_allow_http_loopback=True,
        bot_allowed_service_hosts=["127.0.0.1", "localhost"],
    )
    yield client
    await client.close()


async def test_a_rep_gets_links_and_cancels_a_booking_from_a_card(bot: TestClient, sqlite_database: Database) -> None:
    booked = await bot.post(
        "/book/contoso/discovery/bookings",
        json={
            "start": "2026-11-24T15:00:00+00:00",
            "name": "Casey Client",
            "email": "casey@client.example",
            "time_zone": "Europe/London",
        },
    )
    assert booked.status == 201, await booked.text()
    endpoint = str(bot.make_url("/api/messages"))
    identity = PlaygroundIdentity(tenant_id=MS_TENANT, user=DANA)
    async with (
        running_playground(endpoint, identity=identity, timezone="America/Los_Angeles") as playground,
        launched_chromium() as browser,
    ):
        page = await open_chat(browser, playground)
        await wait_for_card(page, "Dana Diaz", timeout_s=20)

        before = await count_cards(page)
        await send_message(page, "my appointment types")
        links = await wait_for_card(page, "Discovery call", after=before, timeout_s=20)
        await expect(links).to_contain_text("http://testserver/book/contoso/discovery")
        await expect(links).to_contain_text("Onsite audit")

        before = await count_cards(page)
        await send_message(page, "upcoming")
        upcoming = await wait_for_card(page, "Casey Client", after=before, timeout_s=20)
        # 15:00 UTC, shown in the zone and on the clock (en-US: 12-hour) the Teams client reported (Los Angeles).
        await expect(upcoming).to_contain_text("7:00\u202fAM")
        await click_card_button(upcoming, "Cancel…")
        await fill_card_input(upcoming, "Reason (sent to the client)", "Travelling that day")
        await click_card_button(upcoming, "Cancel booking")
        # Action.Execute: the bot's invoke response replaces the card in place.
        await expect(upcoming).to_contain_text("Cancelled", timeout=20_000)
        await expect(upcoming).to_contain_text("No upcoming bookings")
        invokes = [
            activity for activity in playground.activities_to_bot() if activity.get("name") == "adaptiveCard/action"
        ]
        assert invokes, playground.describe()
        assert invokes[-1]["value"]["action"]["verb"] == "cancelBooking"
    async with sqlite_database.read() as conn:
        status, reason = (await conn.execute(select(bookings.c.status, bookings.c.cancel_reason))).one()
    assert (status, reason) == ("cancelled", "Travelling that day")
