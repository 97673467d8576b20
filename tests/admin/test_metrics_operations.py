"""The metrics an operator alerts on, beyond request counts: requests in flight, how long the storage backend
takes, authentication refusals by reason, database pool use, and when gc, retention and fsck last ran;
with Distribution's names and labels (`handler`, `code`) where the meaning is the same."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from tests.admin.test_metrics import delta, scrape, value
from tests.api.helpers import push_image
from tests.auth.conftest import AuthRegistry, write_htpasswd
from tests.support.server import RegistryProcess


def test_distribution_handler_names_and_codes(server: RegistryProcess) -> None:
    before = scrape(server.url)
    with httpx.Client(base_url=server.url) as client:
        client.get("/v2/")
        client.get("/v2/metrics-names/app/manifests/none")
        client.get("/v2/_catalog")
    after = scrape(server.url)
    assert delta(before, after, "registry_http_requests_total", handler="base", method="GET", code="200") == 1
    assert delta(before, after, "registry_http_requests_total", handler="manifest", method="GET", code="404") == 1
    assert delta(before, after, "registry_http_requests_total", handler="catalog", code="200") == 1
    assert delta(before, after, "registry_http_request_duration_seconds_count", handler="base", method="GET") == 1


def test_a_request_is_in_flight_until_its_last_byte(server: RegistryProcess) -> None:
    host, port = server.host.split(":")
    with socket.create_connection((host, int(port))) as sock:
        # An upload whose body is still coming: in flight until it is answered.
        sock.sendall(b"POST /v2/flight/app/blobs/uploads/?digest=sha256:" + b"0" * 64 + b" HTTP/1.1\r\n"
                     b"Host: x\r\nContent-Length: 10\r\n\r\n12345")
        deadline = time.monotonic() + 10
        while value(scrape(server.url), "registry_http_in_flight_requests", handler="blob_upload") < 1:
            assert time.monotonic() < deadline, "the upload never showed in flight"
            time.sleep(0.05)
        sock.sendall(b"67890")
        assert b" 400 " in sock.recv(4096).split(b"\r\n")[0]  # the digest is wrong: refused, answered
    deadline = time.monotonic() + 10
    while value(scrape(server.url), "registry_http_in_flight_requests", handler="blob_upload") != 0:
        assert time.monotonic() < deadline, "the answered upload stayed in flight"
        time.sleep(0.05)


def test_storage_actions_are_timed(server: RegistryProcess) -> None:
    before = scrape(server.url)
    with httpx.Client(base_url=server.url) as client:
        pushed = push_image(client, "metrics-storage/app", "1")
        for digest in pushed.blobs:
            assert client.get(f"/v2/metrics-storage/app/blobs/{digest}").status_code == 200
    after = scrape(server.url)
    seen = {dict(series)["action"] for (name, series), _ in after.items()
            if name == "registry_storage_action_seconds_count"}
    for action in ("start_upload", "commit_upload"):
        assert delta(before, after, "registry_storage_action_seconds_count", driver="filesystem",
                     action=action) >= 1, (action, seen)
    assert delta(before, after, "registry_storage_action_seconds_sum", driver="filesystem", action="commit_upload") > 0


def test_auth_refusals_by_reason_and_the_database_pool(tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "right"})
    env = {"REGISTRY_AUTH_MODE": "basic", "REGISTRY_AUTH_HTPASSWD": str(htpasswd)}
    with AuthRegistry(tmp_path / "data", env=env) as server, httpx.Client(base_url=server.url) as client:
        before = scrape(server.url)
        assert client.get("/v2/").status_code == 401  # no credentials: how every client starts, not a failure
        assert client.get("/v2/", auth=("alice", "wrong")).status_code == 401
        assert client.get("/v2/", headers={"Authorization": "Basic !!!"}).status_code == 401
        assert client.post("/admin/api/gc", auth=("alice", "right")).status_code == 403  # not an admin
        after = scrape(server.url)
        assert delta(before, after, "registry_auth_failures_total", reason="bad_credentials") == 1
        assert delta(before, after, "registry_auth_failures_total", reason="malformed") == 1
        assert delta(before, after, "registry_auth_failures_total", reason="denied") == 1
        assert sum(delta(before, after, "registry_auth_failures_total", reason=r)
                   for r in ("invalid_token", "locked_out", "insufficient_scope")) == 0
        assert value(after, "registry_db_connections_max") == -1  # SQLite's pool has no limit
        assert value(after, "registry_db_connections_in_use") >= 0


def test_last_maintenance_runs(server: RegistryProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.post("/admin/api/gc", json={"dry_run": False}).status_code == 200
        assert client.post("/admin/api/fsck", json={}).status_code == 200
        samples = scrape(server.url)
    gc_finished = value(samples, "registry_maintenance_last_run_timestamp_seconds", kind="gc")
    assert time.time() - 60 < gc_finished <= time.time()
    assert value(samples, "registry_maintenance_last_run_timestamp_seconds", kind="fsck") > 0
    assert value(samples, "registry_maintenance_last_run_problems", kind="fsck") == 0
    assert ("registry_maintenance_last_run_freed_bytes", (("kind", "gc"),)) in samples
