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
    open_url,
    subtle,
    text_block,
)
from cards.text import EN_DASH, escape_markdown
from cards.views import BookingItem, UpcomingView

MAX_BOOKINGS = 10
REASON_MAX_LENGTH = 500


def render_upcoming(view: UpcomingView) -> dict[str, Any]:
    """Heading, zone, optional notice, then a page of up to 10 bookings with their actions; "Show more" when there
    are more, and Refresh (back to the first page) at the bottom."""
    top = [heading("Your upcoming bookings"), subtle(f"Times in {view.time_zone.key}")]
    if view.notice:
        top.append(
            container([text_block(escape_markdown(view.notice, 500))], style="good", spacing="Medium"),
        )
    refresh = execute("Refresh", "refreshUpcoming", {})
    bookings = unique_bookings(view.bookings)
    if not bookings:
        empty = "No more upcoming bookings." if view.offset else "No upcoming bookings."
        return adaptive_card([*top, text_block(empty, spacing="Medium")], [refresh])
    total = max(view.total if view.total is not None else 0, view.offset + len(bookings))

    def build(items: Sequence[Element], _hidden: int) -> Element:
        body = [*top, *items]
        end = view.offset + len(items)
        actions = [refresh]
        if view.offset or end < total:
            body.append(page_line(view.offset, end, total))
        if end < total:
            actions.insert(0, execute("Show more", "refreshUpcoming", {"offset": end}))
        return adaptive_card(body, actions)

    return fit_to_budget(build, partial(_render_booking, tz=view.time_zone), bookings, MAX_BOOKINGS)


def page_line(offset: int, end: int, total: int) -> Element:
    """ "Showing 11-20 of 23" (with an en dash): where this page sits in the whole list."""
    return text_block(f"Showing {offset + 1}{EN_DASH}{end} of {total}", isSubtle=True, spacing="Medium")


def _render_booking(booking: BookingItem, tz: ZoneInfo) -> Element:
    actions = []
    if booking.join_url:
        actions.append(open_url("Join", booking.join_url))
    actions.append(cancel_action(booking.booking_id, {"bookingId": booking.booking_id}))
    actions.append(reschedule_action({"bookingId": booking.booking_id}, sent=booking.reschedule_link_sent))
    return container(
        [*booking_lines(booking, tz), action_set(actions, spacing="Small")],
        separator=True,
        spacing="Medium",
    )


def reschedule_action(data: dict[str, Any], *, sent: bool) -> Element:
    """Send reschedule link; once sent it reads "Reschedule link sent" and is disabled (the bot refuses a second
    send within a few minutes anyway, so an old card's button cannot email the client again)."""
    if sent:
        return execute("Reschedule link sent", "sendRescheduleLink", data, isEnabled=False)
    return execute("Send reschedule link", "sendRescheduleLink", data)


def cancel_action(booking_id: str, data: dict[str, Any]) -> Element:
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
    confirm = execute("Cancel booking", "cancelBooking", data, style="destructive")
    return {
        "type": "Action.ShowCard",
        "title": "Cancel…",
        "card": {"type": "AdaptiveCard", "body": [reason], "actions": [confirm]},
    }
