"""Replication: rules made through the admin API (config rules are mirrored here too, marked so),
each rule's lease and push-event cursor, and the history of its runs.

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replication_rules",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("origin", sa.String(8), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("cursor_txid", sa.BigInteger, nullable=False),
        sa.Column("cursor_seq", sa.BigInteger, nullable=False),
        sa.Column("next_run_at", sa.Float, nullable=True),
        sa.Column("run_requested_at", sa.Float, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "replication_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("manifests", sa.Integer, nullable=False),
        sa.Column("blobs", sa.Integer, nullable=False),
        sa.Column("mounted", sa.Integer, nullable=False),
        sa.Column("present", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_replication_runs_rule", "replication_runs", ["rule", "id"])


def downgrade() -> None:
    op.drop_index("ix_replication_runs_rule", "replication_runs")
    op.drop_table("replication_runs")
    op.drop_table("replication_rules")
