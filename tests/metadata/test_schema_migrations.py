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


def test_sqlite_has_the_expression_index_alembic_cannot_compare(tmp_path: Path) -> None:
    """compare_metadata skips expression indexes on SQLite (it cannot reflect them): check the
    eviction-order index of migration 0009 by its SQL instead."""
    import sqlite3

    url = f"sqlite+aiosqlite:///{tmp_path}/registry.db"
    migrate(url)
    with sqlite3.connect(tmp_path / "registry.db") as db:
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'ix_repository_blobs_recency'").fetchone()
        plan = " ".join(row[3] for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT digest FROM repository_blobs "
            "ORDER BY coalesce(last_pulled_at, created_at), digest LIMIT 10"))
    assert "coalesce(last_pulled_at, created_at), digest" in sql.lower()
    assert "ix_repository_blobs_recency" in plan and "TEMP B-TREE" not in plan


def test_the_head_revision_is_alembics_and_an_up_to_date_sqlite_is_left_alone(tmp_path, monkeypatch) -> None:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from registry.metadata import db as db_module

    config = AlembicConfig(str(db_module.MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(db_module.MIGRATIONS_DIR))
    assert db_module.head_revision() == ScriptDirectory.from_config(config).get_current_head()

    url = f"sqlite+aiosqlite:///{tmp_path / 'odd #?% dir' / 'registry.db'}"
    migrate(url)  # a new database: migrated
    import alembic.command
    calls: list[object] = []
    monkeypatch.setattr(alembic.command, "upgrade", lambda *args: calls.append(args))
    migrate(url)  # at head already: Alembic is not asked
    assert calls == []
    migrate(url, "0007")  # an explicit revision always goes to Alembic
    assert len(calls) == 1
