"""registry.client reads an upstream's whole tag list when the upstream pages it (`Link: rel="next"`),
and follows only links that page the same list."""

from __future__ import annotations

import asyncio
import urllib.parse

from aiohttp import web

from registry.client.client import RegistryClient, next_page

TAGS = [f"v{i:03d}" for i in range(25)]


async def _paging_upstream(page_size: int, link_style: str) -> tuple[web.AppRunner, str, list[str]]:
    asked: list[str] = []

    async def tag_list(request: web.Request) -> web.Response:
        asked.append(request.path_qs)
        last = request.query.get("last", "")
        rest = [t for t in TAGS if t > last][:page_size]
        headers = {}
        if rest and rest[-1] != TAGS[-1]:
            query = urllib.parse.urlencode({"n": page_size, "last": rest[-1]})
            target = f"/v2/r/tags/list?{query}"
            if link_style == "absolute":
                target = "http://elsewhere.invalid" + target
            headers["Link"] = f'<{target}>; rel="next"'
        return web.json_response({"name": "r", "tags": rest}, headers=headers)

    app = web.Application()
    app.router.add_get("/v2/r/tags/list", tag_list)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}", asked


def test_every_page_is_read_whether_the_link_is_relative_or_absolute() -> None:
    async def scenario(style: str) -> None:
        runner, url, asked = await _paging_upstream(10, style)
        client = RegistryClient(url)
        try:
            assert await client.tags("r") == TAGS
            assert len(asked) == 3  # 10 + 10 + 5; an absolute link is asked of this upstream, by its path
        finally:
            await client.close()
            await runner.cleanup()
    for style in ("relative", "absolute"):
        asyncio.run(scenario(style))


def test_only_a_next_link_for_the_same_list_is_followed() -> None:
    assert next_page('</v2/r/tags/list?n=10&last=b>; rel="next"', "/v2/r/tags/list") == "/v2/r/tags/list?n=10&last=b"
    assert next_page('<https://h/v2/r/tags/list?last=b>; type="x"; rel=next', "/v2/r/tags/list") == "/v2/r/tags/list?last=b"
    assert next_page('</v2/other/tags/list?last=b>; rel="next"', "/v2/r/tags/list") is None
    assert next_page('</v2/r/tags/list?last=b>; rel="prev"', "/v2/r/tags/list") is None
    assert next_page('</v2/r/tags/list>; rel="next"', "/v2/r/tags/list") is None  # no cursor: nothing to page
    assert next_page("", "/v2/r/tags/list") is None
