"""Immutable-tag rules added through the admin API (the configuration's live in the configuration).

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
    op.create_table("immutable_tag_rules",
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("repositories", sa.String(255), nullable=False),
                    sa.Column("tags", sa.String(255), nullable=False),
                    sa.Column("created_at", sa.Float, nullable=False),
                    sa.Column("created_by", sa.String(255), nullable=True),
                    sa.UniqueConstraint("repositories", "tags", name="uq_immutable_tag_rules_patterns"))


def downgrade() -> None:
    op.drop_table("immutable_tag_rules")
