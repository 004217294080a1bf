"""The OpenAPI 3.1 document for the public booking API and the agent endpoints.

The document is the truth: tests/integration/test_openapi_conformance.py drives every operation with schemathesis
(valid and invalid data, every check) and expects no server error and no answer the document does not describe. So
every constraint the handlers enforce is written here (lengths, patterns, enums, required fields), and every status
an operation can answer is listed with its body.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from zoneinfo import available_timezones

STEP_STATES = ("waiting", "available", "running", "completed", "retryable", "failed", "blocked", "cancelled")

_ERROR = {"$ref": "#/components/schemas/Error"}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
# Years 1970 to 2999 (scheduling.service.EARLIEST_DAY and LATEST_DAY); days 01 to 31, the format checks the month.
_YEAR_MONTH_DAY = r"(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
# What pages.routes.parse_instant reads: an ISO-8601 time with seconds and a UTC offset (or Z), at most 40 characters.
_INSTANT_PATTERN = (
    rf"^{_YEAR_MONTH_DAY}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{{1,6}})?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])$"
)
# The same email check as scheduling.service.validate_email.
_EMAIL_PATTERN = '^[^@\\s\\x00-\\x1f<>"]+@[^@\\s\\x00-\\x1f<>"]+\\.[^@\\s\\x00-\\x1f<>".]+$'
_EMAIL = {"type": "string", "maxLength": 254, "pattern": _EMAIL_PATTERN, "example": "dana@client.example"}
_INSTANT = {
    "type": "string",
    "format": "date-time",
    "maxLength": 40,
    "pattern": _INSTANT_PATTERN,
    "example": "2026-11-24T15:00:00+00:00",
}
_DAY = {"type": "string", "format": "date", "pattern": f"^{_YEAR_MONTH_DAY}$", "example": "2026-11-24"}

_STATUS_TEXT = {
    400: "Invalid input; `error.field` names what to fix. Also for rules the schema cannot state, such as an end "
    "before its start or a question the appointment type requires",
    401: "Missing or invalid agent API key",
    403: "This key's role may not do this",
    404: "Unknown tenant, page, booking, step or link",
    409: "The slot is taken (`error.next_free` lists alternatives) or the booking changed since the version you "
    "named (`error.booking` is its current state)",
    410: "The link expired or was already used",
    413: "Body too large (at most 64 KiB)",
    415: "Send the body as JSON (Content-Type: application/json)",
    422: "The Idempotency-Key was already used for a different request, client or page",
    429: "Rate limited; see Retry-After",
    503: "Temporarily unavailable (database or rate limiter); nothing was changed. See Retry-After",
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for code in codes:
        answer = _json(_ERROR, _STATUS_TEXT[code])
        if code in (429, 503):
            answer["headers"] = _RETRY_AFTER
        answers[str(code)] = answer
    return answers


_BOOKING_FILTERS: list[dict[str, Any]] = [
    {"name": name, "in": "query", "description": text, "schema": {"type": "string", "maxLength": 64}}
    for name, text in (
        ("host", "Only bookings this user (slug) hosts"),
        ("team", "Only bookings a member of this team (slug) hosts"),
        ("type", "Only bookings of this appointment type (slug)"),
    )
] + [
    {
        "name": "from",
        "in": "query",
        "description": "Starts at or after",
        "schema": {"type": "string", "format": "date-time"},
    },
    {"name": "to", "in": "query", "description": "Starts before", "schema": {"type": "string", "format": "date-time"}},
    {"name": "state", "in": "query", "schema": {"type": "string", "enum": ["confirmed", "cancelled"]}},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000000, "default": 0}},
]
_NAMED = {"type": "object", "properties": {"slug": {"type": ["string", "null"]}, "name": {"type": ["string", "null"]}}}
_ADMIN_BOOKINGS: dict[str, Any] = {
    "get": {
        "operationId": "listBookings",
        "summary": "Bookings of the key's tenant, filtered and a page at a time (oldest start first)",
        "description": "An unknown host, team or type slug answers 400 naming it.",
        "security": [{"agentKey": []}],
        "parameters": _BOOKING_FILTERS,
        "responses": {
            "200": _json(
                {
                    "type": "object",
                    "required": ["bookings", "total", "limit", "offset", "next_offset"],
                    "properties": {
                        "bookings": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["id", "state", "starts_at", "ends_at", "type", "hosts", "client"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "state": {"type": "string", "enum": ["confirmed", "cancelled"]},
                                    "starts_at": {"type": "string", "format": "date-time"},
                                    "ends_at": {"type": "string", "format": "date-time"},
                                    "type": _NAMED,
                                    "hosts": {"type": "array", "items": _NAMED},
                                    "client": {"type": "object"},
                                    "guests": {"type": "array", "items": {"type": "string"}},
                                    "answers": {"type": "object"},
                                    "cancel_reason": {"type": ["string", "null"]},
                                    "version": {"type": "integer"},
                                    "created_at": {"type": "string", "format": "date-time"},
                                },
                            },
                        },
                        "total": {"type": "integer"},
                        "limit": {"type": "integer"},
                        "offset": {"type": "integer"},
                        "next_offset": {"type": ["integer", "null"]},
                    },
                },
                "Bookings",
            ),
            **_errors(400, 401, 503),
        },
    }
}


def _json_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


@cache
def _time_zones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def _page_paths(prefix: str, params: list[dict[str, Any]], label: str, link_errors: tuple[int, ...]) -> dict[str, Any]:
    return {
        f"{prefix}/slots": {
            "get": {
                "operationId": f"list{label.title().replace(' ', '')}Slots",
                "summary": f"Bookable slots of a {label}",
                "description": "Days `start` to `end` inclusive (at most 62 days; `end` not before `start`), "
                "in `tz` (default: the host's zone).",
                "parameters": [
                    *params,
                    {"name": "start", "in": "query", "schema": _DAY},
                    {"name": "end", "in": "query", "schema": _DAY},
                    {"name": "tz", "in": "query", "schema": {"$ref": "#/components/schemas/TimeZoneOrEmpty"}},
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Slots"}, "Slots"),
                    **_errors(400, 404, *link_errors, 503),
                },
            }
        },
        f"{prefix}/bookings": {
            "post": {
                "operationId": f"book{label.title().replace(' ', '')}",
                "summary": f"Book a slot of a {label}",
                "description": "The booking keeps the client's language, negotiated from Accept-Language (English "
                "or German, else the tenant's default, else English): its emails and reminders are written in it.",
                "parameters": [
                    *params,
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "description": "Visible ASCII; an empty value counts as none",
                        "schema": {"type": "string", "maxLength": 200, "pattern": "^[!-~]*$"},
                    },
                ],
                "requestBody": _json_body({"$ref": "#/components/schemas/BookingRequest"}),
                "responses": {
                    "201": _json({"$ref": "#/components/schemas/Booking"}, "Booked"),
                    "200": _json(
                        {"$ref": "#/components/schemas/Booking"},
                        "Replay of an earlier request with the same Idempotency-Key",
                    ),
                    **_errors(400, 404, 409, *link_errors, 413, 415, 422, 429, 503),
                },
            }
        },
    }


def _path_param(name: str, example: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1, **schema},
        "example": example,
    }


def openapi_document(base_url: str) -> dict[str, Any]:
    tenant = _path_param("tenant", "acme", "The tenant's slug")
    kind = _path_param("type", "demo", "The appointment type's slug")
    token = _path_param("token", "not-a-real-token", "The signed token from the link")
    manage_body_version = {
        "description": 'The booking version you last saw (or send `If-Match: "3"`); a stale one gets 409',
        "anyOf": [{"type": "integer"}, {"type": "string", "pattern": '^(W/)?"?[0-9]{0,9}"?$'}, {"type": "null"}],
    }
    paths: dict[str, Any] = {
        **_page_paths("/book/{tenant}/{type}", [tenant, kind], "shareable URL", ()),
        **_page_paths("/r/{token}", [token], "scheduling request link", (410,)),
        "/book/{tenant}/{type}/explain": {
            "get": {
                "operationId": "explainTime",
                "summary": "Why a time is or is not offered (agents of the page's tenant only)",
                "security": [{"agentKey": []}],
                "parameters": [tenant, kind, {"name": "start", "in": "query", "required": True, "schema": _INSTANT}],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Explanation"}, "Reasons"),
                    **_errors(400, 401, 404, 503),
                },
            }
        },
        "/m/{token}/reschedule": {
            "post": {
                "operationId": "rescheduleBooking",
                "summary": "Move a booking (signed manage link)",
                "parameters": [token],
                "requestBody": _json_body(
                    {
                        "type": "object",
                        "required": ["start"],
                        "properties": {
                            "start": _INSTANT,
                            "time_zone": {"$ref": "#/components/schemas/TimeZoneOrEmpty"},
                            "version": manage_body_version,
                        },
                    }
                ),
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Booking"}, "Moved"),
                    **_errors(400, 404, 409, 410, 413, 415, 429, 503),
                },
            }
        },
        "/m/{token}/cancel": {
            "post": {
                "operationId": "cancelBooking",
                "summary": "Cancel a booking (signed manage link)",
                "parameters": [token],
                "requestBody": _json_body(
                    {
                        "type": "object",
                        "properties": {
                            "reason": {"type": ["string", "null"], "maxLength": 2000},
                            "version": manage_body_version,
                        },
                    }
                ),
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Booking"}, "Cancelled"),
                    **_errors(400, 404, 409, 410, 413, 415, 429, 503),
                },
            }
        },
        "/api/v1/scheduling-requests": {
            "post": {
                "operationId": "createSchedulingRequest",
                "summary": "Create a scheduling link, optionally ticket-bound and multi-use (agents only)",
                "description": "Without `ticket` the link is a one-off link with the given overrides. "
                "`ticket` names an existing PSA ticket by its id or by the number the PSA shows "
                "(Autotask: id 12345 or number T20261124.0001; ConnectWise and HaloPSA show the id). It is looked "
                "up in the tenant's PSA now: a booking through the link then lands on that ticket (schedule entry, "
                "note, status) and no ticket is created. A tenant without a PSA keeps `ticket` as a label "
                "(`ticket_bound` false, with a `notice`).",
                "security": [{"agentKey": []}],
                "requestBody": _json_body({"$ref": "#/components/schemas/SchedulingRequest"}),
                "responses": {
                    "201": _json(
                        {
                            "type": "object",
                            "required": [
                                "id",
                                "url",
                                "ticket",
                                "ticket_id",
                                "ticket_number",
                                "ticket_bound",
                                "single_use",
                                "guests",
                                "expires_at",
                            ],
                            "properties": {
                                "id": {"type": "string"},
                                "url": {"type": "string", "format": "uri"},
                                "single_use": {"type": "boolean"},
                                "guests": {"type": "array", "items": {"type": "string"}},
                                "ticket": {
                                    "type": ["string", "null"],
                                    "description": "As people see it: the PSA's number, or the label; null: none",
                                },
                                "ticket_id": {"type": ["string", "null"], "description": "The PSA's ticket id"},
                                "ticket_number": {
                                    "type": ["string", "null"],
                                    "description": "The number the PSA displays for the ticket",
                                },
                                "ticket_bound": {
                                    "type": "boolean",
                                    "description": "True when the ticket was found in the tenant's PSA",
                                },
                                "notice": {"type": "string", "description": "Why the ticket is only a label"},
                                "expires_at": {"type": "string", "format": "date-time"},
                                "sent_to": {
                                    "anyOf": [
                                        {
                                            "type": "object",
                                            "required": ["name", "email"],
                                            "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
                                        },
                                        {"type": "null"},
                                    ],
                                    "description": "Whom Slotwise emailed the link to (`send: true`), else null",
                                },
                            },
                        },
                        "Created",
                    ),
                    **_errors(400, 401, 404, 413, 415),
                    "422": _json(
                        _ERROR,
                        "The tenant's PSA has no such ticket (`error.code` `unknown_ticket`, `error.field` `ticket`)",
                    ),
                    "503": {
                        **_json(
                            _ERROR,
                            "Temporarily unavailable: the database, the rate limiter, or the tenant's PSA (down, "
                            "throttling, or refusing Slotwise's credentials) could not look up the ticket; nothing "
                            "was changed. See Retry-After",
                        ),
                        "headers": _RETRY_AFTER,
                    },
                },
            }
        },
        "/api/v1/admin/bookings": _ADMIN_BOOKINGS,
        "/api/v1/admin/steps": {
            "get": {
                "operationId": "listSteps",
                "summary": "Workflow steps of the key's tenant: state, attempts, last error, external ids",
                "security": [{"agentKey": []}],
                "parameters": [
                    {
                        "name": "booking_id",
                        "in": "query",
                        "description": "Only this booking's steps; empty means all",
                        "schema": {"type": "string", "maxLength": 40},
                    },
                    {"name": "state", "in": "query", "schema": {"type": "string", "enum": list(STEP_STATES)}},
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["steps"],
                            "properties": {"steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}}},
                        },
                        "Steps",
                    ),
                    **_errors(400, 401, 503),
                },
            }
        },
        "/api/v1/admin/steps/{step_id}/retry": {
            "post": {
                "operationId": "retryStep",
                "summary": "Retry a failed step (the key's tenant only)",
                "description": "A step that is not failed, or not of the key's tenant, answers 400.",
                "security": [{"agentKey": []}],
                "parameters": [
                    {
                        "name": "step_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                        "example": 1,
                    }
                ],
                "responses": {
                    "202": _json(
                        {
                            "type": "object",
                            "required": ["retried"],
                            "properties": {"retried": {"type": "integer"}},
                        },
                        "Queued again",
                    ),
                    **_errors(400, 401, 403, 404, 503),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "liveness",
                "summary": "Liveness",
                "responses": {
                    "200": _json(
                        {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}, "Alive"
                    )
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readiness",
                "summary": "Readiness (database reachable)",
                "responses": {
                    "200": _json(
                        {"type": "object", "required": ["status"], "properties": {"status": {"const": "ready"}}},
                        "Ready",
                    ),
                    "503": {
                        **_json(
                            {
                                "type": "object",
                                "required": ["status"],
                                "properties": {"status": {"const": "unavailable"}, "database": {"type": "string"}},
                            },
                            "Not ready",
                        ),
                        "headers": _RETRY_AFTER,
                    },
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapiDocument",
                "summary": "This document",
                "responses": {
                    "200": _json(
                        {"type": "object", "required": ["openapi", "info", "paths"]}, "The OpenAPI 3.1 document"
                    )
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Slotwise",
            "version": "0.1.0",
            "description": "Booking pages and scheduling API. Text anywhere in a request (path, query, header, "
            "body keys and values) must not contain NUL characters; such a request gets 400.",
        },
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "agentKey": {"type": "http", "scheme": "bearer", "description": "Tenant-scoped agent API key"}
            },
            "schemas": _schemas(),
        },
    }


def _schemas() -> dict[str, Any]:
    slot = {
        "type": "object",
        "required": ["start", "end"],
        "properties": {
            "start": {"type": "string", "format": "date-time"},
            "end": {"type": "string", "format": "date-time"},
        },
    }
    booking = {
        "type": "object",
        "required": [
            "id",
            "status",
            "start",
            "end",
            "time_zone",
            "appointment_type",
            "location",
            "hosts",
            "client",
            "guests",
            "manage_url",
            "version",
        ],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["confirmed", "cancelled"]},
            "start": {"type": "string", "format": "date-time"},
            "end": {"type": "string", "format": "date-time"},
            "time_zone": {"type": "string"},
            "appointment_type": {
                "type": "object",
                "required": ["slug", "name"],
                "properties": {"slug": {"type": "string"}, "name": {"type": "string"}},
            },
            "location": {
                "type": "object",
                "required": ["kind", "description"],
                "properties": {
                    "kind": {"type": "string", "enum": ["teams", "phone", "onsite", "custom"]},
                    "description": {"type": "string"},
                },
            },
            "hosts": {
                "type": "array",
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
            },
            "client": {
                "type": "object",
                "required": ["name", "email"],
                "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
            },
            "guests": {"type": "array", "items": {"type": "string"}},
            "manage_url": {"type": "string", "format": "uri"},
            "version": {"type": "integer"},
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "minLength": 1},
                        "message": {"type": "string", "minLength": 1},
                        "field": {"type": "string"},
                        "next_free": {"type": "array", "items": {"type": "string", "format": "date-time"}},
                        "booking": {"$ref": "#/components/schemas/Booking"},
                    },
                }
            },
        },
        "TimeZone": {"type": "string", "enum": list(_time_zones()), "example": "Europe/London"},
        "TimeZoneOrEmpty": {
            "description": "An IANA time zone; empty (or null in a body) means the default zone",
            "anyOf": [{"$ref": "#/components/schemas/TimeZone"}, {"const": ""}],
        },
        "Slots": {
            "type": "object",
            "required": ["time_zone", "slots"],
            "properties": {"time_zone": {"type": "string"}, "slots": {"type": "array", "items": slot}},
        },
        "BookingRequest": {
            "type": "object",
            "required": ["start", "name", "email"],
            "properties": {
                "start": _INSTANT,
                "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
                "email": _EMAIL,
                "time_zone": {"anyOf": [{"$ref": "#/components/schemas/TimeZoneOrEmpty"}, {"type": "null"}]},
                "answers": {
                    "description": "Answers keyed by question; the appointment type decides which are required",
                    "type": ["object", "null"],
                    "additionalProperties": {"type": "string"},
                },
                "guests": {"type": ["array", "null"], "items": _EMAIL, "maxItems": 10},
                "notes": {"type": ["string", "null"], "maxLength": 2000},
            },
        },
        "Booking": booking,
        "Explanation": {
            "type": "object",
            "required": ["start", "offered", "reasons"],
            "properties": {
                "start": {"type": "string", "format": "date-time"},
                "offered": {"type": "boolean"},
                "reasons": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["code", "host", "message"],
                        "properties": {
                            "code": {"type": "string"},
                            "host": {"type": "string"},
                            "message": {"type": "string"},
                        },
                    },
                },
            },
        },
        "Step": {
            "type": "object",
            "required": ["id", "run", "step", "action", "state", "attempts", "max_attempts", "external_ids"],
            "properties": {
                "id": {"type": "integer"},
                "booking_id": {"type": ["string", "null"]},
                "run": {"type": "string"},
                "step": {"type": "integer"},
                "action": {"type": "string"},
                "state": {"type": "string", "enum": list(STEP_STATES)},
                "attempts": {"type": "integer"},
                "max_attempts": {"type": "integer"},
                "next_attempt_at": {"type": "string", "format": "date-time"},
                "last_error": {"type": ["string", "null"]},
                "external_ids": {"type": "object"},
                "updated_at": {"type": "string", "format": "date-time"},
                "depends_on": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["run", "step", "action", "kind", "uses"],
                        "properties": {
                            "run": {"type": "string"},
                            "step": {"type": "integer"},
                            "action": {"type": "string"},
                            "kind": {"type": "string", "enum": ["hard", "soft"]},
                            "uses": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                },
                "blocked_by": {"type": ["string", "null"]},
            },
        },
        "SchedulingRequest": {
            "type": "object",
            "required": ["appointment_type"],
            "properties": {
                "appointment_type": {"type": "string", "minLength": 1, "example": "demo"},
                "ticket": {
                    "type": ["string", "null"],
                    "maxLength": 64,
                    "description": "The PSA ticket's id, or the number the PSA shows for it. Left out (or empty): "
                    "a link without a ticket; ticket steps of the request's triggers are then skipped, and a "
                    "booking's workflow runs as for any booking.",
                    "example": "T20261124.0001",
                },
                "duration_minutes": {
                    "type": ["integer", "null"],
                    "minimum": 5,
                    "maximum": 480,
                    "description": "Overrides the type's duration; a whole multiple of the type's slot increment "
                    "(a 400 otherwise). The slots offered through the link have this length.",
                },
                "window_start": {"anyOf": [_INSTANT, {"const": ""}, {"type": "null"}]},
                "window_end": {"anyOf": [_INSTANT, {"const": ""}, {"type": "null"}]},
                "window_days": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": 366,
                    "description": "The window ends this many days after `window_start` (or now); not with "
                    "`window_end`. Any window is clipped to the type's maximum scheduling window.",
                },
                "single_use": {
                    "type": ["boolean", "null"],
                    "description": "Default true: the link books once, then says it was used. false: it books "
                    "any number of times until it expires, each booking independent.",
                },
                "guests": {
                    "type": ["array", "null"],
                    "items": _EMAIL,
                    "maxItems": 10,
                    "description": "Invited to every booking through the link (and its emails)",
                },
                "send": {
                    "type": ["boolean", "null"],
                    "description": "true: Slotwise emails the link and the window to `recipient` now (the "
                    "`request_sent` trigger runs, and `no_response` follow-ups are planned when the workflow has "
                    "them). Needs an email connection. Default false: the agent shares the link.",
                },
                "recipient": {
                    "anyOf": [
                        _EMAIL,
                        {
                            "type": "object",
                            "required": ["email"],
                            "properties": {"email": _EMAIL, "name": {"type": ["string", "null"], "maxLength": 200}},
                        },
                        {"type": "null"},
                    ],
                    "description": "With `send: true`: the client to email the link to (an address, or "
                    "{email, name}); left out, the ticket's contact in the PSA (a 400 when it has none).",
                },
            },
        },
    }
