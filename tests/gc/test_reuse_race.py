"""A push that reuses layers nobody references any more never fails under concurrent gc.

The distribution#3045 race: a client HEADs a layer (200: no need to upload), then pushes a
manifest that references it; meanwhile garbage collection, which saw an unreferenced link older
than the grace period, deletes it, and the manifest is refused with MANIFEST_BLOB_UNKNOWN. A HEAD,
GET or mount restarts the link's grace period, so gc keeps what a client has just been told exists.

Each trial takes an image pushed (and aged past the grace period) before gc started, deletes its
manifest (its links are now collectable), checks its blobs the way a client would (HEAD, GET, or a
mount into another repository), waits until a whole gc run has started and finished after the
check, and only then pushes a manifest referencing them. Without the protection every trial that
checked with HEAD or GET is refused (a mount always made a fresh link in its target); with it, none
is. Blobs of images deleted and never touched again are still collected.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from tests.api.helpers import (OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, encode, error_codes, push_blob,
                               push_manifest, put_manifest, random_bytes, sha256)
from tests.gc.conftest import run_job

GRACE = 6.0  # seconds; a trial's check-to-manifest interval (a gc run or two) stays far below it
# At most this many trials per pusher (two pushers): images pushed and aged for them. A gc run here
# takes a few milliseconds on SQLite, so it often takes a blob before the trial's check.
TRIALS = {"sqlite+filesystem": 30, "postgresql+s3": 12}
CONFIRMED = 8  # a pusher stops once this many of its trials confirmed their blobs before gc took one
UNTOUCHED = 4  # images deleted and never looked at again: gc must take their blobs
MODES = ("head", "get", "mount")


@dataclass
class Image:
    repo: str
    config: bytes
    layers: list[bytes]
    digest: str = ""

    @property
    def blobs(self) -> list[bytes]:
        return [self.config, *self.layers]

    def manifest(self, note: str) -> bytes:
        return encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, self.config),
                       "layers": [descriptor(OCI_LAYER, layer) for layer in self.layers],
                       "annotations": {"note": note}})


@dataclass
class Tally:
    confirmed: int = 0  # trials whose blobs all answered 200 (or mounted) before gc ran
    collected_first: int = 0  # trials where gc took a blob between the manifest delete and the check
    refusals: list[str] = field(default_factory=list)  # MANIFEST_BLOB_UNKNOWN after a confirmed check
    pushed: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (repo, tag, blob digests)
    unused: list[Image] = field(default_factory=list)  # still tagged, never deleted


class Collector(threading.Thread):
    """POST /admin/api/gc in a loop, remembering when each finished run started."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.stop = threading.Event()
        self.runs: list[float] = []  # monotonic start of each finished run
        self.deleted_blobs = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=300) as http:
                while not self.stop.is_set():
                    started = time.monotonic()
                    self.deleted_blobs += run_job(http, "gc")["deleted"]["blobs"]
                    self.runs.append(started)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.error = exc

    def wait_for_run_after(self, moment: float, timeout: float = 60.0) -> None:
        """Until a gc run that started after `moment` has finished."""
        deadline = time.monotonic() + timeout
        while not any(started > moment for started in self.runs[-5:]):
            assert self.error is None and time.monotonic() < deadline, f"gc stopped running: {self.error!r}"
            time.sleep(0.01)


def _push_image(http: httpx.Client, repo: str, tag: str) -> Image:
    image = Image(repo, encode({"architecture": "amd64", "os": "linux", "image": f"{repo}:{tag}"}),
                  [random_bytes(8192)])
    for blob in image.blobs:
        push_blob(http, repo, blob)
    image.digest = push_manifest(http, repo, tag, image.manifest(tag))
    return image


def _checked(http: httpx.Client, image: Image, mode: str, target: str) -> bool:
    """Check the image's blobs as a client about to reuse them would: True if all are there."""
    found = True
    for blob in image.blobs:
        digest = sha256(blob)
        if mode == "head":
            status = http.head(f"/v2/{image.repo}/blobs/{digest}").status_code
        elif mode == "get":
            response = http.get(f"/v2/{image.repo}/blobs/{digest}")
            status = response.status_code
            assert status != 200 or response.content == blob
        else:
            status = http.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": image.repo}).status_code
            status = 200 if status == 201 else 404 if status == 202 else status
        assert status in (200, 404), (mode, status)
        found = found and status == 200
    return found


def _trials(url: str, worker: int, images: list[Image], collector: Collector, tally: Tally,
            errors: list[BaseException]) -> None:
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            for number, image in enumerate(images):
                if tally.confirmed >= CONFIRMED:
                    tally.unused = images[number:]
                    break
                mode = MODES[(worker + number) % len(MODES)]
                repo = f"{image.repo}-mounted" if mode == "mount" else image.repo
                assert http.delete(f"/v2/{image.repo}/manifests/{image.digest}").status_code == 202
                confirmed = _checked(http, image, mode, repo)
                checked_at = time.monotonic()
                if confirmed:
                    tally.confirmed += 1
                else:
                    tally.collected_first += 1
                    for blob in image.blobs:  # as a client would: upload what is missing
                        if http.head(f"/v2/{repo}/blobs/{sha256(blob)}").status_code != 200:
                            push_blob(http, repo, blob)
                collector.wait_for_run_after(checked_at)
                tag = f"w{worker}-{number}"
                manifest = image.manifest(tag)
                response = put_manifest(http, repo, tag, manifest)
                if response.status_code != 201:
                    assert response.status_code == 400 and error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"], \
                        response.text
                    assert confirmed, f"refused although the blobs were uploaded afresh: {response.text}"
                    tally.refusals.append(f"{mode} {repo}: {response.json()['errors'][0]['detail']}")
                    for blob in image.blobs:  # the client's retry: upload, then push again
                        push_blob(http, repo, blob)
                    push_manifest(http, repo, tag, manifest)
                tally.pushed.append((repo, tag, [sha256(blob) for blob in image.blobs]))
    except BaseException as exc:  # noqa: BLE001 - reported by the test thread
        errors.append(exc)


def test_checked_blobs_survive_gc_until_their_manifest_arrives(make_registry):
    server = make_registry(gc_grace_period=str(GRACE), gc_untagged_days="0")
    trials = TRIALS[make_registry.setup]
    with ThreadPoolExecutor(8) as pool, httpx.Client(base_url=server.url, timeout=60,
                                                     limits=httpx.Limits(max_connections=8)) as http:
        images = list(pool.map(lambda repo: _push_image(http, repo, "base"),
                               [f"reuse/w{n % 2}-{n // 2}" for n in range(2 * trials)]
                               + [f"reuse/untouched-{n}" for n in range(UNTOUCHED)]))
        pools, untouched = [images[0:2 * trials:2], images[1:2 * trials:2]], images[2 * trials:]
        for image in untouched:
            assert http.delete(f"/v2/{image.repo}/manifests/{image.digest}").status_code == 202
        time.sleep(GRACE + 0.5)  # every link is now older than the grace period

    collector = Collector(server.url)
    tallies = [Tally() for _ in pools]
    errors: list[BaseException] = []
    pushers = [threading.Thread(target=_trials, args=(server.url, worker, pool, collector, tallies[worker], errors))
               for worker, pool in enumerate(pools)]
    collector.start()
    for thread in pushers:
        thread.start()
    for thread in pushers:
        thread.join(300)
    collector.stop.set()
    collector.join(120)
    assert not errors, errors[0]
    assert collector.error is None, collector.error

    refusals = [r for t in tallies for r in t.refusals]
    confirmed = sum(t.confirmed for t in tallies)
    print(f"\n{confirmed} trials checked their blobs before gc took them, "
          f"{sum(t.collected_first for t in tallies)} found one collected first; "
          f"{len(collector.runs)} gc runs; {len(refusals)} manifests refused")
    assert refusals == [], f"{len(refusals)} of {confirmed} manifests refused after their blobs were confirmed:\n" \
                           + "\n".join(refusals)
    assert confirmed >= CONFIRMED, f"only {confirmed} trials confirmed their blobs before gc took one: too few to tell"

    with httpx.Client(base_url=server.url, timeout=60) as http:
        time.sleep(GRACE + 0.5)
        run_job(http, "gc")
        needed = set()
        for repo, tag, blobs in (p for t in tallies for p in t.pushed):
            assert http.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}).status_code == 200
            for digest in blobs:
                pulled = http.get(f"/v2/{repo}/blobs/{digest}")
                assert pulled.status_code == 200 and sha256(pulled.content) == digest, (repo, tag, digest)
            needed.update(blobs)
        needed.update(sha256(blob) for t in tallies for image in t.unused for blob in image.blobs)
        # What nobody touched is collected; what the trials pushed is all that is left.
        for image in untouched:
            for blob in image.blobs:
                assert http.head(f"/v2/{image.repo}/blobs/{sha256(blob)}").status_code == 404
        assert collector.deleted_blobs >= UNTOUCHED * 2
        assert set(server.storage.blob_digests()) == needed
        check = run_job(http, "fsck")
        assert check["problems"] == [] and check["checked"] == len(needed)

