"""/healthz and /readyz (issue 8): readiness follows the database and the blob store down and back up.

Real parts only: PostgreSQL stopped and started with pg_ctl, the S3 endpoint (Swift's proxy)
stopped, restarted and frozen (SIGSTOP: connections accepted, never answered), and a filesystem
store whose directory disappears. /healthz never looks at any of them.
"""

from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from tests.auth.conftest import AuthRegistry
from tests.support.backends import postgres_s3_registry
from tests.support.postgres import PostgresServer
from tests.support.server import RegistryProcess

READY_TIMEOUT = 2.0  # registry/api/health.py
SETTLE = 20.0  # seconds a restarted dependency may take before the registry sees it again


def _readyz(http: httpx.Client) -> httpx.Response:
    started = time.monotonic()
    response = http.get("/readyz")
    elapsed = time.monotonic() - started
    assert elapsed < READY_TIMEOUT + 2, f"/readyz took {elapsed:.1f}s: it must never hang"
    assert response.headers["Content-Type"].startswith("application/json")
    return response


def _until(http: httpx.Client, status: int) -> dict:
    """Poll /readyz until it answers `status`; its body then."""
    deadline = time.monotonic() + SETTLE
    while True:
        response = _readyz(http)
        if response.status_code == status:
            return response.json()
        if time.monotonic() > deadline:
            pytest.fail(f"/readyz still {response.status_code} after {SETTLE}s: {response.text}")
        time.sleep(0.2)


def _assert_healthy(http: httpx.Client) -> None:
    response = http.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path / "pg").start()
    yield server
    server.stop()


def test_ready_and_healthy_on_the_embedded_setup(fresh_registry: RegistryProcess):
    with httpx.Client(base_url=fresh_registry.url, timeout=30) as http:
        _assert_healthy(http)
        assert http.head("/healthz").status_code == 200
        ready = _readyz(http)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok"}}
        assert ready.headers["Cache-Control"] == "no-store"


def test_filesystem_store_gone_then_back(fresh_registry: RegistryProcess):
    blobs = fresh_registry.data_dir / "blobs"
    with httpx.Client(base_url=fresh_registry.url, timeout=30) as http:
        _until(http, 200)
        blobs.rename(blobs.with_name("blobs.away"))  # as a lost mount would leave it
        try:
            body = _until(http, 503)
            assert body["status"] == "unready"
            assert body["checks"]["database"] == "ok" and body["checks"]["storage"].startswith("down")
            _assert_healthy(http)
        finally:
            blobs.with_name("blobs.away").rename(blobs)
        assert _until(http, 200)["checks"] == {"database": "ok", "storage": "ok"}
    assert "readiness: storage is down" in fresh_registry.log_tail(200)


def test_postgres_stopped_then_started(tmp_path, own_postgres, swift_s3):
    with postgres_s3_registry(tmp_path / "data", own_postgres, swift_s3) as registry, \
            httpx.Client(base_url=registry.url, timeout=30) as http:
        _until(http, 200)
        own_postgres.stop(keep_data=True)  # pg_ctl stop -m fast
        body = _until(http, 503)
        assert body["checks"]["database"].startswith("down") and body["checks"]["storage"] == "ok"
        _assert_healthy(http)
        own_postgres.start()
        assert _until(http, 200)["checks"] == {"database": "ok", "storage": "ok"}


def test_s3_stopped_frozen_and_back(tmp_path, postgres, swift_s3_factory):
    s3 = swift_s3_factory()
    with postgres_s3_registry(tmp_path / "data", postgres, s3) as registry, \
            httpx.Client(base_url=registry.url, timeout=30) as http:
        _until(http, 200)
        s3.stop_proxy()  # connection refused
        body = _until(http, 503)
        assert body["checks"]["storage"].startswith("down") and body["checks"]["database"] == "ok"
        _assert_healthy(http)
        s3.start_proxy()
        _until(http, 200)

        s3.pause_proxy()  # accepts connections, never answers: the check must time out, not hang
        try:
            body = _until(http, 503)
            assert body["checks"]["storage"] == f"down: no answer within {READY_TIMEOUT:g}s"
            # Many probes while it hangs still answer in time (they share one check).
            for _ in range(5):
                assert _readyz(http).status_code == 503
            _assert_healthy(http)
        finally:
            s3.resume_proxy()
        _until(http, 200)


def test_probes_need_no_credentials(tmp_path):
    with AuthRegistry(tmp_path / "data", ["--auth-mode", "token"]) as registry, registry.client() as http:
        assert http.get("/v2/").status_code == 401
        _assert_healthy(http)
        assert _readyz(http).status_code == 200

