"""The manager's "failures" card: workflow steps that ran out of retries, each with a Retry button."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from cards.elements import (
    Element,
    action_set,
    adaptive_card,
    container,
    execute,
    fit_to_budget,
    heading,
    more_line,
    subtle,
    text_block,
)
from cards.text import escape_markdown, format_moment
from cards.views import FailedStep, FailuresView

MAX_STEPS = 10
ERROR_LIMIT = 300

# Systems as their vendors spell them; anything else is shown as stored, escaped.
_SYSTEM_NAMES = {
    "connectwise": "ConnectWise PSA",
    "autotask": "Autotask",
    "halopsa": "HaloPSA",
    "graph": "Microsoft 365",
    "m365": "Microsoft 365",
    "email": "Email",
    "mail": "Email",
    "smtp": "Email",
    "teams": "Microsoft Teams",
    "webhook": "Webhook",
}


def render_failures(view: FailuresView) -> dict[str, Any]:
    """Heading, optional notice, up to 10 failed steps with Retry, and a Refresh button at the bottom."""
    top = [heading("Failed workflow steps"), subtle(f"Times in {view.time_zone.key}")]
    if view.notice:
        top.append(container([text_block(escape_markdown(view.notice, 500))], style="good", spacing="Medium"))
    refresh = execute("Refresh", "refreshFailures", {})
    if not view.steps:
        return adaptive_card(
            [*top, text_block("No failed steps. Everything went through.", spacing="Medium")], [refresh]
        )

    def build(items: Sequence[Element], hidden: int) -> Element:
        body = [*top, *items]
        if hidden:
            body.append(more_line(hidden, "retry these, then refresh to see the rest"))
        return adaptive_card(body, [refresh])

    return fit_to_budget(build, partial(_render_step, tz=view.time_zone), view.steps, MAX_STEPS)


def humanise_action(action: str) -> str:
    """A workflow action id as words: "create_ticket" -> "Create ticket"."""
    words = " ".join(action.replace("-", "_").split("_")).strip()
    return words[:1].upper() + words[1:] if words else "Unnamed step"


def system_name(target: str) -> str:
    """The target system as people call it: "connectwise" -> "ConnectWise PSA"."""
    return _SYSTEM_NAMES.get(target.lower(), target)


def _render_step(step: FailedStep, tz: ZoneInfo) -> Element:
    what = f"{escape_markdown(humanise_action(step.action), 80)} in {escape_markdown(system_name(step.target), 60)}"
    attempts = f"{step.attempts} attempt{'' if step.attempts == 1 else 's'}"
    return container(
        [
            text_block(what, weight="Bolder"),
            text_block(
                f"{escape_markdown(step.client_name, 120)} · {escape_markdown(step.type_name, 120)}", spacing="Small"
            ),
            subtle(f"{attempts} · failed {format_moment(step.failed_at, tz)}"),
            text_block(escape_markdown(step.last_error, ERROR_LIMIT), fontType="Monospace", size="Small"),
            action_set([execute("Retry", "retryStep", {"jobId": step.job_id})], spacing="Small"),
        ],
        separator=True,
        spacing="Medium",
    )
