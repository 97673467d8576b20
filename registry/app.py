"""create_app(config) -> aiohttp Application: wiring only."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Awaitable, Callable

from aiohttp import web

from registry.api import add_routes, health
from registry.api.common import (API_VERSION_HEADER, CHUNK_BYTES_KEY, CONTENT_KEY, DELETE_ENABLED_KEY, LIMITS_KEY,
                                 MIRROR_KEY, REQUEST_ID_KEY)
from registry import admin
from registry.admin.audit import AUDIT_KEY, admin_actions
from registry.admin.maintenance import MAINTENANCE_KEY
from registry.admin.notifications import NOTIFIER_KEY
from registry.admin.replication import REPLICATION_KEY
from registry.admin.metrics import in_flight_middleware, record_auth_failure, storage_recorder
from registry.api import token as token_endpoint
from registry.api.recording import JOURNAL_KEY, gate_recorder, recorded
from registry.auth.gate import GATE_KEY, Gate
from registry.config import Config
from registry.content.local import LocalContent
from registry.events.audit import Audit
from registry.events.endpoints import parse_endpoints
from registry.events.journal import Journal, Source
from registry.events.sender import Notifier
from registry.replication.rules import parse_rules
from registry.replication.service import Replication
from registry.gc.immutable import ImmutableTags
from registry.gc.jobs import Maintenance, Settings as MaintenanceSettings
from registry.gc.policy import parse_quotas
from registry.http_edges import framing_middleware
from registry.http_errors import error_response, from_exception
from registry.metadata import usage
from registry.metadata.db import Database
from registry.mirror.content import MirrorContent
from registry.mirror.upstreams import Router, parse_local_namespaces, parse_upstreams
from registry.storage import create_store
from registry.storage.timed import TimedStore

log = logging.getLogger("registry")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id and the spec's JSON for every error."""
    request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex[:16]
    request[REQUEST_ID_KEY] = request_id
    try:
        response = await handler(request)
    except Exception as exc:  # noqa: BLE001 - every failure is answered in the spec's JSON, logged as what it is
        response = error_response(from_exception(exc, request), request.method)
    return response  # the access line is written once the response is out: registry/admin/access.py


async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every response, including ones handlers stream themselves, carries these."""
    response.headers.update(API_VERSION_HEADER)
    request_id = request.get(REQUEST_ID_KEY)
    if request_id:
        response.headers["X-Request-Id"] = request_id


def create_app(config: Config) -> web.Application:
    db = Database(config.database_url, pool_size=config.database.pool_size)
    gate = Gate(config, db)
    # Events: one record (the journal) of what happened, read by the webhook sender and the audit trail.
    journal = Journal(db, Source(f"{socket.gethostname()}:{config.host_port[1]}", str(uuid.uuid4())))
    gate.on_audit = gate_recorder(journal)
    # handler_args: aiohttp's parser limits (registry/http_edges.py answers what they refuse), and
    # request bodies taken as sent: a blob is the bytes the client hashed, whatever its
    # Content-Encoding says (Distribution does the same), and no gzip bomb is inflated here.
    gate.on_refusal = record_auth_failure
    app = web.Application(middlewares=[request_context, in_flight_middleware, framing_middleware(config.limits),
                                       gate.middleware(), recorded, admin_actions],
                          client_max_size=1024 ** 2,
                          handler_args={"read_bufsize": config.upload_chunk_bytes,
                                        "max_line_size": config.limits.header_bytes,
                                        "max_field_size": config.limits.header_bytes,
                                        "auto_decompress": False})
    store = TimedStore(create_store(config), storage_recorder(config.storage.backend))
    app[GATE_KEY] = gate
    app[LIMITS_KEY] = config.limits
    redirect_expiry = config.storage.s3.redirect_expiry if config.storage.s3.redirect else None
    local = app[CONTENT_KEY] = LocalContent(db, store, redirect_expiry=redirect_expiry,
                                            quotas=parse_quotas(config.quota.namespaces),
                                            grace_seconds=config.gc.grace_period,
                                            immutable=ImmutableTags.from_config(config), journal=journal)
    maintenance = app[MAINTENANCE_KEY] = Maintenance(db, store, MaintenanceSettings.from_config(config))
    app[JOURNAL_KEY] = journal
    scheme = "https" if config.tls.cert_file or config.tls.self_signed else "http"
    notifier = app[NOTIFIER_KEY] = Notifier(db, journal, parse_endpoints(config.notifications.endpoints), scheme)
    audit = app[AUDIT_KEY] = Audit(db)
    replication = app[REPLICATION_KEY] = Replication(db, local, parse_rules(config.replication.rules),
                                                     f"{socket.gethostname()}:{config.host_port[1]}")
    retention_seconds = config.audit.retention_days * 86400
    if retention_seconds > 0:
        maintenance.every("audit purge", 3600.0, lambda: audit.purge(retention_seconds, notifier.delivered_everywhere))
    mirror = None
    if config.mirror.upstreams:
        upstreams = parse_upstreams(config.mirror.upstreams)
        router = Router(upstreams, parse_local_namespaces(config.mirror.local_namespaces, upstreams))
        mirror = app[MIRROR_KEY] = MirrorContent(local, db, store, router, Path(config.data_dir) / "mirror" / "fills",
                                                 max_stale=config.mirror.max_stale,
                                                 cache_bytes=config.mirror.cache_bytes, sweeper=maintenance.sweeper)
    app[CHUNK_BYTES_KEY] = config.upload_chunk_bytes
    app[DELETE_ENABLED_KEY] = config.delete_enabled
    app.on_response_prepare.append(_common_headers)
    add_routes(app)
    health.add_routes(app, db, store)
    token_endpoint.add_routes(app)
    admin.add_routes(app)

    async def start(_: web.Application) -> None:
        # Disk and hashing work runs in threads; the default pool (cores + 4) is too small
        # for many concurrent uploads. Blob downloads copy in a pool of their own
        # (api/sendfile.py), and only while the client takes bytes, so none holds these.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=32, thread_name_prefix="io"))
        scopes = local.usage_scopes() | (mirror.cache.usage_scopes() if mirror is not None else {})
        counted = await usage.track(db, scopes)
        if counted:
            log.info("usage counted from scratch for %s (quotas or the mirror cache changed)", ", ".join(counted))
        if mirror is not None:
            mirror.cache.start()
        local.pulls.start()
        journal.start()
        await notifier.start()
        maintenance.start()
        await replication.start()

    async def close(_: web.Application) -> None:
        gate.close()
        await replication.stop()
        await maintenance.stop()
        await notifier.stop()
        await journal.stop()
        await local.pulls.stop()
        if mirror is not None:
            await mirror.close()
        await store.close()
        await db.close()

    app.on_startup.append(start)
    app.on_cleanup.append(close)
    return app
