"""Adaptive Card 1.5 building blocks shared by the card modules, and the size budget every card stays within."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

Element = dict[str, Any]
"""One Adaptive Card element, action or whole card, as JSON-ready data."""

CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.5"
"""The highest Adaptive Card version Teams renders on every client (desktop, web, mobile)."""

TEAMS_MESSAGE_LIMIT = 28_000
"""Teams rejects a bot message over about 28 KB, counting the activity around the card too."""

CARD_BYTE_BUDGET = 25_000
"""What a card may use of `TEAMS_MESSAGE_LIMIT`: the rest is left for the activity envelope (ids, service URL,
conversation and attachment wrapper), which is 1-2 KB in practice."""


def adaptive_card(body: Sequence[Element], actions: Sequence[Element] = ()) -> Element:
    """A top-level card; `actions` go in the action bar at the bottom."""
    card: Element = {"type": "AdaptiveCard", "$schema": CARD_SCHEMA, "version": CARD_VERSION, "body": list(body)}
    if actions:
        card["actions"] = list(actions)
    return card


def card_size(card: Element) -> int:
    """Bytes of the card as the bot sends it (`json.dumps` defaults, so non-ASCII counts as \\uXXXX)."""
    return len(json.dumps(card).encode())


def text_block(text: str, **properties: Any) -> Element:
    """A wrapping TextBlock. `text` must already be escaped or be our own wording."""
    return {"type": "TextBlock", "text": text, "wrap": True, **properties}


def heading(text: str, **properties: Any) -> Element:
    """The card's title: the "heading" style lets screen readers announce it as one."""
    return text_block(text, style="heading", size="Large", weight="Bolder", **properties)


def subtle(text: str, **properties: Any) -> Element:
    return text_block(text, isSubtle=True, spacing="None", **properties)


def fact_set(facts: Sequence[tuple[str, str]], **properties: Any) -> Element:
    """Label/value rows; both sides must already be escaped."""
    return {"type": "FactSet", "facts": [{"title": title, "value": value} for title, value in facts], **properties}


def container(items: Sequence[Element], **properties: Any) -> Element:
    return {"type": "Container", "items": list(items), **properties}


def action_set(actions: Sequence[Element], **properties: Any) -> Element:
    """Buttons inside the body, so each list item carries its own actions."""
    return {"type": "ActionSet", "actions": list(actions), **properties}


def open_url(title: str, url: str) -> Element:
    return {"type": "Action.OpenUrl", "title": title, "url": url}


def execute(title: str, verb: str, data: dict[str, Any], **properties: Any) -> Element:
    """A Universal Action: Teams sends the bot an `adaptiveCard/action` invoke with `verb`, `data` and the inputs."""
    return {"type": "Action.Execute", "title": title, "verb": verb, "data": data, **properties}


def message_back(title: str, text: str) -> Element:
    """A button that sends `text` as if the user had typed it (the Teams "messageBack" submit)."""
    return {
        "type": "Action.Submit",
        "title": title,
        "data": {"msteams": {"type": "messageBack", "text": text, "displayText": text}},
    }


def fit_to_budget(
    build: Callable[[Sequence[Element], int], Element],
    render_item: Callable[[Any], Element],
    items: Sequence[Any],
    cap: int,
) -> Element:
    """The card with as many of `items` (at most `cap`) as fit in `CARD_BYTE_BUDGET`.

    `build(rendered, hidden)` makes the whole card from the rendered items and the count left out (for its
    "and N more" line). Items are dropped from the end until the card fits; only the first `cap` are ever
    rendered, so a list of thousands costs no more than a list of `cap`.
    """
    rendered = [render_item(item) for item in items[:cap]]
    while True:
        card = build(rendered, len(items) - len(rendered))
        if not rendered or card_size(card) <= CARD_BYTE_BUDGET:
            return card
        rendered.pop()


def more_line(hidden: int, hint: str) -> Element:
    """The "and N more — <hint>" line under a shortened list."""
    return text_block(f"and {hidden} more — {hint}", isSubtle=True, spacing="Medium")
