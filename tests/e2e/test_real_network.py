"""The real clients through a network that behaves like a real one: TLS with a CA made by the test,
trusted the way users trust it, and links that cut every byte stream into small delayed pieces.

Each test runs at two sites (tests/support/pytest_netlab.py): `veth`, servers in a network
namespace at an address outside 127/8 (docker verifies certificates there, so the CA trust is
proven), and `loopback` (docker skips verification on 127/8; the others still verify).

- docker push, then pull after removing the image; skopeo copy in and out of an OCI layout;
  podman pull: through the splitting link in front of the TLS registry;
- `ctr images pull` through our mirror (TLS, containerd `hosts.toml` with `ca`) whose upstream is
  on TLS behind a dribbling link (16 KiB pieces 10 ms apart) and serves a >300 KB manifest and a
  >200 KB config: what broke in the field (issue 16);
- `registry pull` from the TLS registry through the splitting link, and through the mirror from the
  dribbling upstream.

Every test checks digests byte for byte, that its traffic really crossed the link, and (the e2e
conftest) that no registry process logged a traceback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.test_podman_ctr import Ctr, containerd_address, podman  # noqa: F401 (podman: a fixture)
from tests.e2e.test_skopeo import assert_same_image
from tests.support import host
from tests.support.images import (
    BASE_DOCKERFILE,
    DockerImage,
    OciLayout,
    docker_build,
    make_base_context,
    read_oci_layout,
    run,
    sha256,
)
from tests.support.mirror import ACCEPT_ALL, Image, bulky_image, push_image
from tests.support.netlab import CONTAINERS_CERTS_D, DOCKER_CERTS_D, LinkStats, Site, Splitter, trusted
from tests.support.server import RegistryProcess
from tests.support.testca import TestCA

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_HOST = "upstream.netlab.invalid"  # never resolves: containerd cannot fall back around the mirror
ALIAS = "dribble"
DRIBBLE = {"min_piece": 16384, "max_piece": 16384, "min_delay": 0.01, "max_delay": 0.01}
UNTRUSTED = re.compile(r"x509|certificate signed by unknown authority|certificate is not trusted", re.I)


# -- the servers ----------------------------------------------------------------------------------

@dataclass
class Endpoint:
    """A TLS registry and the splitting link in front of it; clients use `host` (the link)."""
    server: RegistryProcess
    link: Splitter

    @property
    def host(self) -> str:
        return self.link.host

    def served(self, repo: str, reference: str) -> tuple[str, bytes]:
        """(Docker-Content-Digest, body) of the manifest, asked of the registry directly over verified TLS."""
        return served(self.server, repo, reference)


def served(server: RegistryProcess, repo: str, reference: str) -> tuple[str, bytes]:
    response = httpx.get(f"{server.url}/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT_ALL},
                         verify=server.verify(), timeout=30)
    assert response.status_code == 200, f"GET {repo}:{reference} -> {response.status_code} {response.text[:300]}"
    digest = response.headers["Docker-Content-Digest"]
    assert digest == sha256(response.content), f"{repo}:{reference}: header {digest}, body {sha256(response.content)}"
    return digest, response.content


def blob(server: RegistryProcess, repo: str, digest: str) -> bytes:
    response = httpx.get(f"{server.url}/v2/{repo}/blobs/{digest}", verify=server.verify(), timeout=60,
                         follow_redirects=True)
    assert response.status_code == 200, f"GET blob {digest} of {repo} -> {response.status_code}"
    assert sha256(response.content) == digest
    return response.content


def _start_registry(site: Site, root: Path, netlab_ca: TestCA, env: dict[str, str] | None = None) -> RegistryProcess:
    # Anonymous pushes (auth mode none) come from loopback only by default: let the site's own network in.
    env = {"REGISTRY_AUTH_ANONYMOUS_PUSH_NETWORKS": ",".join(["127.0.0.0/8", "::1", *site.networks]), **(env or {})}
    server = RegistryProcess(root / "data", port=site.port(), listen_host=site.address, wrap=site.wrap,
                             tls=netlab_ca.issue([site.address, "localhost"]), env=env, log_path=root / "registry.log")
    server.start()
    site.processes.append(server.proc)  # type: ignore[arg-type]
    return server


def _start_link(site: Site, target: str, log_path: Path, **shape: float) -> Splitter:
    link = Splitter(site, target, log_path, **shape).start()  # type: ignore[arg-type]
    site.processes.append(link.proc)  # type: ignore[arg-type]
    return link


@pytest.fixture(scope="session")
def tls_registry(net_site: Site, netlab_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    root = tmp_path_factory.mktemp(f"netlab-{net_site.kind}-registry")
    server = _start_registry(net_site, root, netlab_ca)
    link = None
    try:
        link = _start_link(net_site, server.host, root / "link.log")
        yield Endpoint(server, link)
    finally:
        if link is not None:
            link.stop()
        server.stop()
    assert not link.problems(), f"the splitting link at {link.host} logged:\n" + "\n".join(link.problems())


@dataclass
class DribblingMirror:
    upstream: RegistryProcess
    dribbler: Splitter        # mirror -> upstream: 16 KiB pieces, 10 ms apart
    mirror: RegistryProcess
    link: Splitter            # clients -> mirror

    @property
    def host(self) -> str:
        return self.link.host


@pytest.fixture(scope="session")
def dribbling_mirror(net_site: Site, netlab_ca: TestCA,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[DribblingMirror]:
    """Our mirror on TLS, its upstream (our registry) on TLS behind a dribbling link."""
    root = tmp_path_factory.mktemp(f"netlab-{net_site.kind}-mirror")
    (root / "upstream").mkdir()
    (root / "mirror").mkdir()
    started: list = []
    try:
        upstream = _start_registry(net_site, root / "upstream", netlab_ca)
        started.append(upstream)
        dribbler = _start_link(net_site, upstream.host, root / "dribbler.log", **DRIBBLE)
        started.append(dribbler)
        upstreams = [{"alias": ALIAS, "url": f"https://{dribbler.host}", "host": UPSTREAM_HOST,
                      "ca_file": str(netlab_ca.cert_file), "tag_ttl": 3600}]
        mirror = _start_registry(net_site, root / "mirror", netlab_ca,
                                 env={"REGISTRY_MIRROR_UPSTREAMS": json.dumps(upstreams)})
        started.append(mirror)
        link = _start_link(net_site, mirror.host, root / "link.log")
        started.append(link)
        yield DribblingMirror(upstream, dribbler, mirror, link)
    finally:
        for part in reversed(started):
            part.stop()
    problems = [line for part in (dribbler, link) for line in part.problems()]
    assert not problems, "the links logged:\n" + "\n".join(problems)


def assert_crossed(link: Splitter, before: LinkStats, up: int = 0, down: int = 0) -> LinkStats:
    """At least `up`/`down` bytes crossed the link since `before`, in pieces (not one write).
    Returns the link's totals now: the `before` of a next step."""
    now = link.stats()
    crossed = now - before
    # (Not new connections: clients keep theirs alive across tests.)
    assert crossed.up_bytes + crossed.down_bytes > 0 and crossed.up_bytes >= up and crossed.down_bytes >= down, (
        f"expected at least {up} bytes up and {down} down through the link {link.host}, it carried {crossed}")
    if down > 16384:
        assert crossed.down_pieces >= down // 16384, f"{crossed}: the bodies were not split"
    return now


# -- docker ---------------------------------------------------------------------------------------

@pytest.fixture
def netlab_docker_image(dockerd: None, net_site: Site, session_id: str, tmp_path: Path) -> Iterator[DockerImage]:
    """busybox plus a marker, layers of its own (so a pull after `docker rmi` really downloads)."""
    context = tmp_path / "context"
    context.mkdir()
    make_base_context(context, f"netlab-{net_site.kind}-{session_id}")
    image = docker_build(context, f"e2e-{session_id}/netlab-{net_site.kind}:latest", BASE_DOCKERFILE)
    try:
        yield image
    finally:
        run(["docker", "image", "rm", "--force", image.id], check=False)


def docker(endpoint: Endpoint, *args: object, check: bool = True) -> subprocess.CompletedProcess:
    result = run(["docker", *args], check=False, timeout=180)
    if check and result.returncode != 0:
        raise AssertionError(f"$ docker {' '.join(map(str, args))}\nexit {result.returncode}\n{result.stdout}\n"
                             f"{result.stderr}\n--- registry log (tail)\n{endpoint.server.log_tail()}")
    return result


def test_docker_push_then_pull(net_site: Site, tls_registry: Endpoint, netlab_ca: TestCA,
                               netlab_docker_image: DockerImage) -> None:
    endpoint, image = tls_registry, netlab_docker_image
    repo = f"netlab/docker-{uuid.uuid4().hex[:6]}"
    ref = f"{endpoint.host}/{repo}:1"
    if net_site.namespace is not None:
        # Outside 127/8 docker verifies the certificate: without the CA it must refuse the registry.
        refused = docker(endpoint, "pull", f"{endpoint.host}/netlab/none:1", check=False)
        assert refused.returncode != 0 and UNTRUSTED.search(refused.stderr), (
            f"docker reached {endpoint.host} without trusting the test CA:\n{refused.stderr}")
    with trusted(DOCKER_CERTS_D, endpoint.host, netlab_ca.cert_file):
        docker(endpoint, "tag", image.id, ref)
        before = endpoint.link.stats(settle=0)
        pushed = docker(endpoint, "push", ref).stdout
        match = re.search(r"^1: digest: (sha256:[0-9a-f]{64}) size: \d+$", pushed, re.M)
        assert match, f"no digest in `docker push {ref}` output:\n{pushed}"
        digest, body = endpoint.served(repo, "1")
        assert digest == match.group(1), f"docker pushed {match.group(1)}, the registry serves {digest}"
        manifest = json.loads(body)
        assert manifest["config"]["digest"] == image.id
        layers = {layer["digest"]: blob(endpoint.server, repo, layer["digest"]) for layer in manifest["layers"]}
        config = json.loads(blob(endpoint.server, repo, image.id))
        assert config["rootfs"]["diff_ids"] == image.diff_ids
        sizes = sum(len(data) for data in layers.values())
        after_push = assert_crossed(endpoint.link, before, up=sizes)

        docker(endpoint, "image", "rm", "--force", image.id)
        assert docker(endpoint, "image", "inspect", image.id, check=False).returncode != 0
        pulled = docker(endpoint, "pull", ref).stdout
        assert f"Digest: {digest}" in pulled, pulled
        info = json.loads(docker(endpoint, "image", "inspect", ref).stdout)[0]
        assert info["Id"] == image.id
        assert f"{endpoint.host}/{repo}@{digest}" in info["RepoDigests"]
        assert info["RootFS"]["Layers"] == image.diff_ids
        assert_crossed(endpoint.link, after_push, down=sizes)


# -- skopeo and podman ----------------------------------------------------------------------------

def test_skopeo_copy_in_and_out(tls_registry: Endpoint, netlab_ca: TestCA, skopeo, oci_image: OciLayout,
                                tmp_path: Path) -> None:
    endpoint = tls_registry
    remote = f"docker://{endpoint.host}/netlab/skopeo-{uuid.uuid4().hex[:6]}:v1"
    # skopeo verifies on every address, loopback too: without the CA it refuses.
    refused = skopeo("inspect", f"docker://{endpoint.host}/netlab/none:1", check=False)
    assert refused.returncode != 0 and UNTRUSTED.search(refused.stderr), refused.stderr
    with trusted(CONTAINERS_CERTS_D, endpoint.host, netlab_ca.cert_file):
        before = endpoint.link.stats(settle=0)
        skopeo("copy", "--preserve-digests", oci_image.ref("v1"), remote)
        repo = remote.split("/", 3)[3].rsplit(":", 1)[0]
        assert endpoint.served(repo, "v1") == (oci_image.refs["v1"].digest, oci_image.manifest("v1"))
        sent = sum(len(data) for data in oci_image.reachable("v1").values())
        middle = assert_crossed(endpoint.link, before, up=sent)
        skopeo("copy", remote, f"oci:{tmp_path / 'back'}:v1")
        assert_same_image(read_oci_layout(tmp_path / "back"), oci_image, "v1")
        assert_crossed(endpoint.link, middle, down=sent)


def push_layout(server: RegistryProcess, repo: str, layout: OciLayout, tag: str) -> str:
    """The layout's image at `tag`, pushed over HTTPS straight to the registry (no link): setup only."""
    manifest = layout.manifest(tag)
    blobs = {d: data for d, data in layout.reachable(tag).items() if d != layout.refs[tag].digest}
    return push_image(server.url, repo, tag, Image(manifest, blobs, layout.refs[tag].media_type),
                      verify=server.verify())


def test_podman_pull(tls_registry: Endpoint, netlab_ca: TestCA, podman, oci_image: OciLayout) -> None:  # noqa: F811
    endpoint = tls_registry
    repo = f"netlab/podman-{uuid.uuid4().hex[:6]}"
    digest = push_layout(endpoint.server, repo, oci_image, "v1")
    config = json.loads(oci_image.blobs[json.loads(oci_image.manifest("v1"))["config"]["digest"]])
    ref = f"{endpoint.host}/{repo}:v1"
    with trusted(CONTAINERS_CERTS_D, endpoint.host, netlab_ca.cert_file):
        podman(endpoint.server, "rmi", "--all", "--force")
        before = endpoint.link.stats(settle=0)
        podman(endpoint.server, "pull", "--signature-policy", podman.policy, ref)
        info = json.loads(podman(endpoint.server, "image", "inspect", ref).stdout)[0]
    assert info["Digest"] == digest, f"podman recorded {info['Digest']}, the registry serves {digest}"
    assert info["RootFS"]["Layers"] == config["rootfs"]["diff_ids"]
    assert f"{endpoint.host}/{repo}@{digest}" in info["RepoDigests"]
    assert_crossed(endpoint.link, before, down=sum(len(d) for d in oci_image.reachable("v1").values()))


# -- ctr through the mirror -----------------------------------------------------------------------

@contextmanager
def ctr_namespace(server: RegistryProcess) -> Iterator[Ctr]:
    """`ctr` in a containerd namespace of its own; its images, content and the namespace go afterwards."""
    client = Ctr(f"netlab-{uuid.uuid4().hex[:10]}", server, containerd_address())
    try:
        yield client
    finally:
        refs = client("images", "ls", "--quiet", check=False).stdout.split()
        if refs:
            client("images", "rm", "--sync", *refs, check=False)
        left = client.content()
        if left:
            client("content", "rm", *left, check=False)
        removed = client("namespaces", "rm", client.namespace, check=False)
        assert removed.returncode == 0, f"ctr namespace {client.namespace} stays: {removed.stderr}"


def push_bulky(dribbling: DribblingMirror, purpose: str, site: Site, session_id: str) -> tuple[str, Image]:
    """A new >300 KB-manifest image in the upstream (straight, no link): `netlab/big:<purpose>`."""
    image = bulky_image(f"{purpose} {site.kind} {session_id} {uuid.uuid4().hex[:6]}")
    push_image(dribbling.upstream.url, "netlab/big", purpose, image, verify=dribbling.upstream.verify())
    return "netlab/big", image


def test_ctr_pull_through_the_mirror_from_a_dribbling_upstream(dockerd: None, net_site: Site,
                                                              dribbling_mirror: DribblingMirror, netlab_ca: TestCA,
                                                              session_id: str, tmp_path: Path) -> None:
    mirror = dribbling_mirror
    repo, image = push_bulky(mirror, "ctr", net_site, session_id)
    hosts = tmp_path / "hosts" / UPSTREAM_HOST
    hosts.mkdir(parents=True)
    (hosts / "hosts.toml").write_text(f"""\
server = "https://{UPSTREAM_HOST}"

[host."https://{mirror.host}"]
  capabilities = ["pull", "resolve"]
  ca = "{netlab_ca.cert_file}"
""")
    ref = f"{UPSTREAM_HOST}/{repo}:ctr"
    before = mirror.dribbler.stats(settle=0)
    with ctr_namespace(mirror.mirror) as ctr:
        ctr("images", "pull", "--hosts-dir", tmp_path / "hosts", ref, timeout=300)
        kind, listed, platforms = ctr.images()[ref]
        assert listed == image.digest, f"ctr has {ref} at {listed}; the upstream has {image.digest}"
        assert (kind, platforms) == (image.media_type, f"linux/{host.oci_arch()}")  # bulky_image is the host's
        ctr.check_complete(ref)
        assert ctr.get(image.digest) == image.manifest
        for digest, data in image.blobs.items():
            assert ctr.get(digest) == data, f"{digest} differs from what the upstream holds"
    # The mirror fetched all of it from the upstream through the dribbling link.
    assert_crossed(mirror.dribbler, before, down=len(image.manifest) + sum(map(len, image.blobs.values())))
    assert served(mirror.mirror, f"{ALIAS}/{repo}", image.digest) == (image.digest, image.manifest)


# -- registry pull (the runtime) ------------------------------------------------------------------

def registry_pull(ref: str, store: Path) -> subprocess.CompletedProcess:
    """`registry pull REF` with an image store of its own."""
    result = subprocess.run([sys.executable, "-m", "registry", "pull", "--quiet", ref], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, stdin=subprocess.DEVNULL,
                            env={**os.environ, "REGISTRY_RUNTIME_ROOT": str(store)})
    assert result.returncode == 0 and "Traceback" not in result.stderr, (
        f"$ registry pull {ref}\nexit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
    return result


def assert_pulled(store: Path, ref: str, image: Image) -> None:
    """The store holds the image byte for byte: manifest digest, config, layers, unpacked files."""
    digest = json.loads((store / "refs.json").read_text()).get(ref)
    assert digest == image.digest, f"the store has {ref} at {digest}, the registry serves {image.digest}"
    record = json.loads((store / "images" / (digest.split(":", 1)[1] + ".json")).read_text())
    manifest = json.loads(image.manifest)
    assert record["config_digest"] == manifest["config"]["digest"]
    assert record["config"] == json.loads(image.blobs[manifest["config"]["digest"]])
    assert [layer["digest"] for layer in record["layers"]] == [layer["digest"] for layer in manifest["layers"]]
    label_layer = store / "layers" / record["layers"][0]["diff_id"].split(":", 1)[1]
    assert (label_layer / "etc" / "label").read_text() == manifest["annotations"]["e2e.label"] + "\n"


def test_registry_pull_through_the_splitting_link(net_site: Site, tls_registry: Endpoint, netlab_ca: TestCA,
                                                  session_id: str, tmp_path: Path) -> None:
    endpoint = tls_registry
    image = bulky_image(f"runtime {net_site.kind} {session_id} {uuid.uuid4().hex[:6]}")
    repo = "netlab/runtime"
    push_image(endpoint.server.url, repo, "big", image, verify=endpoint.server.verify())
    ref = f"{endpoint.host}/{repo}:big"
    with trusted(DOCKER_CERTS_D, endpoint.host, netlab_ca.cert_file):
        before = endpoint.link.stats(settle=0)
        registry_pull(ref, tmp_path / "store")
    assert_pulled(tmp_path / "store", ref, image)
    assert_crossed(endpoint.link, before, down=len(image.manifest) + sum(map(len, image.blobs.values())))


def test_registry_pull_through_the_mirror_from_a_dribbling_upstream(net_site: Site, dribbling_mirror: DribblingMirror,
                                                                   netlab_ca: TestCA, session_id: str,
                                                                   tmp_path: Path) -> None:
    mirror = dribbling_mirror
    repo, image = push_bulky(mirror, "runtime", net_site, session_id)
    ref = f"{mirror.host}/{ALIAS}/{repo}:runtime"
    with trusted(DOCKER_CERTS_D, mirror.host, netlab_ca.cert_file):
        before = mirror.dribbler.stats(settle=0)
        registry_pull(ref, tmp_path / "store")
    assert_pulled(tmp_path / "store", ref, image)
    assert_crossed(mirror.dribbler, before, down=len(image.manifest) + sum(map(len, image.blobs.values())))
