"""Blob deletions: tombstones, so garbage collection deletes bytes with no transaction open.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_deletions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("digest", sa.String(150), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_blob_deletions_digest", "blob_deletions", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_blob_deletions_digest", table_name="blob_deletions")
    op.drop_table("blob_deletions")
