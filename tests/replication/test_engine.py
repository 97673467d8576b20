"""The replication engine between two real registries' content (two SQLite databases and stores): filters,
platforms, referrers of referrers, deletions only when the rule says so, a 429's Retry-After honoured, the
per-rule concurrency limit, and a second run that sends nothing. The HTTP ends are proven with real
registries in tests/e2e/test_replication.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from registry.client import UpstreamThrottled
from registry.content.local import LocalContent
from registry.digest import parse_digest
from registry.events.journal import Journal, Source
from registry.metadata.db import Database, migrate
from registry.replication.ends import BlobOpener, LocalEnd
from registry.replication.engine import Replicator
from registry.replication.rules import parse_rule
from registry.storage.filesystem import FilesystemStore
from tests.support.images import OCI_INDEX, OCI_MANIFEST, json_bytes, sha256

CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


async def content_at(root: Path) -> LocalContent:
    url = f"sqlite+aiosqlite:///{root / 'registry.db'}"
    await asyncio.to_thread(root.mkdir, parents=True)
    await asyncio.to_thread(migrate, url)
    db = Database(url)
    return LocalContent(db, FilesystemStore(root / "store"), journal=Journal(db, Source("test", "x")))


async def put_image(content: LocalContent, repository: str, tag: str | None, layers: list[bytes],
                    platform: dict[str, str] | None = None, subject: tuple[str, int] | None = None,
                    artifact_type: str | None = None) -> tuple[str, int]:
    config = json_bytes({"architecture": (platform or {}).get("architecture", "amd64"), "os": "linux"})
    for blob in (config, *layers):
        await content.put_blob(repository, parse_digest(sha256(blob)), _chunks(blob))
    document: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": LAYER, "digest": sha256(x), "size": len(x)} for x in layers]}
    if subject is not None:
        document["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject[0], "size": subject[1]}
    if artifact_type is not None:
        document["artifactType"] = artifact_type
    payload = json_bytes(document)
    reference: Any = tag if tag is not None else parse_digest(sha256(payload))
    await content.put_manifest(repository, reference, payload, OCI_MANIFEST)
    return sha256(payload), len(payload)


async def put_index(content: LocalContent, repository: str, tag: str,
                    children: list[tuple[str, int, dict[str, str]]]) -> str:
    payload = json_bytes({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": n, "platform": p} for d, n, p in children]})
    await content.put_manifest(repository, tag, payload, OCI_INDEX)
    return sha256(payload)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1000):
        yield data[start:start + 1000]


def rule(**fields: Any):
    return parse_rule({"name": "r", "direction": "pull", "url": "http://upstream.invalid", **fields})


Scenario = Callable[[LocalContent, LocalContent], Awaitable[None]]


def scenario(tmp_path: Path, test: Scenario) -> None:
    async def run() -> None:
        source, destination = await content_at(tmp_path / "source"), await content_at(tmp_path / "destination")
        try:
            await test(source, destination)
        finally:
            await source.db.close()
            await destination.db.close()
    asyncio.run(run())


async def tags(content: LocalContent, repository: str) -> list[str]:
    return await LocalEnd(content).tags(repository)


def test_filters_prefix_platforms_and_referrers_then_a_second_run_sends_nothing(tmp_path: Path) -> None:
    async def test(source: LocalContent, destination: LocalContent) -> None:
        subject = await put_image(source, "team/app", "v1.2.0", [b"layer one", b"shared"])
        await put_image(source, "team/app", "v1.3.0-rc.1", [b"layer rc", b"shared"])
        await put_image(source, "team/app", "v2.0.0", [b"layer two"])
        await put_image(source, "team/app", "latest", [b"layer latest"])
        await put_image(source, "other/app", "v1.2.0", [b"elsewhere"])
        signature = await put_image(source, "team/app", None, [b"signature"], subject=subject,
                                    artifact_type="application/vnd.example.sig")
        countersigned = await put_image(source, "team/app", None, [b"countersignature"], subject=signature,
                                        artifact_type="application/vnd.example.sig")
        amd = await put_image(source, "team/multi", None, [b"amd64 layer"], {"os": "linux", "architecture": "amd64"})
        arm = await put_image(source, "team/multi", None, [b"arm64 layer"], {"os": "linux", "architecture": "arm64"})
        await put_index(source, "team/multi", "v1.5.0", [(*amd, {"os": "linux", "architecture": "amd64"}),
                                                         (*arm, {"os": "linux", "architecture": "arm64"})])
        the_rule = rule(repositories=["team/*"], tags=["v*"], versions=">=1.2 <2", destination_prefix="dc1/",
                        platforms=["linux/arm64"])
        tally = await Replicator(the_rule, LocalEnd(source), LocalEnd(destination)).run()
        assert tally.errors == 0, tally.error_lines
        # This registry refuses an index without all its children: the index stays out, its arm64 image comes.
        assert tally.skipped == 1 and "dc1/team/multi:v1.5.0" in tally.skip_lines[0], tally.skip_lines
        assert await tags(destination, "dc1/team/app") == ["v1.2.0"]  # not the prerelease, v2 or latest
        assert await tags(destination, "dc1/other/app") == []
        end = LocalEnd(destination)
        for digest in (signature[0], countersigned[0], arm[0]):
            assert await end.has_manifest("dc1/team/app" if digest != arm[0] else "dc1/team/multi", digest)
        assert not await end.has_manifest("dc1/team/multi", amd[0])  # the platform filter left it
        assert (await end.manifest("dc1/team/app", "v1.2.0")).payload == (await LocalEnd(source).manifest(
            "team/app", "v1.2.0")).payload
        assert tally.bytes > 0 and tally.blobs > 0

        again = await Replicator(rule(repositories=["team/app"], tags=["v*"], versions=">=1.2 <2",
                                      destination_prefix="dc1/"), LocalEnd(source), LocalEnd(destination)).run()
        assert (again.errors, again.blobs, again.bytes, again.manifests) == (0, 0, 0, 0), again
        assert again.present >= 3  # the tag, the signature and its countersignature, each asked for
    scenario(tmp_path, test)


def test_deletions_follow_only_when_the_rule_says_so(tmp_path: Path) -> None:
    async def test(source: LocalContent, destination: LocalContent) -> None:
        await put_image(source, "team/app", "v1", [b"one"])
        await put_image(source, "team/app", "v2", [b"two"])
        await Replicator(rule(), LocalEnd(source), LocalEnd(destination)).run()
        assert await tags(destination, "team/app") == ["v1", "v2"]
        await source.delete_manifest("team/app", "v1")
        kept = await Replicator(rule(), LocalEnd(source), LocalEnd(destination)).run()
        assert kept.deleted == 0 and await tags(destination, "team/app") == ["v1", "v2"]
        deleting = await Replicator(rule(delete=True, tags=["v*"]), LocalEnd(source), LocalEnd(destination)).run()
        assert deleting.deleted == 1 and await tags(destination, "team/app") == ["v2"]
    scenario(tmp_path, test)


class Throttled(LocalEnd):
    """A destination that answers 429 with Retry-After to its first `times` blob writes."""

    def __init__(self, content: LocalContent, times: int) -> None:
        super().__init__(content)
        self.times = times
        self.in_flight = 0
        self.most_in_flight = 0

    async def put_blob(self, repository: str, digest: str, size: int, mount_from: str | None,
                       opener: BlobOpener) -> bool:
        if self.times > 0:
            self.times -= 1
            raise UpstreamThrottled(2.5)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            return await super().put_blob(repository, digest, size, mount_from, opener)
        finally:
            self.in_flight -= 1


def test_a_429_waits_its_retry_after_and_blobs_move_at_most_concurrency_at_once(tmp_path: Path) -> None:
    async def test(source: LocalContent, destination: LocalContent) -> None:
        for n in range(4):
            await put_image(source, "team/app", f"v{n}", [f"layer {n} {i}".encode() for i in range(4)])
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        end = Throttled(destination, times=2)
        tally = await Replicator(rule(concurrency=2), LocalEnd(source), end, sleep=sleep).run()
        assert tally.errors == 0, tally.error_lines
        assert waits == [2.5, 2.5]
        assert end.most_in_flight == 2
        assert await tags(destination, "team/app") == ["v0", "v1", "v2", "v3"]
    scenario(tmp_path, test)


class CountingSource(LocalEnd):
    def __init__(self, content: LocalContent) -> None:
        super().__init__(content)
        self.opened: list[str] = []

    @contextlib.asynccontextmanager
    async def open_blob(self, repository: str, digest: str) -> AsyncIterator[AsyncIterable[bytes]]:
        self.opened.append(digest)
        async with super().open_blob(repository, digest) as chunks:
            yield chunks


def test_a_blob_two_images_share_is_sent_once(tmp_path: Path) -> None:
    async def test(source: LocalContent, destination: LocalContent) -> None:
        for n in range(5):
            await put_image(source, "team/app", f"v{n}", [b"the shared base layer", f"own {n}".encode()])
        counting = CountingSource(source)
        tally = await Replicator(rule(concurrency=4), counting, LocalEnd(destination)).run()
        assert tally.errors == 0, tally.error_lines
        assert counting.opened.count(sha256(b"the shared base layer")) == 1
        assert len(counting.opened) == len(set(counting.opened))
    scenario(tmp_path, test)
