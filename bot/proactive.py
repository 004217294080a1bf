"""Proactive booking cards to hosts in Teams, sent by the workflow runner's `notify_host` step.

Teams limits what a bot may send into one conversation (7 messages per second, 8 per 2 seconds, 60 per 30
seconds, 1,800 per hour; https://learn.microsoft.com/microsoftteams/platform/bots/how-to/rate-limit). We keep
inside those windows per conversation ourselves, so the connector should never have to refuse us. The windows belong
to the conversation, not to a process: given shared `limits` (in the database on PostgreSQL), every app process and
worker counts against the same windows. If the connector refuses us anyway, its 429 and Retry-After go back to the
runner, which retries later like any other vendor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from microsoft_agents.activity import Activity, Attachment, ConversationReference
from microsoft_agents.hosting.core import TurnContext
from microsoft_agents.hosting.core.authorization import ClaimsIdentity

from bot.auth import BotAuthError, BotAuthSettings, check_service_url
from bot.identity import zone_for
from cards.booking_event import render_booking_event
from cards.views import BookingChange, BookingEventView
from integrations.rate_windows import SlidingWindows
from integrations.retry_after import parse_retry_after
from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable
from scheduling.model import HostNotification
from scheduling.ports import TeamsDirectory, VendorLimits

log = logging.getLogger(__name__)

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
TEAMS_THREAD_LIMITS: tuple[tuple[float, int], ...] = ((1.0, 7), (2.0, 8), (30.0, 60), (3600.0, 1800))
"""(window seconds, messages) a bot may send into one conversation."""
LONGEST_WAIT_IN_STEP = 1.5
"""Wait this long for a window to reopen inside the step; longer waits go back to the runner as a retry."""
WINDOW_MARGIN_SECONDS = 0.1
"""Our clock starts when a message leaves, Teams' when it arrives (see SlidingWindows)."""


def teams_thread_windows(margin: float = WINDOW_MARGIN_SECONDS) -> tuple[tuple[float, int], ...]:
    """TEAMS_THREAD_LIMITS widened by `margin`, as shared VendorLimits count them."""
    return tuple((window + margin, count) for window, count in TEAMS_THREAD_LIMITS)


def teams_thread_key(conversation_id: str) -> str:
    """The VendorLimits key of one conversation's windows; replies and proactive cards share it."""
    return f"teams:{conversation_id}"


def teams_thread_limiter(
    clock: Callable[[], float] = time.monotonic, margin: float = WINDOW_MARGIN_SECONDS
) -> SlidingWindows:
    """Teams' per-conversation windows, keyed by conversation id; replies and proactive cards share one."""
    return SlidingWindows(TEAMS_THREAD_LIMITS, clock, margin)


class TeamsNotifier:
    """The Notifier port over the Agents SDK's proactive `continue_conversation`.

    Per-conversation windows: shared `limits` when given (every process on one database), else `limiter` (this
    process only)."""

    def __init__(
        self,
        adapter: Any,
        settings: BotAuthSettings,
        directory: TeamsDirectory,
        limiter: SlidingWindows | None = None,
        *,
        clients: Any = None,
        limits: VendorLimits | None = None,
    ) -> None:
        self._adapter = adapter
        self._clients = clients
        self._settings = settings
        self._directory = directory
        self._limiter = limiter or teams_thread_limiter()
        self._limits = limits

    async def close(self) -> None:
        """Close the connections kept open to Teams (PooledClientFactory), if this notifier owns any."""
        if self._clients is not None:
            await self._clients.close()

    async def notify_host(self, tenant_id: str, user_id: str, notification: HostNotification) -> str | None:
        found = await self._directory.find_conversation(tenant_id, user_id)
        if found is None:
            return None
        raw_reference, time_zone = found
        try:
            reference = ConversationReference.model_validate(raw_reference)
        except ValueError as exc:
            raise IntegrationRejected(
                "The stored Teams chat of this host is unreadable; they should message the bot"
            ) from exc
        service_url = reference.service_url or ""
        try:
            check_service_url(service_url, self._settings)
        except BotAuthError as exc:
            raise IntegrationRejected(f"Not sending to this Teams service address: {exc}") from exc
        conversation_id = reference.conversation.id if reference.conversation else ""
        await self._wait_for_window(conversation_id)
        card = render_booking_event(_view(notification, zone_for(time_zone, "UTC")))
        message = Activity(type="message", attachments=[Attachment(content_type=ADAPTIVE_CARD, content=card)])
        sent: list[str] = []

        async def send(context: TurnContext) -> None:
            # Straight to the conversation (POST .../activities), not as a reply to the message the reference was
            # taken from: a booking card is news, and Teams threads replies under that old message.
            client: Any = context.turn_state.get("ConnectorClient")
            outgoing = message.model_copy()
            outgoing.apply_conversation_reference(reference, is_incoming=False)
            # Not a reply: the field must be absent. The connector client serialises with exclude_unset, so setting
            # it to None would send `"replyToId": null`, which the Teams client emulator refuses with a 400.
            outgoing.reply_to_id = None  # type: ignore[assignment]  # SDK types it str; None = not a reply
            outgoing.model_fields_set.discard("reply_to_id")
            response = await client.conversations.send_to_conversation(conversation_id, outgoing)
            sent.append(getattr(response, "id", None) or "")

        try:
            if self._settings.app_id:
                await self._adapter.continue_conversation(
                    self._settings.app_id, reference.get_continuation_activity(), send
                )
            else:
                # Local development without a bot registration: the SDK then sends without a token.
                anonymous = ClaimsIdentity({}, authentication_type="Anonymous")
                await self._adapter.continue_conversation_with_claims(
                    anonymous, reference.get_continuation_activity(), send
                )
        except aiohttp.ClientResponseError as exc:
            raise _vendor_error(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise IntegrationUnavailable(f"Teams did not answer: {type(exc).__name__}") from exc
        if not sent:
            # The SDK returned without running our send (a turn error it handled itself): nothing reached the host.
            raise IntegrationUnavailable("Teams did not take the card; trying again later")
        return sent[0] or "sent"

    async def _reserve(self, conversation_id: str) -> float:
        if self._limits is not None:
            return await self._limits.reserve(teams_thread_key(conversation_id), teams_thread_windows())
        return self._limiter.reserve(conversation_id)

    async def _wait_for_window(self, conversation_id: str) -> None:
        wait = await self._reserve(conversation_id)
        if wait == 0:
            return
        if wait > LONGEST_WAIT_IN_STEP:
            raise IntegrationUnavailable(
                "Holding back: this chat reached Teams' per-conversation message limit", retry_after_seconds=wait
            )
        await asyncio.sleep(wait)
        wait = await self._reserve(conversation_id)
        if wait:
            raise IntegrationUnavailable(
                "Holding back: this chat reached Teams' per-conversation message limit", retry_after_seconds=wait
            )


def retry_after_of(exc: aiohttp.ClientResponseError) -> float | None:
    """The connector's Retry-After (seconds or HTTP-date), if it sent one."""
    return parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None, datetime.now(UTC))


def _vendor_error(exc: aiohttp.ClientResponseError) -> Exception:
    if exc.status == 429 or exc.status >= 500:
        return IntegrationUnavailable(
            f"Teams answered {exc.status}; trying again later", retry_after_seconds=retry_after_of(exc)
        )
    if exc.status == 401:
        return IntegrationAuthError("Teams refused the bot's credentials (401); check SLOTWISE_BOT_APP_ID/PASSWORD")
    if exc.status in (403, 404):
        return IntegrationRejected(
            f"Teams answered {exc.status}: the host removed the app or the chat no longer exists"
        )
    return IntegrationRejected(f"Teams refused the message ({exc.status})")


def _view(notification: HostNotification, zone: ZoneInfo) -> BookingEventView:
    return BookingEventView(
        change=BookingChange(notification.change),
        booking_id=notification.booking_id,
        type_name=notification.type_name,
        client_name=notification.client_name,
        client_email=notification.client_email,
        starts_at=notification.starts_at,
        ends_at=notification.ends_at,
        time_zone=zone,
        join_url=notification.join_url or None,
        reason=notification.reason,
        answers=notification.answers,
        previous_starts_at=notification.previous_starts_at,
        ticket_number=notification.ticket_number,
        booking_url=notification.booking_url,
        ticket_url=notification.ticket_url,
    )
