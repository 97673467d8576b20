"""pytest plugin: a PostgreSQL server for the session.

Register with ``pytest_plugins = ["tests.support.pytest_postgres"]`` in tests/conftest.py (or
``-p tests.support.pytest_postgres``). Fixtures:

- ``postgres`` (session): a running :class:`PostgresServer` on 127.0.0.1, stopped and deleted at the
  end. Use ``postgres.create_database(name)`` for a SQLAlchemy async URL. Do not stop or restart it
  from a test: fault tests start a ``PostgresServer`` of their own.
- ``postgres_url`` (function): a fresh, empty database on that server, dropped after the test.
- ``database_url`` (function, twice): a migrated database private to the test, on SQLite, then on
  PostgreSQL: for the query modules' tests, which must hold on both.

If PostgreSQL cannot be started, the tests that use these fixtures fail (they are never skipped)
with a message saying how to install it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.metadata.db import migrate
from tests.support.postgres import INSTALL_HINT, PostgresServer, PostgresUnavailable


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    problem = None
    try:
        server.start()
    except PostgresUnavailable as exc:
        problem = f"PostgreSQL is required for this test and is not available: {exc}"
    except Exception as exc:  # noqa: BLE001 - initdb / pg_ctl failed: show why
        server.stop()
        problem = f"could not start PostgreSQL for the test session: {exc}\n\n{INSTALL_HINT}"
    if problem is not None:  # outside the except block, so the report is not a chained traceback
        pytest.fail(problem, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """SQLAlchemy async URL (postgresql+asyncpg://...) of an empty database private to this test."""
    url = postgres.create_database()
    name = url.rsplit("/", 1)[1]
    yield url
    postgres.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database the migrations made, private to this test: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    migrate(url)
    return url
