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


async def create_upload(conn: Connection, upload_id: str, repository_id: int) -> None:
    now = time.time()
    await conn.execute(insert(uploads).values(id=upload_id, repository_id=repository_id, size=0,
                                              created_at=now, updated_at=now))


_GET = (select(uploads.c.id, repositories.c.name, uploads.c.size, uploads.c.created_at)
        .select_from(uploads.join(repositories, repositories.c.id == uploads.c.repository_id))
        .where(uploads.c.id == bindparam("upload_id")))


async def get_upload(conn: Connection, upload_id: str) -> UploadRow | None:
    row = (await conn.execute(_GET, {"upload_id": upload_id})).first()
    return UploadRow(row.id, row.name, row.size, row.created_at) if row else None


async def set_upload_size(conn: Connection, upload_id: str, size: int) -> None:
    await conn.execute(update(uploads).where(uploads.c.id == upload_id)
                       .values(size=size, updated_at=time.time()))


async def take_lease(conn: Connection, upload_id: str, owner: str, seconds: float) -> bool:
    """Claim (or extend) the upload's write lease; False while another owner holds a live one."""
    now = time.time()
    result = await conn.execute(
        update(uploads)
        .where(uploads.c.id == upload_id,
               or_(uploads.c.lease_owner.is_(None), uploads.c.lease_owner == owner, uploads.c.lease_expires < now))
        .values(lease_owner=owner, lease_expires=now + seconds))
    return result.rowcount == 1


async def release_lease(conn: Connection, upload_id: str, owner: str) -> None:
    await conn.execute(update(uploads).where(uploads.c.id == upload_id, uploads.c.lease_owner == owner)
                       .values(lease_owner=None, lease_expires=None))


async def delete_upload(conn: Connection, upload_id: str) -> bool:
    return (await conn.execute(delete(uploads).where(uploads.c.id == upload_id))).rowcount > 0
