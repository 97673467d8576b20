#!/usr/bin/env python3
"""Copying a registry:2 into ours, side by side with the tool registry:2 users reach for (issue 22).

    cd /work/main && .venv/bin/python bench/replication.py [--size default|smoke] [--repeat 3]
        [--repositories R] [--tags T] [--layers L] [--layer-kib S] [--work-dir /var/tmp] [--copy-dir /dev/shm] [--keep]

The source is Debian's `docker-registry` (CNCF Distribution 2.8.2) on 127.0.0.1 with htpasswd basic auth,
filesystem driver, seeded once over HTTP (httpx, monolithic uploads) with R repositories x T tags. Each tag is a
Docker schema 2 image of L layers of S random bytes and a config: the first layer is shared by every tag of the
repository (a base layer), the others are the tag's own; nothing is shared between repositories.

Then, in each of `--repeat` rounds, in this order, each against a fresh destination, with sync(2) before each
timed step:

- pull rule: ours (`registry serve`, SQLite + filesystem, a fresh data dir) runs with a rule pulling `**` from
  the source (REGISTRY_REPLICATION_RULES, no schedule); `registry replicate RULE --json` runs in its own
  process on the same data dir **while the server runs**, timed from start to exit. Its report must name
  every seeded blob, byte and manifest, with no error.
- second run: the same command again; it must send nothing.
- skopeo sync: `skopeo sync --src yaml --dest docker --all --preserve-digests` (skopeo 1.9: one process for
  every repository, all tags of each) into a fresh second `docker-registry` (no auth), timed from start to exit;
  and again (its second run).
- import: `registry import ROOT --json` into a fresh data dir (its database made first, untimed), with no
  server running, from a copy of the source's storage root made once after seeding, twice: a copy on the
  data dirs' filesystem (the import hard-links the blobs: docs/migrating.md, Hard links), and a copy on
  another filesystem (`--copy-dir`, default /dev/shm: the import reads, copies and fsyncs every byte).

After each copy, untimed, the destination is checked over HTTP (for the import, ours is started on the data
dir): every repository's tags, every tag's manifest digest, and a HEAD of every blob with its size.

Peak RSS (VmHWM, polled every 10 ms) of each CLI process and of skopeo, and of our server over the pull rule
(the rule's copying runs in the CLI process, the server only shares its database).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from bench.servers import REFERENCE_BIN, OurServer, ReferenceServer, clean_env, process_tree, vm_hwm_kib  # noqa: E402

RESULTS_DIR = REPO_ROOT / "bench" / "results"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MB = 1_000_000
RULE = "bench-pull"
USER, PASSWORD = "bench", "bench-password"
SKOPEO = "/usr/bin/skopeo"


@dataclass(frozen=True)
class Size:
    repositories: int
    tags: int
    layers: int
    layer_bytes: int


SIZES = {"default": Size(20, 3, 3, 2 << 20), "smoke": Size(2, 2, 2, 64 << 10)}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# The registries

class Source(ReferenceServer):
    """The source: docker-registry 2.8.2 with htpasswd basic auth, as tests/support/mirror.py runs it."""

    title = "source (docker-registry 2.8.2, filesystem, htpasswd)"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.name = "source"
        self.data_dir = root / "source-data"
        self.log_path = root / "source.log"

    def extra_yaml(self) -> str:
        htpasswd = self.root / "source-htpasswd"
        htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")
        return f"auth:\n  htpasswd:\n    realm: bench-source\n    path: {htpasswd}\n"

    def start(self, timeout: float = 60) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.command = self.build_command()
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=clean_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # with auth on, GET /v2/ answers 401 once it is up
            if self.proc.poll() is not None:
                raise RuntimeError(f"the source exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code == 401:
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the source did not answer within {timeout}s:\n{self.log_tail()}")

    @property
    def storage_root(self) -> Path:
        return self.data_dir


class SkopeoDestination(ReferenceServer):
    """skopeo's destination: a fresh docker-registry 2.8.2 (filesystem, no auth) per round."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.name = "skopeo-dest"
        self.data_dir = root / "skopeo-dest-data"
        self.log_path = root / "skopeo-dest.log"


class OursWithRule(OurServer):
    """Ours on SQLite + filesystem with the pull rule in REGISTRY_REPLICATION_RULES (no schedule: it runs
    only when `registry replicate` asks)."""

    def __init__(self, root: Path, name: str, rules: str) -> None:
        super().__init__(root)
        self.name = name
        self.data_dir = root / f"{name}-data"
        self.log_path = root / f"{name}.log"
        self.rules = rules

    def env(self) -> dict[str, str]:
        return clean_env(REGISTRY_REPLICATION_RULES=self.rules)


def rules_json(source_url: str) -> str:
    return json.dumps([{"name": RULE, "direction": "pull", "url": source_url, "username": USER,
                        "password": PASSWORD, "repositories": ["**"]}])


# --------------------------------------------------------------------------------------------
# Seeding

@dataclass
class Seeded:
    """What the source holds: per repository, each tag's manifest digest; every blob's size."""
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    blobs: dict[str, dict[str, int]] = field(default_factory=dict)  # repository -> digest -> size
    manifest_bytes: int = 0

    @property
    def unique_blobs(self) -> int:
        return sum(len(b) for b in self.blobs.values())

    @property
    def unique_bytes(self) -> int:
        return sum(sum(b.values()) for b in self.blobs.values())

    @property
    def manifests(self) -> int:
        return sum(len(t) for t in self.tags.values())


def push_blob(client: httpx.Client, repository: str, data: bytes) -> str:
    digest = digest_of(data)
    if client.head(f"/v2/{repository}/blobs/{digest}").status_code == 200:
        return digest
    started = client.post(f"/v2/{repository}/blobs/uploads/")
    started.raise_for_status()
    location = started.headers["Location"]
    separator = "&" if "?" in location else "?"  # docker-registry keeps the upload's state in the query
    done = client.put(f"{location}{separator}digest={digest}", content=data,
                      headers={"Content-Type": "application/octet-stream"})
    if done.status_code != 201:
        raise RuntimeError(f"PUT of blob {digest} to {repository}: {done.status_code} {done.text[:300]}")
    return digest


def seed(url: str, size: Size) -> Seeded:
    seeded = Seeded()
    with httpx.Client(base_url=url, auth=(USER, PASSWORD), timeout=120) as client:
        for r in range(size.repositories):
            repository = f"bench/app-{r:03d}"
            blobs = seeded.blobs.setdefault(repository, {})
            base = os.urandom(size.layer_bytes)
            for t in range(size.tags):
                layers = [base, *(os.urandom(size.layer_bytes) for _ in range(size.layers - 1))]
                descriptors = []
                for layer in layers:
                    blobs[push_blob(client, repository, layer)] = len(layer)
                    descriptors.append({"mediaType": LAYER, "digest": digest_of(layer), "size": len(layer)})
                config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {
                    "bench": f"{repository}:{t}"}}, "rootfs": {"type": "layers", "diff_ids": [
                        d["digest"] for d in descriptors]}}).encode()  # not real diff_ids: nothing unpacks these
                blobs[push_blob(client, repository, config)] = len(config)
                manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "config": {
                    "mediaType": CONFIG, "digest": digest_of(config), "size": len(config)},
                    "layers": descriptors}).encode()
                tag = f"v1.{t}"
                put = client.put(f"/v2/{repository}/manifests/{tag}", content=manifest,
                                 headers={"Content-Type": MANIFEST})
                if put.status_code != 201:
                    raise RuntimeError(f"PUT manifest {repository}:{tag}: {put.status_code} {put.text[:300]}")
                seeded.tags.setdefault(repository, {})[tag] = digest_of(manifest)
                seeded.manifest_bytes += len(manifest)
    return seeded


def verify(url: str, seeded: Seeded, auth: tuple[str, str] | None = None) -> list[str]:
    """Every repository's tags, each tag's manifest digest, every blob's presence and size; the problems."""
    problems: list[str] = []
    with httpx.Client(base_url=url, auth=auth, timeout=60) as client:
        for repository, tags in seeded.tags.items():
            listed = client.get(f"/v2/{repository}/tags/list")
            got = sorted(listed.json().get("tags") or []) if listed.status_code == 200 else None
            if got != sorted(tags):
                problems.append(f"{repository}: tags {got}, expected {sorted(tags)}")
            for tag, digest in tags.items():
                head = client.head(f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST})
                if head.headers.get("Docker-Content-Digest") != digest:
                    problems.append(f"{repository}:{tag}: {head.status_code} {head.headers.get('Docker-Content-Digest')}"
                                    f", expected {digest}")
            for digest, length in seeded.blobs[repository].items():
                head = client.head(f"/v2/{repository}/blobs/{digest}")
                if head.status_code != 200 or head.headers.get("Content-Length") != str(length):
                    problems.append(f"{repository} blob {digest}: {head.status_code} "
                                    f"length {head.headers.get('Content-Length')}, expected {length}")
    return problems


# --------------------------------------------------------------------------------------------
# Timed processes

@dataclass
class Timed:
    command: list[str]
    seconds: float
    exit_code: int
    stdout: str
    stderr: str
    max_rss_kib: int
    cpu_seconds: float


def run_timed(command: list[str], env: dict[str, str], scratch: Path) -> Timed:
    """Run a command to its exit; wall time from spawn to reap, its CPU (rusage) and peak RSS.

    Peak RSS is VmHWM polled every 10 ms while it runs (the last value read before it exits), not
    ru_maxrss: Linux carries the forking parent's high-water mark through exec into the child's
    ru_maxrss, so it would show this script's own peak (the seed's layers) for every command."""
    os.sync()  # ours fsyncs what it writes, docker-registry does not: nobody pays for the other's dirty pages
    out_path, err_path = scratch / "stdout", scratch / "stderr"
    hwm = 0
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        while True:
            hwm = max(hwm, vm_hwm_kib(proc.pid) or 0)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.01)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    return Timed(command, seconds, proc.returncode, out_path.read_text(errors="replace"),
                 err_path.read_text(errors="replace"), hwm, usage.ru_utime + usage.ru_stime)


def ours_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "registry", *args]


def skopeo_yaml(path: Path, source: Source, seeded: Seeded) -> None:
    # JSON is YAML: every repository of the source, each with all its tags ([]).
    path.write_text(json.dumps({source.host: {
        "tls-verify": False, "credentials": {"username": USER, "password": PASSWORD},
        "images": {repository: [] for repository in seeded.tags}}}, indent=1) + "\n")


def skopeo_command(root: Path, yaml_path: Path, dest: SkopeoDestination) -> list[str]:
    """skopeo sync keeps only a source repository's last path component (bench/app-000 -> app-000) under
    the destination it is given: so the destination is DEST/bench, and the names come out the same."""
    policy = root / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
    registries = root / "registries.conf"
    registries.write_text("")
    return [SKOPEO, "--policy", str(policy), "--registries-conf", str(registries), "sync", "--src", "yaml",
            "--dest", "docker", "--all", "--preserve-digests", "--dest-tls-verify=false", str(yaml_path), f"{dest.host}/bench"]


# --------------------------------------------------------------------------------------------
# One round

@dataclass
class Round:
    index: int
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def record(self, key: str, timed: Timed, moved_bytes: int | None, **extra: Any) -> dict[str, Any]:
        entry = {"seconds": round(timed.seconds, 3), "exit_code": timed.exit_code,
                 "max_rss_mib": round(timed.max_rss_kib / 1024, 1), "cpu_seconds": round(timed.cpu_seconds, 2),
                 "bytes": moved_bytes, "mbps": round(moved_bytes / timed.seconds / MB, 1) if moved_bytes else None,
                 **extra}
        self.figures[key] = entry
        log(f"  round {self.index} {key}: {timed.seconds:.2f} s, exit {timed.exit_code}"
            + (f", {entry['mbps']} MB/s" if entry["mbps"] else "") + f", max RSS {entry['max_rss_mib']} MiB")
        if timed.exit_code != 0:
            self.problems.append(f"{key}: exit {timed.exit_code}: {timed.stderr.strip()[-600:]}")
        return entry

    def check(self, key: str, condition: bool, message: str) -> None:
        if not condition:
            self.problems.append(f"{key}: {message}")


def parse_report(key: str, timed: Timed, rnd: Round) -> dict[str, Any]:
    try:
        report: dict[str, Any] = json.loads(timed.stdout)
        return report
    except ValueError:
        rnd.problems.append(f"{key}: no JSON report: {timed.stdout[-300:]!r} {timed.stderr[-600:]!r}")
        return {}


def pull_rule_round(rnd: Round, root: Path, source: Source, seeded: Seeded) -> None:
    server = OursWithRule(root, "ours-pull", rules_json(source.url))
    server.start()
    try:
        assert server.proc is not None
        hwm_before = vm_hwm_kib(server.proc.pid) or 0
        command = ours_cli("replicate", RULE, "--json", "--data-dir", str(server.data_dir))
        env = clean_env(REGISTRY_REPLICATION_RULES=server.rules, REGISTRY_LOG_LEVEL="warning")
        first = run_timed(command, env, root)
        report = parse_report("pull_rule", first, rnd)
        hwm = sum(vm_hwm_kib(pid) or 0 for pid in process_tree(server.proc.pid))
        rnd.record("pull_rule", first, report.get("bytes"), report={k: report.get(k) for k in (
            "status", "manifests", "blobs", "bytes", "mounted", "present", "skipped", "errors")},
            server_rss_before_mib=round(hwm_before / 1024, 1), server_peak_rss_mib=round(hwm / 1024, 1))
        rnd.check("pull_rule", report.get("status") == "succeeded" and report.get("errors") == 0,
                  f"status {report.get('status')}, errors {report.get('errors')}: {report.get('errors_seen')}")
        rnd.check("pull_rule", report.get("bytes") == seeded.unique_bytes,
                  f"bytes {report.get('bytes')}, seeded {seeded.unique_bytes}")
        rnd.check("pull_rule", report.get("blobs") == seeded.unique_blobs,
                  f"blobs {report.get('blobs')}, seeded {seeded.unique_blobs}")
        rnd.check("pull_rule", report.get("manifests") == seeded.manifests,
                  f"manifests {report.get('manifests')}, seeded {seeded.manifests}")
        rnd.problems += [f"pull_rule: {p}" for p in verify(server.url, seeded)]
        second = run_timed(command, env, root)
        again = parse_report("second_run", second, rnd)
        rnd.record("second_run", second, None, report={k: again.get(k) for k in (
            "status", "manifests", "blobs", "bytes", "mounted", "present", "skipped", "errors")})
        rnd.figures["second_run"]["bytes"] = again.get("bytes")
        rnd.check("second_run", again.get("status") == "succeeded" and again.get("bytes") == 0
                  and again.get("blobs") == 0 and again.get("manifests") == 0,
                  f"status {again.get('status')}, bytes {again.get('bytes')}, blobs {again.get('blobs')}, "
                  f"manifests {again.get('manifests')}")
    finally:
        server.stop()


def skopeo_round(rnd: Round, root: Path, source: Source, seeded: Seeded) -> None:
    dest = SkopeoDestination(root)
    dest.start()
    try:
        yaml_path = root / "skopeo-sync.yaml"
        skopeo_yaml(yaml_path, source, seeded)
        command = skopeo_command(root, yaml_path, dest)
        first = run_timed(command, clean_env(), root)
        rnd.record("skopeo_sync", first, seeded.unique_bytes)
        rnd.problems += [f"skopeo_sync: {p}" for p in verify(dest.url, seeded)]
        second = run_timed(command, clean_env(), root)
        rnd.record("skopeo_second_run", second, None)
        assert dest.proc is not None
        rnd.figures["skopeo_sync"]["dest_peak_rss_mib"] = round((vm_hwm_kib(dest.proc.pid) or 0) / 1024, 1)
    finally:
        dest.stop()


def import_round(rnd: Round, root: Path, storage_copy: Path, seeded: Seeded, key: str) -> None:
    data_dir = root / "ours-import-data"
    subprocess.run(ours_cli("db", "upgrade", "--data-dir", str(data_dir)), cwd=REPO_ROOT, env=clean_env(),
                   check=True, capture_output=True)
    timed = run_timed(ours_cli("import", str(storage_copy), "--json", "--data-dir", str(data_dir)),
                      clean_env(REGISTRY_LOG_LEVEL="warning"), root)
    report = parse_report(key, timed, rnd)
    counts = {k: report.get(k) for k in ("repositories", "tags", "manifests", "blobs", "bytes")}
    imported_bytes = (report.get("bytes") or {}).get("imported")
    linked = sum(1 for p in data_dir.rglob("*") if p.is_file() and p.stat().st_nlink > 1)
    rnd.record(key, timed, imported_bytes, report=counts, hard_linked_files=linked,
               skipped=len(report.get("skipped") or []))
    rnd.check(key, imported_bytes == seeded.unique_bytes, f"bytes {imported_bytes}, seeded {seeded.unique_bytes}")
    rnd.check(key, (report.get("tags") or {}).get("imported") == seeded.manifests,
              f"tags {report.get('tags')}, seeded {seeded.manifests}")
    server = OursWithRule(root, "ours-import", "[]")
    server.data_dir = data_dir
    server.start()
    try:
        rnd.problems += [f"{key}: {p}" for p in verify(server.url, seeded)]
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# Report

FIGURES = (
    ("pull_rule", "pull rule, first run (registry replicate, server running)"),
    ("second_run", "pull rule, second run (nothing to copy)"),
    ("skopeo_sync", "skopeo sync (yaml source, --all) into docker-registry"),
    ("skopeo_second_run", "skopeo sync, second run"),
    ("import", "registry import, same filesystem (hard links)"),
    ("import_copy", "registry import, from tmpfs (bytes copied)"),
)


def median_of(rounds: list[Round], key: str, value: str) -> float | None:
    values = [r.figures[key][value] for r in rounds if key in r.figures and r.figures[key].get(value) is not None]
    return statistics.median(values) if values else None


def summarize(rounds: list[Round]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, label in FIGURES:
        out[key] = {"label": label, "seconds": median_of(rounds, key, "seconds"),
                    "runs_seconds": [r.figures[key]["seconds"] for r in rounds if key in r.figures],
                    "mbps": median_of(rounds, key, "mbps"), "max_rss_mib": median_of(rounds, key, "max_rss_mib"),
                    "cpu_seconds": median_of(rounds, key, "cpu_seconds"), "bytes": median_of(rounds, key, "bytes")}
    skopeo = out["skopeo_sync"]["seconds"]
    for key in ("pull_rule", "import", "import_copy"):
        mine = out[key]["seconds"]
        # Speed over skopeo's: skopeo's time / this time (above 1: faster than skopeo sync).
        out[key]["speed_vs_skopeo"] = round(skopeo / mine, 2) if skopeo and mine else None
    out["pull_rule"]["server_peak_rss_mib"] = median_of(rounds, "pull_rule", "server_peak_rss_mib")
    out["pull_rule"]["server_rss_before_mib"] = median_of(rounds, "pull_rule", "server_rss_before_mib")
    return out


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(summary: dict[str, dict[str, Any]], seeded: Seeded, size: Size, repeat: int) -> None:
    print(f"\nSource: {size.repositories} repositories x {size.tags} tags, {size.layers} layers of "
          f"{size.layer_bytes >> 10} KiB each (the first shared by a repository's tags): {seeded.manifests} "
          f"manifests, {seeded.unique_blobs} blobs, {seeded.unique_bytes / MB:.1f} MB unique. Median of {repeat} "
          f"interleaved rounds, each against a fresh destination.\n")
    print("| step | wall time (s) | MB/s | x skopeo sync | peak RSS (MiB) | CPU (s) | bytes sent | runs (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in summary.values():
        print(f"| {row['label']} | {fmt(row['seconds'])} | {fmt(row['mbps'], '.1f')} | "
              f"{fmt(row.get('speed_vs_skopeo'))} | {fmt(row['max_rss_mib'], '.1f')} | {fmt(row['cpu_seconds'])} | "
              f"{'-' if row['bytes'] is None else int(row['bytes'])} | "
              f"{', '.join(f'{s:.2f}' for s in row['runs_seconds'])} |")
    rule = summary["pull_rule"]
    print(f"\nOur server during the pull rule: peak RSS {fmt(rule['server_peak_rss_mib'], '.1f')} MiB "
          f"({fmt(rule['server_rss_before_mib'], '.1f')} before it). x skopeo sync = skopeo's time / this time.")


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    versions = {}
    for name, command in (("skopeo", [SKOPEO, "--version"]), ("docker-registry", [REFERENCE_BIN, "--version"])):
        try:
            versions[name] = subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError as exc:
            versions[name] = f"? ({exc})"
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "versions": versions}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--repositories", type=int)
    parser.add_argument("--tags", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--layer-kib", type=int)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work-dir", default="/var/tmp", help="parent of the temp dir (not tmpfs)")
    parser.add_argument("--copy-dir", default="/dev/shm",
                        help="another filesystem for the second copy of the source's storage root (the import "
                             "from it copies the bytes instead of hard-linking them)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = parser.parse_args()
    base = SIZES[args.size]
    size = Size(args.repositories or base.repositories, args.tags or base.tags, args.layers or base.layers,
                (args.layer_kib << 10) if args.layer_kib else base.layer_bytes)
    for binary in (SKOPEO, REFERENCE_BIN):
        if not Path(binary).exists():
            print(f"{binary} is missing: apt-get install -y skopeo docker-registry", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="bench-replication-", dir=args.work_dir))
    copy_dir = Path(tempfile.mkdtemp(prefix="bench-replication-", dir=args.copy_dir))
    if copy_dir.stat().st_dev == work.stat().st_dev:
        print(f"--copy-dir {args.copy_dir} is on the same filesystem as --work-dir {args.work_dir}", file=sys.stderr)
        shutil.rmtree(work)
        shutil.rmtree(copy_dir)
        return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    load_start = os.getloadavg()[0]
    rounds: list[Round] = []
    source = Source(work)
    try:
        source.start()
        log(f"source at {source.url}, seeding {size}")
        started = time.monotonic()
        seeded = seed(source.url, size)
        seed_seconds = time.monotonic() - started
        log(f"seeded {seeded.manifests} manifests, {seeded.unique_blobs} blobs, {seeded.unique_bytes / MB:.1f} MB "
            f"in {seed_seconds:.1f} s")
        # Untimed, while the source serves nothing: one copy on the data dirs' filesystem (the import
        # hard-links its blobs) and one on another (--copy-dir, tmpfs: the import copies the bytes).
        copies = {"import": work / "source-copy", "import_copy": copy_dir / "source-copy"}
        for path in copies.values():
            shutil.copytree(source.storage_root, path)
        for index in range(1, args.repeat + 1):
            rnd = Round(index)
            rounds.append(rnd)
            for step in (pull_rule_round, skopeo_round):
                root = work / f"round-{index}-{step.__name__}"
                root.mkdir()
                step(rnd, root, source, seeded)
                if not args.keep:
                    shutil.rmtree(root, ignore_errors=True)
            for key, storage_copy in copies.items():
                root = work / f"round-{index}-{key}"
                root.mkdir()
                import_round(rnd, root, storage_copy, seeded, key)
                if not args.keep:
                    shutil.rmtree(root, ignore_errors=True)
            for problem in rnd.problems:
                log(f"  PROBLEM round {index}: {problem}")
        assert source.proc is not None
        source_rss = round((vm_hwm_kib(source.proc.pid) or 0) / 1024, 1)
    finally:
        source.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(copy_dir, ignore_errors=True)
    summary = summarize(rounds)
    print_table(summary, seeded, size, args.repeat)
    problems = [f"round {r.index}: {p}" for r in rounds for p in r.problems]
    for problem in problems:
        print(f"PROBLEM {problem}")
    load_end = os.getloadavg()[0]
    print(f"Load average (1 min): {load_start:.2f} at the start, {load_end:.2f} at the end.")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"replication-{stamp}.json"
    out.write_text(json.dumps({
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "args": vars(args),
        "size": vars(size), "machine": machine(), "load_average": [load_start, load_end],
        "work_dir": str(work), "copy_dir": str(copy_dir), "seeded": {"manifests": seeded.manifests, "blobs": seeded.unique_blobs,
                                          "bytes": seeded.unique_bytes, "manifest_bytes": seeded.manifest_bytes,
                                          "seconds": round(seed_seconds, 2), "source_peak_rss_mib": source_rss},
        "summary": summary, "rounds": [{"round": r.index, "figures": r.figures, "problems": r.problems}
                                       for r in rounds], "problems": problems}, indent=2) + "\n")
    print(f"(JSON: {out})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
