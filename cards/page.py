"""The "page" card: the rep's Personal Page, which lists all their appointment types for clients."""

from __future__ import annotations

from typing import Any

from cards.elements import adaptive_card, heading, open_url, subtle, text_block
from cards.text import escape_markdown
from cards.views import PageView


def render_page(view: PageView) -> dict[str, Any]:
    """Personal page URL, how many appointment types it shows, and an Open button."""
    count = view.type_count
    noun = "appointment type" if count == 1 else "appointment types"
    return adaptive_card(
        [
            heading("Your personal page"),
            text_block("Clients can pick any of your appointment types here:"),
            text_block(escape_markdown(view.personal_page_url, 1000), weight="Bolder", spacing="Small"),
            subtle(f"{count} {noun}"),
        ],
        [open_url("Open my personal page", view.personal_page_url)],
    )
