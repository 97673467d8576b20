"""The metadata schema (SQLAlchemy Core tables). Alembic migrations in registry/migrations build it.

Times are float seconds since the epoch: portable across SQLite and PostgreSQL, cheap to compare.
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData,
                        String, Table, Text, UniqueConstraint, func)

metadata = MetaData()

DIGEST = String(150)  # "sha512:" + 128 hex fits

repositories = Table(
    "repositories", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

blobs = Table(
    "blobs", metadata,
    Column("digest", DIGEST, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_pulled_at", Float, nullable=True),
)

# A blob is visible in a repository only once pushed, mounted or pulled into it.
repository_blobs = Table(
    "repository_blobs", metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("digest", DIGEST, ForeignKey("blobs.digest"), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("last_pulled_at", Float, nullable=True),  # mirror caches evict the least recently pulled
    Index("ix_repository_blobs_digest", "digest"),
)
# The mirror cache evicts in this order (mirror_cache.oldest_links): read in index order, stopped at a limit.
Index("ix_repository_blobs_recency",
      func.coalesce(repository_blobs.c.last_pulled_at, repository_blobs.c.created_at), repository_blobs.c.digest)

manifests = Table(
    "manifests", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    Column("digest", DIGEST, nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("artifact_type", String(255), nullable=True),
    Column("subject_digest", DIGEST, nullable=True),
    Column("annotations", Text, nullable=True),  # JSON text, for the referrers listing
    Column("payload", LargeBinary, nullable=False),  # the exact bytes pushed
    Column("size", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_pulled_at", Float, nullable=True),
    UniqueConstraint("repository_id", "digest", name="uq_manifests_repository_digest"),
    Index("ix_manifests_subject", "repository_id", "subject_digest"),
    Index("ix_manifests_repository_id", "repository_id", "id"),  # newest first: the untagged list
)

# What a manifest points at: blobs (config, layers) and child manifests (index entries).
manifest_references = Table(
    "manifest_references", metadata,
    Column("manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True),
    Column("digest", DIGEST, primary_key=True),
    Column("kind", String(16), primary_key=True),  # "blob" | "manifest"
    Index("ix_manifest_references_digest", "digest"),
)

tags = Table(
    "tags", metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), nullable=False),
    Column("updated_at", Float, nullable=False),      # when the tag was last set (pushed)
    Column("verified_at", Float, nullable=True),      # a mirror's tag: when its upstream last confirmed it
    Column("pushed_by", String(300), nullable=True),  # who last set it ("alice", "anonymous (10.0.0.7)")
    Index("ix_tags_manifest", "manifest_id"),
    # A repository's last push (inventory.py): max(updated_at) in one probe, not a read of all its tags.
    Index("ix_tags_repository_updated", "repository_id", "updated_at"),
)

uploads = Table(
    "uploads", metadata,
    Column("id", String(64), primary_key=True),
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    Column("size", BigInteger, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # One writer per upload across processes: a lease, so a dead process cannot hold it forever.
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires", Float, nullable=True),
)

users = Table(
    "users", metadata,
    Column("name", String(128), primary_key=True),
    Column("password_hash", String(255), nullable=False),  # bcrypt; the password itself is never stored
    Column("groups", String(1024), nullable=False, server_default=""),  # comma-separated
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# CI credentials: a random secret (stored as sha256), limited to repository patterns and actions.
robots = Table(
    "robots", metadata,
    Column("name", String(128), primary_key=True),
    Column("secret_hash", String(128), nullable=False),
    Column("repositories", String(2048), nullable=False),  # comma-separated patterns
    Column("actions", String(64), nullable=False),  # comma-separated: pull,push,delete
    Column("expires_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
)

# Mirrored images never evicted: a cache repository (`<alias>/<name>`) and a tag or digest.
mirror_pins = Table(
    "mirror_pins", metadata,
    Column("repository", String(255), primary_key=True),
    Column("reference", String(150), primary_key=True),
    Column("created_at", Float, nullable=False),
)

# A blob being fetched from an upstream, and by which process: one fetch across processes.
mirror_fills = Table(
    "mirror_fills", metadata,
    Column("digest", DIGEST, primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("expires_at", Float, nullable=False),
)

# Maintenance jobs (gc, retention, fsck): a lease so one runs at a time across processes, and
# the last report (JSON) for the admin API.
maintenance = Table(
    "maintenance", metadata,
    Column("kind", String(32), primary_key=True),
    Column("owner", String(64), nullable=True),
    Column("expires_at", Float, nullable=True),
    Column("last_report", Text, nullable=True),
    Column("last_finished_at", Float, nullable=True),
)

# Blobs whose bytes are being (or were) deleted: garbage collection records a tombstone and drops
# the blob's row in one transaction, deletes the bytes with no transaction open, then marks the
# tombstone finished. A push that publishes the same digest meanwhile waits for a pending one and
# refuses to record a blob whose tombstone appeared after it looked (registry/content/local.py).
# AUTOINCREMENT on SQLite: ids are never reused, even after old tombstones are purged.
blob_deletions = Table(
    "blob_deletions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest", DIGEST, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),  # NULL while the bytes may still be being deleted
    Index("ix_blob_deletions_digest", "digest"),
    sqlite_autoincrement=True,
)


# Usage counters, kept by triggers on repository_blobs (migration 0010) in the transaction that links
# or unlinks, so a quota is checked against a figure no concurrent push can overtake.
# A scope counts the distinct blobs linked into the repositories its prefixes cover: a repository
# named `prefix` or under `prefix/`. Scopes are quota namespaces and the mirror cache
# (registry/metadata/usage.py keeps them in step with the configuration).
usage_scopes = Table(
    "usage_scopes", metadata,
    Column("scope", String(300), primary_key=True),
    Column("prefix", String(255), primary_key=True),
)

scope_usage = Table(
    "scope_usage", metadata,
    Column("scope", String(300), primary_key=True),
    Column("bytes", BigInteger, nullable=False),
)

# One row per (scope, blob): how many of the scope's repositories link it, and its size.
scope_blobs = Table(
    "scope_blobs", metadata,
    Column("scope", String(300), primary_key=True),
    Column("digest", DIGEST, primary_key=True),
    Column("links", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
)

# Immutable-tag rules added through the admin API (registry/gc/immutable.py), beside those of the
# configuration: a repository pattern and a tag pattern. Read by each transaction that would move or
# delete a tag, so every process applies a change at once.
immutable_tag_rules = Table(
    "immutable_tag_rules", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repositories", String(255), nullable=False),
    Column("tags", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(255), nullable=True),  # who added it (a user, or "anonymous from ADDRESS")
    UniqueConstraint("repositories", "tags", name="uq_immutable_tag_rules_patterns"),
)

# What happened, one row per event (registry/events/): written in the transaction that made the change
# (pushes, mounts, deletes), or in batches for what changes nothing (pulls, logins, denials, admin
# actions). Two consumers read it: the webhook sender (registry/events/sender.py), each endpoint
# from its cursor in event_endpoints, and the audit trail (registry/events/audit.py).
# `txid` is the writing transaction's id on PostgreSQL (0 on SQLite, whose writers take turns): a
# sender reads rows in (txid, seq) order up to the oldest transaction still running, so a row that
# commits late can never land behind a cursor that has moved past it.
_SEQUENCE = BigInteger().with_variant(Integer, "sqlite")  # SQLite's AUTOINCREMENT wants INTEGER
events = Table(
    "events", metadata,
    Column("seq", _SEQUENCE, primary_key=True, autoincrement=True),
    Column("txid", BigInteger, nullable=False),
    Column("event_id", String(36), nullable=False),  # the id receivers see, the same in every retry
    Column("created_at", Float, nullable=False),
    Column("action", String(16), nullable=False),  # push, pull, mount, delete; login, denied, admin
    Column("target_type", String(16), nullable=False),  # blob, manifest, repository, account, admin
    Column("repository", String(255), nullable=True),
    Column("digest", DIGEST, nullable=True),
    Column("tag", String(128), nullable=True),
    Column("media_type", String(255), nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("from_repository", String(255), nullable=True),  # a mount's source
    Column("actor", String(255), nullable=False),  # "" for anonymous
    Column("actor_kind", String(16), nullable=False),  # user, robot, anonymous, system
    Column("address", String(64), nullable=True),  # the client's address
    Column("outcome", String(16), nullable=False),  # ok, failed, denied
    Column("detail", Text, nullable=True),  # JSON object text
    Column("request_id", String(64), nullable=True),
    Column("method", String(16), nullable=True),
    Column("host", String(255), nullable=True),
    Column("user_agent", String(255), nullable=True),
    Column("source_addr", String(255), nullable=True),  # the registry process that wrote it
    Column("source_instance", String(36), nullable=True),
    Index("ix_events_txid_seq", "txid", "seq"),
    Index("ix_events_repository", "repository", "created_at"),  # the audit trail: newest first, filtered
    Index("ix_events_actor", "actor", "created_at"),
    Index("ix_events_created", "created_at"),
    sqlite_autoincrement=True,
)

# One row per webhook endpoint (notifications.endpoints, by name): the lease of the process sending
# to it, the cursor of the last event it acknowledged, and its counters.
event_endpoints = Table(
    "event_endpoints", metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(64), nullable=True),
    Column("expires_at", Float, nullable=True),
    Column("cursor_txid", BigInteger, nullable=False),
    Column("cursor_seq", BigInteger, nullable=False),
    Column("sent", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    Column("last_success_at", Float, nullable=True),
    Column("last_failure_at", Float, nullable=True),
    Column("last_error", String(500), nullable=True),
)

# Replication (migration 0014). A rule's row holds its definition (JSON; `origin` says whether the
# config file or the admin API made it), the lease of the process running it, the cursor of the last
# push event it has replicated (push-triggered rules read `events` like a webhook endpoint), and its
# schedule. Each run leaves a row: when, why, what it copied and what failed.
replication_rules = Table(
    "replication_rules", metadata,
    Column("name", String(64), primary_key=True),
    Column("definition", Text, nullable=False),
    Column("origin", String(8), nullable=False),  # config, api
    Column("owner", String(64), nullable=True),
    Column("expires_at", Float, nullable=True),
    Column("cursor_txid", BigInteger, nullable=False),
    Column("cursor_seq", BigInteger, nullable=False),
    Column("next_run_at", Float, nullable=True),
    Column("run_requested_at", Float, nullable=True),  # a run asked for (API, page) that no process has begun
    Column("updated_at", Float, nullable=False),
)
replication_runs = Table(
    "replication_runs", metadata,
    Column("id", _SEQUENCE, primary_key=True, autoincrement=True),
    Column("rule", String(64), nullable=False),
    Column("trigger", String(16), nullable=False),  # schedule, push, manual, resume
    Column("status", String(16), nullable=False),  # running, succeeded, failed, interrupted
    Column("owner", String(64), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("manifests", Integer, nullable=False),  # manifests and indexes written to the destination
    Column("blobs", Integer, nullable=False),  # blobs sent
    Column("mounted", Integer, nullable=False),  # blobs linked from another repository without sending
    Column("present", Integer, nullable=False),  # blobs and manifests the destination had already
    Column("bytes", BigInteger, nullable=False),  # blob bytes sent
    Column("deleted", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("detail", Text, nullable=True),  # JSON: the first errors, and what was copied
    Index("ix_replication_runs_rule", "rule", "id"),
    sqlite_autoincrement=True,
)
