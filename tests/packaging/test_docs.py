"""The documentation: the README still opens with `make serve` and `make test`, links every page in
docs/, and no relative link in the docs or the deploy READMEs points at a missing file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").glob("*.md"))
LINKED_FROM = [ROOT / "README.md", *PAGES, *sorted((ROOT / "deploy").rglob("README.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    commands = [line.split("#")[0].strip() for line in lines[:6] if line.startswith("make ")]
    assert lines[2] == "```sh" and commands == ["make serve", "make test"], lines[:6]


def test_readme_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert PAGES
    for page in PAGES:
        assert f"(docs/{page.name})" in readme, page.name


@pytest.mark.parametrize("document", LINKED_FROM, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(document: Path):
    for target in LINK.findall(document.read_text()):
        if "://" in target or target.startswith("#"):
            continue
        path = (document.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{document.relative_to(ROOT)} links to missing {target}"


def test_readme_is_a_user_guide():
    """For people who use the registry: no design notes pointing outside the repository, no internal issue
    numbers, and a quick start that works as written (a `docker build .` in the checkout would build the
    registry's own Dockerfile)."""
    readme = (ROOT / "README.md").read_text()
    assert "../shared" not in readme
    assert not re.search(r"\bissue \d+", readme, re.IGNORECASE)
    assert "docker build -t 127.0.0.1:5000" not in readme
    assert len(readme.splitlines()) < 200, "details belong in docs/"


@pytest.mark.parametrize("document", [*PAGES, ROOT / "bench" / "README.md"],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_docs_are_written_for_this_repository(document: Path):
    text = document.read_text()
    assert "../shared" not in text and not re.search(r"\bissue \d+", text, re.IGNORECASE), document.name
