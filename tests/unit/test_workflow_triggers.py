"""Classic mode, Workflow Mode validation and job planning, from the admin's and the runner's side."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from workflows.triggers import (
    ActionKind,
    ActionSpec,
    Connected,
    FollowUpSpan,
    Trigger,
    WorkflowSpec,
    classic_workflow,
    follow_up_due,
    plan_jobs,
    teams_meeting_problem,
    validate_workflow,
    workflow_for_type,
)
from workflows.webhooks import build_event


def kinds(spec: WorkflowSpec, trigger: Trigger) -> list[str]:
    return [step.action.value for step in spec.actions_for(trigger)]


def test_classic_mode_writes_to_the_psa_for_a_psa_primary_calendar_and_sends_the_default_email() -> None:
    spec = classic_workflow("psa", Connected(psa="connectwise", m365=True, email=True))
    assert kinds(spec, Trigger.CLIENT_SCHEDULED) == ["create_schedule_entry", "send_email"]
    assert kinds(spec, Trigger.RESCHEDULED) == ["move_schedule_entry", "send_email"]
    assert kinds(spec, Trigger.CANCELLED) == ["remove_schedule_entry", "send_email"]


def test_classic_mode_writes_a_teams_event_for_an_m365_primary_calendar() -> None:
    spec = classic_workflow("m365", Connected(psa="autotask", m365=True, email=True))
    assert kinds(spec, Trigger.CLIENT_SCHEDULED) == ["create_m365_event", "send_email"]
    assert kinds(spec, Trigger.CANCELLED) == ["cancel_m365_event", "send_email"]


def test_classic_mode_plans_nothing_it_could_not_run() -> None:
    assert classic_workflow("m365", Connected()).triggers == {}
    assert kinds(classic_workflow("psa", Connected(email=True)), Trigger.CLIENT_SCHEDULED) == ["send_email"]


def test_workflow_mode_is_checked_against_what_is_connected() -> None:
    spec = WorkflowSpec(
        triggers={
            Trigger.CLIENT_SCHEDULED: [
                ActionSpec(action=ActionKind.FIND_OR_CREATE_OPPORTUNITY),
                ActionSpec(action=ActionKind.CREATE_M365_EVENT),
            ]
        }
    )
    problems = validate_workflow(spec, Connected(psa="halopsa"))
    assert "workflow.triggers.client_scheduled[0]: opportunities are not available in HaloPSA" in problems
    assert "workflow.triggers.client_scheduled[1]: 'create_m365_event' needs Microsoft 365 connected" in problems
    assert validate_workflow(spec, Connected(psa="connectwise", m365=True)) == []


def test_bad_actions_are_refused_with_a_reason() -> None:
    with pytest.raises(ValidationError, match="custom email needs both"):
        ActionSpec(action=ActionKind.SEND_EMAIL, template="custom", subject="Hi")
    with pytest.raises(ValidationError, match="https"):
        ActionSpec(action=ActionKind.POST_WEBHOOK, url="http://insecure.example")
    with pytest.raises(ValidationError):
        WorkflowSpec.model_validate({"triggers": {"client_scheduled": [{"action": "teleport"}]}})


def test_jobs_are_one_ordered_run_per_event_with_keys_unique_per_occurrence() -> None:
    spec = classic_workflow("psa", Connected(psa="connectwise", email=True))
    first = plan_jobs(
        tenant_id="t",
        booking_id="b1",
        trigger=Trigger.RESCHEDULED,
        occurrence=1,
        workflow=spec,
        booking_snapshot={"id": "b1"},
    )
    second = plan_jobs(
        tenant_id="t",
        booking_id="b1",
        trigger=Trigger.RESCHEDULED,
        occurrence=2,
        workflow=spec,
        booking_snapshot={"id": "b1"},
    )
    assert [job.step for job in first] == [0, 1]
    assert [job.kind for job in first] == ["move_schedule_entry", "send_email"]
    assert {job.run_key for job in first} == {"b1:rescheduled:1"}
    assert {job.idempotency_key for job in first}.isdisjoint({job.idempotency_key for job in second})
    assert first[0].payload["booking"] == {"id": "b1"}
    assert first[0].payload["action"] == {
        "action": "move_schedule_entry",
        "template": "default_confirmation",
        "recipients": "client_and_guests",
    }


def test_a_type_in_workflow_mode_runs_its_own_workflow_and_otherwise_classic() -> None:
    written = {"triggers": {"client_scheduled": [{"action": "create_ticket"}]}}
    spec, mode = workflow_for_type({"mode": "workflow", "workflow": written}, "m365", Connected(psa="autotask"))
    assert mode == "workflow"
    assert kinds(spec, Trigger.CLIENT_SCHEDULED) == ["create_ticket"]
    spec, mode = workflow_for_type({"mode": "classic"}, "m365", Connected(m365=True))
    assert mode == "classic"
    assert kinds(spec, Trigger.CLIENT_SCHEDULED) == ["create_m365_event"]


def test_classic_mode_tells_the_host_in_teams_after_the_calendar_step_and_before_the_email() -> None:
    connected = Connected(psa="connectwise", m365=True, email=True, teams=True)
    workflow = classic_workflow("m365", connected)
    for trigger, calendar in (
        (Trigger.CLIENT_SCHEDULED, ActionKind.CREATE_M365_EVENT),
        (Trigger.RESCHEDULED, ActionKind.UPDATE_M365_EVENT),
        (Trigger.CANCELLED, ActionKind.CANCEL_M365_EVENT),
    ):
        kinds = [step.action for step in workflow.actions_for(trigger)]
        assert kinds == [calendar, ActionKind.NOTIFY_HOST, ActionKind.SEND_EMAIL]
    without_teams = classic_workflow("m365", Connected(m365=True, email=True))
    assert ActionKind.NOTIFY_HOST not in [step.action for step in without_teams.actions_for(Trigger.CLIENT_SCHEDULED)]
    spec = WorkflowSpec.model_validate({"triggers": {"client_scheduled": [{"action": "notify_host"}]}})
    assert validate_workflow(spec, Connected()) == [
        "workflow.triggers.client_scheduled[0]: 'notify_host' needs the Teams app: set tenant.microsoft_tenant_id"
    ]
    assert validate_workflow(spec, Connected(teams=True)) == []


def test_a_custom_email_template_that_would_not_render_is_refused_at_apply() -> None:
    def email(subject: str, body: str, trigger: str = "client_scheduled") -> WorkflowSpec:
        action = {"action": "send_email", "template": "custom", "subject": subject, "body": body}
        return WorkflowSpec.model_validate({"triggers": {trigger: [action]}})

    connected = Connected(email=True)
    assert validate_workflow(email("Hi {{ apointment.name }}", "<p>x</p>"), connected) == [
        "workflow.triggers.client_scheduled[0]: the email template does not render: 'apointment' is undefined"
    ]
    [problem] = validate_workflow(email("Hi", "{% if client.name %}unclosed"), connected)
    assert "endif" in problem
    [problem] = validate_workflow(email("Hi", "{{ client.name | shout }}", "cancelled"), connected)
    assert problem.startswith("workflow.triggers.cancelled[0]: the email template does not render: ")
    assert "shout" in problem
    # Every documented variable renders, and earlier steps' outputs may be named whatever the workflow produces.
    good = (
        "{{ appointment.name }} {{ appointment.starts_local }}-{{ appointment.ends_local }} "
        "{{ appointment.previous_starts_local }} {{ appointment.cancel_reason }} {{ host.names }} "
        "{{ ticket.number }} {{ opportunity.id }} {{ links.manage }} {{ outputs.schedule_entry_id }} "
        "{{ client.name }} {{ client.email }} {{ tenant.name }} {{ appointment.join_url }}"
    )
    assert validate_workflow(email("Booked: {{ appointment.name }}", f"<p>{good}</p>"), connected) == []


def test_a_classic_teams_type_hosted_from_the_psa_also_gets_the_microsoft_365_event_that_carries_the_meeting() -> None:
    teams_type = {"mode": "classic", "location": {"kind": "teams", "detail": ""}}
    spec, mode = workflow_for_type(teams_type, "psa", Connected(psa="connectwise", m365=True, email=True))
    assert mode == "classic"
    assert kinds(spec, Trigger.CLIENT_SCHEDULED) == ["create_schedule_entry", "create_m365_event", "send_email"]
    assert kinds(spec, Trigger.RESCHEDULED) == ["move_schedule_entry", "update_m365_event", "send_email"]
    assert kinds(spec, Trigger.CANCELLED) == ["remove_schedule_entry", "cancel_m365_event", "send_email"]
    # Without Microsoft 365 there is nothing to create it with; other locations stay on the PSA alone.
    spec, _mode = workflow_for_type(teams_type, "psa", Connected(psa="connectwise", email=True))
    assert kinds(spec, Trigger.CLIENT_SCHEDULED) == ["create_schedule_entry", "send_email"]
    phone_type = {"mode": "classic", "location": {"kind": "phone"}}
    spec, _mode = workflow_for_type(phone_type, "psa", Connected(psa="connectwise", m365=True, email=True))
    assert kinds(spec, Trigger.CLIENT_SCHEDULED) == ["create_schedule_entry", "send_email"]
    # An Outlook host gets the event once, not twice.
    spec, _mode = workflow_for_type(teams_type, "m365", Connected(m365=True))
    assert kinds(spec, Trigger.CLIENT_SCHEDULED) == ["create_m365_event"]


def test_a_teams_type_in_workflow_mode_must_create_the_microsoft_365_event() -> None:
    without = WorkflowSpec.model_validate({"triggers": {"client_scheduled": [{"action": "send_email"}]}})
    problem = teams_meeting_problem("discovery-call", without, "teams")
    assert problem is not None
    assert problem.startswith("'discovery-call' is a Teams meeting, but its workflow creates no Microsoft 365 event")
    assert "add {action: create_m365_event} to workflow.triggers.client_scheduled" in problem
    assert teams_meeting_problem("discovery-call", without, "phone") is None
    with_event = WorkflowSpec.model_validate(
        {"triggers": {"client_scheduled": [{"action": "create_m365_event"}, {"action": "send_email"}]}}
    )
    assert teams_meeting_problem("discovery-call", with_event, "teams") is None


def test_a_webhook_must_name_the_variable_holding_its_signing_secret() -> None:
    unsigned = WorkflowSpec.model_validate(
        {"triggers": {"client_scheduled": [{"action": "post_webhook", "url": "https://hooks.example.com/in"}]}}
    )
    [problem] = validate_workflow(unsigned, Connected())
    assert problem.startswith("workflow.triggers.client_scheduled[0]: a webhook must be signed: add secret_from_env")
    signed = WorkflowSpec.model_validate(
        {
            "triggers": {
                "client_scheduled": [
                    {"action": "post_webhook", "url": "https://hooks.example.com/in", "secret_from_env": "ACME_HOOK"}
                ]
            }
        }
    )
    assert validate_workflow(signed, Connected()) == []
    with pytest.raises(ValidationError, match="'secret_from_env' belongs to a post_webhook action"):
        ActionSpec(action=ActionKind.SEND_EMAIL, secret_from_env="ACME_HOOK")
    with pytest.raises(ValidationError):
        ActionSpec(action=ActionKind.POST_WEBHOOK, url="https://hooks.example.com/in", secret_from_env="lower-case")


def test_request_triggers_take_only_what_can_run_before_anything_is_booked() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "triggers": {
                "request_created": [{"action": "add_ticket_note"}, {"action": "create_schedule_entry"}],
                "request_sent": [{"action": "send_email", "recipients": "host"}],
                "no_response": {"after": "2 business days", "actions": [{"action": "create_m365_event"}]},
            }
        }
    )
    problems = validate_workflow(spec, Connected(psa="connectwise", m365=True, email=True))
    assert problems == [
        "workflow.triggers.request_created[1]: 'create_schedule_entry' cannot run on request_created: nothing is "
        "booked yet, so there is no time, host or booking to act on; request triggers take send_email, "
        "add_ticket_note, set_ticket_status and post_webhook",
        "workflow.triggers.request_sent[0]: a request_sent email goes to the client the request was sent to; "
        "'recipients: host' has no host yet",
        "workflow.triggers.no_response.actions[0]: 'create_m365_event' cannot run on no_response: nothing is booked "
        "yet, so there is no time, host or booking to act on; request triggers take send_email, add_ticket_note, "
        "set_ticket_status and post_webhook",
    ]


def test_a_request_email_template_is_checked_against_a_request_not_a_booking() -> None:
    def sent(body: str) -> WorkflowSpec:
        action = {"action": "send_email", "template": "custom", "subject": "Pick a time", "body": body}
        return WorkflowSpec.model_validate({"triggers": {"request_sent": [action]}})

    connected = Connected(email=True)
    assert validate_workflow(sent("<a href='{{ links.book }}'>Choose</a> {{ request.window }}"), connected) == []
    [problem] = validate_workflow(sent("See you {{ appointment.starts_local }}"), connected)
    assert problem.startswith("workflow.triggers.request_sent[0]: the email template does not render: ")
    assert "starts_local" in problem


def test_follow_up_options_belong_to_no_response_and_read_as_lengths_of_time() -> None:
    with pytest.raises(ValidationError, match="'after' applies only to no_response, not to client_scheduled"):
        WorkflowSpec.model_validate({"triggers": {"client_scheduled": {"after": "1 day", "actions": []}}})
    with pytest.raises(ValidationError, match="'offsets' apply only to before_appointment, not to no_response"):
        WorkflowSpec.model_validate({"triggers": {"no_response": {"offsets": ["1 day"]}}})
    with pytest.raises(ValidationError, match="'2 fortnights' is not a length of time: write '<n> business days'"):
        WorkflowSpec.model_validate({"triggers": {"no_response": {"after": "2 fortnights"}}})
    with pytest.raises(ValidationError, match="less than or equal to 10"):
        WorkflowSpec.model_validate({"triggers": {"no_response": {"after": "1 day", "repeat": 11}}})
    spec = WorkflowSpec.model_validate({"triggers": {"no_response": {"after": "36 HOURS", "repeat": 3}}})
    assert [str(span) for span in spec.follow_ups()] == ["36 hours", "3 days", "108 hours"]
    assert [str(span) for span in WorkflowSpec.model_validate({"triggers": {"no_response": {}}}).follow_ups()] == [
        "2 business days"
    ]
    assert WorkflowSpec.model_validate({"triggers": {"no_response": []}}).follow_ups() == []
    # An implicit follow-up email needs email connected; written actions are checked as usual.
    assert validate_workflow(WorkflowSpec.model_validate({"triggers": {"no_response": {}}}), Connected()) == [
        "workflow.triggers.no_response: a follow-up without actions is an email to the client, which needs an "
        "email connection (SMTP or Microsoft 365)"
    ]


def test_business_days_skip_weekends_and_holidays_and_keep_the_local_time() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    friday = datetime(2026, 3, 27, 15, 0, tzinfo=UTC)  # 16:00 in Berlin, before the clocks go forward
    one = FollowUpSpan(amount=timedelta(days=1), business_days=1)
    # Monday 16:00 in Berlin, which is now summer time (UTC+2).
    assert follow_up_due(friday, one, berlin, frozenset()) == datetime(2026, 3, 30, 14, 0, tzinfo=UTC)
    easter_monday = frozenset({date(2026, 4, 6)})
    thursday = datetime(2026, 4, 2, 8, 0, tzinfo=UTC)
    two = FollowUpSpan(amount=timedelta(days=2), business_days=2)
    # Friday 3 April, then (skipping the weekend and Easter Monday) Tuesday 7 April.
    assert follow_up_due(thursday, two, berlin, easter_monday) == datetime(2026, 4, 7, 8, 0, tzinfo=UTC)
    assert follow_up_due(thursday, FollowUpSpan(amount=timedelta(hours=30)), berlin, easter_monday) == datetime(
        2026, 4, 3, 14, 0, tzinfo=UTC
    )


def test_a_request_webhook_event_carries_the_request_but_not_its_link() -> None:
    occurred = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    event = build_event(
        "request_sent",
        {"kind": "request", "id": "r1", "book_url": "https://book.example/r/secret", "type_name": "Visit"},
        {"note_id": "5"},
        occurred,
    )
    assert event["type"] == "scheduling_request.request_sent"
    assert event["data"]["request"] == {"kind": "request", "id": "r1", "type_name": "Visit"}
    assert "booking" not in event["data"]
