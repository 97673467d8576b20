"""The API suite runs against each set-up: the embedded default and PostgreSQL + S3."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.backends import SETUPS, postgres_s3_registry
from tests.support.server import RegistryProcess


@pytest.fixture(scope="session", params=SETUPS)
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    root = tmp_path_factory.mktemp(request.param.replace("+", "-"))
    if request.param == "sqlite+filesystem":
        server = RegistryProcess(root / "data")
    else:
        server = postgres_s3_registry(root / "data", request.getfixturevalue("postgres"),
                                      request.getfixturevalue("swift_s3"))
    with server:
        yield server
