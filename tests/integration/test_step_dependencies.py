"""Steps wait only for the steps whose outputs they use: the client's confirmation goes out within the grace period
whatever the PSA or Teams do, steps that need a failed step's record are blocked (and released when it is retried),
and a reschedule waits for the run that created the record it moves. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from app import TenantAdapters, apply_tenant_file
from scheduling.errors import IntegrationRejected, IntegrationUnavailable
from scheduling.model import (
    CalendarEventDraft,
    CalendarEventRef,
    HostNotification,
    OutgoingEmail,
    PsaRecordKind,
)
from storage.database import Database
from storage.repositories import SqlAgentKeys
from storage.secrets import SecretBox
from storage.tables import workflow_jobs
from tests.conftest import FixedClock, make_settings, start_client
from tests.fakes.connectwise import DEMO_MEMBER, FakeConnectWiseServer
from tests.fakes.smtp import running_smtp_server
from tests.integration.test_workflow_runner import add_tenant
from workflows.outbox import (
    BLOCKED,
    COMPLETED,
    DEFAULT_SOFT_DEPENDENCY_GRACE,
    HARD,
    SOFT,
    Dependency,
    JobSpec,
    enqueue_jobs,
    list_runs,
    release_graced_jobs,
)
from workflows.runner import Runner
from workflows.steps import TenantIntegrations, build_handlers
from workflows.triggers import Connected, Trigger, classic_workflow, plan_dependencies, plan_jobs, template_outputs

SECRET = "test-secret-key-that-is-long-enough-0123456789"
GRACE = timedelta(seconds=2)

TENANT = """
tenant: {{slug: deps, name: Deps IT, time_zone: America/New_York, holidays: []}}
users:
  - slug: tech
    name: Terry Tech
    email: terry@deps-it.example
    time_zone: America/New_York
    primary_calendar: psa
    psa_member: {member}
    working_hours: {{mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"], thu: ["09:00-17:00"], fri: ["09:00-17:00"]}}
appointment_types:
  - slug: onsite
    name: On-site visit
    duration: 60
    increment: 60
    location: {{kind: onsite, detail: Your office}}
    host: {{user: tech}}
    mode: workflow
    workflow:
      triggers:
        client_scheduled:
          - {{action: create_ticket, ticket_board: Service Desk}}
          - {{action: create_schedule_entry}}
          - {{action: add_ticket_note, note: Booked online.}}
          - {{action: send_email}}
        rescheduled:
          - {{action: move_schedule_entry}}
          - {{action: send_email}}
integrations:
  psa:
    vendor: connectwise
    site_url: {site}
    codebase: {codebase}
    company_id: {company}
    public_key: {public_key}
    secrets_from_env: {{private_key: DEPS_CW_PRIVATE_KEY, client_id: DEPS_CW_CLIENT_ID}}
  email:
    vendor: smtp
    host: 127.0.0.1
    port: {smtp_port}
    start_tls: false
    username: {smtp_user}
    from_address: bookings@deps-it.example
    secrets_from_env: {{password: DEPS_SMTP_PASSWORD}}
"""


@pytest.fixture
async def connectwise() -> AsyncIterator[tuple[FakeConnectWiseServer, str]]:
    fake = FakeConnectWiseServer()
    server = TestServer(fake.build_app(), host="127.0.0.1", port=0)
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


async def apply_deps_tenant(
    database: Database,
    tmp_path: Path,
    connectwise: tuple[FakeConnectWiseServer, str],
    smtp: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """Apply TENANT against these stand-ins; returns an admin API key's headers."""
    fake, site = connectwise
    monkeypatch.setenv("DEPS_CW_PRIVATE_KEY", fake.private_key)
    monkeypatch.setenv("DEPS_CW_CLIENT_ID", fake.client_id)
    monkeypatch.setenv("DEPS_SMTP_PASSWORD", smtp.password)
    path = tmp_path / "deps.yaml"
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
    await apply_tenant_file(database, make_settings(tmp_path), path, dry_run=False)
    return {"Authorization": f"Bearer {await SqlAgentKeys(database).create_key('deps', 'ops', 'admin')}"}


async def eventually(check: Callable[[], Any], what: str, seconds: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not in time: {what}")
        await asyncio.sleep(0.05)


async def steps_of(client: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    answer = await client.get("/api/v1/admin/steps", headers=headers)
    assert answer.status == 200, await answer.text()
    steps: list[dict[str, Any]] = (await answer.json())["steps"]
    return steps


async def test_a_failing_psa_neither_delays_the_confirmation_nor_lets_a_reschedule_move_what_does_not_exist(
    database: Database,
    tmp_path: Path,
    clock: FixedClock,
    connectwise: tuple[FakeConnectWiseServer, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, _site = connectwise
    with running_smtp_server() as smtp:
        admin = await apply_deps_tenant(database, tmp_path, connectwise, smtp, monkeypatch)
        fake.add_contact("Dana Client", "dana@client.example")
        # The web app takes bookings; this test runs the runner itself, with a short grace and a clock it can move.
        client = await start_client(database, tmp_path, clock, run_workflows=False)
        skew = [timedelta(0)]
        stop = asyncio.Event()
        async with aiohttp.ClientSession() as session:
            runner = Runner(
                database,
                build_handlers(database, TenantAdapters(database, SecretBox(SECRET), session)),
                worker_id="w1",
                poll_interval=timedelta(milliseconds=50),
                soft_dependency_grace=GRACE,
                clock=lambda: datetime.now(UTC) + skew[0],
            )
            running = asyncio.create_task(runner.run_forever(stop))
            try:
                fake.fail_next(500, message="ConnectWise is down", count=100_000)
                body = {
                    "start": "2026-11-24T15:00:00+00:00",
                    "name": "Dana Client",
                    "email": "dana@client.example",
                    "time_zone": "UTC",
                }
                booked_at = asyncio.get_running_loop().time()
                booked = await client.post("/book/deps/onsite/bookings", json=body)
                assert booked.status == 201, await booked.text()

                # The PSA keeps answering 500: the confirmation waits the grace period for the ticket number, then
                # goes without it (no empty "Ticket #" line).
                await eventually(lambda: len(smtp.received) == 1, "the confirmation despite the PSA outage")
                waited = asyncio.get_running_loop().time() - booked_at
                assert GRACE.total_seconds() - 0.5 <= waited < GRACE.total_seconds() + 5
                confirmation = smtp.received[0].message
                assert confirmation["Subject"].startswith("Confirmed: On-site visit")
                assert "Ticket #" not in str(confirmation)
                await eventually(lambda: runner.stats.completed == 1, "the email step recorded")
                steps = {step["action"]: step for step in await steps_of(client, admin)}
                # The PSA still refuses: the ticket step waits for its next try, or is in the middle of one.
                assert steps["create_ticket"]["state"] in ("retryable", "running")
                assert steps["send_email"]["state"] == COMPLETED
                # The same two cases when the grace ran out, in the words the step history shows.
                assert steps["send_email"]["external_ids"]["went_without"] in (
                    [f"ticket_number from step 0 (create_ticket): {why} when the grace period ran out"]
                    for why in ("still retrying", "not done")
                )
                run = steps["create_ticket"]["run"]
                assert steps["create_schedule_entry"]["depends_on"] == [
                    {"run": run, "step": 0, "action": "create_ticket", "kind": "hard", "uses": ["ticket_id"]}
                ]
                assert steps["send_email"]["depends_on"] == [
                    {"run": run, "step": 0, "action": "create_ticket", "kind": "soft", "uses": ["ticket_number"]}
                ]
                assert steps["create_schedule_entry"]["state"] == "waiting"

                # Now the credentials are gone: the ticket fails for good and the steps that need it are blocked.
                fake.revoke_credentials()
                skew[0] += timedelta(minutes=10)
                await eventually(lambda: runner.stats.failed >= 1, "the ticket step failing for good")
                steps = {step["action"]: step for step in await steps_of(client, admin)}
                assert steps["create_ticket"]["state"] == "failed"
                for action in ("create_schedule_entry", "add_ticket_note"):
                    assert steps[action]["state"] == BLOCKED
                    assert steps[action]["blocked_by"] == "blocked by step 0 (create_ticket)"

                # A reschedule while the first run is blocked: its move waits for (is blocked by) the create, and
                # its email goes at once, quoting no ticket.
                manage = (await booked.json())["manage_url"].removeprefix("http://testserver")
                moved = await client.post(f"{manage}/reschedule", json={"start": "2026-11-25T16:00:00+00:00"})
                assert moved.status == 200, await moved.text()
                await eventually(lambda: len(smtp.received) == 2, "the rescheduled email")
                assert smtp.received[1].message["Subject"].startswith("Rescheduled: On-site visit")
                [move] = [step for step in await steps_of(client, admin) if step["action"] == "move_schedule_entry"]
                assert move["state"] == BLOCKED
                assert move["blocked_by"] == f"blocked by step 1 (create_schedule_entry) of run {run}"
                assert move["depends_on"][0]["kind"] == HARD
                assert fake.records(PsaRecordKind.SCHEDULE_ENTRY) == []

                # The PSA recovers and an agent retries the ticket: everything blocked behind it runs, the entry is
                # created and then moved to the new time, never left at the old one.
                fake._revoked = False
                fake._faults.clear()
                retried = await client.post(f"/api/v1/admin/steps/{steps['create_ticket']['id']}/retry", headers=admin)
                assert retried.status == 202, await retried.text()
                await eventually(
                    lambda: (
                        len(fake.records(PsaRecordKind.NOTE)) == 1
                        and [entry["dateStart"] for entry in fake.records(PsaRecordKind.SCHEDULE_ENTRY)]
                        == ["2026-11-25T16:00:00Z"]
                    ),
                    "the released steps and the move",
                )
                await eventually(lambda: runner.stats.completed >= 6, "every step recorded")
                assert len(fake.records(PsaRecordKind.TICKET)) == 1
                states = {step["action"]: step["state"] for step in await steps_of(client, admin)}
                assert set(states.values()) == {COMPLETED}, states
                assert len(smtp.received) == 2, "no email was sent twice"
            finally:
                stop.set()
                await running
                await client.close()


async def test_a_psa_that_refuses_our_credentials_is_not_asked_once_per_booking_and_a_retry_after_the_fix_goes(
    database: Database,
    tmp_path: Path,
    clock: FixedClock,
    connectwise: tuple[FakeConnectWiseServer, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, _site = connectwise
    with running_smtp_server() as smtp:
        admin = await apply_deps_tenant(database, tmp_path, connectwise, smtp, monkeypatch)
        client = await start_client(database, tmp_path, clock, run_workflows=False)
        bookings = 12
        for index in range(bookings):
            fake.add_contact(f"Client {index}", f"client{index}@client.example")
        try:
            for index in range(bookings):
                booked = await client.post(
                    "/book/deps/onsite/bookings",
                    json={
                        "start": f"2026-11-{24 + index // 6:02d}T{14 + index % 6:02d}:00:00+00:00",
                        "name": f"Client {index}",
                        "email": f"client{index}@client.example",
                    },
                )
                assert booked.status == 201, await booked.text()
            fake.revoke_credentials()
            fake.request_log.clear()
            async with aiohttp.ClientSession() as session:
                runner = Runner(
                    database,
                    build_handlers(database, TenantAdapters(database, SecretBox(SECRET), session)),
                    worker_id="w1",
                    concurrency=2,
                    soft_dependency_grace=GRACE,
                )
                await runner.run_until_idle()
                refused = [entry for entry in fake.request_log if entry.status == 401]
                # The first refusal (one per runner slot in flight at the time) holds the rest back: not 12.
                assert 1 <= len(refused) <= 2, [entry.path for entry in refused]
                steps = await steps_of(client, admin)
                tickets = [step for step in steps if step["action"] == "create_ticket"]
                assert [step["state"] for step in tickets] == ["failed"] * bookings
                for step in tickets:
                    # Each names the vendor's own reason; those not sent also say what to do.
                    assert "Invalid API key or company" in step["last_error"], step["last_error"]
                held = [step for step in tickets if step["last_error"].startswith("CredentialsHeld: Not sent")]
                assert len(held) == bookings - len(refused)
                assert "Correct the credentials in the tenant file" in held[0]["last_error"]
                # The clients still get their confirmations, without a ticket number.
                assert len(smtp.received) == bookings

                # The admin fixes the API member and retries one ticket at once: it goes to ConnectWise and succeeds.
                fake._revoked = False
                retried = await client.post(f"/api/v1/admin/steps/{held[0]['id']}/retry", headers=admin)
                assert retried.status == 202, await retried.text()
                await runner.run_until_idle()
            steps = {step["id"]: step for step in await steps_of(client, admin)}
            assert steps[held[0]["id"]]["state"] == COMPLETED
            assert len(fake.records(PsaRecordKind.TICKET)) == 1
        finally:
            await client.close()


class CardToAHostWhoRemovedTheApp:
    """Teams answers 404 for the host's conversation: the app was removed."""

    def __init__(self) -> None:
        self.calls = 0

    async def notify_host(self, tenant_id: str, user_id: str, notification: HostNotification) -> str | None:
        self.calls += 1
        raise IntegrationRejected("Teams 404 ConversationNotFound: the host removed the app")


class RecordingMailer:
    def __init__(self) -> None:
        self.sent: list[OutgoingEmail] = []

    async def send(self, email: OutgoingEmail) -> str:
        self.sent.append(email)
        return email.message_id


async def test_a_teams_card_to_a_host_who_removed_the_app_never_delays_the_clients_email(
    database: Database, clock: FixedClock
) -> None:
    await add_tenant(database, "acme")
    workflow = classic_workflow("m365", Connected(email=True, teams=True))
    snapshot = {
        "id": "b1",
        "tenant_id": "acme",
        "tenant_name": "Acme",
        "type_name": "Call",
        "starts_at": "2026-11-24T15:00:00+00:00",
        "ends_at": "2026-11-24T15:30:00+00:00",
        "status": "confirmed",
        "hosts": [{"user_id": "u1", "name": "Hana Host", "email": "hana@acme.example"}],
        "client": {"name": "Dana", "email": "dana@client.example", "time_zone": "UTC", "answers": {}, "guests": []},
        "manage_url": "https://book.example/m/b1",
    }
    jobs = plan_jobs(
        tenant_id="acme",
        booking_id="b1",
        trigger=Trigger.CLIENT_SCHEDULED,
        occurrence=1,
        workflow=workflow,
        booking_snapshot=snapshot,
    )
    assert [job.kind for job in jobs] == ["notify_host", "send_email"]
    assert [job.depends_on for job in jobs] == [(), ()], "a host's card is never a dependency of an email"
    await database.run_write(lambda conn: enqueue_jobs(conn, jobs, now=clock.now()))

    notifier, mailer = CardToAHostWhoRemovedTheApp(), RecordingMailer()

    async def integrations_for(_tenant_id: str) -> TenantIntegrations:
        return TenantIntegrations(notifier=notifier, mailer=mailer, from_address="bookings@acme.example")

    runner = Runner(database, build_handlers(database, integrations_for), worker_id="w1", clock=clock.now)
    await runner.run_until_idle()
    assert len(mailer.sent) == 1
    assert notifier.calls == 1
    card, email = await list_runs(database, "acme", "b1")
    assert (card.state, email.state) == ("failed", COMPLETED)
    assert "went_without" not in (email.output or {})


class CalendarDownAWhile:
    """Microsoft 365 that is unavailable for the first `down` event creations, and records what it was asked."""

    def __init__(self, down: int) -> None:
        self.down = down
        self.drafts: list[CalendarEventDraft] = []
        self.moved: list[datetime] = []

    async def create_event(self, mailbox: str, draft: CalendarEventDraft) -> CalendarEventRef:
        if self.down > 0:
            self.down -= 1
            raise IntegrationUnavailable("Graph 503: the service is unavailable")
        self.drafts.append(draft)
        return CalendarEventRef("evt-1", "https://teams.example/join/1")

    async def move_event(self, mailbox: str, event_id: str, starts_at: datetime, ends_at: datetime) -> None:
        self.moved.append(starts_at)

    async def cancel_event(self, mailbox: str, event_id: str, comment: str) -> None:
        return None


async def test_an_event_made_after_the_confirmation_carried_our_invite_does_not_invite_the_client_twice(
    database: Database, clock: FixedClock
) -> None:
    await add_tenant(database, "acme")
    workflow = classic_workflow("m365", Connected(email=True, m365=True), reminders=False)
    snapshot = {
        "id": "b1",
        "tenant_id": "acme",
        "tenant_name": "Acme",
        "type_name": "Call",
        "starts_at": "2026-11-24T15:00:00+00:00",
        "ends_at": "2026-11-24T15:30:00+00:00",
        "status": "confirmed",
        "location_kind": "teams",
        "hosts": [{"user_id": "u1", "name": "Hana Host", "email": "hana@acme.example"}],
        "client": {"name": "Dana", "email": "dana@client.example", "time_zone": "UTC", "answers": {}, "guests": []},
        "manage_url": "https://book.example/m/b1",
    }

    def plan(trigger: Trigger, occurrence: int, booking: dict[str, Any]) -> list[JobSpec]:
        return plan_jobs(
            tenant_id="acme",
            booking_id="b1",
            trigger=trigger,
            occurrence=occurrence,
            workflow=workflow,
            booking_snapshot=booking,
        )

    await database.run_write(
        lambda conn: enqueue_jobs(conn, plan(Trigger.CLIENT_SCHEDULED, 1, snapshot), now=clock.now())
    )
    calendar, mailer = CalendarDownAWhile(down=2), RecordingMailer()

    async def integrations_for(_tenant_id: str) -> TenantIntegrations:
        return TenantIntegrations(calendar=calendar, mailer=mailer, from_address="bookings@acme.example")

    def runner() -> Runner:
        return Runner(
            database,
            build_handlers(database, integrations_for),
            worker_id="w1",
            clock=clock.now,
            poll_interval=timedelta(0),
        )

    await runner().run_until_idle()  # the event fails once; the email waits for its join link
    assert mailer.sent == []
    clock.moment += DEFAULT_SOFT_DEPENDENCY_GRACE + timedelta(minutes=1)
    await runner().run_until_idle()  # the grace is over: the email goes with our invitation; the event fails again
    [confirmation] = mailer.sent
    assert confirmation.invite is not None
    assert confirmation.invite.uid == "b1@slotwise"
    clock.moment += timedelta(minutes=30)
    await runner().run_until_idle()  # Microsoft 365 is back: the event is made, for the host only
    [draft] = calendar.drafts
    assert "dana@client.example" not in [address for _name, address in draft.attendees]

    # A reschedule moves the host's event and updates the client's one entry through our invitation.
    moved = {**snapshot, "starts_at": "2026-11-25T15:00:00+00:00", "ends_at": "2026-11-25T15:30:00+00:00"}
    moved["sequence"] = 1
    await database.run_write(lambda conn: enqueue_jobs(conn, plan(Trigger.RESCHEDULED, 1, moved), now=clock.now()))
    await runner().run_until_idle()
    assert calendar.moved == [datetime(2026, 11, 25, 15, 0, tzinfo=UTC)]
    rescheduled = mailer.sent[-1]
    assert rescheduled.invite is not None
    assert (rescheduled.invite.uid, rescheduled.invite.sequence) == ("b1@slotwise", 1)


def test_dependencies_come_from_the_workflow_and_the_templates_variables() -> None:
    from workflows.triggers import ActionSpec

    assert template_outputs(
        "#{{ ticket.number }}", "{{ opportunity.id }} {{ appointment.join_url }} {{ outputs.note_id }} ticket"
    ) == {"ticket_number", "opportunity_id", "join_url", "note_id"}
    actions = [
        ActionSpec(action="find_or_create_opportunity"),
        ActionSpec(action="create_m365_event"),
        ActionSpec(action="create_activity"),
        ActionSpec(action="notify_host"),
        ActionSpec(
            action="send_email", template="custom", subject="Hi", body="<p>Opportunity {{ opportunity.id }}</p>"
        ),
    ]
    planned = plan_dependencies("b:client_scheduled:1", actions)
    run = "b:client_scheduled:1"
    assert planned[2] == (Dependency(run, 0, "find_or_create_opportunity", HARD, ("opportunity_id",)),)
    assert planned[3] == (Dependency(run, 1, "create_m365_event", SOFT, ("join_url",)),)
    assert planned[4] == (
        Dependency(run, 0, "find_or_create_opportunity", SOFT, ("opportunity_id",)),
        Dependency(run, 1, "create_m365_event", SOFT, ("join_url",)),
    )
    # A later run's update waits for the event the first run created.
    [update] = plan_dependencies(
        "b:rescheduled:1",
        [ActionSpec(action="update_m365_event")],
        [(run, 0, "find_or_create_opportunity"), (run, 1, "create_m365_event")],
    )
    assert update == (Dependency(run, 1, "create_m365_event", HARD, ("event_id",)),)


async def test_a_step_due_later_counts_its_soft_grace_from_when_it_is_due(database: Database) -> None:
    """A reminder planned a day ahead whose email quotes what the reminder's first action makes: its grace starts
    when the reminder is due, so it is not released early (before this, it counted from the day before)."""
    planned = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    due = planned + timedelta(days=1)
    await add_tenant(database, "t-grace")
    run = "b-grace:before_appointment:1:1440m"
    specs = [
        JobSpec("t-grace", run, 0, "add_ticket_note", f"{run}:0", booking_id="b-grace", run_after=due, depends_on=()),
        JobSpec(
            "t-grace",
            run,
            1,
            "send_email",
            f"{run}:1",
            booking_id="b-grace",
            run_after=due,
            depends_on=(Dependency(run, 0, "add_ticket_note", SOFT, ("note_id",)),),
        ),
    ]
    await database.run_write(lambda conn: enqueue_jobs(conn, specs, now=planned))

    async def email_state(moment: datetime) -> str:
        await database.run_write(lambda conn: release_graced_jobs(conn, now=moment))
        async with database.read() as conn:
            return str(
                (
                    await conn.execute(
                        select(workflow_jobs.c.state).where(workflow_jobs.c.idempotency_key == f"{run}:1")
                    )
                ).scalar_one()
            )

    # Eleven minutes after planning, and a minute after it is due: the first action has not run, so it waits.
    assert await email_state(planned + timedelta(minutes=11)) == "waiting"
    assert await email_state(due + timedelta(minutes=1)) == "waiting"
    # Ten minutes after it was due, it goes without.
    assert await email_state(due + DEFAULT_SOFT_DEPENDENCY_GRACE) == "available"
