"""The client's language on each booking (emails and reminders are written in it) and the tenant's default language.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both nullable: bookings made before this revision, and tenant files without `tenant.locale`, use English
    # (or the tenant's default once it is set).
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("default_locale", sa.String(length=35), nullable=True))
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_locale", sa.String(length=35), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_column("client_locale")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("default_locale")
