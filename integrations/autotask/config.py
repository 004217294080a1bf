"""Autotask connection settings for one tenant; the API secret and integration code are SecretStr, never logged."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

# Zone discovery needs no credentials and lives on this host for every Autotask database (apis.md §2.1).
DEFAULT_ZONE_LOOKUP_URL = "https://webservices.autotask.net/atservicesrest/"


class AutotaskConfig(BaseModel):
    """Credentials of one Autotask API user plus the tenant's picklist ids the adapter needs on creates.

    The integer defaults are Autotask's stock picklist values; tenants rename and add their own, so every one of
    them is configurable (apis.md §8.1: required fields and picklists differ per tenant).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(min_length=3, max_length=254)
    """The API-only user's user name (an email address); also the `user` of the zone look-up."""
    secret: SecretStr
    integration_code: SecretStr
    """The `ApiIntegrationCode` (tracking identifier); Autotask counts thread limits per tracking identifier."""
    zone_lookup_url: str = Field(default=DEFAULT_ZONE_LOOKUP_URL, min_length=8)
    """Base of `v1.0/zoneInformation`; tests point it at the fake."""
    timeout_seconds: float = Field(default=20.0, gt=0, le=120)
    max_concurrent_per_endpoint: int = Field(default=3, ge=1, le=3)
    """Autotask allows 3 concurrent threads per object endpoint per tracking identifier (apis.md §2.4)."""
    inline_retry_after_seconds: float = Field(default=2.0, ge=0, le=10)
    """A 429 whose Retry-After is at most this long is waited out and retried once here; longer ones are raised."""
    requests_per_hour: int | None = Field(default=10_000, ge=1, le=10_000)
    """Our share of the database's 10,000 requests per rolling hour (apis.md §2.4); lower it when other
    integrations use the same database. None leaves the quota to Autotask's own 429s."""
    page_size: int = Field(default=500, ge=1, le=500)
    """`MaxRecords` of each query page; Autotask returns at most 500 (apis.md §2.2)."""

    default_company_id: int = Field(default=0, ge=0)
    """Company for records without a client contact; id 0 is the Autotask owner company (your own MSP)."""
    fallback_company_id: int | None = Field(default=None, ge=0)
    """The catch-all company (e.g. "Prospects") under which a first-time client becomes a contact, so the booking's
    ticket, opportunity and To-Do are linked to a contact. None = no contact is created, and such records go to
    `default_company_id` without one."""
    resource_role_id: int = Field(ge=0)
    """Role of the host on tickets: `assignedResourceRoleID` on a ticket we create, `roleID` of the host as a
    TicketSecondaryResources row on an existing ticket (the Resource+Role pair must belong to a queue).
    Tenant-specific."""
    ticket_queue_id: int = Field(ge=0)
    """Queue for new tickets when the draft names none (a ticket needs a queue or a resource+role, apis.md §2.3)."""
    ticket_status_id: int = Field(default=1, ge=0)
    """'New'."""
    ticket_priority_id: int = Field(default=2, ge=0)
    """'Medium'."""
    opportunity_status_id: int = Field(default=1, ge=0)
    """'Active'."""
    opportunity_probability: int = Field(default=50, ge=0, le=100)
    todo_action_type_id: int = Field(default=3, ge=0)
    """ActionTypes id of the To-Do ('Meeting' in a stock tenant)."""
    service_call_status_id: int = Field(default=1, ge=0)
    note_type_id: int = Field(default=1, ge=0)
    note_publish: int = Field(default=1, ge=0)
    """TicketNotes.publish: 1 = all Autotask users may see the note."""
