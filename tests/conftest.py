"""Shared fixtures: the registry started once per session as a real process on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.support.server import RegistryProcess

pytest_plugins = ["tests.support.pytest_postgres", "tests.support.pytest_swift", "tests.support.pytest_netlab"]


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
