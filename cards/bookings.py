"""What a booking looks like in a list (a rep's upcoming bookings, a manager's team view)."""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from cards.elements import Element, subtle, text_block
from cards.text import escape_markdown, format_when
from cards.views import BookingItem

MAX_HOST_NAMES = 5


def booking_lines(booking: BookingItem, tz: ZoneInfo, *, with_hosts: bool = False) -> list[Element]:
    """When (bold), client and email, type, and optionally the hosts, as TextBlocks for one list item."""
    lines = [
        text_block(format_when(booking.starts_at, booking.ends_at, tz), weight="Bolder"),
        text_block(
            f"{escape_markdown(booking.client_name, 120)} · {escape_markdown(booking.client_email, 120)}",
            spacing="Small",
        ),
        subtle(escape_markdown(booking.type_name, 120)),
    ]
    if with_hosts:
        lines.append(subtle(f"Host: {host_list(booking.host_names)}"))
    return lines


def host_list(names: Sequence[str]) -> str:
    """Escaped host names joined with commas, shortened to "A, B and 3 others" for big panels."""
    if not names:
        return "nobody assigned"
    shown = [escape_markdown(name, 60) for name in names[:MAX_HOST_NAMES]]
    hidden = len(names) - len(shown)
    if hidden:
        return f"{', '.join(shown)} and {hidden} other{'s' if hidden > 1 else ''}"
    return ", ".join(shown)


def unique_bookings(bookings: Sequence[BookingItem]) -> list[BookingItem]:
    """Bookings without repeats of the same id, because per-booking input ids must be unique in a card."""
    seen: set[str] = set()
    unique = []
    for booking in bookings:
        if booking.booking_id not in seen:
            seen.add(booking.booking_id)
            unique.append(booking)
    return unique
