"""A short message card: not set up yet, a polite refusal, or an error the user can act on."""

from __future__ import annotations

from typing import Any

from cards.elements import adaptive_card, container, heading, text_block
from cards.text import escape_markdown
from cards.views import NoticeView

# Tone -> container style. "default" stays unstyled so an ordinary notice does not look like an alarm.
_STYLES = {"default": "default", "warning": "warning", "attention": "attention"}
_HEADING_COLOURS = {"warning": "Warning", "attention": "Attention"}


def render_notice(view: NoticeView) -> dict[str, Any]:
    """Title and text in a container whose style follows `view.tone` (unknown tones render as "default")."""
    tone = view.tone if view.tone in _STYLES else "default"
    title_properties = {"color": _HEADING_COLOURS[tone]} if tone in _HEADING_COLOURS else {}
    body = container(
        [
            heading(escape_markdown(view.title, 150), **title_properties),
            text_block(escape_markdown(view.text, 1000)),
        ],
        style=_STYLES[tone],
    )
    return adaptive_card([body])
