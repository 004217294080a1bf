"""Scheduling requests Slotwise sends itself: to whom, and when (the moment `no_response` follow-ups count from).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from storage.tables import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: requests made before this revision, and requests the agent shares themselves, were never sent.
    with op.batch_alter_table("scheduling_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recipient_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("recipient_email", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("sent_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scheduling_requests", schema=None) as batch_op:
        batch_op.drop_column("sent_at")
        batch_op.drop_column("recipient_email")
        batch_op.drop_column("recipient_name")
