"""What the registry holds, for operators: repositories with sizes and activity, tags with their
manifests, storage totals and how they grew, upload sessions; and deleting a whole repository.

Sizes are blob bytes. A repository's `size` is every blob linked into it (what pulling all of it
would move); its `unique_size` is the part no other repository links (what deleting it would
let GC free). The store's physical bytes count each blob once; the sum over repositories counts
it once per repository: the difference is what deduplication saves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, delete, exists, func, select
from sqlalchemy.orm import aliased

from registry.metadata.db import Connection
from registry.metadata.schema import (blobs, manifest_references, manifests, repositories, repository_blobs, tags,
                                      uploads)


@dataclass(frozen=True, slots=True)
class RepositoryStats:
    name: str
    created_at: float
    tag_count: int
    manifest_count: int
    size: int
    unique_size: int
    last_push: float | None
    last_pull: float | None


async def repository_page(conn: Connection, search: str | None, limit: int, last: str | None) -> list[RepositoryStats]:
    """Repositories sorted by name after `last`, optionally those whose name contains `search`."""
    query = select(repositories.c.id, repositories.c.name, repositories.c.created_at).order_by(repositories.c.name)
    if search:
        query = query.where(repositories.c.name.contains(search.lower(), autoescape=True))
    if last:
        query = query.where(repositories.c.name > last)
    rows = (await conn.execute(query.limit(limit))).all()
    return await _with_stats(conn, rows)


async def repository_stats(conn: Connection, name: str) -> RepositoryStats | None:
    rows = (await conn.execute(select(repositories.c.id, repositories.c.name, repositories.c.created_at)
                               .where(repositories.c.name == name))).all()
    found = await _with_stats(conn, rows)
    return found[0] if found else None


def _stats_columns() -> list[Any]:
    """The page's aggregates, each a subquery correlated to one repository of the page.

    Subqueries in the select list stay per-repository probes: the planner cannot turn them into a
    join over a whole table. As grouped joins over `IN (ids)`, PostgreSQL chose at full size to hash
    every link (unique_size: 1.8 s) and every blob (size: 0.6 s), and to seq-scan all tags. Here each
    reads one repository's rows through an index: tags_pkey, ix_manifests_subject, repository_blobs_pkey
    then blobs_pkey, and for unique_size ix_repository_blobs_digest, stopping at the first link from
    another repository.
    """
    def of_repository(value: Any, owner: Any, source: Any, *where: Any) -> Any:
        return select(value).select_from(source).where(owner == repositories.c.id, *where).scalar_subquery()

    linked = repository_blobs.join(blobs, blobs.c.digest == repository_blobs.c.digest)
    link_owner = repository_blobs.c.repository_id
    other = aliased(repository_blobs)
    shared = exists().where(other.c.digest == repository_blobs.c.digest, other.c.repository_id != link_owner)
    blob_bytes = func.coalesce(func.sum(blobs.c.size), 0)
    return [
        of_repository(func.count(), tags.c.repository_id, tags).label("tag_count"),
        of_repository(func.max(tags.c.updated_at), tags.c.repository_id, tags).label("tag_updated"),
        of_repository(func.count(), manifests.c.repository_id, manifests).label("manifest_count"),
        of_repository(func.max(manifests.c.created_at), manifests.c.repository_id, manifests).label("manifest_created"),
        of_repository(func.max(manifests.c.last_pulled_at), manifests.c.repository_id, manifests).label("last_pull"),
        of_repository(blob_bytes, link_owner, linked).label("size"),
        of_repository(blob_bytes, link_owner, linked, ~shared).label("unique_size"),
    ]


async def _with_stats(conn: Connection, rows: list) -> list[RepositoryStats]:
    """Aggregates for one page of repositories: one statement over that page's ids only, each
    aggregate a per-repository subquery (work in proportion to those repositories' rows)."""
    ids = [row.id for row in rows]
    if not ids:
        return []
    stats = {r.id: r for r in await conn.execute(select(repositories.c.id, *_stats_columns())
                                                 .where(repositories.c.id.in_(ids)))}
    result = []
    for row in rows:
        found = stats.get(row.id)
        if found is None:  # deleted since the page was read
            continue
        pushes = [t for t in (found.tag_updated, found.manifest_created) if t is not None]
        result.append(RepositoryStats(row.name, row.created_at, found.tag_count, found.manifest_count,
                                      int(found.size), int(found.unique_size), max(pushes) if pushes else None,
                                      found.last_pull))
    return result


@dataclass(frozen=True, slots=True)
class TaggedManifest:
    tag: str
    updated_at: float
    digest: str
    media_type: str
    payload: bytes
    created_at: float
    last_pulled_at: float | None
    pushed_by: str | None


async def tag_page(conn: Connection, repository_id: int, limit: int, last: str | None) -> list[TaggedManifest]:
    query = (select(tags.c.name, tags.c.updated_at, manifests.c.digest, manifests.c.media_type, manifests.c.payload,
                    manifests.c.created_at, manifests.c.last_pulled_at, tags.c.pushed_by)
             .select_from(tags.join(manifests, manifests.c.id == tags.c.manifest_id))
             .where(tags.c.repository_id == repository_id).order_by(tags.c.name).limit(limit))
    if last:
        query = query.where(tags.c.name > last)
    return [TaggedManifest(r.name, r.updated_at, r.digest, r.media_type, bytes(r.payload), r.created_at,
                           r.last_pulled_at, r.pushed_by) for r in await conn.execute(query)]


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: str
    media_type: str
    payload: bytes
    artifact_type: str | None
    subject: str | None
    created_at: float
    last_pulled_at: float | None


async def manifests_by_digest(conn: Connection, repository_id: int, digests: list[str]) -> dict[str, StoredManifest]:
    if not digests:
        return {}
    rows = await conn.execute(
        select(manifests.c.digest, manifests.c.media_type, manifests.c.payload, manifests.c.artifact_type,
               manifests.c.subject_digest, manifests.c.created_at, manifests.c.last_pulled_at)
        .where(manifests.c.repository_id == repository_id, manifests.c.digest.in_(digests)))
    return {r.digest: StoredManifest(r.digest, r.media_type, bytes(r.payload), r.artifact_type, r.subject_digest,
                                     r.created_at, r.last_pulled_at) for r in rows}


@dataclass(frozen=True, slots=True)
class UntaggedManifest(StoredManifest):
    """A stored manifest with its id, the untagged list's cursor. Its `subject` is set only when that
    subject is not in the repository (a dangling referrer): the others are not listed."""
    id: int


async def untagged_page(conn: Connection, repository_id: int, limit: int,
                        before_id: int | None) -> list[UntaggedManifest]:
    """The repository's manifests nothing else names, newest first: no tag points at them, no index of the
    repository lists them, and they refer to no subject the repository holds. Index children and referrers
    are left out: they show under their index or subject. Walks `ix_manifests_repository_id` from the top
    and probes each manifest's tags, parents and subject by index, so a page stops at its end."""
    parent = aliased(manifests)
    subject = aliased(manifests)
    listed_by_parent = manifest_references.join(parent, parent.c.id == manifest_references.c.manifest_id)
    query = (select(manifests.c.id, manifests.c.digest, manifests.c.media_type, manifests.c.payload,
                    manifests.c.artifact_type, manifests.c.subject_digest, manifests.c.created_at,
                    manifests.c.last_pulled_at)
             .where(manifests.c.repository_id == repository_id,
                    ~exists().where(tags.c.manifest_id == manifests.c.id),
                    ~exists().select_from(listed_by_parent)
                    .where(manifest_references.c.digest == manifests.c.digest, manifest_references.c.kind == "manifest",
                           parent.c.repository_id == repository_id),
                    (manifests.c.subject_digest.is_(None)
                     | ~exists().where(subject.c.repository_id == repository_id,
                                       subject.c.digest == manifests.c.subject_digest)))
             .order_by(manifests.c.id.desc()).limit(limit))
    if before_id is not None:
        query = query.where(manifests.c.id < before_id)
    return [UntaggedManifest(r.digest, r.media_type, bytes(r.payload), r.artifact_type, r.subject_digest,
                             r.created_at, r.last_pulled_at, r.id) for r in await conn.execute(query)]


@dataclass(frozen=True, slots=True)
class ReferrerRow:
    subject: str
    digest: str
    media_type: str
    artifact_type: str | None
    size: int
    count: int  # how many referrers the subject has in all, however many are listed


async def referrers_of_each(conn: Connection, repository_id: int, subjects: list[str], each: int) -> list[ReferrerRow]:
    """Up to `each` referrers of every subject (oldest first), each row with the subject's total: one
    statement for a page, however many referrers a subject has (a signed image may have thousands)."""
    if not subjects:
        return []
    ranked = (select(manifests.c.subject_digest, manifests.c.digest, manifests.c.media_type, manifests.c.artifact_type,
                     manifests.c.size,
                     func.row_number().over(partition_by=manifests.c.subject_digest,
                                            order_by=(manifests.c.created_at, manifests.c.id)).label("rank"),
                     func.count().over(partition_by=manifests.c.subject_digest).label("total"))
              .where(manifests.c.repository_id == repository_id, manifests.c.subject_digest.in_(subjects))
              .subquery())
    rows = await conn.execute(select(ranked).where(ranked.c.rank <= each)
                              .order_by(ranked.c.subject_digest, ranked.c.rank))
    return [ReferrerRow(r.subject_digest, r.digest, r.media_type, r.artifact_type, r.size, r.total) for r in rows]


async def referrer_closure(conn: Connection, repository_id: int, digest: str, limit: int) -> list[str]:
    """The referrers of `digest`, theirs (a signature of an SBOM), and so on (bounded by MAX_NESTING
    generations): deepest generation first, the order they can be deleted in. More than `limit` of them
    means there are more than `limit`; the list is then not the whole closure."""
    generations: list[list[str]] = []
    seen = {digest}
    frontier = [digest]
    for _ in range(MAX_NESTING):
        found = [d for d in (await conn.execute(
            select(manifests.c.digest).where(manifests.c.repository_id == repository_id,
                                             manifests.c.subject_digest.in_(frontier))
            .order_by(manifests.c.digest).limit(limit + 1))).scalars() if d not in seen]
        if not found:
            break
        seen.update(found)
        generations.append(found)
        if len(seen) - 1 > limit:  # the caller refuses: more than it will delete at once
            break
        frontier = found
    return [d for generation in reversed(generations) for d in generation]


async def tags_of(conn: Connection, repository_id: int, digest: str) -> list[str]:
    query = (select(tags.c.name).select_from(tags.join(manifests, manifests.c.id == tags.c.manifest_id))
             .where(tags.c.repository_id == repository_id, manifests.c.digest == digest).order_by(tags.c.name))
    return list((await conn.execute(query)).scalars())


MAX_NESTING = 8  # indexes of indexes: a walk up stops here (real images nest one or two deep)


async def tags_reaching(conn: Connection, repository_id: int, digest: str) -> list[str]:
    """Tags of the repository whose image contains `digest`: the tagged manifest itself, a blob or
    child manifest it references, or one its index children reference, however deep (bounded)."""
    found = set((await conn.execute(select(manifests.c.id).where(
        manifests.c.repository_id == repository_id, manifests.c.digest == digest))).scalars())
    found |= set((await conn.execute(
        select(manifests.c.id).select_from(manifests.join(manifest_references,
                                                          manifest_references.c.manifest_id == manifests.c.id))
        .where(manifests.c.repository_id == repository_id, manifest_references.c.digest == digest))).scalars())
    frontier = set(found)
    for _ in range(MAX_NESTING):
        if not frontier:
            break
        child_digests = select(manifests.c.digest).where(manifests.c.id.in_(frontier))
        parents = set((await conn.execute(
            select(manifests.c.id).select_from(manifests.join(manifest_references,
                                                              manifest_references.c.manifest_id == manifests.c.id))
            .where(manifests.c.repository_id == repository_id, manifest_references.c.kind == "manifest",
                   manifest_references.c.digest.in_(child_digests)))).scalars())
        frontier = parents - found
        found |= parents
    if not found:
        return []
    rows = await conn.execute(select(tags.c.name).where(tags.c.repository_id == repository_id,
                                                        tags.c.manifest_id.in_(found)).order_by(tags.c.name))
    return list(rows.scalars())


async def parents_of(conn: Connection, repository_id: int, digest: str) -> list[str]:
    """Indexes in the repository that list this manifest."""
    query = (select(manifests.c.digest)
             .select_from(manifests.join(manifest_references, manifest_references.c.manifest_id == manifests.c.id))
             .where(manifests.c.repository_id == repository_id, manifest_references.c.digest == digest,
                    manifest_references.c.kind == "manifest").order_by(manifests.c.digest))
    return list((await conn.execute(query)).scalars())


async def blob_sizes(conn: Connection, digests: list[str]) -> dict[str, int]:
    if not digests:
        return {}
    rows = await conn.execute(select(blobs.c.digest, blobs.c.size).where(blobs.c.digest.in_(digests)))
    return {r.digest: r.size for r in rows}


@dataclass(frozen=True, slots=True)
class Totals:
    repositories: int
    manifests: int
    manifest_bytes: int
    tags: int
    blobs: int
    physical_bytes: int
    logical_bytes: int
    uploads: int
    upload_bytes: int


async def totals(conn: Connection) -> Totals:
    count_repositories = (await conn.execute(select(func.count()).select_from(repositories))).scalar_one()
    manifest_count, manifest_bytes = (await conn.execute(
        select(func.count(), func.coalesce(func.sum(manifests.c.size), 0)))).one()
    tag_count = (await conn.execute(select(func.count()).select_from(tags))).scalar_one()
    blob_count, physical = (await conn.execute(select(func.count(), func.coalesce(func.sum(blobs.c.size), 0)))).one()
    logical = (await conn.execute(
        select(func.coalesce(func.sum(blobs.c.size), 0))
        .select_from(repository_blobs.join(blobs, blobs.c.digest == repository_blobs.c.digest)))).scalar_one()
    upload_count, upload_bytes = (await conn.execute(
        select(func.count(), func.coalesce(func.sum(uploads.c.size), 0)))).one()
    return Totals(count_repositories, manifest_count, int(manifest_bytes), tag_count, blob_count, int(physical),
                  int(logical), upload_count, int(upload_bytes))


async def growth(conn: Connection, points: int, until: float) -> list[tuple[float, int, int]]:
    """(time, physical bytes, logical bytes) of today's content by when it arrived, at `points` times.

    One scan per table whatever the number of points (a CASE sum per point), portable to both
    databases. Deleted content is gone from the rows, so this is growth of what is held now.
    """
    first = (await conn.execute(select(func.min(repository_blobs.c.created_at)))).scalar()
    if first is None:
        return []
    step = max((until - first) / max(points - 1, 1), 1.0)
    times = [first + step * i for i in range(points)]
    physical = (await conn.execute(select(*[
        func.coalesce(func.sum(case((blobs.c.created_at <= t, blobs.c.size), else_=0)), 0) for t in times]))).one()
    logical = (await conn.execute(select(*[
        func.coalesce(func.sum(case((repository_blobs.c.created_at <= t, blobs.c.size), else_=0)), 0) for t in times])
        .select_from(repository_blobs.join(blobs, blobs.c.digest == repository_blobs.c.digest)))).one()
    return [(t, int(p), int(lg)) for t, p, lg in zip(times, physical, logical)]


@dataclass(frozen=True, slots=True)
class UploadSession:
    id: str
    repository: str
    size: int
    created_at: float
    updated_at: float
    writing: bool  # a request holds its write lease now


async def upload_page(conn: Connection, limit: int, last: str | None, now: float) -> list[UploadSession]:
    query = (select(uploads.c.id, repositories.c.name, uploads.c.size, uploads.c.created_at, uploads.c.updated_at,
                    uploads.c.lease_expires)
             .select_from(uploads.join(repositories, repositories.c.id == uploads.c.repository_id))
             .order_by(uploads.c.id).limit(limit))
    if last:
        query = query.where(uploads.c.id > last)
    return [UploadSession(r.id, r.name, r.size, r.created_at, r.updated_at,
                          r.lease_expires is not None and r.lease_expires > now) for r in await conn.execute(query)]


async def upload_ids(conn: Connection, repository_id: int) -> list[str]:
    return list((await conn.execute(select(uploads.c.id).where(uploads.c.repository_id == repository_id))).scalars())


async def delete_repository(conn: Connection, repository_id: int) -> None:
    """Remove a repository with its tags, manifests, links and upload rows (blobs stay for GC)."""
    owned = select(manifests.c.id).where(manifests.c.repository_id == repository_id)
    await conn.execute(delete(tags).where(tags.c.repository_id == repository_id))
    await conn.execute(delete(manifest_references).where(manifest_references.c.manifest_id.in_(owned)))
    await conn.execute(delete(manifests).where(manifests.c.repository_id == repository_id))
    await conn.execute(delete(repository_blobs).where(repository_blobs.c.repository_id == repository_id))
    await conn.execute(delete(uploads).where(uploads.c.repository_id == repository_id))
    await conn.execute(delete(repositories).where(repositories.c.id == repository_id))

