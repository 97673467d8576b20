"""Scale indexes (issue "a million tags"): each lets a query read a bounded range instead of a table.

- `ix_repository_blobs_recency`: the mirror cache's eviction order. `mirror_cache.oldest_links` orders
  by `coalesce(last_pulled_at, created_at), digest`: an expression index on exactly that (SQLite has
  them since 3.9, PostgreSQL always), read in order and stopped at the limit instead of sorting
  every link.
- `ix_tags_repository_updated`: a repository's last push for the admin list, max(updated_at) of its
  tags, in one probe rather than a read of every tag (100,000 in the largest repository).

The other paths need no new index: the tags pages walk the tags primary key (repository_id, name),
the admin repository list walks `repositories.name`'s unique index and probes repository_blobs by its
primary key and `ix_repository_blobs_digest`.

Built with a plain CREATE INDEX inside the migration's transaction (env.py runs every migration in
one): on PostgreSQL that holds a SHARE lock on the table while the index builds, so reads go on and
writes that link or unlink blobs, or set tags, wait (repository_blobs: about 10 s for 3,900,000 links
on a busy 2-core machine). CREATE INDEX CONCURRENTLY refuses to run in a transaction; Alembic's
autocommit_block could host it, but it would commit the migrations before it half-way, and a
concurrent build that fails leaves an INVALID index of the same name behind for a retry to trip
over. Replicas left serving during `registry db upgrade` see their pushes wait for the build
(docs/operations.md, Upgrades).

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
    op.create_index("ix_tags_repository_updated", "tags", ["repository_id", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_tags_repository_updated", table_name="tags")
    op.drop_index("ix_repository_blobs_recency", table_name="repository_blobs")
