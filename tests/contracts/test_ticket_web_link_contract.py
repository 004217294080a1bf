"""PsaClient.ticket_web_url: the "Open ticket" link on the host's card and booking page, for every PSA adapter against
its vendor stand-in. Each vendor's form and its sources are in integrations/<vendor>/SOURCES.md, "Ticket web links"."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

from pydantic import SecretStr

from integrations.connectwise.adapter import ConnectWisePsa
from integrations.connectwise.config import ConnectWiseConfig
from integrations.halopsa.adapter import HaloPsa
from integrations.halopsa.config import HaloPsaConfig
from tests.contracts.pairs import PsaPair


async def test_a_ticket_opens_on_the_vendors_own_ticket_screen(psa: PsaPair) -> None:
    pat = psa.fake.add_contact("Pat Buyer", "pat@client.example")
    ticket_id = psa.fake.add_ticket("Printer on fire", contact=pat)
    number = psa.fake.ticket_number(ticket_id)

    link = urlsplit(await psa.client.ticket_web_url(str(ticket_id), number))
    query = parse_qs(link.query)

    if psa.vendor == "connectwise":
        assert link.path.endswith("/services/system_io/Service/fv_sr100_request.rails")
        assert query == {"service_recid": [str(ticket_id)], "companyName": [psa.fake.company_id]}  # type: ignore[attr-defined]
    elif psa.vendor == "autotask":
        # Built on the web root zone discovery names, never on the API's host path.
        assert link.path == "/Autotask/AutotaskExtend/ExecuteCommand.aspx"
        assert query == {"Code": ["OpenTicketDetail"], "TicketNumber": [number]}
        assert number.startswith("T")
        assert number != str(ticket_id)
    else:
        assert (link.path, query) == ("/ticket", {"id": [str(ticket_id)]})
    assert link.scheme in ("http", "https")
    assert link.netloc


async def test_no_link_for_what_cannot_be_a_ticket(psa: PsaPair) -> None:
    assert await psa.client.ticket_web_url("", "") == ""
    if psa.vendor != "autotask":
        assert await psa.client.ticket_web_url("not-a-number", "") == ""


def test_connectwise_links_use_the_web_host_not_the_api_host() -> None:
    config = ConnectWiseConfig(
        site_url="https://api-na.myconnectwise.net",
        company_id="acmeit",
        public_key="pub",
        private_key=SecretStr("private"),
        client_id=SecretStr("client"),
    )
    psa = ConnectWisePsa(config, session=None)  # type: ignore[arg-type]  # no request is made
    link = asyncio.run(psa.ticket_web_url("4711", "4711"))
    assert link == (
        "https://na.myconnectwise.net/v4_6_release/services/system_io/Service/fv_sr100_request.rails"
        "?service_recid=4711&companyName=acmeit"
    )


def test_halopsa_links_drop_the_api_path_of_the_api_url() -> None:
    config = HaloPsaConfig(
        api_url="https://acme.halopsa.com/api/",
        auth_url="https://acme.halopsa.com/auth",
        client_id="client",
        client_secret=SecretStr("secret"),
    )
    psa = HaloPsa(config, session=None)  # type: ignore[arg-type]  # no request is made
    assert asyncio.run(psa.ticket_web_url("97784", "97784")) == "https://acme.halopsa.com/ticket?id=97784"
