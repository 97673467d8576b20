"""One upstream fetch per blob across registry processes: two mirror processes share PostgreSQL
and a blob store (as on two hosts), or two workers share a data directory (one host); 20 concurrent
cold pulls spread over both reach the upstream once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from aiohttp import web

from tests.support.server import RegistryProcess, free_port

BLOB = 16 * 1024 * 1024


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_twenty_cold_pulls_over_two_processes_fetch_once(tmp_path, postgres):
    data = os.urandom(BLOB)
    digest = _sha(data)
    with RegistryProcess(tmp_path / "upstream") as upstream:
        assert httpx.post(f"{upstream.url}/v2/library/big/blobs/uploads/", params={"digest": digest},
                          content=data, timeout=60).status_code == 201
        env = {"REGISTRY_MIRROR_UPSTREAMS": json.dumps([{"alias": "hub", "url": upstream.url, "docker_hub": True}]),
               "REGISTRY_DATABASE_URL": postgres.create_database(),
               "REGISTRY_STORAGE_ROOT": str(tmp_path / "shared-blobs")}
        first = RegistryProcess(tmp_path / "m1", env=env).start()
        second = RegistryProcess(tmp_path / "m2", env=env).start()
        try:
            mirrors = [first, second]

            def pull(i: int) -> str:
                mirror = mirrors[i % 2]
                response = httpx.get(f"{mirror.url}/v2/library/big/blobs/{digest}", timeout=120)
                assert response.status_code == 200, response.text
                return _sha(response.content)

            with ThreadPoolExecutor(20) as pool:
                received = list(pool.map(pull, range(20)))
        finally:
            first.stop()
            second.stop()
        upstream_gets = [line for line in upstream.log_path.read_text().splitlines()
                         if f"GET /v2/library/big/blobs/{digest}" in line]
    assert received == [digest] * 20
    assert len(upstream_gets) == 1, upstream_gets


# -- workers of one server: they share the data directory, so a fill's lock file wakes the others -------

SLOW_PIECES = 16  # a 16 MiB blob in 1 MiB pieces, one every 0.1 s: a fill of about 1.6 s
SLOW_PAUSE = 0.1


class _SlowUpstream:
    """A registry that sends one blob slowly and counts its GETs: long enough a fill that the other worker
    has to wait for it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.digest = _sha(data)
        self.gets = 0
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/v2/", self._version)
        app.router.add_route("*", "/v2/{name:.+}/blobs/{digest}", self._blob)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        headers = {"Content-Length": str(len(self.data)), "Docker-Content-Digest": self.digest,
                   "Content-Type": "application/octet-stream"}
        if request.method == "HEAD":
            return web.Response(headers=headers)
        self.gets += 1
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        piece = len(self.data) // SLOW_PIECES
        for start in range(0, len(self.data), piece):
            await response.write(self.data[start:start + piece])
            await asyncio.sleep(SLOW_PAUSE)
        await response.write_eof()
        return response

    def __enter__(self) -> _SlowUpstream:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


def test_workers_sharing_a_data_dir_fetch_once_and_the_waiting_one_is_woken(tmp_path):
    data = os.urandom(BLOB)
    with _SlowUpstream(data) as upstream:
        env = {"REGISTRY_MIRROR_UPSTREAMS": json.dumps([{"alias": "hub", "url": f"http://127.0.0.1:{upstream.port}",
                                                         "docker_hub": True}])}
        with RegistryProcess(tmp_path / "data", env=env, args=["--workers", "2"]) as mirror:

            def pull(_: int) -> tuple[str, float]:
                started = time.monotonic()
                response = httpx.get(f"{mirror.url}/v2/library/slow/blobs/{upstream.digest}", timeout=120)
                assert response.status_code == 200, response.text
                return _sha(response.content), time.monotonic() - started

            # New connections: the kernel spreads them over both workers (SO_REUSEPORT).
            with ThreadPoolExecutor(20) as pool:
                results = list(pool.map(pull, range(20)))
    assert [digest for digest, _ in results] == [upstream.digest] * 20
    assert upstream.gets == 1
    fill = SLOW_PIECES * SLOW_PAUSE
    # The other worker waits for the commit. Woken by the lock file, its clients finish soon after the fill;
    # checking the database (0.2 s, then doubling: 0.2+0.4+0.8+1.6 = 3 s) would have kept them past 3 s.
    slowest = max(seconds for _, seconds in results)
    assert slowest < fill + 1.2, (slowest, sorted(round(s, 2) for _, s in results))
