"""Webhooks from a scaled-out registry: two processes on one PostgreSQL database and S3 bucket, both
configured with the same endpoint. One of them (the lease holder) sends every event, whichever
process wrote it, each once; when that one is killed (kill -9), the other takes the lease over and
what happens next is delivered too."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

from tests.api.helpers import push_image
from tests.support.backends import postgres_s3_registry
from tests.support.server import RegistryProcess
from tests.support.webhooks import WebhookReceiver

TAKEOVER_SECONDS = 60  # the dead holder's lease (15 s) lapses, the other process looks every 5 s


def _audited(server: RegistryProcess, repository: str) -> set[str]:
    response = httpx.get(f"{server.url}/admin/api/audit", params={"repository": repository, "limit": "1000"},
                         timeout=30)
    assert response.status_code == 200, response.text
    return {e["id"] for e in response.json()["entries"] if e["action"] in ("push", "pull")}


def _sender(server: RegistryProcess) -> str | None:
    response = httpx.get(f"{server.url}/admin/api/notifications", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["endpoints"][0]["sender"]


def test_one_process_sends_and_another_takes_over(postgres, swift_s3, tmp_path: Path) -> None:
    receiver = WebhookReceiver().start()
    env = {"REGISTRY_NOTIFICATIONS_ENDPOINTS": json.dumps([{"name": "ci", "url": receiver.url, "backoff": "200ms"}])}
    database_url, prefix = postgres.create_database(), f"hooks-{uuid.uuid4().hex[:8]}"
    servers = [postgres_s3_registry(tmp_path / f"node{i}", postgres, swift_s3, database_url=database_url,
                                    prefix=prefix, env=env) for i in range(2)]
    try:
        for server in servers:  # one after the other: the first applies the migrations
            server.start()
        with httpx.Client(base_url=servers[0].url, timeout=60) as first, \
                httpx.Client(base_url=servers[1].url, timeout=60) as second:
            pushed = push_image(first, "hooks/app", "v1")
            assert second.get(f"/v2/hooks/app/manifests/{pushed.digest}",
                              headers={"Accept": pushed.media_type}).status_code == 200
            time.sleep(1.5)  # the pull is written within the second
            expected = _audited(servers[1], "hooks/app")
            assert len(expected) == 4  # config, layer, manifest pushed on one; the manifest pulled on the other
            receiver.wait_for(lambda: expected <= {e["id"] for e in receiver.events()}, 30, "every event")
            counted = Counter(e["id"] for e in receiver.events())
            assert all(counted[i] == 1 for i in expected), counted  # one sender: each event once
            writers = {(e["source"]["addr"].rpartition(":")[2], e["source"]["instanceID"]) for e in receiver.events()}
            assert {port for port, _ in writers} == {str(s.port) for s in servers}  # both wrote, one sent

            sender = _sender(servers[0])
            assert sender is not None and sender == _sender(servers[1])
            holder = next(s for s in servers if sender.endswith(f":{s.port}"))
            survivor = next(s for s in servers if s is not holder)
            holder.kill()
            with httpx.Client(base_url=survivor.url, timeout=60) as client:
                later = push_image(client, "hooks/later", "v1")
            late = _audited(survivor, "hooks/later")
            assert len(late) == 3
            receiver.wait_for(lambda: late <= {e["id"] for e in receiver.events()}, TAKEOVER_SECONDS,
                              "the events after the kill, from the process that took over")
            assert _sender(survivor) is not None and _sender(survivor).endswith(f":{survivor.port}")
            assert any(e["target"].get("digest") == later.digest for e in receiver.events())
    finally:
        for server in servers:
            server.stop()
        receiver.stop()
