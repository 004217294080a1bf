"""The manager's "team" card: a member and day filter, then the team's upcoming bookings with their hosts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from cards.bookings import booking_lines, unique_bookings
from cards.elements import (
    Element,
    action_set,
    adaptive_card,
    container,
    execute,
    fit_to_budget,
    heading,
    subtle,
    text_block,
)
from cards.text import clean_text, escape_markdown, format_day
from cards.upcoming import page_line
from cards.views import BookingItem, TeamChoice, TeamView

MAX_BOOKINGS = 15
MAX_MEMBERS = 40
"""Choices in the member filter; the dropdown stays usable and the card within Teams' size limit."""
MAX_TEAMS = 40
"""Teams in the team picker of a manager of many."""
MEMBER_NAME_LIMIT = 60
EVERYONE = "*"
"""The member filter's value for "Everyone". Not "": the adaptivecards SDK rejects a choice with an empty value
(PropertyCantBeNull), so the bot must read both "*" and "" (nothing chosen) as no member filter."""


def render_team(view: TeamView) -> dict[str, Any]:
    """Heading, filter row (member, day, Filter), then up to 15 bookings with host names."""
    member_names = {member.user_id: member.name for member in view.members if member.user_id}
    member = view.member_filter if view.member_filter in member_names else None
    day = _parse_day(view.day_filter)
    scope = [f"Member: {escape_markdown(member_names[member], MEMBER_NAME_LIMIT)}" if member else "Everyone"]
    if day:
        scope.append(format_day(day, view.time_zone))
    top = [
        heading(f"{escape_markdown(view.team_name, 120)}: upcoming bookings"),
        subtle(f"{' · '.join(scope)} · times in {view.time_zone.key}"),
        _filter_row(view, member, day),
    ]
    bookings = unique_bookings(view.bookings)
    if not bookings:
        if view.offset:
            empty = "No more bookings match this filter."
        else:
            empty = "No upcoming bookings match this filter." if member or day else "No upcoming bookings."
        return adaptive_card([*top, text_block(empty, spacing="Medium")])
    total = max(view.total if view.total is not None else 0, view.offset + len(bookings))

    def build(items: Sequence[Element], _hidden: int) -> Element:
        body = [*top, *items]
        end = view.offset + len(items)
        if view.offset or end < total:
            body.append(page_line(view.offset, end, total))
        if end < total:
            # The filter inputs ride along with the button, so the next page keeps the member and day.
            more = execute("Show more", "filterTeam", {"teamId": view.team_id, "offset": end})
            body.append(action_set([more], spacing="Small"))
        return adaptive_card(body)

    return fit_to_budget(build, partial(_render_booking, tz=view.time_zone), bookings, MAX_BOOKINGS)


def _filter_row(view: TeamView, member: str | None, day: date | None) -> Element:
    # Stacked rather than in a ColumnSet: two inputs side by side are too narrow on a phone.
    # Members without an id cannot be chosen (an empty choice value is invalid); the current filter is always kept.
    members = [m for m in view.members if m.user_id and m.user_id != EVERYONE][:MAX_MEMBERS]
    if member and all(m.user_id != member for m in members):
        members.append(next(m for m in view.members if m.user_id == member))
    choices = [{"title": "Everyone", "value": EVERYONE}] + [
        {"title": clean_text(m.name, MEMBER_NAME_LIMIT) or "(no name)", "value": m.user_id} for m in members
    ]
    team_inputs: list[Element] = []
    teams = [team for team in view.teams if team.team_id][:MAX_TEAMS]
    if teams and all(team.team_id != view.team_id for team in teams):
        teams.append(TeamChoice(view.team_id, view.team_name))
    if len(teams) > 1:
        # Not "teamId": that is the Filter button's data, and Teams merges inputs and data into one object.
        team_inputs.append(
            {
                "type": "Input.ChoiceSet",
                "id": "team",
                "label": "Team",
                "style": "compact",
                "choices": [
                    {"title": clean_text(team.name, MEMBER_NAME_LIMIT) or "(no name)", "value": team.team_id}
                    for team in teams
                ],
                "value": view.team_id,
            }
        )
    member_input = {
        "type": "Input.ChoiceSet",
        "id": "member",
        "label": "Member",
        "style": "compact",
        "choices": choices,
        "value": member or EVERYONE,
    }
    day_input: Element = {"type": "Input.Date", "id": "day", "label": "Day"}
    if day:
        day_input["value"] = day.isoformat()
    return container(
        [
            *team_inputs,
            member_input,
            day_input,
            action_set([execute("Filter", "filterTeam", {"teamId": view.team_id})], spacing="Small"),
        ],
        style="emphasis",
        spacing="Medium",
    )


def _parse_day(day_filter: str | None) -> date | None:
    """The day filter as a date; anything that is not YYYY-MM-DD is ignored rather than sent to the date picker."""
    if not day_filter:
        return None
    try:
        return date.fromisoformat(day_filter)
    except ValueError:
        return None


def _render_booking(booking: BookingItem, tz: ZoneInfo) -> Element:
    return container(booking_lines(booking, tz, with_hosts=True), separator=True, spacing="Medium")
