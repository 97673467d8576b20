"""Fixtures for the in-process tests: the application create_app builds from a Config made the way
`registry serve` makes one (registry/settings.py, here from REGISTRY_* variables), over a temp data
dir with SQLite and the filesystem store, served by pytest-aiohttp on loopback.

The schema is migrated once per session and its file copied into each test's data dir (Alembic takes
~60 ms a database, the copy well under one). What the applications log at WARNING and above goes to
a file that tests/conftest.py's autouse check reads after every test, as it reads a real process's log.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping

import pytest
import pytest_asyncio
from pytest_aiohttp import AiohttpClient, AiohttpServer

from registry.admin.access import ACCESS_LOGGER, AccessLogger
from registry.app import create_app
from registry.config import Config
from registry.metadata.db import migrate
from registry.settings import load
from tests.inproc.helpers import Client
from tests.support.server import SERVER_LOGS

MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture(scope="session")
def app_log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file for what the in-process applications log, among the logs tests/conftest.py checks."""
    path = tmp_path_factory.mktemp("inproc-log") / "registry-inproc.log"
    SERVER_LOGS.append(path)
    return path


@pytest.fixture(autouse=True)
def app_log(app_log_path: Path) -> Iterator[Path]:
    """During each test here (set-up and clean-up of its applications included), warnings and errors
    logged in this process go to that file. Only during these tests: other tests log errors on purpose."""
    handler = logging.FileHandler(app_log_path)
    handler.setLevel(logging.WARNING)
    # The check (tests/support/logcheck.py) tells records apart by a leading date.
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield app_log_path
    finally:
        root.removeHandler(handler)
        handler.close()


@pytest.fixture(scope="session")
def migrated_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty registry database at the schema's head revision, to copy."""
    data_dir = tmp_path_factory.mktemp("inproc-schema")
    config = load(environ={"REGISTRY_DATA_DIR": str(data_dir)})
    migrate(config.database_url)
    return data_dir / "registry.db"


def make_config(data_dir: Path, environ: Mapping[str, str] = {}) -> Config:
    """A Config as `registry serve` loads it from its environment, checks included: the defaults
    (SQLite, filesystem store) with the data dir and any REGISTRY_* variables given."""
    return load(environ={"REGISTRY_DATA_DIR": str(data_dir), **environ})


@pytest_asyncio.fixture
async def make_client(tmp_path: Path, migrated_schema: Path, aiohttp_server: AiohttpServer,
                      aiohttp_client: AiohttpClient) -> AsyncIterator[MakeClient]:
    """make_client(**options): a client of a fresh application over a data dir of its own; each keyword
    is an option's REGISTRY_ variable without the prefix, in lower case (auth_mode="basic")."""
    made = 0

    async def make(**environ: str) -> Client:
        nonlocal made
        made += 1
        data_dir = tmp_path / f"data-{made}"
        data_dir.mkdir()
        shutil.copy(migrated_schema, data_dir / "registry.db")
        app = create_app(make_config(data_dir, {f"REGISTRY_{k.upper()}": v for k, v in environ.items()}))
        # The access logger `registry serve` runs with (registry/server.py): metrics and access lines too.
        server = await aiohttp_server(app, access_log_class=AccessLogger, access_log=ACCESS_LOGGER)
        return await aiohttp_client(server)

    yield make


@pytest_asyncio.fixture
async def api(make_client: MakeClient) -> Client:
    """A client of an application with the defaults: auth mode none, loopback may push and administer."""
    return await make_client()
