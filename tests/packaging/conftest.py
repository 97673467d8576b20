"""Fixtures for the packaging tests: the registry's Docker image, built here without Docker Hub.

The base is made from Debian's archive by scripts/debian-base-image (debootstrap + docker import)
and kept in the engine under a tag that hashes its recipe; the Python dependencies come from a
wheelhouse made on the host with pip (cached under /var/tmp by a hash of the dependency list), so
the build itself is offline and repeated runs reuse the engine's layer cache.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.conftest import dockerd, session_id  # noqa: F401  (fixtures: one dockerd helper for all)
from tests.support.images import run

ROOT = Path(__file__).resolve().parents[2]
BASE_SCRIPT = ROOT / "scripts" / "debian-base-image"
WHEELHOUSE_CACHE = Path("/var/tmp")
# What the Dockerfile copies: the build context holds these and nothing else.
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "registry")
ARTIFACTS = ROOT / "test-artifacts" / "packaging"


@dataclass
class BuiltImage:
    tag: str
    id: str
    size: int
    build_seconds: float
    base: str


@pytest.fixture(scope="session")
def base_image(dockerd: None) -> str:  # noqa: F811
    """The tag of a minimal Debian + Python image (built once per recipe, then reused)."""
    if shutil.which("debootstrap") is None and shutil.which("/usr/sbin/debootstrap") is None:
        pytest.fail("debootstrap not found; install it with: scripts/system-deps debootstrap (make system-deps)",
                    pytrace=False)
    proc = subprocess.run([str(BASE_SCRIPT)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"{BASE_SCRIPT.name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False)
    return proc.stdout.strip().splitlines()[-1]


def _dependencies() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return sorted(project["dependencies"]) + ["setuptools>=68"]  # setuptools: to build the package offline


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """Wheels of the runtime dependencies (and setuptools), made with the host's pip and its settings."""
    requirements = _dependencies()
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    target = WHEELHOUSE_CACHE / f"registry-wheelhouse-{key}"
    if (target / ".complete").exists():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    pip = ROOT / ".venv" / "bin" / "pip"
    result = run([pip, "wheel", "--quiet", "--wheel-dir", partial, *requirements], check=False, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"pip wheel for the image's dependencies failed (PyPI reachable?):\n{result.stderr[-3000:]}",
                    pytrace=False)
    (partial / ".complete").write_text("\n".join(requirements) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


@pytest.fixture(scope="session")
def registry_image(base_image: str, wheelhouse: Path, session_id: str,  # noqa: F811
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    """The repository's Dockerfile built FROM the Debian base, offline from the wheelhouse."""
    context = tmp_path_factory.mktemp("image-context")
    for name in CONTEXT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, context / name)
    shutil.copytree(wheelhouse, context / "wheelhouse")
    tag = f"registry-packaging-{session_id}:test"
    started = time.monotonic()
    run(["docker", "build", "--quiet", "--build-arg", f"BASE={base_image}", "--build-arg", "PIP_NO_INDEX=1",
         "--tag", tag, context], env={"DOCKER_BUILDKIT": "0"}, timeout=600)
    build_seconds = time.monotonic() - started
    info = json.loads(run(["docker", "image", "inspect", tag]).stdout)[0]
    image = BuiltImage(tag=tag, id=info["Id"], size=info["Size"], build_seconds=build_seconds, base=base_image)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "image.json").write_text(json.dumps(image.__dict__, indent=2) + "\n")
    try:
        yield image
    finally:
        # --no-prune: the untagged layers stay as the next build's cache.
        run(["docker", "image", "rm", "--force", "--no-prune", tag], check=False)
