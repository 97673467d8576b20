#!/usr/bin/env python3
"""Peak memory of the server over a fixed workload: before and after S3, PostgreSQL and the runtime became
extras, beside Debian's docker-registry (CNCF Distribution 2.8.2). Medians of interleaved rounds.

    cd /work/main && .venv/bin/python bench/rss.py [--repeat 3] [--images 20] [--before 1598c22]

Variants, each `registry serve` on SQLite + filesystem (what `make serve` runs), one worker, in a fresh venv
made by tests/support/venvs.py (this venv's installed distributions, symlinked; only those the variant's
requirements pull in):

- before: the project at the `--before` commit (its tree from `git archive`), with its dependencies, which
  then held boto3, asyncpg, pyroute2 and zstandard;
- after (default): this tree with its default dependencies only (`pip install registry`);
- after (all extras): this tree with `registry[all]`;
- docker-registry: /usr/bin/docker-registry on its filesystem driver (bench/servers.py's configuration).

The workload, the same for each: push IMAGES images of three layers (64 KiB, 512 KiB, 2 MiB of random bytes,
each image its own) with a config and a manifest, pull every manifest and blob back, list the catalog and
every repository's tags. Peak RSS is VmHWM of the server process summed with any children, read before it
is stopped. Also shown: the size on disk of each variant's installed dependencies.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from bench.servers import ReferenceServer, Server, process_tree, vm_hwm_kib  # noqa: E402
from tests.support import venvs  # noqa: E402

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
LAYER_SIZES = (64 << 10, 512 << 10, 2 << 20)
RESULTS_DIR = REPO_ROOT / "bench" / "results"


class VenvServer(Server):
    """`registry serve` with a given venv's interpreter; -I so the working directory is not on sys.path."""

    key = "ours"

    def __init__(self, root: Path, name: str, title: str, python: Path) -> None:
        super().__init__(root)
        self.name, self.title, self.python = name, title, python
        self.data_dir = root / f"{name}-data"
        self.log_path = root / f"{name}.log"

    def build_command(self) -> list[str]:
        return [str(self.python), "-I", "-m", "registry", "serve", "--listen", self.host,
                "--data-dir", str(self.data_dir), "--log-level", "warning"]

    def migrate_first(self) -> None:
        """Create the database before the server starts, so the measured start is a restart, as all but a
        registry's first are (a first start also migrates, in the server's own process)."""
        subprocess.run([str(self.python), "-I", "-m", "registry", "db", "upgrade", "--data-dir", str(self.data_dir)],
                       check=True, capture_output=True)


def peak_rss_kib(server: Server) -> int:
    assert server.proc is not None
    return sum(vm_hwm_kib(pid) or 0 for pid in process_tree(server.proc.pid))


def make_images(count: int) -> list[tuple[str, list[bytes], bytes]]:
    """(repository, layers, config) for each image; the layers are gzip members of random bytes in a tar."""
    images = []
    for i in range(count):
        layers = []
        for size in LAYER_SIZES:
            raw = io.BytesIO()
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                info = tarfile.TarInfo(f"file-{size}")
                info.size = size
                tar.addfile(info, io.BytesIO(os.urandom(size)))
            layers.append(raw.getvalue())
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {
            "type": "layers", "diff_ids": [digest(layer) for layer in layers]}}).encode()  # not real diff_ids
        images.append((f"bench/rss-{i % 5}", layers, config))  # five repositories, four tags each at 20
    return images


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(http: httpx.Client, repository: str, data: bytes) -> None:
    started = http.post(f"/v2/{repository}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    separator = "&" if "?" in location else "?"  # the reference keeps its upload state in the query
    done = http.put(f"{location}{separator}digest={digest(data)}", content=data,
                    headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text


def workload(url: str, images: list[tuple[str, list[bytes], bytes]]) -> None:
    with httpx.Client(base_url=url, timeout=60) as http:
        manifests = []
        for i, (repository, layers, config) in enumerate(images):
            for blob in (*layers, config):
                push_blob(http, repository, blob)
            body = json.dumps({
                "schemaVersion": 2, "mediaType": MANIFEST,
                "config": {"mediaType": CONFIG, "digest": digest(config), "size": len(config)},
                "layers": [{"mediaType": LAYER, "digest": digest(layer), "size": len(layer)} for layer in layers],
            }).encode()
            put = http.put(f"/v2/{repository}/manifests/v{i}", content=body, headers={"Content-Type": MANIFEST})
            assert put.status_code == 201, put.text
            manifests.append((repository, f"v{i}", layers, config))
        for repository, tag, layers, config in manifests:
            got = http.get(f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST})
            assert got.status_code == 200, got.text
            for blob in (*layers, config):
                pulled = http.get(f"/v2/{repository}/blobs/{digest(blob)}", follow_redirects=True)
                assert pulled.status_code == 200 and pulled.content == blob, pulled.status_code
        catalog = http.get("/v2/_catalog").json()["repositories"]
        assert len(catalog) == len({image[0] for image in images}), catalog
        for repository in catalog:
            assert http.get(f"/v2/{repository}/tags/list").status_code == 200


def installed_mib(project_root: Path, extras: tuple[str, ...]) -> float:
    """Bytes on disk of the distributions the requirements pull in (as listed in their RECORD files)."""
    total = 0
    for dist in venvs.closure(venvs.requirements(project_root, extras)):
        for file in dist.files or ():
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
    return total / (1 << 20)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (medians reported)")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--before", default="1598c22", help="the commit before the extras change")
    parser.add_argument("--first-start", action="store_true",
                        help="measure a first start (the server migrates a new database) instead of a restart")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-rss-"))
    before_root = work / "before-tree"
    before_root.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", args.before], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(before_root)], input=archive, check=True)
    variants: list[tuple[str, str, Path, tuple[str, ...]]] = [
        ("before", f"before ({args.before}, all dependencies)", before_root, ()),
        ("after-default", "after, default install", REPO_ROOT, ()),
        ("after-all", "after, registry[all]", REPO_ROOT, ("all",)),
    ]
    pythons = {}
    installed = {}
    for key, _, root, extras in variants:
        installed[key] = installed_mib(root, extras)
        pythons[key] = venvs.make(work / f"venv-{key}", root, extras)
        # Byte-compiled as `pip install` leaves it, so that no variant pays for compiling at start-up.
        subprocess.run([str(pythons[key]), "-m", "compileall", "-q", str(root / "registry")], check=True)
    images = make_images(args.images)
    peaks: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    titles = {key: title for key, title, *_ in variants} | {"reference": "docker-registry 2.8.2 (filesystem)"}
    try:
        for round_ in range(args.repeat):
            for key in [*pythons, "reference"]:
                root = work / f"round-{round_}"
                root.mkdir(exist_ok=True)
                server: Server = (ReferenceServer(root) if key == "reference" else
                                  VenvServer(root, key, titles[key], pythons[key]))
                if isinstance(server, VenvServer) and not args.first_start:
                    server.migrate_first()
                server.start()
                try:
                    started = time.monotonic()
                    workload(server.url, images)
                    seconds.setdefault(key, []).append(time.monotonic() - started)
                    peaks.setdefault(key, []).append(peak_rss_kib(server) / 1024)
                finally:
                    server.stop()
                print(f"round {round_ + 1}: {titles[key]}: {peaks[key][-1]:.1f} MiB peak, "
                      f"{seconds[key][-1]:.1f} s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    reference = median(peaks["reference"])
    rows = []
    for key, title in titles.items():
        rows.append({"variant": title, "peak_rss_mib": round(median(peaks[key]), 1),
                     "runs_mib": [round(p, 1) for p in peaks[key]],
                     "vs_docker_registry": round(median(peaks[key]) / reference, 2),
                     "workload_s": round(median(seconds[key]), 1),
                     "dependencies_mib": round(installed[key], 1) if key in installed else None})
    print(f"\nPeak RSS over the workload ({args.images} images x {len(LAYER_SIZES)} layers pushed and pulled, "
          f"catalog and tags listed), {'a first start' if args.first_start else 'a restart'}, median of "
          f"{args.repeat} interleaved rounds:\n")
    print("| variant | peak RSS (MiB) | x docker-registry | runs (MiB) | workload (s) | dependencies on disk (MiB) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        deps = "-" if row["dependencies_mib"] is None else f"{row['dependencies_mib']:.1f}"
        print(f"| {row['variant']} | {row['peak_rss_mib']:.1f} | {row['vs_docker_registry']:.2f}x | "
              f"{', '.join(f'{r:.1f}' for r in row['runs_mib'])} | {row['workload_s']:.1f} | {deps} |")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"rss-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"before": args.before, "images": args.images, "repeat": args.repeat,
                               "first_start": args.first_start,
                               "rows": rows}, indent=2) + "\n")
    print(f"\n(JSON: {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
