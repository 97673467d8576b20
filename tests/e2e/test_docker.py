"""The real Docker engine against the registry: push two images sharing a base, pull, run.

Acceptance: the second push reuses the shared layers (cross-repository mount or "already exists"),
pulls by tag and by digest give back the same images, they run, and the shared layers are stored
once on disk.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass

import httpx
import pytest

from tests.support.images import DOCKER_MANIFEST, OCI_MANIFEST, CommandFailed, run, sha256
from tests.support.server import RegistryProcess

pytestmark = pytest.mark.e2e

TAG = "1.0"
REPOS = {"app1": "team/app1", "app2": "team/app2"}


def docker(registry: RegistryProcess, *args: object, check: bool = True, timeout: float = 120):
    """docker CLI; a failure message carries the client output and the registry's log tail."""
    try:
        return run(["docker", *args], check=check, timeout=timeout)
    except CommandFailed as exc:
        raise AssertionError(f"{exc}\n--- registry log {registry.log_path} (tail)\n{registry.log_tail()}") from None


def layer_statuses(output: str) -> dict[str, str]:
    """`docker push`/`pull` output -> {12-hex layer id: last status}."""
    statuses: dict[str, str] = {}
    for line in output.splitlines():
        match = re.match(r"^([0-9a-f]{12}): (.+)$", line.strip())
        if match:
            statuses[match.group(1)] = match.group(2).strip()
    return statuses


@dataclass
class Pushed:
    host: str
    refs: dict[str, str]      # app -> host/repo:tag
    digests: dict[str, str]   # app -> manifest digest reported by docker push
    outputs: dict[str, str]   # app -> docker push stdout
    manifests: dict[str, dict]


def get_manifest(registry: RegistryProcess, repo: str, reference: str) -> tuple[bytes, httpx.Response]:
    response = httpx.get(f"{registry.url}/v2/{repo}/manifests/{reference}", timeout=30,
                         headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"})
    assert response.status_code == 200, (
        f"GET /v2/{repo}/manifests/{reference} -> {response.status_code} {response.text[:500]}\n"
        f"--- registry log tail\n{registry.log_tail()}")
    return response.content, response


@pytest.fixture(scope="module")
def pushed(registry: RegistryProcess, docker_images) -> Pushed:
    refs, digests, outputs, manifests = {}, {}, {}, {}
    for app in ("app1", "app2"):  # in this order: app2's push finds the base layers in team/app1
        image = getattr(docker_images, app)
        ref = f"{registry.host}/{REPOS[app]}:{TAG}"
        docker(registry, "tag", image.id, ref)
        result = docker(registry, "push", ref)
        match = re.search(rf"^{re.escape(TAG)}: digest: (sha256:[0-9a-f]{{64}}) size: (\d+)$", result.stdout, re.M)
        assert match, f"no digest line in `docker push {ref}` output:\n{result.stdout}\n{result.stderr}"
        body, _ = get_manifest(registry, REPOS[app], match.group(1))
        refs[app], digests[app], outputs[app] = ref, match.group(1), result.stdout
        manifests[app] = json.loads(body)
    return Pushed(registry.host, refs, digests, outputs, manifests)


def test_push_digest_matches_registry_and_engine(pushed: Pushed, docker_images, registry: RegistryProcess) -> None:
    for app in ("app1", "app2"):
        digest = pushed.digests[app]
        # The engine recorded the same digest for the pushed repository.
        info = json.loads(docker(registry, "image", "inspect", getattr(docker_images, app).id).stdout)[0]
        repo_digests = [d for d in info["RepoDigests"] if d.startswith(f"{pushed.host}/{REPOS[app]}@")]
        assert repo_digests == [f"{pushed.host}/{REPOS[app]}@{digest}"], info["RepoDigests"]
        # The tag resolves to exactly those bytes.
        body, response = get_manifest(registry, REPOS[app], TAG)
        assert sha256(body) == digest
        assert response.headers.get("Docker-Content-Digest") == digest
        manifest = json.loads(body)
        assert manifest["mediaType"] == DOCKER_MANIFEST
        assert manifest["config"]["digest"] == getattr(docker_images, app).id
        assert len(manifest["layers"]) == len(getattr(docker_images, app).diff_ids) == 3


def test_second_push_reuses_shared_layers(pushed: Pushed, docker_images) -> None:
    base_ids = [d.split(":", 1)[1][:12] for d in docker_images.base.diff_ids]
    assert len(base_ids) == 2
    first = layer_statuses(pushed.outputs["app1"])
    second = layer_statuses(pushed.outputs["app2"])
    app1_own = docker_images.app1.diff_ids[-1].split(":", 1)[1][:12]
    app2_own = docker_images.app2.diff_ids[-1].split(":", 1)[1][:12]
    assert docker_images.app1.diff_ids[:2] == docker_images.app2.diff_ids[:2] == docker_images.base.diff_ids

    # First push into a fresh registry: every layer is uploaded.
    for layer in base_ids + [app1_own]:
        assert first.get(layer) == "Pushed", f"layer {layer} in first push:\n{pushed.outputs['app1']}"
    # Second push to another repository: the shared layers are mounted or found, only its own is uploaded.
    for layer in base_ids:
        status = second.get(layer, "")
        assert status == "Mounted from team/app1" or status == "Layer already exists", (
            f"shared layer {layer} was not reused in `docker push {pushed.refs['app2']}`:\n{pushed.outputs['app2']}")
    assert second.get(app2_own) == "Pushed", pushed.outputs["app2"]


def test_shared_layers_stored_once(pushed: Pushed, registry: RegistryProcess) -> None:
    layers1 = [layer["digest"] for layer in pushed.manifests["app1"]["layers"]]
    layers2 = [layer["digest"] for layer in pushed.manifests["app2"]["layers"]]
    assert layers1[:2] == layers2[:2], "the base layers should have the same digests in both manifests"
    assert layers1[2] != layers2[2]
    referenced = set(layers1) | set(layers2) | {pushed.manifests[a]["config"]["digest"] for a in ("app1", "app2")}

    blobs_root = registry.data_dir / "blobs"
    files = [p for p in blobs_root.rglob("*") if p.is_file()]
    by_name = Counter(p.name for p in files)
    for digest in sorted(referenced):
        hex_ = digest.split(":", 1)[1]
        copies = [p for p in files if p.name == hex_]
        assert len(copies) == 1, f"{digest}: {len(copies)} files under {blobs_root}: {copies}"
        assert copies[0] == blobs_root / "sha256" / hex_[:2] / hex_
        assert hashlib.sha256(copies[0].read_bytes()).hexdigest() == hex_, f"{copies[0]} content does not match"
    for shared in layers1[:2]:
        assert by_name[shared.split(":", 1)[1]] == 1
    # No blob is stored twice anywhere in the tree: as many files as distinct digests.
    duplicates = {name: n for name, n in by_name.items() if n > 1}
    assert len(files) == len(by_name), f"blobs stored more than once: {duplicates}"


def test_pull_by_tag_and_digest_then_run(pushed: Pushed, docker_images, registry: RegistryProcess,
                                         session_id: str) -> None:
    # Forget the images locally: apps first (the base is their parent), then the base.
    for image in (docker_images.app1, docker_images.app2, docker_images.base):
        docker(registry, "image", "rm", "--force", image.id)
    for image in docker_images.all:
        gone = docker(registry, "image", "inspect", image.id, check=False)
        assert gone.returncode != 0, f"{image.tag} ({image.id}) still present after docker rmi"

    # By tag: every layer comes from the registry.
    by_tag = pushed.refs["app1"]
    result = docker(registry, "pull", by_tag)
    assert f"Digest: {pushed.digests['app1']}" in result.stdout, result.stdout
    assert "Downloaded newer image" in result.stdout, result.stdout
    statuses = layer_statuses(result.stdout)
    for layer in pushed.manifests["app1"]["layers"]:
        assert statuses.get(layer["digest"].split(":", 1)[1][:12]) == "Pull complete", result.stdout
    assert json.loads(docker(registry, "image", "inspect", by_tag).stdout)[0]["Id"] == docker_images.app1.id

    # By digest: the other repository.
    by_digest = f"{pushed.host}/{REPOS['app2']}@{pushed.digests['app2']}"
    result = docker(registry, "pull", by_digest)
    assert f"Digest: {pushed.digests['app2']}" in result.stdout, result.stdout
    statuses = layer_statuses(result.stdout)
    base_layers, own_layer = pushed.manifests["app2"]["layers"][:2], pushed.manifests["app2"]["layers"][2]
    for layer in base_layers:  # just pulled with app1
        assert statuses.get(layer["digest"].split(":", 1)[1][:12]) == "Already exists", result.stdout
    assert statuses.get(own_layer["digest"].split(":", 1)[1][:12]) == "Pull complete", result.stdout
    assert json.loads(docker(registry, "image", "inspect", by_digest).stdout)[0]["Id"] == docker_images.app2.id
    app1_by_digest = f"{pushed.host}/{REPOS['app1']}@{pushed.digests['app1']}"
    docker(registry, "pull", app1_by_digest)

    for app, ref in (("app1", by_tag), ("app2", by_digest), ("app1", app1_by_digest)):
        image = getattr(docker_images, app)
        (path, content), = image.files.items()
        out = docker(registry, "run", "--rm", "--network", "none", ref, "/bin/busybox", "cat", path).stdout
        assert out == content
        # The image's own CMD, and a file from the shared base layer.
        assert docker(registry, "run", "--rm", "--network", "none", ref).stdout == content
        session = docker(registry, "run", "--rm", "--network", "none", ref, "/bin/sh", "-c",
                         "cat /etc/e2e-session /etc/base-release").stdout
        assert session == f"{session_id}\ne2e base {session_id}\n"
