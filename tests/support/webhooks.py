"""A webhook receiver for tests: a real aiohttp server on loopback, in a thread of its own, that keeps
every envelope it is posted and answers as the test says.

Modes: `ok` answers 200 at once; `fail` answers 503; `slow` keeps the envelope, then waits
`slow_seconds` before its 200 (long enough for a test to kill the sender mid-delivery).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.server import free_port


@dataclass
class Posted:
    mode: str  # how it was answered
    content_type: str
    headers: dict[str, str]
    events: list[dict[str, Any]]
    at: float = field(default_factory=time.time)


class WebhookReceiver:
    def __init__(self, mode: str = "ok", slow_seconds: float = 30.0) -> None:
        self.mode = mode
        self.slow_seconds = slow_seconds
        self.port = free_port()
        self.posted: list[Posted] = []
        self.slow_started = threading.Event()  # a `slow` request has been kept and is being held
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    # -- what came -----------------------------------------------------------------------------
    def events(self, modes: tuple[str, ...] = ("ok", "fail", "slow")) -> list[dict[str, Any]]:
        with self._lock:
            return [event for posted in self.posted if posted.mode in modes for event in posted.events]

    def wait_for(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                with self._lock:
                    summary = [(p.mode, [e.get("action") for e in p.events]) for p in self.posted]
                raise AssertionError(f"webhook receiver: {what} did not happen within {timeout}s; posted: {summary}")
            time.sleep(0.1)

    # -- the server ----------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        mode = self.mode
        try:
            events = json.loads(body)["events"]
        except (ValueError, KeyError, TypeError):
            events = [{"unreadable": body[:200].decode(errors="replace")}]
        with self._lock:
            self.posted.append(Posted(mode, request.headers.get("Content-Type", ""), dict(request.headers), events))
        if mode == "fail":
            return web.Response(status=503, text="not now")
        if mode == "slow":
            self.slow_started.set()
            await asyncio.sleep(self.slow_seconds)
        return web.Response(status=200)

    def start(self) -> WebhookReceiver:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/events", self._handle)
            self._runner = web.AppRunner(app, shutdown_timeout=1.0)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="webhook-receiver", daemon=True)
        self._thread.start()
        assert ready.wait(10), "the webhook receiver did not start"
        return self

    async def _shutdown(self) -> None:
        held = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in held:  # a `slow` answer still waiting
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
