"""What a link, a log line and a stored fingerprint give away to someone without the server's key: nothing."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from itsdangerous import URLSafeSerializer
from sqlalchemy import select

from admin.connections import connection_writer, plan_connections
from admin.rollout import apply_plan, plan_changes
from admin.tenant_file import TenantFile
from admin.tenant_yaml import parse_tenant_text
from app import Overrides, create_app
from pages.access_log import RouteAccessLogger
from pages.links import LinkSigner
from storage.database import Database
from storage.secrets import SecretBox
from storage.tables import integration_connections, tenants
from tests.conftest import FIXTURES, FixedClock, make_settings
from tests.integration.test_booking_api import PAGE, booking_body

SECRET = "test-secret-key-that-is-long-enough-0123456789"
JSON = {"Accept": "application/json"}
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def old_signed_token(secret: str, purpose: str, tenant_id: str, subject_id: str, expires_at: datetime) -> str:
    """The token format LinkSigner.sign made before issue 9: itsdangerous-signed, readable without the key."""
    return URLSafeSerializer(secret, salt=f"slotwise.{purpose}").dumps(
        [tenant_id, subject_id, int(expires_at.timestamp())]
    )


def everything_readable_without_the_key(token: str) -> bytes:
    """Every part of the token base64-decoded (padding fixed), plus the inflated form of any part that is zlib
    data (itsdangerous compresses payloads; the compression hides nothing)."""
    readable = b""
    for part in token.split("."):
        try:
            raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            continue
        readable += raw
        with contextlib.suppress(zlib.error):
            readable += zlib.decompress(raw)
    return readable


async def tenant_id_of(database: Database, slug: str) -> str:
    async with database.read() as conn:
        return str((await conn.execute(select(tenants.c.id).where(tenants.c.slug == slug))).scalar_one())


async def book(client: TestClient) -> dict[str, str]:
    response = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def test_a_manage_token_reveals_neither_tenant_nor_booking_nor_expiry(
    client: TestClient, tenant_db: Database
) -> None:
    booked = await book(client)
    token = booked["manage_url"].removeprefix("http://testserver/m/")
    tenant_id = await tenant_id_of(tenant_db, "acme")
    expires = int(datetime(2026, 11, 24, 15, 30, tzinfo=UTC).timestamp())
    readable = everything_readable_without_the_key(token)
    assert readable
    for secret_part in (
        tenant_id.encode(),
        bytes.fromhex(tenant_id),
        booked["id"].encode(),
        bytes.fromhex(booked["id"]),
        str(expires).encode(),
        struct.pack(">I", expires),
    ):
        assert secret_part not in readable
    assert (await client.get(f"/m/{token}")).status == 200


async def test_changing_any_character_of_a_manage_token_makes_it_link_invalid(client: TestClient) -> None:
    token = (await book(client))["manage_url"].removeprefix("http://testserver/m/")
    assert set(token) <= set(BASE64URL)
    for position, char in enumerate(token):
        changed = "A" if char != "A" else "B"
        tampered = token[:position] + changed + token[position + 1 :]
        response = await client.get(f"/m/{tampered}/slots", params={"start": "2026-11-24", "end": "2026-11-24"})
        assert response.status == 404, f"changing character {position} still opened the booking"
        assert (await response.json())["error"]["code"] == "link_invalid"
    for cut in (token[:-1], token[:20], token + "A"):
        assert (await client.get(f"/m/{cut}", headers=JSON)).status == 404


async def test_a_token_made_with_another_key_or_for_another_purpose_is_404_and_an_expired_one_410(
    client: TestClient, tenant_db: Database, clock: FixedClock
) -> None:
    booked = await book(client)
    tenant_id = await tenant_id_of(tenant_db, "acme")
    expires = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
    ours = LinkSigner(SECRET)
    assert (await client.get(f"/m/{ours.sign('manage', tenant_id, booked['id'], expires)}")).status == 200
    foreign = LinkSigner("another-secret-key-that-is-long-enough-9876543210").sign(
        "manage", tenant_id, booked["id"], expires
    )
    response = await client.get(f"/m/{foreign}", headers=JSON)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "link_invalid"
    as_request = ours.sign("request", tenant_id, booked["id"], expires)
    response = await client.get(f"/m/{as_request}", headers=JSON)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "link_invalid"
    manage = booked["manage_url"].removeprefix("http://testserver")
    clock.moment = expires
    response = await client.get(manage, headers=JSON)
    assert response.status == 410
    assert (await response.json())["error"]["code"] == "link_expired"


async def test_a_link_sent_in_the_old_signed_format_opens_the_booking_until_it_expires(
    client: TestClient, tenant_db: Database, clock: FixedClock
) -> None:
    booked = await book(client)
    tenant_id = await tenant_id_of(tenant_db, "acme")
    expires = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
    old = old_signed_token(SECRET, "manage", tenant_id, booked["id"], expires)
    assert "." in old
    page = await client.get(f"/m/{old}")
    assert page.status == 200
    assert "Alice Adams" in await page.text()
    slots = await client.get(f"/m/{old}/slots", params={"start": "2026-11-25", "end": "2026-11-25", "tz": "UTC"})
    assert slots.status == 200
    tampered = old[:-5] + ("AAAAA" if not old.endswith("AAAAA") else "BBBBB")
    assert (await client.get(f"/m/{tampered}", headers=JSON)).status == 404
    assert (
        await client.get(f"/m/{old_signed_token(SECRET, 'request', tenant_id, booked['id'], expires)}")
    ).status == 404
    clock.moment = expires
    response = await client.get(f"/m/{old}", headers=JSON)
    assert response.status == 410
    assert (await response.json())["error"]["code"] == "link_expired"


async def test_new_links_are_never_made_in_the_old_format_and_are_shorter() -> None:
    tenant_id, booking_id = "e6dde8ba375e4770bc8fc942239cf32b", "9fb62e97a22145f8bb1dfa4b55a9a4bf"  # uuid4().hex
    expires = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
    new = LinkSigner(SECRET).sign("manage", tenant_id, booking_id, expires)
    old = old_signed_token(SECRET, "manage", tenant_id, booking_id, expires)
    assert "." not in new
    assert len(new) == 90
    assert len(new) < len(old)
    # A random nonce: the same claims never give the same token twice.
    assert new != LinkSigner(SECRET).sign("manage", tenant_id, booking_id, expires)


async def test_the_access_log_names_the_route_template_never_the_token_or_the_query(
    tenant_db: Database, tmp_path: Path, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(tmp_path), overrides=Overrides(clock=clock, database=tenant_db))
    access = logging.getLogger("slotwise.test.access")
    caplog.set_level(logging.INFO, logger=access.name)
    server = TestServer(app)
    # The same two arguments `web.run_app` takes (TestServer's constructor would silently drop them).
    await server.start_server(access_log_class=RouteAccessLogger, access_log=access)
    client = TestClient(server)
    try:
        booked = await book(client)
        manage = booked["manage_url"].removeprefix("http://testserver")
        token = manage.removeprefix("/m/")
        assert (await client.get(manage, params={"email": "dana@client.test"})).status == 200
        assert (await client.post(f"{manage}/cancel", json={})).status == 200
        assert (await client.get(f"/nowhere/{token}", params={"email": "dana@client.test"})).status == 404
    finally:
        # The server writes a request's line after sending its response; closing waits for that.
        await client.close()
    lines = [record.getMessage() for record in caplog.records if record.name == access.name]
    assert len(lines) == 4, lines
    joined = "\n".join(lines)
    assert token not in joined
    assert token[:16] not in joined
    assert "dana@client.test" not in joined
    assert "email" not in joined
    assert "?" not in joined
    assert '"POST /book/{tenant}/{type}/bookings" 201' in lines[0]
    assert '"GET /m/{token}" 200' in lines[1]
    assert '"POST /m/{token}/cancel" 200' in lines[2]
    assert '"GET <unmatched>" 404' in lines[3]
    assert lines[1].startswith("127.0.0.1 ")


CONNECTED = """\
integrations:
  email:
    vendor: smtp
    host: 127.0.0.1
    port: 2525
    start_tls: false
    username: bookings
    from_address: bookings@example.test
    from_name: Bookings
    secrets_from_env: {password: SHARED_SMTP_PASSWORD}
"""
PASSWORD = "correct horse battery staple"
ENV = {"SHARED_SMTP_PASSWORD": PASSWORD}


def tenant_file(fixture: str) -> TenantFile:
    return parse_tenant_text((FIXTURES / fixture).read_text() + CONNECTED)


async def planned_fingerprint(database: Database, file: TenantFile, box: SecretBox) -> str:
    [change] = await plan_connections(database, file, ENV, box=box)
    return change.fingerprint


async def test_one_password_in_two_tenants_gives_two_different_fingerprints(sqlite_database: Database) -> None:
    box = SecretBox(SECRET)
    acme = await planned_fingerprint(sqlite_database, tenant_file("tenant.yaml"), box)
    globex = await planned_fingerprint(sqlite_database, tenant_file("other_tenant.yaml"), box)
    assert acme != globex
    assert len(acme) == len(globex) == 64


async def test_a_fingerprint_is_keyed_and_not_the_bare_sha256_of_the_secret(sqlite_database: Database) -> None:
    file = tenant_file("tenant.yaml")
    fingerprint = await planned_fingerprint(sqlite_database, file, SecretBox(SECRET))
    for unkeyed in (
        hashlib.sha256(json.dumps({"password": PASSWORD}, sort_keys=True).encode()).hexdigest(),
        hashlib.sha256(PASSWORD.encode()).hexdigest(),
    ):
        assert fingerprint != unkeyed
    other_key = await planned_fingerprint(sqlite_database, file, SecretBox("another-secret-key-long-enough-98765"))
    assert fingerprint != other_key
    assert SecretBox(SECRET).fingerprint("acme", "psa", {"password": PASSWORD}) != SecretBox(SECRET).fingerprint(
        "acme", "email", {"password": PASSWORD}
    )


async def test_an_unchanged_connection_keeps_its_fingerprint_and_is_not_tested_again(
    sqlite_database: Database,
) -> None:
    box = SecretBox(SECRET)
    file = tenant_file("tenant.yaml")
    [first] = await plan_connections(sqlite_database, file, ENV, box=box)
    assert first.action == "create"
    await apply_plan(
        sqlite_database, await plan_changes(sqlite_database, file), extra_writes=connection_writer([first], box)
    )
    [again] = await plan_connections(sqlite_database, file, ENV, box=box)
    assert again.fingerprint == first.fingerprint
    assert again.action == "keep"
    [changed] = await plan_connections(sqlite_database, file, {"SHARED_SMTP_PASSWORD": "a new one"}, box=box)
    assert changed.action == "update"


async def test_a_connection_saved_with_an_unkeyed_fingerprint_is_tested_once_more_then_kept(
    sqlite_database: Database,
) -> None:
    box = SecretBox(SECRET)
    file = tenant_file("tenant.yaml")
    [first] = await plan_connections(sqlite_database, file, ENV, box=box)
    await apply_plan(
        sqlite_database, await plan_changes(sqlite_database, file), extra_writes=connection_writer([first], box)
    )
    unkeyed = hashlib.sha256(json.dumps({"password": PASSWORD}, sort_keys=True).encode()).hexdigest()
    async with sqlite_database.write() as conn:
        await conn.execute(integration_connections.update().values(secrets_fingerprint=unkeyed))
    [upgrade] = await plan_connections(sqlite_database, file, ENV, box=box)
    assert upgrade.action == "update"
    await apply_plan(
        sqlite_database, await plan_changes(sqlite_database, file), extra_writes=connection_writer([upgrade], box)
    )
    [after] = await plan_connections(sqlite_database, file, ENV, box=box)
    assert after.action == "keep"
