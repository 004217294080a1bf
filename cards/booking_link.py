"""The booking-link card a rep drops into any chat from the message extension, and its search-result preview."""

from __future__ import annotations

from typing import Any

from cards.elements import adaptive_card, heading, open_url, subtle, text_block
from cards.text import escape_markdown, escape_plain_html, format_duration
from cards.views import BookingLinkView

DESCRIPTION_LIMIT = 500


def render_booking_link(view: BookingLinkView) -> dict[str, Any]:
    """Book time with <host>: the type, its length and place, the description, and a Pick a time button."""
    body = [
        heading(f"Book time with {escape_markdown(view.host_name, 120)}"),
        text_block(escape_markdown(view.type_name, 120), weight="Bolder", spacing="Medium"),
        subtle(f"{format_duration(view.duration_minutes)} · {escape_markdown(view.location, 120)}"),
    ]
    if view.description.strip():
        body.append(text_block(escape_markdown(view.description, DESCRIPTION_LIMIT), spacing="Medium"))
    return adaptive_card(body, [open_url("Pick a time", view.url)])


def render_booking_link_preview(view: BookingLinkView) -> dict[str, Any]:
    """The thumbnail card shown in the message extension's result list (plain text with limited HTML)."""
    where = escape_plain_html(view.location, 120)
    host = escape_plain_html(view.host_name, 120)
    return {
        "contentType": "application/vnd.microsoft.card.thumbnail",
        "content": {
            "title": escape_plain_html(view.type_name, 120),
            "text": f"{format_duration(view.duration_minutes)} · {where} · with {host}",
        },
    }
