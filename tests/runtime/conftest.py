"""Fixtures for the runtime tests: the real `registry` CLI as a subprocess, against the session's registry,
with a store and a cgroup parent of its own, and a check after every test that nothing leaked
(mounts, cgroups, veths, processes) and that the registry servers it used logged no traceback.

These tests need root, overlayfs and cgroups; a missing prerequisite fails with what to do. What varies between
hosts of this kind (cgroup v1, hybrid or v2; a block I/O weight or none; swap) is detected by tests/support/host.py
and each test checks what the host has.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

import pytest

from tests.runtime import images as im
from tests.support import host
from tests.support.server import RegistryProcess

REPO = Path(__file__).resolve().parents[2]


def pytest_report_header() -> str:
    """The host facts these tests adapt to, at the top of the run (e.g. "cgroup hybrid: ...; no block I/O
    weight ...")."""
    try:
        return f"host: {host.describe()}"
    except OSError as exc:  # not root, no /sys: the prerequisites below say what is missing
        return f"host: not probed ({exc})"


def _require_root_prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.fail("the runtime tests need root (namespaces, overlay mounts, cgroups); run them as root",
                    pytrace=False)
    if "overlay" not in Path("/proc/filesystems").read_text():
        pytest.fail("overlayfs is not available: modprobe overlay", pytrace=False)
    if not Path("/sys/fs/cgroup").is_dir() or not any(Path("/sys/fs/cgroup").iterdir()):
        pytest.fail("no cgroup filesystem at /sys/fs/cgroup", pytrace=False)
    if not im.BUSYBOX.exists():
        pytest.fail("/bin/busybox missing: apt-get install -y busybox-static", pytrace=False)


@dataclass
class Runtime:
    root: Path
    cgroup_parent: str
    registry: RegistryProcess

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "REGISTRY_RUNTIME_ROOT": str(self.root), "REGISTRY_RUNTIME_CGROUP": self.cgroup_parent}

    def cli(self, *args: object, check: bool = True, timeout: float = 60, input: str | None = None
            ) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "registry", *[str(a) for a in args]]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env, cwd=REPO,
                                    input=input, stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"$ registry {' '.join(map(str, args))}\ntimed out after {timeout}s\n"
                                 f"stdout: {exc.stdout!r}\nstderr: {exc.stderr!r}") from None
        if check and result.returncode != 0:
            raise AssertionError(f"$ registry {' '.join(map(str, args))}\nexit {result.returncode}\n"
                                 f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
        return result

    def cli_bytes(self, *args: object, stdin: bytes = b"", timeout: float = 60) -> bytes:
        """The CLI with bytes in and out (tar streams); its stdout, or AssertionError with stderr."""
        result = subprocess.run([sys.executable, "-m", "registry", *[str(a) for a in args]], input=stdin,
                                capture_output=True, timeout=timeout, env=self.env, cwd=REPO)
        if result.returncode != 0:
            raise AssertionError(f"$ registry {' '.join(map(str, args))}\nexit {result.returncode}\n"
                                 f"{result.stderr.decode(errors='replace')}")
        return result.stdout

    def popen(self, *args: object) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "registry", *[str(a) for a in args]], env=self.env, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)

    # -- what must not outlive a test -----------------------------------------------------
    def cgroup_parents(self) -> list[Path]:
        """This runtime's parent cgroup in every hierarchy (v1 mounts, named ones, v2's root) that has one."""
        return [p for p in (m / self.cgroup_parent for m in host.cgroups().mount_points) if p.is_dir()]

    def cgroup_dirs(self) -> list[str]:
        return sorted(str(p) for parent in self.cgroup_parents() for p in parent.iterdir() if p.is_dir())

    def mounts(self) -> list[str]:
        text = Path("/proc/self/mountinfo").read_text()
        return [line for line in text.splitlines() if str(self.root) in line]

    def links(self) -> list[str]:
        """The host ends of containers' veth pairs (registry.runtime.network.host_names)."""
        return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(("rr", "rp")))

    def processes(self) -> list[str]:
        marker = f"REGISTRY_RUNTIME_ROOT={self.root}".encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
                cgroups = Path(f"/proc/{entry}/cgroup").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in environ.split(b"\0") or f"/{self.cgroup_parent}/" in cgroups:
                found.append(f"{entry}: {cmdline[:200]}")
        return found

    def leaks(self, links_before: frozenset[str] = frozenset()) -> dict[str, list[str]]:
        """What is left; links present before the test are not counted (another runtime on this host, e.g. a
        concurrent test run, has its own)."""
        links = [n for n in self.links() if n not in links_before]
        return {k: v for k, v in {"mounts": self.mounts(), "cgroups": self.cgroup_dirs(), "links": links,
                                  "processes": self.processes()}.items() if v}


def inspect(runtime: Runtime, name: str) -> dict:
    """`registry inspect NAME`, parsed."""
    return json.loads(runtime.cli("inspect", name).stdout)[0]


def wait_for(predicate, timeout: float = 20, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def runtime(registry: RegistryProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    _require_root_prerequisites()
    root = tmp_path_factory.mktemp("runtime-root")
    rt = Runtime(root, f"registry-runtime-test-{uuid.uuid4().hex[:8]}", registry)
    yield rt
    for parent in rt.cgroup_parents():
        try:
            parent.rmdir()
        except OSError:
            pass


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each runtime test: no mounts, cgroups, veths or processes of the runtime remain."""
    if "runtime" not in request.fixturenames:
        yield
        return
    rt: Runtime = request.getfixturevalue("runtime")
    links_before = frozenset(rt.links())
    yield
    deadline = time.monotonic() + 10
    leaks = rt.leaks(links_before)
    while leaks and time.monotonic() < deadline:  # a monitor may still be tearing down after `rm`
        time.sleep(0.1)
        leaks = rt.leaks(links_before)
    # Exited containers hold nothing; remove them so each test starts clean.
    containers = rt.root / "containers"
    if containers.is_dir():
        for entry in containers.iterdir():
            rt.cli("rm", "-f", entry.name, check=False)
    assert not leaks, f"the runtime leaked: {leaks}"


@pytest.fixture(scope="session")
def base_image(runtime: Runtime) -> im.Image:
    """busybox in one gzip layer, root user, Cmd sh."""
    return im.push(runtime.registry.url, f"rt-{uuid.uuid4().hex[:8]}/base", "v1", [im.layer(im.busybox_entries())],
                   {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]})


@pytest.fixture(scope="session")
def pulled_base(runtime: Runtime, base_image: im.Image) -> str:
    runtime.cli("pull", base_image.reference)
    return base_image.reference


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found; install it with: apt-get install -y {package} (make system-deps)",
                    pytrace=False)
    return path
