"""Immutable tags over HTTP, on SQLite + filesystem and on PostgreSQL + S3 (registry/gc/immutable.py).

A tag an immutable rule holds, once pushed, is not moved (403 DENIED naming the rule, and nothing
changes: the tag resolves to its first manifest, the refused one is not stored) nor deleted (by tag,
by its manifest's digest, or with its repository); the same manifest pushed again is fine, and a
mutable tag beside it moves. Rules come from the configuration and from the admin API; an admin
rule applies at once, in this process and in another sharing the database, and stops when deleted.
Retention spares held tags; gc keeps what they hold. A mirror's cache follows its upstream.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from tests.api.helpers import (OCI_MANIFEST, assert_error, image_manifest, push_image, push_index, push_manifest,
                               put_manifest, sha256, unique_tag)
from tests.support.backends import SETUPS, postgres_s3_registry
from tests.support.mirror import push_image as push_upstream_image
from tests.support.mirror import small_image
from tests.support.server import RegistryProcess

RULES = [{"repositories": "prod/**", "tags": "v*"}, {"repositories": "ret/**", "tags": "v1.*"}]
CONFIG_RULE = "rule: repositories prod/**, tags v*"
SETTINGS = {"REGISTRY_IMMUTABLE_TAGS": json.dumps(RULES),
            "REGISTRY_RETENTION_POLICIES": json.dumps([{"repositories": "ret/*", "keep_last": 0}]),
            "REGISTRY_GC_GRACE_PERIOD": "0"}


@pytest.fixture(scope="module", params=SETUPS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    root = tmp_path_factory.mktemp("immutable-" + request.param.replace("+", "-"))
    if request.param == "sqlite+filesystem":
        process = RegistryProcess(root / "data", env=SETTINGS)
    else:
        process = postgres_s3_registry(root / "data", request.getfixturevalue("postgres"),
                                       request.getfixturevalue("swift_s3"), env=SETTINGS)
    with process:
        yield process


@pytest.fixture
def http(server: RegistryProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def resolve(http: httpx.Client, repository: str, tag: str) -> str | None:
    response = http.get(f"/v2/{repository}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    return response.headers["Docker-Content-Digest"] if response.status_code == 200 else None


def denial(response: httpx.Response) -> str:
    assert_error(response, 403, "DENIED")
    return response.json()["errors"][0]["message"]


def new_repository(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


def test_a_held_tag_is_not_moved_and_a_mutable_one_beside_it_is(http: httpx.Client) -> None:
    repository = new_repository("prod")
    first, _ = image_manifest(http, repository)
    second, _ = image_manifest(http, repository)
    push_manifest(http, repository, "v1.0", first)

    message = denial(put_manifest(http, repository, "v1.0", second))
    assert message == f"tag v1.0 in {repository} is immutable ({CONFIG_RULE})"
    assert resolve(http, repository, "v1.0") == sha256(first)
    assert http.get(f"/v2/{repository}/manifests/{sha256(second)}").status_code == 404  # nothing stored
    assert http.get(f"/v2/{repository}/tags/list").json()["tags"] == ["v1.0"]

    push_manifest(http, repository, "v1.0", first)  # the same manifest again (docker does): fine
    assert resolve(http, repository, "v1.0") == sha256(first)

    for tag in ("latest", "release-1"):  # beside it, tags no rule holds move
        push_manifest(http, repository, tag, first)
        push_manifest(http, repository, tag, second)
        assert resolve(http, repository, tag) == sha256(second)
    # By digest, the refused manifest can be pushed: it is a tag that may not move.
    push_manifest(http, repository, sha256(second), second)


def test_path_globs_decide_which_repositories_are_held(http: httpx.Client) -> None:
    deep, beside = f"prod/team/{uuid.uuid4().hex[:8]}", f"production/{uuid.uuid4().hex[:8]}"
    for repository, held in ((deep, True), (beside, False)):
        first, _ = image_manifest(http, repository)
        second, _ = image_manifest(http, repository)
        push_manifest(http, repository, "v2", first)
        response = put_manifest(http, repository, "v2", second)
        if held:
            assert CONFIG_RULE in denial(response)
        else:
            assert response.status_code == 201, response.text


def test_a_held_tag_is_not_deleted_by_tag_by_digest_or_with_its_repository(http: httpx.Client) -> None:
    repository = new_repository("prod")
    body, _ = image_manifest(http, repository)
    push_manifest(http, repository, "v3.1", body)
    push_manifest(http, repository, "latest", body)

    assert denial(http.delete(f"/v2/{repository}/manifests/v3.1")) == \
        f"tag v3.1 in {repository} is immutable ({CONFIG_RULE})"
    assert denial(http.delete(f"/v2/{repository}/manifests/{sha256(body)}")) == \
        f"manifest {sha256(body)} in {repository} is held by immutable tag v3.1 ({CONFIG_RULE})"
    assert denial(http.delete(f"/admin/api/repositories/{repository}/tags/v3.1")).startswith("tag v3.1")
    assert denial(http.delete(f"/admin/api/repositories/{repository}/manifests/{sha256(body)}")).startswith("manifest")
    assert denial(http.delete(f"/admin/api/repositories/{repository}")) == \
        f"repository {repository} holds immutable tag v3.1 ({CONFIG_RULE})"
    assert resolve(http, repository, "v3.1") == sha256(body)
    assert http.get(f"/v2/{repository}/tags/list").json()["tags"] == ["latest", "v3.1"]

    assert http.delete(f"/v2/{repository}/manifests/latest").status_code == 202  # a mutable tag goes
    assert http.delete(f"/v2/{repository}/manifests/nothing-here").status_code == 404


def test_the_content_of_a_held_image_is_not_deleted_blob_by_blob_or_child_by_child(http: httpx.Client) -> None:
    """A held tag's pulls stay whole: its layers and config, and its index's children and their blobs."""
    repository = new_repository("prod")
    image = push_image(http, repository, "v4.0")
    index = push_index(http, repository, "v4.1")
    loose = push_image(http, repository, "latest")  # a mutable tag beside: its content may go

    layer = image.blobs[-1]
    assert denial(http.delete(f"/v2/{repository}/blobs/{layer}")) == \
        f"blob {layer} in {repository} belongs to immutable tag v4.0 ({CONFIG_RULE})"
    child = index.children[0]
    assert denial(http.delete(f"/v2/{repository}/manifests/{child.digest}")) == \
        f"manifest {child.digest} in {repository} is held by immutable tag v4.1 ({CONFIG_RULE})"
    assert denial(http.delete(f"/v2/{repository}/blobs/{child.blobs[0]}")).startswith(f"blob {child.blobs[0]}")
    assert http.head(f"/v2/{repository}/blobs/{layer}").status_code == 200  # the refused unlink rolled back
    assert http.get(f"/v2/{repository}/manifests/{child.digest}", headers={"Accept": OCI_MANIFEST}).status_code == 200

    assert http.delete(f"/v2/{repository}/blobs/{loose.blobs[-1]}").status_code == 202


def test_an_admin_rule_applies_at_once_and_stops_when_deleted(http: httpx.Client) -> None:
    repository = new_repository("stage")
    tag = unique_tag("release")
    first, _ = image_manifest(http, repository)
    second, _ = image_manifest(http, repository)
    push_manifest(http, repository, tag, first)
    assert resolve(http, repository, tag) == sha256(first)

    added = http.post("/admin/api/immutable-tags", json={"repositories": "stage/*", "tags": "release-*"})
    assert added.status_code == 201, added.text
    rule = added.json()
    assert rule["source"] == "admin" and isinstance(rule["id"], int) and rule["created_by"]
    listed = http.get("/admin/api/immutable-tags").json()["rules"]
    assert [r["repositories"] for r in listed if r["source"] == "config"] == ["prod/**", "ret/**"]
    assert rule in listed

    refused = put_manifest(http, repository, tag, second)
    assert denial(refused) == f"tag {tag} in {repository} is immutable (rule: repositories stage/*, tags release-*)"
    assert refused.json()["errors"][0]["detail"] == {  # the rule, not who added it
        "repository": repository, "tag": tag,
        "rule": {"id": rule["id"], "repositories": "stage/*", "tags": "release-*", "source": "admin"}}
    assert http.delete(f"/v2/{repository}/manifests/{tag}").status_code == 403
    assert http.post("/admin/api/immutable-tags", json={"repositories": "stage/*", "tags": "release-*"}
                     ).status_code == 200  # the same rule again: the stored one

    assert http.delete(f"/admin/api/immutable-tags/{rule['id']}").status_code == 200
    assert rule not in http.get("/admin/api/immutable-tags").json()["rules"]
    push_manifest(http, repository, tag, second)
    assert resolve(http, repository, tag) == sha256(second)
    assert http.delete(f"/admin/api/immutable-tags/{rule['id']}").status_code == 404


def test_retention_spares_held_tags_and_gc_keeps_what_they_hold(http: httpx.Client, server: RegistryProcess) -> None:
    repository = "ret/app"  # retention: keep_last 0 on ret/*, so every tag no rule holds goes
    pushed = {}
    for tag in ("v1.0", "stable", "v2.0", "latest"):
        body, blobs = image_manifest(http, repository)
        push_manifest(http, repository, tag, body)
        pushed[tag] = (sha256(body), blobs)
    rule = http.post("/admin/api/immutable-tags", json={"repositories": repository, "tags": "stable"}).json()
    try:
        dry = http.post("/admin/api/retention", json={"dry_run": True}, timeout=300).json()
        assert {i["tag"] for i in dry["items"] if i["type"] == "tag"} == {"v2.0", "latest"}, dry
        real = http.post("/admin/api/retention", json={"dry_run": False}, timeout=300).json()
        assert {i["tag"] for i in real["items"] if i["type"] == "tag"} == {"v2.0", "latest"}, real
        assert http.get(f"/v2/{repository}/tags/list").json()["tags"] == ["stable", "v1.0"]

        gc = http.post("/admin/api/gc", json={"dry_run": False}, timeout=300).json()
        freed = {i["digest"] for i in gc["items"] if i["type"] == "blob"}
        for tag in ("v1.0", "stable"):
            digest, blobs = pushed[tag]
            assert resolve(http, repository, tag) == digest
            assert not freed & set(blobs)
            for blob in blobs:
                assert http.get(f"/v2/{repository}/blobs/{blob}").status_code == 200
        assert set(pushed["v2.0"][1]) <= freed  # what retention untagged went, as before
    finally:
        http.delete(f"/admin/api/immutable-tags/{rule['id']}")


def test_tags_and_rules_on_the_admin_api(http: httpx.Client) -> None:
    repository = new_repository("prod")
    body, _ = image_manifest(http, repository)
    push_manifest(http, repository, "v9", body)
    push_manifest(http, repository, "edge", body)
    tags = {t["tag"]: t["immutable"] for t in http.get(f"/admin/api/repositories/{repository}/tags").json()["tags"]}
    assert tags == {"edge": None, "v9": CONFIG_RULE}

    for bad, words in (({"repositories": "prod**", "tags": "v*"}, "** inside a path segment"),
                       ({"repositories": "prod/*"}, "tags: required"),
                       ({"repositories": "prod/*", "tags": "a/b"}, "holds a /"),
                       ({"repositories": "prod/*", "tags": "v*", "who": "me"}, "unknown key 'who'"),
                       ({"repositories": ["prod/*"], "tags": "v*"}, "repositories must be text")):
        response = http.post("/admin/api/immutable-tags", json=bad)
        assert_error(response, 400, "UNSUPPORTED")
        assert words in response.json()["errors"][0]["message"], response.text
    assert_error(http.delete("/admin/api/immutable-tags/abc"), 404, "NOT_FOUND")
    assert_error(http.delete(f"/admin/api/immutable-tags/{2 ** 40}"), 404, "NOT_FOUND")


def test_rules_apply_across_processes_sharing_postgresql(postgres, swift_s3, tmp_path: Path) -> None:
    """Two processes of one registry (one PostgreSQL database, one bucket): a rule added through one
    applies at once on the other, and is gone on both once deleted; a first push of a held tag from
    both at once with different manifests leaves one of them, the other refused."""
    database_url, prefix = postgres.create_database(), f"r-{uuid.uuid4().hex[:8]}"
    nodes = [postgres_s3_registry(tmp_path / f"node{i}", postgres, swift_s3, database_url=database_url, prefix=prefix)
             for i in range(2)]
    for node in nodes:
        node.start()
    try:
        with httpx.Client(base_url=nodes[0].url, timeout=60) as one, httpx.Client(base_url=nodes[1].url, timeout=60) as two:
            repository = new_repository("shared")
            first, _ = image_manifest(one, repository)
            second, _ = image_manifest(one, repository)
            push_manifest(one, repository, "1.0", first)
            rule = one.post("/admin/api/immutable-tags", json={"repositories": "shared/**", "tags": "[0-9]*"}).json()
            assert "rule: repositories shared/**, tags [0-9]*" in denial(put_manifest(two, repository, "1.0", second))
            assert denial(two.delete(f"/v2/{repository}/manifests/1.0"))

            def push(client: httpx.Client, body: bytes, tag: str) -> int:
                return put_manifest(client, repository, tag, body).status_code

            with ThreadPoolExecutor(2) as pool:
                for _ in range(5):
                    tag = f"{uuid.uuid4().int % 10 ** 6}"
                    answers = sorted(pool.map(push, (one, two), (first, second), (tag, tag)))
                    assert answers == [201, 403], answers
                    assert resolve(one, repository, tag) == resolve(two, repository, tag) is not None

            assert two.delete(f"/admin/api/immutable-tags/{rule['id']}").status_code == 200
            push_manifest(one, repository, "1.0", second)
            assert resolve(two, repository, "1.0") == sha256(second)
    finally:
        for node in nodes:
            node.stop()


def test_a_mirror_cache_follows_its_upstream_whatever_the_rules(tmp_path: Path) -> None:
    """Rules that hold every tag (`**`: `*`) still let a mirror's cached tag move with its upstream's;
    the mirror registry's own repositories are held."""
    with RegistryProcess(tmp_path / "upstream") as upstream:
        env = {"REGISTRY_MIRROR_UPSTREAMS": json.dumps([{"alias": "up", "url": upstream.url, "tag_ttl": 0}]),
               "REGISTRY_IMMUTABLE_TAGS": json.dumps([{"repositories": "**", "tags": "*"}])}
        with RegistryProcess(tmp_path / "mirror", env=env) as mirror, \
                httpx.Client(base_url=mirror.url, timeout=60) as http:
            digests = []
            for seed in ("one", "two"):
                digests.append(push_upstream_image(upstream.url, "team/app", "v1",
                                                   small_image(f"{seed} {uuid.uuid4().hex}")))
                assert resolve(http, "up/team/app", "v1") == digests[-1]
            assert digests[0] != digests[1]

            first, _ = image_manifest(http, "own/app")
            second, _ = image_manifest(http, "own/app")
            push_manifest(http, "own/app", "v1", first)
            assert "rule: repositories **, tags *" in denial(put_manifest(http, "own/app", "v1", second))
