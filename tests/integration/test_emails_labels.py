"""What a client reads in an email: human labels for zones and locations, grammar for every host kind, the tenant's
branding (and only safe branding), and a text part that keeps every link, custom templates included."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from workflows.templates import SAMPLE_BOOKING, compose_email, describe_location, describe_zone, snapshot_variables

WINTER = datetime(2026, 1, 15, 15, 0, tzinfo=UTC)
SUMMER = datetime(2026, 7, 15, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "moment", "label"),
    [
        ("America/New_York", WINTER, "Eastern Time (New York), UTC\u221205:00"),
        ("America/New_York", SUMMER, "Eastern Time (New York), UTC\u221204:00"),
        ("Europe/Berlin", SUMMER, "Central European Time (Berlin), UTC+02:00"),
        ("Asia/Kolkata", WINTER, "India Time (Kolkata), UTC+05:30"),
        ("UTC", WINTER, "Coordinated Universal Time (UTC)"),
        ("Etc/GMT+5", WINTER, "UTC\u221205:00"),
    ],
)
def test_a_zone_reads_as_people_say_it_with_the_offset_of_that_day(zone: str, moment: datetime, label: str) -> None:
    assert describe_zone(zone, moment) == label


def test_a_location_never_shows_its_raw_kind() -> None:
    assert describe_location("teams", "") == "Microsoft Teams meeting"
    assert describe_location("teams", "teams") == "Microsoft Teams meeting"
    assert describe_location("phone", "We will call you") == "Phone call: We will call you"
    assert describe_location("onsite", "") == "On site"
    assert describe_location("custom", "Zoom, link to follow") == "Zoom, link to follow"
    assert describe_location("custom", "") == "Details to follow"


def booking(**changes: Any) -> dict[str, Any]:
    return {**SAMPLE_BOOKING, **changes}


@pytest.mark.parametrize(
    ("type_name", "hosts", "sentence"),
    [
        ("Intro call", ["Alice Adams"], "Your Intro call with Alice Adams is confirmed"),
        ("Intro with Alice", ["Alice Adams"], "Your Intro with Alice is confirmed"),
        ("Review", ["Alice Adams", "Bob Brown"], "Your Review with Alice Adams and Bob Brown is confirmed"),
        ("Review", ["A One", "B Two", "C Three"], "Your Review with A One, B Two and C Three is confirmed"),
    ],
)
def test_the_host_is_named_once_and_in_good_grammar(type_name: str, hosts: list[str], sentence: str) -> None:
    from workflows.templates import DEFAULT_BODY, DEFAULT_SUBJECT

    variables = snapshot_variables(
        booking(type_name=type_name, hosts=[{"name": name} for name in hosts]), {"join_url": None}
    )
    email = compose_email(DEFAULT_SUBJECT, DEFAULT_BODY, variables)
    assert sentence in email.text
    listed = sentence.split(" with ")[-1].removesuffix(" is confirmed") if len(hosts) > 1 else hosts[0]
    assert (("Hosts: " if len(hosts) > 1 else "Host: ") + listed) in email.text


def test_branding_shows_a_safe_logo_and_accent_and_ignores_unsafe_ones() -> None:
    subject, body = "Hi", "<p>Hello</p>"
    branded = snapshot_variables(
        booking(
            branding={
                "display_name": "Acme IT",
                "logo_url": "https://cdn.acme.example/logo.png",
                "accent_colour": "#0f766e",
                "privacy_url": "https://acme.example/privacy",
            }
        ),
        {},
    )
    email = compose_email(subject, body, branded)
    assert 'src="https://cdn.acme.example/logo.png"' in email.html
    assert 'alt="Acme IT"' in email.html
    assert "#0f766e" in email.html
    assert "Privacy (https://acme.example/privacy)" in email.text
    too_light = snapshot_variables(booking(branding={"accent_colour": "#ffe14d"}), {})
    assert "#ffe14d" not in compose_email(subject, body, too_light).html, "white text on yellow cannot be read"
    hostile = snapshot_variables(
        booking(branding={"logo_url": "javascript:alert(1)", "accent": "red; background: url(https://x.example/t)"}),
        {},
    )
    email = compose_email(subject, body, hostile)
    assert "javascript:" not in email.html
    assert "x.example" not in email.html
    assert "<img" not in email.html
    assert "Sample IT" in email.html, "without a display name the tenant's name is shown"


def test_a_custom_templates_text_part_keeps_every_link_and_its_html_stays_escaped() -> None:
    variables = snapshot_variables(booking(client={**SAMPLE_BOOKING["client"], "name": "<script>x</script>"}), {})
    email = compose_email(
        "Hello {{ client.name }}",
        '<p>Hi {{ client.name }}, see <a href="https://acme.example/prep">the checklist</a> and '
        '<a href="{{ links.manage }}">{{ links.manage }}</a>.</p>',
        variables,
    )
    assert "the checklist (https://acme.example/prep)" in email.text
    assert "https://book.example/m/sample" in email.text
    assert "<script>" not in email.html
    assert "Hi <script>x</script>" in email.text, "the text part shows the name as typed, not as entities"
