"""The OpenAPI document is the truth: schemathesis drives every documented operation of the real app with valid and
invalid data and every check it has, and finds no server error and no answer the document does not describe."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
from aiohttp.test_utils import TestClient
from schemathesis.engine import events, from_schema

from storage.database import Database
from storage.repositories import SqlAgentKeys
from tests.conftest import FixedClock, start_client

# Bounded so the run stays within a couple of minutes on two cores; the coverage phase adds its own boundary cases.
MAX_EXAMPLES = 30
SEED = 20261123


# A used or expired link answers 410 whatever the body says, as an unknown page answers 404: both are about the
# resource, not the data, so both are expected for valid and for invalid data.
POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "410", "429"]
NEGATIVE_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "410", "413", "415", "422", "428", "429"]
# Operations with rules no JSON Schema can state refuse some schema-valid requests; each answer is documented.
RULES_BEYOND_THE_SCHEMA: dict[str, tuple[list[str], str]] = {
    "/slots$": (["400"], "`end` before `start`, or more than 62 days"),
    "/bookings$": (
        ["400", "422"],
        "the questions each appointment type requires or knows; an Idempotency-Key reused for another body",
    ),
    "^/api/v1/scheduling-requests$": (["400"], "`window_end` not after `window_start`"),
    "^/api/v1/admin/steps/[{]step_id[}]/retry$": (["400"], "only a failed step of the key's tenant can be retried"),
    "^/m/[{]token[}]/reschedule$": (["400"], "a booking that already started can't be moved"),
}


def every_check() -> dict[str, Any]:
    """Every check schemathesis ships, switched on explicitly so a new default cannot silently drop one."""
    from schemathesis.checks import CHECKS

    checks: dict[str, Any] = {"enabled": True, **{name: {"enabled": True} for name in CHECKS.get_all_names()}}
    checks["positive_data_acceptance"] = {"enabled": True, "expected-statuses": POSITIVE_STATUSES}
    checks["negative_data_rejection"] = {"enabled": True, "expected-statuses": NEGATIVE_STATUSES}
    return checks


def schemathesis_config(base_url: str, key: str, request_tokens: list[str], manage_tokens: list[str]) -> Any:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "max-failures": 200,
            "base-url": base_url,
            "workers": 1,
            "request-timeout": 30,
            "auth": {"openapi": {"agentKey": {"bearer": key}}},
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "no-shrink": True,
                "database": "none",
                # Every text field refuses NUL (PostgreSQL cannot store it); the document says so once, in its
                # description, rather than as a pattern on every string. test_bad_input_matrix covers NUL bytes.
                "allow-x00": False,
            },
            "checks": every_check(),
            "phases": {
                "examples": {"enabled": True, "fill-missing": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True, "max-steps": 20},
            },
            "dictionaries": {
                "request-tokens": {"values": request_tokens},
                "manage-tokens": {"values": manage_tokens},
            },
            "operations": [
                *(
                    {
                        "include-path-regex": path,
                        "checks": {
                            "positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, *statuses]},
                        },
                    }
                    for path, (statuses, _rule) in RULES_BEYOND_THE_SCHEMA.items()
                ),
                {
                    "include-path-regex": "^/r/",
                    "parameters": {"path.token": {"dictionary": "request-tokens", "probability": 0.7}},
                },
                {
                    "include-path-regex": "^/m/",
                    "parameters": {"path.token": {"dictionary": "manage-tokens", "probability": 0.7}},
                },
            ],
        }
    )


def describe(recorder: Any) -> list[str]:
    lines = []
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.failure_info is None:
                continue
            failure = check.failure_info.failure
            response = recorder.find_response(case_id=case_id)
            status = response.status_code if response is not None else "no response"
            body = response.text[:300] if response is not None else ""
            lines.append(
                f"{recorder.label} [{check.name}] {failure.title}: {failure.message}\n"
                f"    -> {status} {body}\n    {check.failure_info.code_sample}"
            )
    return lines


def run_schemathesis(config: Any, schema_url: str) -> tuple[list[str], Counter[str], float]:
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(schema_url, config=config)
    failures: list[str] = []
    errors: list[str] = []
    scenarios: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    checks_run: Counter[str] = Counter()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            scenarios[f"{event.phase}:{event.status}"] += 1
            labels[event.recorder.label] += 1
            for checks in event.recorder.checks.values():
                checks_run.update(check.name for check in checks)
            failures.extend(describe(event.recorder))
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            failures.extend(f"after run: {failure.title}: {failure.message}" for failure in event.failures)
    print(dict(labels), dict(checks_run))  # noqa: T201
    return sorted(set(failures)) + errors, scenarios, time.monotonic() - started


async def make_tokens(client: TestClient, key: str) -> tuple[list[str], list[str]]:
    """Live scheduling-request links and manage links, so valid cases reach the handlers behind the tokens."""
    auth = {"Authorization": f"Bearer {key}"}
    request_tokens = []
    for ticket in ("T-1", "T-2", "T-3"):
        response = await client.post(
            "/api/v1/scheduling-requests", json={"appointment_type": "demo", "ticket": ticket}, headers=auth
        )
        assert response.status == 201, await response.text()
        request_tokens.append((await response.json())["url"].rsplit("/", 1)[1])
    manage_tokens = []
    for start in ("2026-11-24T15:00:00+00:00", "2026-11-24T16:00:00+00:00", "2026-11-25T15:00:00+00:00"):
        response = await client.post(
            "/book/acme/intro-call/bookings",
            json={
                "start": start,
                "name": "Dana Doe",
                "email": "dana@example.com",
                "time_zone": "America/New_York",
                "answers": {"company": "Doe Ltd"},
            },
        )
        assert response.status == 201, await response.text()
        manage_tokens.append((await response.json())["manage_url"].rsplit("/", 1)[1])
    return request_tokens, manage_tokens


async def test_every_documented_operation_conforms_to_the_openapi_document(
    tenant_db: Database, tmp_path: Path, clock: FixedClock
) -> None:
    client = await start_client(
        tenant_db, tmp_path, clock, rate_limit_per_ip_per_minute=10**9, rate_limit_per_page_per_minute=10**9
    )
    try:
        key = await SqlAgentKeys(tenant_db).create_key("acme", "ci", "admin")
        request_tokens, manage_tokens = await make_tokens(client, key)
        base_url = str(client.make_url("")).rstrip("/")
        config = schemathesis_config(base_url, key, request_tokens, manage_tokens)
        failures, scenarios, elapsed = await asyncio.to_thread(run_schemathesis, config, f"{base_url}/api/openapi.json")
    finally:
        await client.close()
    print(f"schemathesis {schemathesis.__version__}: {dict(scenarios)} in {elapsed:.1f}s")  # noqa: T201
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)
