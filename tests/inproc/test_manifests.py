"""Manifests by tag and digest (PUT, GET, HEAD, DELETE), what a bad one gets, tags and catalog
pages with `n`/`last` and the Link header, and referrers with the artifactType filter."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import bcrypt
import pytest
from aiohttp import ClientResponse

from tests.inproc.conftest import MakeClient
from tests.inproc.helpers import (Client, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, descriptor, error_code, image_manifest, push_blob,
                                  push_image, put_manifest, repository_name, sha256, stored)

pytestmark = pytest.mark.asyncio

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
SIGNATURE = "application/vnd.example.signature.v1"
SBOM = "application/vnd.example.sbom.v1"


async def test_a_manifest_put_by_tag_reads_back_by_tag_and_digest(api: Client) -> None:
    name = repository_name()
    body = await image_manifest(api, name)
    digest = sha256(body)
    resp = await put_manifest(api, name, "v1", body)
    assert resp.status == 201
    assert resp.headers["Location"] == f"/v2/{name}/manifests/{digest}"
    assert resp.headers["Docker-Content-Digest"] == digest
    for reference in ("v1", digest):
        got = await api.get(f"/v2/{name}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
        assert got.status == 200, reference
        assert await got.read() == body, reference
        assert got.headers["Content-Type"] == OCI_MANIFEST, reference
        assert got.headers["Docker-Content-Digest"] == digest, reference


async def test_a_manifest_head_has_the_length_and_no_body(api: Client) -> None:
    name = repository_name()
    digest, body = await push_image(api, name, "v1")
    resp = await api.head(f"/v2/{name}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(body))
    assert resp.headers["Docker-Content-Digest"] == digest
    assert await resp.read() == b""


async def test_an_oci_manifest_by_tag_needs_a_client_that_accepts_oci(api: Client) -> None:
    name = repository_name()
    await push_image(api, name, "v1")
    resp = await api.get(f"/v2/{name}/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
    assert await error_code(resp, 404) == "MANIFEST_UNKNOWN"


async def test_deleting_a_tag_keeps_the_manifest_and_deleting_the_digest_removes_it(api: Client) -> None:
    name = repository_name()
    digest, _ = await push_image(api, name, "v1")
    assert (await api.delete(f"/v2/{name}/manifests/v1")).status == 202
    assert await error_code(await api.get(f"/v2/{name}/manifests/v1", headers={"Accept": OCI_MANIFEST}),
                            404) == "MANIFEST_UNKNOWN"
    assert (await api.head(f"/v2/{name}/manifests/{digest}")).status == 200
    assert (await api.delete(f"/v2/{name}/manifests/{digest}")).status == 202
    assert await error_code(await api.get(f"/v2/{name}/manifests/{digest}"), 404) == "MANIFEST_UNKNOWN"
    assert (await api.head(f"/v2/{name}/manifests/{digest}")).status == 404


async def test_a_manifest_naming_a_blob_not_pushed_is_refused_and_stores_nothing(api: Client) -> None:
    name = repository_name()
    config = b'{"architecture": "amd64", "os": "linux"}'
    await push_blob(api, name, config)
    document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(OCI_LAYER, b"never pushed")]}
    resp = await put_manifest(api, name, "v1", json.dumps(document).encode())
    assert await error_code(resp, 400) == "MANIFEST_BLOB_UNKNOWN"
    totals = await stored(api)
    assert (totals["manifests"], totals["tags"]) == (0, 0)


async def test_bad_manifests_get_the_spec_codes_and_store_nothing(api: Client) -> None:
    name = repository_name()
    good = await image_manifest(api, name)
    cases: list[tuple[str, bytes, str, int, str]] = [
        ("v1", b"{not json", OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("v1", b'{"schemaVersion": 2, "mediaType": "%s", "layers": []}' % OCI_MANIFEST.encode(), OCI_MANIFEST, 400,
         "MANIFEST_INVALID"),  # no config
        ("v1", good, OCI_INDEX, 400, "MANIFEST_INVALID"),  # Content-Type is not what the body is
        (sha256(b"other bytes"), good, OCI_MANIFEST, 400, "DIGEST_INVALID"),
        ("sha256:short", good, OCI_MANIFEST, 400, "DIGEST_INVALID"),
        ("-dash-first", good, OCI_MANIFEST, 400, "TAG_INVALID"),
        ("t" * 129, good, OCI_MANIFEST, 400, "TAG_INVALID"),
    ]
    for reference, body, media_type, status, code in cases:
        resp = await put_manifest(api, name, reference, body, media_type)
        assert await error_code(resp, status) == code, (reference[:20], body[:40], media_type)
    totals = await stored(api)
    assert (totals["manifests"], totals["tags"]) == (0, 0)


async def test_reading_a_reference_that_cannot_exist_is_manifest_unknown(api: Client) -> None:
    name = repository_name()
    await push_image(api, name, "v1")
    for reference in ("-dash-first", "t" * 129, "sha256:short"):
        resp = await api.get(f"/v2/{name}/manifests/{reference}")
        assert await error_code(resp, 404) == "MANIFEST_UNKNOWN", reference


async def test_a_manifest_over_the_size_limit_is_413(make_client: MakeClient) -> None:
    client = await make_client(limits_manifest_bytes="1024")
    name = repository_name()
    body = await image_manifest(client, name)
    padded = body[:-1] + b', "annotations": {"padding": "' + b"p" * 2000 + b'"}}'
    assert await error_code(await put_manifest(client, name, "v1", padded), 413) == "MANIFEST_INVALID"
    assert (await stored(client))["manifests"] == 0


async def collect_pages(client: Client, path: str, key: str) -> tuple[list[list[str]], list[str | None]]:
    """Follow the Link header from `path` to the last page: each page's names and its Link."""
    pages: list[list[str]] = []
    links: list[str | None] = []
    following: str | None = path
    while following is not None:
        resp: ClientResponse = await client.get(following)
        assert resp.status == 200, await resp.text()
        pages.append((await resp.json())[key])
        link = resp.headers.get("Link")
        links.append(link)
        following = link[1:link.index(">")] if link else None
        assert len(pages) < 10, links
    return pages, links


async def test_tags_come_in_pages_with_a_link_to_the_next(api: Client) -> None:
    name = repository_name()
    digest, body = await push_image(api, name, "a")
    for tag in ("e", "c", "b", "d"):
        assert (await put_manifest(api, name, tag, body)).status == 201
    pages, links = await collect_pages(api, f"/v2/{name}/tags/list?n=2", "tags")
    assert pages == [["a", "b"], ["c", "d"], ["e"]]
    assert links[0] == f'</v2/{name}/tags/list?n=2&last=b>; rel="next"'
    assert links[-1] is None
    resp = await api.get(f"/v2/{name}/tags/list", params={"last": "c"})
    assert (await resp.json()) == {"name": name, "tags": ["d", "e"]}
    assert (await (await api.get(f"/v2/{name}/tags/list", params={"n": "0"})).json())["tags"] == []


async def test_the_catalog_comes_in_pages_with_a_link_to_the_next(api: Client) -> None:
    names = [f"catalog/{letter}" for letter in "dbca"]
    for name in names:
        await push_image(api, name, "latest")
    pages, links = await collect_pages(api, "/v2/_catalog?n=3", "repositories")
    assert pages == [["catalog/a", "catalog/b", "catalog/c"], ["catalog/d"]]
    assert links[0] == '</v2/_catalog?n=3&last=catalog%2Fc>; rel="next"'
    everything = await (await api.get("/v2/_catalog", params={"last": "catalog/b"})).json()
    assert everything == {"repositories": ["catalog/c", "catalog/d"]}


async def test_a_filtered_catalog_is_one_page_of_visible_names_with_a_link_to_the_next(
        make_client: MakeClient, tmp_path: Path) -> None:
    """Bob may pull vis/* only: his page skips the 1,001 names before them (more than a batch), holds
    1,000 of his and links on from the last of them; the next page holds the one left."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"bob:{bcrypt.hashpw(b'bob-pw', bcrypt.gensalt(rounds=4)).decode()}\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - repositories: ['vis/*']\n    users: [bob]\n    actions: [pull]\n")
    api = await make_client(auth_mode="basic", auth_htpasswd=str(htpasswd), auth_policy_file=str(policy))
    hidden = [f"hid/r{number:04d}" for number in range(1001)]
    visible = [f"vis/r{number:04d}" for number in range(1001)]
    with sqlite3.connect(tmp_path / "data-1" / "registry.db") as db:  # the client's data dir (conftest.py)
        for number, name in enumerate(hidden + visible):
            repository_id = db.execute("INSERT INTO repositories (name, created_at) VALUES (?, 0)", (name,)).lastrowid
            db.execute("INSERT INTO manifests (repository_id, digest, media_type, payload, size, created_at) "
                       "VALUES (?, ?, ?, x'7b7d', 2, 0)", (repository_id, f"sha256:{number:064x}", OCI_MANIFEST))
    bob = {"Authorization": "Basic " + base64.b64encode(b"bob:bob-pw").decode()}
    first = await api.get("/v2/_catalog", headers=bob)
    assert (await first.json())["repositories"] == visible[:1000]
    assert first.headers["Link"] == '</v2/_catalog?n=1000&last=vis%2Fr0999>; rel="next"'
    second = await api.get("/v2/_catalog?n=1000&last=vis%2Fr0999", headers=bob)
    assert (await second.json())["repositories"] == visible[1000:]
    assert "Link" not in second.headers


async def test_bad_page_numbers_are_pagination_number_invalid(api: Client) -> None:
    name = repository_name()
    await push_image(api, name, "v1")
    for path in ("/v2/_catalog?n=abc", "/v2/_catalog?n=1234567890", f"/v2/{name}/tags/list?n=-1",
                 f"/v2/{name}/tags/list?n=%D9%A1"):  # an Arabic-Indic one
        assert await error_code(await api.get(path), 400) == "PAGINATION_NUMBER_INVALID", path


async def test_the_tags_of_an_unknown_repository_are_name_unknown(api: Client) -> None:
    assert await error_code(await api.get("/v2/never/pushed/tags/list"), 404) == "NAME_UNKNOWN"


async def test_referrers_list_the_manifests_whose_subject_it_is_filtered_by_artifact_type(api: Client) -> None:
    name = repository_name()
    subject_digest, subject_body = await push_image(api, name, "v1")
    subject = {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": len(subject_body)}
    referrers = {}
    for artifact_type in (SIGNATURE, SBOM):
        body = await image_manifest(api, name, artifact_type=artifact_type, subject=subject)
        resp = await put_manifest(api, name, sha256(body), body)
        assert resp.status == 201
        assert resp.headers["OCI-Subject"] == subject_digest
        referrers[artifact_type] = sha256(body)

    resp = await api.get(f"/v2/{name}/referrers/{subject_digest}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == OCI_INDEX
    assert "OCI-Filters-Applied" not in resp.headers
    index = await resp.json(content_type=None)
    assert index["mediaType"] == OCI_INDEX
    assert {(m["digest"], m["artifactType"]) for m in index["manifests"]} == {
        (digest, artifact_type) for artifact_type, digest in referrers.items()}

    filtered = await api.get(f"/v2/{name}/referrers/{subject_digest}", params={"artifactType": SBOM})
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in (await filtered.json(content_type=None))["manifests"]] == [referrers[SBOM]]


async def test_referrers_of_a_digest_nothing_refers_to_is_an_empty_index(api: Client) -> None:
    name = repository_name()
    await push_image(api, name, "v1")
    resp = await api.get(f"/v2/{name}/referrers/{sha256(b'nothing refers to this')}")
    assert resp.status == 200
    assert (await resp.json(content_type=None))["manifests"] == []
    bad = await api.get(f"/v2/{name}/referrers/sha256:short")
    assert await error_code(bad, 400) == "DIGEST_INVALID"
