"""HaloPSA specifics the PSA contract cannot express: OAuth2 tokens, array bodies, paging, throttling, concurrency."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from integrations.halopsa.wire import from_wire_time
from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable
from scheduling.model import PsaDraft, PsaRecordKind
from tests.conftest import FixedClock
from tests.contracts.pair_halopsa import open_fake_and_client
from tests.fakes.halopsa import (
    DEMO_AGENT_ID,
    DEMO_FALLBACK_CLIENT_ID,
    DEMO_FALLBACK_SITE_ID,
    FakeHaloPsaServer,
    LoggedRequest,
    build_app,
)

STARTS = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
MEMBER = str(DEMO_AGENT_ID)


def draft(fake: FakeHaloPsaServer, key: str, **changes: object) -> PsaDraft:
    values: dict[str, object] = {
        "idempotency_key": key,
        "title": "Intro call with Dana Client",
        "description": "Booked through Slotwise",
        "contact": fake.add_contact("Dana Client", f"dana+{key}@client.example"),
        "member": MEMBER,
        "starts_at": STARTS,
        "ends_at": STARTS + timedelta(minutes=30),
    }
    values.update(changes)
    return PsaDraft(**values)  # type: ignore[arg-type]


def token_requests(fake: FakeHaloPsaServer) -> list[LoggedRequest]:
    return [entry for entry in fake.request_log if entry.path == "/auth/token"]


def api_requests(fake: FakeHaloPsaServer) -> list[LoggedRequest]:
    return [entry for entry in fake.request_log if entry.path.startswith("/api/")]


async def test_the_token_is_a_form_encoded_client_credentials_grant_and_calls_carry_it_as_bearer() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        await client.test_connection()
        [token_call] = token_requests(fake)
        assert token_call.method == "POST"
        assert token_call.query == {"tenant": fake.tenant}
        assert token_call.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
        form = {name: values[0] for name, values in parse_qs(token_call.body).items()}
        assert form == {
            "grant_type": "client_credentials",
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "scope": "all",
        }
        [issued] = fake.tokens
        for call in api_requests(fake):
            assert call.headers["Authorization"] == f"Bearer {issued}"
            assert fake.client_secret not in json.dumps(call.headers) + call.body


async def test_one_token_serves_many_calls_until_shortly_before_it_expires() -> None:
    fake_clock, client_clock = FixedClock(), FixedClock()
    fake = FakeHaloPsaServer(clock=fake_clock.now, token_lifetime=timedelta(hours=1))
    async with open_fake_and_client(fake, clock=client_clock.now) as (client, _fake, _config):
        for _ in range(3):
            await client.test_connection()
        assert len(token_requests(fake)) == 1
        # 30 s before expiry is inside the 60 s refresh margin: the client fetches a new token up front.
        fake_clock.moment += timedelta(minutes=59, seconds=30)
        client_clock.moment += timedelta(minutes=59, seconds=30)
        await client.test_connection()
        assert len(token_requests(fake)) == 2
        assert all(call.status != 401 for call in api_requests(fake))


async def test_a_token_the_fake_expired_early_is_refreshed_once_after_a_401_and_the_call_succeeds() -> None:
    fake_clock = FixedClock()
    fake = FakeHaloPsaServer(clock=fake_clock.now)
    async with open_fake_and_client(fake) as (client, _fake, _config):
        await client.test_connection()
        fake_clock.moment += timedelta(hours=2)
        ref = await client.create_record(PsaRecordKind.TICKET, draft(fake, "expired-1"))
        assert ref.number
        assert len(token_requests(fake)) == 2
        assert [call.status for call in api_requests(fake)].count(401) == 1


async def test_revoked_credentials_make_the_token_endpoint_answer_invalid_client() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        fake.revoke_credentials()
        with pytest.raises(IntegrationAuthError, match="invalid_client"):
            await client.test_connection()
        assert token_requests(fake)[-1].status == 400


async def test_a_wrong_tenant_is_an_auth_error_not_a_retry() -> None:
    async with open_fake_and_client(tenant="someone-else") as (client, _fake, _config):
        with pytest.raises(IntegrationAuthError, match="Unknown tenant"):
            await client.test_connection()


async def test_the_fake_refuses_a_bare_object_body_the_way_halo_does() -> None:
    fake = FakeHaloPsaServer()
    server = TestServer(build_app(fake), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            token_answer = await session.post(
                server.make_url("/auth/token"),
                params={"tenant": fake.tenant},
                data={
                    "grant_type": "client_credentials",
                    "client_id": fake.client_id,
                    "client_secret": fake.client_secret,
                    "scope": "all",
                },
            )
            token = (await token_answer.json())["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            bare = await session.post(server.make_url("/api/Tickets"), json={"summary": "x"}, headers=headers)
            assert bare.status == 400
            assert "array" in await bare.text()
            listed = await session.post(server.make_url("/api/Tickets"), json=[{"summary": "x"}], headers=headers)
            assert listed.status == 201
            unauthenticated = await session.get(server.make_url("/api/Tickets"))
            assert unauthenticated.status == 401
            bad_date = await session.get(
                server.make_url("/api/Appointment"), params={"start_date": "next tuesday"}, headers=headers
            )
            assert bad_date.status == 400
    finally:
        await server.close()


async def test_every_create_is_posted_as_a_json_array() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        ticket = await client.create_record(PsaRecordKind.TICKET, draft(fake, "arrays-1"))
        await client.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft(fake, "arrays-2", ticket_id=ticket.record_id))
        await client.create_record(PsaRecordKind.NOTE, draft(fake, "arrays-3", ticket_id=ticket.record_id))
        posts = [call for call in api_requests(fake) if call.method == "POST"]
        assert [call.path for call in posts] == ["/api/Tickets", "/api/Appointment", "/api/Actions"]
        for call in posts:
            body = json.loads(call.body)
            assert isinstance(body, list)
            assert len(body) == 1


async def test_a_first_time_client_becomes_a_user_on_the_fallback_clients_first_site() -> None:
    fake = FakeHaloPsaServer()
    # A second, later site of the same client, and a site of another client: the first own site is the one used.
    fake.sites[99] = {"id": 99, "name": "Branch", "client_id": DEMO_FALLBACK_CLIENT_ID, "clientsite_name": "P/B"}
    fake.sites[5] = {"id": 5, "name": "Main", "client_id": 4242, "clientsite_name": "Other/Main"}
    async with open_fake_and_client(fake, fallback_client_id=DEMO_FALLBACK_CLIENT_ID) as (client, _fake, _config):
        contact = await client.find_or_create_contact("  Maria  de la Cruz ", "maria@newco.example")
        await client.find_or_create_contact("Lee", "lee@newco.example")
        assert contact is not None
        posts = [json.loads(call.body) for call in api_requests(fake) if call.method == "POST"]
        assert posts == [
            [{"name": "Maria de la Cruz", "emailaddress": "maria@newco.example", "site_id": DEMO_FALLBACK_SITE_ID}],
            [{"name": "Lee", "emailaddress": "lee@newco.example", "site_id": DEMO_FALLBACK_SITE_ID}],
        ]
        site_lookups = [call for call in api_requests(fake) if call.path == "/api/Site"]
        assert len(site_lookups) == 1
        assert site_lookups[0].query["client_id"] == str(DEMO_FALLBACK_CLIENT_ID)
        assert contact.company_id == str(DEMO_FALLBACK_CLIENT_ID)
        ticket = await client.create_record(PsaRecordKind.TICKET, draft(fake, "new-user", contact=contact))
        [stored] = fake.records(PsaRecordKind.TICKET)
        assert (stored["id"], stored["user_id"], stored["client_id"]) == (
            int(ticket.record_id),
            int(contact.contact_id),
            DEMO_FALLBACK_CLIENT_ID,
        )


async def test_without_a_fallback_client_no_user_is_created() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        assert await client.find_or_create_contact("Maria de la Cruz", "maria@newco.example") is None
        assert [call for call in api_requests(fake) if call.method == "POST"] == []
        assert fake.users == {}


async def test_a_fallback_client_without_a_site_is_rejected_and_says_so() -> None:
    async with open_fake_and_client(fallback_client_id=4242) as (client, fake, _config):
        with pytest.raises(IntegrationRejected, match=r"client 4242 .* has no site"):
            await client.find_or_create_contact("Maria de la Cruz", "maria@newco.example")
        assert fake.users == {}


async def test_the_fake_validates_user_bodies_like_halo() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        good = {"name": "Ana", "emailaddress": "ana@newco.example", "site_id": DEMO_FALLBACK_SITE_ID}
        refusals = {
            "name is required": {**good, "name": " "},
            "site_id is required": {key: value for key, value in good.items() if key != "site_id"},
            "Site 777 does not exist": {**good, "site_id": 777},
            "not a valid email address": {**good, "emailaddress": "not-an-address"},
        }
        for message, body in refusals.items():
            with pytest.raises(IntegrationRejected, match=message):
                await client._client.post_array("Users", [body])
        assert fake.users == {}
        [saved] = await client._client.post_array("Users", [good])
        assert (saved["client_id"], saved["site_id"]) == (DEMO_FALLBACK_CLIENT_ID, DEMO_FALLBACK_SITE_ID)


async def test_opportunities_are_refused_without_a_single_call_to_halo() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        with pytest.raises(IntegrationRejected, match="Opportunities are not available in HaloPSA"):
            await client.create_record(PsaRecordKind.OPPORTUNITY, draft(fake, "opp-1"))
        assert fake.request_log == []


async def test_activities_and_schedule_entries_both_become_appointments_and_only_the_ticket_link_is_kept() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        ticket = await client.create_record(PsaRecordKind.TICKET, draft(fake, "kinds-1"))
        activity = await client.create_record(PsaRecordKind.ACTIVITY, draft(fake, "kinds-2", opportunity_id="55"))
        entry = await client.create_record(
            PsaRecordKind.SCHEDULE_ENTRY, draft(fake, "kinds-3", ticket_id=ticket.record_id)
        )
        appointments = {str(row["id"]): row for row in fake.records(PsaRecordKind.SCHEDULE_ENTRY)}
        assert set(appointments) == {activity.record_id, entry.record_id}
        assert "ticket_id" not in appointments[activity.record_id]
        assert "opportunity" not in json.dumps(appointments[activity.record_id])
        assert appointments[entry.record_id]["ticket_id"] == int(ticket.record_id)
        assert appointments[entry.record_id]["agent_id"] == DEMO_AGENT_ID
        assert appointments[entry.record_id]["start_date"] == "2026-11-24T15:00:00"


async def test_ticket_look_ups_filter_the_details_with_search_details_and_a_term_free_of_like_wildcards() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        await client.create_record(PsaRecordKind.TICKET, draft(fake, "search-1"))
        [lookup] = [call for call in api_requests(fake) if call.method == "GET" and call.path == "/api/Tickets"]
        assert "search" not in lookup.query
        assert lookup.query["search_details"] == "slotwise:search-1"
        assert lookup.query["pageinate"] == "true"
        [ticket] = fake.records(PsaRecordKind.TICKET)
        assert ticket["details"].endswith("[slotwise:search-1]")


async def test_busy_times_page_through_every_appointment_using_record_count() -> None:
    async with open_fake_and_client(page_size=50) as (client, fake, _config):
        for hour in range(130):
            starts = STARTS + timedelta(hours=hour)
            fake.add_busy(MEMBER, starts, starts + timedelta(minutes=30))
        fake.agents[8] = {"id": 8, "name": "Sam Other", "email": "sam@msp.example"}
        fake.add_busy("8", STARTS, STARTS + timedelta(hours=1))
        busy = await client.busy_times(MEMBER, STARTS, STARTS + timedelta(days=10))
        assert len(busy) == 130
        assert busy == sorted(busy, key=lambda interval: interval.starts_at)
        assert all(interval.label == "HaloPSA appointment" for interval in busy)
        pages = [call.query["page_no"] for call in api_requests(fake) if call.path == "/api/Appointment"]
        assert pages == ["1", "2", "3"]


async def test_the_fake_throttles_past_its_window_with_retry_after_and_the_client_reports_it() -> None:
    fake_clock = FixedClock()
    fake = FakeHaloPsaServer(clock=fake_clock.now, rate_limit=3, rate_window=timedelta(minutes=1))
    async with open_fake_and_client(fake) as (client, _fake, _config):
        for _ in range(3):
            await client.test_connection()
        with pytest.raises(IntegrationUnavailable) as raised:
            await client.test_connection()
        assert raised.value.retry_after_seconds == 60
        fake_clock.moment += timedelta(minutes=1)
        await client.test_connection()
        assert fake.throttled == 1


async def test_twenty_concurrent_creates_stay_within_the_clients_concurrency_cap_and_draw_no_429() -> None:
    fake = FakeHaloPsaServer(latency_seconds=0.02)
    async with open_fake_and_client(fake, max_concurrent_requests=4) as (client, _fake, _config):
        drafts = [draft(fake, f"burst-{number}") for number in range(20)]
        refs = await asyncio.gather(*(client.create_record(PsaRecordKind.TICKET, item) for item in drafts))
        assert len({ref.record_id for ref in refs}) == 20
        assert len(fake.records(PsaRecordKind.TICKET)) == 20
        assert fake.max_in_flight <= 4
        assert fake.throttled == 0
        assert len(token_requests(fake)) == 1


async def test_an_unknown_status_name_is_rejected_with_the_names_halo_knows() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        ticket = await client.create_record(PsaRecordKind.TICKET, draft(fake, "status-1"))
        with pytest.raises(IntegrationRejected, match="scheduled"):
            await client.set_ticket_status(ticket.record_id, "Booked")
        await client.set_ticket_status(ticket.record_id, "in progress")
        [stored] = fake.records(PsaRecordKind.TICKET)
        assert stored["status_name"] == "In Progress"


async def test_a_ticket_type_is_chosen_by_name_from_the_drafts_board() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        await client.create_record(PsaRecordKind.TICKET, draft(fake, "type-1", board="Service Request"))
        [stored] = fake.records(PsaRecordKind.TICKET)
        assert stored["tickettype_id"] == 2
        with pytest.raises(IntegrationRejected, match="no ticket type named 'Sales Queue'"):
            await client.create_record(PsaRecordKind.TICKET, draft(fake, "type-2", board="Sales Queue"))


async def test_removing_an_appointment_twice_is_harmless() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        entry = await client.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft(fake, "remove-1"))
        await client.remove_schedule_entry(entry)
        await client.remove_schedule_entry(entry)
        assert fake.records(PsaRecordKind.SCHEDULE_ENTRY) == []


async def test_a_fake_rejection_reaches_the_caller_with_halos_own_words() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        with pytest.raises(IntegrationRejected, match="Agent 99 does not exist"):
            await client.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft(fake, "agent-1", member="99"))


def test_halo_times_without_a_zone_are_read_as_utc() -> None:
    assert from_wire_time("2026-11-24T15:00:00") == STARTS
    assert from_wire_time("2026-11-24T16:00:00+01:00") == STARTS
    assert from_wire_time("2026-11-24T15:00:00Z") == STARTS
