"""The Teams bot over real HTTP: Teams-shaped activities into /api/messages, cards out at the connector stand-in."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from admin.tenant_file import RolloutError
from admin.tenant_yaml import parse_tenant_text
from storage.database import Database
from storage.tables import bookings, teams_conversations, workflow_jobs
from tests.conftest import FIXTURES, FixedClock, apply_file, start_client
from tests.fakes.bot_identity import BOT_APP_ID, CHANNEL_METADATA_PATH, FakeBotIdentity, channel_claims, mint
from tests.fakes.bot_identity import TENANT_ID as BOT_TENANT
from tests.fakes.graph import FakeGraphServer, serve_fake_graph
from tests.fakes.teams_connector import FakeTeamsConnector
from workflows.outbox import FAILED, retry_job

MS_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_MS_TENANT = "0b0b0b0b-1111-4222-8333-444444444444"
DANA = "11111111-aaaa-4aaa-8aaa-000000000001"
MAYA = "11111111-aaaa-4aaa-8aaa-000000000003"
STRANGER = "99999999-9999-4999-8999-999999999999"
BOT_SETTINGS: dict[str, object] = {
    "bot_allow_anonymous": True,
    "bot_allow_http_loopback": True,
    "bot_allowed_service_hosts": ["127.0.0.1", "localhost"],
}


@pytest.fixture
async def connector() -> AsyncIterator[FakeTeamsConnector]:
    fake = FakeTeamsConnector()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def bot_db(database: Database) -> Database:
    await apply_file(database, FIXTURES / "teams_tenant.yaml")
    await apply_file(database, FIXTURES / "teams_other_tenant.yaml")
    return database


@pytest.fixture
async def bot(bot_db: Database, tmp_path: Path, clock: FixedClock) -> AsyncIterator[TestClient]:
    client = await start_client(bot_db, tmp_path, clock, **BOT_SETTINGS)
    yield client
    await client.close()


_ids = iter(range(1, 10**9))


def activity(
    connector: FakeTeamsConnector,
    *,
    text: str | None = None,
    kind: str = "message",
    aad: str | None = DANA,
    tenant: str = MS_TENANT,
    conversation: str = "a:1dana-personal",
    conversation_type: str = "personal",
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": kind,
        "id": f"act-{next(_ids)}",
        "timestamp": datetime.now(UTC).isoformat(),
        "channelId": "msteams",
        "serviceUrl": connector.service_url,
        "from": {"id": f"29:{aad or 'unknown'}", "name": "Someone", **({"aadObjectId": aad} if aad else {})},
        "recipient": {"id": "28:slotwise-bot", "name": "Slotwise"},
        "conversation": {"id": conversation, "conversationType": conversation_type, "tenantId": tenant},
        "channelData": {"tenant": {"id": tenant}},
        "entities": [{"type": "clientInfo", "locale": "en-US", "timezone": "America/Los_Angeles"}],
        "locale": "en-US",
    }
    if text is not None:
        body["text"] = text
    body.update(extra)
    return body


def card_text(card: dict[str, Any]) -> str:
    return json.dumps(card)


async def say(bot: TestClient, connector: FakeTeamsConnector, text: str, **kwargs: Any) -> dict[str, Any]:
    before = len(connector.cards())
    response = await bot.post("/api/messages", json=activity(connector, text=text, **kwargs))
    assert response.status in (200, 201, 202), await response.text()
    await connector.wait_for(before + 1, timeout=5)
    return connector.cards()[-1]


async def execute(
    bot: TestClient, connector: FakeTeamsConnector, verb: str, data: dict[str, Any], **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    value = {"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": "manual"}
    started = time.perf_counter()
    response = await bot.post(
        "/api/messages", json=activity(connector, kind="invoke", name="adaptiveCard/action", value=value, **kwargs)
    )
    assert time.perf_counter() - started < 5, "Teams gives an invoke 5 seconds"
    return response.status, await response.json()


async def book(bot: TestClient, start: str, name: str = "Casey <Client>") -> str:
    response = await bot.post(
        "/book/contoso/discovery/bookings",
        json={"start": start, "name": name, "email": "casey@client.example", "time_zone": "Europe/London"},
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    MANAGE[str(body["id"])] = str(body["manage_url"]).replace("http://testserver", "")
    return str(body["id"])


MANAGE: dict[str, str] = {}


async def test_install_greets_with_what_a_rep_can_ask(bot: TestClient, connector: FakeTeamsConnector) -> None:
    body = activity(
        connector,
        kind="conversationUpdate",
        membersAdded=[{"id": "28:slotwise-bot"}, {"id": f"29:{DANA}", "aadObjectId": DANA}],
    )
    response = await bot.post("/api/messages", json=body)
    assert response.status in (200, 201, 202)
    card = (await connector.wait_for(1))[-1].cards[0]
    text = card_text(card)
    assert "Dana Diaz" in text
    for command in ("links", "upcoming", "page", "help"):
        assert command in text.lower()
    assert "Team bookings" not in text, "a rep who manages no team is not offered the manager commands"


@pytest.mark.parametrize("phrase", ["links", "my appointment types", "Show me my booking links please", "LINKS?"])
async def test_links_lists_the_reps_types_with_their_urls(
    bot: TestClient, connector: FakeTeamsConnector, phrase: str
) -> None:
    card = await say(bot, connector, phrase)
    text = card_text(card)
    assert "Discovery call" in text
    assert "http://testserver/book/contoso/discovery" in text
    assert "Onsite audit" in text, "team types the rep takes part in are listed too"
    assert "http://testserver/u/contoso/dana" in text
    assert "Fabrikam" not in text


async def test_replies_reuse_one_connection_to_teams(bot: TestClient, connector: FakeTeamsConnector) -> None:
    """The SDK's stock factory opens a new connection (and, against Teams, a new TLS handshake) for every reply."""
    for number in range(5):
        assert "Discovery call" in card_text(await say(bot, connector, "links", conversation=f"a:1reuse{number}"))
    replies = [entry for entry in connector.request_log if entry.method == "POST"]
    assert len(replies) == 5
    assert len({entry.peer for entry in replies}) == 1, [entry.peer for entry in replies]


async def test_page_and_help_and_unknown(bot: TestClient, connector: FakeTeamsConnector) -> None:
    assert "http://testserver/u/contoso/dana" in card_text(await say(bot, connector, "my personal page"))
    assert "upcoming" in card_text(await say(bot, connector, "help")).lower()
    assert "didn't catch that" in card_text(await say(bot, connector, "purple elephants"))


async def test_unknown_users_get_a_not_set_up_card_and_nobody_elses_data(
    bot: TestClient, connector: FakeTeamsConnector
) -> None:
    card = card_text(await say(bot, connector, "links", aad=STRANGER, conversation="a:1stranger"))
    assert "not set up in Slotwise" in card
    assert "Discovery" not in card
    # Dana's own object id, but from another customer's Microsoft 365 tenant: still nobody.
    card = card_text(await say(bot, connector, "links", tenant=OTHER_MS_TENANT, conversation="a:1x"))
    assert "not set up in Slotwise" in card
    assert "Discovery" not in card
    assert "Fabrikam secret" not in card


async def test_a_user_without_an_object_id_is_found_by_email(
    bot: TestClient, connector: FakeTeamsConnector, bot_db: Database
) -> None:
    connector.register_conversation(
        "a:1eli", members=[{"id": "29:eli", "name": "Eli Evans", "email": "eli@contoso-it.example"}]
    )
    card = card_text(await say(bot, connector, "links", aad=None, conversation="a:1eli", **{"from": {"id": "29:eli"}}))
    assert "Onsite audit" in card, card


async def test_upcoming_shows_bookings_in_the_teams_zone_and_cancel_refreshes_the_card(
    bot: TestClient, connector: FakeTeamsConnector, bot_db: Database
) -> None:
    booking_id = await book(bot, "2026-11-24T15:00:00+00:00")
    card = card_text(await say(bot, connector, "what's coming up?"))
    assert "Casey" in card
    assert "Discovery call" in card
    # 15:00 UTC in the zone Teams reported (Los Angeles), on the 12-hour clock of the locale it reported (en-US).
    assert "7:00\\u202fAM" in card, card  # json.dumps writes the narrow no-break space CLDR puts before AM
    german = card_text(
        await say(
            bot,
            connector,
            "what's coming up?",
            locale="de-DE",
            entities=[{"type": "clientInfo", "locale": "de-DE", "timezone": "America/Los_Angeles"}],
        )
    )
    assert "Di., 24. Nov., 07:00" in german, german
    status, body = await execute(
        bot, connector, "cancelBooking", {"bookingId": booking_id, f"reason_{booking_id}": "Double-booked, sorry"}
    )
    assert status == 200
    assert body["statusCode"] == 200
    assert body["type"] == "application/vnd.microsoft.card.adaptive"
    refreshed = card_text(body["value"])
    assert "Cancelled" in refreshed
    assert "No upcoming bookings" in refreshed

    async def status_of() -> tuple[str, str]:
        async with bot_db.read() as conn:
            row = (await conn.execute(select(bookings.c.status, bookings.c.cancel_reason))).one()
            return row.status, row.cancel_reason

    assert await status_of() == ("cancelled", "Double-booked, sorry")


async def test_card_actions_cannot_reach_someone_elses_booking(
    bot: TestClient, connector: FakeTeamsConnector, bot_db: Database
) -> None:
    booking_id = await book(bot, "2026-11-24T16:00:00+00:00")
    # A user of another customer (their own Microsoft 365 tenant, their own Slotwise tenant) who puts this
    # booking's id into a card action finds nothing, and the booking stays confirmed.
    status, body = await execute(
        bot,
        connector,
        "cancelBooking",
        {"bookingId": booking_id},
        aad="22222222-bbbb-4bbb-8bbb-000000000001",
        tenant=OTHER_MS_TENANT,
        conversation="a:1fab",
    )
    assert status == 200
    assert "couldn't find that booking" in card_text(body["value"]) or "Nothing was cancelled" in card_text(
        body["value"]
    )
    async with bot_db.read() as conn:
        assert (await conn.execute(select(bookings.c.status))).scalar_one() == "confirmed"


async def test_reschedule_link_without_email_says_so_and_gives_the_link(
    bot: TestClient, connector: FakeTeamsConnector
) -> None:
    booking_id = await book(bot, "2026-11-24T17:00:00+00:00")
    status, body = await execute(bot, connector, "sendRescheduleLink", {"bookingId": booking_id})
    assert status == 200
    text = card_text(body["value"])
    assert "no email connection" in text
    assert "http://testserver/m/" in text


async def test_team_and_failures_are_for_managers(
    bot: TestClient, connector: FakeTeamsConnector, bot_db: Database
) -> None:
    await book(bot, "2026-11-24T18:00:00+00:00", name="Team Client")
    refusal = card_text(await say(bot, connector, "team"))
    assert "only shown to team managers" in refusal
    assert "only shown to team managers" in card_text(await say(bot, connector, "failures"))
    team = card_text(await say(bot, connector, "team bookings", aad=MAYA, conversation="a:1maya"))
    assert "Sales" in team
    assert "Team Client" in team
    assert "Dana Diaz" in team
    status, body = await execute(
        bot,
        connector,
        "filterTeam",
        {"teamId": "nope", "member": "*", "day": "2026-11-25"},
        aad=MAYA,
        conversation="a:1maya",
    )
    assert status == 200
    assert "Team Client" not in card_text(body["value"]), "nothing is booked on the 25th"


async def test_failures_list_and_retry(bot: TestClient, connector: FakeTeamsConnector, bot_db: Database) -> None:
    booking_id = await book(bot, "2026-11-24T19:00:00+00:00")
    async with bot_db.write() as conn:
        await conn.execute(
            workflow_jobs.update()
            .where(workflow_jobs.c.booking_id == booking_id)
            .values(state=FAILED, last_error="ConnectWise said: Board 'Sales' not found", attempts=10)
        )
        job_id = (
            await conn.execute(select(workflow_jobs.c.id).where(workflow_jobs.c.booking_id == booking_id))
        ).scalar()
    assert job_id is not None, "a teams-connected tenant plans the notify_host step for every booking"
    card = card_text(await say(bot, connector, "what failed?", aad=MAYA, conversation="a:1maya"))
    assert "Board" in card
    assert "Retry" in card
    status, body = await execute(bot, connector, "retryStep", {"jobId": str(job_id)}, aad=MAYA, conversation="a:1maya")
    assert status == 200
    assert "Retrying now" in card_text(body["value"])
    async with bot_db.read() as conn:
        state = (await conn.execute(select(workflow_jobs.c.state).where(workflow_jobs.c.id == job_id))).scalar_one()
    assert state != FAILED
    # A rep cannot retry, even with a valid job id.
    status, body = await execute(bot, connector, "retryStep", {"jobId": str(job_id)})
    assert "only shown to team managers" in card_text(body["value"])


async def test_message_extension_returns_booking_link_cards(bot: TestClient, connector: FakeTeamsConnector) -> None:
    value = {"commandId": "bookingLinks", "parameters": [{"name": "typeName", "value": "disco"}]}
    response = await bot.post(
        "/api/messages", json=activity(connector, kind="invoke", name="composeExtension/query", value=value)
    )
    assert response.status == 200
    result = (await response.json())["composeExtension"]
    assert result["type"] == "result"
    assert len(result["attachments"]) == 1
    attachment = result["attachments"][0]
    assert "http://testserver/book/contoso/discovery" in json.dumps(attachment["content"])
    assert attachment["preview"]["contentType"] == "application/vnd.microsoft.card.thumbnail"
    unknown = await bot.post(
        "/api/messages",
        json=activity(connector, kind="invoke", name="composeExtension/query", value=value, aad=STRANGER),
    )
    assert (await unknown.json())["composeExtension"]["type"] == "message"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[]", 400),
        (b'{"type": "message"}', 400),
        (b'{"type": "message", "conversation": {"id": "a:1"}}', 400),
        (b'{"type": 5, "conversation": {"id": "a:1"}, "serviceUrl": "http://127.0.0.1:1/"}', 400),
    ],
)
async def test_malformed_activities_get_a_clean_400(bot: TestClient, body: bytes, status: int) -> None:
    response = await bot.post("/api/messages", data=body, headers={"Content-Type": "application/json"})
    assert response.status == status
    assert (await response.json())["error"]["message"]


async def test_unknown_invokes_oversized_bodies_and_long_text(bot: TestClient, connector: FakeTeamsConnector) -> None:
    response = await bot.post(
        "/api/messages", json=activity(connector, kind="invoke", name="task/fetch", value={"data": {}})
    )
    assert response.status == 400
    response = await bot.post(
        "/api/messages", json=activity(connector, kind="invoke", name="adaptiveCard/action", value={"action": 5})
    )
    assert 400 <= response.status < 500
    response = await bot.post(
        "/api/messages", json=activity(connector, kind="invoke", name="composeExtension/query", value=[1, 2])
    )
    assert 400 <= response.status < 500
    huge = activity(connector, text="x" * 300_000)
    response = await bot.post("/api/messages", json=huge)
    assert response.status == 413
    card = card_text(await say(bot, connector, "links " * 1000))
    assert "too long" in card


async def test_service_urls_outside_the_allow_list_are_refused(
    bot_db: Database, tmp_path: Path, clock: FixedClock, connector: FakeTeamsConnector
) -> None:
    client = await start_client(
        bot_db, tmp_path, clock, bot_allow_anonymous=True, bot_allowed_service_hosts=["smba.trafficmanager.net"]
    )
    try:
        response = await client.post("/api/messages", json=activity(connector, text="links"))
        assert response.status in (401, 403)
        await asyncio.sleep(0.2)
        assert connector.cards() == []
    finally:
        await client.close()


async def test_replies_stay_inside_teams_limits_for_one_conversation(
    bot: TestClient, connector: FakeTeamsConnector
) -> None:
    """Ten quick messages in one chat: every reply arrives, and Teams never had to refuse one (7 per second)."""
    for _ in range(10):
        response = await bot.post("/api/messages", json=activity(connector, text="help", conversation="a:1burst"))
        assert response.status in (200, 201, 202)
    await connector.wait_for(10, timeout=10, conversation_id="a:1burst")
    assert connector.rejections == []


async def test_without_a_bot_registration_there_is_no_endpoint(
    bot_db: Database, tmp_path: Path, clock: FixedClock
) -> None:
    client = await start_client(bot_db, tmp_path, clock)
    try:
        assert (await client.post("/api/messages", json={})).status in (404, 405)
    finally:
        await client.close()


async def test_hosts_get_a_proactive_card_when_a_client_books_and_cancels(
    bot_db: Database, tmp_path: Path, clock: FixedClock, connector: FakeTeamsConnector
) -> None:
    client = await start_client(bot_db, tmp_path, clock, run_workflows=True, **BOT_SETTINGS)
    try:
        await say(client, connector, "hi")  # Dana opens her personal chat: the reference is stored
        async with bot_db.read() as conn:
            stored = (await conn.execute(select(teams_conversations.c.conversation_id))).scalars().all()
        assert stored == ["a:1dana-personal"]
        before = len(connector.cards())
        booking_id = await book(client, "2026-11-24T20:00:00+00:00", name="Proactive Client")
        found = await connector.wait_for(before + 1, timeout=15, conversation_id="a:1dana-personal")
        card = card_text(found[-1].cards[0])
        assert "Proactive Client" in card
        assert "Discovery call" in card
        assert found[-1].operation == "send", "a proactive card starts a new message, it is not a reply"
        output = await _finished_notify_step(bot_db, booking_id)
        assert any(key.startswith("teams_activity:") for key in output)
        # The client moves it by an hour through their manage link: Dana sees the new time and the old one.
        manage = MANAGE[booking_id]
        response = await client.post(f"{manage}/reschedule", json={"start": "2026-11-24T21:00:00+00:00"})
        assert response.status == 200, await response.text()
        found = await connector.wait_for(before + 2, timeout=15, conversation_id="a:1dana-personal")
        moved = found[-1].cards[0]
        assert "Rescheduled" in card_text(moved)
        struck = [
            run["text"]
            for block in moved["body"]
            if block.get("type") == "RichTextBlock"
            for run in block.get("inlines", [])
            if run.get("strikethrough")
        ]
        # 20:00 UTC is 14:00 in Chicago, Dana's profile zone (a proactive card has no Teams client to ask).
        assert struck, "the card does not show the time it was moved from"
        assert "2:00" in struck[0] or "14:00" in struck[0], struck
        # The client cancels through their manage link: Dana is told, with the reason.
        response = await client.post(f"{manage}/cancel", json={"reason": "Found another provider"})
        assert response.status == 200, await response.text()
        found = await connector.wait_for(before + 3, timeout=15, conversation_id="a:1dana-personal")
        card = card_text(found[-1].cards[0])
        assert "Cancelled" in card
        assert "Found another provider" in card
    finally:
        await client.close()


async def test_a_retried_panel_notification_does_not_tell_a_host_twice(
    bot_db: Database, tmp_path: Path, clock: FixedClock, connector: FakeTeamsConnector
) -> None:
    """A panel booking tells every host. When one host's chat is gone, the step fails and says so; retried once
    that host is back, it sends to them and not a second card to the host who already got one."""
    eli = "11111111-aaaa-4aaa-8aaa-000000000002"
    tenant = (FIXTURES / "teams_tenant.yaml").read_text()
    tenant = tenant.replace(
        "    email: eli@contoso-it.example\n", f"    email: eli@contoso-it.example\n    aad_object_id: {eli}\n"
    )
    tenant += """  - slug: panel-review
    name: Panel review
    duration: 30
    increment: 30
    minimum_notice: 0 minutes
    maximum_window: 60 days
    location: {kind: teams}
    host: {panel: [dana, eli]}
"""
    path = tmp_path / "panel.yaml"
    path.write_text(tenant)
    await apply_file(bot_db, path)
    client = await start_client(bot_db, tmp_path, clock, run_workflows=True, **BOT_SETTINGS)
    try:
        await say(client, connector, "hi")
        await say(client, connector, "hi", aad=eli, conversation="a:1eli-personal")
        # Eli's chat disappears (he removed the app), so Teams answers 404 for it.
        connector.known_conversations_only = True
        del connector.conversations["a:1eli-personal"]
        response = await client.post(
            "/book/contoso/panel-review/bookings",
            json={"start": "2026-11-25T15:00:00+00:00", "name": "Pat Panel", "email": "pat@client.example"},
        )
        assert response.status == 201, await response.text()
        booking_id = str((await response.json())["id"])
        for _ in range(100):
            async with bot_db.read() as conn:
                job = (
                    await conn.execute(
                        select(workflow_jobs).where(
                            workflow_jobs.c.booking_id == booking_id, workflow_jobs.c.kind == "notify_host"
                        )
                    )
                ).one()
            if job.state == FAILED:
                break
            await asyncio.sleep(0.1)
        assert job.state == FAILED, job.state
        assert "404" in job.last_error
        assert list(job.output) == [next(key for key in job.output if key.startswith("teams_activity:"))]
        assert len(connector.cards(conversation_id="a:1dana-personal")) == 2  # her reply to "hi", then the card

        # Eli installs the app again; an operator retries the step.
        connector.register_conversation("a:1eli-personal")
        assert await retry_job(bot_db, job.tenant_id, job.id)
        output = await _finished_notify_step(bot_db, booking_id)
        assert len([key for key in output if key.startswith("teams_activity:")]) == 2
        assert len(connector.cards(conversation_id="a:1dana-personal")) == 2, "Dana was sent a second card"
        eli_cards = connector.cards(conversation_id="a:1eli-personal")
        assert "Pat Panel" in card_text(eli_cards[-1])
    finally:
        await client.close()


async def _finished_notify_step(database: Database, booking_id: str) -> dict[str, Any]:
    for _ in range(100):
        async with database.read() as conn:
            state, output = (
                await conn.execute(
                    select(workflow_jobs.c.state, workflow_jobs.c.output)
                    .where(workflow_jobs.c.booking_id == booking_id, workflow_jobs.c.kind == "notify_host")
                    .order_by(workflow_jobs.c.id)
                )
            ).first()
        if state == "completed":
            return dict(output)
        await asyncio.sleep(0.1)
    raise AssertionError(f"the notify_host step did not complete (state {state})")


async def test_with_a_bot_registration_every_activity_needs_a_valid_channel_token(
    bot_db: Database, tmp_path: Path, clock: FixedClock, connector: FakeTeamsConnector
) -> None:
    """The whole app (not just the authenticator): signed Bot Framework tokens from a local key publisher, and the
    reply sent with a token from a local Entra endpoint."""
    keys = FakeBotIdentity()
    teams_key = keys.add_channel_key()
    webchat_only = keys.add_channel_key(endorsements=("webchat",))
    publisher = TestServer(keys.build_app())
    await publisher.start_server()
    graph = FakeGraphServer(tenant_id=BOT_TENANT, client_id=BOT_APP_ID)
    async with serve_fake_graph(graph) as entra:
        client = await start_client(
            bot_db,
            tmp_path,
            clock,
            bot_app_id=BOT_APP_ID,
            bot_app_password=graph.client_secret,
            bot_openid_metadata_url=str(publisher.make_url(CHANNEL_METADATA_PATH)),
            bot_token_authority=entra.authority,
            bot_authority_ca_file=str(entra.ca_file),
            bot_allow_http_loopback=True,
            bot_allowed_service_hosts=["127.0.0.1"],
        )
        try:
            body = activity(connector, text="links")

            async def post(token: str | None) -> int:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                return (await client.post("/api/messages", json=body, headers=headers)).status

            claims = channel_claims(service_url=connector.service_url)
            assert await post(None) == 401
            assert await post("garbage") == 401
            assert await post(mint(teams_key, {**claims, "aud": "someone-else"})) == 401
            assert await post(mint(teams_key, {**claims, "iss": "https://evil.example"})) == 401
            assert await post(mint(teams_key, {**claims, "serviceurl": "https://smba.trafficmanager.net/emea/"})) == 401
            assert await post(mint(webchat_only, claims)) == 401, "the key must endorse the msteams channel"
            assert (
                await post(mint(teams_key, channel_claims(service_url=connector.service_url, now=time.time() - 7200)))
                == 401
            )
            assert connector.cards() == [], "nothing is sent for a refused activity"
            assert await post(mint(teams_key, claims)) in (200, 201, 202)
            reply = (await connector.wait_for(1))[0]
            assert reply.has_authorization, "the reply carries the bot's own token"
            assert "Discovery call" in card_text(reply.cards[0])
        finally:
            await client.close()
    await publisher.close()


async def test_privacy_and_terms_pages_exist_for_the_app_manifest(bot: TestClient) -> None:
    for path, title in (("/privacy", "Privacy"), ("/terms", "Terms of use")):
        response = await bot.get(path)
        assert response.status == 200
        assert title in await response.text()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=10,
)
ACTIVITY_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.sampled_from(["message", "invoke", "conversationUpdate", "installationUpdate"]), JSON),
        "name": st.one_of(
            st.sampled_from(["adaptiveCard/action", "composeExtension/query", "task/fetch", "signin/verifyState"]),
            JSON,
        ),
        "text": st.one_of(st.text(max_size=60), JSON),
        "value": st.one_of(
            st.fixed_dictionaries(
                {"action": st.fixed_dictionaries({"verb": st.text(max_size=20), "data": JSON})},
                optional={"commandId": st.text(max_size=12), "parameters": JSON},
            ),
            JSON,
        ),
        "from": st.one_of(st.just({"id": "29:x", "aadObjectId": DANA}), JSON),
        "channelData": JSON,
        "entities": JSON,
        "membersAdded": JSON,
        "attachments": JSON,
    },
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=ACTIVITY_FIELDS)
async def test_no_activity_gets_a_5xx(bot: TestClient, connector: FakeTeamsConnector, fields: dict[str, Any]) -> None:
    body = activity(connector, text="links", conversation=f"a:1fuzz-{next(_ids)}")
    body.update(fields)
    response = await bot.post("/api/messages", json=body)
    assert response.status < 500, (fields, await response.text())


def test_the_microsoft_tenant_binding_is_validated_in_the_tenant_file() -> None:
    text = (FIXTURES / "teams_tenant.yaml").read_text()
    with pytest.raises(RolloutError) as caught:
        parse_tenant_text(text.replace(MS_TENANT, "contoso.onmicrosoft.com"), "teams.yaml")
    assert "microsoft_tenant_id" in str(caught.value)
    parsed = parse_tenant_text(text.replace(MS_TENANT, MS_TENANT.upper()), "teams.yaml")
    assert parsed.tenant.microsoft_tenant_id == MS_TENANT, "ids are compared lower-case"


async def test_two_tenants_cannot_claim_one_microsoft_tenant(bot_db: Database, tmp_path: Path) -> None:
    text = (FIXTURES / "teams_other_tenant.yaml").read_text().replace(OTHER_MS_TENANT, MS_TENANT)
    path = tmp_path / "thief.yaml"
    path.write_text(text)
    with pytest.raises(RolloutError) as caught:
        await apply_file(bot_db, path)
    assert "already bound to Slotwise tenant 'contoso'" in str(caught.value)


async def test_without_a_bot_registration_the_host_notification_fails_visibly(
    bot_db: Database, tmp_path: Path, clock: FixedClock
) -> None:
    client = await start_client(bot_db, tmp_path, clock, run_workflows=True)
    try:
        booking_id = await book(client, "2026-11-24T21:00:00+00:00")
        for _ in range(100):
            async with bot_db.read() as conn:
                state, error = (
                    await conn.execute(
                        select(workflow_jobs.c.state, workflow_jobs.c.last_error).where(
                            workflow_jobs.c.booking_id == booking_id, workflow_jobs.c.kind == "notify_host"
                        )
                    )
                ).one()
            if state == FAILED:
                break
            await asyncio.sleep(0.1)
        assert state == FAILED
        assert "no bot registration" in error
    finally:
        await client.close()
