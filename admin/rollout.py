"""Tenant as code: validate a YAML tenant file, diff it against the database, and apply it in one transaction.

The file describes one tenant completely: the tenant itself, its users, teams and appointment types. Rows of that
tenant which the file no longer lists are deleted, so the file is the single source of truth. Secrets never live in
the file; they come from the environment (PRODUCT.md, section 7).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduling.errors import NotFound, SlotwiseError
from storage.database import Database
from storage.repositories import WEEKDAYS, new_id
from storage.tables import (
    appointment_types,
    bookings,
    busy_cache,
    host_slots,
    scheduling_requests,
    teams,
    teams_conversations,
    tenants,
    users,
)
from workflows.triggers import Connected, WorkflowSpec, teams_meeting_problem, validate_workflow

_TENANTS = tenants
_USERS = users
_TEAMS = teams
_TYPES = appointment_types
_BOOKINGS = bookings
_REQUESTS = scheduling_requests
_HOST_SLOTS = host_slots
_BUSY_CACHE = busy_cache
_TEAMS_CONVERSATIONS = teams_conversations

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
QUESTION_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
INTERVAL_PATTERN = r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$"
# Singular and plural, and "business hours" with a space as well as an underscore, because admins write both.
SPAN_PATTERN = r"^(\d{1,6}) +((?:business[ _])?(?:hour|day)s?|minutes?)$"
_SPAN_UNITS = ("minutes", "hours", "days", "business_hours", "business_days")
_MINUTES_PER_DAY = 24 * 60

Loc = tuple[str | int, ...]
Kind = Literal["tenant", "user", "team", "appointment_type"]
Action = Literal["create", "update", "delete"]


class RolloutError(SlotwiseError):
    """The tenant file or the plan cannot be applied; `messages` holds one line per problem, each naming its field."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


def _invalid(message: str) -> PydanticCustomError:
    # The message travels as context so braces in user input are never read as template fields.
    return PydanticCustomError("slotwise_invalid", "{reason}", {"reason": message})


def _check_slug(value: str) -> str:
    if not re.fullmatch(SLUG_PATTERN, value):
        raise _invalid(
            f"{value!r} is not a valid slug: use lowercase letters, digits and hyphens, starting with a letter or"
            " digit, at most 63 characters"
        )
    return value


def _check_question_key(value: str) -> str:
    if not re.fullmatch(QUESTION_KEY_PATTERN, value):
        raise _invalid(f"{value!r} is not a valid question key: use lowercase letters, digits and underscores")
    return value


def _check_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError covers keys such as "../etc"; OSError covers directories of the zone database ("America").
        raise _invalid(f"{value!r} is not an IANA time zone") from None
    return value


def _date_to_text(value: object) -> object:
    # Plain yaml.safe_load turns unquoted 2026-12-25 into a date; accept it so callers outside this module may use it.
    if isinstance(value, datetime):
        raise _invalid(f"'{value.isoformat()}' is a moment in time, not a date (YYYY-MM-DD)")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _check_date(value: str) -> str:
    if not re.fullmatch(DATE_PATTERN, value):
        raise _invalid(f"{value!r} is not a date: write YYYY-MM-DD")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise _invalid(f"{value!r} is not a real calendar date") from None
    return value


def _check_interval(value: str) -> str:
    text = value.replace(" ", "")
    match = re.fullmatch(INTERVAL_PATTERN, text)
    if match is None:
        raise _invalid(f"{value!r} is not a working-hours interval: write 'HH:MM-HH:MM', for example '09:00-17:00'")
    start_hour, start_minute, end_hour, end_minute = (int(part) for part in match.groups())
    start, end = start_hour * 60 + start_minute, end_hour * 60 + end_minute
    if start_hour > 23 or start_minute > 59 or end_minute > 59 or end > _MINUTES_PER_DAY:
        raise _invalid(f"{value!r} contains an impossible time of day (the latest end is 24:00)")
    if end <= start:
        # Midnight as an end is written 24:00; storage reads it back as the following midnight.
        raise _invalid(f"{value!r} ends at or before it starts (write 24:00 for midnight at the end of the day)")
    return text


def _minute_of_day(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _check_ordered(intervals: list[str]) -> list[str]:
    # The slot engine assumes sorted, disjoint working intervals; touching ones (12:00-12:00) are fine.
    previous: str | None = None
    previous_end = -1
    for text in intervals:
        start, end = (_minute_of_day(clock) for clock in text.split("-"))
        if previous is not None and start < previous_end:
            raise _invalid(f"{text!r} overlaps or comes before {previous!r}: list intervals in order, without overlaps")
        previous, previous_end = text, end
    return intervals


def _check_span(value: str) -> str:
    match = re.fullmatch(SPAN_PATTERN, value.strip())
    if match is None:
        raise _invalid(
            f"{value!r} is not a length of time: write '<n> <unit>' with unit minutes, hours, days,"
            " business_hours or business_days"
        )
    unit = match.group(2).replace(" ", "_")
    return f"{int(match.group(1))} {unit if unit.endswith('s') else unit + 's'}"


def _check_json_mapping(value: object) -> object:
    """Workflows are stored as JSON, so anything that JSON would change or refuse is rejected here, not at apply."""

    def visit(item: object, where: str) -> object:
        if isinstance(item, Mapping):
            result: dict[str, object] = {}
            for key, child in item.items():
                if not isinstance(key, str):
                    # YAML 1.1 reads an unquoted `on:` or `yes:` key as a boolean; quote such keys.
                    raise _invalid(f"key {key!r} at {where or 'top level'} must be text (quote it)")
                result[key] = visit(child, f"{where}.{key}" if where else key)
            return result
        if isinstance(item, list | tuple):
            return [visit(child, f"{where}[{index}]") for index, child in enumerate(item)]
        if isinstance(item, datetime | date):
            return item.isoformat()
        if isinstance(item, float) and not math.isfinite(item):
            raise _invalid(f"{where}: {item!r} cannot be stored as JSON")
        if item is None or isinstance(item, str | int | float):
            return item
        raise _invalid(f"{where}: {type(item).__name__} values cannot be stored as JSON")

    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _invalid("workflow must be a mapping")
    return visit(value, "")


Slug = Annotated[str, AfterValidator(_check_slug), WithJsonSchema({"type": "string", "pattern": SLUG_PATTERN})]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
TimeZoneName = Annotated[
    str,
    StringConstraints(max_length=64),
    AfterValidator(_check_time_zone),
    WithJsonSchema({"type": "string", "description": "IANA time zone, e.g. Europe/London"}),
]
IsoDate = Annotated[
    str,
    BeforeValidator(_date_to_text),
    AfterValidator(_check_date),
    WithJsonSchema({"type": "string", "format": "date"}),
]
GUID_PATTERN = r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"
MicrosoftTenantId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, pattern=GUID_PATTERN),
    WithJsonSchema({"type": "string", "format": "uuid", "description": "Entra directory (tenant) id"}),
]
Interval = Annotated[
    str,
    AfterValidator(_check_interval),
    WithJsonSchema({"type": "string", "pattern": INTERVAL_PATTERN, "examples": ["09:00-17:00", "18:00-24:00"]}),
]
Intervals = Annotated[list[Interval], AfterValidator(_check_ordered)]
SpanText = Annotated[
    str,
    AfterValidator(_check_span),
    WithJsonSchema({"type": "string", "pattern": SPAN_PATTERN, "examples": ["30 minutes", "4 business_hours"]}),
]
Calendar = Literal["psa", "m365"]


class _FileModel(BaseModel):
    # Unknown keys are typos until proven otherwise: a misspelt `buffer_befor` must fail, not be ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class TenantSpec(_FileModel):
    slug: Slug
    name: Name
    time_zone: TimeZoneName
    holidays: list[IsoDate] = Field(default_factory=list)
    microsoft_tenant_id: MicrosoftTenantId | None = None
    """The Microsoft 365 tenant (directory) id whose Teams users may use the Slotwise bot."""

    @field_validator("holidays")
    @classmethod
    def _sorted_holidays(cls, holidays: list[str]) -> list[str]:
        # A canonical order keeps the diff quiet when someone merely reorders the list.
        return sorted(set(holidays))


class WorkingHours(_FileModel):
    """Weekly working time in the user's own zone; a day left out or empty is a day off."""

    mon: Intervals = Field(default_factory=list)
    tue: Intervals = Field(default_factory=list)
    wed: Intervals = Field(default_factory=list)
    thu: Intervals = Field(default_factory=list)
    fri: Intervals = Field(default_factory=list)
    sat: Intervals = Field(default_factory=list)
    sun: Intervals = Field(default_factory=list)


class UserSpec(_FileModel):
    slug: Slug
    name: Name
    email: Annotated[EmailStr, StringConstraints(max_length=254)]
    time_zone: TimeZoneName
    role: Literal["member", "manager", "admin"] = "member"
    aad_object_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None
    psa_member: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = Field(
        default=None,
        description="The user's identifier in the PSA: ConnectWise member identifier, Autotask resource id or HaloPSA "
        "agent id. Schedule entries and tickets are assigned to it.",
    )
    primary_calendar: Calendar
    blocking_calendars: list[Calendar] = Field(default_factory=list)
    working_hours: WorkingHours
    date_overrides: dict[IsoDate, Intervals] = Field(
        default_factory=dict, description="Hours for one date instead of the weekly ones; an empty list is a day off."
    )

    @field_validator("blocking_calendars")
    @classmethod
    def _blocking_excludes_primary(cls, calendars: list[str], info: ValidationInfo) -> list[str]:
        # The primary calendar always blocks; listing it again would count its events twice.
        primary = info.data.get("primary_calendar")
        if primary in calendars:
            raise _invalid(f"{primary!r} is the primary calendar, which always blocks; list only other calendars")
        if len(set(calendars)) != len(calendars):
            raise _invalid("a calendar is listed twice")
        return calendars


class TeamSpec(_FileModel):
    slug: Slug
    name: Name
    members: list[Slug] = Field(default_factory=list)
    managers: list[Slug] = Field(default_factory=list)


class LocationSpec(_FileModel):
    kind: Literal["teams", "phone", "onsite", "custom"]
    detail: Annotated[str, StringConstraints(max_length=500)] = ""


class QuestionSpec(_FileModel):
    key: Annotated[
        str, AfterValidator(_check_question_key), WithJsonSchema({"type": "string", "pattern": QUESTION_KEY_PATTERN})
    ]
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    required: bool = False
    multiline: bool = False
    max_length: Annotated[int, Field(strict=True, ge=1, le=10_000)] = 500


class HostSpec(_FileModel):
    """Exactly one of: `user`, `team` (round robin) or `panel` (everyone must be free)."""

    user: Slug | None = None
    team: Slug | None = None
    mode: Literal["round_robin"] | None = None
    panel: list[Slug] | None = None

    @model_validator(mode="after")
    def _exactly_one_host(self) -> Self:
        given = [name for name in ("user", "team", "panel") if getattr(self, name) is not None]
        if len(given) != 1:
            raise _invalid("give exactly one of `user`, `team` (with `mode: round_robin`) or `panel`")
        if self.mode is not None and self.team is None:
            raise _invalid("`mode` applies only to a team host")
        if self.panel is not None:
            if not self.panel:
                raise _invalid("a panel needs at least one user")
            if len(set(self.panel)) != len(self.panel):
                raise _invalid("a panel lists a user twice")
        return self

    @property
    def host_mode(self) -> Literal["user", "round_robin", "panel"]:
        if self.user is not None:
            return "user"
        return "round_robin" if self.team is not None else "panel"


class AppointmentTypeSpec(_FileModel):
    slug: Slug
    name: Name = Field(description="Shown to clients.")
    internal_name: Name | None = Field(default=None, description="Shown to staff; defaults to `name`.")
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    duration: Annotated[int, Field(strict=True, ge=5, le=480, description="Minutes.")]
    increment: (
        Annotated[int, Field(strict=True, ge=5, le=1440, description="Minutes; defaults to duration.")] | None
    ) = None
    buffer_before: Annotated[int, Field(strict=True, ge=0, le=1440, description="Minutes.")] = 0
    buffer_after: Annotated[int, Field(strict=True, ge=0, le=1440, description="Minutes.")] = 0
    buffers_on_calendar: bool = False
    minimum_notice: SpanText = "0 minutes"
    maximum_window: SpanText = "60 days"
    location: LocationSpec
    questions: list[QuestionSpec] = Field(default_factory=list)
    host: HostSpec
    mode: Literal["classic", "workflow"] = "classic"
    workflow: Annotated[dict[str, Any] | None, BeforeValidator(_check_json_mapping)] = Field(
        default=None, description="Workflow Mode: triggers mapped to ordered actions (see workflows/triggers.py)."
    )

    @field_validator("workflow")
    @classmethod
    def _workflow_is_valid(cls, workflow: dict[str, Any] | None) -> dict[str, Any] | None:
        # Stored normalised, so a diff shows real changes and the runner reads exactly what was validated.
        if workflow is None:
            return None
        return WorkflowSpec.model_validate(workflow).model_dump(mode="json", exclude_none=True, exclude_defaults=True)

    @model_validator(mode="after")
    def _workflow_mode_has_a_workflow(self) -> AppointmentTypeSpec:
        if self.mode == "workflow" and not self.workflow:
            raise _invalid("mode 'workflow' needs a 'workflow' with triggers and actions")
        return self

    @field_validator("maximum_window")
    @classmethod
    def _window_is_open(cls, window: str) -> str:
        if window.startswith("0 "):
            raise _invalid("a maximum window of zero leaves nothing to book")
        return window


class ConnectionSpec(BaseModel):
    """One connection: the vendor, its settings (checked against the vendor's own model when planned) and, for
    every secret, the name of the environment variable that holds it. Secrets never live in the file."""

    model_config = ConfigDict(extra="allow", frozen=True)

    vendor: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    secrets_from_env: dict[str, Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]{0,99}$")]] = Field(
        default_factory=dict, description="Secret field -> environment variable name, e.g. {password: SMTP_PASSWORD}."
    )

    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class IntegrationsSpec(_FileModel):
    psa: ConnectionSpec | None = None
    m365: ConnectionSpec | None = None
    email: ConnectionSpec | None = None


class TenantFile(_FileModel):
    """One tenant, completely: whatever the database holds for it beyond this file is deleted on apply."""

    # Top-level `x-*` keys hold YAML anchors for reuse (the docker-compose convention) and are otherwise ignored.
    model_config = ConfigDict(title="Slotwise tenant file", json_schema_extra={"patternProperties": {"^x-": {}}})

    tenant: TenantSpec
    users: list[UserSpec] = Field(default_factory=list)
    teams: list[TeamSpec] = Field(default_factory=list)
    appointment_types: list[AppointmentTypeSpec] = Field(default_factory=list)
    integrations: IntegrationsSpec = Field(default_factory=IntegrationsSpec)

    @model_validator(mode="before")
    @classmethod
    def _drop_extension_keys(cls, data: object) -> object:
        if isinstance(data, Mapping):
            return {key: value for key, value in data.items() if not (isinstance(key, str) and key.startswith("x-"))}
        return data


def tenant_file_json_schema() -> dict[str, Any]:
    """JSON Schema of the tenant file (for editors and the admin API); references are checked only on load."""
    return TenantFile.model_json_schema()


def render_loc(loc: Iterable[str | int]) -> str:
    """('users', 1, 'time_zone') -> 'users[1].time_zone'."""
    text = ""
    for part in loc:
        if part == "[key]":
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(file)"


def _reference_problems(file: TenantFile) -> list[tuple[Loc, str]]:
    """Uniqueness and cross references, which a schema cannot express; every problem carries its field path."""
    problems: list[tuple[Loc, str]] = []

    def unique(section: str, field: str, values: Sequence[str | None], what: str) -> None:
        seen: dict[str, int] = {}
        for index, value in enumerate(values):
            if value is None:
                continue
            key = value.casefold()
            if key in seen:
                problems.append(((section, index, field), f"duplicate {what} {value!r} (also {section}[{seen[key]}])"))
            else:
                seen[key] = index

    unique("users", "slug", [user.slug for user in file.users], "slug")
    # The database enforces unique emails per tenant; one Teams identity must never map to two users.
    unique("users", "email", [user.email for user in file.users], "email")
    unique("users", "aad_object_id", [user.aad_object_id for user in file.users], "aad_object_id")
    unique("teams", "slug", [team.slug for team in file.teams], "slug")
    unique("appointment_types", "slug", [kind.slug for kind in file.appointment_types], "slug")

    users = {user.slug for user in file.users}
    teams = {team.slug: team for team in file.teams}
    links = file.integrations
    connected = Connected(
        psa=links.psa.vendor if links.psa else None,
        m365=links.m365 is not None,
        # Email goes out over SMTP or through Microsoft 365 (Graph sendMail).
        email=links.email is not None,
        teams=file.tenant.microsoft_tenant_id is not None,
    )

    def known_users(base: Loc, slugs: Sequence[str]) -> None:
        seen: set[str] = set()
        for index, slug in enumerate(slugs):
            if slug not in users:
                problems.append(((*base, index), f"unknown user {slug!r}"))
            elif slug in seen:
                problems.append(((*base, index), f"user {slug!r} is listed twice"))
            seen.add(slug)

    for index, team in enumerate(file.teams):
        known_users(("teams", index, "members"), team.members)
        known_users(("teams", index, "managers"), team.managers)

    for index, kind in enumerate(file.appointment_types):
        host = kind.host
        base: Loc = ("appointment_types", index, "host")
        if host.user is not None and host.user not in users:
            problems.append(((*base, "user"), f"unknown user {host.user!r}"))
        if host.team is not None:
            host_team = teams.get(host.team)
            if host_team is None:
                problems.append(((*base, "team"), f"unknown team {host.team!r}"))
            elif not host_team.members:
                problems.append(((*base, "team"), f"team {host.team!r} has no members to take bookings"))
        if host.panel is not None:
            known_users((*base, "panel"), host.panel)
        keys: dict[str, int] = {}
        for number, question in enumerate(kind.questions):
            if question.key in keys:
                problems.append(
                    (
                        ("appointment_types", index, "questions", number, "key"),
                        f"duplicate question key {question.key!r} (also questions[{keys[question.key]}])",
                    )
                )
            keys.setdefault(question.key, number)
        if kind.mode == "workflow" and kind.workflow:
            workflow = WorkflowSpec.model_validate(kind.workflow)
            # An action for a system the file does not connect would fail on every booking; say so now.
            for message in validate_workflow(workflow, connected):
                problems.append((("appointment_types", index), message))
            teams_problem = teams_meeting_problem(kind.slug, workflow, kind.location.kind)
            if teams_problem:
                problems.append((("appointment_types", index, "location"), teams_problem))
    return problems


def validate_tenant_document(data: object) -> TenantFile:
    """Validate already-parsed data (e.g. a JSON body); raises RolloutError with one `path: problem` per line."""
    try:
        file = TenantFile.model_validate(data)
    except ValidationError as exc:
        raise RolloutError([f"{render_loc(loc)}: {message}" for loc, message in _validation_problems(exc)]) from None
    problems = _reference_problems(file)
    if problems:
        raise RolloutError([f"{render_loc(loc)}: {message}" for loc, message in problems])
    return file


def _validation_problems(exc: ValidationError) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for error in exc.errors(include_url=False):
        kind, message, given = error["type"], error["msg"], error.get("input")
        if not error["loc"] and kind in ("model_type", "dict_type"):
            message = "the file must be a mapping with tenant, users, teams and appointment_types"
        elif kind == "extra_forbidden":
            message = "unknown field"
        elif kind == "missing":
            message = "required field is missing"
        elif kind != "slotwise_invalid" and isinstance(given, str | int | float | bool):
            message = f"{message} (got {given!r})"
        problems.append((tuple(error["loc"]), message))
    return problems


class _TenantFileLoader(yaml.SafeLoader):
    """yaml.safe_load, except that timestamps stay text.

    PyYAML turns unquoted 2026-12-25 into a date and raises a bare ValueError, with no line, for 2026-02-30. Keeping
    the text lets the schema report impossible dates with their field path and line like any other mistake.
    """


def _construct_timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_TenantFileLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp_as_text)


def _line_of(root: yaml.Node, loc: Loc) -> int:
    """1-based line of the deepest node along `loc`; keys point at their key, so block values show their key line."""
    node = root
    line = root.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            # The last occurrence wins, as it does when the document is constructed.
            for key, value in reversed(node.value):
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    child, line = value, key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _duplicate_keys(root: yaml.Node) -> list[tuple[int, str]]:
    """YAML silently keeps the last of two equal keys; in a reviewed config file that is always a mistake."""
    found: list[tuple[int, str]] = []
    seen_nodes: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) in seen_nodes:
            continue  # aliases share nodes, and a recursive anchor would otherwise loop forever
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                pending.append(value)
                if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                line = key.start_mark.line + 1
                if key.value in first:
                    found.append((line, f"duplicate key {key.value!r} (first on line {first[key.value]})"))
                else:
                    first[key.value] = line
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
    return sorted(found)


def parse_tenant_text(text: str, source: str = "<tenant file>") -> TenantFile:
    """Parse and validate a tenant file's text; raises RolloutError with `source:line: path: problem` lines."""
    loader = _TenantFileLoader(text)
    try:
        root = loader.get_single_node()
        duplicates = _duplicate_keys(root) if root is not None else []
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = exc.context
        # The parser notices a missing bracket or quote lines later; the line where the construct began helps too.
        if context and exc.context_mark is not None and mark is not None and exc.context_mark.line != mark.line:
            context = f"{context} (from line {exc.context_mark.line + 1})"
        problem = "; ".join(part for part in (context, exc.problem) if part) or "not valid YAML"
        raise RolloutError([f"{source}:{mark.line + 1 if mark else 1}: YAML syntax error: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise RolloutError([f"{source}: YAML error: {exc}"]) from None
    finally:
        loader.dispose()
    if root is None:
        raise RolloutError([f"{source}:1: the file is empty"])

    problems: list[tuple[int, str]] = list(duplicates)
    try:
        file = TenantFile.model_validate(data)
    except ValidationError as exc:
        found = _validation_problems(exc)
    else:
        found = _reference_problems(file)
    problems.extend((_line_of(root, loc), f"{render_loc(loc)}: {message}") for loc, message in found)
    if problems:
        # Sorted by line so the messages read top to bottom alongside the file.
        raise RolloutError([f"{source}:{line}: {message}" for line, message in sorted(problems, key=lambda p: p[0])])
    return file


def load_tenant_file(path: str | Path) -> TenantFile:
    """Read and validate a tenant YAML file; raises RolloutError naming the line and field of every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RolloutError([f"{path}: cannot read the file: {exc}"]) from None
    return parse_tenant_text(text, str(path))


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One changed column (or appointment-type setting), with both values already formatted for people."""

    name: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class Change:
    """One row to create, update or delete; `row` holds every column to write (just `id` for a delete)."""

    kind: Kind
    action: Action
    slug: str
    title: str
    row: Mapping[str, Any]
    fields: tuple[FieldChange, ...] = ()

    def render(self) -> str:
        if self.action == "create":
            return f"+ {self.kind} {self.slug} ({self.title})"
        if self.action == "delete":
            return f"- {self.kind} {self.slug}"
        changed = ", ".join(f"{field.name} {field.before} -> {field.after}" for field in self.fields)
        return f"~ {self.kind} {self.slug}: {changed}"


@dataclass(frozen=True, slots=True)
class Plan:
    """What applying `tenant_file` would change; `blockers` are reasons it cannot be applied as it stands."""

    tenant_file: TenantFile
    tenant_id: str
    changes: tuple[Change, ...]
    blockers: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def render(self) -> str:
        if not self.changes and not self.blockers:
            return "No changes."
        lines = [change.render() for change in self.changes]
        lines.extend(f"! {blocker}" for blocker in self.blockers)
        if self.changes:
            counts = {action: sum(1 for change in self.changes if change.action == action) for action in _ACTIONS}
            lines.append(f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete.")
        return "\n".join(lines)

    def _signature(self) -> tuple[object, ...]:
        # Ids of rows still to be created are drawn afresh each time, so they are left out of the comparison.
        return tuple((change.kind, change.action, change.slug, change.fields) for change in self.changes)


_ACTIONS: tuple[Action, ...] = ("create", "update", "delete")


def _split_interval(text: str) -> list[str]:
    start, end = text.split("-")
    return [start, end]


def _span_document(text: str) -> dict[str, Any]:
    amount, unit = text.split(" ")
    return {"amount": int(amount), "unit": unit}


def _user_row(spec: UserSpec, row_id: str, tenant_id: str) -> dict[str, Any]:
    return {
        "id": row_id,
        "tenant_id": tenant_id,
        "slug": spec.slug,
        "name": spec.name,
        "email": spec.email,
        "time_zone": spec.time_zone,
        "weekly_hours": {day: [_split_interval(text) for text in getattr(spec.working_hours, day)] for day in WEEKDAYS},
        "date_overrides": {
            day: [_split_interval(text) for text in spec.date_overrides[day]] for day in sorted(spec.date_overrides)
        },
        "primary_calendar": spec.primary_calendar,
        "blocking_calendars": list(spec.blocking_calendars),
        "aad_object_id": spec.aad_object_id,
        "psa_member": spec.psa_member,
        "role": spec.role,
    }


def _type_row(
    spec: AppointmentTypeSpec, row_id: str, tenant_id: str, user_ids: Mapping[str, str], team_ids: Mapping[str, str]
) -> dict[str, Any]:
    host = spec.host
    host_document: dict[str, Any]
    if host.user is not None:
        host_document = {"user_ids": [user_ids[host.user]]}
    elif host.team is not None:
        host_document = {"team_id": team_ids[host.team]}
    else:
        host_document = {"user_ids": [user_ids[slug] for slug in host.panel or ()]}
    settings = {
        "name": spec.name,
        "internal_name": spec.internal_name if spec.internal_name is not None else spec.name,
        "description": spec.description,
        "duration_minutes": spec.duration,
        "increment_minutes": spec.increment if spec.increment is not None else spec.duration,
        "buffer_before_minutes": spec.buffer_before,
        "buffer_after_minutes": spec.buffer_after,
        "buffers_on_calendar": spec.buffers_on_calendar,
        "minimum_notice": _span_document(spec.minimum_notice),
        "maximum_window": _span_document(spec.maximum_window),
        "location": {"kind": spec.location.kind, "detail": spec.location.detail},
        "questions": [question.model_dump() for question in spec.questions],
        "host": host_document,
        "mode": spec.mode,
        "workflow": spec.workflow,
    }
    return {"id": row_id, "tenant_id": tenant_id, "slug": spec.slug, "host_mode": host.host_mode, "settings": settings}


# Identity and bookkeeping columns: never written by a tenant file, so never part of its diff.
_NOT_CONFIGURED = frozenset({"id", "tenant_id", "slug", "config_version", "busy_version"})


def _comparable(kind: Kind, row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a diff reports: columns, with an appointment type's settings flattened to their own names."""
    fields = {key: value for key, value in row.items() if key not in _NOT_CONFIGURED}
    if kind == "appointment_type":
        settings = fields.pop("settings") or {}
        fields.update(settings)
    return fields


def _show(name: str, value: Any, labels: Mapping[str, str]) -> str:
    """Format a value for the diff: row ids become slugs, spans read as '4 business_hours', long JSON is cut."""
    if name in ("member_ids", "manager_ids") and isinstance(value, list):
        return "[" + ", ".join(labels.get(item, item) for item in value) + "]"
    if name == "host" and isinstance(value, dict):
        if "team_id" in value:
            return f"team {labels.get(value['team_id'], value['team_id'])}"
        return "users [" + ", ".join(labels.get(item, item) for item in value.get("user_ids", [])) + "]"
    if isinstance(value, dict) and set(value) == {"amount", "unit"}:
        return f"{value['amount']} {value['unit']}"
    if isinstance(value, str):
        return repr(value)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= 80 else text[:77] + "..."


def _diff(
    kind: Kind,
    desired: Sequence[tuple[str, dict[str, Any]]],
    existing: Mapping[str, Mapping[str, Any]],
    labels: Mapping[str, str],
) -> list[Change]:
    """Creates and updates in file order, then deletes of rows the file no longer lists, by slug."""
    changes: list[Change] = []
    for title, row in desired:
        current = existing.get(row["slug"])
        if current is None:
            changes.append(Change(kind, "create", row["slug"], title, row))
            continue
        before, after = _comparable(kind, current), _comparable(kind, row)
        fields = tuple(
            FieldChange(name, _show(name, before.get(name), labels), _show(name, after.get(name), labels))
            for name in dict.fromkeys([*after, *before])
            if before.get(name) != after.get(name)
        )
        if fields:
            changes.append(Change(kind, "update", row["slug"], title, row, fields))
    wanted = {row["slug"] for _, row in desired}
    for slug in sorted(set(existing) - wanted):
        changes.append(Change(kind, "delete", slug, slug, {"id": existing[slug]["id"]}))
    return changes


async def _rows_of(conn: AsyncConnection, table: Table, tenant_id: str) -> dict[str, dict[str, Any]]:
    result = await conn.execute(select(table).where(table.c.tenant_id == tenant_id))
    return {row["slug"]: dict(row) for row in result.mappings()}


async def _count(conn: AsyncConnection, table: Table, tenant_id: str, column: str, row_id: str) -> int:
    result = await conn.execute(
        select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id, table.c[column] == row_id)
    )
    return int(result.scalar_one())


async def _blockers(conn: AsyncConnection, tenant_id: str, changes: Sequence[Change]) -> list[str]:
    """Deletes the database would refuse (foreign keys from bookings), explained before anything is written."""
    blockers: list[str] = []
    for change in changes:
        if change.action != "delete":
            continue
        row_id = change.row["id"]
        if change.kind == "appointment_type":
            bookings = await _count(conn, _BOOKINGS, tenant_id, "type_id", row_id)
            requests = await _count(conn, _REQUESTS, tenant_id, "type_id", row_id)
            if bookings or requests:
                blockers.append(
                    f"appointment_type {change.slug} cannot be deleted: {bookings} booking(s) and {requests}"
                    " scheduling request(s) refer to it; keep it in the file"
                )
        elif change.kind == "user":
            hosted = await _count(conn, _HOST_SLOTS, tenant_id, "user_id", row_id)
            if hosted:
                blockers.append(
                    f"user {change.slug} cannot be deleted: they host {hosted} booking slot(s); keep them in the file"
                )
    return blockers


async def _compute_plan(conn: AsyncConnection, file: TenantFile) -> Plan:
    problems = _reference_problems(file)
    if problems:
        raise RolloutError([f"{render_loc(loc)}: {message}" for loc, message in problems])

    spec = file.tenant
    found = (await conn.execute(select(_TENANTS).where(_TENANTS.c.slug == spec.slug))).mappings().first()
    current_tenant = dict(found) if found is not None else None
    tenant_id = current_tenant["id"] if current_tenant is not None else new_id()
    if current_tenant is not None:
        users = await _rows_of(conn, _USERS, tenant_id)
        teams = await _rows_of(conn, _TEAMS, tenant_id)
        types = await _rows_of(conn, _TYPES, tenant_id)
    else:
        users, teams, types = {}, {}, {}

    # Stable ids: a row keeps its id as long as its slug stays, so bookings and links keep pointing at it.
    user_ids = {user.slug: users[user.slug]["id"] if user.slug in users else new_id() for user in file.users}
    team_ids = {team.slug: teams[team.slug]["id"] if team.slug in teams else new_id() for team in file.teams}
    labels = {row["id"]: slug for slug, row in (*users.items(), *teams.items())}
    labels.update({row_id: slug for slug, row_id in (*user_ids.items(), *team_ids.items())})

    tenant_row = {
        "id": tenant_id,
        "slug": spec.slug,
        "name": spec.name,
        "default_time_zone": spec.time_zone,
        "holidays": list(spec.holidays),
        "microsoft_tenant_id": spec.microsoft_tenant_id,
    }
    changes = _diff("tenant", [(spec.name, tenant_row)], {spec.slug: current_tenant} if current_tenant else {}, labels)
    changes += _diff(
        "user", [(user.name, _user_row(user, user_ids[user.slug], tenant_id)) for user in file.users], users, labels
    )
    team_rows = [
        (
            team.name,
            {
                "id": team_ids[team.slug],
                "tenant_id": tenant_id,
                "slug": team.slug,
                "name": team.name,
                "member_ids": [user_ids[slug] for slug in team.members],
                "manager_ids": [user_ids[slug] for slug in team.managers],
            },
        )
        for team in file.teams
    ]
    changes += _diff("team", team_rows, teams, labels)
    type_rows = [
        (
            kind.name,
            _type_row(kind, types[kind.slug]["id"] if kind.slug in types else new_id(), tenant_id, user_ids, team_ids),
        )
        for kind in file.appointment_types
    ]
    changes += _diff("appointment_type", type_rows, types, labels)
    blockers = await _blockers(conn, tenant_id, changes)
    if file.tenant.microsoft_tenant_id is not None:
        claimed = (
            await conn.execute(
                select(_TENANTS.c.slug).where(
                    _TENANTS.c.microsoft_tenant_id == file.tenant.microsoft_tenant_id, _TENANTS.c.id != tenant_id
                )
            )
        ).scalar()
        if claimed is not None:
            blockers.append(
                f"tenant.microsoft_tenant_id: Microsoft 365 tenant {file.tenant.microsoft_tenant_id} is already "
                f"bound to Slotwise tenant '{claimed}'; one Microsoft 365 tenant maps to one Slotwise tenant"
            )
    return Plan(file, tenant_id, tuple(changes), tuple(blockers))


async def plan_changes(database: Database, tenant_file: TenantFile) -> Plan:
    """The dry run: what `apply_plan` would create, update and delete for this tenant. Writes nothing."""
    async with database.read() as conn:
        return await _compute_plan(conn, tenant_file)


_TABLES: Mapping[Kind, Table] = {"tenant": _TENANTS, "user": _USERS, "team": _TEAMS, "appointment_type": _TYPES}
_DELETE_ORDER: tuple[Kind, ...] = ("appointment_type", "team", "user")


async def _write_changes(conn: AsyncConnection, plan: Plan) -> None:
    by_kind: dict[Kind, list[Change]] = {kind: [] for kind in _TABLES}
    for change in plan.changes:
        by_kind[change.kind].append(change)

    async def upsert(change: Change) -> None:
        table = _TABLES[change.kind]
        if change.action == "create":
            await conn.execute(table.insert().values(**change.row))
        elif table is _TENANTS:
            await conn.execute(update(table).where(table.c.id == plan.tenant_id).values(**change.row))
        else:
            await conn.execute(
                update(table)
                .where(table.c.tenant_id == plan.tenant_id, table.c.id == change.row["id"])
                .values(**change.row)
            )

    for change in by_kind["tenant"]:
        await upsert(change)
    # Deletes first, so a new row may take a slug or email a removed row had; types, then teams, then users,
    # the reverse of how they refer to each other.
    for kind in _DELETE_ORDER:
        for change in by_kind[kind]:
            if change.action != "delete":
                continue
            table = _TABLES[kind]
            if kind == "user":
                # Busy times are a cache of external calendars and the Teams chat is how the bot reached this
                # user; both go with the user.
                for owned in (_BUSY_CACHE, _TEAMS_CONVERSATIONS):
                    await conn.execute(
                        delete(owned).where(owned.c.tenant_id == plan.tenant_id, owned.c.user_id == change.row["id"])
                    )
            await conn.execute(delete(table).where(table.c.tenant_id == plan.tenant_id, table.c.id == change.row["id"]))
    # Two users swapping emails would trip the unique (tenant, email) index half-way; park changed emails first.
    for change in by_kind["user"]:
        if change.action == "update" and any(field.name == "email" for field in change.fields):
            await conn.execute(
                update(_USERS)
                .where(_USERS.c.tenant_id == plan.tenant_id, _USERS.c.id == change.row["id"])
                .values(email=f"{change.row['id']}@rollout.invalid")
            )
    for kind in reversed(_DELETE_ORDER):
        for change in by_kind[kind]:
            if change.action != "delete":
                await upsert(change)


async def apply_plan(
    database: Database, plan: Plan, *, extra_writes: Callable[[AsyncConnection, str], Awaitable[None]] | None = None
) -> Plan:
    """Apply a reviewed plan in one write transaction and return what was applied.

    The plan is recomputed inside the transaction; if the database moved on since the dry run, nothing is written
    and RolloutError asks for a fresh plan, so what was reviewed is exactly what happens. Blocked deletes (rows that
    bookings refer to) also raise RolloutError before any write.
    """
    try:
        async with database.write() as conn:
            current = await _compute_plan(conn, plan.tenant_file)
            if current.blockers:
                raise RolloutError(list(current.blockers))
            if current._signature() != plan._signature():
                raise RolloutError(["the database changed since this plan was made; plan again and review the diff"])
            await _write_changes(conn, current)
            if extra_writes is not None:
                # Connections and anything else planned outside this module commit in the same transaction.
                await extra_writes(conn, current.tenant_id)
            if current.changes:
                # Tell every process's page cache that this tenant's configuration moved.
                await conn.execute(
                    update(_TENANTS)
                    .where(_TENANTS.c.id == current.tenant_id)
                    .values(config_version=_TENANTS.c.config_version + 1, busy_version=_TENANTS.c.busy_version + 1)
                )
    except IntegrityError as exc:
        raise RolloutError([f"the database refused the change, nothing was applied: {exc.orig}"]) from exc
    return current


async def list_links(database: Database, base_url: str, tenant_slug: str | None = None) -> list[dict[str, str]]:
    """Every bookable URL of one tenant (or of all): shareable per type, personal and team pages that list a type.

    Pages without any appointment type are left out: they exist but offer nothing to book. Raises NotFound for an
    unknown `tenant_slug`.
    """
    base = base_url.rstrip("/")
    links: list[dict[str, str]] = []
    async with database.read() as conn:
        query = select(_TENANTS.c.id, _TENANTS.c.slug).order_by(_TENANTS.c.slug)
        if tenant_slug is not None:
            query = query.where(_TENANTS.c.slug == tenant_slug)
        tenants = (await conn.execute(query)).all()
        if tenant_slug is not None and not tenants:
            raise NotFound(f"No tenant '{tenant_slug}'")
        for tenant_id, slug in tenants:
            types = sorted((await _rows_of(conn, _TYPES, tenant_id)).values(), key=lambda row: row["slug"])
            users = await _rows_of(conn, _USERS, tenant_id)
            teams = await _rows_of(conn, _TEAMS, tenant_id)
            personal: set[str] = set()
            team_pages: set[str] = set()
            for row in types:
                links.append(_link(slug, "shareable", row["slug"], row["settings"]["name"], f"{base}/book/{slug}"))
                host = row["settings"].get("host", {})
                # Same rule as SqlTenantCatalog.find_personal_page / find_team_page.
                if row["host_mode"] == "user" and len(host.get("user_ids", [])) == 1:
                    personal.add(host["user_ids"][0])
                if host.get("team_id"):
                    team_pages.add(host["team_id"])
            for user_slug in sorted(users):
                if users[user_slug]["id"] in personal:
                    links.append(_link(slug, "personal", user_slug, users[user_slug]["name"], f"{base}/u/{slug}"))
            for team_slug in sorted(teams):
                if teams[team_slug]["id"] in team_pages:
                    links.append(_link(slug, "team", team_slug, teams[team_slug]["name"], f"{base}/t/{slug}"))
    return links


def _link(tenant: str, kind: str, slug: str, name: str, prefix: str) -> dict[str, str]:
    return {"tenant": tenant, "kind": kind, "slug": slug, "name": name, "url": f"{prefix}/{slug}"}
