"""The welcome card: what Slotwise does in Teams, the commands a rep can type, and one-click buttons for them."""

from __future__ import annotations

from typing import Any

from cards.elements import action_set, adaptive_card, fact_set, heading, message_back, text_block
from cards.text import escape_markdown
from cards.views import Command, WelcomeView

MAX_COMMANDS = 15

# (button title, command text). The text is sent as the rep's own message, so it must be a command the bot
# understands; manager-only commands are only offered to managers.
_REP_BUTTONS = (("My links", "links"), ("Upcoming", "upcoming"), ("My page", "page"), ("Help", "help"))
_MANAGER_BUTTONS = (("Team bookings", "team"), ("Failed steps", "failures"))


def render_welcome(view: WelcomeView) -> dict[str, Any]:
    """Greeting, a line on what Slotwise does, the command list, and quick buttons (team and failures for managers)."""
    intro = (
        "I hand you your booking links and personal page, show your upcoming bookings, "
        "and tell you when a client books, reschedules or cancels."
    )
    body = [
        heading(f"Hi {escape_markdown(view.user_name, 100)}, I'm Slotwise"),
        text_block(intro),
    ]
    commands = view.commands[:MAX_COMMANDS]
    if commands:
        body.append(text_block("Type a command, or use a button below:", weight="Bolder", spacing="Medium"))
        body.append(fact_set([_command_fact(command) for command in commands]))
    if view.is_manager:
        # In the body rather than the action bar: hosts show at most five card-level actions.
        body.append(
            text_block(
                "As a manager you can also see your team's bookings and any workflow steps that failed.",
                spacing="Medium",
            )
        )
        body.append(action_set([message_back(title, command) for title, command in _MANAGER_BUTTONS], spacing="Small"))
    return adaptive_card(body, [message_back(title, command) for title, command in _REP_BUTTONS])


def _command_fact(command: Command) -> tuple[str, str]:
    example = escape_markdown(command.example, 80)
    return escape_markdown(command.name, 40), f"{escape_markdown(command.description, 150)} — try “{example}”"
