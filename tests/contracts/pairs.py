"""The pairing every PSA adapter provides for the contract suite: our real client, and its vendor fake over HTTP.

Each vendor adds `tests/contracts/pair_<vendor>.py` with `open_pair() -> AsyncContextManager[PsaPair]`; the
suite in test_psa_contract.py runs unchanged against every one of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from scheduling.model import PsaContact, PsaRecordKind
from scheduling.ports import PsaClient


class FakePsaControl(Protocol):
    """What the suite may do to a vendor fake (all of it through the fake's own state, not our code)."""

    responses_lost: int
    """How many committed creates had their answer dropped by lose_next_response (proof the fault fired)."""

    def records(self, kind: PsaRecordKind) -> list[dict[str, Any]]:
        """Every record of that kind the fake holds, as the vendor would return it."""
        ...

    def fail_next(self, status: int, *, retry_after: int | None = None, message: str = "", count: int = 1) -> None:
        """Answer the next `count` API requests (token and zone look-ups excepted) with this status."""
        ...

    def lose_next_response(self) -> None:
        """Commit the next create, then drop the response (the client sees a timeout or reset)."""
        ...

    def revoke_credentials(self) -> None:
        """From now on, the credentials our client holds are wrong (401/403 the way the vendor says it)."""
        ...

    def add_contact(self, name: str, email: str) -> PsaContact:
        """Seed a contact (with its company) and return it as our client should find it."""
        ...

    def company_name(self, company_id: str) -> str:
        """The display name of a company (client) the fake holds; add_contact names a new one after the domain."""
        ...

    def add_opportunity(
        self, name: str, *, contact: PsaContact, open_: bool = True, for_company_only: bool = False, stage: str = ""
    ) -> str:
        """Seed an opportunity a rep entered in the PSA itself, on `contact`'s company: for that contact, or with
        `for_company_only` for the company but not this contact. `open_` False puts it in a closed status. Returns
        its id. Only where `supports_opportunities`."""
        ...

    def add_ticket(self, title: str, *, contact: PsaContact | None = None) -> int:
        """Seed a ticket someone opened in the PSA itself (not through Slotwise); returns its id. `contact` (one
        add_contact returned): the ticket is for that contact (ConnectWise `contact`, Autotask `contactID`, Halo
        `user_id`), on the contact's company."""
        ...

    def ticket_number(self, ticket_id: int) -> str:
        """The number the PSA displays for that ticket (Autotask: `ticketNumber`; ConnectWise and Halo: the id)."""
        ...

    busy_kinds: tuple[str, ...]
    """Every kind of the vendor's own busy time the fake can seed, first the default one (e.g. Autotask:
    "service_call", "appointment", "todo"; HaloPSA: "appointment", "holiday"). PRODUCT counts each as busy."""

    readings: tuple[str, ...]
    """Names of the alternative readings of the vendor's documents the fake can enforce (e.g. "like" for a
    `contains` filter run as SQL Server LIKE, where `[`, `_` and `%` are wildcards). The adapter must work under
    every one of them; "" (the default reading) is not listed."""

    def use_reading(self, name: str) -> None:
        """Switch the fake to one of `readings` ("" is the default)."""
        ...

    def add_busy(self, member: str, starts_at: Any, ends_at: Any, kind: str = "") -> None:
        """Seed busy time for a member: `kind` is one of busy_kinds ("" is the first)."""
        ...

    def contacts_with_email(self, email: str) -> list[PsaContact]:
        """Every contact (ConnectWise contact, Autotask Contact, Halo user) the fake holds with this address."""
        ...

    def contact_linked_to(self, kind: PsaRecordKind, record_id: str) -> str | None:
        """The id of the contact a ticket, opportunity or activity is linked to at the fake, or None."""
        ...


@dataclass
class PsaPair:
    vendor: str
    client: PsaClient
    fake: FakePsaControl
    member: str
    """A member/resource/agent identifier that exists at the fake."""
    fallback_company_id: str
    """The vendor id of the catch-all company (client) the pair's adapter is configured to put new contacts in."""
    supports_opportunities: bool = True


PairFactory = Callable[[], AbstractAsyncContextManager[PsaPair]]
PairIterator = AsyncIterator[PsaPair]
