"""Events in process: what a push, a pull and a delete send a webhook receiver (a real aiohttp server on
loopback), in CNCF Distribution's envelope; retries after failures; an endpoint's ignores; the test
event; and the same events through the audit API."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from tests.inproc.conftest import MakeClient
from tests.inproc.helpers import (OCI_MANIFEST, Client, image_manifest, push_blob, push_image, repository_name,
                                  sha256)

pytestmark = pytest.mark.asyncio

EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"


@dataclass
class Receiver:
    """A webhook endpoint: answers `statuses` in turn (then 200), keeps every envelope it took."""

    statuses: list[int] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.statuses.pop(0) if self.statuses else 200
        self.requests.append({"status": status, "headers": dict(request.headers), "body": json.loads(body)})
        return web.Response(status=status)

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """Events in envelopes answered 2xx, in the order they came."""
        return [event for r in self.requests if r["status"] < 300 for event in r["body"]["events"]]

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.delivered) < count:
            assert time.monotonic() < deadline, f"{len(self.delivered)} of {count} events came: {self.requests}"
            await asyncio.sleep(0.05)
        return self.delivered


async def start_receiver(aiohttp_server: AiohttpServer, statuses: list[int] | None = None) -> Receiver:
    receiver = Receiver(statuses=list(statuses or []))
    app = web.Application()
    app.router.add_post("/events", receiver.handle)
    server = await aiohttp_server(app)
    receiver.url = str(server.make_url("/events"))
    return receiver


def endpoints(*entries: dict[str, Any]) -> str:
    return json.dumps(list(entries))


async def test_push_pull_delete_reach_the_receiver_in_distributions_envelope(
        make_client: MakeClient, aiohttp_server: AiohttpServer) -> None:
    receiver = await start_receiver(aiohttp_server)
    api = await make_client(notifications_endpoints=endpoints(
        {"name": "ci", "url": receiver.url, "headers": {"Authorization": ["Bearer s3cr3t"]}, "timeout": "2s"}))
    name = repository_name("events")
    digest, body = await push_image(api, name, "v1")
    layer = json.loads(body)["layers"][0]
    assert (await api.get(f"/v2/{name}/manifests/v1", headers={"Accept": json.loads(body)["mediaType"]})).status == 200
    assert (await api.head(f"/v2/{name}/blobs/{layer['digest']}")).status == 200  # a HEAD is no pull
    assert (await api.get(f"/v2/{name}/blobs/{layer['digest']}")).status == 200
    assert (await api.delete(f"/v2/{name}/manifests/{digest}")).status == 202

    # Sent in the order written: pulls are written in a batch within the second, after the delete here.
    events = sorted(await receiver.wait_for(6), key=lambda e: e["timestamp"])
    assert [e["action"] for e in receiver.delivered] == ["push", "push", "push", "delete", "pull", "pull"]
    assert [(e["action"], e["target"].get("mediaType")) for e in events] == [
        ("push", "application/octet-stream"), ("push", "application/octet-stream"),
        ("push", "application/vnd.oci.image.manifest.v1+json"),
        ("pull", "application/vnd.oci.image.manifest.v1+json"), ("pull", "application/octet-stream"),
        ("delete", None)]
    request = receiver.requests[0]
    assert request["headers"]["Content-Type"] == EVENTS_MEDIA_TYPE
    assert request["headers"]["Authorization"] == "Bearer s3cr3t"
    manifest_push = events[2]
    assert manifest_push["target"] == {
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": len(body),
        "length": len(body), "repository": name, "tag": "v1",
        "url": f"http://{manifest_push['request']['host']}/v2/{name}/manifests/{digest}"}
    assert manifest_push["request"]["method"] == "PUT" and manifest_push["request"]["addr"] == "127.0.0.1"
    assert manifest_push["actor"] == {} and manifest_push["source"]["instanceID"]
    assert events[4]["target"]["digest"] == layer["digest"] and events[4]["target"]["size"] == layer["size"]
    assert events[5]["target"] == {"digest": digest, "repository": name}  # a delete: digest and repository
    assert len({e["id"] for e in events}) == len(events)


async def test_failed_deliveries_are_retried_with_the_same_events(make_client: MakeClient,
                                                                   aiohttp_server: AiohttpServer) -> None:
    receiver = await start_receiver(aiohttp_server, statuses=[500, 503, 302])
    api = await make_client(notifications_endpoints=endpoints(
        {"name": "flaky", "url": receiver.url, "threshold": 2, "backoff": "100ms"}))
    name = repository_name("events")
    await push_blob(api, name, b"first")
    events = await receiver.wait_for(1)
    attempts = [r["body"]["events"][0]["id"] for r in receiver.requests]
    assert len(attempts) == 4 and set(attempts) == {events[0]["id"]}  # three failures, then the same event
    status = (await (await api.get("/admin/api/notifications")).json())["endpoints"][0]
    assert (status["name"], status["sent"], status["failed"], status["pending"]) == ("flaky", 1, 3, 0)
    assert status["last_success_at"] and "redirect" in status["last_error"]
    assert status["sender"] and status["sender"].endswith(":5000")  # this process (host:port of its config)
    metrics = await (await api.get("/metrics")).text()
    assert 'registry_notification_events_sent_total{endpoint="flaky"} 1.0' in metrics
    assert 'registry_notification_failures_total{endpoint="flaky"} 3.0' in metrics
    assert 'registry_notification_events_pending{endpoint="flaky"} 0.0' in metrics
    assert 'registry_notification_last_success_timestamp_seconds{endpoint="flaky"}' in metrics


async def test_ignored_actions_and_media_types_are_not_sent(make_client: MakeClient,
                                                            aiohttp_server: AiohttpServer) -> None:
    receiver = await start_receiver(aiohttp_server)
    api = await make_client(notifications_endpoints=endpoints(
        {"name": "manifests", "url": receiver.url, "ignoredmediatypes": ["application/octet-stream"],
         "ignore": {"actions": ["pull"]}}))
    name = repository_name("events")
    digest, body = await push_image(api, name, "v1")
    await api.get(f"/v2/{name}/manifests/v1", headers={"Accept": json.loads(body)["mediaType"]})
    await push_blob(api, name, b"last")
    await asyncio.sleep(2.5)  # the pull is written within a second, then skipped like the blobs
    assert [(e["action"], e["target"]["digest"]) for e in receiver.delivered] == [("push", digest)]
    status = (await (await api.get("/admin/api/notifications")).json())["endpoints"][0]
    assert status["pending"] == 0 and status["sent"] == 1


async def test_the_test_event_and_an_unknown_endpoint(make_client: MakeClient, aiohttp_server: AiohttpServer) -> None:
    receiver = await start_receiver(aiohttp_server, statuses=[200, 500])
    api = await make_client(notifications_endpoints=endpoints({"name": "ci", "url": receiver.url}))
    resp = await api.post("/admin/api/notifications/ci/test")
    result = await resp.json()
    assert resp.status == 200 and result["delivered"] and result["status"] == 200
    assert receiver.requests[0]["body"]["events"][0]["id"] == result["event_id"]
    assert receiver.requests[0]["body"]["events"][0]["action"] == "test"
    failed = await (await api.post("/admin/api/notifications/ci/test")).json()
    assert (failed["delivered"], failed["status"], failed["error"]) == (False, 500, "answered 500")
    assert (await api.post("/admin/api/notifications/nope/test")).status == 404
    assert (await api.post("/admin/api/notifications/%00/test")).status == 404


async def test_events_are_in_the_audit_trail(api: Client) -> None:
    name = repository_name("audit")
    digest, body = await push_image(api, name, "v1")
    await api.get(f"/v2/{name}/manifests/v1", headers={"Accept": json.loads(body)["mediaType"]})
    assert (await api.delete(f"/admin/api/repositories/{name}/tags/v1")).status == 200
    await asyncio.sleep(1.5)  # the pull and the admin action are written within the second
    page = await (await api.get("/admin/api/audit", params={"repository": name})).json()
    actions = [(e["action"], e["target"], e["reference"]) for e in page["entries"]]
    assert actions[:4] == [("admin", "admin", "v1"), ("delete", "manifest", "v1"), ("pull", "manifest", "v1"),
                           ("push", "manifest", "v1")]  # newest first, by when each happened
    assert page["entries"][0]["detail"] == {"method": "DELETE", "path": f"/admin/api/repositories/{name}/tags/v1",
                                            "status": 200}
    assert all(e["actor"] == {"name": "", "kind": "anonymous", "address": "127.0.0.1"} for e in page["entries"])
    first = await (await api.get("/admin/api/audit", params={"repository": name, "limit": "2"})).json()
    rest = await (await api.get("/admin/api/audit", params={"repository": name, "before": first["next"]})).json()
    assert [e["seq"] for e in first["entries"] + rest["entries"]] == [e["seq"] for e in page["entries"]]
    assert rest["next"] is None
    tags = await (await api.get(f"/admin/api/repositories/{name}/tags")).json()
    assert tags["tags"] == []  # deleted; a pushed tag shows who pushed it:
    await push_image(api, name, "v2")
    tags = await (await api.get(f"/admin/api/repositories/{name}/tags")).json()
    assert tags["tags"][0]["pushed_by"] == "anonymous (127.0.0.1)"
    assert sha256(body) == digest


async def test_immutable_tag_and_quota_refusals_are_in_the_audit_trail(make_client: MakeClient) -> None:
    """Main's refusals (registry/gc/immutable.py, quotas) are handler DENIEDs: each one is a `denied` entry
    with the refusal's message, and the refused change itself records nothing (it rolled back)."""
    api = await make_client(immutable_tags=json.dumps([{"repositories": "prod/**", "tags": "v*"}]),
                            quota_namespaces=json.dumps([{"namespace": "tiny", "bytes": 10}]))
    name = repository_name("prod")
    first, _ = await push_image(api, name, "v1")
    moved = await image_manifest(api, name)
    assert (await api.put(f"/v2/{name}/manifests/v1", data=moved,
                          headers={"Content-Type": OCI_MANIFEST})).status == 403
    assert (await api.delete(f"/v2/{name}/manifests/v1")).status == 403
    assert (await api.delete(f"/v2/{name}/manifests/{first}")).status == 403
    small = repository_name("tiny")
    assert (await api.post(f"/v2/{small}/blobs/uploads/", params={"digest": sha256(b"x" * 64)}, data=b"x" * 64,
                           headers={"Content-Type": "application/octet-stream"})).status == 403
    await asyncio.sleep(1.5)  # denials are written in a batch within the second

    page = await (await api.get("/admin/api/audit", params={"repository": name})).json()
    actions = [(e["action"], e["outcome"], e["detail"]["method"] if e["action"] == "denied" else e["reference"])
               for e in page["entries"]]
    assert actions[:3] == [("denied", "denied", "DELETE"), ("denied", "denied", "DELETE"),
                           ("denied", "denied", "PUT")]
    assert all("immutable" in e["detail"]["reason"] for e in page["entries"][:3])
    pushes = [(e["target"], e["reference"]) for e in page["entries"][3:]]
    assert [e["action"] for e in page["entries"][3:]] == ["push"] * 5  # 2 images' blobs; one manifest, the first
    assert [p for p in pushes if p[0] == "manifest"] == [("manifest", "v1")]
    tags = await (await api.get(f"/admin/api/repositories/{name}/tags")).json()
    assert [(t["tag"], t["digest"], t["pushed_by"]) for t in tags["tags"]] == [("v1", first, "anonymous (127.0.0.1)")]

    quota = await (await api.get("/admin/api/audit", params={"repository": small})).json()
    assert [(e["action"], e["outcome"]) for e in quota["entries"]] == [("denied", "denied")]
    assert "quota exceeded for namespace 'tiny'" in quota["entries"][0]["detail"]["reason"]
