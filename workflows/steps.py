"""Step handlers: what each workflow action does, through the ports, with earlier steps' outputs flowing forward.

A handler receives the stored job (its payload holds the action's settings and a snapshot of the booking taken in
the booking transaction) and returns the ids it created. Every external create carries the job's idempotency key, so
a re-run after a crash finds the record instead of duplicating it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from i18n import translate
from scheduling.errors import IntegrationAuthError, IntegrationError, IntegrationRejected
from scheduling.model import (
    CalendarEventDraft,
    CalendarInvite,
    HostNotification,
    OutgoingEmail,
    PsaBinding,
    PsaContact,
    PsaDraft,
    PsaRecordKind,
    PsaRef,
)
from scheduling.ports import BusySource, CalendarWriter, Mailer, Notifier, PsaClient
from storage.database import Database
from storage.tables import scheduling_requests
from workflows.breaker import CredentialBreaker
from workflows.outbox import BLOCKED, CANCELLED, COMPLETED, FAILED, RETRYABLE, SOFT, Job, list_runs
from workflows.request_steps import request_steps
from workflows.templates import (
    answer_rows,
    compose_email,
    default_email,
    describe_booking_for_host,
    describe_location,
    email_locale,
    snapshot_variables,
)
from workflows.triggers import M365_KINDS, PSA_KINDS, ActionKind
from workflows.webhooks import WebhookSender, post_webhook


@dataclass(frozen=True)
class TenantIntegrations:
    """The adapters one tenant has connected (None where nothing is connected)."""

    psa: PsaClient | None = None
    calendar: CalendarWriter | None = None
    busy: BusySource | None = None
    mailer: Mailer | None = None
    notifier: Notifier | None = None
    webhooks: WebhookSender | None = None
    from_address: str = ""
    from_name: str = "Slotwise"


IntegrationsFor = Callable[[str], Awaitable[TenantIntegrations]]
"""Looks up (and caches) a tenant's adapters by tenant id."""


class StepContext:
    """Everything one run of one step may read: the job, the booking snapshot, and outputs of earlier steps."""

    def __init__(
        self, job: Job, outputs: Mapping[str, Any], integrations: TenantIntegrations, *, client_invited: bool = False
    ) -> None:
        self.job = job
        self.client_invited = client_invited
        """An email of this booking already carried our own calendar invitation to the client (see `_event_draft`)."""
        self.action: Mapping[str, Any] = job.payload.get("action", {})
        self.booking: Mapping[str, Any] = job.payload.get("booking", {})
        bound = self.bound_ticket
        # A booking made through a ticket-bound scheduling request acts on that ticket from its first step: the
        # request's ticket is an output every step sees, and no earlier output can point the steps elsewhere. The
        # same holds for the opportunity a rep bound an Outlook link to.
        fixed: dict[str, Any] = {}
        if bound is not None:
            fixed.update(ticket_id=bound.record_id, ticket_number=bound.number)
        binding = self.binding
        if binding is not None and binding.opportunity is not None:
            fixed["opportunity_id"] = binding.opportunity.opportunity_id
        self.outputs: Mapping[str, Any] = {**outputs, **fixed} if fixed else outputs
        self.integrations = integrations
        self.progress: Mapping[str, Any] = job.output or {}
        """What an earlier, failed attempt of this very step got done (see IntegrationError.progress)."""

    @property
    def bound_ticket(self) -> PsaRef | None:
        """The existing PSA ticket the booking's scheduling request names (resolved when the request was made)."""
        ticket = self.booking.get("ticket") or {}
        if not ticket.get("id"):
            return None
        return PsaRef(PsaRecordKind.TICKET, str(ticket["id"]), str(ticket.get("number") or ticket["id"]))

    @property
    def binding(self) -> PsaBinding | None:
        """The PSA contact (and opportunity) the rep bound the booking's link to in Outlook, if any."""
        return PsaBinding.from_json(self.booking.get("psa_binding"))

    async def client_contact(self, *, create: bool = True) -> PsaContact | None:
        """The client's PSA contact: the one the link is bound to, else the contact with the client's address (made
        when `create` and the PSA has none). A bound contact is never looked up or created again."""
        binding = self.binding
        if binding is not None:
            return binding.contact
        client = self.booking["client"]
        if create:
            return await self.psa().find_or_create_contact(client["name"], client["email"])
        return await self.psa().find_contact(client["email"])

    @property
    def starts_at(self) -> datetime:
        return datetime.fromisoformat(self.booking["starts_at"])

    @property
    def ends_at(self) -> datetime:
        return datetime.fromisoformat(self.booking["ends_at"])

    @property
    def host(self) -> Mapping[str, Any]:
        hosts = self.booking.get("hosts") or [{}]
        return dict(hosts[0])

    def psa(self) -> PsaClient:
        if self.integrations.psa is None:
            raise IntegrationRejected("No PSA is connected for this tenant; connect one in the tenant file")
        return self.integrations.psa

    def calendar(self) -> CalendarWriter:
        if self.integrations.calendar is None:
            raise IntegrationRejected("Microsoft 365 is not connected for this tenant; connect it in the tenant file")
        return self.integrations.calendar

    def mailer(self) -> Mailer:
        if self.integrations.mailer is None:
            raise IntegrationRejected("No email connection for this tenant; add SMTP or Microsoft 365 mail")
        return self.integrations.mailer

    def needed(self, key: str, what: str) -> str:
        value = self.outputs.get(key)
        if not value:
            raise IntegrationRejected(f"There is no {what} for this booking yet, so this step has nothing to act on")
        return str(value)

    def draft(self, contact: PsaContact | None, **changes: Any) -> PsaDraft:
        client = self.booking["client"]
        values: dict[str, Any] = {
            "idempotency_key": self.job.idempotency_key,
            "title": f"{self.booking['type_name']}: {client['name']}",
            "description": describe_booking_for_host(self.booking)[0],
            "contact": contact,
            "member": self.host.get("psa_member") or self.host.get("email", ""),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "ticket_id": str(self.outputs.get("ticket_id", "")),
            "opportunity_id": str(self.outputs.get("opportunity_id", "")),
            "activity_id": str(self.outputs.get("activity_id", "")),
        }
        values.update(changes)
        return PsaDraft(**values)


Step = Callable[[StepContext], Awaitable[Mapping[str, Any]]]


async def _opportunity(ctx: StepContext) -> Mapping[str, Any]:
    binding = ctx.binding
    if binding is not None and binding.opportunity is not None:
        # The rep bound the link to this open opportunity: the booking joins it, and no opportunity is created.
        deal = binding.opportunity
        return {
            "opportunity_id": deal.opportunity_id,
            "opportunity_created": False,
            "opportunity_source": f"bound in Outlook: existing opportunity {deal.name or deal.opportunity_id}",
        }
    psa = ctx.psa()
    contact = await ctx.client_contact()
    ref = await psa.create_record(
        PsaRecordKind.OPPORTUNITY,
        ctx.draft(
            contact,
            member=ctx.action.get("opportunity_owner") or ctx.host.get("psa_member", ""),
            board=ctx.action.get("sales_board", ""),
            stage=ctx.action.get("pipeline_stage", ""),
        ),
    )
    return {"opportunity_id": ref.record_id}


async def _ticket(ctx: StepContext) -> Mapping[str, Any]:
    bound = ctx.bound_ticket
    if bound is not None:
        # The agent asked for this booking on an existing ticket: it lands there, and no ticket is created.
        return {
            "ticket_id": bound.record_id,
            "ticket_number": bound.number,
            "ticket_url": await ticket_link(ctx.integrations.psa, bound.record_id, bound.number),
            "ticket_created": False,
            "ticket_source": f"scheduling request: existing ticket #{bound.number}, no new ticket created",
        }
    psa = ctx.psa()
    contact = await ctx.client_contact()
    ref = await psa.create_record(PsaRecordKind.TICKET, ctx.draft(contact, board=ctx.action.get("ticket_board", "")))
    number = ref.number or ref.record_id
    return {
        "ticket_id": ref.record_id,
        "ticket_number": number,
        "ticket_url": await ticket_link(psa, ref.record_id, number),
    }


async def _activity(ctx: StepContext) -> Mapping[str, Any]:
    psa = ctx.psa()
    contact = await ctx.client_contact()
    ref = await psa.create_record(PsaRecordKind.ACTIVITY, ctx.draft(contact))
    return {"activity_id": ref.record_id}


async def _schedule_entry(ctx: StepContext) -> Mapping[str, Any]:
    psa = ctx.psa()
    contact = await ctx.client_contact(create=False)
    ref = await psa.create_record(PsaRecordKind.SCHEDULE_ENTRY, ctx.draft(contact))
    return {"schedule_entry_id": ref.record_id}


async def _move_schedule_entry(ctx: StepContext) -> Mapping[str, Any]:
    entry = ctx.needed("schedule_entry_id", "PSA schedule entry")
    await ctx.psa().move_schedule_entry(PsaRef(PsaRecordKind.SCHEDULE_ENTRY, entry), ctx.starts_at, ctx.ends_at)
    return {"schedule_entry_id": entry, "moved_to": ctx.booking["starts_at"]}


async def _remove_schedule_entry(ctx: StepContext) -> Mapping[str, Any]:
    entry = ctx.needed("schedule_entry_id", "PSA schedule entry")
    await ctx.psa().remove_schedule_entry(PsaRef(PsaRecordKind.SCHEDULE_ENTRY, entry))
    return {"removed_schedule_entry_id": entry}


async def _ticket_note(ctx: StepContext) -> Mapping[str, Any]:
    ticket = ctx.needed("ticket_id", "PSA ticket")
    text = ctx.action.get("note") or describe_booking_for_host(ctx.booking)[0]
    ref = await ctx.psa().create_record(PsaRecordKind.NOTE, ctx.draft(None, ticket_id=ticket, description=text))
    return {"note_id": ref.record_id}


async def _ticket_status(ctx: StepContext) -> Mapping[str, Any]:
    ticket = ctx.needed("ticket_id", "PSA ticket")
    status = ctx.action.get("status_after_scheduling")
    if not status:
        raise IntegrationRejected("set_ticket_status needs 'status_after_scheduling' in the workflow")
    await ctx.psa().set_ticket_status(ticket, status)
    return {"ticket_status": status}


def _event_draft(ctx: StepContext) -> CalendarEventDraft:
    client = ctx.booking["client"]
    # A panel's other hosts are attendees too: the event sits in the first host's calendar, and Exchange invites
    # everyone else on it, so every panelist has the meeting (and its Teams link) in their own calendar.
    panel = tuple(
        (str(host.get("name", "")), str(host["email"]))
        for host in ctx.booking.get("hosts", [])[1:]
        if host.get("email")
    )
    # When the client's confirmation already went out with our own invitation (this event could not be made in time,
    # so the email went without it), Exchange must not invite them a second time under another UID: the event then
    # lists only the panel, and the client keeps the one calendar entry they have.
    invited = (
        () if ctx.client_invited else ((client["name"], client["email"]), *((g, g) for g in client.get("guests", [])))
    )
    attendees = (*invited, *panel)
    return CalendarEventDraft(
        transaction_id=ctx.job.idempotency_key[:200],
        subject=f"{ctx.booking['type_name']}: {client['name']}",
        # The host's Outlook entry carries what the client told us (phone number, company...) under the questions'
        # labels, the guests and the manage link, so the host needs no other screen to prepare or to move it.
        body_html=describe_booking_for_host(ctx.booking)[1],
        starts_at=ctx.starts_at,
        ends_at=ctx.ends_at,
        attendees=attendees,
        location=ctx.booking.get("location", ""),
        teams_meeting=ctx.booking.get("location_kind") == "teams",
    )


async def _m365_event(ctx: StepContext) -> Mapping[str, Any]:
    ref = await ctx.calendar().create_event(ctx.host["email"], _event_draft(ctx))
    return {"event_id": ref.event_id, "join_url": ref.join_url}


async def _update_m365_event(ctx: StepContext) -> Mapping[str, Any]:
    event = ctx.needed("event_id", "Microsoft 365 event")
    await ctx.calendar().move_event(ctx.host["email"], event, ctx.starts_at, ctx.ends_at)
    return {"event_id": event, "moved_to": ctx.booking["starts_at"]}


async def _cancel_m365_event(ctx: StepContext) -> Mapping[str, Any]:
    event = ctx.needed("event_id", "Microsoft 365 event")
    await ctx.calendar().cancel_event(ctx.host["email"], event, ctx.booking.get("cancel_reason") or "Cancelled")
    return {"cancelled_event_id": event}


async def _email(ctx: StepContext) -> Mapping[str, Any]:
    mailer = ctx.mailer()
    # An output the step went without (its soft dependency failed or its grace ran out) is nil there, so the
    # default templates leave its line out.
    variables = snapshot_variables(ctx.booking, ctx.outputs)
    trigger = _trigger_of(ctx)
    locale = email_locale(ctx.booking)
    if ctx.action.get("template") == "custom":
        # An admin's template is theirs, in their words; our layout around it speaks the client's language.
        rendered = compose_email(ctx.action["subject"], ctx.action["body"], variables, locale)
    else:
        subject, body = default_email(trigger, locale)
        rendered = compose_email(subject, body, variables, locale)
    client = ctx.booking["client"]
    recipient_kind = ctx.action.get("recipients", "")
    recipients = {
        "client": (client["email"],),
        "host": (ctx.host.get("email", ""),),
    }.get(recipient_kind, (client["email"], *client.get("guests", [])))
    host = ctx.host
    email = OutgoingEmail(
        message_id=f"<{ctx.job.idempotency_key.replace(':', '.')}@slotwise>",
        from_name=ctx.integrations.from_name,
        from_address=ctx.integrations.from_address,
        to=tuple(address for address in recipients if address),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        reply_to=host.get("email") or None,
        invite=booking_invite(
            ctx.booking,
            ctx.outputs,
            trigger,
            recipient_kind,
            ctx.integrations.from_address,
            client_invited=ctx.client_invited,
        ),
    )
    message_id = await mailer.send(email)
    return {"message_id": message_id, "recipients": list(email.to), "invite": email.invite is not None}


_NO_INVITE_TRIGGERS = frozenset({"before_appointment", "reschedule_requested"})


def booking_invite(
    booking: Mapping[str, Any],
    outputs: Mapping[str, Any],
    trigger: str,
    recipient_kind: str,
    from_address: str,
    *,
    client_invited: bool = False,
) -> CalendarInvite | None:
    """The calendar invitation an email carries, or None when it must carry none.

    One UID for the booking's whole life (`<booking id>@slotwise`) and the booking's revision as SEQUENCE (the
    snapshot's `sequence`, version - 1: 0 when made, +1 per reschedule, the cancel one more), so calendars apply
    every change in order and the cancellation last (RFC 5546 §2.1.4). No invitation:

    - when the host's Microsoft 365 event exists (an `event_id` from create_m365_event): Exchange has already
      invited the client and guests as its attendees and sends them the updates and the cancellation of that event
      itself, under its own UID and sequence. A second invitation of ours would be a second calendar entry, and
      borrowing Exchange's UID would fight its SEQUENCE, so our email only describes the meeting (with its join
      link). One invitation per person. (If that event could not be made, the email went without it and carries
      our own invitation, as does every later email of the booking while no event exists; and once an email of the
      booking carried ours (`client_invited`), the event made later leaves the client off its attendees and every
      later email keeps updating our invitation, so the client's one calendar entry follows every change;)
    - for a reminder or a "please pick a new time" email, which change nothing on the calendar;
    - for an email to the host, who is the organizer of the meeting, not an attendee.
    """
    if trigger in _NO_INVITE_TRIGGERS or recipient_kind == "host" or (outputs.get("event_id") and not client_invited):
        return None
    client = booking["client"]
    host = dict((booking.get("hosts") or [{}])[0])
    join_url = str(outputs.get("join_url") or "")
    manage_url = str(booking.get("manage_url") or "")
    locale = email_locale(booking)
    location = describe_location(
        str(booking.get("location_kind") or ""),
        "" if booking.get("location") == booking.get("location_kind") else str(booking.get("location")),
        locale,
    )
    title = str(booking["type_name"])
    if host.get("name"):
        title = translate(locale, "%(type)s with %(hosts)s") % {"type": title, "hosts": host["name"]}
    lines = [title, translate(locale, "Where: %(place)s") % {"place": location}]
    if join_url:
        lines.append(translate(locale, "Join: %(url)s") % {"url": join_url})
    if manage_url and booking.get("status") != "cancelled":
        lines.append(translate(locale, "Reschedule or cancel: %(url)s") % {"url": manage_url})
    guests = tuple((str(guest), str(guest)) for guest in client.get("guests", []))
    return CalendarInvite(
        uid=f"{booking['id']}@slotwise",
        starts_at=datetime.fromisoformat(booking["starts_at"]),
        ends_at=datetime.fromisoformat(booking["ends_at"]),
        summary=booking["type_name"],
        description="\n".join(lines),
        location=join_url or location,
        organizer_name=host.get("name", ""),
        organizer_email=host.get("email", "") or from_address,
        attendees=((client["name"], client["email"]), *guests),
        sequence=int(booking.get("sequence", 0)),
        cancelled=booking.get("status") == "cancelled",
    )


def _trigger_of(ctx: StepContext) -> str:
    """The trigger this step runs for, from its run key (`booking:trigger:occurrence`)."""
    return ctx.job.run_key.split(":")[1] if ctx.job.run_key.count(":") >= 2 else ""


_CHANGES = {
    "client_scheduled": "booked",
    "rescheduled": "rescheduled",
    "cancelled": "cancelled",
    "before_appointment": "upcoming",
}


def host_notification(booking: Mapping[str, Any], outputs: Mapping[str, Any], trigger: str) -> HostNotification:
    """What the host's Teams card says about this booking change; answers under the questions' labels."""
    client = booking["client"]
    return HostNotification(
        change=_CHANGES.get(trigger, "booked"),
        booking_id=str(booking["id"]),
        type_name=str(booking.get("type_name", "")),
        client_name=str(client.get("name", "")),
        client_email=str(client.get("email", "")),
        starts_at=datetime.fromisoformat(booking["starts_at"]),
        ends_at=datetime.fromisoformat(booking["ends_at"]),
        join_url=str(outputs.get("join_url", "")),
        reason=str(booking.get("cancel_reason", "")),
        answers=tuple(answer_rows(booking)),
        previous_starts_at=(
            datetime.fromisoformat(booking["previous_starts_at"]) if booking.get("previous_starts_at") else None
        ),
        ticket_number=str(outputs.get("ticket_number") or ""),
        ticket_url=str(outputs.get("ticket_url") or ""),
        booking_url=str(booking.get("host_url") or ""),
    )


async def ticket_link(psa: PsaClient | None, ticket_id: str, number: str) -> str:
    """The ticket's page in the PSA's web app, or "" (no PSA, no ticket, or the PSA could not say): a missing link
    never fails the step that shows it."""
    if psa is None or not ticket_id:
        return ""
    try:
        return await psa.ticket_web_url(ticket_id, number)
    except IntegrationError:
        return ""


async def _notify_host(ctx: StepContext) -> Mapping[str, Any]:
    """A card in each host's Teams chat. A host who never opened a chat with the bot cannot be reached, which is
    recorded in the output rather than failed: there is nothing to retry until they install the app."""
    notifier = ctx.integrations.notifier
    if notifier is None:
        raise IntegrationRejected(
            "Teams notifications need the Slotwise bot: this deployment has no bot registration "
            "(set SLOTWISE_BOT_APP_ID and SLOTWISE_BOT_APP_PASSWORD), so the host was not told"
        )
    outputs = ctx.outputs
    resolved: dict[str, str] = {}
    if outputs.get("ticket_id") and not outputs.get("ticket_url"):
        # A ticket the request named (no step made it here), or one made before links were kept. Kept in this step's
        # output too, so the card a host's button answers in place and the host page link it as this card did.
        number = str(outputs.get("ticket_number", ""))
        url = await ticket_link(ctx.integrations.psa, str(outputs["ticket_id"]), number)
        outputs = {**outputs, "ticket_url": url}
        if url:
            resolved = {"ticket_number": number, "ticket_url": url}
    notification = host_notification(ctx.booking, outputs, _trigger_of(ctx))
    # A panel has several hosts: one whose card went out on an earlier attempt is not sent a second one.
    sent: dict[str, Any] = {key: value for key, value in ctx.progress.items() if key.startswith("teams_activity:")}
    unreachable: list[str] = []
    for host in ctx.booking.get("hosts", []):
        user_id = str(host.get("user_id", ""))
        if not user_id or f"teams_activity:{user_id}" in sent:
            continue
        try:
            activity_id = await notifier.notify_host(ctx.job.tenant_id, user_id, notification)
        except IntegrationError as error:
            error.progress = sent
            raise
        if activity_id is None:
            unreachable.append(str(host.get("name", user_id)))
        else:
            sent[f"teams_activity:{user_id}"] = activity_id
    return {**sent, "teams_not_installed": unreachable, **resolved}


STEPS: dict[str, Step] = {
    ActionKind.FIND_OR_CREATE_OPPORTUNITY.value: _opportunity,
    ActionKind.CREATE_TICKET.value: _ticket,
    ActionKind.CREATE_ACTIVITY.value: _activity,
    ActionKind.CREATE_SCHEDULE_ENTRY.value: _schedule_entry,
    ActionKind.MOVE_SCHEDULE_ENTRY.value: _move_schedule_entry,
    ActionKind.REMOVE_SCHEDULE_ENTRY.value: _remove_schedule_entry,
    ActionKind.ADD_TICKET_NOTE.value: _ticket_note,
    ActionKind.SET_TICKET_STATUS.value: _ticket_status,
    ActionKind.CREATE_M365_EVENT.value: _m365_event,
    ActionKind.UPDATE_M365_EVENT.value: _update_m365_event,
    ActionKind.CANCEL_M365_EVENT.value: _cancel_m365_event,
    ActionKind.SEND_EMAIL.value: _email,
    ActionKind.NOTIFY_HOST.value: _notify_host,
    ActionKind.POST_WEBHOOK.value: post_webhook,
}


def connection_of(kind: str, integrations: TenantIntegrations) -> object | None:
    """The adapter whose credentials a step of this kind uses (None: several, or none of ours)."""
    if kind in PSA_KINDS:
        return integrations.psa
    if kind in M365_KINDS:
        return integrations.calendar
    if kind == ActionKind.SEND_EMAIL.value:
        return integrations.mailer
    return None


def build_handlers(
    database: Database, integrations_for: IntegrationsFor, *, breaker: CredentialBreaker | None = None
) -> dict[str, Callable[[Job], Awaitable[Mapping[str, Any]]]]:
    """Runner handlers for every action kind. A step reads the outputs of the booking's steps enqueued before it that
    completed (later ones win), so a reschedule's move finds the schedule entry the first run created; steps that run
    alongside it or after it in their run do not leak in. A soft dependency that did not complete is recorded in the
    step's output as `went_without`. A connection that refused our credentials is not called again for a while (see
    `workflows.breaker`)."""
    credentials = breaker if breaker is not None else CredentialBreaker()

    async def booked(tenant_id: str, request_id: str) -> bool:
        return await request_booked(database, tenant_id, request_id)

    for_requests = request_steps(booked)

    def wrap(kind: str, step: Step) -> Callable[[Job], Awaitable[Mapping[str, Any]]]:
        async def handle(job: Job) -> Mapping[str, Any]:
            if job.payload.get("booking", {}).get("kind") == "request":
                # A scheduling request's trigger (nothing booked yet) runs the request's own handler.
                request_step = for_requests.get(kind)
                if request_step is None:
                    raise IntegrationRejected(f"'{kind}' cannot run on a scheduling request's trigger")
                step_now = request_step
            else:
                step_now = step
            outputs: dict[str, Any] = {}
            states: dict[tuple[str, int], str] = {}
            client_invited = False
            if job.booking_id is not None:
                earlier_steps = sorted(
                    await list_runs(database, job.tenant_id, job.booking_id), key=lambda step: step.id
                )
                for earlier in earlier_steps:
                    states[(earlier.run_key, earlier.step)] = earlier.state
                    if earlier.output and earlier.state == COMPLETED and earlier.id < job.id:
                        outputs.update(earlier.output)
                    if earlier.kind == ActionKind.SEND_EMAIL.value and earlier.state == COMPLETED:
                        client_invited = client_invited or bool((earlier.output or {}).get("invite"))
            integrations = await integrations_for(job.tenant_id)
            connection = connection_of(kind, integrations)
            # A person retrying a failed step (its attempts start again, its last error stays) has usually just
            # fixed the credentials: that attempt always goes to the vendor.
            retried_by_a_person = job.attempts == 1 and bool(job.last_error)
            if connection is not None and not retried_by_a_person:
                credentials.check(connection)
            try:
                result = await step_now(StepContext(job, outputs, integrations, client_invited=client_invited))
            except IntegrationAuthError as error:
                if connection is not None:
                    credentials.refused(connection, error)
                raise
            if connection is not None:
                credentials.succeeded(connection)
            missing = went_without(job, states)
            return {**result, "went_without": missing} if missing else result

        return handle

    return {kind: wrap(kind, step) for kind, step in STEPS.items()}


async def request_booked(database: Database, tenant_id: str, request_id: str) -> bool:
    """Whether a client has booked through the scheduling request."""
    async with database.read() as conn:
        used = (
            await conn.execute(
                select(scheduling_requests.c.used_at).where(
                    scheduling_requests.c.tenant_id == tenant_id, scheduling_requests.c.id == request_id
                )
            )
        ).scalar()
    return used is not None


_WHY = {
    FAILED: "failed",
    BLOCKED: "blocked",
    CANCELLED: "cancelled",
    RETRYABLE: "still retrying when the grace period ran out",
}


def went_without(job: Job, states: Mapping[tuple[str, int], str]) -> list[str]:
    """What this step quotes but went without: 'ticket_number from step 0 (create_ticket): failed'."""
    missing: list[str] = []
    for dependency in job.dependencies:
        state = states.get((dependency.run_key, dependency.step))
        if dependency.kind != SOFT or state is None or state == COMPLETED:
            continue
        why = _WHY.get(state, "not done when the grace period ran out")
        where = dependency.describe(job.run_key)
        missing.extend(f"{output} from {where}: {why}" for output in dependency.uses or ("its output",))
    return missing
