"""The compose files and the balancer's nginx configuration.

deploy/compose.yaml runs for real with the image built here (Debian's docker-compose 1.29; the
file is also valid for `docker compose` v2): healthy, push, pull. deploy/compose.scale.yaml needs
the PostgreSQL, MinIO and nginx images from Docker Hub, which this machine cannot reach, so it is
validated by docker-compose (schema, anchors, variables) and its nginx configuration by `nginx -t`;
tests/e2e/test_scaleout.py runs the same topology from local processes (PostgreSQL, Swift's S3).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from collections.abc import Iterator

import pytest

from tests.packaging.conftest import BuiltImage
from tests.packaging.test_image import _inspect, _wait_healthy, assert_container_log_clean
from tests.support.images import BASE_DOCKERFILE, docker_build, make_base_context, run
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        pytest.fail("docker-compose not found; install it with: scripts/system-deps docker-compose "
                    "(make system-deps)", pytrace=False)
    return path


@pytest.mark.parametrize("name", ["compose.yaml", "compose.scale.yaml"])
def test_compose_file_is_valid(name: str, dockerd: None):
    result = run([_compose(), "--file", DEPLOY / name, "config", "--quiet"], check=False, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def single_node(registry_image: BuiltImage, session_id: str) -> Iterator[tuple[list[str], int]]:
    port = free_port()
    project = f"pkg{session_id}{uuid.uuid4().hex[:4]}"
    env = {"REGISTRY_IMAGE": registry_image.tag, "REGISTRY_PORT": str(port)}
    compose = [_compose(), "--project-name", project, "--file", str(DEPLOY / "compose.yaml")]
    try:
        run([*compose, "up", "--detach", "--no-build"], env=env, timeout=180)
        yield compose, port
    finally:
        run([*compose, "down", "--volumes", "--timeout", "5"], env=env, check=False, timeout=120)


def test_single_node_compose_serves_push_and_pull(single_node, session_id: str, tmp_path: Path):
    compose, port = single_node
    container = run([*compose, "ps", "--quiet", "registry"]).stdout.strip()
    assert container
    _wait_healthy(container)
    config = _inspect("container", container)["HostConfig"]
    assert config["ReadonlyRootfs"] is True

    context = tmp_path / "app"
    context.mkdir()
    make_base_context(context, session_id)
    ref = f"127.0.0.1:{port}/compose/app-{session_id}:1"
    image = docker_build(context, ref, BASE_DOCKERFILE)
    try:
        run(["docker", "push", ref], timeout=120)
        run(["docker", "image", "rm", "--force", image.id])
        run(["docker", "pull", ref], timeout=120)
        assert _inspect("image", ref)["Id"] == image.id
        assert_container_log_clean(container)
    finally:
        run(["docker", "image", "rm", "--force", image.id], check=False)


def test_scale_balancer_config_passes_nginx_t(tmp_path: Path):
    """nginx resolves the upstream names at load time: give it an /etc/hosts naming the replicas,
    in a private mount namespace so the host's file is untouched."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.fail("nginx not found; install it with: scripts/system-deps nginx-light", pytrace=False)
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost registry-1 registry-2\n")
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    script = (f"mount --bind {hosts} /etc/hosts && exec {nginx} -t -p {prefix} -c {DEPLOY / 'nginx.scale.conf'} "
              f"-g 'error_log {prefix}/logs/error.log; pid {prefix}/nginx.pid;'")
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "test is successful" in result.stderr, result.stderr
