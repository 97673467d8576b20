"""pytest plugin: an S3 server (OpenStack Swift + s3api on loopback, tests/support/swift.py).

Register with ``pytest_plugins = ["tests.support.pytest_swift"]`` in tests/conftest.py (or
``-p tests.support.pytest_swift``); tests/storage/conftest.py re-exports these fixtures while it
is not registered. Fixtures:

- ``swift_s3`` (session): a running :class:`SwiftS3`. Its endpoint_url, access_key, secret_key and
  region go to any S3 client; ``swift_s3.client()`` is a boto3 client. Do not stop or restart it
  from a test: fault tests start one of their own (``swift_s3_factory``).
- ``s3_client`` (session): a boto3 S3 client for ``swift_s3``.
- ``s3_bucket`` (function): the name of a new, empty bucket private to the test.
- ``swift_s3_factory`` (function): ``swift_s3_factory(**kwargs)`` starts another SwiftS3 (own
  ports and data; kwargs as SwiftS3's) and stops it after the test.

If Swift cannot start, the tests that use these fixtures fail (they are never skipped) with what
is missing and how to get it (``scripts/swift-venv``).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import pytest

from tests.support.swift import SETUP_SCRIPT, SwiftS3, SwiftUnavailable, supports_user_xattrs, xattr_tempdir


def _base_dir(tmp_path: Path) -> tuple[Path, Path | None]:
    """`tmp_path` when it takes user xattrs, else a new dir under /var/tmp (returned for cleanup)."""
    if supports_user_xattrs(tmp_path):
        return tmp_path, None
    base = xattr_tempdir()
    return base, base


def _start(server: SwiftS3) -> None:
    problem = None
    try:
        server.start()
    except SwiftUnavailable as exc:
        problem = f"an S3 server (OpenStack Swift + s3api) is required and is not available: {exc}"
    except Exception as exc:  # noqa: BLE001 - the servers did not come up: the message carries their logs
        server.stop()
        problem = (f"could not start OpenStack Swift for the tests: {exc}\n\n"
                   f"If its virtualenv is broken, recreate it: rm -rf {server.venv} && {SETUP_SCRIPT}")
    if problem is not None:  # outside the except block, so the report is not a chained traceback
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def swift_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwiftS3]:
    """Swift + s3api for the whole session (test:tester / testing, us-east-1, path-style)."""
    base, cleanup = _base_dir(tmp_path_factory.mktemp("swift"))
    server = SwiftS3(base)
    try:
        _start(server)
        yield server
    finally:
        server.stop()
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_client(swift_s3: SwiftS3) -> Any:
    """A boto3 S3 client for swift_s3."""
    return swift_s3.client()


@pytest.fixture
def s3_bucket(swift_s3: SwiftS3) -> str:
    """A new, empty bucket of swift_s3, private to the test."""
    name = f"test-{uuid.uuid4().hex[:24]}"
    swift_s3.create_bucket(name, exist_ok=False)
    return name


@pytest.fixture
def swift_s3_factory(tmp_path: Path) -> Iterator[Callable[..., SwiftS3]]:
    """make(**SwiftS3 kwargs) -> another running SwiftS3, for tests that stop, kill or restart it."""
    started: list[tuple[SwiftS3, Path | None]] = []

    def make(**kwargs: Any) -> SwiftS3:
        path = tmp_path / f"swift-{len(started)}"
        path.mkdir()
        base, cleanup = _base_dir(path)
        server = SwiftS3(base, **kwargs)
        started.append((server, cleanup))
        _start(server)
        return server

    try:
        yield make
    finally:
        for server, cleanup in started:
            server.stop()
            if cleanup is not None:
                shutil.rmtree(cleanup, ignore_errors=True)
