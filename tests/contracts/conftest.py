"""Parametrises the PSA contract suite over every vendor pair."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator

import pytest

from tests.contracts.pairs import PsaPair

VENDORS = ["connectwise", "autotask", "halopsa"]


@pytest.fixture(params=VENDORS)
async def psa(request: pytest.FixtureRequest) -> AsyncIterator[PsaPair]:
    module = importlib.import_module(f"tests.contracts.pair_{request.param}")
    async with module.open_pair() as pair:
        yield pair
