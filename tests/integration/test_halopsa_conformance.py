"""HaloPSA against the stand-in built from Halo's swagger, under every reading of it the documents allow.

Each test runs the adapter over real loopback HTTP and switches the fake through its readings: date filters as
strict or inclusive lower bounds, searches as substrings or SQL Server LIKE, ticket lists with or without
`details`, holidays inside or outside the calendar list.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from integrations.halopsa.config import HaloPsaConfig
from integrations.halopsa.wire import from_wire_holiday, has_marker, marker, to_wire_search
from scheduling.errors import IntegrationRejected, IntegrationUnavailable
from scheduling.model import PsaDraft, PsaRecordKind
from tests.contracts.pair_halopsa import open_fake_and_client
from tests.fakes.halopsa import DEMO_AGENT_ID, DEMO_FALLBACK_CLIENT_ID, FakeHaloPsaServer

WINDOW_START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
WINDOW_END = WINDOW_START + timedelta(hours=8)
MEMBER = str(DEMO_AGENT_ID)
OTHER_AGENT = 8


def every_reading(fake: FakeHaloPsaServer) -> list[str]:
    return ["", *fake.readings]


def draft(fake: FakeHaloPsaServer, key: str, **changes: object) -> PsaDraft:
    values: dict[str, object] = {
        "idempotency_key": key,
        "title": "Intro call with Dana Client",
        "description": "Booked through Slotwise",
        "contact": fake.add_contact("Dana Client", f"dana{len(fake.users)}@client.example"),
        "member": MEMBER,
        "starts_at": WINDOW_START + timedelta(hours=1),
        "ends_at": WINDOW_START + timedelta(hours=1, minutes=30),
    }
    values.update(changes)
    return PsaDraft(**values)  # type: ignore[arg-type]


def with_other_agent() -> FakeHaloPsaServer:
    fake = FakeHaloPsaServer()
    fake.agents[OTHER_AGENT] = {"id": OTHER_AGENT, "name": "Sam Other", "email": "sam@msp.example"}
    return fake


# Item 5: appointment date filters are two lower bounds


async def test_appointments_that_start_before_lie_inside_or_span_the_window_are_busy_under_every_reading() -> None:
    fake = with_other_agent()
    overlapping = [
        (WINDOW_START - timedelta(hours=2), WINDOW_START + timedelta(hours=1)),
        (WINDOW_START + timedelta(hours=3), WINDOW_START + timedelta(hours=4)),
        (WINDOW_START - timedelta(days=1), WINDOW_END + timedelta(days=1)),
    ]
    for starts_at, ends_at in overlapping:
        fake.add_busy(MEMBER, starts_at, ends_at)
    # Touching the window's edges is not overlapping it ([start, end) intervals); another agent's is not ours.
    fake.add_busy(MEMBER, WINDOW_START - timedelta(hours=1), WINDOW_START)
    fake.add_busy(MEMBER, WINDOW_END, WINDOW_END + timedelta(hours=1))
    fake.add_busy(str(OTHER_AGENT), WINDOW_START + timedelta(hours=5), WINDOW_START + timedelta(hours=6))
    async with open_fake_and_client(fake) as (client, _fake, _config):
        for reading in every_reading(fake):
            fake.use_reading(reading)
            busy = await client.busy_times(MEMBER, WINDOW_START, WINDOW_END)
            assert [(interval.starts_at, interval.ends_at) for interval in busy] == sorted(overlapping), reading


async def test_the_appointment_query_sends_the_agent_and_only_a_lower_bound_on_the_end() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        await client.busy_times(MEMBER, WINDOW_START, WINDOW_END)
        [query] = [call.query for call in fake.request_log if call.path == "/api/Appointment"]
        assert query["agents"] == MEMBER
        assert "start_date" not in query
        assert datetime.fromisoformat(query["end_date"].replace("Z", "+00:00")) <= WINDOW_START


async def test_a_lost_appointment_response_re_runs_without_a_second_appointment_under_every_reading() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        for reading in every_reading(fake):
            fake.use_reading(reading)
            for kind in (PsaRecordKind.SCHEDULE_ENTRY, PsaRecordKind.ACTIVITY):
                key = f"lost-appointment-{reading or 'default'}-{kind.value}"
                booking = draft(fake, key)
                before = len(fake.records(kind))
                fake.lose_next_response()
                with pytest.raises(IntegrationUnavailable):
                    await client.create_record(kind, booking)
                found = await client.create_record(kind, booking)
                assert await client.create_record(kind, booking) == found
                assert len(fake.records(kind)) == before + 1, (reading, kind)


# Item 6: tickets are found by the marker in `details`, matched exactly


async def test_a_lost_ticket_response_re_runs_without_a_second_ticket_under_every_reading() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        for reading in every_reading(fake):
            fake.use_reading(reading)
            booking = draft(fake, f"lost-ticket-{reading or 'default'}:0:ticket")
            before = len(fake.records(PsaRecordKind.TICKET))
            fake.lose_next_response()
            with pytest.raises(IntegrationUnavailable):
                await client.create_record(PsaRecordKind.TICKET, booking)
            found = await client.create_record(PsaRecordKind.TICKET, booking)
            assert await client.create_record(PsaRecordKind.TICKET, booking) == found
            assert len(fake.records(PsaRecordKind.TICKET)) == before + 1, reading
        searches = [call.query for call in fake.request_log if call.method == "GET" and call.path == "/api/Tickets"]
        assert all("search_details" in query and "search" not in query for query in searches)


async def test_under_the_like_reading_the_raw_marker_finds_other_tickets_and_misses_its_own() -> None:
    """The trap the adapter must avoid, shown on the fake itself."""
    async with open_fake_and_client() as (client, fake, _config):
        fake.use_reading("like")
        plain = await client.create_record(PsaRecordKind.TICKET, draft(fake, "bx1"))
        bracketed = await client.create_record(PsaRecordKind.TICKET, draft(fake, "b[x]1"))
        underscore_hits = await client._client.get_pages("Tickets", {"search_details": marker("b_1")}, "tickets")
        # Read as LIKE, `[slotwise:b_1]` is a single character class: it matches nearly every ticket.
        assert plain.record_id in [str(row["id"]) for row in underscore_hits]
        own_hits = await client._client.get_pages("Tickets", {"search_details": marker("b[x]1")}, "tickets")
        assert bracketed.record_id not in [str(row["id"]) for row in own_hits]


@pytest.mark.parametrize("kind", [PsaRecordKind.TICKET, PsaRecordKind.SCHEDULE_ENTRY, PsaRecordKind.NOTE])
async def test_keys_with_like_wildcards_never_adopt_another_bookings_record_under_every_reading(
    kind: PsaRecordKind,
) -> None:
    keys = ["bx1", "b_1", "b%1", "b[x]1", "b[x]1]z", "b[^y]1"]
    async with open_fake_and_client() as (client, fake, _config):
        ticket = await client.create_record(PsaRecordKind.TICKET, draft(fake, "wildcards:parent"))
        for reading in every_reading(fake):
            fake.use_reading(reading)
            before = len(fake.records(kind))
            prefix = f"{reading or 'default'}:"
            drafts = [draft(fake, prefix + key, ticket_id=ticket.record_id) for key in keys]
            refs = [await client.create_record(kind, item) for item in drafts]
            assert len({ref.record_id for ref in refs}) == len(keys), reading
            assert [await client.create_record(kind, item) for item in drafts] == refs, reading
            assert len(fake.records(kind)) == before + len(keys), reading


async def test_a_ticket_listed_without_its_details_is_read_on_its_own_before_it_is_adopted() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        fake.use_reading("lean_lists")
        booking = draft(fake, "lean-1:0:ticket")
        fake.lose_next_response()
        with pytest.raises(IntegrationUnavailable):
            await client.create_record(PsaRecordKind.TICKET, booking)
        [stored] = fake.records(PsaRecordKind.TICKET)
        found = await client.create_record(PsaRecordKind.TICKET, booking)
        assert found.record_id == str(stored["id"])
        assert [call.path for call in fake.request_log if call.path.startswith("/api/Tickets/")] == [
            f"/api/Tickets/{stored['id']}"
        ]


def test_a_marker_counts_only_when_it_stands_alone() -> None:
    assert has_marker({"details": "Booked\n\n[slotwise:b[x]1]"}, "details", "b[x]1")
    assert has_marker({"details": "<p>[slotwise:b[x]1]</p>"}, "details", "b[x]1")
    assert not has_marker({"details": "Booked\n\n[slotwise:b[x]1]z]"}, "details", "b[x]1")
    assert not has_marker({"details": "x[slotwise:b1]"}, "details", "b1")
    assert not has_marker({"details": None}, "details", "b1")


def test_the_search_term_is_the_longest_stretch_free_of_like_wildcards() -> None:
    assert to_wire_search(marker("booking-1:0:ticket")) == "slotwise:booking-1:0:ticket"
    assert to_wire_search(marker("b_1")) == "slotwise:b"
    assert to_wire_search("first_last@acme.example") == "last@acme.example"


async def test_ticket_pages_stay_within_halos_documented_maximum_of_100() -> None:
    # A page size above 100 stored before the limit was known still loads (the connection keeps working) ...
    HaloPsaConfig(
        api_url="https://acme.halopsa.com/api",
        auth_url="https://acme.halopsa.com/auth",
        client_id="x",
        client_secret=SecretStr("y"),
        page_size=500,
    )
    # ... and the client never asks for more than 100 rows per page.
    async with open_fake_and_client(page_size=500) as (client, fake, _config):
        with pytest.raises(IntegrationRejected, match="page_size may be at most 100"):
            await client._client.get("Tickets", {"pageinate": "true", "page_size": "101", "page_no": "1"})
        for number in range(101):
            fake.tickets[5000 + number] = {"id": 5000 + number, "summary": "s", "details": f"[slotwise:x{number}]"}
        rows = await client._client.get_pages("Tickets", {"search_details": "slotwise:x"}, "tickets")
        assert len(rows) == 101


# Item 9: holidays and leave are busy time


async def test_an_agents_holiday_blocks_their_time_and_another_agents_does_not_under_every_reading() -> None:
    fake = with_other_agent()
    leave = (WINDOW_START - timedelta(days=2), WINDOW_START + timedelta(hours=2))
    fake.add_busy(MEMBER, *leave, kind="holiday")
    fake.add_busy(str(OTHER_AGENT), WINDOW_START + timedelta(hours=4), WINDOW_START + timedelta(hours=5), "holiday")
    async with open_fake_and_client(fake) as (client, _fake, _config):
        for reading in every_reading(fake):
            fake.use_reading(reading)
            busy = await client.busy_times(MEMBER, WINDOW_START, WINDOW_END)
            assert [(interval.starts_at, interval.ends_at) for interval in busy] == [leave], reading
            assert busy[0].label.startswith("HaloPSA")
            other = await client.busy_times(str(OTHER_AGENT), WINDOW_START, WINDOW_END)
            assert [(interval.starts_at, interval.ends_at) for interval in other] == [
                (WINDOW_START + timedelta(hours=4), WINDOW_START + timedelta(hours=5))
            ], reading
        holiday_queries = [call.query for call in fake.request_log if call.path == "/api/Holiday"]
        assert {query["agent_id"] for query in holiday_queries} == {MEMBER, str(OTHER_AGENT)}


async def test_a_public_holiday_of_a_workday_without_an_agent_is_not_counted_for_the_agent() -> None:
    fake = FakeHaloPsaServer()
    fake.add_busy(MEMBER, WINDOW_START, WINDOW_START + timedelta(hours=1), "holiday")
    [holiday] = fake.holidays.values()
    holiday.update({"agent_id": None, "workday_id": 1})
    async with open_fake_and_client(fake) as (client, _fake, _config):
        fake.use_reading("holidays_apart")
        assert await client.busy_times(MEMBER, WINDOW_START, WINDOW_END) == []


def test_an_all_day_holiday_blocks_whole_days_and_an_open_ended_one_blocks_a_day() -> None:
    all_day = from_wire_holiday({"date": "2026-11-24T00:00:00", "end_date": "2026-11-25T00:00:00", "allday": True})
    assert all_day is not None
    assert (all_day.starts_at, all_day.ends_at) == (
        datetime(2026, 11, 24, tzinfo=UTC),
        datetime(2026, 11, 26, tzinfo=UTC),
    )
    open_ended = from_wire_holiday({"date": "2026-11-24T13:00:00Z", "end_date": None})
    assert open_ended is not None
    assert open_ended.ends_at - open_ended.starts_at == timedelta(days=1)
    assert from_wire_holiday({"date": None}) is None


# Every create kind: a lost answer re-runs without a duplicate


async def test_a_lost_response_on_every_create_kind_re_runs_without_a_duplicate_under_every_reading() -> None:
    async with open_fake_and_client(fallback_client_id=DEMO_FALLBACK_CLIENT_ID) as (client, fake, _config):
        ticket = await client.create_record(PsaRecordKind.TICKET, draft(fake, "every-kind:parent"))
        for reading in every_reading(fake):
            fake.use_reading(reading)
            tag = reading or "default"
            for kind in (PsaRecordKind.TICKET, PsaRecordKind.SCHEDULE_ENTRY, PsaRecordKind.NOTE):
                booking = draft(fake, f"every-kind-{tag}:{kind.value}", ticket_id=ticket.record_id)
                before = len(fake.records(kind))
                fake.lose_next_response()
                with pytest.raises(IntegrationUnavailable):
                    await client.create_record(kind, booking)
                await client.create_record(kind, booking)
                assert len(fake.records(kind)) == before + 1, (reading, kind)
            # Users: `_` in the address is a LIKE wildcard; the create answers through the look-up.
            address = f"new_client_{tag}@newco.example"
            fake.lose_next_response()
            contact = await client.find_or_create_contact("New Client", address)
            assert contact is not None
            assert [found.contact_id for found in fake.contacts_with_email(address)] == [contact.contact_id]
        assert fake.responses_lost == 4 * len(every_reading(fake))


async def test_the_fake_validates_query_parameter_types_from_the_swagger() -> None:
    async with open_fake_and_client() as (client, _fake, _config):
        with pytest.raises(IntegrationRejected, match="showholidays must be true or false"):
            await client._client.get("Appointment", {"showholidays": "yes"})
        with pytest.raises(IntegrationRejected, match="agent_id must be an integer"):
            await client._client.get("Holiday", {"agent_id": "seven"})
        with pytest.raises(IntegrationRejected, match="ticket_id must be an integer"):
            await client._client.get("Actions", {"ticket_id": "x"})
        answer = await client._client.get("Holiday", {"agent_id": MEMBER})
        assert json.dumps(answer) == "[]"


# PsaClient.ticket_contact: the ticket's `user_id`, then GET /api/Users/{id} (SOURCES.md, "Verified against").


async def test_a_tickets_end_user_is_read_by_two_gets() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        seeded = fake.add_contact("Morgan Requester", "morgan@requester.example")
        ticket_id = fake.add_ticket("VPN drops every hour", contact=seeded)
        before = len(fake.request_log)

        assert await client.ticket_contact(str(ticket_id)) == seeded

        reads = [(call.method, call.path) for call in fake.request_log[before:] if call.path.startswith("/api/")]
        assert reads == [("GET", f"/api/Tickets/{ticket_id}"), ("GET", f"/api/Users/{seeded.contact_id}")]


async def test_the_general_user_and_a_user_that_is_gone_give_no_recipient() -> None:
    async with open_fake_and_client() as (client, fake, _config):
        general = fake.add_general_user()
        gone = fake.add_contact("Gene Gone", "gene@requester.example")
        first = fake.add_ticket("Logged for the whole client", contact=general)
        second = fake.add_ticket("User deleted since", contact=gone)
        del fake.users[int(gone.contact_id)]

        assert await client.ticket_contact(str(first)) is None
        assert await client.ticket_contact(str(second)) is None
        # The deleted user was asked for, and the documented 404 of GET /Users/{id} is "none", not an error.
        assert [call.status for call in fake.request_log if call.path == f"/api/Users/{gone.contact_id}"] == [404]
