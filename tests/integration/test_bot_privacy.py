"""The bot keeps each customer's data to its own people, over real HTTP into /api/messages: a single-tenant bot only
serves its tenant whatever a token claims, group chats and channels never see client data, a bad time zone from a
Teams client falls back to the profile, and an error never reaches the chat as exception text."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, text

from app import Overrides, create_app
from bot.app import BOT
from storage.database import Database
from storage.tables import bookings, workflow_jobs
from tests.conftest import FIXTURES, FixedClock, apply_file, make_settings, start_client
from tests.fakes.bot_identity import (
    BOT_APP_ID,
    CALLER_APP_ID,
    CHANNEL_METADATA_PATH,
    FakeBotIdentity,
    SigningKey,
    channel_claims,
    entra_claims,
    mint,
    tenant_metadata_path,
)
from tests.fakes.graph import FakeGraphServer, serve_fake_graph
from tests.fakes.teams_connector import FakeTeamsConnector
from tests.integration.test_bot import BOT_SETTINGS, DANA, MAYA, MS_TENANT, OTHER_MS_TENANT, activity, card_text
from workflows.outbox import FAILED

FABRIKAM_DANA = "22222222-bbbb-4bbb-8bbb-000000000001"
"""A user of the other Slotwise tenant (fabrikam), bound to Microsoft 365 tenant OTHER_MS_TENANT."""
CLIENT = "Casey Confidential"
CLIENT_EMAIL = "casey.confidential@client.example"
PERSONAL_CHAT = "https://teams.microsoft.com/l/chat/0/0?users=28:"


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


async def book(client: TestClient, path: str, start: str) -> str:
    response = await client.post(
        f"{path}/bookings",
        json={"start": start, "name": CLIENT, "email": CLIENT_EMAIL, "time_zone": "Europe/London"},
    )
    assert response.status == 201, await response.text()
    return str((await response.json())["id"])


async def status_of(database: Database, booking_id: str) -> str:
    async with database.read() as conn:
        return str((await conn.execute(select(bookings.c.status).where(bookings.c.id == booking_id))).scalar_one())


def invoke(connector: FakeTeamsConnector, verb: str, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    value = {"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": "manual"}
    return activity(connector, kind="invoke", name="adaptiveCard/action", value=value, **kwargs)


async def reply_to(
    client: TestClient, connector: FakeTeamsConnector, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """The card the bot sends into the conversation in answer to `body`."""
    before = len(connector.cards())
    response = await client.post("/api/messages", json=body, headers=headers or {})
    assert response.status in (200, 201, 202), await response.text()
    await connector.wait_for(before + 1, timeout=5)
    return connector.cards()[-1]


# 1. A single-tenant bot serves its own tenant only


@dataclass
class SingleTenantBot:
    client: TestClient
    channel_key: SigningKey
    tenant_key: SigningKey
    fabrikam_booking: str
    contoso_booking: str


@pytest.fixture
async def single_tenant_bot(
    bot_db: Database, tmp_path: Path, clock: FixedClock, connector: FakeTeamsConnector
) -> AsyncIterator[SingleTenantBot]:
    """The whole app as a single-tenant bot of contoso's Microsoft 365 tenant, trusting a local key publisher (Bot
    Framework and contoso's Entra keys) and one allowed caller, with a booking in each Slotwise tenant."""
    keys = FakeBotIdentity()
    channel_key = keys.add_channel_key()
    tenant_key = keys.add_tenant_key(MS_TENANT)
    publisher = TestServer(keys.build_app())
    await publisher.start_server()
    graph = FakeGraphServer(tenant_id=MS_TENANT, client_id=BOT_APP_ID)
    async with serve_fake_graph(graph) as entra:
        settings = make_settings(
            tmp_path,
            bot_app_id=BOT_APP_ID,
            bot_app_password=graph.client_secret,
            bot_tenant_id=MS_TENANT,
            bot_allowed_callers=[CALLER_APP_ID],
            bot_openid_metadata_url=str(publisher.make_url(CHANNEL_METADATA_PATH)),
            bot_token_authority=entra.authority,
            bot_authority_ca_file=str(entra.ca_file),
            bot_allow_http_loopback=True,
            bot_allowed_service_hosts=["127.0.0.1"],
        )
        app = create_app(settings, overrides=Overrides(clock=clock, database=bot_db))
        # Settings has no field for where a tenant's Entra keys live (Microsoft's cloud in production): point the
        # bot at the local publisher. The allowed callers come from the setting, through the composition root.
        assert app[BOT].auth.allowed_callers == (CALLER_APP_ID,)
        app[BOT].auth = replace(
            app[BOT].auth, tenant_openid_metadata_url=str(publisher.make_url(tenant_metadata_path(MS_TENANT)))
        )
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            fabrikam = await book(client, "/book/fabrikam/secret-type", "2026-11-30T10:00:00+00:00")
            contoso = await book(client, "/book/contoso/discovery", "2026-11-24T15:00:00+00:00")
            yield SingleTenantBot(client, channel_key, tenant_key, fabrikam, contoso)
        finally:
            await client.close()
    await publisher.close()


def from_fabrikam(connector: FakeTeamsConnector, body: dict[str, Any]) -> dict[str, Any]:
    """`body` as if fabrikam's Dana sent it from her own Microsoft 365 tenant."""
    return {
        **body,
        "from": {"id": f"29:{FABRIKAM_DANA}", "aadObjectId": FABRIKAM_DANA},
        "conversation": {**body["conversation"], "tenantId": OTHER_MS_TENANT},
        "channelData": {"tenant": {"id": OTHER_MS_TENANT}},
    }


async def test_a_channel_token_cannot_speak_for_another_tenant_of_a_single_tenant_bot(
    single_tenant_bot: SingleTenantBot, connector: FakeTeamsConnector, bot_db: Database
) -> None:
    bot = single_tenant_bot
    token = mint(bot.channel_key, channel_claims(service_url=connector.service_url))
    headers = {"Authorization": f"Bearer {token}"}
    cancel = invoke(connector, "cancelBooking", {"bookingId": bot.fabrikam_booking})
    for body in (from_fabrikam(connector, cancel), from_fabrikam(connector, activity(connector, text="upcoming"))):
        response = await bot.client.post("/api/messages", json=body, headers=headers)
        assert response.status == 403, await response.text()
        assert CLIENT not in await response.text()
    # The same token carrying the other tenant as its tid is refused too.
    foreign = mint(bot.channel_key, channel_claims(service_url=connector.service_url, tid=OTHER_MS_TENANT))
    response = await bot.client.post(
        "/api/messages", json=from_fabrikam(connector, cancel), headers={"Authorization": f"Bearer {foreign}"}
    )
    assert response.status == 403
    await asyncio.sleep(0.2)
    assert connector.cards() == [], "nothing was sent to anyone"
    assert await status_of(bot_db, bot.fabrikam_booking) == "confirmed"


@pytest.mark.parametrize("version", ["2.0", "1.0"])
async def test_an_entra_token_without_a_service_url_cannot_reach_another_tenants_user(
    single_tenant_bot: SingleTenantBot, connector: FakeTeamsConnector, bot_db: Database, version: str
) -> None:
    """An allowed caller of contoso's tenant, with no serviceurl claim to tie it to a conversation, claims an
    invoke from fabrikam's Dana: refused, and her booking is neither shown nor cancelled."""
    bot = single_tenant_bot
    token = mint(bot.tenant_key, entra_claims(BOT_APP_ID, MS_TENANT, version=version))
    headers = {"Authorization": f"Bearer {token}"}
    for verb in ("refreshUpcoming", "cancelBooking"):
        body = from_fabrikam(connector, invoke(connector, verb, {"bookingId": bot.fabrikam_booking}))
        response = await bot.client.post("/api/messages", json=body, headers=headers)
        assert response.status == 403, await response.text()
        assert CLIENT not in await response.text()
    assert await status_of(bot_db, bot.fabrikam_booking) == "confirmed"
    assert connector.cards() == []


async def test_an_entra_token_from_an_app_that_is_not_an_allowed_caller_gets_401(
    single_tenant_bot: SingleTenantBot, connector: FakeTeamsConnector, bot_db: Database
) -> None:
    bot = single_tenant_bot
    stranger = mint(bot.tenant_key, entra_claims(BOT_APP_ID, MS_TENANT, caller_app_id=str(uuid.uuid4())))
    body = invoke(connector, "cancelBooking", {"bookingId": bot.contoso_booking})
    response = await bot.client.post("/api/messages", json=body, headers={"Authorization": f"Bearer {stranger}"})
    assert response.status == 401
    assert "allowed callers" in (await response.json())["error"]["message"]
    assert await status_of(bot_db, bot.contoso_booking) == "confirmed"


async def test_an_allowed_caller_is_served_for_a_user_of_the_bots_own_tenant(
    single_tenant_bot: SingleTenantBot, connector: FakeTeamsConnector
) -> None:
    bot = single_tenant_bot
    token = mint(bot.tenant_key, entra_claims(BOT_APP_ID, MS_TENANT))
    response = await bot.client.post(
        "/api/messages", json=invoke(connector, "refreshUpcoming", {}), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 200, await response.text()
    card = card_text((await response.json())["value"])
    assert CLIENT in card
    assert "Fabrikam" not in card
    # And Teams itself (a channel token) still is, for the same user.
    channel = mint(bot.channel_key, channel_claims(service_url=connector.service_url))
    response = await bot.client.post(
        "/api/messages", json=invoke(connector, "refreshUpcoming", {}), headers={"Authorization": f"Bearer {channel}"}
    )
    assert response.status == 200
    assert CLIENT in card_text((await response.json())["value"])


# 2. Group chats and channels see no client data


SHARED = [
    pytest.param("groupChat", "19:group-chat@unq.gbl.spaces", id="group chat"),
    pytest.param("channel", "19:sales-channel@thread.tacv2;messageid=1730000000000", id="channel"),
]


def in_group(conversation_type: str, conversation: str) -> dict[str, Any]:
    return {"conversation_type": conversation_type, "conversation": conversation}


def assert_private_note(card: dict[str, Any]) -> None:
    text = card_text(card)
    for secret in (CLIENT, "Casey", CLIENT_EMAIL, "client.example", "Dana Diaz", "Board 'Sales' not found"):
        assert secret not in text, f"{secret!r} was shown in a shared conversation"
    buttons = [action for action in card.get("actions", []) if action["type"] == "Action.OpenUrl"]
    assert [action["url"] for action in buttons] == [f"{PERSONAL_CHAT}slotwise-bot"]
    assert "personal chat" in text


async def fail_a_step(database: Database, booking_id: str) -> None:
    async with database.write() as conn:
        await conn.execute(
            workflow_jobs.update()
            .where(workflow_jobs.c.booking_id == booking_id)
            .values(state=FAILED, last_error="ConnectWise said: Board 'Sales' not found", attempts=10)
        )


@pytest.mark.parametrize(("conversation_type", "conversation"), SHARED)
async def test_upcoming_team_and_failures_in_a_shared_conversation_point_to_the_personal_chat(
    bot: TestClient, connector: FakeTeamsConnector, bot_db: Database, conversation_type: str, conversation: str
) -> None:
    booking_id = await book(bot, "/book/contoso/discovery", "2026-11-24T15:00:00+00:00")
    await fail_a_step(bot_db, booking_id)
    where = in_group(conversation_type, conversation)
    for text_, aad in (
        ("upcoming", DANA),
        ("<at>Slotwise</at> what's coming up?", DANA),
        ("team bookings", MAYA),
        ("what failed?", MAYA),
    ):
        assert_private_note(await reply_to(bot, connector, activity(connector, text=text_, aad=aad, **where)))
    # In her personal chat the same question still shows the booking.
    assert CLIENT in card_text(await reply_to(bot, connector, activity(connector, text="upcoming")))


@pytest.mark.parametrize(("conversation_type", "conversation"), SHARED)
async def test_card_buttons_pressed_in_a_shared_conversation_change_and_show_nothing(
    bot: TestClient, connector: FakeTeamsConnector, bot_db: Database, conversation_type: str, conversation: str
) -> None:
    booking_id = await book(bot, "/book/contoso/discovery", "2026-11-24T15:00:00+00:00")
    where = in_group(conversation_type, conversation)
    for verb, data, aad in (
        ("refreshUpcoming", {}, DANA),
        ("cancelBooking", {"bookingId": booking_id}, DANA),
        ("sendRescheduleLink", {"bookingId": booking_id}, DANA),
        ("filterTeam", {}, MAYA),
        ("refreshFailures", {}, MAYA),
        ("retryStep", {"jobId": "1"}, MAYA),
    ):
        response = await bot.post("/api/messages", json=invoke(connector, verb, data, aad=aad, **where))
        assert response.status == 200
        assert_private_note((await response.json())["value"])
    assert await status_of(bot_db, booking_id) == "confirmed"


@pytest.mark.parametrize(("conversation_type", "conversation"), SHARED)
async def test_links_page_and_help_still_answer_in_a_shared_conversation(
    bot: TestClient, connector: FakeTeamsConnector, conversation_type: str, conversation: str
) -> None:
    where = in_group(conversation_type, conversation)
    links = card_text(await reply_to(bot, connector, activity(connector, text="links", **where)))
    assert "http://testserver/book/contoso/discovery" in links
    page = card_text(await reply_to(bot, connector, activity(connector, text="my personal page", **where)))
    assert "http://testserver/u/contoso/dana" in page
    assert "upcoming" in card_text(await reply_to(bot, connector, activity(connector, text="help", **where))).lower()


@pytest.mark.parametrize(("conversation_type", "conversation"), SHARED)
async def test_the_welcome_card_is_not_sent_when_the_app_is_added_to_a_shared_conversation(
    bot: TestClient, connector: FakeTeamsConnector, conversation_type: str, conversation: str
) -> None:
    added = [{"id": "28:slotwise-bot"}, {"id": f"29:{DANA}", "aadObjectId": DANA}]
    body = activity(
        connector, kind="conversationUpdate", membersAdded=added, **in_group(conversation_type, conversation)
    )
    response = await bot.post("/api/messages", json=body)
    assert response.status in (200, 201, 202)
    update = activity(connector, kind="installationUpdate", action="add", **in_group(conversation_type, conversation))
    assert (await bot.post("/api/messages", json=update)).status in (200, 201, 202)
    await asyncio.sleep(0.3)
    assert connector.recorded() == []
    # The personal install is greeted.
    personal = activity(connector, kind="conversationUpdate", membersAdded=added)
    welcome = card_text(await reply_to(bot, connector, personal))
    assert "Dana Diaz" in welcome
    assert "upcoming" in welcome.lower()


# 3. A time zone the Teams client gets wrong


@pytest.mark.parametrize("reported", ["America", "Etc", "Not/AZone", "", "zone.tab", "../../etc/passwd"])
async def test_a_bad_teams_time_zone_falls_back_to_the_profile_zone(
    bot: TestClient, connector: FakeTeamsConnector, reported: str
) -> None:
    await book(bot, "/book/contoso/discovery", "2026-11-24T15:00:00+00:00")
    entities = [{"type": "clientInfo", "locale": "en-US", "timezone": reported}]
    body = activity(connector, text="upcoming", entities=entities, localTimezone=reported)
    card = card_text(await reply_to(bot, connector, body))
    assert CLIENT in card
    # 15:00 UTC in Dana's profile zone (America/Chicago, UTC-6 in November), not in UTC; en-US reads 9:00 AM.
    assert "9:00\\u202fAM" in card, card
    assert "3:00\\u202fPM" not in card


# 4. An error is an apology in the chat, never exception text


async def test_an_unexpected_error_is_answered_with_an_apology_and_no_exception_text(
    bot: TestClient, connector: FakeTeamsConnector, bot_db: Database
) -> None:
    async with bot_db.write() as conn:
        await conn.execute(text("DROP TABLE teams_conversations"))
    card = await reply_to(bot, connector, activity(connector, text="links"))
    assert "Something went wrong on our side" in card_text(card)
    response = await bot.post("/api/messages", json=invoke(connector, "refreshUpcoming", {}))
    assert response.status == 200
    assert "Something went wrong on our side" in card_text((await response.json())["value"])
    await asyncio.sleep(0.2)
    sent = json.dumps([item.body for item in connector.recorded()])
    for leak in ("Exception", "teams_conversations", "SQL", "Traceback"):
        assert leak not in sent
    assert all(item.type == "message" and item.cards for item in connector.recorded())
