"""The HaloPSA pair for the PSA contract suite: HaloPsa on a real ClientSession against FakeHaloPsaServer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from integrations.halopsa.adapter import HaloPsa
from integrations.halopsa.config import HaloPsaConfig
from tests.contracts.pairs import PsaPair
from tests.fakes.halopsa import DEMO_AGENT_ID, DEMO_FALLBACK_CLIENT_ID, FakeHaloPsaServer


def config_for(server: TestServer, fake: FakeHaloPsaServer, **changes: Any) -> HaloPsaConfig:
    base = str(server.make_url("")).rstrip("/")
    values: dict[str, Any] = {
        "api_url": f"{base}/api",
        "auth_url": f"{base}/auth",
        "tenant": fake.tenant,
        "client_id": fake.client_id,
        "client_secret": SecretStr(fake.client_secret),
        "timeout_seconds": 2.0,
    }
    values.update(changes)
    return HaloPsaConfig(**values)


@asynccontextmanager
async def open_fake_and_client(
    fake: FakeHaloPsaServer | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    **config_changes: Any,
) -> AsyncIterator[tuple[HaloPsa, FakeHaloPsaServer, HaloPsaConfig]]:
    fake = fake or FakeHaloPsaServer()
    server = TestServer(fake.build_app(), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        config = config_for(server, fake, **config_changes)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            yield HaloPsa(config, session, clock=clock), fake, config
    finally:
        await server.close()


@asynccontextmanager
async def open_pair() -> AsyncIterator[PsaPair]:
    async with open_fake_and_client(fallback_client_id=DEMO_FALLBACK_CLIENT_ID) as (client, fake, _config):
        yield PsaPair(
            vendor="halopsa",
            client=client,
            fake=fake,
            member=str(DEMO_AGENT_ID),
            fallback_company_id=str(DEMO_FALLBACK_CLIENT_ID),
            supports_opportunities=False,
        )
