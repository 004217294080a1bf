"""GET /metrics: Prometheus text for a scraper holding the configured bearer token, and for no one else."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Connection

from app import apply_tenant_file
from storage.database import Database
from tests.conftest import FixedClock, make_settings, start_client
from tests.fakes.smtp import FakeSmtpServer, running_smtp_server
from tests.integration.test_booking_api import PAGE, booking_body
from tests.integration.test_fanout import tenant_file_with_email, wait_for
from workflows.metrics import SlotwiseMetrics

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    with running_smtp_server() as server:
        yield server


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels (the parser also proves the format)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_does_not_exist_without_a_configured_token(
    sqlite_database: Database, tmp_path: Path, clock: FixedClock
) -> None:
    client = await start_client(sqlite_database, tmp_path, clock)
    try:
        assert (await client.get("/metrics")).status == 404
        assert (await client.get("/metrics", headers={"Authorization": "Bearer anything"})).status == 404
    finally:
        await client.close()


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer ", f"bearer{TOKEN}"],
)
async def test_metrics_refuses_a_missing_or_wrong_token_with_401(
    authorization: str | None, sqlite_database: Database, tmp_path: Path, clock: FixedClock
) -> None:
    client = await start_client(sqlite_database, tmp_path, clock, metrics_token=TOKEN)
    try:
        headers = {"Authorization": authorization} if authorization is not None else {}
        response = await client.get("/metrics", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "slotwise_" not in await response.text()
    finally:
        await client.close()


async def test_metrics_show_jobs_lag_step_outcomes_and_route_latency_but_never_a_path_or_token(
    sqlite_database: Database, tmp_path: Path, clock: FixedClock, smtp: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_SMTP_PASSWORD", smtp.password)
    await apply_tenant_file(
        sqlite_database, make_settings(tmp_path), tenant_file_with_email(tmp_path, smtp, reminders=False), dry_run=False
    )
    client: TestClient = await start_client(sqlite_database, tmp_path, clock, run_workflows=True, metrics_token=TOKEN)
    try:
        booked = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))
        assert booked.status == 201
        manage_url = (await booked.json())["manage_url"]
        manage_token = manage_url.rsplit("/m/", 1)[1]
        assert (await client.get(manage_url.removeprefix("http://testserver"))).status == 200
        assert (await client.get("/no/such/page/secret-path-part")).status == 404
        await wait_for(lambda: len(smtp.received) == 1)
        authorized = {"Authorization": f"Bearer {TOKEN}"}
        # The outcome is counted once the runner has recorded it, a moment after the email went out.
        for _ in range(50):
            response = await client.get("/metrics", headers=authorized)
            text = await response.text()
            if 'result="completed"' in text:
                break
            await asyncio.sleep(0.1)
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        found = samples(text)

        assert found[("slotwise_workflow_jobs", (("state", "completed"),))] == 1
        assert found[("slotwise_workflow_jobs", (("state", "available"),))] == 0
        assert found[("slotwise_workflow_runner_lag_seconds", ())] == 0
        assert found[("slotwise_database_up", ())] == 1
        assert ("slotwise_workflow_runner_stalled_seconds", ()) in found
        outcome = (("kind", "send_email"), ("result", "completed"), ("vendor", "smtp"))
        assert found[("slotwise_workflow_step_outcomes_total", outcome)] == 1
        duration = (("kind", "send_email"), ("vendor", "smtp"))
        assert found[("slotwise_workflow_step_duration_seconds_count", duration)] == 1
        booking_route = (("method", "POST"), ("route", "/book/{tenant}/{type}/bookings"), ("status", "201"))
        assert found[("slotwise_http_request_duration_seconds_count", booking_route)] == 1
        manage_route = (("method", "GET"), ("route", "/m/{token}"), ("status", "200"))
        assert found[("slotwise_http_request_duration_seconds_count", manage_route)] == 1
        unmatched = (("method", "GET"), ("route", "<unmatched>"), ("status", "404"))
        assert found[("slotwise_http_request_duration_seconds_count", unmatched)] == 1

        assert manage_token not in text
        assert TOKEN not in text
        assert "/book/acme/intro-call" not in text
        assert "secret-path-part" not in text
        assert "acme" not in text
    finally:
        await client.close()


async def test_booking_changes_are_counted_by_event(sqlite_database: Database) -> None:
    metrics = SlotwiseMetrics(sqlite_database)
    seen: list[str] = []

    def hook(conn: Connection, trigger: str, *args: object) -> None:
        seen.append(trigger)

    counting = metrics.count_booking_changes(hook)
    for trigger in ("client_scheduled", "client_scheduled", "rescheduled", "cancelled"):
        counting(None, trigger, object())  # type: ignore[arg-type]
    found = samples((await metrics.render()).decode())
    assert seen == ["client_scheduled", "client_scheduled", "rescheduled", "cancelled"]
    assert found[("slotwise_bookings_total", (("event", "client_scheduled"),))] == 2
    assert found[("slotwise_bookings_total", (("event", "rescheduled"),))] == 1
    assert found[("slotwise_bookings_total", (("event", "cancelled"),))] == 1


async def test_metrics_of_two_apps_in_one_process_do_not_collide(sqlite_database: Database) -> None:
    first, second = SlotwiseMetrics(sqlite_database), SlotwiseMetrics(sqlite_database)
    first.bookings.labels(event="cancelled").inc()
    found = samples((await second.render()).decode())
    assert found[("slotwise_bookings_total", (("event", "cancelled"),))] == 0
