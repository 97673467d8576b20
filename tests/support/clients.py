"""Real client programs for the tests that drive them: finding one (a missing client is a failure that
names the package to install, never a skip), and skopeo with settings of its own, not the host's.

`skopeo` is a session fixture; a conftest or test module that wants it imports it
(`from tests.support.clients import skopeo  # noqa: F401`).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import pytest

from tests.support.images import run


def require_tool(tool: str, package: str) -> str:
    """The path of `tool` on PATH, or the test fails saying how to install it."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not found on PATH; install it with: apt-get install -y {package}", pytrace=False)
    return path


@dataclass
class Skopeo:
    """skopeo with a private policy (accept anything) and an empty registries.conf: the host's
    /etc/containers/policy.json and registries.conf (missing, restrictive, with mirrors) play no part."""
    base_args: list[str]

    def __call__(self, *args: object, check: bool = True, timeout: float = 120,
                 text: bool = True) -> subprocess.CompletedProcess:
        return run([*self.base_args, *args], check=check, timeout=timeout, text=text)


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    binary = require_tool("skopeo", "skopeo")
    root = tmp_path_factory.mktemp("skopeo")
    registries_conf = root / "registries.conf"
    registries_conf.write_text("")  # no mirrors, no short names: only what the test names
    policy = root / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
    tmp = root / "tmp"
    tmp.mkdir()
    return Skopeo([binary, "--policy", str(policy), "--registries-conf", str(registries_conf),
                   "--tmpdir", str(tmp)])
