"""Stop calling a vendor that refuses Slotwise's credentials, for a short while, instead of once per step.

When Autotask, ConnectWise, HaloPSA, Microsoft 365 or the SMTP server answers "these credentials are wrong"
(`IntegrationAuthError`), every other step for it will get the same answer until an admin fixes the credentials. A
burst of bookings would otherwise send hundreds of doomed requests: each spends the vendor's concurrency and hourly
budget (Autotask counts refused calls too), some vendors lock out an API user after repeated failed logins, and the
refusals queue in front of the steps that could still go, such as the client's email. So for `hold_seconds` after a
refusal the tenant's steps for that same connection fail at once, without a request, with the vendor's own reason and
what to do about it. The first success closes it again, and a step a person retries always goes to the vendor.

The breaker is keyed on the adapter object: a tenant's adapters are rebuilt when its settings are applied again (and
at least every minute), so fixed credentials are tried at once. It is per process; each process learns the refusal
from its own first request.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from scheduling.errors import IntegrationAuthError

HOLD_SECONDS = 30.0


class CredentialsHeld(IntegrationAuthError):
    """Not sent: the connection refused our credentials a moment ago (a step fails with it as with the refusal)."""


@dataclass(frozen=True)
class _Refusal:
    at: float
    reason: str


class CredentialBreaker:
    def __init__(self, *, hold_seconds: float = HOLD_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.hold_seconds = hold_seconds
        self._clock = clock
        self._refused: weakref.WeakKeyDictionary[object, _Refusal] = weakref.WeakKeyDictionary()

    def check(self, connection: object) -> None:
        """Raise at once while `connection` has refused our credentials within the hold; otherwise return."""
        refusal = self._refused.get(connection)
        if refusal is None:
            return
        ago = self._clock() - refusal.at
        if ago >= self.hold_seconds:
            return
        raise CredentialsHeld(
            f"Not sent: {ago:.0f} s ago the same connection refused Slotwise's credentials ({refusal.reason}). "
            "Correct the credentials in the tenant file, apply it, then retry this step."
        )

    def refused(self, connection: object, error: IntegrationAuthError) -> None:
        if isinstance(error, CredentialsHeld):
            return  # our own answer, not a new refusal: the hold keeps counting from the vendor's
        self._refused[connection] = _Refusal(self._clock(), str(error))

    def succeeded(self, connection: object) -> None:
        self._refused.pop(connection, None)
