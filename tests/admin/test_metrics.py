"""/metrics in the Prometheus text format, parsed with prometheus_client's parser: it counts the
requests this test makes (by route template, method and status), their latencies and bytes, and
upload sessions; with --workers 2 the counts add up across the workers. Also the JSON access log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api.helpers import push_blob, random_bytes, sha256, start_upload
from tests.support.server import RegistryProcess

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the series of `name` that carry these labels (whatever others they have)."""
    wanted = set(labels.items())
    return sum(v for (n, series), v in samples.items() if n == name and wanted <= set(series))


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


MANIFEST = "/v2/{name}/manifests/{reference}"
BLOB = "/v2/{name}/blobs/{digest}"


def test_metrics_count_this_tests_requests(server: RegistryProcess):
    url = server.url
    before = scrape(url)
    with httpx.Client(base_url=url) as client:
        for _ in range(7):
            assert client.get("/v2/").status_code == 200
        for _ in range(3):
            assert client.get("/v2/metrics/none/manifests/latest").status_code == 404
        for _ in range(2):
            assert client.get("/no/such/path").status_code == 404
        data = random_bytes(50_000)
        push_blob(client, "metrics/app", data)  # POST 202 + PUT 201: one session started and completed
        for _ in range(4):
            assert client.get(f"/v2/metrics/app/blobs/{sha256(data)}").content == data
        cancelled = start_upload(client, "metrics/app").headers["Location"]
        assert client.delete(cancelled).status_code == 204
    after = scrape(url)

    requests = "registry_http_requests_total"
    assert delta(before, after, requests, route="/v2/", method="GET", code="200") == 7
    assert delta(before, after, requests, route=MANIFEST, method="GET", code="404") == 3
    assert delta(before, after, requests, route="unmatched", method="GET", code="404") == 2
    assert delta(before, after, requests, route=BLOB, method="GET", code="200") == 4
    assert delta(before, after, requests, route="/v2/{name}/blobs/uploads/", method="POST", code="202") == 2
    assert delta(before, after, requests, route="/v2/{name}/blobs/uploads/{uuid}", method="PUT", code="201") == 1
    # The scrape before this test counts too (once it is finished).
    assert delta(before, after, requests, route="/metrics", method="GET", code="200") == 1
    # No raw paths as labels.
    assert not any("metrics/app" in dict(labels).get("route", "") for _, labels in after)

    latency = "registry_http_request_duration_seconds"
    assert delta(before, after, f"{latency}_count", route="/v2/", method="GET") == 7
    assert delta(before, after, f"{latency}_bucket", route="/v2/", method="GET", le="+Inf") == 7
    assert 0 < delta(before, after, f"{latency}_sum", route="/v2/", method="GET") < 7 * 5

    assert delta(before, after, "registry_http_response_bytes_total", route=BLOB, method="GET") >= 4 * 50_000
    assert delta(before, after, "registry_http_request_bytes_total",
                 route="/v2/{name}/blobs/uploads/{uuid}", method="PUT") == 50_000

    sessions = "registry_upload_sessions_total"
    assert delta(before, after, sessions, event="started") == 2
    assert delta(before, after, sessions, event="completed") == 1
    assert delta(before, after, sessions, event="cancelled") == 1


def test_database_gauges(tmp_path: Path):
    with RegistryProcess(tmp_path / "data") as server, httpx.Client(base_url=server.url) as client:
        data = random_bytes(20_000)
        for name in ("gauges/a", "gauges/b"):
            push_blob(client, name, data)
        start_upload(client, "gauges/a")
        samples = scrape(server.url)
    assert value(samples, "registry_repositories") == 2 and value(samples, "registry_blobs") == 1
    assert value(samples, "registry_storage_physical_bytes") == 20_000
    assert value(samples, "registry_storage_logical_bytes") == 40_000
    assert value(samples, "registry_upload_sessions_open") == 1


def test_counts_add_up_across_workers(tmp_path: Path):
    with RegistryProcess(tmp_path / "data", args=["--workers", "2"]) as server:
        before = scrape(server.url)
        sent = 0
        # A new connection each time, until both workers have taken some (each writes its own file).
        while sent < 40 or len(list((tmp_path / "data" / "metrics").glob("counter_*.db"))) < 2:
            assert httpx.get(f"{server.url}/v2/", headers={"Connection": "close"}).status_code == 200
            sent += 1
            assert sent < 2000, "one worker took every connection"
        scrapes = [scrape(server.url) for _ in range(6)]
    for after in scrapes:  # whichever worker answered, the sum over both
        assert delta(before, after, "registry_http_requests_total", route="/v2/", method="GET", code="200") == sent


def test_maintenance_runs_are_counted():
    """GC / retention / fsck report their runs through record_maintenance (called by registry/gc)."""
    from prometheus_client import REGISTRY

    from registry.admin.metrics import record_maintenance

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    runs = sample("registry_maintenance_runs_total", kind="gc", dry_run="false")
    freed = sample("registry_maintenance_freed_bytes_total", kind="gc")
    blobs = sample("registry_maintenance_deleted_total", kind="gc", object="blobs")
    report = {"kind": "gc", "dry_run": False, "started_at": 1.0, "finished_at": 2.0,
              "deleted": {"manifests": 1, "blobs": 3, "tags": 0}, "freed_bytes": 4096, "items": [], "problems": []}
    record_maintenance(report)
    record_maintenance({**report, "dry_run": True})
    assert sample("registry_maintenance_runs_total", kind="gc", dry_run="false") == runs + 1
    assert sample("registry_maintenance_runs_total", kind="gc", dry_run="true") >= 1
    assert sample("registry_maintenance_freed_bytes_total", kind="gc") == freed + 4096  # dry runs free nothing
    assert sample("registry_maintenance_deleted_total", kind="gc", object="blobs") == blobs + 3


def test_json_access_log_with_request_ids(tmp_path: Path):
    with RegistryProcess(tmp_path / "data", args=["--log-format", "json"]) as server:
        with httpx.Client(base_url=server.url) as client:
            mine = client.get("/v2/", headers={"X-Request-Id": "req-json-1", "User-Agent": "admin-test"})
            assert mine.headers["X-Request-Id"] == "req-json-1"
            generated = client.get("/v2/logs/none/tags/list").headers["X-Request-Id"]
            data = random_bytes(3000)
            push_blob(client, "logs/app", data)
            client.get(f"/v2/logs/app/blobs/{sha256(data)}", headers={"X-Request-Id": "req-json-blob"})
        time.sleep(0.3)
        lines = server.log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    access = {e["request_id"]: e for e in entries if e["logger"] == "registry.access"}
    first = access["req-json-1"]
    assert first["method"] == "GET" and first["path"] == "/v2/" and first["route"] == "/v2/"
    assert first["status"] == 200 and first["user_agent"] == "admin-test" and first["remote"] == "127.0.0.1"
    assert first["duration_ms"] >= 0 and first["level"] == "info" and first["time"].endswith("Z")
    assert access[generated]["status"] == 404 and access[generated]["route"] == "/v2/{name}/tags/list"
    assert access["req-json-blob"]["bytes_out"] >= 3000
    assert any(e["logger"].startswith("alembic") for e in entries)  # start-up lines are JSON too
