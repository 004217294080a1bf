"""Who the rep is writing to, as the tenant's PSA knows them: contact, company and open opportunities.

The task pane sends the email's To and Cc addresses whenever they change (debounced in the pane). Each address costs
the PSA two to four requests, and Autotask counts them against the MSP's hourly quota, so answers are cached per
(tenant, address) for a while, a look-up already under way for an address is shared by every caller instead of
repeated, and one call names at most MAX_ADDRESSES addresses. The cache is per tenant by construction: its key holds
the tenant id, so one tenant's contacts never answer another's rep. Failures are not cached: a PSA that is down now
is asked again next time.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from scheduling.errors import IntegrationAuthError, IntegrationError
from scheduling.model import PsaRecipientMatch
from scheduling.ports import PsaClient

MAX_ADDRESSES: Final = 10
MATCH_SECONDS: Final = 600.0
"""How long a found contact is reused: long enough for one email's editing, short enough to see PSA changes."""
UNKNOWN_SECONDS: Final = 120.0
"""How long "the PSA does not know this address" is reused (the rep may be adding the contact right now)."""
MAX_ENTRIES: Final = 5000
_ADDRESS: Final = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")

PsaFor = Callable[[str], Awaitable[PsaClient | None]]
"""The tenant's PSA adapter by tenant id (None when the tenant has connected none)."""


@dataclass(frozen=True, slots=True)
class RecipientAnswer:
    email: str
    status: str
    """'matched', 'unknown' (the PSA has no such contact) or 'unavailable' (the PSA could not be asked)."""
    match: PsaRecipientMatch | None = None
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"email": self.email, "status": self.status}
        if self.message:
            body["message"] = self.message
        if self.match is not None:
            contact = self.match.contact
            body["contact"] = {"id": contact.contact_id, "name": contact.name, "email": contact.email}
            body["company"] = {"id": contact.company_id, "name": self.match.company_name}
            body["opportunities"] = [
                {"id": item.opportunity_id, "name": item.name, "stage": item.stage} for item in self.match.opportunities
            ]
        return body


def clean_addresses(value: object) -> list[str] | None:
    """The request's addresses, trimmed, lower-cased and de-duplicated in order; None when they are not a list of
    plausible addresses (the caller answers 400)."""
    if not isinstance(value, list) or len(value) > MAX_ADDRESSES:
        return None
    seen: list[str] = []
    for item in value:
        if not isinstance(item, str):
            return None
        address = item.strip().lower()
        if not _ADDRESS.match(address):
            return None
        if address not in seen:
            seen.append(address)
    return seen


class RecipientMatcher:
    def __init__(self, psa_for: PsaFor, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._psa_for = psa_for
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, PsaRecipientMatch | None]] = {}
        self._pending: dict[tuple[str, str], asyncio.Task[PsaRecipientMatch | None]] = {}

    async def match(self, tenant_id: str, addresses: Sequence[str]) -> list[RecipientAnswer] | None:
        """One answer per address, in order; None when the tenant has no PSA connected."""
        psa = await self._psa_for(tenant_id)
        if psa is None:
            return None
        return list(await asyncio.gather(*(self._one(psa, tenant_id, address) for address in addresses)))

    async def _one(self, psa: PsaClient, tenant_id: str, address: str) -> RecipientAnswer:
        key = (tenant_id, address)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return _answer(address, cached[1])
        task = self._pending.get(key)
        if task is None:
            task = asyncio.ensure_future(self._ask(psa, key))
            self._pending[key] = task
        try:
            found = await asyncio.shield(task)
        except IntegrationAuthError:
            return RecipientAnswer(
                address, "unavailable", message="Your PSA refused Slotwise's credentials; ask your Slotwise admin"
            )
        except IntegrationError:
            return RecipientAnswer(address, "unavailable", message="Your PSA did not answer; try again in a moment")
        return _answer(address, found)

    async def _ask(self, psa: PsaClient, key: tuple[str, str]) -> PsaRecipientMatch | None:
        """The one look-up for `key`. Its answer is cached and it leaves `_pending` in the same step, with no await
        between: a caller arriving in between would otherwise find neither and ask the PSA a second time."""
        try:
            found = await psa.match_recipient(key[1])
        except BaseException:
            self._pending.pop(key, None)
            raise
        self._remember(key, found)
        self._pending.pop(key, None)
        return found

    def _remember(self, key: tuple[str, str], found: PsaRecipientMatch | None) -> None:
        now = self._clock()
        if len(self._cache) >= MAX_ENTRIES:
            for stale in [item for item, (expires, _found) in self._cache.items() if expires <= now]:
                del self._cache[stale]
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
        self._cache[key] = (now + (MATCH_SECONDS if found is not None else UNKNOWN_SECONDS), found)


def _answer(address: str, found: PsaRecipientMatch | None) -> RecipientAnswer:
    return RecipientAnswer(address, "matched" if found is not None else "unknown", found)
