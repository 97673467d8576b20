"""Scale-out: three registry processes sharing PostgreSQL and one S3 bucket behave as one registry.

Any process takes any request, including the next chunk of an upload another process started;
concurrent commits of one digest and concurrent tag moves end consistent; and a real docker
push and pull work through nginx round-robin over the three.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator

import httpx
import pytest

from tests.support.backends import postgres_s3_registry
from tests.support.images import run
from tests.support.nginx import NginxBalancer
from tests.support.server import RegistryProcess

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def cluster(postgres, swift_s3, tmp_path_factory) -> Iterator[list[RegistryProcess]]:
    root = tmp_path_factory.mktemp("cluster")
    database_url = postgres.create_database()
    prefix = f"cluster-{uuid.uuid4().hex[:8]}"
    servers = [postgres_s3_registry(root / f"node{i}", postgres, swift_s3, database_url=database_url, prefix=prefix)
               for i in range(3)]
    try:
        for server in servers:  # one after another: the first applies the migrations
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def clients(cluster) -> Iterator[list[httpx.Client]]:
    http = [httpx.Client(base_url=server.url, timeout=60) for server in cluster]
    yield http
    for client in http:
        client.close()


def test_upload_started_on_one_continued_on_another_finished_on_a_third(clients, cluster):
    a, b, c = clients
    data = os.urandom(12 * 1024 * 1024 + 5)  # crosses S3 part boundaries
    repo = f"scale/{uuid.uuid4().hex[:8]}"
    location = a.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    first = 7 * 1024 * 1024
    patched = b.patch(location, content=data[:first], headers={"Content-Range": f"0-{first - 1}"})
    assert patched.status_code == 202, patched.text
    status = c.get(location)
    assert status.status_code == 204 and status.headers["Range"] == f"0-{first - 1}"
    finished = c.put(location, params={"digest": _sha(data)}, content=data[first:],
                     headers={"Content-Range": f"{first}-{len(data) - 1}"})
    assert finished.status_code == 201, finished.text
    for client in clients:
        assert client.get(f"/v2/{repo}/blobs/{_sha(data)}").content == data
    assert cluster[0].storage.blob_bytes(_sha(data)) == data


def test_two_processes_commit_the_same_digest_at_once(clients, cluster):
    data = os.urandom(6 * 1024 * 1024)
    digest = _sha(data)
    repos = [f"scale/same-{uuid.uuid4().hex[:6]}" for _ in clients]
    sessions = []
    for client, repo in zip(clients, repos):
        location = client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
        assert client.patch(location, content=data).status_code == 202
        sessions.append((client, location))
    barrier = threading.Barrier(len(sessions))

    def finish(session):
        client, location = session
        barrier.wait()
        return client.put(location, params={"digest": digest}).status_code

    with ThreadPoolExecutor(len(sessions)) as pool:
        assert list(pool.map(finish, sessions)) == [201] * len(sessions)
    assert cluster[0].storage.blob_digests().count(digest) == 1
    for client, repo in zip(clients, repos):
        assert client.get(f"/v2/{repo}/blobs/{digest}").content == data


def _push_manifest(client: httpx.Client, repo: str, config: bytes, note: str) -> tuple[str, bytes]:
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _sha(config),
                   "size": len(config)},
        "layers": [], "annotations": {"note": note},
    }).encode()
    response = client.put(f"/v2/{repo}/manifests/{_sha(manifest)}", content=manifest,
                          headers={"Content-Type": OCI_MANIFEST})
    assert response.status_code == 201, response.text
    return _sha(manifest), manifest


def test_tags_moved_concurrently_end_consistent(clients):
    repo = f"scale/tags-{uuid.uuid4().hex[:6]}"
    config = b'{"architecture":"amd64","os":"linux"}'
    assert clients[0].post(f"/v2/{repo}/blobs/uploads/", params={"digest": _sha(config)},
                           content=config).status_code == 201
    pushed = dict(_push_manifest(clients[i % 3], repo, config, f"m{i}") for i in range(12))

    def move(i: int) -> int:
        digest = list(pushed)[i % len(pushed)]
        return clients[i % 3].put(f"/v2/{repo}/manifests/latest", content=pushed[digest],
                                  headers={"Content-Type": OCI_MANIFEST}).status_code

    with ThreadPoolExecutor(12) as pool:
        assert set(pool.map(move, range(120))) == {201}
    seen = {client.get(f"/v2/{repo}/manifests/latest", headers={"Accept": OCI_MANIFEST})
            .headers["Docker-Content-Digest"] for client in clients}
    assert len(seen) == 1 and seen <= set(pushed)
    for client in clients:
        assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["latest"]


def test_docker_push_and_pull_through_nginx_round_robin(cluster, docker_images, tmp_path):
    with NginxBalancer(tmp_path / "nginx", [server.host for server in cluster]) as balancer:
        image = docker_images.app1
        remote = f"{balancer.host}/scale/app:{uuid.uuid4().hex[:6]}"
        run(["docker", "tag", image.id, remote])  # by id: earlier tests may have dropped the local tag
        pushed = run(["docker", "push", remote], timeout=300)
        assert "digest: sha256:" in pushed.stdout
        # Remove the image entirely so the pull really downloads, then pull through the balancer.
        run(["docker", "image", "rm", "--force", image.id])
        run(["docker", "pull", remote], timeout=300)
        assert run(["docker", "image", "inspect", "--format", "{{.Id}}", remote]).stdout.strip() == image.id
        # --network none: the container only reads a file, so no default bridge is needed.
        output = run(["docker", "run", "--rm", "--network", "none", remote,
                      "/bin/busybox", "cat", "/app1.txt"]).stdout
        assert output == image.files["/app1.txt"]
        hits = balancer.upstream_hits()
    assert set(hits) == {server.host for server in cluster}, hits
    assert min(hits.values()) >= 3, hits
