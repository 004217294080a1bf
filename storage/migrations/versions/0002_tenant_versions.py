"""Tenant config and busy-time version counters, so each process can cache pages until they move.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config_version", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("busy_version", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("busy_version")
        batch_op.drop_column("config_version")
