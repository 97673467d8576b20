"""The admin side of the mirror with a real upstream (another registry process): statistics, pins,
pre-warm and eviction through the API, hit and miss counters in /metrics, the hit-rate history,
and the page's mirror view in Chromium."""

from __future__ import annotations

import json
import time
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from tests.admin.test_metrics import delta, scrape
from tests.api.helpers import ACCEPT_ALL_MANIFESTS, push_image
from tests.support.server import RegistryProcess


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    root = tmp_path_factory.mktemp("mirror")
    with RegistryProcess(root / "upstream") as upstream:
        with httpx.Client(base_url=upstream.url) as client:
            for tag in ("1", "2"):
                push_image(client, "lib/tool", tag, layers=2)
        env = {"REGISTRY_MIRROR_UPSTREAMS": json.dumps([{"alias": "up", "url": upstream.url}])}
        with RegistryProcess(root / "mirror", env=env) as server:
            yield server


def pull(client: httpx.Client, reference: str) -> None:
    manifest = client.get(f"/v2/up/lib/tool/manifests/{reference}", headers={"Accept": ACCEPT_ALL_MANIFESTS})
    assert manifest.status_code == 200, manifest.text
    document = manifest.json()
    for descriptor in [document["config"], *document["layers"]]:
        assert client.get(f"/v2/up/lib/tool/blobs/{descriptor['digest']}").status_code == 200
    deadline = time.monotonic() + 10  # let the fills commit
    while client.get("/admin/api/mirror").json()["fills_in_progress"] and time.monotonic() < deadline:
        time.sleep(0.02)


def test_hits_and_misses_reach_metrics_and_history(mirror: RegistryProcess):
    before = scrape(mirror.url)
    with httpx.Client(base_url=mirror.url, timeout=30) as client:
        pull(client, "1")  # cold: misses
        pull(client, "1")  # warm: hits
        stats = client.get("/admin/api/mirror").json()
        history = client.get("/admin/api/mirror/history").json()
    after = scrape(mirror.url)
    upstream = stats["upstreams"][0]
    assert upstream["alias"] == "up" and upstream["hits"] >= 3 and upstream["misses"] >= 3
    events = "registry_mirror_events_total"
    assert delta(before, after, events, upstream="up", event="hits") == upstream["hits"]
    assert delta(before, after, events, upstream="up", event="misses") == upstream["misses"]
    assert delta(before, after, "registry_mirror_bytes_total", upstream="up", direction="from_upstream") \
        == upstream["bytes_from_upstream"] > 0
    assert after[("registry_mirror_cache_bytes", ())] >= 0
    assert history["interval"] == 60 and len(history["samples"]) >= 2
    assert history["samples"][-1]["upstreams"]["up"]["hits"] == upstream["hits"]


def test_pins_prewarm_and_eviction(mirror: RegistryProcess):
    with httpx.Client(base_url=mirror.url, timeout=30) as client:
        assert client.post("/admin/api/mirror/pins", json={"image": "up/lib/tool:2"}).status_code == 201
        assert client.get("/admin/api/mirror/pins").json()["pins"] == ["up/lib/tool:2"]
        warmed = client.post("/admin/api/mirror/prewarm", json={"image": "up/lib/tool:2"})
        assert warmed.status_code == 200 and warmed.json()["manifests"] == 1, warmed.text
        assert client.post("/admin/api/mirror/evict").status_code == 200
        tags = client.get("/admin/api/repositories/up/lib/tool/tags").json()["tags"]
        assert {t["tag"] for t in tags} >= {"2"}
        unknown = client.post("/admin/api/mirror/pins", json={"image": "elsewhere/x:1"})
        assert unknown.status_code == 400 and unknown.json()["errors"][0]["code"] == "NAME_UNKNOWN"
        assert client.request("DELETE", "/admin/api/mirror/pins", json={"image": "up/lib/tool:2"}).status_code == 200
        missing = client.request("DELETE", "/admin/api/mirror/pins", json={"image": "up/lib/tool:2"})
        assert missing.status_code == 404


def test_mirror_view_in_the_page(chromium, mirror: RegistryProcess, artifacts: Path):
    with httpx.Client(base_url=mirror.url, timeout=30) as client:
        pull(client, "1")
    page = chromium.new_page()
    try:
        page.goto(f"{mirror.url}/admin/#/mirror")
        page.wait_for_function("() => document.body.dataset.ready === '#/mirror'")
        text = page.locator("main").inner_text()
        assert "up" in text and "Hit rate over time" in text
        page.screenshot(path=str(artifacts / "mirror.png"), full_page=True)
        page.goto(f"{mirror.url}/admin/#/")
        page.wait_for_function("() => document.body.dataset.ready === '#/'")
        page.locator("text=Mirror hit rate").wait_for()
    finally:
        page.close()
