"""Issue 10, acceptance 1: the image builds here from a debootstrapped base, runs as non-root, passes
its HEALTHCHECK, takes a `docker push` and serves a `docker pull`, and keeps its data in the volume
across a new container (which also runs with a read-only root filesystem, as in deploy/k8s/).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from tests.packaging.conftest import BuiltImage
from tests.support import host
from tests.support.logcheck import assert_clean
from tests.support.images import BASE_DOCKERFILE, docker_build, make_base_context, run
from tests.support.server import free_port

HEALTHY_WITHIN = 60.0
UID = "10001"


def _inspect(kind: str, ref: str) -> dict:
    return json.loads(run(["docker", kind, "inspect", ref]).stdout)[0]


def _bridge_address() -> str:
    """Where the host's connections to a published port come from inside the container (docker-proxy on the
    default bridge): the bridge interface's address; dockerd 20.10 may omit the IPAM Gateway."""
    try:
        return host.docker_bridge_address().address
    except host.HostLacks as exc:
        pytest.skip(f"no address to allow anonymous pushes from: {exc}")


def assert_container_log_clean(container: str) -> None:
    """The registry inside logged no Python traceback."""
    logs = run(["docker", "logs", container], check=False)
    assert_clean(logs.stdout + logs.stderr, f"the log of container {container}")


def _wait_healthy(container: str) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN
    while True:
        state = _inspect("container", container)["State"]
        health = state.get("Health", {})
        if health.get("Status") == "healthy":
            return
        if not state["Running"] or time.monotonic() > deadline:
            logs = run(["docker", "logs", "--tail", "40", container], check=False)
            pytest.fail(f"container {container} not healthy (state {state.get('Status')}, health "
                        f"{json.dumps(health)[-1500:]})\n{logs.stdout}{logs.stderr}", pytrace=False)
        time.sleep(0.5)


class Containers:
    """Containers of the test's image, all on one volume; everything removed at the end."""

    def __init__(self, image: BuiltImage, session: str) -> None:
        self.image = image
        self.volume = f"registry-packaging-{session}-{uuid.uuid4().hex[:6]}"
        self.port = free_port()
        self.names: list[str] = []
        # Pushes reach the container from the bridge's address (docker-proxy), not from loopback:
        # allow that one address to push anonymously, as deploy/compose.yaml does.
        self.push_networks = f"127.0.0.0/8,::1,{_bridge_address()}/32"

    def start(self, *extra: str) -> str:
        name = f"{self.volume}-{len(self.names)}"
        self.names.append(name)
        run(["docker", "run", "--detach", "--name", name, "--health-interval", "1s",
             "--publish", f"127.0.0.1:{self.port}:5000", "--volume", f"{self.volume}:/data",
             "--env", f"REGISTRY_AUTH_ANONYMOUS_PUSH_NETWORKS={self.push_networks}", *extra, self.image.tag])
        _wait_healthy(name)
        return name

    def remove(self, name: str, check_log: bool = True) -> None:
        try:
            if check_log:
                assert_container_log_clean(name)
        finally:
            run(["docker", "rm", "--force", name], check=False)

    def cleanup(self) -> None:
        for name in self.names:
            self.remove(name, check_log=False)
        run(["docker", "volume", "rm", "--force", self.volume], check=False)


@pytest.fixture
def containers(registry_image: BuiltImage, session_id: str) -> Iterator[Containers]:
    made = Containers(registry_image, session_id)
    try:
        yield made
    finally:
        made.cleanup()


def test_image_metadata(registry_image: BuiltImage):
    config = _inspect("image", registry_image.tag)["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert "5000/tcp" in config["ExposedPorts"]
    assert "/data" in config["Volumes"]
    assert config["Healthcheck"]["Test"] == ["CMD", "/opt/registry/bin/python", "-m", "registry.healthcheck"]
    assert config["Entrypoint"] == ["registry"] and config["Cmd"] == ["serve"]
    assert "REGISTRY_DATA_DIR=/data" in config["Env"]
    assert registry_image.size < 400 * 1024 ** 2, f"image is {registry_image.size / 1024 ** 2:.0f} MiB"


def test_the_image_has_the_s3_postgres_and_ldap_extras(registry_image: BuiltImage):
    """Users of the container expect S3, PostgreSQL and directory users; the runtime extra stays out (the
    Dockerfile says why)."""
    probe = ("import importlib.util as u; "
             "print(*(m for m in ('boto3', 'asyncpg', 'ldap3', 'pyroute2', 'zstandard') if u.find_spec(m)))")
    shown = run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "/opt/registry/bin/python",
                 registry_image.tag, "-c", probe]).stdout
    assert shown.split() == ["boto3", "asyncpg", "ldap3"]


def test_push_pull_and_data_survive_a_new_container(containers: Containers, session_id: str, tmp_path: Path):
    first = containers.start()
    status = run(["docker", "exec", first, "cat", "/proc/1/status"]).stdout
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids == [UID] * 4, f"PID 1 runs as {uids}"
    with httpx.Client(base_url=f"http://127.0.0.1:{containers.port}", timeout=30) as http:
        assert http.get("/readyz").json()["status"] == "ready"

    context = tmp_path / "app"
    context.mkdir()
    make_base_context(context, session_id)
    ref = f"127.0.0.1:{containers.port}/packaging/app-{session_id}:1"
    image = docker_build(context, ref, BASE_DOCKERFILE)
    try:
        run(["docker", "push", ref], timeout=120)
        run(["docker", "image", "rm", "--force", image.id])
        run(["docker", "pull", ref], timeout=120)
        assert _inspect("image", ref)["Id"] == image.id

        # A new container, same volume, read-only root filesystem (/tmp as tmpfs), as in deploy/k8s.
        containers.remove(first)
        second = containers.start("--read-only", "--tmpfs", "/tmp")
        run(["docker", "image", "rm", "--force", image.id])
        run(["docker", "pull", ref], timeout=120)
        assert _inspect("image", ref)["Id"] == image.id
        shown = run(["docker", "run", "--rm", "--network", "none", ref, "/bin/cat", "/etc/e2e-session"]).stdout
        assert shown.strip() == session_id
        assert _inspect("container", second)["State"]["Health"]["Status"] == "healthy"
        assert_container_log_clean(second)
    finally:
        run(["docker", "image", "rm", "--force", image.id], check=False)


def test_the_documented_bridge_address_command(dockerd: None):
    """docs/deployment.md's command for the address to allow prints the address these tests allow, on dockerd
    versions with and without an IPAM Gateway."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "deployment.md").read_text()
    command = next((line for line in page.splitlines() if line.startswith("ip -4 -o addr show")), None)
    assert command, "docs/deployment.md no longer shows the `ip -4 -o addr show` command"
    try:
        bridge = host.docker_bridge_address()
    except host.HostLacks as exc:
        pytest.skip(f"no default bridge here to read: {exc}")
    if bridge.source != "interface":
        pytest.skip(f"dockerd's bridge {bridge.interface} is not on this host (found only its IPAM Gateway)")
    shown = run(["sh", "-c", command]).stdout.split()
    assert "inet" in shown and shown[shown.index("inet") + 1].split("/")[0] == bridge.address, shown
