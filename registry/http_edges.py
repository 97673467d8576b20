"""The HTTP edges: requests aiohttp's parser lets through that the registry refuses, and the spec's
JSON error body for the requests that parser refuses itself.

Refused here (a middleware, so the answer is the usual JSON with a request id):
- HTTP/0.9 (`GET /` with no version): 400. llhttp reads it, and it has no headers to frame a body.
- Transfer-Encoding on HTTP/1.0: 400 (RFC 9112 6.1: the framing is faulty).
- Any transfer coding but `chunked` (`gzip, chunked`): 501, as RFC 9112 6.1 says for a coding the
  server does not implement. llhttp only checks that chunked comes last, and aiohttp never
  applies the other codings, so the blob would be stored still encoded.
- A request head larger than `limits.header_total_bytes`: 431. aiohttp bounds each line
  (`limits.header_bytes`) and the number of fields (128), not their sum.

Refused by aiohttp's parser before routing (a TLS hello on the plain port, a bad request line or
header, a line longer than `limits.header_bytes`, more than 128 fields, a transfer coding that does
not end in chunked): aiohttp answers with `RequestHandler.handle_error`, in plain text. `run_app`
below serves through a RequestHandler subclass whose handle_error answers with the same JSON
(431 for the size limits). This leans on three aiohttp internals, `AppRunner._make_server` and
`Server._loop`/`_kwargs`; tests/test_http_edges.py fails if they change. aiohttp itself is
not patched: the in-process test server keeps aiohttp's plain answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from registry.api.common import API_VERSION_HEADER
from registry.config import LimitsConfig
from registry.errors import RegistryError
from registry.http_errors import HTTPError, error_response

HTTP10 = (1, 0)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def framing_middleware(limits: LimitsConfig) -> Any:
    """Refuse what aiohttp's parser accepted but the registry does not (see the module docstring)."""

    @web.middleware
    async def framing(request: web.Request, handler: Handler) -> web.StreamResponse:
        error = _framing_error(request, limits.header_total_bytes)
        if error is None:
            return await handler(request)
        response = error_response(error, request.method)
        response.force_close()  # the body (if any) is unread and its framing not to be trusted
        return response

    return framing


def _framing_error(request: web.BaseRequest, head_limit: int) -> RegistryError | None:
    if request.version < HTTP10:
        return HTTPError("UNSUPPORTED", "HTTP/0.9 is not supported: send HTTP/1.0 or later", status=400)
    codings = request.headers.getall("Transfer-Encoding", [])
    if codings:
        if request.version == HTTP10:
            return HTTPError("UNSUPPORTED", "Transfer-Encoding is not allowed in an HTTP/1.0 request", status=400)
        named = [c.strip(" \t").lower() for c in ",".join(codings).split(",") if c.strip(" \t")]
        if named != ["chunked"]:
            return HTTPError("UNSUPPORTED", "only the chunked transfer coding is implemented",
                                 detail={"Transfer-Encoding": ", ".join(codings)[:100]}, status=501)
    head = len(request.method) + len(request.raw_path) + 11  # "GET /path HTTP/1.1\r\n"
    head += sum(len(name) + len(value) + 4 for name, value in request.raw_headers)  # "Name: value\r\n"
    if head > head_limit:
        return HTTPError("UNSUPPORTED", f"request header fields too large: the request head has {head} bytes, "
                             f"at most {head_limit} are accepted", status=431)
    return None


def _parser_error(status: int, exc: BaseException | None) -> RegistryError:
    """The JSON for an answer aiohttp makes itself: 400 from its parser, 500/504 from a handler."""
    if not isinstance(exc, HttpProcessingError):
        message = {500: "internal server error", 504: "the request took too long"}.get(status, "error")
        return HTTPError("UNKNOWN", message, status=status)
    if isinstance(exc, LineTooLong) or exc.message == "Too many headers received":
        return HTTPError("UNSUPPORTED", "request header fields too large: a line or a field is too long, or "
                             "there are too many fields", status=431)
    reason = (exc.message or type(exc).__name__).splitlines()[0][:200]
    return HTTPError("UNSUPPORTED", "malformed HTTP request", detail={"reason": reason}, status=status)


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering the requests it refuses with the spec's JSON."""

    __slots__ = ()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs it, and raises if bytes went out already
        response = error_response(_parser_error(status, exc), request.method)
        response.headers.update(API_VERSION_HEADER)
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorAppRunner(web.AppRunner):
    """web.AppRunner whose connections are JsonErrorRequestHandlers."""

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _JsonErrorServer(plain.request_handler, request_factory=plain.request_factory,
                                handler_cancellation=plain.handler_cancellation, loop=plain._loop, **plain._kwargs)


def run_app(app: web.Application, sock: socket.socket, ssl_context: ssl.SSLContext | None,
            **runner_kwargs: Any) -> None:
    """web.run_app for one listening socket, through JsonErrorAppRunner: the same start-up, SIGINT and
    SIGTERM handling (GracefulExit), shutdown and task cancellation."""
    loop = asyncio.new_event_loop()
    main = loop.create_task(_serve(app, sock, ssl_context, runner_kwargs))
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()  # runs runner.cleanup(): the app's shutdown and cleanup hooks
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


async def _serve(app: web.Application, sock: socket.socket, ssl_context: ssl.SSLContext | None,
                 runner_kwargs: dict[str, Any]) -> None:
    runner = JsonErrorAppRunner(app, handle_signals=True, **runner_kwargs)
    await runner.setup()
    try:
        await web.SockSite(runner, sock, ssl_context=ssl_context).start()
        await asyncio.Event().wait()  # until SIGTERM/SIGINT raise GracefulExit
    finally:
        await runner.cleanup()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler({"message": "unhandled exception during shutdown",
                                         "exception": task.exception(), "task": task})
