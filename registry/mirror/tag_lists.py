"""Upstream tag lists, kept in memory for the upstream's tag TTL.

A client paging through `tags/list` (or polling it) would otherwise cost one upstream request per
page: the whole list is fetched once per `tag_ttl`, and every page is cut from it. Per process, and
bounded twice: at most MAX_LISTS repositories and MAX_NAMES tag names in all (a 4 MiB upstream answer
can hold a few hundred thousand names); the least recently listed go first.

Failures are never stored. When a fetch fails (anything but not-found) and a list younger than
`tag_ttl + max_stale` is held, that list is served, marked stale; not-found drops the list.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from registry.client import UpstreamError, UpstreamNotFound

MAX_LISTS = 256
MAX_NAMES = 500_000  # some 30-40 MB of short strings


@dataclass(frozen=True)
class TagList:
    names: list[str]  # sorted, so `last` is a bisection
    fetched_at: float  # monotonic
    stale_because: UpstreamError | None = None  # set when served past its TTL because the upstream failed

    def page(self, limit: int | None, last: str | None) -> list[str]:
        start = bisect.bisect_right(self.names, last) if last else 0
        return self.names[start:] if limit is None else self.names[start:start + limit]


class TagLists:
    def __init__(self, max_lists: int = MAX_LISTS, max_names: int = MAX_NAMES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_lists = max_lists
        self.max_names = max_names
        self.clock = clock
        self._lists: OrderedDict[str, TagList] = OrderedDict()
        self._names = 0
        self._inflight: dict[str, asyncio.Future[list[str]]] = {}

    async def get(self, key: str, ttl: float, max_stale: float,
                  fetch: Callable[[], Awaitable[list[str]]]) -> TagList:
        """The list for `key` (a cache repository name): the held one while younger than `ttl`, else
        fetched, once for all the callers asking meanwhile. Raises what `fetch` raises when no list
        can stand in (see the module's docstring)."""
        held = self._lists.get(key)
        if held is not None and self.clock() - held.fetched_at < ttl:
            self._lists.move_to_end(key)
            return held
        try:
            names = await self._once(key, fetch)
        except UpstreamNotFound:
            self._drop(key)
            raise
        except UpstreamError as exc:
            held = self._lists.get(key)
            if held is None or self.clock() - held.fetched_at >= ttl + max_stale:
                raise
            return TagList(held.names, held.fetched_at, stale_because=exc)
        return self._lists.get(key) or TagList(names, self.clock())  # too big to keep: served once

    async def _once(self, key: str, fetch: Callable[[], Awaitable[list[str]]]) -> list[str]:
        shared = self._inflight.get(key)
        if shared is None:
            shared = self._inflight[key] = asyncio.ensure_future(self._fetch_and_keep(key, fetch))
            shared.add_done_callback(lambda done: self._settle(key, done))
        return await asyncio.shield(shared)

    async def _fetch_and_keep(self, key: str, fetch: Callable[[], Awaitable[list[str]]]) -> list[str]:
        names = sorted(set(await fetch()))
        self._keep(key, TagList(names, self.clock()))
        return names

    def _settle(self, key: str, done: asyncio.Future[list[str]]) -> None:
        self._inflight.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: every caller may have gone (client disconnects)

    def _keep(self, key: str, listed: TagList) -> None:
        self._drop(key)
        if len(listed.names) > self.max_names:
            return
        self._lists[key] = listed
        self._names += len(listed.names)
        while len(self._lists) > self.max_lists or self._names > self.max_names:
            _, oldest = self._lists.popitem(last=False)
            self._names -= len(oldest.names)

    def _drop(self, key: str) -> None:
        gone = self._lists.pop(key, None)
        if gone is not None:
            self._names -= len(gone.names)
