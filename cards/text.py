"""Text that goes onto cards: cleaning and markdown-escaping outside text, and formatting times in the reader's zone."""

from __future__ import annotations

import html
import re
import unicodedata
from contextvars import ContextVar
from datetime import date, datetime
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_skeleton, format_time

DEFAULT_LIMIT = 300
"""Characters kept from one piece of outside text before it is cut with an ellipsis."""

ELLIPSIS = "…"
ZERO_WIDTH_SPACE = "\u200b"
EN_DASH = "\u2013"
"""Joins the two ends of a time range, as typography asks."""

# Bidi embeddings, overrides and isolates let a name display reversed ("moc.elpmaxe" tricks); they are
# formatting characters (category Cf), not controls, so they are listed by hand. Zero-width joiners stay:
# emoji sequences need them.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")

# Markdown punctuation that can start emphasis, code, links, autolinks, HTML or strikethrough wherever it
# appears. Backslash comes first in the class only for readability; the regex escapes each match once.
_INLINE_SPECIALS = re.compile(r"([\\`*_\[\]<~])")
# An ampersand only matters when it starts an entity ("&#91;" would render as "["); a plain "Smith & Sons"
# keeps its ampersand without a backslash, because some Teams clients show stray backslashes.
_ENTITY_AMPERSAND = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
# Block syntax only counts at the start of a line. Cleaned text is a single line, so only its start can open
# a heading, quote, list or thematic break: "# x", "> x", "- x", "+ x", "1. x", "1) x".
_BLOCK_START = re.compile(r"^(#|>|-|\+|\d{1,9}[.)])")
# Adaptive Card hosts expand {{DATE(...)}} and {{TIME(...)}} in text; a zero-width space between the braces
# keeps a client's "{{" from ever reaching that parser while looking the same.
_DOUBLE_BRACE = re.compile(r"\{(?=\{)")

_READER_LOCALE: ContextVar[Locale | None] = ContextVar("card_reader_locale", default=None)
"""The locale of the person the cards of this turn are for (Teams sends it on every activity). Unset (a proactive
card, a test), times read "Tue 24 Nov, 10:02 EST" with a 24-hour clock."""

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def clean_text(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """Outside text made safe for any card field that is *not* markdown (input labels, choice titles).

    Control characters become spaces, bidi controls are dropped, whitespace (newlines included) collapses to
    single spaces, the result is cut to `limit` characters ending in "…", and "{{" is broken with a zero-width
    space so card hosts never evaluate template functions from it.
    """
    visible = "".join(
        " " if unicodedata.category(char) == "Cc" else char for char in text if char not in _BIDI_CONTROLS
    )
    single_line = " ".join(visible.split())
    if len(single_line) > limit:
        single_line = single_line[: max(limit - 1, 0)].rstrip() + ELLIPSIS
    return _DOUBLE_BRACE.sub("{" + ZERO_WIDTH_SPACE, single_line)


def escape_markdown(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """Outside text (names, emails, errors, reasons) made to render literally in a TextBlock or FactSet.

    The text is first cleaned (see `clean_text`, which also applies `limit`), then every markdown special that
    could create a link, emphasis, code, HTML or a block (heading, quote, list) is backslash-escaped, which is the
    CommonMark way to ask for the literal character.
    """
    escaped = _INLINE_SPECIALS.sub(r"\\\1", clean_text(text, limit))
    escaped = _ENTITY_AMPERSAND.sub(r"\\&", escaped)
    return _BLOCK_START.sub(lambda match: _escape_block_marker(match.group(1)), escaped)


def _escape_block_marker(marker: str) -> str:
    # For "12." the backslash goes before the dot: "12\." is a paragraph, "\12." is not valid escaping.
    return marker[:-1] + "\\" + marker[-1]


def escape_plain_html(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """Outside text for Teams thumbnail/hero card fields, which render plain text with limited HTML."""
    return html.escape(clean_text(text, limit), quote=False)


def format_duration(minutes: int) -> str:
    """A duration in minutes as people say it: "30 min", "1 hr", "1 hr 30 min"."""
    hours, rest = divmod(minutes, 60)
    if hours == 0:
        return f"{rest} min"
    if rest == 0:
        return f"{hours} hr"
    return f"{hours} hr {rest} min"


def set_reader_locale(tag: str | None) -> None:
    """Format this turn's card times for `tag` ("en-US", "de-DE", as Teams sends it); unknown tags keep the default.

    A context variable: each activity is handled in its own task, so one user's locale never reaches another's cards.
    """
    locale: Locale | None = None
    if tag:
        try:
            locale = Locale.parse(tag.strip(), sep="-" if "-" in tag else "_")
        except (ValueError, TypeError, UnknownLocaleError):
            locale = None
    _READER_LOCALE.set(locale)


def format_day(day: date | datetime, tz: ZoneInfo) -> str:
    """A day as "Tue 24 Nov" (or the reader's locale: "Tue, Nov 24" in en-US, "Di., 24. Nov." in de-DE). An aware
    datetime is first converted to `tz`; a plain date is taken as is.

    Raises ValueError for a naive datetime, because its zone is unknown.
    """
    if isinstance(day, datetime):
        day = _in_zone(day, tz).date()
    locale = _READER_LOCALE.get()
    if locale is not None:
        return format_skeleton("MMMEd", day, locale=locale)
    return f"{_WEEKDAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]}"


def format_clock(local: datetime) -> str:
    """The time of day on the reader's clock: "10:02", or "10:02 AM" where the locale uses a 12-hour clock."""
    locale = _READER_LOCALE.get()
    if locale is None:
        return f"{local:%H:%M}"
    # Naive, so Babel formats the wall time as given instead of converting it.
    return format_time(local.replace(tzinfo=None), "short", locale=locale)


def format_moment(at: datetime, tz: ZoneInfo) -> str:
    """One instant in `tz` as "Tue 24 Nov, 10:02 EST". Raises ValueError for a naive datetime."""
    local = _in_zone(at, tz)
    return f"{format_day(local.date(), tz)}, {format_clock(local)} {local.tzname()}"


def format_when(starts_at: datetime, ends_at: datetime, tz: ZoneInfo) -> str:
    """A meeting's half-open span in `tz`, e.g. "Tue 24 Nov, 10:00\u201310:30 EST" (en dash).

    The zone abbreviation is the one in force at each end, so a meeting across a DST change reads
    "Sun 1 Nov, 01:30 EDT\u201301:15 EST", and one across midnight names both days.
    Raises ValueError for naive datetimes.
    """
    start = _in_zone(starts_at, tz)
    end = _in_zone(ends_at, tz)
    if start.date() != end.date():
        return f"{format_moment(start, tz)} {EN_DASH} {format_moment(end, tz)}"
    if start.tzname() != end.tzname():
        day = format_day(start.date(), tz)
        return f"{day}, {format_clock(start)} {start.tzname()}{EN_DASH}{format_clock(end)} {end.tzname()}"
    return f"{format_day(start.date(), tz)}, {format_clock(start)}{EN_DASH}{format_clock(end)} {start.tzname()}"


def _in_zone(at: datetime, tz: ZoneInfo) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()} has no zone; card times must be timezone-aware")
    return at.astimezone(tz)
