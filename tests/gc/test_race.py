"""Acceptance 1: pushes of images sharing layers run while gc runs continuously.

The pushers behave like docker: HEAD each blob, upload what is missing, PUT the manifest. A HEAD
200 or an upload protects the blob for at least half the grace period (a HEAD restarts the link's
grace period once half of it has passed), so a manifest refused with MANIFEST_BLOB_UNKNOWN within
that time fails the test; one refused later (the host stalled that long) is pushed again, as a
client retrying would. Afterwards every image that was pushed and not deleted pulls and verifies,
and the store holds exactly the blobs those images use: everything deleted or unreferenced past
the grace period is gone from the store and the database.
"""

from __future__ import annotations

import random
import threading
import time

import httpx

from tests.api.helpers import (OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, encode, error_codes, push_blob,
                               put_manifest, random_bytes, sha256)
from tests.gc.conftest import run_job

GRACE = 2.0


def _pusher(url: str, worker: int, iterations: int, pool: list[bytes], grace: float, results: dict,
            errors: list) -> None:
    rng = random.Random(worker)
    kept: dict[tuple[str, str], tuple[str, list[str]]] = {}
    deleted: list[tuple[str, str]] = []
    orphans: list[str] = []
    retries = 0
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(iterations):
                repo, tag = f"race/app{rng.randrange(2)}", f"w{worker}-{i}"
                layers = rng.sample(pool, 2) + [random_bytes(4096)]
                config = encode({"architecture": "amd64", "os": "linux", "image": tag})
                manifest = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                   "config": descriptor(OCI_CONFIG, config),
                                   "layers": [descriptor(OCI_LAYER, layer) for layer in layers]})
                for _attempt in range(10):
                    asked: dict[str, float] = {}  # digest -> when we asked for it (before the registry said yes)
                    for blob in (config, *layers):
                        asked[sha256(blob)] = time.monotonic()
                        if http.head(f"/v2/{repo}/blobs/{sha256(blob)}").status_code != 200:
                            push_blob(http, repo, blob)
                    response = put_manifest(http, repo, tag, manifest)
                    if response.status_code == 201:
                        break
                    assert response.status_code == 400 and error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"], \
                        response.text
                    refused = response.json()["errors"][0]["detail"]["digest"]
                    age = time.monotonic() - asked[refused]
                    assert age > grace / 2, f"{refused} was collected {age:.2f}s after the registry confirmed it"
                    retries += 1
                else:
                    raise AssertionError(f"{repo}:{tag} could not be pushed in 10 attempts")
                kept[(repo, tag)] = (sha256(manifest), [sha256(b) for b in (config, *layers)])
                roll = rng.random()
                if roll < 0.3:
                    victim = rng.choice(sorted(kept))
                    digest, _ = kept.pop(victim)
                    assert http.delete(f"/v2/{victim[0]}/manifests/{digest}").status_code == 202
                    deleted.append((victim[0], digest))
                elif roll > 0.85:
                    orphans.append(push_blob(http, repo, random_bytes(2048)))
    except BaseException as exc:  # noqa: BLE001 - reported by the test thread
        errors.append(exc)
    results[worker] = {"kept": kept, "deleted": deleted, "orphans": orphans, "retries": retries}


def _collector(url: str, stop: threading.Event, runs: list, errors: list) -> None:
    try:
        with httpx.Client(base_url=url, timeout=300) as http:
            while not stop.is_set():
                response = http.post("/admin/api/gc", json={})
                assert response.status_code == 200, response.text
                runs.append(response.json()["deleted"])
    except BaseException as exc:  # noqa: BLE001 - reported by the test thread
        errors.append(exc)


def _image_push_seconds(url: str) -> float:
    """How long one pusher's image (config, three layers, manifest) takes here with nothing else running."""
    layers = [random_bytes(16 * 1024) for _ in range(3)]
    config = encode({"architecture": "amd64", "os": "linux", "image": "probe"})
    manifest = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                       "layers": [descriptor(OCI_LAYER, layer) for layer in layers]})
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=60) as http:
        for blob in (config, *layers):
            assert http.head(f"/v2/race/probe/blobs/{sha256(blob)}").status_code == 404
            push_blob(http, "race/probe", blob)
        assert put_manifest(http, "race/probe", "probe", manifest).status_code == 201
        took = time.monotonic() - started
        # Gone again: the collector takes it like any deleted image.
        assert http.delete(f"/v2/race/probe/manifests/{sha256(manifest)}").status_code == 202
    return took


def test_pushes_while_gc_runs_continuously(make_registry):
    settings = {"gc_untagged_days": "0", "gc_batch_size": "25"}
    server = make_registry(gc_grace_period=str(GRACE), **settings)
    # The grace period must outlast one image's push, or every manifest finds a layer collected: on a
    # slow or busy host (PostgreSQL + S3 under load), give the race a longer one.
    grace = max(GRACE, round(4 * _image_push_seconds(server.url), 1))
    if grace > GRACE:
        server.stop()
        server = make_registry(gc_grace_period=str(grace), **settings)
    iterations = 150 if make_registry.setup == "sqlite+filesystem" else 40  # per pusher, two pushers
    pool = [random_bytes(16 * 1024) for _ in range(6)]
    results: dict[int, dict] = {}
    runs: list[dict] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    collector = threading.Thread(target=_collector, args=(server.url, stop, runs, errors))
    pushers = [threading.Thread(target=_pusher, args=(server.url, w, iterations, pool, grace, results, errors))
               for w in range(2)]
    collector.start()
    for thread in pushers:
        thread.start()
    for thread in pushers:
        thread.join(600)
    stop.set()
    collector.join(120)
    assert not errors, errors[0]
    assert len(runs) >= 5, f"gc ran only {len(runs)} times alongside the pushes"

    time.sleep(grace + 0.5)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        run_job(http, "gc")
        kept = {key: value for r in results.values() for key, value in r["kept"].items()}
        needed = {digest for _, blobs in kept.values() for digest in blobs}
        for (repo, tag), (digest, blobs) in kept.items():
            manifest = http.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
            assert manifest.status_code == 200 and sha256(manifest.content) == digest, (repo, tag)
            for blob in blobs:
                pulled = http.get(f"/v2/{repo}/blobs/{blob}")
                assert pulled.status_code == 200 and sha256(pulled.content) == blob, (repo, tag, blob)
        for repo, digest in (d for r in results.values() for d in r["deleted"]):
            assert http.get(f"/v2/{repo}/manifests/{digest}").status_code == 404
        for digest in {d for r in results.values() for d in r["orphans"]} - needed:
            for repo in ("race/app0", "race/app1"):
                assert http.head(f"/v2/{repo}/blobs/{digest}").status_code == 404

        # Exactly the needed bytes remain, and the database agrees with the store.
        assert set(server.storage.blob_digests()) == needed
        check = run_job(http, "fsck")
        assert check["problems"] == [] and check["checked"] == len(needed)
    retries = sum(r["retries"] for r in results.values())
    print(f"{len(kept)} images kept, {sum(len(r['deleted']) for r in results.values())} deleted, "
          f"{len(runs)} gc runs, {retries} manifest pushes retried after gc took a layer (each over half the grace "
          f"period after it was confirmed)")
