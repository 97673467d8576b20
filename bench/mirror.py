"""The `mirror` set of bench/run.py: two pull-through mirrors side by side, in front of one upstream.

- upstream: our registry (`python -m registry serve`, SQLite + filesystem, auth mode none) on
  loopback, at the default log level (info), so its access log has one line per request;
- ours: a second registry process with the upstream configured as its Docker Hub mirror
  (REGISTRY_MIRROR_UPSTREAMS, alias `hub`, `docker_hub: true`, tag_ttl 300 s);
- reference: Debian's `docker-registry` (Distribution 2.8.2) in proxy mode
  (`proxy.remoteurl: http://127.0.0.1:UPSTREAM`), filesystem driver in its own data dir.

Each repetition pushes a new image to the upstream (untimed): random layers (8-32 MiB by default),
a config and a Docker schema 2 manifest, under a new name `library/bench-mirror-rN:v1`. Neither
mirror has seen any of its bytes, so each cold pull starts with both caches empty for it. Then, on
ours and then on the reference (A, B):

1. cold pull: `--mirror-clients` clients (threads, one keep-alive connection each) start at the
   same moment and each pulls the image: the manifest by tag, then the config and every layer in
   turn, reading every body in full and checking its sha256. Wall time and aggregate MB/s, and the
   requests the upstream saw meanwhile (its access log): GETs per blob digest, manifest GET/HEAD.
2. warm pull: the same image again (now cached), by 1 client `--mirror-clients` times in a row,
   then by all clients at once; lengths checked, no sha256 (an untimed 1-client pull per mirror
   checks the cached bytes' sha256 afterwards). MB/s, and the upstream requests meanwhile.

The clients use the same paths on both mirrors: `/v2/library/bench-mirror-rN/...`, the root form
Docker's `registry-mirrors` sends.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from run import (IO_BLOCK, MB, OCI_MANIFEST, Bench, BlobClient, StepError, StorageSet,  # noqa: E402
                 check_digest_header, describe_response, log, pull_blob, push_small_blob, with_ratio)
from servers import Helper, MirrorOurs, MirrorReference, MirrorUpstream, Server  # noqa: E402

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = ", ".join([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX])  # what docker pull sends

DEFAULT_LAYER_MIB = "8,12,16,20,24,32"
DEFAULT_CLIENTS = 8
CLIENT_TIMEOUT = 120  # seconds a pulling client waits on one read
SETTLE_SECONDS = 0.3  # the upstream's access log must be this quiet before a step's lines are counted
SETTLE_MAX_SECONDS = 10.0
TAG = "v1"

# `<id> METHOD PATH STATUS <ms>ms` (registry/app.py's access log), whatever the logging prefix.
ACCESS_LINE = re.compile(r"\b(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (/\S*) (\d{3}) [\d.]+ms\b")
REPO_PATH = re.compile(r"^/v2/(.+)/(blobs|manifests)/([^/?]+)")

MIRROR_NOTES = [
    "Durability differs: our mirror fsyncs what it caches (each blob file and its directory before it "
    "counts as cached; manifests in one SQLite commit, synchronous=FULL); the reference (proxy mode, "
    "filesystem driver) does not fsync. sync(2) runs before every timed step.",
    "Both mirrors pull from the SAME upstream: our registry on SQLite + filesystem on 127.0.0.1, log level "
    "info; the upstream request counts come from its access log. Each repetition pushes a new image (new "
    "random layers, new name) to it untimed, so each cold pull finds both caches empty for that image.",
    "Ours mirrors the upstream as its Docker Hub entry (REGISTRY_MIRROR_UPSTREAMS: alias hub, docker_hub, "
    "tag_ttl 300 s); the reference has proxy.remoteurl. Clients use the same root paths on both "
    "(/v2/library/bench-mirror-rN/..., as Docker's registry-mirrors sends them).",
    "Every pull reads each body in full and compares the manifest's bytes. The cold pull also checks every "
    "blob's sha256 in each client; the warm pulls check lengths only (hashing would cost the client more "
    "than the server), and an untimed 1-client pull per mirror and repetition checks the cached bytes' "
    "sha256. The clients are Python threads on the same 2 cores as the three servers and can cap both.",
    "Ratios for the upstream request counts are reference/ours (> 1.00x: ours asks the upstream less); "
    "'-' when a median is 0.",
]

FIGURES = [
    # key, label, unit, higher_is_better (the image is in the section's title)
    ("cold_seconds", "cold pull, {c} clients at once: wall time", "s", False),
    ("cold_mbps", "cold pull, {c} clients at once: aggregate", "MB/s", True),
    ("warm1_mbps", "warm pull, 1 client, {c} pulls in a row", "MB/s", True),
    ("warmN_mbps", "warm pull, {c} clients at once: aggregate", "MB/s", True),
    ("cold_layer_gets", "upstream GETs per layer, cold (mean; ideal 1)", "GETs", False),
    ("cold_layer_gets_max", "upstream GETs per layer, cold (most)", "GETs", False),
    ("cold_config_gets", "upstream GETs of the config, cold", "GETs", False),
    ("cold_manifest_requests", "upstream manifest GET+HEAD, cold", "requests", False),
    ("cold_upstream_requests", "upstream requests in all, cold", "requests", False),
    ("warm1_upstream_requests", "upstream requests, warm 1 client x{c}", "requests", False),
    ("warmN_upstream_requests", "upstream requests, warm {c} clients", "requests", False),
]


# --------------------------------------------------------------------------------------------
# The image

@dataclass
class Image:
    repo: str  # the same name on the upstream and on both mirrors (root form)
    tag: str
    manifest: bytes
    manifest_digest: str
    config: tuple[str, int]  # (digest, size)
    layers: list[tuple[str, int]]

    @property
    def blobs(self) -> list[tuple[str, int]]:
        return [self.config, *self.layers]

    @property
    def pull_bytes(self) -> int:
        """What one client pulls: the manifest and every blob."""
        return len(self.manifest) + sum(size for _, size in self.blobs)

    def describe(self) -> dict[str, Any]:
        return {"repo": self.repo, "tag": self.tag, "manifest_digest": self.manifest_digest,
                "manifest_media_type": DOCKER_MANIFEST, "config": list(self.config),
                "layers": [list(x) for x in self.layers], "pull_bytes": self.pull_bytes}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_image(repo: str, label: str, layer_sizes: list[int]) -> tuple[Image, dict[str, bytes]]:
    """A Docker schema 2 image of random layers (each starts with a unique label) and its blobs."""
    blobs: dict[str, bytes] = {}
    layers = []
    for i, size in enumerate(layer_sizes):
        head = f"{label} layer {i}".encode().ljust(64, b".")[:min(64, size)]
        data = head + os.urandom(size - len(head))
        digest = sha256(data)
        blobs[digest] = data
        layers.append((digest, size))
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Labels": {"org.example.registry-bench": label}},
        # Not the real diff_ids (the layers are random bytes, not tars); registries do not check them.
        "rootfs": {"type": "layers", "diff_ids": [d for d, _ in layers]},
    }, separators=(",", ":")).encode()
    blobs[sha256(config)] = config
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": sha256(config)},
        "layers": [{"mediaType": DOCKER_LAYER, "size": s, "digest": d} for d, s in layers],
    }, indent=3).encode()  # indented like docker's own manifests: the bytes must come back unchanged
    image = Image(repo, TAG, manifest, sha256(manifest), (sha256(config), len(config)), layers)
    return image, blobs


def push_image(c: BlobClient, image: Image, blobs: dict[str, bytes]) -> None:
    for digest, data in blobs.items():
        got = push_small_blob(c, image.repo, data)  # one monolithic PUT from memory
        assert got == digest
    path = f"/v2/{image.repo}/manifests/{image.tag}"
    _, headers, _ = c.call("PUT", path, 201, body=image.manifest,
                           headers={"Content-Type": DOCKER_MANIFEST, "Content-Length": str(len(image.manifest))})
    check_digest_header("PUT", path, headers, image.manifest_digest)


# --------------------------------------------------------------------------------------------
# Pulling

class PullClient(BlobClient):
    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=CLIENT_TIMEOUT, blocksize=IO_BLOCK)


def pull_image(c: BlobClient, image: Image, verify: bool = True) -> int:
    """What `docker pull` asks, one blob at a time: the manifest by tag, then the config and each
    layer; every body read in full, its length checked, and with verify its sha256 (the manifest's
    bytes are always compared). Returns the bytes received."""
    path = f"/v2/{image.repo}/manifests/{image.tag}"
    req_headers = {"Accept": ACCEPT}
    _, headers, body = c.call("GET", path, 200, headers=req_headers)
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip()
    if body != image.manifest or ctype != DOCKER_MANIFEST:
        raise StepError(f"GET {path}: the manifest differs from the one pushed upstream (Content-Type {ctype!r}, "
                        f"{len(body)} bytes, {sha256(body)}; pushed {len(image.manifest)} bytes, "
                        f"{image.manifest_digest})",
                        describe_response("GET", path, 200, headers, body, req_headers))
    check_digest_header("GET", path, headers, image.manifest_digest)
    doc = json.loads(body)
    total = len(body)
    for desc in [doc["config"], *doc["layers"]]:
        pull_blob(c, image.repo, desc["digest"], desc["size"], verify=verify)
        total += desc["size"]
    return total


def pull_at_once(url: str, image: Image, clients: int, verify: bool, rounds: int = 1) -> float:
    """`clients` threads pull the image at the same moment (connections opened beforehand), each
    `rounds` times in a row on its keep-alive connection. Returns the wall time from the start
    signal to the last byte of the last client."""
    conns = [PullClient(url) for _ in range(clients)]
    try:
        for c in conns:
            c.conn.connect()
        start = threading.Barrier(clients + 1)
        errors: list[StepError | None] = [None] * clients

        def work(i: int) -> None:
            try:
                start.wait()
                for _ in range(rounds):
                    pull_image(conns[i], image, verify)
            except StepError as exc:
                errors[i] = exc
            except Exception as exc:  # noqa: BLE001 - report it as this client's failure
                errors[i] = StepError(f"client {i}: {exc!r}", {"traceback": traceback.format_exc()})

        threads = [threading.Thread(target=work, args=(i,), name=f"pull-{i}") for i in range(clients)]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        for c in conns:
            c.close()
    failed = [(i, e) for i, e in enumerate(errors) if e is not None]
    if failed:
        i, first = failed[0]
        raise StepError(f"{len(failed)} of {clients} clients failed; client {i}: {first.detail.get('message')}",
                        {**first.detail, "message": f"{len(failed)} of {clients} clients failed; client {i}: "
                                                    f"{first.detail.get('message')}",
                         "other_clients": [e.detail for _, e in failed[1:4]]})
    return wall


# --------------------------------------------------------------------------------------------
# The upstream's access log

def classify(lines: list[str], image: Image | None) -> dict[str, Any]:
    """Counts of upstream requests: blob GETs/HEADs per digest, manifest GETs/HEADs, the rest."""
    blob_get: dict[str, int] = {}
    blob_head: dict[str, int] = {}
    manifest = {"GET": 0, "HEAD": 0}
    other: list[str] = []
    errors: list[str] = []
    total = 0
    for line in lines:
        m = ACCESS_LINE.search(line)
        if not m:
            continue
        total += 1
        method, path, status = m.group(1), m.group(2), int(m.group(3))
        if status >= 400:
            errors.append(line.strip())
        r = REPO_PATH.match(path)
        if r and r.group(2) == "blobs" and method in ("GET", "HEAD"):
            target = blob_get if method == "GET" else blob_head
            target[r.group(3)] = target.get(r.group(3), 0) + 1
        elif r and r.group(2) == "manifests" and method in manifest:
            manifest[method] += 1
        else:
            other.append(f"{method} {path} {status}")
    out: dict[str, Any] = {"requests": total, "manifest_get": manifest["GET"], "manifest_head": manifest["HEAD"],
                           "blob_get": blob_get, "blob_head": blob_head, "other": other, "errors": errors}
    if image is not None:
        out["layer_gets"] = [blob_get.get(d, 0) for d, _ in image.layers]
        out["config_gets"] = blob_get.get(image.config[0], 0)
        known = {d for d, _ in image.blobs}
        out["foreign_blob_gets"] = {d: n for d, n in blob_get.items() if d not in known}
    return out


def summarize(requests: list[str]) -> str:
    """'GET /v2/ 200 x250, ...': repeated request lines counted."""
    counted = Counter(requests)
    return ", ".join(f"{r} x{n}" if n > 1 else r for r, n in counted.most_common())


class UpstreamLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def settle(self) -> None:
        """Wait (untimed) until the log has stopped growing: a request's line is written when its
        response ends, which can be a moment after the client has read its last byte."""
        deadline = time.monotonic() + SETTLE_MAX_SECONDS
        last, since = self.offset(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.offset()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= SETTLE_SECONDS:
                return

    def lines_since(self, offset: int) -> list[str]:
        with open(self.path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        return [line for line in text.splitlines() if ACCESS_LINE.search(line)]


# --------------------------------------------------------------------------------------------
# The run

class MirrorBench(Bench):
    """Bench's measuring (sync(2) first, CPU of every process per step, anomalies, failures) with
    the mirror workload instead of pushes and manifests."""

    def __init__(self, args: argparse.Namespace, sset: StorageSet, upstream: MirrorUpstream) -> None:
        super().__init__(args, sset, Path(os.devnull))
        self.upstream = upstream
        self.upstream_log = UpstreamLog(upstream.log_path)
        self.up_client = BlobClient(upstream.url)
        self.layer_sizes = [m << 20 for m in args.mirror_layer_mib]
        self.nclients = args.mirror_clients
        self.images: list[dict[str, Any]] = []
        self.upstream_requests: list[dict[str, Any]] = []

    def close(self) -> None:
        super().close()
        self.up_client.close()

    def probe(self) -> None:
        """Untimed: a tiny image pushed upstream must come back through each mirror. One that
        cannot is left out of the set (UNAVAILABLE, with the request and the response)."""
        image, blobs = make_image("library/bench-mirror-probe", f"{self.run_id} probe", [64, 1024])
        try:
            push_image(self.up_client, image, blobs)
        except StepError as exc:
            self.sset.error = f"could not push the probe image to the upstream: {exc.detail.get('message')}"
            self.record_failure(self.upstream, "probe_push",
                                {**exc.detail, "server_log_tail": self.upstream.log_tail(20)})
            self.servers.clear()
            return
        for s in list(self.servers):
            try:
                pull_image(self.clients[s.key], image)
            except StepError as exc:
                self.record_failure(s, "probe", {**exc.detail, "server_log_tail": s.log_tail(20)})
                status = exc.detail.get("status")
                body = str(exc.detail.get("response_body") or "").strip()[:300]
                last_log = s.log_tail(1).strip()
                self.sset.unavailable[s.key] = (
                    f"could not pull a 2-layer probe image through it: {exc.detail.get('message')}"
                    + (f" -> {status} {body}" if status else "")
                    + (f"; last server log line: {last_log[:400]}" if last_log else ""))
                self.servers.remove(s)

    def record_failure(self, server: Server, figure: str, detail: dict[str, Any]) -> None:
        if server.key not in self.failures:  # the upstream
            self.failures[server.key] = {}
        # A mirror's own account of a failed pull (e.g. ours' "fill of ... failed" warnings).
        detail = {"server_log_tail": server.log_tail(20), **detail}
        super().record_failure(server, figure, detail)

    def run(self) -> None:
        self.probe()
        if not self.servers:
            return
        for rep in range(1, self.args.repeat + 1):
            log(f"[mirror] repetition {rep}/{self.args.repeat}: pushing a new image to the upstream")
            image, blobs = make_image(f"library/bench-mirror-r{rep}", f"{self.run_id} mirror rep{rep}",
                                      self.layer_sizes)
            try:
                push_image(self.up_client, image, blobs)
            except StepError as exc:
                self.record_failure(self.upstream, "push_upstream", {**exc.detail,
                                                                    "server_log_tail": self.upstream.log_tail(20)})
                continue
            del blobs
            self.images.append(image.describe())
            for figure, n in (("cold", self.nclients), ("warm1", 1), ("warmN", self.nclients)):
                key = f"{figure}_mbps"
                for s in self.servers:
                    offset = self.upstream_log.offset()
                    before = len(self.samples[s.key].get(key, []))
                    self.measure(s, key, lambda s=s, n=n, figure=figure: self._pull(s, image, n, figure),
                                 "{:.1f} MB/s")
                    self._count(s, rep, figure, image, offset, ok=len(self.samples[s.key].get(key, [])) > before)
            # Untimed: the warm pulls skip the client's sha256 (it would cost the client more than the
            # server); one verified pull per mirror checks what the cache serves.
            for s in self.servers:
                if self.samples[s.key].get("warm1_mbps") or self.samples[s.key].get("warmN_mbps"):
                    offset = self.upstream_log.offset()
                    try:
                        pull_image(self.clients[s.key], image, verify=True)
                    except StepError as exc:
                        self.record_failure(s, "warm_verify", exc.detail)
                    self._count(s, rep, "verify", image, offset, ok=False)

    def _pull(self, s: Server, image: Image, clients: int, figure: str) -> float:
        # The lone warm client pulls the image as many times as there are clients in the other
        # figures: the same bytes, and a step long enough to time (one 112 MiB pull is ~0.1 s).
        rounds = self.nclients if figure == "warm1" else 1
        wall = pull_at_once(s.url, image, clients, verify=figure == "cold", rounds=rounds)
        if figure == "cold":
            self.samples[s.key].setdefault("cold_seconds", []).append(wall)
        return clients * rounds * image.pull_bytes / wall / MB

    def _count(self, s: Server, rep: int, figure: str, image: Image, offset: int, ok: bool) -> None:
        """The upstream requests from the step's start until the upstream's log went quiet."""
        self.upstream_log.settle()
        lines = self.upstream_log.lines_since(offset)
        counts = classify(lines, image)
        self.upstream_requests.append({"repetition": rep, "server": s.key, "step": figure, "pull_ok": ok,
                                       **counts, "lines": lines})
        desc = (f"manifest GET {counts['manifest_get']} HEAD {counts['manifest_head']}, "
                f"config GETs {counts['config_gets']}, layer GETs {counts['layer_gets']}")
        log(f"  {s.key:9s} upstream saw {counts['requests']} requests during the {figure} pull: {desc}"
            + (f", other: {summarize(counts['other'])}" if counts["other"] else "")
            + (f", blob HEADs {sum(counts['blob_head'].values())}" if counts["blob_head"] else ""))
        an = self.anomalies[s.key]
        for line in counts["errors"][:5]:
            an.append(f"rep {rep} {figure} pull: the upstream answered an error: {line}")
        if counts["foreign_blob_gets"]:
            an.append(f"rep {rep} {figure} pull: the upstream served blobs not in this image: "
                      f"{counts['foreign_blob_gets']}")
        if not ok:
            return
        samples = self.samples[s.key]
        if figure == "cold":
            layer_gets = counts["layer_gets"]
            samples.setdefault("cold_layer_gets", []).append(statistics.mean(layer_gets))
            samples.setdefault("cold_layer_gets_max", []).append(max(layer_gets))
            samples.setdefault("cold_config_gets", []).append(counts["config_gets"])
            samples.setdefault("cold_manifest_requests", []).append(counts["manifest_get"] + counts["manifest_head"])
            samples.setdefault("cold_upstream_requests", []).append(counts["requests"])
            if s.key == "ours":  # single-flight fills: anything above 1 GET per blob is a bug to report
                for (digest, _), n in zip(image.blobs, [counts["config_gets"], *layer_gets]):
                    if n > 1:
                        mine = [line.strip() for line in lines if digest in line]
                        an.append(f"rep {rep} cold pull: the upstream saw {n} GETs of blob {digest} (ideal 1): "
                                  + " | ".join(mine[:10]))
        else:
            samples.setdefault(f"{figure}_upstream_requests", []).append(counts["requests"])


def run_mirror_set(sset: StorageSet, args: argparse.Namespace, root: Path) -> None:
    """Start the upstream and both mirrors, run the workload, collect stats, stop everything."""
    t0 = time.monotonic()
    log(f"== {sset.name} set: {sset.title}")
    upstream = MirrorUpstream(root, sset.name)
    sset.extra["upstream"] = upstream
    sset.extra_logs.append(("upstream", upstream.log_path))
    try:
        try:
            upstream.start()
        except RuntimeError as exc:
            sset.error = f"the upstream did not start: {exc}"
            log(f"error: {sset.error}")
            return
        log(f"started {upstream.title} at {upstream.url} (pid {upstream.proc.pid if upstream.proc else '?'})")
        sset.helpers = [Helper("upstream", upstream.title,
                               lambda: [upstream.proc.pid] if upstream.proc and upstream.alive() else [])]
        classes = {"ours": MirrorOurs, "reference": MirrorReference}
        sset.candidates = [cls(root, upstream.url) for key, cls in classes.items() if args.only in (None, key)]
        for s in sset.candidates:
            try:
                s.start()
                sset.servers.append(s)
                log(f"started {s.title} at {s.url} (pid {s.proc.pid if s.proc else '?'})")
            except RuntimeError as exc:
                sset.start_failed = True
                sset.unavailable[s.key] = f"did not start: {exc}"
                log(f"error: {exc}")
        if not sset.servers:
            sset.error = "no mirror started"
            return
        bench = MirrorBench(args, sset, upstream)
        sset.bench = bench
        try:
            bench.run()
        finally:
            for s in sset.servers:
                if s.alive():
                    s.collect_stats()
            if upstream.alive():
                upstream.collect_stats()
            for h in sset.helpers:
                h.collect_stats()
    finally:
        if sset.bench:
            sset.bench.close()
        for s in [*sset.candidates, upstream]:
            s.stop()
            if s.proc is not None and s.proc.returncode not in (0, -signal.SIGTERM, 2):
                log(f"note: {s.title} exited with {s.proc.returncode}")
        if not args.keep:
            for s in [*sset.candidates, upstream]:
                shutil.rmtree(s.data_dir, ignore_errors=True)
        sset.seconds = round(time.monotonic() - t0, 1)
        log(f"== {sset.name} set done in {sset.seconds:.0f} s")


# --------------------------------------------------------------------------------------------
# Report

def mirror_title(args: argparse.Namespace) -> str:
    sizes = args.mirror_layer_mib
    return (f"ours as a mirror vs reference in proxy mode, both on filesystem, the same upstream; image "
            f"{sum(sizes)} MiB: {len(sizes)} layers ({', '.join(map(str, sizes))} MiB), config, Docker schema 2")


def mirror_report(sset: StorageSet, args: argparse.Namespace) -> dict[str, Any]:
    upstream: MirrorUpstream | None = sset.extra.get("upstream")
    out: dict[str, Any] = {
        "title": sset.title, "layer_mib": args.mirror_layer_mib, "clients": args.mirror_clients,
        "seconds": sset.seconds, "error": sset.error, "unavailable": sset.unavailable, "notes": sset.notes,
        "servers": {s.key: {**s.describe(), **s.final_stats} for s in sset.candidates},
        "upstream": {**upstream.describe(), **upstream.final_stats} if upstream else None,
        "helpers": {h.key: {"title": h.title, **h.final_stats} for h in sset.helpers},
    }
    bench = sset.bench
    if not isinstance(bench, MirrorBench):
        out.update(rows=[], steps=[], failures={}, anomalies={}, images=[], upstream_requests=[])
        return out
    keys = [s.key for s in sset.candidates]
    rows = []
    for key, label, unit, higher in FIGURES:
        label = label.format(c=args.mirror_clients)
        row: dict[str, Any] = {"figure": key, "label": label, "unit": unit,
                               "ratio_kind": "ours/reference" if higher else "reference/ours"}
        for k in keys:
            vals = bench.samples[k].get(key, [])
            fig = f"{key.split('_')[0]}_mbps"  # the step a figure comes from: cold_mbps, warm1_mbps, warmN_mbps
            row[k] = {"median": statistics.median(vals) if vals else None, "runs": vals,
                      "failures": len(bench.failures.get(k, {}).get(fig, []))}
        rows.append(with_ratio(row, keys, higher))
    for key, label, unit, conv in (
            ("peak_rss", "peak RSS (VmHWM, whole run)", "MiB", lambda st: st.get("peak_rss_kib_sum", 0) / 1024),
            ("cpu_time", "server CPU time (user+sys, whole run)", "s", lambda st: st.get("cpu_seconds"))):
        row = {"figure": key, "label": label, "unit": unit, "ratio_kind": "reference/ours"}
        for k in keys:
            st = next((s.final_stats for s in sset.candidates if s.key == k), {})
            row[k] = {"median": conv(st) if st and "error" not in st and k not in sset.unavailable else None}
        rows.append(with_ratio(row, keys, False))
    row = {"figure": "upstream_cpu", "label": "upstream CPU during the mirror's steps", "unit": "s",
           "ratio_kind": "reference/ours"}
    for k in keys:
        vals = [st.get("helper_cpu_seconds", {}).get("upstream") for st in bench.steps if st["server"] == k]
        vals = [v for v in vals if v is not None]
        row[k] = {"median": sum(vals) if vals and k not in sset.unavailable else None}
    rows.append(with_ratio(row, keys, False))
    out.update(rows=rows, steps=bench.steps, failures=bench.failures, anomalies=bench.anomalies,
               images=bench.images,
               upstream_requests=bench.upstream_requests, extra_lines=request_lines(bench, keys))
    return out


def request_lines(bench: MirrorBench, keys: list[str]) -> list[str]:
    """Per repetition and mirror: what the upstream saw during each pull."""
    if not bench.upstream_requests:
        return []
    width = max(len(k) for k in keys)
    out = ["  Upstream requests per pull (the upstream's access log); layer GETs are per layer digest, "
           "smallest layer first:"]
    for r in bench.upstream_requests:
        if r["step"] == "verify" and not r["errors"]:  # the untimed check pull: in the JSON only
            continue
        extra = ""
        if r["other"]:
            extra += f"; other: {summarize(r['other'])}"
        if r["blob_head"]:
            extra += f"; blob HEADs {sum(r['blob_head'].values())}"
        if r["errors"]:
            extra += f"; {len(r['errors'])} error responses"
        if not r["pull_ok"] and r["step"] != "verify":
            extra += "; THE PULL FAILED"
        step = {"cold": "cold ", "warm1": "warm1", "warmN": "warmN", "verify": "check"}[r["step"]]
        out.append(f"    rep {r['repetition']} {step} {r['server']:<{width}}  {r['requests']:3d} requests: manifest "
                   f"GET {r['manifest_get']} HEAD {r['manifest_head']}; config GETs {r['config_gets']}; layer GETs "
                   f"{' '.join(str(n) for n in r['layer_gets'])}{extra}")
    return out
