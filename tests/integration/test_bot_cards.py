"""Cards that help, over real HTTP: the host card keeps the client's answers when its buttons are pressed, lists page
with whole-list counts, a manager of several teams picks one, failures stay within a manager's teams, a reschedule
link goes out once however often it is pressed, and the message extension names the team or the panel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from app import apply_tenant_file
from storage.database import Database
from storage.tables import bookings, workflow_jobs
from tests.conftest import FIXTURES, FixedClock, make_settings, start_client
from tests.fakes.smtp import running_smtp_server
from tests.fakes.teams_connector import FakeTeamsConnector
from tests.integration.test_bot import BOT_SETTINGS, MAYA, activity, execute, say
from workflows.outbox import FAILED
from workflows.steps import host_notification

OMAR = "11111111-aaaa-4aaa-8aaa-000000000004"
ADA = "11111111-aaaa-4aaa-8aaa-000000000005"
DASH = "\u2013"

# The bot's test tenant, plus: an email connection (reschedule links need one; nothing is sent, the workflow
# runner is off), a question on the discovery call, a second team managed by Maya and by Omar alone, an admin,
# and a panel type.
EXTRA_USERS = """
  - slug: omar
    name: Omar Ortiz
    email: omar@contoso-it.example
    aad_object_id: 11111111-aaaa-4aaa-8aaa-000000000004
    time_zone: America/New_York
    primary_calendar: m365
    working_hours: *all-day
  - slug: ada
    name: Ada Admin
    email: ada@contoso-it.example
    aad_object_id: 11111111-aaaa-4aaa-8aaa-000000000005
    role: admin
    time_zone: America/New_York
    primary_calendar: m365
    working_hours: *all-day
teams:
  - slug: support
    name: Support
    members: [omar]
    managers: [maya, omar]
"""
EXTRA_TYPES = """
  - slug: support-call
    name: Support call
    duration: 30
    increment: 30
    minimum_notice: 0 minutes
    maximum_window: 60 days
    location: {kind: phone}
    host: {user: omar}
  - slug: panel-review
    name: Panel review
    duration: 30
    increment: 30
    minimum_notice: 0 minutes
    maximum_window: 60 days
    location: {kind: teams}
    host: {panel: [dana, eli]}
integrations:
  email:
    vendor: smtp
    host: 127.0.0.1
    port: {smtp_port}
    start_tls: false
    username: {smtp_user}
    from_address: bookings@contoso-it.example
    secrets_from_env: {password: CARDS_SMTP_PASSWORD}
"""


def tenant_text() -> str:
    text = (FIXTURES / "teams_tenant.yaml").read_text(encoding="utf-8")
    text = text.replace("teams:\n", EXTRA_USERS.lstrip("\n").split("teams:\n")[0] + "teams:\n", 1)
    text = text.replace(
        "    managers: [maya]\n", "    managers: [maya]\n" + EXTRA_USERS.split("teams:\n")[1].rstrip("\n") + "\n", 1
    )
    text = text.replace(
        "    location: {kind: teams}\n    host: {user: dana}\n",
        "    location: {kind: teams}\n    questions:\n      - {key: phone, label: Phone number, max_length: 40}\n"
        "    host: {user: dana}\n",
        1,
    )
    return text + EXTRA_TYPES


@pytest.fixture
async def cards_bot(
    database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[TestClient, Database]]:
    # Applying a tenant file tests its connections, so the SMTP stand-in answers while it is applied.
    with running_smtp_server() as smtp:
        monkeypatch.setenv("CARDS_SMTP_PASSWORD", smtp.password)
        path = tmp_path / "tenant.yaml"
        path.write_text(tenant_text().replace("{smtp_port}", str(smtp.port)).replace("{smtp_user}", smtp.username))
        await apply_tenant_file(database, make_settings(tmp_path), path, dry_run=False)
    client = await start_client(database, tmp_path, clock, **BOT_SETTINGS)
    yield client, database
    await client.close()


@pytest.fixture
async def connector() -> AsyncIterator[FakeTeamsConnector]:
    fake = FakeTeamsConnector()
    await fake.start()
    yield fake
    await fake.close()


async def book(bot: TestClient, type_slug: str, start: str, *, name: str = "Casey Client", **extra: Any) -> str:
    response = await bot.post(
        f"/book/contoso/{type_slug}/bookings",
        json={"start": start, "name": name, "email": "casey@client.example", "time_zone": "Europe/London", **extra},
    )
    assert response.status == 201, await response.text()
    return str((await response.json())["id"])


def texts(card: dict[str, Any]) -> str:
    return json.dumps(card, ensure_ascii=False)


def executes(card: dict[str, Any], verb: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "Action.Execute" and node.get("verb") == verb:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(card)
    return found


async def reschedule_jobs(database: Database, booking_id: str) -> int:
    async with database.read() as conn:
        rows = (
            await conn.execute(
                select(workflow_jobs.c.id).where(
                    workflow_jobs.c.booking_id == booking_id,
                    workflow_jobs.c.run_key.like(f"{booking_id}:reschedule_requested:%"),
                )
            )
        ).all()
    return len(rows)


async def test_the_host_card_labels_answers_and_its_buttons_keep_them_in_the_chat(
    cards_bot: tuple[TestClient, Database], connector: FakeTeamsConnector
) -> None:
    bot, database = cards_bot
    booking_id = await book(bot, "discovery", "2026-11-24T15:00:00+00:00", answers={"phone": "+1 555 0100"})
    # What the notify_host step sends: the answer under its question's label, not its key.
    async with database.read() as conn:
        payload = (
            await conn.execute(
                select(workflow_jobs.c.payload).where(
                    workflow_jobs.c.booking_id == booking_id, workflow_jobs.c.kind == "notify_host"
                )
            )
        ).scalar_one()
    notification = host_notification(payload["booking"], {}, "client_scheduled")
    assert notification.answers == (("Phone number", "+1 555 0100"),)

    event = {"bookingId": booking_id, "card": "event", "change": "booked", "ticket": "T-42"}
    status, body = await execute(bot, connector, "sendRescheduleLink", event)
    assert status == 200
    card = body["value"]
    assert card["body"][0]["text"] == "New booking: Discovery call with Casey Client"
    facts = {fact["title"]: fact["value"] for fact in card["body"][2]["facts"]}
    assert facts["Phone number"] == r"\+1 555 0100", "escaped: a leading + would start a markdown list"
    assert facts["Ticket"] == "#T-42"
    assert "Sent Casey Client a link to pick a new time" in texts(card)
    (sent,) = executes(card, "sendRescheduleLink")
    assert (sent["title"], sent["isEnabled"]) == ("Reschedule link sent", False)
    assert await reschedule_jobs(database, booking_id) == 1
    # The card answered in place still opens the booking's host page (made afresh, not taken from the action data).
    opens = [action for item in card["body"] if item.get("type") == "ActionSet" for action in item["actions"]]
    assert [action["title"] for action in opens] == ["Open booking"]
    page = await bot.get(urlsplit(opens[0]["url"]).path)
    assert page.status == 200
    assert "+1 555 0100" in await page.text()

    # Pressed again (an old copy of the card, or from the upcoming list): nothing more goes to the client.
    status, body = await execute(bot, connector, "sendRescheduleLink", event)
    assert "already went to Casey Client" in texts(body["value"])
    assert "555 0100" in texts(body["value"])
    status, body = await execute(bot, connector, "sendRescheduleLink", {"bookingId": booking_id})
    assert "already went to Casey Client" in texts(body["value"])
    (on_list,) = executes(body["value"], "sendRescheduleLink")
    assert on_list["title"] == "Reschedule link sent"
    assert await reschedule_jobs(database, booking_id) == 1
    # And a fresh list says so too.
    _status, body = await execute(bot, connector, "refreshUpcoming", {})
    assert [action["title"] for action in executes(body["value"], "sendRescheduleLink")] == ["Reschedule link sent"]

    # Cancel from the host card: the answer is the host card, cancelled, with the phone number still on it.
    status, body = await execute(
        bot, connector, "cancelBooking", {**event, f"reason_{booking_id}": "Client asked by phone"}
    )
    card = body["value"]
    assert card["body"][0]["text"] == "Cancelled: Discovery call with Casey Client"
    assert "555 0100" in texts(card)
    assert "Client asked by phone" in texts(card)
    assert not executes(card, "cancelBooking")
    async with database.read() as conn:
        status_now = (await conn.execute(select(bookings.c.status).where(bookings.c.id == booking_id))).scalar_one()
    assert status_now == "cancelled"


async def test_two_app_processes_pressing_send_reschedule_link_at_once_queue_one_email(
    cards_bot: tuple[TestClient, Database], connector: FakeTeamsConnector, tmp_path: Path, clock: FixedClock
) -> None:
    bot, database = cards_bot
    booking_id = await book(bot, "discovery", "2026-11-24T15:00:00+00:00")
    # A second app process: its own engine and connection pool on the same database.
    other_database = Database(database.url)
    other = await start_client(other_database, tmp_path, clock, **BOT_SETTINGS)
    try:
        event = {"bookingId": booking_id, "card": "event", "change": "booked"}
        answers = await asyncio.gather(
            *(execute(app, connector, "sendRescheduleLink", event) for app in (bot, other, bot, other))
        )
        said = [texts(body["value"]) for _status, body in answers]
        assert sum("Sent Casey Client a link to pick a new time" in text for text in said) == 1, said
        assert sum("already went to Casey Client" in text for text in said) == 3, said
        assert await reschedule_jobs(database, booking_id) == 1
    finally:
        await other.close()
        await other_database.dispose()


async def test_upcoming_pages_through_every_booking_with_the_right_count(
    cards_bot: tuple[TestClient, Database], connector: FakeTeamsConnector
) -> None:
    bot, _database = cards_bot
    for n in range(23):
        await book(bot, "discovery", f"2026-11-{24 + n // 10}T{10 + n % 10:02d}:00:00+00:00", name=f"Client {n:02d}")
    first = await say(bot, connector, "upcoming")
    assert f"Showing 1{DASH}10 of 23" in texts(first)
    assert "and 1 more" not in texts(first)
    (more,) = [action for action in executes(first, "refreshUpcoming") if action["title"] == "Show more"]
    assert more["data"] == {"offset": 10}
    _status, body = await execute(bot, connector, "refreshUpcoming", more["data"])
    second = body["value"]
    assert f"Showing 11{DASH}20 of 23" in texts(second)
    assert "Client 10" in texts(second)
    assert "Client 09" not in texts(second)
    _status, body = await execute(bot, connector, "refreshUpcoming", {"offset": 20})
    last = body["value"]
    assert f"Showing 21{DASH}23 of 23" in texts(last)
    assert [action["title"] for action in executes(last, "refreshUpcoming")] == ["Refresh"]
    # A forged offset is read as a number within bounds, never an error.
    status, body = await execute(bot, connector, "refreshUpcoming", {"offset": "-5; drop"})
    assert status == 200
    assert f"Showing 1{DASH}10 of 23" in texts(body["value"])


async def test_a_manager_of_two_teams_picks_one_and_pages_through_it(
    cards_bot: tuple[TestClient, Database], connector: FakeTeamsConnector
) -> None:
    bot, _database = cards_bot
    for n in range(17):
        await book(bot, "onsite-audit", f"2026-11-{24 + n // 8}T{10 + n % 8:02d}:00:00+00:00", name=f"Sales {n:02d}")
    await book(bot, "support-call", "2026-11-24T15:00:00+00:00", name="Support Client")
    maya = {"aad": MAYA, "conversation": "a:1maya"}
    card = await say(bot, connector, "team bookings", **maya)
    assert "Sales: upcoming bookings" in texts(card)
    assert f"Showing 1{DASH}15 of 17" in texts(card)
    picker = next(node for node in card["body"][2]["items"] if node.get("id") == "team")
    by_name = {choice["title"]: choice["value"] for choice in picker["choices"]}
    assert set(by_name) == {"Sales", "Support"}
    (more,) = [action for action in executes(card, "filterTeam") if action["title"] == "Show more"]
    _status, body = await execute(bot, connector, "filterTeam", {**more["data"], "team": by_name["Sales"]}, **maya)
    assert f"Showing 16{DASH}17 of 17" in texts(body["value"])
    # Picking Support and pressing Filter shows Support from its first booking.
    _status, body = await execute(
        bot, connector, "filterTeam", {"teamId": by_name["Sales"], "team": by_name["Support"], "offset": 15}, **maya
    )
    support = texts(body["value"])
    assert "Support: upcoming bookings" in support
    assert "Support Client" in support
    assert "Sales 00" not in support
    # Omar manages only Support: no picker, and Sales cannot be asked for.
    omar = {"aad": OMAR, "conversation": "a:1omar"}
    _status, body = await execute(bot, connector, "filterTeam", {"team": by_name["Sales"]}, **omar)
    assert "Support: upcoming bookings" in texts(body["value"])
    assert '"id": "team"' not in texts(body["value"])


async def test_failures_show_only_the_managers_teams_and_admins_see_all(
    cards_bot: tuple[TestClient, Database], connector: FakeTeamsConnector
) -> None:
    bot, database = cards_bot
    sales_booking = await book(bot, "discovery", "2026-11-24T16:00:00+00:00", name="Sales Failure")
    async with database.write() as conn:
        await conn.execute(
            workflow_jobs.update()
            .where(workflow_jobs.c.booking_id == sales_booking)
            .values(state=FAILED, last_error="Teams answered 403", attempts=10)
        )
        job_id = (
            await conn.execute(select(workflow_jobs.c.id).where(workflow_jobs.c.booking_id == sales_booking))
        ).scalar()
    omar = {"aad": OMAR, "conversation": "a:1omar"}
    assert "Sales Failure" not in texts(await say(bot, connector, "failures", **omar))
    assert "Sales Failure" in texts(await say(bot, connector, "failures", aad=MAYA, conversation="a:1maya"))
    assert "Sales Failure" in texts(await say(bot, connector, "failures", aad=ADA, conversation="a:1ada"))
    # Nor can Omar retry it by putting its id into a card.
    _status, body = await execute(bot, connector, "retryStep", {"jobId": str(job_id)}, **omar)
    assert "Retrying now" not in texts(body["value"])
    async with database.read() as conn:
        state = (await conn.execute(select(workflow_jobs.c.state).where(workflow_jobs.c.id == job_id))).scalar_one()
    assert state == FAILED


async def test_the_message_extension_names_the_team_or_the_panel(
    cards_bot: tuple[TestClient, Database], connector: FakeTeamsConnector
) -> None:
    bot, _database = cards_bot

    async def headings(query: str) -> list[str]:
        value = {"commandId": "bookingLinks", "parameters": [{"name": "typeName", "value": query}]}
        response = await bot.post(
            "/api/messages", json=activity(connector, kind="invoke", name="composeExtension/query", value=value)
        )
        result = (await response.json())["composeExtension"]
        return [attachment["content"]["body"][0]["text"] for attachment in result["attachments"]]

    assert await headings("onsite") == ["Book time with the Sales team"]
    assert await headings("panel") == ["Book time with Dana Diaz and Eli Evans"]
    assert await headings("discovery") == ["Book time with Dana Diaz"]
