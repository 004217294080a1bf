"""The "links" card: each appointment type a rep can share, with its Shareable URL and an Open button."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cards.elements import (
    Element,
    action_set,
    adaptive_card,
    container,
    fit_to_budget,
    heading,
    more_line,
    open_url,
    subtle,
    text_block,
)
from cards.text import escape_markdown, format_duration
from cards.views import LinksView, TypeLink

MAX_TYPES = 20


def render_links(view: LinksView) -> dict[str, Any]:
    """Heading, one container per appointment type (name, length and place, URL, Open), and the personal page."""
    page_action = open_url("Open my personal page", view.personal_page_url)
    if not view.types:
        return adaptive_card(
            [
                heading("Your booking links"),
                text_block("You have no appointment types yet; ask your admin to add you to one."),
            ],
            [page_action],
        )

    def build(items: Sequence[Element], hidden: int) -> Element:
        body = [heading("Your booking links"), *items]
        if hidden:
            body.append(more_line(hidden, "open your personal page to see all"))
        return adaptive_card(body, [page_action])

    return fit_to_budget(build, _render_type, view.types, MAX_TYPES)


def _render_type(link: TypeLink) -> Element:
    return container(
        [
            text_block(escape_markdown(link.name), weight="Bolder"),
            subtle(f"{format_duration(link.duration_minutes)} · {escape_markdown(link.location, 120)}"),
            text_block(escape_markdown(link.url, 1000), spacing="Small"),
            action_set([open_url("Open", link.url)], spacing="Small"),
        ],
        separator=True,
        spacing="Medium",
    )
