"""AutotaskPsa against the stand-in rebuilt from Autotask's documents: child-entity URLs, required fields, the role
on tickets, marker look-ups under SQL Server LIKE, busy time from every calendar item, and lost answers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from integrations.autotask.adapter import AutotaskPsa
from integrations.autotask.wire import to_wire_marker
from scheduling.errors import IntegrationRejected, IntegrationUnavailable
from scheduling.model import PsaDraft, PsaRecordKind, PsaRef
from tests.contracts.pair_autotask import config_for
from tests.fakes.autotask import (
    API_PREFIX,
    DEMO_FALLBACK_COMPANY_ID,
    DEMO_QUEUE_ID,
    DEMO_RESOURCE_ID,
    DEMO_ROLE_ID,
    FakeAutotaskServer,
    running_autotask_server,
)

STARTS = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
MEMBER = str(DEMO_RESOURCE_ID)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        yield http


@pytest.fixture
async def fake() -> AsyncIterator[FakeAutotaskServer]:
    async with running_autotask_server() as server:
        yield server


def draft_for(fake: FakeAutotaskServer, key: str, **changes: Any) -> PsaDraft:
    contact = fake.add_contact("Dana Client", f"dana@{re.sub(r'[^a-z0-9]', '-', key.lower())}.example")
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


def creates(fake: FakeAutotaskServer) -> list[str]:
    return [
        logged.path.removeprefix(API_PREFIX)
        for logged in fake.log
        if logged.method == "POST" and not logged.path.endswith("/query")
    ]


def headers_of(fake: FakeAutotaskServer) -> dict[str, str]:
    return {
        "ApiIntegrationCode": fake.integration_code,
        "UserName": fake.username,
        "Secret": fake.secret,
        "Content-Type": "application/json",
    }


async def test_a_new_contact_is_created_under_its_company_because_the_contacts_root_offers_no_create(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake, fallback_company_id=DEMO_FALLBACK_COMPANY_ID), session)
    contact = await psa.find_or_create_contact("Robin Newcomer", "robin@newcomer.example")
    assert contact is not None
    assert creates(fake) == [f"Companies/{DEMO_FALLBACK_COMPANY_ID}/Contacts"]
    assert fake.contacts_with_email("robin@newcomer.example") == [contact]
    body = {"companyID": DEMO_FALLBACK_COMPANY_ID, "firstName": "A", "lastName": "B", "isActive": 1}
    async with session.post(f"{fake.base_url}{API_PREFIX}Contacts", json=body, headers=headers_of(fake)) as got:
        assert got.status == 405
    assert len(fake.tables["Contacts"]) == 1


async def test_an_opportunity_without_a_configured_stage_gets_the_picklists_default_stage(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    fake.set_picklist_default("Opportunities", "stage", 3)
    psa = AutotaskPsa(config_for(fake), session)
    assert await psa.resolved_opportunity_stage("") == (3, "Proposal")
    assert await psa.resolved_opportunity_stage("discovery") == (2, "Discovery")
    ref = await psa.create_record(PsaRecordKind.OPPORTUNITY, draft_for(fake, "opp-default"))
    [stored] = fake.records(PsaRecordKind.OPPORTUNITY)
    assert (str(stored["id"]), stored["stage"]) == (ref.record_id, 3)
    named = await psa.create_record(PsaRecordKind.OPPORTUNITY, draft_for(fake, "opp-named", stage="Negotiation"))
    assert fake.tables["Opportunities"][int(named.record_id)]["stage"] == 4


async def test_without_a_stage_or_a_picklist_default_the_opportunity_is_refused_naming_pipeline_stage(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    fake.set_picklist_default("Opportunities", "stage", None)
    psa = AutotaskPsa(config_for(fake), session)
    with pytest.raises(IntegrationRejected, match="pipeline_stage") as raised:
        await psa.create_record(PsaRecordKind.OPPORTUNITY, draft_for(fake, "opp-none"))
    assert "Qualifying" in str(raised.value)
    with pytest.raises(IntegrationRejected, match="pipeline_stage"):
        await psa.resolved_opportunity_stage("")
    with pytest.raises(IntegrationRejected, match="no active Opportunities stage named 'Won'"):
        await psa.resolved_opportunity_stage("Won")
    assert fake.records(PsaRecordKind.OPPORTUNITY) == []


async def test_the_stand_in_refuses_an_opportunity_without_stage_and_serves_stage_as_required(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    base = f"{fake.base_url}{API_PREFIX}Opportunities"
    async with session.get(f"{base}/entityInformation/fields", headers=headers_of(fake)) as got:
        fields = {field["name"]: field for field in (await got.json())["fields"]}
    assert fields["stage"]["isRequired"] is True
    assert [value["label"] for value in fields["stage"]["picklistValues"] if value["isDefaultValue"]] == ["Qualifying"]
    body = {
        "companyID": 0,
        "title": "x",
        "status": 1,
        "ownerResourceID": DEMO_RESOURCE_ID,
        "amount": 0,
        "cost": 0,
        "probability": 50,
        "projectedCloseDate": "2026-11-24T15:00:00Z",
        "useQuoteTotals": False,
    }
    async with session.post(base, json=body, headers=headers_of(fake)) as got:
        assert got.status == 500
        assert (await got.json()) == {"errors": ["Missing required field(s) on Opportunities: stage."]}
    async with session.post(base, json={**body, "stage": 1}, headers=headers_of(fake)) as got:
        assert got.status == 200


async def test_a_service_call_resource_carries_no_role_and_a_ticket_we_create_carries_the_host_and_role(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake), session)
    ticket = await psa.create_record(PsaRecordKind.TICKET, draft_for(fake, "role:ticket"))
    stored = fake.tables["Tickets"][int(ticket.record_id)]
    assert (stored["assignedResourceID"], stored["assignedResourceRoleID"]) == (DEMO_RESOURCE_ID, DEMO_ROLE_ID)
    await psa.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft_for(fake, "role:entry", ticket_id=ticket.record_id))
    [posted] = [logged.body for logged in fake.log if logged.path.endswith("/Resources") and logged.method == "POST"]
    assert set(posted) == {"serviceCallTicketID", "resourceID"}
    assert fake.tables["TicketSecondaryResources"] == {}, "the host already is the ticket's primary resource"
    url = f"{fake.base_url}{API_PREFIX}ServiceCallTickets/{posted['serviceCallTicketID']}/Resources"
    async with session.post(url, json={**posted, "roleID": DEMO_ROLE_ID}, headers=headers_of(fake)) as got:
        assert got.status == 500
        assert (await got.json()) == {"errors": ["Unable to find roleID in the ServiceCallTicketResources Entity."]}


async def test_on_an_existing_ticket_the_host_becomes_a_secondary_resource_and_the_primary_stays(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    colleague = fake.add_resource("Cole", "League", "cole@acme-it.example")
    ticket_id = fake.add_ticket("Printer on fire", primary=colleague)
    psa = AutotaskPsa(config_for(fake), session)
    draft = draft_for(fake, "existing:entry", ticket_id=str(ticket_id))
    entry = await psa.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft)
    assert await psa.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft) == entry
    ticket = fake.tables["Tickets"][ticket_id]
    assert (ticket["assignedResourceID"], ticket["assignedResourceRoleID"]) == (colleague, DEMO_ROLE_ID)
    [secondary] = fake.tables["TicketSecondaryResources"].values()
    assert (secondary["ticketID"], secondary["resourceID"], secondary["roleID"]) == (
        ticket_id,
        DEMO_RESOURCE_ID,
        DEMO_ROLE_ID,
    )
    assert f"Tickets/{ticket_id}/SecondaryResources" in creates(fake)
    assert not [logged for logged in fake.log if logged.method in ("PATCH", "PUT") and "Tickets" in logged.path]
    [assignment] = fake.tables["ServiceCallTicketResources"].values()
    assert assignment["resourceID"] == DEMO_RESOURCE_ID
    # A second booking on the same ticket finds the host already there.
    await psa.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft_for(fake, "existing:again", ticket_id=str(ticket_id)))
    assert len(fake.tables["TicketSecondaryResources"]) == 1
    assert len(fake.records(PsaRecordKind.SCHEDULE_ENTRY)) == 2


@pytest.mark.parametrize("reading", ["", "like"])
async def test_keys_whose_like_patterns_match_other_markers_never_adopt_another_bookings_record(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession, reading: str
) -> None:
    fake.use_reading(reading)
    psa = AutotaskPsa(config_for(fake), session)
    keys = ["bx1", "b_1", "b[x]1", "b%1", "b(x)1x", "B_1"]
    refs: dict[tuple[str, PsaRecordKind], PsaRef] = {}
    for key in keys:
        for kind in (PsaRecordKind.TICKET, PsaRecordKind.OPPORTUNITY, PsaRecordKind.ACTIVITY, PsaRecordKind.NOTE):
            extra = {"ticket_id": refs[("bx1", PsaRecordKind.TICKET)].record_id} if kind is PsaRecordKind.NOTE else {}
            refs[(key, kind)] = await psa.create_record(kind, draft_for(fake, key, **extra))
        refs[(key, PsaRecordKind.SCHEDULE_ENTRY)] = await psa.create_record(
            PsaRecordKind.SCHEDULE_ENTRY, draft_for(fake, key)
        )
    for kind in PsaRecordKind:
        made = {ref.record_id for (_, ref_kind), ref in refs.items() if ref_kind is kind}
        assert len(made) == len(keys), kind
    for key in keys:
        stored = fake.tables["Tickets"][int(refs[(key, PsaRecordKind.TICKET)].record_id)]
        assert to_wire_marker(key) in stored["description"]
        # A re-run finds each booking's own record again, not a lookalike.
        assert await psa.create_record(PsaRecordKind.TICKET, draft_for(fake, key)) == refs[(key, PsaRecordKind.TICKET)]
    sent = [
        condition["value"]
        for logged in fake.log
        if logged.path.endswith("/query")
        for condition in logged.body["filter"]
        if condition.get("op") == "contains"
    ]
    assert sent
    assert not [value for value in sent if "[" in value]


async def test_a_marker_look_up_pages_through_every_hit_and_still_finds_a_record_written_by_an_old_job(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    fake.use_reading("like")
    for letter in "abcd":
        fake.add_ticket(f"Lookalike {letter}")
        record = fake.tables["Tickets"][max(fake.tables["Tickets"])]
        record["description"] = f"Other booking\n\n[slotwise:k{letter}1]"
    old = fake.add_ticket("Booked by an earlier Slotwise")
    fake.tables["Tickets"][old]["description"] = "Booked through Slotwise\n\n[slotwise:k%1]"
    psa = AutotaskPsa(config_for(fake, page_size=2), session)
    ref = await psa.create_record(PsaRecordKind.TICKET, draft_for(fake, "k%1"))
    assert ref.record_id == str(old)
    assert len(fake.tables["Tickets"]) == 5
    assert len([logged for logged in fake.log if logged.path.endswith("/Tickets/query/next")]) == 2


async def test_appointments_and_to_dos_of_the_member_block_and_another_resources_do_not(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    colleague = str(fake.add_resource("Cole", "League", "cole@acme-it.example"))
    for hour, kind in enumerate(fake.busy_kinds):
        fake.add_busy(MEMBER, STARTS + timedelta(hours=hour), STARTS + timedelta(hours=hour, minutes=30), kind)
        fake.add_busy(colleague, STARTS + timedelta(hours=hour, minutes=30), STARTS + timedelta(hours=hour + 1), kind)
    fake.add_busy(MEMBER, STARTS + timedelta(days=2), STARTS + timedelta(days=2, hours=1), "appointment")
    psa = AutotaskPsa(config_for(fake), session)
    busy = await psa.busy_times(MEMBER, STARTS - timedelta(hours=1), STARTS + timedelta(hours=5))
    assert [(interval.starts_at, interval.label) for interval in busy] == [
        (STARTS, "Autotask service call"),
        (STARTS + timedelta(hours=1), "Autotask appointment"),
        (STARTS + timedelta(hours=2), "Autotask To-Do"),
    ]
    windows = {
        logged.entity: logged.body["filter"]
        for logged in fake.log
        if logged.entity in ("Appointments", "CompanyToDos") and logged.path.endswith("/query")
    }
    for entity, filters in windows.items():
        assert {(item["op"], item["field"]) for item in filters} >= {("lt", "startDateTime"), ("gt", "endDateTime")}
        assert DEMO_RESOURCE_ID in [item.get("value") for item in filters], entity
    assert max(fake.peak_in_flight.values()) <= 3


async def test_a_schedule_entry_without_a_ticket_is_an_appointment_that_moves_and_goes(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake), session)
    draft = draft_for(fake, "no-ticket:entry")
    entry = await psa.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft)
    assert await psa.create_record(PsaRecordKind.SCHEDULE_ENTRY, draft) == entry
    assert entry.record_id.startswith("appointment:")
    assert creates(fake) == ["Appointments"]
    assert fake.tables["Tickets"] == {}
    assert fake.tables["ServiceCalls"] == {}
    [appointment] = fake.records(PsaRecordKind.SCHEDULE_ENTRY)
    assert appointment["resourceID"] == DEMO_RESOURCE_ID
    assert appointment["title"] == "Intro call with Dana Client"
    assert to_wire_marker("no-ticket:entry") in appointment["description"]
    later = STARTS + timedelta(days=1)
    await psa.move_schedule_entry(entry, later, later + timedelta(hours=1))
    [moved] = fake.records(PsaRecordKind.SCHEDULE_ENTRY)
    assert (moved["startDateTime"], moved["endDateTime"]) == ("2026-11-25T15:00:00Z", "2026-11-25T16:00:00Z")
    busy = await psa.busy_times(MEMBER, STARTS, STARTS + timedelta(days=2))
    assert [(interval.starts_at, interval.label) for interval in busy] == [(later, "Autotask appointment")]
    await psa.remove_schedule_entry(entry)
    await psa.remove_schedule_entry(entry)
    assert fake.records(PsaRecordKind.SCHEDULE_ENTRY) == []


async def test_a_service_call_id_stored_by_an_earlier_job_still_moves_and_goes(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake), session)
    ticket = await psa.create_record(PsaRecordKind.TICKET, draft_for(fake, "stored:ticket"))
    entry = await psa.create_record(
        PsaRecordKind.SCHEDULE_ENTRY, draft_for(fake, "stored:entry", ticket_id=ticket.record_id)
    )
    assert entry.record_id.isdigit()
    later = STARTS + timedelta(days=1)
    await psa.move_schedule_entry(entry, later, later + timedelta(minutes=30))
    assert fake.tables["ServiceCalls"][int(entry.record_id)]["startDateTime"] == "2026-11-25T15:00:00Z"
    await psa.remove_schedule_entry(entry)
    assert fake.records(PsaRecordKind.SCHEDULE_ENTRY) == []


LOST_CREATES = [
    (PsaRecordKind.TICKET, "Tickets", False),
    (PsaRecordKind.OPPORTUNITY, "Opportunities", False),
    (PsaRecordKind.ACTIVITY, "CompanyToDos", False),
    (PsaRecordKind.NOTE, "TicketNotes", True),
    (PsaRecordKind.SCHEDULE_ENTRY, "Appointments", False),
    (PsaRecordKind.SCHEDULE_ENTRY, "TicketSecondaryResources", True),
    (PsaRecordKind.SCHEDULE_ENTRY, "ServiceCalls", True),
    (PsaRecordKind.SCHEDULE_ENTRY, "ServiceCallTickets", True),
    (PsaRecordKind.SCHEDULE_ENTRY, "ServiceCallTicketResources", True),
]


@pytest.mark.parametrize("reading", ["", "like"])
@pytest.mark.parametrize(("kind", "entity", "on_ticket"), LOST_CREATES)
async def test_a_lost_answer_on_any_create_reruns_without_a_second_record(
    fake: FakeAutotaskServer,
    session: aiohttp.ClientSession,
    kind: PsaRecordKind,
    entity: str,
    on_ticket: bool,
    reading: str,
) -> None:
    fake.use_reading(reading)
    psa = AutotaskPsa(config_for(fake), session)
    # A ticket the service desk opened for someone else, so a schedule entry on it adds the host as secondary.
    ticket_id = str(fake.add_ticket("Existing ticket", primary=fake.add_resource("Cole", "L", "c@acme-it.example")))
    draft = draft_for(fake, f"lost:{entity}", ticket_id=ticket_id if on_ticket else "")
    before = {name: len(table) for name, table in fake.tables.items()}
    fake.lose_next_response(entity)
    with pytest.raises(IntegrationUnavailable):
        await psa.create_record(kind, draft)
    assert fake.responses_lost == 1
    first = await psa.create_record(kind, draft)
    assert await psa.create_record(kind, draft) == first
    grown = {name: len(table) - before[name] for name, table in fake.tables.items() if len(table) != before[name]}
    assert grown[entity] == 1
    assert all(count == 1 for count in grown.values()), grown


async def test_a_lost_answer_on_a_contact_create_finds_the_contact_instead_of_adding_one(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    psa = AutotaskPsa(config_for(fake, fallback_company_id=DEMO_FALLBACK_COMPANY_ID), session)
    fake.lose_next_response("Contacts")
    contact = await psa.find_or_create_contact("Robin Newcomer", "robin@newcomer.example")
    assert fake.responses_lost == 1
    assert fake.contacts_with_email("robin@newcomer.example") == [contact]


DRY_RUN_TENANT = """
tenant: {{slug: stages, name: Stages IT, time_zone: UTC, holidays: []}}
users:
  - slug: rep
    name: Riley Rep
    email: riley@stages.example
    time_zone: UTC
    primary_calendar: psa
    psa_member: "{resource}"
    working_hours: {{mon: ["09:00-17:00"]}}
appointment_types:
  - slug: discovery
    name: Discovery call
    duration: 30
    location: {{kind: phone, detail: We call you}}
    host: {{user: rep}}
    mode: workflow
    workflow:
      triggers:
        client_scheduled:
          - {{action: find_or_create_opportunity{stage}}}
integrations:
  psa:
    vendor: autotask
    username: {username}
    zone_lookup_url: {zone}
    resource_role_id: {role}
    ticket_queue_id: {queue}
    secrets_from_env: {{secret: STAGES_AT_SECRET, integration_code: STAGES_AT_CODE}}
"""


async def test_apply_dry_run_shows_the_stage_autotask_will_use_and_apply_refuses_when_there_is_none(
    fake: FakeAutotaskServer, sqlite_database: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from admin.tenant_file import RolloutError
    from app import apply_tenant_file
    from tests.conftest import make_settings

    monkeypatch.setenv("STAGES_AT_SECRET", fake.secret)
    monkeypatch.setenv("STAGES_AT_CODE", fake.integration_code)

    def tenant_file(stage: str) -> Any:
        path = tmp_path / "stages.yaml"
        path.write_text(
            DRY_RUN_TENANT.format(
                resource=DEMO_RESOURCE_ID,
                stage=f", pipeline_stage: {stage}" if stage else "",
                username=fake.username,
                zone=fake.zone_lookup_url,
                role=DEMO_ROLE_ID,
                queue=DEMO_QUEUE_ID,
            )
        )
        return path

    settings = make_settings(tmp_path)
    shown = await apply_tenant_file(sqlite_database, settings, tenant_file(""), dry_run=True)
    assert "opportunities get the stage 'Qualifying' (the stage picklist's default)" in shown
    named = await apply_tenant_file(sqlite_database, settings, tenant_file("Discovery"), dry_run=True)
    assert "opportunities get the stage 'Discovery' (as set in pipeline_stage)" in named

    fake.set_picklist_default("Opportunities", "stage", None)
    warned = await apply_tenant_file(sqlite_database, settings, tenant_file(""), dry_run=True)
    assert "! appointment_types[0] (discovery)" in warned
    assert "pipeline_stage" in warned
    with pytest.raises(RolloutError, match="pipeline_stage"):
        await apply_tenant_file(sqlite_database, settings, tenant_file(""), dry_run=False)
    applied = await apply_tenant_file(sqlite_database, settings, tenant_file("Proposal"), dry_run=False)
    assert "'Proposal' (as set in pipeline_stage)" in applied


# PsaClient.ticket_contact: Tickets `contactID`, then the Contact (SOURCES.md, "Entities and operations").


async def test_a_tickets_contact_is_read_by_two_gets_and_falls_back_to_its_second_address(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    seeded = fake.add_contact("Morgan Requester", "morgan@requester.example")
    fake.tables["Contacts"][int(seeded.contact_id)] |= {
        "emailAddress": "",
        "emailAddress2": "morgan.r@requester.example",
        "emailAddress3": "m@requester.example",
    }
    ticket_id = fake.add_ticket("VPN drops every hour", contact=seeded)
    psa = AutotaskPsa(config_for(fake), session)
    before = len(fake.log)

    found = await psa.ticket_contact(str(ticket_id))

    assert found is not None
    assert (found.contact_id, found.company_id, found.name, found.email) == (
        seeded.contact_id,
        seeded.company_id,
        "Morgan Requester",
        "morgan.r@requester.example",
    )
    reads = [(logged.method, logged.path.removeprefix(API_PREFIX)) for logged in fake.log[before:]]
    assert [read for read in reads if "zoneInformation" not in read[1]] == [
        ("GET", f"Tickets/{ticket_id}"),
        ("GET", f"Contacts/{seeded.contact_id}"),
    ]


async def test_a_contact_without_any_address_or_one_that_is_gone_gives_no_recipient(
    fake: FakeAutotaskServer, session: aiohttp.ClientSession
) -> None:
    blank = fake.add_contact("Pat Phone", "pat@requester.example")
    fake.tables["Contacts"][int(blank.contact_id)]["emailAddress"] = None
    gone = fake.add_contact("Gene Gone", "gene@requester.example")
    first = fake.add_ticket("No address on file", contact=blank)
    second = fake.add_ticket("Contact deleted since", contact=gone)
    del fake.tables["Contacts"][int(gone.contact_id)]
    psa = AutotaskPsa(config_for(fake), session)

    assert await psa.ticket_contact(str(first)) is None
    # Autotask answers `{"item": null}` for an id it does not hold: "none", not an error.
    assert await psa.ticket_contact(str(second)) is None
    assert await psa.ticket_contact("T20261124.0001") is None
