"""Errors the core and its adapters raise; entrypoints translate them to HTTP/CLI answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any


class SlotwiseError(Exception):
    """Base class for every error our own code raises on purpose."""


class NotFound(SlotwiseError):
    """The page, booking or link does not exist (or belongs to another tenant)."""


class InvalidRequest(SlotwiseError):
    """Client input that fails validation; `field` names what to fix."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class IdempotencyKeyReused(InvalidRequest):
    """An Idempotency-Key sent again with another client or page: it names a different booking, which stays private."""

    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key was already used for a different booking; send a new key for a new booking",
            field="Idempotency-Key",
        )


class SlotUnavailable(SlotwiseError):
    """The requested time is not (or no longer) bookable; carries the next free starts."""

    def __init__(self, message: str, *, next_free: Sequence[datetime] = ()) -> None:
        super().__init__(message)
        self.next_free = tuple(next_free)


class BookingChanged(SlotwiseError):
    """A reschedule or cancel lost a race, or named a version of the booking that is no longer current.

    Carries the booking as it is now, so the client can be shown its current state instead of a guess."""

    def __init__(self, message: str, *, current: Any) -> None:
        super().__init__(message)
        self.current = current


class ServiceUnavailable(SlotwiseError):
    """Slotwise itself cannot serve the request right now (its database is unreachable); nothing was changed."""

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class LinkExpired(SlotwiseError):
    """A signed link is past its expiry or was already used."""


class LinkInvalid(SlotwiseError):
    """A signed link was tampered with or signed for something else."""


class IntegrationError(SlotwiseError):
    """A vendor call failed; the subclasses say whether retrying can help.

    `progress` is what the step got done before it failed (for example the hosts already notified); the runner keeps
    it with the step and hands it back to the next attempt, automatic or started by an operator, so that attempt does
    not do it again."""

    def __init__(self, message: str, *, progress: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.progress = progress


class IntegrationAuthError(IntegrationError):
    """A vendor rejected our credentials."""


class IntegrationUnavailable(IntegrationError):
    """A vendor call failed in a way worth retrying (429, 5xx, timeout)."""

    def __init__(
        self, message: str, *, retry_after_seconds: float | None = None, progress: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, progress=progress)
        self.retry_after_seconds = retry_after_seconds


class IntegrationRejected(IntegrationError):
    """A vendor refused the request for good; retrying will not help."""


class DuplicateRequest(SlotwiseError):
    """A concurrent request with the same Idempotency-Key won the race; `booking_id` is its booking."""

    def __init__(self, booking_id: str) -> None:
        super().__init__("duplicate idempotency key")
        self.booking_id = booking_id
