"""Issue 17, the HTTP edges (registry/http_edges.py), over raw sockets against a real registry process.

Before: `GET /\\r\\n\\r\\n` (HTTP/0.9) got 200; `Transfer-Encoding: gzip, chunked` was accepted (and the
body stored still gzip-encoded); 128 header fields of 16 KiB each were accepted; what aiohttp's
parser refused got a plain-text 400; and a body with `Content-Encoding: gzip` that was not gzip was
500 with a traceback (aiohttp inflated request bodies). Now each gets a 4xx (501 for a transfer
coding that is not implemented) with the spec's JSON error, nothing is stored, and the log stays
free of tracebacks (the suite's autouse fixture checks it after every test).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import RegistryProcess
from tests.test_rejected_requests import TLS_HELLO


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    with RegistryProcess(tmp_path_factory.mktemp("edges") / "data") as process:
        yield process


@dataclass
class Answer:
    version: str
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after answering

    def error_code(self) -> str:
        assert self.headers.get("content-type", "").startswith("application/json"), (self.headers, self.body[:300])
        return json.loads(self.body)["errors"][0]["code"]


def exchange(server: RegistryProcess, data: bytes, close_wait: float = 5) -> Answer:
    """Send raw bytes on a fresh connection and read one response; `closed`: the server closed the
    connection after it (within `close_wait` seconds)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        try:
            sock.sendall(data)
        except OSError:  # answered and closed before reading it all
            pass
        reader = sock.makefile("rb")
        status_line = reader.readline().decode("latin-1")
        assert status_line, "the server closed the connection without an answer"
        version, status = status_line.split(" ", 2)[:2]
        headers: dict[str, str] = {}
        while (line := reader.readline().decode("latin-1").strip()):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = reader.read(int(headers.get("content-length", "0")))
        sock.settimeout(close_wait)
        try:
            closed = reader.read(1) == b""
        except TimeoutError:
            closed = False
        except OSError:  # reset
            closed = True
    return Answer(version, int(status), headers, body, closed)


def rows(server: RegistryProcess, table: str) -> int:
    with sqlite3.connect(Path(server.data_dir) / "registry.db") as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def start_upload(server: RegistryProcess) -> str:
    resp = httpx.post(f"{server.url}/v2/edges/repo/blobs/uploads/", timeout=30)
    assert resp.status_code == 202
    return resp.headers["Location"]


def upload_offset(server: RegistryProcess, location: str) -> str:
    return httpx.get(f"{server.url}{location}", timeout=30).headers["Range"]


def assert_refused(answer: Answer, status: int, code: str = "UNSUPPORTED") -> None:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.error_code() == code
    assert answer.closed, "the connection stays open after a request whose framing is refused"


def request(method: str, path: str, headers: list[str], body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    return f"{method} {path} {version}\r\nHost: x\r\n".encode() + "".join(f"{h}\r\n" for h in headers).encode() + \
        b"\r\n" + body


CHUNKED_BODY = b"5\r\nhello\r\n0\r\n\r\n"


# -- HTTP versions and transfer codings -----------------------------------------------------------

def test_http09_is_400(server: RegistryProcess) -> None:
    answer = exchange(server, b"GET /v2/\r\n\r\n")
    assert_refused(answer, 400)
    assert b"HTTP/0.9" in answer.body


def test_gzip_then_chunked_is_501_and_opens_no_upload(server: RegistryProcess) -> None:
    before = rows(server, "uploads")
    answer = exchange(server, request("POST", "/v2/edges/repo/blobs/uploads/",
                                      ["Transfer-Encoding: gzip, chunked"], CHUNKED_BODY))
    assert_refused(answer, 501)
    assert rows(server, "uploads") == before


def test_deflate_chunked_patch_is_501_and_stages_nothing(server: RegistryProcess) -> None:
    location = start_upload(server)
    answer = exchange(server, request("PATCH", location, ["Transfer-Encoding: deflate, chunked"], CHUNKED_BODY))
    assert_refused(answer, 501)
    assert upload_offset(server, location) == "0-0"


def test_transfer_encoding_on_two_lines_is_400_and_stages_nothing(server: RegistryProcess) -> None:
    location = start_upload(server)
    answer = exchange(server, request("PATCH", location, ["Transfer-Encoding: deflate", "Transfer-Encoding: chunked"],
                                      CHUNKED_BODY))
    assert_refused(answer, 400)  # aiohttp's parser refuses a repeated Transfer-Encoding
    assert upload_offset(server, location) == "0-0"


def test_transfer_encoding_on_http10_is_400(server: RegistryProcess) -> None:
    before = rows(server, "uploads")
    answer = exchange(server, request("POST", "/v2/edges/repo/blobs/uploads/", ["Transfer-Encoding: chunked"],
                                      CHUNKED_BODY, version="HTTP/1.0"))
    assert_refused(answer, 400)
    assert rows(server, "uploads") == before


@pytest.mark.parametrize("coding", ["gzip", "chunked, chunked", "chunked, gzip"])
def test_coding_after_or_instead_of_chunked_is_400_json(server: RegistryProcess, coding: str) -> None:
    """RFC 9112 6.1: chunked must be the final coding, and only once; aiohttp's parser refuses these."""
    before = rows(server, "uploads")
    answer = exchange(server, request("POST", "/v2/edges/repo/blobs/uploads/", [f"Transfer-Encoding: {coding}"],
                                      CHUNKED_BODY))
    assert_refused(answer, 400)
    assert rows(server, "uploads") == before


def test_chunked_in_any_case_still_uploads(server: RegistryProcess) -> None:
    location = start_upload(server)
    answer = exchange(server, request("PATCH", location, ["Transfer-Encoding: Chunked", "Connection: close"],
                                      CHUNKED_BODY))
    assert answer.status == 202, answer
    assert upload_offset(server, location) == "0-4"


# -- header sizes ---------------------------------------------------------------------------------

def test_header_value_over_16_kib_is_431(server: RegistryProcess) -> None:
    assert_refused(exchange(server, request("GET", "/v2/", ["X-Big: " + "a" * 16400])), 431)


def test_request_line_over_16_kib_is_431(server: RegistryProcess) -> None:
    assert_refused(exchange(server, request("GET", "/v2/_catalog?last=" + "a" * 16400, [])), 431)


def test_more_than_128_fields_is_431(server: RegistryProcess) -> None:
    assert_refused(exchange(server, request("GET", "/v2/", [f"X-H{i}: a" for i in range(130)])), 431)


def test_128_fields_of_16_kib_are_431(server: RegistryProcess) -> None:
    """The case in issue 17: 2 MiB of header fields were accepted (each line within the 16 KiB a line)."""
    assert_refused(exchange(server, request("GET", "/v2/", [f"X-H{i}: " + "a" * 16384 for i in range(127)])), 431)


def test_head_over_64_kib_in_all_is_431_from_the_registry(server: RegistryProcess) -> None:
    """Each line far under 16 KiB, 100 KB in all: aiohttp's parser takes it, the registry refuses it."""
    before = rows(server, "uploads")
    answer = exchange(server, request("POST", "/v2/edges/repo/blobs/uploads/",
                                      [f"X-H{i}: " + "a" * 1000 for i in range(100)] + ["Content-Length: 0"]))
    assert_refused(answer, 431)
    assert answer.headers.get("x-request-id"), "refused by the registry's middleware, which sets a request id"
    assert rows(server, "uploads") == before


def test_headers_real_clients_send_still_pass(server: RegistryProcess) -> None:
    """A 12 KB bearer token (a JWT from an identity provider with many groups grows past 8 KiB) and
    60 ordinary fields: well inside both limits."""
    headers = ["Authorization: Bearer " + "t" * 12000, "Connection: close"] + [f"X-H{i}: value-{i}" for i in range(60)]
    answer = exchange(server, request("GET", "/v2/", headers))
    assert answer.status == 200, answer


# -- what aiohttp's parser refuses gets the spec's JSON -------------------------------------------

@pytest.mark.parametrize("case, data", [
    ("tls-hello", TLS_HELLO),
    ("bad-request-line", b"THIS IS NOT HTTP\r\n\r\n"),
    ("bad-header", b"GET /v2/ HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n"),
    ("content-length-and-chunked", request("POST", "/v2/edges/repo/blobs/uploads/",
                                           ["Content-Length: 5", "Transfer-Encoding: chunked"], CHUNKED_BODY)),
    ("bad-content-length", request("POST", "/v2/edges/repo/blobs/uploads/", ["Content-Length: ٥"], b"hello")),
])
def test_parser_refusals_are_json(server: RegistryProcess, case: str, data: bytes) -> None:
    before = rows(server, "uploads")
    answer = exchange(server, data)
    assert_refused(answer, 400)
    assert json.loads(answer.body)["errors"][0]["detail"]["reason"], answer.body
    assert answer.headers.get("docker-distribution-api-version") == "registry/2.0"
    assert rows(server, "uploads") == before


# -- Content-Encoding is not applied: the blob is the bytes sent -----------------------------------

def test_content_encoding_gzip_with_a_body_that_is_not_gzip_is_stored_as_sent(server: RegistryProcess) -> None:
    """Was 500 with a traceback: aiohttp tried to inflate it."""
    location = start_upload(server)
    body = b"not gzip at all"
    resp = httpx.patch(f"{server.url}{location}", content=body, timeout=30,
                       headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"})
    assert resp.status_code == 202 and resp.headers["Range"] == f"0-{len(body) - 1}"


def test_gzip_encoded_blob_is_stored_and_served_as_the_bytes_hashed(server: RegistryProcess) -> None:
    data = gzip.compress(b"layer " * 1000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    resp = httpx.post(f"{server.url}/v2/edges/gzip/blobs/uploads/", params={"digest": digest}, content=data,
                      headers={"Content-Encoding": "gzip"}, timeout=30)
    assert resp.status_code == 201, resp.text
    got = httpx.get(f"{server.url}/v2/edges/gzip/blobs/{digest}", timeout=30,
                    headers={"Accept-Encoding": "identity"})
    assert got.status_code == 200 and got.content == data


def test_server_still_serves(server: RegistryProcess) -> None:
    assert httpx.get(f"{server.url}/v2/", timeout=10).status_code == 200
