"""Users and robot accounts."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update

from registry.metadata.db import Connection
from registry.metadata.schema import robots, users


@dataclass(frozen=True, slots=True)
class UserRow:
    name: str
    password_hash: str
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RobotRow:
    name: str
    secret_hash: str
    repositories: tuple[str, ...]
    actions: tuple[str, ...]
    expires_at: float | None


def _split(value: str) -> tuple[str, ...]:
    return tuple(item for item in value.split(",") if item)


async def get_user(conn: Connection, name: str) -> UserRow | None:
    row = (await conn.execute(select(users).where(users.c.name == name))).first()
    return UserRow(row.name, row.password_hash, _split(row.groups)) if row else None


async def list_users(conn: Connection) -> list[UserRow]:
    rows = await conn.execute(select(users).order_by(users.c.name))
    return [UserRow(r.name, r.password_hash, _split(r.groups)) for r in rows]


async def put_user(conn: Connection, name: str, password_hash: str, groups: list[str]) -> bool:
    """Create or update; True when the user is new."""
    now = time.time()
    values = {"password_hash": password_hash, "groups": ",".join(groups), "updated_at": now}
    if (await conn.execute(update(users).where(users.c.name == name).values(**values))).rowcount:
        return False
    await conn.execute(insert(users).values(name=name, created_at=now, **values))
    return True


async def set_password(conn: Connection, name: str, password_hash: str) -> bool:
    result = await conn.execute(update(users).where(users.c.name == name)
                                .values(password_hash=password_hash, updated_at=time.time()))
    return result.rowcount > 0


async def delete_user(conn: Connection, name: str) -> bool:
    return (await conn.execute(delete(users).where(users.c.name == name))).rowcount > 0


async def get_robot(conn: Connection, name: str) -> RobotRow | None:
    row = (await conn.execute(select(robots).where(robots.c.name == name))).first()
    return _robot(row) if row else None


def _robot(row) -> RobotRow:
    return RobotRow(row.name, row.secret_hash, _split(row.repositories), _split(row.actions), row.expires_at)


async def list_robots(conn: Connection) -> list[RobotRow]:
    return [_robot(r) for r in await conn.execute(select(robots).order_by(robots.c.name))]


async def put_robot(conn: Connection, name: str, secret_hash: str, repositories: list[str], actions: list[str],
                    expires_at: float | None) -> None:
    await conn.execute(delete(robots).where(robots.c.name == name))
    await conn.execute(insert(robots).values(name=name, secret_hash=secret_hash, repositories=",".join(repositories),
                                             actions=",".join(actions), expires_at=expires_at,
                                             created_at=time.time()))


async def delete_robot(conn: Connection, name: str) -> bool:
    return (await conn.execute(delete(robots).where(robots.c.name == name))).rowcount > 0
