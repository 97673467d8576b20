"""The mirror cache's size cap: a pull loop larger than the cap keeps the cache under it, the most
recently pulled images stay, pinned ones stay; pre-warm fetches an image ahead of time."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import RegistryProcess

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = 1024 * 1024
IMAGES = 8
CAP = int(3.5 * LAYER)  # room for three images (each a 1 MiB layer and a tiny config)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_image(client: httpx.Client, repo: str, tag: str) -> tuple[str, list[str]]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "note": tag}).encode()
    layer = os.urandom(LAYER)
    for blob in (config, layer):
        assert client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": _sha(blob)},
                           content=blob).status_code == 201
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _sha(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _sha(layer), "size": LAYER}],
    }).encode()
    assert client.put(f"/v2/{repo}/manifests/{tag}", content=manifest,
                      headers={"Content-Type": OCI_MANIFEST}).status_code == 201
    return _sha(manifest), [_sha(config), _sha(layer)]


def _pull(client: httpx.Client, repo: str, tag: str) -> None:
    manifest = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert manifest.status_code == 200, manifest.text
    document = manifest.json()
    for descriptor in [document["config"], *document["layers"]]:
        blob = client.get(f"/v2/{repo}/blobs/{descriptor['digest']}")
        assert blob.status_code == 200 and _sha(blob.content) == descriptor["digest"]
    # A client has all the bytes a moment before the fill has committed them: let it settle.
    deadline = time.monotonic() + 10
    while client.get("/admin/api/mirror").json()["fills_in_progress"] and time.monotonic() < deadline:
        time.sleep(0.02)


@contextlib.contextmanager
def _pair(tmp_path: Path, cap: int = CAP, tag_ttl: float = 300
          ) -> Iterator[tuple[RegistryProcess, RegistryProcess, dict[str, list[str]]]]:
    """An upstream holding IMAGES images (v0..) in one repository, and a mirror of it with `cap` bytes of cache."""
    with RegistryProcess(tmp_path / "upstream") as upstream, httpx.Client(base_url=upstream.url) as http:
        repo = f"cache/{uuid.uuid4().hex[:6]}"
        blobs = {f"v{i}": _push_image(http, repo, f"v{i}")[1] for i in range(IMAGES)}
        upstreams = json.dumps([{"alias": "up", "url": upstream.url, "tag_ttl": tag_ttl}])
        env = {"REGISTRY_MIRROR_UPSTREAMS": upstreams, "REGISTRY_MIRROR_CACHE_BYTES": str(cap)}
        with RegistryProcess(tmp_path / "mirror", env=env) as mirror:
            yield mirror, upstream, {"repo": [repo], **blobs}


@pytest.fixture
def mirror_pair(tmp_path) -> Iterator[tuple[RegistryProcess, RegistryProcess, dict[str, list[str]]]]:
    with _pair(tmp_path) as pair:
        yield pair


def test_size_cap_keeps_recent_and_pinned_images(mirror_pair):
    mirror, _upstream, images = mirror_pair
    repo = images["repo"][0]
    cached = f"up/{repo}"
    with httpx.Client(base_url=mirror.url, timeout=60) as http:
        # v0 is pinned, and pre-warmed so it is cached before anything else.
        assert http.post("/admin/api/mirror/pins", json={"image": f"{cached}:v0"}).status_code == 201
        warmed = http.post("/admin/api/mirror/prewarm", json={"image": f"{cached}:v0"})
        assert warmed.status_code == 200 and warmed.json()["bytes_fetched"] >= LAYER, warmed.text
        assert all(mirror.storage.blob_bytes(d) is not None for d in images["v0"])

        for i in range(1, IMAGES):
            _pull(http, cached, f"v{i}")
            report = http.post("/admin/api/mirror/evict").json()
            stats = http.get("/admin/api/mirror").json()
            assert stats["cache_bytes"] <= CAP + LAYER, (i, stats, report)  # v0's pin may exceed by itself
        final = http.get("/admin/api/mirror").json()

    stored = set(mirror.storage.blob_digests())
    # The pinned image survives a loop far larger than the cap.
    assert set(images["v0"]) <= stored
    # The most recently pulled images stay; the oldest unpinned ones are gone.
    assert set(images[f"v{IMAGES - 1}"]) <= stored
    assert set(images[f"v{IMAGES - 2}"]) <= stored
    assert not set(images["v1"]) & stored
    assert not set(images["v2"]) & stored
    assert final["cache_bytes"] <= CAP + LAYER
    assert final["pins"] == [f"{cached}:v0"]


def test_evicted_images_pull_again_from_upstream(mirror_pair):
    mirror, _upstream, images = mirror_pair
    cached = f"up/{images['repo'][0]}"
    with httpx.Client(base_url=mirror.url, timeout=60) as http:
        for i in range(IMAGES):
            _pull(http, cached, f"v{i}")
            http.post("/admin/api/mirror/evict")
        assert not set(images["v0"]) & set(mirror.storage.blob_digests())
        _pull(http, cached, "v0")  # evicted: fetched again, verified, served
        stats = http.get("/admin/api/mirror").json()["upstreams"][0]
    assert stats["misses"] >= IMAGES * 2 + 2 and stats["hits"] >= 1


def test_recency_is_refreshed_by_pulls_not_fill_time(mirror_pair):
    mirror, _upstream, images = mirror_pair
    cached = f"up/{images['repo'][0]}"
    with httpx.Client(base_url=mirror.url, timeout=60) as http:
        _pull(http, cached, "v0")
        _pull(http, cached, "v1")
        _pull(http, cached, "v2")
        _pull(http, cached, "v0")  # v0 is now more recent than v1 and v2, though filled first
        _pull(http, cached, "v3")
        http.post("/admin/api/mirror/evict")
    stored = set(mirror.storage.blob_digests())
    assert set(images["v0"]) <= stored and set(images["v3"]) <= stored
    assert not set(images["v1"]) & stored


def test_an_eviction_pass_without_a_cap_evicts_nothing(tmp_path):
    """No cap (mirror.cache_bytes 0, the default) means nothing is ever over it: "Run eviction now" used to
    empty the whole cache."""
    with _pair(tmp_path, cap=0) as (mirror, upstream, images):
        cached = f"up/{images['repo'][0]}"
        with httpx.Client(base_url=mirror.url, timeout=60) as http:
            _pull(http, cached, "v0")
            report = http.post("/admin/api/mirror/evict").json()
            assert report["evicted_links"] == 0 and report["freed_bytes"] == 0 and report["cap_bytes"] == 0, report
            assert set(images["v0"]) <= set(mirror.storage.blob_digests())
            upstream.stop()  # what the mirror holds serves without it
            _pull(http, cached, "v0")


def test_pulls_through_the_mirror_are_recorded_and_revalidation_is_no_push(tmp_path):
    """The admin page's "last pull" moves with pulls through the mirror; a revalidation that finds the tag
    unchanged upstream restarts its cache time but is not a push."""
    with _pair(tmp_path, tag_ttl=1) as (mirror, _upstream, images):
        cached = f"up/{images['repo'][0]}"
        with httpx.Client(base_url=mirror.url, timeout=60) as http:
            _pull(http, cached, "v0")
            first = http.get(f"/admin/api/repositories/{cached}").json()
            time.sleep(1.2)  # past the tag's TTL: the next pull asks the upstream (HEAD), which confirms it
            _pull(http, cached, "v0")
            deadline = time.monotonic() + 15  # pulls are written every few seconds
            while (repo := http.get(f"/admin/api/repositories/{cached}").json())["last_pull"] is None:
                assert time.monotonic() < deadline, repo
                time.sleep(0.2)
            stats = http.get("/admin/api/mirror").json()["upstreams"][0]
        assert stats["revalidations"] >= 1, stats
        assert repo["last_push"] == first["last_push"], (first, repo)
        assert repo["last_pull"] >= first["last_push"]
