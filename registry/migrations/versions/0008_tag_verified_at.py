"""Tags: when a mirror's upstream last confirmed a tag, apart from when it was set.

A mirror's revalidation used to move `updated_at`, which the admin page shows as the last push.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tags") as batch:
        batch.add_column(sa.Column("verified_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tags") as batch:
        batch.drop_column("verified_at")
