"""Users (bcrypt hashes, groups) and robot tokens (hashed secret, scope, expiry).

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("groups", sa.String(1024), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "robots",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("secret_hash", sa.String(128), nullable=False),
        sa.Column("repositories", sa.String(2048), nullable=False),
        sa.Column("actions", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("robots")
    op.drop_table("users")
