"""Workflow Mode and Classic mode: which actions run, in what order, when a booking is made, moved or cancelled.

A workflow maps triggers to ordered actions. Classic mode derives one from the host's primary calendar and what the
tenant has connected; Workflow Mode is written by the admin in the tenant file. `plan_jobs` turns one booking event
into outbox job specs whose idempotency keys make the fan-out exactly-once per (booking, event, step).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from workflows.outbox import HARD, SOFT, Dependency, JobSpec
from workflows.request_emails import request_sample_variables
from workflows.templates import template_problem


class Trigger(StrEnum):
    REQUEST_CREATED = "request_created"
    REQUEST_SENT = "request_sent"
    NO_RESPONSE = "no_response"
    CLIENT_SCHEDULED = "client_scheduled"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"
    BEFORE_APPOINTMENT = "before_appointment"


class ActionKind(StrEnum):
    FIND_OR_CREATE_OPPORTUNITY = "find_or_create_opportunity"
    CREATE_TICKET = "create_ticket"
    CREATE_ACTIVITY = "create_activity"
    CREATE_SCHEDULE_ENTRY = "create_schedule_entry"
    MOVE_SCHEDULE_ENTRY = "move_schedule_entry"
    REMOVE_SCHEDULE_ENTRY = "remove_schedule_entry"
    ADD_TICKET_NOTE = "add_ticket_note"
    SET_TICKET_STATUS = "set_ticket_status"
    CREATE_M365_EVENT = "create_m365_event"
    UPDATE_M365_EVENT = "update_m365_event"
    CANCEL_M365_EVENT = "cancel_m365_event"
    SEND_EMAIL = "send_email"
    NOTIFY_HOST = "notify_host"
    POST_WEBHOOK = "post_webhook"


PSA_ACTIONS = frozenset(
    {
        ActionKind.FIND_OR_CREATE_OPPORTUNITY,
        ActionKind.CREATE_TICKET,
        ActionKind.CREATE_ACTIVITY,
        ActionKind.CREATE_SCHEDULE_ENTRY,
        ActionKind.MOVE_SCHEDULE_ENTRY,
        ActionKind.REMOVE_SCHEDULE_ENTRY,
        ActionKind.ADD_TICKET_NOTE,
        ActionKind.SET_TICKET_STATUS,
    }
)
M365_ACTIONS = frozenset({ActionKind.CREATE_M365_EVENT, ActionKind.UPDATE_M365_EVENT, ActionKind.CANCEL_M365_EVENT})
PSA_KINDS = frozenset(kind.value for kind in PSA_ACTIONS)
M365_KINDS = frozenset(kind.value for kind in M365_ACTIONS)
"""The same, as the step kinds stored in the outbox."""
REQUEST_TRIGGERS = frozenset({Trigger.REQUEST_CREATED, Trigger.REQUEST_SENT, Trigger.NO_RESPONSE})
"""Triggers of a scheduling request, before anything is booked: their runs have no time, host or booking."""
REQUEST_ACTIONS = frozenset(
    {ActionKind.SEND_EMAIL, ActionKind.ADD_TICKET_NOTE, ActionKind.SET_TICKET_STATUS, ActionKind.POST_WEBHOOK}
)
"""What a request trigger can do: tell the client (the link), note or set the status of the request's ticket, or tell
another system."""


class ActionSpec(BaseModel):
    """One action of a workflow; `settings` carry the vendor mapping (owner, board, stage, status, template...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: ActionKind
    opportunity_owner: str | None = Field(default=None, max_length=100)
    sales_board: str | None = Field(default=None, max_length=100)
    pipeline_stage: str | None = Field(default=None, max_length=100)
    ticket_board: str | None = Field(default=None, max_length=100)
    status_after_scheduling: str | None = Field(default=None, max_length=100)
    note: str | None = Field(default=None, max_length=4000)
    subject: str | None = Field(default=None, max_length=300)
    body: str | None = Field(default=None, max_length=20000)
    template: Literal["default_confirmation", "custom"] = "default_confirmation"
    recipients: Literal["client_and_guests", "host", "client"] = "client_and_guests"
    url: str | None = Field(default=None, max_length=500)
    secret_from_env: str | None = Field(
        default=None,
        pattern=r"^[A-Z_][A-Z0-9_]{0,99}$",
        description="post_webhook: the environment variable holding the signing secret (whsec_...), read at apply "
        "and stored encrypted.",
    )

    @model_validator(mode="after")
    def _custom_email_has_text(self) -> ActionSpec:
        if self.action is ActionKind.SEND_EMAIL and self.template == "custom" and not (self.subject and self.body):
            raise ValueError("a custom email needs both 'subject' and 'body'")
        if self.action is ActionKind.POST_WEBHOOK and not (self.url and self.url.startswith("https://")):
            raise ValueError("a webhook needs an https:// 'url'")
        if self.secret_from_env is not None and self.action is not ActionKind.POST_WEBHOOK:
            raise ValueError("'secret_from_env' belongs to a post_webhook action")
        return self


OFFSET_PATTERN = r"^(\d{1,6}) +(minute|hour|day|week)s?$"
_OFFSET_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
_OFFSET_UNITS["week"] = timedelta(weeks=1)
MAX_OFFSET = timedelta(days=365)
DEFAULT_REMINDER_OFFSET = "1 day"
"""`before_appointment` without `offsets` runs a day before the start."""


def parse_offset(text: str) -> timedelta:
    """'1 day', '2 hours', '30 minutes', '1 week' -> timedelta; ValueError for anything else."""
    match = re.fullmatch(OFFSET_PATTERN, text.strip().lower())
    if match is None:
        raise ValueError(
            f"{text!r} is not a length of time: write '<n> <unit>' with unit minutes, hours, days or weeks"
        )
    return int(match.group(1)) * _OFFSET_UNITS[match.group(2)]


class TriggerSpec(BaseModel):
    """A trigger written as a mapping, for triggers that take options: `{offsets: [...], actions: [...]}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offsets: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="before_appointment: how long before the start each run goes, e.g. ['1 day', '1 hour'] "
        "(default 1 day).",
    )
    after: str | None = Field(
        default=None,
        max_length=40,
        description="no_response: how long after the request was sent each follow-up goes, e.g. '2 business days' "
        "or '24 hours' (default 2 business days).",
    )
    repeat: int | None = Field(
        default=None,
        ge=1,
        le=10,
        description="no_response: how many follow-ups at most, each `after` the one before (default 1).",
    )
    actions: list[ActionSpec] = Field(default_factory=list)

    @field_validator("after")
    @classmethod
    def _after_is_a_span(cls, after: str | None) -> str | None:
        if after is None:
            return None
        span = parse_follow_up(after)  # a ValueError names the text
        if not timedelta(0) < span.amount <= MAX_OFFSET:
            raise ValueError(f"{after!r}: a follow-up must come more than zero and at most 365 days later")
        return str(span)

    @field_validator("offsets")
    @classmethod
    def _offsets_are_spans(cls, offsets: list[str]) -> list[str]:
        seen: set[timedelta] = set()
        normalised: list[str] = []
        for text in offsets:
            span = parse_offset(text)  # a ValueError names the text
            if not timedelta(0) < span <= MAX_OFFSET:
                raise ValueError(f"{text!r}: an offset must be more than zero and at most 365 days")
            if span in seen:
                raise ValueError(f"{text!r} is listed twice")
            seen.add(span)
            number, unit = text.lower().split()
            normalised.append(f"{int(number)} {unit.rstrip('s')}{'' if int(number) == 1 else 's'}")
        return normalised


@dataclass(frozen=True, slots=True)
class FollowUpSpan:
    """How long after a request was sent its `no_response` follow-ups go: a plain length of time, or a number of
    business days (Monday to Friday, skipping the tenant's holidays, at the same local time)."""

    amount: timedelta
    business_days: int = 0

    def __str__(self) -> str:
        if self.business_days:
            return f"{self.business_days} business day{'' if self.business_days == 1 else 's'}"
        minutes = int(self.amount / timedelta(minutes=1))
        for unit, size in (("week", 7 * 24 * 60), ("day", 24 * 60), ("hour", 60), ("minute", 1)):
            if minutes % size == 0:
                count = minutes // size
                return f"{count} {unit}{'' if count == 1 else 's'}"
        return f"{minutes} minutes"  # pragma: no cover (every whole number of minutes matches "minute")


FOLLOW_UP_PATTERN = r"^(\d{1,3}) +business +days?$"
DEFAULT_FOLLOW_UP = "2 business days"
"""`no_response` without `after` follows up two business days after the request was sent."""


def parse_follow_up(text: str) -> FollowUpSpan:
    """'2 business days' or any offset ('24 hours', '3 days') -> FollowUpSpan; ValueError for anything else."""
    match = re.fullmatch(FOLLOW_UP_PATTERN, text.strip().lower())
    if match is not None:
        count = int(match.group(1))
        return FollowUpSpan(amount=timedelta(days=count), business_days=count)
    try:
        return FollowUpSpan(amount=parse_offset(text))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a length of time: write '<n> business days' or '<n> <unit>' with unit minutes, hours, "
            "days or weeks"
        ) from None


def _written_as(value: object) -> str:
    return "options" if isinstance(value, Mapping | TriggerSpec) else "actions"


# Tagged by what was written, so a mistake is reported once, for the form the admin chose.
WrittenTrigger = Annotated[
    Annotated[list[ActionSpec], Tag("actions")] | Annotated[TriggerSpec, Tag("options")], Discriminator(_written_as)
]


class WorkflowSpec(BaseModel):
    """Triggers → ordered actions, as written under an appointment type's `workflow:` in the tenant file.

    A trigger is a list of actions, or a mapping with options and `actions` (today only `before_appointment`
    takes one: `offsets`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    triggers: dict[Trigger, WrittenTrigger] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _options_fit_their_trigger(self) -> WorkflowSpec:
        for trigger, written in self.triggers.items():
            if not isinstance(written, TriggerSpec):
                continue
            if written.offsets and trigger is not Trigger.BEFORE_APPOINTMENT:
                raise ValueError(f"'offsets' apply only to before_appointment, not to {trigger.value}")
            for option in ("after", "repeat"):
                if getattr(written, option) is not None and trigger is not Trigger.NO_RESPONSE:
                    raise ValueError(f"'{option}' applies only to no_response, not to {trigger.value}")
        return self

    def follow_ups(self) -> list[FollowUpSpan]:
        """When each `no_response` run goes, counted from the moment the request was sent: `after`, twice `after`,
        ... up to `repeat` runs. Empty when the workflow has no no_response trigger."""
        written = self.triggers.get(Trigger.NO_RESPONSE)
        if written is None or (isinstance(written, list) and not written):
            return []
        after = written.after if isinstance(written, TriggerSpec) and written.after else DEFAULT_FOLLOW_UP
        repeat = written.repeat if isinstance(written, TriggerSpec) and written.repeat else 1
        span = parse_follow_up(after)
        return [
            FollowUpSpan(amount=span.amount * count, business_days=span.business_days * count)
            for count in range(1, repeat + 1)
        ]

    def actions_for(self, trigger: Trigger) -> list[ActionSpec]:
        written = self.triggers.get(trigger, [])
        return list(written.actions if isinstance(written, TriggerSpec) else written)

    def offsets_for(self, trigger: Trigger) -> list[timedelta]:
        """How long before the start each run of a `before_appointment` trigger goes, longest first."""
        written = self.triggers.get(trigger)
        texts = written.offsets if isinstance(written, TriggerSpec) and written.offsets else [DEFAULT_REMINDER_OFFSET]
        return sorted((parse_offset(text) for text in texts), reverse=True)

    def trigger_actions(self) -> Iterator[tuple[Trigger, str, list[ActionSpec]]]:
        """(trigger, where its actions are written in the tenant file, the actions) for every trigger."""
        for trigger, written in self.triggers.items():
            where = f"workflow.triggers.{trigger.value}"
            if isinstance(written, TriggerSpec):
                yield trigger, f"{where}.actions", list(written.actions)
            else:
                yield trigger, where, list(written)


@dataclass(frozen=True, slots=True)
class Connected:
    """What the tenant has connected; classic mode only plans actions that can run."""

    psa: str | None = None
    """'connectwise', 'autotask' or 'halopsa'."""
    m365: bool = False
    email: bool = False
    teams: bool = False
    """The tenant is bound to a Microsoft 365 tenant, so hosts can get booking cards from the Teams bot."""


def validate_workflow(actions: WorkflowSpec, connected: Connected) -> list[str]:
    """Problems an admin must fix before applying: actions for systems that are not connected or not offered, and
    a webhook nobody could verify."""
    problems: list[str] = []
    if actions.follow_ups() and not actions.actions_for(Trigger.NO_RESPONSE) and not connected.email:
        problems.append(
            "workflow.triggers.no_response: a follow-up without actions is an email to the client, which needs an "
            "email connection (SMTP or Microsoft 365)"
        )
    for trigger, path, steps in actions.trigger_actions():
        for index, step in enumerate(steps):
            where = f"{path}[{index}]"
            if trigger in REQUEST_TRIGGERS:
                problem = _request_action_problem(trigger, step)
                if problem:
                    problems.append(f"{where}: {problem}")
                    continue
            if step.action in PSA_ACTIONS and connected.psa is None:
                problems.append(f"{where}: '{step.action.value}' needs a connected PSA")
            if step.action is ActionKind.FIND_OR_CREATE_OPPORTUNITY and connected.psa == "halopsa":
                problems.append(f"{where}: opportunities are not available in HaloPSA")
            if step.action in M365_ACTIONS and not connected.m365:
                problems.append(f"{where}: '{step.action.value}' needs Microsoft 365 connected")
            if step.action is ActionKind.NOTIFY_HOST and not connected.teams:
                problems.append(f"{where}: 'notify_host' needs the Teams app: set tenant.microsoft_tenant_id")
            if step.action is ActionKind.SEND_EMAIL and not connected.email:
                problems.append(f"{where}: 'send_email' needs an email connection (SMTP or Microsoft 365)")
            if step.action is ActionKind.POST_WEBHOOK and not step.secret_from_env:
                problems.append(
                    f"{where}: a webhook must be signed: add secret_from_env naming the environment variable that "
                    "holds its secret (whsec_ followed by base64 of 24 to 64 random bytes)"
                )
            if step.action is ActionKind.SEND_EMAIL and step.template == "custom" and step.subject and step.body:
                sample = request_sample_variables() if trigger in REQUEST_TRIGGERS else None
                problem = template_problem(step.subject, step.body, sample)
                if problem:
                    problems.append(f"{where}: the email template does not render: {problem}")
    return problems


def _request_action_problem(trigger: Trigger, step: ActionSpec) -> str | None:
    if step.action not in REQUEST_ACTIONS:
        return (
            f"'{step.action.value}' cannot run on {trigger.value}: nothing is booked yet, so there is no time, host "
            "or booking to act on; request triggers take send_email, add_ticket_note, set_ticket_status and "
            "post_webhook"
        )
    if step.action is ActionKind.SEND_EMAIL and step.recipients == "host":
        return f"a {trigger.value} email goes to the client the request was sent to; 'recipients: host' has no host yet"
    return None


def teams_meeting_problem(type_slug: str, actions: WorkflowSpec, location_kind: str) -> str | None:
    """A Workflow Mode type whose location is a Teams meeting must create the Microsoft 365 event that carries the
    meeting: the booking page and the confirmation promise the client a Teams link, and only that event makes one."""
    if location_kind != "teams":
        return None
    if any(step.action is ActionKind.CREATE_M365_EVENT for _, _, steps in actions.trigger_actions() for step in steps):
        return None
    return (
        f"'{type_slug}' is a Teams meeting, but its workflow creates no Microsoft 365 event, so the client would be "
        "promised a Teams link that never exists: add {action: create_m365_event} to "
        "workflow.triggers.client_scheduled (with update_m365_event under rescheduled and cancel_m365_event under "
        "cancelled), or choose another location"
    )


def classic_workflow(
    primary_calendar: str, connected: Connected, *, teams_meeting: bool = False, reminders: bool = True
) -> WorkflowSpec:
    """The sensible default: the booking lands on the host's primary calendar, the client gets the default
    confirmation, and moves and cancellations follow the same path. With email connected the client (and guests)
    also get a reminder a day before, unless the tenant turned `reminders` off.

    `teams_meeting`: the type's location is a Teams meeting. A host whose primary calendar is the PSA then also gets
    a Microsoft 365 event (when Microsoft 365 is connected), because only that event carries the meeting's join link."""
    scheduled: list[ActionSpec] = []
    rescheduled: list[ActionSpec] = []
    cancelled: list[ActionSpec] = []
    if primary_calendar == "psa" and connected.psa is not None:
        scheduled.append(ActionSpec(action=ActionKind.CREATE_SCHEDULE_ENTRY))
        rescheduled.append(ActionSpec(action=ActionKind.MOVE_SCHEDULE_ENTRY))
        cancelled.append(ActionSpec(action=ActionKind.REMOVE_SCHEDULE_ENTRY))
    if (primary_calendar == "m365" or teams_meeting) and connected.m365:
        scheduled.append(ActionSpec(action=ActionKind.CREATE_M365_EVENT))
        rescheduled.append(ActionSpec(action=ActionKind.UPDATE_M365_EVENT))
        cancelled.append(ActionSpec(action=ActionKind.CANCEL_M365_EVENT))
    if connected.teams:
        # After the calendar step, so the card carries the meeting's join link; before the email, so a slow
        # mail server does not delay telling the host.
        for steps in (scheduled, rescheduled, cancelled):
            steps.append(ActionSpec(action=ActionKind.NOTIFY_HOST))
    if connected.email:
        for steps in (scheduled, rescheduled, cancelled):
            steps.append(ActionSpec(action=ActionKind.SEND_EMAIL))
    triggers: dict[Trigger, list[ActionSpec] | TriggerSpec] = {}
    if connected.email and reminders:
        triggers[Trigger.BEFORE_APPOINTMENT] = [ActionSpec(action=ActionKind.SEND_EMAIL)]
    for trigger, steps in (
        (Trigger.CLIENT_SCHEDULED, scheduled),
        (Trigger.RESCHEDULED, rescheduled),
        (Trigger.CANCELLED, cancelled),
    ):
        if steps:
            triggers[trigger] = steps
    return WorkflowSpec(triggers=triggers)


OUTPUTS: dict[ActionKind, tuple[str, ...]] = {
    ActionKind.FIND_OR_CREATE_OPPORTUNITY: ("opportunity_id",),
    ActionKind.CREATE_TICKET: ("ticket_id", "ticket_number"),
    ActionKind.CREATE_ACTIVITY: ("activity_id",),
    ActionKind.CREATE_SCHEDULE_ENTRY: ("schedule_entry_id",),
    ActionKind.MOVE_SCHEDULE_ENTRY: ("schedule_entry_id", "moved_to"),
    ActionKind.REMOVE_SCHEDULE_ENTRY: ("removed_schedule_entry_id",),
    ActionKind.ADD_TICKET_NOTE: ("note_id",),
    ActionKind.SET_TICKET_STATUS: ("ticket_status",),
    ActionKind.CREATE_M365_EVENT: ("event_id", "join_url"),
    ActionKind.UPDATE_M365_EVENT: ("event_id", "moved_to"),
    ActionKind.CANCEL_M365_EVENT: ("cancelled_event_id",),
    ActionKind.SEND_EMAIL: ("message_id", "recipients"),
    ActionKind.POST_WEBHOOK: ("webhook_id", "webhook_status"),
    # notify_host's outputs (teams_activity:<user>) are never waited for: a host's Teams card must not hold up
    # anything, least of all the client's confirmation.
    ActionKind.NOTIFY_HOST: (),
}
"""The outputs each action produces (workflows/steps.py), which later steps may use."""

HARD_NEEDS: dict[ActionKind, tuple[str, ...]] = {
    # The schedule entry goes on the ticket (or, without one, on the activity) created before it.
    ActionKind.CREATE_SCHEDULE_ENTRY: ("ticket_id", "activity_id"),
    # An activity / To-Do links to the opportunity.
    ActionKind.CREATE_ACTIVITY: ("opportunity_id",),
    ActionKind.ADD_TICKET_NOTE: ("ticket_id",),
    ActionKind.SET_TICKET_STATUS: ("ticket_id",),
    ActionKind.MOVE_SCHEDULE_ENTRY: ("schedule_entry_id",),
    ActionKind.REMOVE_SCHEDULE_ENTRY: ("schedule_entry_id",),
    ActionKind.UPDATE_M365_EVENT: ("event_id",),
    ActionKind.CANCEL_M365_EVENT: ("event_id",),
}
"""Outputs a step cannot act without: it waits for them and is blocked when their producer fails for good."""

_TICKET_OUTPUTS = frozenset({"ticket_id", "ticket_number"})
_LIQUID = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.DOTALL)
_REFERENCE = re.compile(
    r"\b(?:(ticket)\b|(opportunity)\b|appointment\s*\.\s*(join_url)\b|(outputs)\b"
    r"(?:\s*\.\s*(\w+)|\s*\[\s*[\"']([^\"']+)[\"']\s*\])?)"
)
ALL_OUTPUTS = "*"


def template_outputs(*templates: str) -> set[str]:
    """The step outputs Liquid templates quote: `ticket.number` → ticket_number, `opportunity.id` →
    opportunity_id, `appointment.join_url` → join_url, `outputs.x` → x; a bare `outputs` (a loop over all of them)
    → ALL_OUTPUTS. Only text inside {{ }} and {% %} counts: the word "ticket" in the prose is not a variable."""
    used: set[str] = set()
    for template in templates:
        for match in _LIQUID.finditer(template):
            code = match.group(1) or match.group(2) or ""
            for reference in _REFERENCE.finditer(code):
                ticket, opportunity, join_url, outputs, attribute, key = reference.groups()
                if ticket:
                    used.add("ticket_number")
                elif opportunity:
                    used.add("opportunity_id")
                elif join_url:
                    used.add("join_url")
                elif outputs:
                    used.add(attribute or key or ALL_OUTPUTS)
    return used


def soft_needs(step: ActionSpec) -> set[str]:
    """Outputs a step only quotes: it waits for them a grace period at most, then goes without."""
    if step.action is ActionKind.SEND_EMAIL:
        # The invitation attached to every email carries the Teams join link when there is one.
        if step.template == "custom":
            return template_outputs(step.subject or "", step.body or "") | {"join_url"}
        # The default templates quote the ticket number (inside {% if ticket.number %}).
        return {"ticket_number", "join_url"}
    if step.action is ActionKind.NOTIFY_HOST:
        # The card quotes the Teams join link and the ticket number; it waits for neither longer than the grace.
        return {"join_url", "ticket_number"}
    if step.action is ActionKind.POST_WEBHOOK:
        return {ALL_OUTPUTS}
    return set()


def plan_dependencies(
    run_key: str,
    actions: Sequence[ActionSpec],
    earlier_steps: Sequence[tuple[str, int, str]] = (),
    *,
    bound_ticket: bool = False,
) -> list[tuple[Dependency, ...]]:
    """For each action of a run, the steps whose outputs it uses: the latest earlier step of the same run producing
    the output, else the latest step of an earlier run of the booking (`earlier_steps`: (run key, step, action),
    oldest first) producing it. So a reschedule's move waits for the first run's create (or the last move), and
    nothing moves or cancels a record that does not exist yet.

    `bound_ticket`: the booking came with an existing ticket, so nothing waits for a ticket to be created."""
    planned: list[tuple[Dependency, ...]] = []
    for index, step in enumerate(actions):
        this_run = [(run_key, earlier, actions[earlier].action.value) for earlier in range(index)]
        needs: dict[tuple[str, int], tuple[Dependency, set[str]]] = {}

        for output in HARD_NEEDS.get(step.action, ()):
            if not (bound_ticket and output in _TICKET_OUTPUTS):
                _add_producers(needs, output, HARD, this_run, earlier_steps)
        for output in sorted(soft_needs(step)):
            if not (bound_ticket and output in _TICKET_OUTPUTS):
                _add_producers(needs, output, SOFT, this_run, earlier_steps)
        planned.append(
            tuple(
                Dependency(dep.run_key, dep.step, dep.action, dep.kind, tuple(sorted(used)))
                for dep, used in sorted(needs.values(), key=lambda item: (item[0].run_key != run_key, item[0].step))
            )
        )
    return planned


_ACTION_VALUES = frozenset(kind.value for kind in ActionKind)


def _add_producers(
    needs: dict[tuple[str, int], tuple[Dependency, set[str]]],
    output: str,
    kind: str,
    this_run: Sequence[tuple[str, int, str]],
    earlier_steps: Sequence[tuple[str, int, str]],
) -> None:
    """Record the step(s) producing `output` in `needs`: the latest in this run, else the latest in earlier runs
    (every earlier step of this run for ALL_OUTPUTS). A step needed both ways is a hard dependency."""
    for candidates in (this_run, earlier_steps):
        if output == ALL_OUTPUTS and candidates is earlier_steps:
            return
        producers = [
            (producer_run, producer_step, action)
            for producer_run, producer_step, action in candidates
            if action in _ACTION_VALUES
            and ActionKind(action) is not ActionKind.NOTIFY_HOST
            and (output == ALL_OUTPUTS or output in OUTPUTS.get(ActionKind(action), ()))
        ]
        chosen = producers if output == ALL_OUTPUTS and candidates is this_run else producers[-1:]
        for producer_run, producer_step, action in chosen:
            key = (producer_run, producer_step)
            uses = OUTPUTS.get(ActionKind(action), ()) if output == ALL_OUTPUTS else (output,)
            previous, used = needs.get(key, (None, set()))
            strongest: Any = HARD if kind == HARD or (previous is not None and previous.kind == HARD) else SOFT
            needs[key] = (Dependency(producer_run, producer_step, action, strongest), used | set(uses))
        if chosen:
            return


def plan_jobs(
    *,
    tenant_id: str,
    booking_id: str,
    trigger: Trigger,
    occurrence: int,
    workflow: WorkflowSpec,
    booking_snapshot: Mapping[str, Any],
    earlier_steps: Sequence[tuple[str, int, str]] = (),
) -> list[JobSpec]:
    """One job per action of the trigger, as one run, each naming the steps it waits for (`plan_dependencies`).

    `occurrence` numbers repeated events of the same kind for one booking (the second reschedule is 2), so each
    real event gets its own run while a retried request for the same event enqueues nothing new. `earlier_steps`
    are the booking's steps already enqueued, (run key, step, action), oldest first.
    """
    run_key = f"{booking_id}:{trigger.value}:{occurrence}"
    actions = workflow.actions_for(trigger)
    ticket = booking_snapshot.get("ticket")
    bound = isinstance(ticket, Mapping) and bool(ticket.get("id"))
    dependencies = plan_dependencies(run_key, actions, earlier_steps, bound_ticket=bound)
    return [
        JobSpec(
            tenant_id=tenant_id,
            run_key=run_key,
            step=index,
            kind=step.action.value,
            idempotency_key=f"{run_key}:{index}:{step.action.value}",
            payload={"action": step.model_dump(mode="json", exclude_none=True), "booking": dict(booking_snapshot)},
            booking_id=booking_id,
            depends_on=dependencies[index],
        )
        for index, step in enumerate(actions)
    ]


def plan_reminders(
    *,
    tenant_id: str,
    booking_id: str,
    version: int,
    workflow: WorkflowSpec,
    booking_snapshot: Mapping[str, Any],
    starts_at: datetime,
    now: datetime,
) -> list[JobSpec]:
    """The `before_appointment` runs of a booking that starts at `starts_at`: one run per offset, its steps due at
    `starts_at - offset`. An offset whose moment is not after `now` is skipped (a booking made 30 minutes ahead gets
    no "1 day before" reminder, and no late one either).

    Run keys carry the booking's `version`, so a reschedule (which bumps it) plans new runs while a retried request
    for the same change enqueues nothing new. A reminder does not wait for earlier runs of the booking: it reads
    whatever they produced by its time (the join link, the ticket number), and waiting would let the completion of
    such a step release it early."""
    actions = workflow.actions_for(Trigger.BEFORE_APPOINTMENT)
    jobs: list[JobSpec] = []
    if not actions:
        return jobs
    for offset in workflow.offsets_for(Trigger.BEFORE_APPOINTMENT):
        due = starts_at - offset
        if due <= now:
            continue
        minutes = int(offset / timedelta(minutes=1))
        run_key = f"{booking_id}:{Trigger.BEFORE_APPOINTMENT.value}:{version}:{minutes}m"
        dependencies = plan_dependencies(run_key, actions)
        jobs += [
            JobSpec(
                tenant_id=tenant_id,
                run_key=run_key,
                step=index,
                kind=step.action.value,
                idempotency_key=f"{run_key}:{index}:{step.action.value}",
                payload={"action": step.model_dump(mode="json", exclude_none=True), "booking": dict(booking_snapshot)},
                booking_id=booking_id,
                run_after=due,
                depends_on=dependencies[index],
            )
            for index, step in enumerate(actions)
        ]
    return jobs


def workflow_for_type(
    settings: Mapping[str, Any], primary_calendar: str, connected: Connected
) -> tuple[WorkflowSpec, str]:
    """The workflow an appointment type runs, and which mode produced it ('classic' or 'workflow').

    `classic_reminders: false` in the settings (the tenant file's `tenant.reminders: false`) leaves out Classic
    mode's reminder."""
    if settings.get("mode") == "workflow" and settings.get("workflow"):
        return WorkflowSpec.model_validate(settings["workflow"]), "workflow"
    location = settings.get("location") or {}
    teams_meeting = isinstance(location, Mapping) and location.get("kind") == "teams"
    reminders = settings.get("classic_reminders", True) is not False
    return classic_workflow(primary_calendar, connected, teams_meeting=teams_meeting, reminders=reminders), "classic"


def run_keys(jobs: Sequence[JobSpec]) -> list[str]:
    return sorted({job.run_key for job in jobs})


def follow_up_due(sent_at: datetime, span: FollowUpSpan, zone: ZoneInfo, holidays: frozenset[date]) -> datetime:
    """When a `no_response` follow-up goes: `span` after `sent_at`; business days skip Saturdays, Sundays and the
    tenant's holidays and keep the local time of day the request was sent (a Friday 16:00 request with "1 business
    day" follows up on Monday at 16:00)."""
    if not span.business_days:
        return sent_at + span.amount
    local = sent_at.astimezone(zone)
    day = local.date()
    counted = 0
    while counted < span.business_days:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in holidays:
            counted += 1
    return datetime.combine(day, local.time().replace(tzinfo=None), tzinfo=zone).astimezone(sent_at.tzinfo)


DEFAULT_REQUEST_EMAIL = ActionSpec(action=ActionKind.SEND_EMAIL, recipients="client_and_guests")


def plan_request_runs(
    *,
    tenant_id: str,
    request_id: str,
    workflow: WorkflowSpec,
    request_snapshot: Mapping[str, Any],
    sent_at: datetime | None,
    expires_at: datetime,
    zone: ZoneInfo,
    holidays: frozenset[date],
) -> list[JobSpec]:
    """The runs a new scheduling request starts:

    * `request_created` now, with the workflow's actions (a ticket note "scheduling link created", say);
    * when Slotwise sent the link (`sent_at`), `request_sent` now: the email with the link and the window first
      (unless the workflow's own request_sent actions include an email), then the workflow's other actions;
    * when it was sent, a `no_response` run per follow-up (`workflow.follow_ups()`), due that long after sending;
      a follow-up due after the link expires is not planned (it would point at a dead link).

    Jobs carry the request id where a booking's carry the booking id: they are the request's step log, and a
    booking through the request cancels the follow-ups still pending (workflows/dispatch.py)."""
    runs: list[tuple[str, list[ActionSpec], datetime | None, dict[str, Any]]] = []
    created = workflow.actions_for(Trigger.REQUEST_CREATED)
    if created:
        runs.append((f"{request_id}:{Trigger.REQUEST_CREATED.value}:1", created, None, {}))
    if sent_at is not None:
        sent = workflow.actions_for(Trigger.REQUEST_SENT)
        if not any(step.action is ActionKind.SEND_EMAIL for step in sent):
            sent = [DEFAULT_REQUEST_EMAIL, *sent]
        runs.append((f"{request_id}:{Trigger.REQUEST_SENT.value}:1", sent, None, {}))
        # `no_response: {after: 2 business days}` with no actions of its own means the follow-up email.
        follow_up_actions = workflow.actions_for(Trigger.NO_RESPONSE) or [DEFAULT_REQUEST_EMAIL]
        for number, span in enumerate(workflow.follow_ups(), start=1):
            due = follow_up_due(sent_at, span, zone, holidays)
            if due >= expires_at:
                break
            run_key = f"{request_id}:{Trigger.NO_RESPONSE.value}:{number}"
            runs.append((run_key, follow_up_actions, due, {"follow_up": number}))
    jobs: list[JobSpec] = []
    bound = bool((request_snapshot.get("ticket") or {}).get("id"))
    for run_key, actions, run_after, extra in runs:
        dependencies = plan_dependencies(run_key, actions, bound_ticket=bound)
        jobs += [
            JobSpec(
                tenant_id=tenant_id,
                run_key=run_key,
                step=index,
                kind=step.action.value,
                idempotency_key=f"{run_key}:{index}:{step.action.value}",
                payload={
                    "action": step.model_dump(mode="json", exclude_none=True),
                    "booking": {**request_snapshot, **extra},
                },
                booking_id=request_id,
                run_after=run_after,
                depends_on=dependencies[index],
            )
            for index, step in enumerate(actions)
        ]
    return jobs
