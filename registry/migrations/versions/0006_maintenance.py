"""Maintenance runs (gc, retention, fsck): one at a time across processes, and their last reports.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "maintenance",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("last_report", sa.Text, nullable=True),
        sa.Column("last_finished_at", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("maintenance")
