"""The mirror's tag list: the upstream's list fetched once per tag TTL and paged from memory
(registry/mirror/tag_lists.py), stale while the upstream fails, never a cached failure."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
import pytest

from registry.client import UpstreamError, UpstreamNotFound
from registry.client.client import UpstreamUnavailable
from registry.mirror.tag_lists import TagLists
from tests.support.mirror import AccessLog, push_image, small_image
from tests.support.server import RegistryProcess

TTL = 60.0
MAX_STALE = 600.0


class Upstream:
    """A fake fetch: counts its calls, answers `names` or raises `failure`."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.failure: UpstreamError | None = None
        self.calls = 0

    async def __call__(self) -> list[str]:
        self.calls += 1
        await asyncio.sleep(0)
        if self.failure is not None:
            raise self.failure
        return list(self.names)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lists(**kwargs: int) -> tuple[TagLists, Clock]:
    clock = Clock()
    return TagLists(clock=clock, **kwargs), clock


def test_one_fetch_per_ttl_and_pages_cut_from_it() -> None:
    lists, clock = _lists()
    upstream = Upstream(["v3", "v1", "latest", "v2", "v10"])

    async def scenario() -> None:
        first = await lists.get("up/app", TTL, MAX_STALE, upstream)
        assert first.page(None, None) == ["latest", "v1", "v10", "v2", "v3"]
        assert first.page(2, None) == ["latest", "v1"]
        assert first.page(2, "v1") == ["v10", "v2"]
        assert first.page(2, "v0") == ["v1", "v10"]  # `last` need not be a tag
        assert first.page(None, "v3") == [] and first.page(0, None) == []
        clock.now += TTL - 1
        again = await lists.get("up/app", TTL, MAX_STALE, upstream)
        assert again.page(None, "v10") == ["v2", "v3"]
        assert upstream.calls == 1
        upstream.names.append("v4")
        clock.now += 1
        assert (await lists.get("up/app", TTL, MAX_STALE, upstream)).page(1, "v3") == ["v4"]
        assert upstream.calls == 2

    asyncio.run(scenario())


def test_callers_at_once_share_one_fetch() -> None:
    lists, _ = _lists()
    upstream = Upstream([f"t{i}" for i in range(50)])

    async def scenario() -> None:
        got = await asyncio.gather(*(lists.get("up/app", TTL, MAX_STALE, upstream) for _ in range(20)))
        assert {len(g.names) for g in got} == {50}

    asyncio.run(scenario())
    assert upstream.calls == 1


def test_failures_are_not_kept_and_a_held_list_stands_in_within_max_stale() -> None:
    lists, clock = _lists()
    upstream = Upstream(["a", "b"])

    async def scenario() -> None:
        upstream.failure = UpstreamUnavailable("down")
        for _ in range(2):  # nothing held: the failure, each time asked again
            with pytest.raises(UpstreamUnavailable):
                await lists.get("up/app", TTL, MAX_STALE, upstream)
        assert upstream.calls == 2
        upstream.failure = None
        assert (await lists.get("up/app", TTL, MAX_STALE, upstream)).stale_because is None

        upstream.failure = UpstreamUnavailable("down")
        clock.now += TTL + MAX_STALE - 1
        stale = await lists.get("up/app", TTL, MAX_STALE, upstream)
        assert stale.names == ["a", "b"] and isinstance(stale.stale_because, UpstreamUnavailable)
        clock.now += 1
        with pytest.raises(UpstreamUnavailable):  # past max_stale: the failure
            await lists.get("up/app", TTL, MAX_STALE, upstream)

        upstream.failure = None  # the upstream is back: a fresh list, then not-found drops it
        assert (await lists.get("up/app", TTL, MAX_STALE, upstream)).stale_because is None
        clock.now += TTL
        upstream.failure = UpstreamNotFound(404, "gone")
        with pytest.raises(UpstreamNotFound):
            await lists.get("up/app", TTL, MAX_STALE, upstream)
        upstream.failure = UpstreamUnavailable("down")
        with pytest.raises(UpstreamUnavailable):
            await lists.get("up/app", TTL, MAX_STALE, upstream)

    asyncio.run(scenario())


def test_bounded_by_repositories_and_by_names_least_recent_first() -> None:
    lists, _ = _lists(max_lists=3, max_names=10)
    upstream = Upstream(["x", "y"])

    async def scenario() -> None:
        for name in ("a", "b", "c"):
            await lists.get(name, TTL, MAX_STALE, upstream)
        await lists.get("a", TTL, MAX_STALE, upstream)  # a is now the most recent
        await lists.get("d", TTL, MAX_STALE, upstream)  # b goes
        assert upstream.calls == 4
        for name in ("a", "c", "d"):
            await lists.get(name, TTL, MAX_STALE, upstream)
        assert upstream.calls == 4
        await lists.get("b", TTL, MAX_STALE, upstream)
        assert upstream.calls == 5

        upstream.names = [f"n{i}" for i in range(7)]
        await lists.get("big", TTL, MAX_STALE, upstream)  # 7 names: the rest must shrink to 3
        assert sum(len(held.names) for held in lists._lists.values()) <= 10
        upstream.names = [f"n{i}" for i in range(11)]  # larger than the whole budget: served, not kept
        for _ in range(2):
            assert len((await lists.get("huge", TTL, MAX_STALE, upstream)).names) == 11
        assert "huge" not in lists._lists

    asyncio.run(scenario())


# -- over HTTP: a real upstream, counted in its access log -----------------------------------

def _pages(client: httpx.Client, url: str) -> list[str]:
    """Every tag, following the Link header."""
    names: list[str] = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.text
        names += response.json()["tags"]
        link = response.headers.get("Link", "")
        url = link[1:link.index(">")] if link else ""
    return names


def test_mirror_lists_fetch_upstream_once_per_ttl_and_serve_stale_when_it_is_down(tmp_path: Path) -> None:
    ttl = 3.0
    repo = f"tags/{uuid.uuid4().hex[:8]}"
    tags = [f"v{i}" for i in range(7)]
    upstream = RegistryProcess(tmp_path / "upstream").start()
    try:
        image = small_image(f"tags {repo}")
        for tag in tags:
            push_image(upstream.url, repo, tag, image)
        env = {"REGISTRY_MIRROR_UPSTREAMS": json.dumps([{"alias": "up", "url": upstream.url, "tag_ttl": ttl}]),
               "REGISTRY_MIRROR_MAX_STALE": "600"}
        with RegistryProcess(tmp_path / "mirror", env=env) as mirror, httpx.Client(base_url=mirror.url,
                                                                                  timeout=30) as client:
            access = AccessLog(upstream.log_path)
            listed = f"/v2/{repo}/tags/list"

            def upstream_lists(mark: int) -> list[str]:
                return [str(a) for a in AccessLog.matching(access.since(mark), path=listed)]

            mark = access.mark(settle=0)
            whole = client.get(f"/v2/up/{repo}/tags/list")
            assert whole.json() == {"name": f"up/{repo}", "tags": sorted(tags)}
            assert _pages(client, f"/v2/up/{repo}/tags/list?n=3") == sorted(tags)
            assert client.get(f"/v2/up/{repo}/tags/list", params={"n": 2, "last": "v4"}).json()["tags"] == ["v5", "v6"]
            assert len(upstream_lists(mark)) == 1, "within the TTL the upstream's list is fetched once"

            push_image(upstream.url, repo, "v7", image)
            mark = access.mark(settle=ttl)
            assert _pages(client, f"/v2/up/{repo}/tags/list?n=5") == sorted([*tags, "v7"])
            assert len(upstream_lists(mark)) == 1, "after the TTL the list is fetched again, once"

            upstream.stop()
            mark = access.mark(settle=ttl)
            assert _pages(client, f"/v2/up/{repo}/tags/list?n=4") == sorted([*tags, "v7"])  # stale
            assert not upstream_lists(mark)
            stats = client.get("/admin/api/mirror").json()["upstreams"][0]
            assert stats["stale_serves"] >= 1 and stats["upstream_errors"] >= 1
    finally:
        upstream.stop()
