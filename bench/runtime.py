#!/usr/bin/env python3
"""Container start-up: `registry run --rm IMAGE true` against `runc run` on the same unpacked bundle and
`docker run --rm IMAGE true`, interleaved, repeated; medians and ratios.

    cd /work/wt-runtime && .venv/bin/python bench/runtime.py [--repeat 20]

The image is busybox-static in one layer, pushed to our registry on loopback, then pulled once by each
runtime (`registry pull`, `docker pull`). runc gets `runc spec`'s defaults with the unpacked layer as
a read-only rootfs (no terminal).

Ours is timed as users run it: the project installed with `pip install` into a fresh venv (byte-compiled, no
editable-install import hook; its dependencies come from this venv through a .pth file), both as the
`registry` command and as `python -m registry.runtime`. The development checkout's `registry` (an editable
install, whose import hook alone loads pathlib and dataclasses at every interpreter start) is timed too, for
reference. Needs root, runc and a Docker engine (started here from /usr/sbin/dockerd when `docker info` fails).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from tests.runtime import images as im  # noqa: E402
from tests.support.server import RegistryProcess  # noqa: E402

RESULTS_DIR = REPO_ROOT / "bench" / "results"


def ensure_docker(log_dir: Path) -> subprocess.Popen | None:
    if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return None
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    log = open(log_dir / "dockerd.log", "ab")
    proc = subprocess.Popen([dockerd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit("dockerd did not come up; see " + str(log_dir / "dockerd.log"))
        time.sleep(0.5)
    return proc


def install(venv: Path) -> Path:
    """The project installed into a new venv as `pip install .` does it; that venv's bin directory."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    ours = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "zz-dependencies.pth").write_text(f"{ours}\n")  # aiohttp and the rest, without installing them again
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(REPO_ROOT)], check=True)
    return venv / "bin"


def timed(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, env=env, cwd=cwd)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"$ {' '.join(cmd)} failed ({result.returncode}): {result.stderr.decode()[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the runtime benchmark needs root")
    for tool in ("runc", "docker"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} missing: make system-deps")
    work = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    dockerd = ensure_docker(work)
    server = RegistryProcess(work / "registry")
    server.start()
    tag = f"bench-{uuid.uuid4().hex[:8]}"
    installed = install(work / "venv")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO_ROOT / "registry")], check=True)
    env = {**os.environ, "REGISTRY_RUNTIME_ROOT": str(work / "runtime"),
           "REGISTRY_RUNTIME_CGROUP": f"registry-runtime-bench-{tag}"}
    docker_ref = ""
    try:
        image = im.push(server.url, "bench/busybox", tag, [im.layer(im.busybox_entries())],
                        {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]})
        python = sys.executable
        subprocess.run([python, "-m", "registry", "pull", "-q", image.reference], env=env, check=True,
                       capture_output=True)
        subprocess.run(["docker", "pull", "-q", image.reference], check=True, capture_output=True)
        docker_ref = image.reference
        layer_dir = work / "runtime" / "layers" / image.layers[0].diff_id.split(":")[1]
        bundle = work / "bundle"
        bundle.mkdir()
        subprocess.run(["runc", "spec"], cwd=bundle, check=True)
        config = json.loads((bundle / "config.json").read_text())
        config["root"] = {"path": str(layer_dir), "readonly": True}
        config["process"]["terminal"] = False
        config["process"]["args"] = ["true"]
        (bundle / "config.json").write_text(json.dumps(config))

        commands = {
            "registry run": [str(installed / "registry"), "run", "--rm", image.reference, "true"],
            "python -m registry.runtime run": [str(installed / "python"), "-m", "registry.runtime", "run", "--rm",
                                               image.reference, "true"],
            "registry run (checkout)": [str(Path(python).parent / "registry"), "run", "--rm", image.reference,
                                        "true"],
            "runc run": None,  # a fresh container name each time
            "docker run": ["docker", "run", "--rm", "--network", "none", image.reference, "true"],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for cmd in commands.values():  # warm-up: page cache, pyc files
            if cmd:
                timed(cmd, env, cwd=work)  # not the checkout: `python -m` would import from it
        for i in range(args.repeat):
            for name, cmd in commands.items():
                if name == "runc run":
                    samples[name].append(timed(["runc", "run", f"bench-{tag}-{i}"], cwd=bundle))
                else:
                    samples[name].append(timed(cmd, env, cwd=work))  # type: ignore[arg-type]
        medians = {name: statistics.median(values) for name, values in samples.items()}
        runc, docker = medians["runc run"], medians["docker run"]
        print(f"{'command':34} {'median':>9} {'vs runc':>8} {'vs docker':>10}")
        for name, median in medians.items():
            print(f"{name:34} {median * 1000:7.1f}ms {median / runc:7.2f}x {median / docker:9.2f}x")
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        out = RESULTS_DIR / f"runtime-{stamp}.json"
        out.write_text(json.dumps({"repeat": args.repeat, "medians_s": medians, "samples_s": samples,
                                   "ratios_vs_runc": {k: v / runc for k, v in medians.items()},
                                   "ratios_vs_docker": {k: v / docker for k, v in medians.items()}}, indent=1))
        print(f"results: {out}")
    finally:
        if docker_ref:
            subprocess.run(["docker", "rmi", "-f", docker_ref], capture_output=True)
        server.stop()
        if dockerd is not None:
            dockerd.terminate()
            dockerd.wait(30)
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            leftover = hierarchy / env["REGISTRY_RUNTIME_CGROUP"]
            if leftover.is_dir():
                leftover.rmdir()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
