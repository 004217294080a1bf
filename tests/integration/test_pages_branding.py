"""A tenant's branding from its tenant file reaches every page: logo, display name, a contrast-safe accent colour,
its own privacy and terms links, host photos (else initials) and the team's name for round robin."""

from __future__ import annotations

import re
from pathlib import Path

from admin.rollout import apply_plan, plan_changes
from admin.tenant_yaml import load_tenant_file
from pages.branding import contrast_ratio
from storage.database import Database
from tests.conftest import FIXTURES, FixedClock, apply_file, start_client

BRANDING = """
branding:
  display_name: Acme Managed IT
  logo_url: https://cdn.acme.example/logo.png
  accent_colour: "#ffd400"
  privacy_url: https://acme.example/privacy
  terms_url: https://acme.example/terms
"""


def branded_file(tmp_path: Path) -> Path:
    text = (FIXTURES / "tenant.yaml").read_text()
    text = text.replace(
        "    email: alice@acme-it.example\n",
        "    email: alice@acme-it.example\n    photo_url: https://cdn.acme.example/alice.jpg\n",
    )
    path = tmp_path / "branded.yaml"
    path.write_text(text + BRANDING)
    return path


async def test_branding_photos_and_team_names_reach_the_pages(
    database: Database, tmp_path: Path, clock: FixedClock
) -> None:
    await apply_file(database, FIXTURES / "tenant.yaml")
    client = await start_client(database, tmp_path, clock)
    try:
        plain = await (await client.get("/book/acme/intro-call")).text()
        assert '<a href="/privacy">Privacy</a>' in plain
        assert "<style" not in plain, "no branding: Slotwise's own look"
        assert '<span class="initials" aria-hidden="true">AA</span>' in plain

        # The same tenant gains a branding section: an apply, then the pages follow without a restart.
        await apply_plan(database, await plan_changes(database, load_tenant_file(branded_file(tmp_path))))
        response = await client.get("/book/acme/intro-call")
        html = await response.text()
        assert '<a href="https://acme.example/privacy">Privacy</a>' in html
        assert '<a href="https://acme.example/terms">Terms</a>' in html
        assert '<img src="https://cdn.acme.example/logo.png" alt="Acme Managed IT"' in html
        assert '<p class="tenant">Acme Managed IT</p>' in html
        assert '<img src="https://cdn.acme.example/alice.jpg" alt="" width="48" height="48">' in html
        accent = re.search(r'<style nonce="([^"]+)">:root \{ --accent: (#[0-9a-f]{6}); \}</style>', html)
        assert accent, "the accent colour is set"
        assert accent.group(2) != "#ffd400", "yellow fails contrast with white text and is darkened"
        assert contrast_ratio(accent.group(2), "#ffffff") >= 4.5
        policy = response.headers["Content-Security-Policy"]
        assert f"style-src 'self' 'nonce-{accent.group(1)}'" in policy, "only that one inline style is allowed"
        assert "img-src 'self' data: https:" in policy

        round_robin = await (await client.get("/book/acme/demo")).text()
        assert "<span>Sales Team</span>" in round_robin, "round robin shows the team, not whoever is free"
        assert "Alice Adams" not in round_robin
        personal = await (await client.get("/u/acme/alice")).text()
        assert '<img src="https://cdn.acme.example/alice.jpg"' in personal
        assert '<a href="https://acme.example/privacy">Privacy</a>' in personal
        team = await (await client.get("/t/acme/sales")).text()
        assert '<span class="initials" aria-hidden="true">ST</span>' in team
        # The other tenant keeps its own (default) look: branding never leaks across tenants.
        await apply_file(database, FIXTURES / "other_tenant.yaml")
        other = await (await client.get("/book/globex/intro-call")).text()
        assert "acme.example" not in other
        assert "<style" not in other
    finally:
        await client.close()


async def test_removing_the_branding_section_brings_back_the_default_look(
    database: Database, tmp_path: Path, clock: FixedClock
) -> None:
    await apply_plan(database, await plan_changes(database, load_tenant_file(branded_file(tmp_path))))
    client = await start_client(database, tmp_path, clock)
    try:
        assert "acme.example/privacy" in await (await client.get("/book/acme/intro-call")).text()
        await apply_file(database, FIXTURES / "tenant.yaml")
        html = await (await client.get("/book/acme/intro-call")).text()
        assert "acme.example" not in html
        assert '<a href="/privacy">Privacy</a>' in html
    finally:
        await client.close()
