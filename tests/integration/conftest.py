"""Fixtures several integration files share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from tests.fakes.bot_identity import FakeBotIdentity
from tests.integration.test_addin_auth import Entra, pooled_key


@pytest.fixture
async def entra() -> AsyncIterator[Entra]:
    """Microsoft Entra's signing keys for work accounts ("common"), served by the stand-in over real HTTP."""
    fake = FakeBotIdentity()
    key = fake.add_tenant_key("common", "entra-common-1", private_key=pooled_key(0))
    server = TestServer(fake.build_app())
    await server.start_server()
    yield Entra(fake, key, str(server.make_url("")).rstrip("/"))
    await server.close()
