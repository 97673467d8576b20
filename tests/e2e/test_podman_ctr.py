"""Two more real clients against the registry: podman and containerd's `ctr`.

podman: a docker-built image is loaded into a private podman store, pushed (Docker schema 2 and
OCI), removed, pulled back by digest and by tag, and run.

ctr: talks to the containerd dockerd uses (its own or the system's), in a namespace of its own per test. It pulls a
docker-pushed and a skopeo-pushed image, an OCI image index for one platform and for all of them,
fetches the missing platform's content later, and pushes images into other repositories, which the
registry must then serve byte for byte.

The registry is plain HTTP on 127.0.0.1, hence `--tls-verify=false` and `--plain-http`.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support import host
from tests.support.clients import require_tool
from tests.support.images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    CommandFailed,
    OciLayout,
    run,
    sha256,
)
from tests.support.server import RegistryProcess

pytestmark = pytest.mark.e2e

ACCEPT_ALL = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def with_log(registry: RegistryProcess, args: list[object], *, check: bool = True, timeout: float = 120,
             text: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a client; a failure message carries its output and the registry's log tail."""
    try:
        return run(args, check=check, timeout=timeout, text=text, env=env)
    except CommandFailed as exc:
        raise AssertionError(f"{exc}\n--- registry log {registry.log_path} (tail)\n{registry.log_tail()}") from None


def get_manifest(registry: RegistryProcess, repo: str, reference: str) -> httpx.Response:
    response = httpx.get(f"{registry.url}/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT_ALL},
                         timeout=30)
    assert response.status_code == 200, (
        f"GET /v2/{repo}/manifests/{reference} -> {response.status_code} {response.text[:500]}\n"
        f"--- registry log {registry.log_path} (tail)\n{registry.log_tail()}")
    return response


def served_digest(registry: RegistryProcess, repo: str, reference: str) -> tuple[str, bytes]:
    """(Docker-Content-Digest, body) of GET /v2/<repo>/manifests/<reference>; the two must agree."""
    response = get_manifest(registry, repo, reference)
    digest = response.headers.get("Docker-Content-Digest", "")
    assert digest == sha256(response.content), (
        f"GET /v2/{repo}/manifests/{reference}: Docker-Content-Digest {digest!r} but the body hashes to "
        f"{sha256(response.content)}")
    return digest, response.content


def assert_blobs_served(registry: RegistryProcess, repo: str, expected: dict[str, bytes]) -> None:
    """GET every blob from `repo`: same bytes as expected."""
    for digest, data in expected.items():
        response = httpx.get(f"{registry.url}/v2/{repo}/blobs/{digest}", timeout=30, follow_redirects=True)
        assert response.status_code == 200, (
            f"GET /v2/{repo}/blobs/{digest} -> {response.status_code} {response.text[:300]}\n"
            f"--- registry log tail\n{registry.log_tail()}")
        assert response.content == data, f"blob {digest} in {repo} differs from what was pushed"


def manifest_blobs(manifest: bytes) -> list[str]:
    doc = json.loads(manifest)
    return [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]


# -- podman ---------------------------------------------------------------------------------

@dataclass
class Podman:
    """podman with its own store, run dir, lock files, events log, network config and policy.

    Nothing of the machine's podman state is read or written (containers/image still keeps its
    blob-info cache in /var/lib/containers/cache; it is keyed by registry host:port, and every
    session's registry has a new port).
    """
    root: Path
    base_args: list[str]
    env: dict[str, str]
    policy: Path

    def __call__(self, registry: RegistryProcess, *args: object, check: bool = True,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        return with_log(registry, [*self.base_args, *args], check=check, timeout=timeout, env=self.env)


def _unmount_under(path: Path) -> list[str]:
    """Lazily unmount whatever is still mounted below `path` (deepest first); returns what was."""
    mounts = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            mount_point = line.split()[4].replace("\\040", " ")
            if mount_point == str(path) or mount_point.startswith(f"{path}/"):
                mounts.append(mount_point)
    for mount_point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount_point], capture_output=True)
    return mounts


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    binary = require_tool("podman", "podman")
    require_tool("runc", "runc")
    top = tmp_path_factory.mktemp("podman")
    root, runroot, tmp, vartmp, net = (top / name for name in ("root", "runroot", "tmp", "vartmp", "net"))
    for directory in (root, runroot, tmp, vartmp, net):
        directory.mkdir()
    storage_conf = top / "storage.conf"
    storage_conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root}"\nrunroot = "{runroot}"\n')
    containers_conf = top / "containers.conf"
    containers_conf.write_text(f"""\
[containers]
[network]
network_config_dir = "{net}"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{top / 'events.log'}"
runtime = "runc"
tmp_dir = "{tmp}"
static_dir = "{root / 'libpod'}"
volume_path = "{root / 'volumes'}"
lock_type = "file"
""")
    registries_conf = top / "registries.conf"
    registries_conf.write_text("")  # no mirrors, no short names: only what the test names
    policy = top / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
    env = {
        "CONTAINERS_CONF": str(containers_conf),
        "CONTAINERS_STORAGE_CONF": str(storage_conf),
        "CONTAINERS_REGISTRIES_CONF": str(registries_conf),
        "TMPDIR": str(vartmp),  # where podman stages layers during pull and push
    }
    podman = Podman(root, [binary, "--root", root, "--runroot", runroot, "--tmpdir", tmp, "--storage-driver",
                           "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "file"], env, policy)
    try:
        yield podman
    finally:
        run([*podman.base_args, "rm", "--all", "--force"], check=False, timeout=60, env=env)
        run([*podman.base_args, "rmi", "--all", "--force"], check=False, timeout=60, env=env)
        leftover = _unmount_under(top)
        shutil.rmtree(top, ignore_errors=True)
        assert not leftover, f"podman left mounts behind: {leftover}"


@dataclass
class PodmanPushed:
    repo: str
    ref: str                  # host/podman/app:1
    digest: str               # what `podman push --digestfile` wrote
    oci_ref: str              # host/podman/app:oci, pushed with --format oci
    oci_digest: str


@pytest.fixture(scope="module")
def podman_pushed(podman: Podman, registry: RegistryProcess, docker_images, tmp_path_factory) -> PodmanPushed:
    """docker_images.app1 moved into podman's store with `docker save | podman load`, then pushed."""
    work = tmp_path_factory.mktemp("podman-push")
    archive = work / "app1.tar"
    image = docker_images.app1
    run(["docker", "save", "--output", archive, image.id])
    loaded = podman(registry, "load", "--input", archive)
    assert image.id.split(":", 1)[1] in loaded.stdout + loaded.stderr, loaded
    repo = "podman/app"
    ref, oci_ref = f"{registry.host}/{repo}:1", f"{registry.host}/{repo}:oci"
    podman(registry, "tag", image.id, ref, oci_ref)
    digests = {}
    for target, extra in ((ref, []), (oci_ref, ["--format", "oci"])):
        digest_file = work / f"digest-{len(digests)}"
        podman(registry, "push", "--tls-verify=false", "--signature-policy", podman.policy, "--digestfile",
               digest_file, *extra, target)
        digests[target] = digest_file.read_text().strip()
        assert DIGEST_RE.fullmatch(digests[target]), f"podman push {target} wrote digest {digests[target]!r}"
    return PodmanPushed(repo, ref, digests[ref], oci_ref, digests[oci_ref])


def podman_inspect(podman: Podman, registry: RegistryProcess, ref: str) -> dict:
    return json.loads(podman(registry, "image", "inspect", ref).stdout)[0]


def test_podman_push_digest_matches_registry(podman_pushed: PodmanPushed, registry: RegistryProcess,
                                             docker_images) -> None:
    for tag, digest, media_type in (("1", podman_pushed.digest, DOCKER_MANIFEST),
                                    ("oci", podman_pushed.oci_digest, OCI_MANIFEST)):
        served, body = served_digest(registry, podman_pushed.repo, tag)
        assert served == digest, f"podman push reported {digest}, the registry serves {served} for :{tag}"
        manifest = json.loads(body)
        assert manifest["mediaType"] == media_type
        assert len(manifest["layers"]) == len(docker_images.app1.diff_ids) == 3
        # Same image: as v2s2 the config is docker's byte for byte (its digest is the image id); as
        # OCI podman converts the config, but the filesystem (the layers' diff ids) is the same.
        if media_type == DOCKER_MANIFEST:
            assert manifest["config"]["digest"] == docker_images.app1.id
        config = httpx.get(f"{registry.url}/v2/{podman_pushed.repo}/blobs/{manifest['config']['digest']}",
                           timeout=30, follow_redirects=True)
        assert config.status_code == 200 and sha256(config.content) == manifest["config"]["digest"]
        assert json.loads(config.content)["rootfs"]["diff_ids"] == docker_images.app1.diff_ids
        # The manifest is also served by digest, and every blob it names is in the repository.
        assert served_digest(registry, podman_pushed.repo, digest) == (served, body)
        for blob in manifest_blobs(body):
            head = httpx.head(f"{registry.url}/v2/{podman_pushed.repo}/blobs/{blob}", timeout=30)
            assert head.status_code == 200, f"HEAD blob {blob} -> {head.status_code}\n{registry.log_tail()}"


def test_podman_pull_by_digest_and_by_tag(podman: Podman, podman_pushed: PodmanPushed, registry: RegistryProcess,
                                          docker_images) -> None:
    served, _ = served_digest(registry, podman_pushed.repo, "1")
    by_digest = f"{registry.host}/{podman_pushed.repo}@{served}"
    for ref in (by_digest, podman_pushed.ref):
        # Nothing left locally: every layer of the pull comes from the registry.
        podman(registry, "rmi", "--all", "--force")
        assert podman(registry, "images", "--all", "--quiet").stdout.strip() == ""
        result = podman(registry, "pull", "--tls-verify=false", "--signature-policy", podman.policy, ref)
        assert result.stdout.strip().splitlines()[-1] == docker_images.app1.id.split(":", 1)[1], result
        info = podman_inspect(podman, registry, ref)
        assert info["Id"] == docker_images.app1.id.split(":", 1)[1]
        assert info["Digest"] == served, f"podman recorded digest {info['Digest']} for {ref}, registry serves {served}"
        assert by_digest in info["RepoDigests"], info["RepoDigests"]
        assert info["RootFS"]["Layers"] == docker_images.app1.diff_ids
    # Both references name the one image in podman's store.
    assert podman_inspect(podman, registry, by_digest)["Id"] == \
        podman_inspect(podman, registry, podman_pushed.ref)["Id"]


def podman_ulimits() -> list[str]:
    """`--ulimit` flags within this process's hard limits.

    Without them podman asks runc to raise RLIMIT_NOFILE/RLIMIT_NPROC to its own defaults (e.g.
    nofile 1048576), which needs CAP_SYS_RESOURCE; this machine's root lacks that capability, and
    runc fails with "error setting rlimits for ready process: ... operation not permitted".
    """
    flags = []
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        _, hard = resource.getrlimit(which)
        value = 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)
        flags += ["--ulimit", f"{name}={value}:{value}"]
    return flags


def test_podman_run(podman: Podman, podman_pushed: PodmanPushed, registry: RegistryProcess, docker_images,
                    session_id: str) -> None:
    served, _ = served_digest(registry, podman_pushed.repo, "1")
    ref = f"{registry.host}/{podman_pushed.repo}@{served}"
    podman(registry, "pull", "--tls-verify=false", "--signature-policy", podman.policy, ref)
    (path, content), = docker_images.app1.files.items()
    base = ["run", "--rm", "--network=none", *podman_ulimits(), ref]
    for command, expected in (
        (["/bin/busybox", "cat", path], content),
        ([], content),  # the image's own CMD
        (["/bin/sh", "-c", "cat /etc/e2e-session /etc/base-release"], f"{session_id}\ne2e base {session_id}\n"),
    ):
        result = podman(registry, *base, *command, check=False, timeout=60)
        assert result.returncode == 0 and result.stdout == expected, (
            f"`podman run` of {ref} failed. The image itself came from the registry intact (the pull "
            f"and digest checks passed), so a non-zero status here points at the container runtime on "
            f"this machine (runc, overlay, cgroups, rlimits), not at the registry.\n"
            f"$ {' '.join(f'{k}={v}' for k, v in podman.env.items())} "
            f"{' '.join(map(str, podman.base_args + base + command))}\nexit status {result.returncode}\n"
            f"--- expected stdout\n{expected!r}\n--- stdout\n{result.stdout!r}\n--- stderr\n{result.stderr}")
    # --rm left no container behind.
    assert podman(registry, "ps", "--all", "--quiet").stdout.strip() == ""


# -- containerd's ctr -----------------------------------------------------------------------

def containerd_address() -> Path:
    """The socket of dockerd's containerd (tests/support/host.py finds it); the test is skipped, saying
    where it looked, when there is none to find."""
    require_tool("ctr", "containerd (it comes with docker.io)")
    try:
        return host.containerd_socket()
    except host.HostLacks as exc:
        pytest.skip(f"ctr has no containerd to talk to: {exc}")


@dataclass
class Ctr:
    """`ctr` against dockerd's containerd (at `address`), in a namespace nobody else uses."""
    namespace: str
    registry: RegistryProcess
    address: Path

    def __call__(self, *args: object, check: bool = True, text: bool = True,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        return with_log(self.registry, ["ctr", "--address", self.address, "--namespace", self.namespace, *args],
                        check=check, text=text, timeout=timeout)

    def pull(self, ref: str, *extra: str) -> subprocess.CompletedProcess:
        return self("images", "pull", "--plain-http", *extra, ref)

    def images(self) -> dict[str, tuple[str, str, str]]:
        """`ctr images ls` -> {ref: (media type, digest, platforms)}."""
        out: dict[str, tuple[str, str, str]] = {}
        for line in self("images", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if not fields:
                continue
            platforms = next((f for f in fields[3:] if f.startswith("linux/")), "")
            out[fields[0]] = (fields[1], fields[2], platforms)
        return out

    def content(self) -> set[str]:
        return set(self("content", "ls", "--quiet").stdout.split())

    def get(self, digest: str) -> bytes:
        return self("content", "get", digest, text=False).stdout

    def check_complete(self, ref: str) -> None:
        line = next((row for row in self("images", "check").stdout.splitlines() if row.split()[:1] == [ref]), "")
        assert "complete" in line and line.rstrip().endswith("true"), (
            f"`ctr images check`: {ref} is not completely fetched and unpacked:\n{line}")


@pytest.fixture
def ctr(dockerd: None, registry: RegistryProcess) -> Iterator[Callable[[], Ctr]]:
    """A factory of ctr clients, each in a new namespace; images, content and namespaces go at the end."""
    address = containerd_address()
    made: list[Ctr] = []

    def make() -> Ctr:
        client = Ctr(f"e2e-{uuid.uuid4().hex[:10]}", registry, address)
        made.append(client)
        return client

    yield make
    problems = []
    for client in made:
        refs = client("images", "ls", "--quiet", check=False).stdout.split()
        if refs:
            client("images", "rm", "--sync", *refs, check=False)  # --sync: garbage-collect content and snapshots now
        left = client.content()
        if left:
            client("content", "rm", *left, check=False)
        result = client("namespaces", "rm", client.namespace, check=False)
        if result.returncode != 0:
            problems.append(f"namespace {client.namespace}: {result.stderr.strip()} (content left: {sorted(left)})")
    assert not problems, "ctr cleanup failed:\n" + "\n".join(problems)


@dataclass
class DockerPushed:
    repo: str
    ref: str
    digest: str
    manifest: bytes


@pytest.fixture(scope="module")
def docker_pushed(registry: RegistryProcess, docker_images) -> DockerPushed:
    """docker_images.app2 pushed by the Docker engine to ctr/docker:1."""
    repo = "ctr/docker"
    ref = f"{registry.host}/{repo}:1"
    with_log(registry, ["docker", "tag", docker_images.app2.id, ref])
    result = with_log(registry, ["docker", "push", ref])
    match = re.search(r"^1: digest: (sha256:[0-9a-f]{64}) size: \d+$", result.stdout, re.M)
    assert match, f"no digest line in `docker push {ref}` output:\n{result.stdout}\n{result.stderr}"
    digest, body = served_digest(registry, repo, "1")
    assert digest == match.group(1)
    return DockerPushed(repo, ref, digest, body)


@pytest.fixture(scope="module")
def skopeo_pushed(skopeo, registry: RegistryProcess, oci_image: OciLayout, oci_index: OciLayout) -> dict[str, str]:
    """oci_image:v1 at ctr/oci:v1 and the oci_index (with --all) at ctr/multi:multi, by skopeo."""
    refs = {"v1": f"{registry.host}/ctr/oci:v1", "multi": f"{registry.host}/ctr/multi:multi"}
    for layout, tag, extra in ((oci_image, "v1", []), (oci_index, "multi", ["--all"])):
        with_log(registry, [*skopeo.base_args, "copy", "--dest-tls-verify=false", "--preserve-digests", *extra,
                            layout.ref(tag), f"docker://{refs[tag]}"])
    return refs


def test_ctr_pull_single_platform(ctr, registry: RegistryProcess, docker_pushed: DockerPushed,
                                  skopeo_pushed: dict[str, str], oci_image: OciLayout) -> None:
    client = ctr()
    cases = [
        # (ref, repo, tag, media type, every blob the image has: digest -> bytes)
        (docker_pushed.ref, docker_pushed.repo, "1", DOCKER_MANIFEST, None),
        (skopeo_pushed["v1"], "ctr/oci", "v1", OCI_MANIFEST, oci_image.reachable("v1")),
    ]
    for ref, repo, tag, media_type, blobs in cases:
        digest, manifest = served_digest(registry, repo, tag)
        client.pull(ref)
        kind, listed, platforms = client.images()[ref]
        assert listed == digest, f"`ctr images ls` has {ref} at {listed}; the registry serves {digest}"
        assert (kind, platforms) == (media_type, f"linux/{host.oci_arch()}")  # both built for this host
        client.check_complete(ref)
        # containerd holds exactly the manifest, the config and the layers, as the registry has them.
        expected = {digest} | set(manifest_blobs(manifest))
        assert expected <= client.content(), f"missing after pull of {ref}: {expected - client.content()}"
        assert client.get(digest) == manifest
        if blobs is not None:
            assert set(blobs) == expected
            for blob, data in blobs.items():
                assert client.get(blob) == data, f"{blob} from {ref} differs from the OCI layout's"
    assert client.content() == ({docker_pushed.digest, *manifest_blobs(docker_pushed.manifest)}
                                | set(oci_image.reachable("v1")))


def index_children(index: bytes) -> dict[str, str]:
    """architecture -> manifest digest."""
    return {m["platform"]["architecture"]: m["digest"] for m in json.loads(index)["manifests"]}


def platform_blobs(layout: OciLayout, manifest_digest: str) -> dict[str, bytes]:
    manifest = layout.blobs[manifest_digest]
    return {manifest_digest: manifest, **{d: layout.blobs[d] for d in manifest_blobs(manifest)}}


def test_ctr_pull_index_one_platform_then_fetch_the_other(ctr, registry: RegistryProcess,
                                                          skopeo_pushed: dict[str, str], oci_index: OciLayout) -> None:
    ref = skopeo_pushed["multi"]
    index_digest = oci_index.refs["multi"].digest
    assert served_digest(registry, "ctr/multi", "multi") == (index_digest, oci_index.manifest("multi"))
    children = index_children(oci_index.manifest("multi"))
    amd64 = platform_blobs(oci_index, children["amd64"])
    arm64 = platform_blobs(oci_index, children["arm64"])

    client = ctr()
    client.pull(ref, "--platform", "linux/amd64")
    kind, listed, platforms = client.images()[ref]
    assert listed == index_digest, f"`ctr images ls` has {ref} at {listed}; the registry serves {index_digest}"
    assert kind == OCI_INDEX and platforms == "linux/amd64,linux/arm64"
    client.check_complete(ref)
    # The index and linux/amd64 only: nothing of arm64's but the layer the two images share.
    assert client.content() == {index_digest, *amd64}
    for digest, data in {index_digest: oci_index.manifest("multi"), **amd64}.items():
        assert client.get(digest) == data, f"{digest} differs from the OCI layout's"

    # `ctr content fetch` of the other platform later: its manifest, config and own layer arrive.
    client("content", "fetch", "--plain-http", "--platform", "linux/arm64", ref)
    assert client.content() == {index_digest, *amd64, *arm64}
    for digest, data in arm64.items():
        assert client.get(digest) == data, f"{digest} (linux/arm64) differs from the OCI layout's"


def test_ctr_pull_index_all_platforms_and_push_it_elsewhere(ctr, registry: RegistryProcess,
                                                            skopeo_pushed: dict[str, str],
                                                            oci_index: OciLayout) -> None:
    ref = skopeo_pushed["multi"]
    index_digest = oci_index.refs["multi"].digest
    everything = oci_index.reachable("multi")

    client = ctr()
    client.pull(ref, "--all-platforms")
    kind, listed, platforms = client.images()[ref]
    assert (kind, listed, platforms) == (OCI_INDEX, index_digest, "linux/amd64,linux/arm64")
    client.check_complete(ref)
    assert client.content() == set(everything)
    for digest, data in everything.items():
        assert client.get(digest) == data, f"{digest} differs from the OCI layout's"

    # Push the whole index into another repository: served byte-identical, children and blobs too.
    target_repo = "ctr/multi-pushed"
    target = f"{registry.host}/{target_repo}:copy"
    client("images", "tag", ref, target)
    client("images", "push", "--plain-http", target)
    assert served_digest(registry, target_repo, "copy") == (index_digest, oci_index.manifest("multi"))
    for child in index_children(oci_index.manifest("multi")).values():
        assert served_digest(registry, target_repo, child) == (child, oci_index.blobs[child])
    assert_blobs_served(registry, target_repo,
                        {d: b for d, b in everything.items() if d != index_digest and d not in
                         index_children(oci_index.manifest("multi")).values()})


def test_ctr_push_into_another_repository(ctr, registry: RegistryProcess, docker_pushed: DockerPushed) -> None:
    client = ctr()
    client.pull(docker_pushed.ref)
    target_repo = "ctr/pushed"
    target = f"{registry.host}/{target_repo}:2"
    client("images", "tag", docker_pushed.ref, target)
    client("images", "push", "--plain-http", target)

    # Byte-identical manifest, by tag and by digest, and the same digest in ctr.
    assert served_digest(registry, target_repo, "2") == (docker_pushed.digest, docker_pushed.manifest)
    assert served_digest(registry, target_repo, docker_pushed.digest) == (docker_pushed.digest,
                                                                         docker_pushed.manifest)
    assert client.images()[target][1] == docker_pushed.digest
    assert_blobs_served(registry, target_repo, {d: client.get(d) for d in manifest_blobs(docker_pushed.manifest)})

    # And it pulls back from there in a fresh namespace.
    other = ctr()
    other.pull(target)
    assert other.images()[target][1] == docker_pushed.digest
    other.check_complete(target)
