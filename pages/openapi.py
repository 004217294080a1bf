"""The OpenAPI 3.1 document for the public booking API and the agent endpoints."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
STEP_STATES = ("waiting", "available", "running", "completed", "retryable", "failed", "cancelled")
STEPS_SCHEMA = {
    "type": "object",
    "properties": {"steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}}},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid input; `error.field` names what to fix",
        401: "Missing or invalid agent API key",
        404: "Unknown page, booking or link",
        409: "The slot is taken; `error.next_free` lists alternatives",
        410: "The link expired or was already used",
        413: "Body too large",
        429: "Rate limited; see Retry-After",
        503: "Temporarily refusing writes (rate limiter unavailable)",
    }
    return {str(code): _json(_ERROR, text[code]) for code in codes}


def _page_paths(prefix: str, params: list[dict[str, Any]], label: str) -> dict[str, Any]:
    return {
        f"{prefix}/slots": {
            "get": {
                "summary": f"Bookable slots of a {label}",
                "parameters": [
                    *params,
                    {"name": "start", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "end", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "tz", "in": "query", "schema": {"type": "string", "example": "Europe/London"}},
                ],
                "responses": {"200": _json({"$ref": "#/components/schemas/Slots"}, "Slots"), **_errors(400, 404, 410)},
            }
        },
        f"{prefix}/bookings": {
            "post": {
                "summary": f"Book a slot of a {label}",
                "parameters": [
                    *params,
                    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 200}},
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BookingRequest"}}},
                },
                "responses": {
                    "201": _json({"$ref": "#/components/schemas/Booking"}, "Booked"),
                    "200": _json(
                        {"$ref": "#/components/schemas/Booking"},
                        "Replay of an earlier request with the same Idempotency-Key",
                    ),
                    **_errors(400, 404, 409, 410, 413, 429, 503),
                },
            }
        },
    }


def openapi_document(base_url: str) -> dict[str, Any]:
    tenant = {"name": "tenant", "in": "path", "required": True, "schema": {"type": "string"}}
    kind = {"name": "type", "in": "path", "required": True, "schema": {"type": "string"}}
    token = {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
    paths: dict[str, Any] = {
        **_page_paths("/book/{tenant}/{type}", [tenant, kind], "shareable URL"),
        **_page_paths("/r/{token}", [token], "scheduling request link"),
        "/book/{tenant}/{type}/explain": {
            "get": {
                "summary": "Why a time is or is not offered (agents only)",
                "security": [{"agentKey": []}],
                "parameters": [
                    tenant,
                    kind,
                    {"name": "start", "in": "query", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Explanation"}, "Reasons"),
                    **_errors(400, 401, 404),
                },
            }
        },
        "/m/{token}/reschedule": {
            "post": {
                "summary": "Move a booking (signed manage link)",
                "parameters": [token],
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["start"],
                                "properties": {
                                    "start": {"type": "string", "format": "date-time"},
                                    "time_zone": {"type": "string"},
                                },
                            }
                        }
                    }
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Booking"}, "Moved"),
                    **_errors(400, 404, 409, 410, 429),
                },
            }
        },
        "/m/{token}/cancel": {
            "post": {
                "summary": "Cancel a booking (signed manage link)",
                "parameters": [token],
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"reason": {"type": "string", "maxLength": 2000}},
                            }
                        }
                    }
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Booking"}, "Cancelled"),
                    **_errors(400, 404, 410, 429),
                },
            }
        },
        "/api/v1/scheduling-requests": {
            "post": {
                "summary": "Create a one-time, ticket-bound scheduling link (agents only)",
                "security": [{"agentKey": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SchedulingRequest"}}},
                },
                "responses": {
                    "201": _json(
                        {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "url": {"type": "string"},
                                "ticket": {"type": "string"},
                                "expires_at": {"type": "string"},
                            },
                        },
                        "Created",
                    ),
                    **_errors(400, 401, 404),
                },
            }
        },
        "/api/v1/admin/steps": {
            "get": {
                "summary": "Workflow steps of the key's tenant: state, attempts, last error, external ids",
                "security": [{"agentKey": []}],
                "parameters": [
                    {"name": "booking_id", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": [
                                "waiting",
                                "available",
                                "running",
                                "completed",
                                "retryable",
                                "failed",
                                "cancelled",
                            ],
                        },
                    },
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}}},
                        },
                        "Steps",
                    ),
                    **_errors(400, 401),
                },
            }
        },
        "/api/v1/admin/steps/{step_id}/retry": {
            "post": {
                "summary": "Retry a failed step (the key's tenant only)",
                "security": [{"agentKey": []}],
                "parameters": [{"name": "step_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"202": {"description": "Queued again"}, **_errors(400, 401, 404)},
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Alive"}}}},
        "/readyz": {
            "get": {
                "summary": "Readiness (database reachable)",
                "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
            }
        },
    }
    slot = {
        "type": "object",
        "properties": {
            "start": {"type": "string", "format": "date-time"},
            "end": {"type": "string", "format": "date-time"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Slotwise", "version": "0.1.0", "description": "Booking pages and scheduling API."},
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "agentKey": {"type": "http", "scheme": "bearer", "description": "Tenant-scoped agent API key"}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "field": {"type": "string"},
                                "next_free": {"type": "array", "items": {"type": "string"}},
                            },
                        }
                    },
                },
                "Slots": {
                    "type": "object",
                    "properties": {"time_zone": {"type": "string"}, "slots": {"type": "array", "items": slot}},
                },
                "BookingRequest": {
                    "type": "object",
                    "required": ["start", "name", "email", "time_zone"],
                    "properties": {
                        "start": {"type": "string", "format": "date-time"},
                        "name": {"type": "string", "maxLength": 200},
                        "email": {"type": "string", "format": "email"},
                        "time_zone": {"type": "string"},
                        "answers": {"type": "object", "additionalProperties": {"type": "string"}},
                        "guests": {"type": "array", "items": {"type": "string", "format": "email"}, "maxItems": 10},
                        "notes": {"type": "string", "maxLength": 2000},
                    },
                },
                "Booking": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"type": "string"},
                        "start": {"type": "string"},
                        "end": {"type": "string"},
                        "time_zone": {"type": "string"},
                        "manage_url": {"type": "string"},
                    },
                },
                "Explanation": {
                    "type": "object",
                    "properties": {
                        "offered": {"type": "boolean"},
                        "reasons": {
                            "type": "array",
                            "items": {
                                "type": "object",
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
                    "properties": {
                        "id": {"type": "integer"},
                        "booking_id": {"type": "string"},
                        "run": {"type": "string"},
                        "step": {"type": "integer"},
                        "action": {"type": "string"},
                        "state": {"type": "string"},
                        "attempts": {"type": "integer"},
                        "last_error": {"type": "string"},
                        "external_ids": {"type": "object"},
                    },
                },
                "SchedulingRequest": {
                    "type": "object",
                    "required": ["appointment_type", "ticket"],
                    "properties": {
                        "appointment_type": {"type": "string"},
                        "ticket": {"type": "string"},
                        "duration_minutes": {"type": "integer", "minimum": 5, "maximum": 480},
                        "window_start": {"type": "string", "format": "date-time"},
                        "window_end": {"type": "string", "format": "date-time"},
                        "guests": {"type": "array", "items": {"type": "string", "format": "email"}},
                    },
                },
            },
        },
    }
