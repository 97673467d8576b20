"""The one strict manifest reader on every path that takes a manifest in, through real processes.

Push: each kind of manifest that Go clients cannot read (or read differently) is 400 MANIFEST_INVALID
with a message naming the problem; no manifest row is written, and the tag it was pushed to keeps
pointing where it did. Inputs that used to be a 500 (a 5,000-digit number, nesting 10,000 deep) are
among them. Edge cases that are valid JSON are stored, served byte for byte, and real skopeo reads
them. Mirror fill and runtime pull refuse the same bytes from an upstream that serves them as they
are (Distribution, for one, stores a manifest with a key twice).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import httpx
import pytest

from registry.runtime.pull import Puller, PullError
from registry.runtime.store import ImageStore
from tests.support.clients import Skopeo, skopeo  # noqa: F401  (the session fixture)
from tests.support.server import RegistryProcess

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"])


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    """A repository with a real config and one layer pushed, and the manifest that names them."""
    repo: str
    config: dict[str, Any]
    layer: dict[str, Any]

    def document(self, **extra: Any) -> dict[str, Any]:
        return {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": dict(self.config),
                "layers": [dict(self.layer)], **extra}

    def body(self, **extra: Any) -> bytes:
        return json.dumps(self.document(**extra)).encode()

    def with_field(self, raw: bytes) -> bytes:
        """The manifest with one more field whose value is `raw`, written as given."""
        return self.body()[:-1] + b', "x-extra": ' + raw + b"}"


def _push_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": _sha(data)}, content=data)
    assert response.status_code == 201, response.text
    return _sha(data)


def _new_image(client: httpx.Client) -> Image:
    repo = f"strict/{uuid.uuid4().hex[:12]}"
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2026-12-06T00:00:00Z",
                         "config": {"Cmd": ["/bin/true"]}, "nonce": uuid.uuid4().hex,
                         "rootfs": {"type": "layers", "diff_ids": [_sha(b"layer-diff")]}}).encode()
    layer = uuid.uuid4().bytes * 8
    return Image(repo, {"mediaType": OCI_CONFIG, "digest": _push_blob(client, repo, config), "size": len(config)},
                 {"mediaType": OCI_LAYER, "digest": _push_blob(client, repo, layer), "size": len(layer)})


def _put(client: httpx.Client, repo: str, reference: str, body: bytes,
         media_type: str = OCI_MANIFEST) -> httpx.Response:
    return client.put(f"/v2/{repo}/manifests/{reference}", content=body, headers={"Content-Type": media_type})


def _db_count(registry: RegistryProcess, sql: str, *args: object) -> int:
    with sqlite3.connect(Path(registry.data_dir) / "registry.db") as conn:
        return conn.execute(sql, args).fetchone()[0]


def _manifest_rows(registry: RegistryProcess, repo: str) -> int:
    return _db_count(registry, "select count(*) from manifests m join repositories r on r.id = m.repository_id "
                               "where r.name = ?", repo)


# -- push: refused ---------------------------------------------------------------------------

def _replace(old: bytes, new: bytes) -> Callable[[Image], bytes]:
    def build(image: Image) -> bytes:
        body = image.body()
        assert old in body
        return body.replace(old, new, 1)
    return build


REFUSED: dict[str, tuple[Callable[[Image], bytes], str]] = {
    # not UTF-8 JSON without a byte order mark
    "utf8-bom": (lambda i: b"\xef\xbb\xbf" + i.body(), "starts with a UTF-8 byte order mark"),
    "utf16-le-bom": (lambda i: i.body().decode().encode("utf-16"), "starts with a UTF-16 LE byte order mark"),
    "utf16-be-no-bom": (lambda i: i.body().decode().encode("utf-16-be"), "is UTF-16 or UTF-32"),
    "utf32-bom": (lambda i: i.body().decode().encode("utf-32"), "starts with a UTF-32 LE byte order mark"),
    "invalid-utf8": (lambda i: i.with_field(b'"caf\xe9"'), "is not UTF-8: byte 0xe9"),
    # numbers that are not JSON, or not int64
    "nan": (lambda i: i.with_field(b"NaN"), "has NaN, which is not JSON"),
    "infinity": (lambda i: i.with_field(b"Infinity"), "has Infinity, which is not JSON"),
    "minus-infinity": (lambda i: i.with_field(b"[-Infinity]"), "has -Infinity, which is not JSON"),
    "int-above-int64": (lambda i: i.with_field(b"9223372036854775808"), "outside the 64-bit range"),
    "int-below-int64": (lambda i: i.with_field(b"-9223372036854775809"), "outside the 64-bit range"),
    "5000-digit-number": (lambda i: i.with_field(b"7" * 5000), "(5000 digits), outside the 64-bit range"),
    "float-beyond-float64": (lambda i: i.with_field(b"1e400"), "beyond the range of a 64-bit float"),
    "size-not-integer": (_replace(b'"size": ', b'"size": 1.5, "x": '), "size must be a non-negative integer"),
    "size-above-int64": (_replace(b'"size": ', b'"size": 9223372036854775808, "x": '),
                         "outside the 64-bit range"),
    "schema-version-float": (_replace(b'"schemaVersion": 2', b'"schemaVersion": 2.0'),
                             "schemaVersion must be the integer 2"),
    # strings
    "lone-high-surrogate": (lambda i: i.with_field(b'{"a": "\\ud800"}'), "has a lone surrogate \\ud800"),
    "lone-low-surrogate-key": (lambda i: i.with_field(b'{"\\udc00": "a"}'), "has a lone surrogate \\udc00"),
    # objects
    "duplicate-top-level-key": (lambda i: i.body()[:-1] + b', "layers": []}', 'has the key "layers" twice'),
    "duplicate-annotation": (lambda i: i.body()[:-1] + b', "annotations": {"a": "1", "a": "2"}}',
                             'has the key "a" twice'),
    "duplicate-key-in-descriptor": (_replace(b'"size": ', b'"size": 1, "size": '), 'has the key "size" twice'),
    "key-differs-only-in-case": (_replace(b'"layers"', b'"Layers"'),
                                 'key "Layers" differs from "layers" only in case'),
    # nesting
    "nested-65": (lambda i: i.with_field(b"[" * 64 + b"]" * 64), "nests deeper than 64 levels"),
    "nested-10000": (lambda i: i.with_field(b"[" * 10_000 + b"]" * 10_000), "nests deeper than 64 levels"),
}


@pytest.fixture
def image(client: httpx.Client) -> Image:
    return _new_image(client)


@pytest.mark.parametrize("case", list(REFUSED))
def test_push_is_refused_and_stores_nothing(client: httpx.Client, registry: RegistryProcess, image: Image,
                                            case: str) -> None:
    build, words = REFUSED[case]
    good = image.body()
    assert _put(client, image.repo, "keep", good).status_code == 201
    rows_before = _manifest_rows(registry, image.repo)
    body = build(image)

    for reference in ("keep", _sha(body)):  # by tag (which must not move) and by digest
        response = _put(client, image.repo, reference, body)
        assert response.status_code == 400, (case, response.status_code, response.text[:300])
        error = response.json()["errors"][0]
        assert error["code"] == "MANIFEST_INVALID", error
        assert words in error["message"], error
        assert len(response.content) < 2000  # the offending input is named, never echoed whole

    assert _manifest_rows(registry, image.repo) == rows_before
    assert _db_count(registry, "select count(*) from manifests where digest = ?", _sha(body)) == 0
    kept = client.get(f"/v2/{image.repo}/manifests/keep", headers={"Accept": ACCEPT})
    assert kept.status_code == 200 and kept.content == good
    assert kept.headers["Docker-Content-Digest"] == _sha(good)
    assert client.get(f"/v2/{image.repo}/manifests/{_sha(body)}", headers={"Accept": ACCEPT}).status_code == 404


def test_index_with_a_duplicate_key_is_refused(client: httpx.Client, registry: RegistryProcess,
                                               image: Image) -> None:
    child = image.body()
    assert _put(client, image.repo, _sha(child), child).status_code == 201
    entry = json.dumps({"mediaType": OCI_MANIFEST, "digest": _sha(child), "size": len(child),
                        "platform": {"os": "linux", "architecture": "amd64"}})
    body = (b'{"schemaVersion": 2, "mediaType": "' + OCI_INDEX.encode() + b'", "manifests": ['
            + entry.replace('"os": "linux"', '"os": "linux", "os": "windows"').encode() + b"]}")
    response = _put(client, image.repo, "multi", body, OCI_INDEX)
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "MANIFEST_INVALID"
    assert 'has the key "os" twice' in response.json()["errors"][0]["message"]
    assert _db_count(registry, "select count(*) from manifests where digest = ?", _sha(body)) == 0


# -- push: accepted edge cases, served unchanged, read by skopeo -------------------------------

def _whitespace(image: Image) -> bytes:
    return (b" \r\n\t{ \"schemaVersion\" :\t2 ,\r\n \"mediaType\":\"" + OCI_MANIFEST.encode() + b"\" ,\n"
            + b'"config" : ' + json.dumps(image.config, indent="\t").encode() + b" ,  "
            + b'"layers":[ ' + json.dumps(image.layer, separators=(" , ", " : ")).encode() + b" ]\t}\r\n  ")


def _unicode_escapes(image: Image) -> bytes:
    annotations = (b'{"org.example.escaped": "caf\\u00e9 \\u2615 \\ud83d\\ude00 \\/ \\" \\\\ \\u0000 \\b\\f\\n\\r\\t",'
                   b' "org.example.raw": "' + "café ☕ 😀 中文".encode() + b'",'
                   b' "\\u006fr\\u0067.example.escaped-key": "x"}')
    return image.body()[:-1] + b', "annotations": ' + annotations + b"}"


def _large_annotations(image: Image) -> bytes:
    annotations = {f"org.example.note.{i}": ("annotation " * 100)[: 1000] + str(i) for i in range(1000)}
    return image.body(annotations=annotations)


def _at_the_bounds(image: Image) -> bytes:
    # The manifest is level 1: a field may hold 63 levels more. int64's ends, float64's range.
    return image.with_field(b'{"deep": ' + b"[" * 62 + b"]" * 62 + b', "max": 9223372036854775807, '
                            b'"min": -9223372036854775808, "big": 1.7976931348623157e308, "tiny": 5e-324, '
                            b'"under": 1e-400, "zero": -0, "float": -0.0, "many": [' + b", ".join([b"{}"] * 2000)
                            + b"]}")


ACCEPTED: dict[str, Callable[[Image], bytes]] = {
    "whitespace": _whitespace, "unicode-escapes": _unicode_escapes, "large-annotations": _large_annotations,
    "at-the-bounds": _at_the_bounds,
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_valid_edge_cases_are_stored_unchanged_and_skopeo_reads_them(
        client: httpx.Client, registry: RegistryProcess, image: Image, skopeo: Skopeo, case: str) -> None:
    body = ACCEPTED[case](image)
    response = _put(client, image.repo, case, body)
    assert response.status_code == 201, response.text[:300]
    assert response.headers["Docker-Content-Digest"] == _sha(body)
    for reference in (case, _sha(body)):
        served = client.get(f"/v2/{image.repo}/manifests/{reference}", headers={"Accept": ACCEPT})
        assert served.status_code == 200 and served.content == body

    ref = f"docker://{registry.host}/{image.repo}:{case}"
    raw = skopeo("inspect", "--tls-verify=false", "--raw", ref, text=False).stdout
    assert raw == body, (raw[:200], body[:200])
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", ref).stdout)  # Go parses manifest and config
    assert inspected["Digest"] == _sha(body)
    assert inspected["Layers"] == [image.layer["digest"]]
    assert inspected["Architecture"] == "amd64" and inspected["Os"] == "linux"


# -- mirror fill and runtime pull: an upstream that serves what it was given -------------------

class _Upstream(BaseHTTPRequestHandler):
    manifests: dict[str, tuple[bytes, str]] = {}  # "repo:tag" and "repo@digest" -> (bytes, media type)

    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        path = self.path.split("?")[0]
        if path == "/v2/":
            return self._send(200, b"{}", "application/json", body)
        repo, _, reference = path[len("/v2/"):].rpartition("/manifests/")
        found = self.manifests.get(f"{repo}@{reference}" if ":" in reference else f"{repo}:{reference}")
        if not path.startswith("/v2/") or found is None:
            return self._send(404, b'{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]}',
                              "application/json", body)
        self._send(200, found[0], found[1], body, {"Docker-Content-Digest": _sha(found[0])})

    def _send(self, status: int, payload: bytes, media_type: str, body: bool,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": media_type, "Content-Length": str(len(payload)),
                            "Docker-Distribution-Api-Version": "registry/2.0", **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@dataclass
class Upstream:
    host: str

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def serve(self, repo: str, tag: str, payload: bytes, media_type: str = OCI_MANIFEST) -> None:
        _Upstream.manifests[f"{repo}:{tag}"] = _Upstream.manifests[f"{repo}@{_sha(payload)}"] = (payload, media_type)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Upstream(f"127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def mirror(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    env = {"REGISTRY_MIRROR_UPSTREAMS": json.dumps([{"alias": "up", "url": upstream.url}])}
    with RegistryProcess(tmp_path_factory.mktemp("strict-mirror") / "data", env=env) as server:
        yield server


def _upstream_body(extra: bytes = b"") -> bytes:
    config = {"mediaType": OCI_CONFIG, "digest": _sha(b"no such config " + uuid.uuid4().bytes), "size": 10}
    return (b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'", "config": '
            + json.dumps(config).encode() + b', "layers": []' + extra + b"}")


def test_mirror_refuses_what_the_reader_refuses_and_caches_nothing(upstream: Upstream,
                                                                   mirror: RegistryProcess) -> None:
    good, duplicate = _upstream_body(), _upstream_body(b', "layers": []')
    upstream.serve("lib/good", "v1", good)
    upstream.serve("lib/dup", "v1", duplicate)
    with httpx.Client(base_url=mirror.url, timeout=60, headers={"Accept": ACCEPT}) as client:
        served = client.get("/v2/up/lib/good/manifests/v1")
        assert served.status_code == 200 and served.content == good  # the upstream is wired right
        for reference in ("v1", _sha(duplicate)):
            refused = client.get(f"/v2/up/lib/dup/manifests/{reference}")
            assert refused.status_code == 502, refused.text
            error = refused.json()["errors"][0]
            assert error["code"] == "UNAVAILABLE" and "refuses" in error["message"], error
            assert 'has the key "layers" twice' in error["message"], error
    assert _db_count(mirror, "select count(*) from manifests where digest = ?", _sha(duplicate)) == 0
    assert _db_count(mirror, "select count(*) from manifests where digest = ?", _sha(good)) == 1


@pytest.mark.parametrize("extra, words", [(b', "layers": []', 'has the key "layers" twice'),
                                          (b', "x": ' + b"[" * 10_000 + b"]" * 10_000, "nests deeper than 64")])
def test_runtime_pull_refuses_what_the_reader_refuses(upstream: Upstream, tmp_path: Path, extra: bytes,
                                                      words: str) -> None:
    repo = f"lib/pull-{uuid.uuid4().hex[:8]}"
    upstream.serve(repo, "v1", _upstream_body(extra))
    puller = Puller(ImageStore(tmp_path / "store"), mirrors=[])
    with pytest.raises(PullError) as caught:
        asyncio.run(puller.pull(f"{upstream.host}/{repo}:v1"))
    assert "MANIFEST_INVALID" in str(caught.value) and words in str(caught.value)
    assert not list((tmp_path / "store" / "images").iterdir())
