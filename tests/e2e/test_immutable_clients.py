"""Immutable tags with real clients: docker push, podman push and skopeo copy refuse to move a held tag,
skopeo delete refuses to delete it, and each prints the registry's message naming the rule; a mutable
tag beside it moves. (Acceptance 3 of issue 21; the HTTP details are in tests/api/test_immutable_tags.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.test_podman_ctr import Podman, podman  # noqa: F401  (podman: a fixture, with a private store)
from tests.support.images import DOCKER_MANIFEST, OCI_MANIFEST, OciLayout, run
from tests.support.server import RegistryProcess

pytestmark = pytest.mark.e2e

RULE = "rule: repositories imm/**, tags v*"
NO_TLS = ("--src-tls-verify=false", "--dest-tls-verify=false")


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    env = {"REGISTRY_IMMUTABLE_TAGS": json.dumps([{"repositories": "imm/**", "tags": "v*"}])}
    with RegistryProcess(tmp_path_factory.mktemp("immutable-clients") / "data", env=env) as registry:
        yield registry


def digest_of(registry: RegistryProcess, repository: str, tag: str) -> str:
    response = httpx.head(f"{registry.url}/v2/{repository}/manifests/{tag}", timeout=30,
                          headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"})
    assert response.status_code == 200, response.text
    return response.headers["Docker-Content-Digest"]


def docker(*args: str, check: bool = True):
    return run(["docker", *args], check=check, timeout=180)


def test_docker_push_of_another_image_to_an_immutable_tag_fails_with_the_rule(held: RegistryProcess, docker_images):
    repository = "imm/docker"
    pushed = {}
    for image in (docker_images.app1, docker_images.app2):
        for tag in ("v1", "latest"):
            docker("tag", image.id, f"{held.host}/{repository}:{tag}")
        pushed[image.id] = [docker("push", f"{held.host}/{repository}:{tag}", check=False) for tag in ("v1", "latest")]
    try:
        first_v1, first_latest = pushed[docker_images.app1.id]
        second_v1, second_latest = pushed[docker_images.app2.id]
        assert first_v1.returncode == 0 and first_latest.returncode == 0, first_v1.stderr + first_latest.stderr
        output = second_v1.stdout + second_v1.stderr
        assert second_v1.returncode != 0, output
        assert f"denied: tag v1 in {repository} is immutable ({RULE})" in output, output
        assert second_latest.returncode == 0, second_latest.stderr  # the mutable tag beside moves

        v1, latest = digest_of(held, repository, "v1"), digest_of(held, repository, "latest")
        assert v1 != latest
        assert v1 in first_v1.stdout and latest in second_latest.stdout
        again = docker("push", f"{held.host}/{repository}:latest")  # pushing what is there is fine
        assert again.returncode == 0
    finally:
        for tag in ("v1", "latest"):
            docker("image", "rm", f"{held.host}/{repository}:{tag}", check=False)


def test_skopeo_copy_and_delete_of_an_immutable_tag_fail_with_the_rule(held: RegistryProcess, skopeo,
                                                                       oci_image: OciLayout):
    repository = "imm/skopeo"
    target = f"docker://{held.host}/{repository}"
    skopeo("copy", *NO_TLS, oci_image.ref("v1"), f"{target}:v1.0")
    skopeo("copy", *NO_TLS, oci_image.ref("v1"), f"{target}:edge")
    first = digest_of(held, repository, "v1.0")

    copied = skopeo("copy", *NO_TLS, oci_image.ref("other"), f"{target}:v1.0", check=False)
    assert copied.returncode != 0, copied.stdout
    assert f"tag v1.0 in {repository} is immutable ({RULE})" in copied.stderr, copied.stderr
    assert digest_of(held, repository, "v1.0") == first

    deleted = skopeo("delete", "--tls-verify=false", f"{target}:v1.0", check=False)
    assert deleted.returncode != 0, deleted.stdout
    assert f"in {repository} is held by immutable tag v1.0 ({RULE})" in deleted.stderr, deleted.stderr
    assert digest_of(held, repository, "v1.0") == first

    skopeo("copy", *NO_TLS, oci_image.ref("other"), f"{target}:edge")  # the mutable tag beside moves
    assert digest_of(held, repository, "edge") != first
    assert digest_of(held, repository, "v1.0") == first


def test_podman_push_of_another_image_to_an_immutable_tag_fails_with_the_rule(held: RegistryProcess, podman: Podman,
                                                                              docker_images, tmp_path):
    repository = "imm/podman"
    outputs = []
    for image in (docker_images.app1, docker_images.app2):
        archive = tmp_path / f"{image.id.split(':')[1][:12]}.tar"
        run(["docker", "save", "--output", archive, image.id])
        podman(held, "load", "--input", archive)
        podman(held, "tag", image.id, f"{held.host}/{repository}:v2", f"{held.host}/{repository}:latest")
        outputs.append([podman(held, "push", "--tls-verify=false", "--signature-policy", podman.policy,
                               f"{held.host}/{repository}:{tag}", check=False) for tag in ("v2", "latest")])
    (first_v2, first_latest), (second_v2, second_latest) = outputs
    assert first_v2.returncode == 0 and first_latest.returncode == 0, first_v2.stderr + first_latest.stderr
    assert second_v2.returncode != 0, second_v2.stdout
    assert f"tag v2 in {repository} is immutable ({RULE})" in second_v2.stderr, second_v2.stderr
    assert second_latest.returncode == 0, second_latest.stderr
    assert digest_of(held, repository, "v2") != digest_of(held, repository, "latest")
