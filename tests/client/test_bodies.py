"""registry.client reads every small body to its end, however many pieces a peer sends it in.

The peer here is a raw asyncio server that writes each body in 16 KiB pieces 10 ms apart (as a
real network or a TLS connection delivers them), with or without a Content-Length. Before the
fix, `response.content.read(n)` returned the first piece only: a 300 KB manifest arrived cut and
the mirror answered `502 ... does not match`, `registry pull` `MANIFEST_INVALID`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable

import pytest

from registry.client.client import RegistryClient, UpstreamError, UpstreamNotFound, UpstreamUnavailable

PIECE, PAUSE = 16 * 1024, 0.01
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "annotations": {f"k{i}": "v" * 100 for i in range(3000)}}).encode()  # ~330 KB
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "history": ["x" * 200] * 1000}).encode()  # ~200 KB
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
WRONG_DIGEST = "sha256:" + "0" * 64  # the peer answers CONFIG's bytes for it
TAGS = json.dumps({"name": "r", "tags": [f"t{i:05d}" for i in range(20000)]}).encode()  # ~180 KB


async def dribble(writer: asyncio.StreamWriter, data: bytes) -> None:
    for start in range(0, len(data), PIECE):
        writer.write(data[start:start + PIECE])
        await writer.drain()
        await asyncio.sleep(PAUSE)


def head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "Connection: close", "", ""]
    return "\r\n".join(lines).encode()


async def answer(path: str, method: str, writer: asyncio.StreamWriter) -> None:
    if path == "/v2/r/manifests/big":
        writer.write(head("200 OK", {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                     "Content-Length": str(len(MANIFEST))}))
        await dribble(writer, MANIFEST)
    elif path == f"/v2/r/blobs/{CONFIG_DIGEST}" and method == "HEAD":
        writer.write(head("200 OK", {"Content-Length": str(len(CONFIG))}))
    elif path == f"/v2/r/blobs/{CONFIG_DIGEST}":  # chunked: no length known up front
        writer.write(head("200 OK", {"Transfer-Encoding": "chunked"}))
        for start in range(0, len(CONFIG), PIECE):
            piece = CONFIG[start:start + PIECE]
            await dribble(writer, f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        writer.write(b"0\r\n\r\n")
    elif path == f"/v2/r/blobs/{WRONG_DIGEST}":
        writer.write(head("200 OK", {"Content-Length": str(len(CONFIG))}))
        await dribble(writer, CONFIG)
    elif path == "/v2/r/tags/list":
        writer.write(head("200 OK", {"Content-Type": "application/json", "Content-Length": str(len(TAGS))}))
        await dribble(writer, TAGS)
    elif path == "/v2/r/manifests/cut":  # promises more than it sends, then hangs up
        writer.write(head("200 OK", {"Content-Length": str(len(MANIFEST))}))
        await dribble(writer, MANIFEST[:50_000])
    elif path == "/v2/r/manifests/endless":  # no length, more than any cap
        writer.write(head("200 OK", {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}))
        await dribble(writer, b" " * (6 * 1024 * 1024))
    else:
        body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "m" * 40_000}]}).encode()
        writer.write(head("404 Not Found", {"Content-Type": "application/json", "Content-Length": str(len(body))}))
        await dribble(writer, body)


async def with_peer(test: Callable[[RegistryClient], Awaitable[None]]) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            method, path, _ = request.split(b"\r\n", 1)[0].decode().split(" ")
            await answer(path, method, writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with RegistryClient(f"http://127.0.0.1:{port}", retries=0) as client:
            await test(client)
    finally:
        server.close()
        await server.wait_closed()


def run(test: Callable[[RegistryClient], Awaitable[None]]) -> None:
    asyncio.run(with_peer(test))


def test_manifest_in_many_pieces_arrives_whole() -> None:
    async def test(client: RegistryClient) -> None:
        got = await client.get_manifest("r", "big")
        assert got.payload == MANIFEST and got.size == len(MANIFEST)
    run(test)


def test_chunked_config_in_many_pieces_arrives_whole_and_verified() -> None:
    async def test(client: RegistryClient) -> None:
        assert await client.small_blob("r", CONFIG_DIGEST, 16 * 1024 * 1024) == CONFIG
    run(test)


def test_tag_list_in_many_pieces() -> None:
    async def test(client: RegistryClient) -> None:
        assert await client.tags("r") == json.loads(TAGS)["tags"]
    run(test)


def test_blob_head_reads_the_size_without_a_body() -> None:
    async def test(client: RegistryClient) -> None:
        assert await client.head_blob("r", CONFIG_DIGEST) == len(CONFIG)
    run(test)


def test_error_body_in_pieces_keeps_its_code() -> None:
    async def test(client: RegistryClient) -> None:
        with pytest.raises(UpstreamNotFound) as caught:
            await client.get_manifest("r", "missing")
        assert caught.value.code == "MANIFEST_UNKNOWN"
    run(test)


def test_body_cut_short_is_unavailable_not_a_parse_error() -> None:
    async def test(client: RegistryClient) -> None:
        with pytest.raises(UpstreamUnavailable, match="cut short"):
            await client.get_manifest("r", "cut")
    run(test)


def test_body_over_the_cap_is_refused_while_it_streams() -> None:
    async def test(client: RegistryClient) -> None:
        with pytest.raises(UpstreamError, match="larger than 1048576 bytes"):
            await client.get_manifest("r", "endless", limit=1024 * 1024)
        with pytest.raises(UpstreamError, match="larger than 100000 bytes"):  # refused by its Content-Length
            await client.get_manifest("r", "big", limit=100_000)
    run(test)


def test_config_that_does_not_match_its_digest_is_refused() -> None:
    async def test(client: RegistryClient) -> None:
        with pytest.raises(UpstreamError, match="does not match its digest"):
            await client.small_blob("r", WRONG_DIGEST, 16 * 1024 * 1024)
    run(test)
