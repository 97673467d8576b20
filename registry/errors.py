"""The failures the distribution spec names, as the layers below HTTP raise them.

A `RegistryError` carries the spec's code (its vocabulary: BLOB_UNKNOWN, DENIED, ...), a message and
a detail; nothing of HTTP. What status and headers each becomes is decided in one place,
registry/http_errors.py, which also maps the storage and database layers' own exceptions.
"""

from __future__ import annotations

import sqlite3
from typing import Any

# code -> the spec's default message.
MESSAGES: dict[str, str] = {
    "BLOB_UNKNOWN": "blob unknown to registry",
    "BLOB_UPLOAD_INVALID": "blob upload invalid",
    "BLOB_UPLOAD_UNKNOWN": "blob upload unknown to registry",
    "DIGEST_INVALID": "provided digest did not match uploaded content",
    "MANIFEST_BLOB_UNKNOWN": "manifest references a blob unknown to the repository",
    "MANIFEST_INVALID": "manifest invalid",
    "MANIFEST_UNKNOWN": "manifest unknown",
    "NAME_INVALID": "invalid repository name",
    "NAME_UNKNOWN": "repository name not known to registry",
    "SIZE_INVALID": "provided length did not match content length",
    "UNAUTHORIZED": "authentication required",
    "DENIED": "requested access to the resource is denied",
    "UNSUPPORTED": "the operation is unsupported",
    "TOOMANYREQUESTS": "too many requests",
    "RANGE_INVALID": "requested range not satisfiable",
    "PAGINATION_NUMBER_INVALID": "invalid number of results requested",
    "TAG_INVALID": "manifest tag did not match URI",
    "NOT_FOUND": "not found",
    "UNAVAILABLE": "service unavailable",
    "UNKNOWN": "unknown error",
}


class RegistryError(Exception):
    """A failure the client is told of in the spec's terms. `retry_after`: seconds after which the
    same request may succeed (a throttled upstream, a full disk)."""

    def __init__(self, code: str, message: str | None = None, detail: Any = None, *,
                 retry_after: float | None = None) -> None:
        self.code = code
        self.message = message or MESSAGES[code]
        self.detail = detail
        self.retry_after = retry_after
        super().__init__(f"{code}: {self.message}")

    def body(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}


class Conflict(RegistryError):
    """The request is valid but collides with work in progress (an upload another request is writing)."""


class TooLarge(RegistryError):
    """A body over a configured limit (a blob, a manifest)."""


class UpstreamFault(RegistryError):
    """An upstream registry answered with something this registry refuses: the upstream's fault, not
    the client's, and nothing was cached."""


class ChunkOutOfOrder(RegistryError):
    """An upload chunk that does not start where the upload ends. `received`: the bytes the upload
    holds, which the client is told so it can resume from there."""

    def __init__(self, upload_id: str, received: int) -> None:
        super().__init__("RANGE_INVALID", "chunk does not start where the upload ends",
                         detail={"uuid": upload_id, "offset": received})
        self.received = received


class BadRequest(RegistryError):
    """A request the spec has no code for (an image to pre-warm that no mirrored upstream serves): the
    nearest code, but the client's mistake all the same."""


# A full disk heals when someone frees space, not in a few seconds: clients that honour
# Retry-After come back in a minute (docker and containers/image keep their own back-off).
DISK_FULL_RETRY_AFTER = 60.0


def disk_full_error(what: str) -> RegistryError:
    """A write found no room: UNAVAILABLE, which registry clients retry.

    The words avoid strerror's "no space left on device", which moby treats as never retryable.
    """
    return RegistryError("UNAVAILABLE", f"disk full: {what} has no space left; retry once space is freed",
                         detail={"reason": "disk full"}, retry_after=DISK_FULL_RETRY_AFTER)


def is_database_full(exc: BaseException) -> bool:
    """The metadata database's disk is full: SQLite's SQLITE_FULL ("database or disk is full"),
    PostgreSQL's disk_full (SQLSTATE 53100). `exc` is the SQLAlchemy error wrapping the driver's."""
    driver_error = getattr(exc, "orig", None)
    if isinstance(driver_error, sqlite3.Error):
        code = getattr(driver_error, "sqlite_errorcode", None)
        return (code is not None and code & 0xFF == sqlite3.SQLITE_FULL) or "disk is full" in str(driver_error)
    return getattr(driver_error, "sqlstate", None) == "53100" or getattr(driver_error, "pgcode", None) == "53100"
