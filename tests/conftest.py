"""Shared fixtures: the registry started once per session as a real process on loopback, and the
check after every test that no registry process logged a traceback."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from tests.support.logcheck import LogWatch
from tests.support.server import RegistryProcess

pytest_plugins = ["tests.support.pytest_postgres", "tests.support.pytest_swift", "tests.support.pytest_netlab",
                  "tests.support.pytest_slapd"]


_LOGS = LogWatch()


@pytest.fixture(autouse=True)
def server_logs_hold_no_traceback() -> Iterator[None]:
    """Every test: no registry process (tests/support/server.py RegistryProcess) logged a traceback or
    an unhandled error. Checked from where the previous check stopped, so what module and session
    fixtures did between two tests counts as well (and is named in the failure)."""
    yield
    problems = _LOGS.problems()
    if problems:
        pytest.fail("a registry process logged tracebacks or unhandled errors:\n" + "\n".join(problems),
                    pytrace=False)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """One registry process (SQLite + filesystem) shared by the whole session."""
    root = tmp_path_factory.mktemp("registry")
    with RegistryProcess(root / "data") as server:
        yield server


@pytest.fixture
def client(registry: RegistryProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=60) as http:
        yield http


@pytest.fixture
def fresh_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """A registry of its own, for tests that kill, restart or inspect the store."""
    with RegistryProcess(tmp_path / "data") as server:
        yield server
