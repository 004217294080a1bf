"""Messages a person can meet on a page (errors from the scheduling core and from our own checks), in the page's
language. The core raises English text; the page looks it up in the catalog: a fixed message by its text, one with
a value (an address, a question's label) by its pattern. Anything else is shown as it came."""

from __future__ import annotations

import re

from i18n import N_, language_of, translate

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"^'(?P<value>.*)' is not a valid email address$", re.S),
        N_("'%(value)s' is not a valid email address"),
    ),
    (re.compile(r"^Please answer: (?P<value>.*)$", re.S), N_("Please answer: %(value)s")),
    (
        re.compile(r"^Name is too long \(at most (?P<value>\d+) characters\)$"),
        N_("Name is too long (at most %(value)s characters)"),
    ),
    (
        re.compile(r"^Notes are too long \(at most (?P<value>\d+) characters\)$"),
        N_("Notes are too long (at most %(value)s characters)"),
    ),
    (re.compile(r"^At most (?P<value>\d+) guests can be invited$"), N_("At most %(value)s guests can be invited")),
    (
        re.compile(r"^The reason is too long \(at most (?P<value>\d+) characters\)$"),
        N_("The reason is too long (at most %(value)s characters)"),
    ),
)

FIXED = (
    N_("Please enter your name"),
    N_("That time is no longer available"),
    N_("This booking was already cancelled"),
    N_("This appointment has already started and can no longer be changed"),
    N_("This scheduling link has already been used to book an appointment"),
    N_("We couldn't find that booking page. Check the link with the person who sent it."),
    N_("We couldn't find that page. Check the link with the person who sent it."),
    N_("This link is not valid"),
    N_("This link has expired"),
    N_("This booking's appointment type no longer exists"),
    N_("This appointment is cancelled, so there is nothing to add to a calendar"),
    N_("Your session expired. Reload the page and try again."),
    N_("Too many attempts from your network. Please wait a minute and try again."),
    N_("We can't accept bookings right now. Please try again in a minute."),
    N_("The form could not be read; reload the page and try again"),
    N_("This link is not valid. Check that you copied the whole link."),
    N_("This booking was just changed by someone else; here is its current state"),
)
"""Fixed messages of the core and the pages, listed so the catalog extractor finds them."""


def translate_message(locale: str, message: str) -> str:
    """`message` in the page's language when the catalog has it (or its pattern); otherwise unchanged."""
    if language_of(locale) in ("", "en") or not message:
        return message
    translated = translate(locale, message)
    if translated != message:
        return translated
    for pattern, msgid in _PATTERNS:
        found = pattern.match(message)
        if found:
            return translate(locale, msgid) % {"value": found["value"]}
    return message
