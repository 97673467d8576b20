"""Mirror cache: recency of each cached blob link (for eviction) and pinned images.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("repository_blobs") as batch:
        batch.add_column(sa.Column("last_pulled_at", sa.Float, nullable=True))
    op.create_table(
        "mirror_pins",
        sa.Column("repository", sa.String(255), primary_key=True),
        sa.Column("reference", sa.String(150), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mirror_pins")
    with op.batch_alter_table("repository_blobs") as batch:
        batch.drop_column("last_pulled_at")
