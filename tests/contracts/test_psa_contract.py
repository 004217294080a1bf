"""One contract for every PSA adapter, each run against its vendor fake over real loopback HTTP."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable
from scheduling.model import PsaDraft, PsaRecordKind, PsaRef
from tests.contracts.pairs import PsaPair

STARTS = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def draft(pair: PsaPair, key: str, **changes: object) -> PsaDraft:
    # The key may hold characters no address may (wildcard tests), so the address carries its digest.
    contact = pair.fake.add_contact(
        "Dana Client", f"dana+{hashlib.sha256(key.encode()).hexdigest()[:12]}@client.example"
    )
    values: dict[str, object] = {
        "idempotency_key": key,
        "title": "Intro call with Dana Client",
        "description": "Booked through Slotwise",
        "contact": contact,
        "member": pair.member,
        "starts_at": STARTS,
        "ends_at": STARTS + timedelta(minutes=30),
    }
    values.update(changes)
    return PsaDraft(**values)  # type: ignore[arg-type]


async def test_a_working_connection_passes_its_test(psa: PsaPair) -> None:
    await psa.client.test_connection()


async def test_bad_credentials_raise_an_auth_error(psa: PsaPair) -> None:
    psa.fake.revoke_credentials()
    with pytest.raises(IntegrationAuthError):
        await psa.client.test_connection()
    with pytest.raises(IntegrationAuthError):
        await psa.client.create_record(PsaRecordKind.TICKET, draft(psa, "auth-1"))
    assert psa.fake.records(PsaRecordKind.TICKET) == []


async def test_a_contact_is_found_by_email(psa: PsaPair) -> None:
    seeded = psa.fake.add_contact("Jane Doe", "jane@acme.example")
    found = await psa.client.find_contact("jane@acme.example")
    assert found == seeded
    assert await psa.client.find_contact("nobody@acme.example") is None


async def test_a_booking_from_a_brand_new_client_creates_exactly_one_contact_and_links_the_record(
    psa: PsaPair,
) -> None:
    email = "robin@newcomer.example"
    assert await psa.client.find_contact(email) is None
    # The vendor saves the contact but its answer never arrives: the adapter must find it rather than add another.
    psa.fake.lose_next_response()
    contact = await psa.client.find_or_create_contact("Robin Newcomer", email)
    assert psa.fake.responses_lost == 1
    assert contact is not None
    assert contact.company_id == psa.fallback_company_id
    assert contact.email.casefold() == email
    assert await psa.client.find_or_create_contact("Robin Newcomer", email) == contact
    assert await psa.client.find_contact(email) == contact

    kinds = [PsaRecordKind.TICKET, PsaRecordKind.ACTIVITY]
    if psa.supports_opportunities:
        kinds.append(PsaRecordKind.OPPORTUNITY)
    for kind in kinds:
        ref = await psa.client.create_record(
            kind,
            PsaDraft(
                idempotency_key=f"booking-10:{kind.value}",
                title="Sales call with Robin Newcomer",
                description="Booked through Slotwise",
                contact=contact,
                member=psa.member,
                starts_at=STARTS,
                ends_at=STARTS + timedelta(minutes=30),
            ),
        )
        assert psa.fake.contact_linked_to(kind, ref.record_id) == contact.contact_id, kind
    assert [found.contact_id for found in psa.fake.contacts_with_email(email)] == [contact.contact_id]


async def test_side_by_side_bookings_from_one_new_client_share_one_contact(psa: PsaPair) -> None:
    email = "sam@twice.example"
    found = await asyncio.gather(*(psa.client.find_or_create_contact("Sam Twice", email) for _ in range(4)))
    assert len({contact.contact_id for contact in found if contact is not None}) == 1
    assert None not in found
    assert len(psa.fake.contacts_with_email(email)) == 1


async def test_a_client_who_is_already_a_contact_is_found_by_address_and_not_created_again(psa: PsaPair) -> None:
    seeded = psa.fake.add_contact("Jane Doe", "jane@acme.example")
    found = await psa.client.find_or_create_contact("Jane D.", "JANE@acme.example")
    assert found is not None
    assert found.contact_id == seeded.contact_id
    assert found.company_id == seeded.company_id
    assert len(psa.fake.contacts_with_email("jane@acme.example")) == 1


async def test_a_ticket_is_created_once_even_when_asked_twice(psa: PsaPair) -> None:
    first = await psa.client.create_record(PsaRecordKind.TICKET, draft(psa, "booking-1:0:ticket"))
    again = await psa.client.create_record(PsaRecordKind.TICKET, draft(psa, "booking-1:0:ticket"))
    assert first == again
    assert first.number
    assert len(psa.fake.records(PsaRecordKind.TICKET)) == 1


async def test_a_lost_response_does_not_create_a_second_record_on_retry(psa: PsaPair) -> None:
    psa.fake.lose_next_response()
    with pytest.raises(IntegrationUnavailable):
        await psa.client.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft(psa, "booking-2:1:entry"))
    assert len(psa.fake.records(PsaRecordKind.SCHEDULE_ENTRY)) == 1
    found = await psa.client.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft(psa, "booking-2:1:entry"))
    assert found.record_id
    assert len(psa.fake.records(PsaRecordKind.SCHEDULE_ENTRY)) == 1


async def test_throttling_is_retryable_and_carries_retry_after(psa: PsaPair) -> None:
    psa.fake.fail_next(429, retry_after=7)
    with pytest.raises(IntegrationUnavailable) as raised:
        await psa.client.create_record(PsaRecordKind.TICKET, draft(psa, "booking-3:0:ticket"))
    assert raised.value.retry_after_seconds == 7
    await psa.client.create_record(PsaRecordKind.TICKET, draft(psa, "booking-3:0:ticket"))
    assert len(psa.fake.records(PsaRecordKind.TICKET)) == 1


async def test_a_server_error_is_retryable(psa: PsaPair) -> None:
    psa.fake.fail_next(503)
    with pytest.raises(IntegrationUnavailable):
        await psa.client.create_record(PsaRecordKind.TICKET, draft(psa, "booking-4:0:ticket"))


async def test_a_rejection_keeps_the_vendors_message(psa: PsaPair) -> None:
    psa.fake.fail_next(400, message="Board 'Sales' not found")
    with pytest.raises(IntegrationRejected, match="Board 'Sales' not found"):
        await psa.client.create_record(PsaRecordKind.TICKET, draft(psa, "booking-5:0:ticket"))
    assert psa.fake.records(PsaRecordKind.TICKET) == []


async def test_outputs_link_records_a_note_lands_on_its_ticket(psa: PsaPair) -> None:
    ticket = await psa.client.create_record(PsaRecordKind.TICKET, draft(psa, "booking-6:0:ticket"))
    note = await psa.client.create_record(
        PsaRecordKind.NOTE, draft(psa, "booking-6:1:note", ticket_id=ticket.record_id, description="Rescheduled")
    )
    assert note.record_id
    notes = psa.fake.records(PsaRecordKind.NOTE)
    assert len(notes) == 1
    again = await psa.client.create_record(
        PsaRecordKind.NOTE, draft(psa, "booking-6:1:note", ticket_id=ticket.record_id, description="Rescheduled")
    )
    assert again == note
    assert len(psa.fake.records(PsaRecordKind.NOTE)) == 1


async def test_opportunities_are_found_or_created_where_the_vendor_has_them(psa: PsaPair) -> None:
    if not psa.supports_opportunities:
        with pytest.raises(IntegrationRejected, match="not available"):
            await psa.client.create_record(PsaRecordKind.OPPORTUNITY, draft(psa, "booking-7:0:opp"))
        return
    opportunity = await psa.client.create_record(PsaRecordKind.OPPORTUNITY, draft(psa, "booking-7:0:opp"))
    activity = await psa.client.create_record(
        PsaRecordKind.ACTIVITY, draft(psa, "booking-7:1:activity", opportunity_id=opportunity.record_id)
    )
    assert activity.record_id
    assert len(psa.fake.records(PsaRecordKind.OPPORTUNITY)) == 1


async def test_schedule_entries_move_and_disappear_and_show_as_busy_time(psa: PsaPair) -> None:
    entry = await psa.client.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft(psa, "booking-8:0:entry"))
    later = STARTS + timedelta(days=1)
    await psa.client.move_schedule_entry(entry, later, later + timedelta(minutes=30))
    busy = await psa.client.busy_times(psa.member, STARTS - timedelta(days=1), STARTS + timedelta(days=3))
    assert [(interval.starts_at, interval.ends_at) for interval in busy] == [(later, later + timedelta(minutes=30))]
    await psa.client.remove_schedule_entry(entry)
    assert await psa.client.busy_times(psa.member, STARTS - timedelta(days=1), STARTS + timedelta(days=3)) == []


async def test_busy_time_includes_what_others_scheduled(psa: PsaPair) -> None:
    psa.fake.add_busy(psa.member, STARTS, STARTS + timedelta(hours=1))
    busy = await psa.client.busy_times(psa.member, STARTS - timedelta(hours=2), STARTS + timedelta(hours=2))
    assert [(interval.starts_at, interval.ends_at) for interval in busy] == [(STARTS, STARTS + timedelta(hours=1))]


async def test_a_ticket_status_can_be_set(psa: PsaPair) -> None:
    ticket = await psa.client.create_record(PsaRecordKind.TICKET, draft(psa, "booking-9:0:ticket"))
    await psa.client.set_ticket_status(ticket.record_id, "Scheduled")
    [stored] = psa.fake.records(PsaRecordKind.TICKET)
    assert "Scheduled" in str(stored)


async def test_an_existing_ticket_is_found_by_its_id_and_by_the_number_the_psa_shows(psa: PsaPair) -> None:
    ticket_id = psa.fake.add_ticket("Printer jams on every second page")
    number = psa.fake.ticket_number(ticket_id)
    seeded = psa.fake.records(PsaRecordKind.TICKET)
    wanted = PsaRef(PsaRecordKind.TICKET, str(ticket_id), number)
    assert await psa.client.find_ticket(str(ticket_id)) == wanted
    assert await psa.client.find_ticket(f" #{ticket_id} ") == wanted
    assert await psa.client.find_ticket(number) == wanted
    assert await psa.client.find_ticket(f"#{number}") == wanted
    if psa.vendor == "autotask":
        # Autotask shows T20261124.0001, never the id: the two must not be confused.
        assert number != str(ticket_id)
        assert number.startswith("T")
    # A look-up never creates or changes anything.
    assert psa.fake.records(PsaRecordKind.TICKET) == seeded


@pytest.mark.parametrize(
    "reference", ["999999", "T19990101.9999", "not a ticket", "#", "0", "99999999999", "12 34", "1001; DROP"]
)
async def test_a_ticket_the_psa_does_not_have_is_none(psa: PsaPair, reference: str) -> None:
    psa.fake.add_ticket("Someone else's ticket")
    assert await psa.client.find_ticket(reference) is None


async def test_a_ticket_look_up_while_the_psa_is_down_is_retryable(psa: PsaPair) -> None:
    ticket_id = psa.fake.add_ticket("Server room too warm")
    psa.fake.fail_next(503)
    with pytest.raises(IntegrationUnavailable):
        await psa.client.find_ticket(str(ticket_id))
    assert await psa.client.find_ticket(str(ticket_id)) is not None


async def test_a_tickets_contact_is_its_requester_with_name_and_address(psa: PsaPair) -> None:
    requester = psa.fake.add_contact("Morgan Requester", "morgan@requester.example")
    psa.fake.add_contact("Someone Else", "else@requester.example")
    ticket_id = psa.fake.add_ticket("VPN drops every hour", contact=requester)
    seeded = psa.fake.records(PsaRecordKind.TICKET)

    assert await psa.client.ticket_contact(str(ticket_id)) == requester
    # Reading never creates or changes anything.
    assert psa.fake.records(PsaRecordKind.TICKET) == seeded


async def test_a_ticket_without_a_contact_and_a_ticket_the_psa_does_not_have_have_no_contact(psa: PsaPair) -> None:
    psa.fake.add_contact("Morgan Requester", "morgan@requester.example")
    without = psa.fake.add_ticket("Nobody in particular asked")
    assert await psa.client.ticket_contact(str(without)) is None
    # Unknown ids (and text that cannot be an id) are None too, never an error (PsaClient.ticket_contact).
    for unknown in ("999999", "0", "not a ticket"):
        assert await psa.client.ticket_contact(unknown) is None


async def test_a_ticket_contact_look_up_while_the_psa_is_down_is_retryable(psa: PsaPair) -> None:
    requester = psa.fake.add_contact("Morgan Requester", "morgan@requester.example")
    ticket_id = psa.fake.add_ticket("Laptop will not boot", contact=requester)
    psa.fake.fail_next(503)
    with pytest.raises(IntegrationUnavailable):
        await psa.client.ticket_contact(str(ticket_id))
    assert await psa.client.ticket_contact(str(ticket_id)) == requester


def readings_of(pair: PsaPair) -> list[str]:
    """The default reading of the vendor's documents, then every alternative the fake can enforce."""
    return ["", *pair.fake.readings]


def creatable_kinds(pair: PsaPair) -> list[PsaRecordKind]:
    kinds = [PsaRecordKind.TICKET, PsaRecordKind.ACTIVITY, PsaRecordKind.SCHEDULE_ENTRY]
    if pair.supports_opportunities:
        kinds.append(PsaRecordKind.OPPORTUNITY)
    return kinds


async def test_every_kind_of_the_vendors_busy_time_blocks_the_member_under_every_reading(psa: PsaPair) -> None:
    # Each kind gets its own day, so one kind's busy time can never stand in for another's.
    windows: list[tuple[str, datetime, datetime, list[tuple[datetime, datetime]]]] = []
    for index, kind in enumerate(psa.fake.busy_kinds):
        window_start = STARTS + timedelta(days=3 * index)
        window_end = window_start + timedelta(days=1)
        # One inside the window, and one that began before it and ends inside it (the case a "start after"
        # filter misses).
        inside = (window_start + timedelta(hours=2), window_start + timedelta(hours=2, minutes=45))
        earlier = (window_start - timedelta(hours=1), window_start + timedelta(minutes=30))
        for starts_at, ends_at in (inside, earlier):
            psa.fake.add_busy(psa.member, starts_at, ends_at, kind)
        windows.append((kind, window_start, window_end, [inside, earlier]))
    for reading in readings_of(psa):
        psa.fake.use_reading(reading)
        for kind, window_start, window_end, seeded in windows:
            busy = await psa.client.busy_times(psa.member, window_start, window_end)
            for starts_at, ends_at in seeded:
                wanted = (max(starts_at, window_start), min(ends_at, window_end))
                assert any(interval.starts_at <= wanted[0] and interval.ends_at >= wanted[1] for interval in busy), (
                    f"{psa.vendor} ({reading or 'default reading'}) did not report its {kind} "
                    f"{starts_at} to {ends_at} as busy"
                )
            assert all(interval.starts_at < window_end and interval.ends_at > window_start for interval in busy)


async def test_a_lost_response_on_every_create_kind_re_runs_without_a_duplicate(psa: PsaPair) -> None:
    ticket = await psa.client.create_record(PsaRecordKind.TICKET, draft(psa, "lost-all:ticket-for-notes"))
    cases: list[tuple[PsaRecordKind, dict[str, object]]] = [(kind, {}) for kind in creatable_kinds(psa)]
    cases += [(PsaRecordKind.SCHEDULE_ENTRY, {"ticket_id": ticket.record_id})]
    cases += [(PsaRecordKind.NOTE, {"ticket_id": ticket.record_id, "description": "Booked"})]
    for reading in readings_of(psa):
        psa.fake.use_reading(reading)
        for index, (kind, changes) in enumerate(cases):
            key = f"lost-{reading or 'default'}-{index}:{kind.value}"
            before = len(psa.fake.records(kind))
            lost = psa.fake.responses_lost
            psa.fake.lose_next_response()
            with pytest.raises(IntegrationUnavailable):
                await psa.client.create_record(kind, draft(psa, key, **changes))
            assert psa.fake.responses_lost == lost + 1, f"{kind}: the fault did not fire"
            found = await psa.client.create_record(kind, draft(psa, key, **changes))
            assert await psa.client.create_record(kind, draft(psa, key, **changes)) == found
            assert len(psa.fake.records(kind)) == before + 1, f"{psa.vendor} {kind} ({reading or 'default'})"


WILDCARD_KEYS = ["bx1", "b_1", "b%1", "b[x]1", "b[^y]1", "b]1"]
"""Idempotency keys whose text, read as a SQL Server LIKE pattern, matches other keys' markers: `_` and `%` match
any character, `[x]` and `[^y]` are character classes. The first is created first, so a look-up that trusts the
vendor's match would adopt its record for the others."""


async def test_a_marker_with_like_wildcards_never_adopts_another_bookings_record(psa: PsaPair) -> None:
    for reading in readings_of(psa):
        psa.fake.use_reading(reading)
        for kind in creatable_kinds(psa):
            prefix = f"{reading or 'default'}-{kind.value}-"
            before = len(psa.fake.records(kind))
            refs = [await psa.client.create_record(kind, draft(psa, prefix + key)) for key in WILDCARD_KEYS]
            assert len({ref.record_id for ref in refs}) == len(WILDCARD_KEYS), f"{kind} ({reading or 'default'})"
            again = [await psa.client.create_record(kind, draft(psa, prefix + key)) for key in WILDCARD_KEYS]
            assert again == refs
            assert len(psa.fake.records(kind)) == before + len(WILDCARD_KEYS)
