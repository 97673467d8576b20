"""Pulling from a registry with token authentication: the runtime's pull goes through registry.client's token
dance with the credentials `docker login` would have saved; without them it is refused."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path
from collections.abc import Iterator

import pytest

from tests.auth.conftest import AuthRegistry, write_htpasswd
from tests.runtime import images as im
from tests.runtime.conftest import REPO, Runtime


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    root = tmp_path_factory.mktemp("runtime-auth")
    htpasswd = write_htpasswd(root / "htpasswd", {"puller": "s3cret-pull"})
    with AuthRegistry(root / "data", args=["--auth-mode", "token", "--auth-htpasswd", str(htpasswd)]) as server:
        yield server


def pull(runtime: Runtime, reference: str, docker_config: Path) -> subprocess.CompletedProcess:
    env = {**runtime.env, "DOCKER_CONFIG": str(docker_config)}
    return subprocess.run([sys.executable, "-m", "registry", "pull", reference], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_pull_with_saved_credentials(runtime: Runtime, auth_registry: AuthRegistry, tmp_path: Path) -> None:
    import httpx

    name = f"rt-{uuid.uuid4().hex[:8]}/private"
    with httpx.Client(base_url=auth_registry.url, timeout=30) as http:
        token = http.get("/auth/token", params={"service": "registry", "scope": f"repository:{name}:pull,push"},
                         auth=("puller", "s3cret-pull")).json()["token"]
    image = im.push(auth_registry.url, name, "v1", [im.layer(im.busybox_entries())], {"Cmd": ["true"]},
                    headers={"Authorization": f"Bearer {token}"})
    anonymous = tmp_path / "anonymous"
    anonymous.mkdir()
    refused = pull(runtime, image.reference, anonymous)
    assert refused.returncode != 0 and ("401" in refused.stderr or "403" in refused.stderr), refused.stderr
    logged_in = tmp_path / "logged-in"
    logged_in.mkdir()
    auth = base64.b64encode(b"puller:s3cret-pull").decode()
    (logged_in / "config.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": auth}}}))
    result = pull(runtime, image.reference, logged_in)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(image.digest)
    assert runtime.cli("run", "--rm", "--pull", "never", image.reference).returncode == 0
