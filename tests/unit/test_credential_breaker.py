"""The credential breaker: held for its hold after a vendor's refusal, open again after it or after a success."""

from __future__ import annotations

import pytest

from scheduling.errors import IntegrationAuthError
from workflows.breaker import CredentialBreaker


class Connection:
    """Stands for a tenant's adapter object (the breaker keys on identity, weakly)."""


def test_a_refusal_holds_that_connection_for_the_hold_and_no_other() -> None:
    now = [100.0]
    breaker = CredentialBreaker(hold_seconds=30, clock=lambda: now[0])
    refused, other = Connection(), Connection()
    breaker.check(refused)
    breaker.refused(refused, IntegrationAuthError("Autotask refused our credentials: bad secret"))
    now[0] += 12
    with pytest.raises(IntegrationAuthError) as caught:
        breaker.check(refused)
    assert str(caught.value).startswith("Not sent: 12 s ago the same connection refused Slotwise's credentials")
    assert "(Autotask refused our credentials: bad secret)" in str(caught.value)
    breaker.check(other)
    # Our own answer does not restart the hold.
    breaker.refused(refused, caught.value)
    now[0] += 18
    breaker.check(refused)


def test_a_success_reopens_at_once_and_a_rebuilt_adapter_starts_clean() -> None:
    breaker = CredentialBreaker(hold_seconds=30, clock=lambda: 0.0)
    connection = Connection()
    breaker.refused(connection, IntegrationAuthError("HaloPSA refused our client credentials (401)"))
    with pytest.raises(IntegrationAuthError):
        breaker.check(connection)
    breaker.succeeded(connection)
    breaker.check(connection)
    breaker.refused(connection, IntegrationAuthError("HaloPSA refused our client credentials (401)"))
    del connection
    assert len(breaker._refused) == 0
