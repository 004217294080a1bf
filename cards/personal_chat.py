"""The "continue in your personal chat" note: what the bot answers in a group chat or channel instead of client data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cards.elements import adaptive_card, container, heading, open_url, text_block
from cards.text import escape_markdown


@dataclass(frozen=True, slots=True)
class PersonalChatView:
    """What was asked for, in words that fit "I keep … out of group chats" (e.g. "your upcoming bookings"), and the
    link that opens the bot's personal (1:1) chat."""

    what: str
    chat_url: str


def render_personal_chat(view: PersonalChatView) -> dict[str, Any]:
    """A short note and an Open button. It names no booking, client or colleague: everyone in the chat sees it."""
    return adaptive_card(
        [
            container(
                [
                    heading("Let's take this to your personal chat"),
                    text_block(
                        f"I keep {escape_markdown(view.what, 200)} out of group chats and channels: they include "
                        "client names and emails, and everyone here can read this conversation. Ask me in our "
                        "personal chat instead."
                    ),
                ]
            )
        ],
        [open_url("Open my personal chat with Slotwise", view.chat_url)],
    )
