"""Bookings fan out through the outbox: jobs commit with the booking, the runner sends real email over SMTP,
and connections are tested and encrypted when a tenant file is applied."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from admin.tenant_file import RolloutError
from app import apply_tenant_file
from storage.database import Database
from storage.tables import bookings, integration_connections, tenants, workflow_jobs
from tests.conftest import FIXTURES, FixedClock, make_settings, start_client
from tests.fakes.smtp import FakeSmtpServer, running_smtp_server
from tests.integration.test_booking_api import PAGE, booking_body


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    with running_smtp_server() as server:
        yield server


def tenant_file_with_email(
    tmp_path: Path, smtp: FakeSmtpServer, *, variable: str = "ACME_SMTP_PASSWORD", reminders: bool = True
) -> Path:
    text = (FIXTURES / "tenant.yaml").read_text()
    if not reminders:
        text = text.replace('  holidays: ["2026-11-26"]\n', '  holidays: ["2026-11-26"]\n  reminders: false\n')
    text += (
        "integrations:\n"
        "  email:\n"
        "    vendor: smtp\n"
        "    host: 127.0.0.1\n"
        f"    port: {smtp.port}\n"
        "    start_tls: false\n"
        f"    username: {smtp.username}\n"
        "    from_address: bookings@acme-it.example\n"
        "    from_name: Acme IT\n"
        f"    secrets_from_env: {{password: {variable}}}\n"
    )
    path = tmp_path / "tenant-with-email.yaml"
    path.write_text(text)
    return path


async def wait_for(condition: object, seconds: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("timed out waiting for the workflow runner")
        await asyncio.sleep(0.1)


async def test_a_booking_sends_a_confirmation_and_moves_and_cancellations_follow(
    sqlite_database: Database, tmp_path: Path, clock: FixedClock, smtp: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_SMTP_PASSWORD", smtp.password)
    settings = make_settings(tmp_path)
    # No reminders: the app's runner keeps real time while bookings follow the test clock, so a reminder would be due
    # at once and interleave with the emails counted here (tests/integration/test_reminders.py covers reminders).
    path = tenant_file_with_email(tmp_path, smtp, reminders=False)
    await apply_tenant_file(sqlite_database, settings, path, dry_run=False)
    client: TestClient = await start_client(sqlite_database, tmp_path, clock, run_workflows=True)
    try:
        booked = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))
        assert booked.status == 201
        body = await booked.json()
        async with sqlite_database.read() as conn:
            steps = (
                (await conn.execute(select(workflow_jobs.c.kind).where(workflow_jobs.c.booking_id == body["id"])))
                .scalars()
                .all()
            )
        assert steps == ["send_email"]
        await wait_for(lambda: len(smtp.received) == 1)
        confirmation = smtp.received[0].message
        assert confirmation["Subject"] == "Confirmed: Intro call on Tuesday 24 November 2026, 15:00"
        html = confirmation.get_body(preferencelist=("html",))
        assert html is not None
        # Each link is freshly encrypted, so the email's differs from the API's; it must open the same booking.
        emailed = re.search(r'href="http://testserver(/m/[^"]+)"', html.get_content())
        assert emailed is not None
        page = await client.get(emailed.group(1))
        assert page.status == 200
        assert "Dana Client" in await page.text()

        manage = body["manage_url"].removeprefix("http://testserver")
        assert (await client.post(f"{manage}/reschedule", json={"start": "2026-11-25T16:00:00+00:00"})).status == 200
        await wait_for(lambda: len(smtp.received) == 2)
        moved = smtp.received[1].message
        assert moved["Subject"] == "Rescheduled: Intro call on Wednesday 25 November 2026, 16:00"
        moved_text = moved.get_body(preferencelist=("plain",))
        assert moved_text is not None
        assert "It was Tuesday 24 November 2026, 15:00." in " ".join(moved_text.get_content().split())
        assert (await client.post(f"{manage}/cancel", json={"reason": "No longer needed"})).status == 200
        await wait_for(lambda: len(smtp.received) == 3)
        cancelled = smtp.received[2].message
        assert cancelled["Subject"] == "Cancelled: Intro call on Wednesday 25 November 2026, 16:00"
        cancelled_text = cancelled.get_body(preferencelist=("plain",))
        assert cancelled_text is not None
        assert "Reason: No longer needed" in cancelled_text.get_content()
        assert "Reschedule or cancel" not in cancelled_text.get_content()
        methods = [
            part.get_params()
            for mail in smtp.received
            for part in mail.message.iter_attachments()
            if part.get_content_type() == "text/calendar"
        ]
        assert [dict(params).get("method") for params in methods] == ["REQUEST", "REQUEST", "CANCEL"]
    finally:
        await client.close()


async def test_a_failed_connection_test_applies_nothing(
    sqlite_database: Database, tmp_path: Path, smtp: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_SMTP_PASSWORD", "not-the-password")
    with pytest.raises(RolloutError, match=r"integrations\.email: the smtp connection test failed"):
        await apply_tenant_file(
            sqlite_database, make_settings(tmp_path), tenant_file_with_email(tmp_path, smtp), dry_run=False
        )
    async with sqlite_database.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(tenants))).scalar_one() == 0


async def test_a_missing_secret_variable_is_named(
    sqlite_database: Database, tmp_path: Path, smtp: FakeSmtpServer
) -> None:
    path = tenant_file_with_email(tmp_path, smtp, variable="SLOTWISE_TEST_UNSET_VARIABLE")
    with pytest.raises(RolloutError, match="environment variable SLOTWISE_TEST_UNSET_VARIABLE is not set"):
        await apply_tenant_file(sqlite_database, make_settings(tmp_path), path, dry_run=True)


async def test_secrets_are_encrypted_at_rest_and_a_reapply_keeps_the_connection(
    sqlite_database: Database, tmp_path: Path, smtp: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_SMTP_PASSWORD", smtp.password)
    settings = make_settings(tmp_path)
    path = tenant_file_with_email(tmp_path, smtp)
    first = await apply_tenant_file(sqlite_database, settings, path, dry_run=False)
    assert "+ integration email (smtp)" in first
    async with sqlite_database.read() as conn:
        token = (await conn.execute(select(integration_connections.c.secrets_token))).scalar_one()
    assert smtp.password not in token
    assert await apply_tenant_file(sqlite_database, settings, path, dry_run=False) == "No changes."
    monkeypatch.setenv("ACME_SMTP_PASSWORD", smtp.password + "-rotated")
    smtp.password += "-rotated"
    assert "~ integration email (smtp): secrets changed" in await apply_tenant_file(
        sqlite_database, settings, path, dry_run=True
    )


async def test_the_booking_and_its_jobs_commit_together_or_not_at_all(client: TestClient, tenant_db: Database) -> None:
    """A refused booking leaves neither a booking nor a job behind (the jobs ride in the booking's transaction)."""
    first = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))
    taken = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))
    assert (first.status, taken.status) == (201, 409)
    async with tenant_db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(bookings))).scalar_one() == 1
        orphans = await conn.execute(
            select(func.count())
            .select_from(workflow_jobs)
            .where(workflow_jobs.c.booking_id.not_in(select(bookings.c.id)))
        )
        assert orphans.scalar_one() == 0
