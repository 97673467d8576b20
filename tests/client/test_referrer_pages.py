"""registry.client's referrers on peers that page the API, lack it (404, 405), or answer garbage:
small aiohttp upstreams, since no real registry here pages referrers or answers 405 for them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from registry.client.client import OCI_INDEX, RegistryClient, UpstreamError

SUBJECT = "sha256:" + "a" * 64
DESCRIPTORS = [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + f"{i:064x}",
                "size": 100 + i, "artifactType": "application/vnd.example.sbom"} for i in range(5)]


def index(manifests: list) -> dict:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}


async def with_upstream(handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                        test: Callable[[RegistryClient], Awaitable[None]]) -> list[str]:
    asked: list[str] = []

    async def recorded(request: web.Request) -> web.StreamResponse:
        asked.append(request.path_qs)
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorded)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with RegistryClient(f"http://127.0.0.1:{port}", retries=0) as client:
            await test(client)
    finally:
        await runner.cleanup()
    return asked


def test_every_page_of_the_referrers_api_is_read() -> None:
    async def referrers(request: web.Request) -> web.Response:
        start = int(request.query.get("page", "0"))
        headers = {}
        if start + 2 < len(DESCRIPTORS):
            headers["Link"] = f'</v2/r/referrers/{SUBJECT}?page={start + 2}>; rel="next"'
        return web.json_response(index(DESCRIPTORS[start:start + 2]), headers=headers, content_type=OCI_INDEX)

    async def test(client: RegistryClient) -> None:
        found = await client.referrers("r", SUBJECT)
        assert not found.via_tag and found.descriptors == DESCRIPTORS

    asked = asyncio.run(with_upstream(referrers, test))
    assert len(asked) == 3, asked


@pytest.mark.parametrize("status", [404, 405])
def test_no_api_falls_back_to_the_tag(status: int) -> None:
    async def upstream(request: web.Request) -> web.Response:
        if "/referrers/" in request.path:
            return web.Response(status=status, text="404 page not found\n")
        if request.path == "/v2/r/manifests/sha256-" + "a" * 64:
            return web.Response(body=json.dumps(index(DESCRIPTORS[:1])).encode(), content_type=OCI_INDEX)
        return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "no"}]}, status=404)

    async def test(client: RegistryClient) -> None:
        found = await client.referrers("r", SUBJECT)
        assert found.via_tag and found.descriptors == DESCRIPTORS[:1]
        nothing = await client.referrers("other", SUBJECT)
        assert nothing.via_tag and nothing.descriptors == []

    asyncio.run(with_upstream(upstream, test))


@pytest.mark.parametrize("body", [
    {"manifests": "no"},
    index([{"mediaType": "x", "digest": "sha256:zz", "size": 1}]),
    index([{"mediaType": "x", "digest": SUBJECT, "size": True}]),
    index([{"mediaType": "x", "digest": SUBJECT, "size": 1, "annotations": ["a"]}]),
])
def test_a_referrers_answer_that_is_not_an_index_of_descriptors_is_refused(body: dict) -> None:
    async def upstream(request: web.Request) -> web.Response:
        return web.json_response(body, content_type=OCI_INDEX)

    async def test(client: RegistryClient) -> None:
        with pytest.raises(UpstreamError) as caught:
            await client.referrers("r", SUBJECT)
        assert caught.value.status == 502

    asyncio.run(with_upstream(upstream, test))


def test_a_server_error_is_not_taken_for_a_missing_api() -> None:
    async def upstream(request: web.Request) -> web.Response:
        return web.Response(status=403, text="forbidden")

    async def test(client: RegistryClient) -> None:
        with pytest.raises(UpstreamError) as caught:
            await client.referrers("r", SUBJECT)
        assert caught.value.status == 403

    assert asyncio.run(with_upstream(upstream, test)) == [f"/v2/r/referrers/{SUBJECT}"]
