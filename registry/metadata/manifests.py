"""Manifests (exact bytes, by repository and digest), their references, and referrers."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import bindparam, delete, func, select, update

from registry.metadata.db import Connection, Database
from registry.metadata.schema import manifest_references, manifests, repositories, tags


@dataclass(frozen=True, slots=True)
class ManifestRow:
    id: int
    digest: str
    media_type: str
    payload: bytes
    subject: str | None


_COLUMNS = (manifests.c.id, manifests.c.digest, manifests.c.media_type, manifests.c.payload,
            manifests.c.subject_digest)


def _row(row) -> ManifestRow | None:
    return ManifestRow(row.id, row.digest, row.media_type, bytes(row.payload), row.subject_digest) if row else None


# Hot read paths: statements built once, executed with bind parameters.
_BY_TAG = (select(*_COLUMNS)
           .select_from(tags.join(repositories, repositories.c.id == tags.c.repository_id)
                        .join(manifests, manifests.c.id == tags.c.manifest_id))
           .where(repositories.c.name == bindparam("repository"), tags.c.name == bindparam("tag")))
_BY_DIGEST = (select(*_COLUMNS)
              .select_from(manifests.join(repositories, repositories.c.id == manifests.c.repository_id))
              .where(repositories.c.name == bindparam("repository"), manifests.c.digest == bindparam("digest")))


_BY_TAG_WITH_TIME = _BY_TAG.add_columns(func.coalesce(tags.c.verified_at, tags.c.updated_at).label("updated_at"))


async def manifest_by_tag_with_time(conn: Connection, repository: str, tag: str) -> tuple[ManifestRow, float] | None:
    row = (await conn.execute(_BY_TAG_WITH_TIME, {"repository": repository, "tag": tag})).first()
    return (_row(row), row.updated_at) if row else None  # type: ignore[return-value]


async def manifest_by_tag(conn: Connection, repository: str, tag: str) -> ManifestRow | None:
    return _row((await conn.execute(_BY_TAG, {"repository": repository, "tag": tag})).first())


async def manifest_by_digest(conn: Connection, repository: str, digest: str) -> ManifestRow | None:
    return _row((await conn.execute(_BY_DIGEST, {"repository": repository, "digest": digest})).first())


# Locked FOR SHARE (PostgreSQL) so garbage collection cannot delete a manifest a push relies on.
_EXISTING = (select(manifests.c.digest).where(manifests.c.repository_id == bindparam("repository_id"),
                                              manifests.c.digest.in_(bindparam("digests", expanding=True)))
             .with_for_update(read=True))
_ID = select(manifests.c.id).where(manifests.c.repository_id == bindparam("repository_id"),
                                   manifests.c.digest == bindparam("digest"))
_ID_LOCKED = _ID.with_for_update(read=True)


async def existing_manifests(conn: Connection, repository_id: int, digests: list[str]) -> set[str]:
    if not digests:
        return set()
    return set((await conn.execute(_EXISTING, {"repository_id": repository_id, "digests": digests})).scalars())


async def store_manifest(db: Database, conn: Connection, repository_id: int, *, digest: str, media_type: str,
                         payload: bytes, artifact_type: str | None, subject: str | None,
                         annotations: dict[str, str] | None, references: list[tuple[str, str]]) -> int:
    """Insert the manifest unless the repository has it already; returns its id."""
    key = {"repository_id": repository_id, "digest": digest}
    existing = (await conn.execute(_ID_LOCKED, key)).scalar()
    if existing is not None:
        return existing
    await conn.execute(db.insert_ignore(manifests), {
        **key, "media_type": media_type, "artifact_type": artifact_type, "subject_digest": subject,
        "annotations": json.dumps(annotations) if annotations else None, "payload": payload,
        "size": len(payload), "created_at": time.time(), "last_pulled_at": None})
    manifest_id = (await conn.execute(_ID, key)).scalar_one()
    if references:
        await conn.execute(db.insert_ignore(manifest_references),
                           [{"manifest_id": manifest_id, "digest": d, "kind": k} for d, k in set(references)])
    return manifest_id


_PULLED = (update(manifests)
           .where(manifests.c.repository_id == select(repositories.c.id)
                  .where(repositories.c.name == bindparam("repo")).scalar_subquery(),
                  manifests.c.digest == bindparam("d"))
           .values(last_pulled_at=bindparam("at")))


async def record_pulls(conn: Connection, pulled: dict[tuple[str, str], float]) -> None:
    """{(repository, manifest digest): when} -> manifests.last_pulled_at."""
    if pulled:
        await conn.execute(_PULLED, [{"repo": repo, "d": digest, "at": at} for (repo, digest), at in pulled.items()])


async def lock_manifest(conn: Connection, repository_id: int, digest: str) -> bool:
    """Lock the manifest's row for this transaction (PostgreSQL; SQLite's writes are exclusive anyway);
    False when the repository has no such manifest."""
    found = await conn.execute(_ID.with_for_update(), {"repository_id": repository_id, "digest": digest})
    return found.scalar() is not None


async def delete_manifest(conn: Connection, repository_id: int, digest: str) -> bool:
    """Delete a manifest; its tags and reference rows go with it (ON DELETE CASCADE)."""
    manifest_id = (await conn.execute(select(manifests.c.id).where(
        manifests.c.repository_id == repository_id, manifests.c.digest == digest))).scalar()
    if manifest_id is None:
        return False
    await conn.execute(delete(tags).where(tags.c.manifest_id == manifest_id))
    await conn.execute(delete(manifest_references).where(manifest_references.c.manifest_id == manifest_id))
    await conn.execute(delete(manifests).where(manifests.c.id == manifest_id))
    return True


class Referrer(NamedTuple):
    """A referrer as the listing needs it, straight from the manifest's columns (no payload parsed)."""
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations_json: str | None  # the column's text: json.dumps of a non-empty object, as written

    @property
    def annotations(self) -> dict[str, str] | None:
        return json.loads(self.annotations_json) if self.annotations_json else None


_REFERRERS = (select(manifests.c.digest, manifests.c.media_type, manifests.c.size, manifests.c.artifact_type,
                      manifests.c.annotations)
              .select_from(manifests.join(repositories, repositories.c.id == manifests.c.repository_id))
              .where(repositories.c.name == bindparam("repository"),
                     manifests.c.subject_digest == bindparam("subject"))
              .order_by(manifests.c.created_at, manifests.c.id))
_REFERRERS_OF_TYPE = _REFERRERS.where(manifests.c.artifact_type == bindparam("artifact_type"))


async def referrers(conn: Connection, repository: str, subject: str,
                    artifact_type: str | None) -> list[Referrer]:
    # A subject may have a thousand referrers: one statement built once, the rows fetched at once and
    # unpacked into tuples, no JSON parsed.
    params = {"repository": repository, "subject": subject}
    if artifact_type is None:
        result = await conn.execute(_REFERRERS, params)
    else:
        result = await conn.execute(_REFERRERS_OF_TYPE, {**params, "artifact_type": artifact_type})
    return [Referrer(*row) for row in result.all()]
