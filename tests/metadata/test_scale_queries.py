"""The listing queries rewritten for size (issue "a million tags"), on SQLite and PostgreSQL: the admin
repository page's figures, the pinned blobs of the mirror cache (the same set, in a bounded number of
statements), the tags page and the eviction order give what they gave before."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, insert

from registry.metadata import inventory, mirror_cache, tags as tag_rows
from registry.metadata.db import Database
from registry.metadata.schema import (blobs, manifest_references, manifests, mirror_pins, repositories,
                                      repository_blobs, tags)



@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements run through `db` inside the block."""
    engine = db._sqlite if db.is_sqlite else db.engine.sync_engine
    seen: list[str] = []

    def record(_conn, _cursor, statement, _parameters, _context, _many) -> None:
        seen.append(statement)
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def digest(label: str) -> str:
    return "sha256:" + label.encode().hex().ljust(64, "0")[:64]


async def _seed(db: Database, rows: dict) -> None:
    async with db.write() as conn:
        for table in (repositories, blobs, repository_blobs, manifests, manifest_references, tags, mirror_pins):
            if rows.get(table.name):
                await conn.execute(insert(table), rows[table.name])


def test_the_repository_page_counts_sizes_unique_sizes_and_times(database_url: str) -> None:
    """app links a shared blob (100 bytes, also in lib) and its own (20); lib links the shared one and
    its own (3); empty has nothing. Last push is the later of tag updates and manifest creations."""
    async def scenario() -> None:
        db = Database(database_url)
        try:
            await _seed(db, {
                "repositories": [{"id": 1, "name": "team/app", "created_at": 1.0},
                                 {"id": 2, "name": "team/empty", "created_at": 2.0},
                                 {"id": 3, "name": "team/lib", "created_at": 3.0}],
                "blobs": [{"digest": digest(d), "size": size, "created_at": 1.0}
                          for d, size in (("shared", 100), ("app", 20), ("lib", 3))],
                "repository_blobs": [{"repository_id": r, "digest": digest(d), "created_at": 1.0}
                                     for r, d in ((1, "shared"), (1, "app"), (3, "shared"), (3, "lib"))],
                "manifests": [{"id": 1, "repository_id": 1, "digest": digest("m1"), "media_type": "x", "payload": b"{}",
                               "size": 2, "created_at": 50.0, "last_pulled_at": 70.0},
                              {"id": 2, "repository_id": 1, "digest": digest("m2"), "media_type": "x", "payload": b"{}",
                               "size": 2, "created_at": 40.0, "last_pulled_at": None},
                              {"id": 3, "repository_id": 3, "digest": digest("m3"), "media_type": "x", "payload": b"{}",
                               "size": 2, "created_at": 90.0, "last_pulled_at": None}],
                "tags": [{"repository_id": 1, "name": "a", "manifest_id": 1, "updated_at": 60.0},
                         {"repository_id": 1, "name": "b", "manifest_id": 2, "updated_at": 55.0},
                         {"repository_id": 3, "name": "v1", "manifest_id": 3, "updated_at": 80.0}],
            })
            async with db.read() as conn:
                page = await inventory.repository_page(conn, None, 10, None)
                assert [(r.name, r.created_at, r.tag_count, r.manifest_count, r.size, r.unique_size, r.last_push,
                         r.last_pull) for r in page] == [
                    ("team/app", 1.0, 2, 2, 120, 20, 60.0, 70.0),
                    ("team/empty", 2.0, 0, 0, 0, 0, None, None),
                    ("team/lib", 3.0, 1, 1, 103, 3, 90.0, None),
                ]
                assert [r.name for r in await inventory.repository_page(conn, "LIB", 10, None)] == ["team/lib"]
                assert [r.name for r in await inventory.repository_page(conn, None, 1, "team/app")] == ["team/empty"]
                lib = await inventory.repository_stats(conn, "team/lib")
                assert lib is not None and (lib.size, lib.unique_size) == (103, 3)
                assert await inventory.repository_stats(conn, "team/none") is None
        finally:
            await db.close()
    asyncio.run(scenario())


def test_pinned_blobs_follow_tags_digests_and_nested_indexes_in_few_statements(database_url: str) -> None:
    """hub/a: `latest` names an index of an index of 600 images (more than one IN list), each with a
    blob of its own; `sha256:...solo` pins an image by digest. An index child is looked up in its
    parent's repository only: hub/b holds the digest a child of hub/a's index names, and its blob is
    not pinned. Pins of an unknown repository or tag pin nothing; an index listing itself ends."""
    async def scenario() -> None:
        db = Database(database_url)
        images = 600
        manifest_rows, reference_rows = [], []

        def manifest(number: int, repository_id: int, label: str) -> int:
            manifest_rows.append({"id": number, "repository_id": repository_id, "digest": digest(label),
                                  "media_type": "x", "payload": b"{}", "size": 2, "created_at": 1.0})
            return number

        top, middle, solo, elsewhere = manifest(1, 1, "top"), manifest(2, 1, "middle"), manifest(3, 1, "solo"), \
            manifest(4, 2, "orphan")
        reference_rows += [{"manifest_id": top, "digest": digest("middle"), "kind": "manifest"},
                           {"manifest_id": top, "digest": digest("top"), "kind": "manifest"},  # itself
                           {"manifest_id": top, "digest": digest("orphan"), "kind": "manifest"},  # not in hub/a
                           {"manifest_id": solo, "digest": digest("solo-blob"), "kind": "blob"},
                           {"manifest_id": elsewhere, "digest": digest("orphan-blob"), "kind": "blob"}]
        for image in range(images):
            number = manifest(10 + image, 1, f"image{image}")
            reference_rows += [{"manifest_id": middle, "digest": digest(f"image{image}"), "kind": "manifest"},
                               {"manifest_id": number, "digest": digest(f"layer{image}"), "kind": "blob"},
                               {"manifest_id": number, "digest": digest("base"), "kind": "blob"}]
        try:
            await _seed(db, {
                "repositories": [{"id": 1, "name": "hub/a", "created_at": 1.0},
                                 {"id": 2, "name": "hub/b", "created_at": 1.0}],
                "manifests": manifest_rows, "manifest_references": reference_rows,
                "tags": [{"repository_id": 1, "name": "latest", "manifest_id": top, "updated_at": 1.0}],
                "mirror_pins": [{"repository": repository, "reference": reference, "created_at": 1.0}
                                for repository, reference in (("hub/a", "latest"), ("hub/a", digest("solo")),
                                                              ("hub/a", "missing"), ("hub/gone", "latest"),
                                                              ("hub/a", digest("missing")))],
            })
            async with db.read() as conn:
                with statements(db) as ran:
                    pinned = await mirror_cache.pinned_blobs(conn)
            assert pinned == {digest(f"layer{image}") for image in range(images)} | {digest("base"),
                                                                                     digest("solo-blob")}
            # resolve the pins; then top and solo; middle; the 600 images in two IN lists
            assert len(ran) == 5, ran
        finally:
            await db.close()
    asyncio.run(scenario())


def test_the_tags_page_walks_one_repository_in_name_order(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        try:
            await _seed(db, {
                "repositories": [{"id": 1, "name": "team/a", "created_at": 1.0},
                                 {"id": 2, "name": "team/b", "created_at": 1.0},
                                 {"id": 3, "name": "team/none", "created_at": 1.0}],
                "manifests": [{"id": 1, "repository_id": 1, "digest": digest("m"), "media_type": "x",
                               "payload": b"{}", "size": 2, "created_at": 1.0}],
                "tags": [{"repository_id": r, "name": name, "manifest_id": 1, "updated_at": 1.0}
                         for r in (1, 2) for name in ("c", "a", "b", "d")],
            })
            assert await tag_rows.list_tags(db, "team/a", 2, None) == ["a", "b"]
            assert await tag_rows.list_tags(db, "team/a", 2, "b") == ["c", "d"]
            assert await tag_rows.list_tags(db, "team/a", None, "c") == ["d"]
            assert await tag_rows.list_tags(db, "team/a", None, None) == ["a", "b", "c", "d"]
            assert await tag_rows.list_tags(db, "team/none", 10, None) == []
            assert await tag_rows.list_tags(db, "team/unknown", 10, None) is None
        finally:
            await db.close()
    asyncio.run(scenario())


def test_eviction_order_is_least_recently_pulled_then_digest_within_the_cache(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        try:
            links = [(1, "d", 5.0, None), (1, "b", 1.0, 9.0), (1, "a", 3.0, None), (2, "c", 3.0, None),
                     (3, "e", 0.0, None)]  # (repository, digest, created, pulled); repository 3 is not a cache
            await _seed(db, {
                "repositories": [{"id": 1, "name": "hub/x", "created_at": 1.0},
                                 {"id": 2, "name": "ghcr/y", "created_at": 1.0},
                                 {"id": 3, "name": "team/z", "created_at": 1.0}],
                "blobs": [{"digest": digest(d), "size": 1, "created_at": 1.0} for _, d, _, _ in links],
                "repository_blobs": [{"repository_id": r, "digest": digest(d), "created_at": created,
                                      "last_pulled_at": pulled} for r, d, created, pulled in links],
            })
            async with db.read() as conn:
                oldest = await mirror_cache.oldest_links(conn, ["hub", "ghcr"], 10)
                assert [(link.repository, link.digest) for link in oldest] == [
                    ("hub/x", digest("a")), ("ghcr/y", digest("c")), ("hub/x", digest("d")), ("hub/x", digest("b"))]
                assert len(await mirror_cache.oldest_links(conn, ["hub", "ghcr"], 2)) == 2
        finally:
            await db.close()
    asyncio.run(scenario())
