"""`slotwise preview` run as a real process: an admin sees a type's email, invitation and host card before any client
does, rendered against a sample booking of that very type; a wrong tenant or type is named, not a traceback."""

from __future__ import annotations

import html
import re
from pathlib import Path

from icalendar import Calendar

from tests.conftest import FIXTURES
from tests.integration.test_cli import slotwise


def test_preview_renders_the_email_invite_and_card_of_a_type_to_a_file(tmp_path: Path) -> None:
    assert slotwise(tmp_path, "apply", str(FIXTURES / "tenant.yaml")).returncode == 0
    out = tmp_path / "intro.html"
    result = slotwise(tmp_path, "preview", "--tenant", "acme", "--type", "intro-call", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Confirmed: Intro call on ")
    assert f"Wrote {out}" in result.stdout
    page = out.read_text()
    assert "Preview: acme / intro-call, trigger client_scheduled" in page
    # The email, as the client would see it (escaped into the frame's srcdoc), with the type's real details.
    assert "srcdoc=" in page
    assert "Microsoft Teams meeting" in page
    assert "Alice Adams" in page
    assert "Acme &amp;lt;Managed&amp;gt; IT" in page, "the tenant's name, escaped in the email and again in srcdoc"
    # The card shows the client's answers under the questions' labels.
    assert "Company name" in page
    assert "What would you like to discuss?" in page
    # Without Microsoft 365 connected, the email carries the invitation itself.
    [ics] = re.findall(r"<h2>Invitation</h2><pre>(.*?)</pre>", page, re.S)
    calendar = Calendar.from_ical(html.unescape(ics))
    assert str(calendar["METHOD"]) == "REQUEST"
    assert '"type": "AdaptiveCard"' in page


def test_preview_of_a_cancellation_shows_the_cancel_with_a_raised_sequence(tmp_path: Path) -> None:
    assert slotwise(tmp_path, "apply", str(FIXTURES / "tenant.yaml")).returncode == 0
    out = tmp_path / "cancel.html"
    result = slotwise(
        tmp_path, "preview", "--tenant", "acme", "--type", "review", "--trigger", "cancelled", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    assert "METHOD:CANCEL" in page
    assert "SEQUENCE:2" in page
    assert "Alice Adams and Carol Chen" in page, "a panel reads as one list of hosts"


def test_preview_names_an_unknown_tenant_or_type(tmp_path: Path) -> None:
    assert slotwise(tmp_path, "apply", str(FIXTURES / "tenant.yaml")).returncode == 0
    missing = slotwise(tmp_path, "preview", "--tenant", "nope", "--type", "intro-call")
    assert missing.returncode == 1
    assert "There is no tenant 'nope'" in missing.stderr
    wrong = slotwise(tmp_path, "preview", "--tenant", "acme", "--type", "nope")
    assert wrong.returncode == 1
    assert "Tenant 'acme' has no appointment type 'nope'" in wrong.stderr
    bad = slotwise(tmp_path, "preview", "--tenant", "acme", "--type", "intro-call", "--trigger", "whenever")
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr


def test_preview_with_locale_de_renders_the_german_email_and_invitation(tmp_path: Path) -> None:
    assert slotwise(tmp_path, "apply", str(FIXTURES / "tenant.yaml")).returncode == 0
    out = tmp_path / "intro-de.html"
    result = slotwise(
        tmp_path, "preview", "--tenant", "acme", "--type", "intro-call", "--locale", "de", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Bestätigt: Intro call am "), result.stdout
    page = html.unescape(html.unescape(out.read_text()))
    assert '<html lang="de">' in page
    for german in ("Ihr Termin ist gebucht", "Hallo Casey Client,", "Microsoft Teams-Besprechung", "Gastgeber"):
        assert german in page, german
    assert "Verschieben oder absagen" in page
    assert "Gesendet von Acme <Managed> IT im Auftrag von Alice Adams." in page
    # German day and month names with the 24-hour clock, e.g. "Montag, 5. Januar 2026, 15:00".
    assert re.search(
        r"(Montag|Dienstag|Mittwoch|Donnerstag|Freitag|Samstag|Sonntag), \d{1,2}\. \w+ \d{4}, \d\d:\d\d", page
    )
    assert "You're booked" not in page
    assert "Reschedule or cancel" not in page
    # The invitation's text speaks German too.
    [ics] = re.findall(r"<h2>Invitation</h2><pre>(.*?)</pre>", page, re.S)
    description = str(Calendar.from_ical(ics).walk("VEVENT")[0]["DESCRIPTION"])
    assert "Ort: Microsoft Teams-Besprechung" in description
    assert "Verschieben oder absagen: https://book.example.com/m/preview" in description


def test_preview_follows_the_tenants_default_locale_and_refuses_a_language_it_lacks(tmp_path: Path) -> None:
    text = (FIXTURES / "tenant.yaml").read_text()
    german = tmp_path / "german-tenant.yaml"
    german.write_text(text.replace("tenant:\n", "tenant:\n  locale: de-DE\n", 1))
    applied = slotwise(tmp_path, "apply", str(german))
    assert applied.returncode == 0, applied.stderr
    result = slotwise(tmp_path, "preview", "--tenant", "acme", "--type", "intro-call", "--trigger", "cancelled")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Abgesagt: Intro call am "), result.stdout
    english = slotwise(tmp_path, "preview", "--tenant", "acme", "--type", "intro-call", "--locale", "en-US")
    assert english.stdout.startswith("Confirmed: Intro call on "), english.stdout
    french = slotwise(tmp_path, "preview", "--tenant", "acme", "--type", "intro-call", "--locale", "fr")
    assert french.returncode == 1
    assert "'--locale' must be a language Slotwise has: en, de" in french.stderr
