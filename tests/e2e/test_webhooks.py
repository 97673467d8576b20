"""Webhooks with the real Docker engine (acceptance): a receiver gets every event of a `docker push`
and a `docker pull`, in CNCF Distribution's envelope, each at least once and always with the same
id, although the registry is killed (kill -9) in the middle of a delivery.

The receiver first refuses everything (503), so the events wait in the database while the sender
retries; then it keeps a delivery without answering it, and the registry is killed right then: it
never learns that the receiver has them. The restarted registry takes the endpoint's lease once the
dead one's lapses and sends them again, with the same ids, and the rest.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.images import BASE_DOCKERFILE, app_dockerfile, docker_build, make_base_context, run
from tests.support.server import RegistryProcess
from tests.support.webhooks import WebhookReceiver

pytestmark = pytest.mark.e2e

REPOSITORY = "webhooks/app"
EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"


@pytest.fixture(scope="module")
def image(dockerd: None, session_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """An image of three layers of its own (nothing shared with other tests' images): its id and its
    base image's."""
    root = tmp_path_factory.mktemp("webhooks-build")
    base = root / "base"
    base.mkdir()
    make_base_context(base, f"webhooks-{session_id}")
    built_base = docker_build(base, f"e2e-{session_id}/webhooks-base:1", BASE_DOCKERFILE)
    app = root / "app"
    app.mkdir()
    (app / "app.txt").write_text(f"webhooks {session_id}\n")
    built = docker_build(app, f"e2e-{session_id}/webhooks:1", app_dockerfile(built_base.tag, "/app.txt"))
    yield built.id, built_base.id
    for image_id in (built.id, built_base.id):
        run(["docker", "image", "rm", "--force", image_id], check=False)


def _audit(registry: RegistryProcess) -> list[dict]:
    response = httpx.get(f"{registry.url}/admin/api/audit", params={"repository": REPOSITORY, "limit": "1000"},
                         timeout=30)
    assert response.status_code == 200, response.text
    return [e for e in response.json()["entries"] if e["action"] in ("push", "pull", "mount")]


def test_every_event_of_a_docker_push_and_pull_arrives_across_a_kill(image: tuple[str, str], tmp_path: Path) -> None:
    receiver = WebhookReceiver(mode="fail", slow_seconds=60).start()
    # A threshold no failure run reaches here: retries stay 300 ms apart, however long the receiver refuses.
    endpoint = {"name": "ci", "url": receiver.url, "timeout": "30s", "threshold": 1000, "backoff": "300ms",
                "headers": {"Authorization": ["Bearer webhook-secret"]}}
    registry = RegistryProcess(tmp_path / "data", env={"REGISTRY_NOTIFICATIONS_ENDPOINTS": json.dumps([endpoint])})
    try:
        registry.start()
        ref = f"{registry.host}/{REPOSITORY}:1"
        run(["docker", "tag", image[0], ref])
        pushed = run(["docker", "push", ref], timeout=180).stdout
        digest = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed)
        assert digest, pushed
        for image_id in image:  # every layer goes: the pull downloads them all
            run(["docker", "image", "rm", "--force", image_id])
        run(["docker", "pull", ref], timeout=180)

        # What the registry recorded; pulls are written within a second of happening.
        time.sleep(2.0)
        expected = {e["id"]: e for e in _audit(registry)}
        pulls = [e for e in expected.values() if e["action"] == "pull"]
        pushes = [e for e in expected.values() if e["action"] == "push"]
        assert {e["target"] for e in pulls} == {"manifest", "blob"} and len(pulls) >= 5, pulls  # manifest, config, 3 layers
        assert {e["target"] for e in pushes} == {"manifest", "blob"} and len(pushes) >= 5, pushes

        # The sender retries the refused delivery; once an attempt carries every event, hold the next one...
        receiver.wait_for(lambda: set(expected) <= {e["id"] for e in receiver.events(("fail",))}, 60,
                          "an attempt with every event")
        receiver.mode = "slow"
        receiver.wait_for(receiver.slow_started.is_set, 30, "a delivery held")
        registry.kill()  # ...and kill the registry while the receiver holds it: no answer ever reaches it
        receiver.mode = "ok"
        registry.start()
        receiver.wait_for(lambda: set(expected) <= {e["id"] for e in receiver.events(("ok",))}, 90,
                          "every event delivered after the restart")
    finally:
        registry.stop()
        receiver.stop()

    copies: dict[str, list[dict]] = {}
    for event in receiver.events():
        copies.setdefault(event["id"], []).append(event)
    for event_id, seen in copies.items():
        assert all(copy == seen[0] for copy in seen), f"event {event_id} changed between deliveries: {seen}"
    assert any(len(copies[i]) > 1 for i in expected), "no event was sent twice: the kill missed the delivery"
    held = [p for p in receiver.posted if p.mode == "slow"]
    assert held and {e["id"] for e in held[0].events} <= {e["id"] for e in receiver.events(("ok",))}

    for posted in receiver.posted:
        assert posted.content_type == EVENTS_MEDIA_TYPE
        assert posted.headers.get("Authorization") == "Bearer webhook-secret"
    by_id = {event_id: seen[0] for event_id, seen in copies.items()}
    for event_id, audited in expected.items():
        event = by_id[event_id]
        assert set(event) == {"id", "timestamp", "action", "target", "request", "actor", "source"}, event
        assert event["action"] == audited["action"] and event["actor"] == {}
        target = event["target"]
        assert (target["repository"], target["digest"], target["size"], target["length"]) == (
            REPOSITORY, audited["digest"], audited["size"], audited["size"])
        kind = "manifests" if audited["target"] == "manifest" else "blobs"
        assert target["url"] == f"http://{registry.host}/v2/{REPOSITORY}/{kind}/{audited['digest']}"
        assert target["mediaType"] == audited["media_type"]
        assert set(event["request"]) == {"id", "addr", "host", "method", "useragent"}
        assert event["request"]["addr"] == "127.0.0.1" and "docker" in event["request"]["useragent"].lower()
        assert event["source"]["addr"].endswith(f":{registry.port}") and event["source"]["instanceID"]
    manifest_push = [by_id[e["id"]] for e in pushes if e["target"] == "manifest"]
    assert [(m["target"]["tag"], m["target"]["digest"], m["request"]["method"]) for m in manifest_push] == [
        ("1", digest.group(1), "PUT")]
    manifest_pulls = [by_id[e["id"]] for e in pulls if e["target"] == "manifest"]
    assert manifest_pulls and all(m["request"]["method"] == "GET" for m in manifest_pulls)
