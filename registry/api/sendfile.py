"""sendfile(2) for blob GETs: a thread copies while the client takes bytes; the event loop waits
while it does not.

asyncio's loop.sendfile goes back to the event loop (two epoll_ctl calls and a callback) every
time the socket buffer fills, which on a fast link is every few hundred KiB; a thread looping
sendfile + poll moves the same bytes with less work. But a thread that waits for a slow client
for the whole download is a thread nobody else can use: 32 clients on slow links held every
thread of the shared pool, and uploads, bcrypt checks and /readyz queued behind them.

So a download alternates between two states:
- copying, in a thread of a small pool of its own: sendfile until the socket is full, then poll
  for a few milliseconds (a fast client drains it in that time), and go on;
- waiting, on the event loop: when the socket stays full for longer than that, the thread
  returns and the loop waits for the socket to become writable (add_writer), holding no thread.
A thread is only ever held by a client that is receiving. A copy also ends after SLICE_BYTES,
so when more clients are fast than the pool has threads, they take turns.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import select
import struct
import termios
import threading
import time
from concurrent.futures import ThreadPoolExecutor

THREADS = 8  # copying is bounded by the cores and the disk, not by the number of clients
HANDBACK_SECONDS = 0.005  # a socket full this long goes back to the event loop
SLICE_BYTES = 32 << 20  # one thread job at most; at loopback speed a few milliseconds
STALL_SECONDS = 60.0  # a client that takes no byte for this long is gone

_pool: ThreadPoolExecutor | None = None
_pool_pid = 0


def _executor() -> ThreadPoolExecutor:
    """The copying pool of this process (created on first use, so a forked worker gets its own)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="sendfile")
        _pool_pid = os.getpid()
    return _pool


class ClientStalled(ConnectionResetError):
    """The client took no byte for STALL_SECONDS."""


async def sendfile(transport: asyncio.Transport, file_fd: int, offset: int, count: int) -> None:
    """Send `count` bytes of `file_fd` from `offset` on the transport's socket.

    The transport's own buffer must be empty first (the headers), and stays untouched: nothing is
    written through it until this returns. Raises OSError when the client goes away.
    """
    # The headers, still in the transport's buffer: asyncio has no event for "buffer empty" below the
    # high-water mark, and they leave in one write, so a short poll.
    while transport.get_write_buffer_size():  # noqa: ASYNC110
        await asyncio.sleep(0.0005)
    # Our own descriptors: should the transport close the socket, or the caller the file, while a
    # thread still copies, their numbers can be reused by another connection or file, but never
    # by our copies. They are closed once no thread uses them any more.
    sock_fd = os.dup(transport.get_extra_info("socket").fileno())
    try:
        file_fd = os.dup(file_fd)
    except OSError:
        os.close(sock_fd)
        raise
    # Reading pauses (as in asyncio's own sendfile) so a request pipelined behind this one waits.
    reading = transport.is_reading()
    if reading:
        transport.pause_reading()
    copy = _Copy(sock_fd, file_fd)
    try:
        await copy.run(offset, count)
    finally:
        copy.release()
        if reading and not transport.is_closing():
            transport.resume_reading()


class _Copy:
    """One download's descriptors, its thread jobs and its waits on the loop."""

    def __init__(self, sock_fd: int, file_fd: int) -> None:
        self.sock_fd = sock_fd
        self.file_fd = file_fd
        self.stop = threading.Event()
        self.job: asyncio.Future[tuple[int, bool]] | None = None

    async def run(self, offset: int, count: int) -> None:
        loop = asyncio.get_running_loop()
        while count > 0:
            self.job = loop.run_in_executor(_executor(), self._copy, offset, count)
            sent, full = await asyncio.shield(self.job)
            self.job = None
            offset += sent
            count -= sent
            if count and full:
                await self._writable(loop)

    def release(self) -> None:
        """Close our descriptors now, or when a still-running thread job ends (we were cancelled)."""
        self.stop.set()
        if self.job is not None and not self.job.done():
            self.job.add_done_callback(lambda _: self._close())
        else:
            self._close()

    def _close(self) -> None:
        os.close(self.sock_fd)
        os.close(self.file_fd)

    def _copy(self, offset: int, count: int) -> tuple[int, bool]:
        """In a pool thread: (bytes sent, whether the socket stayed full) after at most SLICE_BYTES."""
        poller = select.poll()
        poller.register(self.sock_fd, select.POLLOUT)
        budget = min(count, SLICE_BYTES)
        sent = 0
        while sent < budget and not self.stop.is_set():
            try:
                n = os.sendfile(self.sock_fd, self.file_fd, offset + sent, budget - sent)
            except BlockingIOError:
                if not poller.poll(HANDBACK_SECONDS * 1000):
                    return sent, True
                continue
            if n == 0:  # the file is shorter than its record says, or the socket is shut down
                raise ConnectionResetError("sendfile sent nothing")
            sent += n
        return sent, False

    async def _writable(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait on the loop until the socket takes bytes again (or reports an error, which the next
        sendfile raises). A client counts as stalled only if its unacknowledged bytes have not
        shrunk for STALL_SECONDS: with a send buffer of megabytes, a client reading 10 KB/s takes
        minutes to free the third of it that makes the socket writable again."""
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(self.sock_fd, wake)
        try:
            queued = _unsent(self.sock_fd)
            deadline = time.monotonic() + STALL_SECONDS
            while True:
                try:
                    await asyncio.wait_for(asyncio.shield(ready), min(5.0, STALL_SECONDS))
                    return
                except TimeoutError:
                    now_queued = _unsent(self.sock_fd)
                    if now_queued < queued:  # the client took some: it is alive
                        queued = now_queued
                        deadline = time.monotonic() + STALL_SECONDS
                    elif time.monotonic() >= deadline:
                        raise ClientStalled("client stopped reading") from None
        finally:
            loop.remove_writer(self.sock_fd)


def _unsent(sock_fd: int) -> int:
    """Bytes in the socket's send queue not yet acknowledged by the peer (SIOCOUTQ)."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock_fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return 0  # the socket is gone: the next sendfile says so
