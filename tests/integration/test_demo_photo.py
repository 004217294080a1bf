"""The demo shows a Microsoft 365 photo: its Graph stand-in, started as `slotwise demo` starts it, gives one demo host
a profile photo (a generated PNG) that the tenant file does not override with a photo_url."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import aiohttp
import yaml

from app import DEMO_FILE, DEMO_STAND_INS
from tests.fakes.graph import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID, GRAPH_SCOPE


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _wait_for(port: int) -> None:
    for _ in range(200):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the Graph stand-in did not listen on {port}")


async def test_the_demo_graph_stand_in_gives_a_demo_host_a_profile_photo() -> None:
    [(module, _port, _label, extra)] = [entry for entry in DEMO_STAND_INS if entry[0] == "tests.fakes.graph"]
    mailboxes = [extra[index + 1] for index, arg in enumerate(extra) if arg == "--photo"]
    assert mailboxes, "the demo starts the Graph stand-in with a photo for someone"
    demo = yaml.safe_load(DEMO_FILE.read_text())
    hosts = {user["email"]: user for user in demo["users"]}
    for mailbox in mailboxes:
        assert mailbox in hosts, f"{mailbox} is a demo host"
        assert "photo_url" not in hosts[mailbox], "a tenant-file photo_url would hide the Microsoft 365 photo"
    assert demo["integrations"]["m365"]["vendor"] == "graph"

    port, tls_port = _free_port(), _free_port()
    args = ["-m", module, "--port", str(port), "--tls-port", str(tls_port)]
    args += [part for mailbox in mailboxes for part in ("--photo", mailbox)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=Path(DEMO_FILE).parent.parent, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        await _wait_for(port)
        await _wait_for(tls_port)
        async with aiohttp.ClientSession() as session:
            token_url = f"https://127.0.0.1:{tls_port}/{DEMO_TENANT_ID}/oauth2/v2.0/token"
            form = {
                "grant_type": "client_credentials",
                "client_id": DEMO_CLIENT_ID,
                "client_secret": DEMO_CLIENT_SECRET,
                "scope": GRAPH_SCOPE,
            }
            # The stand-in's login certificate is a throwaway one made at start; this test only needs a token.
            async with session.post(token_url, data=form, ssl=False) as answer:
                token = (await answer.json())["access_token"]
            url = f"http://127.0.0.1:{port}/v1.0/users/{mailboxes[0]}/photos/96x96/$value"
            async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as photo:
                assert photo.status == 200
                assert photo.content_type == "image/png"
                assert (await photo.read()).startswith(b"\x89PNG\r\n\x1a\n")
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=10)
