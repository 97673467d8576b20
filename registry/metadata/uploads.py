"""Upload sessions: which repository an upload belongs to and how far it has come."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, or_, select, update

from registry.metadata.db import Connection
from registry.metadata.schema import repositories, uploads


@dataclass(frozen=True, slots=True)
class UploadRow:
    id: str
    repository: str
    size: int
    created_at: float


# Statements are built once: constructing one per call costs more than SQLite running it.
_CREATE = insert(uploads)


async def create_upload(conn: Connection, upload_id: str, repository_id: int) -> None:
    now = time.time()
    await conn.execute(_CREATE, {"id": upload_id, "repository_id": repository_id, "size": 0,
                                 "created_at": now, "updated_at": now})


_GET = (select(uploads.c.id, repositories.c.name, uploads.c.size, uploads.c.created_at)
        .select_from(uploads.join(repositories, repositories.c.id == uploads.c.repository_id))
        .where(uploads.c.id == bindparam("upload_id")))


async def get_upload(conn: Connection, upload_id: str) -> UploadRow | None:
    row = (await conn.execute(_GET, {"upload_id": upload_id})).first()
    return UploadRow(row.id, row.name, row.size, row.created_at) if row else None


_SET_SIZE = (update(uploads).where(uploads.c.id == bindparam("upload_id"))
             .values(size=bindparam("new_size"), updated_at=bindparam("now")))


async def set_upload_size(conn: Connection, upload_id: str, size: int) -> None:
    await conn.execute(_SET_SIZE, {"upload_id": upload_id, "new_size": size, "now": time.time()})


_TAKE_LEASE = (update(uploads)
               .where(uploads.c.id == bindparam("upload_id"),
                      or_(uploads.c.lease_owner.is_(None), uploads.c.lease_owner == bindparam("owner"),
                          uploads.c.lease_expires < bindparam("now")))
               .values(lease_owner=bindparam("owner"), lease_expires=bindparam("expires")))
_TAKE_LEASE_IN_REPOSITORY = _TAKE_LEASE.where(
    uploads.c.repository_id == select(repositories.c.id)
    .where(repositories.c.name == bindparam("repository")).scalar_subquery())


async def take_lease(conn: Connection, upload_id: str, owner: str, seconds: float,
                     repository: str | None = None) -> bool:
    """Claim (or extend) the upload's write lease; False while another owner holds a live one,
    and also when the upload does not exist (or, given `repository`, belongs to another one)."""
    now = time.time()
    params = {"upload_id": upload_id, "owner": owner, "now": now, "expires": now + seconds}
    if repository is None:
        return (await conn.execute(_TAKE_LEASE, params)).rowcount == 1
    return (await conn.execute(_TAKE_LEASE_IN_REPOSITORY, {**params, "repository": repository})).rowcount == 1


_RELEASE_LEASE = (update(uploads)
                  .where(uploads.c.id == bindparam("upload_id"), uploads.c.lease_owner == bindparam("owner"))
                  .values(lease_owner=None, lease_expires=None))


async def release_lease(conn: Connection, upload_id: str, owner: str) -> None:
    await conn.execute(_RELEASE_LEASE, {"upload_id": upload_id, "owner": owner})


_DELETE = delete(uploads).where(uploads.c.id == bindparam("upload_id"))


async def delete_upload(conn: Connection, upload_id: str) -> bool:
    return (await conn.execute(_DELETE, {"upload_id": upload_id})).rowcount > 0
