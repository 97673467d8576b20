"""Faults in the parts a scaled-out registry stands on: the S3 server and PostgreSQL.

The S3 server stopped mid-upload gives the client an error (fast, not a hang) and commits
nothing; restarted, the push succeeds. Wrong credentials are a clear error. PostgreSQL
restarted: the registry recovers without a restart of its own. Through all of it `/v2/` answers.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from tests.support.backends import postgres_s3_registry
from tests.support.postgres import PostgresServer
from tests.support.server import RegistryProcess


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _error(response: httpx.Response) -> str:
    return response.json()["errors"][0]["code"]


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path / "pg").start()
    yield server
    server.stop()


def test_s3_stopped_mid_upload_then_restarted(tmp_path, postgres, swift_s3_factory):
    s3 = swift_s3_factory()
    with postgres_s3_registry(tmp_path / "data", postgres, s3) as registry, \
            httpx.Client(base_url=registry.url, timeout=60) as http:
        repo = f"faults/{uuid.uuid4().hex[:6]}"
        data = os.urandom(9 * 1024 * 1024)
        location = http.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
        first = 6 * 1024 * 1024
        assert http.patch(location, content=data[:first], headers={"Content-Range": f"0-{first - 1}"}).status_code == 202

        s3.stop_proxy()
        started = time.monotonic()
        cut = http.patch(location, content=data[first:], headers={"Content-Range": f"{first}-{len(data) - 1}"})
        assert cut.status_code == 503 and _error(cut) == "UNAVAILABLE", cut.text
        assert "Retry-After" in cut.headers
        assert time.monotonic() - started < 30, "an unreachable S3 must fail fast, not hang"
        failed_put = http.put(location, params={"digest": _sha(data)})
        assert failed_put.status_code == 503
        assert http.get("/v2/").status_code == 200
        assert http.head(f"/v2/{repo}/blobs/{_sha(data)}").status_code == 404

        s3.start_proxy()
        status = http.get(location)
        assert status.status_code == 204 and status.headers["Range"] == f"0-{first - 1}"
        resumed = http.patch(location, content=data[first:], headers={"Content-Range": f"{first}-{len(data) - 1}"})
        assert resumed.status_code == 202, resumed.text
        done = http.put(location, params={"digest": _sha(data)})
        assert done.status_code == 201, done.text
        assert http.get(f"/v2/{repo}/blobs/{_sha(data)}").content == data
        assert registry.storage.blob_bytes(_sha(data)) == data


def test_wrong_s3_credentials_are_a_clear_error(tmp_path, postgres, swift_s3):
    registry = postgres_s3_registry(tmp_path / "data", postgres, swift_s3,
                                    env={"REGISTRY_STORAGE_S3_SECRET_KEY": "not-the-secret"})
    with registry, httpx.Client(base_url=registry.url, timeout=60) as http:
        assert http.get("/v2/").status_code == 200
        response = http.post("/v2/faults/creds/blobs/uploads/")
        assert response.status_code == 503
        assert "credentials" in response.json()["errors"][0]["message"]


def test_postgres_restart_is_survived_without_restarting_the_registry(tmp_path, own_postgres):
    registry = RegistryProcess(tmp_path / "data", env={"REGISTRY_DATABASE_URL": own_postgres.create_database()})
    with registry, httpx.Client(base_url=registry.url, timeout=30) as http:
        pid = registry.pid
        data = os.urandom(1000)
        assert http.post("/v2/faults/pg/blobs/uploads/", params={"digest": _sha(data)}, content=data).status_code == 201

        own_postgres.stop(keep_data=True)
        down = http.post("/v2/faults/pg/blobs/uploads/")
        assert down.status_code == 503 and _error(down) == "UNAVAILABLE", down.text
        assert http.get("/v2/").status_code == 200

        own_postgres.start()
        more = os.urandom(1000)
        pushed = http.post("/v2/faults/pg/blobs/uploads/", params={"digest": _sha(more)}, content=more)
        assert pushed.status_code == 201, pushed.text
        assert http.get(f"/v2/faults/pg/blobs/{_sha(data)}").content == data
        assert registry.pid == pid and registry.proc.poll() is None
