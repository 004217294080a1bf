"""Hosts' Microsoft 365 photos on the booking pages: a tenant connected to Graph (the stand-in over real HTTP, msal
against its TLS login) gets each host's photo in the background, and the pages show it from our own origin; a
photo_url in the tenant file wins, hosts without a photo keep their initials, and nothing crosses tenants."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from app import TenantAdapters, apply_tenant_file
from settings import Settings
from storage.database import Database
from storage.secrets import SecretBox
from storage.tables import tenants, users
from tests.conftest import FIXTURES, FixedClock, apply_file, make_settings, start_client
from tests.fakes.graph import FakeGraphServer, generated_png, serve_fake_graph
from tests.integration.test_graph_profile_photos import jpeg_bytes
from workflows.photo_sync import HostPhotoRefresher

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:msgraph"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:kiota_abstractions"),
]

MORGAN, RILEY, SAM = "morgan@m365-it.example", "riley@m365-it.example", "sam@m365-it.example"
HOURS = '{{mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"], thu: ["09:00-17:00"]}}'
TENANT = f"""
tenant: {{{{slug: m365, name: M365 IT, time_zone: UTC, holidays: []}}}}
users:
  - {{{{slug: morgan, name: Morgan Meyer, email: {MORGAN}, time_zone: UTC, primary_calendar: m365, working_hours: {HOURS}}}}}
  - {{{{slug: riley, name: Riley Reed, email: {RILEY}, time_zone: UTC, primary_calendar: m365, working_hours: {HOURS}}}}}
  - slug: sam
    name: Sam Stone
    email: {SAM}
    photo_url: https://cdn.m365-it.example/sam.png
    time_zone: UTC
    primary_calendar: m365
    working_hours: {HOURS}
appointment_types:
  - slug: call
    name: Call with Morgan
    duration: 30
    increment: 30
    location: {{{{kind: teams}}}}
    host: {{{{user: morgan}}}}
integrations:
  m365:
    vendor: graph
    tenant_id: {{tenant_id}}
    client_id: {{client_id}}
    authority_host: {{authority}}
    authority_ca_file: {{ca_file}}
    graph_base_url: {{graph}}
    secrets_from_env: {{{{client_secret: PHOTOS_GRAPH_SECRET}}}}
"""
IMG = re.compile(r'<img src="(/photos/m365/[^"?]+\?v=[0-9a-f]{12})" alt="" width="(?:48|64)" height="(?:48|64)">')


@dataclass
class Site:
    fake: FakeGraphServer
    client: TestClient
    refresher: HostPhotoRefresher
    clock: FixedClock
    database: Database
    tenant_file: Path
    settings: Settings

    async def photo_of(self, user_slug: str) -> str | None:
        """The /photos URL the personal page shows for the user, or None (initials or another URL)."""
        html = await (await self.client.get(f"/u/m365/{user_slug}")).text()
        found = IMG.search(html)
        return found.group(1) if found else None

    async def page(self, user_slug: str) -> str:
        return await (await self.client.get(f"/u/m365/{user_slug}")).text()

    def photo_requests(self, mailbox: str) -> list[str]:
        return [entry.path for entry in self.fake.graph_requests("/$value") if f"/users/{mailbox}/" in entry.path]


@pytest.fixture
async def site(
    database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Site]:
    fake = FakeGraphServer()
    fake.set_photo(MORGAN, jpeg_bytes())
    fake.set_photo(SAM, generated_png())
    async with serve_fake_graph(fake) as graph:
        monkeypatch.setenv("PHOTOS_GRAPH_SECRET", fake.client_secret)
        path = tmp_path / "m365.yaml"
        path.write_text(
            TENANT.format(
                tenant_id=fake.tenant_id,
                client_id=fake.client_id,
                authority=graph.authority_host,
                ca_file=graph.ca_file,
                graph=graph.graph_base_url,
            )
        )
        settings = make_settings(tmp_path)
        await apply_tenant_file(database, settings, path, dry_run=False)
        await apply_file(database, FIXTURES / "other_tenant.yaml")
        async with aiohttp.ClientSession() as session:
            adapters = TenantAdapters(database, SecretBox(settings.resolved_secret()), session)
            refresher = HostPhotoRefresher(database, adapters.photos, clock=clock.now)
            client = await start_client(database, tmp_path, clock)
            try:
                yield Site(fake, client, refresher, clock, database, path, settings)
            finally:
                await client.close()
                photos = await adapters.photos(await _tenant_id(database))
                if photos is not None:
                    await photos.aclose()  # type: ignore[attr-defined]


async def _tenant_id(database: Database) -> str:
    async with database.read() as conn:
        return str((await conn.execute(select(tenants.c.id).where(tenants.c.slug == "m365"))).scalar_one())


async def test_a_hosts_microsoft_365_photo_reaches_the_booking_page_from_our_own_origin(site: Site) -> None:
    assert await site.photo_of("morgan") is None, "before the refresh: initials"
    assert '<span class="initials" aria-hidden="true">MM</span>' in await site.page("morgan")

    assert await site.refresher.refresh_all() == 2, "Morgan and Riley are asked; Sam has a photo_url"

    url = await site.photo_of("morgan")
    assert url is not None, "the page links to the stored photo"
    booking_html = await (await site.client.get("/book/m365/call")).text()
    assert f'<img src="{url}" alt="" width="48" height="48">' in booking_html
    response = await site.client.get(url)
    assert response.status == 200
    assert await response.read() == site.fake.photos[MORGAN].content
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["Cache-Control"] == "public, max-age=3600"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    etag = response.headers["ETag"]
    again = await site.client.get(url, headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    assert (await site.client.get(url, headers={"If-None-Match": '"something-else"'})).status == 200

    # Riley has no Microsoft 365 photo: initials. Sam's tenant-file photo wins over the one in Microsoft 365.
    assert await site.photo_of("riley") is None
    assert '<span class="initials" aria-hidden="true">RR</span>' in await site.page("riley")
    assert '<img src="https://cdn.m365-it.example/sam.png"' in await site.page("sam")
    assert site.photo_requests(SAM) == [], "a host with a tenant-file photo is never asked for"

    # At most once per 12 hours: a second round asks Graph nothing.
    asked = len(site.fake.graph_requests("/$value"))
    assert await site.refresher.refresh_all() == 0
    assert len(site.fake.graph_requests("/$value")) == asked

    # Morgan's tenant file entry gains a photo_url: it wins over the stored Microsoft 365 photo at once.
    text = site.tenant_file.read_text()
    site.tenant_file.write_text(
        text.replace(f"email: {MORGAN},", f"email: {MORGAN}, photo_url: https://cdn.m365-it.example/morgan.png,")
    )
    await apply_tenant_file(site.database, site.settings, site.tenant_file, dry_run=False)
    assert await site.photo_of("morgan") is None
    assert '<img src="https://cdn.m365-it.example/morgan.png"' in await site.page("morgan")


async def test_a_photo_is_served_only_under_its_own_tenant(site: Site) -> None:
    await site.refresher.refresh_all()
    url = await site.photo_of("morgan")
    assert url is not None
    user_id = url.split("/")[3].split("?")[0]
    other = await site.client.get(f"/photos/globex/{user_id}")
    assert other.status == 404
    assert "find that page" in await other.text()
    as_json = await site.client.get(f"/photos/globex/{user_id}", headers={"Accept": "application/json"})
    assert as_json.status == 404
    assert (await as_json.json())["error"]["code"] == "not_found"
    for path in (f"/photos/nobody/{user_id}", "/photos/m365/no-such-user", f"/photos/m365/{'x' * 300}"):
        assert (await site.client.get(path)).status == 404, path
    riley_id = await _user_id(site, "riley")
    assert (await site.client.get(f"/photos/m365/{riley_id}")).status == 404, "no photo stored for Riley"


async def _user_id(site: Site, slug: str) -> str:
    async with site.database.read() as conn:
        return str(
            (
                await conn.execute(
                    select(users.c.id)
                    .join(tenants, tenants.c.id == users.c.tenant_id)
                    .where(tenants.c.slug == "m365", users.c.slug == slug)
                )
            ).scalar_one()
        )


async def test_a_graph_failure_keeps_the_photo_and_a_removed_photo_goes(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    await site.refresher.refresh_all()
    url = await site.photo_of("morgan")
    assert url is not None
    stored = site.fake.photos[MORGAN].content

    # Half a day later Graph is unavailable: the photo the pages show stays, and the failure is logged once.
    site.clock.moment += timedelta(hours=13)
    site.fake.fail_next(503)
    with caplog.at_level(logging.WARNING, logger="slotwise.photo_sync"):
        assert await site.refresher.refresh_all() == 0
    warnings = [record for record in caplog.records if record.name == "slotwise.photo_sync"]
    assert len(warnings) == 1
    assert "503" in warnings[0].getMessage()
    assert site.fake.client_secret not in caplog.text
    assert "fake-graph-" not in caplog.text, "no bearer token in the log"
    assert await site.photo_of("morgan") == url
    assert await (await site.client.get(url)).read() == stored

    # Later still, Morgan has removed the photo in Microsoft 365: the page falls back to initials.
    site.fake.remove_photo(MORGAN)
    site.clock.moment += timedelta(hours=1)
    assert await site.refresher.refresh_all() == 2
    assert await site.photo_of("morgan") is None
    assert '<span class="initials" aria-hidden="true">MM</span>' in await site.page("morgan")
    assert (await site.client.get(url)).status == 404

    # A new photo later gets a new URL, so no browser shows the old one from its cache.
    site.fake.set_photo(MORGAN, jpeg_bytes())
    site.clock.moment += timedelta(hours=13)
    await site.refresher.refresh_all()
    new_url = await site.photo_of("morgan")
    assert new_url is not None
    assert new_url != url
    assert await (await site.client.get(new_url)).read() == site.fake.photos[MORGAN].content


async def test_a_photo_that_is_not_a_small_jpeg_or_png_is_not_kept(site: Site) -> None:
    # Microsoft 365 answers a GIF for Morgan and a JPEG above the 200 KB cap for Riley: both keep their initials.
    site.fake.set_photo(MORGAN, b"GIF89a" + bytes(200), content_type="image/gif")
    site.fake.set_photo(RILEY, jpeg_bytes() + bytes(200 * 1024))
    assert await site.refresher.refresh_all() == 2
    assert await site.photo_of("morgan") is None
    assert await site.photo_of("riley") is None
    assert '<span class="initials" aria-hidden="true">RR</span>' in await site.page("riley")
    for slug in ("morgan", "riley"):
        assert (await site.client.get(f"/photos/m365/{await _user_id(site, slug)}")).status == 404

    # The same host's photo within the limits is kept at the next refresh.
    site.fake.set_photo(RILEY, generated_png())
    site.clock.moment += timedelta(hours=13)
    await site.refresher.refresh_all()
    url = await site.photo_of("riley")
    assert url is not None
    served = await site.client.get(url)
    assert served.headers["Content-Type"] == "image/png"
    assert await served.read() == site.fake.photos[RILEY].content
