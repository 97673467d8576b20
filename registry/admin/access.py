"""The access log: one line per request, written by aiohttp's access-logger hook once the last
byte of the response is out, when the duration and the bytes sent are known (also for streamed
blob downloads). The same hook feeds the request metrics.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from registry.admin import metrics
from registry.api.common import REQUEST_ID_KEY
from registry.auth.gate import IDENTITY_KEY

ACCESS_LOGGER = logging.getLogger("registry.access")


class AccessLogger(AbstractAccessLogger):
    """aiohttp's `access_log_class`: metrics for every request, then one log line."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        metrics.observe_request(request, response, time)
        if not self.logger.isEnabledFor(logging.INFO):
            return
        identity = request.get(IDENTITY_KEY)
        fields = {
            "request_id": request.get(REQUEST_ID_KEY, ""),
            "remote": request.remote or "",
            "user": identity.name if identity is not None and not identity.anonymous else "",
            "method": request.method,
            "path": request.path_qs[:300],
            "route": metrics.route_of(request),
            "status": response.status,
            "duration_ms": round(time * 1000, 1),
            "bytes_in": getattr(request.content, "total_bytes", 0),
            "bytes_out": metrics.body_bytes(request, response),
            "user_agent": request.headers.get("User-Agent", "")[:200],
        }
        # Text: who, what, how it went, as a combined log line would say it; JSON has the same fields.
        self.logger.info('%s %s "%s %s" %d in=%d out=%d %.1fms "%s" %s', fields["remote"] or "-",
                         fields["user"] or "-", request.method, _quoted(fields["path"]), response.status,
                         fields["bytes_in"], fields["bytes_out"], time * 1000, _quoted(fields["user_agent"]),
                         fields["request_id"], extra={"access": fields})


def _quoted(text: str) -> str:
    """A header value inside double quotes on one line: quotes and control characters escaped."""
    return "".join(c if " " <= c < "\x7f" and c not in '"\\' else f"\\x{ord(c):02x}" for c in text)
