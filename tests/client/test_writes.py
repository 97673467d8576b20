"""registry.client writing to real registries (replication, issue 22): catalog pages, referrers by
the API and by the OCI 1.1 tag fallback, mounts, streamed uploads, manifest PUT and DELETE, 429 on
a write, and a bearer token carrying two scopes for a mount.

The peers are real processes: this registry open (auth none, loopback may push), this registry in
token mode, this registry rate-limited, and Debian's Distribution 2.8.2 with htpasswd users (its
referrers path answers a plain-text 404, so the client falls back to the `sha256-<hex>` tag).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from registry.client import Referrers, RegistryClient, UpstreamError, UpstreamNotFound, UpstreamThrottled
from registry.client.client import referrers_tag, same_origin_path
from registry.digest import parse_digest
from tests.auth.conftest import AuthRegistry, write_htpasswd
from tests.support.http import pattern_stream, stream_digest
from tests.support.mirror import AccessLog, DistributionProcess
from tests.support.netlab import Site, Splitter
from tests.support.server import RegistryProcess

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
SIGNATURE = "application/vnd.example.signature.v1"
USER, PASSWORD = "replicator", "s3cret-replicate"
T = TypeVar("T")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def run(coroutine: Awaitable[T]) -> T:
    async def go() -> T:
        return await coroutine
    return asyncio.run(go())


def with_client(url: str, test: Callable[[RegistryClient], Awaitable[T]], user: str = "", password: str = "") -> T:
    async def go() -> T:
        async with RegistryClient(url, user, password, retries=1) as client:
            return await test(client)
    return asyncio.run(go())


@contextlib.asynccontextmanager
async def body_of(data: bytes) -> AsyncIterator[Any]:
    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 4096):
            yield data[start:start + 4096]
    yield pieces()


async def push_bytes(client: RegistryClient, repository: str, data: bytes, mount_from: str | None = None) -> str:
    return await client.push_blob(repository, sha256(data), len(data), lambda: body_of(data), mount_from)


async def push_image(client: RegistryClient, repository: str, tag: str, label: str) -> tuple[str, bytes]:
    """A one-layer image by the client's own writes; (manifest digest, manifest bytes)."""
    layer = f"layer {label}".encode() * 100
    config = json.dumps({"architecture": "amd64", "os": "linux", "label": label}).encode()
    for data in (layer, config):
        await push_bytes(client, repository, data)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": LAYER, "digest": sha256(layer), "size": len(layer)}],
    }).encode()
    pushed = await client.put_manifest(repository, tag, manifest, OCI_MANIFEST)
    assert pushed.digest == sha256(manifest) and pushed.subject is None
    return pushed.digest, manifest


async def push_signature(client: RegistryClient, repository: str, subject: str, subject_size: int) -> tuple[bytes, Any]:
    """An artifact whose subject is `subject` (what `oras attach` or cosign push)."""
    empty = b"{}"
    await push_bytes(client, repository, empty)
    artifact = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIGNATURE,
        "config": {"mediaType": EMPTY_CONFIG, "digest": sha256(empty), "size": 2},
        "layers": [{"mediaType": EMPTY_CONFIG, "digest": sha256(empty), "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size},
        "annotations": {"org.example.signed-by": "replication test"},
    }).encode()
    pushed = await client.put_manifest(repository, sha256(artifact), artifact, OCI_MANIFEST)
    return artifact, pushed


# -- the peers ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    with RegistryProcess(tmp_path_factory.mktemp("ours") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def tokened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    root = tmp_path_factory.mktemp("tokened")
    htpasswd = write_htpasswd(root / "htpasswd", {USER: PASSWORD})
    with AuthRegistry(root / "data", args=["--auth-mode", "token", "--auth-htpasswd", str(htpasswd)]) as server:
        yield server


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionProcess]:
    if not os.path.exists(DistributionProcess.BINARY):
        pytest.skip("apt-get install -y docker-registry (Distribution 2.8.2)")
    server = DistributionProcess(tmp_path_factory.mktemp("distribution"), {USER: PASSWORD}).start()
    try:
        yield server
    finally:
        server.stop()


# -- catalog ------------------------------------------------------------------------------------

@pytest.mark.parametrize("peer", ["ours", "tokened", "distribution"])
def test_catalog_follows_small_pages_and_stops_at_the_limit(peer: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue(peer)
    names = [f"cat/r{i}" for i in range(7)]

    async def test(client: RegistryClient) -> tuple[list[str], list[str]]:
        for name in names:
            await push_image(client, name, "v1", name)
        return await client.catalog(page_size=2), await client.catalog(limit=3, page_size=2)

    access = server.access if isinstance(server, DistributionProcess) else AccessLog(server.log_path)
    mark = access.mark()
    everything, first_three = with_client(server.url, test, USER, PASSWORD)
    assert [n for n in everything if n.startswith("cat/")] == names
    assert first_three == everything[:3]
    pages = AccessLog.matching(access.since(mark), "GET", "/v2/_catalog", 200)
    assert len(pages) >= 4 + 2, AccessLog.show(pages)  # 7 names by 2 (4 pages at least), then 2 pages for 3
    assert all("n=2" in page.query for page in pages), AccessLog.show(pages)


# -- referrers and manifests ---------------------------------------------------------------------

def test_referrers_by_the_api_and_put_manifest_reports_oci_subject(ours: RegistryProcess) -> None:
    async def test(client: RegistryClient) -> None:
        subject, manifest = await push_image(client, "ref/app", "v1", "referred")
        assert await client.referrers("ref/app", subject) == Referrers([], via_tag=False)
        artifact, pushed = await push_signature(client, "ref/app", subject, len(manifest))
        assert pushed.digest == sha256(artifact) and pushed.subject == subject  # OCI-Subject: the API indexed it
        found = await client.referrers("ref/app", subject)
        assert not found.via_tag
        assert found.descriptors == [{"mediaType": OCI_MANIFEST, "digest": sha256(artifact), "size": len(artifact),
                                      "artifactType": SIGNATURE,
                                      "annotations": {"org.example.signed-by": "replication test"}}]
    with_client(ours.url, test)


def test_referrers_by_the_tag_fallback_on_distribution(distribution: DistributionProcess) -> None:
    async def test(client: RegistryClient) -> None:
        subject, manifest = await push_image(client, "ref/app", "v1", "referred on distribution")
        none_yet = await client.referrers("ref/app", subject)
        assert none_yet.via_tag and none_yet.descriptors == []
        artifact, pushed = await push_signature(client, "ref/app", subject, len(manifest))
        assert pushed.digest == sha256(artifact) and pushed.subject is None  # 2.8.2 knows no subjects
        descriptor = {"mediaType": OCI_MANIFEST, "digest": sha256(artifact), "size": len(artifact),
                      "artifactType": SIGNATURE}
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}).encode()
        tag = referrers_tag(parse_digest(subject))
        assert tag == "sha256-" + subject.removeprefix("sha256:")
        await client.put_manifest("ref/app", tag, index, OCI_INDEX)  # what oras does where there is no API
        found = await client.referrers("ref/app", subject)
        assert found.via_tag and found.descriptors == [descriptor]

    access = distribution.access
    mark = access.mark()
    with_client(distribution.url, test, USER, PASSWORD)
    asked = AccessLog.matching(access.since(mark), "GET", prefix="/v2/ref/app/referrers/")
    assert asked and {a.status for a in asked} == {404}, AccessLog.show(asked)


def test_delete_manifest_by_digest(ours: RegistryProcess, distribution: DistributionProcess) -> None:
    async def test(client: RegistryClient) -> None:
        digest, _ = await push_image(client, "del/app", "v1", f"deleted at {client.base_url}")
        await client.delete_manifest("del/app", digest)
        with pytest.raises(UpstreamNotFound):
            await client.get_manifest("del/app", digest)
        with pytest.raises(UpstreamNotFound):
            await client.delete_manifest("del/app", digest)
    with_client(ours.url, test)
    with_client(distribution.url, test, USER, PASSWORD)


def test_delete_where_deletes_are_off_is_a_clear_405(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.path.exists(DistributionProcess.BINARY):
        pytest.skip("apt-get install -y docker-registry (Distribution 2.8.2)")
    monkeypatch.setenv("REGISTRY_STORAGE_DELETE_ENABLED", "false")  # Distribution's override of its config
    server = DistributionProcess(tmp_path, {USER: PASSWORD}).start()

    async def test(client: RegistryClient) -> UpstreamError:
        digest, _ = await push_image(client, "del/app", "v1", "kept")
        with pytest.raises(UpstreamError) as caught:
            await client.delete_manifest("del/app", digest)
        return caught.value
    try:
        error = with_client(server.url, test, USER, PASSWORD)
    finally:
        server.stop()
    assert error.status == 405 and "does not allow deletes" in error.message, error


# -- blobs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("peer", ["ours", "distribution"])
def test_mount_and_its_fallback_to_an_upload(peer: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue(peer)
    data = f"mounted on {peer}".encode() * 500
    other = f"not in the source on {peer}".encode() * 500

    async def test(client: RegistryClient) -> None:
        assert await push_bytes(client, "mnt/src", data) == "uploaded"
        assert await client.mount_blob("mnt/dst", sha256(data), "mnt/src") is None
        assert await client.head_blob("mnt/dst", sha256(data)) == len(data)
        assert await push_bytes(client, "mnt/dst2", data, mount_from="mnt/src") == "mounted"
        # Not in the source: the 202 is an upload session, used without another POST.
        location = await client.mount_blob("mnt/dst", sha256(other), "mnt/src")
        assert location is not None and location.startswith("/v2/mnt/dst/blobs/uploads/")
        await client.finish_upload(location, sha256(other), len(other), _pieces(other))
        assert await client.small_blob("mnt/dst", sha256(other), 1 << 20) == other
        assert await push_bytes(client, "mnt/dst3", other, mount_from="mnt/nowhere") == "uploaded"
    with_client(server.url, test, USER, PASSWORD)


async def _pieces(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_mount_asks_for_one_token_with_both_scopes(tokened: AuthRegistry) -> None:
    data = b"mounted with one token" * 300
    other = b"uploaded after a refused mount" * 300

    async def test(client: RegistryClient) -> tuple[str, str]:
        await push_bytes(client, "src/base", data)
        async with RegistryClient(tokened.url, USER, PASSWORD) as fresh:  # no token cached yet
            mounted = await push_bytes(fresh, "dst/app", data, mount_from="src/base")
            uploaded = await push_bytes(fresh, "dst/app", other, mount_from="src/nowhere")
            assert await fresh.head_blob("dst/app", sha256(other)) == len(other)
        return mounted, uploaded

    mark = len(tokened.log_text())
    assert with_client(tokened.url, test, USER, PASSWORD) == ("mounted", "uploaded")
    lines = [m.groups() for m in map(ACCESS.search, tokened.log_text()[mark:].splitlines()) if m]
    tokens = [path for method, path, _ in lines if path.startswith("/auth/token")]
    both = [t for t in tokens if "&scope=repository:dst/app:pull,push&scope=repository:src/base:pull" in t]
    assert both, "\n".join(tokens)
    # One token per mount (each names its source); the upload and the HEAD after them reuse the second.
    assert len([t for t in tokens if "dst/app" in t]) == 2, "\n".join(tokens)
    # The PUT after the refused mount went with the mount's token: no 401 before a streamed body.
    puts = [(method, status) for method, path, status in lines if method == "PUT" and "/dst/app/blobs/" in path]
    assert puts == [("PUT", "201")], lines


def test_a_fresh_client_gets_its_token_before_streaming(tokened: AuthRegistry) -> None:
    """An upload opened by one client and finished by another, which holds no token yet: the
    token comes by a bodiless GET of the upload first, so the PUT is never answered 401."""
    data = b"finished by another client" * 300

    async def test(client: RegistryClient) -> None:
        location = await client.start_upload("dst/handed-over")
        async with RegistryClient(tokened.url, USER, PASSWORD) as fresh:
            await fresh.finish_upload(location, sha256(data), len(data), _pieces(data))
        assert await client.head_blob("dst/handed-over", sha256(data)) == len(data)

    mark = len(tokened.log_text())
    with_client(tokened.url, test, USER, PASSWORD)
    lines = [m.groups() for m in map(ACCESS.search, tokened.log_text()[mark:].splitlines()) if m]
    upload = [(method, status) for method, path, status in lines if "/dst/handed-over/blobs/uploads/" in path]
    assert upload == [("POST", "401"), ("POST", "202"), ("GET", "401"), ("GET", "204"), ("PUT", "201")], lines


ACCESS = re.compile(r'registry\.access \S+ \S+ "([A-Z]+) (\S+)" (\d{3}) ')


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_a_20_mib_blob_is_streamed_not_held(ours: RegistryProcess) -> None:
    size = 20 * 1024 * 1024
    digest = stream_digest(size, seed=22)
    seen: list[int] = []

    async def generated() -> AsyncIterator[bytes]:
        for piece in pattern_stream(size, seed=22):
            seen.append(rss_bytes())
            yield piece

    @contextlib.asynccontextmanager
    async def source() -> AsyncIterator[AsyncIterator[bytes]]:
        yield generated()

    async def test(client: RegistryClient) -> str:
        await client.ping()
        before = rss_bytes()
        pushed = await client.push_blob("big/blob", digest, size, source)
        seen.append(before)
        assert await client.head_blob("big/blob", digest) == size
        return pushed

    assert with_client(ours.url, test) == "uploaded"
    growth = max(seen) - seen[-1]
    assert len(seen) == 21 and growth < 8 * 1024 * 1024, f"RSS grew by {growth} bytes while sending {size}"


def test_a_source_giving_the_wrong_size_is_refused(ours: RegistryProcess) -> None:
    data = b"short source" * 100

    class SourceCut(Exception):
        pass

    async def cut() -> AsyncIterator[bytes]:
        yield data[:100]
        raise SourceCut("the source hung up")

    async def test(client: RegistryClient) -> None:
        for declared, says in ((len(data) + 10, "gave 1200 of its 1210 bytes"), (len(data) - 10, "more than")):
            location = await client.start_upload("size/app")
            with pytest.raises(UpstreamError, match=says) as caught:
                await client.finish_upload(location, sha256(data), declared, _pieces(data))
            assert caught.value.code == "SIZE_INVALID"
        location = await client.start_upload("size/app")
        with pytest.raises(SourceCut):  # the source's failure as itself, not a broken upstream
            await client.finish_upload(location, sha256(data), len(data), cut())
        with pytest.raises(UpstreamNotFound):
            await client.head_blob("size/app", sha256(data))
    with_client(ours.url, test)


def test_a_location_on_another_host_is_refused() -> None:
    base = "http://127.0.0.1:5000"
    assert same_origin_path(base, "/v2/a/blobs/uploads/u?x=1") == "/v2/a/blobs/uploads/u?x=1"
    assert same_origin_path(base, f"{base}/v2/a/blobs/uploads/u") == "/v2/a/blobs/uploads/u"
    for location in ("http://elsewhere:5000/v2/a/blobs/uploads/u", "https://127.0.0.1:5000/v2/a/blobs/uploads/u",
                     "http://127.0.0.1:50000/v2/a/blobs/uploads/u", "//evil/v2/x", ""):
        with pytest.raises(UpstreamError):
            same_origin_path(base, location)


# -- throttled writes ------------------------------------------------------------------------------

def test_429_on_a_write_is_upstream_throttled(tmp_path: Path) -> None:
    data = b"throttled" * 100
    # One request per 100 s after a burst of 5: the readiness probe and the POST fit in the burst,
    # pings empty the rest, and then the streamed PUT and the manifest PUT are refused.
    with RegistryProcess(tmp_path / "data", args=["--limits-rate", "0.01", "--limits-burst", "5"]) as server:
        async def test(client: RegistryClient) -> tuple[UpstreamThrottled, UpstreamThrottled]:
            location = await client.start_upload("slow/app")
            with pytest.raises(UpstreamThrottled):
                for _ in range(5):
                    await client.ping()
            with pytest.raises(UpstreamThrottled) as upload:
                await client.finish_upload(location, sha256(data), len(data), _pieces(data))
            with pytest.raises(UpstreamThrottled) as manifest:
                await client.put_manifest("slow/app", "v1", b"{}", OCI_MANIFEST)
            return upload.value, manifest.value
        upload, manifest = with_client(server.url, test)
    assert upload.retry_after > 1 and manifest.retry_after > 1


# -- through a link that splits and delays ---------------------------------------------------------

def test_upload_and_manifest_through_a_splitting_link(ours: RegistryProcess, tmp_path: Path) -> None:
    size = 3 * 1024 * 1024 + 17
    digest = stream_digest(size, seed=7)
    splitter = Splitter(Site("loopback", "127.0.0.1"), ours.host, tmp_path / "splitter.log",
                        min_piece=1, max_piece=64 * 1024, max_delay=0.001, seed=22).start()

    @contextlib.asynccontextmanager
    async def source() -> AsyncIterator[AsyncIterator[bytes]]:
        async def generated() -> AsyncIterator[bytes]:
            for piece in pattern_stream(size, seed=7):
                yield piece
        yield generated()

    async def test(client: RegistryClient) -> None:
        assert await client.push_blob("split/app", digest, size, source) == "uploaded"
        config = b'{"architecture": "amd64", "os": "linux"}'
        await push_bytes(client, "split/app", config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": LAYER, "digest": digest, "size": size}],
            "annotations": {f"k{i}": "v" * 200 for i in range(500)},  # ~100 KB: many pieces
        }).encode()
        pushed = await client.put_manifest("split/app", "v1", manifest, OCI_MANIFEST)
        assert pushed.digest == sha256(manifest)
        assert (await client.get_manifest("split/app", "v1")).payload == manifest

    try:
        before = splitter.stats(settle=0)
        with_client(f"http://{splitter.host}", test)
        crossed = splitter.stats() - before
    finally:
        splitter.stop()
    assert crossed.up_bytes > size and crossed.up_pieces > 100, crossed
    assert not splitter.problems(), splitter.problems()
