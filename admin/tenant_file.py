"""The tenant file's model: every field of users, teams, appointment types and connections, with the checks that
name the field and the problem (RolloutError), and the file's JSON Schema."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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

from i18n import SUPPORTED, supported_tag
from scheduling.errors import SlotwiseError
from workflows.triggers import Connected, WorkflowSpec, teams_meeting_problem, validate_workflow

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
QUESTION_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
INTERVAL_PATTERN = r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$"
# Singular and plural, and "business hours" with a space as well as an underscore, because admins write both.
COLOUR_PATTERN = r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"
SPAN_PATTERN = r"^(\d{1,6}) +((?:business[ _])?(?:hour|day)s?|minutes?)$"
_SPAN_UNITS = ("minutes", "hours", "days", "business_hours", "business_days")
_MINUTES_PER_DAY = 24 * 60

Loc = tuple[str | int, ...]


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


def _check_https_url(value: str) -> str:
    """An absolute https:// URL a browser can load: pages are served over HTTPS, so an http:// logo or photo would
    be blocked as mixed content, and a javascript: or data: link is never a logo."""
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc or any(char.isspace() for char in value):
        raise _invalid("must be an https:// URL, e.g. https://example.com/logo.png")
    return value


def _check_colour(value: str) -> str:
    if not re.fullmatch(COLOUR_PATTERN, value):
        raise _invalid("must be a colour in hex, e.g. '#0b5cad' (quote it: YAML reads # as a comment)")
    return value.lower()


HttpsUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=2048),
    AfterValidator(_check_https_url),
    WithJsonSchema({"type": "string", "format": "uri", "pattern": "^https://", "maxLength": 2048}),
]
Colour = Annotated[str, AfterValidator(_check_colour), WithJsonSchema({"type": "string", "pattern": COLOUR_PATTERN})]
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
    reminders: bool = Field(
        default=True,
        description="Classic mode emails the client (and guests) a reminder a day before when email is connected; "
        "false turns that off. Workflow Mode types set their own under workflow.triggers.before_appointment.",
    )
    locale: str | None = Field(
        default=None,
        max_length=35,
        description="The language (BCP 47 tag such as de-DE or en-US) of booking pages and emails for clients "
        "whose browser asks for none Slotwise has; English and German are available. Without it, English.",
    )

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str | None) -> str | None:
        if value is None:
            return None
        found = supported_tag(value)
        if not found:
            raise ValueError(
                f"{value!r} is not a language Slotwise has: use one of {', '.join(SUPPORTED)} (e.g. de-DE)"
            )
        return found

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
    photo_url: HttpsUrl | None = Field(
        default=None, description="The user's photo on their booking pages (https://); without one, their initials."
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


class BrandingSpec(_FileModel):
    """How the tenant's booking pages look. Every key is optional; an accent colour too light for white text is
    darkened on the pages until it meets WCAG AA contrast (pages/branding.py)."""

    display_name: Name | None = Field(default=None, description="Shown at the top of every page; default the name.")
    logo_url: HttpsUrl | None = Field(default=None, description="Logo image (https://), shown about 40 px high.")
    accent_colour: Colour | None = Field(default=None, description="Buttons, links and the chosen day, e.g. '#0b5cad'.")
    privacy_url: HttpsUrl | None = Field(default=None, description="The tenant's privacy notice; default Slotwise's.")
    terms_url: HttpsUrl | None = Field(default=None, description="The tenant's terms; default Slotwise's.")


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
    branding: BrandingSpec | None = None
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
    parts = list(loc)
    for index, part in enumerate(parts):
        if part == "[key]":
            continue
        # A workflow trigger is validated as one of two written forms, tagged 'actions' or 'options' (see
        # workflows/triggers.py); the tag is not part of the file.
        if index >= 2 and parts[index - 2] == "triggers" and part in ("actions", "options"):
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
