"""Autotask specifics the PSA contract cannot express: zone discovery, headers, query JSON, paging, errors and limits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from integrations.autotask.adapter import AutotaskPsa
from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable
from scheduling.model import PsaDraft, PsaRecordKind
from tests.contracts.pair_autotask import config_for
from tests.fakes.autotask import (
    API_PREFIX,
    DEMO_FALLBACK_COMPANY_ID,
    DEMO_RESOURCE_ID,
    DEMO_ROLE_ID,
    FakeAutotaskServer,
    running_autotask_server,
)

STARTS = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
MEMBER = str(DEMO_RESOURCE_ID)


@dataclass
class MovableClock:
    moment: datetime = field(default_factory=lambda: datetime(2026, 11, 23, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        yield http


@pytest.fixture
async def fake() -> AsyncIterator[FakeAutotaskServer]:
    async with running_autotask_server() as server:
        yield server


def draft_for(fake: FakeAutotaskServer, key: str, **changes: Any) -> PsaDraft:
    contact = fake.add_contact("Dana Client", f"dana+{key}@client.example")
    values: dict[str, Any] = {
        "idempotency_key": key,
        "title": "Intro call with Dana Client",
        "description": "Booked through Slotwise",
        "contact": contact,
        "member": MEMBER,
        "starts_at": STARTS,
        "ends_at": STARTS + timedelta(minutes=30),
    }
    values.update(changes)
    return PsaDraft(**values)


def auth_headers(fake: FakeAutotaskServer) -> dict[str, str]:
    return {
        "ApiIntegrationCode": fake.integration_code,
        "UserName": fake.username,
        "Secret": fake.secret,
        "Content-Type": "application/json",
    }


async def test_every_api_call_carries_the_three_autotask_headers_and_zone_discovery_carries_none(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake), session)
    await psa.create_record(PsaRecordKind.TICKET, draft_for(fake, "headers"))
    assert fake.log
    for logged in fake.log:
        assert logged.headers["ApiIntegrationCode"] == fake.integration_code
        assert logged.headers["UserName"] == fake.username
        assert logged.headers["Secret"] == fake.secret
        assert logged.headers["Content-Type"] == "application/json"
        assert logged.path.startswith(API_PREFIX)
    [zone] = fake.zone_log
    assert zone.query == {"user": fake.username}
    assert not {"Secret", "ApiIntegrationCode", "UserName"} & set(zone.headers)


async def test_the_zone_is_discovered_once_and_then_cached(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake), session)
    await asyncio.gather(*(psa.find_contact(f"nobody{index}@acme.example") for index in range(5)))
    await psa.create_record(PsaRecordKind.TICKET, draft_for(fake, "zone-once"))
    assert len(fake.zone_log) == 1


async def test_an_api_user_autotask_does_not_know_fails_zone_discovery_as_an_auth_error(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake, username="someone-else@acme-it.example"), session)
    with pytest.raises(IntegrationAuthError, match="does not know this API user"):
        await psa.test_connection()
    assert fake.log == []


async def test_a_database_that_moved_zones_is_found_again_after_a_401(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The zone was discovered long enough ago to be asked again (here: no minimum age at all).
    monkeypatch.setattr("integrations.autotask.client.ZONE_REFRESH_SECONDS", 0.0)
    async with running_autotask_server() as new_zone, running_autotask_server() as old_zone:
        old_zone.revoke_credentials()
        new_zone.zone_url = f"{old_zone.base_url}/ATServicesRest/"
        psa = AutotaskPsa(config_for(new_zone), session)
        await psa.client.api_base()
        new_zone.zone_url = None
        assert await psa.find_contact("nobody@acme.example") is None
        assert [logged.status for logged in old_zone.log] == [401]
        assert [logged.status for logged in new_zone.log] == [200]
        assert len(new_zone.zone_log) == 2


async def test_revoked_credentials_do_not_send_every_call_back_to_zone_discovery(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    """Every call answers 401 while the credentials are revoked; asking the zone server again on each of them, one
    at a time, would hold up every step of the tenant. A zone found within the last minute is kept."""
    psa = AutotaskPsa(config_for(fake), session)
    await psa.client.api_base()
    fake.revoke_credentials()
    for index in range(5):
        with pytest.raises(IntegrationAuthError):
            await psa.find_contact(f"nobody{index}@acme.example")
    assert len(fake.zone_log) == 1
    assert [logged.status for logged in fake.log] == [401] * 5


async def test_contacts_are_queried_with_filter_json_and_an_or_group_over_the_three_email_fields(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    seeded = fake.add_contact("Jane Doe", "jane@acme.example")
    fake.tables["Contacts"][int(seeded.contact_id)].update(emailAddress="jane.doe@acme.example")
    fake.tables["Contacts"][int(seeded.contact_id)].update(emailAddress2="Jane@Acme.example")
    psa = AutotaskPsa(config_for(fake), session)
    found = await psa.find_contact("jane@acme.example")
    assert found is not None
    assert found.contact_id == seeded.contact_id
    assert found.email == "Jane@Acme.example"
    [query] = [logged for logged in fake.log if logged.path.endswith("/Contacts/query")]
    assert query.method == "POST"
    assert query.body["filter"] == [
        {
            "op": "or",
            "items": [
                {"op": "eq", "field": "emailAddress", "value": "jane@acme.example"},
                {"op": "eq", "field": "emailAddress2", "value": "jane@acme.example"},
                {"op": "eq", "field": "emailAddress3", "value": "jane@acme.example"},
            ],
        }
    ]
    assert query.body["MaxRecords"] == 500


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"filter": []}, "at least one condition"),
        ({}, "at least one condition"),
        ({"filter": [{"op": "like", "field": "title", "value": "x"}]}, "Unsupported operator"),
        ({"filter": [{"op": "eq", "field": "colour", "value": "x"}]}, "Unable to find colour in the Tickets Entity"),
        ({"filter": [{"op": "eq", "field": "title"}]}, "needs a value"),
        ({"filter": [{"op": "in", "field": "id", "value": 5}]}, "array value"),
        ({"filter": [{"op": "or", "items": []}]}, "non-empty 'items'"),
        ({"filter": [{"op": "in", "field": "id", "value": list(range(501))}]}, "at most 500 conditions"),
        ({"filter": [{"op": "exist", "field": "id"}], "MaxRecords": 501}, "MaxRecords"),
    ],
)
async def test_the_fake_refuses_malformed_queries_with_autotasks_error_shape(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession, body: dict[str, Any], complaint: str
) -> None:
    async with session.post(f"{fake.base_url}{API_PREFIX}Tickets/query", json=body, headers=auth_headers(fake)) as got:
        assert got.status == 500
        answer = await got.json()
    assert complaint in answer["errors"][0]


async def test_the_fake_supports_the_documented_operators_and_groupings(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    for name in ("Ann Able", "Bob Baker", "Cy Cole"):
        fake.add_contact(name, f"{name.split()[0].lower()}@acme.example")
    url = f"{fake.base_url}{API_PREFIX}Contacts/query"

    async def names(*conditions: dict[str, Any]) -> list[str]:
        async with session.post(url, json={"filter": list(conditions)}, headers=auth_headers(fake)) as got:
            assert got.status == 200, await got.text()
            return [item["firstName"] for item in (await got.json())["items"]]

    assert await names({"op": "beginsWith", "field": "firstName", "value": "b"}) == ["Bob"]
    assert await names({"op": "endsWith", "field": "lastName", "value": "LE"}) == ["Ann", "Cy"]
    assert await names({"op": "noteq", "field": "firstName", "value": "Ann"}) == ["Bob", "Cy"]
    assert await names({"op": "notExist", "field": "emailAddress2"}) == ["Ann", "Bob", "Cy"]
    assert await names({"op": "exist", "field": "emailAddress2"}) == []
    assert await names(
        {
            "op": "or",
            "items": [
                {"op": "eq", "field": "firstName", "value": "Ann"},
                {"op": "eq", "field": "firstName", "value": "Cy"},
            ],
        },
        {"op": "notIn", "field": "lastName", "value": ["Cole"]},
    ) == ["Ann"]


async def test_query_pages_are_followed_through_next_page_url(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    for hour in range(5):
        fake.add_busy(MEMBER, STARTS + timedelta(hours=hour), STARTS + timedelta(hours=hour, minutes=30))
    psa = AutotaskPsa(config_for(fake, page_size=2), session)
    busy = await psa.busy_times(MEMBER, STARTS, STARTS + timedelta(days=1))
    assert [interval.starts_at for interval in busy] == [STARTS + timedelta(hours=hour) for hour in range(5)]
    assert all(interval.label == "Autotask service call" for interval in busy)
    pages = [logged for logged in fake.log if logged.path.endswith("/ServiceCalls/query/next")]
    assert len(pages) == 2
    assert all(logged.method == "GET" and logged.headers["Secret"] == fake.secret for logged in pages)


async def test_busy_time_belongs_only_to_the_member_assigned_on_the_service_call(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    colleague = fake.add_resource("Cole", "League", "cole@acme-it.example")
    fake.add_busy(str(colleague), STARTS, STARTS + timedelta(hours=1))
    fake.add_busy(MEMBER, STARTS + timedelta(hours=2), STARTS + timedelta(hours=3))
    psa = AutotaskPsa(config_for(fake), session)
    busy = await psa.busy_times(MEMBER, STARTS, STARTS + timedelta(hours=4))
    assert [(interval.starts_at, interval.ends_at) for interval in busy] == [
        (STARTS + timedelta(hours=2), STARTS + timedelta(hours=3))
    ]
    assert await psa.busy_times(MEMBER, STARTS + timedelta(hours=3), STARTS + timedelta(hours=4)) == []


async def test_creates_answer_item_id_and_child_records_go_through_their_parent_url(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake), session)
    ticket = await psa.create_record(PsaRecordKind.TICKET, draft_for(fake, "children:ticket"))
    assert ticket.number.startswith("T20")
    opportunity = await psa.create_record(PsaRecordKind.OPPORTUNITY, draft_for(fake, "children:opp"))
    todo = await psa.create_record(
        PsaRecordKind.ACTIVITY, draft_for(fake, "children:todo", opportunity_id=opportunity.record_id)
    )
    await psa.create_record(PsaRecordKind.NOTE, draft_for(fake, "children:note", ticket_id=ticket.record_id))
    await psa.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft_for(fake, "children:call", ticket_id=ticket.record_id))
    posts = [logged.path.removeprefix(API_PREFIX) for logged in fake.log if logged.method == "POST"]
    creates = [path for path in posts if not path.endswith("/query")]
    [stored_todo] = fake.records(PsaRecordKind.ACTIVITY)
    company = stored_todo["companyID"]
    call_id = fake.records(PsaRecordKind.SCHEDULE_ENTRY)[0]["id"]
    link_id = next(iter(fake.tables["ServiceCallTickets"]))
    assert creates == [
        "Tickets",
        "Opportunities",
        f"Companies/{company}/ToDos",
        f"Tickets/{ticket.record_id}/Notes",
        "ServiceCalls",
        f"ServiceCalls/{call_id}/Tickets",
        f"ServiceCallTickets/{link_id}/Resources",
    ]
    assert stored_todo["id"] == int(todo.record_id)
    assert stored_todo["opportunityID"] == int(opportunity.record_id)
    for child in ("CompanyToDos", "Contacts", "TicketNotes", "ServiceCallTickets", "ServiceCallTicketResources"):
        async with session.post(f"{fake.base_url}{API_PREFIX}{child}", json={}, headers=auth_headers(fake)) as got:
            assert got.status == 405, child
            assert "does not support http method 'POST'" in (await got.json())["Message"]


async def test_a_schedule_entry_on_a_ticket_assigns_the_member_and_creates_no_other_ticket(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake), session)
    ticket = await psa.create_record(PsaRecordKind.TICKET, draft_for(fake, "on-ticket:ticket"))
    entry = await psa.create_record(
        PsaRecordKind.SCHEDULE_ENTRY, draft_for(fake, "on-ticket:entry", ticket_id=ticket.record_id)
    )
    again = await psa.create_record(
        PsaRecordKind.SCHEDULE_ENTRY, draft_for(fake, "on-ticket:entry", ticket_id=ticket.record_id)
    )
    assert again == entry
    assert len(fake.records(PsaRecordKind.TICKET)) == 1
    [link] = fake.tables["ServiceCallTickets"].values()
    [assignment] = fake.tables["ServiceCallTicketResources"].values()
    assert (link["serviceCallID"], link["ticketID"]) == (int(entry.record_id), int(ticket.record_id))
    assert assignment == {"id": assignment["id"], "serviceCallTicketID": link["id"], "resourceID": DEMO_RESOURCE_ID}
    [stored_ticket] = fake.records(PsaRecordKind.TICKET)
    assert (stored_ticket["assignedResourceID"], stored_ticket["assignedResourceRoleID"]) == (
        DEMO_RESOURCE_ID,
        DEMO_ROLE_ID,
    )


async def test_times_leave_as_utc_iso_8601_whatever_zone_the_draft_uses(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    local = STARTS.astimezone(ZoneInfo("America/New_York"))
    psa = AutotaskPsa(config_for(fake), session)
    await psa.create_record(
        PsaRecordKind.SCHEDULE_ENTRY,
        draft_for(fake, "utc", starts_at=local, ends_at=local + timedelta(minutes=45)),
    )
    [create] = [logged for logged in fake.log if logged.method == "POST" and logged.path.endswith("/Appointments")]
    assert create.body["startDateTime"] == "2026-11-24T15:00:00Z"
    assert create.body["endDateTime"] == "2026-11-24T15:45:00Z"


async def test_removing_a_schedule_entry_twice_succeeds_and_unknown_statuses_are_rejected(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake), session)
    entry = await psa.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft_for(fake, "twice"))
    await psa.remove_schedule_entry(entry)
    await psa.remove_schedule_entry(entry)
    assert fake.records(PsaRecordKind.SCHEDULE_ENTRY) == []
    ticket = await psa.create_record(PsaRecordKind.TICKET, draft_for(fake, "status"))
    with pytest.raises(IntegrationRejected, match="no active Tickets status named 'Parked'"):
        await psa.set_ticket_status(ticket.record_id, "Parked")
    await psa.set_ticket_status(ticket.record_id, "in progress")
    [patch] = [logged for logged in fake.log if logged.method == "PATCH"]
    assert patch.body == {"id": int(ticket.record_id), "status": 8}


async def test_autotask_500_with_errors_is_a_rejection_but_a_bare_500_is_retryable(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake), session)
    fake.fail_next(500, message="Value does not exist for the required field queueID.")
    with pytest.raises(IntegrationRejected, match="required field queueID"):
        await psa.create_record(PsaRecordKind.TICKET, draft_for(fake, "500s"))
    fake.fail_next(500)
    with pytest.raises(IntegrationUnavailable):
        await psa.create_record(PsaRecordKind.TICKET, draft_for(fake, "500s"))
    fake.fail_next(500, message="The logged in Resource does not have the adequate permissions to create tickets.")
    with pytest.raises(IntegrationAuthError):
        await psa.create_record(PsaRecordKind.TICKET, draft_for(fake, "500s"))
    assert fake.records(PsaRecordKind.TICKET) == []


async def test_the_fake_validates_create_bodies_like_autotask(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake, ticket_queue_id=42), session)
    with pytest.raises(IntegrationRejected, match="not a valid picklist value for field queueID"):
        await psa.create_record(PsaRecordKind.TICKET, draft_for(fake, "no-queue"))
    url = f"{fake.base_url}{API_PREFIX}Opportunities"
    async with session.post(url, json={"title": "x", "useQuoteTotals": 0}, headers=auth_headers(fake)) as got:
        assert got.status == 500
        assert "useQuoteTotals" in (await got.json())["errors"][0]
    async with session.post(url, json={"title": "x"}, headers=auth_headers(fake)) as got:
        assert "Missing required field(s) on Opportunities: amount, companyID" in (await got.json())["errors"][0]
    assert fake.records(PsaRecordKind.OPPORTUNITY) == []


async def test_a_first_time_client_becomes_an_active_contact_of_the_fallback_company(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake, fallback_company_id=DEMO_FALLBACK_COMPANY_ID), session)
    contact = await psa.find_or_create_contact("Maria de la Cruz", "maria@newco.example")
    single = await psa.find_or_create_contact("Cher", "cher@newco.example")
    assert contact is not None
    assert single is not None
    posted = [entry.body for entry in fake.log if entry.method == "POST" and entry.path.endswith("/Contacts")]
    assert posted == [
        {
            "companyID": DEMO_FALLBACK_COMPANY_ID,
            "firstName": "Maria",
            "lastName": "de la Cruz",
            "emailAddress": "maria@newco.example",
            "isActive": 1,
        },
        {
            "companyID": DEMO_FALLBACK_COMPANY_ID,
            "firstName": "Cher",
            "lastName": "(not given)",
            "emailAddress": "cher@newco.example",
            "isActive": 1,
        },
    ]
    assert (contact.company_id, contact.name) == (str(DEMO_FALLBACK_COMPANY_ID), "Maria de la Cruz")
    assert fake.contacts_with_email("maria@newco.example") == [contact]


async def test_without_a_fallback_company_no_contact_is_created(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake), session)
    assert await psa.find_or_create_contact("Maria de la Cruz", "maria@newco.example") is None
    assert [entry for entry in fake.log if entry.method == "POST" and entry.path.endswith("/Contacts")] == []
    assert fake.tables["Contacts"] == {}


async def test_the_fake_validates_contact_bodies_like_autotask(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    url = f"{fake.base_url}{API_PREFIX}Companies/{DEMO_FALLBACK_COMPANY_ID}/Contacts"
    good = {"companyID": DEMO_FALLBACK_COMPANY_ID, "firstName": "A", "lastName": "B", "isActive": 1}
    refusals = {
        "Missing required field(s) on Contacts: lastName": {**good, "lastName": None},
        "companyID 777 does not match the parent id": {**good, "companyID": 777},
        "not a valid email address": {**good, "emailAddress": "not-an-address"},
        "isActive must be 0 or 1": {**good, "isActive": 5},
    }
    for message, body in refusals.items():
        async with session.post(url, json=body, headers=auth_headers(fake)) as got:
            assert got.status == 500
            assert message in (await got.json())["errors"][0]
    assert fake.tables["Contacts"] == {}
    async with session.post(url, json={**good, "emailAddress": "a@b.example"}, headers=auth_headers(fake)) as got:
        assert got.status == 200
        assert fake.contacts_with_email("A@B.example")[0].contact_id == str((await got.json())["itemId"])


async def test_an_unknown_fallback_company_is_rejected_with_autotasks_message(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake, fallback_company_id=777), session)
    with pytest.raises(IntegrationRejected, match="companyID of type Companies does not exist: 777"):
        await psa.find_or_create_contact("Maria de la Cruz", "maria@newco.example")
    assert fake.tables["Contacts"] == {}


async def test_secrets_never_reach_the_logs(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = config_for(fake)
    psa = AutotaskPsa(config, session)
    await psa.create_record(PsaRecordKind.TICKET, draft_for(fake, "secrets"))
    fake.revoke_credentials()
    with pytest.raises(IntegrationAuthError) as raised:
        await psa.test_connection()
    for text in (caplog.text, repr(config), str(config.model_dump()), str(raised.value)):
        assert config.secret.get_secret_value() not in text
        assert config.integration_code.get_secret_value() not in text


async def test_twenty_concurrent_creates_never_exceed_three_requests_per_endpoint(
    session: aiohttp.ClientSession,
) -> None:
    async with running_autotask_server(latency_seconds=0.02) as fake:
        psa = AutotaskPsa(config_for(fake), session)
        drafts = [draft_for(fake, f"burst-{index}") for index in range(20)]
        refs = await asyncio.gather(*(psa.create_record(PsaRecordKind.TICKET, draft) for draft in drafts))
        assert len({ref.record_id for ref in refs}) == 20
        assert len(fake.records(PsaRecordKind.TICKET)) == 20
        assert fake.limit_errors == []
        assert all(logged.status != 429 for logged in fake.log)
        assert max(fake.peak_in_flight.values()) <= 3
        assert fake.peak_in_flight["Tickets"] == 3, "the burst should really have run three at a time"


async def test_the_fake_refuses_a_fourth_concurrent_request_to_one_endpoint(session: aiohttp.ClientSession) -> None:
    async with running_autotask_server(latency_seconds=0.1) as fake:
        url = f"{fake.base_url}{API_PREFIX}Tickets/query"
        body = {"filter": [{"op": "exist", "field": "id"}]}

        async def one() -> tuple[int, str | None, Any]:
            async with session.post(url, json=body, headers=auth_headers(fake)) as got:
                return got.status, got.headers.get("Retry-After"), await got.json()

        answers = await asyncio.gather(*(one() for _ in range(6)))
        refused = [answer for answer in answers if answer[0] == 429]
        assert len(refused) == 3
        assert all(
            retry_after == "1" and "Thread threshold" in payload["errors"][0] for _, retry_after, payload in refused
        )
        assert fake.peak_in_flight["Tickets"] == 3
        async with session.post(
            f"{fake.base_url}{API_PREFIX}Contacts/query", json=body, headers=auth_headers(fake)
        ) as got:
            assert got.status == 200


async def test_a_short_retry_after_is_waited_out_once_and_a_long_one_is_handed_back(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake), session)
    fake.fail_next(429, retry_after=1, message="Thread threshold exceeded.")
    started = asyncio.get_running_loop().time()
    ticket = await psa.create_record(PsaRecordKind.TICKET, draft_for(fake, "short-wait"))
    assert asyncio.get_running_loop().time() - started >= 1
    assert [logged.status for logged in fake.log][:2] == [429, 200]
    assert [row["id"] for row in fake.records(PsaRecordKind.TICKET)] == [int(ticket.record_id)]
    fake.fail_next(429, retry_after=3)
    with pytest.raises(IntegrationUnavailable) as raised:
        await psa.find_contact("jane@acme.example")
    assert raised.value.retry_after_seconds == 3
    assert fake.log[-1].status == 429, "a long Retry-After is not retried here"
    fake.fail_next(429, retry_after=1, count=2)
    with pytest.raises(IntegrationUnavailable) as raised:
        await psa.find_contact("jane@acme.example")
    assert raised.value.retry_after_seconds == 1


async def test_our_client_keeps_its_own_hourly_budget_and_never_spends_autotasks_quota_for_it(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake, requests_per_hour=5), session)
    for _ in range(5):
        await psa.find_contact("jane@acme.example")
    sent = len(fake.log)
    with pytest.raises(IntegrationUnavailable) as raised:
        await psa.find_contact("jane@acme.example")
    assert raised.value.retry_after_seconds is not None
    assert 3500 < raised.value.retry_after_seconds <= 3600
    assert len(fake.log) == sent, "the request over budget never reached Autotask"
    assert all(logged.status != 429 for logged in fake.log)
    again = AutotaskPsa(config_for(fake, requests_per_hour=5), session)
    with pytest.raises(IntegrationUnavailable):
        await again.find_contact("jane@acme.example")  # a rebuilt adapter shares the same rolling hour


async def test_the_hourly_quota_is_shared_rolls_over_and_is_retryable_with_retry_after(
    session: aiohttp.ClientSession,
) -> None:
    clock = MovableClock()
    async with running_autotask_server(clock=clock) as fake:
        psa = AutotaskPsa(config_for(fake), session)
        fake.spend_quota(9_999)
        await psa.test_connection()
        clock.moment += timedelta(minutes=10)
        with pytest.raises(IntegrationUnavailable) as raised:
            await psa.find_contact("jane@acme.example")
        assert raised.value.retry_after_seconds == 50 * 60
        assert fake.limit_errors == ["hourly Contacts"]
        clock.moment += timedelta(minutes=50)
        assert await psa.find_contact("jane@acme.example") is None
