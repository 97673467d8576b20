"""Maintenance around gc: expired upload sessions purged (S3 multipart uploads too), schedules,
and the admin endpoints' errors."""

from __future__ import annotations

import os
import time

import httpx

from tests.api.helpers import assert_error, path_of, start_upload
from tests.gc.conftest import run_job
from tests.support.storage_view import S3View


def _multipart_uploads(view) -> list[str]:
    if not isinstance(view, S3View):
        return []
    listed = view.client.list_multipart_uploads(Bucket=view.bucket, Prefix=f"{view.prefix}uploads/")
    return [item["Key"] for item in listed.get("Uploads", [])]


def test_expired_upload_sessions_and_their_staging_are_purged(make_registry):
    server = make_registry(gc_upload_expiry="1")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        stale = path_of(start_upload(http, "uploads/app").headers["Location"])
        assert http.patch(stale, content=os.urandom(6 * 1024 * 1024)).status_code == 202  # S3: a multipart part
        stale_id = stale.rstrip("/").rsplit("/", 1)[1]
        assert server.storage.staging_exists(stale_id)
        time.sleep(1.5)
        fresh = path_of(start_upload(http, "uploads/app").headers["Location"])
        fresh_id = fresh.rstrip("/").rsplit("/", 1)[1]

        dry = run_job(http, "gc", dry_run=True)
        assert [i["id"] for i in dry["items"] if i["type"] == "upload"] == [stale_id]
        real = run_job(http, "gc")
        assert [i["id"] for i in real["items"] if i["type"] == "upload"] == [stale_id]
        assert not server.storage.staging_exists(stale_id)
        assert not [key for key in _multipart_uploads(server.storage) if stale_id in key]
        assert_error(http.patch(stale, content=b"more"), 404, "BLOB_UPLOAD_UNKNOWN")
        # The young session is untouched and still finishes.
        assert server.storage.staging_exists(fresh_id)
        assert http.get(fresh).status_code == 204


def test_scheduled_gc_runs_and_leaves_its_report(fresh_registry):
    fresh_registry.stop()
    fresh_registry.env = {"REGISTRY_GC_INTERVAL": "1"}
    fresh_registry.start()
    with httpx.Client(base_url=fresh_registry.url, timeout=60) as http:
        deadline = time.monotonic() + 20
        while (response := http.get("/admin/api/gc")).status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert response.status_code == 200 and response.json()["dry_run"] is False


def test_admin_maintenance_errors(client):
    assert_error(client.get("/admin/api/nothing"), 404, "NOT_FOUND")
    assert_error(client.post("/admin/api/gc", content=b"{not json"), 400, "UNSUPPORTED")
    assert_error(client.post("/admin/api/gc", json=[1]), 400, "UNSUPPORTED")
    assert_error(client.post("/admin/api/gc", json={"dry_run": "yes"}), 400, "UNSUPPORTED")
    assert_error(client.post("/admin/api/fsck", json={"sample": -1}), 400, "UNSUPPORTED")
    assert_error(client.post("/admin/api/compact", json={}), 404, "NOT_FOUND")
    assert client.post("/admin/api/gc", json={"dry_run": True}).json()["dry_run"] is True
