"""Suggested times from the Outlook add-in over real HTTP: signed, expiring links in the recipient's zone; opening one
never books; confirming books once per email; a taken time offers the next free ones."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event, func, select

from addin.zones import zone_named
from storage.database import Database
from storage.tables import bookings
from tests.conftest import FIXTURES, FixedClock, apply_file, start_client
from tests.integration.test_addin_auth import (
    API_CLIENT_ID,
    COMMON_METADATA,
    FABRIKAM,
    FABRIKAM_DANA,
    Entra,
)

LONDON = ZoneInfo("Europe/London")
RECIPIENT = {"name": "Jane <b>Client</b>", "email": "jane@client.test"}


@pytest.fixture
async def addin_db(database: Database) -> Database:
    await apply_file(database, FIXTURES / "teams_tenant.yaml")
    await apply_file(database, FIXTURES / "teams_other_tenant.yaml")
    return database


@pytest.fixture
async def api(addin_db: Database, entra: Entra, tmp_path: Path, clock: FixedClock) -> AsyncIterator[TestClient]:
    client = await start_client(
        addin_db,
        tmp_path,
        clock,
        addin_client_id=API_CLIENT_ID,
        addin_openid_metadata_url=f"{entra.base}{COMMON_METADATA}",
    )
    yield client
    await client.close()


async def count_bookings(database: Database) -> int:
    return await database.run_read(lambda conn: conn.execute(select(func.count()).select_from(bookings)).scalar_one())


async def discovery_id(api: TestClient, entra: Entra) -> str:
    response = await api.get("/addin/api/appointment-types", headers={"Authorization": f"Bearer {entra.token()}"})
    types = (await response.json())["types"]
    return str(next(item["id"] for item in types if item["name"] == "Discovery call"))


async def suggest(api: TestClient, entra: Entra, **changes: Any) -> tuple[int, Any]:
    body: dict[str, Any] = {
        "type_id": await discovery_id(api, entra),
        "count": 3,
        "time_zone": "GMT Standard Time",
        "recipient": RECIPIENT,
    }
    body.update(changes)
    response = await api.post(
        "/addin/api/suggested-times", json=body, headers={"Authorization": f"Bearer {entra.token()}"}
    )
    return response.status, await response.json()


def path_of(url: str) -> str:
    return urlsplit(url).path


def english_when(starts_at: str, zone: str = "Europe/London") -> str:
    """How the pages a suggested time opens write it for an English browser (CLDR English: full date, 12-hour
    clock), computed here by hand so the test does not reuse the code under test."""
    local = datetime.fromisoformat(starts_at).astimezone(ZoneInfo(zone))
    hour = local.hour % 12 or 12
    return (
        f"{local:%A}, {local:%B} {local.day}, {local.year}, {hour}:{local:%M}\u202f{'AM' if local.hour < 12 else 'PM'}"
    )


async def csrf_of(api: TestClient, url: str) -> str:
    page = await api.get(path_of(url))
    found = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    assert found, "the page has no Confirm form"
    return found.group(1)


async def confirm(api: TestClient, url: str, *, with_csrf: bool = True) -> tuple[int, str]:
    page = await api.get(path_of(url))
    token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    data = {"csrf_token": token.group(1)} if (with_csrf and token) else {}
    response = await api.post(path_of(url), data=data)
    return response.status, await response.text()


async def test_times_come_in_the_recipients_zone_from_a_windows_zone_name(
    api: TestClient, entra: Entra, addin_db: Database, clock: FixedClock
) -> None:
    status, body = await suggest(api, entra)
    assert status == 200, body
    assert body["time_zone"] == "Europe/London"
    starts = [datetime.fromisoformat(item["starts_at"]) for item in body["times"]]
    assert len(starts) == 3
    assert starts == sorted(starts)
    assert starts[0] >= clock.moment
    for item, start in zip(body["times"], starts, strict=True):
        local = start.astimezone(LONDON)
        assert item["label"] == f"{local:%A} {local.day} {local:%B}, {local:%H:%M}"
        assert item["url"].startswith("http://testserver/addin/t/")
        assert f'href="{item["url"]}"' in body["html"]
        assert f"- {item['label']}: {item['url']}" in body["text"]
    assert "Times in Europe/London" in body["html"]
    assert body["see_all_url"].startswith("http://testserver/addin/all/")
    assert f'<a href="{body["see_all_url"]}" id="LPNoLP">See all times</a>' in body["html"]
    assert body["text"].endswith(f"See all times: {body['see_all_url']}\n")
    assert "style=" not in body["html"]
    assert await count_bookings(addin_db) == 0


async def test_opening_a_link_shows_the_time_and_who_it_is_for_and_books_nothing(
    api: TestClient, entra: Entra, addin_db: Database
) -> None:
    _, body = await suggest(api, entra)
    for item in body["times"]:
        for _ in range(3):  # a link scanner, the preview pane, the client
            page = await api.get(path_of(item["url"]))
            html = await page.text()
            assert page.status == 200
            assert english_when(item["starts_at"]) in html
            assert "Jane &lt;b&gt;Client&lt;/b&gt; &lt;jane@client.test&gt;" in html
            assert "<b>Client</b>" not in html
    assert await count_bookings(addin_db) == 0


async def test_a_german_client_reads_the_time_pages_in_german_and_the_booking_keeps_their_language(
    api: TestClient, entra: Entra, addin_db: Database
) -> None:
    _, body = await suggest(api, entra)
    german = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
    url = path_of(body["times"][0]["url"])
    local = datetime.fromisoformat(body["times"][0]["starts_at"]).astimezone(ZoneInfo("Europe/London"))
    days = ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"]
    months = ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober"]
    months += ["November", "Dezember"]
    when = f"{days[local.weekday()]}, {local.day}. {months[local.month - 1]} {local.year}, {local:%H:%M}"
    page = await api.get(url, headers=german)
    html = await page.text()
    assert page.status == 200
    assert page.headers["Content-Language"] == "de-DE"
    assert '<html lang="de-DE">' in html
    assert "Bestätigen Sie Ihre Zeit" in html
    assert f"Wann: {when} (Europe/London)." in html
    assert "Buchung für Jane &lt;b&gt;Client&lt;/b&gt; &lt;jane@client.test&gt;." in html
    assert "Diese Zeit bestätigen" in html
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token is not None
    booked = await api.post(url, data={"csrf_token": token.group(1)}, headers=german)
    text = await booked.text()
    assert booked.status == 200, text
    assert f"Ihr Termin ist gebucht: {when} (Europe/London)." in text
    assert "Diesen Termin verschieben oder absagen" in text
    # The booking keeps the client's language: its emails and reminders are written in German.
    locales = await addin_db.run_read(lambda conn: [row.client_locale for row in conn.execute(select(bookings))])
    assert locales == ["de-DE"]
    # A forged link is explained in German too.
    forged = await api.get(url[:-4] + "AAAA", headers=german)
    assert forged.status == 400
    assert "Dieser Link ist ungültig." in await forged.text()


async def test_query_parameters_cannot_change_who_is_booked(api: TestClient, entra: Entra, addin_db: Database) -> None:
    _, body = await suggest(api, entra)
    url = body["times"][0]["url"]
    page = await api.get(path_of(url) + "?name=Mallory&email=mallory@evil.test")
    assert "mallory" not in (await page.text()).lower()
    status, html = await confirm(api, url)
    assert status == 200, html
    emails = await addin_db.run_read(lambda conn: [row.client_email for row in conn.execute(select(bookings))])
    assert emails == ["jane@client.test"]


async def test_confirming_books_once_and_the_emails_other_times_point_to_that_booking(
    api: TestClient, entra: Entra, addin_db: Database
) -> None:
    _, body = await suggest(api, entra)
    first, second = body["times"][0]["url"], body["times"][1]["url"]
    # The recipient opens the second time too, and leaves that tab open.
    second_form = {"csrf_token": await csrf_of(api, second)}
    form = {"csrf_token": await csrf_of(api, first)}
    # A double click: the same form posted twice.
    answers = [await api.post(path_of(first), data=form) for _ in range(2)]
    for answer in answers:
        html = await answer.text()
        assert answer.status == 200, html
        assert "re booked for" in html
        assert english_when(body["times"][0]["starts_at"]) in html
    assert await count_bookings(addin_db) == 1

    page = await api.get(path_of(second))
    html = await page.text()
    assert "already booked" in html
    assert english_when(body["times"][0]["starts_at"]) in html
    assert 'href="http://testserver/m/' in html
    late = await api.post(path_of(second), data=second_form)
    assert late.status == 200
    assert "already booked" in await late.text()
    assert await count_bookings(addin_db) == 1


async def test_a_taken_time_shows_the_next_free_times_which_book(
    api: TestClient, entra: Entra, addin_db: Database
) -> None:
    _, body = await suggest(api, entra)
    taken = body["times"][0]
    other = await api.post(
        "/book/contoso/discovery/bookings",
        json={
            "start": taken["starts_at"],
            "name": "Someone Else",
            "email": "else@client.test",
            "time_zone": "Europe/London",
            "answers": {},
        },
    )
    assert other.status == 201, await other.text()
    status, html = await confirm(api, taken["url"])
    assert status == 409
    assert "was just taken" in html
    alternatives = re.findall(r'<li><a href="(/addin/t/[^"]+)">([^<]+)</a></li>', html)
    assert alternatives
    assert all(label != taken["label"] for _, label in alternatives)
    status, html = await confirm(api, alternatives[0][0])
    assert status == 200, html
    assert alternatives[0][1] in html
    assert await count_bookings(addin_db) == 2


async def test_forged_expired_and_unconfirmed_links_get_a_clear_page(
    api: TestClient, entra: Entra, addin_db: Database, clock: FixedClock
) -> None:
    _, body = await suggest(api, entra)
    url = body["times"][0]["url"]
    token = path_of(url).rsplit("/", 1)[1]
    forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    for bad in (forged, "not-a-token", "x" * 2000):
        page = await api.get(f"/addin/t/{bad}")
        assert page.status == 400
        assert "This link is not valid" in await page.text()
    status, _ = await confirm(api, url, with_csrf=False)
    assert status == 403
    assert await count_bookings(addin_db) == 0
    clock.moment += timedelta(days=15)
    page = await api.get(path_of(url))
    assert page.status == 410
    assert "This link has expired" in await page.text()
    assert await count_bookings(addin_db) == 0


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"time_zone": "Mars/Olympus"}, 400, "invalid_time_zone"),
        ({"count": 9}, 400, "invalid_request"),
        ({"count": True}, 400, "invalid_request"),
        ({"recipient": "jane"}, 400, "invalid_request"),
        ({"type_id": "no-such-type"}, 404, "unknown_type"),
    ],
)
async def test_bad_suggestion_requests_get_a_specific_4xx(
    api: TestClient, entra: Entra, changes: dict[str, Any], status: int, code: str
) -> None:
    got, body = await suggest(api, entra, **changes)
    assert (got, body["error"]["code"]) == (status, code)


async def test_another_tenants_type_cannot_be_suggested(api: TestClient, entra: Entra) -> None:
    fabrikam = entra.token(tenant=FABRIKAM, oid=FABRIKAM_DANA, preferred_username="dana@fabrikam.example")
    response = await api.get("/addin/api/appointment-types", headers={"Authorization": f"Bearer {fabrikam}"})
    secret_type = (await response.json())["types"][0]["id"]
    status, body = await suggest(api, entra, type_id=secret_type)
    assert (status, body["error"]["code"]) == (404, "unknown_type")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("GMT Standard Time", "Europe/London"),
        ("Pacific Standard Time", "America/Los_Angeles"),
        ("W. Europe Standard Time", "Europe/Berlin"),
        ("AUS Eastern Standard Time", "Australia/Sydney"),
        ("Europe/Paris", "Europe/Paris"),
        ("Mars/Olympus", None),
        ("../../etc/passwd", None),
        ("", None),
    ],
)
def test_windows_zone_names_map_to_iana_through_cldr(name: str, expected: str | None) -> None:
    zone = zone_named(name)
    assert (zone.key if zone else None) == expected


async def test_a_link_reveals_neither_the_recipient_nor_the_time(api: TestClient, entra: Entra) -> None:
    _, body = await suggest(api, entra)
    token = path_of(body["times"][0]["url"]).rsplit("/", 1)[1]
    decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for secret in (b"jane", b"client.test", b"Client", body["times"][0]["starts_at"][:10].encode()):
        # Only the decoded bytes can leak: the token's text is random base64, which may spell "jane" by chance.
        assert secret not in decoded
    assert len({path_of(item["url"]) for item in body["times"]}) == 3


async def test_times_inserted_without_a_recipient_ask_the_client_for_their_details(
    api: TestClient, entra: Entra, addin_db: Database
) -> None:
    _, body = await suggest(api, entra, recipient={})
    url = body["times"][0]["url"]
    page = await api.get(path_of(url))
    html = await page.text()
    assert 'name="email"' in html
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    missing = await api.post(path_of(url), data={"csrf_token": csrf, "name": "Jane", "email": "not-an-address"})
    assert missing.status == 422
    assert await count_bookings(addin_db) == 0
    booked = await api.post(path_of(url), data={"csrf_token": csrf, "name": "Jane Typed", "email": "jane@typed.test"})
    assert booked.status == 200, await booked.text()
    emails = await addin_db.run_read(lambda conn: [row.client_email for row in conn.execute(select(bookings))])
    assert emails == ["jane@typed.test"]
    other = await api.post(
        path_of(body["times"][1]["url"]), data={"csrf_token": csrf, "name": "Mallory", "email": "mallory@evil.test"}
    )
    html = await other.text()
    assert other.status == 409
    assert "already booked" in html
    assert "jane@typed.test" not in html
    assert "/m/" not in html
    assert await count_bookings(addin_db) == 1
    page = await api.get(path_of(body["times"][1]["url"]))
    html = await page.text()
    assert "already booked" in html
    assert "jane@typed.test" not in html
    assert "/m/" not in html


# The rep picks the times; the recipient's zone from their earlier booking


async def free_times(api: TestClient, entra: Entra, **changes: Any) -> tuple[int, Any]:
    body: dict[str, Any] = {
        "type_id": await discovery_id(api, entra),
        "recipient": RECIPIENT,
        "rep_time_zone": "Pacific Standard Time",
    }
    body.update(changes)
    response = await api.post("/addin/api/free-times", json=body, headers={"Authorization": f"Bearer {entra.token()}"})
    return response.status, await response.json()


async def book_on_page(api: TestClient, page: str, start: datetime, email: str, zone: str) -> None:
    response = await api.post(
        f"/book/{page}/bookings",
        json={"start": start.isoformat(), "name": "Jane", "email": email, "time_zone": zone, "answers": {}},
    )
    assert response.status == 201, await response.text()


async def test_the_rep_picks_which_free_times_go_into_the_email(
    api: TestClient, entra: Entra, addin_db: Database
) -> None:
    status, offered = await free_times(api, entra)
    assert status == 200, offered
    assert len(offered["times"]) > 5
    picked = [offered["times"][index]["starts_at"] for index in (4, 1, 7)]
    status, body = await suggest(api, entra, starts=picked, time_zone=offered["time_zone"])
    assert status == 200, body
    assert [item["starts_at"] for item in body["times"]] == sorted(picked)
    labels = {item["starts_at"]: item["label"] for item in offered["times"]}
    assert [item["label"] for item in body["times"]] == [labels[start] for start in sorted(picked)]
    assert all(f'href="{item["url"]}"' in body["html"] for item in body["times"])
    assert offered["times"][0]["label"] not in body["html"]
    assert await count_bookings(addin_db) == 0


async def test_a_picked_time_taken_meanwhile_is_refused_with_its_label(api: TestClient, entra: Entra) -> None:
    _, offered = await free_times(api, entra)
    taken = offered["times"][2]
    await book_on_page(api, "contoso/discovery", datetime.fromisoformat(taken["starts_at"]), "x@else.test", "UTC")
    starts = [offered["times"][0]["starts_at"], taken["starts_at"]]
    status, body = await suggest(api, entra, starts=starts, time_zone=offered["time_zone"])
    assert (status, body["error"]["code"]) == (409, "time_not_free")
    assert taken["label"] in body["error"]["message"]


@pytest.mark.parametrize(
    "starts",
    [[], ["2026-11-24T10:00:00"], ["tomorrow"], [1], ["2026-11-24T10:00:00+00:00"] * 6, "2026-11-24T10:00:00+00:00"],
)
async def test_bad_picked_times_get_a_400(api: TestClient, entra: Entra, starts: Any) -> None:
    status, body = await suggest(api, entra, starts=starts)
    assert (status, body["error"]["code"]) == (400, "invalid_request")


async def test_the_recipients_zone_comes_from_their_earlier_booking_in_this_tenant_only(
    api: TestClient, entra: Entra, clock: FixedClock
) -> None:
    # Without any booking by that address, times are in the rep's Outlook zone (a Windows name, mapped through CLDR).
    status, offered = await free_times(api, entra)
    assert (status, offered["time_zone"], offered["time_zone_source"]) == (200, "America/Los_Angeles", "yours")
    # The same address booked with another customer of Slotwise: that tells this tenant nothing.
    await book_on_page(
        api,
        "fabrikam/secret-type",
        datetime.fromisoformat("2026-11-30T10:00:00+00:00"),
        "JANE@client.test",
        "Asia/Tokyo",
    )
    _, offered = await free_times(api, entra)
    assert offered["time_zone"] == "America/Los_Angeles"
    # Once they booked with this tenant, their zone is used, in the candidates and in the inserted block.
    await book_on_page(api, "contoso/discovery", clock.moment + timedelta(days=3), "Jane@Client.test", "Europe/Berlin")
    _, offered = await free_times(api, entra)
    assert (offered["time_zone"], offered["time_zone_source"]) == ("Europe/Berlin", "recipient")
    first = datetime.fromisoformat(offered["times"][0]["starts_at"]).astimezone(ZoneInfo("Europe/Berlin"))
    assert offered["times"][0]["label"] == f"{first:%A} {first.day} {first:%B}, {first:%H:%M}"
    status, body = await suggest(api, entra, time_zone=None, starts=[offered["times"][0]["starts_at"]])
    assert (status, body["time_zone"], body["time_zone_source"]) == (200, "Europe/Berlin", "recipient")
    assert "Times in Europe/Berlin" in body["html"]
    # The rep can still choose another zone in the pane.
    _, chosen = await free_times(api, entra, time_zone="Tokyo Standard Time")
    assert (chosen["time_zone"], chosen["time_zone_source"]) == ("Asia/Tokyo", "chosen")


async def test_see_all_times_lists_free_times_for_the_same_recipient_and_books_once_with_the_block(
    api: TestClient, entra: Entra, addin_db: Database
) -> None:
    _, body = await suggest(api, entra)
    see_all = path_of(body["see_all_url"])
    page = await api.get(see_all + "?name=Mallory&email=mallory@evil.test")
    html = await page.text()
    assert page.status == 200, html
    assert "Times in Europe/London." in html
    assert "Jane &lt;b&gt;Client&lt;/b&gt; &lt;jane@client.test&gt;" in html
    assert "mallory" not in html.lower()
    listed = re.findall(r'<li><a href="(/addin/t/[^"]+)">(\d{1,2}:\d\d\u202f[AP]M)</a></li>', html)
    # Dana is free all day, every day: the page stops at 120 times and says so.
    assert len(listed) == 120
    assert "These are the first 120 free times." in html
    assert await count_bookings(addin_db) == 0
    # A later time than any in the email, booked from the list: Jane's name and email come from the signed link.
    status, booked = await confirm(api, listed[9][0])
    assert status == 200, booked
    assert "re booked for" in booked
    emails = await addin_db.run_read(lambda conn: [row.client_email for row in conn.execute(select(bookings))])
    assert emails == ["jane@client.test"]
    # The block is booked: the email's own times and the list itself now say so and point to that booking.
    for path in (path_of(body["times"][0]["url"]), see_all):
        html = await (await api.get(path)).text()
        assert "already booked" in html
        assert 'href="http://testserver/m/' in html
    status, _ = await confirm(api, listed[3][0])
    assert await count_bookings(addin_db) == 1


async def test_a_see_all_link_and_a_time_link_cannot_stand_in_for_each_other(api: TestClient, entra: Entra) -> None:
    _, body = await suggest(api, entra)
    time_token = path_of(body["times"][0]["url"]).rsplit("/", 1)[1]
    all_token = path_of(body["see_all_url"]).rsplit("/", 1)[1]
    assert (await api.get(f"/addin/all/{time_token}")).status == 400
    assert (await api.get(f"/addin/t/{all_token}")).status == 400


async def test_a_taken_times_page_links_to_the_signed_list_of_all_times(api: TestClient, entra: Entra) -> None:
    _, body = await suggest(api, entra)
    taken = body["times"][0]
    await book_on_page(api, "contoso/discovery", datetime.fromisoformat(taken["starts_at"]), "x@else.test", "UTC")
    status, html = await confirm(api, taken["url"])
    assert status == 409
    see_all = re.search(r'<a href="(/addin/all/[^"]+)">See all times</a>', html)
    assert see_all, html
    listed = await (await api.get(see_all.group(1))).text()
    assert "jane@client.test" in listed


async def test_a_reps_types_and_identity_follow_an_apply_without_a_restart(
    api: TestClient, entra: Entra, addin_db: Database, tmp_path: Path
) -> None:
    headers = {"Authorization": f"Bearer {entra.token()}"}
    before = await (await api.get("/addin/api/appointment-types", headers=headers)).json()
    assert "Discovery call" in [item["name"] for item in before["types"]]
    status, _ = await suggest(api, entra)
    assert status == 200
    changed = (FIXTURES / "teams_tenant.yaml").read_text()
    changed = changed.replace("name: Discovery call", "name: Discovery chat").replace("duration: 30", "duration: 45")
    path = tmp_path / "changed.yaml"
    path.write_text(changed)
    await apply_file(addin_db, path)
    after = await (await api.get("/addin/api/appointment-types", headers=headers)).json()
    assert "Discovery chat" in [item["name"] for item in after["types"]]
    chat = next(item["id"] for item in after["types"] if item["name"] == "Discovery chat")
    response = await api.post(
        "/addin/api/suggested-times", json={"type_id": chat, "recipient": RECIPIENT}, headers=headers
    )
    body = await response.json()
    assert response.status == 200, body
    assert "Discovery chat (45 minutes)" in body["html"]
    # The rep leaves the tenant file: their next call is refused, though this process knew them a moment ago.
    path.write_text(
        changed.replace("aad_object_id: 11111111-aaaa-4aaa-8aaa-000000000001", "").replace(
            "dana@contoso-it.example", "dana.new@contoso-it.example"
        )
    )
    await apply_file(addin_db, path)
    refused = await api.get("/addin/api/me", headers=headers)
    assert refused.status == 401
    assert (await refused.json())["error"]["code"] == "unknown_user"


async def test_a_warm_suggested_times_call_reads_the_database_no_more_than_the_booking_pages_slots_request(
    api: TestClient, entra: Entra, addin_db: Database
) -> None:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engines = [addin_db.engine.sync_engine]
    if getattr(addin_db, "_sync_engine", None) is not None:
        engines.append(addin_db._sync_engine)  # SQLite reads go through a synchronous engine of their own
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        type_id = await discovery_id(api, entra)
        token = entra.token()

        async def suggested() -> None:
            response = await api.post(
                "/addin/api/suggested-times",
                json={"type_id": type_id, "count": 3, "time_zone": "Europe/London", "recipient": RECIPIENT},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status == 200, await response.text()

        async def slots() -> None:
            response = await api.get("/book/contoso/discovery/slots?start=2026-11-23&end=2026-12-06")
            assert response.status == 200, await response.text()

        counts = []
        for call in (suggested, slots):
            await call()
            statements.clear()
            await call()
            counts.append(len(statements))
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
    assert counts[0] <= counts[1], counts


async def test_the_recipient_zone_look_up_reads_an_index_not_every_booking(addin_db: Database) -> None:
    """The look-up runs on every suggested-times call; on a tenant with years of bookings a scan of them all would be
    the slowest part of it, so the plan must use the (tenant, lower(address)) index of migration 0014."""
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql, sqlite

    query = (
        select(bookings.c.client_time_zone)
        .where(bookings.c.tenant_id == "t", func.lower(bookings.c.client_email) == "jane@client.test")
        .order_by(bookings.c.created_at.desc(), bookings.c.id.desc())
        .limit(1)
    )
    dialect = sqlite.dialect() if addin_db.is_sqlite else postgresql.dialect()
    compiled = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    async with addin_db.read() as conn:
        if addin_db.is_sqlite:
            plan = " ".join(str(row[-1]) for row in await conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
        else:
            # An empty table is cheapest to scan; forbidding sequential scans shows whether an index can serve.
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(str(row[0]) for row in await conn.execute(text(f"EXPLAIN {compiled}")))
    assert "ix_bookings_tenant_client_email" in plan, plan
