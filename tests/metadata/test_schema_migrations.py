"""The migrations build exactly the schema the code declares (registry/metadata/schema.py), on SQLite and on
PostgreSQL: a column added to one and not the other fails here, not on an operator's upgrade."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from registry.metadata.db import migrate
from registry.metadata.schema import metadata


def _differences(url: str) -> list[object]:
    async def compare() -> list[object]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata))
        finally:
            await engine.dispose()
    return asyncio.run(compare())


def test_sqlite_migrations_match_the_schema(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/registry.db"
    migrate(url)
    assert _differences(url) == []


def test_postgresql_migrations_match_the_schema(postgres_url: str) -> None:
    migrate(postgres_url)
    assert _differences(postgres_url) == []
