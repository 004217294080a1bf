"""GraphCalendar, GraphBusySource, GraphMailer and GraphProfilePhotos: the CalendarWriter, BusySource, Mailer and
ProfilePhotoSource ports over Graph."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.headers_collection import HeadersCollection
from msgraph.generated.users.item.calendar.get_schedule.get_schedule_post_request_body import (
    GetSchedulePostRequestBody,
)
from msgraph.generated.users.item.calendar.get_schedule.get_schedule_post_response import GetSchedulePostResponse
from msgraph.generated.users.item.events.item.cancel.cancel_post_request_body import CancelPostRequestBody
from msgraph.graph_service_client import GraphServiceClient

from integrations.graph.client import GraphClient
from integrations.graph.config import GraphConfig
from integrations.graph.wire import (
    batches,
    from_wire_schedule_items,
    schedule_windows,
    to_wire_event,
    to_wire_mail,
    to_wire_move,
    to_wire_time,
)
from scheduling.errors import IntegrationRejected, IntegrationUnavailable
from scheduling.model import BusyInterval, CalendarEventDraft, CalendarEventRef, OutgoingEmail
from scheduling.ports import VendorLimits

_AVAILABILITY_VIEW_MINUTES = 30
"""We read scheduleItems, not availabilityView; the interval only shapes that unused string."""


def _prefer_utc() -> RequestConfiguration[Any]:
    # getSchedule answers in the zone of the request's startTime, events in the mailbox's zone unless asked; we
    # always ask for UTC so no Windows zone names reach from_wire_time (apis.md §4, `Prefer: outlook.timezone`).
    headers = HeadersCollection()
    headers.add("Prefer", 'outlook.timezone="UTC"')
    return RequestConfiguration(headers=headers)


class GraphCalendar:
    """CalendarWriter: events on a host's own calendar (`/users/{mailbox}/events`), with a Teams meeting when asked."""

    def __init__(self, client: GraphClient) -> None:
        self._client = client

    @classmethod
    def from_config(cls, config: GraphConfig, limits: VendorLimits | None = None) -> GraphCalendar:
        return cls(GraphClient(config, limits=limits))

    async def check(self) -> None:
        """Proves tenant, client id and secret by fetching a token from Entra ID."""
        await self._client.check_credentials()

    async def create_event(self, mailbox: str, draft: CalendarEventDraft) -> CalendarEventRef:
        """Idempotent by draft.transaction_id: Graph returns the event created first for a repeated transactionId,
        so a retry after a lost response does not book the host twice."""
        body = to_wire_event(draft)
        created = await self._client.call(
            mailbox,
            "create event",
            lambda graph: graph.users.by_user_id(mailbox).events.post(body, _prefer_utc()),
        )
        if created is None or not created.id:
            raise IntegrationUnavailable("Microsoft Graph created an event but answered without its id")
        # No joinUrl despite teams_meeting happens when the mailbox's allowedOnlineMeetingProviders lacks Teams
        # (apis.md §4). The event exists either way; the confirmation then goes out without a join link.
        join_url = created.online_meeting.join_url if created.online_meeting is not None else None
        return CalendarEventRef(event_id=created.id, join_url=join_url or "")

    async def move_event(self, mailbox: str, event_id: str, starts_at: datetime, ends_at: datetime) -> None:
        body = to_wire_move(starts_at, ends_at)
        await self._client.call(
            mailbox,
            "move event",
            lambda graph: graph.users.by_user_id(mailbox).events.by_event_id(event_id).patch(body, _prefer_utc()),
        )

    async def cancel_event(self, mailbox: str, event_id: str, comment: str) -> None:
        """`/cancel` (not DELETE) so attendees get a cancellation with the comment; only the organizer may call it."""
        body = CancelPostRequestBody(comment=comment)
        await self._client.call(
            mailbox,
            "cancel event",
            lambda graph: graph.users.by_user_id(mailbox).events.by_event_id(event_id).cancel.post(body),
        )


class GraphBusySource:
    """BusySource: getSchedule in windows shorter than 42 days and batches of at most 20 mailboxes, run one after
    the other (this feeds the background busy refresh, never a page view)."""

    def __init__(self, client: GraphClient) -> None:
        self._client = client

    @classmethod
    def from_config(cls, config: GraphConfig, limits: VendorLimits | None = None) -> GraphBusySource:
        return cls(GraphClient(config, limits=limits))

    async def check(self) -> None:
        """Proves tenant, client id and secret by fetching a token from Entra ID."""
        await self._client.check_credentials()

    async def busy_times(
        self, mailboxes: Sequence[str], starts_at: datetime, ends_at: datetime
    ) -> Mapping[str, list[BusyInterval]]:
        """Busy intervals per mailbox (keys as given) in [starts_at, ends_at), UTC, labelled without subjects.
        Raises IntegrationRejected when Graph cannot read one of the mailboxes: an unreadable calendar must not
        look free."""
        config = self._client.config
        unique = list(dict.fromkeys(mailboxes))
        found: dict[str, set[BusyInterval]] = {mailbox: set() for mailbox in unique}
        by_lower = {mailbox.lower(): mailbox for mailbox in unique}
        for window_start, window_end in schedule_windows(starts_at, ends_at, config.schedule_window_days):
            for batch in batches(unique, config.schedules_per_call):
                body = GetSchedulePostRequestBody(
                    schedules=batch,
                    start_time=to_wire_time(window_start),
                    end_time=to_wire_time(window_end),
                    availability_view_interval=_AVAILABILITY_VIEW_MINUTES,
                )
                # Any mailbox the app can read may ask for the others' schedules; the batch's first one is used.
                caller = batch[0]

                async def get_schedule(
                    graph: GraphServiceClient, caller: str = caller, body: GetSchedulePostRequestBody = body
                ) -> GetSchedulePostResponse | None:
                    return await graph.users.by_user_id(caller).calendar.get_schedule.post(body, _prefer_utc())

                answer = await self._client.call(caller, "get schedule", get_schedule)
                for schedule in (answer.value if answer is not None else None) or []:
                    mailbox = by_lower.get((schedule.schedule_id or "").lower())
                    if mailbox is None:
                        continue
                    if schedule.error is not None:
                        raise IntegrationRejected(
                            f"Microsoft Graph cannot read the calendar of {mailbox}: {schedule.error.message or ''}"
                        )
                    found[mailbox].update(from_wire_schedule_items(schedule.schedule_items))
        return {
            mailbox: sorted(
                (busy for busy in intervals if busy.starts_at < ends_at and busy.ends_at > starts_at),
                key=lambda busy: (busy.starts_at, busy.ends_at),
            )
            for mailbox, intervals in found.items()
        }


class GraphMailer:
    """Mailer: `POST /users/{from}/sendMail`, which Graph answers 202 with no body. Exchange Online caps a mailbox
    at 30 messages a minute (apis.md §4); the job runner's per-target rate limit keeps below it."""

    def __init__(self, client: GraphClient, *, clock: Callable[[], datetime] | None = None) -> None:
        self._client = client
        self._clock = clock or (lambda: datetime.now(UTC))

    @classmethod
    def from_config(cls, config: GraphConfig, limits: VendorLimits | None = None) -> GraphMailer:
        return cls(GraphClient(config, limits=limits))

    async def check(self) -> None:
        """Proves the credentials by fetching a token; sending a test mail would reach a real inbox."""
        await self._client.check_credentials()

    async def send(self, email: OutgoingEmail) -> str:
        sender = email.from_address or self._client.config.from_address
        if not sender:
            raise IntegrationRejected("No mailbox to send from: set from_address on the Graph connection")
        body = to_wire_mail(email, self._clock())
        await self._client.call(
            sender,
            "send mail",
            lambda graph: graph.users.by_user_id(sender).send_mail.post(body),
        )
        return email.message_id


PROFILE_PHOTO_SIZE = "96x96"
"""Pages show faces at 48 CSS pixels, so 96x96 stays sharp on high-density screens. One of the HD sizes Microsoft
365 keeps (48x48 ... 648x648), https://learn.microsoft.com/en-us/graph/api/profilephoto-get?view=graph-rest-1.0"""


class GraphProfilePhotos:
    """ProfilePhotoSource: `GET /users/{mailbox}/photos/96x96/$value`, else `/photo/$value` (needs the application
    permission User.Read.All). Graph answers 404 when the account has no photo, or not at the size asked for: a
    photo uploaded smaller than 96x96 exists only at its own size, which `/photo/$value` returns (profilephoto-get,
    link above). Both 404s mean "no photo", not an error."""

    def __init__(self, client: GraphClient, *, size: str = PROFILE_PHOTO_SIZE) -> None:
        self._client = client
        self._size = size

    @classmethod
    def from_config(cls, config: GraphConfig, limits: VendorLimits | None = None) -> GraphProfilePhotos:
        return cls(GraphClient(config, limits=limits))

    async def check(self) -> None:
        """Proves tenant, client id and secret by fetching a token from Entra ID."""
        await self._client.check_credentials()

    async def profile_photo(self, mailbox: str) -> bytes | None:
        size = self._size

        async def sized(graph: GraphServiceClient) -> bytes | None:
            return await _absent_on_404(graph.users.by_user_id(mailbox).photos.by_profile_photo_id(size).content.get())

        async def largest(graph: GraphServiceClient) -> bytes | None:
            return await _absent_on_404(graph.users.by_user_id(mailbox).photo.content.get())

        found = await self._client.call(mailbox, "get profile photo", sized)
        if not found:
            found = await self._client.call(mailbox, "get profile photo", largest)
        return found or None


async def _absent_on_404(request: Awaitable[bytes | None]) -> bytes | None:
    # Only a 404 means "no photo"; every other failure goes on to GraphClient, which translates it.
    try:
        return await request
    except APIError as exc:
        if exc.response_status_code == 404:
            return None
        raise
