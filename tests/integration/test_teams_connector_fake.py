"""The Teams Bot Connector fake over real loopback HTTP: round-trips, validation, auth, per-thread limits and faults."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
import pytest
from microsoft_agents.activity import Activity, ChannelAccount, ConversationParameters
from microsoft_agents.hosting.core.connector.client.connector_client import ConnectorClient

from tests.fakes.teams_connector import (
    ADAPTIVE_CARD,
    BOT_FRAMEWORK_AUDIENCE,
    MAX_CARD_BYTES,
    MAX_MESSAGE_BYTES,
    FakeTeamsConnector,
    ManualClock,
)

REPO = Path(__file__).resolve().parents[2]
PERSONAL = "a:1Bq2vH8kY0pZrWxFJ3mN6tUeSd9cLgAoXiKb7hR5yQwE4fT"
CHANNEL = "19:3b2f1d8e9c7a4b6f8e2d1c0b9a8f7e6d@thread.tacv2"
GROUP = "19:meeting_NjQ5ZTk0YzgtZjU1Mi00@thread.v2"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def message(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"type": "message", "text": text, **extra}


def card_message(card: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "attachments": [{"contentType": ADAPTIVE_CARD, "content": card}]}


def token(audience: str, *, expires_in: int = 3600) -> str:
    claims = {
        "aud": audience,
        "iss": "https://login.microsoftonline.com/botframework.com/v2.0",
        "exp": int(time.time()) + expires_in,
    }
    return jwt.encode(claims, "not-a-real-signing-key-but-long-enough-for-hs256", algorithm="HS256")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1000.0)


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeTeamsConnector]:
    connector = FakeTeamsConnector(clock=clock, path_prefix="/amer")
    await connector.start()
    try:
        yield connector
    finally:
        await connector.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


def activities_url(fake: FakeTeamsConnector, conversation_id: str, activity_id: str | None = None) -> str:
    url = f"{fake.service_url}v3/conversations/{quote(conversation_id, safe='')}/activities"
    return url if activity_id is None else f"{url}/{quote(activity_id, safe='')}"


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, dict[str, Any], Any]:
    async with http.post(url, json=body) as response:
        text = await response.text()
        return response.status, dict(response.headers), json.loads(text) if text else None


async def test_a_reply_is_stored_with_its_conversation_reply_to_id_and_a_new_activity_id(fake, http):
    status, _, answer = await post(http, activities_url(fake, PERSONAL, "1700000000001"), message("Your links"))

    assert status == 201
    [recorded] = await fake.wait_for(1)
    assert answer == {"id": recorded.activity_id}
    assert recorded.operation == "reply"
    assert recorded.conversation_id == PERSONAL
    assert recorded.reply_to_id == "1700000000001"
    assert recorded.method == "POST"
    assert recorded.has_authorization is False
    assert recorded.text == "Your links"
    assert recorded.received_at.tzinfo is not None


async def test_a_proactive_send_gets_a_fresh_id_each_time_and_cards_are_readable(fake, http):
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Dana booked"}]}
    first = await post(http, activities_url(fake, PERSONAL), card_message(card))
    second = await post(http, activities_url(fake, PERSONAL), message("and one more"))

    assert first[0] == second[0] == 201
    assert first[2]["id"] != second[2]["id"]
    assert [item.operation for item in fake.activities] == ["send", "send"]
    assert fake.cards() == [card]
    assert fake.cards(conversation_id="a:1other") == []


async def test_an_update_replaces_a_sent_activity_and_a_delete_removes_it(fake, http):
    _, _, sent = await post(http, activities_url(fake, PERSONAL), message("draft"))
    url = activities_url(fake, PERSONAL, sent["id"])

    async with http.put(url, json=message("final")) as response:
        assert response.status == 200
        assert await response.json() == {"id": sent["id"]}
    async with http.delete(url) as response:
        assert response.status == 200
    async with http.put(url, json=message("too late")) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "ActivityNotFound"

    assert [(item.operation, item.activity_id) for item in fake.activities] == [
        ("send", sent["id"]),
        ("update", sent["id"]),
        ("delete", sent["id"]),
    ]
    assert fake.activities[1].text == "final"


async def test_updating_an_activity_the_connector_never_issued_is_not_found(fake, http):
    async with http.put(activities_url(fake, PERSONAL, "1234"), json=message("x")) as response:
        assert response.status == 404
    assert fake.activities == []


async def test_creating_a_personal_chat_twice_returns_the_same_conversation(fake, http):
    body = {
        "bot": {"id": "28:bot-app-id"},
        "members": [{"id": "29:1user-id"}],
        "isGroup": False,
        "channelData": {"tenant": {"id": TENANT}},
    }
    first = await post(http, f"{fake.service_url}v3/conversations", body)
    again = await post(http, f"{fake.service_url}v3/conversations", {**body, "activity": message("Welcome")})

    assert first[0] == again[0] == 201
    assert first[2]["id"].startswith("a:")
    assert again[2]["id"] == first[2]["id"]
    [created] = fake.recorded(operation="create")
    assert again[2]["activityId"] == created.activity_id
    assert created.conversation_id == first[2]["id"]
    assert fake.conversations[first[2]["id"]].tenant_id == TENANT


async def test_posting_into_a_channel_starts_a_thread_that_replies_can_use(fake, http):
    body = {
        "isGroup": True,
        "members": [],
        "channelData": {"tenant": {"id": TENANT}, "channel": {"id": CHANNEL}},
        "activity": message("New booking"),
    }
    status, _, answer = await post(http, f"{fake.service_url}v3/conversations", body)

    assert status == 201
    assert answer["id"] == f"{CHANNEL};messageid={answer['activityId']}"
    status, _, _ = await post(http, activities_url(fake, answer["id"], answer["activityId"]), message("in thread"))
    assert status == 201
    assert fake.activities[-1].conversation_id == answer["id"]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"members": [{"id": "29:1"}], "isGroup": False}, "tenant"),
        ({"members": [{"id": "29:1"}, {"id": "29:2"}], "channelData": {"tenant": {"id": TENANT}}}, "exactly one"),
        ({"members": "29:1", "channelData": {"tenant": {"id": TENANT}}}, "members"),
        ({"members": [{"id": "29:1"}], "tenantId": TENANT, "activity": {"text": "no type"}}, "type"),
    ],
)
async def test_a_create_conversation_body_the_service_would_refuse_is_a_400(fake, http, body, why):
    status, _, answer = await post(http, f"{fake.service_url}v3/conversations", body)

    assert status == 400
    assert answer["error"]["code"] == "BadArgument"
    assert why in answer["error"]["message"]


async def test_unknown_conversations_are_404_when_the_fake_knows_its_conversations(clock, http):
    connector = FakeTeamsConnector(clock=clock, known_conversations_only=True)
    await connector.start()
    try:
        status, _, answer = await post(http, activities_url(connector, PERSONAL), message())
        assert status == 404
        assert answer == {"error": {"code": "ConversationNotFound", "message": "Conversation not found."}}

        connector.register_conversation(PERSONAL, members=[{"id": "29:1", "aadObjectId": "aad-1"}])
        connector.register_conversation(CHANNEL, is_group=True, conversation_type="channel")
        assert (await post(http, activities_url(connector, PERSONAL), message()))[0] == 201
        # A reply thread in a known channel is known too.
        thread = f"{CHANNEL};messageid=1700000000555"
        assert (await post(http, activities_url(connector, thread, "1700000000555"), message()))[0] == 201
        assert [item.conversation_id for item in connector.activities] == [PERSONAL, thread]
    finally:
        await connector.close()


async def test_members_come_from_the_registered_conversation(fake, http):
    member = {
        "id": "29:1abc",
        "name": "Riley Rep",
        "aadObjectId": "5e3c-aad",
        "userPrincipalName": "riley@acme.example",
    }
    fake.register_conversation(PERSONAL, members=[member], tenant_id=TENANT)
    base = f"{fake.service_url}v3/conversations/{quote(PERSONAL, safe='')}"

    async with http.get(f"{base}/members") as response:
        assert await response.json() == [member]
    async with http.get(f"{base}/members/5e3c-aad") as response:
        assert await response.json() == member
    async with http.get(f"{base}/members/29:nobody") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "MemberNotFoundInConversation"


@pytest.mark.parametrize(
    ("raw_body", "code"),
    [
        (b"not json", "BadSyntax"),
        (b"[1, 2]", "BadArgument"),
        (b'{"text": "no type"}', "BadArgument"),
        (b'{"type": "message", "attachments": [{"content": {}}]}', "BadArgument"),
        (
            b'{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive"}]}',
            "BadArgument",
        ),
    ],
)
async def test_a_body_that_is_not_an_activity_is_a_400_and_nothing_is_stored(fake, http, raw_body, code):
    async with http.post(
        activities_url(fake, PERSONAL), data=raw_body, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == code
    assert fake.activities == []


async def test_a_token_is_required_when_configured_and_its_audience_is_checked(clock, http):
    connector = FakeTeamsConnector(clock=clock, require_token=BOT_FRAMEWORK_AUDIENCE)
    await connector.start()
    try:
        url = activities_url(connector, PERSONAL)
        async with http.post(url, json=message()) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert (await response.json())["error"]["code"] == "Unauthorized"
        for bad in (token("https://graph.microsoft.com"), token(BOT_FRAMEWORK_AUDIENCE, expires_in=-3600), "garbage"):
            async with http.post(url, json=message(), headers={"Authorization": f"Bearer {bad}"}) as response:
                assert response.status == 401, bad
        good = {"Authorization": f"Bearer {token(BOT_FRAMEWORK_AUDIENCE)}"}
        async with http.post(url, json=message(), headers=good) as response:
            assert response.status == 201
        [recorded] = connector.activities
        assert recorded.has_authorization is True
    finally:
        await connector.close()


async def test_a_token_check_can_be_any_callable(clock, http):
    connector = FakeTeamsConnector(clock=clock, require_token=lambda value: value == "let-me-in")
    await connector.start()
    try:
        url = activities_url(connector, PERSONAL)
        async with http.post(url, json=message(), headers={"Authorization": "Bearer nope"}) as response:
            assert response.status == 401
        async with http.post(url, json=message(), headers={"Authorization": "Bearer let-me-in"}) as response:
            assert response.status == 201
    finally:
        await connector.close()


async def test_the_message_size_limit_is_100_kb_counted_in_utf16(fake, http):
    fake.max_card_bytes = None
    # {"type":"message","text":"…"} is 28 characters plus the text; UTF-16 doubles every one of them.
    fits = "x" * (MAX_MESSAGE_BYTES // 2 - 28)
    assert (await post(http, activities_url(fake, PERSONAL), message(fits)))[0] == 201
    status, _, answer = await post(http, activities_url(fake, PERSONAL), message(fits + "x"))

    assert status == 413
    assert answer["error"]["code"] == "MessageSizeTooBig"
    assert len(fake.activities) == 1


async def test_an_adaptive_card_over_28_kb_is_refused_even_inside_the_message_limit(fake, http):
    def card(text: str) -> dict[str, Any]:
        return {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": text}]}

    overhead = len(json.dumps(card(""), separators=(",", ":")))
    assert (await post(http, activities_url(fake, PERSONAL), card_message(card("y" * (MAX_CARD_BYTES - overhead)))))[
        0
    ] == 201
    status, _, answer = await post(
        http, activities_url(fake, PERSONAL), card_message(card("y" * (MAX_CARD_BYTES - overhead + 1)))
    )

    assert status == 413
    assert answer["error"]["code"] == "MessageSizeTooBig"


async def send_many(http: aiohttp.ClientSession, url: str, count: int) -> list[tuple[int, dict[str, Any]]]:
    results = []
    for _ in range(count):
        status, headers, _ = await post(http, url, message())
        results.append((status, headers))
    return results


async def test_the_eighth_message_in_one_second_is_refused_with_retry_after(fake, http, clock):
    url = activities_url(fake, PERSONAL)
    results = await send_many(http, url, 8)

    assert [status for status, _ in results] == [201] * 7 + [429]
    assert results[-1][1]["Retry-After"] == "1"
    clock.advance(0.5)
    assert (await send_many(http, url, 1))[0][0] == 429
    clock.advance(0.5)  # exactly one second after the first seven: they have left the window
    assert (await send_many(http, url, 1))[0][0] == 201
    assert len(fake.activities) == 8
    assert [rejection.retry_after for rejection in fake.rejections] == [1, 1]


async def test_only_eight_messages_fit_in_two_seconds(fake, http, clock):
    url = activities_url(fake, PERSONAL)
    assert [status for status, _ in await send_many(http, url, 7)] == [201] * 7
    clock.advance(1.5)
    results = await send_many(http, url, 2)

    assert [status for status, _ in results] == [201, 429]
    # The seven from t=0 leave the 2 s window at t=2, half a second from now: Retry-After rounds up to whole seconds.
    assert results[1][1]["Retry-After"] == "1"
    clock.advance(0.5)
    assert [status for status, _ in await send_many(http, url, 1)] == [201]


async def test_sixty_messages_fit_in_thirty_seconds_and_the_61st_waits_for_the_oldest(fake, http, clock):
    url = activities_url(fake, PERSONAL)
    statuses = []
    for second in range(15):
        statuses += [status for status, _ in await send_many(http, url, 4)]
        if second < 14:
            clock.advance(1.0)
    assert statuses == [201] * 60
    clock.advance(1.0)  # t=15: the 1 s and 2 s windows are clear, the 30 s window holds 60.
    [(status, headers)] = await send_many(http, url, 1)

    assert status == 429
    assert headers["Retry-After"] == "15"
    clock.advance(15.0)
    assert [status for status, _ in await send_many(http, url, 4)] == [201] * 4


async def test_1800_messages_fit_in_an_hour_and_the_1801st_is_refused(fake, http, clock):
    url = activities_url(fake, PERSONAL)
    pace = 30 / 60 + 0.25  # 0.75 s apart: under 7/1 s, 8/2 s and 60/30 s, so only the hour can fill up.
    statuses = []
    for index in range(1800):
        if index:
            clock.advance(pace)
        statuses.append((await post(http, url, message()))[0])
    assert statuses.count(201) == 1800
    clock.advance(pace)  # t = 1350 s after the first message
    status, headers, _ = await post(http, url, message())

    assert status == 429
    assert headers["Retry-After"] == str(3600 - 1350)
    clock.advance(3600 - 1350)
    assert (await post(http, url, message()))[0] == 201


async def test_each_conversation_has_its_own_budget_and_updates_count_as_sends(fake, http):
    other = "a:1another-user-conversation"
    _, _, sent = await post(http, activities_url(fake, PERSONAL), message())
    for _ in range(6):
        async with http.put(activities_url(fake, PERSONAL, sent["id"]), json=message("edit")) as response:
            assert response.status == 200
    assert (await post(http, activities_url(fake, PERSONAL), message()))[0] == 429
    assert [status for status, _ in await send_many(http, activities_url(fake, other), 7)] == [201] * 7


async def test_member_lookups_have_their_own_higher_limit(fake, http):
    url = f"{fake.service_url}v3/conversations/{quote(PERSONAL, safe='')}/members"
    statuses = []
    for _ in range(15):
        async with http.get(url) as response:
            statuses.append(response.status)
    assert statuses == [200] * 14 + [429]
    assert (await post(http, activities_url(fake, PERSONAL), message()))[0] == 201


@pytest.mark.parametrize(
    "conversation_id",
    [PERSONAL, GROUP, CHANNEL, f"{CHANNEL};messageid=1700000000123", "odd/id?with#chars and spaces"],
)
async def test_percent_encoded_and_raw_conversation_ids_name_the_same_conversation(fake, http, conversation_id):
    encoded = activities_url(fake, conversation_id)
    assert (await post(http, encoded, message("encoded")))[0] == 201
    if all(ch not in conversation_id for ch in "/?# "):
        # The Agents SDK puts the id into the path unescaped; ':' '@' ';' '=' are legal there.
        raw = f"{fake.service_url}v3/conversations/{conversation_id}/activities"
        assert (await post(http, raw, message("raw")))[0] == 201
    assert {item.conversation_id for item in fake.activities} == {conversation_id}


async def test_the_agents_sdk_connector_client_works_against_the_fake(fake):
    fake.register_conversation(GROUP, members=[{"id": "29:1abc", "name": "Riley Rep"}], is_group=True)
    client = ConnectorClient(fake.service_url, token="")
    try:
        conversations = client.conversations
        reply = await conversations.reply_to_activity(
            GROUP, "1700000000001", Activity(type="message", text="via the SDK")
        )
        sent = await conversations.send_to_conversation(GROUP, Activity(type="message", text="proactive"))
        await conversations.update_activity(GROUP, sent.id, Activity(type="message", text="edited"))
        await conversations.delete_activity(GROUP, reply.id)
        members = await conversations.get_conversation_members(GROUP)
        created = await conversations.create_conversation(
            ConversationParameters(
                bot=ChannelAccount(id="28:bot-app-id"),
                is_group=False,
                members=[ChannelAccount(id="29:1abc")],
                tenant_id=TENANT,
            )
        )
    finally:
        await client.close()

    assert [item.operation for item in fake.activities] == ["reply", "send", "update", "delete"]
    assert {item.conversation_id for item in fake.activities} == {GROUP}
    assert [member.name for member in members] == ["Riley Rep"]
    assert created.id.startswith("a:")
    # The SDK joined the region path of the serviceUrl correctly.
    assert all(entry.path.startswith("/amer/v3/") for entry in fake.request_log)


async def test_a_service_url_joined_without_its_region_path_gets_a_bot_framework_404(fake, http):
    status, _, answer = await post(http, f"{fake.url}/v3/conversations/{PERSONAL}/activities", message())

    assert status == 404
    assert answer["error"]["code"] == "NotFound"


async def test_injected_errors_come_first_then_the_service_recovers(fake, http):
    fake.fail_next(503)
    fake.fail_next(429, retry_after=3)
    url = activities_url(fake, PERSONAL)

    first = await post(http, url, message())
    second = await post(http, url, message())
    third = await post(http, url, message())

    assert first[0] == 503
    assert first[2]["error"]["code"] == "ServiceUnavailable"
    assert (second[0], second[1]["Retry-After"]) == (429, "3")
    assert third[0] == 201
    assert len(fake.activities) == 1


async def test_a_slow_answer_times_the_client_out_but_the_message_still_lands(fake, http):
    fake.delay_next(0.3)
    with pytest.raises(TimeoutError):
        async with http.post(
            activities_url(fake, PERSONAL), json=message("slow"), timeout=aiohttp.ClientTimeout(total=0.1)
        ):
            pass
    [recorded] = await fake.wait_for(1, timeout=2)
    assert recorded.text == "slow"


async def test_a_lost_response_means_stored_but_unheard(fake, http):
    fake.lose_next_response("drop")
    fake.lose_next_response("502")
    url = activities_url(fake, PERSONAL)

    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http, url, message("first"))
    status, _, answer = await post(http, url, message("second"))
    assert (status, answer["error"]["code"]) == (502, "BadGateway")
    assert (await post(http, url, message("third")))[0] == 201

    assert [item.text for item in fake.activities] == ["first", "second", "third"]


async def test_latency_applies_to_every_call(clock, http):
    connector = FakeTeamsConnector(clock=clock, latency_seconds=0.05)
    await connector.start()
    try:
        started = time.perf_counter()
        assert (await post(http, activities_url(connector, PERSONAL), message()))[0] == 201
        assert time.perf_counter() - started >= 0.05
    finally:
        await connector.close()


async def test_wait_for_wakes_on_arrival_and_times_out_with_what_it_saw(fake, http):
    waiter = asyncio.create_task(fake.wait_for(2, timeout=2, conversation_id=PERSONAL))
    await post(http, activities_url(fake, PERSONAL), message("one"))
    await post(http, activities_url(fake, GROUP), message("elsewhere"))
    await post(http, activities_url(fake, PERSONAL), message("two"))
    assert [item.text for item in await waiter] == ["one", "two"]

    with pytest.raises(TimeoutError, match=r"expected 3 matching activities within 0\.05 s, got 2"):
        await fake.wait_for(3, timeout=0.05, conversation_id=PERSONAL)


async def test_clear_forgets_activities_log_and_rate_windows(fake, http):
    url = activities_url(fake, PERSONAL)
    await send_many(http, url, 8)
    fake.clear()

    assert (fake.activities, fake.request_log, fake.rejections) == ([], [], [])
    assert [status for status, _ in await send_many(http, url, 7)] == [201] * 7


def test_the_fake_runs_standalone_from_the_command_line():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.teams_connector", "--port", "0", "--path-prefix", "/emea"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        service_url = lines[1].split("service_url:", 1)[1].strip()
        assert service_url.endswith("/emea/")

        async def round_trip() -> int:
            async with aiohttp.ClientSession() as session:
                status, _, _ = await post(session, f"{service_url}v3/conversations/{PERSONAL}/activities", message())
                return status

        assert asyncio.run(round_trip()) == 201
    finally:
        process.terminate()
        process.wait(timeout=5)
