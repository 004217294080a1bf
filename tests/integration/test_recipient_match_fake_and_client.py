"""Recipient matching (PsaClient.match_recipient) against each vendor stand-in: what it costs in requests, that those
requests count against the vendor's limits, and the stand-ins' own rules for the endpoints it reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest

from integrations.autotask.adapter import AutotaskPsa
from integrations.autotask.client import AutotaskClient
from integrations.autotask.wire import condition
from integrations.connectwise.client import ConnectWiseClient
from integrations.rate_windows import InMemoryVendorLimits
from scheduling.errors import IntegrationRejected, IntegrationUnavailable
from tests.contracts.pair_autotask import config_for as autotask_config
from tests.contracts.pair_connectwise import open_fake_and_client as open_connectwise
from tests.contracts.pair_halopsa import open_fake_and_client as open_halopsa
from tests.fakes.autotask import DEMO_FALLBACK_COMPANY_ID, running_autotask_server
from tests.fakes.connectwise import DEMO_FALLBACK_COMPANY, FakeConnectWiseServer
from tests.fakes.halopsa import FakeHaloPsaServer

ADDRESS = "jane@acme.example"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as opened:
        yield opened


async def test_an_autotask_match_is_one_request_per_entity_and_spends_the_hourly_budget(
    session: aiohttp.ClientSession,
) -> None:
    async with running_autotask_server() as fake:
        jane = fake.add_contact("Jane Doe", ADDRESS)
        fake.add_opportunity("Firewall refresh", contact=jane)
        config = autotask_config(fake, requests_per_hour=6, fallback_company_id=DEMO_FALLBACK_COMPANY_ID)
        psa = AutotaskPsa(config, session, limits=InMemoryVendorLimits())

        match = await psa.match_recipient(ADDRESS)

        assert match is not None
        assert [item.name for item in match.opportunities] == ["Firewall refresh"]
        # Contacts query, Companies get, the Opportunities picklists (once per connection), Opportunities query.
        assert [(logged.method, logged.entity) for logged in fake.log] == [
            ("POST", "Contacts"),
            ("GET", "Companies"),
            ("GET", "Opportunities"),
            ("POST", "Opportunities"),
        ]
        [query] = [logged for logged in fake.log if logged.method == "POST" and logged.entity == "Opportunities"]
        assert query.body["MaxRecords"] <= 500
        assert "status" in query.body["IncludeFields"]
        # Six requests an hour: the second match needs three more and is held back after two, before Autotask
        # ever sees the request over budget.
        with pytest.raises(IntegrationUnavailable) as raised:
            await psa.match_recipient(ADDRESS)
        assert raised.value.retry_after_seconds is not None
        assert 3500 < raised.value.retry_after_seconds <= 3600
        assert len(fake.log) == 6
        assert fake.limit_errors == []


async def test_an_autotask_match_over_the_databases_hourly_quota_is_retryable_after_autotasks_retry_after(
    session: aiohttp.ClientSession,
) -> None:
    async with running_autotask_server(hourly_limit=100) as fake:
        fake.add_contact("Jane Doe", ADDRESS)
        psa = AutotaskPsa(autotask_config(fake, requests_per_hour=None), session, limits=InMemoryVendorLimits())
        fake.spend_quota(99)  # other integrations on this database
        with pytest.raises(IntegrationUnavailable) as raised:
            await psa.match_recipient(ADDRESS)
        assert raised.value.retry_after_seconds is not None
        assert raised.value.retry_after_seconds > 3000
        assert fake.limit_errors == ["hourly Companies"]


async def test_a_burst_of_autotask_matches_keeps_to_three_requests_per_endpoint(session: aiohttp.ClientSession) -> None:
    async with running_autotask_server(latency_seconds=0.03) as fake:
        contacts = [fake.add_contact(f"Person {index}", f"person{index}@acme.example") for index in range(8)]
        for contact in contacts:
            fake.add_opportunity(f"Deal for {contact.name}", contact=contact)
        psa = AutotaskPsa(autotask_config(fake), session, limits=InMemoryVendorLimits())
        matches = await asyncio.gather(*(psa.match_recipient(contact.email) for contact in contacts))
        assert [match.contact for match in matches if match is not None] == contacts
        assert fake.limit_errors == []
        assert all(logged.status != 429 for logged in fake.log)
        assert max(fake.peak_in_flight.values()) <= 3
        assert fake.peak_in_flight["Contacts"] == 3, "the burst should really have run three at a time"


async def test_the_autotask_stand_in_refuses_an_unknown_field_in_include_fields(session: aiohttp.ClientSession) -> None:
    async with running_autotask_server() as fake:
        client = AutotaskClient(autotask_config(fake), session, InMemoryVendorLimits())
        with pytest.raises(IntegrationRejected, match="Unable to find closedFlag in the Opportunities Entity"):
            await client.query_page(
                "Opportunities", [condition("eq", "status", 1)], include_fields=["id", "closedFlag"]
            )


async def test_a_connectwise_match_reads_the_open_statuses_once_and_counts_against_the_rate_limit() -> None:
    fake = FakeConnectWiseServer(rate_limit=5, rate_window=timedelta(minutes=10))
    jane = fake.add_contact("Jane Doe", ADDRESS)
    fake.add_opportunity("Firewall refresh", contact=jane)
    async with open_connectwise(fake, fallback_company_identifier=DEMO_FALLBACK_COMPANY) as (psa, _, _config):
        first = await psa.match_recipient(ADDRESS)
        assert first is not None
        assert [item.name for item in first.opportunities] == ["Firewall refresh"]
        paths = [logged.path.rsplit("/apis/3.0/", 1)[1] for logged in fake.request_log]
        assert paths == ["company/contacts", "sales/opportunities/statuses", "sales/opportunities"]
        [listing] = [logged for logged in fake.request_log if logged.path.endswith("/sales/opportunities")]
        assert listing.query["pageSize"] == "5"
        assert listing.query["orderBy"] == "id desc"
        assert "status/id in (1,5)" in listing.query["conditions"]
        assert await psa.match_recipient(ADDRESS) == first  # two requests: the statuses are known now
        assert len(fake.request_log) == 5
        # The window's five requests are spent: ConnectWise answers 429 with a Retry-After too long to wait here.
        with pytest.raises(IntegrationUnavailable) as raised:
            await psa.match_recipient(ADDRESS)
        assert raised.value.retry_after_seconds is not None
        assert raised.value.retry_after_seconds > 60
        assert fake.throttled == 1


async def test_the_connectwise_stand_in_refuses_a_closed_flag_condition_on_opportunities(
    session: aiohttp.ClientSession,
) -> None:
    async with open_connectwise() as (_psa, _fake, config):
        client = ConnectWiseClient(session, config)
        with pytest.raises(IntegrationRejected, match="Unknown field 'closedFlag'"):
            await client.get_list("sales/opportunities", {"conditions": "closedFlag=false"})
        statuses = await client.get_list("sales/opportunities/statuses", {"conditions": "closedFlag=false"})
        assert [row["name"] for row in statuses] == ["Open", "Waiting on Budget"]


async def test_a_halo_user_listed_without_its_client_name_is_named_from_the_client_itself() -> None:
    fake = FakeHaloPsaServer()
    jane = fake.add_contact("Jane Doe", ADDRESS)
    fake.drop_client_names()
    async with open_halopsa(fake) as (psa, _, _config):
        match = await psa.match_recipient(ADDRESS)
    assert match is not None
    assert match.contact == jane
    assert match.company_name == "acme.example"
    assert match.opportunities == ()
    assert [logged.path for logged in fake.request_log if logged.path.startswith("/api/")] == [
        "/api/Users",
        f"/api/Client/{jane.company_id}",
    ]
