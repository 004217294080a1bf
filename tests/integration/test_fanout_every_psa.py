"""A first-time client books through each PSA, end to end over real HTTP and SMTP, and everything lands.

For ConnectWise, Autotask and HaloPSA alike: the client becomes one contact under the fallback company, the ticket
(and, where the vendor has them, the opportunity) is linked to that contact, the schedule entry lands on the host's
PSA calendar, the note lands on the ticket, and the email quotes the ticket number. An appointment the host already
has in the PSA blocks its time on the booking page.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from app import apply_tenant_file
from scheduling.model import PsaRecordKind
from storage.database import Database
from storage.tables import workflow_jobs
from tests.conftest import FixedClock, make_settings, start_client
from tests.fakes import autotask, connectwise, halopsa
from tests.fakes.smtp import running_smtp_server

TENANT = """
# No reminders: the app's runner keeps real time while bookings follow the test clock, so a reminder would be due
# at once and interleave with the emails counted here (tests/integration/test_reminders.py covers reminders).
tenant: {{slug: everypsa, name: Every PSA IT, time_zone: UTC, holidays: [], reminders: false}}
users:
  - slug: tech
    name: Terry Tech
    email: terry@every-psa.example
    time_zone: UTC
    primary_calendar: psa
    psa_member: "{member}"
    working_hours: {{mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"], thu: ["09:00-17:00"], fri: ["09:00-17:00"]}}
appointment_types:
  - slug: visit
    name: Site visit
    duration: 60
    increment: 60
    location: {{kind: onsite, detail: Your office}}
    host: {{user: tech}}
    mode: workflow
    workflow:
      triggers:
        client_scheduled:
{opportunity}          - {{action: create_ticket}}
          - {{action: create_schedule_entry}}
          - {{action: add_ticket_note, note: Booked by the client on the web page.}}
          - action: send_email
            template: custom
            subject: "Booked: ticket #{{{{ ticket.number }}}}"
            body: "<p>Hi {{{{ client.name }}}}, your ticket is {{{{ ticket.number }}}}.</p>"
integrations:
  psa:
{psa}
  email:
    vendor: smtp
    host: 127.0.0.1
    port: {smtp_port}
    start_tls: false
    username: {smtp_user}
    from_address: bookings@every-psa.example
    secrets_from_env: {{password: EVERY_SMTP_PASSWORD}}
"""

OPPORTUNITY_STEP = "          - {action: find_or_create_opportunity}\n"


@dataclass
class Vendor:
    name: str
    fake: Any
    member: str
    psa_yaml: str
    env: dict[str, str]
    supports_opportunities: bool


def _indent(lines: list[str]) -> str:
    return "\n".join(f"    {line}" for line in lines)


@asynccontextmanager
async def running_vendor(name: str) -> AsyncIterator[Vendor]:
    """The vendor's stand-in on a loopback port, and the tenant-file block that connects to it."""
    if name == "autotask":
        at = autotask.FakeAutotaskServer()
        await at.start()
        try:
            yield Vendor(
                name,
                at,
                str(autotask.DEMO_RESOURCE_ID),
                _indent(
                    [
                        "vendor: autotask",
                        f"username: {at.username}",
                        f"zone_lookup_url: {at.zone_lookup_url}",
                        f"resource_role_id: {autotask.DEMO_ROLE_ID}",
                        f"ticket_queue_id: {autotask.DEMO_QUEUE_ID}",
                        f"fallback_company_id: {autotask.DEMO_FALLBACK_COMPANY_ID}",
                        "secrets_from_env: {secret: EVERY_AT_SECRET, integration_code: EVERY_AT_CODE}",
                    ]
                ),
                {"EVERY_AT_SECRET": at.secret, "EVERY_AT_CODE": at.integration_code},
                True,
            )
        finally:
            await at.close()
        return
    fake: Any = connectwise.FakeConnectWiseServer() if name == "connectwise" else halopsa.FakeHaloPsaServer()
    server = TestServer(fake.build_app(), host="127.0.0.1", port=0)
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        if name == "connectwise":
            yield Vendor(
                name,
                fake,
                connectwise.DEMO_MEMBER,
                _indent(
                    [
                        "vendor: connectwise",
                        f"site_url: {base}",
                        f"codebase: {fake.codebase}",
                        f"company_id: {fake.company_id}",
                        f"public_key: {fake.public_key}",
                        f"fallback_company_identifier: {connectwise.DEMO_FALLBACK_COMPANY}",
                        "secrets_from_env: {private_key: EVERY_CW_PRIVATE_KEY, client_id: EVERY_CW_CLIENT_ID}",
                    ]
                ),
                {"EVERY_CW_PRIVATE_KEY": fake.private_key, "EVERY_CW_CLIENT_ID": fake.client_id},
                True,
            )
        else:
            yield Vendor(
                name,
                fake,
                str(halopsa.DEMO_AGENT_ID),
                _indent(
                    [
                        "vendor: halopsa",
                        f"api_url: {base}/api",
                        f"auth_url: {base}/auth",
                        f"tenant: {fake.tenant}",
                        f"client_id: {fake.client_id}",
                        f"fallback_client_id: {halopsa.DEMO_FALLBACK_CLIENT_ID}",
                        "secrets_from_env: {client_secret: EVERY_HALO_SECRET}",
                    ]
                ),
                {"EVERY_HALO_SECRET": fake.client_secret},
                False,
            )
    finally:
        await server.close()


async def eventually(check: Callable[[], Any], what: str, seconds: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not happen in time")
        await asyncio.sleep(0.1)


async def offered_starts(client: TestClient, day: str) -> list[str]:
    response = await client.get("/book/everypsa/visit/slots", params={"start": day, "end": day, "tz": "UTC"})
    assert response.status == 200, await response.text()
    return [slot["start"] for slot in (await response.json())["slots"]]


@pytest.mark.parametrize("vendor_name", ["connectwise", "autotask", "halopsa"])
async def test_a_first_time_client_books_and_contact_records_entry_note_and_email_all_land(
    vendor_name: str,
    sqlite_database: Database,
    tmp_path: Path,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running_vendor(vendor_name) as vendor:
        fake = vendor.fake
        # The host already has an appointment in the PSA on Wednesday 10:00-11:00 (UTC).
        busy_from = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
        fake.add_busy(vendor.member, busy_from, busy_from + timedelta(hours=1))
        seeded = {kind: {str(row["id"]) for row in fake.records(kind)} for kind in PsaRecordKind}

        def made(kind: PsaRecordKind) -> list[dict[str, Any]]:
            """The records of this kind the booking made (the seeded appointment may have brought its own)."""
            return [row for row in fake.records(kind) if str(row["id"]) not in seeded[kind]]

        with running_smtp_server() as smtp:
            for key, value in {**vendor.env, "EVERY_SMTP_PASSWORD": smtp.password}.items():
                monkeypatch.setenv(key, value)
            path = tmp_path / "every.yaml"
            path.write_text(
                TENANT.format(
                    member=vendor.member,
                    opportunity=OPPORTUNITY_STEP if vendor.supports_opportunities else "",
                    psa=vendor.psa_yaml,
                    smtp_port=smtp.port,
                    smtp_user=smtp.username,
                )
            )
            await apply_tenant_file(sqlite_database, make_settings(tmp_path), path, dry_run=False)
            client: TestClient = await start_client(sqlite_database, tmp_path, clock, run_workflows=True)
            try:
                # The background refresh reads the PSA's busy time into the cache: the page stops offering 10:00.
                starts: list[str] = []

                async def refresh_seen() -> bool:
                    starts[:] = await offered_starts(client, "2026-11-25")
                    return "2026-11-25T10:00:00+00:00" not in starts

                deadline = asyncio.get_running_loop().time() + 20
                while not await refresh_seen():
                    assert asyncio.get_running_loop().time() < deadline, "the PSA appointment never blocked 10:00"
                    await asyncio.sleep(0.2)
                assert "2026-11-25T09:00:00+00:00" in starts
                assert "2026-11-25T11:00:00+00:00" in starts
                taken = await client.post(
                    "/book/everypsa/visit/bookings",
                    json={
                        "start": "2026-11-25T10:00:00+00:00",
                        "name": "Robin Newcomer",
                        "email": "robin@newcomer.example",
                        "time_zone": "UTC",
                    },
                )
                assert taken.status == 409, await taken.text()

                email = "robin@newcomer.example"
                assert fake.contacts_with_email(email) == []
                booked = await client.post(
                    "/book/everypsa/visit/bookings",
                    json={"start": "2026-11-25T14:00:00+00:00", "name": "Robin Newcomer", "email": email},
                )
                assert booked.status == 201, await booked.text()
                await eventually(lambda: len(smtp.received) == 1, f"{vendor_name}: the confirmation email")

                [contact] = fake.contacts_with_email(email)
                assert contact.company_id == str(
                    {
                        "connectwise": connectwise.DEMO_FALLBACK_COMPANY_ID,
                        "autotask": autotask.DEMO_FALLBACK_COMPANY_ID,
                        "halopsa": halopsa.DEMO_FALLBACK_CLIENT_ID,
                    }[vendor_name]
                )
                [ticket] = made(PsaRecordKind.TICKET)
                assert fake.contact_linked_to(PsaRecordKind.TICKET, str(ticket["id"])) == contact.contact_id
                if vendor.supports_opportunities:
                    [opportunity] = made(PsaRecordKind.OPPORTUNITY)
                    linked = fake.contact_linked_to(PsaRecordKind.OPPORTUNITY, str(opportunity["id"]))
                    assert linked == contact.contact_id
                assert len(made(PsaRecordKind.SCHEDULE_ENTRY)) == 1
                [note] = made(PsaRecordKind.NOTE)
                assert "Booked by the client on the web page." in str(note)
                number = str(ticket.get("ticketNumber") or ticket["id"])
                assert smtp.received[0].message["Subject"] == f"Booked: ticket #{number}"

                # The email reached the SMTP server a moment before its step was recorded as done.
                deadline = asyncio.get_running_loop().time() + 20
                while True:
                    async with sqlite_database.read() as conn:
                        steps = (await conn.execute(select(workflow_jobs.c.kind, workflow_jobs.c.state))).all()
                    if {state for _kind, state in steps} == {"completed"}:
                        break
                    assert asyncio.get_running_loop().time() < deadline, steps
                    await asyncio.sleep(0.1)
            finally:
                await client.close()
