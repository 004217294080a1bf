"""Teams bot latency: time from a message POSTed to /api/messages until its card arrives at the connector, with 50
conversations talking at once, against a bare aiohttp echo handler that makes the same connector call
(run: .venv/bin/python bench/bench_bot.py; SLOTWISE_BENCH_BOT_MESSAGES sets messages per conversation).

Both servers run in this process, on real sockets, and post their reply to the same connector stand-in. The echo
baseline reads the activity and replies with a small card; the bot resolves the user in the database, reads their
appointment types and renders the links card. The ratio printed is bot p50 / echo p50 (p95 and p99 alongside).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import Overrides, create_app
from settings import Settings
from storage.database import Database
from tests.conftest import FIXTURES, apply_file
from tests.fakes.teams_connector import FakeTeamsConnector

CONVERSATIONS = 50
MESSAGES = int(os.environ.get("SLOTWISE_BENCH_BOT_MESSAGES", "20"))
MS_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
DANA = "11111111-aaaa-4aaa-8aaa-000000000001"


def activity(service_url: str, conversation: str, number: int) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"{conversation}-{number}",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {"id": f"29:{DANA}", "aadObjectId": DANA, "name": "Dana"},
        "recipient": {"id": "28:bot", "name": "Slotwise"},
        "conversation": {"id": conversation, "conversationType": "groupChat", "tenantId": MS_TENANT},
        "channelData": {"tenant": {"id": MS_TENANT}},
        "text": "links",
    }


def echo_app(connector_url: str) -> web.Application:
    """The baseline: parse the activity, post a one-line card back as a reply, answer 202."""
    app = web.Application()
    sessions: list[aiohttp.ClientSession] = []

    async def session_ctx(_app: web.Application) -> Any:
        sessions.append(aiohttp.ClientSession())
        yield
        await sessions[0].close()

    async def messages(request: web.Request) -> web.Response:
        body = await request.json()
        reply = {
            "type": "message",
            "replyToId": body["id"],
            "conversation": body["conversation"],
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {
                        "type": "AdaptiveCard",
                        "version": "1.5",
                        "body": [{"type": "TextBlock", "text": body.get("text", "")}],
                    },
                }
            ],
        }
        url = f"{body['serviceUrl']}v3/conversations/{body['conversation']['id']}/activities/{body['id']}"
        async with sessions[0].post(url, json=reply) as response:
            await response.read()
        return web.Response(status=202)

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/api/messages", messages)
    return app


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/api/messages"


async def drive(
    endpoint: str,
    connector: FakeTeamsConnector,
    label: str,
    conversations: int = CONVERSATIONS,
    messages: int = MESSAGES,
) -> list[float]:
    """Each conversation sends its messages one after another; latency = POST sent → reply recorded."""
    connector.clear()
    arrived: dict[str, float] = {}
    waiting: dict[str, asyncio.Event] = {}
    original = connector.activities

    class Watch(list[Any]):
        def append(self, item: Any) -> None:
            key = item.reply_to_id or item.activity_id
            arrived[key] = time.perf_counter()
            if key in waiting:
                waiting[key].set()
            super().append(item)

    connector.activities = Watch(original)
    latencies: list[float] = []

    async def conversation(session: aiohttp.ClientSession, index: int) -> None:
        for number in range(messages):
            # 50 chats in flight at once; each message in a fresh chat, because a person does not type 7 messages
            # a second and Teams' per-chat limits (which the bot honours and the echo does not) are not measured here.
            body = activity(connector.service_url, f"19:{label}-{index}-{number}@thread.v2", number)
            waiting[body["id"]] = asyncio.Event()
            started = time.perf_counter()
            async with session.post(endpoint, json=body) as response:
                assert response.status < 300, await response.text()
            if body["id"] not in arrived:
                await waiting[body["id"]].wait()
            latencies.append(arrived[body["id"]] - started)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(conversation(session, index) for index in range(conversations)))
    connector.activities = original
    return latencies


def percentiles(values: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=100)
    return cuts[49] * 1000, cuts[94] * 1000, cuts[98] * 1000


async def main() -> None:
    connector = FakeTeamsConnector()
    await connector.start()
    with tempfile.TemporaryDirectory() as raw:
        folder = Path(raw)
        database = Database(f"sqlite:///{folder}/bench.db")
        await database.migrate()
        await apply_file(database, FIXTURES / "teams_tenant.yaml")
        settings = Settings(
            database_url="sqlite:///unused",
            secret_key="bench-secret-0123456789-abcdefghij",  # type: ignore[arg-type]
            secret_key_file=folder / "k",
            run_workflows=False,
            bot_allow_anonymous=True,
            bot_allow_http_loopback=True,
            bot_allowed_service_hosts=["127.0.0.1"],
        )
        clock = type("Clock", (), {"now": lambda self: datetime(2026, 11, 23, 12, tzinfo=UTC)})()
        bot_runner, bot_endpoint = await serve(
            create_app(settings, overrides=Overrides(database=database, clock=clock))
        )
        echo_runner, echo_endpoint = await serve(echo_app(connector.url))
        await drive(bot_endpoint, connector, "warm-bot")
        await drive(echo_endpoint, connector, "warm-echo")
        # One conversation at a time: no queue, so this is each side's own time per message.
        echo_alone = await drive(echo_endpoint, connector, "echo-alone", conversations=1, messages=200)
        bot_alone = await drive(bot_endpoint, connector, "bot-alone", conversations=1, messages=200)
        echo = await drive(echo_endpoint, connector, "echo")
        bot = await drive(bot_endpoint, connector, "bot")
        echo_again = await drive(echo_endpoint, connector, "echo2")
        echo += echo_again
        refused = len(connector.rejections)
        await bot_runner.cleanup()
        await echo_runner.cleanup()
        await database.dispose()
    await connector.close()
    e50, e95, e99 = percentiles(echo)
    b50, b95, b99 = percentiles(bot)
    print(f"Message -> card at the connector, {CONVERSATIONS} concurrent conversations x {MESSAGES} messages")
    print(f"  bare aiohttp echo: p50 {e50:.1f} ms  p95 {e95:.1f} ms  p99 {e99:.1f} ms  ({len(echo)} messages)")
    print(f"  Slotwise bot:      p50 {b50:.1f} ms  p95 {b95:.1f} ms  p99 {b99:.1f} ms  ({len(bot)} messages)")
    print(f"  ratio p50 {b50 / e50:.2f}x  p95 {b95 / e95:.2f}x  p99 {b99 / e99:.2f}x   target <= 4x")
    e1, b1 = statistics.median(echo_alone) * 1000, statistics.median(bot_alone) * 1000
    print(f"  one conversation at a time: echo p50 {e1:.2f} ms, bot p50 {b1:.2f} ms ({b1 / e1:.1f}x)")
    print(f"  connector refusals (rate limits): {refused}")


if __name__ == "__main__":
    asyncio.run(main())
