"""Events and the audit trail: the `events` table (the webhooks' outbox and the audit trail, one row
per event), `event_endpoints` (each webhook endpoint's lease, cursor and counters), and who last set
each tag (`tags.pushed_by`).

`events.seq` is a BIGINT on PostgreSQL (a busy registry records a row per pull) and SQLite's
INTEGER PRIMARY KEY AUTOINCREMENT there (never reused, even after a purge).

Revision ID: 0012
Revises: 0011 (written on 0010; chained after 0011 when the branches merged)
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("txid", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("target_type", sa.String(16), nullable=False),
        sa.Column("repository", sa.String(255), nullable=True),
        sa.Column("digest", sa.String(150), nullable=True),
        sa.Column("tag", sa.String(128), nullable=True),
        sa.Column("media_type", sa.String(255), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("from_repository", sa.String(255), nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("method", sa.String(16), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("user_agent", sa.String(255), nullable=True),
        sa.Column("source_addr", sa.String(255), nullable=True),
        sa.Column("source_instance", sa.String(36), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_txid_seq", "events", ["txid", "seq"])
    op.create_index("ix_events_repository", "events", ["repository", "created_at"])
    op.create_index("ix_events_actor", "events", ["actor", "created_at"])
    op.create_index("ix_events_created", "events", ["created_at"])
    op.create_table(
        "event_endpoints",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("cursor_txid", sa.BigInteger, nullable=False),
        sa.Column("cursor_seq", sa.BigInteger, nullable=False),
        sa.Column("sent", sa.BigInteger, nullable=False),
        sa.Column("failed", sa.BigInteger, nullable=False),
        sa.Column("last_success_at", sa.Float, nullable=True),
        sa.Column("last_failure_at", sa.Float, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
    )
    with op.batch_alter_table("tags") as batch:
        batch.add_column(sa.Column("pushed_by", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tags") as batch:
        batch.drop_column("pushed_by")
    op.drop_table("event_endpoints")
    op.drop_index("ix_events_created", "events")
    op.drop_index("ix_events_actor", "events")
    op.drop_index("ix_events_repository", "events")
    op.drop_index("ix_events_txid_seq", "events")
    op.drop_table("events")
