"""Log format (`log_format`): text lines, or one JSON object per line with the fields of access
lines (registry/admin/access.py) at the top level.

Nothing here imports prometheus_client: logging is set up before the supervisor decides where
the workers' metric files go (registry/admin/metrics_dir.py).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError


class JsonFormatter(logging.Formatter):
    """One JSON object per line; access lines carry their fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            entry.update(access)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class RejectedRequestFilter(logging.Filter):
    """aiohttp logs each request its parser rejects (a TLS hello on the plain port, as docker, skopeo
    and podman send first; a bad request line or header; Content-Length with Transfer-Encoding) at
    ERROR with a traceback. Such a request already has its access line (route `unmatched`) and its
    metric; here it keeps only a one-line reason at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.msg, record.args = "rejected a malformed request from %s: %s", (
            record.args[0] if isinstance(record.args, tuple) and record.args else "?", exc.message)
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info = record.exc_text = None
        return True


def configure_logging(level: str, log_format: str) -> None:
    logging.getLogger("aiohttp.server").addFilter(RejectedRequestFilter())
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # The start-up and shutdown lines (registry/server.py) show at every level: they say what runs where.
    logging.getLogger("registry.lifecycle").setLevel(logging.INFO)
