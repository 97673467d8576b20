"""Fixtures for the admin tests: a registry of their own, an admin HTTP client, headless Chromium.

The browser is Debian's chromium (`make test` installs it through `make system-deps`), driven by
Playwright with `executable_path`: no browser download, no network. A missing chromium is a
failure that says how to get it, never a skip.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import RegistryProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "admin"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """One registry per test module (SQLite + filesystem), so totals and counts start from zero."""
    with RegistryProcess(tmp_path_factory.mktemp("admin") / "data") as registry:
        yield registry


@pytest.fixture
def admin(server: RegistryProcess) -> Iterator[httpx.Client]:
    """A client the registry treats as an admin: with auth mode none, loopback may push and so administer."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")  # its event loop must not outlive the module (asyncio.run elsewhere)
def playwright() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} not found; install it with: apt-get install -y chromium (or make system-deps)",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


def open_chromium(playwright: Any, profile: Path, **options: Any) -> Any:
    """Headless Debian chromium with a fresh profile directory (a persistent context owns it)."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
        viewport={"width": 1280, "height": 900}, **options)


@pytest.fixture(scope="module")
def chromium(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    context = open_chromium(playwright, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield context
    finally:
        context.close()


def watch_errors(page: Any) -> list[str]:
    """The page's script errors and the server errors (5xx) of its requests, as they happen: a test
    asserts the list is empty at the end. A 4xx is an answer the page shows, not an error here."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 500 else None)
    return errors
