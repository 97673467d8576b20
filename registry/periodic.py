"""A background task that runs one flush every few seconds, sooner when woken, and once more when stopped:
what the in-memory batches (pull recency, noted events) share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("registry.periodic")


class PeriodicFlush:
    def __init__(self, flush: Callable[[], Awaitable[None]], seconds: float, what: Callable[[], str],
                 expected: Callable[[BaseException], bool] = lambda exc: False) -> None:
        """`what()` names what a failed flush did not write, for the log; `expected(exc)`: a failure
        logged in one line (the database away for a moment), where anything else gets its traceback."""
        self.flush = flush
        self.seconds = seconds
        self.what = what
        self.expected = expected
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop())

    def wake(self) -> None:
        """Flush now rather than at the end of the period."""
        self._woken.set()

    async def stop(self) -> None:
        """Stop the task, then flush what is left; a failure then is logged, not raised."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception as exc:  # noqa: BLE001 - stopping: the last few seconds' batch is all it costs
            log.warning("could not write %s while stopping: %r", self.what(), exc, exc_info=not self.expected(exc))

    async def _loop(self) -> None:
        failed = False
        while True:
            if failed:  # the next try waits the whole period, whatever wakes it meanwhile
                await asyncio.sleep(self.seconds)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.seconds):
                        await self._woken.wait()
            self._woken.clear()
            try:
                await self.flush()
                failed = False
            except Exception as exc:  # noqa: BLE001 - the database may be away for a moment: the next round retries
                log.warning("could not write %s; retrying: %r", self.what(), exc, exc_info=not self.expected(exc))
                failed = True
