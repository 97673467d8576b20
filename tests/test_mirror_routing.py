"""Who owns a name on a mirror with a Docker Hub upstream: every root name is Docker Hub's, except under
mirror.local_namespaces. A local push can no longer take over `someone/app` for every daemon that uses the
mirror (docker's registry-mirrors, podman's registries.conf mirror), and a docker_hub upstream keeps its
URL's host for containerd's `?ns=`."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from registry.config import ConfigError
from registry.settings import load
from registry.mirror.upstreams import MirrorConfigError, Router, parse_local_namespaces, parse_upstreams
from tests.api.helpers import OCI_MANIFEST, image_manifest, push_image, put_manifest
from tests.support.server import RegistryProcess

HUB = [{"alias": "hub", "url": "https://mirror.example.net", "docker_hub": True},
       {"alias": "ghcr", "url": "https://ghcr.io"}]


def _router(local: list[str]) -> Router:
    upstreams = parse_upstreams(HUB)
    return Router(upstreams, parse_local_namespaces(local, upstreams))


def test_root_names_are_docker_hubs_outside_the_local_namespaces() -> None:
    router = _router(["team", "ci/builds"])
    for name in ("someone/app", "alpine", "library/alpine", "teamx/app", "ci/other"):
        assert router.mirrored_namespace(name) is router.docker_hub, name
        assert router.docker_hub_route(name) is not None, name
    for name in ("team/app", "team", "ci/builds/x"):
        assert router.mirrored_namespace(name) is None and router.docker_hub_route(name) is None, name
    assert router.docker_hub_route("alpine").name == "library/alpine"  # type: ignore[union-attr]


def test_without_docker_hub_root_names_stay_local() -> None:
    router = Router(parse_upstreams(HUB[1:]))
    assert router.mirrored_namespace("someone/app") is None and router.docker_hub_route("someone/app") is None
    assert router.mirrored_namespace("ghcr/someone/app") is router.upstreams[0]


def test_a_docker_hub_upstream_keeps_its_urls_host_for_ns() -> None:
    router = _router([])
    hub = router.docker_hub
    assert hub is not None and hub.host == "mirror.example.net"
    for ns in ("mirror.example.net", "docker.io", "registry-1.docker.io", "index.docker.io"):
        assert router.by_namespace(ns, "alpine").upstream is hub, ns


@pytest.mark.parametrize("entries, message", [
    ([5], "expected a repository name prefix such as team, got int"),
    (["Team"], "is not a repository name prefix"),
    (["hub"], "hub names the cache of upstream hub"),
    (["ghcr.io/x"], "ghcr.io names the cache of upstream ghcr"),
])
def test_bad_local_namespaces_are_refused(entries: list[object], message: str) -> None:
    with pytest.raises(MirrorConfigError, match=message):
        parse_local_namespaces(entries, parse_upstreams(HUB))


def test_configuration_names_the_bad_entry(tmp_path: Path) -> None:
    config = tmp_path / "registry.yaml"
    config.write_text("mirror:\n  upstreams:\n    - {alias: hub, url: 'http://h:1', docker_hub: true}\n"
                      "  local_namespaces: [team, hub]\n")
    with pytest.raises(ConfigError, match=r"mirror.local_namespaces\[1\]: hub names the cache of upstream hub"):
        load(None, {"REGISTRY_CONFIG": str(config)})


@pytest.fixture(scope="module")
def hub_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryProcess, RegistryProcess]]:
    root = tmp_path_factory.mktemp("hub-mirror")
    with RegistryProcess(root / "hub") as hub:
        env = {"REGISTRY_MIRROR_UPSTREAMS": json.dumps([{"alias": "hub", "url": hub.url, "docker_hub": True}]),
               "REGISTRY_MIRROR_LOCAL_NAMESPACES": '["team"]'}
        with RegistryProcess(root / "mirror", env=env) as mirror:
            yield mirror, hub


def test_a_push_to_a_docker_hub_name_is_refused_and_names_the_way_out(
        hub_mirror: tuple[RegistryProcess, RegistryProcess]) -> None:
    mirror, _hub = hub_mirror
    name = f"someone/app-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=mirror.url, timeout=30) as client:
        started = client.post(f"/v2/{name}/blobs/uploads/")
        assert started.status_code == 403, started.text
        error = started.json()["errors"][0]
        assert error["code"] == "DENIED" and "mirrored from hub" in error["message"] and "(team)" in error["message"]
        refused = put_manifest(client, name, "1", b'{"schemaVersion": 2}', OCI_MANIFEST)
        assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "DENIED"
        assert name not in client.get("/v2/_catalog").json()["repositories"]  # nothing stored


def test_root_pulls_get_docker_hubs_image_and_local_namespaces_stay_local(
        hub_mirror: tuple[RegistryProcess, RegistryProcess]) -> None:
    mirror, hub = hub_mirror
    name = f"someone/app-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=hub.url, timeout=30) as client:
        upstream_image = push_image(client, name, "1")
    with httpx.Client(base_url=mirror.url, timeout=30) as client:
        pulled = client.get(f"/v2/{name}/manifests/1", headers={"Accept": OCI_MANIFEST})
        assert pulled.status_code == 200 and pulled.headers["Docker-Content-Digest"] == upstream_image.digest
        local = push_image(client, "team/app", "1")  # a local namespace: pushes work, pulls stay here
        got = client.get("/v2/team/app/manifests/1", headers={"Accept": OCI_MANIFEST})
        assert got.status_code == 200 and got.headers["Docker-Content-Digest"] == local.digest
        body, _ = image_manifest(client, "team/other")
        assert put_manifest(client, "team/other", "1", body, OCI_MANIFEST).status_code == 201
