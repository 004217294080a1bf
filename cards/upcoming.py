"""The "upcoming" card: a rep's next bookings, each with Join, Cancel (with a reason) and Send reschedule link."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from cards.bookings import booking_lines, unique_bookings
from cards.elements import (
    Element,
    action_set,
    adaptive_card,
    container,
    execute,
    fit_to_budget,
    heading,
    more_line,
    open_url,
    subtle,
    text_block,
)
from cards.text import escape_markdown
from cards.views import BookingItem, UpcomingView

MAX_BOOKINGS = 10
REASON_MAX_LENGTH = 500


def render_upcoming(view: UpcomingView) -> dict[str, Any]:
    """Heading, zone, optional notice, then up to 10 bookings with their actions; a Refresh button at the bottom."""
    top = [heading("Your upcoming bookings"), subtle(f"Times in {view.time_zone.key}")]
    if view.notice:
        top.append(
            container([text_block(escape_markdown(view.notice, 500))], style="good", spacing="Medium"),
        )
    refresh = execute("Refresh", "refreshUpcoming", {})
    bookings = unique_bookings(view.bookings)
    if not bookings:
        return adaptive_card([*top, text_block("No upcoming bookings.", spacing="Medium")], [refresh])

    def build(items: Sequence[Element], hidden: int) -> Element:
        body = [*top, *items]
        if hidden:
            body.append(more_line(hidden, "open Slotwise to see all"))
        return adaptive_card(body, [refresh])

    return fit_to_budget(build, partial(_render_booking, tz=view.time_zone), bookings, MAX_BOOKINGS)


def _render_booking(booking: BookingItem, tz: ZoneInfo) -> Element:
    actions = []
    if booking.join_url:
        actions.append(open_url("Join", booking.join_url))
    actions.append(_cancel_action(booking.booking_id))
    actions.append(execute("Send reschedule link", "sendRescheduleLink", {"bookingId": booking.booking_id}))
    return container(
        [*booking_lines(booking, tz), action_set(actions, spacing="Small")],
        separator=True,
        spacing="Medium",
    )


def _cancel_action(booking_id: str) -> Element:
    """The Cancel… button: it opens an inline card asking for the reason, so a stray click never cancels anything."""
    reason = {
        "type": "Input.Text",
        # Unique per booking: every booking's cancel card lives in the same card, and duplicate ids are invalid.
        "id": f"reason_{booking_id}",
        "label": "Reason (sent to the client)",
        "placeholder": "Optional",
        "isMultiline": True,
        "maxLength": REASON_MAX_LENGTH,
    }
    confirm = execute("Cancel booking", "cancelBooking", {"bookingId": booking_id}, style="destructive")
    return {
        "type": "Action.ShowCard",
        "title": "Cancel…",
        "card": {"type": "AdaptiveCard", "body": [reason], "actions": [confirm]},
    }
