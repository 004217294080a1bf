"""SQLModel tables. Every row carries tenant_id, and every repository query filters on it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (text) and PostgreSQL (timestamptz) alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime written to the database")
        value = value.astimezone(UTC)
        # SQLite compares datetimes as text, so every stored value must have the same naive-UTC shape.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc_column(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(UtcDateTime(), nullable=nullable, index=index))


def _json_column() -> Any:
    return Field(sa_column=Column(JSON, nullable=False))


def _now() -> datetime:
    return datetime.now(UTC)


class TenantRow(SQLModel, table=True):
    __tablename__ = "tenants"
    id: str = Field(primary_key=True, max_length=40)
    slug: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    name: str = Field(max_length=200)
    default_time_zone: str = Field(max_length=64)
    holidays: list[str] = _json_column()
    config_version: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    """Bumped by every applied rollout, so processes can cache pages and types until it moves."""
    busy_version: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    """Bumped by every write to busy_cache, so cached busy time is re-read only when it changed."""
    microsoft_tenant_id: str | None = Field(default=None, sa_column=Column(String(64), unique=True, nullable=True))
    """The Microsoft 365 (Entra) tenant whose Teams users may use the bot; one Slotwise tenant per Microsoft tenant."""
    branding: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    photos_version: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    """Bumped whenever a host's stored Microsoft 365 photo changes, so cached looks are re-read only then."""
    default_locale: str | None = Field(default=None, max_length=35)
    """The tenant file's `tenant.locale` ('de-DE'): the language of clients whose browser names none we have."""
    """The tenant file's `branding` section as validated (admin/tenant_file.py BrandingSpec); None: Slotwise's look."""


class UserRow(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "slug"), UniqueConstraint("tenant_id", "email"))
    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=40)
    slug: str = Field(max_length=64)
    name: str = Field(max_length=200)
    email: str = Field(max_length=254)
    time_zone: str = Field(max_length=64)
    weekly_hours: dict[str, Any] = _json_column()
    date_overrides: dict[str, Any] = _json_column()
    primary_calendar: str = Field(max_length=8)
    blocking_calendars: list[str] = _json_column()
    aad_object_id: str | None = Field(default=None, max_length=64)
    psa_member: str | None = Field(default=None, max_length=100)
    role: str = Field(default="member", max_length=16)
    photo_url: str | None = Field(default=None, max_length=2048)


class TeamRow(SQLModel, table=True):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("tenant_id", "slug"),)
    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=40)
    slug: str = Field(max_length=64)
    name: str = Field(max_length=200)
    member_ids: list[str] = _json_column()
    manager_ids: list[str] = _json_column()


class AppointmentTypeRow(SQLModel, table=True):
    __tablename__ = "appointment_types"
    __table_args__ = (UniqueConstraint("tenant_id", "slug"),)
    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=40)
    slug: str = Field(max_length=64)
    host_mode: str = Field(max_length=16)
    settings: dict[str, Any] = _json_column()
    """The validated appointment-type document from the tenant file (see admin/rollout.py)."""


class BookingRow(SQLModel, table=True):
    __tablename__ = "bookings"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        # The Outlook add-in looks up a recipient's latest booking by address (storage/addin_directory.py).
        Index("ix_bookings_tenant_client_email", "tenant_id", text("lower(client_email)")),
    )
    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=40)
    type_id: str = Field(foreign_key="appointment_types.id", max_length=40)
    request_id: str | None = Field(default=None, max_length=40)
    starts_at: datetime = _utc_column()
    ends_at: datetime = _utc_column()
    status: str = Field(max_length=16)
    host_ids: list[str] = _json_column()
    client_name: str = Field(max_length=200)
    client_email: str = Field(max_length=254)
    client_time_zone: str = Field(max_length=64)
    client_locale: str | None = Field(default=None, max_length=35)
    """The language the client booked in; emails and reminders about the booking are written in it."""
    answers: dict[str, str] = _json_column()
    guests: list[str] = _json_column()
    notes: str = Field(default="", max_length=2000)
    assignment_reason: str = Field(default="", max_length=500)
    cancel_reason: str = Field(default="", max_length=2000)
    idempotency_key: str | None = Field(default=None, max_length=200)
    created_at: datetime = _utc_column()
    updated_at: datetime = _utc_column()
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    """Bumped by every change; a reschedule or cancel that names an older version is refused (409)."""


class HostSlotRow(SQLModel, table=True):
    """One row per (booking, host): the table the no-double-booking constraint lives on.

    PostgreSQL: EXCLUDE USING gist (user_id WITH =, tstzrange(starts_at, ends_at) WITH &&) WHERE (active).
    SQLite: a partial unique index on (user_id, starts_at) WHERE active is the backstop; BEGIN IMMEDIATE
    serialises the overlap check and the insert (see storage/repositories.py).
    """

    __tablename__ = "host_slots"
    __table_args__ = (
        Index(
            "uq_host_slots_active_start",
            "user_id",
            "starts_at",
            unique=True,
            sqlite_where=text("active = 1"),
            postgresql_where=text("active"),
        ),
        Index("ix_host_slots_user_range", "tenant_id", "user_id", "starts_at", "ends_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=40)
    booking_id: str = Field(foreign_key="bookings.id", index=True, max_length=40)
    user_id: str = Field(foreign_key="users.id", max_length=40)
    starts_at: datetime = _utc_column()
    ends_at: datetime = _utc_column()
    buffer_before_seconds: int = Field(default=0)
    buffer_after_seconds: int = Field(default=0)
    active: bool = Field(default=True)


class SchedulingRequestRow(SQLModel, table=True):
    __tablename__ = "scheduling_requests"
    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=40)
    type_id: str = Field(foreign_key="appointment_types.id", max_length=40)
    ticket: str = Field(max_length=64)
    """The ticket as people see it: the PSA's displayed number when it was resolved, else the agent's label."""
    ticket_id: str | None = Field(default=None, max_length=64)
    """The PSA's id of the ticket (None: no PSA was connected, the ticket is a label only)."""
    ticket_number: str | None = Field(default=None, max_length=64)
    """The number the PSA displays for it (Autotask T20261124.0001; ConnectWise and HaloPSA show the id)."""
    duration_seconds: int | None = Field(default=None)
    window_starts_at: datetime | None = _utc_column(nullable=True)
    window_ends_at: datetime | None = _utc_column(nullable=True)
    guests: list[str] = _json_column()
    created_by: str = Field(max_length=200)
    created_at: datetime = _utc_column()
    expires_at: datetime = _utc_column()
    used_at: datetime | None = _utc_column(nullable=True)
    booking_id: str | None = Field(default=None, max_length=40)
    recipient_name: str | None = Field(default=None, max_length=200)
    recipient_email: str | None = Field(default=None, max_length=320)
    """Whom Slotwise emailed the link to (None: the agent shares the link themselves)."""
    sent_at: datetime | None = _utc_column(nullable=True)
    """When Slotwise sent it; `no_response` follow-ups count from here."""
    single_use: bool = Field(default=True)
    """False: the link books any number of times until it expires (each booking independent)."""
    psa_binding: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """The PSA records the link is for (scheduling.model.PsaBinding.to_json); None: the steps find or create them."""


class BusyCacheRow(SQLModel, table=True):
    """External busy time (Graph, PSA), refreshed in the background so page views make no external calls."""

    __tablename__ = "busy_cache"
    __table_args__ = (Index("ix_busy_cache_user_range", "tenant_id", "user_id", "starts_at"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=40)
    user_id: str = Field(foreign_key="users.id", max_length=40)
    source: str = Field(max_length=32)
    starts_at: datetime = _utc_column()
    ends_at: datetime = _utc_column()
    label: str = Field(default="busy", max_length=200)
    fetched_at: datetime = _utc_column()


class ApiKeyRow(SQLModel, table=True):
    """Tenant-scoped API keys for agents and admins; only a SHA-256 of the key is stored."""

    __tablename__ = "api_keys"
    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=40)
    name: str = Field(max_length=100)
    key_hash: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    role: str = Field(default="agent", max_length=16)
    created_at: datetime = _utc_column()
    revoked_at: datetime | None = _utc_column(nullable=True)


class IntegrationConnectionRow(SQLModel, table=True):
    """A tenant's connection to its PSA, Microsoft 365 or email; secrets only as a Fernet token (storage/secrets.py)."""

    __tablename__ = "integration_connections"
    __table_args__ = (UniqueConstraint("tenant_id", "kind"),)
    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=40)
    kind: str = Field(max_length=16)
    """'psa', 'm365' or 'email'."""
    vendor: str = Field(max_length=32)
    settings: dict[str, Any] = _json_column()
    secrets_token: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    secrets_fingerprint: str = Field(default="", max_length=64)
    """SHA-256 over the secret values, so a re-apply can tell 'unchanged' without decrypting."""
    tested_at: datetime = _utc_column()
    updated_at: datetime = _utc_column()


class TeamsConversationRow(SQLModel, table=True):
    """Where the bot can reach a user proactively: the personal chat's conversation reference, stored when the user
    installs the app or writes to the bot. One per (tenant, user); the newest reference wins."""

    __tablename__ = "teams_conversations"
    __table_args__ = (UniqueConstraint("tenant_id", "user_id"),)
    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=40)
    user_id: str = Field(foreign_key="users.id", max_length=40)
    conversation_id: str = Field(max_length=400)
    service_url: str = Field(max_length=400)
    reference: dict[str, Any] = _json_column()
    """The Bot Framework ConversationReference (bot, user, conversation, channelId, serviceUrl)."""
    time_zone: str | None = Field(default=None, max_length=64)
    """The zone the user's Teams client last reported; cards use it before the Slotwise profile's zone."""
    updated_at: datetime = _utc_column()


metadata = SQLModel.metadata

# Typed handles on the tables for SQLAlchemy Core queries (column access through `.c` type-checks cleanly).
tenants: Table = metadata.tables["tenants"]
users: Table = metadata.tables["users"]
teams: Table = metadata.tables["teams"]
appointment_types: Table = metadata.tables["appointment_types"]
bookings: Table = metadata.tables["bookings"]
host_slots: Table = metadata.tables["host_slots"]
scheduling_requests: Table = metadata.tables["scheduling_requests"]
busy_cache: Table = metadata.tables["busy_cache"]
api_keys: Table = metadata.tables["api_keys"]
integration_connections: Table = metadata.tables["integration_connections"]
teams_conversations: Table = metadata.tables["teams_conversations"]


MAX_ERROR_LENGTH = 2000
"""How much of a step's last error is kept (workflows/outbox.py cuts it to this)."""

# The workflow outbox (workflows/outbox.py): job steps stored next to the bookings they belong to, claimed with leases.
# Defined here with the other tables, so the migrations see it without importing the workflow layer.
workflow_jobs = Table(
    "workflow_jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False),
    Column("booking_id", String(40), nullable=True),
    Column("run_key", String(80), nullable=False),
    Column("step", Integer, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("run_after", UtcDateTime(), nullable=False),
    Column("locked_by", String(64), nullable=True),
    Column("lease_expires_at", UtcDateTime(), nullable=True),
    Column("last_error", String(MAX_ERROR_LENGTH), nullable=False),
    Column("output", JSON, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("depends_on", JSON, nullable=True),
    Column("blocked_by", String(300), nullable=True),
    Column("grace_from", UtcDateTime(), nullable=True),
    UniqueConstraint("idempotency_key", name="uq_workflow_jobs_idempotency_key"),
    # Step numbers are unique within a run, which keeps "the next step" well defined; the index also serves promotion.
    UniqueConstraint("run_key", "step", name="uq_workflow_jobs_run_step"),
    Index("ix_workflow_jobs_state_run_after", "state", "run_after"),
    Index("ix_workflow_jobs_tenant_booking", "tenant_id", "booking_id"),
    # Finds the waiting steps whose soft-dependency grace may have run out without scanning every waiting step.
    Index("ix_workflow_jobs_state_grace_from", "state", "grace_from"),
)


# Hosts' Microsoft 365 profile photos, fetched in the background (workflows/photo_sync.py) for users whose tenant file
# names no photo_url, and served by the pages from our own origin. A row without content records "asked Graph at
# fetched_at, no photo", so accounts without one are asked again only when the row is due, like the others. No
# foreign key to users: a user the tenant file removes leaves a row the refresh prunes, never blocking the apply.
host_photos = Table(
    "host_photos",
    metadata,
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False),
    Column("user_id", String(40), nullable=False),
    Column("mailbox", String(254), nullable=False),
    Column("content_type", String(32), nullable=True),
    Column("content", LargeBinary(), nullable=True),
    Column("digest", String(64), nullable=True),
    Column("fetched_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("tenant_id", "user_id", name="pk_host_photos"),
)
