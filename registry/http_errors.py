"""The one place where failures become HTTP: the spec's status for each code, the headers a
failure implies, the JSON body, and the mapping of the storage and database layers' exceptions.

Below HTTP, layers raise `RegistryError` (registry/errors.py) or their own exceptions; only code that
parses HTTP itself (handlers, the auth gate, framing) raises `HTTPError` with a status of its own.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from sqlalchemy import exc as sa_exc

from registry.errors import (BadRequest, ChunkOutOfOrder, Conflict, RegistryError, TooLarge, UpstreamFault,
                             disk_full_error, is_database_full)
from registry.metadata.db import DatabaseUnavailable
from registry.storage import DISK_FULL_ERRNOS, StorageFull, StorageUnavailable

log = logging.getLogger("registry")

# code -> HTTP status, as in the distribution spec.
STATUS: dict[str, int] = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
    "RANGE_INVALID": 416,
    "PAGINATION_NUMBER_INVALID": 400,
    "TAG_INVALID": 400,
    "NOT_FOUND": 404,
    # 503 is the status registry clients retry: not 500 (containers/image and podman do not retry it),
    # not 507 (only docker and BuildKit retry that, as they do any 5xx).
    "UNAVAILABLE": 503,
    "UNKNOWN": 500,
}

# Kinds of failure whose status is theirs whatever the code.
KIND_STATUS: dict[type[RegistryError], int] = {Conflict: 409, TooLarge: 413, UpstreamFault: 502, BadRequest: 400}

RETRY_SOON = 5.0  # seconds: a database or storage backend that stopped answering


class HTTPError(RegistryError):
    """An error raised by code that speaks HTTP itself, with a status and headers of its own: a stalled
    body's 408, an unsatisfiable range's Content-Range, the auth challenge's WWW-Authenticate."""

    def __init__(self, code: str, message: str | None = None, detail: Any = None, *, status: int | None = None,
                 headers: dict[str, str] | None = None, retry_after: float | None = None) -> None:
        super().__init__(code, message, detail, retry_after=retry_after)
        self.status = status
        self.headers = headers or {}


def http_status(error: RegistryError) -> int:
    if isinstance(error, HTTPError) and error.status:
        return error.status
    for kind, status in KIND_STATUS.items():
        if isinstance(error, kind):
            return status
    return STATUS[error.code]


def http_headers(error: RegistryError) -> dict[str, str]:
    headers = dict(error.headers) if isinstance(error, HTTPError) else {}
    if isinstance(error, ChunkOutOfOrder):  # where the upload stands, for the client to resume from
        headers["Range"] = f"0-{max(error.received - 1, 0)}"
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, int(error.retry_after + 0.999)))  # whole seconds, rounded up
    return headers


def error_response(error: RegistryError, method: str = "GET") -> web.Response:
    """Render an error: JSON body (none for HEAD) with the spec's status and headers."""
    if method == "HEAD":
        return web.Response(status=http_status(error), headers=http_headers(error))
    return web.Response(status=http_status(error), body=json.dumps(error.body()).encode(),
                        content_type="application/json", headers=http_headers(error))


# Errors that mean "the database is not reachable now", answered 503 so clients retry.
DATABASE_DOWN = (DatabaseUnavailable, sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)


def from_exception(exc: Exception, request: web.Request) -> RegistryError:
    """What a request that raised `exc` answers, logged as what it is: the client's error, a backend
    down or full, a client gone, or a bug (with its traceback)."""
    where = f"{request.method} {request.path}"
    if isinstance(exc, RegistryError):
        return exc
    if isinstance(exc, web.HTTPException):
        return _from_http_exception(exc)
    if isinstance(exc, StorageUnavailable):
        log.error("%s: %s", where, exc)
        return RegistryError("UNAVAILABLE", f"blob storage unavailable: {exc}", retry_after=RETRY_SOON)
    if isinstance(exc, StorageFull):  # what the request staged is gone already (content/local.py, BlobStore.put_blob)
        log.error("%s: blob storage is full: %s", where, exc)
        return disk_full_error("blob storage")
    if isinstance(exc, (*DATABASE_DOWN, sa_exc.DBAPIError)) and is_database_full(exc):
        log.error("%s: the metadata database's disk is full: %s", where, getattr(exc, "orig", None) or exc)
        return disk_full_error("the metadata database")
    if isinstance(exc, DATABASE_DOWN):
        log.error("%s: database unavailable: %s", where, exc)
        return RegistryError("UNAVAILABLE", "metadata database unavailable", retry_after=RETRY_SOON)
    if isinstance(exc, OSError) and not isinstance(exc, sa_exc.DBAPIError):
        if exc.errno in DISK_FULL_ERRNOS:  # a disk write outside the store's own (which raise StorageFull)
            log.error("%s: disk full: %s", where, exc)
            return disk_full_error("the registry's local disk")
        # The client went away mid-body (or the socket broke): nothing useful to send.
        log.info("request %s aborted: %r", where, exc)
        return RegistryError("BLOB_UPLOAD_INVALID", "request body was cut short")
    log.error("unhandled error in %s", where, exc_info=exc)
    return RegistryError("UNKNOWN", "internal server error")


def _from_http_exception(exc: web.HTTPException) -> RegistryError:
    if exc.status == 404:
        return RegistryError("NOT_FOUND", "no such endpoint")
    if exc.status == 405:
        return RegistryError("UNSUPPORTED", "method not allowed on this endpoint")
    if exc.status == 413:
        return TooLarge("SIZE_INVALID", "request body too large")
    return HTTPError("UNKNOWN", exc.reason or "error", status=exc.status)
