"""Languages: which locale a client is served in (Accept-Language with q-values, the page's switch, the tenant's
default, English last), and catalogs that cannot fall behind the code: every message the pages and default emails
use must have a German translation, with the same placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po

import i18n
from i18n import negotiate_locale, preferred_tags

ROOT = Path(__file__).resolve().parents[2]
KEYWORDS = {
    **DEFAULT_KEYWORDS,
    # Ours take the locale first: translate(locale, message), translate_plural(locale, singular, plural, n).
    "translate": (2,),
    "translate_plural": (2, 3),
}
METHODS = [
    ("pages/**.py", "python"),
    ("i18n/messages.py", "python"),
    ("addin/routes.py", "python"),
    ("workflows/templates.py", "python"),
    ("workflows/request_emails.py", "python"),
    ("workflows/steps.py", "python"),
    ("pages/templates/**.html", "jinja2"),
]


def used_messages() -> dict[str | tuple[str, str], str]:
    """Every message the code asks the catalogs for (what `pybabel extract -F i18n/babel.cfg` finds), by id."""
    found: dict[str | tuple[str, str], str] = {}
    options = {"pages/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    for filename, _lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), METHODS, options_map=options, keywords=KEYWORDS
    ):
        key = message if isinstance(message, str) else (message[0], message[1])
        found[key] = filename
    return found


def german_catalog() -> dict[str | tuple[str, str], object]:
    with i18n.catalog_path("de").open("rb") as handle:
        catalog = read_po(handle)
    return {
        (message.id if isinstance(message.id, str) else tuple(message.id)): message for message in catalog if message.id
    }


def test_the_extractor_finds_the_pages_and_emails_messages() -> None:
    used = used_messages()
    # One from each place, so a broken extraction cannot pass by finding nothing.
    for message in (
        "Your time zone",  # a page template
        "We couldn't find that page",  # pages/routes.py, an error page's title
        "Please answer: %(value)s",  # pages/messages.py, a field error from the core
        "Confirmed: %(name)s on %(when)s",  # the default confirmation
        "The link works until %(expires)s (%(zone)s).",  # a scheduling request's email
        "Reschedule or cancel: %(url)s",  # the invitation's text
        ("Host", "Hosts"),
        ("%(num)d time available", "%(num)d times available"),
    ):
        assert message in used, message
    assert len(used) > 150


def test_every_message_the_pages_and_emails_use_has_a_german_translation() -> None:
    german = german_catalog()
    missing = sorted(str(key) for key in used_messages() if key not in german)
    assert not missing, f"add these to i18n/locales/de/LC_MESSAGES/messages.po: {missing}"
    untranslated = []
    for key in used_messages():
        entry = german[key]
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)  # type: ignore[attr-defined]
        if entry.fuzzy or not all(strings):  # type: ignore[attr-defined]
            untranslated.append(str(key))
    assert not untranslated, f"translate (and un-fuzzy) these German entries: {untranslated}"


def test_german_translations_keep_every_placeholder() -> None:
    german = german_catalog()
    placeholders = re.compile(r"%\((\w+)\)[sd]")
    for key, entry in german.items():
        ids = key if isinstance(key, tuple) else (key,)
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)  # type: ignore[attr-defined]
        wanted = set(placeholders.findall(ids[-1]))
        for string in strings:
            assert set(placeholders.findall(string)) == wanted, (key, string)


def test_the_catalog_template_is_current() -> None:
    """i18n/messages.pot lists exactly what the code uses, so a translator works from the right list."""
    with (ROOT / "i18n" / "messages.pot").open("rb") as handle:
        template = {
            (message.id if isinstance(message.id, str) else tuple(message.id))
            for message in read_po(handle)
            if message.id
        }
    assert template == set(used_messages())


def test_a_catalog_without_a_compiled_file_is_compiled_when_first_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "de" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "messages.po").write_bytes(i18n.catalog_path("de").read_bytes())
    monkeypatch.setattr(i18n, "LOCALES_DIR", tmp_path)
    i18n.translations.cache_clear()
    try:
        assert i18n.translate("de-DE", "Your time zone") == "Ihre Zeitzone"
        assert not (folder / "messages.mo").exists()
    finally:
        i18n.translations.cache_clear()


@pytest.mark.parametrize(
    ("header", "tenant_default", "served"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "", "de-DE"),
        ("en-US,en;q=0.9", "de-DE", "en-US"),
        # q-values, not the order written, decide.
        ("en;q=0.5, de-AT;q=0.9", "", "de-AT"),
        ("de;q=0.3, en-GB;q=0.7, fr;q=1", "", "en-GB"),
        # A language we lack is skipped for the next one the client accepts.
        ("fr-FR, de;q=0.5", "", "de"),
        # q=0 means "not this one".
        ("de;q=0, en-US;q=0.1", "de-DE", "en-US"),
        # Nothing we have: the tenant's default, then English.
        ("fr-FR, es;q=0.8", "de-DE", "de-DE"),
        ("fr-FR, es;q=0.8", "", "en"),
        ("", "de-CH", "de-CH"),
        ("", "", "en"),
        ("*", "", "en"),
        # A tenant default we lack counts as none.
        ("ja-JP", "fr-FR", "en"),
        # Garbage is ignored, not trusted.
        ("<script>, de-DE;q=abc, xx-;q=1", "", "en"),
    ],
)
def test_the_locale_follows_accept_language_then_the_tenant_default_then_english(
    header: str, tenant_default: str, served: str
) -> None:
    assert negotiate_locale(header, "", tenant_default) == served


def test_the_pages_language_switch_wins_and_keeps_the_clients_region() -> None:
    assert negotiate_locale("en-US", "de", "") == "de"
    assert negotiate_locale("en-US, de-AT;q=0.5", "de", "") == "de-AT"
    assert negotiate_locale("de-DE", "en", "de-DE") == "en"
    assert negotiate_locale("de-DE, en-GB;q=0.2", "en", "") == "en-GB"
    # A switch to a language we lack is no switch.
    assert negotiate_locale("de-DE", "fr", "") == "de-DE"


def test_accept_language_is_read_best_first_by_q_value() -> None:
    assert preferred_tags("da, en-gb;q=0.8, en;q=0.7") == ["da", "en-gb", "en"]
    assert preferred_tags("en;q=0.5, de-DE") == ["de-DE", "en"]
    assert preferred_tags("en;Q=0.5, de;q=0.9") == ["de", "en"]
    assert preferred_tags("de;q=2") == [], "a q-value above 1 is malformed"


def test_german_and_english_translate_and_anything_else_is_english() -> None:
    assert i18n.translate("de-DE", "Show times") == "Zeiten anzeigen"
    assert i18n.translate("en-US", "Show times") == "Show times"
    assert i18n.translate("fr", "Show times") == "Show times"
    assert i18n.translate_plural("de", "%(num)d time zone", "%(num)d time zones", 3) % {"num": 3} == "3 Zeitzonen"
