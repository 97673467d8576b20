"""Fixtures for the end-to-end tests: a running dockerd, locally built images, skopeo and OCI layouts.

Real clients only. A missing client is a failure with the way to get it, never a skip: the suite
is meant to prove the registry works with them.

After every test, the log of every registry process made so far (tests/support/server.py
SERVER_LOGS) must hold no traceback in what it wrote since the previous check.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

import pytest

from tests.support.images import (
    BASE_DOCKERFILE,
    BUSYBOX,
    DockerImage,
    OciLayout,
    app_dockerfile,
    docker_build,
    make_base_context,
    run,
    write_multi_arch_layout,
    write_single_arch_layout,
)
from tests.support.logcheck import LogWatch

DOCKERD = "/usr/sbin/dockerd"
DOCKERD_TIMEOUT = 60


_LOGS = LogWatch()


@pytest.fixture(scope="session", autouse=True)
def server_logs_watched() -> None:
    """Before the first e2e fixture starts anything: what registries of other suites logged is theirs."""
    _LOGS.skip_what_is_there()


@pytest.fixture(autouse=True)
def server_logs_hold_no_traceback(server_logs_watched: None) -> Iterator[None]:
    """Every real-client test: no registry process it drove logged a traceback or an unhandled error.

    Checked from where the previous check stopped, so what module fixtures did between two tests
    counts as well (and is named in the failure)."""
    yield
    problems = _LOGS.problems()
    if problems:
        pytest.fail("a registry process logged tracebacks or unhandled errors:\n" + "\n".join(problems),
                    pytrace=False)


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not found on PATH; install it with: apt-get install -y {package}", pytrace=False)
    return path


def _docker_info_ok() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def session_id() -> str:
    """Unique per test session: image names and tags never collide with earlier runs."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A usable Docker engine: the running one, or /usr/sbin/dockerd started (and stopped) here."""
    _require("docker", "docker.io")
    if _docker_info_ok():
        yield
        return
    dockerd_bin = DOCKERD if os.path.exists(DOCKERD) else shutil.which("dockerd")
    if dockerd_bin is None:
        pytest.fail("dockerd not found and no Docker engine is running; install it with: "
                    "apt-get install -y docker.io", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("no Docker engine is running and starting dockerd needs root; start it "
                    "(apt-get install -y docker.io && dockerd &) or run the tests as root", pytrace=False)
    log_dir = tmp_path_factory.mktemp("dockerd")
    log_path = log_dir / "dockerd.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([dockerd_bin], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)

    def log_tail() -> str:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])

    deadline = time.monotonic() + DOCKERD_TIMEOUT
    while not _docker_info_ok():
        if proc.poll() is not None:
            pytest.fail(f"dockerd exited with status {proc.returncode} (log {log_path}); is docker.io installed "
                        f"(apt-get install -y docker.io)?\n{log_tail()}", pytrace=False)
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"dockerd did not answer `docker info` within {DOCKERD_TIMEOUT}s (log {log_path}); "
                        f"is docker.io installed and working (apt-get install -y docker.io)?\n{log_tail()}",
                        pytrace=False)
        time.sleep(0.25)
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class DockerImages:
    base: DockerImage
    app1: DockerImage
    app2: DockerImage

    @property
    def all(self) -> list[DockerImage]:
        return [self.app1, self.app2, self.base]


@pytest.fixture(scope="session")
def docker_images(dockerd: None, session_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerImages]:
    """A base image (busybox + a second layer) and two app images FROM it, each adding its own file.

    Every layer carries the session id, so nothing is shared with images from earlier runs and a
    pull after `docker rmi` really downloads.
    """
    if not BUSYBOX.exists():
        pytest.fail(f"{BUSYBOX} not found; install it with: apt-get install -y busybox-static", pytrace=False)
    root = tmp_path_factory.mktemp("docker-build")
    prefix = f"e2e-{session_id}"
    base_ctx = root / "base"
    base_ctx.mkdir()
    make_base_context(base_ctx, session_id)
    base = docker_build(base_ctx, f"{prefix}/base:latest", BASE_DOCKERFILE)
    apps = []
    for name in ("app1", "app2"):
        ctx = root / name
        ctx.mkdir()
        content = f"{name} says hello from session {session_id}\n"
        (ctx / "app.txt").write_text(content)
        path = f"/{name}.txt"
        image = docker_build(ctx, f"{prefix}/{name}:latest", app_dockerfile(base.tag, path))
        image.files[path] = content
        apps.append(image)
    images = DockerImages(base=base, app1=apps[0], app2=apps[1])
    try:
        yield images
    finally:
        # By id, with --force: removes every tag any test gave them (local, registry, digest-only).
        for image in images.all:
            run(["docker", "image", "rm", "--force", image.id], check=False)


@dataclass
class Skopeo:
    """skopeo with a private policy (accept anything) and an empty registries.conf."""
    base_args: list[str]

    def __call__(self, *args: object, check: bool = True, timeout: float = 120,
                 text: bool = True) -> subprocess.CompletedProcess:
        return run([*self.base_args, *args], check=check, timeout=timeout, text=text)


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    binary = _require("skopeo", "skopeo")
    root = tmp_path_factory.mktemp("skopeo")
    registries_conf = root / "registries.conf"
    registries_conf.write_text("")  # no mirrors, no short names: only what the test names
    policy = root / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
    tmp = root / "tmp"
    tmp.mkdir()
    return Skopeo([binary, "--policy", str(policy), "--registries-conf", str(registries_conf),
                   "--tmpdir", str(tmp)])


@pytest.fixture(scope="session")
def oci_image(session_id: str, tmp_path_factory: pytest.TempPathFactory) -> OciLayout:
    """An OCI layout with two single-arch (linux/amd64) images, tags `v1` and `other`, sharing a layer."""
    return write_single_arch_layout(tmp_path_factory.mktemp("oci-image") / "layout", session_id)


@pytest.fixture(scope="session")
def oci_index(session_id: str, tmp_path_factory: pytest.TempPathFactory) -> OciLayout:
    """An OCI layout whose tag `multi` is an image index over linux/amd64 and linux/arm64."""
    return write_multi_arch_layout(tmp_path_factory.mktemp("oci-index") / "layout", session_id)
