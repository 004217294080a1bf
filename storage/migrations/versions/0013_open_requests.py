"""Scheduling requests without a ticket: one-off links (the Outlook add-in's among them) that may be multi-use.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Requests made before this revision were single-use.
    with op.batch_alter_table("scheduling_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("single_use", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("scheduling_requests", schema=None) as batch_op:
        batch_op.drop_column("single_use")
