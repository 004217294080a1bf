"""Runs the Microsoft 365 Agents Playground (the Teams client emulator) headless and drives its chat with Playwright.

What the playground does, measured with @microsoft/m365agentsplayground 0.2.28 and an Agents SDK 1.9.0 bot in
anonymous mode (2026-11-24; probe tests kept outside the repo):

a. It POSTs with no Authorization header. Every activity has channelId "msteams",
   serviceUrl "http://localhost:<port>/_connector" (host "localhost", so the bot's service-URL allow-list must take
   http loopback), conversation {conversationType "personal", tenantId, id} and recipient {id, name} (the config's bot).
   - message: from {id, name, aadObjectId} (no email), text, textFormat "plain", locale "en-US", localTimestamp,
     localTimezone, entities [{type "clientInfo", locale "en-US", country "US", platform "Web", timezone}] and
     channelData {tenant {id}}. The zone is the playground process's own zone, so `timezone=` sets TZ.
     Locale and country are fixed.
   - Every page load (not the playground's start) sends installationUpdate (action "add") and then conversationUpdate
     (membersAdded [{id, aadObjectId} of the user, {id} of the bot]). Their `from` has no name.
     installationUpdate has entities [{type "clientInfo", locale}] and channelData {tenant, source {name "message"},
     settings {selectedChannel {id}}}. conversationUpdate has channelData {tenant} and no entities.
   - Email and UPN reach the bot only from the roster: GET {serviceUrl}/v3/conversations/{id}/members/{from.id}.
     Asking by aadObjectId gets 404 MemberNotFoundInConversation, though Teams accepts it.
b. Action.Execute sends invoke "adaptiveCard/action" with value {action {type, title, verb, data}}: the card's inputs
   are merged into data. There is NO "trigger" (Teams sends "manual"). replyToId is the card message's id, and
   channelData is {source {name "message"}, tenant}.
   The answer {"statusCode":200,"type":"application/vnd.microsoft.card.adaptive","value":card} replaces the card in
   place: same position, no new message, and "Your response was sent to the app" appears under it (outside
   .ac-adaptiveCard). `wait_for_card` pins the card's position, so `expect(card).to_contain_text(new)` detects the
   swap. When an invoke fails (SDK 501 for an unrouted verb, or an exception) the card shows nothing.
   Look at `Playground.traffic`.
c. Action.ShowCard expands on click. Its Input.Text is fillable, and the value arrives in value.action.data beside
   the action's own data. These inputs arrive too: ChoiceSet compact (a Fluent combobox) and expanded (radios),
   Date "YYYY-MM-DD", multi-line Text, Toggle "true", and isRequired inputs.
d. Action.Submit with data.msteams {type messageBack or imBack} sends NOTHING. The page throws "Cannot add property
   msTeams, object is not extensible". To exercise the bot's side, type the text instead: it arrives as the same
   message. A plain Action.Submit sends a message with value = data, no text, a replyToId and channelData
   {source {name "message"}, tenant}. String `data` arrives as value {}.
e. Replies sent with send_activity (reply to the activity) show up. The playground assigns the ids. update_activity
   (PUT) answers 200 and replaces the card or text in place. The page's POST of a user message is answered
   before the bot has handled it.
f. The manifest is not read, but the compose box's "Trigger Message Extension App" -> "Search Command" panel asks for
   a command id and a parameter name. It then sends invoke composeExtension/query with value {commandId,
   parameters [{name, value}], queryOptions {skip 0, count 25}, commandContext "compose", context {theme "default"}}
   and channelData {source {name "compose"}, tenant}, and lists the result previews. Its server also relays
   fetchTask, submitAction and queryLink.
Config: `.m365agentsplayground.yml` in its cwd sets the tenant id, the current user (id, name, aadObjectId, email,
UPN), the bot's id and name, and the personal chat id. The file must be complete: every section, and exactly five
other users. `PlaygroundIdentity` writes one; JSON is valid YAML. GET /_internal/v1/config, and so the UI, waits
until a HEAD to the bot's endpoint gets any answer (the playground gives up after 15 s), so start the bot first.
Each page load shows an empty chat, while the conversation id stays the same.
Timing on 2 busy cores: playground ready in 0.7-0.8 s, chromium 0.5 s, `open_chat` 2.2-3 s (9 MB of scripts),
send to card 0.3 s. A scenario from cold takes about 4-4.5 s; `reload_chat` takes 0.7-0.9 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Locator, Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

REPO_ROOT = Path(__file__).resolve().parents[2]
PLAYGROUND_CLI = REPO_ROOT / "node_modules" / "@microsoft" / "m365agentsplayground" / "cli.js"
CONFIG_FILE_NAME = ".m365agentsplayground.yml"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

COMPOSE_BOX = '[data-lexical-editor="true"][contenteditable="true"]'
"""The compose box is a Lexical contenteditable, not an <input>: `get_by_placeholder` does not find it."""
CARD = ".ac-adaptiveCard:not(.ac-adaptiveCard .ac-adaptiveCard)"
"""Top-level Adaptive Cards only: an expanded Action.ShowCard renders a nested `.ac-adaptiveCard` inside its parent."""
BOT_MESSAGE = ".fai-OutputCard"
"""Every bot message (text or card) sits in a Fluent `OutputCard`; the user's own bubbles and the chat list don't."""

APP = "User Application"
"""How the playground's traffic log names the bot; the other side is "Microsoft 365 Agents Playground"."""

_INHERITED_SETTINGS = re.compile(
    r"^(AUTH_|M365_AGENTS_PLAYGROUND_|TEAMSAPPTESTER_|TEAMS_APP_TEST_TOOL_|BOT_ENDPOINT$|DEFAULT_CHANNEL_ID$|"
    r"SEND_INSTALLATION_ACTIVITY$|HTTPS?_PROXY$)",
    re.IGNORECASE,
)
"""Variables the playground reads besides its flags. A developer's own values would change what a test sees
(AUTH_CLIENT_ID makes it send tokens; a proxy would carry its loopback calls to the bot), so the child never gets
them."""


class PlaygroundError(AssertionError):
    """The playground or its chat did not do what the test expected; the message carries the evidence."""


@dataclass(frozen=True)
class PlaygroundUser:
    """A mock Microsoft 365 user as the playground's config file describes one."""

    aad_object_id: str
    name: str
    email: str
    id: str = "user-id-0"
    """The Teams channel account id (`from.id`); real Teams uses `29:...`. Any unique string works."""
    user_principal_name: str = ""
    """Defaults to the email."""

    def to_config(self) -> dict[str, str]:
        given, _, surname = self.name.partition(" ")
        return {
            "id": self.id,
            "name": self.name,
            "userPrincipleName": self.user_principal_name or self.email,  # sic: the playground's schema spells it so
            "aadObjectId": self.aad_object_id,
            "givenName": given,
            "surname": surname or given,
            "email": self.email,
        }

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> PlaygroundUser:
        return cls(
            aad_object_id=str(raw.get("aadObjectId", "")),
            name=str(raw.get("name", "")),
            email=str(raw.get("email", "")),
            id=str(raw.get("id", "")),
            user_principal_name=str(raw.get("userPrincipleName", "")),
        )


_DEFAULT_COLLEAGUES = [
    PlaygroundUser(f"00000000-0000-4000-8000-00000000002{n}", name, email, id=f"user-id-{n}")
    for n, (name, email) in enumerate(
        [
            ("Megan Bowen", "meganb@example.com"),
            ("Adele Vance", "adelev@example.com"),
            ("Isaiah Langer", "isaiahl@example.com"),
            ("Patti Fernandez", "pattif@example.com"),
            ("Lynne Robbins", "lynner@example.com"),
        ],
        start=1,
    )
]


@dataclass(frozen=True)
class PlaygroundIdentity:
    """Who the emulated Teams user is, written to `.m365agentsplayground.yml` so a test can map them to its own user.

    The file replaces the playground's whole built-in config (its schema requires every section and exactly five
    other users), so the rest is filled in here.
    """

    tenant_id: str
    user: PlaygroundUser
    bot_id: str = "00000000-0000-0000-0000-00000000000011"
    bot_name: str = "Test Bot"
    personal_chat_id: str = field(default_factory=lambda: f"a:{uuid.uuid4()}")
    colleagues: tuple[PlaygroundUser, ...] = tuple(_DEFAULT_COLLEAGUES)

    def to_config(self) -> dict[str, Any]:
        if len(self.colleagues) != 5:
            raise ValueError("the playground's config schema demands exactly five users besides the current one")
        return {
            "version": "0.1.1",
            "tenantId": self.tenant_id,
            "bot": {"id": self.bot_id, "name": self.bot_name},
            "currentUser": self.user.to_config(),
            "users": [colleague.to_config() for colleague in self.colleagues],
            "personalChat": {"id": self.personal_chat_id},
            "groupChat": {"id": f"19:{uuid.uuid4().hex}@thread.v2", "name": "Group Chat"},
            "team": {
                "id": f"19:{uuid.uuid4().hex}@thread.tacv2",
                "name": "My Team",
                "aadGroupId": str(uuid.uuid4()),
                "channels": [],
            },
        }


@dataclass
class Playground:
    """A running playground: where it listens, who the user is, and every exchange it logged with the bot."""

    base_url: str
    port: int
    tenant_id: str
    current_user: PlaygroundUser
    bot_id: str
    bot_name: str
    personal_chat_id: str
    timezone: str
    """The IANA zone the playground puts in `entities[clientInfo].timezone` and `localTimezone`."""
    config: dict[str, Any]
    """The raw body of `GET /_internal/v1/config` (`config` plus `internalConfig`)."""
    workdir: Path
    traffic: list[dict[str, Any]] = field(default_factory=list)
    """The playground's own log stream (`/_ws/log/stream`), one dict per item. Exchanges with the bot carry
    `activityName`, `from`, `to`, `request.body` and `response.statusCode`/`body`; notices have `displayText`."""
    _output: Path | None = None
    _traffic_changed: asyncio.Event = field(default_factory=asyncio.Event)

    def activities_to_bot(self) -> list[dict[str, Any]]:
        """The activities the playground POSTed to the bot, oldest first."""
        return [item["request"]["body"] for item in self.traffic if item.get("to") == APP and "request" in item]

    def activities_from_bot(self) -> list[dict[str, Any]]:
        """The activities the bot sent to the playground's connector (replies, updates), oldest first."""
        return [item["request"]["body"] for item in self.traffic if item.get("from") == APP and "request" in item]

    async def wait_for_exchange(
        self, matches: Callable[[dict[str, Any]], bool], *, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """The first logged exchange or notice that `matches`, waiting for it if need be."""
        deadline = time.monotonic() + timeout_s
        while True:
            for item in self.traffic:
                if matches(item):
                    return item
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PlaygroundError(f"no matching exchange within {timeout_s} s\n{self.describe()}")
            self._traffic_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._traffic_changed.wait(), remaining)

    def traffic_summary(self, last: int = 30) -> str:
        """One line per logged item, e.g. `playground -> bot invoke 501 adaptiveCard/action`."""
        lines = []
        for item in self.traffic[-last:]:
            if "activityName" in item:
                direction = "bot -> playground" if item.get("from") == APP else "playground -> bot"
                status = (item.get("response") or {}).get("statusCode", "?")
                body = (item.get("request") or {}).get("body") or {}
                detail = body.get("name") or (body.get("text") or "")[:80]
                lines.append(f"{direction} {item['activityName']} {status} {detail}".rstrip())
            elif "displayText" in item:
                lines.append(f"note: {item['displayText']}")
        return "\n".join(lines)

    def log(self, tail: int = 4000) -> str:
        """The end of the CLI's own output and of ./devTools/m365agentsplayground.log."""
        parts = []
        for path in (self._output, self.workdir / "devTools" / "m365agentsplayground.log"):
            if path is not None and path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def describe(self) -> str:
        """Evidence for a failure message: the traffic with the bot and the playground's log."""
        return f"--- traffic with the bot\n{self.traffic_summary()}\n{self.log(1500)}"

    def _record(self, item: dict[str, Any]) -> None:
        self.traffic.append(item)
        self._traffic_changed.set()


def _free_port() -> int:
    # The playground binds every interface, so the probe does too.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


def _child_environment(timezone: str | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not _INHERITED_SETTINGS.match(key)}
    env["TEAMSAPPTESTER_BROWSER"] = "none"
    # With telemetry off the playground still probes Azure IMDS and DNS unless statsbeat is off too.
    env["APPLICATION_INSIGHTS_NO_STATSBEAT"] = "true"
    if timezone:
        # The playground guesses the user's zone from its own process (dayjs.tz.guess), so TZ sets it.
        env["TZ"] = timezone
    return env


def _prepare_workdir(workdir: Path, identity: PlaygroundIdentity | None) -> Path:
    if identity is not None:
        # YAML is a superset of JSON, and JSON needs no quoting rules of our own.
        (workdir / CONFIG_FILE_NAME).write_text(json.dumps(identity.to_config(), indent=2))
    return workdir / "playground.out"


def _listening_port(output: Path) -> int | None:
    if not output.exists():
        return None
    found = re.search(r"Listening on (\d+)", output.read_text(errors="replace"))
    return int(found.group(1)) if found else None


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        process.kill()
        await process.wait()


async def _follow_log_stream(session: aiohttp.ClientSession, url: str, playground: Playground) -> None:
    async with session.ws_connect(url, heartbeat=None) as stream:
        async for frame in stream:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            if message.get("logAction") == "appendLog" and isinstance(message.get("log"), dict):
                playground._record(message["log"])


@asynccontextmanager
async def running_playground(
    bot_endpoint: str,
    *,
    port: int | None = None,
    identity: PlaygroundIdentity | None = None,
    timezone: str | None = None,
    startup_timeout_s: float = 30.0,
) -> AsyncIterator[Playground]:
    """Start the playground against `bot_endpoint` (e.g. `http://127.0.0.1:3978/api/messages`), yield it, stop it.

    `identity` writes `.m365agentsplayground.yml` into the playground's working directory; `timezone` (IANA)
    becomes the zone in every activity's clientInfo. The bot must accept requests without an Authorization header
    (Agents SDK: `CONNECTIONS__SERVICE_CONNECTION__SETTINGS__ANONYMOUS_ALLOWED=true`) and must be willing to
    reply to `serviceUrl` `http://localhost:<port>/_connector`. Start the bot first: the playground answers its
    config (and so its UI) only once the bot's endpoint answers. An exception raised inside the block gets the
    traffic with the bot and the playground's log attached as a note.
    """
    if not PLAYGROUND_CLI.is_file():
        raise PlaygroundError(f"{PLAYGROUND_CLI} is missing: run scripts/bootstrap (it runs `npm ci`) first")
    node = shutil.which("node")
    if node is None:
        raise PlaygroundError("node is not on PATH; the playground needs Node 20 or later")
    with tempfile.TemporaryDirectory(prefix="playground-") as tmp:
        workdir = Path(tmp)  # the playground writes ./devTools/ and reads its config file from its cwd
        output = _prepare_workdir(workdir, identity)
        sink = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            # `node cli.js` rather than npx: npx leaves node as a separate process that outlives a kill of npx.
            process = await asyncio.create_subprocess_exec(
                node,
                str(PLAYGROUND_CLI),
                "-e",
                bot_endpoint,
                "-c",
                "msteams",
                "--disable-telemetry",
                "-p",
                str(port or _free_port()),
                cwd=workdir,
                env=_child_environment(timezone),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        finally:
            os.close(sink)
        follower: asyncio.Task[None] | None = None
        try:
            async with aiohttp.ClientSession() as session:
                playground = await _wait_until_ready(process, session, bot_endpoint, workdir, output, startup_timeout_s)
                # The playground buffers its log until a first client connects, so nothing since start is lost.
                follower = asyncio.create_task(
                    _follow_log_stream(session, f"ws://127.0.0.1:{playground.port}/_ws/log/stream", playground)
                )
                await _confirm_log_stream(playground, follower, bot_endpoint)
                try:
                    yield playground
                except Exception as failure:
                    # Whatever failed in the test body (an `expect`, a helper, an assert), the traffic with the bot
                    # is usually what explains it, and the working directory is gone once this block exits.
                    failure.add_note(playground.describe())
                    raise
        finally:
            if follower is not None:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                    await follower
            await _stop(process)


async def _confirm_log_stream(playground: Playground, follower: asyncio.Task[None], bot_endpoint: str) -> None:
    # "Connected." is among the first items the playground logs, once its HEAD probe of the bot got any answer.
    # The probe gives up after 15 s, and the playground then carries on without the bot.
    try:
        verdict = await playground.wait_for_exchange(
            lambda item: str(item.get("displayText", "")).startswith(("Connected.", "Cannot connect")), timeout_s=5
        )
    except PlaygroundError:
        if follower.done() and follower.exception() is not None:
            raise PlaygroundError(f"could not follow the playground's log stream: {follower.exception()!r}") from None
        raise
    if verdict["displayText"] != "Connected.":
        raise PlaygroundError(f"the playground could not reach the bot at {bot_endpoint}\n{playground.describe()}")


async def _wait_until_ready(
    process: asyncio.subprocess.Process,
    session: aiohttp.ClientSession,
    bot_endpoint: str,
    workdir: Path,
    output: Path,
    timeout_s: float,
) -> Playground:
    deadline = time.monotonic() + timeout_s

    def failure(reason: str) -> PlaygroundError:
        text = output.read_text(errors="replace")[-4000:] if output.exists() else ""
        return PlaygroundError(f"the playground did not start: {reason}\n--- its output\n{text}")

    # The CLI says "fallback to random if occupied" about -p, so the port it prints is the truth.
    while (port := _listening_port(output)) is None:
        if process.returncode is not None:
            raise failure(f"it exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise failure(f"no 'Listening on' line within {timeout_s} s")
        await asyncio.sleep(0.05)
    base_url = f"http://127.0.0.1:{port}"
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{base_url}/_debug/ping", timeout=aiohttp.ClientTimeout(total=2)) as ping:
                if ping.status == 200 and (await ping.text()).strip() == "pong":
                    break
        if process.returncode is not None:
            raise failure(f"it exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise failure(f"GET /_debug/ping did not answer pong within {timeout_s} s")
        await asyncio.sleep(0.05)
    try:
        # It holds this request until the bot's endpoint answers (it polls it with HEAD; any status will do).
        wait = aiohttp.ClientTimeout(total=max(deadline - time.monotonic(), 1))
        async with session.get(f"{base_url}/_internal/v1/config", timeout=wait) as answer:
            raw = await answer.json()
    except TimeoutError:
        raise failure(f"it could not reach the bot at {bot_endpoint} within {timeout_s} s") from None
    config = raw["config"]
    return Playground(
        base_url=base_url,
        port=port,
        tenant_id=config["tenantId"],
        current_user=PlaygroundUser.from_config(config["currentUser"]),
        bot_id=config["bot"]["id"],
        bot_name=config["bot"]["name"],
        personal_chat_id=config["personalChat"]["id"],
        timezone=raw.get("internalConfig", {}).get("localTimezone", ""),
        config=raw,
        workdir=workdir,
        _output=output,
    )


def _require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        raise PlaygroundError("Debian chromium is not installed: run scripts/bootstrap --browser")


@asynccontextmanager
async def launched_chromium() -> AsyncIterator[Browser]:
    """Debian's chromium, headless, through Playwright (its own browser downloads are blocked here)."""
    _require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def open_chat(browser: Browser, playground: Playground, *, timeout_s: float = 20.0) -> Page:
    """A new page on the playground's personal chat with the bot, once the bot has been told it was installed.

    Every page load makes the playground send `installationUpdate` (action add) and `conversationUpdate`
    (membersAdded: user and bot) to the bot, and starts with an empty chat; a welcome card the bot sends in
    answer will show up on this page.
    """
    context = await browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
    # Playwright's 30 s default makes a broken scenario slow to report; nothing here legitimately takes 10 s.
    context.set_default_timeout(10_000)
    page = await context.new_page()
    await _load_chat(page, playground, page.goto(f"{playground.base_url}/", wait_until="domcontentloaded"), timeout_s)
    return page


async def reload_chat(page: Page, playground: Playground, *, timeout_s: float = 20.0) -> None:
    """Start over on an empty chat in the same page: about 1 s instead of 3 s for a new page (cached scripts).

    The conversation id stays the same, so the bot's conversation state carries over; the install activities
    are sent again.
    """
    await _load_chat(page, playground, page.reload(wait_until="domcontentloaded"), timeout_s)


async def _load_chat(page: Page, playground: Playground, navigation: Awaitable[Any], timeout_s: float) -> None:
    async with page.expect_response(
        lambda response: response.request.method == "POST" and response.url.endswith("/installation"),
        timeout=timeout_s * 1000,
    ) as installed:
        await navigation
    if not (await installed.value).ok:
        raise PlaygroundError(f"the playground could not install the bot\n{playground.describe()}")
    await page.locator(COMPOSE_BOX).last.wait_for(timeout=timeout_s * 1000)


async def send_message(page: Page, text: str, *, timeout_s: float = 10.0) -> None:
    """Type `text` into the compose box and press Enter, as a user would.

    The playground answers the page's POST before the bot has handled the message, so this returns as soon as
    the message is on its way; wait for the bot's answer with `wait_for_card` or `wait_for_bot_text`.
    """
    box = page.locator(COMPOSE_BOX).last
    await box.click()
    await page.keyboard.insert_text(text)
    async with page.expect_response(
        lambda response: (
            response.request.method == "POST"
            and "/_conversation/v1/conversations/" in response.url
            and response.url.endswith("/messages")
        ),
        timeout=timeout_s * 1000,
    ) as posted:
        await box.press("Enter")
    response = await posted.value
    if not response.ok:
        raise PlaygroundError(f"the playground refused {text!r}: HTTP {response.status} {await response.text()}")


_NEWEST_MATCH = """([selector, needle, after]) => {
  const norm = (s) => (s || "").replace(/\\s+/g, " ").trim();
  const wanted = norm(needle);
  const found = Array.from(document.querySelectorAll(selector));
  for (let i = found.length - 1; i >= after; i--) {
    if (norm(found[i].innerText).includes(wanted)) return i + 1;
  }
  return 0;
}"""


async def _newest(page: Page, selector: str, what: str, containing: str, after: int, timeout_s: float) -> Locator:
    try:
        handle = await page.wait_for_function(
            _NEWEST_MATCH, arg=[selector, containing, after], timeout=timeout_s * 1000
        )
    except PlaywrightTimeoutError:
        shown = await page.locator(BOT_MESSAGE).all_inner_texts()
        recent = "\n".join(f"  - {' '.join(text.split())[:200]}" for text in shown[-6:]) or "  (none)"
        raise PlaygroundError(
            f"no {what} containing {containing!r} appeared within {timeout_s:g} s. The bot's latest messages:\n{recent}"
        ) from None
    # Pin the element by position: messages are only ever appended, and a card refreshed by an invoke
    # response or an update keeps its place, so the locator keeps pointing at it when its text changes.
    return page.locator(selector).nth(int(await handle.json_value()) - 1)


async def count_cards(page: Page) -> int:
    """How many top-level cards the chat shows; pass it as `after=` to demand a card newer than these."""
    return await page.locator(CARD).count()


async def count_bot_messages(page: Page) -> int:
    return await page.locator(BOT_MESSAGE).count()


async def wait_for_card(page: Page, containing: str, *, timeout_s: float = 10.0, after: int = 0) -> Locator:
    """The newest top-level Adaptive Card whose text contains `containing` (whitespace-normalised).

    The locator is pinned to that card's position, so after an Action.Execute it still finds the card once the
    bot's invoke response has replaced its content: `await expect(card).to_contain_text("Booked")`.
    """
    return await _newest(page, CARD, "card", containing, after, timeout_s)


async def wait_for_bot_text(page: Page, containing: str, *, timeout_s: float = 10.0, after: int = 0) -> Locator:
    """The newest bot message (text or card) whose text contains `containing`."""
    return await _newest(page, BOT_MESSAGE, "bot message", containing, after, timeout_s)


async def click_card_button(card: Locator, name: str) -> None:
    """Click a card action by its title: Action.Execute, Action.Submit, Action.ShowCard (expands it), OpenUrl."""
    await card.get_by_role("button", name=name, exact=True).click()


async def fill_card_input(card: Locator, label: str, value: str) -> None:
    """Type into an Input.Text (single or multi-line), Input.Number or Input.Date (value `YYYY-MM-DD`) by its label.

    Inputs inside an expanded Action.ShowCard belong to the outer card's locator too.
    """
    # By role and accessible name: AC's required-field marker makes `get_by_label(exact=True)` miss the label.
    field = (
        card.get_by_role("textbox", name=label, exact=True)
        .or_(card.get_by_role("spinbutton", name=label, exact=True))
        .or_(card.get_by_role("combobox", name=label, exact=True))
    )
    await field.fill(value)
    if await field.get_attribute("aria-haspopup") == "dialog":
        # Input.Date is a Fluent date picker: Enter commits the typed date, Escape closes its calendar,
        # which otherwise covers (and hides from the accessibility tree) the buttons below it.
        await field.press("Enter")
        await field.press("Escape")


async def choose_card_option(card: Locator, label: str, option: str) -> None:
    """Pick `option` (a choice's title) in the Input.ChoiceSet labelled `label`, compact or expanded."""
    dropdown = card.get_by_role("combobox", name=label, exact=True)
    if await dropdown.count():
        await dropdown.click()
        # Fluent renders the list in a popup outside the card.
        await card.page.get_by_role("option", name=option, exact=True).click()
        return
    await card.get_by_role("radiogroup", name=label, exact=True).get_by_role("radio", name=option, exact=True).check()


async def set_card_toggle(card: Locator, title: str, on: bool = True) -> None:
    """Tick or clear an Input.Toggle by its title (it submits "true"/"false" as strings)."""
    # The checkbox's accessible name is "<label> <title>" when the toggle also has a label.
    name = re.compile(rf"(^|\s){re.escape(title)}$")
    await card.get_by_role("checkbox", name=name).set_checked(on)
