"""Prometheus metrics: what every request did, uploads, the mirror, maintenance runs; GET /metrics.

Counters and histograms live in prometheus_client's default registry. With `--workers N` the
supervisor points PROMETHEUS_MULTIPROC_DIR at DATA_DIR/metrics before forking (see
registry/admin/metrics_dir.py), so each worker writes its values to files there and whichever
worker answers a scrape sums them all. Values that come from the database (repositories, bytes
stored, open uploads, the mirror cache's size) are read at scrape time and are the same whatever
worker answers.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterable

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from registry.admin.common import every, inventory
from registry.api.common import MIRROR_KEY

# The classic text format, which generate_latest writes and every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "unmatched"  # requests no route took (404s): one label value, not one per path probed
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))  # others count as OTHER

REQUESTS = Counter("registry_http_requests", "HTTP requests answered, by route template, method and status",
                   ["route", "method", "status"])
LATENCY = Histogram("registry_http_request_duration_seconds",
                    "Time from request start until the last response byte was written, by route and method",
                    ["route", "method"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
BYTES_IN = Counter("registry_http_request_bytes", "Request body bytes received, by route and method",
                   ["route", "method"])
BYTES_OUT = Counter("registry_http_response_bytes", "Response body bytes sent, by route and method",
                    ["route", "method"])
UPLOAD_SESSIONS = Counter("registry_upload_sessions", "Blob upload sessions by event: started (POST opened one), "
                          "completed (a blob was committed by PUT or a one-request POST), cancelled", ["event"])
MIRROR_EVENTS = Counter("registry_mirror_events", "Pull-through mirror events per upstream: hits and misses of "
                        "the cache, revalidations, 429s from upstream, stale serves, upstream errors",
                        ["upstream", "event"])
MIRROR_BYTES = Counter("registry_mirror_bytes", "Mirror bytes per upstream: fetched from upstream, served to clients",
                       ["upstream", "direction"])
MAINTENANCE_RUNS = Counter("registry_maintenance_runs", "GC, retention and fsck runs", ["kind", "dry_run"])
MAINTENANCE_DELETED = Counter("registry_maintenance_deleted", "Objects deleted by GC, retention and fsck runs",
                              ["kind", "object"])
MAINTENANCE_FREED = Counter("registry_maintenance_freed_bytes", "Bytes freed by GC, retention and fsck runs", ["kind"])

_UPLOAD_START = "/v2/{name}/blobs/uploads"  # registered with and without the trailing slash
_UPLOAD_SESSION = "/v2/{name}/blobs/uploads/{uuid}"


def route_of(request: web.BaseRequest) -> str:
    """The route template a request matched (`/v2/{name}/manifests/{reference}`), never the raw path.

    A request the HTTP parser rejected (a TLS hello on the plain port, a bad request line) never
    reached the router: aiohttp asserts on its `match_info`, and its route is `unmatched`.
    """
    try:
        match_info = request.match_info if isinstance(request, web.Request) else None
    except AssertionError:
        return UNMATCHED
    resource = getattr(getattr(match_info, "route", None), "resource", None)
    return resource.canonical if resource is not None else UNMATCHED


def observe_request(request: web.BaseRequest, response: web.StreamResponse, seconds: float) -> None:
    route, status = route_of(request), response.status
    method = request.method if request.method in METHODS else "OTHER"
    REQUESTS.labels(route, method, str(status)).inc()
    LATENCY.labels(route, method).observe(seconds)
    received = getattr(request.content, "total_bytes", 0)
    if received:
        BYTES_IN.labels(route, method).inc(received)
    sent = body_bytes(request, response)
    if sent:
        BYTES_OUT.labels(route, method).inc(sent)
    event = _upload_event(route, method, status, request)
    if event:
        UPLOAD_SESSIONS.labels(event).inc()


def body_bytes(request: web.BaseRequest, response: web.StreamResponse) -> int:
    """Body bytes sent: the Content-Length (files go out by sendfile, which the writer does not
    count), else what the writer counted for a streamed body."""
    if request.method == "HEAD":
        return 0
    if response.content_length is not None:
        return response.content_length
    return response.body_length


def _upload_event(route: str, method: str, status: int, request: web.BaseRequest) -> str | None:
    if route.rstrip("/") == _UPLOAD_START and method == "POST":
        if status == 202:
            return "started"
        if status == 201 and "digest" in request.query:  # the whole blob in one POST
            return "completed"
    if route == _UPLOAD_SESSION:
        if method == "PUT" and status == 201:
            return "completed"
        if method == "DELETE" and status == 204:
            return "cancelled"
    return None


def record_maintenance(report: dict[str, Any]) -> None:
    """Count a GC / retention / fsck run from its report (the shape /admin/api/gc returns)."""
    kind = str(report.get("kind", "gc"))
    MAINTENANCE_RUNS.labels(kind, "true" if report.get("dry_run") else "false").inc()
    if report.get("dry_run"):
        return
    for what, count in (report.get("deleted") or {}).items():
        if count:
            MAINTENANCE_DELETED.labels(kind, str(what)).inc(count)
    if report.get("freed_bytes"):
        MAINTENANCE_FREED.labels(kind).inc(report["freed_bytes"])


class MirrorCounters:
    """Carries the mirror's per-upstream stats (plain ints on each upstream) into Prometheus counters.

    The mirror counts in its own objects; copying the increases at scrape time and every few
    seconds keeps one source of truth, and in multi-process mode each worker's increases land in
    the shared files within that interval.
    """

    EVENTS = ("hits", "misses", "revalidations", "throttled", "stale_serves", "upstream_errors")
    BYTES = {"bytes_from_upstream": "from_upstream", "bytes_served": "served"}

    def __init__(self, upstreams: Iterable[Any]) -> None:
        self.upstreams = list(upstreams)
        self._seen: dict[tuple[str, str], int] = {}

    def sync(self) -> None:
        for upstream in self.upstreams:
            stats = vars(upstream.stats)
            for field in self.EVENTS:
                self._carry(upstream.alias, field, stats.get(field, 0), MIRROR_EVENTS.labels(upstream.alias, field))
            for field, direction in self.BYTES.items():
                self._carry(upstream.alias, field, stats.get(field, 0),
                            MIRROR_BYTES.labels(upstream.alias, direction))

    def _carry(self, alias: str, field: str, value: int, counter: Any) -> None:
        delta = value - self._seen.get((alias, field), 0)
        if delta > 0:
            counter.inc(delta)
        self._seen[(alias, field)] = value


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition(snapshot: dict[str, tuple[str, float]]) -> bytes:
    """The text format: every counter (summed over workers in multi-process mode), then the gauges
    read from the database for this scrape."""
    if multiprocess():
        shared = CollectorRegistry()
        MultiProcessCollector(shared)
        text = generate_latest(shared)
    else:
        text = generate_latest(REGISTRY)
    gauges = CollectorRegistry()
    gauges.register(_Snapshot(snapshot))
    return text + generate_latest(gauges)


class _Snapshot:
    def __init__(self, values: dict[str, tuple[str, float]]) -> None:
        self.values = values

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for name, (help_text, value) in self.values.items():
            yield GaugeMetricFamily(name, help_text, value=value)




class DatabaseGauges:
    """Scrape-time values from the database, cached briefly: a scrape every few seconds from
    several Prometheus servers should not scan the tables each time."""

    MAX_AGE = 15.0

    def __init__(self) -> None:
        self._values: dict[str, tuple[str, float]] = {}
        self._at = 0.0

    async def read(self, inventory: Any, mirror: Any) -> dict[str, tuple[str, float]]:
        if self._values and time.monotonic() - self._at < self.MAX_AGE:
            return self._values
        t = await inventory.storage()
        values = {
            "registry_repositories": ("Repositories", t["repositories"]),
            "registry_manifests": ("Manifests", t["manifests"]),
            "registry_tags": ("Tags", t["tags"]),
            "registry_blobs": ("Blobs stored (each digest once)", t["blobs"]),
            "registry_storage_physical_bytes": ("Blob bytes stored, each digest once", t["physical_bytes"]),
            "registry_storage_logical_bytes": ("Blob bytes summed over the repositories linking them",
                                               t["logical_bytes"]),
            "registry_upload_sessions_open": ("Upload sessions started and not finished", t["uploads"]),
            "registry_upload_sessions_open_bytes": ("Bytes staged by unfinished upload sessions", t["upload_bytes"]),
        }
        if mirror is not None:
            values["registry_mirror_cache_bytes"] = ("Bytes of mirrored blobs in the cache", await mirror.cache.usage())
            values["registry_mirror_cache_cap_bytes"] = ("Size cap of the mirror cache (0: none)", mirror.cache.cap_bytes)
        self._values, self._at = values, time.monotonic()
        return values


GAUGES_KEY = web.AppKey("metric_gauges", DatabaseGauges)
MIRROR_COUNTERS_KEY = web.AppKey("mirror_counters", MirrorCounters)


async def serve_metrics(request: web.Request) -> web.Response:
    counters = request.app.get(MIRROR_COUNTERS_KEY)
    if counters is not None:
        counters.sync()
    snapshot = await request.app[GAUGES_KEY].read(inventory(request), request.app.get(MIRROR_KEY))
    return web.Response(body=exposition(snapshot), headers={"Content-Type": CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    app[GAUGES_KEY] = DatabaseGauges()
    mirror = app.get(MIRROR_KEY)
    if mirror is not None:
        counters = app[MIRROR_COUNTERS_KEY] = MirrorCounters(mirror.router.upstreams)
        every(app, 5.0, counters.sync)  # other workers' increases reach the shared files between scrapes
    app.router.add_get("/metrics", serve_metrics)
