"""The OCI distribution-spec error codes, and the one place they are rendered."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from aiohttp import web

# code -> (HTTP status, default message), as in the distribution spec.
CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a blob unknown to the repository"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "RANGE_INVALID": (416, "requested range not satisfiable"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
    "NOT_FOUND": (404, "not found"),
    "UNAVAILABLE": (503, "service unavailable"),
    "UNKNOWN": (500, "unknown error"),
}


class RegistryError(Exception):
    """An error the client sees as the spec's JSON body."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        detail: Any = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        default_status, default_message = CODES[code]
        self.code = code
        self.message = message or default_message
        self.detail = detail
        self.status = status or default_status
        self.headers = headers or {}
        super().__init__(f"{code}: {self.message}")

    def body(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}


# A full disk heals when someone frees space, not in a few seconds: clients that honour
# Retry-After come back in a minute (docker and containers/image keep their own back-off).
DISK_FULL_RETRY_AFTER = "60"


def disk_full_error(what: str) -> RegistryError:
    """A write found no room: 503 UNAVAILABLE, the status registry clients retry.

    Not 500 (containers/image and podman do not retry it), not 507 (only docker and BuildKit
    retry that, as they do any 5xx), never a 4xx (a client error: nobody retries those).
    The words avoid strerror's "no space left on device", which moby treats as never retryable.
    """
    return RegistryError("UNAVAILABLE", f"disk full: {what} has no space left; retry once space is freed",
                         detail={"reason": "disk full"}, headers={"Retry-After": DISK_FULL_RETRY_AFTER})


def is_database_full(exc: BaseException) -> bool:
    """The metadata database's disk is full: SQLite's SQLITE_FULL ("database or disk is full"),
    PostgreSQL's disk_full (SQLSTATE 53100). `exc` is the SQLAlchemy error wrapping the driver's."""
    driver_error = getattr(exc, "orig", None)
    if isinstance(driver_error, sqlite3.Error):
        code = getattr(driver_error, "sqlite_errorcode", None)
        return (code is not None and code & 0xFF == sqlite3.SQLITE_FULL) or "disk is full" in str(driver_error)
    return getattr(driver_error, "sqlstate", None) == "53100" or getattr(driver_error, "pgcode", None) == "53100"


def error_response(error: RegistryError, method: str = "GET") -> web.Response:
    """Render an error: JSON body (none for HEAD) with the spec's status and headers."""
    if method == "HEAD":
        return web.Response(status=error.status, headers=error.headers)
    return web.Response(
        status=error.status,
        body=json.dumps(error.body()).encode(),
        content_type="application/json",
        headers=error.headers,
    )
