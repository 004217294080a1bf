"""The accent-colour maths (WCAG 2.x contrast) and the tenant file's `branding` section."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from admin.rollout import RolloutError
from admin.tenant_yaml import parse_tenant_text
from pages.branding import DEFAULT_ACCENT, branding_from, contrast_ratio, contrast_safe_accent, initials

MINIMAL = """
tenant: {slug: acme, name: Acme, time_zone: UTC}
"""


def test_contrast_ratio_matches_the_wcag_reference_values() -> None:
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#ffffff", "#ffffff") == pytest.approx(1.0)
    # WebAIM's checker: #767676 on white is 4.54:1, the lightest grey that passes AA.
    assert contrast_ratio("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
    assert contrast_ratio("#777777", "#ffffff") < 4.5


def test_a_colour_that_passes_is_kept_and_one_that_fails_is_darkened_to_pass() -> None:
    assert contrast_safe_accent("#0B5CAD") == "#0b5cad"
    assert contrast_safe_accent("#fff") != "#ffffff"
    yellow = contrast_safe_accent("#ffd400")
    assert contrast_ratio(yellow, "#ffffff") >= 4.5
    # Kept as light as possible: the shade only just passes.
    assert contrast_ratio(yellow, "#ffffff") < 4.7
    red, green, blue = (int(yellow[i : i + 2], 16) for i in (1, 3, 5))
    assert red > green > blue == 0, "the hue is kept (a darker yellow, not a grey)"
    assert contrast_safe_accent("not a colour") == DEFAULT_ACCENT


@given(st.from_regex(r"\A#[0-9a-fA-F]{6}\Z"))
def test_every_accent_colour_comes_out_readable_with_white_text(colour: str) -> None:
    safe = contrast_safe_accent(colour)
    assert contrast_ratio(safe, "#ffffff") >= 4.5
    if contrast_ratio(colour, "#ffffff") >= 4.5:
        assert safe == colour.lower()


def test_initials() -> None:
    assert initials("Alice Adams") == "AA"
    assert initials("Sales Team") == "ST"
    assert initials("Cher") == "C"
    assert initials("Mary-Jane van der Berg") == "MB"
    assert initials("  ") == "?"


def test_the_branding_section_is_optional_and_validated() -> None:
    assert parse_tenant_text(MINIMAL).branding is None
    file = parse_tenant_text(
        MINIMAL
        + """
branding:
  display_name: Acme IT
  logo_url: https://cdn.acme.example/logo.png
  accent_colour: "#FFD400"
  privacy_url: https://acme.example/privacy
  terms_url: https://acme.example/terms
users:
  - slug: alice
    name: Alice Adams
    email: alice@acme.example
    time_zone: UTC
    primary_calendar: m365
    working_hours: {mon: ["09:00-17:00"]}
    photo_url: https://cdn.acme.example/alice.jpg
"""
    )
    assert file.branding is not None
    assert file.branding.accent_colour == "#ffd400"
    assert file.users[0].photo_url == "https://cdn.acme.example/alice.jpg"
    look = branding_from(file.branding.model_dump(exclude_none=True))
    assert look.display_name == "Acme IT"
    assert look.privacy_url == "https://acme.example/privacy"
    assert contrast_ratio(look.accent, "#ffffff") >= 4.5


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("logo_url: http://acme.example/logo.png", "https://"),
        ("logo_url: javascript:alert(1)", "https://"),
        ('accent_colour: "blue"', "hex"),
        ("accent_colour: '#12345'", "hex"),
        ("privacy_url: /privacy", "https://"),
        ("colour: '#000000'", "colour"),
    ],
)
def test_bad_branding_is_refused_with_the_line_and_what_to_write(line: str, problem: str) -> None:
    with pytest.raises(RolloutError) as refused:
        parse_tenant_text(MINIMAL + "branding:\n  " + line + "\n")
    assert problem in str(refused.value)
    assert "branding" in str(refused.value)
