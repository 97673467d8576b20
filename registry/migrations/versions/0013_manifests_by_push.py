"""A repository's manifests newest first: the admin page's list of untagged manifests.

`ix_manifests_repository_id` lets `inventory.untagged_page` walk one repository's manifests from the
newest (the highest id) down and stop at the page's end, instead of sorting all of them: the largest
repository holds hundreds of thousands. Built inside the migration's transaction like 0009's indexes
(PostgreSQL holds a SHARE lock on `manifests` while it builds: pushes wait, pulls go on).

Revision ID: 0013
Revises: 0012
"""
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_manifests_repository_id", "manifests", ["repository_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_manifests_repository_id", table_name="manifests")
