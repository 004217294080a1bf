"""The Autotask pair for the PSA contract suite: AutotaskPsa over real HTTP against FakeAutotaskServer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from pydantic import SecretStr

from integrations.autotask.adapter import AutotaskPsa
from integrations.autotask.config import AutotaskConfig
from tests.contracts.pairs import PsaPair
from tests.fakes.autotask import (
    DEMO_FALLBACK_COMPANY_ID,
    DEMO_QUEUE_ID,
    DEMO_RESOURCE_ID,
    DEMO_ROLE_ID,
    FakeAutotaskServer,
)


def config_for(fake: FakeAutotaskServer, **changes: Any) -> AutotaskConfig:
    values: dict[str, Any] = {
        "username": fake.username,
        "secret": SecretStr(fake.secret),
        "integration_code": SecretStr(fake.integration_code),
        "zone_lookup_url": fake.zone_lookup_url,
        "timeout_seconds": 2.0,
        "resource_role_id": DEMO_ROLE_ID,
        "ticket_queue_id": DEMO_QUEUE_ID,
    }
    values.update(changes)
    return AutotaskConfig(**values)


@asynccontextmanager
async def open_pair(**fake_options: Any) -> AsyncIterator[PsaPair]:
    fake = FakeAutotaskServer(**fake_options)
    await fake.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            client = AutotaskPsa(config_for(fake, fallback_company_id=DEMO_FALLBACK_COMPANY_ID), session)
            yield PsaPair(
                "autotask",
                client,
                fake,
                str(DEMO_RESOURCE_ID),
                fallback_company_id=str(DEMO_FALLBACK_COMPANY_ID),
                supports_opportunities=True,
            )
    finally:
        await fake.close()
