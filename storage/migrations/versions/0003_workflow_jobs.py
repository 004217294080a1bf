"""The workflow outbox: one row per step of a booking's fan-out (see workflows/outbox.py).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from storage.tables import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workflow_jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("booking_id", sa.String(length=40), nullable=True),
        sa.Column("run_key", sa.String(length=80), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", UtcDateTime(), nullable=False),
        sa.Column("locked_by", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=2000), nullable=False),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key", name="uq_workflow_jobs_idempotency_key"),
        sa.UniqueConstraint("run_key", "step", name="uq_workflow_jobs_run_step"),
    )
    with op.batch_alter_table("workflow_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_workflow_jobs_state_run_after", ["state", "run_after"], unique=False)
        batch_op.create_index("ix_workflow_jobs_tenant_booking", ["tenant_id", "booking_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("workflow_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_workflow_jobs_tenant_booking")
        batch_op.drop_index("ix_workflow_jobs_state_run_after")
    op.drop_table("workflow_jobs")
