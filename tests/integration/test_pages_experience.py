"""What a client meets on the booking pages, from the outside (HTTP in, HTML and database rows out): a time lost
mid-form, errors next to their field, paging that stops at the scheduling window, disabled empty days, error pages
that say what to do next, privacy and terms links, a cancellation that asks why, and times in the client's format."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from aiohttp.test_utils import TestClient

from app import Overrides
from pages.ratelimit import InMemoryRateLimiter
from storage.database import Database
from tests.conftest import FixedClock, start_client
from tests.integration.test_booking_api import PAGE, booking_body, count_bookings

FORM = {"name": "Dana Client", "email": "dana@client.test", "answer_company": "Client Co", "time_zone": "UTC"}


async def csrf_token(client: TestClient, path: str, **params: str) -> str:
    page = await client.get(path, params=params)
    assert page.status == 200, await page.text()
    found = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def test_a_time_lost_mid_form_offers_the_next_free_times_and_books_one(
    client: TestClient, tenant_db: Database
) -> None:
    token = await csrf_token(client, PAGE, tz="UTC", date="2026-11-24", start="2026-11-24T15:00:00+00:00")
    # Someone else takes 15:00 while this client is typing.
    taken = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))
    assert taken.status == 201
    form = {**FORM, "csrf_token": token, "start": "2026-11-24T15:00:00+00:00", "idempotency_key": "visit-1"}
    lost = await client.post(f"{PAGE}/bookings", data=form, allow_redirects=False)
    assert lost.status == 409
    html = await lost.text()
    assert "was just taken" in html
    # The taken time is offered nowhere: no hidden start, no "Book 15:00" button, no slot link.
    assert 'value="2026-11-24T15:00:00+00:00"' not in html
    assert "Book 15:00<" not in html
    offered = re.findall(r'<button type="submit" name="start" value="([^"]+)"', html)
    assert offered
    assert "2026-11-24T15:00:00+00:00" not in offered
    assert offered[0] == "2026-11-24T15:30:00+00:00"
    assert 'value="Dana Client"' in html, "what the client typed is kept"
    # One press on an offered time books it (the visit's key with a new start is a new attempt).
    booked = await client.post(f"{PAGE}/bookings", data={**form, "start": offered[0]}, allow_redirects=False)
    assert booked.status == 303, await booked.text()
    confirmation = await client.get(booked.headers["Location"])
    assert "15:30" in await confirmation.text()
    again = await client.post(f"{PAGE}/bookings", data={**form, "start": offered[0]}, allow_redirects=False)
    assert again.status == 303
    assert await count_bookings(tenant_db) == 2, "a double press on the offered time books it once"


async def test_a_form_error_is_shown_next_to_its_field_and_focuses_it(client: TestClient) -> None:
    token = await csrf_token(client, PAGE, tz="UTC", date="2026-11-24", start="2026-11-24T15:00:00+00:00")
    form = {**FORM, "csrf_token": token, "start": "2026-11-24T15:00:00+00:00", "email": "not-an-email"}
    response = await client.post(f"{PAGE}/bookings", data=form, allow_redirects=False)
    assert response.status == 400
    html = await response.text()
    field = re.search(r"<input id=\"email\"[^>]*>", html)
    assert field, html
    assert 'aria-invalid="true"' in field.group(0)
    assert 'aria-describedby="email-error"' in field.group(0)
    assert "autofocus" in field.group(0)
    error = re.search(r'<p class="field-error" id="email-error">([^<]+)</p>', html)
    assert error
    assert "not a valid email address" in error.group(1)
    assert 'id="form-error"' not in html, "the error is at its field, not at the top of the page"
    unanswered = await client.post(
        f"{PAGE}/bookings", data={**form, "email": "dana@client.test", "answer_company": ""}, allow_redirects=False
    )
    assert unanswered.status == 400
    assert 'id="answer_company-error"' in await unanswered.text()


async def test_paging_stops_at_the_scheduling_window_and_empty_days_are_not_links(client: TestClient) -> None:
    # Intro call: a 30-day window from Monday 23 November, so the last bookable day is in December.
    november = await (await client.get(PAGE, params={"tz": "UTC"})).text()
    assert re.search(r'<a href="[^"]*date=2026-12-01[^"]*" rel="next">', november)
    assert 'rel="prev"' not in november, "nothing before this month can be booked"
    # 26 November is a holiday: shown, but not a link.
    assert '<span class="day none">26<span class="vh">, no times</span></span>' in november
    assert "date=2026-11-26" not in november
    december = await (await client.get(PAGE, params={"tz": "UTC", "date": "2026-12-01"})).text()
    assert 'rel="next"' not in december
    assert 'rel="prev"' in december
    assert "date=2026-12-24" not in december, "days past the window are not offered"
    assert "date=2026-12-22" in december
    # A date far past the window shows the window's last month, not an empty one with a "Later" link.
    far = await (await client.get(PAGE, params={"tz": "UTC", "date": "2027-06-01"})).text()
    assert "December 2026" in far
    assert 'rel="next"' not in far


async def test_times_follow_the_clients_language_and_the_clock_switch(client: TestClient) -> None:
    params = {"tz": "UTC", "date": "2026-11-24"}
    us = await (await client.get(PAGE, params=params, headers={"Accept-Language": "en-US,en;q=0.9"})).text()
    assert ">3:00 PM</a>" in us
    assert "Times on Tuesday, November 24" in us
    german = await (await client.get(PAGE, params=params, headers={"Accept-Language": "de-DE,de;q=0.9"})).text()
    assert ">15:00</a>" in german
    assert "Zeiten am Dienstag, 24. November" in german
    british = await (await client.get(PAGE, params=params, headers={"Accept-Language": "en-GB"})).text()
    assert ">15:00</a>" in british
    assert "Times on Tuesday, 24 November" in british
    switched = await (
        await client.get(PAGE, params={**params, "clock": "24"}, headers={"Accept-Language": "en-US"})
    ).text()
    assert ">15:00</a>" in switched
    assert "Use 12-hour times" in switched
    # The choice sticks: every day and time link carries it.
    assert re.search(r'href="/book/acme/intro-call\?[^"]*clock=24[^"]*start=', switched)


async def test_error_pages_are_styled_and_say_what_to_do_next(
    client: TestClient, tenant_db: Database, tmp_path: Path, clock: FixedClock
) -> None:
    refused = await client.post(f"{PAGE}/bookings", data={**FORM, "start": "2026-11-24T15:00:00+00:00"})
    assert refused.status == 403
    assert refused.content_type == "text/html"
    html = await refused.text()
    assert '<h1 id="problem-heading">Your session expired</h1>' in html
    assert "Nothing was booked or changed" in html
    assert f'<a class="button" href="{PAGE}">Go back to the page</a>' in html
    assert '<link rel="stylesheet" href="/static/app.css">' in html
    missing = await client.get("/book/acme/no-such-page")
    assert missing.status == 404
    assert "We couldn&#39;t find that page" in await missing.text()

    booked = await (await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))).json()
    manage = booked["manage_url"].removeprefix("http://testserver")
    clock.moment = datetime(2026, 11, 24, 15, 31, tzinfo=UTC)
    expired = await client.get(manage)
    assert expired.status == 410
    assert "This link has expired" in await expired.text()
    assert "Ask the person who sent it for a new link" in await expired.text()
    clock.moment = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    limited_client = await start_client(
        tenant_db, tmp_path, clock, overrides=Overrides(ip_limiter=InMemoryRateLimiter(0))
    )
    try:
        token = await csrf_token(limited_client, PAGE, tz="UTC", start="2026-11-24T16:00:00+00:00")
        limited = await limited_client.post(
            f"{PAGE}/bookings", data={**FORM, "csrf_token": token, "start": "2026-11-24T16:00:00+00:00"}
        )
        assert limited.status == 429
        assert limited.headers["Retry-After"] == "60"
        assert "Too many attempts" in await limited.text()
        assert "Wait a minute" in await limited.text()
        api = await limited_client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T16:00:00+00:00"))
        assert api.status == 429
        assert (await api.json())["error"]["code"] == "too_many_requests", "the API still answers JSON"
    finally:
        await limited_client.close()


async def test_every_page_links_privacy_and_terms(client: TestClient) -> None:
    for path in (PAGE, "/u/acme/alice", "/t/acme/sales", "/privacy", "/terms", "/book/acme/nope"):
        html = await (await client.get(path)).text()
        assert '<a href="/privacy">Privacy</a>' in html, path
        assert '<a href="/terms">Terms</a>' in html, path


async def test_cancelling_on_the_page_asks_for_confirmation_and_a_reason(client: TestClient) -> None:
    booked = await (await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))).json()
    manage = booked["manage_url"].removeprefix("http://testserver")
    overview = await (await client.get(manage)).text()
    assert f'action="{manage}/cancel"' not in overview, "the manage page itself has no one-click cancel form"
    assert "action=cancel" in overview
    token = await csrf_token(client, manage, action="cancel")
    confirm = await (await client.get(manage, params={"action": "cancel"})).text()
    assert "Cancel this appointment?" in confirm
    assert '<textarea id="reason" name="reason" maxlength="2000" required' in confirm
    form = {"csrf_token": token, "time_zone": "UTC", "version": "1"}
    no_reason = await client.post(f"{manage}/cancel", data={**form, "reason": "  "}, allow_redirects=False)
    assert no_reason.status == 400
    assert "Please tell us why you are cancelling." in await no_reason.text()
    still = await (await client.get(f"{PAGE}/slots", params={"start": "2026-11-24", "tz": "UTC"})).json()
    assert "2026-11-24T15:00:00+00:00" not in [slot["start"] for slot in still["slots"]], "nothing was cancelled"
    cancelled = await client.post(f"{manage}/cancel", data={**form, "reason": "Solved it"}, allow_redirects=False)
    assert cancelled.status == 303
    assert "This appointment is cancelled." in await (await client.get(cancelled.headers["Location"])).text()


async def test_the_full_zone_list_is_searchable_without_javascript_and_returns_to_the_page(client: TestClient) -> None:
    back = f"{PAGE}?date=2026-11-24&clock=12&tz=UTC"
    everything = await client.get("/zones", params={"back": back})
    assert everything.status == 200
    html = await everything.text()
    names = re.findall(r'<li><a href="[^"]+">([^<]+)</a> <span class="offset">', html)
    assert len(names) > 400, "every IANA zone, not a hand-picked few"
    assert "America/Argentina/Buenos Aires" in names
    assert "Pacific/Chatham" in names
    # Offsets are the ones in force now (the test clock: 23 November 2026).
    assert '>Asia/Kolkata</a> <span class="offset">UTC+05:30</span>' in html
    assert '>America/New York</a> <span class="offset">UTC\u221205:00</span>' in html
    found = await (await client.get("/zones", params={"back": back, "q": "berl"})).text()
    listed = found.split('<ul class="zones"', 1)[1].split("</ul>", 1)[0]
    links = re.findall(r'<li><a href="([^"]+)">([^<]+)</a>', listed)
    assert [name for _link, name in links] == ["Europe/Berlin"]
    # Picking it goes back to the same day and clock, now in Berlin time.
    chosen = links[0][0].replace("&amp;", "&")
    assert chosen == f"{PAGE}?date=2026-11-24&clock=12&tz=Europe%2FBerlin"
    page = await (await client.get(chosen)).text()
    assert '<option value="Europe/Berlin" selected>Europe/Berlin (UTC+01:00)</option>' in page
    assert ">4:00 PM</a>" in page, "15:00 UTC in Berlin, on the 12-hour clock the client chose"
    nothing = await (await client.get("/zones", params={"back": back, "q": "Atlantis"})).text()
    assert "No time zone matches" in nothing


async def test_the_zone_list_only_returns_to_this_site(client: TestClient) -> None:
    for hostile in (
        "//evil.example/x",
        "https://evil.example/",
        "javascript:alert(1)",
        "/\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
    ):
        html = await (await client.get("/zones", params={"back": hostile, "q": "berlin"})).text()
        assert "evil" not in html.split("<main", 1)[1]
        assert 'href="/?tz=Europe%2FBerlin"' in html


async def test_a_time_lost_while_rescheduling_offers_the_next_free_times_to_move_to(client: TestClient) -> None:
    booked = await (await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))).json()
    manage = booked["manage_url"].removeprefix("http://testserver")
    token = await csrf_token(
        client, manage, action="reschedule", tz="UTC", date="2026-11-25", start="2026-11-25T16:00:00+00:00"
    )
    taken = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-25T16:00:00+00:00", email="x@y.test"))
    assert taken.status == 201
    form = {"csrf_token": token, "time_zone": "UTC", "version": "1", "start": "2026-11-25T16:00:00+00:00"}
    lost = await client.post(f"{manage}/reschedule", data=form, allow_redirects=False)
    assert lost.status == 409
    html = await lost.text()
    assert "was just taken" in html
    assert "Confirm new time" not in html
    offered = re.findall(r'<button type="submit" name="start" value="([^"]+)"[^>]*>Move to ([^<]+)</button>', html)
    assert offered[0] == ("2026-11-25T16:30:00+00:00", "16:30")
    moved = await client.post(f"{manage}/reschedule", data={**form, "start": offered[0][0]}, allow_redirects=False)
    assert moved.status == 303
    assert "16:30" in await (await client.get(moved.headers["Location"])).text()


async def test_the_clock_choice_survives_booking(client: TestClient) -> None:
    token = await csrf_token(client, PAGE, tz="UTC", clock="12", start="2026-11-24T15:00:00+00:00")
    page = await (
        await client.get(PAGE, params={"tz": "UTC", "clock": "12", "start": "2026-11-24T15:00:00+00:00"})
    ).text()
    assert '<input type="hidden" name="clock" value="12">' in page
    booked = await client.post(
        f"{PAGE}/bookings",
        data={**FORM, "csrf_token": token, "start": "2026-11-24T15:00:00+00:00", "clock": "12"},
        allow_redirects=False,
    )
    assert booked.status == 303
    assert "clock=12" in booked.headers["Location"]
    confirmation = await (await client.get(booked.headers["Location"], headers={"Accept-Language": "de-DE"})).text()
    assert re.search(r"3:00 (PM|pm)", confirmation), "the client's switch wins over the browser's language"
    assert "15:00" not in confirmation
