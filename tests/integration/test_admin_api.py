"""The admin REST API from an admin's side: see every step of a run, see why one failed, retry it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from app import apply_tenant_file
from storage.database import Database
from storage.repositories import SqlAgentKeys
from tests.conftest import FIXTURES, FixedClock, apply_file, make_settings, start_client
from tests.fakes.smtp import running_smtp_server
from tests.integration.test_booking_api import PAGE, booking_body
from tests.integration.test_fanout import tenant_file_with_email, wait_for

T = TypeVar("T")


async def eventually(fetch: Callable[[], Awaitable[T]], check: Callable[[T], Any], seconds: float = 15) -> Any:
    """Poll `fetch` until `check` of its result is truthy; returns that truthy value."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        outcome = check(await fetch())
        if outcome:
            return outcome
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the workflow runner did not get there in time")
        await asyncio.sleep(0.1)


async def test_a_failed_step_is_visible_with_its_error_and_can_be_retried(
    sqlite_database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_smtp_server() as smtp:
        monkeypatch.setenv("ACME_SMTP_PASSWORD", smtp.password)
        await apply_tenant_file(
            sqlite_database,
            make_settings(tmp_path),
            tenant_file_with_email(tmp_path, smtp, reminders=False),
            dry_run=False,
        )
        await apply_file(sqlite_database, FIXTURES / "other_tenant.yaml")
        keys = SqlAgentKeys(sqlite_database)
        admin = {"Authorization": f"Bearer {await keys.create_key('acme', 'ops', 'admin')}"}
        stranger = {"Authorization": f"Bearer {await keys.create_key('globex', 'ops', 'admin')}"}
        smtp.faults = ["550 5.7.1 Relaying denied"]
        client = await start_client(sqlite_database, tmp_path, clock, run_workflows=True)
        try:
            booked = await (
                await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))
            ).json()

            async def steps(headers: dict[str, str]) -> list[dict[str, object]]:
                response = await client.get("/api/v1/admin/steps", params={"booking_id": booked["id"]}, headers=headers)
                assert response.status == 200
                return list((await response.json())["steps"])

            failed = await eventually(
                lambda: steps(admin), lambda found: [step for step in found if step["state"] == "failed"]
            )
            assert failed, "the send_email step should have failed permanently"
            [step] = failed
            assert step["action"] == "send_email"
            assert "550" in str(step["last_error"])
            assert step["attempts"] == 1
            assert await steps(stranger) == []
            denied = await client.post(f"/api/v1/admin/steps/{step['id']}/retry", headers=stranger)
            assert denied.status == 400
            assert (await client.get("/api/v1/admin/steps")).status == 401
            retried = await client.post(f"/api/v1/admin/steps/{step['id']}/retry", headers=admin)
            assert retried.status == 202
            await wait_for(lambda: len(smtp.received) == 1)
            await eventually(lambda: steps(admin), lambda found: [step["state"] for step in found] == ["completed"])
            [done] = await steps(admin)
            assert done["state"] == "completed"
            assert str(done["external_ids"]["message_id"]).startswith("<")
        finally:
            await client.close()
