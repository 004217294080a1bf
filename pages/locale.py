"""Dates and times as the client reads them: 12- or 24-hour clock and date order from their browser's language
(Accept-Language) through Babel's CLDR data, switchable on the page.

Names of days and months are in the page's language (i18n.negotiate_locale): a German page reads "Dienstag,
24. November" at 15:00. An English page takes the English variant of the client's region (en_US, en_GB, en_FR...),
so an American sees "Tuesday, November 24" and 3:00 PM, a British or French browser "Tuesday, 24 November" and
15:00."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time

from i18n import babel_locale, language_of, preferred_tags


def preferred_locales(header: str) -> list[str]:
    """Language tags of an Accept-Language header, best first (RFC 9110 §12.5.4); q=0 and '*' are dropped."""
    return preferred_tags(header)


@lru_cache(maxsize=256)
def _parse(tag: str) -> Locale | None:
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def client_locale(header: str) -> Locale | None:
    """The first locale of the header that CLDR knows; None when none is."""
    for tag in preferred_locales(header):
        found = _parse(tag)
        if found is not None:
            return found
    return None


@lru_cache(maxsize=256)
def _english_for(territory: str | None) -> Locale:
    if territory:
        found = _parse(f"en_{territory}")
        if found is not None:
            return found
    return Locale.parse("en")


def uses_12_hour_clock(locale: Locale) -> bool:
    """Whether the locale's own short time pattern uses a 12-hour field (h or K), as CLDR records it."""
    pattern = locale.time_formats["short"].pattern
    stripped = re.sub(r"'[^']*'", "", pattern)
    return "h" in stripped or "K" in stripped


@lru_cache(maxsize=64)
def _day_periods(locale: Locale) -> tuple[str, str]:
    periods = locale.day_periods["format"]["abbreviated"]
    return str(periods.get("am", "AM")), str(periods.get("pm", "PM"))


@lru_cache(maxsize=64)
def _day_pattern(locale: Locale) -> str:
    """The locale's full date pattern without the year: 'EEEE, MMMM d, y' → 'EEEE, MMMM d'."""
    pattern = str(locale.date_formats["full"].pattern)
    return re.sub(r"[\s,.]*y+[\s,.]*$|^y+[\s,.]*", "", pattern).strip(" ,")


@dataclass(frozen=True)
class Formatter:
    """Formats instants in the client's zone and conventions; templates call it (`fmt.time(slot.starts_at)`)."""

    zone: ZoneInfo
    names: Locale
    hour12: bool

    @classmethod
    def for_client(cls, zone: ZoneInfo, accept_language: str, clock: str = "", language: str = "en") -> Formatter:
        """The client's conventions in the page's language (a tag such as 'de-DE', 'en-US' or 'de'). English names
        follow the client's region; a client that names no language CLDR knows gets English names and the 24-hour
        clock, which no reader misreads. Other languages use their own locale's names and clock (German: 24-hour).
        """
        locale = client_locale(accept_language)
        if language_of(language) in ("", "en"):
            names = _english_for(locale.territory if locale is not None else None)
            default = uses_12_hour_clock(locale) if locale is not None else False
        else:
            names = babel_locale(language)
            default = uses_12_hour_clock(names)
        hour12 = {"12": True, "24": False}.get(clock, default)
        return cls(zone, names, hour12)

    @property
    def clock(self) -> str:
        return "12" if self.hour12 else "24"

    def time(self, moment: datetime) -> str:
        """'3:00 PM' or '15:00'. The same result as Babel's format_time with 'h:mm a' / 'HH:mm' (a test holds
        them equal), built from the locale's CLDR day-period names: a page formats dozens of times per view."""
        local = moment.astimezone(self.zone)
        if not self.hour12:
            return f"{local.hour:02d}:{local.minute:02d}"
        am, pm = _day_periods(self.names)
        return f"{local.hour % 12 or 12}:{local.minute:02d} {pm if local.hour >= 12 else am}"

    def babel_time(self, moment: datetime) -> str:
        local = moment.astimezone(self.zone)
        return format_time(local, "h:mm a" if self.hour12 else "HH:mm", locale=self.names)

    def day(self, day: date) -> str:
        """Day of week, day and month: 'Tuesday, November 24' (en_US), 'Tuesday 24 November' (en_GB)."""
        return format_date(day, _day_pattern(self.names), locale=self.names)

    def long_date(self, day: date) -> str:
        return format_date(day, "full", locale=self.names)

    def when(self, moment: datetime) -> str:
        local = moment.astimezone(self.zone)
        return f"{self.long_date(local.date())}, {self.time(local)}"

    def month(self, day: date) -> str:
        return format_date(day, "LLLL y", locale=self.names)

    def month_name(self, day: date) -> str:
        return format_date(day, "MMMM", locale=self.names)

    def weekday(self, day: date, width: str = "abbreviated") -> str:
        return format_date(day, "EEEE" if width == "wide" else "EEE", locale=self.names)
