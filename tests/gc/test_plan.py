"""The mark phase on hand-made graphs, on SQLite and PostgreSQL: roots, children, referrers, grace,
retention rules."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from registry.gc.plan import mark
from registry.gc.policy import PolicyError, RetentionPolicy, parse_quotas, parse_retention, parse_size, quota_for
from registry.metadata.db import Database, migrate
from tests.gc.graph import Graph, Marked, Node, Tag, mark_graph, write

NOW = 1_000_000_000.0
DAY = 86400.0


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    database = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}" if request.param == "sqlite" \
        else request.getfixturevalue("postgres_url")
    migrate(database)
    return database


def snapshot(manifests, tags=(), links=None, blobs=None, filling=()) -> Graph:
    if links is None:  # every referenced blob linked long ago in its repository
        links = {(m.repository_id, d): NOW - 10 * DAY for m in manifests for d in m.blobs}
    if blobs is None:
        blobs = {d: 100 for (_, d) in links} | {d: 100 for m in manifests for d in m.blobs}
    return Graph(list(manifests), list(tags), links, blobs, set(filling))


def node(id_, digest, blobs=(), children=(), subject=None, repo=1, age_days=30.0, pulled_days=None):
    return Node(id_, repo, digest, subject, 500, NOW - age_days * DAY,
                None if pulled_days is None else NOW - pulled_days * DAY, list(blobs), list(children))


def tag(name, manifest_id, age_days=30.0, repo=1):
    return Tag(repo, name, manifest_id, NOW - age_days * DAY)


def plan(url, snap, untagged_days=0.0, grace=3600.0, policies=(), collect=True) -> Marked:
    return mark_graph(url, snap, now=NOW, grace_seconds=grace, untagged_days=untagged_days, policies=list(policies),
                      collect=collect)


def test_tagged_images_keep_everything_they_reference(url):
    snap = snapshot([node(1, "m1", ["c1", "l1"]), node(2, "m2", ["c2", "l1"])], [tag("a", 1), tag("b", 2)])
    result = plan(url, snap)
    assert result.manifests == [] and result.blobs == {} and result.links == []


def test_untagged_manifest_goes_with_only_its_own_blobs(url):
    snap = snapshot([node(1, "m1", ["c1", "shared"]), node(2, "m2", ["c2", "shared"])], [tag("a", 1)])
    result = plan(url, snap)
    assert [m.id for m in result.manifests] == [2]
    assert result.blobs == {"c2": 100}
    assert result.freed_bytes == 100


def test_untagged_policy_keep_or_by_age(url):
    snap = snapshot([node(1, "m1", ["c1"], age_days=1), node(2, "m2", ["c2"], age_days=30)])
    assert plan(url, snap, untagged_days=None).manifests == []
    assert [m.id for m in plan(url, snap, untagged_days=7).manifests] == [2]


def test_index_children_and_referrers_of_kept_manifests_survive(url):
    snap = snapshot([node(1, "index", children=["child"]), node(2, "child", ["l1"]),
                     node(3, "signature", ["sig"], subject="child"), node(4, "orphan-sig", ["sig2"], subject="gone")],
                    [tag("latest", 1)])
    result = plan(url, snap)
    assert [m.id for m in result.manifests] == [4]
    assert result.blobs == {"sig2": 100}


def test_young_links_protect_blobs_of_a_push_in_flight(url):
    links = {(1, "fresh"): NOW - 60, (1, "old"): NOW - 2 * 3600}
    snap = snapshot([], links=links, blobs={"fresh": 10, "old": 20, "unlinked": 30})
    result = plan(url, snap, grace=3600)
    assert result.links == [(1, "old")]
    assert result.blobs == {"old": 20, "unlinked": 30}


def test_links_needed_by_another_repository_keep_the_blob(url):
    links = {(1, "l1"): NOW - DAY, (2, "l1"): NOW - DAY}
    snap = snapshot([node(1, "m1", ["l1"], repo=2)], [tag("a", 1, repo=2)], links=links)
    result = plan(url, snap)
    assert result.links == [(1, "l1")] and result.blobs == {}


def test_blobs_being_filled_by_a_mirror_stay(url):
    snap = snapshot([], links={}, blobs={"filling": 5}, filling=["filling"])
    assert plan(url, snap).blobs == {}


def test_retention_keep_last_and_patterns_and_pulls(url):
    manifests = [node(i, f"m{i}", [f"l{i}"], pulled_days=1 if i == 2 else None) for i in range(1, 7)]
    tags = [tag(f"v{i}", i, age_days=10 - i) for i in range(1, 6)] + [tag("release-1", 6, age_days=50)]
    policy = RetentionPolicy("team/*", keep_last=2, keep_tags="release-.*", keep_pulled_within_days=3)
    result = plan(url, snapshot(manifests, tags), untagged_days=None, policies=[policy])
    # newest two (v5, v4) kept by keep_last, v2 pulled yesterday, release-1 by pattern
    assert sorted(t.name for t in result.tags) == ["v1", "v3"]
    assert sorted(m.digest for m in result.manifests) == ["m1", "m3"]
    assert result.blobs == {"l1": 100, "l3": 100}
    retention_only = plan(url, snapshot(manifests, tags), untagged_days=None, policies=[policy], collect=False)
    assert sorted(t.name for t in retention_only.tags) == ["v1", "v3"]
    assert retention_only.blobs == {} and retention_only.links == []


def test_retention_older_than_days_and_policies_match_by_glob(url):
    manifests = [node(1, "m1"), node(2, "m2"), node(3, "m3", repo=2)]
    tags = [tag("old", 1, age_days=40), tag("new", 2, age_days=5), tag("old", 3, age_days=40, repo=2)]
    policy = RetentionPolicy("team/*", older_than_days=30)
    result = plan(url, snapshot(manifests, tags), untagged_days=None, policies=[policy])
    assert [(t.repository_id, t.name) for t in result.tags] == [(1, "old")]


def test_a_manifest_with_another_tag_left_stays(url):
    tags = [tag("old", 1, age_days=40), tag("stable", 1, age_days=1)]
    policy = RetentionPolicy("team/*", keep_last=1)
    result = plan(url, snapshot([node(1, "m1", ["l1"])], tags), untagged_days=None, policies=[policy])
    assert [t.name for t in result.tags] == ["old"] and result.manifests == []


def test_policy_and_quota_parsing():
    assert parse_retention([{"repositories": "a/*", "keep_last": "3"}])[0].keep_last == 3
    for bad in ([{"repositories": "a/*"}], [{"repositories": "a/*", "keep_last": 1, "typo": 1}], ["x"],
                [{"repositories": "a/*", "keep_last": 1, "keep_tags": "("}]):
        with pytest.raises(PolicyError):
            parse_retention(bad)
    assert parse_size("10GiB") == 10 * 1024 ** 3 and parse_size("500 MB") == 500 * 1000 ** 2 and parse_size(7) == 7
    with pytest.raises(PolicyError):
        parse_size("lots")
    quotas = parse_quotas([{"namespace": "team", "bytes": "1MiB"}, {"namespace": "team/big", "bytes": "1GiB"}])
    assert quota_for(quotas, "team/app").bytes == 1024 ** 2
    assert quota_for(quotas, "team/big/x").bytes == 1024 ** 3
    assert quota_for(quotas, "teamster/app") is None


def test_sweep_order_puts_indexes_before_children_and_subjects_before_referrers(url):
    snap = snapshot([node(1, "a-child", ["l1"]), node(2, "z-index", children=["a-child"]),
                     node(3, "b-signature", ["s1"], subject="y-image"), node(4, "y-image", ["l2"])])
    order = [m.digest for m in plan(url, snap).manifests]
    assert order.index("z-index") < order.index("a-child")
    assert order.index("y-image") < order.index("b-signature")


def test_a_run_that_fails_midway_leaves_nothing_behind(url):
    """The plan's TEMP tables go with the dedicated connection: the next run, on the same pool, starts clean."""
    async def main() -> None:
        db = Database(url, pool_size=1)
        try:
            await write(db, snapshot([node(1, "m1", ["l1"])]))
            for _ in range(2):
                with pytest.raises(RuntimeError):
                    async with mark(db, now=NOW, grace_seconds=0, untagged_days=0, policies=[]) as first:
                        assert [r.digest async for rows in first.pages("manifests") for r in rows] == ["m1"]
                        raise RuntimeError("the sweep failed")
            async with mark(db, now=NOW, grace_seconds=0, untagged_days=None, policies=[]) as second:
                assert [r async for r in second.pages("manifests")] == []
        finally:
            await db.close()

    asyncio.run(main())
