"""Microsoft Graph: msal tokens, events with Teams meetings, getSchedule windows, sendMail, errors and concurrency,
all over real loopback HTTP against FakeGraphServer."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from pydantic import SecretStr, ValidationError

from integrations.graph.adapter import GraphBusySource, GraphCalendar, GraphMailer
from integrations.graph.client import GraphClient
from integrations.graph.config import GraphConfig
from integrations.graph.wire import BUSY_LABEL
from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable
from scheduling.model import CalendarEventDraft, CalendarInvite, OutgoingEmail
from tests.conftest import FixedClock
from tests.fakes.graph import FakeGraphServer, RunningFakeGraph, serve_fake_graph

# msgraph-sdk and kiota warn about their own deprecated configuration classes when first used.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:msgraph"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:kiota_abstractions"),
]

HOST = "alex@msp.example"
STARTS = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@dataclass
class Connected:
    running: RunningFakeGraph
    client: GraphClient
    calendar: GraphCalendar
    busy: GraphBusySource
    mailer: GraphMailer

    @property
    def fake(self) -> FakeGraphServer:
        return self.running.fake


def config_for(running: RunningFakeGraph, **changes: Any) -> GraphConfig:
    values: dict[str, Any] = {
        "tenant_id": running.fake.tenant_id,
        "client_id": running.fake.client_id,
        "client_secret": SecretStr(running.fake.client_secret),
        "authority_host": running.authority_host,
        "graph_base_url": running.graph_base_url,
        "authority_ca_file": str(running.ca_file),
        "from_address": HOST,
    }
    values.update(changes)
    return GraphConfig(**values)


@asynccontextmanager
async def connected(fake: FakeGraphServer | None = None, **changes: Any) -> AsyncIterator[Connected]:
    async with serve_fake_graph(fake) as running:
        client = GraphClient(config_for(running, **changes))
        try:
            yield Connected(running, client, GraphCalendar(client), GraphBusySource(client), GraphMailer(client))
        finally:
            await client.aclose()


def draft(transaction_id: str = "booking-1:create_m365_event", **changes: Any) -> CalendarEventDraft:
    values: dict[str, Any] = {
        "transaction_id": transaction_id,
        "subject": "Intro call with Dana Client",
        "body_html": "<p>Booked through Slotwise</p>",
        "starts_at": STARTS,
        "ends_at": STARTS + timedelta(minutes=30),
        "attendees": (("Dana Client", "dana@client.example"),),
    }
    values.update(changes)
    return CalendarEventDraft(**values)


def token_calls(fake: FakeGraphServer) -> list[Any]:
    return [entry for entry in fake.request_log if entry.path.endswith("/oauth2/v2.0/token")]


async def test_msal_discovers_the_authority_and_fetches_one_client_credentials_token_that_every_call_carries() -> None:
    async with connected() as graph:
        for index in range(3):
            await graph.calendar.create_event(HOST, draft(f"t-{index}"))
        fake = graph.fake
        assert fake.request_log[0].path == f"/{fake.tenant_id}/v2.0/.well-known/openid-configuration"
        [token_call] = token_calls(fake)
        form = {name: values[0] for name, values in parse_qs(token_call.body).items()}
        assert form["grant_type"] == "client_credentials"
        assert form["client_id"] == fake.client_id
        assert form["scope"] == "https://graph.microsoft.com/.default"
        [issued] = fake.tokens
        graph_calls = fake.graph_requests()
        assert len(graph_calls) == 3
        for call in graph_calls:
            assert call.headers["Authorization"] == f"Bearer {issued}"
            assert fake.client_secret not in str(call.headers) + call.body


async def test_a_wrong_client_secret_is_an_auth_error_from_msal() -> None:
    async with connected(client_secret=SecretStr("not-the-secret")) as graph:
        with pytest.raises(IntegrationAuthError, match="invalid_client"):
            await graph.calendar.check()
        assert graph.fake.graph_requests() == []


async def test_an_unknown_tenant_is_an_auth_error_found_by_openid_discovery() -> None:
    async with connected(tenant_id="no-such-tenant") as graph:
        with pytest.raises(IntegrationAuthError, match="no-such-tenant"):
            await graph.calendar.check()


async def test_creating_an_event_with_a_teams_meeting_returns_its_join_url() -> None:
    async with connected() as graph:
        ref = await graph.calendar.create_event(HOST, draft(location="Microsoft Teams meeting"))
        assert ref.join_url.startswith("https://teams.microsoft.com/l/meetup-join/")
        [stored] = graph.fake.mailbox_events(HOST)
        assert stored["id"] == ref.event_id
        [post] = graph.fake.graph_requests("/events")
        assert post.path == f"/v1.0/users/{HOST}/events"
        body = post.json()
        assert body["isOnlineMeeting"] is True
        assert body["onlineMeetingProvider"] == "teamsForBusiness"
        assert body["transactionId"] == "booking-1:create_m365_event"
        assert body["start"] == {"dateTime": "2026-11-24T15:00:00", "timeZone": "UTC"}
        assert body["attendees"][0]["emailAddress"] == {"address": "dana@client.example", "name": "Dana Client"}
        assert body["body"]["contentType"] == "html"
        assert body["location"]["displayName"] == "Microsoft Teams meeting"


async def test_an_event_without_a_teams_meeting_has_no_join_url() -> None:
    async with connected() as graph:
        ref = await graph.calendar.create_event(HOST, draft(teams_meeting=False))
        assert ref.join_url == ""
        assert "isOnlineMeeting" not in graph.fake.graph_requests("/events")[0].json()


async def test_creating_twice_with_the_same_transaction_id_leaves_one_event() -> None:
    async with connected() as graph:
        first = await graph.calendar.create_event(HOST, draft("same-key"))
        second = await graph.calendar.create_event(HOST, draft("same-key"))
        assert second == first
        assert len(graph.fake.mailbox_events(HOST)) == 1


async def test_a_lost_response_then_a_retry_leaves_one_event() -> None:
    async with connected() as graph:
        graph.fake.lose_next_response()
        with pytest.raises(IntegrationUnavailable):
            await graph.calendar.create_event(HOST, draft("lost-once"))
        assert len(graph.fake.mailbox_events(HOST)) == 1
        ref = await graph.calendar.create_event(HOST, draft("lost-once"))
        [stored] = graph.fake.mailbox_events(HOST)
        assert ref.event_id == stored["id"]
        assert ref.join_url == stored["onlineMeeting"]["joinUrl"]


async def test_moving_an_event_patches_start_and_end_and_cancelling_sends_the_comment() -> None:
    async with connected() as graph:
        ref = await graph.calendar.create_event(HOST, draft())
        later = STARTS + timedelta(days=1, hours=2)
        await graph.calendar.move_event(HOST, ref.event_id, later, later + timedelta(minutes=45))
        [patch] = [call for call in graph.fake.graph_requests() if call.method == "PATCH"]
        assert set(patch.json()) >= {"start", "end"}
        assert "subject" not in patch.json()
        [stored] = graph.fake.mailbox_events(HOST)
        assert stored["start"]["dateTime"].startswith("2026-11-25T17:00:00")
        assert stored["end"]["dateTime"].startswith("2026-11-25T17:45:00")

        await graph.calendar.cancel_event(HOST, ref.event_id, "Client asked to cancel")
        [cancel] = graph.fake.graph_requests("/cancel")
        assert cancel.path == f"/v1.0/users/{HOST}/events/{ref.event_id}/cancel"
        assert cancel.json() == {"Comment": "Client asked to cancel"}  # PascalCase like getSchedule; Graph ignores case
        assert stored["isCancelled"] is True
        assert stored["_cancel_comment"] == "Client asked to cancel"


async def test_moving_an_event_that_does_not_exist_is_rejected_with_graphs_message() -> None:
    async with connected() as graph:
        with pytest.raises(IntegrationRejected, match="ErrorItemNotFound"):
            await graph.calendar.move_event(HOST, "AAMkMissing", STARTS, STARTS + timedelta(hours=1))


async def test_busy_times_across_60_days_use_two_get_schedule_windows_and_at_most_20_schedules_per_call() -> None:
    async with connected() as graph:
        fake = graph.fake
        mailboxes = [f"host{index:02d}@msp.example" for index in range(25)]
        day = (STARTS + timedelta(days=1)).replace(hour=9)
        fake.add_busy(mailboxes[0], day, day + timedelta(hours=1), "busy", subject="Secret merger talk")
        fake.add_busy(mailboxes[0], day + timedelta(hours=2), day + timedelta(hours=3), "tentative")
        fake.add_busy(mailboxes[0], day + timedelta(hours=4), day + timedelta(hours=5), "free")
        fake.add_busy(mailboxes[0], day + timedelta(days=3), day + timedelta(days=4), "oof")
        fake.add_busy(mailboxes[24], day + timedelta(hours=1), day + timedelta(hours=2), "workingElsewhere")
        # Spans the boundary between the two lookup windows (41 days after the start): reported once.
        boundary = STARTS + timedelta(days=41)
        fake.add_busy(mailboxes[24], boundary - timedelta(hours=1), boundary + timedelta(hours=1), "busy")

        found = await graph.busy.busy_times(mailboxes, STARTS, STARTS + timedelta(days=60))

        calls = fake.graph_requests("/calendar/getSchedule")
        windows = {(call.json()["StartTime"]["dateTime"], call.json()["EndTime"]["dateTime"]) for call in calls}
        assert len(windows) == 2
        for call in calls:
            body = call.json()
            assert set(body) >= {"Schedules", "StartTime", "EndTime"}  # PascalCase, as the SDK writes it
            assert len(body["Schedules"]) <= 20
            window = datetime.fromisoformat(body["EndTime"]["dateTime"]) - datetime.fromisoformat(
                body["StartTime"]["dateTime"]
            )
            assert window < timedelta(days=42)
            assert call.headers["Prefer"] == 'outlook.timezone="UTC"'
        assert len(calls) == 4  # 2 windows x (20 + 5 mailboxes)
        assert sorted(found) == sorted(mailboxes)
        assert [(b.starts_at, b.ends_at) for b in found[mailboxes[0]]] == [
            (day, day + timedelta(hours=1)),
            (day + timedelta(hours=2), day + timedelta(hours=3)),
            (day + timedelta(days=3), day + timedelta(days=4)),
        ]
        assert [(b.starts_at, b.ends_at) for b in found[mailboxes[24]]] == [
            (day + timedelta(hours=1), day + timedelta(hours=2)),
            (boundary - timedelta(hours=1), boundary + timedelta(hours=1)),
        ]
        assert all(b.label == BUSY_LABEL for intervals in found.values() for b in intervals)
        assert "Secret" not in repr(found)
        assert found[mailboxes[5]] == []


async def test_events_we_created_show_up_as_busy_time() -> None:
    async with connected() as graph:
        await graph.calendar.create_event(HOST, draft())
        found = await graph.busy.busy_times([HOST], STARTS - timedelta(days=1), STARTS + timedelta(days=1))
        assert [(b.starts_at, b.ends_at) for b in found[HOST]] == [(STARTS, STARTS + timedelta(minutes=30))]


async def test_a_429_with_retry_after_becomes_integration_unavailable_with_retry_after_seconds() -> None:
    async with connected() as graph:
        graph.fake.fail_next(429, retry_after=7, message="Too many requests")
        with pytest.raises(IntegrationUnavailable) as caught:
            await graph.calendar.create_event(HOST, draft())
        assert caught.value.retry_after_seconds == 7
        assert "Too many requests" in str(caught.value)
        assert len(graph.fake.graph_requests()) == 1  # the SDK's own retry handler is off: the runner retries
        assert graph.fake.mailbox_events(HOST) == []


@pytest.mark.parametrize("status", [503, 504])
async def test_503_and_504_are_worth_a_retry(status: int) -> None:
    async with connected() as graph:
        graph.fake.fail_next(status, retry_after=3)
        with pytest.raises(IntegrationUnavailable) as caught:
            await graph.busy.busy_times([HOST], STARTS, STARTS + timedelta(days=1))
        assert caught.value.retry_after_seconds == 3


async def test_a_400_is_rejected_with_graphs_own_message() -> None:
    async with connected() as graph:
        graph.fake.fail_next(400, message="Your request is invalid: attendees[0] is malformed.")
        with pytest.raises(IntegrationRejected, match="attendees\\[0\\] is malformed"):
            await graph.calendar.create_event(HOST, draft())


async def test_a_403_is_an_auth_error() -> None:
    async with connected() as graph:
        graph.fake.fail_next(403, message="Access is denied. Check credentials and try again.")
        with pytest.raises(IntegrationAuthError, match="Access is denied"):
            await graph.calendar.create_event(HOST, draft())


async def test_a_401_after_revoked_credentials_is_an_integration_auth_error() -> None:
    async with connected() as graph:
        await graph.calendar.create_event(HOST, draft("before-revoke"))
        graph.fake.revoke_credentials()
        with pytest.raises(IntegrationAuthError, match="invalid_client"):
            await graph.calendar.create_event(HOST, draft("after-revoke"))
        assert graph.fake.graph_requests()[-1].status == 401
        assert token_calls(graph.fake)[-1].status == 401
        assert len(graph.fake.mailbox_events(HOST)) == 1


async def test_a_token_graph_expired_early_is_replaced_once_after_a_401_and_the_call_succeeds() -> None:
    fake_clock = FixedClock()
    fake = FakeGraphServer(clock=fake_clock.now)
    async with connected(fake) as graph:
        await graph.calendar.create_event(HOST, draft("first"))
        fake_clock.moment += timedelta(hours=2)  # msal still holds the token: it trusts expires_in and real time
        ref = await graph.calendar.create_event(HOST, draft("second"))
        assert ref.event_id
        assert len(token_calls(fake)) == 2
        assert [call.status for call in fake.graph_requests()] == [201, 401, 201]


async def test_25_concurrent_creates_for_one_mailbox_keep_at_most_4_in_flight_and_never_get_a_429() -> None:
    fake = FakeGraphServer(latency_seconds=0.05)
    async with connected(fake) as graph:
        refs = await asyncio.gather(*(graph.calendar.create_event(HOST, draft(f"burst-{i}")) for i in range(25)))
        assert len({ref.event_id for ref in refs}) == 25
        assert fake.max_in_flight[HOST.lower()] == 4
        assert fake.concurrency_throttled == 0
        assert all(call.status == 201 for call in fake.graph_requests())


async def test_the_fake_refuses_a_fifth_concurrent_request_for_one_mailbox_with_mailbox_concurrency() -> None:
    fake = FakeGraphServer(latency_seconds=0.2)
    fake.tokens["raw-token"] = datetime.now(UTC) + timedelta(hours=1)
    async with serve_fake_graph(fake) as running, aiohttp.ClientSession() as session:

        async def one() -> tuple[int, Any, str | None]:
            async with session.get(
                f"{running.graph_base_url}/users/{HOST}/events/AAMkMissing",
                headers={"Authorization": "Bearer raw-token"},
            ) as response:
                return response.status, await response.json(), response.headers.get("Retry-After")

        answers = await asyncio.gather(*(one() for _ in range(6)))
        throttled = [answer for answer in answers if answer[0] == 429]
        assert len(throttled) == 2
        assert throttled[0][1]["error"]["code"] == "ApplicationThrottled"
        assert "MailboxConcurrency" in throttled[0][1]["error"]["message"]
        assert throttled[0][2] == "1"
        assert fake.concurrency_throttled == 2


async def test_the_fake_answers_401_with_graphs_json_error_body() -> None:
    async with (
        serve_fake_graph() as running,
        aiohttp.ClientSession() as session,
        session.get(f"{running.graph_base_url}/users/{HOST}/events/x") as response,
    ):
        assert response.status == 401
        assert response.content_type == "application/json"
        assert (await response.json())["error"]["code"] == "InvalidAuthenticationToken"


async def test_the_fake_refuses_a_get_schedule_window_of_42_days_with_graphs_error_shape() -> None:
    fake = FakeGraphServer()
    fake.tokens["raw-token"] = datetime.now(UTC) + timedelta(hours=1)
    async with serve_fake_graph(fake) as running, aiohttp.ClientSession() as session:
        body = {
            "schedules": [HOST],
            "startTime": {"dateTime": "2026-11-01T00:00:00", "timeZone": "UTC"},
            "endTime": {"dateTime": "2026-12-13T00:00:00", "timeZone": "UTC"},
        }
        async with session.post(
            f"{running.graph_base_url}/users/{HOST}/calendar/getSchedule",
            json=body,
            headers={"Authorization": "Bearer raw-token"},
        ) as response:
            assert response.status == 400
            error = (await response.json())["error"]
            assert error["code"] == "ErrorInvalidParameter"
            assert "42 days" in error["message"]


async def test_the_fake_calendar_view_expands_a_weekly_series() -> None:
    fake = FakeGraphServer()
    fake.tokens["raw-token"] = datetime.now(UTC) + timedelta(hours=1)
    async with serve_fake_graph(fake) as running, aiohttp.ClientSession() as session:
        headers = {"Authorization": "Bearer raw-token"}
        series = {
            "subject": "Weekly sync",
            "start": {"dateTime": "2026-11-02T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-11-02T10:30:00", "timeZone": "UTC"},
            "recurrence": {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                "range": {"type": "numbered", "startDate": "2026-11-02", "numberOfOccurrences": 3},
            },
        }
        async with session.post(f"{running.graph_base_url}/users/{HOST}/events", json=series, headers=headers) as r:
            assert r.status == 201
        async with session.get(
            f"{running.graph_base_url}/users/{HOST}/calendarView",
            params={"startDateTime": "2026-11-05T00:00:00Z", "endDateTime": "2026-12-31T00:00:00Z"},
            headers=headers,
        ) as response:
            starts = [row["start"]["dateTime"][:16] for row in (await response.json())["value"]]
        assert starts == ["2026-11-09T10:00", "2026-11-16T10:00"]


def invite() -> CalendarInvite:
    return CalendarInvite(
        uid="booking-1@slotwise",
        starts_at=STARTS,
        ends_at=STARTS + timedelta(minutes=30),
        summary="Intro call",
        description="Booked through Slotwise",
        location="Microsoft Teams meeting",
        organizer_name="Alex Agent",
        organizer_email=HOST,
        attendees=(("Dana Client", "dana@client.example"),),
    )


def email(**changes: Any) -> OutgoingEmail:
    values: dict[str, Any] = {
        "message_id": "<booking-1.confirm@slotwise>",
        "from_name": "Alex Agent",
        "from_address": HOST,
        "to": ("dana@client.example",),
        "subject": "Your intro call is booked",
        "text": "See you then",
        "html": "<p>See you then</p>",
        "invite": invite(),
    }
    values.update(changes)
    return OutgoingEmail(**values)


async def test_send_mail_with_an_ics_invite_arrives_in_the_fakes_outbox() -> None:
    async with connected() as graph:
        message_id = await graph.mailer.send(email())
        assert message_id == "<booking-1.confirm@slotwise>"
        [sent] = graph.fake.outbox
        assert sent.mailbox == HOST
        assert sent.save_to_sent_items is True
        message = sent.message
        assert message["subject"] == "Your intro call is booked"
        assert message["body"] == {"contentType": "html", "content": "<p>See you then</p>"}
        assert message["toRecipients"] == [{"emailAddress": {"address": "dana@client.example"}}]
        [attachment] = message["attachments"]
        assert attachment["@odata.type"] == "#microsoft.graph.fileAttachment"
        assert attachment["name"] == "invite.ics"
        assert attachment["contentType"].startswith("text/calendar; method=REQUEST")
        ics = base64.b64decode(attachment["contentBytes"]).decode()
        assert "BEGIN:VCALENDAR" in ics
        assert "METHOD:REQUEST" in ics
        assert "UID:booking-1@slotwise" in ics
        [post] = graph.fake.graph_requests("/sendMail")
        assert post.path == f"/v1.0/users/{HOST}/sendMail"


async def test_send_mail_without_an_invite_has_no_attachment() -> None:
    async with connected() as graph:
        await graph.mailer.send(email(invite=None))
        assert not graph.fake.outbox[0].message.get("attachments")


async def test_html_in_subjects_and_bodies_is_passed_through_as_built_never_unescaped_or_double_escaped() -> None:
    async with connected() as graph:
        body_html = "<p>Notes: &lt;script&gt;alert(1)&lt;/script&gt; &amp; more</p>"
        await graph.calendar.create_event(
            HOST, draft(subject="<b>Q3</b> review & plan\r\nBcc: x@evil.example", body_html=body_html)
        )
        event = graph.fake.graph_requests("/events")[0].json()
        # Graph subjects are plain text: kept literally, flattened to one line so nothing can break out of them.
        assert event["subject"] == "<b>Q3</b> review & plan Bcc: x@evil.example"
        assert event["body"]["content"] == body_html
        await graph.mailer.send(email(subject="Re: <i>hi</i>\nX-Injected: 1", html=body_html))
        message = graph.fake.outbox[0].message
        assert message["subject"] == "Re: <i>hi</i> X-Injected: 1"
        assert message["body"]["content"] == body_html


async def test_a_graph_that_does_not_answer_in_time_is_unavailable() -> None:
    fake = FakeGraphServer(latency_seconds=1.0)
    async with connected(fake, timeout_seconds=0.2) as graph:
        await graph.client.check_credentials()
        with pytest.raises(IntegrationUnavailable, match="did not answer"):
            await graph.calendar.create_event(HOST, draft())


async def test_a_graph_that_refuses_connections_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    async with connected(graph_base_url=f"http://127.0.0.1:{closed_port}/v1.0") as graph:
        with pytest.raises(IntegrationUnavailable, match="Could not reach Microsoft Graph"):
            await graph.calendar.create_event(HOST, draft())


async def test_tokens_are_never_sent_to_a_host_other_than_the_configured_graph() -> None:
    async with connected() as graph:
        provider = graph.client._tokens
        with pytest.raises(IntegrationRejected, match="Refusing"):
            await provider.get_authorization_token("https://evil.example/v1.0/users")


def test_the_config_refuses_plain_http_graph_urls_off_loopback_and_http_authorities() -> None:
    base: dict[str, Any] = {"tenant_id": "contoso", "client_id": "app", "client_secret": "s3cret-value"}
    with pytest.raises(ValidationError, match="plain http"):
        GraphConfig(**base, graph_base_url="http://graph.example/v1.0")
    with pytest.raises(ValidationError, match="https"):
        GraphConfig(**base, authority_host="http://127.0.0.1:1234")
    with pytest.raises(ValidationError, match=r"/\.default"):
        GraphConfig(**base, scopes=("Calendars.ReadWrite",))
    config = GraphConfig(**base)
    assert "s3cret-value" not in repr(config)
    assert config.authority == "https://login.microsoftonline.com/contoso"
    assert config.graph_base_url == "https://graph.microsoft.com/v1.0"
