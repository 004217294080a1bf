"""Integration connections per tenant (PSA, Microsoft 365, email), secrets encrypted at rest; users' PSA member ids.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from storage.tables import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("psa_member", sa.String(length=100), nullable=True))
    op.create_table(
        "integration_connections",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("vendor", sa.String(length=32), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("secrets_token", sa.Text(), server_default="", nullable=False),
        sa.Column("secrets_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("tested_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "kind"),
    )
    with op.batch_alter_table("integration_connections", schema=None) as batch_op:
        batch_op.create_index("ix_integration_connections_tenant_id", ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("integration_connections", schema=None) as batch_op:
        batch_op.drop_index("ix_integration_connections_tenant_id")
    op.drop_table("integration_connections")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("psa_member")
