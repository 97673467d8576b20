"""Blob responses: sendfile from the local store, else streamed; Range honoured on both."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from registry.api.common import byte_range
from registry.api.sendfile import sendfile
from registry.content.model import BlobContent
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
            raise RegistryError("BLOB_UNKNOWN", "blob data missing from storage",
                                detail={"digest": blob.digest}) from None
        try:
            await response.prepare(request)
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("client went away")
            if length:
                try:
                    await sendfile(transport, fileobj.fileno(), offset, length)
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
