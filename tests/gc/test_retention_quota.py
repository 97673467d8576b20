"""Acceptance 3: retention policies and namespace quotas behave as documented, dry runs match."""

from __future__ import annotations

import time

import httpx

from tests.api.helpers import (OCI_MANIFEST, assert_error, image_manifest, push_blob, push_manifest, random_bytes,
                               sha256, start_upload, with_query)
from tests.gc.conftest import item_set, run_job

POLICY = [{"repositories": "ret/*", "keep_last": 2, "keep_tags": "release-.*", "keep_pulled_within_days": 1}]


def test_retention_keeps_newest_patterns_and_recently_pulled(make_registry):
    server = make_registry(retention_policies=POLICY, gc_grace_period="0")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        pushed = {}
        for tag in ("release-1", "v1", "v2", "v3", "v4", "v5"):
            body, blobs = image_manifest(http, "ret/app")
            push_manifest(http, "ret/app", tag, body)
            pushed[tag] = (sha256(body), blobs)
            time.sleep(0.02)  # distinct push times
        body, _ = image_manifest(http, "other/app")  # no policy matches: untouched
        push_manifest(http, "other/app", "v1", body)
        assert http.get("/v2/ret/app/manifests/v1", headers={"Accept": OCI_MANIFEST}).status_code == 200

        # Pulls are recorded in batches: wait until the pull of v1 counts.
        deadline = time.monotonic() + 20
        while True:
            dry = run_job(http, "retention", dry_run=True)
            victims = {i["tag"] for i in dry["items"] if i["type"] == "tag"}
            if "v1" not in victims or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert victims == {"v2", "v3"}, dry
        assert {i["digest"] for i in dry["items"] if i["type"] == "manifest"} == {pushed["v2"][0], pushed["v3"][0]}
        assert dry["deleted"]["blobs"] == 0 and "next gc" in dry["note"]

        real = run_job(http, "retention")
        assert item_set(real) == item_set(dry)
        assert http.get("/v2/ret/app/tags/list").json()["tags"] == ["release-1", "v1", "v4", "v5"]
        assert http.get("/v2/other/app/tags/list").json()["tags"] == ["v1"]
        assert http.get(f"/v2/ret/app/manifests/{pushed['v2'][0]}").status_code == 404

        # gc then frees the bytes that only the removed images used; its dry run says so first.
        gc_dry = run_job(http, "gc", dry_run=True)
        gone = set(pushed["v2"][1]) | set(pushed["v3"][1])
        assert {i["digest"] for i in gc_dry["items"] if i["type"] == "blob"} == gone
        gc_real = run_job(http, "gc")
        assert item_set(gc_real) == item_set(gc_dry) and gc_real["freed_bytes"] == gc_dry["freed_bytes"] > 0
        assert not gone & set(server.storage.blob_digests())


def test_quota_denies_pushes_over_it_and_counts_shared_blobs_once(make_registry):
    server = make_registry(quota_namespaces=[{"namespace": "quota", "bytes": "250KiB"}])
    first, second = random_bytes(200 * 1024), random_bytes(100 * 1024)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        push_blob(http, "quota/a", first)
        # The same blob in another repository of the namespace costs nothing more.
        push_blob(http, "quota/b", first)
        assert http.post("/v2/quota/c/blobs/uploads/", params={"mount": sha256(first), "from": "quota/a"}
                         ).status_code == 201

        # A session upload that would exceed it: DENIED with quota and usage, nothing linked.
        location = start_upload(http, "quota/a").headers["Location"]
        denied = http.put(with_query(location, digest=sha256(second)), content=second)
        assert_error(denied, 403, "DENIED")
        message = denied.json()["errors"][0]["message"]
        assert "250.0 KiB" in message and "200.0 KiB used" in message and "100.0 KiB" in message, message
        assert http.head(f"/v2/quota/a/blobs/{sha256(second)}").status_code == 404
        # A monolithic push too.
        denied = http.post("/v2/quota/a/blobs/uploads/", params={"digest": sha256(second)}, content=second)
        assert_error(denied, 403, "DENIED")
        # Other namespaces are not limited.
        push_blob(http, "free/a", second)

        # Fill to exactly the quota (allowed), after which even starting an upload is refused.
        push_blob(http, "quota/a", random_bytes(50 * 1024))
        assert_error(http.post("/v2/quota/a/blobs/uploads/"), 403, "DENIED")

        # Bytes a refused monolithic push left in the store are garbage (no link, so no grace): gc
        # removes them, and only them.
        third = random_bytes(10 * 1024)
        denied = http.post("/v2/quota/b/blobs/uploads/", params={"digest": sha256(third)}, content=third)
        assert_error(denied, 403, "DENIED")
        run_job(http, "gc")
        stored = set(server.storage.blob_digests())
        assert sha256(third) not in stored and {sha256(first), sha256(second)} <= stored
