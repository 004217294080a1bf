"""PsaClient.match_recipient (issue 11, item 4): one contract for every PSA adapter, against its vendor stand-in."""

from __future__ import annotations

import pytest

from scheduling.errors import IntegrationAuthError, IntegrationUnavailable
from scheduling.model import PsaRecordKind
from scheduling.ports import MATCHED_OPPORTUNITIES_LIMIT
from tests.contracts.pairs import PsaPair


def readings_of(pair: PsaPair) -> list[str]:
    return ["", *pair.fake.readings]


def everything(pair: PsaPair) -> dict[PsaRecordKind, list[dict[str, object]]]:
    return {kind: pair.fake.records(kind) for kind in PsaRecordKind}


async def test_a_known_address_matches_its_contact_company_and_newest_open_opportunities(psa: PsaPair) -> None:
    jane = psa.fake.add_contact("Jane Doe", "jane@acme.example")
    other = psa.fake.add_contact("Otto Other", "otto@elsewhere.example")
    opened: list[str] = []
    if psa.supports_opportunities:
        psa.fake.add_opportunity("Won long ago", contact=jane, open_=False)
        opened.append(psa.fake.add_opportunity("Firewall refresh", contact=jane))
        psa.fake.add_opportunity("Someone else's deal", contact=other)
        opened.append(psa.fake.add_opportunity("Acme-wide backup plan", contact=jane, for_company_only=True))
        for index in range(MATCHED_OPPORTUNITIES_LIMIT):
            opened.append(psa.fake.add_opportunity(f"Upsell {index}", contact=jane))
        psa.fake.add_opportunity("Lost last week", contact=jane, open_=False)
    before = everything(psa)

    match = await psa.client.match_recipient("  JANE@acme.example ")

    assert match is not None
    assert match.contact == jane
    assert match.company_name == psa.fake.company_name(jane.company_id) == "acme.example"
    if not psa.supports_opportunities:
        assert match.opportunities == ()
    else:
        newest = sorted(opened, key=int, reverse=True)[:MATCHED_OPPORTUNITIES_LIMIT]
        assert [opportunity.opportunity_id for opportunity in match.opportunities] == newest
        assert all(opportunity.name.startswith(("Upsell", "Acme-wide")) for opportunity in match.opportunities)
        assert all(opportunity.stage for opportunity in match.opportunities)
    # A look-up never creates or changes anything at the PSA.
    assert everything(psa) == before


async def test_a_company_wide_open_opportunity_is_offered_and_closed_ones_never(psa: PsaPair) -> None:
    jane = psa.fake.add_contact("Jane Doe", "jane@acme.example")
    if not psa.supports_opportunities:
        match = await psa.client.match_recipient("jane@acme.example")
        assert match is not None
        assert match.opportunities == ()
        return
    company_wide = psa.fake.add_opportunity("Acme-wide backup plan", contact=jane, for_company_only=True)
    psa.fake.add_opportunity("Won long ago", contact=jane, open_=False)
    match = await psa.client.match_recipient("jane@acme.example")
    assert match is not None
    assert [(item.opportunity_id, item.name) for item in match.opportunities] == [
        (company_wide, "Acme-wide backup plan")
    ]


async def test_a_contact_of_the_catch_all_company_is_never_offered_other_prospects_opportunities(
    psa: PsaPair,
) -> None:
    robin = await psa.client.find_or_create_contact("Robin Newcomer", "robin@newcomer.example")
    sam = await psa.client.find_or_create_contact("Sam Prospect", "sam@prospect.example")
    assert robin is not None
    assert sam is not None
    assert robin.company_id == sam.company_id == psa.fallback_company_id
    if psa.supports_opportunities:
        psa.fake.add_opportunity("Sam's first order", contact=sam)
        own = psa.fake.add_opportunity("Robin's trial", contact=robin)
    match = await psa.client.match_recipient("robin@newcomer.example")
    assert match is not None
    assert match.contact == robin
    assert match.company_name == psa.fake.company_name(psa.fallback_company_id)
    wanted = [own] if psa.supports_opportunities else []
    assert [item.opportunity_id for item in match.opportunities] == wanted


@pytest.mark.parametrize("address", ["nobody@acme.example", "jane@acme.example.org", "ane@acme.example", "", "  "])
async def test_an_address_the_psa_does_not_hold_matches_nothing(psa: PsaPair, address: str) -> None:
    psa.fake.add_contact("Jane Doe", "jane@acme.example")
    assert await psa.client.match_recipient(address) is None


TRICKY_ADDRESSES = [
    'jane"@acme.example',
    '"jane"@acme.example',
    "jane'@acme.example",
    "jane%@acme.example",
    "%@acme.example",
    "j_ne@acme.example",
    "jane*@acme.example",
    "*@acme.example",
    "jane\\@acme.example",
    "jane\\@acme.example\\",
    "[j]ane@acme.example",
    'x@acme.example" OR communicationItems/value like "%',
    '{"op": "exist", "field": "id"}@acme.example',
    "' OR 1=1 --@acme.example",
    "jane@acme.example' OR 'a'='a",
    "jane@acme.example%",
    'jane@acme.example"',
]
"""Addresses holding the quote, wildcard and escape characters of a `conditions` string (ConnectWise), a JSON string
(Autotask) or a SQL LIKE pattern (any vendor's `search`/`contains`). Each must be taken as text: it neither breaks
the request nor matches jane@acme.example. Each holds an `@`, so each really reaches the vendor."""


async def test_quotes_wildcards_and_backslashes_in_an_address_neither_break_nor_match_wrongly(psa: PsaPair) -> None:
    jane = psa.fake.add_contact("Jane Doe", "jane@acme.example")
    obrien = psa.fake.add_contact("Pat O'Brien", "o'brien_100%@acme.example")
    for reading in readings_of(psa):
        psa.fake.use_reading(reading)
        for address in TRICKY_ADDRESSES:
            assert await psa.client.match_recipient(address) is None, f"{address!r} ({reading or 'default'})"
        found = await psa.client.match_recipient("o'brien_100%@acme.example")
        assert found is not None
        assert found.contact == obrien
        assert await psa.client.match_recipient("o'brienX100%@acme.example") is None
        again = await psa.client.match_recipient("jane@acme.example")
        assert again is not None
        assert again.contact == jane


async def test_refused_credentials_raise_the_auth_error_every_call_raises(psa: PsaPair) -> None:
    psa.fake.add_contact("Jane Doe", "jane@acme.example")
    psa.fake.revoke_credentials()
    with pytest.raises(IntegrationAuthError):
        await psa.client.match_recipient("jane@acme.example")
    with pytest.raises(IntegrationAuthError):
        await psa.client.find_contact("jane@acme.example")


async def test_a_match_while_the_psa_is_down_or_throttling_is_retryable(psa: PsaPair) -> None:
    jane = psa.fake.add_contact("Jane Doe", "jane@acme.example")
    psa.fake.fail_next(503)
    with pytest.raises(IntegrationUnavailable):
        await psa.client.match_recipient("jane@acme.example")
    psa.fake.fail_next(429, retry_after=30)
    with pytest.raises(IntegrationUnavailable) as raised:
        await psa.client.match_recipient("jane@acme.example")
    assert raised.value.retry_after_seconds == 30
    match = await psa.client.match_recipient("jane@acme.example")
    assert match is not None
    assert match.contact == jane
