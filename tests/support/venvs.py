"""A fresh venv holding only what a given project's requirements pull in, made from the distributions already
installed in this interpreter's site-packages (symlinked, so no network and about a second), and the project's
source tree on its path. What `pip install registry` or `pip install 'registry[s3]'` would give, with the
versions of this venv: a missing requirement shows as a missing module, as it would after a real install.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def requirements(project_root: Path, extras: tuple[str, ...] = ()) -> list[Requirement]:
    """The project's default dependencies plus those of `extras`, self-references (`registry[s3]`) expanded."""
    project = tomllib.loads((project_root / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    found = [Requirement(text) for text in project["dependencies"]]
    wanted, seen = list(extras), set()
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in optional[extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == canonicalize_name(project["name"]):
                wanted.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


def closure(roots: list[Requirement]) -> list[metadata.Distribution]:
    """The installed distributions these requirements need, transitively, markers evaluated as pip does."""
    chosen: dict[str, metadata.Distribution] = {}
    pending: list[tuple[Requirement, str]] = [(r, "") for r in roots]
    extras_done: set[tuple[str, str]] = set()
    while pending:
        requirement, for_extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": for_extra}):
            continue
        name = canonicalize_name(requirement.name)
        dist = chosen.get(name) or metadata.distribution(requirement.name)
        chosen[name] = dist
        for extra in ("", *requirement.extras):
            if (name, extra) in extras_done:
                continue
            extras_done.add((name, extra))
            pending.extend((Requirement(text), extra) for text in dist.requires or ())
    return list(chosen.values())


def _top_level_entries(dist: metadata.Distribution) -> set[str]:
    """The site-packages entries a distribution installed: its packages, modules and dist-info directory."""
    entries = set()
    for file in dist.files or ():
        first = file.parts[0]
        if first not in ("..", "__pycache__"):
            entries.add(first)
    return entries


def make(venv: Path, project_root: Path, extras: tuple[str, ...] = ()) -> Path:
    """A venv at `venv` with the project (at `project_root`) and its requirements for `extras`; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    for dist in closure(requirements(project_root, extras)):
        source_root = Path(str(dist.locate_file("")))
        for entry in _top_level_entries(dist):
            target = site / entry
            if not target.exists():
                target.symlink_to(source_root / entry)
    (site / "project.pth").write_text(f"{project_root}\n")
    return venv / "bin" / "python"


def importable(python: Path, *modules: str) -> list[str]:
    """Which of `modules` that interpreter can import (looked up, not imported)."""
    probe = f"import importlib.util as u; print(*(m for m in {modules!r} if u.find_spec(m)))"
    return subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True).stdout.split()
