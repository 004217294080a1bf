"""Scheduling requests keep the PSA ticket they were resolved to: its id and the number the PSA displays.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both nullable: requests made before this revision, and requests of tenants without a PSA, carry a label only.
    with op.batch_alter_table("scheduling_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ticket_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("ticket_number", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scheduling_requests", schema=None) as batch_op:
        batch_op.drop_column("ticket_number")
        batch_op.drop_column("ticket_id")
