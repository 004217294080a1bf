"""ConnectWisePsa against rules taken from ConnectWise's documents (integrations/connectwise/SOURCES.md), over HTTP."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from integrations.connectwise.adapter import ConnectWisePsa
from integrations.connectwise.wire import marker
from scheduling.errors import IntegrationRejected, IntegrationUnavailable
from scheduling.model import PsaDraft, PsaRecordKind, PsaRef
from tests.contracts.pair_connectwise import open_fake_and_client
from tests.fakes.connectwise import DEMO_FALLBACK_COMPANY, DEMO_MEMBER, FakeConnectWiseServer
from tests.integration.test_connectwise_fake_and_client import calls, good_headers, query, raw_fake

STARTS = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
READINGS = ["", *FakeConnectWiseServer().readings]
WILDCARD_KEYS = ["b_1", "bx1", "b[x]1", "b%1"]
DANA = "dana@client.example"


def draft(fake: FakeConnectWiseServer, key: str, **changes: object) -> PsaDraft:
    values: dict[str, object] = {
        "idempotency_key": key,
        "title": "Intro call with Dana Client",
        "description": "Booked through Slotwise",
        "contact": next(iter(fake.contacts_with_email(DANA)), None) or fake.add_contact("Dana Client", DANA),
        "member": DEMO_MEMBER,
        "starts_at": STARTS,
        "ends_at": STARTS + timedelta(minutes=30),
    }
    values.update(changes)
    return PsaDraft(**values)  # type: ignore[arg-type]


def counts(fake: FakeConnectWiseServer) -> dict[str, int]:
    return {kind.value: len(fake.records(kind)) for kind in PsaRecordKind} | {"contact": len(fake.contacts)}


# Item 4: look-ups by marker read every hit and adopt only the exact marker, under both readings of `contains`.


@pytest.mark.parametrize("reading", READINGS)
async def test_keys_full_of_like_wildcards_each_find_only_their_own_record(reading: str) -> None:
    async with open_fake_and_client() as (client, fake, _config):
        fake.use_reading(reading)
        first: dict[str, PsaRef] = {}
        for key in WILDCARD_KEYS:
            first[key] = await client.create_record(PsaRecordKind.TICKET, draft(fake, key))
            entry = await client.create_record(
                PsaRecordKind.SCHEDULE_ENTRY, draft(fake, f"{key}:entry", ticket_id=first[key].record_id)
            )
            assert entry == await client.create_record(
                PsaRecordKind.SCHEDULE_ENTRY, draft(fake, f"{key}:entry", ticket_id=first[key].record_id)
            )
        for key in WILDCARD_KEYS:
            assert await client.create_record(PsaRecordKind.TICKET, draft(fake, key)) == first[key]
        assert len({ref.record_id for ref in first.values()}) == len(WILDCARD_KEYS)
        assert len(fake.records(PsaRecordKind.TICKET)) == len(WILDCARD_KEYS)
        assert len(fake.records(PsaRecordKind.SCHEDULE_ENTRY)) == len(WILDCARD_KEYS)


@pytest.mark.parametrize("reading", READINGS)
async def test_a_record_behind_more_than_a_page_of_lookalike_hits_is_found_and_not_created_again(
    reading: str,
) -> None:
    async with open_fake_and_client() as (client, fake, _config):
        fake.use_reading(reading)
        # Older tickets that quote the marker's text without being the booking's (a follow-up typed by a
        # dispatcher): every one matches the `contains` probe, none holds the exact `[slotwise:bx1]`.
        for number in range(1_030):
            fake.add_ticket(f"Follow-up {number}: see slotwise:bx1] and SLOTWISE:BX1]")
        ours = await client.create_record(PsaRecordKind.TICKET, draft(fake, "bx1"))
        fake.request_log.clear()
        assert await client.create_record(PsaRecordKind.TICKET, draft(fake, "bx1")) == ours
        assert len(fake.records(PsaRecordKind.TICKET)) == 1_031
        look_ups = calls(fake, "GET", "/service/tickets")
        assert [entry.query["page"] for entry in look_ups] == ["1", "2"]
        assert {entry.query["pageSize"] for entry in look_ups} == {"1000"}
        assert calls(fake, "POST", "/service/tickets") == []


@pytest.mark.parametrize("reading", READINGS)
async def test_more_than_25_marked_copies_still_resolve_to_the_oldest(reading: str) -> None:
    async with open_fake_and_client() as (client, fake, _config):
        fake.use_reading(reading)
        for number in range(40):
            fake.add_ticket(f"Follow-up {number} for slotwise:b-1]")
        original = fake.add_ticket(f"Intro call {marker('b-1')}")
        for _copy in range(3):
            fake.add_ticket(f"Copy of Intro call {marker('b-1')}")
        ref = await client.create_record(PsaRecordKind.TICKET, draft(fake, "b-1"))
        assert ref.record_id == str(original)
        assert len(fake.records(PsaRecordKind.TICKET)) == 44


async def test_the_like_reading_treats_underscore_percent_and_brackets_in_contains_as_wildcards() -> None:
    async with raw_fake() as (session, base, fake):
        for summary in ("bx1", "b_1", "b[x]1", "b%1", "b--1"):
            fake.add_ticket(summary)

        async def matching(value: str) -> list[str]:
            status, rows, _headers = await query(
                session, base, fake, "service/tickets", conditions=f'summary contains "{value}"', orderBy="id asc"
            )
            assert status == 200
            return [row["summary"] for row in rows]

        assert await matching("b_1") == ["b_1"]
        assert await matching("b[x]1") == ["b[x]1"]
        assert await matching("b%1") == ["b%1"]
        fake.use_reading("like")
        assert await matching("b_1") == ["bx1", "b_1", "b%1"]
        assert await matching("b[x]1") == ["bx1"]
        assert await matching("b%1") == ["bx1", "b_1", "b[x]1", "b%1", "b--1"]
        assert await matching("b[[]x]1") == ["b[x]1"]
        assert await matching("b[^x]1") == ["b_1", "b%1"]
        with pytest.raises(ValueError, match="unknown reading"):
            fake.use_reading("regex")


# Item 7: the e-mail item references its communication type by the id ConnectWise lists.


async def test_a_new_contacts_email_item_names_its_communication_type_by_the_listed_id() -> None:
    fake = FakeConnectWiseServer(
        communication_types=[
            {"id": 30, "description": "Private Email", "emailFlag": True, "phoneFlag": False, "faxFlag": False},
            {"id": 31, "description": "Email", "emailFlag": True, "phoneFlag": False, "faxFlag": False},
            {"id": 32, "description": "Direct", "emailFlag": False, "phoneFlag": True, "faxFlag": False},
        ]
    )
    async with open_fake_and_client(fake, fallback_company_identifier=DEMO_FALLBACK_COMPANY) as (client, _, _c):
        for name in ("ana", "ben", "cy"):
            contact = await client.find_or_create_contact(name.title(), f"{name}@newco.example")
            assert contact is not None
            assert await client.find_contact(f"{name}@newco.example") == contact
        bodies = [json.loads(entry.body) for entry in calls(fake, "POST", "/company/contacts")]
        assert [body["communicationItems"][0]["type"] for body in bodies] == [{"id": 31}] * 3
        assert len(calls(fake, "GET", "/company/communicationTypes")) == 1
        stored = [contact["communicationItems"][0] for contact in fake.contacts.values()]
        assert {(item["type"]["id"], item["communicationType"]) for item in stored} == {(31, "Email")}


async def test_a_tenant_that_renamed_its_email_type_still_gets_contacts_with_an_email_item() -> None:
    fake = FakeConnectWiseServer(
        communication_types=[
            {"id": 7, "description": "E-mail (work)", "emailFlag": True, "phoneFlag": False, "faxFlag": False},
            {"id": 8, "description": "Phone", "emailFlag": False, "phoneFlag": True, "faxFlag": False},
        ]
    )
    async with open_fake_and_client(fake, fallback_company_identifier=DEMO_FALLBACK_COMPANY) as (client, _, _c):
        contact = await client.find_or_create_contact("Ana Newco", "ana@newco.example")
        assert contact is not None
        assert fake.contacts[int(contact.contact_id)]["communicationItems"][0]["type"]["id"] == 7
        assert await client.find_contact("ana@newco.example") == contact


async def test_a_tenant_without_an_email_communication_type_is_told_so_and_gets_no_contact() -> None:
    fake = FakeConnectWiseServer(
        communication_types=[{"id": 8, "description": "Phone", "emailFlag": False, "phoneFlag": True}]
    )
    async with open_fake_and_client(fake, fallback_company_identifier=DEMO_FALLBACK_COMPANY) as (client, _, _c):
        with pytest.raises(IntegrationRejected, match="communication type for e-mail"):
            await client.find_or_create_contact("Ana Newco", "ana@newco.example")
        assert fake.contacts == {}


async def test_the_fake_lists_communication_types_with_their_documented_fields() -> None:
    async with raw_fake() as (session, base, fake):
        status, rows, _headers = await query(
            session, base, fake, "company/communicationTypes", conditions="emailFlag=true"
        )
        assert status == 200
        assert [(row["id"], row["description"]) for row in rows] == [(1, "Email")]


# Item 8: an earlier create_activity step's activity carries the schedule entry; no second activity.


@pytest.mark.parametrize("activities_schedule_themselves", [True, False])
async def test_a_schedule_entry_after_an_activity_step_goes_on_that_activity_and_makes_no_second_one(
    activities_schedule_themselves: bool,
) -> None:
    fake = FakeConnectWiseServer(activities_schedule_themselves=activities_schedule_themselves)
    async with open_fake_and_client(fake) as (client, _, _config):
        activity = await client.create_record(PsaRecordKind.ACTIVITY, draft(fake, "booking-8:0:activity"))
        entry_draft = draft(fake, "booking-8:1:entry", activity_id=activity.record_id)
        entry = await client.create_record(PsaRecordKind.SCHEDULE_ENTRY, entry_draft)
        assert await client.create_record(PsaRecordKind.SCHEDULE_ENTRY, entry_draft) == entry
        assert [row["id"] for row in fake.records(PsaRecordKind.ACTIVITY)] == [int(activity.record_id)]
        [stored] = fake.records(PsaRecordKind.SCHEDULE_ENTRY)
        assert (stored["id"], stored["objectId"], stored["type"]["identifier"]) == (
            int(entry.record_id),
            int(activity.record_id),
            "C",
        )


async def test_an_activity_id_that_is_not_a_number_is_rejected_and_creates_nothing() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        with pytest.raises(IntegrationRejected, match="activity ids are numbers"):
            await client.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft(fake, "k:entry", activity_id="abc"))
        assert counts(fake) | {"contact": 0} == dict.fromkeys(counts(fake), 0)


# A lost answer on every create kind: the retry finds what was saved instead of adding a second one.

Create = Callable[[ConnectWisePsa, FakeConnectWiseServer], Awaitable[object]]


async def _make_ticket(client: ConnectWisePsa, fake: FakeConnectWiseServer) -> str:
    return (await client.create_record(PsaRecordKind.TICKET, draft(fake, "lost:0:ticket"))).record_id


async def _make_activity(client: ConnectWisePsa, fake: FakeConnectWiseServer) -> str:
    return (await client.create_record(PsaRecordKind.ACTIVITY, draft(fake, "lost:0:activity"))).record_id


def _create(kind: PsaRecordKind, key: str, parent: str = "") -> Callable[..., Awaitable[object]]:
    async def create(client: ConnectWisePsa, fake: FakeConnectWiseServer, parent_id: str) -> object:
        changes: dict[str, Any] = {parent: parent_id} if parent else {}
        return await client.create_record(kind, draft(fake, key, **changes))

    return create


LOST_CASES: dict[str, tuple[Any, Callable[..., Awaitable[object]], str]] = {
    "ticket": (None, _create(PsaRecordKind.TICKET, "lost:1:ticket"), "/service/tickets"),
    "opportunity": (None, _create(PsaRecordKind.OPPORTUNITY, "lost:1:opp"), "/sales/opportunities"),
    "activity": (None, _create(PsaRecordKind.ACTIVITY, "lost:1:activity"), "/sales/activities"),
    "note": (_make_ticket, _create(PsaRecordKind.NOTE, "lost:1:note", "ticket_id"), "/notes"),
    "entry on a ticket": (
        _make_ticket,
        _create(PsaRecordKind.SCHEDULE_ENTRY, "lost:1:entry", "ticket_id"),
        "/schedule/entries",
    ),
    "entry on an earlier activity": (
        _make_activity,
        _create(PsaRecordKind.SCHEDULE_ENTRY, "lost:1:entry", "activity_id"),
        "/schedule/entries",
    ),
    "own activity of an entry": (None, _create(PsaRecordKind.SCHEDULE_ENTRY, "lost:1:entry"), "/sales/activities"),
    "entry on its own activity": (None, _create(PsaRecordKind.SCHEDULE_ENTRY, "lost:1:entry"), "/schedule/entries"),
}


@pytest.mark.parametrize("activities_schedule_themselves", [False, True])
@pytest.mark.parametrize("case", list(LOST_CASES))
async def test_a_lost_answer_on_any_create_is_followed_by_a_retry_that_adds_nothing(
    case: str, activities_schedule_themselves: bool
) -> None:
    prepare, create, path = LOST_CASES[case]
    fake = FakeConnectWiseServer(activities_schedule_themselves=activities_schedule_themselves)
    async with open_fake_and_client(fake) as (client, _, _config):
        parent_id = await prepare(client, fake) if prepare else ""
        fake.lose_next_response(path=path)
        try:
            await create(client, fake, parent_id)
        except IntegrationUnavailable:
            pass
        else:
            # Only when the activity already put itself on the schedule is there no entry POST to lose.
            assert activities_schedule_themselves
            assert path == "/schedule/entries"
            assert fake.responses_lost == 0
            return
        assert fake.responses_lost == 1
        first = await create(client, fake, parent_id)
        saved = counts(fake)
        # Every case makes at most one record of each kind (and uses one seeded contact).
        assert set(saved.values()) <= {0, 1}
        assert await create(client, fake, parent_id) == first
        assert counts(fake) == saved


async def test_a_lost_answer_on_a_new_contact_is_recovered_by_looking_it_up_again() -> None:
    async with open_fake_and_client(fallback_company_identifier=DEMO_FALLBACK_COMPANY) as (client, fake, _config):
        fake.lose_next_response(path="/company/contacts")
        contact = await client.find_or_create_contact("Robin Newcomer", "robin@newcomer.example")
        assert fake.responses_lost == 1
        assert contact is not None
        assert await client.find_or_create_contact("Robin Newcomer", "robin@newcomer.example") == contact
        assert len(fake.contacts_with_email("robin@newcomer.example")) == 1


# The contract protocol's control surface.


async def test_busy_time_of_every_kind_the_fake_knows_is_read_by_the_adapter() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        for offset, kind in enumerate(("", *fake.busy_kinds)):
            starts = STARTS + timedelta(days=offset)
            fake.add_busy(DEMO_MEMBER, starts, starts + timedelta(hours=1), kind)
        busy = await client.busy_times(DEMO_MEMBER, STARTS - timedelta(days=1), STARTS + timedelta(days=5))
        assert len(busy) == 1 + len(fake.busy_kinds)
        with pytest.raises(ValueError, match="unknown busy kind"):
            fake.add_busy(DEMO_MEMBER, STARTS, STARTS + timedelta(hours=1), "holiday")


async def test_a_query_with_a_page_size_over_1000_is_cut_to_1000() -> None:
    async with raw_fake() as (session, base, fake):
        for number in range(1_001):
            fake.add_ticket(f"Ticket {number}")
        async with session.get(
            f"{base}/service/tickets", params={"pageSize": "5000"}, headers=good_headers(fake)
        ) as response:
            assert len(await response.json()) == 1_000
            assert 'rel="next"' in response.headers["Link"]


# PsaClient.ticket_contact: the ticket's `contact`, then that contact's e-mail item (SOURCES.md, "Verified against").


async def test_a_tickets_contact_is_read_with_fields_and_its_default_email_item_wins() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        seeded = fake.add_contact("Morgan Requester", "old@requester.example")
        row = fake.contacts[int(seeded.contact_id)]
        email_type = row["communicationItems"][0]["type"]
        row["communicationItems"] = [
            {"id": 1, "type": {"id": 2, "name": "Direct"}, "value": "555-0100", "communicationType": "Phone"},
            {"id": 2, "type": email_type, "value": "old@requester.example", "communicationType": "Email"},
            {
                "id": 3,
                "type": email_type,
                "value": "morgan@requester.example",
                "defaultFlag": True,
                "communicationType": "Email",
            },
        ]
        ticket_id = fake.add_ticket("VPN drops every hour", contact=seeded)

        found = await client.ticket_contact(str(ticket_id))

        assert found is not None
        assert (found.contact_id, found.company_id) == (seeded.contact_id, seeded.company_id)
        assert (found.name, found.email) == ("Morgan Requester", "morgan@requester.example")
        [ticket_read] = calls(fake, "GET", f"/service/tickets/{ticket_id}")
        assert ticket_read.query == {"fields": "id,company,contact,contactName,contactEmailAddress"}
        [contact_read] = calls(fake, "GET", f"/company/contacts/{seeded.contact_id}")
        assert contact_read.query == {"fields": "id,firstName,lastName,company,communicationItems"}


async def test_an_address_typed_on_the_ticket_wins_and_needs_no_second_call() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        seeded = fake.add_contact("Morgan Requester", "morgan@requester.example")
        ticket_id = fake.add_ticket("Shared mailbox full", contact=seeded, stated_email="it-desk@requester.example")

        found = await client.ticket_contact(str(ticket_id))

        assert found is not None
        assert (found.contact_id, found.name, found.email) == (
            seeded.contact_id,
            "Morgan Requester",
            "it-desk@requester.example",
        )
        assert calls(fake, "GET", f"/company/contacts/{seeded.contact_id}") == []


async def test_a_contact_without_an_email_item_or_one_that_is_gone_gives_no_recipient() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        phone_only = fake.add_contact("Pat Phone", "pat@requester.example")
        fake.contacts[int(phone_only.contact_id)]["communicationItems"] = [
            {"id": 1, "type": {"id": 2, "name": "Direct"}, "value": "555-0100", "communicationType": "Phone"}
        ]
        gone = fake.add_contact("Gene Gone", "gene@requester.example")
        first = fake.add_ticket("Phone only", contact=phone_only)
        second = fake.add_ticket("Contact deleted since", contact=gone)
        del fake.contacts[int(gone.contact_id)]

        assert await client.ticket_contact(str(first)) is None
        assert await client.ticket_contact(str(second)) is None
        # The deleted contact was asked for, and ConnectWise's documented 404 is "none", not an error.
        assert len(calls(fake, "GET", f"/company/contacts/{gone.contact_id}")) == 1
