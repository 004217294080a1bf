"""A scheduling request bound to the PSA records its link is for: the contact the rep matched in Outlook (and the
opportunity they chose), so a booking through the link lands on those records instead of creating or guessing them.
Also an index for the add-in's look-up of a recipient's latest booking by address (case-insensitive), which read
every booking of the tenant before.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: requests made before this revision, and links bound to nothing, find or create the contact as before.
    with op.batch_alter_table("scheduling_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("psa_binding", sa.JSON(), nullable=True))
    op.create_index("ix_bookings_tenant_client_email", "bookings", ["tenant_id", sa.text("lower(client_email)")])


def downgrade() -> None:
    op.drop_index("ix_bookings_tenant_client_email", table_name="bookings")
    with op.batch_alter_table("scheduling_requests", schema=None) as batch_op:
        batch_op.drop_column("psa_binding")
