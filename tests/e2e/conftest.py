"""Fixtures for the end-to-end tests: a running dockerd, locally built images, skopeo and OCI layouts.

Real clients only. A missing client is a failure with the way to get it, never a skip: the suite
is meant to prove the registry works with them.

After every test, the log of every registry process made so far must hold no traceback in what it
wrote since the previous check (tests/conftest.py, for the whole suite).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from collections.abc import Iterator

import pytest

from tests.support import host
from tests.support.clients import require_tool, skopeo  # noqa: F401  (skopeo: a fixture for the e2e tests)
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

DOCKERD = "/usr/sbin/dockerd"
DOCKERD_TIMEOUT = 60


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
    """A usable Docker engine: the running one, or /usr/sbin/dockerd started (and stopped) here.

    Only a dockerd this fixture started is ever stopped, by its own process handle: one that was running
    already, or that another test session started meanwhile (ours then exits: the pid file is taken), is
    used and left running.
    """
    require_tool("docker", "docker.io")
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

    def stop_ours() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    deadline = time.monotonic() + DOCKERD_TIMEOUT
    while not _docker_info_ok():
        other = host.dockerd_pid()
        if proc.poll() is not None and other in (None, proc.pid):
            pytest.fail(f"dockerd exited with status {proc.returncode} (log {log_path}); is docker.io installed "
                        f"(apt-get install -y docker.io)?\n{log_tail()}", pytrace=False)
        # else ours is starting, or another session's dockerd is (ours exited on its pid file): wait for it.
        if time.monotonic() > deadline:
            stop_ours()
            pytest.fail(f"dockerd did not answer `docker info` within {DOCKERD_TIMEOUT}s (log {log_path}); "
                        f"is docker.io installed and working (apt-get install -y docker.io)?\n{log_tail()}",
                        pytrace=False)
        time.sleep(0.25)
    try:
        yield
    finally:
        stop_ours()


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


@pytest.fixture(scope="session")
def oci_image(session_id: str, tmp_path_factory: pytest.TempPathFactory) -> OciLayout:
    """An OCI layout with two images for this host's platform, tags `v1` and `other`, sharing a layer."""
    return write_single_arch_layout(tmp_path_factory.mktemp("oci-image") / "layout", session_id)


@pytest.fixture(scope="session")
def oci_index(session_id: str, tmp_path_factory: pytest.TempPathFactory) -> OciLayout:
    """An OCI layout whose tag `multi` is an image index over linux/amd64 and linux/arm64."""
    return write_multi_arch_layout(tmp_path_factory.mktemp("oci-index") / "layout", session_id)
