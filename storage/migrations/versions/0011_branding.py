"""Tenant branding (the tenant file's `branding` section) and users' photo URLs, for the booking pages.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both nullable: tenants and users applied before this revision (and files without them) keep Slotwise's look.
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("branding", sa.JSON(), nullable=True))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("photo_url", sa.String(length=2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("photo_url")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("branding")
