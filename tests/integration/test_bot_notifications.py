"""The host's Teams card as a workflow step, end to end against the Teams connector stand-in: Teams' per-chat throttle,
429 with Retry-After, a 5xx and a 401 each end the way a host and an admin would expect."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from storage.database import Database
from storage.tables import workflow_jobs
from tests.conftest import FixedClock, start_client
from tests.fakes.teams_connector import FakeTeamsConnector
from tests.integration.test_bot import BOT_SETTINGS, bot_db, connector, say

__all__ = ["bot_db", "connector"]  # fixtures shared with the bot tests


DANA_CHAT = "a:1dana-personal"


async def notify_steps(database: Database) -> list[Any]:
    async with database.read() as conn:
        return list(
            (
                await conn.execute(
                    select(
                        workflow_jobs.c.booking_id,
                        workflow_jobs.c.state,
                        workflow_jobs.c.attempts,
                        workflow_jobs.c.last_error,
                    ).where(workflow_jobs.c.kind == "notify_host")
                )
            ).all()
        )


async def until(database: Database, check: Any, seconds: float = 30) -> list[Any]:
    deadline = time.monotonic() + seconds
    while True:
        steps = await notify_steps(database)
        if check(steps):
            return steps
        assert time.monotonic() < deadline, steps
        await asyncio.sleep(0.1)


async def book_at(client: Any, start: str, email: str) -> str:
    response = await client.post(
        "/book/contoso/discovery/bookings",
        json={"start": start, "name": "Casey Client", "email": email, "time_zone": "UTC"},
    )
    assert response.status == 201, await response.text()
    return str((await response.json())["id"])


async def test_a_burst_of_bookings_reaches_the_hosts_chat_within_teams_per_chat_limits(
    bot_db: Database, tmp_path: Path, clock: FixedClock, connector: FakeTeamsConnector
) -> None:
    client = await start_client(bot_db, tmp_path, clock, run_workflows=True, **BOT_SETTINGS)
    try:
        await say(client, connector, "hi")
        before = len(connector.cards(conversation_id=DANA_CHAT))
        for index in range(10):
            await book_at(client, f"2026-11-{24 + index // 5}T{14 + index % 5}:00:00+00:00", f"c{index}@x.example")
        steps = await until(bot_db, lambda rows: len(rows) == 10 and all(row.state == "completed" for row in rows))
        assert len(connector.cards(conversation_id=DANA_CHAT)) == before + 10
        # Ten sends in a burst break 7 per second and 8 per 2 s unless paced; a refused send is retried after
        # Retry-After, and none is refused twice for the same window.
        assert len(connector.rejections) <= len(steps)
    finally:
        await client.close()


async def test_a_throttled_or_failing_connector_delays_the_card_and_it_still_arrives_once(
    bot_db: Database, tmp_path: Path, clock: FixedClock, connector: FakeTeamsConnector
) -> None:
    client = await start_client(bot_db, tmp_path, clock, run_workflows=True, **BOT_SETTINGS)
    try:
        await say(client, connector, "hi")
        before = len(connector.cards(conversation_id=DANA_CHAT))
        connector.fail_next(429, retry_after=1)
        connector.fail_next(503)
        started = time.monotonic()
        await book_at(client, "2026-11-24T14:00:00+00:00", "throttled@x.example")
        [step] = await until(bot_db, lambda rows: rows and rows[0].state == "completed")
        assert step.attempts >= 2
        assert time.monotonic() - started >= 1, "Retry-After was not honoured"
        assert len(connector.cards(conversation_id=DANA_CHAT)) == before + 1
        # A proactive card is news, not a reply: it carries no replyToId at all (the Teams client emulator refuses
        # `"replyToId": null` with a 400).
        sends = [
            entry for entry in connector.request_log if entry.method == "POST" and entry.path.endswith("/activities")
        ]
        assert sends
        for entry in sends:
            assert "replyToId" not in json.loads(entry.body), entry.body[:300]
    finally:
        await client.close()


async def test_a_connector_that_refuses_our_credentials_fails_the_step_visibly_and_sends_nothing(
    bot_db: Database, tmp_path: Path, clock: FixedClock, connector: FakeTeamsConnector
) -> None:
    client = await start_client(bot_db, tmp_path, clock, run_workflows=True, **BOT_SETTINGS)
    try:
        await say(client, connector, "hi")
        before = len(connector.cards(conversation_id=DANA_CHAT))
        connector.fail_next(401, count=50)
        await book_at(client, "2026-11-24T14:00:00+00:00", "refused@x.example")
        [step] = await until(bot_db, lambda rows: rows and rows[0].state == "failed")
        assert "401" in step.last_error or "credential" in step.last_error.lower(), step.last_error
        assert len(connector.cards(conversation_id=DANA_CHAT)) == before
    finally:
        await client.close()


async def test_the_hosts_card_opens_the_booking_page_with_the_clients_answers(
    bot_db: Database, tmp_path: Path, clock: FixedClock, connector: FakeTeamsConnector
) -> None:
    client = await start_client(bot_db, tmp_path, clock, run_workflows=True, **BOT_SETTINGS)
    try:
        await say(client, connector, "hi")
        before = len(connector.cards(conversation_id=DANA_CHAT))
        await book_at(client, "2026-11-24T14:00:00+00:00", "casey@x.example")
        await until(bot_db, lambda rows: len(rows) == 1 and rows[0].state == "completed")
        card = connector.cards(conversation_id=DANA_CHAT)[before]
        text = json.dumps(card)
        assert "Open booking" in text
        opens = [
            action
            for item in card["body"]
            if item.get("type") == "ActionSet"
            for action in item["actions"]
            if action["title"] == "Open booking"
        ]
        assert len(opens) == 1
        page = await client.get(urlsplit(opens[0]["url"]).path)
        assert page.status == 200
        body = await page.text()
        assert "Casey Client" in body
        assert "casey@x.example" in body
    finally:
        await client.close()
