"""ConnectWise specifics the PSA contract cannot express: auth headers, conditions, paging, limits, wire shapes."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr, ValidationError

from integrations.connectwise.adapter import ConnectWisePsa
from integrations.connectwise.wire import marker
from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable
from scheduling.model import PsaDraft, PsaRecordKind, PsaRef
from tests.conftest import FixedClock
from tests.contracts.pair_connectwise import config_for, open_fake_and_client
from tests.fakes.connectwise import (
    DEMO_FALLBACK_COMPANY,
    DEMO_FALLBACK_COMPANY_ID,
    DEMO_MEMBER,
    FakeConnectWiseServer,
    LoggedRequest,
    build_app,
)

STARTS = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def draft(fake: FakeConnectWiseServer, key: str, **changes: object) -> PsaDraft:
    values: dict[str, object] = {
        "idempotency_key": key,
        "title": "Intro call with Dana Client",
        "description": "Booked through Slotwise",
        "contact": fake.add_contact("Dana Client", f"dana+{key.replace(':', '-')}@client.example"),
        "member": DEMO_MEMBER,
        "starts_at": STARTS,
        "ends_at": STARTS + timedelta(minutes=30),
    }
    values.update(changes)
    return PsaDraft(**values)  # type: ignore[arg-type]


def calls(fake: FakeConnectWiseServer, method: str, suffix: str) -> list[LoggedRequest]:
    return [entry for entry in fake.request_log if entry.method == method and entry.path.endswith(suffix)]


def good_headers(fake: FakeConnectWiseServer) -> dict[str, str]:
    raw = f"{fake.company_id}+{fake.public_key}:{fake.private_key}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode(), "clientId": fake.client_id}


@asynccontextmanager
async def raw_fake(
    fake: FakeConnectWiseServer | None = None,
) -> AsyncIterator[tuple[aiohttp.ClientSession, str, FakeConnectWiseServer]]:
    """The fake alone, for speaking to it the way any ConnectWise client would."""
    fake = fake or FakeConnectWiseServer()
    server = TestServer(fake.build_app(), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            yield session, str(server.make_url(fake.api_prefix)), fake
    finally:
        await server.close()


async def query(
    session: aiohttp.ClientSession, base: str, fake: FakeConnectWiseServer, path: str, **params: str
) -> tuple[int, Any, Mapping[str, str]]:
    async with session.get(f"{base}/{path}", params=params, headers=good_headers(fake)) as response:
        return response.status, await response.json(), response.headers


# Auth


async def test_every_call_carries_company_plus_public_key_basic_auth_the_client_id_and_a_pinned_version() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        await client.test_connection()
        await client.create_record(PsaRecordKind.TICKET, draft(fake, "auth-shape"))
        assert fake.request_log
        for call in fake.request_log:
            assert call.path.startswith("/v4_6_release/apis/3.0/")
            scheme, _, encoded = call.headers["Authorization"].partition(" ")
            assert scheme == "Basic"
            assert base64.b64decode(encoded).decode() == f"{fake.company_id}+{fake.public_key}:{fake.private_key}"
            assert call.headers["clientId"] == fake.client_id
            assert call.headers["Accept"] == "application/vnd.connectwise.com+json; version=2021.1"


async def test_a_request_without_a_client_id_is_refused_even_with_good_keys() -> None:
    async with raw_fake() as (session, base, fake):
        headers = good_headers(fake)
        del headers["clientId"]
        async with session.get(f"{base}/system/info", headers=headers) as response:
            assert response.status == 401
            body = await response.json()
        assert set(body) == {"code", "message", "errors"}
        assert "clientId" in body["message"]


async def test_an_unregistered_client_id_is_an_auth_error_for_our_client() -> None:
    async with open_fake_and_client(client_id=SecretStr("00000000-0000-0000-0000-000000000000")) as (client, _f, _c):
        with pytest.raises(IntegrationAuthError, match="clientId is not registered"):
            await client.test_connection()


async def test_a_wrong_company_id_is_refused_in_connectwise_error_shape() -> None:
    async with raw_fake() as (session, base, fake):
        raw = f"other+{fake.public_key}:{fake.private_key}".encode()
        headers = {"Authorization": "Basic " + base64.b64encode(raw).decode(), "clientId": fake.client_id}
        async with session.get(f"{base}/system/info", headers=headers) as response:
            assert response.status == 401
            assert set(await response.json()) == {"code", "message", "errors"}


async def test_a_wrong_codebase_fails_the_connection_test_as_a_settings_problem() -> None:
    async with open_fake_and_client(codebase="v2099_1") as (client, _fake, _config):
        with pytest.raises(IntegrationAuthError, match="codebase"):
            await client.test_connection()


async def test_secrets_stay_out_of_reprs_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with open_fake_and_client() as (client, fake, config):
        fake.revoke_credentials()
        with pytest.raises(IntegrationAuthError):
            await client.test_connection()
        assert fake.private_key not in repr(config)
        assert fake.client_id not in repr(config)
    for record in caplog.records:
        assert fake.private_key not in record.getMessage()
        assert fake.client_id not in record.getMessage()


# Conditions


async def test_the_idempotency_look_up_is_a_contains_condition_on_the_marker_in_the_summary() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        ref = await client.create_record(PsaRecordKind.TICKET, draft(fake, "booking-1:0:ticket"))
        [look_up] = calls(fake, "GET", "/service/tickets")
        assert look_up.query["conditions"] == 'summary contains "slotwise:booking-1:0:ticket]"'
        [ticket] = fake.records(PsaRecordKind.TICKET)
        assert ticket["summary"].endswith("[slotwise:booking-1:0:ticket]")
        assert ref.number == str(ticket["id"])


async def test_a_marker_that_is_a_prefix_of_another_does_not_find_the_longer_one() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        longer = await client.create_record(PsaRecordKind.TICKET, draft(fake, "booking-10"))
        shorter = await client.create_record(PsaRecordKind.TICKET, draft(fake, "booking-1"))
        assert longer != shorter
        assert len(fake.records(PsaRecordKind.TICKET)) == 2


async def test_a_long_title_is_shortened_to_fit_and_the_marker_survives() -> None:
    key = "9b2f0c1e-8a8d-4b67-a8c2-5d7f3e9a1b20:3:create_ticket"
    async with open_fake_and_client() as (client, fake, _config):
        first = await client.create_record(PsaRecordKind.TICKET, draft(fake, key, title="Onsite assessment " * 20))
        again = await client.create_record(PsaRecordKind.TICKET, draft(fake, key, title="Onsite assessment " * 20))
        [ticket] = fake.records(PsaRecordKind.TICKET)
        assert len(ticket["summary"]) <= 100
        assert ticket["summary"].endswith(marker(key))
        assert first == again


@pytest.mark.parametrize(
    "conditions",
    [
        "summary contains",
        'summary = "open',
        '(summary = "a"',
        'summary = "a")',
        "nosuchfield = 1",
        "summary == 1",
        "summary contains 5",
        "dateEntered > [not a date]",
        'summary = "a" and',
        'summary = "a" xor id = 1',
        "id in 1, 2",
        "= 5",
    ],
)
async def test_malformed_conditions_are_a_400_in_connectwise_error_shape(conditions: str) -> None:
    async with raw_fake() as (session, base, fake):
        status, body, _headers = await query(session, base, fake, "service/tickets", conditions=conditions)
        assert status == 400
        assert set(body) == {"code", "message", "errors"}
        assert body["errors"]


async def test_the_fake_understands_the_documented_conditions_language() -> None:
    fake = FakeConnectWiseServer()
    fake.add_busy(DEMO_MEMBER, STARTS, STARTS + timedelta(hours=1))
    fake.add_busy(DEMO_MEMBER, STARTS + timedelta(days=1), STARTS + timedelta(days=1, hours=2))
    fake.add_busy(DEMO_MEMBER, STARTS + timedelta(days=5), STARTS + timedelta(days=5, hours=1))
    ids = sorted(fake.entries)
    async with raw_fake(fake) as (session, base, _fake):

        async def found(conditions: str) -> list[int]:
            status, body, _headers = await query(session, base, fake, "schedule/entries", conditions=conditions)
            assert status == 200, body
            return [row["id"] for row in body]

        assert await found(f"dateStart < [{(STARTS + timedelta(days=2)).isoformat()}]") == ids[:2]
        assert await found("dateStart >= [2026-11-25T15:00:00Z] and dateEnd <= [2026-11-29T16:00:00Z]") == ids[1:]
        assert await found(f'member/identifier="{DEMO_MEMBER.upper()}" AND (id={ids[0]} OR id={ids[2]})') == [
            ids[0],
            ids[2],
        ]
        assert await found(f"id != {ids[1]}") == [ids[0], ids[2]]
        assert await found(f"id in ({ids[0]}, {ids[1]})") == ids[:2]
        assert await found(f"not (id <= {ids[1]})") == [ids[2]]
        assert await found("name like 'Internal%'") == ids
        assert await found('name not contains "meeting"') == []
        assert await found('type/identifier="C" and doneFlag=false') == ids
        assert await found("lastUpdated > [2000-01-01T00:00:00Z]") == ids


async def test_a_contact_matches_only_when_one_communication_item_has_both_the_address_and_the_email_type() -> None:
    fake = FakeConnectWiseServer()
    seeded = fake.add_contact("Jane Doe", "jane@acme.example")
    contact = fake.contacts[int(seeded.contact_id)]
    # A phone item whose *value* looks like the address must not make a fax-and-phone contact match.
    contact["communicationItems"] = [
        {"id": 1, "type": {"id": 2, "name": "Phone"}, "value": "jane@acme.example", "communicationType": "Phone"},
        {"id": 2, "type": {"id": 1, "name": "Email"}, "value": "other@acme.example", "communicationType": "Email"},
    ]
    async with open_fake_and_client(fake) as (client, _fake, _config):
        assert await client.find_contact("jane@acme.example") is None
        [call] = calls(fake, "GET", "/company/contacts")
        assert call.query["childConditions"] == (
            'communicationItems/value="jane@acme.example" AND communicationItems/communicationType="Email"'
        )
        assert await client.find_contact("other@acme.example") is not None


async def test_a_quote_in_an_address_cannot_break_out_of_the_condition_string() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        fake.add_contact("Jane Doe", "jane@acme.example")
        assert await client.find_contact('x" OR communicationItems/value contains "@') is None
        assert all(entry.status == 200 for entry in fake.request_log)


# Contacts for first-time clients


async def test_a_first_time_client_becomes_a_contact_of_the_fallback_company_with_an_email_item() -> None:
    async with open_fake_and_client(fallback_company_identifier=DEMO_FALLBACK_COMPANY) as (client, fake, _config):
        contact = await client.find_or_create_contact("Maria de la Cruz Fernández-Villaverde", "maria@newco.example")
        single = await client.find_or_create_contact("Cher", "cher@newco.example")
        assert contact is not None
        assert single is not None
        first, second = (json.loads(entry.body) for entry in calls(fake, "POST", "/company/contacts"))
        assert first == {
            "firstName": "Maria",
            "lastName": "de la Cruz Fernández-Villaverd",  # 30 characters at most
            "company": {"identifier": DEMO_FALLBACK_COMPANY},
            "communicationItems": [{"type": {"id": 1}, "value": "maria@newco.example", "defaultFlag": True}],
        }
        assert "lastName" not in second
        assert contact.company_id == str(DEMO_FALLBACK_COMPANY_ID)
        # Stored with the Email category, which is what the look-up's childConditions ask for.
        assert fake.contacts[int(contact.contact_id)]["communicationItems"][0]["communicationType"] == "Email"
        assert await client.find_contact("MARIA@newco.example") == contact
        opportunity = await client.create_record(
            PsaRecordKind.OPPORTUNITY, draft(fake, "new-client:opp", contact=contact)
        )
        [stored] = fake.records(PsaRecordKind.OPPORTUNITY)
        assert (stored["id"], stored["contact"]["id"], stored["company"]["id"]) == (
            int(opportunity.record_id),
            int(contact.contact_id),
            DEMO_FALLBACK_COMPANY_ID,
        )


async def test_without_a_fallback_company_no_contact_is_made_and_the_opportunity_says_what_to_set() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        assert await client.find_or_create_contact("Maria de la Cruz", "maria@newco.example") is None
        assert calls(fake, "POST", "/company/contacts") == []
        with pytest.raises(IntegrationRejected, match="set fallback_company_identifier"):
            await client.create_record(PsaRecordKind.OPPORTUNITY, draft(fake, "no-contact", contact=None))


async def test_an_unknown_fallback_company_is_rejected_with_connectwises_message() -> None:
    async with open_fake_and_client(fallback_company_identifier="NoSuchCo") as (client, fake, _config):
        with pytest.raises(IntegrationRejected, match="Company not found"):
            await client.find_or_create_contact("Maria de la Cruz", "maria@newco.example")
        assert fake.contacts == {}


# Paging and limits


async def test_busy_time_follows_the_link_header_across_pages() -> None:
    fake = FakeConnectWiseServer()
    for day in range(5):
        fake.add_busy(DEMO_MEMBER, STARTS + timedelta(days=day), STARTS + timedelta(days=day, hours=1))
    async with open_fake_and_client(fake, page_size=2) as (client, _fake, _config):
        busy = await client.busy_times(DEMO_MEMBER, STARTS - timedelta(days=1), STARTS + timedelta(days=10))
    assert [interval.starts_at for interval in busy] == [STARTS + timedelta(days=day) for day in range(5)]
    pages = calls(fake, "GET", "/schedule/entries")
    assert [call.query["page"] for call in pages] == ["1", "2", "3"]
    assert all(call.query["pageSize"] == "2" for call in pages)


async def test_busy_time_asks_for_overlap_in_bracketed_utc_datetimes() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        await client.busy_times(DEMO_MEMBER, STARTS, STARTS + timedelta(days=1))
        [call] = calls(fake, "GET", "/schedule/entries")
        assert call.query["conditions"] == (
            f'member/identifier="{DEMO_MEMBER}" AND dateStart < [2026-11-25T15:00:00Z] AND dateEnd > [2026-11-24T15:00:00Z]'
        )


async def test_the_fake_never_answers_more_than_1000_rows_and_points_to_the_next_page() -> None:
    fake = FakeConnectWiseServer()
    for index in range(1003):
        fake.add_busy(DEMO_MEMBER, STARTS + timedelta(hours=index), STARTS + timedelta(hours=index, minutes=30))
    async with raw_fake(fake) as (session, base, _fake):
        status, body, headers = await query(session, base, fake, "schedule/entries", pageSize="5000")
        assert status == 200
        assert len(body) == 1000
        assert 'rel="next"' in headers["Link"]
        assert "page=2" in headers["Link"]
        _status, rest, headers = await query(session, base, fake, "schedule/entries", pageSize="1000", page="2")
        assert len(rest) == 3
        assert 'rel="next"' not in headers["Link"]


def test_our_page_size_cannot_exceed_connectwises_hard_limit() -> None:
    fake = FakeConnectWiseServer()
    with pytest.raises(ValidationError):
        config_for(_Stub(), fake, page_size=1001)  # type: ignore[arg-type]


class _Stub:
    @staticmethod
    def make_url(_path: str) -> str:
        return "http://127.0.0.1:1/"


async def test_twenty_concurrent_creates_stay_within_the_concurrency_limit_without_a_single_429() -> None:
    fake = FakeConnectWiseServer(max_concurrent_requests=4, latency_seconds=0.02)
    async with open_fake_and_client(fake, max_concurrent_requests=4) as (client, _fake, _config):
        drafts = [draft(fake, f"burst-{index}") for index in range(20)]
        refs = await asyncio.gather(*(client.create_record(PsaRecordKind.TICKET, item) for item in drafts))
    assert len({ref.record_id for ref in refs}) == 20
    assert len(fake.records(PsaRecordKind.TICKET)) == 20
    assert fake.max_in_flight <= 4
    assert fake.throttled == 0


async def test_the_fake_throttles_a_client_that_ignores_the_concurrency_limit() -> None:
    fake = FakeConnectWiseServer(max_concurrent_requests=2, latency_seconds=0.05)
    async with raw_fake(fake) as (session, base, _fake):
        results = await asyncio.gather(*(query(session, base, fake, "system/members") for _ in range(6)))
    statuses = [status for status, _body, _headers in results]
    assert statuses.count(429) >= 1
    assert all(headers["Retry-After"] for status, _body, headers in results if status == 429)


async def test_a_short_retry_after_is_waited_out_inside_the_call() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        fake.fail_next(429, retry_after=0)
        await client.create_record(PsaRecordKind.TICKET, draft(fake, "short-wait"))
        assert [entry.status for entry in fake.request_log][:2] == [429, 200]
        assert len(fake.records(PsaRecordKind.TICKET)) == 1


async def test_the_request_quota_answers_429_with_the_seconds_left_in_its_window() -> None:
    fake_clock = FixedClock()
    fake = FakeConnectWiseServer(clock=fake_clock.now, rate_limit=3, rate_window=timedelta(minutes=1))
    async with open_fake_and_client(fake) as (client, _fake, _config):
        for _ in range(3):
            await client.test_connection()
        fake_clock.moment += timedelta(seconds=15)
        with pytest.raises(IntegrationUnavailable) as raised:
            await client.test_connection()
        assert raised.value.retry_after_seconds == 45
        fake_clock.moment += timedelta(seconds=45)
        await client.test_connection()


async def test_a_dropped_connection_is_retryable() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        fake.lose_next_response()
        with pytest.raises(IntegrationUnavailable):
            await client.create_record(PsaRecordKind.OPPORTUNITY, draft(fake, "dropped"))
        ref = await client.create_record(PsaRecordKind.OPPORTUNITY, draft(fake, "dropped"))
        [stored] = fake.records(PsaRecordKind.OPPORTUNITY)
        assert ref.record_id == str(stored["id"])


# Wire shapes


async def test_a_ticket_names_its_board_company_and_contact_by_id() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        booking = draft(fake, "wire-ticket", board="Onsite", status="Scheduled")
        await client.create_record(PsaRecordKind.TICKET, booking)
        [post] = calls(fake, "POST", "/service/tickets")
        body = json.loads(post.body)
        assert booking.contact is not None
        assert body["company"] == {"id": int(booking.contact.company_id)}
        assert body["contact"] == {"id": int(booking.contact.contact_id)}
        [ticket] = fake.records(PsaRecordKind.TICKET)
        assert ticket["board"]["name"] == "Onsite"
        assert ticket["status"]["name"] == "Scheduled"


async def test_a_missing_board_is_rejected_with_its_name() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        with pytest.raises(IntegrationRejected, match="'Sales'"):
            await client.create_record(PsaRecordKind.TICKET, draft(fake, "no-board", board="Sales"))
        assert fake.records(PsaRecordKind.TICKET) == []


async def test_a_status_is_set_by_json_patch_with_the_id_from_the_tickets_board() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        ticket = await client.create_record(PsaRecordKind.TICKET, draft(fake, "status", board="Onsite"))
        await client.set_ticket_status(ticket.record_id, "In Progress")
        [patch] = calls(fake, "PATCH", f"/service/tickets/{ticket.record_id}")
        [operation] = json.loads(patch.body)
        wanted = next(
            row["id"] for row in fake.statuses.values() if row["boardId"] == 2 and row["name"] == "In Progress"
        )
        assert operation == {"op": "replace", "path": "status", "value": {"id": wanted}}
        with pytest.raises(IntegrationRejected, match="no status named 'Parked'"):
            await client.set_ticket_status(ticket.record_id, "Parked")


async def test_a_schedule_entry_for_a_ticket_is_type_s_on_that_ticket() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        ticket = await client.create_record(PsaRecordKind.TICKET, draft(fake, "entry-ticket"))
        entry = await client.create_record(
            PsaRecordKind.SCHEDULE_ENTRY, draft(fake, "entry-ticket:entry", ticket_id=ticket.record_id)
        )
        [stored] = fake.records(PsaRecordKind.SCHEDULE_ENTRY)
        assert stored["id"] == int(entry.record_id)
        assert stored["type"]["identifier"] == "S"
        assert stored["objectId"] == int(ticket.record_id)
        assert stored["member"]["identifier"] == DEMO_MEMBER
        assert (stored["dateStart"], stored["dateEnd"]) == ("2026-11-24T15:00:00Z", "2026-11-24T15:30:00Z")


@pytest.mark.parametrize("activities_schedule_themselves", [True, False])
async def test_a_schedule_entry_without_a_ticket_is_type_c_on_one_activity(
    activities_schedule_themselves: bool,
) -> None:
    fake = FakeConnectWiseServer(activities_schedule_themselves=activities_schedule_themselves)
    async with open_fake_and_client(fake) as (client, _fake, _config):
        first = await client.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft(fake, "ticketless"))
        again = await client.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft(fake, "ticketless"))
    assert first == again
    [entry] = fake.records(PsaRecordKind.SCHEDULE_ENTRY)
    [activity] = fake.records(PsaRecordKind.ACTIVITY)
    assert entry["type"]["identifier"] == "C"
    assert entry["objectId"] == activity["id"]
    assert activity["assignTo"]["identifier"] == DEMO_MEMBER


async def test_an_activity_is_linked_to_its_opportunity() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        opportunity = await client.create_record(PsaRecordKind.OPPORTUNITY, draft(fake, "opp", stage="Qualified"))
        activity = await client.create_record(
            PsaRecordKind.ACTIVITY, draft(fake, "opp:activity", opportunity_id=opportunity.record_id)
        )
        [stored] = [row for row in fake.records(PsaRecordKind.ACTIVITY) if row["id"] == int(activity.record_id)]
        assert stored["opportunity"]["id"] == int(opportunity.record_id)
        [opp] = fake.records(PsaRecordKind.OPPORTUNITY)
        assert opp["primarySalesRep"]["identifier"] == DEMO_MEMBER
        assert opp["stage"]["name"] == "Qualified"


async def test_an_unknown_member_is_rejected_with_connectwises_validation_message() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        with pytest.raises(IntegrationRejected, match="Member not found"):
            await client.create_record(PsaRecordKind.ACTIVITY, draft(fake, "ghost", member="ghost"))


async def test_a_note_is_a_discussion_note_on_its_ticket_and_the_initial_description_is_not_mistaken_for_it() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        ticket = await client.create_record(PsaRecordKind.TICKET, draft(fake, "noted"))
        note = await client.create_record(
            PsaRecordKind.NOTE, draft(fake, "noted:note", ticket_id=ticket.record_id, description="Rescheduled")
        )
        [stored] = fake.records(PsaRecordKind.NOTE)
        assert stored["id"] == int(note.record_id)
        assert stored["detailDescriptionFlag"] is True
        assert stored["text"].startswith("Rescheduled")


async def test_removing_an_entry_twice_is_fine_but_moving_a_missing_one_is_rejected() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        entry = await client.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft(fake, "gone"))
        await client.remove_schedule_entry(entry)
        await client.remove_schedule_entry(entry)
        [delete, *_] = calls(fake, "DELETE", f"/schedule/entries/{entry.record_id}")
        assert delete.status == 204
        with pytest.raises(IntegrationRejected, match="not found"):
            await client.move_schedule_entry(entry, STARTS, STARTS + timedelta(hours=1))
        with pytest.raises(IntegrationRejected, match="numbers"):
            await client.remove_schedule_entry(PsaRef(PsaRecordKind.SCHEDULE_ENTRY, "abc"))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"firstName": None}, "firstName"),
        ({"firstName": "x" * 31}, "firstName"),
        ({"company": {"identifier": "NoSuchCo"}}, "company"),
        ({"communicationItems": [{"type": {"name": "Pager"}, "value": "x@y.example"}]}, "communicationItems/type"),
        ({"communicationItems": [{"type": {"id": 99}, "value": "x@y.example"}]}, "communicationItems/type"),
        ({"communicationItems": [{"type": {"id": "1"}, "value": "x@y.example"}]}, "communicationItems/type/id"),
        ({"communicationItems": [{"type": {"identifier": "Email"}, "value": "x@y"}]}, "communicationItems/type"),
        ({"communicationItems": [{"type": {"name": "Email"}, "value": "not-an-address"}]}, "communicationItems"),
        ({"communicationItems": [{"value": "x@y.example"}]}, "communicationItems/type"),
    ],
)
async def test_the_fake_validates_contact_bodies_like_connectwise(change: dict[str, Any], field: str) -> None:
    good = {
        "firstName": "Ana",
        "company": {"identifier": DEMO_FALLBACK_COMPANY},
        "communicationItems": [{"type": {"id": 1}, "value": "ana@newco.example", "defaultFlag": True}],
    }
    async with raw_fake() as (session, base, fake):
        body = {key: value for key, value in {**good, **change}.items() if value is not None}
        async with session.post(f"{base}/company/contacts", json=body, headers=good_headers(fake)) as response:
            assert response.status == 400
            assert (await response.json())["errors"][0]["field"] == field
        assert fake.contacts == {}
        async with session.post(f"{base}/company/contacts", json=good, headers=good_headers(fake)) as response:
            assert response.status == 201
            assert (await response.json())["communicationItems"][0]["type"] == {"id": 1, "name": "Email"}


async def test_the_demo_app_serves_with_the_printed_credentials() -> None:
    fake = FakeConnectWiseServer()
    server = TestServer(build_app(fake), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            client = ConnectWisePsa(config_for(server, fake), session)
            await client.test_connection()
    finally:
        await server.close()
