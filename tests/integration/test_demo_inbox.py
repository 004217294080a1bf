"""The demo shows its work: after a booking through the HTTP API, the demo inspector's inbox lists the email the SMTP
stand-in received and shows it as the client would (its HTML in a sandboxed frame, its text part, its invitation),
and its records page lists the ticket and schedule entry the PSA stand-in holds; all read over HTTP."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from app import apply_tenant_file
from scheduling.model import PsaRecordKind
from storage.database import Database
from tests.conftest import FixedClock, make_settings, start_client
from tests.fakes.connectwise import DEMO_MEMBER, FakeConnectWiseServer
from tests.fakes.demo_inspector import EMAIL_CSP, inspector_app, records_app
from tests.fakes.smtp import running_smtp_server
from tests.integration.test_fanout_psa import TENANT


async def eventually(check: Callable[[], Any], what: str, seconds: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not happen in time")
        await asyncio.sleep(0.1)


@pytest.fixture
async def connectwise() -> AsyncIterator[tuple[FakeConnectWiseServer, str, str]]:
    """The PSA stand-in as the demo runs it: its API, and its records on a side port."""
    fake = FakeConnectWiseServer()
    api = TestServer(fake.build_app(), host="127.0.0.1", port=0)
    records = TestServer(
        records_app(lambda: {kind.value: fake.records(kind) for kind in PsaRecordKind}), host="127.0.0.1", port=0
    )
    await api.start_server()
    await records.start_server()
    yield fake, str(api.make_url("")).rstrip("/"), str(records.make_url("/records"))
    await records.close()
    await api.close()


async def test_the_inbox_and_records_pages_show_what_a_booking_produced(
    sqlite_database: Database,
    tmp_path: Path,
    clock: FixedClock,
    connectwise: tuple[FakeConnectWiseServer, str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, site, records_url = connectwise
    spool = tmp_path / "spool"
    with running_smtp_server(spool=spool) as smtp:
        monkeypatch.setenv("FANOUT_CW_PRIVATE_KEY", fake.private_key)
        monkeypatch.setenv("FANOUT_CW_CLIENT_ID", fake.client_id)
        monkeypatch.setenv("FANOUT_SMTP_PASSWORD", smtp.password)
        path = tmp_path / "fanout.yaml"
        path.write_text(
            TENANT.format(
                member=DEMO_MEMBER,
                site=site,
                codebase=fake.codebase,
                company=fake.company_id,
                public_key=fake.public_key,
                smtp_port=smtp.port,
                smtp_user=smtp.username,
            )
        )
        await apply_tenant_file(sqlite_database, make_settings(tmp_path), path, dry_run=False)
        fake.add_contact("Dana Client", "dana@client.example")
        app_client: TestClient = await start_client(sqlite_database, tmp_path, clock, run_workflows=True)
        inspector = TestClient(
            TestServer(inspector_app(spool, {"ConnectWise PSA": records_url, "Gone PSA": "http://127.0.0.1:9/records"}))
        )
        await inspector.start_server()
        try:
            empty = await inspector.get("/inbox")
            assert empty.status == 200
            assert "No email yet" in await empty.text()
            booked = await app_client.post(
                "/book/fanout/onsite/bookings",
                json={
                    "start": "2026-11-24T15:00:00+00:00",
                    "name": "Dana <Client>",
                    "email": "dana@client.example",
                    "time_zone": "UTC",
                },
            )
            assert booked.status == 201, await booked.text()
            await eventually(lambda: len(smtp.received) == 1, "the confirmation")
            [ticket] = fake.records(PsaRecordKind.TICKET)

            inbox = await inspector.get("/inbox")
            listing = await inbox.text()
            assert f"Booked: ticket #{ticket['id']}" in listing
            assert "dana@client.example" in listing
            assert "REQUEST (sequence 0)" in listing
            [link] = re.findall(r'href="(/inbox/\d+)"', listing)

            page = await inspector.get(link)
            assert page.status == 200
            shown = await page.text()
            assert f'src="{link}/html"' in shown
            assert "<iframe" in shown
            assert "sandbox" in shown
            assert "Hi Dana &lt;Client&gt;, your ticket is" in shown, "the text part, escaped on the page"
            assert "bookings@fanout-it.example" in shown

            html = await inspector.get(f"{link}/html")
            assert html.status == 200
            assert html.headers["Content-Security-Policy"] == EMAIL_CSP
            body = await html.text()
            assert "Dana &lt;Client&gt;" in body
            assert "<script" not in body

            assert (await inspector.get("/inbox/9999")).status == 404

            records = await inspector.get("/records")
            assert records.status == 200
            listed = await records.text()
            assert "ConnectWise PSA" in listed
            assert "ticket (1)" in listed
            assert "schedule_entry (1)" in listed
            assert str(ticket["id"]) in listed
            assert "The stand-in did not answer at http://127.0.0.1:9/records" in listed
        finally:
            await inspector.close()
            await app_client.close()
    assert len(list(spool.glob("*.eml"))) == 1, "the stand-in keeps what it received"


def test_every_demo_teams_type_creates_the_microsoft_365_event_that_carries_its_meeting() -> None:
    """A Teams location promises a join link, and only the Microsoft 365 event makes one: every demo type with a
    Teams location creates that event when booked, moves it on a reschedule and cancels it on a cancellation,
    whoever of its hosts is picked (a PSA-calendar host too)."""
    from admin.tenant_yaml import load_tenant_file
    from app import DEMO_FILE
    from workflows.triggers import ActionKind, Connected, Trigger, workflow_for_type

    demo = load_tenant_file(DEMO_FILE)
    connected = Connected(psa="connectwise", m365=True, email=True, teams=True)
    teams_types = [kind for kind in demo.appointment_types if kind.location.kind == "teams"]
    assert {kind.slug for kind in teams_types} >= {"discovery-call", "emea-consultation"}
    for kind in teams_types:
        settings = {"mode": kind.mode, "workflow": kind.workflow, "location": kind.location.model_dump()}
        for primary in ("m365", "psa"):
            workflow, _mode = workflow_for_type(settings, primary, connected)
            for trigger, action in (
                (Trigger.CLIENT_SCHEDULED, ActionKind.CREATE_M365_EVENT),
                (Trigger.RESCHEDULED, ActionKind.UPDATE_M365_EVENT),
                (Trigger.CANCELLED, ActionKind.CANCEL_M365_EVENT),
            ):
                assert action in [step.action for step in workflow.actions_for(trigger)], (kind.slug, primary, trigger)
