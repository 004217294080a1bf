"""The Teams bot on the Microsoft 365 Agents SDK: `/api/messages`, its routes, and the turn-to-card plumbing.

`/api/messages` authenticates every activity itself (bot/auth.py: signature, audience, issuer, channel endorsement,
serviceUrl claim) before the SDK sees it, refuses service URLs outside the allow-list, and turns malformed input into
4xx answers. Routes resolve the caller to a Slotwise user of the tenant bound to their Microsoft 365 tenant, then
hand over to bot/handlers.py, which returns cards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any, cast
from zoneinfo import ZoneInfo

import aiohttp
import pydantic
from aiohttp import web
from microsoft_agents.activity import (
    Activity,
    ActivityEventNames,
    ActivityTypes,
    AdaptiveCardInvokeResponse,
    Attachment,
    InvokeResponse,
)
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.core import (
    AgentApplication,
    ApplicationOptions,
    MemoryStorage,
    TurnContext,
    TurnState,
)
from microsoft_agents.hosting.core.app._routes import RouteRank
from microsoft_agents.hosting.msteams import TeamsAgentExtension
from microsoft_teams.api.models.messaging_extension import MessagingExtensionQuery, MessagingExtensionResponse

from bot.auth import BotAuthError, BotAuthSettings, InboundAuthenticator, MsalConnections
from bot.connector_pool import PooledClientFactory
from bot.handlers import ChatService, not_set_up_card, notice_card
from bot.identity import caller_from_activity, zone_for
from bot.proactive import (
    ADAPTIVE_CARD,
    TeamsNotifier,
    retry_after_of,
    teams_thread_key,
    teams_thread_limiter,
    teams_thread_windows,
)
from cards.text import set_reader_locale
from scheduling.model import TeamsIdentity
from scheduling.ports import TeamsDirectory, VendorLimits

log = logging.getLogger(__name__)
MAX_ACTIVITY_BYTES = 256 * 1024
"""Teams caps a message at about 28 KB; invokes carry a card's inputs. Anything far larger is not from Teams."""
REPLY_PATIENCE = 5.0
"""Seconds a reply may wait for Teams' per-conversation window before it is given up (and logged)."""
PERSONAL_CHAT_LINK = "https://teams.microsoft.com/l/chat/0/0?"
"""Teams deep link that opens a 1:1 chat; `users=28:{bot app id}` makes it the chat with this bot."""
BOOKING_LINKS_COMMAND = "bookingLinks"
"""The message extension's search command id, as declared in manifest/manifest.template.json."""


class SlotwiseBot:
    """One bot per process: the SDK adapter and application, our authenticator, and the proactive notifier."""

    def __init__(
        self,
        auth: BotAuthSettings,
        chat: ChatService,
        directory: TeamsDirectory,
        *,
        limits: VendorLimits | None = None,
    ) -> None:
        self.auth = auth
        self.chat = chat
        self.directory = directory
        _cache_sdk_product_info()
        # Without an app id (local development) the SDK warns on every turn that its user-token client has none;
        # we use no user sign-in, so that line is noise in every log.
        logging.getLogger("microsoft_agents.hosting.core.connector.client.user_token_client").setLevel(logging.ERROR)
        self.connections = MsalConnections(auth)
        self.clients = PooledClientFactory(self.connections)
        self.adapter = CloudAdapter(connection_manager=self.connections, channel_service_client_factory=self.clients)
        self.adapter.on_turn_error = self._on_turn_error
        self.agent = AgentApplication[TurnState](
            ApplicationOptions(storage=MemoryStorage(), start_typing_timer=False, bot_app_id=auth.app_id or ""),
            connection_manager=self.connections,
        )
        hooks_before = list(self.agent._internal_before_turn)
        self.teams = TeamsAgentExtension[TurnState](self.agent)
        # The extension's before-turn hook builds an httpx Teams API client (with its own connection pool) on every
        # Teams turn, ~2 ms of event-loop time; no handler here calls the Teams API, so the hook is left out.
        self.agent._internal_before_turn[:] = hooks_before
        self.limiter = teams_thread_limiter()
        # Shared with every process on a PostgreSQL database when given (Teams' per-chat limits are per chat, not
        # per process); this process's own windows otherwise.
        self.limits = limits
        self.notifier = TeamsNotifier(self.adapter, auth, directory, self.limiter, clients=self.clients, limits=limits)
        self._authenticator: InboundAuthenticator | None = None
        self._saved_references: dict[tuple[str, str], tuple[str, str, str | None]] = {}
        self._register_routes()

    # ------------------------------------------------------------------ HTTP

    def start(self, session: aiohttp.ClientSession) -> None:
        # InboundAuthenticator logs a loud warning when anonymous mode is on.
        self._authenticator = InboundAuthenticator(self.auth, session)

    async def handle_messages(self, request: web.Request) -> web.StreamResponse:
        if self._authenticator is None:
            return _error(503, "NotReady", "The bot is starting; try again in a moment")
        if request.content_length is not None and request.content_length > MAX_ACTIVITY_BYTES:
            return _error(413, "TooLarge", "The activity is too large")
        try:
            raw = await request.content.read(MAX_ACTIVITY_BYTES + 1)
        except aiohttp.ClientPayloadError:
            return _error(400, "BadBody", "The request body could not be read")
        if len(raw) > MAX_ACTIVITY_BYTES:
            return _error(413, "TooLarge", "The activity is too large")
        try:
            activity = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "BadJson", "The body is not valid JSON")
        problem = _shape_problem(activity)
        if problem:
            return _error(400, "BadActivity", problem)
        if "localTimezone" in activity and not (
            isinstance(activity["localTimezone"], str) and activity["localTimezone"].strip()
        ):
            # A client that reports no zone (""): the SDK's model refuses the whole activity for it, yet the user
            # is only missing a zone, and bot/identity.py falls back to their profile zone.
            del activity["localTimezone"]
            raw = json.dumps(activity).encode()
        try:
            # Also refuses a serviceUrl outside the allow-list (403), anonymous or not.
            claims = await self._authenticator.authenticate(request.headers.get("Authorization"), activity)
        except BotAuthError as exc:
            if exc.status == 503:
                unavailable = _error(503, "Unavailable", str(exc))
                unavailable.headers["Retry-After"] = "10"
                return unavailable
            return _error(exc.status, "Unauthorized" if exc.status == 401 else "Refused", str(exc))
        request["claims_identity"] = claims
        # The SDK reads the body again through the request; hand it the bytes we already checked.
        request._read_bytes = raw
        try:
            response = await self.adapter.process(request, self.agent)
        except pydantic.ValidationError as exc:
            return _error(400, "BadActivity", f"The activity has invalid fields ({exc.error_count()} problems)")
        return response if response is not None else web.Response(status=202)

    # ------------------------------------------------------------------ routes

    def _register_routes(self) -> None:
        agent = self.agent

        @agent.conversation_update("membersAdded")
        async def on_members_added(context: TurnContext, _state: TurnState) -> None:
            # The welcome card names the user and their commands: it goes to a personal install only. In a group
            # chat or channel it would greet everyone on behalf of whoever installed the app, and membersAdded
            # fires there for every colleague who joins.
            if _conversation_type(context) != "personal":
                return
            identity, _zone = await self._identify(context)
            await self._reply(context, self.chat.welcome(identity) if identity else not_set_up_card())

        @agent.activity("installationUpdate")
        async def on_installation(context: TurnContext, _state: TurnState) -> None:
            await self._identify(context)

        @agent.activity(ActivityTypes.message)
        async def on_message(context: TurnContext, _state: TurnState) -> None:
            identity, zone = await self._identify(context)
            if identity is None:
                await self._reply(context, not_set_up_card())
                return
            text = context.activity.text or ""
            await self._reply(
                context,
                await self._guard(
                    self.chat.reply_to_text(identity, text, zone, personal_chat_url=self._shared_chat_link(context))
                ),
            )

        @agent.adaptive_card.action_execute(re.compile(r"^[A-Za-z]{1,40}$"))
        async def on_execute(context: TurnContext, _state: TurnState, data: Any) -> AdaptiveCardInvokeResponse:
            identity, zone = await self._identify(context)
            if identity is None:
                card = not_set_up_card()
            else:
                value = context.activity.value if isinstance(context.activity.value, dict) else {}
                verb = str((value.get("action") or {}).get("verb", ""))
                card = await self._guard(
                    self.chat.execute(
                        identity,
                        verb,
                        data if isinstance(data, dict) else {},
                        zone,
                        personal_chat_url=self._shared_chat_link(context),
                    )
                )
            return AdaptiveCardInvokeResponse(status_code=200, type=ADAPTIVE_CARD, value=card)

        def malformed_query(context: TurnContext) -> bool:
            if context.activity.type != ActivityTypes.invoke or context.activity.name != "composeExtension/query":
                return False
            try:
                MessagingExtensionQuery.model_validate(context.activity.value or {})
            except pydantic.ValidationError:
                return True
            return not isinstance(context.activity.value, dict)

        async def refuse_malformed_query(context: TurnContext, _state: TurnState) -> None:
            await _send_invoke(context, 400, {"error": {"code": "BadRequest", "message": "Malformed search request"}})

        agent.add_route(malformed_query, refuse_malformed_query, is_invoke=True, rank=RouteRank.FIRST)

        @self.teams.message_extensions.query(BOOKING_LINKS_COMMAND)
        async def on_search(
            context: Any, _state: TurnState, query: MessagingExtensionQuery
        ) -> MessagingExtensionResponse:
            identity, _zone = await self._identify(context)
            words = " ".join(
                str(parameter.value or "")
                for parameter in query.parameters or []
                if parameter.name not in ("initialRun",) and isinstance(parameter.value, str)
            )
            if identity is None:
                body: dict[str, Any] = {
                    "composeExtension": {
                        "type": "message",
                        "text": "You're not set up in Slotwise yet. Ask your Slotwise admin to add you.",
                    }
                }
            else:
                results = await self.chat.booking_links(identity, words[:200])
                body = {
                    "composeExtension": {
                        "type": "result",
                        "attachmentLayout": "list",
                        "attachments": [
                            {"contentType": ADAPTIVE_CARD, "content": card, "preview": preview}
                            for card, preview in results[:25]
                        ],
                    }
                }
            return cast(MessagingExtensionResponse, body)

        def any_invoke(context: TurnContext) -> bool:
            return context.activity.type == ActivityTypes.invoke

        async def unknown_invoke(context: TurnContext, _state: TurnState) -> None:
            name = (context.activity.name or "")[:80]
            await _send_invoke(
                context,
                400,
                {"error": {"code": "NotSupported", "message": f"Slotwise does not handle '{name}' requests"}},
            )

        agent.add_route(any_invoke, unknown_invoke, is_invoke=True, rank=RouteRank.LAST)

        def any_other_activity(context: TurnContext) -> bool:
            return context.activity.type != ActivityTypes.invoke

        async def ignore(_context: TurnContext, _state: TurnState) -> None:
            return None

        agent.add_route(any_other_activity, ignore, rank=RouteRank.LAST)

    # ------------------------------------------------------------------ identity

    async def _identify(self, context: TurnContext) -> tuple[TeamsIdentity | None, ZoneInfo]:
        activity = context.activity.model_dump(by_alias=True, exclude_none=True, mode="json")
        caller = caller_from_activity(activity)
        set_reader_locale(_locale_of(activity))
        identity = await self.directory.find_identity(caller.microsoft_tenant_id, caller.aad_object_id, None)
        if identity is None and caller.channel_user_id and caller.microsoft_tenant_id:
            email = await _member_email(context, caller.channel_user_id)
            if email:
                identity = await self.directory.find_identity(caller.microsoft_tenant_id, None, email)
        if identity is None:
            return None, zone_for(caller.time_zone, "UTC")
        if _conversation_type(context) == "personal":
            await self._remember_chat(context, identity, caller.time_zone)
        return identity, zone_for(caller.time_zone, identity.time_zone)

    async def _remember_chat(self, context: TurnContext, identity: TeamsIdentity, time_zone: str | None) -> None:
        """Keep the personal chat's reference for proactive cards; written only when it changed."""
        reference = context.activity.get_conversation_reference()
        conversation_id = reference.conversation.id if reference.conversation else ""
        key = (identity.tenant_id, identity.user_id)
        fingerprint = (conversation_id, reference.service_url or "", time_zone)
        if self._saved_references.get(key) == fingerprint:
            return
        stored = reference.model_dump(by_alias=True, exclude_none=True, mode="json")
        # A proactive send continues the chat rather than replying to this one message.
        stored.pop("activityId", None)
        await self.directory.save_conversation(identity.tenant_id, identity.user_id, stored, time_zone)
        self._saved_references[key] = fingerprint

    async def _reserve(self, conversation: str) -> float:
        """Seconds to wait before the next message to this chat may go (0: now), within Teams' per-chat limits."""
        if self.limits is not None:
            return await self.limits.reserve(teams_thread_key(conversation), teams_thread_windows())
        return self.limiter.reserve(conversation)

    async def _reply(self, context: TurnContext, card: dict[str, Any]) -> None:
        """Send a card into the conversation within Teams' per-conversation limits (shared with proactive cards).

        The user is waiting, so a full window is waited out (up to REPLY_PATIENCE seconds) rather than queued; a
        429 from Teams is retried once after its Retry-After. A reply that still cannot be delivered is logged as
        an error: the activity itself was received, so answering Teams with a 5xx would only make it redeliver."""
        conversation = context.activity.conversation.id if context.activity.conversation else ""
        message = Activity(
            type=ActivityTypes.message,
            attachments=[Attachment(content_type=ADAPTIVE_CARD, content=FrozenCard(card))],
        )
        waited = 0.0
        while (wait := await self._reserve(conversation)) > 0:
            if waited + wait > REPLY_PATIENCE:
                log.error("reply dropped: conversation %s is over Teams' message limits", conversation[:60])
                return
            await asyncio.sleep(wait)
            waited += wait
        for attempt in (1, 2):
            try:
                await context.send_activity(message)
                return
            except aiohttp.ClientResponseError as exc:
                retry_after = retry_after_of(exc) or 1.0
                if attempt == 1 and exc.status in (429, 502, 503, 504) and retry_after <= REPLY_PATIENCE:
                    await asyncio.sleep(retry_after)
                    continue
                log.error("reply to conversation %s failed: Teams answered %s", conversation[:60], exc.status)
                return
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.error("reply to conversation %s failed: %s", conversation[:60], type(exc).__name__)
                return

    def _shared_chat_link(self, context: TurnContext) -> str | None:
        """None in a personal chat. Anywhere else (group chat, channel, or a conversation Teams did not type), the
        deep link that opens the user's 1:1 chat with this bot, where cards with client data are shown instead.

        Format from Microsoft Teams docs ("Deep link to Teams chat" and "Copilot handoff", whose example is an
        Action.OpenUrl to https://teams.microsoft.com/l/chat/0/0?users=28:{botId}): a bot's chat id is its app id
        behind the "28:" prefix, which is also how Teams addresses the bot as the activity's recipient."""
        if _conversation_type(context) == "personal":
            return None
        bot_id = self.auth.app_id or ""
        recipient = context.activity.recipient.id if context.activity.recipient else None
        if not bot_id and isinstance(recipient, str) and recipient.startswith("28:"):
            bot_id = recipient[3:]
        return PERSONAL_CHAT_LINK + urllib.parse.urlencode({"users": f"28:{bot_id}"}, safe=":")

    async def _guard(self, work: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        """A card for the user whatever happens: an unexpected error is logged and shown as a short apology."""
        try:
            return await work
        except Exception:
            log.exception("bot handler failed")
            return _apology_card()

    async def _on_turn_error(self, context: TurnContext, error: Exception) -> None:
        """Replaces the SDK's default turn-error handler, which posts "Exception caught : {error}" into the chat
        (hosting/core/_http_adapter_base.py): exception text can name files, hosts and SQL. The error is logged; the
        user gets the same short apology as `_guard` gives, and an invoke gets an answer Teams can show.

        A proactive send (the continuation event of `continue_conversation`) re-raises instead, so the workflow
        step that sent it sees the failure and retries rather than counting a card nobody received as sent."""
        activity = context.activity
        if activity.type == ActivityTypes.event and activity.name == ActivityEventNames.continue_conversation:
            raise error
        log.error("bot turn failed on a %s activity", activity.type, exc_info=error)
        try:
            if activity.type == ActivityTypes.invoke:
                if context.turn_state.get(self.adapter.INVOKE_RESPONSE_KEY) is not None:
                    return
                if activity.name == "adaptiveCard/action":
                    body = {"statusCode": 200, "type": ADAPTIVE_CARD, "value": _apology_card()}
                    await _send_invoke(context, 200, body)
                else:
                    message = "Slotwise couldn't finish that request. Please try again in a minute."
                    await _send_invoke(context, 500, {"error": {"code": "InternalError", "message": message}})
            elif activity.type == ActivityTypes.message:
                await self._reply(context, _apology_card())
        except Exception:
            log.exception("could not tell the user that their request failed")


def _apology_card() -> dict[str, Any]:
    return notice_card(
        "Something went wrong on our side",
        "Slotwise couldn't finish that just now. Please try again in a minute.",
        tone="attention",
    )


async def _member_email(context: TurnContext, member_id: str) -> str | None:
    """The sender's email from the connector's member lookup; only asked when the Entra object id matched nobody."""
    client: Any = context.turn_state.get("ConnectorClient")
    conversation = context.activity.conversation
    if client is None or conversation is None:
        return None
    try:
        member = await client.conversations.get_conversation_member(conversation.id, member_id)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.info("member lookup failed: %s", type(exc).__name__)
        return None
    data = member.model_dump(by_alias=True, exclude_none=True) if hasattr(member, "model_dump") else {}
    email = data.get("email") or data.get("userPrincipalName") or (data.get("properties") or {}).get("email")
    return str(email) if email and "@" in str(email) else None


def _conversation_type(context: TurnContext) -> str:
    conversation = context.activity.conversation
    return str(getattr(conversation, "conversation_type", "") or "") if conversation else ""


class FrozenCard(dict[str, Any]):
    """A rendered card that is never changed after rendering. The SDK deep-copies every outgoing activity
    (turn_context.send_activities); for a 10-25 KB card that copy cost ~2 ms of event-loop time per message."""

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenCard:
        return self


def _cache_sdk_product_info() -> None:
    """The SDK builds its User-Agent with importlib.metadata.version() for every connector and token client it
    creates (two per turn): ~3 ms of event-loop time per message. The answer never changes within a process."""
    from microsoft_agents.hosting.core.connector.client import connector_client, user_token_client

    for module in (connector_client, user_token_client):
        original = getattr(module, "get_product_info")  # noqa: B009 (not re-exported, so not typed)
        if getattr(original, "__wrapped_once__", False):
            continue
        value = original()

        def cached(value: str = value) -> str:
            return value

        cached.__wrapped_once__ = True  # type: ignore[attr-defined]
        setattr(module, "get_product_info", cached)  # noqa: B010


async def _send_invoke(context: TurnContext, status: int, body: dict[str, Any]) -> None:
    await context.send_activity(
        Activity(type=ActivityTypes.invoke_response, value=InvokeResponse(status=int(HTTPStatus(status)), body=body))
    )


def _shape_problem(activity: Any) -> str | None:
    if not isinstance(activity, dict):
        return "The activity must be a JSON object"
    if not isinstance(activity.get("type"), str) or not activity["type"]:
        return "The activity has no 'type'"
    conversation = activity.get("conversation")
    if not isinstance(conversation, dict) or not isinstance(conversation.get("id"), str) or not conversation["id"]:
        return "The activity has no 'conversation.id'"
    if not isinstance(activity.get("serviceUrl"), str) or not activity["serviceUrl"]:
        return "The activity has no 'serviceUrl'"
    text = activity.get("text")
    if text is not None and not isinstance(text, str):
        return "'text' must be a string"
    sender = activity.get("from")
    if activity["type"] == "invoke" and not (
        isinstance(sender, dict) and isinstance(sender.get("id"), str) and sender["id"]
    ):
        # The SDK answers an invoke to its sender and raises (a 500) when there is no 'from.id' to answer.
        return "The invoke has no 'from.id'"
    return None


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


BOT = web.AppKey("slotwise_bot", SlotwiseBot)


def create_notifier(
    auth: BotAuthSettings, directory: TeamsDirectory, limits: VendorLimits | None = None
) -> TeamsNotifier:
    """The proactive sender alone, for worker processes that run workflow steps but serve no /api/messages."""
    connections = MsalConnections(auth)
    clients = PooledClientFactory(connections)
    adapter = CloudAdapter(connection_manager=connections, channel_service_client_factory=clients)
    # No turn-error handler: the SDK's default would post the exception into the host's chat and swallow it, and
    # the workflow step must see the failure to retry it.
    adapter.on_turn_error = None
    return TeamsNotifier(adapter, auth, directory, clients=clients, limits=limits)


def setup_bot(app: web.Application, bot: SlotwiseBot, session_factory: Callable[[], aiohttp.ClientSession]) -> None:
    """Mount `/api/messages` and give the bot its HTTP session for key discovery while the app runs."""
    app[BOT] = bot
    app.router.add_post("/api/messages", bot.handle_messages)

    async def bot_ctx(_app: web.Application) -> Any:
        session = session_factory()
        bot.start(session)
        yield
        await session.close()
        await bot.clients.close()

    app.cleanup_ctx.append(bot_ctx)


def _locale_of(activity: Mapping[str, Any]) -> str | None:
    """The reader's locale: the activity's own, else the Teams client's (its clientInfo entity)."""
    locale = activity.get("locale")
    if isinstance(locale, str) and locale:
        return locale[:35]
    for entity in activity.get("entities") or ():
        if isinstance(entity, dict) and entity.get("type") == "clientInfo" and isinstance(entity.get("locale"), str):
            return str(entity["locale"])[:35]
    return None
