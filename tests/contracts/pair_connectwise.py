"""The ConnectWise pair for the PSA contract suite: ConnectWisePsa on a real ClientSession against the fake."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from integrations.connectwise.adapter import ConnectWisePsa
from integrations.connectwise.config import ConnectWiseConfig
from tests.contracts.pairs import PsaPair
from tests.fakes.connectwise import (
    DEMO_FALLBACK_COMPANY,
    DEMO_FALLBACK_COMPANY_ID,
    DEMO_MEMBER,
    FakeConnectWiseServer,
)


def config_for(server: TestServer, fake: FakeConnectWiseServer, **changes: Any) -> ConnectWiseConfig:
    values: dict[str, Any] = {
        "site_url": str(server.make_url("")).rstrip("/"),
        "codebase": fake.codebase,
        "company_id": fake.company_id,
        "public_key": fake.public_key,
        "private_key": SecretStr(fake.private_key),
        "client_id": SecretStr(fake.client_id),
        "timeout_seconds": 2.0,
    }
    values.update(changes)
    return ConnectWiseConfig(**values)


@asynccontextmanager
async def open_fake_and_client(
    fake: FakeConnectWiseServer | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    **config_changes: Any,
) -> AsyncIterator[tuple[ConnectWisePsa, FakeConnectWiseServer, ConnectWiseConfig]]:
    fake = fake or FakeConnectWiseServer()
    server = TestServer(fake.build_app(), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        config = config_for(server, fake, **config_changes)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            yield ConnectWisePsa(config, session, clock=clock), fake, config
    finally:
        await server.close()


@asynccontextmanager
async def open_pair() -> AsyncIterator[PsaPair]:
    async with open_fake_and_client(fallback_company_identifier=DEMO_FALLBACK_COMPANY) as (client, fake, _config):
        yield PsaPair(
            vendor="connectwise",
            client=client,
            fake=fake,
            member=DEMO_MEMBER,
            fallback_company_id=str(DEMO_FALLBACK_COMPANY_ID),
            supports_opportunities=True,
        )
