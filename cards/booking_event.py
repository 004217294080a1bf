"""The card a host gets, unasked, when a client books, reschedules or cancels."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cards.elements import (
    Element,
    action_set,
    adaptive_card,
    container,
    fit_to_budget,
    heading,
    message_back,
    open_url,
    text_block,
)
from cards.text import escape_markdown, format_moment, format_when
from cards.upcoming import cancel_action, reschedule_action
from cards.views import BookingChange, BookingEventView

MAX_ANSWERS = 20
ANSWER_LIMIT = 300

_HEADINGS = {
    BookingChange.BOOKED: ("New booking", "Good"),
    BookingChange.RESCHEDULED: ("Rescheduled", "Warning"),
    BookingChange.CANCELLED: ("Cancelled", "Attention"),
    BookingChange.UPCOMING: ("Coming up", "Accent"),
}


def render_booking_event(view: BookingEventView) -> dict[str, Any]:
    """Headline "<change>: <type> with <client>", the old time or the reason, facts, and Join unless cancelled."""
    label, colour = _HEADINGS[view.change]
    client = escape_markdown(view.client_name, 120)
    body: list[Element] = [
        heading(f"{label}: {escape_markdown(view.type_name, 120)} with {client}", color=colour),
    ]
    if view.change is BookingChange.RESCHEDULED and view.previous_starts_at is not None:
        body.append(_previous_time(view.previous_starts_at, view.time_zone))
    if view.notice:
        body.append(container([text_block(escape_markdown(view.notice, 500))], style="good", spacing="Medium"))
    when = format_when(view.starts_at, view.ends_at, view.time_zone)
    facts = [
        ("When", when),
        ("Client", client),
        ("Email", escape_markdown(view.client_email, 120)),
    ]
    if view.ticket_number:
        facts.append(("Ticket", f"#{escape_markdown(view.ticket_number, 64)}"))
    if view.change is BookingChange.CANCELLED:
        facts.append(("Reason", escape_markdown(view.reason, 500) if view.reason.strip() else "No reason given"))
    actions: list[Element] = []
    # A cancelled meeting has nothing to join, reschedule or cancel; its Teams meeting is being removed.
    if view.change is not BookingChange.CANCELLED and view.join_url:
        actions.append(open_url("Join", view.join_url))
    # The open links sit under the facts they belong to, in every state, cancelled included; the card's own row
    # keeps the actions on the meeting (a host app shows at most five there).
    opens: list[Element] = []
    if view.booking_url:
        opens.append(open_url("Open booking", view.booking_url))
    if view.ticket_url:
        opens.append(open_url("Open ticket", view.ticket_url))
    if view.change is not BookingChange.CANCELLED:
        # The buttons name this card, so the bot answers with this card again (the answers stay in the chat).
        data = {"bookingId": view.booking_id, "card": "event", "change": view.change.value}
        if view.ticket_number:
            data["ticket"] = view.ticket_number[:64]
        actions.append(reschedule_action(data, sent=view.reschedule_link_sent))
        actions.append(cancel_action(view.booking_id, data))
    # A typed "upcoming", so the list arrives as a new message and this card (with the answers) stays as it is;
    # an Action.Execute would replace this card with the list.
    actions.append(message_back("My upcoming bookings", "upcoming"))

    def build(answers: Sequence[Element], hidden: int) -> Element:
        rows = [*({"title": title, "value": value} for title, value in facts), *answers]
        lines = [*body, {"type": "FactSet", "facts": rows, "spacing": "Medium"}]
        if opens:
            lines.append(action_set(opens, spacing="Small"))
        if hidden:
            more = f"and {hidden} more answers"
            lines.append(
                text_block(
                    f"{more}: Open booking shows them all" if view.booking_url else f"{more}, not shown here",
                    isSubtle=True,
                )
            )
        return adaptive_card(lines, actions)

    return fit_to_budget(build, _answer_fact, view.answers, MAX_ANSWERS)


def _answer_fact(answer: tuple[str, str]) -> Element:
    question, value = answer
    return {"title": escape_markdown(question, 80), "value": escape_markdown(value, ANSWER_LIMIT) or "—"}


def _previous_time(previous_starts_at: datetime, tz: ZoneInfo) -> Element:
    """Was <old time>, struck through. TextRuns are never read as markdown, so this needs no escaping."""
    previous = format_moment(previous_starts_at, tz)
    return {
        "type": "RichTextBlock",
        "spacing": "Small",
        "inlines": [
            {"type": "TextRun", "text": "Was ", "isSubtle": True},
            {"type": "TextRun", "text": previous, "isSubtle": True, "strikethrough": True},
        ],
    }
