"""The host's Teams card quotes the ticket the booking is on: the request's existing ticket, or the one a step
created; and says nothing about a ticket when there is none (no empty "Ticket" fact)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from scheduling.model import HostNotification
from workflows.outbox import Job
from workflows.steps import StepContext, TenantIntegrations, _notify_host

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[HostNotification] = []

    async def notify_host(self, tenant_id: str, user_id: str, notification: HostNotification) -> str | None:
        self.sent.append(notification)
        return f"activity-{len(self.sent)}"


def job(booking: dict[str, object]) -> Job:
    return Job(
        id=1,
        tenant_id="t1",
        booking_id="b1",
        run_key="b1:client_scheduled:1",
        step=2,
        kind="notify_host",
        idempotency_key="b1:client_scheduled:1:2:notify_host",
        payload={"action": {"action": "notify_host"}, "booking": booking},
        state="running",
        attempts=1,
        max_attempts=10,
        run_after=NOW,
        locked_by="w1",
        lease_expires_at=NOW,
        last_error="",
        output=None,
        created_at=NOW,
        updated_at=NOW,
    )


BOOKING: dict[str, object] = {
    "id": "b1",
    "type_name": "Site visit",
    "starts_at": "2026-11-24T14:00:00+00:00",
    "ends_at": "2026-11-24T15:00:00+00:00",
    "hosts": [{"user_id": "u1", "name": "Terry Tech"}],
    "client": {"name": "Robin", "email": "robin@client.example", "answers": {}},
}


class TicketPages:
    """The one PsaClient method the card's step calls: the ticket's page in the PSA's web app."""

    async def ticket_web_url(self, ticket_id: str, number: str) -> str:
        return f"https://psa.example/ticket?id={ticket_id}&n={number}"


async def notified(booking: dict[str, object], outputs: dict[str, object]) -> HostNotification:
    notifier = RecordingNotifier()
    await _notify_host(StepContext(job(booking), outputs, TenantIntegrations(notifier=notifier)))
    [notification] = notifier.sent
    return notification


async def test_the_request_ticket_link_the_card_showed_is_kept_in_the_steps_output() -> None:
    """The card a host's button answers in place, and the host page, read the links from the steps' outputs."""
    notifier = RecordingNotifier()
    bound = {**BOOKING, "ticket": {"id": "1001", "number": "T20261120.0005"}}
    psa: Any = TicketPages()
    output = await _notify_host(StepContext(job(bound), {}, TenantIntegrations(psa=psa, notifier=notifier)))
    url = "https://psa.example/ticket?id=1001&n=T20261120.0005"
    assert notifier.sent[0].ticket_url == url
    assert output["ticket_url"] == url
    assert output["ticket_number"] == "T20261120.0005"
    # Without a link (no PSA, or it could not say) the output claims none.
    assert "ticket_url" not in await _notify_host(StepContext(job(bound), {}, TenantIntegrations(notifier=notifier)))


async def test_the_card_quotes_the_ticket_a_step_created() -> None:
    assert (await notified(BOOKING, {"ticket_id": "77", "ticket_number": "T20261124.0077"})).ticket_number == (
        "T20261124.0077"
    )


async def test_the_card_quotes_the_existing_ticket_of_a_scheduling_request() -> None:
    bound = {**BOOKING, "ticket": {"id": "1001", "number": "T20261120.0005"}}
    # Even when an earlier output named another ticket, the request's ticket is the one the booking is on.
    assert (await notified(bound, {"ticket_number": "999"})).ticket_number == "T20261120.0005"


async def test_no_ticket_means_no_ticket_on_the_card() -> None:
    assert (await notified(BOOKING, {})).ticket_number == ""
