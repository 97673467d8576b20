"""Queries of garbage collection's sweep: its locked re-checks and deletes (the mark phase's are in
gc_mark.py).

Every delete re-checks its condition after locking the rows (PostgreSQL: FOR UPDATE SKIP LOCKED,
so a sweep never waits on a push; SQLite: the write transaction is already exclusive). Pushes
lock what they rely on FOR SHARE (see blobs.py, manifests.py), so a push and a sweep of the same
row are ordered: the push either sees the row gone (a clean MANIFEST_BLOB_UNKNOWN) or the sweep
sees the new reference and keeps it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, exists, select, tuple_

from registry.metadata.db import Connection
from registry.metadata.schema import (blobs, manifest_references, manifests, mirror_fills, repositories,
                                      repository_blobs, tags, uploads)


# -- the rows the sweep re-checks ---------------------------------------------------------------
@dataclass(slots=True)
class TagRow:
    repository_id: int
    name: str
    manifest_id: int
    updated_at: float


# -- sweep: tags ------------------------------------------------------------------------------
async def delete_tag_if_unchanged(conn: Connection, tag: TagRow) -> bool:
    """Delete a tag only if nobody moved or re-pushed it since the mark."""
    result = await conn.execute(delete(tags).where(
        tags.c.repository_id == tag.repository_id, tags.c.name == tag.name, tags.c.manifest_id == tag.manifest_id,
        tags.c.updated_at == tag.updated_at))
    return result.rowcount > 0


# -- sweep: manifests -------------------------------------------------------------------------
async def delete_unreachable_manifests(conn: Connection, ids: list[int]) -> list[int]:
    """Delete those of `ids` that are still untagged and needed by no surviving manifest.

    "Surviving" means not deleted in this batch: a manifest stays while an index outside the
    batch lists it or while its subject (it is a signature, an SBOM...) stays. The plan orders
    the batches so that, when nothing changed, everything planned goes; one that gained a tag
    or a parent since the mark stays and keeps what it needs.
    """
    locked = list((await conn.execute(select(manifests.c.id).where(manifests.c.id.in_(ids))
                                      .with_for_update(skip_locked=True))).scalars())
    if not locked:
        return []
    rows = {r.id: r for r in await conn.execute(
        select(manifests.c.id, manifests.c.repository_id, manifests.c.digest, manifests.c.subject_digest)
        .where(manifests.c.id.in_(locked)))}
    tagged = set((await conn.execute(select(tags.c.manifest_id).where(tags.c.manifest_id.in_(locked)))).scalars())
    doomed = set(rows) - tagged
    while doomed:  # drop those still needed by a survivor, until nothing changes
        repository_ids = {rows[i].repository_id for i in doomed}
        listed = await _children_of_survivors(conn, repository_ids, doomed)
        subjects = [rows[i].subject_digest for i in doomed if rows[i].subject_digest]
        present = await _surviving_digests(conn, repository_ids, doomed, subjects)
        kept = {i for i in doomed if (rows[i].repository_id, rows[i].digest) in listed
                or (rows[i].subject_digest and (rows[i].repository_id, rows[i].subject_digest) in present)}
        if not kept:
            break
        doomed -= kept
    if not doomed:
        return []
    await conn.execute(delete(tags).where(tags.c.manifest_id.in_(doomed)))
    await conn.execute(delete(manifest_references).where(manifest_references.c.manifest_id.in_(doomed)))
    await conn.execute(delete(manifests).where(manifests.c.id.in_(doomed)))
    return sorted(doomed)


async def _children_of_survivors(conn: Connection, repository_ids: set[int], doomed: set[int]) -> set[tuple[int, str]]:
    """(repository, digest) of the manifests that a manifest outside `doomed` lists as a child."""
    rows = await conn.execute(
        select(manifests.c.repository_id, manifest_references.c.digest)
        .select_from(manifest_references.join(manifests, manifests.c.id == manifest_references.c.manifest_id))
        .where(manifests.c.repository_id.in_(repository_ids), manifests.c.id.not_in(doomed),
               manifest_references.c.kind == "manifest"))
    return {(r[0], r[1]) for r in rows}


async def _surviving_digests(conn: Connection, repository_ids: set[int], doomed: set[int],
                             digests: list[str]) -> set[tuple[int, str]]:
    """Which of `digests` name a manifest outside `doomed` (in those repositories)."""
    if not digests:
        return set()
    rows = await conn.execute(select(manifests.c.repository_id, manifests.c.digest)
                              .where(manifests.c.repository_id.in_(repository_ids), manifests.c.id.not_in(doomed),
                                     manifests.c.digest.in_(digests)))
    return {(r[0], r[1]) for r in rows}


# -- sweep: repository links ------------------------------------------------------------------
_REFERENCED_IN_REPOSITORY = exists().where(
    manifest_references.c.digest == repository_blobs.c.digest,
    manifests.c.id == manifest_references.c.manifest_id,
    manifests.c.repository_id == repository_blobs.c.repository_id)


async def delete_stale_links(conn: Connection, links: list[tuple[int, str]], cutoff: float) -> list[tuple[int, str]]:
    """Unlink blobs whose grace period started before `cutoff` and that no manifest of their
    repository references. The time is read again under the row lock: a client's HEAD, GET or
    mount that restarted it since the mark keeps the link (blobs.restart_grace)."""
    key = tuple_(repository_blobs.c.repository_id, repository_blobs.c.digest)
    locked = [(r.repository_id, r.digest) for r in await conn.execute(
        select(repository_blobs.c.repository_id, repository_blobs.c.digest)
        .where(key.in_(links)).with_for_update(skip_locked=True))]
    if not locked:
        return []
    stale = [(r.repository_id, r.digest) for r in await conn.execute(
        select(repository_blobs.c.repository_id, repository_blobs.c.digest)
        .where(key.in_(locked), repository_blobs.c.created_at < cutoff, ~_REFERENCED_IN_REPOSITORY))]
    if stale:
        await conn.execute(delete(repository_blobs).where(key.in_(stale)))
    return stale


# -- sweep: blobs -----------------------------------------------------------------------------
async def lock_unreferenced_blobs(conn: Connection, digests: list[str], references_hold: bool = True) -> dict[str, int]:
    """Of `digests`, lock and return (with sizes) those no repository links, no manifest
    references (unless `references_hold` is False: a mirror's cache re-fetches what its
    manifests need) and no mirror is fetching: their bytes may go."""
    locked = list((await conn.execute(select(blobs.c.digest).where(blobs.c.digest.in_(digests))
                                      .with_for_update(skip_locked=True))).scalars())
    if not locked:
        return {}
    conditions = [blobs.c.digest.in_(locked), ~exists().where(repository_blobs.c.digest == blobs.c.digest),
                  ~exists().where(mirror_fills.c.digest == blobs.c.digest, mirror_fills.c.expires_at >= time.time())]
    if references_hold:
        conditions.append(~exists().where(manifest_references.c.digest == blobs.c.digest))
    query = select(blobs.c.digest, blobs.c.size).where(*conditions)
    return {r.digest: r.size for r in await conn.execute(query)}


# -- upload sessions --------------------------------------------------------------------------
async def expired_uploads(conn: Connection, idle_before: float) -> list[str]:
    """Sessions idle since before `idle_before` whose write lease (if any) has lapsed."""
    now = time.time()
    rows = await conn.execute(select(uploads.c.id).where(
        uploads.c.updated_at < idle_before,
        (uploads.c.lease_expires.is_(None)) | (uploads.c.lease_expires < now)))
    return list(rows.scalars())


async def known_uploads(conn: Connection, upload_ids: list[str]) -> set[str]:
    if not upload_ids:
        return set()
    rows = await conn.execute(select(uploads.c.id).where(uploads.c.id.in_(bindparam("ids", expanding=True))),
                              {"ids": upload_ids})
    return set(rows.scalars())


async def delete_upload_if_idle(conn: Connection, upload_id: str, idle_before: float) -> bool:
    now = time.time()
    result = await conn.execute(delete(uploads).where(
        uploads.c.id == upload_id, uploads.c.updated_at < idle_before,
        (uploads.c.lease_expires.is_(None)) | (uploads.c.lease_expires < now)))
    return result.rowcount > 0


# -- fsck -------------------------------------------------------------------------------------
async def blob_sizes_between(conn: Connection, low: str, high: str | None, after: str | None,
                             limit: int) -> list[tuple[str, int]]:
    """Up to `limit` blob rows with low <= digest < high (and > after), in digest order: a walk of the
    primary key. Digests are lower-case hex behind `algorithm:`, which sort alike in every collation."""
    query = select(blobs.c.digest, blobs.c.size).where(blobs.c.digest >= low)
    if high is not None:
        query = query.where(blobs.c.digest < high)
    if after is not None:
        query = query.where(blobs.c.digest > after)
    rows = await conn.execute(query.order_by(blobs.c.digest).limit(limit))
    return [(r.digest, r.size) for r in rows]


async def manifests_needing(conn: Connection, digests: list[str]) -> dict[str, list[str]]:
    """For each blob digest, the manifests (`repository@digest`) that reference it."""
    if not digests:
        return {}
    rows = await conn.execute(
        select(manifest_references.c.digest, repositories.c.name, manifests.c.digest.label("manifest"))
        .select_from(manifest_references.join(manifests, manifests.c.id == manifest_references.c.manifest_id)
                     .join(repositories, repositories.c.id == manifests.c.repository_id))
        .where(manifest_references.c.digest.in_(digests)))
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row.digest, []).append(f"{row.name}@{row.manifest}")
    return found


async def forget_blobs_everywhere(conn: Connection, digests: list[str]) -> None:
    """Remove blobs' rows and every repository's link to them (their bytes are bad or gone)."""
    if digests:
        await conn.execute(delete(repository_blobs).where(repository_blobs.c.digest.in_(digests)))
        await conn.execute(delete(blobs).where(blobs.c.digest.in_(digests)))
