"""Events as CNCF Distribution's notifications carry them: an envelope `{"events": [...]}` of media
type application/vnd.docker.distribution.events.v1+json, each event with id, timestamp, action,
target, request, actor and source (Distribution's notifications/event.go, and its docs' examples).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from registry.metadata.events import EventRow

MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"


def timestamp(seconds: float) -> str:
    """RFC 3339 in UTC with microseconds, as Go's time.Time marshals it (`...Z`)."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


def event(row: EventRow, scheme: str) -> dict[str, Any]:
    target: dict[str, Any] = {}
    if row.media_type:
        target["mediaType"] = row.media_type
    if row.digest:
        target["digest"] = row.digest
    if row.size is not None:
        target["size"] = row.size
        target["length"] = row.size  # Distribution's older name for size, still sent
    if row.repository:
        target["repository"] = row.repository
    if row.from_repository:
        target["fromRepository"] = row.from_repository
    if row.digest and row.repository and row.host and row.action != "delete":
        kind = "manifests" if row.target_type == "manifest" else "blobs"
        target["url"] = f"{scheme}://{row.host}/v2/{row.repository}/{kind}/{row.digest}"
    if row.tag:
        target["tag"] = row.tag
    return {
        "id": row.event_id,
        "timestamp": timestamp(row.created_at),
        "action": row.action,
        "target": target,
        "request": {"id": row.request_id or "", "addr": row.address or "", "host": row.host or "",
                    "method": row.method or "", "useragent": row.user_agent or ""},
        "actor": {"name": row.actor} if row.actor else {},
        "source": {"addr": row.source_addr or "", "instanceID": row.source_instance or ""},
    }


def envelope(events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"events": events}, separators=(",", ":")).encode()
