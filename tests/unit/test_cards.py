"""Adaptive Cards for the Teams bot: schema- and SDK-valid, small enough for Teams, safe with hostile text, stable."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema  # type: ignore[import-untyped]  # no types-jsonschema in the pinned dev set
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from cards.booking_event import render_booking_event
from cards.booking_link import render_booking_link, render_booking_link_preview
from cards.elements import TEAMS_MESSAGE_LIMIT, card_size
from cards.failures import humanise_action, render_failures
from cards.links import render_links
from cards.notice import render_notice
from cards.page import render_page
from cards.personal_chat import PersonalChatView, render_personal_chat
from cards.team import EVERYONE, render_team
from cards.text import (
    clean_text,
    escape_markdown,
    escape_plain_html,
    format_day,
    format_duration,
    format_moment,
    format_when,
    set_reader_locale,
)
from cards.upcoming import render_upcoming
from cards.views import (
    BookingChange,
    BookingEventView,
    BookingItem,
    BookingLinkView,
    Command,
    FailedStep,
    FailuresView,
    LinksView,
    NoticeView,
    PageView,
    TeamChoice,
    TeamMember,
    TeamView,
    TypeLink,
    UpcomingView,
    WelcomeView,
)
from cards.welcome import render_welcome

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO.parent / "shared" / "specs" / "adaptive-card-1.5.schema.json"
NODE_VALIDATOR = REPO / "tests" / "node" / "validate_cards.js"
ADAPTIVECARDS_SDK = REPO / "node_modules" / "adaptivecards" / "dist" / "adaptivecards.js"
SNAPSHOTS = REPO / "tests" / "fixtures" / "cards"
UPDATE_SNAPSHOTS = os.environ.get("SLOTWISE_UPDATE_SNAPSHOTS") == "1"

NEW_YORK = ZoneInfo("America/New_York")
START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # Tue 24 Nov 2026, 10:00 EST
HALF_HOUR = timedelta(minutes=30)
DASH = "\u2013"  # en dash, as in "10:00\u201310:30"

HOSTILE = "**[x](https://evil.example)** {{DATE(2017-02-14T06:08:39Z,SHORT)}}"
# 300 characters that double when escaped (markdown specials) or cost 6 bytes in JSON (non-ASCII): the worst case.
LONG = ("*_[é]`~<" * 40)[:300]


# views


def booking(n: int, *, name: str = "Dana Fox", join: bool = True, hosts: tuple[str, ...] = ()) -> BookingItem:
    starts_at = START + timedelta(days=n // 3, hours=n % 3)
    return BookingItem(
        booking_id=f"bk-{n:04d}",
        type_name="Intro call",
        client_name=name,
        client_email=f"client{n}@fabrikam.example",
        starts_at=starts_at,
        ends_at=starts_at + HALF_HOUR,
        join_url=f"https://teams.microsoft.com/l/meetup-join/19%3ameeting-{n}%40thread.v2/0" if join else None,
        host_names=hosts,
    )


def long_booking(n: int) -> BookingItem:
    return BookingItem(
        booking_id=f"bk-{n:04d}-{'x' * 60}",
        type_name=LONG,
        client_name=LONG,
        client_email=LONG,
        starts_at=START + timedelta(hours=n),
        ends_at=START + timedelta(hours=n) + HALF_HOUR,
        join_url="https://teams.microsoft.com/l/meetup-join/" + "a" * 400,
        host_names=tuple(LONG for _ in range(8)),
    )


def failed_step(n: int, *, text: str = "", error: str = "HTTP 503 from ConnectWise: service unavailable") -> FailedStep:
    return FailedStep(
        job_id=f"job-{n:04d}",
        booking_id=f"bk-{n:04d}",
        client_name=text or "Dana Fox",
        type_name=text or "Intro call",
        action="create_ticket",
        target="connectwise",
        attempts=5,
        last_error=error,
        failed_at=START + timedelta(minutes=n),
    )


COMMANDS = (
    Command("links", "Your appointment types and their Shareable URLs", "show my links"),
    Command("upcoming", "Your next bookings, with cancel and reschedule", "what's coming up?"),
    Command("page", "Your personal booking page", "my page"),
    Command("help", "What I can do", "help"),
)
TYPES = (
    TypeLink("t1", "Intro call", 30, "Microsoft Teams meeting", "https://book.contoso.example/alex/intro-call"),
    TypeLink("t2", "Quarterly review", 90, "Phone call", "https://book.contoso.example/alex/qbr"),
)
MEMBERS = (TeamMember("u-alex", "Alex Kim"), TeamMember("u-sam", "Sam Ortiz"))


def welcome_views() -> dict[str, WelcomeView]:
    return {
        "rep": WelcomeView("Alex Kim", COMMANDS, is_manager=False),
        "manager": WelcomeView("Alex Kim", COMMANDS, is_manager=True),
        "no_commands": WelcomeView("Alex Kim", (), is_manager=False),
        "hostile": WelcomeView(HOSTILE, tuple(Command(LONG, LONG, LONG) for _ in range(40)), is_manager=True),
    }


def notice_views() -> dict[str, NoticeView]:
    return {
        "not_set_up": NoticeView(
            "You're not set up yet",
            "You're not set up in Slotwise yet — ask your admin to add you to the rollout.",
            "warning",
        ),
        "error": NoticeView("Couldn't cancel", "The booking was already cancelled.", "attention"),
        "default": NoticeView("Done", "Sent the reschedule link to Dana Fox."),
        "unknown_tone": NoticeView("Done", "Fine.", "purple"),
        "hostile": NoticeView(HOSTILE, HOSTILE * 100, "attention"),
    }


def personal_chat_views() -> dict[str, PersonalChatView]:
    chat = "https://teams.microsoft.com/l/chat/0/0?users=28:3b1f0c6e-6a0e-4f1e-9d54-7a0c2f0d1b01"
    return {
        "typical": PersonalChatView("your upcoming bookings", chat),
        "hostile": PersonalChatView(HOSTILE * 10, chat),
    }


def links_views() -> dict[str, LinksView]:
    page = "https://book.contoso.example/alex"
    return {
        "typical": LinksView("Alex Kim", page, TYPES),
        "empty": LinksView("Alex Kim", page, ()),
        "hostile": LinksView(
            HOSTILE,
            page,
            tuple(
                TypeLink(f"t{i}", HOSTILE if i == 0 else LONG, 45, LONG, f"{page}/{'x' * 200}/{i}") for i in range(200)
            ),
        ),
    }


def page_views() -> dict[str, PageView]:
    return {
        "typical": PageView("Alex Kim", "https://book.contoso.example/alex", 2),
        "one_type": PageView("Alex Kim", "https://book.contoso.example/alex", 1),
        "long_url": PageView(HOSTILE, "https://book.contoso.example/" + "a_b" * 600, 0),
    }


def upcoming_views() -> dict[str, UpcomingView]:
    return {
        "typical": UpcomingView(NEW_YORK, (booking(0), booking(1, name="Lee Chen", join=False))),
        "empty": UpcomingView(NEW_YORK, ()),
        "with_notice": UpcomingView(NEW_YORK, (booking(0),), notice="Cancelled the 10:00 call with Dana Fox"),
        "hostile": UpcomingView(NEW_YORK, tuple(booking(n, name=HOSTILE) for n in range(3)), notice=HOSTILE),
        "over_cap": UpcomingView(NEW_YORK, tuple(booking(n) for n in range(11))),
        "maximal": UpcomingView(NEW_YORK, tuple(long_booking(n) for n in range(200)), notice=LONG),
        # The bot sends one page and the whole list's count.
        "first_page": UpcomingView(NEW_YORK, tuple(booking(n) for n in range(10)), total=23),
        "middle_page": UpcomingView(NEW_YORK, tuple(booking(n) for n in range(10, 20)), total=23, offset=10),
        "last_page": UpcomingView(NEW_YORK, tuple(booking(n) for n in range(20, 23)), total=23, offset=20),
        "past_the_end": UpcomingView(NEW_YORK, (), total=23, offset=30),
        "link_sent": UpcomingView(
            NEW_YORK,
            (replace(booking(0), reschedule_link_sent=True), booking(1, name="Lee Chen")),
            notice="Sent Dana Fox a link to pick a new time (client0@fabrikam.example).",
        ),
    }


def team_views() -> dict[str, TeamView]:
    team_bookings = (booking(0, hosts=("Alex Kim",)), booking(1, name="Lee Chen", hosts=("Alex Kim", "Sam Ortiz")))
    return {
        "typical": TeamView("team-1", "East sales", NEW_YORK, MEMBERS, team_bookings),
        "filtered": TeamView("team-1", "East sales", NEW_YORK, MEMBERS, team_bookings[:1], "u-alex", "2026-11-24"),
        "empty": TeamView("team-1", "East sales", NEW_YORK, MEMBERS, ()),
        "empty_filtered": TeamView("team-1", "East sales", NEW_YORK, MEMBERS, (), "u-sam", "2026-11-25"),
        "bad_filters": TeamView("team-1", "East sales", NEW_YORK, MEMBERS, (), "u-gone", "24/11/2026"),
        "hostile": TeamView(
            "team-1",
            HOSTILE,
            NEW_YORK,
            (TeamMember("u-evil", HOSTILE), *MEMBERS),
            tuple(booking(n, name=HOSTILE, hosts=(HOSTILE,)) for n in range(3)),
            "u-evil",
        ),
        "over_cap": TeamView("team-1", "East sales", NEW_YORK, MEMBERS, tuple(booking(n) for n in range(16))),
        "several_teams_paged": TeamView(
            "team-2",
            "West sales",
            NEW_YORK,
            MEMBERS,
            tuple(booking(n, hosts=("Alex Kim",)) for n in range(15, 30)),
            "u-alex",
            total=40,
            offset=15,
            teams=(TeamChoice("team-1", "East sales"), TeamChoice("team-2", "West sales")),
        ),
        "hostile_teams": TeamView(
            "team-1",
            HOSTILE,
            NEW_YORK,
            MEMBERS,
            (),
            teams=(TeamChoice("team-1", HOSTILE), TeamChoice("team-2", LONG)),
        ),
        "maximal": TeamView(
            "team-1",
            LONG,
            NEW_YORK,
            tuple(TeamMember(f"u-{n:03d}", LONG) for n in range(200)),
            tuple(long_booking(n) for n in range(200)),
            "u-150",
            "2026-11-24",
        ),
    }


def failures_views() -> dict[str, FailuresView]:
    return {
        "typical": FailuresView(NEW_YORK, (failed_step(0), failed_step(1))),
        "empty": FailuresView(NEW_YORK, ()),
        "with_notice": FailuresView(NEW_YORK, (failed_step(0),), notice="Retrying: Create ticket for Dana Fox"),
        "hostile": FailuresView(NEW_YORK, (failed_step(0, text=HOSTILE, error=HOSTILE * 20),), notice=HOSTILE),
        "over_cap": FailuresView(NEW_YORK, tuple(failed_step(n) for n in range(11))),
        "maximal": FailuresView(
            NEW_YORK, tuple(failed_step(n, text=LONG, error=LONG * 30) for n in range(200)), notice=LONG
        ),
    }


HOST_PAGE = "https://slotwise.example/h/token"
TICKET_PAGE = "https://ww5.autotask.net/Autotask/AutotaskExtend/ExecuteCommand.aspx?Code=OpenTicketDetail&TicketNumber=T20261124.0001"


def booking_event_views() -> dict[str, BookingEventView]:
    booked = BookingEventView(
        BookingChange.BOOKED,
        "bk-0001",
        "Intro call",
        "Dana Fox",
        "dana@fabrikam.example",
        START,
        START + HALF_HOUR,
        NEW_YORK,
        join_url="https://teams.microsoft.com/l/meetup-join/abc",
        answers=(("Company size", "50-100"), ("What would you like to discuss?", "Backups and M365 licensing")),
        ticket_number="T20261124.0001",
    )
    return {
        "booked": booked,
        "rescheduled": replace(
            booked, change=BookingChange.RESCHEDULED, previous_starts_at=START - timedelta(days=1), answers=()
        ),
        "cancelled": replace(booked, change=BookingChange.CANCELLED, reason="Something came up, sorry!", answers=()),
        "cancelled_no_reason": replace(booked, change=BookingChange.CANCELLED, join_url=None, answers=()),
        "with_links": replace(booked, booking_url=HOST_PAGE, ticket_url=TICKET_PAGE),
        "cancelled_with_links": replace(
            booked, change=BookingChange.CANCELLED, booking_url=HOST_PAGE, ticket_url=TICKET_PAGE, answers=()
        ),
        "link_sent": replace(
            booked,
            notice="Sent Dana Fox a link to pick a new time (dana@fabrikam.example).",
            reschedule_link_sent=True,
        ),
        "cancelled_from_card": replace(
            booked,
            change=BookingChange.CANCELLED,
            reason="Cancelled by Alex Kim",
            notice="Cancelled Tue 24 Nov 10:00 with Dana Fox. The client is told by email.",
        ),
        "hostile": BookingEventView(
            BookingChange.CANCELLED,
            "bk-1",
            HOSTILE,
            HOSTILE,
            HOSTILE,
            START,
            START + HALF_HOUR,
            NEW_YORK,
            reason=HOSTILE,
            answers=((HOSTILE, HOSTILE),),
            ticket_number=HOSTILE,
            notice=HOSTILE,
        ),
        "hostile_booked": BookingEventView(
            BookingChange.BOOKED,
            HOSTILE,
            HOSTILE,
            HOSTILE,
            HOSTILE,
            START,
            START + HALF_HOUR,
            NEW_YORK,
            answers=((HOSTILE, HOSTILE),),
            ticket_number=HOSTILE,
            notice=HOSTILE,
        ),
        "maximal": BookingEventView(
            BookingChange.RESCHEDULED,
            "bk-1",
            LONG,
            LONG,
            LONG,
            START,
            START + HALF_HOUR,
            NEW_YORK,
            join_url="https://teams.microsoft.com/l/meetup-join/" + "a" * 1000,
            previous_starts_at=START - timedelta(days=3),
            reason=LONG * 10,
            answers=tuple((LONG, LONG * 10) for _ in range(100)),
        ),
    }


def booking_link_views() -> dict[str, BookingLinkView]:
    return {
        "typical": BookingLinkView(
            "Alex Kim",
            "Intro call",
            30,
            "Microsoft Teams meeting",
            "https://book.contoso.example/alex/intro-call",
            "A quick call to see whether we are a fit. Bring your questions about backups and licensing.",
        ),
        "no_description": BookingLinkView("Alex Kim", "Quarterly review", 90, "Phone call", "https://b.example/q"),
        "round_robin": BookingLinkView(
            "the Sales team", "Discovery call", 30, "Microsoft Teams meeting", "https://b.example/discovery"
        ),
        "panel": BookingLinkView(
            "Alice Adams and Bob Brown", "Proposal review", 60, "Phone call", "https://b.example/p"
        ),
        "hostile": BookingLinkView(HOSTILE, HOSTILE, 45, HOSTILE, "https://b.example/q", HOSTILE * 50),
    }


def all_cards() -> dict[str, dict[str, Any]]:
    """Every Adaptive Card variant the tests check, named "<card>-<view>"."""
    renderers: list[tuple[str, Any, dict[str, Any]]] = [
        ("welcome", render_welcome, welcome_views()),
        ("notice", render_notice, notice_views()),
        ("personal_chat", render_personal_chat, personal_chat_views()),
        ("links", render_links, links_views()),
        ("page", render_page, page_views()),
        ("upcoming", render_upcoming, upcoming_views()),
        ("team", render_team, team_views()),
        ("failures", render_failures, failures_views()),
        ("booking_event", render_booking_event, booking_event_views()),
        ("booking_link", render_booking_link, booking_link_views()),
    ]
    return {f"{card}-{name}": render(view) for card, render, views in renderers for name, view in views.items()}


CARDS = all_cards()


# walking cards


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in a card, depth first (elements, actions, choices, show-card cards...)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def of_type(card: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [node for node in walk(card) if node.get("type") == kind]


def markdown_texts(card: dict[str, Any]) -> list[str]:
    """Every string a Teams client runs through markdown: TextBlock text and FactSet titles and values."""
    texts = [block["text"] for block in of_type(card, "TextBlock")]
    for facts in of_type(card, "FactSet"):
        for fact in facts["facts"]:
            texts += [fact["title"], fact["value"]]
    return texts


def all_texts(card: dict[str, Any]) -> str:
    return "\n".join(markdown_texts(card))


def execute_actions(node: Any, verb: str) -> list[dict[str, Any]]:
    return [action for action in of_type(node, "Action.Execute") if action["verb"] == verb]


COMMONMARK = MarkdownIt("commonmark")


def rendered_inline(text: str) -> list[Any]:
    """The inline tokens CommonMark makes of `text`, failing if it makes anything but one paragraph."""
    tokens = COMMONMARK.parse(text)
    if not tokens:
        return []
    assert [token.type for token in tokens] == ["paragraph_open", "inline", "paragraph_close"], (text, tokens)
    return list(tokens[1].children or [])


# 1. schema


@pytest.fixture(scope="module")
def schema_validator() -> Any:
    assert SCHEMA_PATH.exists(), f"{SCHEMA_PATH} is missing: CI puts the shared/ folder beside the repo"
    schema = json.loads(SCHEMA_PATH.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    assert validator_class is jsonschema.Draft6Validator, "the official schema declares draft-06"
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


@pytest.mark.parametrize("name", sorted(CARDS))
def test_every_card_validates_against_the_adaptive_card_1_5_schema(name: str, schema_validator: Any) -> None:
    errors = [
        f"{list(error.absolute_path)}: {error.message[:300]}" for error in schema_validator.iter_errors(CARDS[name])
    ]
    assert errors == []


def test_the_schema_check_rejects_an_invalid_card(schema_validator: Any) -> None:
    broken = {
        "type": "AdaptiveCard",
        "version": "1.5",
        "body": [{"type": "TextBlock", "text": "x", "weight": "Heavy"}, {"type": "Input.Text"}],
        "actions": [{"type": "Action.OpenUrl", "title": "no url"}],
    }
    assert len(list(schema_validator.iter_errors(broken))) > 0


@pytest.mark.parametrize("name", sorted(CARDS))
def test_every_card_declares_version_1_5_and_wraps_all_text(name: str) -> None:
    card = CARDS[name]
    assert (card["type"], card["version"], card["$schema"]) == (
        "AdaptiveCard",
        "1.5",
        "http://adaptivecards.io/schemas/adaptive-card.json",
    )
    assert all(block.get("wrap") is True for block in of_type(card, "TextBlock"))


# 2. the official adaptivecards SDK


def run_node_validator(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not ADAPTIVECARDS_SDK.exists():
        pytest.fail(
            "The card tests need Node and node_modules/adaptivecards (the official Adaptive Cards SDK). "
            "Run scripts/bootstrap (CI installs both), or `npm ci` in the repo root: package.json pins adaptivecards."
        )
    return subprocess.run(  # noqa: S603 - fixed argv: our script and files we just wrote
        [node, str(NODE_VALIDATOR), *map(str, paths)], capture_output=True, text=True, timeout=60, check=False
    )


def test_every_card_passes_the_official_adaptivecards_sdk_with_no_events(tmp_path: Path) -> None:
    for name, card in CARDS.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(card))
    result = run_node_validator([tmp_path])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(CARDS)}/{len(CARDS)} cards valid" in result.stdout


def test_the_sdk_validator_fails_on_a_broken_card(tmp_path: Path) -> None:
    broken = {
        "type": "AdaptiveCard",
        "version": "1.5",
        "body": [
            {"type": "TextBlok", "text": "typo"},
            {"type": "Input.Text", "id": "dup"},
            {"type": "Input.Text", "id": "dup"},
        ],
        "actions": [{"type": "Action.OpenUrl", "title": "no url"}],
    }
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    (tmp_path / "good.json").write_text(json.dumps(CARDS["page-typical"]))
    result = run_node_validator([tmp_path / "good.json", tmp_path / "broken.json"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'Unknown element type "TextBlok"' in result.stdout
    assert 'Duplicate Id "dup"' in result.stdout
    assert 'Property "url" must be set' in result.stdout
    assert "good.json: OK" in result.stdout
    assert "1/2 cards valid" in result.stdout


# 3. size


@pytest.mark.parametrize("name", sorted(CARDS))
def test_every_card_fits_in_a_teams_message(name: str) -> None:
    assert len(json.dumps(CARDS[name]).encode()) < TEAMS_MESSAGE_LIMIT


@pytest.mark.parametrize(
    ("name", "total", "cap"),
    [
        ("failures-maximal", 200, 10),
        ("links-hostile", 200, 20),
    ],
)
def test_long_lists_show_what_fits_and_count_the_rest(name: str, total: int, cap: int) -> None:
    card = CARDS[name]
    items = [item for item in card["body"] if item["type"] == "Container" and item.get("separator")]
    assert 1 <= len(items) <= cap
    assert f"and {total - len(items)} more — " in all_texts(card)
    assert card_size(card) < TEAMS_MESSAGE_LIMIT


@pytest.mark.parametrize(
    ("name", "shown", "hidden_line"),
    [
        ("failures-over_cap", 10, "and 1 more — "),
    ],
)
def test_lists_are_capped_even_when_everything_would_fit(name: str, shown: int, hidden_line: str) -> None:
    card = CARDS[name]
    items = [item for item in card["body"] if item["type"] == "Container" and item.get("separator")]
    assert len(items) == shown
    assert hidden_line in all_texts(card)


def list_items(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for item in card["body"] if item["type"] == "Container" and item.get("separator")]


@pytest.mark.parametrize(
    ("name", "verb", "total", "cap"),
    [
        ("upcoming-maximal", "refreshUpcoming", 200, 10),
        ("upcoming-over_cap", "refreshUpcoming", 11, 10),
        ("team-maximal", "filterTeam", 200, 15),
        ("team-over_cap", "filterTeam", 16, 15),
    ],
)
def test_paged_lists_show_what_fits_count_all_and_offer_the_next_page(
    name: str, verb: str, total: int, cap: int
) -> None:
    card = CARDS[name]
    shown = len(list_items(card))
    assert 1 <= shown <= cap
    assert f"Showing 1{DASH}{shown} of {total}" in all_texts(card)
    more = [action for action in execute_actions(card, verb) if action["title"] == "Show more"]
    assert len(more) == 1
    assert more[0]["data"]["offset"] == shown
    assert card_size(card) < TEAMS_MESSAGE_LIMIT


def test_upcoming_pages_count_from_the_whole_list_not_the_page() -> None:
    first, middle, last = (CARDS[f"upcoming-{name}"] for name in ("first_page", "middle_page", "last_page"))
    assert f"Showing 1{DASH}10 of 23" in all_texts(first)
    assert [a["data"] for a in execute_actions(first, "refreshUpcoming")] == [{"offset": 10}, {}]
    assert f"Showing 11{DASH}20 of 23" in all_texts(middle)
    assert [a["data"] for a in execute_actions(middle, "refreshUpcoming")] == [{"offset": 20}, {}]
    assert f"Showing 21{DASH}23 of 23" in all_texts(last)
    # The last page has no Show more, only Refresh (back to the first page).
    assert [a["title"] for a in execute_actions(last, "refreshUpcoming")] == ["Refresh"]
    assert "more" not in all_texts(last).replace("No more", "")
    assert "No more upcoming bookings." in all_texts(CARDS["upcoming-past_the_end"])
    # A list that fits on one page says nothing about pages.
    assert "Showing" not in all_texts(CARDS["upcoming-typical"])


def test_team_pages_keep_the_team_and_let_a_manager_of_several_pick_one() -> None:
    card = CARDS["team-several_teams_paged"]
    assert f"Showing 16{DASH}30 of 40" in all_texts(card)
    (more,) = [a for a in execute_actions(card, "filterTeam") if a["title"] == "Show more"]
    assert more["data"] == {"teamId": "team-2", "offset": 30}
    team, member = of_type(card, "Input.ChoiceSet")
    assert (team["id"], team["label"], team["value"]) == ("team", "Team", "team-2")
    assert team["choices"] == [
        {"title": "East sales", "value": "team-1"},
        {"title": "West sales", "value": "team-2"},
    ]
    assert member["id"] == "member"
    # One team: no picker.
    assert [choice["id"] for choice in of_type(CARDS["team-typical"], "Input.ChoiceSet")] == ["member"]
    hostile = of_type(CARDS["team-hostile_teams"], "Input.ChoiceSet")[0]
    assert hostile["choices"][0]["title"] == clean_text(HOSTILE, 60)


def test_a_sent_reschedule_link_reads_sent_and_is_disabled() -> None:
    (sent, fresh) = execute_actions(CARDS["upcoming-link_sent"], "sendRescheduleLink")
    assert (sent["title"], sent["isEnabled"], sent["data"]) == ("Reschedule link sent", False, {"bookingId": "bk-0000"})
    assert (fresh["title"], "isEnabled" in fresh) == ("Send reschedule link", False)
    (on_event,) = execute_actions(CARDS["booking_event-link_sent"], "sendRescheduleLink")
    assert (on_event["title"], on_event["isEnabled"]) == ("Reschedule link sent", False)
    notice = [item for item in CARDS["booking_event-link_sent"]["body"] if item.get("style") == "good"]
    assert notice[0]["items"][0]["text"] == "Sent Dana Fox a link to pick a new time (dana@fabrikam.example)."


def test_booking_event_answers_are_capped_and_fit_the_budget() -> None:
    facts = of_type(CARDS["booking_event-maximal"], "FactSet")[0]["facts"]
    shown = len(facts) - 3  # When, Client, Email
    assert 1 <= shown <= 20
    assert f"and {100 - shown} more answers" in all_texts(CARDS["booking_event-maximal"])
    many_short = render_booking_event(
        BookingEventView(
            BookingChange.BOOKED,
            "bk",
            "Intro",
            "Dana",
            "d@x.example",
            START,
            START + HALF_HOUR,
            NEW_YORK,
            answers=tuple((f"Q{n}", "yes") for n in range(25)),
        )
    )
    assert len(of_type(many_short, "FactSet")[0]["facts"]) == 3 + 20
    assert "and 5 more answers, not shown here" in all_texts(many_short)
    with_page = render_booking_event(
        replace(
            booking_event_views()["booked"], answers=tuple((f"Q{n}", "yes") for n in range(25)), booking_url=HOST_PAGE
        )
    )
    assert "and 5 more answers: Open booking shows them all" in all_texts(with_page)


# 4. escaping


def test_a_hostile_client_name_is_escaped_to_literal_text() -> None:
    assert escape_markdown(HOSTILE) == (
        r"\*\*\[x\](https://evil.example)\*\* {" + "\u200b" + "{DATE(2017-02-14T06:08:39Z,SHORT)}}"
    )


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("1. Dana", r"1\. Dana"),
        ("2026) Dana", r"2026\) Dana"),
        ("- Dana", r"\- Dana"),
        ("+ Dana", r"\+ Dana"),
        ("# Dana", r"\# Dana"),
        ("> Dana", r"\> Dana"),
        ("Smith & Sons", "Smith & Sons"),
        ("&#91;x&#93;", r"\&#91;x\&#93;"),
        ("C:\\temp", r"C:\\temp"),
        ("<b>hi</b>", r"\<b>hi\</b>"),
        ("`code` ~~gone~~", r"\`code\` \~\~gone\~\~"),
        ("Dana-Fox 1. x", "Dana-Fox 1. x"),
    ],
)
def test_escape_markdown_neutralises_block_and_inline_syntax(raw: str, escaped: str) -> None:
    assert escape_markdown(raw) == escaped


def test_escape_markdown_strips_controls_collapses_lines_and_caps_length() -> None:
    assert escape_markdown("Dana\x00\x07 Fox\r\n\n- evil\tlist") == r"Dana Fox - evil list"
    assert escape_markdown("\u202emoc.live\u202c Dana") == "moc.live Dana"
    capped = escape_markdown("a" * 1000)
    assert capped == "a" * 299 + "…"
    assert escape_markdown("b" * 300) == "b" * 300
    assert escape_markdown("word " * 100, limit=12) == "word word w…"


MARKDOWN_HEAVY = st.text(alphabet=st.sampled_from(list("*_[]()`~<>#-+.!&;#\\{}| \n\t\r1aZé:/\x00\u202e")), max_size=80)


@settings(max_examples=400, deadline=None)
@given(st.one_of(MARKDOWN_HEAVY, st.text(max_size=80)))
def test_escaped_text_renders_as_exactly_the_cleaned_text_with_no_markup(text: str) -> None:
    escaped = escape_markdown(text)
    children = rendered_inline(escaped)
    assert [child.type for child in children if child.type != "text"] == []
    assert "".join(child.content for child in children) == clean_text(text)
    assert "{{" not in escaped


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600), st.integers(min_value=1, max_value=400))
def test_cleaned_text_is_one_bounded_line_without_controls(text: str, limit: int) -> None:
    cleaned = clean_text(text, limit)
    assert not any(unicodedata.category(char) == "Cc" for char in cleaned)
    assert cleaned == cleaned.strip()
    assert "  " not in cleaned
    assert "{{" not in cleaned
    # The zero-width spaces that break "{{" are the only characters added beyond the limit.
    assert len(cleaned.replace("\u200b", "")) <= limit
    has_invisibles = any(unicodedata.category(char) in {"Cc", "Cf"} for char in text)
    if not has_invisibles and len(" ".join(text.split())) > limit:
        assert cleaned.endswith("…")


@pytest.mark.parametrize("name", sorted(CARDS))
def test_no_card_text_renders_any_markdown(name: str) -> None:
    # The cards use no markdown of their own, so any link, emphasis, code or list in their text is injected.
    for text in markdown_texts(CARDS[name]):
        children = rendered_inline(text)
        assert [child.type for child in children if child.type not in {"text", "softbreak"}] == [], text
        assert "{{" not in text


@pytest.mark.parametrize("name", [name for name in sorted(CARDS) if name.endswith("-hostile")])
def test_hostile_text_appears_only_escaped(name: str) -> None:
    texts = all_texts(CARDS[name])
    assert escape_markdown(HOSTILE)[:30] in texts
    assert "[x](" not in texts.replace(r"\[x\](", "")
    assert "**" not in texts


def test_the_personal_chat_note_names_no_data_and_opens_the_bots_chat() -> None:
    card = CARDS["personal_chat-typical"]
    assert "your upcoming bookings" in all_texts(card)
    assert card["actions"] == [
        {
            "type": "Action.OpenUrl",
            "title": "Open my personal chat with Slotwise",
            "url": "https://teams.microsoft.com/l/chat/0/0?users=28:3b1f0c6e-6a0e-4f1e-9d54-7a0c2f0d1b01",
        }
    ]


def test_member_names_in_the_filter_are_plain_text_without_template_syntax() -> None:
    choices = of_type(CARDS["team-hostile"], "Input.ChoiceSet")[0]["choices"]
    assert choices[1]["title"] == clean_text(HOSTILE, 60)
    assert "{{" not in choices[1]["title"]


def test_the_thumbnail_preview_escapes_html_not_markdown() -> None:
    preview = render_booking_link_preview(
        BookingLinkView("Alex <b>Kim</b> & co", "Intro *call*", 30, "Teams", "https://b.example/q")
    )
    assert preview == {
        "contentType": "application/vnd.microsoft.card.thumbnail",
        "content": {"title": "Intro *call*", "text": "30 min · Teams · with Alex &lt;b&gt;Kim&lt;/b&gt; &amp; co"},
    }
    assert escape_plain_html("<script>{{x}}</script>") == "&lt;script&gt;{\u200b{x}}&lt;/script&gt;"


# formatting


def test_format_when_shows_local_times_and_the_zone_abbreviation() -> None:
    assert format_when(START, START + HALF_HOUR, NEW_YORK) == f"Tue 24 Nov, 10:00{DASH}10:30 EST"
    assert format_when(START, START + HALF_HOUR, ZoneInfo("Europe/London")) == f"Tue 24 Nov, 15:00{DASH}15:30 GMT"
    summer = datetime(2026, 7, 1, 13, 0, tzinfo=UTC)
    assert format_when(summer, summer + HALF_HOUR, NEW_YORK) == f"Wed 1 Jul, 09:00{DASH}09:30 EDT"


def test_format_when_names_both_abbreviations_across_a_dst_change_and_both_days_across_midnight() -> None:
    # 2026-11-01 06:00 UTC is when New York falls back from EDT to EST.
    assert (
        format_when(datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 1, 6, 15, tzinfo=UTC), NEW_YORK)
        == f"Sun 1 Nov, 01:30 EDT{DASH}01:15 EST"
    )
    late = datetime(2026, 11, 25, 4, 30, tzinfo=UTC)
    assert (
        format_when(late, late + timedelta(hours=1), NEW_YORK) == f"Tue 24 Nov, 23:30 EST {DASH} Wed 25 Nov, 00:30 EST"
    )


def test_formatting_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_when(datetime(2026, 11, 24, 10), datetime(2026, 11, 24, 11), NEW_YORK)  # noqa: DTZ001


def test_format_day_converts_datetimes_but_takes_dates_as_they_are() -> None:
    assert format_day(datetime(2026, 11, 25, 3, 0, tzinfo=UTC), NEW_YORK) == "Tue 24 Nov"
    assert format_day(date(2026, 11, 25), NEW_YORK) == "Wed 25 Nov"
    assert format_moment(START, NEW_YORK) == "Tue 24 Nov, 10:00 EST"


def test_times_follow_the_readers_locale_for_this_turn_only() -> None:
    async def turn(locale: str | None) -> str:
        set_reader_locale(locale)
        return format_when(START, START + HALF_HOUR, NEW_YORK)

    async def both() -> list[str]:
        # Each activity is its own task: one reader's locale never reaches the other's cards.
        return list(await asyncio.gather(turn("en-US"), turn("de-DE"), turn("xx-Nowhere"), turn(None)))

    us, german, unknown, unset = asyncio.run(both())
    assert us == f"Tue, Nov 24, 10:00\u202fAM{DASH}10:30\u202fAM EST"
    assert german == f"Di., 24. Nov., 10:00{DASH}10:30 EST"
    assert unknown == unset == f"Tue 24 Nov, 10:00{DASH}10:30 EST"
    # Nothing leaked into this (the test's own) context.
    assert format_moment(START, NEW_YORK) == "Tue 24 Nov, 10:00 EST"


@pytest.mark.parametrize(("minutes", "text"), [(15, "15 min"), (60, "1 hr"), (90, "1 hr 30 min"), (120, "2 hr")])
def test_durations_read_as_people_say_them(minutes: int, text: str) -> None:
    assert format_duration(minutes) == text


@pytest.mark.parametrize(
    ("action", "text"), [("create_ticket", "Create ticket"), ("send_email", "Send email"), ("", "Unnamed step")]
)
def test_workflow_actions_are_humanised(action: str, text: str) -> None:
    assert humanise_action(action) == text


# 5. snapshots

SNAPSHOT_CARDS = {
    "welcome": lambda: render_welcome(welcome_views()["manager"]),
    "notice": lambda: render_notice(notice_views()["not_set_up"]),
    "links": lambda: render_links(links_views()["typical"]),
    "page": lambda: render_page(page_views()["typical"]),
    "upcoming": lambda: render_upcoming(upcoming_views()["with_notice"]),
    "upcoming_middle_page": lambda: render_upcoming(upcoming_views()["middle_page"]),
    "upcoming_link_sent": lambda: render_upcoming(upcoming_views()["link_sent"]),
    "team_several_teams_paged": lambda: render_team(team_views()["several_teams_paged"]),
    "booking_event_booked": lambda: render_booking_event(booking_event_views()["booked"]),
    "booking_event_link_sent": lambda: render_booking_event(booking_event_views()["link_sent"]),
    "booking_event_with_links": lambda: render_booking_event(booking_event_views()["with_links"]),
    "booking_event_cancelled_from_card": lambda: render_booking_event(booking_event_views()["cancelled_from_card"]),
    "booking_link_round_robin": lambda: render_booking_link(booking_link_views()["round_robin"]),
    "team": lambda: render_team(team_views()["filtered"]),
    "failures": lambda: render_failures(failures_views()["typical"]),
    "booking_event": lambda: render_booking_event(booking_event_views()["rescheduled"]),
    "booking_link": lambda: render_booking_link(booking_link_views()["typical"]),
    "booking_link_preview": lambda: render_booking_link_preview(booking_link_views()["typical"]),
}


@pytest.mark.parametrize("name", sorted(SNAPSHOT_CARDS))
def test_card_matches_its_snapshot(name: str) -> None:
    card = SNAPSHOT_CARDS[name]()
    path = SNAPSHOTS / f"{name}.json"
    if UPDATE_SNAPSHOTS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if not path.exists():
        pytest.fail(
            f"No snapshot {path.relative_to(REPO)}: create it with "
            "`SLOTWISE_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/unit/test_cards.py -k snapshot`, then review it."
        )
    assert card == json.loads(path.read_text(encoding="utf-8")), (
        f"{name} card changed; if intended, rerun with SLOTWISE_UPDATE_SNAPSHOTS=1 and review the diff"
    )


# 6. action contract (the bot depends on these verbs, data and input ids)


@pytest.mark.parametrize("name", sorted(CARDS))
def test_input_ids_are_unique_within_each_card(name: str) -> None:
    ids = [node["id"] for node in walk(CARDS[name]) if str(node.get("type", "")).startswith("Input.")]
    assert len(ids) == len(set(ids))


def test_upcoming_bookings_carry_cancel_reschedule_and_join_actions() -> None:
    card = CARDS["upcoming-typical"]
    containers = [item for item in card["body"] if item["type"] == "Container" and item.get("separator")]
    assert len(containers) == 2
    for container, booking_id, has_join in zip(containers, ["bk-0000", "bk-0001"], [True, False], strict=True):
        actions = of_type(container, "ActionSet")[0]["actions"]
        titles = [action["title"] for action in actions]
        assert titles == (["Join"] if has_join else []) + ["Cancel…", "Send reschedule link"]
        if has_join:
            assert actions[0] == {
                "type": "Action.OpenUrl",
                "title": "Join",
                "url": f"https://teams.microsoft.com/l/meetup-join/19%3ameeting-{booking_id[-1]}%40thread.v2/0",
            }
        show_card = next(action for action in actions if action["type"] == "Action.ShowCard")
        (reason,) = show_card["card"]["body"]
        assert reason["type"] == "Input.Text"
        assert reason["id"] == f"reason_{booking_id}"
        assert reason["label"] == "Reason (sent to the client)"
        assert reason["isMultiline"] is True
        assert reason["maxLength"] == 500
        (confirm,) = show_card["card"]["actions"]
        assert (confirm["type"], confirm["title"], confirm["verb"], confirm["data"]) == (
            "Action.Execute",
            "Cancel booking",
            "cancelBooking",
            {"bookingId": booking_id},
        )
        (resend,) = execute_actions(container, "sendRescheduleLink")
        assert (resend["title"], resend["data"]) == ("Send reschedule link", {"bookingId": booking_id})
    assert card["actions"] == [{"type": "Action.Execute", "title": "Refresh", "verb": "refreshUpcoming", "data": {}}]


def test_upcoming_shows_zone_notice_and_empty_state() -> None:
    assert "Times in America/New_York" in all_texts(CARDS["upcoming-typical"])
    notice = [item for item in CARDS["upcoming-with_notice"]["body"] if item.get("style") == "good"]
    assert notice[0]["items"][0]["text"] == "Cancelled the 10:00 call with Dana Fox"
    empty = CARDS["upcoming-empty"]
    assert "No upcoming bookings." in all_texts(empty)
    assert execute_actions(empty, "refreshUpcoming")


def test_upcoming_drops_repeated_bookings_so_input_ids_stay_unique() -> None:
    card = render_upcoming(UpcomingView(NEW_YORK, (booking(0), booking(0))))
    assert len(of_type(card, "Input.Text")) == 1


def test_team_card_has_the_member_and_day_filter_and_no_per_booking_actions() -> None:
    card = CARDS["team-filtered"]
    (member,) = of_type(card, "Input.ChoiceSet")
    assert (member["id"], member["label"], member["value"]) == ("member", "Member", "u-alex")
    assert member["choices"] == [
        {"title": "Everyone", "value": EVERYONE},
        {"title": "Alex Kim", "value": "u-alex"},
        {"title": "Sam Ortiz", "value": "u-sam"},
    ]
    (day,) = of_type(card, "Input.Date")
    assert (day["id"], day["label"], day["value"]) == ("day", "Day", "2026-11-24")
    (filter_action,) = of_type(card, "Action.Execute")
    assert (filter_action["title"], filter_action["verb"], filter_action["data"]) == (
        "Filter",
        "filterTeam",
        {"teamId": "team-1"},
    )
    assert "actions" not in card
    assert "Host: Alex Kim" in all_texts(card)
    assert "Member: Alex Kim · Tue 24 Nov" in all_texts(card)


def test_team_card_without_filters_selects_everyone_and_leaves_the_day_empty() -> None:
    for name in ("team-typical", "team-bad_filters"):
        card = CARDS[name]
        assert of_type(card, "Input.ChoiceSet")[0]["value"] == EVERYONE
        assert "value" not in of_type(card, "Input.Date")[0]
    assert "Host: Alex Kim, Sam Ortiz" in all_texts(CARDS["team-typical"])
    assert "No upcoming bookings." in all_texts(CARDS["team-empty"])
    assert "No upcoming bookings match this filter." in all_texts(CARDS["team-empty_filtered"])


def test_team_card_keeps_the_filtered_member_among_the_choices_when_the_list_is_cut() -> None:
    choices = of_type(CARDS["team-maximal"], "Input.ChoiceSet")[0]["choices"]
    assert "u-150" in [choice["value"] for choice in choices]
    assert len(choices) == 1 + 40 + 1


def test_failures_card_retries_by_job_id_and_refreshes() -> None:
    card = CARDS["failures-typical"]
    retries = execute_actions(card, "retryStep")
    assert [(action["title"], action["data"]) for action in retries] == [
        ("Retry", {"jobId": "job-0000"}),
        ("Retry", {"jobId": "job-0001"}),
    ]
    assert card["actions"] == [{"type": "Action.Execute", "title": "Refresh", "verb": "refreshFailures", "data": {}}]
    texts = all_texts(card)
    assert "Create ticket in ConnectWise PSA" in texts
    assert "5 attempts · failed Tue 24 Nov, 10:00 EST" in texts
    assert "No failed steps. Everything went through." in all_texts(CARDS["failures-empty"])


def test_failure_errors_are_escaped_and_capped() -> None:
    card = CARDS["failures-hostile"]
    error_block = next(block for block in of_type(card, "TextBlock") if block.get("fontType") == "Monospace")
    assert error_block["text"] == escape_markdown(HOSTILE * 20, 300)
    assert error_block["text"].endswith("…")


def test_booking_event_headlines_facts_and_actions() -> None:
    booked = CARDS["booking_event-booked"]
    assert of_type(booked, "TextBlock")[0]["text"] == "New booking: Intro call with Dana Fox"
    assert of_type(booked, "FactSet")[0]["facts"][:3] == [
        {"title": "When", "value": f"Tue 24 Nov, 10:00{DASH}10:30 EST"},
        {"title": "Client", "value": "Dana Fox"},
        {"title": "Email", "value": "dana@fabrikam.example"},
    ]
    assert of_type(booked, "FactSet")[0]["facts"][3] == {"title": "Ticket", "value": "#T20261124.0001"}
    assert {"title": "Company size", "value": "50-100"} in of_type(booked, "FactSet")[0]["facts"]
    data = {"bookingId": "bk-0001", "card": "event", "change": "booked", "ticket": "T20261124.0001"}
    join, resend, cancel, upcoming = booked["actions"]
    assert join == {"type": "Action.OpenUrl", "title": "Join", "url": "https://teams.microsoft.com/l/meetup-join/abc"}
    assert resend == {
        "type": "Action.Execute",
        "title": "Send reschedule link",
        "verb": "sendRescheduleLink",
        "data": data,
    }
    # Cancel asks for a reason first; its answer is this card again (the bot reads "card": "event").
    assert (cancel["type"], cancel["title"]) == ("Action.ShowCard", "Cancel…")
    assert cancel["card"]["body"][0]["id"] == "reason_bk-0001"
    assert cancel["card"]["actions"][0]["data"] == data
    # A typed command: the list arrives as a new message and this card, answers and all, stays in the chat.
    assert upcoming == {
        "type": "Action.Submit",
        "title": "My upcoming bookings",
        "data": {"msteams": {"type": "messageBack", "text": "upcoming", "displayText": "upcoming"}},
    }
    assert not execute_actions(booked, "refreshUpcoming")

    rescheduled = CARDS["booking_event-rescheduled"]
    assert of_type(rescheduled, "TextBlock")[0]["text"] == "Rescheduled: Intro call with Dana Fox"
    runs = of_type(rescheduled, "TextRun")
    assert [(run["text"], run.get("strikethrough", False)) for run in runs] == [
        ("Was ", False),
        ("Mon 23 Nov, 10:00 EST", True),
    ]

    cancelled = CARDS["booking_event-cancelled"]
    assert of_type(cancelled, "TextBlock")[0]["text"] == "Cancelled: Intro call with Dana Fox"
    assert {"title": "Reason", "value": "Something came up, sorry!"} in of_type(cancelled, "FactSet")[0]["facts"]
    assert [action["title"] for action in cancelled["actions"]] == ["My upcoming bookings"]
    from_card = CARDS["booking_event-cancelled_from_card"]
    assert of_type(from_card, "TextBlock")[0]["text"] == "Cancelled: Intro call with Dana Fox"
    assert {"title": "Company size", "value": "50-100"} in of_type(from_card, "FactSet")[0]["facts"]
    assert [action["title"] for action in from_card["actions"]] == ["My upcoming bookings"]
    no_reason = of_type(CARDS["booking_event-cancelled_no_reason"], "FactSet")[0]["facts"]
    assert {"title": "Reason", "value": "No reason given"} in no_reason


def test_booking_event_opens_the_booking_and_its_ticket_in_every_state() -> None:
    def opens(card: dict[str, Any]) -> list[tuple[str, str]]:
        sets = of_type(card, "ActionSet")
        return [(action["title"], action["url"]) for found in sets for action in found["actions"]]

    booked = CARDS["booking_event-with_links"]
    assert opens(booked) == [("Open booking", HOST_PAGE), ("Open ticket", TICKET_PAGE)]
    # The card's own row keeps the actions on the meeting.
    assert [action["title"] for action in booked["actions"]] == [
        "Join",
        "Send reschedule link",
        "Cancel…",
        "My upcoming bookings",
    ]
    cancelled = CARDS["booking_event-cancelled_with_links"]
    assert opens(cancelled) == [("Open booking", HOST_PAGE), ("Open ticket", TICKET_PAGE)]
    # Without the links (no host page, no ticket in a PSA) the buttons are left out, not shown empty.
    assert opens(CARDS["booking_event-booked"]) == []


def test_welcome_buttons_send_commands_and_managers_get_two_more() -> None:
    def commands(card: dict[str, Any]) -> list[str]:
        submits = of_type(card, "Action.Submit")
        for submit in submits:
            back = submit["data"]["msteams"]
            assert back["type"] == "messageBack"
            assert back["text"] == back["displayText"]
        return [submit["data"]["msteams"]["text"] for submit in submits]

    assert sorted(commands(CARDS["welcome-rep"])) == ["help", "links", "page", "upcoming"]
    assert sorted(commands(CARDS["welcome-manager"])) == ["failures", "help", "links", "page", "team", "upcoming"]
    facts = of_type(CARDS["welcome-rep"], "FactSet")[0]["facts"]
    assert facts[0] == {
        "title": "links",
        "value": "Your appointment types and their Shareable URLs — try “show my links”",
    }
    assert "Type a command" not in all_texts(CARDS["welcome-no_commands"])


def test_notice_tone_sets_the_container_style() -> None:
    styles = {name: CARDS[f"notice-{name}"]["body"][0]["style"] for name in ("not_set_up", "error", "default")}
    assert styles == {"not_set_up": "warning", "error": "attention", "default": "default"}
    assert CARDS["notice-unknown_tone"]["body"][0]["style"] == "default"


def test_links_card_lists_each_type_with_its_url_and_open_button() -> None:
    card = CARDS["links-typical"]
    containers = [item for item in card["body"] if item["type"] == "Container"]
    assert [container["items"][0]["text"] for container in containers] == ["Intro call", "Quarterly review"]
    assert containers[0]["items"][1]["text"] == "30 min · Microsoft Teams meeting"
    assert containers[1]["items"][1]["text"] == "1 hr 30 min · Phone call"
    assert of_type(containers[0], "Action.OpenUrl") == [
        {"type": "Action.OpenUrl", "title": "Open", "url": "https://book.contoso.example/alex/intro-call"}
    ]
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open my personal page", "url": "https://book.contoso.example/alex"}
    ]
    empty = all_texts(CARDS["links-empty"])
    assert "You have no appointment types yet; ask your admin to add you to one." in empty


def test_page_card_counts_types() -> None:
    assert "2 appointment types" in all_texts(CARDS["page-typical"])
    assert "1 appointment type" in all_texts(CARDS["page-one_type"])
    assert CARDS["page-typical"]["actions"][0]["url"] == "https://book.contoso.example/alex"


def test_booking_link_card_opens_the_booking_page() -> None:
    card = CARDS["booking_link-typical"]
    texts = [block["text"] for block in of_type(card, "TextBlock")]
    assert texts[:3] == ["Book time with Alex Kim", "Intro call", "30 min · Microsoft Teams meeting"]
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Pick a time", "url": "https://book.contoso.example/alex/intro-call"}
    ]
    assert len(of_type(CARDS["booking_link-no_description"], "TextBlock")) == 3


def test_booking_link_card_names_the_team_or_the_panel() -> None:
    assert of_type(CARDS["booking_link-round_robin"], "TextBlock")[0]["text"] == "Book time with the Sales team"
    assert of_type(CARDS["booking_link-panel"], "TextBlock")[0]["text"] == "Book time with Alice Adams and Bob Brown"
