"""Every default email as a client's mail app shows it: rendered in Chromium at phone and desktop widths, for each
trigger and each host kind (one host, round robin, panel). No label without a value, no raw values (`teams`,
`America/New_York`), no "with Alice with Alice Adams", the join and manage links visible, nothing wider than a phone,
and a text part that keeps every link of the HTML part. Screenshots are kept under var/artifacts/emails/ (gitignored)
for a person to look at."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

from workflows.request_emails import REQUEST_TEMPLATES, request_variables
from workflows.templates import (
    DEFAULT_TEMPLATES,
    RESCHEDULE_REQUESTED_BODY,
    RESCHEDULE_REQUESTED_SUBJECT,
    compose_email,
    snapshot_variables,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "artifacts" / "emails"
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1024, "height": 900}}
JOIN = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0?context=%7b%7d"
MANAGE = "https://book.acme-it.example/m/gAAAAB-token"

TEMPLATES = {**DEFAULT_TEMPLATES, "reschedule_requested": (RESCHEDULE_REQUESTED_SUBJECT, RESCHEDULE_REQUESTED_BODY)}

HOST_KINDS: dict[str, dict[str, Any]] = {
    # A personal type whose name already says who it is with: the sentence must not name the host twice.
    "user": {
        "type_name": "Intro call with Alice",
        "location_kind": "teams",
        "location": "teams",
        "host_mode": "user",
        "hosts": [{"name": "Alice Adams", "email": "alice@acme-it.example"}],
        "outputs": {"join_url": JOIN, "ticket_number": "T20261124.0042"},
    },
    "round_robin": {
        "type_name": "Discovery call",
        "location_kind": "phone",
        "location": "We will call you on the number you gave",
        "host_mode": "round_robin",
        "hosts": [{"name": "Carol Chen", "email": "carol@acme-it.example"}],
        "outputs": {},
    },
    "panel": {
        "type_name": "Account review",
        "location_kind": "onsite",
        "location": "Your office",
        "host_mode": "panel",
        "hosts": [
            {"name": "Alice Adams", "email": "alice@acme-it.example"},
            {"name": "Bob Brown", "email": "bob@acme-it.example"},
            {"name": "Carol Chen", "email": "carol@acme-it.example"},
        ],
        "outputs": {"ticket_number": "4711"},
    },
}


def snapshot(kind: str, trigger: str) -> dict[str, Any]:
    """A booking snapshot as workflows/dispatch.py freezes it."""
    case = HOST_KINDS[kind]
    return {
        "id": "b-1",
        "tenant_name": "Acme Managed IT",
        "branding": {"display_name": "Acme IT", "accent_color": "#0f766e"} if kind == "panel" else {},
        "type_name": case["type_name"],
        "starts_at": "2026-11-24T15:00:00+00:00",
        "ends_at": "2026-11-24T15:30:00+00:00",
        "previous_starts_at": "2026-11-23T16:00:00+00:00" if trigger == "rescheduled" else None,
        "status": "cancelled" if trigger == "cancelled" else "confirmed",
        "cancel_reason": "The server migration moved" if trigger == "cancelled" and kind != "user" else "",
        "sequence": 0,
        "location_kind": case["location_kind"],
        "location": case["location"],
        "host_mode": case["host_mode"],
        "hosts": case["hosts"],
        "questions": [{"key": "company", "label": "Company name"}],
        "client": {
            "name": "Dana Client",
            "email": "dana@client.example",
            "time_zone": "America/New_York",
            "answers": {"company": "Client Co"},
            "guests": [],
            "notes": "",
        },
        "manage_url": MANAGE,
    }


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def links_of(markup: str) -> list[str]:
    parser = _Links()
    parser.feed(markup)
    return parser.hrefs


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail("Debian chromium is not installed; scripts/test installs it with apt-get")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        yield launched
        await launched.close()


EMPTY_LABELS = """() => Array.from(document.querySelectorAll('td.label'))
    .filter(cell => !cell.nextElementSibling || !cell.nextElementSibling.innerText.trim())
    .map(cell => cell.innerText)"""


@pytest.mark.parametrize("trigger", list(TEMPLATES))
async def test_every_default_email_reads_well_in_a_browser_and_its_text_keeps_every_link(
    browser: Browser, trigger: str
) -> None:
    for kind in HOST_KINDS:
        await check_email(browser, trigger, kind)


async def check_email(browser: Browser, trigger: str, kind: str) -> None:
    booking = snapshot(kind, trigger)
    subject, body = TEMPLATES[trigger]
    email = compose_email(subject, body, snapshot_variables(booking, HOST_KINDS[kind]["outputs"]))

    hrefs = links_of(email.html)
    for href in hrefs:
        assert href in email.text, (href, email.text)
    assert "<style" in email.html, "the phone layout's media query stays"
    assert 'style="' in email.html, "rules are inlined for clients that drop <style>"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for viewport, size in VIEWPORTS.items():
        context = await browser.new_context(viewport=size, java_script_enabled=True)
        page = await context.new_page()
        # No network: an email must not depend on anything but itself (a tenant logo is the only remote part).
        await page.route("**/*", lambda route: route.abort())
        await page.set_content(email.html, wait_until="load")
        visible = await page.inner_text("body")
        assert await page.evaluate(EMPTY_LABELS) == []
        assert not re.search(r"(?m)^\s*[A-Z][\w ]{0,20}[:#]\s*$", visible), visible
        assert "America/New_York" not in visible
        assert not re.search(r"(?<![/.\w])teams(?![.\w])", visible), visible
        assert not re.search(r"with [^.\n]*\bwith\b", visible), visible
        if trigger in ("client_scheduled", "rescheduled", "before_appointment", "reschedule_requested"):
            assert await page.locator(f'a[href="{MANAGE}"]').first.is_visible()
        else:
            assert await page.locator(f'a[href="{MANAGE}"]').count() == 0, "a cancelled booking cannot be managed"
        if "join_url" in HOST_KINDS[kind]["outputs"] and trigger not in ("cancelled", "reschedule_requested"):
            assert await page.locator(f'a[href="{JOIN}"]').first.is_visible()
            assert "Microsoft Teams meeting" in visible
        if trigger != "reschedule_requested":
            assert "Eastern Time (New York), UTC\u221205:00" in visible
        width = await page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= size["width"], f"{viewport}: the email is {width}px wide"
        await page.screenshot(path=str(ARTIFACTS / f"{trigger}-{kind}-{viewport}.png"), full_page=True)
        await context.close()


BOOK = "https://book.acme-it.example/r/gAAAAB-request"


@pytest.mark.parametrize("trigger", ["request_sent", "no_response"])
async def test_scheduling_request_emails_get_the_same_layout_and_keep_their_link(
    browser: Browser, trigger: str
) -> None:
    request = {
        "id": "r-1",
        "tenant_name": "Acme Managed IT",
        "type_name": "Onboarding call",
        "duration_minutes": 45,
        "time_zone": "America/New_York",
        "window_starts_at": "2026-11-23T00:00:00+00:00",
        "window_ends_at": "2026-11-27T00:00:00+00:00",
        "expires_at": "2026-11-27T00:00:00+00:00",
        "client": {"name": "Dana Client", "email": "dana@client.example", "guests": []},
        "ticket": {"id": "1001", "number": "T20261120.0007"},
        "book_url": BOOK,
        "follow_up": 1,
    }
    subject, body = REQUEST_TEMPLATES[trigger]
    email = compose_email(subject, body, request_variables(request, {}))
    for href in links_of(email.html):
        assert href in email.text, (href, email.text)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for viewport, size in VIEWPORTS.items():
        context = await browser.new_context(viewport=size)
        page = await context.new_page()
        await page.route("**/*", lambda route: route.abort())
        await page.set_content(email.html, wait_until="load")
        assert await page.locator(f'a.button[href="{BOOK}"]').first.is_visible()
        assert "America/New_York" not in await page.inner_text("body")
        width = await page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= size["width"], f"{viewport}: the email is {width}px wide"
        await page.screenshot(path=str(ARTIFACTS / f"{trigger}-{viewport}.png"), full_page=True)
        await context.close()
