"""Reminders (`before_appointment`): one run per offset, due at the start minus the offset, re-timed by a reschedule,
dropped by a cancellation, skipped when the booking came too late, fired once across restarts; Classic mode's day-before
email and the tenant switch that turns it off. On SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from admin.tenant_file import RolloutError, validate_tenant_document
from admin.tenant_yaml import load_tenant_file
from app import TenantAdapters, apply_tenant_file
from storage.database import Database
from storage.secrets import SecretBox
from storage.tables import workflow_jobs
from tests.conftest import FIXTURES, FixedClock, make_settings, start_client
from tests.fakes.smtp import FakeSmtpServer, running_smtp_server
from tests.integration.test_booking_api import PAGE, booking_body
from tests.integration.test_fanout import tenant_file_with_email
from workflows.runner import Runner
from workflows.steps import build_handlers

SECRET = "test-secret-key-that-is-long-enough-0123456789"
EXAMPLES = Path(__file__).parents[2] / "examples"
WORKFLOW = """    mode: workflow
    workflow:
      triggers:
        before_appointment:
          offsets: [1 day, 1 hour]
          actions:
            - {action: send_email}
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    with running_smtp_server() as server:
        yield server


async def with_reminders(
    database: Database, tmp_path: Path, smtp: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch, *, workflow: bool
) -> None:
    """The fixture tenant with email connected; `workflow`: the intro call reminds 1 day and 1 hour ahead (Workflow
    Mode, by phone, no minimum notice), else it runs Classic mode."""
    monkeypatch.setenv("ACME_SMTP_PASSWORD", smtp.password)
    path = tenant_file_with_email(tmp_path, smtp)
    if workflow:
        text = path.read_text()
        intro = "    minimum_notice: 2 hours\n    maximum_window: 30 days\n    location: {kind: teams}\n    host: {user: alice}\n"
        assert text.count(intro) == 1
        path.write_text(
            text.replace(
                intro,
                "    minimum_notice: 0 minutes\n    maximum_window: 30 days\n    location: {kind: phone}\n"
                "    host: {user: alice}\n" + WORKFLOW,
            )
        )
    await apply_tenant_file(database, make_settings(tmp_path), path, dry_run=False)


@contextlib.asynccontextmanager
async def runner_on(database: Database, clock: FixedClock, worker_id: str = "w1") -> AsyncIterator[Runner]:
    """A workflow runner (as in a fresh `slotwise worker` process) whose "now" is the test's clock."""
    async with aiohttp.ClientSession() as session:
        adapters = TenantAdapters(database, SecretBox(SECRET), session)
        yield Runner(database, build_handlers(database, adapters), worker_id=worker_id, clock=clock.now)


async def run_at(database: Database, clock: FixedClock, moment: str, worker_id: str = "w1") -> None:
    clock.moment = at(moment)
    async with runner_on(database, clock, worker_id) as runner:
        await runner.run_until_idle()


def reminders_sent(smtp: FakeSmtpServer) -> list[str]:
    return [str(mail.message["Subject"]) for mail in smtp.received if mail.message["Subject"].startswith("Reminder:")]


async def reminder_steps(database: Database, booking_id: str) -> list[tuple[str, datetime, str]]:
    """(state, due, run key) of the booking's reminder steps, by due time."""
    jobs = workflow_jobs.c
    async with database.read() as conn:
        rows = await conn.execute(
            select(jobs.state, jobs.run_after, jobs.run_key)
            .where(jobs.booking_id == booking_id, jobs.run_key.like("%:before_appointment:%"))
            .order_by(jobs.run_after, jobs.id)
        )
        return [(str(row.state), row.run_after, str(row.run_key)) for row in rows]


async def book(client: TestClient, start: str) -> dict[str, str]:
    answer = await client.post(f"{PAGE}/bookings", json=booking_body(start))
    assert answer.status == 201, await answer.text()
    body: dict[str, str] = await answer.json()
    return body


async def test_a_booking_with_offsets_of_a_day_and_an_hour_gets_two_reminders_at_those_times_and_not_before(
    database: Database, tmp_path: Path, clock: FixedClock, smtp: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    await with_reminders(database, tmp_path, smtp, monkeypatch, workflow=True)
    client = await start_client(database, tmp_path, clock)
    try:
        booking = await book(client, "2026-11-24T15:00:00+00:00")
    finally:
        await client.close()
    steps = await reminder_steps(database, booking["id"])
    assert [(state, due) for state, due, _ in steps] == [
        ("available", at("2026-11-23T15:00:00")),
        ("available", at("2026-11-24T14:00:00")),
    ]
    await run_at(database, clock, "2026-11-23T14:59:59")
    assert reminders_sent(smtp) == []
    await run_at(database, clock, "2026-11-23T15:00:00")
    assert reminders_sent(smtp) == ["Reminder: Intro call on Tuesday 24 November 2026, 15:00"]
    reminder = smtp.received[-1].message
    assert reminder["To"] == "dana@client.test"
    text = reminder.get_body(preferencelist=("plain",))
    assert text is not None
    assert "Reschedule or cancel" in text.get_content()
    await run_at(database, clock, "2026-11-24T13:59:00")
    assert len(reminders_sent(smtp)) == 1
    await run_at(database, clock, "2026-11-24T14:00:00")
    assert len(reminders_sent(smtp)) == 2
    assert [state for state, _, _ in await reminder_steps(database, booking["id"])] == ["completed", "completed"]


async def test_a_reschedule_cancels_the_reminders_of_the_old_time_and_plans_them_for_the_new_one(
    database: Database, tmp_path: Path, clock: FixedClock, smtp: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    await with_reminders(database, tmp_path, smtp, monkeypatch, workflow=True)
    client = await start_client(database, tmp_path, clock)
    try:
        booking = await book(client, "2026-11-24T15:00:00+00:00")
        manage = booking["manage_url"].removeprefix("http://testserver")
        moved = await client.post(f"{manage}/reschedule", json={"start": "2026-11-25T16:00:00+00:00"})
        assert moved.status == 200, await moved.text()
    finally:
        await client.close()
    steps = await reminder_steps(database, booking["id"])
    assert [(state, due) for state, due, _ in steps] == [
        ("cancelled", at("2026-11-23T15:00:00")),
        ("cancelled", at("2026-11-24T14:00:00")),
        ("available", at("2026-11-24T16:00:00")),
        ("available", at("2026-11-25T15:00:00")),
    ]
    await run_at(database, clock, "2026-11-24T15:00:00")
    assert reminders_sent(smtp) == []
    await run_at(database, clock, "2026-11-24T16:00:00")
    await run_at(database, clock, "2026-11-25T15:00:00")
    assert reminders_sent(smtp) == ["Reminder: Intro call on Wednesday 25 November 2026, 16:00"] * 2


async def test_a_cancellation_drops_the_reminders(
    database: Database, tmp_path: Path, clock: FixedClock, smtp: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    await with_reminders(database, tmp_path, smtp, monkeypatch, workflow=True)
    client = await start_client(database, tmp_path, clock)
    try:
        booking = await book(client, "2026-11-24T15:00:00+00:00")
        manage = booking["manage_url"].removeprefix("http://testserver")
        assert (await client.post(f"{manage}/cancel", json={"reason": "No longer needed"})).status == 200
    finally:
        await client.close()
    assert [state for state, _, _ in await reminder_steps(database, booking["id"])] == ["cancelled", "cancelled"]
    await run_at(database, clock, "2026-11-24T15:00:00")
    assert reminders_sent(smtp) == []


async def test_a_booking_made_thirty_minutes_before_its_start_skips_both_offsets(
    database: Database, tmp_path: Path, clock: FixedClock, smtp: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    await with_reminders(database, tmp_path, smtp, monkeypatch, workflow=True)
    clock.moment = at("2026-11-23T14:30:00")
    client = await start_client(database, tmp_path, clock)
    try:
        booking = await book(client, "2026-11-23T15:00:00+00:00")
    finally:
        await client.close()
    assert await reminder_steps(database, booking["id"]) == []
    await run_at(database, clock, "2026-11-23T15:00:00")
    assert reminders_sent(smtp) == []


async def test_a_reminder_survives_a_restart_and_fires_exactly_once(
    database: Database, tmp_path: Path, clock: FixedClock, smtp: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    await with_reminders(database, tmp_path, smtp, monkeypatch, workflow=True)
    client = await start_client(database, tmp_path, clock)
    try:
        await book(client, "2026-11-24T15:00:00+00:00")
    finally:
        await client.close()
    # The first process runs before anything is due and goes away.
    await run_at(database, clock, "2026-11-23T12:30:00", worker_id="before-restart")
    assert reminders_sent(smtp) == []
    # Processes started afterwards, on the same database, fire each reminder once, however often they run.
    await run_at(database, clock, "2026-11-23T15:00:00", worker_id="after-restart")
    await run_at(database, clock, "2026-11-23T15:00:00", worker_id="another-worker")
    await run_at(database, clock, "2026-11-23T18:00:00", worker_id="after-restart")
    assert len(reminders_sent(smtp)) == 1


@pytest.mark.parametrize("reminders", [True, False])
async def test_classic_mode_sends_one_reminder_a_day_before_unless_the_tenant_turns_reminders_off(
    database: Database,
    tmp_path: Path,
    clock: FixedClock,
    smtp: FakeSmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    reminders: bool,
) -> None:
    monkeypatch.setenv("ACME_SMTP_PASSWORD", smtp.password)
    path = tenant_file_with_email(tmp_path, smtp, reminders=reminders)
    await apply_tenant_file(database, make_settings(tmp_path), path, dry_run=False)
    client = await start_client(database, tmp_path, clock)
    try:
        booking = await book(client, "2026-11-24T15:00:00+00:00")
    finally:
        await client.close()
    steps = await reminder_steps(database, booking["id"])
    assert [due for _, due, _ in steps] == ([at("2026-11-23T15:00:00")] if reminders else [])
    await run_at(database, clock, "2026-11-23T14:59:00")
    assert reminders_sent(smtp) == []
    await run_at(database, clock, "2026-11-23T15:00:00")
    await run_at(database, clock, "2026-11-24T14:59:00")
    expected = ["Reminder: Intro call on Tuesday 24 November 2026, 15:00"] if reminders else []
    assert reminders_sent(smtp) == expected


@pytest.mark.parametrize(
    "path",
    [*sorted(FIXTURES.glob("*.yaml")), EXAMPLES / "demo.yaml"],
    ids=lambda path: path.name,
)
def test_todays_tenant_files_stay_valid_and_keep_their_stored_form(path: Path) -> None:
    file = load_tenant_file(path)
    assert file.tenant.reminders is True
    for kind in file.appointment_types:
        if kind.workflow:
            # Lists of actions stay lists of actions, so applying today's file after the upgrade changes nothing.
            assert all(isinstance(actions, list) for actions in kind.workflow["triggers"].values())


def test_offsets_are_lengths_of_time_and_belong_to_before_appointment_only() -> None:
    def document(triggers: object) -> dict[str, object]:
        return {
            "tenant": {"slug": "t", "name": "T", "time_zone": "UTC"},
            "appointment_types": [
                {
                    "slug": "call",
                    "name": "Call",
                    "duration": 30,
                    "location": {"kind": "phone"},
                    "host": {"user": "u"},
                    "mode": "workflow",
                    "workflow": {"triggers": triggers},
                }
            ],
            "users": [
                {
                    "slug": "u",
                    "name": "U",
                    "email": "u@t.example",
                    "time_zone": "UTC",
                    "primary_calendar": "m365",
                    "working_hours": {},
                }
            ],
        }

    webhook = {"action": "post_webhook", "url": "https://hooks.example/x", "secret_from_env": "HOOK_SECRET"}
    file = validate_tenant_document(
        document({"before_appointment": {"offsets": ["2 Days", "30 minute"], "actions": [webhook]}})
    )
    stored = file.appointment_types[0].workflow
    assert stored is not None
    assert stored["triggers"]["before_appointment"]["offsets"] == ["2 days", "30 minutes"]
    with pytest.raises(RolloutError, match="is not a length of time"):
        validate_tenant_document(document({"before_appointment": {"offsets": ["soon"], "actions": [webhook]}}))
    with pytest.raises(RolloutError, match="more than zero"):
        validate_tenant_document(document({"before_appointment": {"offsets": ["0 hours"], "actions": [webhook]}}))
    with pytest.raises(RolloutError, match="apply only to before_appointment"):
        validate_tenant_document(document({"client_scheduled": {"offsets": ["1 day"], "actions": [webhook]}}))
