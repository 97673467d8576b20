"""Scale indexes: the mirror cache's eviction order, so finding the least recently pulled links reads
them in index order and stops at the limit instead of sorting every link.

`mirror_cache.oldest_links` orders by `coalesce(last_pulled_at, created_at), digest`: an expression
index on exactly that (SQLite has them since 3.9, PostgreSQL always). The other slow paths of the
issue "a million tags" need no new index: the tags pages walk the tags primary key
(repository_id, name), the admin repository list walks `repositories.name`'s unique index and probes
repository_blobs by its primary key and `ix_repository_blobs_digest`.

Built with a plain CREATE INDEX inside the migration's transaction (env.py runs every migration in
one): on PostgreSQL this holds a SHARE lock on repository_blobs while it builds, so reads go on and
writes that link or unlink blobs wait (seconds per few million links). CONCURRENTLY cannot run in a
transaction, and a failed concurrent build leaves an invalid index behind that a retry would skip.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_repository_blobs_recency", "repository_blobs",
                    [sa.text("coalesce(last_pulled_at, created_at)"), "digest"])


def downgrade() -> None:
    op.drop_index("ix_repository_blobs_recency", table_name="repository_blobs")
