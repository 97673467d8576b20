"""registry/migrate's importer and exporter in process, over embedded SQLite and the filesystem store: the
push order (blobs, manifests, indexes, referrers after their subject, tags), skips with reasons and what
needs them, a second run that changes nothing, a run after an interrupted one, and an export read back.
The real-process acceptance tests (docker, skopeo, Debian's docker-registry) are in
tests/e2e/test_import_export.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from registry.content.local import LocalContent
from registry.digest import Digest, parse_digest
from registry.events.journal import Journal, Source as EventSource
from registry.metadata import schema
from registry.metadata.db import Database
from registry.migrate.exporter import Exporter
from registry.migrate.importer import Importer
from registry.migrate.layouts import open_source
from registry.storage import StorageFull
from registry.storage.filesystem import FilesystemStore
from tests.support.host import oci_arch
from tests.support.images import (OCI_MANIFEST, Descriptor, OciLayoutWriter, file_layer, json_bytes, read_oci_layout,
                                  sha256)

ARTIFACT = "application/vnd.example.sbom"


class FailingStore(FilesystemStore):
    """A disk that fills after `room` adopted files: an import stopped midway."""

    def __init__(self, root: Path, room: int) -> None:
        super().__init__(root)
        self.room = room

    async def put_file(self, digest: Digest, path: Path) -> int:
        if self.room == 0:
            raise StorageFull("no room left")
        self.room -= 1
        return await super().put_file(digest, path)


def write_layout(root: Path) -> dict[str, str]:
    """Tags `multi` (an index over two images), `one` (its first image) and `broken` (an image whose layer
    gets corrupted), and an SBOM referring to `one`'s manifest, untagged."""
    writer = OciLayoutWriter(root)
    shared = file_layer("/etc/shared", b"shared\n")
    one = writer.add_image(oci_arch(), [file_layer("/etc/one", b"one\n"), shared])
    two = writer.add_image("arm64", [file_layer("/etc/two", b"two\n"), shared])
    index = writer.add_index([one, two])
    broken_layer = file_layer("/etc/broken", b"broken\n")
    broken = writer.add_image(oci_arch(), [broken_layer])
    empty = writer.add_blob(b"{}", "application/vnd.oci.empty.v1+json")
    sbom = writer.add_blob(b'{"sbom": true}', "application/json")
    referrer = writer.add_blob(json_bytes({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT, "config": empty.to_json(),
        "layers": [sbom.to_json()], "subject": {"mediaType": OCI_MANIFEST, "digest": one.digest, "size": one.size},
    }), OCI_MANIFEST)
    writer.tag(index, "multi")
    writer.tag(one, "one")
    writer.tag(broken, "broken")
    writer.refs.append(Descriptor(referrer.media_type, referrer.digest, referrer.size))
    writer.write()
    corrupt = root / "blobs" / "sha256" / sha256(broken_layer[0]).split(":")[1]
    corrupt.write_bytes(b"not the layer")
    return {"multi": index.digest, "one": one.digest, "two": two.digest, "broken": broken.digest,
            "referrer": referrer.digest, "broken_layer": sha256(broken_layer[0])}


Scenario = Callable[[Callable[..., Awaitable[LocalContent]], Database], Awaitable[None]]


def scenario(tmp_path: Path, url: str, test: Scenario) -> None:
    """`test` over the database at `url` (SQLite, then PostgreSQL: the `database_url` fixture)."""

    async def run() -> None:
        db = Database(url)
        stores: list[FilesystemStore] = []

        async def content(room: int | None = None) -> LocalContent:
            store = FilesystemStore(tmp_path / "store") if room is None else FailingStore(tmp_path / "store", room)
            stores.append(store)
            return LocalContent(db, store, journal=Journal(db, EventSource("test:import", "x")))
        try:
            await test(content, db)
        finally:
            await db.close()

    asyncio.run(run())


async def counts(db: Database) -> dict[str, int]:
    found = {}
    async with db.read() as conn:
        for table in (schema.manifests, schema.tags, schema.repository_blobs, schema.events):
            found[table.name] = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
    return found


def test_import_skips_what_is_corrupt_and_a_second_run_changes_nothing(tmp_path: Path, database_url: str) -> None:
    digests = write_layout(tmp_path / "layout")

    async def test(make: Callable[..., Awaitable[LocalContent]], db: Database) -> None:
        content = await make()
        report = await Importer(content, open_source(tmp_path / "layout", "lab/app")).run()
        assert report.counts["tags"] == {"imported": 2, "present": 0, "skipped": 1}
        assert report.counts["manifests"] == {"imported": 4, "present": 0, "skipped": 1}
        assert report.counts["blobs"]["skipped"] == 1 and report.counts["blobs"]["imported"] == 8
        skipped = {(s["type"], s["name"]): s["reason"] for s in report.skipped}
        assert skipped[("blob", digests["broken_layer"])].startswith("corrupt")
        assert f"needs blob {digests['broken_layer']}" in skipped[("manifest", digests["broken"])]
        assert digests["broken"] in skipped[("tag", "broken")]
        assert not report.complete
        assert (await content.manifest("lab/app", "multi")).digest == digests["multi"]
        referrers = await content.referrers("lab/app", parse_digest(digests["one"]), None)
        assert [r.digest for r in referrers] == [digests["referrer"]]
        before = await counts(db)
        # blob and manifest pushes, and one per tag: as pushes make them
        assert before["events"] == 8 + 4 + 2

        again = await Importer(await make(), open_source(tmp_path / "layout", "lab/app")).run()
        assert again.counts["tags"] == {"imported": 0, "present": 2, "skipped": 1}
        assert again.counts["manifests"] == {"imported": 0, "present": 4, "skipped": 1}
        assert again.counts["blobs"] == {"imported": 0, "present": 8, "skipped": 1}
        assert again.counts["repositories"] == {"imported": 0, "present": 1, "skipped": 0}
        assert await counts(db) == before

    scenario(tmp_path, database_url, test)


def test_an_interrupted_import_is_finished_by_the_next(tmp_path: Path, database_url: str) -> None:
    write_layout(tmp_path / "layout")

    async def test(make: Callable[..., Awaitable[LocalContent]], db: Database) -> None:
        with pytest.raises(StorageFull):
            await Importer(await make(room=3), open_source(tmp_path / "layout", "lab/app")).run()
        partial = await counts(db)
        assert partial["repository_blobs"] == 3 and partial["manifests"] == 0
        report = await Importer(await make(), open_source(tmp_path / "layout", "lab/app")).run()
        assert report.counts["blobs"] == {"imported": 5, "present": 3, "skipped": 1}
        assert report.counts["tags"]["imported"] == 2
        done = await counts(db)
        assert (done["manifests"], done["tags"], done["repository_blobs"]) == (4, 2, 8)

    scenario(tmp_path, database_url, test)


def test_dry_run_writes_nothing(tmp_path: Path, database_url: str) -> None:
    write_layout(tmp_path / "layout")

    async def test(make: Callable[..., Awaitable[LocalContent]], db: Database) -> None:
        before = await counts(db)
        report = await Importer(await make(), open_source(tmp_path / "layout", "lab/app"), dry_run=True).run()
        assert report.counts["manifests"] == {"imported": 4, "present": 0, "skipped": 1}
        assert await counts(db) == before
        assert not list((tmp_path / "store").rglob("data")) if (tmp_path / "store").exists() else True

    scenario(tmp_path, database_url, test)


def test_export_writes_the_tags_their_blobs_and_referrers_and_reads_back(tmp_path: Path, database_url: str) -> None:
    digests = write_layout(tmp_path / "layout")
    source = read_oci_layout(tmp_path / "layout")
    out = tmp_path / "out"

    async def test(make: Callable[..., Awaitable[LocalContent]], db: Database) -> None:
        content = await make()
        await Importer(content, open_source(tmp_path / "layout", "lab/app")).run()
        report = await Exporter(db, content.store, "lab/app", None, out).run()
        assert report.tags == ["multi", "one"] and report.referrers == 1 and not report.problems
        back = read_oci_layout(out)
        assert {tag: d.digest for tag, d in back.refs.items()} == {"multi": digests["multi"], "one": digests["one"]}
        index = json.loads((out / "index.json").read_text())
        assert digests["referrer"] in [d["digest"] for d in index["manifests"] if not d.get("annotations")]
        for tag in ("multi", "one"):
            for digest, data in source.reachable(tag).items():
                assert back.blobs[digest] == data, digest
        assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}

        again = await Exporter(db, content.store, "lab/app", ["one"], out).run()  # adding to the layout
        assert again.blobs_written == 0
        assert sorted(read_oci_layout(out).refs) == ["multi", "one"]
        assert len(json.loads((out / "index.json").read_text())["manifests"]) == 3

        report = await Importer(content, open_source(out, "lab/copy")).run()
        assert report.complete, report.skipped
        assert (await content.manifest("lab/copy", "multi")).digest == digests["multi"]
        assert [r.digest for r in await content.referrers("lab/copy", parse_digest(digests["one"]), None)] \
            == [digests["referrer"]]

    scenario(tmp_path, database_url, test)


def test_push_order_puts_children_and_subjects_first() -> None:
    from registry.manifest import Descriptor as Child, ParsedManifest
    from registry.migrate.importer import _Manifest, _push_order

    def made(name: str, children: tuple[str, ...] = (), subject: str | None = None) -> _Manifest:
        parsed = ParsedManifest("x", manifests=[Child("x", c, 1) for c in children], subject=subject)
        return _Manifest(name, "ready", parsed=parsed)

    # names sort the wrong way round on purpose: an index and a referrer before what they need
    manifests = {m.digest: m for m in (made("a-index", ("c-image", "d-image")), made("b-signature", subject="a-index"),
                                       made("c-image"), made("d-image"), made("e-sbom", subject="c-image"),
                                       made("f-orphan", ("absent",)))}
    order = _push_order(manifests)
    assert sorted(order) == sorted(manifests)
    position = order.index
    assert position("c-image") < position("a-index") and position("d-image") < position("a-index")
    assert position("a-index") < position("b-signature") and position("c-image") < position("e-sbom")
    cycle = {"p": made("p", ("q",)), "q": made("q", ("p",))}
    assert sorted(_push_order(cycle)) == ["p", "q"]
