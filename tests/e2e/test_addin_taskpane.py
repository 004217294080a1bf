"""The Outlook task pane in a real browser (Debian chromium via Playwright) against a recording Office.js stand-in
(tests/fakes/office_js/): sign in, list the rep's types, insert a link into an HTML body and into a text body, and
say clearly what is wrong when the API is down or the token is refused."""

from __future__ import annotations

import functools
import json
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright, expect
from sqlalchemy import func, select

from app import Overrides, apply_tenant_file, create_app
from storage.database import Database
from storage.tables import bookings, scheduling_requests
from tests.conftest import FIXTURES, FixedClock, apply_file, make_settings, start_client
from tests.fakes.bot_identity import FakeBotIdentity, SigningKey, generate_rsa_key, mint
from tests.fakes.connectwise import FakeConnectWiseServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.browser

STAND_INS = Path(__file__).resolve().parents[1] / "fakes" / "office_js"
SHOTS = Path(__file__).resolve().parents[2] / "var" / "artifacts" / "addin"
INSTALLED_MSAL = Path(__file__).resolve().parents[2] / "node_modules/@azure/msal-browser/lib/msal-browser.min.js"
OFFICE_JS_URL = "https://office-js.test/lib/1/hosted/office.js"
API_CLIENT_ID = "6f1d2c3b-4a59-4e68-8d7c-0b1a2f3e4d5c"
CONTOSO = "72f988bf-86f1-41af-91ab-2d7cd011db47"
DANA = "11111111-aaaa-4aaa-8aaa-000000000001"
BASE_URL = "https://slotwise.test"
SCOPE = f"api://slotwise.test/{API_CLIENT_ID}/access_as_user"
DISCOVERY_HTML = (
    "<table><tbody><tr><td><b>Discovery call</b> (30 minutes, Microsoft Teams meeting)</td></tr>"
    '<tr><td><a href="https://slotwise.test/book/contoso/discovery" id="LPNoLP">Book a time with Dana Diaz</a>'
    "</td></tr></tbody></table>"
)


@functools.cache
def signing_key() -> rsa.RSAPrivateKey:
    return generate_rsa_key()


def token_for(key: SigningKey, *, now: float | None = None, **extra: Any) -> str:
    moment = int(time.time() if now is None else now)
    claims = {
        "aud": API_CLIENT_ID,
        "iss": f"https://login.microsoftonline.com/{CONTOSO}/v2.0",
        "iat": moment - 5,
        "nbf": moment - 5,
        "exp": moment + 3600,
        "tid": CONTOSO,
        "oid": DANA,
        "scp": "access_as_user",
        "ver": "2.0",
        **extra,
    }
    return mint(key, claims)


@dataclass
class Pane:
    client: TestClient
    key: SigningKey
    office_js_requests: list[str]

    @property
    def base(self) -> str:
        return str(self.client.make_url("")).rstrip("/")


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


@pytest.fixture
async def pane(sqlite_database: Database, tmp_path: Path, clock: FixedClock) -> AsyncIterator[Pane]:
    await apply_file(sqlite_database, FIXTURES / "teams_tenant.yaml")
    identity = FakeBotIdentity()
    key = identity.add_tenant_key("common", "pane-key", private_key=signing_key())
    keys = TestServer(identity.build_app())
    await keys.start_server()
    client = await start_client(
        sqlite_database,
        tmp_path,
        clock,
        base_url=BASE_URL,
        addin_client_id=API_CLIENT_ID,
        addin_openid_metadata_url=str(keys.make_url("/common/v2.0/.well-known/openid-configuration")),
        office_js_url=OFFICE_JS_URL,
        msal_browser_script=tmp_path / "not-installed" / "msal-browser.min.js",
    )
    yield Pane(client, key, [])
    await client.close()
    await keys.close()


async def open_pane(
    browser: Browser,
    pane: Pane,
    *,
    office: dict[str, Any] | None = None,
    token: str | None = None,
    msal_stand_in: bool = True,
) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport={"width": 360, "height": 700})
    await context.add_init_script(
        f"window.__officeStandIn = {json.dumps(office or {})};"
        f"window.__msalStandIn = {json.dumps({'token': token if token is not None else token_for(pane.key)})};"
    )

    async def office_js(route: Route) -> None:
        pane.office_js_requests.append(route.request.url)
        await route.fulfill(path=STAND_INS / "office.js", content_type="text/javascript")

    await context.route(OFFICE_JS_URL, office_js)
    if msal_stand_in:

        async def msal(route: Route) -> None:
            await route.fulfill(path=STAND_INS / "msal.js", content_type="text/javascript")

        await context.route("**/addin/vendor/msal-browser.min.js", msal)
    page = await context.new_page()
    await page.goto(f"{pane.base}/addin/taskpane.html")
    return context, page


async def recording(page: Page) -> dict[str, Any]:
    value: dict[str, Any] = await page.evaluate("window.__officeRecording")
    return value


async def test_a_rep_inserts_a_link_into_an_html_body(browser: Browser, pane: Pane) -> None:
    context, page = await open_pane(browser, pane, office={"bodyType": "html", "body": "<p>Hi Jane,</p>"})
    await expect(page.get_by_role("status")).to_have_text("Choose a link to insert at the cursor.")
    await expect(page.get_by_role("listitem")).to_have_count(2)
    await expect(page.get_by_role("listitem").nth(1)).to_contain_text("Onsite audit60 minutes, On site: Your office")

    await page.get_by_role("button", name="Insert link to Discovery call").click()

    await expect(page.get_by_role("status")).to_have_text("Inserted the link to Discovery call.")
    office = await recording(page)
    assert office["body"] == DISCOVERY_HTML + "<p>Hi Jane,</p>"  # no cursor yet: Outlook inserts at the top
    methods = [call["method"] for call in office["calls"] if call["method"].startswith("body.")]
    assert methods == ["body.getTypeAsync", "body.setSelectedDataAsync"]
    assert office["calls"][-1]["coercionType"] == "html"
    msal = await page.evaluate("window.__msalRecording")
    assert msal["configurations"][0]["auth"]["clientId"] == API_CLIENT_ID
    assert msal["calls"][0] == {"method": "acquireTokenSilent", "scopes": [SCOPE]}
    assert pane.office_js_requests == [OFFICE_JS_URL]
    await expect(page.get_by_role("alert")).to_be_hidden()
    await context.close()


async def test_a_rep_inserts_a_link_into_a_text_body_at_the_cursor(browser: Browser, pane: Pane) -> None:
    body = "Hi Jane,\n\nThanks, Dana"
    context, page = await open_pane(browser, pane, office={"bodyType": "text", "body": body, "cursor": 10})
    await page.get_by_role("button", name="Insert link to Onsite audit").click()
    await expect(page.get_by_role("status")).to_have_text("Inserted the link to Onsite audit.")
    office = await recording(page)
    assert office["body"] == (
        "Hi Jane,\n\nOnsite audit (60 minutes, On site: Your office)\n"
        "Book a time with Dana Diaz: https://slotwise.test/book/contoso/onsite-audit\nThanks, Dana"
    )
    assert office["calls"][-1]["coercionType"] == "text"
    await context.close()


async def test_the_pane_says_so_when_the_api_cannot_be_reached(browser: Browser, pane: Pane) -> None:
    context, page = await open_pane(browser, pane)
    await page.route("**/addin/api/**", lambda route: route.abort("connectionrefused"))
    await page.reload()
    await expect(page.get_by_role("alert")).to_have_text(
        "Slotwise can't be reached right now. Check your connection and try again in a minute."
    )
    await expect(page.get_by_role("list")).to_be_hidden()
    await context.close()


async def test_the_pane_says_so_when_inserting_fails_because_the_api_went_down(browser: Browser, pane: Pane) -> None:
    context, page = await open_pane(browser, pane)
    await expect(page.get_by_role("listitem")).to_have_count(2)
    await page.route("**/addin/api/link", lambda route: route.fulfill(status=502, body="Bad gateway"))
    await page.get_by_role("button", name="Insert link to Discovery call").click()
    await expect(page.get_by_role("alert")).to_have_text(
        "Slotwise is not answering properly right now (HTTP 502). Try again in a minute."
    )
    assert (await recording(page))["body"] == ""
    await context.close()


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"now": time.time() - 7200}, "the token has expired"),
        ({"aud": "00000003-0000-0000-c000-000000000000"}, "the token is not for the Slotwise add-in API"),
        ({"scp": "User.Read"}, "the token does not grant the access_as_user scope"),
    ],
)
async def test_the_pane_says_why_the_token_was_refused(
    browser: Browser, pane: Pane, claims: dict[str, Any], reason: str
) -> None:
    context, page = await open_pane(browser, pane, token=token_for(pane.key, **claims))
    await expect(page.get_by_role("alert")).to_contain_text(f"Slotwise refused your sign-in: {reason}")
    await context.close()


async def test_without_nested_app_auth_the_office_dialog_signs_the_rep_in(browser: Browser, pane: Pane) -> None:
    message = json.dumps({"token": token_for(pane.key)})
    context, page = await open_pane(browser, pane, office={"nestedAppAuth": False, "dialogMessage": message})
    await expect(page.get_by_role("listitem")).to_have_count(2)
    office = await recording(page)
    assert [dialog["url"] for dialog in office["dialogs"]] == [f"{pane.base}/addin/auth-dialog.html"]
    assert office["dialogs"][0]["closed"] is True
    assert await page.evaluate("window.__msalRecording.calls.length") == 0
    await context.close()


async def test_a_dialog_that_comes_back_without_a_token_is_explained(browser: Browser, pane: Pane) -> None:
    message = json.dumps({"error": "AADSTS50105: the user is not assigned to the application"})
    context, page = await open_pane(browser, pane, office={"nestedAppAuth": False, "dialogMessage": message})
    await expect(page.get_by_role("alert")).to_have_text(
        "Sign-in did not finish: AADSTS50105: the user is not assigned to the application."
    )
    await context.close()


async def test_a_missing_msal_library_is_reported_not_hidden(browser: Browser, pane: Pane) -> None:
    context, page = await open_pane(browser, pane, msal_stand_in=False)
    await expect(page.get_by_role("alert")).to_have_text(
        "The sign-in library (MSAL.js) is missing on this Slotwise server. Ask your Slotwise admin to run "
        "scripts/bootstrap."
    )
    await context.close()


async def test_the_real_msal_library_is_served_from_our_origin(
    browser: Browser, sqlite_database: Database, tmp_path: Path, clock: FixedClock
) -> None:
    installed = INSTALLED_MSAL
    if not installed.is_file():
        pytest.fail("node_modules/@azure/msal-browser is missing: run scripts/bootstrap")
    client = await start_client(sqlite_database, tmp_path, clock, msal_browser_script=installed)
    try:
        response = await client.get("/addin/vendor/msal-browser.min.js")
        assert response.status == 200
        assert response.content_type == "text/javascript"
        context = await browser.new_context()
        page = await context.new_page()
        outside: list[str] = []
        page.on("request", lambda request: outside.append(request.url) if "127.0.0.1" not in request.url else None)
        await page.goto(str(client.make_url("/addin/static/taskpane.css")))
        await page.add_script_tag(url=str(client.make_url("/addin/vendor/msal-browser.min.js")))
        kind = await page.evaluate("typeof window.msal.createNestablePublicClientApplication")
        assert kind == "function"
        assert outside == []
        await context.close()
    finally:
        await client.close()


@pytest.fixture
async def live_pane(sqlite_database: Database, tmp_path: Path, clock: FixedClock) -> AsyncIterator[Pane]:
    """Like `pane`, but Slotwise's base URL is the address it really listens on, so links in the email work."""
    await apply_file(sqlite_database, FIXTURES / "teams_tenant.yaml")
    identity = FakeBotIdentity()
    key = identity.add_tenant_key("common", "pane-key", private_key=signing_key())
    keys = TestServer(identity.build_app())
    await keys.start_server()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(
        tmp_path,
        base_url=f"http://127.0.0.1:{port}",
        addin_client_id=API_CLIENT_ID,
        addin_app_id_uri=f"api://slotwise.test/{API_CLIENT_ID}",
        addin_openid_metadata_url=str(keys.make_url("/common/v2.0/.well-known/openid-configuration")),
        office_js_url=OFFICE_JS_URL,
    )
    client = TestClient(
        TestServer(create_app(settings, overrides=Overrides(clock=clock, database=sqlite_database)), port=port)
    )
    await client.start_server()
    yield Pane(client, key, [])
    await client.close()
    await keys.close()


async def test_a_rep_picks_suggested_times_and_the_client_books_once_from_the_email(
    browser: Browser, live_pane: Pane, sqlite_database: Database
) -> None:
    office = {
        "bodyType": "html",
        "to": [{"displayName": "Jane <b>Client</b>", "emailAddress": "jane@client.test"}],
        "timeZone": "GMT Standard Time",
    }
    context, page = await open_pane(browser, live_pane, office=office)
    await page.get_by_role("button", name="Suggest times for Discovery call").click()
    # No earlier booking by Jane: the rep's Outlook zone, mapped from its Windows name.
    zone = page.get_by_label("Recipient's time zone (for suggested times)")
    await expect(zone).to_have_value("Europe/London")
    await expect(page.get_by_text("Your time zone: no earlier booking by jane@client.test.")).to_be_visible()
    await expect(page.get_by_role("heading", name="Free times for Discovery call (Europe/London)")).to_be_visible()
    boxes = page.get_by_role("group", name="Pick up to 5 times to suggest").get_by_role("checkbox")
    assert await boxes.count() > 6
    labels = [(await boxes.nth(index).evaluate("box => box.parentElement.textContent")).strip() for index in range(6)]
    for index in range(6):
        await expect(boxes.nth(index)).to_be_checked(checked=index < 3)  # the first three, until the rep picks
    await expect(page.get_by_role("button", name="Insert 3 times")).to_be_enabled()
    await boxes.nth(0).uncheck()
    await boxes.nth(4).check()
    await boxes.nth(5).check()
    await boxes.nth(3).check()
    # Five is the most: the others are disabled then.
    await expect(page.get_by_role("button", name="Insert 5 times")).to_be_enabled()
    await expect(boxes.nth(6)).to_be_disabled()
    await boxes.nth(3).uncheck()
    await expect(boxes.nth(6)).to_be_enabled()
    await page.get_by_role("button", name="Insert 4 times").click()
    await expect(page.get_by_role("status")).to_have_text("Inserted 4 times for Discovery call (Europe/London).")
    await expect(page.get_by_role("group", name="Pick up to 5 times to suggest")).to_be_hidden()
    email_html = (await recording(page))["body"]
    assert (await recording(page))["calls"][-1]["coercionType"] == "html"
    assert email_html.count("/addin/t/") == 4
    assert labels[0] not in email_html
    assert labels[3] not in email_html
    for label in (labels[1], labels[2], labels[4], labels[5]):
        assert f">{label}</a>" in email_html
    assert "/addin/all/" in email_html

    # The client opens the email and looks at all times first: their name is already filled in.
    client_page = await context.new_page()
    await client_page.set_content(email_html)
    await client_page.get_by_role("link", name="See all times").click()
    await expect(client_page.get_by_role("heading", name="All free times")).to_be_visible()
    await expect(client_page.get_by_text("Booking for Jane <b>Client</b> <jane@client.test>.")).to_be_visible()
    assert await count(sqlite_database) == 0  # a link scanner opening every link books nothing
    later = client_page.get_by_role("list").nth(1).get_by_role("link").first
    day = await client_page.get_by_role("heading", level=2).nth(1).inner_text()
    clock = await later.inner_text()
    await later.click()
    await expect(client_page.get_by_role("heading", name="Confirm your time")).to_be_visible()
    await client_page.get_by_role("button", name="Confirm this time").click()
    await expect(client_page.get_by_role("heading", name="Booked")).to_be_visible()
    await expect(client_page.get_by_text(f"You're booked for {day}, {clock} (Europe/London).")).to_be_visible()
    assert await count(sqlite_database) == 1

    # Every other link of the email now says so and points to that booking; none books again.
    for name in (labels[1], labels[5], "See all times"):
        await client_page.set_content(email_html)
        await client_page.get_by_role("link", name=name).click()
        await expect(client_page.get_by_role("heading", name="Already booked")).to_be_visible()
        await expect(client_page.get_by_text(f"{day}, {clock} (Europe/London)")).to_be_visible()
        await expect(client_page.get_by_role("link", name="Change or cancel this booking")).to_be_visible()
    assert await count(sqlite_database) == 1
    await context.close()


async def test_the_pane_suggests_times_in_the_zone_of_the_recipients_earlier_booking(
    browser: Browser, live_pane: Pane, sqlite_database: Database, clock: FixedClock
) -> None:
    earlier = await live_pane.client.post(
        "/book/contoso/discovery/bookings",
        json={
            "start": (clock.moment + timedelta(days=2)).isoformat(),
            "name": "Jane",
            "email": "jane@client.test",
            "time_zone": "Europe/Berlin",
            "answers": {},
        },
    )
    assert earlier.status == 201, await earlier.text()
    office = {"bodyType": "text", "to": [{"displayName": "Jane Client", "emailAddress": "Jane@Client.test"}]}
    context, page = await open_pane(browser, live_pane, office=office)
    await page.get_by_role("button", name="Suggest times for Discovery call").click()
    zone = page.get_by_label("Recipient's time zone (for suggested times)")
    await expect(zone).to_have_value("Europe/Berlin")
    await expect(page.get_by_text("From Jane Client's earlier booking.")).to_be_visible()
    # The rep knows better: Jane is travelling. The times are listed again in the zone the rep typed.
    await zone.fill("Tokyo Standard Time")
    await zone.press("Enter")
    await expect(page.get_by_role("heading", name="Free times for Discovery call (Asia/Tokyo)")).to_be_visible()
    await expect(zone).to_have_value("Asia/Tokyo")
    await page.get_by_role("button", name="Insert 3 times").click()
    await expect(page.get_by_role("status")).to_have_text("Inserted 3 times for Discovery call (Asia/Tokyo).")
    body = (await recording(page))["body"]
    assert "Times in Asia/Tokyo. Pick one to book it:" in body
    assert body.count("/addin/t/") == 3
    assert "See all times: http://127.0.0.1:" in body
    await context.close()


async def count(database: Database) -> int:
    return await database.run_read(lambda conn: conn.execute(select(func.count()).select_from(bookings)).scalar_one())


async def test_type_names_are_shown_and_inserted_as_text_never_as_markup(
    browser: Browser, sqlite_database: Database, tmp_path: Path, clock: FixedClock
) -> None:
    hostile = "<img src=x onerror=window.__xss=1> Discovery & more"
    tenant = (FIXTURES / "teams_tenant.yaml").read_text(encoding="utf-8")
    (tmp_path / "tenant.yaml").write_text(
        tenant.replace("name: Discovery call", f'name: "{hostile}"'), encoding="utf-8"
    )
    await apply_file(sqlite_database, tmp_path / "tenant.yaml")
    identity = FakeBotIdentity()
    key = identity.add_tenant_key("common", "pane-key", private_key=signing_key())
    keys = TestServer(identity.build_app())
    await keys.start_server()
    client = await start_client(
        sqlite_database,
        tmp_path,
        clock,
        base_url=BASE_URL,
        addin_client_id=API_CLIENT_ID,
        addin_openid_metadata_url=str(keys.make_url("/common/v2.0/.well-known/openid-configuration")),
        office_js_url=OFFICE_JS_URL,
    )
    try:
        context, page = await open_pane(browser, Pane(client, key, []))
        await expect(page.get_by_role("listitem").first).to_contain_text(hostile)
        await page.get_by_role("button", name=f"Insert link to {hostile}").click()
        await expect(page.get_by_role("status")).to_have_text(f"Inserted the link to {hostile}.")
        body = (await recording(page))["body"]
        assert "<b>&lt;img src=x onerror=window.__xss=1&gt; Discovery &amp; more</b>" in body
        assert await page.evaluate("window.__xss") is None
        await context.close()
    finally:
        await client.close()
        await keys.close()


@pytest.fixture
async def psa_pane(
    sqlite_database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Pane, FakeConnectWiseServer]]:
    """Like `pane`, with the tenant's ConnectWise (the stand-in, over real HTTP) connected."""
    fake = FakeConnectWiseServer()
    psa = TestServer(fake.build_app(), host="127.0.0.1", port=0)
    await psa.start_server()
    monkeypatch.setenv("PANE_CW_PRIVATE_KEY", fake.private_key)
    monkeypatch.setenv("PANE_CW_CLIENT_ID", fake.client_id)
    path = tmp_path / "contoso.yaml"
    path.write_text(
        (FIXTURES / "teams_tenant.yaml").read_text(encoding="utf-8").rstrip("\n")
        + "\nintegrations:\n  psa:\n    vendor: connectwise\n"
        + f"    site_url: {str(psa.make_url('')).rstrip('/')}\n    codebase: {fake.codebase}\n"
        + f"    company_id: {fake.company_id}\n    public_key: {fake.public_key}\n"
        + "    secrets_from_env: {private_key: PANE_CW_PRIVATE_KEY, client_id: PANE_CW_CLIENT_ID}\n"
    )
    await apply_tenant_file(sqlite_database, make_settings(tmp_path), path, dry_run=False)
    identity = FakeBotIdentity()
    key = identity.add_tenant_key("common", "pane-key", private_key=signing_key())
    keys = TestServer(identity.build_app())
    await keys.start_server()
    client = await start_client(
        sqlite_database,
        tmp_path,
        clock,
        base_url=BASE_URL,
        addin_client_id=API_CLIENT_ID,
        addin_openid_metadata_url=str(keys.make_url("/common/v2.0/.well-known/openid-configuration")),
        office_js_url=OFFICE_JS_URL,
        msal_browser_script=tmp_path / "not-installed" / "msal-browser.min.js",
    )
    yield Pane(client, key, []), fake
    await client.close()
    await keys.close()
    await psa.close()


async def test_the_pane_shows_who_the_recipients_are_in_the_psa_and_asks_once_they_stop_changing(
    browser: Browser, psa_pane: tuple[Pane, FakeConnectWiseServer]
) -> None:
    pane, fake = psa_pane
    pat = fake.add_contact("Pat <b>Buyer</b>", "pat@client.example")
    fake.add_opportunity("Managed <i>services</i>", contact=pat)
    fake.add_contact("Lee Chen", "lee@client.example")
    office = {
        "to": [{"displayName": "Pat", "emailAddress": "pat@client.example"}],
        "cc": [{"displayName": "Someone new", "emailAddress": "new@elsewhere.example"}],
    }
    context, page = await open_pane(browser, pane, office=office)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/addin/api/recipients" in request.url else None)
    found = page.locator("#recipients li")
    await expect(found).to_have_count(2)
    # Names and deal names from the PSA are shown as text, never as markup.
    await expect(found.nth(0)).to_contain_text("Pat <b>Buyer</b> (pat@client.example)")
    await expect(found.nth(0)).to_contain_text("open: Managed <i>services</i>")
    await expect(found.nth(1)).to_contain_text("Not in your PSA yet.")
    assert await page.locator("#recipients b, #recipients i").count() == 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "recipients.png"), full_page=True)  # kept for a person to judge

    # The rep edits the recipients three times in quick succession: one look-up, once they stop.
    before = len(asked)
    for to in ("lee@client", "lee@client.exam", "lee@client.example"):
        await page.evaluate(
            "(address) => window.__officeSetRecipients([{displayName: 'Lee', emailAddress: address}], [])", to
        )
    await expect(found).to_have_count(1)
    await expect(found.nth(0)).to_contain_text("Lee Chen (lee@client.example)")
    # Lee's company is Pat's: its open opportunity is offered for Lee too.
    await expect(found.nth(0)).to_contain_text("open: Managed <i>services</i>")
    assert len(asked) - before == 1, asked
    office_calls = [call["method"] for call in (await recording(page))["calls"]]
    assert "item.addHandlerAsync" in office_calls
    await context.close()


async def test_a_rep_builds_a_one_off_link_with_a_recipient_as_guest_and_the_client_books_through_it(
    browser: Browser, live_pane: Pane, sqlite_database: Database
) -> None:
    office = {
        "bodyType": "html",
        "to": [{"displayName": "Jane <b>Client</b>", "emailAddress": "jane@client.test"}],
        "cc": [{"displayName": "Sam Boss", "emailAddress": "sam@client.test"}],
    }
    context, page = await open_pane(browser, live_pane, office=office)
    await page.get_by_role("button", name="One-off link for Discovery call").click()
    await expect(page.get_by_role("heading", name="One-off link for Discovery call")).to_be_visible()
    duration = page.get_by_label("Duration (minutes)")
    await expect(duration).to_have_value("30")
    guests = page.get_by_role("group", name="Guests from this email's To and Cc").get_by_role("checkbox")
    await expect(guests).to_have_count(2)
    # The recipient's name is shown as text, never as markup.
    await expect(page.get_by_text("Jane <b>Client</b> <jane@client.test>")).to_be_visible()
    await page.get_by_label("Sam Boss <sam@client.test>").check()
    await duration.fill("45")  # not on the type's 30-minute increment: refused, nothing inserted
    await page.get_by_role("button", name="Insert one-off link").click()
    await expect(page.get_by_role("alert")).to_contain_text("multiple of this type's 30-minute slot increment")
    assert "/r/" not in (await recording(page))["body"]
    await duration.fill("60")
    await page.get_by_label("Days ahead the client can book").fill("7")
    await page.get_by_label("Single use: the link books once").uncheck()
    await page.get_by_role("button", name="Insert one-off link").click()
    await expect(page.get_by_role("status")).to_have_text(
        "Inserted a multi-use link to Discovery call (60 minutes, 1 guest)."
    )
    await expect(page.get_by_role("heading", name="One-off link for Discovery call")).to_be_hidden()
    office_after = await recording(page)
    assert office_after["calls"][-1]["coercionType"] == "html"
    email_html = office_after["body"]
    assert email_html.count("/r/") == 1
    assert "<b>Discovery call</b> (60 minutes, Microsoft Teams meeting)" in email_html

    # The client opens the email, follows the link and books on our page.
    client_page = await context.new_page()
    await client_page.set_content(email_html)
    await client_page.get_by_role("link", name="Book a time with Dana Diaz").click()
    await client_page.get_by_role("link", name=re.compile("times available")).first.click()
    await client_page.get_by_role("link", name=re.compile(r"^\d{1,2}:\d{2}")).first.click()
    await client_page.get_by_label("Your name").fill("Jane Client")
    await client_page.get_by_label("Email", exact=True).fill("jane@client.test")
    await client_page.get_by_role("button", name=re.compile("^Book ")).click()
    await expect(client_page.get_by_role("status")).to_contain_text("You're booked")
    async with sqlite_database.read() as conn:
        made = (await conn.execute(select(bookings))).one()
    assert made.request_id is not None
    assert made.guests == ["sam@client.test"]
    assert made.ends_at - made.starts_at == timedelta(minutes=60)
    # Multi-use: the same link still offers times to the next client.
    await client_page.set_content(email_html)
    await client_page.get_by_role("link", name="Book a time with Dana Diaz").click()
    await expect(client_page.get_by_role("link", name=re.compile("times available")).first).to_be_visible()
    await context.close()


async def test_a_rep_binds_a_one_off_link_to_the_recipients_psa_contact_and_deal_and_the_client_books(
    browser: Browser, psa_pane: tuple[Pane, FakeConnectWiseServer], sqlite_database: Database
) -> None:
    pane, fake = psa_pane
    pat = fake.add_contact("Pat <b>Buyer</b>", "pat@client.example")
    deal = fake.add_opportunity("Managed services", contact=pat)
    office = {"bodyType": "html", "to": [{"displayName": "Pat", "emailAddress": "pat@client.example"}]}
    context, page = await open_pane(browser, pane, office=office)
    await expect(page.locator("#recipients li")).to_have_count(1)
    await page.get_by_role("button", name="One-off link for Discovery call").click()
    choices = page.get_by_role("group", name="Bookings through this link land on").get_by_role("radio")
    await expect(choices).to_have_count(3)
    await expect(choices.nth(0)).to_be_checked()
    company = fake.company_name(pat.company_id)
    # Names from the PSA are text, never markup.
    await page.get_by_label(f"Pat <b>Buyer</b>, {company}, opportunity Managed services").check()
    await page.screenshot(path=str(SHOTS / "one-off-bound.png"), full_page=True)  # kept for a person to judge
    await page.get_by_role("button", name="Insert one-off link").click()
    await expect(page.get_by_role("status")).to_have_text(
        f"Inserted a single-use link to Discovery call (30 minutes) for Pat <b>Buyer</b> at {company}, "
        "on Managed services."
    )
    async with sqlite_database.read() as conn:
        binding = (await conn.execute(select(scheduling_requests.c.psa_binding))).scalar_one()
    assert (binding["contact"]["id"], binding["opportunity"]["id"]) == (pat.contact_id, deal)

    # The client follows the email's link (this server's base URL is not where it listens, so the link's path is
    # opened on it): the form already names them, and one click on Book books.
    href = re.search(r'href="([^"]+/r/[^"]+)"', (await recording(page))["body"])
    assert href is not None
    client_page = await context.new_page()
    await client_page.goto(pane.base + urlsplit(href.group(1)).path)
    await client_page.get_by_role("link", name=re.compile("times available")).first.click()
    await client_page.get_by_role("link", name=re.compile(r"^\d{1,2}:\d{2}")).first.click()
    await expect(client_page.get_by_label("Your name")).to_have_value("Pat <b>Buyer</b>")
    await expect(client_page.get_by_label("Email", exact=True)).to_have_value("pat@client.example")
    await client_page.get_by_role("button", name=re.compile("^Book ")).click()
    await expect(client_page.get_by_role("status")).to_contain_text("You're booked")
    async with sqlite_database.read() as conn:
        made = (await conn.execute(select(bookings))).one()
    assert (made.client_email, made.request_id is not None) == ("pat@client.example", True)
    await context.close()
