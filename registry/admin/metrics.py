"""Prometheus metrics: what every request did, uploads, the mirror, maintenance runs; GET /metrics.

Counters and histograms live in prometheus_client's default registry. With `--workers N` the
supervisor points PROMETHEUS_MULTIPROC_DIR at DATA_DIR/metrics before forking (see
registry/admin/metrics_dir.py), so each worker writes its values to files there and whichever
worker answers a scrape sums them all. Values that come from the database (repositories, bytes
stored, open uploads, the mirror cache's size) are read at scrape time and are the same whatever
worker answers.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from registry.admin.common import every, inventory
from registry.admin.maintenance import MAINTENANCE_KEY
from registry.admin.notifications import NOTIFIER_KEY
from registry.admin.replication import REPLICATION_KEY
from registry.api.common import CONTENT_KEY, MIRROR_KEY
from registry.metadata import replication as replication_rows

# The classic text format, which generate_latest writes and every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "unmatched"  # requests no route took (404s): one label value, not one per path probed
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))  # others count as OTHER

# Names and labels as CNCF Distribution's where the meaning is the same (`handler`, `code`, `method`), so its
# dashboards fit; `route` (the URL template) says more where ours has more routes than its handlers.
REQUESTS = Counter("registry_http_requests", "HTTP requests answered, by handler, route template, method and code",
                   ["handler", "route", "method", "code"])
LATENCY = Histogram("registry_http_request_duration_seconds",
                    "Time from request start until the last response byte was written, by handler, route and method",
                    ["handler", "route", "method"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
IN_FLIGHT = Gauge("registry_http_in_flight_requests", "Requests being handled, by handler", ["handler"],
                  multiprocess_mode="livesum")
_SIZES = tuple(1024 * 2 ** i for i in range(22))  # 1 KiB to 2 GiB, as Distribution's
REQUEST_SIZES = Histogram("registry_http_request_size_bytes", "Request body sizes, by handler", ["handler"],
                          buckets=_SIZES)
RESPONSE_SIZES = Histogram("registry_http_response_size_bytes", "Response body sizes, by handler", ["handler"],
                           buckets=_SIZES)
STORAGE_ACTIONS = Histogram("registry_storage_action_seconds", "Time the blob storage backend took, by driver and "
                            "action (stat, read to the first bytes, delete, commit_upload, ...)", ["driver", "action"],
                            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                     30))
AUTH_FAILURES = Counter("registry_auth_failures", "Requests refused by authentication or authorization, by reason: "
                        "bad_credentials, malformed, invalid_token, locked_out, insufficient_scope, denied, "
                        "directory_unavailable",
                        ["reason"])
DB_CONNECTIONS = Gauge("registry_db_connections_in_use", "Database connections checked out of the pools",
                       multiprocess_mode="livesum")
DB_CONNECTIONS_MAX = Gauge("registry_db_connections_max", "Connections the database pools may open at most "
                           "(-1: no limit)", multiprocess_mode="livesum")
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


# Distribution's handler names (its route names, "-" as "_") for the same routes; ours beyond them by area.
_HANDLERS = {
    "/v2/": "base", "/v2/_catalog": "catalog", "/v2/{name}/tags/list": "tags",
    "/v2/{name}/manifests/{reference}": "manifest", "/v2/{name}/blobs/{digest}": "blob",
    "/v2/{name}/blobs/uploads": "blob_upload", "/v2/{name}/blobs/uploads/": "blob_upload",
    "/v2/{name}/blobs/uploads/{uuid}": "blob_upload_chunk", "/v2/{name}/referrers/{digest}": "referrers",
}


def handler_of(route: str) -> str:
    """`manifest` for `/v2/{name}/manifests/{reference}`, as Distribution labels it; `admin`, `token`,
    `health`, `metrics` and `unmatched` for the rest."""
    if route in _HANDLERS:
        return _HANDLERS[route]
    if route.startswith("/admin"):
        return "admin"
    if route.startswith("/auth"):
        return "token"
    if route in ("/healthz", "/readyz"):
        return "health"
    return "metrics" if route == "/metrics" else UNMATCHED


_IN_FLIGHT_KEY = web.RequestKey("in_flight", object)


@web.middleware
async def in_flight_middleware(request: web.Request,
                               handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Counts a request in flight from routing until its access line (after the last byte is out)."""
    gauge = IN_FLIGHT.labels(handler_of(route_of(request)))
    gauge.inc()
    request[_IN_FLIGHT_KEY] = gauge
    try:
        return await handler(request)
    except asyncio.CancelledError:  # no access line will follow
        _landed(request)
        raise


def _landed(request: web.BaseRequest) -> None:
    gauge = request.pop(_IN_FLIGHT_KEY, None) if isinstance(request, web.Request) else None
    if gauge is not None:
        gauge.dec()


def observe_request(request: web.BaseRequest, response: web.StreamResponse, seconds: float) -> None:
    _landed(request)
    route, status = route_of(request), response.status
    handler = handler_of(route)
    method = request.method if request.method in METHODS else "OTHER"
    REQUESTS.labels(handler, route, method, str(status)).inc()
    LATENCY.labels(handler, route, method).observe(seconds)
    received = getattr(request.content, "total_bytes", 0)
    if received:
        BYTES_IN.labels(route, method).inc(received)
        REQUEST_SIZES.labels(handler).observe(received)
    sent = body_bytes(request, response)
    if sent:
        BYTES_OUT.labels(route, method).inc(sent)
        RESPONSE_SIZES.labels(handler).observe(sent)
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


def storage_recorder(driver: str) -> Callable[[str, float], None]:
    """For registry/storage/timed.py: each backend action's time into registry_storage_action_seconds."""
    def record(action: str, seconds: float) -> None:
        STORAGE_ACTIONS.labels(driver, action).observe(seconds)
    return record


def record_auth_failure(reason: str) -> None:
    AUTH_FAILURES.labels(reason).inc()


def sample_database_pool(db: Any) -> None:
    in_use, most = db.pool_use()
    DB_CONNECTIONS.set(in_use)
    DB_CONNECTIONS_MAX.set(most)


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


def exposition(snapshot: list[Metric]) -> bytes:
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
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self.families)


MAINTENANCE_KINDS = ("gc", "retention", "fsck")


class DatabaseGauges:
    """Scrape-time values from the database, cached briefly: a scrape every few seconds from
    several Prometheus servers should not scan the tables each time."""

    MAX_AGE = 15.0

    def __init__(self) -> None:
        self._families: list[GaugeMetricFamily] = []
        self._at = 0.0

    async def read(self, inventory: Any, mirror: Any, maintenance: Any) -> list[GaugeMetricFamily]:
        # The last runs are three reads by key, fresh each scrape: a run just finished shows at once.
        return await self._totals(inventory, mirror) + await _last_runs(maintenance)

    async def _totals(self, inventory: Any, mirror: Any) -> list[GaugeMetricFamily]:
        if self._families and time.monotonic() - self._at < self.MAX_AGE:
            return self._families
        t = await inventory.storage()
        plain = {
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
            plain["registry_mirror_cache_bytes"] = ("Bytes of mirrored blobs in the cache", await mirror.cache.usage())
            plain["registry_mirror_cache_cap_bytes"] = ("Size cap of the mirror cache (0: none)",
                                                        mirror.cache.cap_bytes)
        families = [GaugeMetricFamily(name, help_text, value=value) for name, (help_text, value) in plain.items()]
        self._families, self._at = families, time.monotonic()
        return families


async def _last_runs(maintenance: Any) -> list[GaugeMetricFamily]:
    """Each job's last real run (gc and retention: not dry runs; fsck: any check), from the reports every
    process shares: to alert on a GC that stopped running, or an fsck that found problems."""
    finished = GaugeMetricFamily("registry_maintenance_last_run_timestamp_seconds",
                                 "When the last run of gc or retention (not a dry run), or of fsck, finished",
                                 labels=["kind"])
    problems = GaugeMetricFamily("registry_maintenance_last_run_problems",
                                 "Problems the last fsck run found (corrupt, missing, orphan, stray)", labels=["kind"])
    freed = GaugeMetricFamily("registry_maintenance_last_run_freed_bytes", "Bytes the last gc or retention run "
                              "freed", labels=["kind"])
    if maintenance is not None:
        for kind in MAINTENANCE_KINDS:
            report = await maintenance.last_report(kind)
            if not report or (report.get("dry_run") and kind != "fsck"):  # a check without --repair still checks
                continue
            finished.add_metric([kind], report.get("finished_at", 0.0))
            if kind == "fsck":
                problems.add_metric([kind], len(report.get("problems") or []))
            else:
                freed.add_metric([kind], report.get("freed_bytes") or 0)
    return [finished, problems, freed]


async def notification_families(notifier: Any) -> list[Metric]:
    """Per webhook endpoint, from the database (the same whatever process sends to it)."""
    labels = ["endpoint"]
    sent = CounterMetricFamily("registry_notification_events_sent", "Events a webhook endpoint acknowledged (2xx)",
                               labels=labels)
    failed = CounterMetricFamily("registry_notification_failures", "Deliveries to a webhook endpoint that failed "
                                 "(no 2xx in time); each is retried", labels=labels)
    pending = GaugeMetricFamily("registry_notification_events_pending", "Events waiting to be sent to a webhook "
                                "endpoint (counted up to 100,000)", labels=labels)
    success = GaugeMetricFamily("registry_notification_last_success_timestamp_seconds", "When a webhook endpoint "
                                "last acknowledged events", labels=labels)
    for endpoint in await notifier.status():
        name = [endpoint["name"]]
        sent.add_metric(name, endpoint["sent"])
        failed.add_metric(name, endpoint["failed"])
        pending.add_metric(name, endpoint["pending"])
        if endpoint["last_success_at"]:
            success.add_metric(name, endpoint["last_success_at"])
    return [sent, failed, pending, success]


async def replication_families(db: Any) -> list[Metric]:
    """Per replication rule, from its history in the database (the same whatever process ran it)."""
    runs = CounterMetricFamily("registry_replication_runs", "Replication runs finished, by rule and status "
                               "(succeeded, failed, interrupted)", labels=["rule", "status"])
    sent = CounterMetricFamily("registry_replication_bytes", "Blob bytes a replication rule sent to its destination",
                               labels=["rule"])
    blobs = CounterMetricFamily("registry_replication_blobs", "Blobs a replication rule sent to its destination",
                                labels=["rule"])
    bytes_by_rule: dict[str, int] = {}
    blobs_by_rule: dict[str, int] = {}
    async with db.read() as conn:
        totals = await replication_rows.totals(conn)
    for rule, status, count, byte_count, blob_count in totals:
        if status != "running":
            runs.add_metric([rule, status], count)
        bytes_by_rule[rule] = bytes_by_rule.get(rule, 0) + byte_count
        blobs_by_rule[rule] = blobs_by_rule.get(rule, 0) + blob_count
    for rule, value in bytes_by_rule.items():
        sent.add_metric([rule], value)
        blobs.add_metric([rule], blobs_by_rule[rule])
    return [runs, sent, blobs]


GAUGES_KEY = web.AppKey("metric_gauges", DatabaseGauges)
MIRROR_COUNTERS_KEY = web.AppKey("mirror_counters", MirrorCounters)


async def serve_metrics(request: web.Request) -> web.Response:
    counters = request.app.get(MIRROR_COUNTERS_KEY)
    if counters is not None:
        counters.sync()
    sample_database_pool(request.app[CONTENT_KEY].db)  # this worker's, now; the others' from their last sample
    snapshot: list[Metric] = [*await request.app[GAUGES_KEY].read(inventory(request), request.app.get(MIRROR_KEY),
                                                                  request.app.get(MAINTENANCE_KEY))]
    notifier = request.app.get(NOTIFIER_KEY)
    if notifier is not None and notifier.endpoints:
        snapshot += await notification_families(notifier)
    if request.app.get(REPLICATION_KEY) is not None:
        snapshot += await replication_families(request.app[CONTENT_KEY].db)
    return web.Response(body=exposition(snapshot), headers={"Content-Type": CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    app[GAUGES_KEY] = DatabaseGauges()
    db = app[CONTENT_KEY].db
    every(app, 5.0, lambda: sample_database_pool(db))
    mirror = app.get(MIRROR_KEY)
    if mirror is not None:
        counters = app[MIRROR_COUNTERS_KEY] = MirrorCounters(mirror.router.upstreams)
        every(app, 5.0, counters.sync)  # other workers' increases reach the shared files between scrapes
    app.router.add_get("/metrics", serve_metrics)
