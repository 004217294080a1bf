"""Fuzzing the public API with Hypothesis: whatever a client sends, the answer is never a 5xx."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "start": st.one_of(st.text(max_size=40), st.just("2026-11-24T15:00:00+00:00"), JSON),
        "name": st.one_of(st.text(max_size=300), JSON),
        "email": st.one_of(st.emails(), st.text(max_size=40), JSON),
        "time_zone": st.one_of(st.sampled_from(["UTC", "Europe/London", "Nope/Zone", "", "../x"]), JSON),
        "answers": st.one_of(st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=3), JSON),
        "guests": st.one_of(st.lists(st.text(max_size=30), max_size=12), JSON),
        "notes": st.one_of(st.text(max_size=50), JSON),
        "reason": st.one_of(st.text(max_size=50), JSON),
    },
)
PATHS = st.sampled_from(
    [
        "/book/acme/intro-call/bookings",
        "/book/acme/demo/bookings",
        "/book/acme/nope/bookings",
        "/r/garbage-token/bookings",
        "/m/garbage-token/reschedule",
        "/m/garbage-token/cancel",
        "/api/v1/scheduling-requests",
    ]
)
QUERY = st.dictionaries(
    st.sampled_from(["start", "end", "tz", "date"]),
    st.one_of(st.text(max_size=25), st.sampled_from(["2026-11-24", "2026-02-30", "UTC", "Asia/Kolkata"])),
    max_size=4,
)

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(path=PATHS, body=st.one_of(FIELDS, JSON), raw=st.booleans())
async def test_no_booking_post_answers_with_a_5xx(client: TestClient, path: str, body: Any, raw: bool) -> None:
    payload = json.dumps(body).encode()
    if raw:
        payload = payload[: max(1, len(payload) // 2)]
    response = await client.post(path, data=payload, headers={"Content-Type": "application/json"})
    assert response.status < 500, (path, body, await response.text())


@FUZZ
@given(
    path=st.sampled_from(
        ["/book/acme/intro-call/slots", "/book/acme/intro-call", "/r/x/slots", "/u/acme/alice", "/m/x"]
    ),
    query=QUERY,
)
async def test_no_page_or_slot_query_answers_with_a_5xx(client: TestClient, path: str, query: dict[str, str]) -> None:
    response = await client.get(path, params=query)
    assert response.status < 500, (path, query, await response.text())
