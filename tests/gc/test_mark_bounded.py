"""Garbage collection holds at most a page of rows at a time, whatever the registry's size.

Every connection the run is handed counts the rows each of its statements returns; a dry run and a real
run over a graph hundreds of times the page size (retention with keep_tags, untagged manifests, indexes,
referrers, stale links, orphan blobs) never see more than a page from one statement, and still report
what the rules, written plainly in Python (tests/gc/graph.py `reference`), say they must. Counting rows,
not bytes or seconds: the bound does not depend on the machine."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from pathlib import Path
from typing import Any
from collections.abc import AsyncIterator

import pytest

from registry.gc import jobs
from registry.gc.jobs import Maintenance, Settings
from registry.gc.policy import RetentionPolicy
from registry.metadata.db import Database, migrate
from registry.storage.filesystem import FilesystemStore
from tests.gc.graph import Graph, Node, Tag, reference, write

PAGE = 7
DAY = 86400.0
POLICY = RetentionPolicy("team*", keep_last=2, keep_tags="keep-.*")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    database = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}" if request.param == "sqlite" \
        else request.getfixturevalue("postgres_url")
    migrate(database)
    return database


class _Counted:
    """A connection whose statements' rows are counted (buffered, then handed on as a fresh result)."""

    def __init__(self, conn: Any, db: CountingDatabase) -> None:
        self._conn = conn
        self._db = db

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        result = await self._conn.execute(statement, parameters)
        if not getattr(result, "returns_rows", True):  # the dedicated SQLite connection hands back rows only
            return result
        frozen = result.freeze()
        self._db.most = max(self._db.most, len(frozen.data))
        return frozen()

    def __getattr__(self, name: str) -> Any:  # commit, snapshot
        return getattr(self._conn, name)


class CountingDatabase(Database):
    most = 0  # the most rows one statement returned

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Any]:
        async with super().read() as conn:
            yield _Counted(conn, self)

    @contextlib.asynccontextmanager
    async def write(self, durable: bool = True) -> AsyncIterator[Any]:
        async with super().write(durable) as conn:
            yield _Counted(conn, self)

    @contextlib.asynccontextmanager
    async def dedicated(self) -> AsyncIterator[Any]:
        async with super().dedicated() as conn:
            yield _Counted(conn, self)


def d(name: str) -> str:
    """A well-formed digest (the sweep parses them to delete bytes)."""
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def big_graph(now: float) -> Graph:
    """60 repositories (40 under the policy) of 8 images each: tags v0..v4 and keep-me, two untagged
    images, an untagged index of both in every tenth repository, a signature of a kept image and one of a
    doomed image; every layer linked long ago, plus an orphan link and a blob no one links."""
    rng = random.Random(7)
    old = now - 30 * DAY
    repositories = {r: f"team{r}/app" if r <= 40 else f"other{r}/app" for r in range(1, 61)}
    manifests: list[Node] = []
    tags: list[Tag] = []
    links: dict[tuple[int, str], float] = {}
    blobs: dict[str, int] = {d("base"): 1000}
    for r in repositories:
        first = len(manifests) + 1
        for i in range(8):
            own = [d(f"r{r}m{i}c"), d(f"r{r}m{i}l")]
            manifests.append(Node(first + i, r, d(f"r{r}m{i}"), None, 500, old, None, own + [d("base")]))
            blobs.update({d: rng.randrange(1, 10_000) for d in own})
            links.update({(r, d): old for d in own + [d("base")]})
        tags += [Tag(r, f"v{i}", first + i, old + i) for i in range(5)] + [Tag(r, "keep-me", first, old - 1)]
        extra = [Node(first + 8, r, d(f"r{r}sig-kept"), d(f"r{r}m4"), 50, old, None),
                 Node(first + 9, r, d(f"r{r}sig-gone"), d(f"r{r}m6"), 50, old, None)]
        if r % 10 == 0:
            extra.append(Node(first + 10, r, d(f"r{r}index"), None, 80, old, None, [],
                              [d(f"r{r}m6"), d(f"r{r}m7")]))
        manifests += extra
        blobs[d(f"r{r}orphan")] = 77
        links[(r, d(f"r{r}orphan"))] = old
    blobs[d("unlinked")] = 5
    return Graph(manifests, tags, links, blobs, set(), repositories)


def test_gc_holds_at_most_a_page_of_rows(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(jobs, "MAX_ITEMS", 5)  # the report's items are bounded too

    async def main() -> None:
        db = CountingDatabase(url)
        store = FilesystemStore(tmp_path / "store")
        settings = Settings(grace_seconds=3600.0, untagged_days=1.0, batch_size=PAGE, policies=(POLICY,))
        try:
            now = time.time()
            graph = big_graph(now)
            await write(db, graph)
            want = reference(graph, now, 3600.0, 1.0, [POLICY], collect=True)
            expected = {"tags": len(want["tags"]), "manifests": len(want["manifests"]), "links": len(want["links"]),
                        "blobs": len(want["blobs"]), "uploads": 0, "orphans": 0}
            assert min(v for v in expected.values() if v) > 10 * PAGE  # many pages of each kind

            maintenance = Maintenance(db, store, settings)
            db.most = 0
            dry = await maintenance.gc(dry_run=True)
            assert dry["deleted"] == expected and dry["freed_bytes"] == sum(want["blobs"].values())
            assert len(dry["items"]) == 5 and dry["items_truncated"]
            assert 0 < db.most <= PAGE, f"a statement of the dry run returned {db.most} rows"

            db.most = 0
            real = await maintenance.gc()
            assert real["deleted"] == expected and real["freed_bytes"] == dry["freed_bytes"]
            assert real["items"] == dry["items"]
            assert 0 < db.most <= PAGE, f"a statement of the real run returned {db.most} rows"
            assert (await maintenance.gc(dry_run=True))["deleted"] == dict.fromkeys(expected, 0)
        finally:
            await db.close()

    asyncio.run(main())
