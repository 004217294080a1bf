"""The client's language: gettext catalogs (Babel) for every client-facing string of the pages and emails, and the
negotiation that picks English or German from Accept-Language, the page's language switch and the tenant's default.

Catalogs live next to this module (`locales/<lang>/LC_MESSAGES/messages.po`); `scripts/bootstrap` compiles them to
.mo with `pybabel compile`. A catalog whose .mo is missing or older than its .po is compiled in memory when first
used, so a checkout that has not run bootstrap yet still speaks German. Message ids are the English text: English
needs no catalog of its own.

After changing a message, refresh the template and the German catalog, then translate what is new or fuzzy
(tests/unit/test_i18n.py fails until you do):

    .venv/bin/pybabel extract -F i18n/babel.cfg -k translate:2 -k translate_plural:2,3 --no-location \
        --sort-output --omit-header -o i18n/messages.pot .
    .venv/bin/pybabel update -i i18n/messages.pot -d i18n/locales --no-location
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
DOMAIN = "messages"
SUPPORTED = ("en", "de")
"""Languages with a complete catalog, English (the message ids) first."""
FALLBACK = "en"
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch"}
"""Each language in its own words, for the page's language switch."""

_TAG = re.compile(r"^[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*$")
_log = logging.getLogger(__name__)


def N_(message: str) -> str:
    """Marks a message for the catalog where it is defined; it is translated where it is shown."""
    return message


def preferred_tags(header: str) -> list[str]:
    """Language tags of an Accept-Language header, best first (RFC 9110 §12.5.4): by q-value, ties in the order
    given; q=0, '*' and malformed tags are dropped. At most 20 entries are read."""
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        tag = tag.strip()
        if tag and tag != "*" and 0 < quality <= 1 and _TAG.match(tag):
            weighted.append((-quality, index, tag))
    return [tag for _quality, _index, tag in sorted(weighted)]


@lru_cache(maxsize=512)
def _parse(tag: str) -> Locale | None:
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def language_of(tag: str) -> str:
    """'de' for 'de-DE', 'de_AT' or 'DE'; "" for an empty or malformed tag."""
    tag = (tag or "").strip()
    if not _TAG.match(tag):
        return ""
    return re.split(r"[-_]", tag, maxsplit=1)[0].lower()


def canonical_tag(tag: str) -> str:
    """A tag as we store it: 'de-DE', 'en-US', 'de'; "" when CLDR does not know it."""
    found = _parse(tag) if _TAG.match(tag or "") else None
    if found is None:
        return ""
    return f"{found.language}-{found.territory}" if found.territory else found.language


def supported_tag(tag: str) -> str:
    """The tag when its language has a catalog (canonicalised), else ""."""
    canonical = canonical_tag(tag)
    return canonical if language_of(canonical) in SUPPORTED else ""


def negotiate_locale(accept_language: str, chosen: str = "", tenant_default: str = "") -> str:
    """The locale a client is served in, as a tag ('de-DE', 'en-US', 'en'): the language they chose on the page
    (`chosen`, 'de' or 'en'; with the region of their browser's matching tag when it names one), else the first
    tag of their Accept-Language whose language we have (q-values honoured), else the tenant's default, else
    English."""
    tags = preferred_tags(accept_language[:500])
    chosen_language = language_of(chosen)
    if chosen_language in SUPPORTED:
        for tag in tags:
            if language_of(tag) == chosen_language and supported_tag(tag):
                return supported_tag(tag)
        return supported_tag(chosen) or chosen_language
    for tag in tags:
        found = supported_tag(tag)
        if found:
            return found
        # A bare language such as 'de' that CLDR parses is covered above; 'de-XX' with an unknown region still
        # means German.
        if language_of(tag) in SUPPORTED:
            return language_of(tag)
    return supported_tag(tenant_default) or FALLBACK


def catalog_path(language: str) -> Path:
    return LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=8)
def translations(tag: str) -> NullTranslations:
    """The catalog of a tag's language; English (and anything we have no catalog for) is the identity."""
    language = language_of(tag)
    if language not in SUPPORTED or language == FALLBACK:
        return NullTranslations()
    po = catalog_path(language)
    mo = po.with_suffix(".mo")
    if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as handle:
            return Translations(handle, domain=DOMAIN)
    _log.info("compiling %s in memory (scripts/bootstrap compiles the catalogs ahead of time)", po)
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=language, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def translate(tag: str, message: str) -> str:
    """`message` in the language of `tag`. (Named apart from gettext so the extractor can tell our calls, locale
    first, from the standard ones: `pybabel extract -k translate:2 -k translate_plural:2,3`.)"""
    return translations(tag).gettext(message)


def translate_plural(tag: str, singular: str, plural: str, count: int) -> str:
    return translations(tag).ngettext(singular, plural, count)


def babel_locale(tag: str) -> Locale:
    """The CLDR locale for dates and names: the tag itself when CLDR knows it, else its language, else English."""
    return _parse(tag) or _parse(language_of(tag)) or Locale.parse(FALLBACK)
