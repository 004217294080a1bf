"""axe-core, run inside Chromium, finds no critical or serious violation on any page a client can reach: the booking
page (with and without a chosen time), the personal and team listings, a scheduling-request page, the manage page,
the confirmation, privacy and terms, and every error page (not found, expired link, session expired, rate limited),
each at phone and desktop sizes, in English (en-US) and in German (de-DE).

axe-core is the npm package pinned in package.json, injected by Playwright (the page's own CSP allows only our
scripts, so the context bypasses CSP for the injection; nothing else on the page changes)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from app import Overrides
from pages.ratelimit import InMemoryRateLimiter
from storage.database import Database
from storage.repositories import SqlAgentKeys
from tests.conftest import FIXTURES, FixedClock, apply_file, start_client
from tests.e2e.test_booking_in_a_browser import base_of, browser
from tests.integration.test_pages_branding import branded_file

__all__ = ["browser"]

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "artifacts" / "pages"
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
DAY = "2026-11-24"
START = "2026-11-24T15:00:00%2B00:00"


async def serious_violations(page: Page) -> list[dict[str, Any]]:
    """Run axe-core on the loaded page; answer the critical and serious violations with the offending nodes."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run 'npm ci' (scripts/bootstrap does)")
    await page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ['violations']});
            return result.violations
                .filter(v => v.impact === 'critical' || v.impact === 'serious')
                .map(v => ({id: v.id, impact: v.impact, help: v.help,
                            nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' :: ' + n.failureSummary)}));
        }"""
    )
    return found


async def check(
    page: Page, name: str, viewport: str, expected_status: int, response_status: int | None, problems: list[str]
) -> None:
    """Note (rather than stop at) each page's problems, so one run shows them all."""
    if response_status != expected_status:
        problems.append(f"{name}: status {response_status}, expected {expected_status}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"axe-{name}-{viewport}.png"), full_page=True)
    for violation in await serious_violations(page):
        problems.append(f"{name} at {viewport}: {violation}")


LABELS = {
    "en-US": {"name": "Your name", "email": "Email"},
    "de-DE": {"name": "Ihr Name", "email": "E-Mail"},
}


@pytest.mark.parametrize("locale", ["en-US", "de-DE"])
@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_every_page_type_has_no_serious_accessibility_violation(
    browser: Browser, sqlite_database: Database, tmp_path: Path, clock: FixedClock, viewport: str, locale: str
) -> None:
    await apply_file(sqlite_database, FIXTURES / "tenant.yaml")
    client = await start_client(sqlite_database, tmp_path, clock)
    base = base_of(client)
    context = await browser.new_context(
        viewport=VIEWPORTS[viewport], timezone_id="America/New_York", locale=locale, bypass_csp=True
    )
    labels = LABELS[locale]
    viewport = f"{viewport}-{locale}" if locale != "en-US" else viewport
    problems: list[str] = []
    try:
        page = await context.new_page()

        async def visit(name: str, path: str, status: int = 200) -> None:
            response = await page.goto(base + path)
            await check(page, name, viewport, status, response.status if response else None, problems)

        await visit("booking", "/book/acme/intro-call?tz=America/New_York")
        await visit("booking-round-robin", "/book/acme/demo?tz=America/New_York")
        await visit("booking-details", f"/book/acme/intro-call?tz=America/New_York&date={DAY}&start={START}")
        await visit("booking-far-empty", "/book/acme/intro-call?tz=America/New_York&date=2027-06-01")
        await visit("personal", "/u/acme/alice")
        await visit("team", "/t/acme/sales")
        await visit("privacy", "/privacy")
        await visit("terms", "/terms")
        await visit("not-found", "/book/acme/no-such-type", 404)
        await visit("zones", "/zones?back=/book/acme/intro-call&q=america")

        key = await SqlAgentKeys(sqlite_database).create_key("acme", "desk")
        made = await client.post(
            "/api/v1/scheduling-requests",
            json={"appointment_type": "demo", "ticket": "T-42"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert made.status == 201
        request_url = (await made.json())["url"].removeprefix("http://testserver")
        await visit("request", request_url)

        # Book through the page, as a client does: the answer is the confirmation.
        await page.goto(f"{base}/book/acme/intro-call?tz=America/New_York&date={DAY}&start={START}")
        await page.get_by_label(labels["name"]).fill("Dana Client")
        await page.get_by_label(labels["email"], exact=True).fill("dana@client.test")
        await page.get_by_label("Company name").fill("Client Co")
        async with page.expect_navigation() as navigation:
            await page.locator("form.details button[type=submit]").click()
        confirmed = await navigation.value
        await check(page, "confirmation", viewport, 200, confirmed.status if confirmed else None, problems)
        manage_path = page.url.removeprefix(base).split("?")[0]
        await visit("manage", manage_path)
        await visit("reschedule", f"{manage_path}?action=reschedule&tz=America/New_York")
        await visit("cancel", f"{manage_path}?action=cancel&tz=America/New_York")

        # A field error shown at its field.
        await page.goto(f"{base}/book/acme/intro-call?tz=America/New_York&date={DAY}&start=2026-11-24T17:00:00%2B00:00")
        await page.get_by_label(labels["name"]).fill("Dana Client")
        await page.get_by_label(labels["email"], exact=True).fill("dana@client.test")
        await page.get_by_label("Company name").fill("   ")
        async with page.expect_navigation() as navigation:
            await page.locator("form.details button[type=submit]").click()
        invalid = await navigation.value
        await check(page, "field-error", viewport, 400, invalid.status if invalid else None, problems)

        # The session cookie is gone (as after a browser restart): the form post is refused with a page.
        await page.goto(f"{base}/book/acme/intro-call?tz=America/New_York&date={DAY}&start=2026-11-24T16:00:00%2B00:00")
        await context.clear_cookies()
        await page.get_by_label(labels["name"]).fill("Dana Client")
        await page.get_by_label(labels["email"], exact=True).fill("dana@client.test")
        await page.get_by_label("Company name").fill("Client Co")
        async with page.expect_navigation() as navigation:
            await page.locator("form.details button[type=submit]").click()
        refused = await navigation.value
        await check(page, "csrf", viewport, 403, refused.status if refused else None, problems)

        clock.moment = datetime(2026, 11, 24, 15, 31, tzinfo=UTC)
        await visit("expired", manage_path, 410)
    finally:
        await context.close()
        await client.close()
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_the_rate_limited_page_has_no_serious_accessibility_violation(
    browser: Browser, sqlite_database: Database, tmp_path: Path, clock: FixedClock, viewport: str
) -> None:
    await apply_file(sqlite_database, FIXTURES / "tenant.yaml")
    client = await start_client(
        sqlite_database, tmp_path, clock, overrides=Overrides(ip_limiter=InMemoryRateLimiter(0))
    )
    context = await browser.new_context(
        viewport=VIEWPORTS[viewport], timezone_id="America/New_York", locale="en-US", bypass_csp=True
    )
    problems: list[str] = []
    try:
        page = await context.new_page()
        await page.goto(
            f"{base_of(client)}/book/acme/intro-call?tz=America/New_York&date={DAY}&start=2026-11-24T16:00:00%2B00:00"
        )
        await page.get_by_label("Your name").fill("Dana Client")
        await page.get_by_label("Email", exact=True).fill("dana@client.test")
        await page.get_by_label("Company name").fill("Client Co")
        async with page.expect_navigation() as navigation:
            await page.locator("form.details button[type=submit]").click()
        refused = await navigation.value
        await check(page, "rate-limited", viewport, 429, refused.status if refused else None, problems)
    finally:
        await context.close()
        await client.close()
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_a_branded_page_with_a_light_accent_colour_stays_readable(
    browser: Browser, sqlite_database: Database, tmp_path: Path, clock: FixedClock, viewport: str
) -> None:
    await apply_file(sqlite_database, branded_file(tmp_path))
    client = await start_client(sqlite_database, tmp_path, clock)
    context = await browser.new_context(
        viewport=VIEWPORTS[viewport], timezone_id="America/New_York", locale="en-US", bypass_csp=True
    )
    problems: list[str] = []
    try:
        page = await context.new_page()
        # The logo's host is not reachable from a test; the page must not depend on it.
        await page.route("https://cdn.acme.example/**", lambda route: route.abort())
        response = await page.goto(f"{base_of(client)}/book/acme/intro-call?date={DAY}&start={START}")
        await check(page, "branded", viewport, 200, response.status if response else None, problems)
    finally:
        await context.close()
        await client.close()
    assert problems == [], "\n".join(problems)
