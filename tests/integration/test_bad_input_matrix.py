"""Every bad input a careless client or an attacker was seen sending gets a specific 4xx, on SQLite and PostgreSQL.

Each case is one request as it arrives over HTTP; the answer must be a 4xx with a message a person understands
(JSON routes answer JSON), never a 5xx, and nothing may have been written.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from storage.database import Database
from storage.repositories import SqlAgentKeys
from tests.integration.test_booking_api import booking_body, count_bookings

PAGE = "/book/acme/intro-call"
GOOD_START = "2026-11-24T15:00:00+00:00"

Case = Callable[[TestClient, dict[str, str]], Awaitable[Any]]


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def _post_json_text(client: TestClient, path: str, text: str, **headers: str) -> Any:
    return await client.post(path, data=text.encode(), headers={"Content-Type": "application/json", **headers})


CASES: dict[str, Case] = {
    "a time zone that names a tzdata folder on the page": lambda c, _k: c.get(PAGE, params={"tz": "America"}),
    "a time zone that names a tzdata folder on slots": lambda c, _k: c.get(
        f"{PAGE}/slots", params={"start": "2026-11-24", "end": "2026-11-24", "tz": "America"}
    ),
    "a time zone that climbs out of tzdata": lambda c, _k: c.get(PAGE, params={"tz": "../../etc/passwd"}),
    "a booking in a tzdata folder's zone": lambda c, _k: c.post(
        f"{PAGE}/bookings", json=booking_body(GOOD_START, time_zone="America")
    ),
    "the year 9999 as the page's date": lambda c, _k: c.get(PAGE, params={"date": "9999-12-31"}),
    "the year 9999 as the slots' range": lambda c, _k: c.get(
        f"{PAGE}/slots", params={"start": "9999-12-30", "end": "9999-12-31"}
    ),
    "the year 1 as the slots' start": lambda c, _k: c.get(f"{PAGE}/slots", params={"start": "0001-01-01"}),
    "the year 1 as the page's chosen start": lambda c, _k: c.get(PAGE, params={"start": "0001-01-01T00:00:00+00:00"}),
    "a booking at the start of year 1": lambda c, _k: c.post(
        f"{PAGE}/bookings", json=booking_body("0001-01-01T00:00:00+00:00")
    ),
    "a booking at the end of year 9999": lambda c, _k: c.post(
        f"{PAGE}/bookings", json=booking_body("9999-12-31T23:59:59+00:00")
    ),
    "a NUL byte in the name": lambda c, _k: c.post(f"{PAGE}/bookings", json=booking_body(GOOD_START, name="Dana\x00")),
    "a NUL byte in the notes": lambda c, _k: c.post(
        f"{PAGE}/bookings", json=booking_body(GOOD_START, notes="hello\x00world")
    ),
    "a NUL byte in an answer": lambda c, _k: c.post(
        f"{PAGE}/bookings", json=booking_body(GOOD_START, answers={"company": "Acme\x00"})
    ),
    "a lone surrogate in the name": lambda c, _k: _post_json_text(
        c, f"{PAGE}/bookings", json.dumps(booking_body(GOOD_START)).replace('"Dana Client"', '"Dana \\udc80"')
    ),
    "a non-UTF-8 Idempotency-Key": lambda c, _k: c.post(
        f"{PAGE}/bookings",
        data=json.dumps(booking_body(GOOD_START)).encode(),
        headers={"Content-Type": "application/json", "Idempotency-Key": b"\xff\xfekey".decode("latin-1")},
    ),
    "JSON nested 5,000 levels deep": lambda c, _k: _post_json_text(c, f"{PAGE}/bookings", _nested(5000)),
    "multipart/form-data without its boundary": lambda c, _k: c.post(
        f"{PAGE}/bookings", data=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}
    ),
    "a NUL byte in a query": lambda c, _k: c.get(f"{PAGE}/slots?start=2026-11-24%00&tz=UTC"),
    "a NUL byte in the time zone query": lambda c, _k: c.get(f"{PAGE}?tz=Europe%2FLondon%00"),
    "a step id beyond 32 bits": lambda c, k: c.post("/api/v1/admin/steps/99999999999/retry", headers=k),
    "a negative step id": lambda c, k: c.post("/api/v1/admin/steps/-1/retry", headers=k),
    "a NUL byte in a scheduling request's ticket": lambda c, k: c.post(
        "/api/v1/scheduling-requests",
        json={"type": "intro-call", "ticket": "T\x001001", "client_email": "x@client.test"},
        headers=k,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_each_bad_input_gets_a_specific_4xx_and_writes_nothing(
    client: TestClient, tenant_db: Database, case: str
) -> None:
    key = await SqlAgentKeys(tenant_db).create_key("acme", "matrix", "admin")
    response = await CASES[case](client, {"Authorization": f"Bearer {key}"})
    text = await response.text()
    assert 400 <= response.status < 500, (case, response.status, text[:500])
    if response.content_type == "application/json":
        message = json.loads(text)["error"]["message"]
        assert message
        assert "Traceback" not in message
    assert await count_bookings(tenant_db) == 0
