"""Workflow steps name the steps they wait for (hard or soft), why they are blocked, and when their grace started.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from storage.tables import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # All nullable: steps enqueued before this revision run in their run's order as before (workflows/outbox.py).
    with op.batch_alter_table("workflow_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("depends_on", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("blocked_by", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("grace_from", UtcDateTime(), nullable=True))
        batch_op.create_index("ix_workflow_jobs_state_grace_from", ["state", "grace_from"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("workflow_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_workflow_jobs_state_grace_from")
        batch_op.drop_column("grace_from")
        batch_op.drop_column("blocked_by")
        batch_op.drop_column("depends_on")
