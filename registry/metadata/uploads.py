"""Upload sessions: which repository an upload belongs to and how far it has come."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, update

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


_DELETE = delete(uploads).where(uploads.c.id == bindparam("upload_id"))


async def delete_upload(conn: Connection, upload_id: str) -> bool:
    return (await conn.execute(_DELETE, {"upload_id": upload_id})).rowcount > 0
