"""Starvation figures, for one or more source trees of the registry side by side.

    .venv/bin/python bench/starve.py slow    [--tls] [--readers 64] [--blob-mib 8] [--rounds 3]
    .venv/bin/python bench/starve.py pull    [--mib 256] [--runs 7] [--clients 1] [--no-pin]
    .venv/bin/python bench/starve.py uploads [--uploads 1000] [--runs 5]
    .venv/bin/python bench/starve.py workers [--pushes 600] [--concurrency 200] [--runs 3]

Each takes `--code LABEL=DIR` (repeatable; default: this checkout) and runs the registry from
DIR with PYTHONPATH (`LABEL=PATCHES:DIR` puts PATCHES first, e.g. a sitecustomize.py that
changes a constant), so a "before" tree (`git archive BASE | tar -x -C /tmp/base`) and the
current one are measured in one run, alternating where the figure allows.

- slow: a registry with basic auth (local users made with `registry user add`, bcrypt) and
  anonymous pull; `--readers` raw-socket clients with a 4 KiB receive buffer GET one
  `--blob-mib` blob and read 1 KiB every 100 ms. Before they attach and while they are attached,
  it times a small monolithic push (two blob POSTs ?digest= and a manifest PUT), a login that
  needs a bcrypt check (GET /v2/ as a user not seen before) and /readyz. A request that does not
  answer within --timeout counts as that timeout.
- pull: one `--mib` blob GET (spliced to /dev/null, server and client on separate cores as in
  bench/run.py), trees alternating; median MB/s and the server's CPU seconds per GB. With
  `--clients N`, N GETs at once (aggregate MB/s, unpinned).
- uploads: 1 KiB blobs, POST then PUT ?digest=, 32 in flight, one worker; median uploads/s.
- workers: `registry serve --workers 2`; `--concurrency` clients push `--pushes` small images
  (layer POST + PUT ?digest=, manifest PUT) while another process GETs /v2/ on a new connection
  every 5 ms; p50/p99/max of those GETs, and the pushes' rate.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402

from tests.auth.conftest import AuthRegistry, User, add_accounts, basic  # noqa: E402
from tests.support.push_load import concurrent_pushes_with_probe, percentile  # noqa: E402
from tests.support.slow_peers import SlowReaders, push_small_image, sha256  # noqa: E402

MB = 1_000_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Tree:
    def __init__(self, spec: str) -> None:
        label, _, directories = spec.partition("=")
        self.label = label
        # More than one directory (a:b): PYTHONPATH as given, e.g. one with a sitecustomize.py that
        # changes a constant, before the tree; the last one holds the registry package.
        self.path = [Path(d).resolve() for d in (directories or str(REPO_ROOT)).split(os.pathsep)]
        if not (self.path[-1] / "registry" / "__init__.py").exists():
            raise SystemExit(f"{self.path[-1]}: no registry package there")

    def server(self, root: Path, args: list[str]) -> AuthRegistry:
        data = root / f"{self.label}-{uuid.uuid4().hex[:6]}" / "data"
        return AuthRegistry(data, args=args, env={"PYTHONPATH": os.pathsep.join(map(str, self.path))})


def traceback_in(server: AuthRegistry) -> bool:
    return "Traceback" in server.log_text()


# -- slow readers --------------------------------------------------------------------------------

def slow(trees: list[Tree], root: Path, opts: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    blob = os.urandom(opts.blob_mib << 20)
    password = uuid.uuid4().hex
    for tree in trees:
        args = ["--auth-mode", "basic", "--auth-anonymous-pull"] + (["--tls-self-signed"] if opts.tls else [])
        server = tree.server(root, args).start()
        try:
            users = [User("pusher", password)] + [User(f"login{i}", password) for i in range(opts.rounds + 1)]
            add_accounts(server.data_dir, users)
            auth = basic("pusher", password)
            with server.client(timeout=opts.timeout) as client:
                response = client.post("/v2/slow/blob/blobs/uploads/", params={"digest": sha256(blob)}, content=blob,
                                       headers={**auth, "Content-Type": "application/octet-stream"})
                assert response.status_code == 201, response.text

                failures: list[str] = []

                def round_(i: int) -> dict[str, float]:
                    figures = {}
                    for name, fn in (
                        ("push", lambda: push_small_image(client, "slow/push", f"t{i}", auth)),
                        ("login", lambda: _login(client, f"login{i}", password)),
                        ("readyz", lambda: _ok(client.get("/readyz"))),
                    ):
                        t0 = time.perf_counter()
                        try:
                            fn()
                        except httpx.TimeoutException:
                            figures[name] = float("inf")
                        except AssertionError as exc:  # answered, but not as it should: say so
                            figures[name] = time.perf_counter() - t0
                            failures.append(f"{tree.label} round {i} {name}: {exc}")
                            log(failures[-1])
                        else:
                            figures[name] = time.perf_counter() - t0
                    return figures

                push_small_image(client, "slow/push", "warm", auth)  # pusher's credentials now cached
                idle = round_(0)
                log(f"{tree.label}: idle {fmt_round(idle)}")
                tls = server.ssl_context() if opts.tls else None
                threads0 = _threads(server.pid)
                readers = SlowReaders("127.0.0.1", server.port, f"/v2/slow/blob/blobs/{sha256(blob)}",
                                      count=opts.readers, tls=tls).start()
                t0 = time.monotonic()
                try:
                    time.sleep(opts.settle)
                    loaded = []
                    for i in range(1, opts.rounds + 1):
                        loaded.append(round_(i))
                        log(f"{tree.label}: {opts.readers} slow readers attached, round {i}: {fmt_round(loaded[-1])}")
                    threads = _threads(server.pid)
                finally:
                    readers.stop()
                elapsed = time.monotonic() - t0
            results[tree.label] = {
                "idle": idle, "loaded": loaded,
                "loaded_max": {k: max(r[k] for r in loaded) for k in idle},
                "reader_bytes_per_s": sum(readers.received) / elapsed / opts.readers,
                "reader_errors": readers.errors[:5],
                "failures": failures,
                "server_threads": {"idle": threads0, "loaded": threads},
                "traceback_in_log": traceback_in(server),
            }
            log(f"{tree.label}: readers got {results[tree.label]['reader_bytes_per_s'] / 1000:.1f} KB/s each; "
                f"server threads {threads0} -> {threads}; traceback in log: {results[tree.label]['traceback_in_log']}")
        finally:
            server.stop()
    return results


def _login(client: httpx.Client, user: str, password: str) -> None:
    _ok(client.get("/v2/", headers=basic(user, password)))


def _ok(response: httpx.Response) -> None:
    assert response.status_code == 200, f"{response.request.url}: {response.status_code} {response.text}"


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


def fmt_round(r: dict[str, float]) -> str:
    return ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in r.items())


# -- single pull ---------------------------------------------------------------------------------

def pull(trees: list[Tree], root: Path, opts: argparse.Namespace) -> dict[str, Any]:
    import figures
    from run import BlobClient, make_blob, push_monolithic

    size = opts.mib << 20
    blob_path = root / "pull.blob"
    make_blob(blob_path, size)
    digest = "sha256:" + _file_sha256(blob_path)
    servers = [tree.server(root, []).start() for tree in trees]
    speeds: dict[str, list[float]] = {tree.label: [] for tree in trees}
    cpu: dict[str, list[float]] = {tree.label: [] for tree in trees}
    try:
        for server in servers:
            c = BlobClient(server.url)
            push_monolithic(c, "pull/blob", blob_path, size, digest)
            c.close()
        path = f"/v2/pull/blob/blobs/{digest}"
        for run in range(opts.runs):
            order = list(zip(trees, servers))
            if run % 2:
                order.reverse()  # neither tree always goes first
            for tree, server in order:
                cpu0 = _cpu_seconds(server.pid)
                if opts.clients == 1:
                    seconds = figures.get_once(server.url, path, size, server.pid if opts.pin else None)
                    speeds[tree.label].append(size / seconds / MB)
                else:
                    speeds[tree.label].append(figures.get_concurrent(server.url, path, size, opts.clients))
                moved = size * opts.clients
                cpu[tree.label].append((_cpu_seconds(server.pid) - cpu0) / (moved / 1e9))
                log(f"{tree.label}: {opts.clients} x pull {size >> 20} MiB {speeds[tree.label][-1]:.0f} MB/s, "
                    f"server CPU {cpu[tree.label][-1]:.3f} s/GB")
        return {tree.label: {"runs_mbps": speeds[tree.label], "median_mbps": statistics.median(speeds[tree.label]),
                             "cpu_s_per_gb": cpu[tree.label], "median_cpu_s_per_gb": statistics.median(cpu[tree.label]),
                             "traceback_in_log": traceback_in(server)} for tree, server in zip(trees, servers)}
    finally:
        for server in servers:
            server.stop()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# -- small uploads, one worker -------------------------------------------------------------------

def uploads(trees: list[Tree], root: Path, opts: argparse.Namespace) -> dict[str, Any]:
    import figures

    servers = [tree.server(root, []).start() for tree in trees]
    rates: dict[str, list[float]] = {tree.label: [] for tree in trees}
    p99: dict[str, list[float]] = {tree.label: [] for tree in trees}
    try:
        for run in range(opts.runs):
            order = list(zip(trees, servers))
            if run % 2:
                order.reverse()
            for tree, server in order:
                os.sync()
                blobs = figures.small_blobs(f"{tree.label}-{run}", opts.uploads)
                burst = figures.upload_small_blobs(server.url, "small/blobs", blobs, 32)
                assert not burst.failed, burst.errors
                rates[tree.label].append(opts.uploads / burst.seconds)
                p99[tree.label].append(percentile(burst.latencies, 99) * 1000)
                log(f"{tree.label}: {rates[tree.label][-1]:.0f} uploads/s, p99 {p99[tree.label][-1]:.1f} ms")
        return {tree.label: {"runs_per_s": rates[tree.label], "median_per_s": statistics.median(rates[tree.label]),
                             "p99_ms": p99[tree.label], "traceback_in_log": traceback_in(server)}
                for tree, server in zip(trees, servers)}
    finally:
        for server in servers:
            server.stop()


# -- two workers on SQLite -----------------------------------------------------------------------

def workers(trees: list[Tree], root: Path, opts: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {tree.label: {"runs": []} for tree in trees}
    for run in range(opts.runs):
        order = trees if run % 2 == 0 else trees[::-1]
        for tree in order:
            server = tree.server(root, ["--workers", "2"]).start()
            try:
                figures = concurrent_pushes_with_probe(server.url, opts.pushes, opts.concurrency)
                figures["traceback_in_log"] = traceback_in(server)
            finally:
                server.stop()
            results[tree.label]["runs"].append(figures)
            log(f"{tree.label}: GET /v2/ p50 {figures['probe_p50_ms']:.1f} ms, p99 {figures['probe_p99_ms']:.1f} ms, "
                f"max {figures['probe_max_ms']:.0f} ms ({figures['probes']} probes); "
                f"{figures['pushes_per_s']:.0f} pushes/s, push p99 {figures['push_p99_ms']:.0f} ms, "
                f"failed {figures['failed']}")
    for tree in trees:
        runs = results[tree.label]["runs"]
        results[tree.label]["median_probe_p99_ms"] = statistics.median(r["probe_p99_ms"] for r in runs)
        results[tree.label]["median_probe_p50_ms"] = statistics.median(r["probe_p50_ms"] for r in runs)
    return results


# -- main ----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figure", choices=("slow", "pull", "uploads", "workers"))
    parser.add_argument("--code", action="append", default=[], metavar="LABEL=DIR")
    parser.add_argument("--readers", type=int, default=64)
    parser.add_argument("--blob-mib", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between attaching readers and timing")
    parser.add_argument("--timeout", type=float, default=15.0)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--clients", type=int, default=1, help="pull: clients at once (aggregate MB/s; never pinned)")
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--pushes", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--work-dir", default="/var/tmp")
    parser.add_argument("--json", help="also write the figures here")
    opts = parser.parse_args()
    trees = [Tree(spec) for spec in (opts.code or [f"current={REPO_ROOT}"])]
    root = Path(tempfile.mkdtemp(prefix="starve-", dir=opts.work_dir))
    os.chdir(root)  # `python -m registry` puts the working directory first on sys.path
    try:
        result = globals()[opts.figure](trees, root, opts)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = json.dumps({"figure": opts.figure, "args": vars(opts), "results": result}, indent=2, default=str)
    print(text)
    if opts.json:
        Path(opts.json).write_text(text)


if __name__ == "__main__":
    main()
