"""The host's booking page ("Open booking" on their Teams card) in Chromium: no critical or serious axe-core
violation at phone and desktop sizes, with a done and a failed step on it; screenshots kept for a person to judge."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser

from storage.database import Database
from tests.e2e.test_booking_in_a_browser import base_of, browser
from tests.e2e.test_pages_accessibility import ARTIFACTS, VIEWPORTS, serious_violations
from tests.integration.test_host_booking_page import book, client, connectwise, host_path, states

__all__ = ["browser", "client", "connectwise"]

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_the_host_page_is_accessible_and_readable(
    browser: Browser, client: TestClient, database: Database, viewport: str
) -> None:
    done = await book(client, "2026-11-24T15:00:00+00:00", "Dana Client", "+1 555 0100")
    failed = await book(client, "2026-11-24T16:00:00+00:00", "Lee Client", "+1 555 0101", kind="remote")
    for booking in (done, failed):
        for _ in range(300):
            found = await states(database, booking["id"])
            if found and not {"waiting", "available", "running", "retryable"} & set(found.values()):
                break
            await asyncio.sleep(0.1)
    context = await browser.new_context(viewport=VIEWPORTS[viewport], bypass_csp=True)
    page = await context.new_page()
    problems: list[str] = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, booking in (("host-page", done), ("host-page-failed", failed)):
        response = await page.goto(base_of(client) + await host_path(database, booking["id"]))
        assert response is not None
        assert response.status == 200
        await page.screenshot(path=str(ARTIFACTS / f"{name}-{viewport}.png"), full_page=True)
        problems.extend(f"{name}: {violation}" for violation in await serious_violations(page))
    await context.close()
    assert problems == []
