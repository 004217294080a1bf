"""What a scheduling request's trigger steps do (`request_created`, `request_sent`, `no_response`).

Their payload carries the request snapshot (workflows/requests.py) where a booking's steps carry the booking's: no
time, host or attendees yet. So they have their own handlers for the actions a request trigger allows
(workflows/triggers.py REQUEST_ACTIONS): the link email, a note or status on the request's ticket, a webhook.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from i18n import language_of
from scheduling.errors import IntegrationRejected
from scheduling.model import OutgoingEmail, PsaDraft, PsaRecordKind
from workflows.request_emails import request_emails, request_variables
from workflows.templates import compose_email, email_locale
from workflows.triggers import ActionKind
from workflows.webhooks import post_webhook

RequestBooked = Callable[[str, str], Awaitable[bool]]
"""(tenant id, request id) → whether a client has booked through the request by now."""

if TYPE_CHECKING:  # steps imports this module at run time
    from workflows.steps import StepContext


def _trigger(ctx: StepContext) -> str:
    return ctx.job.run_key.split(":")[1]


def _skip(why: str) -> Mapping[str, Any]:
    """A step with nothing to do completes, saying why, so the step log explains itself."""
    return {"skipped": why}


def _describe(ctx: StepContext) -> str:
    request = ctx.booking
    trigger = _trigger(ctx)
    client = request.get("client") or {}
    who = f"{client.get('name') or client.get('email')} <{client.get('email')}>" if client.get("email") else ""
    what = f"{request.get('type_name', '')} ({request.get('duration_minutes')} minutes)"
    if trigger == "request_sent":
        return f"Slotwise emailed a scheduling link for {what} to {who}. The link works until {request['expires_at']}."
    if trigger == "no_response":
        return (
            f"Slotwise sent follow-up {request.get('follow_up', 1)} to {who}: no time has been chosen yet for {what}."
        )
    return (
        f"A Slotwise scheduling link was created for {what} by {request.get('created_by', 'an agent')}. "
        f"It works until {request['expires_at']}."
    )


async def _request_email(ctx: StepContext, booked: RequestBooked) -> Mapping[str, Any]:
    request = ctx.booking
    trigger = _trigger(ctx)
    if trigger == "no_response" and await booked(ctx.job.tenant_id, str(request["id"])):
        # The booking cancels pending follow-ups; one claimed in the same instant stops here.
        return _skip("the client has booked through this request, so no follow-up was sent")
    client = request.get("client") or {}
    if not client.get("email"):
        raise IntegrationRejected(
            "This scheduling request names no recipient (the agent shares the link), so there is nobody to email"
        )
    variables = request_variables(request, ctx.outputs)
    locale = email_locale(request)
    if ctx.action.get("template") == "custom":
        rendered = compose_email(ctx.action["subject"], ctx.action["body"], variables, locale)
    else:
        emails = request_emails(language_of(locale) or "en")
        subject, body = emails.get(trigger, emails["request_sent"])
        rendered = compose_email(subject, body, variables, locale)
    recipients = (client["email"],)
    if ctx.action.get("recipients", "client_and_guests") == "client_and_guests":
        recipients = (client["email"], *client.get("guests", []))
    email = OutgoingEmail(
        message_id=f"<{ctx.job.idempotency_key.replace(':', '.')}@slotwise>",
        from_name=ctx.integrations.from_name,
        from_address=ctx.integrations.from_address,
        to=tuple(address for address in recipients if address),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        reply_to=None,
        invite=None,
    )
    message_id = await ctx.mailer().send(email)
    return {"message_id": message_id, "recipients": list(email.to)}


async def _request_note(ctx: StepContext) -> Mapping[str, Any]:
    ticket = ctx.bound_ticket
    if ticket is None:
        return _skip("this scheduling request names no PSA ticket, so there is nothing to add a note to")
    text = ctx.action.get("note") or _describe(ctx)
    draft = PsaDraft(
        idempotency_key=ctx.job.idempotency_key,
        title=f"{ctx.booking.get('type_name', '')}: scheduling link",
        description=text,
        contact=None,
        member="",
        ticket_id=ticket.record_id,
    )
    ref = await ctx.psa().create_record(PsaRecordKind.NOTE, draft)
    return {"note_id": ref.record_id, "ticket_number": ticket.number}


async def _request_status(ctx: StepContext) -> Mapping[str, Any]:
    ticket = ctx.bound_ticket
    if ticket is None:
        return _skip("this scheduling request names no PSA ticket, so there is no status to set")
    status = ctx.action.get("status_after_scheduling")
    if not status:
        raise IntegrationRejected("set_ticket_status needs 'status_after_scheduling' in the workflow")
    await ctx.psa().set_ticket_status(ticket.record_id, status)
    return {"ticket_status": status}


def request_steps(booked: RequestBooked) -> dict[str, Callable[[StepContext], Awaitable[Mapping[str, Any]]]]:
    """The handlers of request-trigger steps, by action kind."""

    async def email(ctx: StepContext) -> Mapping[str, Any]:
        return await _request_email(ctx, booked)

    return {
        ActionKind.SEND_EMAIL.value: email,
        ActionKind.ADD_TICKET_NOTE.value: _request_note,
        ActionKind.SET_TICKET_STATUS.value: _request_status,
        ActionKind.POST_WEBHOOK.value: post_webhook,
    }
