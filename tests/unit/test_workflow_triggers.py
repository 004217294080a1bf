"""Classic mode, Workflow Mode validation and job planning, from the admin's and the runner's side."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workflows.triggers import (
    ActionKind,
    ActionSpec,
    Connected,
    Trigger,
    WorkflowSpec,
    classic_workflow,
    plan_jobs,
    teams_meeting_problem,
    validate_workflow,
    workflow_for_type,
)


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
