"""TLS trust for registry.client: a private CA is trusted where the user put it, and nowhere else.

The server is the registry itself serving HTTPS with its generated development CA; `registry pull`
looks for that CA where docker and podman do (certs.d/HOST:PORT/*.crt).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from collections.abc import Iterator

import pytest

from registry.client.client import RegistryClient, UpstreamUnavailable, trust_context
from registry.runtime.pull import registry_cas
from tests.support.process import terminate, wait_until_answers
from tests.support.server import free_port


@pytest.fixture(scope="module")
def https_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("tls")
    port = free_port()
    log = open(root / "registry.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "registry", "serve", "--listen", f"127.0.0.1:{port}",
                             "--data-dir", str(root / "data"), "--tls-self-signed"], stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()
    ca = root / "data" / "tls" / "ca.crt"
    wait_until_answers(proc, f"https://127.0.0.1:{port}/v2/", lambda status: status == 200, 30, "registry",
                       lambda: (root / "registry.log").read_text(), lambda: terminate(proc), verify=False)
    try:
        yield f"127.0.0.1:{port}", ca
    finally:
        terminate(proc)
        assert "Traceback" not in (root / "registry.log").read_text(errors="replace")


def ping(url: str, tls) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        async with RegistryClient(url, retries=0, tls=tls) as client:
            await client.ping()
    asyncio.run(go())


def test_private_ca_is_trusted_only_when_given(https_registry: tuple[str, Path]) -> None:
    host, ca = https_registry
    with pytest.raises(UpstreamUnavailable, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        ping(f"https://{host}", None)
    ping(f"https://{host}", trust_context([ca]))


def test_registry_pull_finds_the_ca_where_docker_and_podman_look(tmp_path: Path,
                                                                 https_registry: tuple[str, Path]) -> None:
    host, ca = https_registry
    docker_dir, containers_dir = tmp_path / "docker-certs.d", tmp_path / "containers-certs.d"
    assert registry_cas(host, (docker_dir, containers_dir)) == []
    (docker_dir / host).mkdir(parents=True)
    shutil.copy(ca, docker_dir / host / "ca.crt")
    (containers_dir / host).mkdir(parents=True)
    shutil.copy(ca, containers_dir / host / "registry.crt")
    (containers_dir / host / "client.key").write_text("not a CA\n")  # client keys sit there too: ignored
    found = registry_cas(host, (docker_dir, containers_dir))
    assert found == [docker_dir / host / "ca.crt", containers_dir / host / "registry.crt"]
    ping(f"https://{host}", trust_context(found))
