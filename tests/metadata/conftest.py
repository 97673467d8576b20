"""Fixtures of the metadata tests: a database the migrations made, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.metadata.db import migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    migrate(url)
    return url
