"""Scheduling requests without a ticket: one-off links that may be multi-use, optionally bound to a PSA contact and
opportunity (the Outlook add-in's one-off link).

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
    # Requests made before this revision were single-use; the contact and opportunity are None for them.
    with op.batch_alter_table("scheduling_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("single_use", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("psa_contact_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("psa_opportunity_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scheduling_requests", schema=None) as batch_op:
        batch_op.drop_column("psa_opportunity_id")
        batch_op.drop_column("psa_contact_id")
        batch_op.drop_column("single_use")
