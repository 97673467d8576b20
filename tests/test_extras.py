"""S3, PostgreSQL, LDAP and the runtime's networking and zstd layers are extras (pyproject.toml). A default install,
made here as a fresh venv holding only the default dependencies' distributions (tests/support/venvs.py; no
network, about a second), serves a push and a pull; configuring an extra it lacks ends the start-up in one
line that names the extra to install."""

from __future__ import annotations

import hashlib
import shlex
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import venvs
from tests.support.server import RegistryProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
EXTRA_MODULES = ("boto3", "botocore", "asyncpg", "pyroute2", "zstandard", "ldap3")


@pytest.fixture(scope="module")
def default_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a venv with `pip install registry`'s dependencies and nothing else."""
    return venvs.make(tmp_path_factory.mktemp("default-install") / "venv", ROOT)


def _registry(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-m", "registry", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env={"PATH": "/usr/bin:/bin"})


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_the_default_install_lacks_the_extras_and_all_brings_them(default_python: Path, tmp_path: Path):
    assert venvs.importable(default_python, *EXTRA_MODULES, "aiohttp", "sqlalchemy", "registry") == [
        "aiohttp", "sqlalchemy", "registry"]
    everything = venvs.make(tmp_path / "all", ROOT, extras=("all",))
    assert venvs.importable(everything, *EXTRA_MODULES) == list(EXTRA_MODULES)


def test_the_default_install_serves_a_push_and_a_pull(default_python: Path, tmp_path: Path):
    # RegistryProcess runs [*wrap, sys.executable, ...]: the wrapper swaps that interpreter for the venv's.
    wrap = ["/bin/sh", "-c", f'shift; exec {shlex.quote(str(default_python))} "$@"', "sh"]
    blob = b"a blob pushed to a registry installed without extras"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    with RegistryProcess(tmp_path / "data", env={"PYTHONPATH": ""}, wrap=wrap) as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            pushed = http.post(f"/v2/plain/blobs/uploads/?digest={digest}", content=blob)
            assert pushed.status_code == 201, pushed.text
            assert http.get(f"/v2/plain/blobs/{digest}").content == blob
        loaded = Path(f"/proc/{server.pid}/maps").read_text()
    assert not [m for m in EXTRA_MODULES if f"/{m}/" in loaded], "an extra's native module is mapped"


@pytest.mark.parametrize("args, expected", [
    (["--storage-backend", "s3", "--storage-s3-bucket", "blobs"],
     "storage.backend: s3 needs the s3 extra: pip install 'registry[s3]'"),
    (["--database-url", "postgresql+asyncpg://registry:s3cret@127.0.0.1:1/registry"],
     "database.url: postgresql+asyncpg needs the postgres extra: pip install 'registry[postgres]'"),
    (["--auth-mode", "basic", "--auth-ldap-url", "ldap://127.0.0.1:1", "--auth-ldap-base-dn", "dc=example,dc=org"],
     "auth.ldap.url needs the ldap extra: pip install 'registry[ldap]'"),
])
def test_a_configured_extra_that_is_missing_is_one_line(default_python: Path, tmp_path: Path, args: list[str],
                                                        expected: str):
    for command in (["serve", "--listen", f"127.0.0.1:{free_port()}"], ["db", "upgrade"]):
        result = _registry(default_python, *command, "--data-dir", str(tmp_path / "data"), *args, cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert _last_line(result) == f"registry: cannot start: {expected}"


def test_bridge_networking_without_the_runtime_extra_is_one_line(default_python: Path, tmp_path: Path):
    result = subprocess.run([str(default_python), "-m", "registry", "run", "--network", "bridge", "busybox", "true"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "REGISTRY_RUNTIME_ROOT": str(tmp_path / "runtime")})
    assert result.returncode == 125, result.stderr
    assert _last_line(result) == "registry: --network bridge needs the runtime extra: pip install 'registry[runtime]'"


def test_the_places_that_import_an_extra_say_which_one(default_python: Path, tmp_path: Path):
    """Behind settings.load's check: callers that build a store, a database or unpack a layer directly."""
    script = """if True:
        import io
        from registry.config import load
        from registry.metadata.db import Database
        from registry.runtime.unpack import decompressed
        from registry.storage import create_store
        attempts = [lambda: create_store(load(None, {"REGISTRY_STORAGE_BACKEND": "s3",
                                                     "REGISTRY_STORAGE_S3_BUCKET": "blobs"})),
                    lambda: Database("postgresql+asyncpg://registry:x@127.0.0.1:1/registry"),
                    lambda: decompressed(io.BytesIO(b"\\x28\\xb5\\x2f\\xfd" + bytes(8)))]
        for attempt in attempts:
            try:
                attempt()
            except Exception as exc:
                print(type(exc).__name__, exc)
        """
    result = subprocess.run([str(default_python), "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert result.stdout.splitlines() == [
        "StartupError storage.backend: s3 needs the s3 extra: pip install 'registry[s3]'",
        "StartupError database.url: postgresql+asyncpg needs the postgres extra: pip install 'registry[postgres]'",
        "LayerError a zstd-compressed layer needs the runtime extra: pip install 'registry[runtime]'",
    ], result.stderr
