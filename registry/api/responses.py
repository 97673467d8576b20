"""Blob responses: sendfile from the local store, else streamed; Range honoured on both."""

from __future__ import annotations

import asyncio
import logging
import os
import select

from aiohttp import web

from registry.api.common import byte_range
from registry.content.local import BlobContent
from registry.errors import RegistryError

log = logging.getLogger("registry.api")


async def send_blob(request: web.Request, blob: BlobContent, head: bool = False) -> web.StreamResponse:
    headers = {
        "Docker-Content-Digest": blob.digest,
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        "ETag": f'"{blob.digest}"',
        "Cache-Control": "max-age=31536000",
    }
    selected = byte_range(request.headers.get("Range"), blob.size)
    offset, length = selected if selected else (0, blob.size)
    status = 200
    if selected:
        status = 206
        headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}/{blob.size}"

    if head:
        return await head_response(request, headers, length, status)
    if blob.redirect:
        return web.Response(status=307, headers={"Location": blob.redirect, "Docker-Content-Digest": blob.digest})
    if blob.data is not None:
        return web.Response(status=status, headers=headers, body=blob.data[offset:offset + length])

    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    # sendfile(2) writes plaintext straight to the socket: only without TLS.
    if blob.path is not None and request.transport is not None and \
            request.transport.get_extra_info("sslcontext") is None:
        try:
            fileobj = await asyncio.to_thread(open, blob.path, "rb")
        except FileNotFoundError:
            raise RegistryError("BLOB_UNKNOWN", "blob data missing from storage", detail={"digest": blob.digest})
        try:
            await response.prepare(request)
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("client went away")
            if length:
                try:
                    await _sendfile(transport, fileobj, offset, length)
                except OSError as exc:  # the client went away mid-body; headers are long gone
                    log.info("blob %s: download cut short: %r", blob.digest, exc)
                    transport.close()
                    return response
            await response.write_eof()
        finally:
            fileobj.close()
        return response

    await response.prepare(request)
    async for chunk in blob.stream(offset, length):
        await response.write(chunk)
    await response.write_eof()
    return response




async def head_response(request: web.Request, headers: dict[str, str], length: int,
                        status: int = 200) -> web.StreamResponse:
    """A HEAD answer that announces the body's Content-Length without sending a body."""
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    await response.prepare(request)
    await response.write_eof()
    return response


STALL_SECONDS = 60.0


async def _sendfile(transport: asyncio.Transport, fileobj, offset: int, count: int) -> None:  # type: ignore[no-untyped-def]
    """sendfile(2) driven from a worker thread that waits for the socket itself.

    asyncio's loop.sendfile returns to the event loop (two epoll_ctl calls and a callback) each
    time the socket buffer fills; a thread looping sendfile + poll moves the same bytes with less
    work. The transport's own buffer must be empty first (the headers), and stays untouched: we
    write nothing through it until the thread is done.
    """
    while transport.get_write_buffer_size():
        await asyncio.sleep(0.0005)
    # The thread gets its own descriptor: should the transport close the socket meanwhile, the
    # number it held can be reused by another connection, but never by our copy. Reading pauses
    # (as in asyncio's own sendfile) so a request pipelined behind this one waits its turn.
    sock_fd = os.dup(transport.get_extra_info("socket").fileno())
    reading = transport.is_reading()
    if reading:
        transport.pause_reading()
    try:
        await asyncio.to_thread(_sendfile_blocking, sock_fd, fileobj.fileno(), offset, count)
    finally:
        os.close(sock_fd)
        if reading and not transport.is_closing():
            transport.resume_reading()


def _sendfile_blocking(sock_fd: int, file_fd: int, offset: int, count: int) -> None:
    poller = select.poll()
    poller.register(sock_fd, select.POLLOUT)
    while count > 0:
        try:
            sent = os.sendfile(sock_fd, file_fd, offset, count)
        except BlockingIOError:
            if not poller.poll(STALL_SECONDS * 1000):
                raise ConnectionResetError("client stopped reading") from None
            continue
        if sent == 0:
            raise ConnectionResetError("connection closed")
        offset += sent
        count -= sent
