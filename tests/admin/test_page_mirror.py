"""The page in headless Chromium, on a mirror: "Run eviction now" asks first (cancel evicts nothing), is
disabled when no cap is set, mirror caches are marked as such, and every view fits a 390 px-wide phone
screen without sideways scrolling (wide tables scroll inside themselves)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from tests.admin.test_page import open_view
from tests.api.helpers import OCI_MANIFEST, push_image
from tests.support.server import RegistryProcess

CAP = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def mirror_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryProcess, str, list[str]]]:
    """A mirror with a cache cap (upstream alias `up`) holding one pulled image, and a local repository."""
    root = tmp_path_factory.mktemp("page-mirror")
    with RegistryProcess(root / "upstream") as upstream:
        repo = f"tools/{uuid.uuid4().hex[:6]}"
        with httpx.Client(base_url=upstream.url, timeout=30) as client:
            pushed = push_image(client, repo, "1")
        env = {"REGISTRY_MIRROR_UPSTREAMS": json.dumps([{"alias": "up", "url": upstream.url}]),
               "REGISTRY_MIRROR_CACHE_BYTES": str(CAP)}
        with RegistryProcess(root / "mirror", env=env) as mirror, httpx.Client(base_url=mirror.url,
                                                                                timeout=30) as client:
            cached = f"up/{repo}"
            assert client.get(f"/v2/{cached}/manifests/1", headers={"Accept": OCI_MANIFEST}).status_code == 200
            for digest in pushed.blobs:
                assert client.get(f"/v2/{cached}/blobs/{digest}").status_code == 200
            push_image(client, "team/web", "v1")
            yield mirror, cached, pushed.blobs


def _stored(mirror: RegistryProcess, blobs: list[str]) -> bool:
    return set(blobs) <= set(mirror.storage.blob_digests())


def test_run_eviction_now_asks_first(chromium: Any, mirror_site: tuple[RegistryProcess, str, list[str]],
                                     artifacts: Path) -> None:
    mirror, cached, blobs = mirror_site
    page = chromium.new_page()
    try:
        open_view(page, mirror, "#/mirror")
        button = page.locator("button", has_text="Run eviction now")
        assert button.is_enabled()
        button.click()
        dialog = page.locator("#confirm")
        dialog.wait_for(state="visible")
        assert "Run an eviction pass now?" in page.locator("#confirm-title").inner_text()
        assert "pull of each goes upstream again" in page.locator("#confirm-text").inner_text()
        page.screenshot(path=str(artifacts / "mirror-evict-confirm.png"), full_page=True)
        page.locator("#confirm-cancel").click()
        dialog.wait_for(state="hidden")
        assert _stored(mirror, blobs), "cancelled: nothing may be evicted"

        button.click()
        page.locator("#confirm-ok").click()
        page.locator("#toast", has_text="Eviction:").wait_for()
        assert _stored(mirror, blobs), "under the cap: an eviction pass keeps everything"
    finally:
        page.close()


def test_mirror_caches_are_marked(chromium: Any, mirror_site: tuple[RegistryProcess, str, list[str]]) -> None:
    mirror, cached, _ = mirror_site
    page = chromium.new_page()
    try:
        open_view(page, mirror, "#/repositories")
        row = page.locator(f"tr[data-repository='{cached}']")
        assert "mirror of up" in row.inner_text()
        assert "mirror of" not in page.locator("tr[data-repository='team/web']").inner_text()
        open_view(page, mirror, f"#/repo/{quote(cached, safe='')}")
        assert "pull-through cache of upstream up" in page.locator("main").inner_text()
    finally:
        page.close()


def test_without_a_cap_the_eviction_button_is_disabled(chromium: Any, tmp_path: Path) -> None:
    env = {"REGISTRY_MIRROR_UPSTREAMS": json.dumps([{"alias": "up", "url": "http://127.0.0.1:9"}])}
    with RegistryProcess(tmp_path / "data", env=env) as mirror:
        page = chromium.new_page()
        try:
            open_view(page, mirror, "#/mirror")
            assert page.locator("button", has_text="Run eviction now").is_disabled()
        finally:
            page.close()


def test_every_view_fits_a_phone_screen(chromium: Any, mirror_site: tuple[RegistryProcess, str, list[str]],
                                        artifacts: Path) -> None:
    mirror, cached, _ = mirror_site
    with httpx.Client(base_url=mirror.url) as client:
        digest = client.head("/v2/team/web/manifests/v1", headers={"Accept": OCI_MANIFEST}).headers[
            "Docker-Content-Digest"]
    views = ["#/", "#/repositories", f"#/repo/{quote(cached, safe='')}", "#/repo/team%2Fweb",
             f"#/manifest/team%2Fweb/{quote(digest, safe='')}", "#/uploads", "#/mirror", "#/maintenance"]
    page = chromium.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        for view in views:
            open_view(page, mirror, view)
            width = page.evaluate("document.documentElement.scrollWidth")
            name = view.strip("#/").split("/")[0] or "overview"
            page.screenshot(path=str(artifacts / f"phone-{name}.png"), full_page=True)
            assert width <= 390, f"{view}: the page is {width} px wide on a 390 px screen"
    finally:
        page.close()
