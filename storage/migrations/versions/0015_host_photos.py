"""Hosts' Microsoft 365 profile photos (for users whose tenant file names no photo_url), and the tenant's
photos_version that moves with them so cached page looks are re-read when a photo changes.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

from storage.tables import UtcDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("photos_version", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "host_photos",
        sa.Column("tenant_id", sa.String(length=40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("mailbox", sa.String(length=254), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.Column("fetched_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", name="pk_host_photos"),
    )


def downgrade() -> None:
    op.drop_table("host_photos")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("photos_version")
