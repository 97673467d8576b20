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


IMAGE_EXTRAS = ("s3", "postgres", "ldap")  # what the Dockerfile installs beside the default dependencies


def _dependencies() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for name in IMAGE_EXTRAS for r in project["optional-dependencies"][name]]
    return sorted(project["dependencies"] + extras) + ["setuptools>=68"]  # setuptools: to build offline


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


# Stable tags: the image and its build stage stay in the engine as the next run's layer cache.
# After a rebuild the previous ones are removed, so changed code does not pile up dangling images.
IMAGE_TAG = "registry-packaging:test"
BUILD_STAGE_TAG = "registry-packaging:build-stage"


def _image_id(ref: str) -> str | None:
    result = run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def _build(context: Path, base: str, tag: str, *extra: str) -> None:
    """Build `tag`; drop the image it replaced (its layers shared with the new one stay)."""
    previous = _image_id(tag)
    run(["docker", "build", "--quiet", "--build-arg", f"BASE={base}", "--build-arg", "PIP_NO_INDEX=1",
         "--tag", tag, *extra, context], env={"DOCKER_BUILDKIT": "0"}, timeout=600)
    if previous is not None and previous != _image_id(tag):
        run(["docker", "image", "rm", previous], check=False)  # fails harmlessly if a container uses it


@pytest.fixture(scope="session")
def registry_image(base_image: str, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """The repository's Dockerfile built FROM the Debian base, offline from the wheelhouse."""
    context = tmp_path_factory.mktemp("image-context")
    for name in CONTEXT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, context / name)
    shutil.copytree(wheelhouse, context / "wheelhouse")
    started = time.monotonic()
    _build(context, base_image, BUILD_STAGE_TAG, "--target", "build")
    _build(context, base_image, IMAGE_TAG)  # the build stage comes from the cache
    build_seconds = time.monotonic() - started
    info = json.loads(run(["docker", "image", "inspect", IMAGE_TAG]).stdout)[0]
    image = BuiltImage(tag=IMAGE_TAG, id=info["Id"], size=info["Size"], build_seconds=build_seconds,
                       base=base_image)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "image.json").write_text(json.dumps(image.__dict__, indent=2) + "\n")
    return image
