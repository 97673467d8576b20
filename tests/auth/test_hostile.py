"""Hostile input: traversal in names and references, huge headers, stalled and oversized bodies,
request floods and password guessing. Each gets a 4xx (never a 500), nothing is created, and the
server keeps serving everyone else.

Paths go out through http.client or a bare socket: httpx would normalise `..` away.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import aiohttp
import httpx
import pytest

from tests.auth.conftest import (
    OCI_MANIFEST,
    OTHER_ADDRESS,
    AuthRegistry,
    RawResponse,
    Store,
    basic,
    connect,
    describe,
    error_codes,
    make_image,
    peak_rss,
    raw_request,
    read_response,
    request_token,
    reset_peak_rss,
    scope,
    secret,
    sha256,
    write_htpasswd,
)

BODY_TIMEOUT = 2  # --limits-body-timeout of the `plain` registry
ABORT_WITHIN = BODY_TIMEOUT + 4  # "within a few seconds", with room for a loaded machine


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    """Mode none (loopback may push), so hostile names reach the handlers; short body timeout."""
    root = tmp_path_factory.mktemp("hostile")
    with AuthRegistry(root / "data", args=["--limits-body-timeout", str(BODY_TIMEOUT)]) as server:
        yield server


def assert_serving(server: AuthRegistry) -> None:
    with server.client(timeout=10) as client:
        response = client.get("/v2/")
        assert response.status_code == 200, describe(response, server)


# -- traversal and encoded slashes ---------------------------------------------------------------

MANIFEST = make_image("hostile").manifest
BLOB = b"hostile blob " + uuid.uuid4().bytes
VALID_DIGEST = sha256(BLOB)

# (method, path, body) -> expected code (always 400 but for unknown upload sessions)
NAMES = [
    ("GET", "/v2/../../etc/passwd/manifests/latest", None),
    ("GET", "/v2/a/../../b/manifests/latest", None),
    ("GET", "/v2/a/../b/tags/list", None),
    ("GET", "/v2/a/%2e%2e/b/manifests/latest", None),
    ("GET", "/v2/a/%2E%2E/%2E%2E/pwned/tags/list", None),
    ("GET", "/v2/a%2fb/manifests/latest", None),
    ("GET", "/v2/a%2F..%2F..%2Fpwned/tags/list", None),
    ("GET", "/v2/a/./b/tags/list", None),
    ("GET", "/v2//etc/tags/list", None),
    ("GET", "/v2/a%00b/tags/list", None),
    ("GET", "/v2/a\\..\\pwned/tags/list", None),
    ("GET", "/v2/" + "a" * 300 + "/tags/list", None),
    ("POST", "/v2/a/../../../pwned/blobs/uploads/", None),
    ("POST", "/v2/..%2f..%2fpwned/blobs/uploads/", None),
    ("POST", f"/v2/%2e%2e/%2e%2e/pwned/blobs/uploads/?digest={VALID_DIGEST}", BLOB),
    ("PUT", "/v2/../pwned/manifests/latest", MANIFEST),
    ("PUT", "/v2/a%2f..%2fpwned/manifests/latest", MANIFEST),
    ("DELETE", "/v2/../pwned/manifests/latest", None),
    ("GET", f"/v2/../pwned/blobs/{VALID_DIGEST}", None),
    ("POST", f"/v2/ok/name/blobs/uploads/?mount={VALID_DIGEST}&from=..%2F..%2Fetc", None),
    ("POST", f"/v2/ok/name/blobs/uploads/?mount={VALID_DIGEST}&from=../../etc", None),
]
TAGS = [  # storing under an invalid tag is the client's error
    ("PUT", "/v2/ok/name/manifests/..", MANIFEST),
    ("PUT", "/v2/ok/name/manifests/%2e%2e", MANIFEST),
    ("PUT", "/v2/ok/name/manifests/.hidden", MANIFEST),
    ("PUT", "/v2/ok/name/manifests/..%5c..%5cpwned", MANIFEST),
    # An encoded slash in the tag: the name is fine, the tag is not.
    ("PUT", "/v2/ok/name/manifests/..%2f..%2fpwned", MANIFEST),
]
UNKNOWN_REFERENCES = [  # reading or deleting by a reference nothing can have: 404, as Distribution
    ("GET", "/v2/ok/name/manifests/..", None),
    ("DELETE", "/v2/ok/name/manifests/..", None),
    ("GET", "/v2/ok/name/manifests/" + "t" * 129, None),
    ("GET", "/v2/ok/name/manifests/..%2F..%2Fetc%2Fpasswd", None),
    ("GET", "/v2/ok/name/manifests/sha256:..", None),
    ("GET", "/v2/ok/name/manifests/sha256:" + "a" * 63, None),
]
DIGESTS = [
    ("GET", "/v2/ok/name/blobs/sha256:..", None),
    ("GET", "/v2/ok/name/blobs/sha256:%2e%2e", None),
    ("GET", "/v2/ok/name/blobs/..", None),
    ("GET", "/v2/ok/name/blobs/sha256:%2e%2e%5c%2e%2e%5cetc", None),
    ("DELETE", "/v2/ok/name/blobs/sha256:..", None),
    ("GET", "/v2/ok/name/referrers/sha256:..", None),
    ("POST", "/v2/ok/name/blobs/uploads/?digest=sha256:..%2F..%2Fpwned", BLOB),
    ("POST", "/v2/ok/name/blobs/uploads/?digest=sha256:../../pwned", BLOB),
    ("POST", "/v2/ok/name/blobs/uploads/?mount=sha256:..%2F..%2Fpwned&from=ok/other", None),
    # An encoded slash in the digest: the name is fine, the digest is not.
    ("GET", "/v2/ok/name/blobs/sha256:..%2f..%2fetc%2fpasswd", None),
    ("DELETE", "/v2/ok/name/manifests/sha256:..%2F..%2Fpwned", None),
]
UPLOAD_IDS = [  # unknown sessions, whatever the id looks like: 404, and no file touched
    ("PATCH", "/v2/ok/name/blobs/uploads/..", BLOB),
    ("PATCH", "/v2/ok/name/blobs/uploads/%2e%2e", BLOB),
    ("PUT", f"/v2/ok/name/blobs/uploads/..?digest={VALID_DIGEST}", BLOB),
    ("GET", "/v2/ok/name/blobs/uploads/%2e%2e%5c%2e%2e", None),
    ("DELETE", "/v2/ok/name/blobs/uploads/..", None),
    ("PATCH", "/v2/ok/name/blobs/uploads/%2e%2e%2f%2e%2e%2fpwned", BLOB),
]
CASES = ([(*case, 400, "NAME_INVALID") for case in NAMES] + [(*case, 400, "TAG_INVALID") for case in TAGS]
         + [(*case, 400, "DIGEST_INVALID") for case in DIGESTS]
         + [(*case, 404, "MANIFEST_UNKNOWN") for case in UNKNOWN_REFERENCES]
         + [(*case, 404, "BLOB_UPLOAD_UNKNOWN") for case in UPLOAD_IDS])


@pytest.mark.parametrize("method,path,body,status,code", CASES,
                         ids=[f"{c[0]} {c[1][:70]}" for c in CASES])
def test_traversal_and_encoded_slashes_are_refused_and_create_nothing(
        plain: AuthRegistry, method: str, path: str, body: bytes | None, status: int, code: str) -> None:
    store = Store(plain.data_dir)
    before = store.snapshot()
    headers = {"Content-Type": OCI_MANIFEST if "/manifests/" in path else "application/octet-stream"}
    response = raw_request(plain, method, path, headers=headers, body=body)
    detail = f"{method} {path} -> {response.status} {response.body[:300]!r}"
    assert response.status < 500, detail
    assert response.status == status and response.codes == [code], detail
    assert store.snapshot() == before, f"{detail}: the data directory changed"
    assert not list(plain.data_dir.parent.rglob("*pwned*")), detail


def test_a_session_cannot_be_finished_with_a_traversal_digest(plain: AuthRegistry) -> None:
    with plain.client() as client:
        location = client.post("/v2/ok/session/blobs/uploads/").headers["location"]
    store = Store(plain.data_dir)
    before = store.snapshot()
    for digest in ("sha256:../../../pwned", "sha256:..%2F..%2Fpwned", "../../pwned"):
        response = raw_request(plain, "PUT", f"{location}?digest={digest}", body=BLOB,
                               headers={"Content-Type": "application/octet-stream"})
        detail = f"PUT {location}?digest={digest} -> {response.status} {response.body[:300]!r}"
        assert response.status == 400 and response.codes == ["DIGEST_INVALID"], detail
    after = store.snapshot()
    assert {k: v for k, v in after.items() if k != "files"} == {k: v for k, v in before.items() if k != "files"}
    assert [f for f in after["files"] if f.startswith("blobs/")] == [f for f in before["files"] if f.startswith("blobs/")]
    assert not list(plain.data_dir.parent.rglob("*pwned*"))


# -- headers -------------------------------------------------------------------------------------

def _raw_status(server: AuthRegistry, request: bytes) -> int | None:
    with connect(server, timeout=10) as sock:
        try:
            sock.sendall(request)
        except ConnectionError:
            pass  # the server may hang up before reading everything; its answer is still there
        response = read_response(sock, time.monotonic() + 10)
    return response.status if response else None


@pytest.mark.parametrize("what", ["header-value", "request-line", "authorization"])
def test_huge_header_is_refused_and_the_server_keeps_serving(plain: AuthRegistry, what: str) -> None:
    big = "a" * 65536
    if what == "header-value":
        request = f"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"
    elif what == "request-line":
        request = f"GET /v2/{big}/tags/list HTTP/1.1\r\nHost: x\r\n\r\n"
    else:
        request = f"GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {big}\r\n\r\n"
    started = time.monotonic()
    status = _raw_status(plain, request.encode())
    assert status in (400, 413, 414, 431), f"{what}: {status}"
    assert time.monotonic() - started < 5
    assert_serving(plain)
    # Below the limit (--limits-header-bytes, 16 KiB by default) a long header is fine.
    assert _raw_status(plain, f"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Pad: {'p' * 12000}\r\n\r\n".encode()) == 200


# -- stalled bodies ------------------------------------------------------------------------------

def _stall(server: AuthRegistry, head: str, first: bytes, wait: float) -> tuple[float, RawResponse | None]:
    """Send the head and the first bytes of a body, then nothing: how long until the server gives up?"""
    with connect(server, timeout=wait) as sock:
        started = time.monotonic()
        sock.sendall(head.encode() + first)
        response = read_response(sock, started + wait)  # None: closed without an answer, or still waiting
        return time.monotonic() - started, response


def _assert_cut_off(elapsed: float, response: RawResponse | None, what: str, server: AuthRegistry) -> None:
    assert elapsed < ABORT_WITHIN and (response is None or response.status in (400, 408, 413)), (
        f"{what}: still waiting for the body after {elapsed:.1f}s (--limits-body-timeout {BODY_TIMEOUT}); "
        f"response: {response}\n--- server log tail\n{server.log_tail(10)}")
    if response is not None:
        assert response.codes, response


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_stalled_patch_is_cut_off_and_the_session_stays_consistent(plain: AuthRegistry, framing: str) -> None:
    repo = f"slow/{framing}"
    first_chunk = b"1" * 1000
    with plain.client() as client:
        location = client.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
        response = client.patch(location, content=first_chunk, headers={"Content-Range": "0-999"})
        assert response.status_code == 202 and response.headers["range"] == "0-999", describe(response, plain)

        if framing == "content-length":
            framing_headers = "Content-Length: 1000000\r\nContent-Range: 1000-1000999\r\n"
            first = b"2"
        else:
            framing_headers = "Transfer-Encoding: chunked\r\n"
            first = b"1\r\n2\r\n"
        head = (f"PATCH {location} HTTP/1.1\r\nHost: {plain.host}\r\nContent-Type: application/octet-stream\r\n"
                f"{framing_headers}\r\n")
        elapsed, stalled = _stall(plain, head, first, wait=ABORT_WITHIN + 0.5)
        _assert_cut_off(elapsed, stalled, f"PATCH ({framing})", plain)

        # The session is where the last complete chunk left it (or one byte on, if kept), and resumes.
        status = client.get(location)
        assert status.status_code == 204, describe(status, plain)
        assert status.headers["range"] in ("0-999", "0-1000"), status.headers
        offset = int(status.headers["range"].split("-")[1]) + 1
        data = first_chunk + b"2" * (offset - 1000)
        rest = b"3" * 5000
        response = client.patch(location, content=rest,
                                headers={"Content-Range": f"{offset}-{offset + len(rest) - 1}"})
        assert response.status_code == 202, describe(response, plain)
        data += rest
        response = client.put(location, params={"digest": sha256(data)})
        assert response.status_code == 201, describe(response, plain)
        blob = client.get(f"/v2/{repo}/blobs/{sha256(data)}")
        assert blob.status_code == 200 and blob.content == data
        assert Store(plain.data_dir).uploads(repo) == 0


def test_stalled_monolithic_upload_is_cut_off_and_stores_nothing(plain: AuthRegistry) -> None:
    data = b"never finished " + uuid.uuid4().bytes
    head = (f"POST /v2/slow/monolithic/blobs/uploads/?digest={sha256(data)} HTTP/1.1\r\nHost: {plain.host}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n")
    elapsed, response = _stall(plain, head, data[:5], wait=ABORT_WITHIN + 0.5)
    _assert_cut_off(elapsed, response, "monolithic POST", plain)
    store = Store(plain.data_dir)
    assert not store.blob_known(sha256(data)) and not store.blob_file(sha256(data)).exists()
    assert_serving(plain)


def test_stalled_manifest_body_is_cut_off(plain: AuthRegistry) -> None:
    """limits.body_timeout: "a stalled body is cut off" — manifests are request bodies too."""
    head = (f"PUT /v2/slow/manifest/manifests/stalled HTTP/1.1\r\nHost: {plain.host}\r\n"
            f"Content-Type: {OCI_MANIFEST}\r\nContent-Length: {len(MANIFEST)}\r\n\r\n")
    elapsed, response = _stall(plain, head, MANIFEST[:1], wait=ABORT_WITHIN + 0.5)
    _assert_cut_off(elapsed, response, "manifest PUT", plain)
    assert "stalled" not in Store(plain.data_dir).tags("slow/manifest")


# -- a 100 MiB "manifest" ------------------------------------------------------------------------

HUGE = 100 * 1024 * 1024


def _send_huge_manifest(server: AuthRegistry, chunked: bool) -> tuple[float, RawResponse | None, int]:
    """Stream 100 MiB at the manifest endpoint from a thread; return when the server answers."""
    sock = connect(server, timeout=30)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {HUGE}"
    sock.sendall(f"PUT /v2/huge/manifest/manifests/big HTTP/1.1\r\nHost: {server.host}\r\n"
                 f"Content-Type: {OCI_MANIFEST}\r\n{framing}\r\n\r\n".encode())
    sent = [0]
    block = b"{" + b" " * (1024 * 1024 - 1)  # one 1 MiB block, sent 100 times

    def send() -> None:
        try:
            while sent[0] < HUGE:
                sock.sendall(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
                sent[0] += len(block)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server stopped reading and hung up: expected

    sender = threading.Thread(target=send, daemon=True)
    started = time.monotonic()
    sender.start()
    try:
        response = read_response(sock, started + 30)
        return time.monotonic() - started, response, sent[0]
    finally:
        sock.close()
        sender.join(10)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_100mib_manifest_is_refused_quickly_without_buffering(plain: AuthRegistry, framing: str) -> None:
    assert_serving(plain)
    reset_peak_rss(plain.pid)
    base = peak_rss(plain.pid)
    elapsed, response, sent = _send_huge_manifest(plain, chunked=framing == "chunked")
    assert response is not None, f"no answer; {sent} bytes sent\n{plain.log_tail(10)}"
    assert response.status == 413 and response.codes == ["MANIFEST_INVALID"], (response.status, response.body)
    assert elapsed < 5, f"413 after {elapsed:.1f}s"
    grown = peak_rss(plain.pid) - base
    assert grown < 32 * 1024 * 1024, f"server peak RSS grew by {grown / 2**20:.0f} MiB over a 100 MiB manifest"
    assert_serving(plain)
    store = Store(plain.data_dir)
    assert "big" not in store.tags("huge/manifest")
    assert store.query("select count(*) from manifests where size > ?", 4 * 1024 * 1024)[0][0] == 0


# -- a flood from one client ---------------------------------------------------------------------

FLOOD = 10_000


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    root = tmp_path_factory.mktemp("rate")
    with AuthRegistry(root / "data", args=["--limits-rate", "100", "--limits-burst", "200"]) as server:
        yield server


async def _flood(url: str, count: int) -> tuple[Counter, list[str], list[str], float]:
    statuses: Counter = Counter()
    retry_after: list[str] = []
    codes: list[str] = []
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one() -> None:
            async with session.get(url) as response:
                body = await response.read()
                statuses[response.status] += 1
                if response.status == 429:
                    retry_after.append(response.headers.get("Retry-After", ""))
                    codes.extend(e["code"] for e in json.loads(body)["errors"])

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(count)))
        return statuses, retry_after, codes, time.monotonic() - started


def test_flood_from_one_client_gets_429_while_another_client_is_served(limited: AuthRegistry) -> None:
    other: list[tuple[int, float]] = []
    done = threading.Event()

    def other_client() -> None:
        with limited.client(local_address=OTHER_ADDRESS, timeout=10) as client:
            while not done.is_set():
                started = time.monotonic()
                response = client.get("/v2/")
                other.append((response.status_code, time.monotonic() - started))
                time.sleep(0.05)

    thread = threading.Thread(target=other_client)
    thread.start()
    try:
        statuses, retry_after, codes, elapsed = asyncio.run(_flood(f"{limited.url}/v2/", FLOOD))
    finally:
        done.set()
        thread.join(15)

    assert sum(statuses.values()) == FLOOD and set(statuses) <= {200, 429}, statuses
    # A token bucket of 200 refilled at 100/s lets at most 200 + 100 * elapsed through.
    assert statuses[200] <= 200 + 100 * (elapsed + 1), (statuses, elapsed)
    assert statuses[429] > FLOOD // 2, statuses
    assert all(value.isdigit() and 1 <= int(value) <= 60 for value in retry_after), Counter(retry_after)
    assert set(codes) == {"TOOMANYREQUESTS"}
    # The other address was never limited, and was answered promptly during the flood.
    assert len(other) >= 5, other
    assert [status for status, _ in other] == [200] * len(other), Counter(s for s, _ in other)
    # After Retry-After the flooding client is served again.
    time.sleep(max(int(v) for v in retry_after))
    with limited.client() as client:
        response = client.get("/v2/")
        assert response.status_code == 200, describe(response, limited)


# -- password guessing ---------------------------------------------------------------------------

GUESS_USERS = {name: secret(name) for name in ("victim", "bystander", "mixed", "resets", "formuser")}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    """Token mode with --auth-failed-login-limit 3; htpasswd users (cheap bcrypt: many wrong guesses)."""
    root = tmp_path_factory.mktemp("logins")
    htpasswd = write_htpasswd(root / "htpasswd", GUESS_USERS)
    args = ["--auth-mode", "token", "--auth-htpasswd", str(htpasswd), "--auth-failed-login-limit", "3",
            "--limits-body-timeout", str(BODY_TIMEOUT)]
    with AuthRegistry(root / "data", args=args) as server:
        yield server


def _login(client: httpx.Client, user: str, password: str) -> httpx.Response:
    return request_token(client, user, password, [scope("team/app", "pull")])


def _assert_throttled(response: httpx.Response, server: AuthRegistry) -> None:
    assert response.status_code == 429, describe(response, server)
    assert error_codes(response) == ["TOOMANYREQUESTS"]
    retry = response.headers.get("retry-after", "")
    assert retry.isdigit() and 1 <= int(retry) <= 61, response.headers


def test_fourth_wrong_password_is_429_and_others_are_unaffected(guarded: AuthRegistry) -> None:
    victim = "victim"
    with guarded.client() as client, guarded.client(local_address=OTHER_ADDRESS) as elsewhere:
        for attempt in range(3):
            response = _login(client, victim, secret("guess"))
            assert response.status_code == 401, f"attempt {attempt + 1}: {describe(response, guarded)}"
        _assert_throttled(_login(client, victim, secret("guess")), guarded)
        # Locked for this client and user, even with the right password (no oracle for the guesser).
        _assert_throttled(_login(client, victim, GUESS_USERS[victim]), guarded)
        _assert_throttled(client.get("/v2/", headers=basic(victim, GUESS_USERS[victim])), guarded)
        # Another user from the same address: normal answers.
        assert _login(client, "bystander", secret("typo")).status_code == 401
        assert _login(client, "bystander", GUESS_USERS["bystander"]).status_code == 200
        # The same user from another address: normal answers.
        assert _login(elsewhere, victim, GUESS_USERS[victim]).status_code == 200
        assert elsewhere.get("/v2/", headers=basic(victim, GUESS_USERS[victim])).status_code == 200


def test_failed_logins_count_across_endpoints(guarded: AuthRegistry) -> None:
    user = "mixed"
    with guarded.client() as client:
        assert client.get("/v2/", headers=basic(user, secret("guess"))).status_code == 401
        assert _login(client, user, secret("guess")).status_code == 401
        response = client.post("/auth/token", data={"grant_type": "password", "username": user,
                                                    "password": secret("guess"), "service": "registry"})
        assert response.status_code == 401, describe(response, guarded)
        response = client.post("/auth/token", data={"grant_type": "password", "username": user,
                                                    "password": secret("guess"), "service": "registry"})
        _assert_throttled(response, guarded)
        _assert_throttled(client.get("/v2/", headers=basic(user, GUESS_USERS[user])), guarded)


def test_a_successful_login_resets_the_count(guarded: AuthRegistry) -> None:
    user = "resets"
    with guarded.client() as client:
        for _ in range(2):
            assert _login(client, user, secret("typo")).status_code == 401
        assert _login(client, user, GUESS_USERS[user]).status_code == 200
        for _ in range(3):
            assert _login(client, user, secret("typo")).status_code == 401
        _assert_throttled(_login(client, user, secret("typo")), guarded)


def test_stalled_token_form_is_cut_off(guarded: AuthRegistry) -> None:
    """The OAuth2 POST form is a request body too: a stalled one must not hold the request open."""
    form = f"grant_type=password&username=formuser&password={GUESS_USERS['formuser']}&service=registry"
    head = (f"POST /auth/token HTTP/1.1\r\nHost: {guarded.host}\r\nContent-Type: application/x-www-form-urlencoded"
            f"\r\nContent-Length: {len(form)}\r\n\r\n")
    elapsed, response = _stall(guarded, head, form[:10].encode(), wait=ABORT_WITHIN + 0.5)
    _assert_cut_off(elapsed, response, "POST /auth/token", guarded)
