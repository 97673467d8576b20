"""The page in headless Chromium: a real push (skopeo) shows up with its tags and sizes; a delete
through the page, confirmed in its dialog, removes the tag, and a pull of it then fails.

Screenshots of the main views go to test-artifacts/admin/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.admin.conftest import watch_errors
from tests.support.clients import Skopeo, skopeo  # noqa: F401  (skopeo: a fixture, with a private policy)
from tests.support.host import oci_arch
from tests.support.images import OciLayout, write_single_arch_layout
from tests.support.server import RegistryProcess

NO_TLS = ("--src-tls-verify=false", "--dest-tls-verify=false")


@pytest.fixture(scope="module")
def pushed(server: RegistryProcess, skopeo: Skopeo, tmp_path_factory: pytest.TempPathFactory) -> OciLayout:
    """team/web:v1 and team/web:other, pushed by skopeo from an OCI layout (two images, one shared layer)."""
    layout = write_single_arch_layout(tmp_path_factory.mktemp("layout") / "oci", "admin-page")
    for tag in ("v1", "other"):
        skopeo("copy", *NO_TLS, layout.ref(tag), f"docker://{server.host}/team/web:{tag}")
    return layout


def open_view(page: Any, server: RegistryProcess, fragment: str) -> None:
    page.goto(f"{server.url}/admin/{fragment}")
    page.wait_for_function("h => document.body.dataset.ready === h", arg=fragment)


def shown_bytes(n: float) -> str:
    """The page's rendering of a byte count (admin.js `bytes`)."""
    units = ["B", "KiB", "MiB", "GiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n} {units[i]}" if i == 0 else f"{n:.{2 if n < 10 else 1}f} {units[i]}"


def image_size(layout: OciLayout, tag: str) -> int:
    manifest = json.loads(layout.manifest(tag))
    return manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])


def test_push_shows_repository_tags_and_sizes(chromium, server, pushed, artifacts: Path):
    page = chromium.new_page()
    errors = watch_errors(page)  # a 404 from /admin/api/mirror (none configured) is fine
    try:
        open_view(page, server, "#/")
        assert page.locator("#card-repositories .value").inner_text() == "1"
        assert page.locator("#card-tags .value").inner_text() == "2"
        page.screenshot(path=str(artifacts / "overview.png"), full_page=True)

        open_view(page, server, "#/repositories")
        row = page.locator('#repositories tr[data-repository="team/web"]')
        assert row.count() == 1
        assert "team/web" in row.inner_text()
        page.screenshot(path=str(artifacts / "repositories.png"), full_page=True)

        row.locator("a").click()
        page.wait_for_function("() => document.body.dataset.ready.startsWith('#/repo/')")
        tags = page.locator("#tags tbody tr")
        assert sorted(tags.nth(i).get_attribute("data-tag") for i in range(tags.count())) == ["other", "v1"]
        v1 = page.locator('#tags tr[data-tag="v1"]')
        assert v1.locator(".pull-command").inner_text() == f"docker pull {server.host}/team/web:v1"
        assert f"linux/{oci_arch()}" in v1.inner_text()  # the layout is built for this host
        assert v1.locator(".size").inner_text() == shown_bytes(image_size(pushed, "v1"))
        assert "null" not in page.locator("main").inner_text()  # no stray text where a mirror's note would be
        page.screenshot(path=str(artifacts / "repository.png"), full_page=True)

        v1.locator("a.mono").click()
        page.wait_for_function("() => document.body.dataset.ready.startsWith('#/manifest/')")
        text = page.locator("main").inner_text()
        assert "e2e.tag=v1" in text  # the image config's labels
        assert "Layers (2" in text
        page.screenshot(path=str(artifacts / "manifest.png"), full_page=True)
        assert errors == []
    finally:
        page.close()


def test_delete_through_the_page_removes_the_tag_and_the_pull_fails(chromium, server, pushed, skopeo: Skopeo,
                                                                    artifacts: Path):
    page = chromium.new_page()
    try:
        open_view(page, server, "#/repo/team%2Fweb")
        row = page.locator('#tags tr[data-tag="other"]')
        # Cancel first: nothing may change.
        row.locator("button.delete-tag").click()
        dialog = page.locator("dialog#confirm")
        dialog.wait_for(state="visible")
        assert "team/web:other" in dialog.inner_text()
        page.screenshot(path=str(artifacts / "confirm-delete.png"))
        page.locator("#confirm-cancel").click()
        assert httpx.get(f"{server.url}/v2/team/web/manifests/other",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code == 200
        # Then confirm.
        row.locator("button.delete-tag").click()
        dialog.wait_for(state="visible")
        page.locator("#confirm-ok").click()
        page.locator('#tags tr[data-tag="other"]').wait_for(state="detached")
        assert page.locator('#tags tr[data-tag="v1"]').count() == 1
        page.screenshot(path=str(artifacts / "after-delete.png"), full_page=True)
    finally:
        page.close()
    failed = skopeo("inspect", "--tls-verify=false", f"docker://{server.host}/team/web:other", check=False)
    assert failed.returncode != 0 and "manifest unknown" in failed.stderr.lower(), failed.stderr
    skopeo("inspect", "--tls-verify=false", f"docker://{server.host}/team/web:v1")


def test_uploads_and_maintenance_views(chromium, server, artifacts: Path):
    with httpx.Client(base_url=server.url) as client:
        location = client.post("/v2/team/web/blobs/uploads/").headers["Location"]
        client.patch(location, content=b"x" * 5000, headers={"Content-Type": "application/octet-stream"})
        gc = client.options("/admin/api/gc").status_code != 404  # served once registry/gc is merged
    page = chromium.new_page()
    try:
        open_view(page, server, "#/uploads")
        row = page.locator("main tbody tr")
        assert row.count() == 1 and "team/web" in row.inner_text() and "4.88 KiB" in row.inner_text()
        page.screenshot(path=str(artifacts / "uploads.png"), full_page=True)
        row.locator("button").click()
        page.locator("#confirm-ok").click()
        page.locator("text=No uploads in progress.").wait_for()
        assert httpx.get(f"{server.url}{location}").status_code == 404

        open_view(page, server, "#/maintenance")
        if gc:
            page.locator("#gc-dry").click()
            page.locator("#maintenance-gc >> text=Dry run finished").wait_for()
        else:
            page.locator("text=This server has no maintenance endpoints.").wait_for()
        page.screenshot(path=str(artifacts / "maintenance.png"), full_page=True)
    finally:
        page.close()
