"""The page's immutable-tag rules in headless Chromium: the configuration's rule shown read-only beside those
added through the page; a rule added there applies at once to pushes and, deleted after its confirmation,
stops applying; a refused rule says why; a repository's held tags are marked and cannot be deleted.

Screenshots go to test-artifacts/admin/.
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from tests.admin.conftest import watch_errors
from tests.admin.test_page import open_view
from tests.api.helpers import image_manifest, push_manifest, put_manifest
from tests.support.server import RegistryProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    env = {"REGISTRY_IMMUTABLE_TAGS": json.dumps([{"repositories": "prod/**", "tags": "v*"}])}
    with RegistryProcess(tmp_path_factory.mktemp("admin-immutable") / "data", env=env) as registry:
        yield registry


def test_rules_on_the_page(chromium, server: RegistryProcess, artifacts: Path):
    http = httpx.Client(base_url=server.url, timeout=60)
    page = chromium.new_page()
    errors = watch_errors(page)
    try:
        open_view(page, server, "#/immutable")
        rows = page.locator("#immutable-rules tbody tr")
        assert rows.count() == 1
        configured = page.locator('#immutable-rules tr[data-source="config"]')
        assert "prod/**" in configured.inner_text() and "read-only" in configured.inner_text()
        assert configured.locator("button").count() == 0

        page.fill("#immutable-repositories", "team/*")
        page.fill("#immutable-tags", "release-*")
        page.locator("#immutable-add button[type=submit]").click()
        added = page.locator('#immutable-rules tr[data-source="admin"]')
        added.wait_for()
        assert "team/*" in added.inner_text() and "release-*" in added.inner_text()
        page.screenshot(path=str(artifacts / "immutable-rules.png"), full_page=True)
        stored = [r for r in http.get("/admin/api/immutable-tags").json()["rules"] if r["source"] == "admin"]
        assert [(r["repositories"], r["tags"]) for r in stored] == [("team/*", "release-*")]

        first, _ = image_manifest(http, "team/app")
        second, _ = image_manifest(http, "team/app")
        push_manifest(http, "team/app", "release-1", first)
        refused = put_manifest(http, "team/app", "release-1", second)  # the page's rule applies at once
        assert refused.status_code == 403 and "release-*" in refused.json()["errors"][0]["message"]

        page.fill("#immutable-repositories", "prod**")  # refused, and the page says why
        page.fill("#immutable-tags", "v*")
        page.locator("#immutable-add button[type=submit]").click()
        page.locator("#toast.error").wait_for()
        assert "** inside a path segment" in page.locator("#toast").inner_text()

        added.locator("button.delete-rule").click()
        page.locator("dialog#confirm").wait_for(state="visible")
        page.locator("#confirm-ok").click()
        added.wait_for(state="detached")
        assert page.locator("#immutable-rules tbody tr").count() == 1
        push_manifest(http, "team/app", "release-1", second)  # deleted: it stops applying

        body, _ = image_manifest(http, "prod/web")
        push_manifest(http, "prod/web", "v1", body)
        push_manifest(http, "prod/web", "edge", body)
        open_view(page, server, "#/repo/prod%2Fweb")
        held, free = page.locator('#tags tr[data-tag="v1"]'), page.locator('#tags tr[data-tag="edge"]')
        assert held.locator(".tag.immutable").count() == 1
        assert "prod/**" in (held.locator(".tag.immutable").get_attribute("title") or "")
        assert held.locator("button.delete-tag").is_disabled()
        assert free.locator(".tag.immutable").count() == 0 and free.locator("button.delete-tag").is_enabled()
        page.screenshot(path=str(artifacts / "immutable-repository.png"), full_page=True)
        assert errors == []
    finally:
        page.close()
        http.close()
