"""Acceptance 2: ten images sharing a base layer, nine deleted; gc frees exactly the bytes only
those nine used, on the embedded default and on PostgreSQL + S3. The dry run says the same."""

from __future__ import annotations

import httpx

from tests.api.helpers import (OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, encode, push_blob, push_manifest,
                               random_bytes, sha256)
from tests.gc.conftest import item_set, run_job


def _push_image(http: httpx.Client, name: str, tag: str, base: bytes, size: int) -> dict:
    config = encode({"architecture": "amd64", "os": "linux", "tag": tag})
    layer = random_bytes(size)
    for blob in (config, base, layer):
        push_blob(http, name, blob)
    manifest = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                       "layers": [descriptor(OCI_LAYER, base), descriptor(OCI_LAYER, layer)]})
    digest = push_manifest(http, name, tag, manifest)
    return {"digest": digest, "own": {sha256(config): len(config), sha256(layer): len(layer)}, "base": sha256(base)}


def test_gc_frees_exactly_what_only_deleted_images_used(make_registry):
    server = make_registry(gc_grace_period="0", gc_untagged_days="0")
    base = random_bytes(300_000)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        images = [_push_image(http, "space/app", f"v{i}", base, 10_000 * (i + 1)) for i in range(10)]
        before = set(server.storage.blob_digests())
        for image in images[1:]:
            assert http.delete(f"/v2/space/app/manifests/{image['digest']}").status_code == 202

        dry = run_job(http, "gc", dry_run=True)
        assert server.storage.blob_digests() and set(server.storage.blob_digests()) == before  # nothing moved
        real = run_job(http, "gc")

        only_theirs = {d: s for image in images[1:] for d, s in image["own"].items()}
        assert real["freed_bytes"] == sum(only_theirs.values())
        assert real["deleted"]["blobs"] == len(only_theirs) == 18
        assert {i["digest"] for i in real["items"] if i["type"] == "blob"} == set(only_theirs)
        assert item_set(dry) == item_set(real) and dry["freed_bytes"] == real["freed_bytes"]
        assert dry["dry_run"] is True and real["dry_run"] is False

        after = set(server.storage.blob_digests())
        assert after == before - set(only_theirs)
        assert images[0]["base"] in after and set(images[0]["own"]) <= after
        for digest in only_theirs:
            assert http.head(f"/v2/space/app/blobs/{digest}").status_code == 404
        # The survivor pulls whole; the last report is kept; a second run finds nothing.
        manifest = http.get("/v2/space/app/manifests/v0", headers={"Accept": OCI_MANIFEST})
        assert manifest.status_code == 200
        for layer in manifest.json()["layers"] + [manifest.json()["config"]]:
            blob = http.get(f"/v2/space/app/blobs/{layer['digest']}")
            assert blob.status_code == 200 and sha256(blob.content) == layer["digest"]
        assert http.get("/admin/api/gc").json()["finished_at"] == real["finished_at"]
        again = run_job(http, "gc")
        assert again["freed_bytes"] == 0 and again["deleted"]["blobs"] == 0


def test_untagged_indexes_and_referrers_go_in_one_run_whatever_the_batches(make_registry):
    from tests.api.helpers import push_image, push_index

    server = make_registry(gc_grace_period="0", gc_untagged_days="0", gc_batch_size="1")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        kept = push_image(http, "batches/app", "kept")
        signature = push_image(http, "batches/app", artifact_type="application/vnd.example.sig",
                               subject=kept.descriptor())
        index = push_index(http, "batches/app", children=3)  # untagged, pushed by digest
        image = push_image(http, "batches/app")
        orphan_signature = push_image(http, "batches/app", artifact_type="application/vnd.example.sig",
                                      subject=image.descriptor())
        report = run_job(http, "gc")
        gone = {index.digest, image.digest, orphan_signature.digest} | {c.digest for c in index.children}
        assert {i["digest"] for i in report["items"] if i["type"] == "manifest"} == gone
        assert run_job(http, "gc")["deleted"]["manifests"] == 0
        for digest in (kept.digest, signature.digest):
            assert http.get(f"/v2/batches/app/manifests/{digest}").status_code == 200
        referrers = http.get(f"/v2/batches/app/referrers/{kept.digest}").json()["manifests"]
        assert [r["digest"] for r in referrers] == [signature.digest]
