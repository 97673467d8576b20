"""Usage counters: quota and mirror-cache usage kept by triggers, in the transaction that links.

A quota used to be checked with a SUM over every blob linked into its namespace, twice per pushed
blob (seconds at a million links) and in a transaction apart from the link (concurrent pushes could
overshoot it). The triggers below keep per-scope counts instead (registry/metadata/usage.py).

On PostgreSQL each trigger first locks the usage rows of the scopes it changes, in scope order:
every link or unlink of a scope then runs one at a time, so the counts are exact, a push reads a
total no concurrent push can overtake, and two transactions never wait on each other's blob rows.
SQLite's write transactions are exclusive already. PostgreSQL's triggers are off while no scope
is tracked (a call per link is not free); SQLite's skip themselves then (their WHEN clause).

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The scopes covering a link's repository: named by one of the scope's prefixes or under `prefix/`
# (substr rather than LIKE, where `_` in a repository name would be a wildcard).
SCOPES_OF = """SELECT DISTINCT u.scope FROM usage_scopes u JOIN repositories r ON r.id = {row}.repository_id
    WHERE r.name = u.prefix OR substr(r.name, 1, length(u.prefix) + 1) = u.prefix || '/'"""

# A row with links = 0 exists only between the first two statements of a link's own trigger.
COUNT_LINK = """
    INSERT INTO scope_blobs (scope, digest, links, size)
        SELECT m.scope, NEW.digest, 0, b.size FROM ({scopes}) m, blobs b WHERE b.digest = NEW.digest
        ON CONFLICT (scope, digest) DO NOTHING;
    UPDATE scope_usage SET bytes = bytes + (SELECT sb.size FROM scope_blobs sb
                                            WHERE sb.scope = scope_usage.scope AND sb.digest = NEW.digest)
        WHERE scope IN (SELECT sb.scope FROM scope_blobs sb WHERE sb.digest = NEW.digest AND sb.links = 0
                        AND sb.scope IN ({scopes}));
    UPDATE scope_blobs SET links = links + 1 WHERE digest = NEW.digest AND scope IN ({scopes});
"""

UNCOUNT_LINK = """
    UPDATE scope_blobs SET links = links - 1 WHERE digest = OLD.digest AND scope IN ({scopes});
    UPDATE scope_usage SET bytes = bytes - (SELECT sb.size FROM scope_blobs sb
                                            WHERE sb.scope = scope_usage.scope AND sb.digest = OLD.digest)
        WHERE scope IN (SELECT sb.scope FROM scope_blobs sb WHERE sb.digest = OLD.digest AND sb.links <= 0
                        AND sb.scope IN ({scopes}));
    DELETE FROM scope_blobs WHERE digest = OLD.digest AND links <= 0 AND scope IN ({scopes});
"""


def upgrade() -> None:
    op.create_table("usage_scopes",
                    sa.Column("scope", sa.String(300), primary_key=True),
                    sa.Column("prefix", sa.String(255), primary_key=True))
    op.create_table("scope_usage",
                    sa.Column("scope", sa.String(300), primary_key=True),
                    sa.Column("bytes", sa.BigInteger, nullable=False))
    op.create_table("scope_blobs",
                    sa.Column("scope", sa.String(300), primary_key=True),
                    sa.Column("digest", sa.String(150), primary_key=True),
                    sa.Column("links", sa.Integer, nullable=False),
                    sa.Column("size", sa.BigInteger, nullable=False))
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_triggers()
    else:
        _postgresql_triggers()


def _sqlite_triggers() -> None:
    # WHEN: nothing at all to do while no scope is tracked (no quota, no mirror cache cap).
    for name, event, row, body in (("count_link", "INSERT", "NEW", COUNT_LINK),
                                   ("uncount_link", "DELETE", "OLD", UNCOUNT_LINK)):
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON repository_blobs FOR EACH ROW "
                   f"WHEN EXISTS (SELECT 1 FROM usage_scopes) BEGIN "
                   f"{body.format(scopes=SCOPES_OF.format(row=row))} END")


def _postgresql_triggers() -> None:
    for name, event, row, body in (("count_link", "INSERT", "NEW", COUNT_LINK),
                                   ("uncount_link", "DELETE", "OLD", UNCOUNT_LINK)):
        scopes = "SELECT unnest(scopes) AS scope"
        op.execute(f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE scopes text[];
BEGIN
    scopes := ARRAY(SELECT s.scope FROM ({SCOPES_OF.format(row=row)}) s ORDER BY s.scope);
    IF cardinality(scopes) = 0 THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM scope_usage WHERE scope = ANY(scopes) ORDER BY scope FOR UPDATE;
    {body.format(scopes=scopes)}
    RETURN NULL;
END $$""")
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON repository_blobs "
                   f"FOR EACH ROW EXECUTE FUNCTION {name}()")
        # Off until a scope is tracked: registry/metadata/usage.py `track` switches them.
        op.execute(f"ALTER TABLE repository_blobs DISABLE TRIGGER {name}")


def downgrade() -> None:
    for name in ("count_link", "uncount_link"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" if op.get_bind().dialect.name == "sqlite"
                   else f"DROP TRIGGER IF EXISTS {name} ON repository_blobs")
        if op.get_bind().dialect.name != "sqlite":
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    for table in ("scope_blobs", "scope_usage", "usage_scopes"):
        op.drop_table(table)
