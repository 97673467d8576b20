"""The pull-through mirror, end to end: real clients, real upstreams, counted in the upstreams' logs.

Upstreams, all on loopback:
- `hub`: another process of this registry in `--auth-mode basic` (seeded in mode none, then
  restarted with an htpasswd file on the same data dir), the mirror's `docker_hub` upstream;
- `ghcr`: Debian's docker-registry (CNCF Distribution 2.8.2) with htpasswd auth, `host: ghcr.io`;
- `flaky`: this registry again, stopped and rate-limited by the tests.

The client configs are the examples in deploy/mirror/ with the mirror's address put in: Docker's
`registry-mirrors` (daemon.json), containerd's hosts.toml (`?ns=docker.io`) and podman/skopeo's
registries.conf (the root form for docker.io, the path prefix `/ghcr/` for ghcr.io).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.test_podman_ctr import containerd_address, podman  # noqa: F401  (podman: a fixture)
from tests.support.images import (
    CommandFailed,
    DockerImage,
    OciLayout,
    docker_build,
    make_base_context,
    read_oci_layout,
    run,
    sha256,
)
from tests.support.mirror import (
    ACCEPT_ALL,
    AccessLog,
    DistributionProcess,
    Image,
    UpstreamRegistry,
    deploy_file,
    dockerd_settings,
    htpasswd_line,
    push_blob,
    push_image,
    push_manifest,
    small_image,
    stream_sha256,
    upstream_digest,
)
from tests.support.server import RegistryProcess, free_port

pytestmark = pytest.mark.e2e

USER, PASSWORD = "mirror-bot", "upstream-pw-7d1c"
AUTH = (USER, PASSWORD)
HUB_TTL = 3.0
FLAKY_TTL = 2.0
BIG = 64 * 1024 * 1024
CLIENTS = 20
HUB_IMAGE = "library/busybox-test"

DOCKERFILE = """\
FROM scratch
COPY rootfs/ /
COPY base-release /etc/base-release
CMD ["/bin/busybox", "cat", "/etc/base-release"]
"""


def with_log(servers: list, args: list[object], *, check: bool = True, env: dict[str, str] | None = None,
             text: bool = True, timeout: float = 120):
    """Run a client; a failure carries its output and the log tails of the servers involved."""
    try:
        return run(args, check=check, env=env, text=text, timeout=timeout)
    except CommandFailed as exc:
        tails = "\n".join(f"--- {s.log_path} (tail)\n{s.log_tail()}" for s in servers)
        raise AssertionError(f"{exc}\n{tails}") from None


def show(response: httpx.Response, *servers) -> str:
    request = response.request
    out = [f"{request.method} {request.url} -> {response.status_code}",
           f"headers: {dict(response.headers)}", f"body: {response.text[:800] if request.method != 'HEAD' else ''}"]
    out += [f"--- {s.log_path} (tail)\n{s.log_tail(25)}" for s in servers]
    return "\n".join(out)


def sleep_until(deadline: float) -> None:
    time.sleep(max(deadline - time.monotonic(), 0))


# -- upstreams and the mirror -----------------------------------------------------------------

@dataclass
class MirrorImages:
    pulled: DockerImage   # pushed to the hub upstream as library/busybox-test:1, then removed locally
    local: DockerImage    # pushed to the mirror itself as team/app:1


@pytest.fixture(scope="module")
def mirror_images(dockerd: None, session_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MirrorImages]:
    """Two busybox images of this module's own (no layer shared with anything else on the daemon,
    so removing one makes the next pull download every layer)."""
    root = tmp_path_factory.mktemp("mirror-build")
    images = {}
    for name in ("pulled", "local"):
        context = root / name
        context.mkdir()
        marker = f"mirror-{name}-{session_id}"
        make_base_context(context, marker)
        image = docker_build(context, f"e2e-{session_id}/mirror-{name}:latest", DOCKERFILE)
        image.files["/etc/base-release"] = f"e2e base {marker}\n"
        images[name] = image
    try:
        yield MirrorImages(**images)
    finally:
        for image in images.values():
            run(["docker", "image", "rm", "--force", image.id], check=False)


@dataclass
class Hub:
    server: UpstreamRegistry
    digest: str           # library/busybox-test:1 as docker pushed it
    manifest: dict
    big: bytes            # a 64 MiB blob in e2e/big
    big_digest: str

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, mirror_images: MirrorImages) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("hub")
    port, log, data = free_port(), root / "hub.log", root / "data"
    image = mirror_images.pulled
    seed = UpstreamRegistry(data, port=port, log_path=log).start()  # mode none: docker pushes without login
    try:
        ref = f"{seed.host}/{HUB_IMAGE}:1"
        with_log([seed], ["docker", "tag", image.id, ref])
        pushed = with_log([seed], ["docker", "push", ref]).stdout
        match = re.search(r"^1: digest: (sha256:[0-9a-f]{64}) size: \d+$", pushed, re.M)
        assert match, f"no digest in `docker push {ref}` output:\n{pushed}"
        big = os.urandom(BIG)
        big_digest = push_blob(seed.url, "e2e/big", big)
    finally:
        seed.stop()
    # Gone from the daemon (every tag, every layer): the pulls through the mirror really download.
    with_log([seed], ["docker", "image", "rm", "--force", image.id])
    htpasswd = root / "htpasswd"
    htpasswd.write_text(htpasswd_line(USER, PASSWORD) + "\n")
    server = UpstreamRegistry(data, port=port, log_path=log,
                              args=["--auth-mode", "basic", "--auth-htpasswd", str(htpasswd)]).start()
    try:
        assert httpx.get(f"{server.url}/v2/", timeout=10).status_code == 401, "the hub upstream must want credentials"
        assert upstream_digest(server.url, HUB_IMAGE, "1", AUTH) == match.group(1)
        manifest = httpx.get(f"{server.url}/v2/{HUB_IMAGE}/manifests/1", auth=AUTH, timeout=30,
                             headers={"Accept": ACCEPT_ALL}).json()
        yield Hub(server, match.group(1), manifest, big, big_digest)
    finally:
        server.stop()


@dataclass
class Distribution:
    server: DistributionProcess
    digest: str           # e2e/oci:v1, the oci_image fixture's v1


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory, skopeo, oci_image: OciLayout) -> Iterator[Distribution]:
    server = DistributionProcess(tmp_path_factory.mktemp("distribution"), {USER: PASSWORD}).start()
    try:
        with_log([server], [*skopeo.base_args, "copy", "--dest-tls-verify=false", "--dest-creds",
                            f"{USER}:{PASSWORD}", "--preserve-digests", oci_image.ref("v1"),
                            f"docker://{server.host}/e2e/oci:v1"])
        digest = upstream_digest(server.url, "e2e/oci", "v1", AUTH)
        assert digest == oci_image.refs["v1"].digest
        yield Distribution(server, digest)
    finally:
        server.stop()


@dataclass
class Flaky:
    """An upstream the tests stop and restart (same port, same data dir)."""
    root: Path
    port: int
    cached: Image         # e2e/img:cached, pulled through the mirror before the outage
    uncached: Image       # e2e/img:uncached, never asked for before the outage
    server: UpstreamRegistry | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "flaky.log"

    @property
    def access(self) -> AccessLog:
        return AccessLog(self.log_path)

    def start(self, *args: str) -> UpstreamRegistry:
        self.stop()
        self.server = UpstreamRegistry(self.root / "data", port=self.port, log_path=self.log_path,
                                       args=list(args)).start()
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def flaky(tmp_path_factory: pytest.TempPathFactory, session_id: str) -> Iterator[Flaky]:
    upstream = Flaky(tmp_path_factory.mktemp("flaky"), free_port(), small_image(f"cached {session_id}"),
                     small_image(f"uncached {session_id}"))
    upstream.start()
    try:
        push_image(upstream.url, "e2e/img", "cached", upstream.cached)
        push_image(upstream.url, "e2e/img", "uncached", upstream.uncached)
        yield upstream
    finally:
        upstream.stop()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, hub: Hub, distribution: Distribution,
           flaky: Flaky) -> Iterator[RegistryProcess]:
    upstreams = [
        {"alias": "hub", "url": hub.url, "docker_hub": True, "tag_ttl": HUB_TTL, "username": USER,
         "password": PASSWORD},
        {"alias": "ghcr", "url": distribution.server.url, "host": "ghcr.io", "username": USER,
         "password": PASSWORD},
        {"alias": "flaky", "url": flaky.url, "tag_ttl": FLAKY_TTL},
    ]
    env = {"REGISTRY_MIRROR_UPSTREAMS": json.dumps(upstreams), "REGISTRY_MIRROR_MAX_STALE": "600",
           "REGISTRY_MIRROR_LOCAL_NAMESPACES": '["team"]'}  # every other root name is the hub's
    with RegistryProcess(tmp_path_factory.mktemp("mirror") / "data", env=env) as server:
        # The mirror's client meets the hub's Basic challenge once here, so the counts below see
        # only the requests the tests cause.
        warm = httpx.get(f"{server.url}/v2/hub/e2e/warm-up/manifests/none", timeout=30)
        assert warm.status_code == 404, show(warm, server)
        yield server


def mirror_log(mirror: RegistryProcess) -> AccessLog:
    return AccessLog(mirror.log_path)


def get(url: str, method: str = "GET", **kwargs) -> httpx.Response:
    return httpx.request(method, url, headers={"Accept": ACCEPT_ALL}, timeout=60, **kwargs)


# -- 1. three client configurations ---------------------------------------------------------

def test_docker_registry_mirrors_pulls_through_the_mirror_and_runs(mirror: RegistryProcess, hub: Hub,
                                                                   mirror_images: MirrorImages) -> None:
    """`docker pull busybox-test:1` (no host: Docker Hub) with daemon.json's registry-mirrors.

    Docker Hub is unreachable here, so a pull that works came through the mirror."""
    image = mirror_images.pulled
    ref = "busybox-test:1"
    run(["docker", "image", "rm", "--force", ref], check=False)
    assert run(["docker", "image", "inspect", image.id], check=False).returncode != 0, "image still on the daemon"
    log = mirror_log(mirror)
    mark = log.mark()
    settings = json.loads(deploy_file("daemon.json", mirror.host))
    try:
        with dockerd_settings(settings):
            pulled = with_log([mirror, hub.server], ["docker", "pull", ref]).stdout
        assert "Already exists" not in pulled, f"a layer was already on the daemon:\n{pulled}"
        info = json.loads(run(["docker", "image", "inspect", ref]).stdout)[0]
        assert info["Id"] == image.id
        assert f"busybox-test@{hub.digest}" in info["RepoDigests"], (info["RepoDigests"], hub.digest)
        assert info["RootFS"]["Layers"] == image.diff_ids
        (path, content), = image.files.items()
        assert run(["docker", "run", "--rm", "--network", "none", ref]).stdout == content
        assert run(["docker", "run", "--rm", "--network", "none", ref, "/bin/busybox", "cat",
                    "/etc/e2e-session"]).stdout == content.replace("e2e base ", "")
    finally:
        run(["docker", "image", "rm", "--force", image.id], check=False)
    lines = log.since(mark)
    layers = [layer["digest"] for layer in hub.manifest["layers"]]
    wanted = [("HEAD", f"/v2/{HUB_IMAGE}/manifests/1"), ("GET", f"/v2/{HUB_IMAGE}/manifests/{hub.digest}"),
              ("GET", f"/v2/{HUB_IMAGE}/blobs/{hub.manifest['config']['digest']}"),
              *(("GET", f"/v2/{HUB_IMAGE}/blobs/{d}") for d in layers)]
    for method, path in wanted:
        assert AccessLog.matching(lines, method, path, 200), (
            f"dockerd never asked the mirror for {method} {path}; mirror saw:\n{AccessLog.show(lines)}")


@pytest.fixture
def ctr_namespace(dockerd: None) -> Iterator[list[object]]:
    """`ctr` (its arguments up to the command) for dockerd's containerd in a namespace of its own."""
    namespace = f"e2e-mirror-{uuid.uuid4().hex[:10]}"
    base: list[object] = ["ctr", "--address", containerd_address(), "--namespace", namespace]
    yield base
    refs = run([*base, "images", "ls", "--quiet"], check=False).stdout.split()
    if refs:
        run([*base, "images", "rm", "--sync", *refs], check=False)
    left = run([*base, "content", "ls", "--quiet"], check=False).stdout.split()
    if left:
        run([*base, "content", "rm", *left], check=False)
    result = run([*base, "namespaces", "rm", namespace], check=False)
    assert result.returncode == 0, f"ctr namespace {namespace} left behind: {result.stderr}"


def test_containerd_hosts_toml_pulls_through_the_mirror_with_ns(mirror: RegistryProcess, hub: Hub,
                                                                 ctr_namespace: list[object], tmp_path: Path) -> None:
    hosts_dir = tmp_path / "certs.d"
    (hosts_dir / "docker.io").mkdir(parents=True)
    (hosts_dir / "docker.io" / "hosts.toml").write_text(deploy_file("hosts.toml", mirror.host))
    ctr = ctr_namespace
    ref = f"docker.io/{HUB_IMAGE}:1"
    log = mirror_log(mirror)
    mark = log.mark()
    with_log([mirror, hub.server], [*ctr, "images", "pull", "--hosts-dir", hosts_dir, ref])
    listed = {fields[0]: fields[2] for fields in
              (line.split() for line in run([*ctr, "images", "ls"]).stdout.splitlines()[1:]) if fields}
    assert listed.get(ref) == hub.digest, f"ctr has {listed}; the upstream serves {hub.digest}"
    check = next(line for line in run([*ctr, "images", "check"]).stdout.splitlines() if line.startswith(ref))
    assert "complete" in check and check.rstrip().endswith("true"), check
    manifest = run([*ctr, "content", "get", hub.digest], text=False).stdout
    assert sha256(manifest) == hub.digest
    lines = [a for a in log.since(mark) if a.path.startswith(f"/v2/{HUB_IMAGE}/")]
    assert lines, "containerd never asked the mirror (it fell back to Docker Hub?)"
    without_ns = [a for a in lines if "ns=docker.io" not in a.query.split("&")]
    assert not without_ns, f"containerd's requests without ?ns=docker.io:\n{AccessLog.show(without_ns)}"
    assert AccessLog.matching(lines, "HEAD", f"/v2/{HUB_IMAGE}/manifests/1", 200) or \
        AccessLog.matching(lines, "GET", f"/v2/{HUB_IMAGE}/manifests/1", 200), AccessLog.show(lines)
    for digest in [hub.manifest["config"]["digest"], *(layer["digest"] for layer in hub.manifest["layers"])]:
        assert sha256(run([*ctr, "content", "get", digest], text=False).stdout) == digest


def test_registries_conf_mirrors_for_skopeo_and_podman(mirror: RegistryProcess, hub: Hub, distribution: Distribution,
                                                       skopeo, podman, tmp_path: Path) -> None:  # noqa: F811
    """registries.conf: docker.io through the mirror's root, ghcr.io (the Distribution upstream)
    through the path prefix `MIRROR/ghcr`; neither real registry is reachable from here."""
    conf = tmp_path / "registries.conf"
    conf.write_text(deploy_file("registries.conf", mirror.host))
    args = list(skopeo.base_args)
    args[args.index("--registries-conf") + 1] = str(conf)
    log = mirror_log(mirror)
    mark = log.mark()
    servers = [mirror, hub.server, distribution.server]

    out = tmp_path / "busybox-dir"
    with_log(servers, [*args, "copy", f"docker://docker.io/{HUB_IMAGE}:1", f"dir:{out}"])
    manifest = (out / "manifest.json").read_bytes()
    assert sha256(manifest) == hub.digest, "skopeo got another manifest than the upstream's"
    for layer in json.loads(manifest)["layers"]:
        assert sha256((out / layer["digest"].split(":", 1)[1]).read_bytes()) == layer["digest"]
    # --no-tags: skopeo lists tags from the registry itself, never from a mirror.
    inspected = json.loads(with_log(servers, [*args, "inspect", "--no-tags",
                                              f"docker://docker.io/{HUB_IMAGE}:1"]).stdout)
    assert inspected["Digest"] == hub.digest

    env = {**podman.env, "CONTAINERS_REGISTRIES_CONF": str(conf)}
    for ref, digest in ((f"docker.io/{HUB_IMAGE}:1", hub.digest), ("ghcr.io/e2e/oci:v1", distribution.digest)):
        with_log(servers, [*podman.base_args, "pull", "--signature-policy", podman.policy, ref], env=env)
        info = json.loads(with_log(servers, [*podman.base_args, "image", "inspect", ref], env=env).stdout)[0]
        assert info["Digest"] == digest, f"podman pulled {ref} at {info['Digest']}; upstream has {digest}"
        with_log(servers, [*podman.base_args, "rmi", "--force", ref], env=env)

    lines = log.since(mark)
    for path in (f"/v2/{HUB_IMAGE}/manifests/1", "/v2/ghcr/e2e/oci/manifests/v1"):
        assert AccessLog.matching(lines, path=path), f"the mirror never saw {path}:\n{AccessLog.show(lines)}"


def test_path_prefix_and_ns_forms_share_one_cache(mirror: RegistryProcess, hub: Hub, distribution: Distribution,
                                                  skopeo, oci_image: OciLayout, session_id: str,
                                                  tmp_path: Path) -> None:
    """`/v2/<alias or host>/<name>` from any client, `?ns=`, and the Docker Hub root: one cache."""
    name = f"forms-{session_id}"
    image = small_image(f"forms {session_id}")
    push_image(hub.url, f"library/{name}", "1", image, AUTH)
    forms = {
        image.digest: [f"/v2/library/{name}/manifests/1", f"/v2/library/{name}/manifests/1?ns=docker.io",
                       f"/v2/{name}/manifests/1?ns=docker.io", f"/v2/hub/library/{name}/manifests/1",
                       f"/v2/hub/{name}/manifests/1", f"/v2/docker.io/library/{name}/manifests/1",
                       f"/v2/index.docker.io/library/{name}/manifests/1"],
        distribution.digest: ["/v2/ghcr/e2e/oci/manifests/v1", "/v2/ghcr.io/e2e/oci/manifests/v1",
                              "/v2/e2e/oci/manifests/v1?ns=ghcr.io"],
    }
    hub_mark, dist_mark = hub.server.access.mark(), distribution.server.access.mark()
    started = time.monotonic()
    for digest, paths in forms.items():
        for path in paths:
            response = get(mirror.url + path)
            assert response.status_code == 200 and response.headers["Docker-Content-Digest"] == digest, \
                show(response, mirror)
            assert sha256(response.content) == digest
    assert time.monotonic() - started < HUB_TTL - 0.5, "too slow to check within the tag TTL"
    # The first form fetched (HEAD of the tag, GET of its digest); every other form was a cache hit.
    hub_lines = [a for a in hub.server.access.since(hub_mark) if "/manifests/" in a.path]
    assert [(a.method, a.path) for a in hub_lines] == [
        ("HEAD", f"/v2/library/{name}/manifests/1"), ("GET", f"/v2/library/{name}/manifests/{image.digest}")], (
        f"{len(forms[image.digest])} forms of one image; want one fetch upstream, saw:\n{AccessLog.show(hub_lines)}")
    dist_lines = [a for a in distribution.server.access.since(dist_mark) if "/manifests/" in a.path]
    assert [(a.method, a.path) for a in dist_lines] in (
        [], [("HEAD", "/v2/e2e/oci/manifests/v1"), ("GET", f"/v2/e2e/oci/manifests/{distribution.digest}")]), (
        f"three forms of one image; want at most one fetch from Distribution, saw:\n{AccessLog.show(dist_lines)}")

    # A real client on the path-prefix form, both spellings; the bytes are the OCI layout's.
    for prefix in ("ghcr", "ghcr.io"):
        inspected = json.loads(with_log([mirror, distribution.server], [
            *skopeo.base_args, "inspect", "--tls-verify=false", f"docker://{mirror.host}/{prefix}/e2e/oci:v1"]).stdout)
        assert inspected["Digest"] == distribution.digest
    layout = tmp_path / "layout"
    with_log([mirror, distribution.server], [
        *skopeo.base_args, "copy", "--src-tls-verify=false", "--preserve-digests",
        f"docker://{mirror.host}/ghcr.io/e2e/oci@{distribution.digest}", f"oci:{layout}:v1"])
    assert read_oci_layout(layout).reachable("v1") == oci_image.reachable("v1")


# -- 2. one upstream GET per blob, however many clients ---------------------------------------

def test_concurrent_cold_pulls_fetch_the_blob_once(mirror: RegistryProcess, hub: Hub) -> None:
    url = f"{mirror.url}/v2/hub/e2e/big/blobs/{hub.big_digest}"
    upstream_path = f"/v2/e2e/big/blobs/{hub.big_digest}"
    mark = hub.server.access.mark()
    mirror_mark = mirror_log(mirror).mark()
    barrier = threading.Barrier(CLIENTS)

    def pull(_: int):
        barrier.wait()
        return stream_sha256(url)

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(pull, range(CLIENTS)))
    bad = [(status, received, digest) for status, digest, received, _ in results
           if status != 200 or received != BIG or digest != hub.big_digest]
    assert not bad, f"{len(bad)} of {CLIENTS} clients got wrong answers (status, bytes, sha256): {bad[:5]}\n" \
                    f"{mirror.log_tail()}"
    lines = hub.server.access.since(mark)
    fetches = AccessLog.matching(lines, path=upstream_path)
    assert [(a.method, a.status) for a in fetches] == [("GET", 200)], (
        f"{CLIENTS} concurrent cold pulls made these upstream requests for the blob "
        f"(want exactly one GET):\n{AccessLog.show(fetches)}")
    served = AccessLog.matching(mirror_log(mirror).since(mirror_mark), "GET", f"/v2/hub/e2e/big/blobs/{hub.big_digest}",
                                200)
    assert len(served) == CLIENTS

    # Now cached: served from the store, the upstream not asked again.
    status, digest, received, _ = stream_sha256(url)
    assert (status, digest, received) == (200, hub.big_digest, BIG)
    assert len(AccessLog.matching(hub.server.access.since(mark), path=upstream_path)) == 1


# -- 3. upstream down, upstream throttling ----------------------------------------------------

@pytest.fixture(scope="module")
def flaky_cached(mirror: RegistryProcess, flaky: Flaky) -> float:
    """flaky's e2e/img:cached pulled through the mirror (by tag, by digest, every blob); returns when."""
    base = f"{mirror.url}/v2/flaky/e2e/img"
    response = get(f"{base}/manifests/cached")
    assert response.status_code == 200 and response.content == flaky.cached.manifest, show(response, mirror)
    assert get(f"{base}/manifests/{flaky.cached.digest}").status_code == 200
    for digest, data in flaky.cached.blobs.items():
        assert get(f"{base}/blobs/{digest}").content == data
    return time.monotonic()


def test_upstream_down_serves_cache_stale_and_fails_fast_for_the_rest(mirror: RegistryProcess, flaky: Flaky,
                                                                       flaky_cached: float, skopeo,
                                                                       tmp_path: Path) -> None:
    base = f"{mirror.url}/v2/flaky/e2e/img"
    flaky.stop()
    sleep_until(flaky_cached + FLAKY_TTL + 0.3)  # the tag is past its TTL: revalidation fails, stale is served
    for method in ("GET", "HEAD"):
        response = get(f"{base}/manifests/cached", method)
        assert response.status_code == 200, show(response, mirror)
        assert response.headers["Docker-Content-Digest"] == flaky.cached.digest
        assert response.headers.get("Warning", "").startswith("110 "), (
            f"a stale manifest must carry `Warning: 110 ...`:\n{show(response, mirror)}")
        if method == "GET":
            assert response.content == flaky.cached.manifest
    response = get(f"{base}/manifests/{flaky.cached.digest}")
    assert response.status_code == 200 and response.content == flaky.cached.manifest, show(response, mirror)
    for digest, data in flaky.cached.blobs.items():
        response = get(f"{base}/blobs/{digest}")
        assert response.status_code == 200 and response.content == data, show(response, mirror)

    # A real client pulls it by tag and by digest.
    for reference in (":cached", f"@{flaky.cached.digest}"):
        layout = tmp_path / f"layout{len(reference)}"
        with_log([mirror], [*skopeo.base_args, "copy", "--src-tls-verify=false", "--preserve-digests",
                            f"docker://{mirror.host}/flaky/e2e/img{reference}", f"oci:{layout}:x"])
        copied = read_oci_layout(layout)
        assert copied.refs["x"].digest == flaky.cached.digest
        assert set(flaky.cached.blobs) <= set(copied.blobs)

    # Never cached: a quick, clear error, no hanging.
    for path in ("manifests/uncached", f"manifests/{flaky.uncached.digest}", f"blobs/{flaky.uncached.layers[0]}"):
        started = time.monotonic()
        response = get(f"{base}/{path}")
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"GET {path} with the upstream down took {elapsed:.1f}s"
        assert response.status_code == 503, show(response, mirror)
        error = response.json()["errors"][0]
        assert error["code"] == "UNAVAILABLE" and "flaky" in error["message"], show(response, mirror)


def test_upstream_429_serves_cache_and_keeps_retry_after(mirror: RegistryProcess, flaky: Flaky,
                                                         flaky_cached: float) -> None:
    base = f"{mirror.url}/v2/flaky/e2e/img"
    # One request per 5 s, no burst: the start-up probe takes the only token, so the mirror's
    # next upstream request is answered 429 with Retry-After: 5.
    flaky.start("--limits-rate", "0.2", "--limits-burst", "1")
    access = flaky.access
    mark = access.mark(settle=0)
    sleep_until(flaky_cached + FLAKY_TTL + 0.3)

    response = get(f"{base}/manifests/cached")
    started = time.monotonic()
    assert response.status_code == 200 and response.headers.get("Warning", "").startswith("110 "), \
        show(response, mirror)
    assert response.content == flaky.cached.manifest
    response = get(f"{base}/manifests/uncached")
    assert response.status_code == 429, show(response, mirror)
    assert response.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    window = float(response.headers["Retry-After"])
    assert 1 <= window <= 6, show(response, mirror)

    # Within the window: the cache answers, the rest is refused at once, the upstream is left alone.
    deadline = started + min(window, 5) - 1
    rounds = 0
    while time.monotonic() < deadline or rounds < 2:
        rounds += 1
        cached = get(f"{base}/manifests/cached")
        assert cached.status_code == 200 and cached.content == flaky.cached.manifest, show(cached, mirror)
        assert get(f"{base}/manifests/{flaky.cached.digest}").status_code == 200
        for digest, data in flaky.cached.blobs.items():
            assert get(f"{base}/blobs/{digest}").content == data
        # By tag, by digest (a fetch, not a revalidation) and a blob: each refused with the window's 429.
        for path in ("manifests/uncached", f"manifests/{flaky.uncached.digest}", f"blobs/{flaky.uncached.layers[0]}"):
            response = get(f"{base}/{path}")
            assert response.status_code == 429 and "Retry-After" in response.headers, show(response, mirror)
            assert response.json()["errors"][0]["code"] == "TOOMANYREQUESTS", show(response, mirror)
        time.sleep(0.3)
    assert time.monotonic() < started + window, "the checks overran the Retry-After window; too slow a machine?"
    # The start-up probe's own line (GET /v2/ 200: it took the only token) may be written after the
    # mark on a loaded machine, since access lines are written once the response is out.
    lines = [a for a in access.since(mark) if (a.method, a.path, a.status) != ("GET", "/v2/", 200)]
    assert [(a.method, a.path, a.status) for a in lines] == [("HEAD", "/v2/e2e/img/manifests/cached", 429)], (
        f"within Retry-After ({window:.0f}s) the upstream saw (want only the one request answered 429):\n"
        f"{AccessLog.show(lines)}")

    # After the window the mirror asks the upstream again.
    sleep_until(started + window + 0.5)
    get(f"{base}/manifests/uncached")
    later = access.since(mark)
    assert len(later) > 1, f"after Retry-After the mirror never went back upstream:\n{AccessLog.show(later)}"


# -- 4. tags follow the upstream after their TTL, revalidated with HEAD -----------------------

def test_moved_tag_followed_after_ttl_not_before_with_head(mirror: RegistryProcess, hub: Hub,
                                                           session_id: str) -> None:
    repo, tag = "e2e/moving", "t"
    one, two = small_image(f"moving one {session_id}"), small_image(f"moving two {session_id}")
    push_image(hub.url, repo, tag, one, AUTH)
    for data in two.blobs.values():
        push_blob(hub.url, repo, data, AUTH)
    url = f"{mirror.url}/v2/hub/{repo}/manifests/{tag}"
    access = hub.server.access
    tag_path, manifests = f"/v2/{repo}/manifests/{tag}", f"/v2/{repo}/manifests/"

    def fetch() -> httpx.Response:
        response = get(url)
        assert response.status_code == 200 and "Warning" not in response.headers, show(response, mirror)
        return response

    mark = access.mark()
    assert fetch().headers["Docker-Content-Digest"] == one.digest
    fetched_at = time.monotonic()
    cold = AccessLog.matching(access.since(mark, settle=0.05), prefix=manifests)
    assert not AccessLog.matching(cold, "GET", tag_path), f"a GET by tag:\n{AccessLog.show(cold)}"

    push_manifest(hub.url, repo, tag, two, AUTH)  # the tag moves upstream
    mark = access.mark(settle=0)
    before = fetch()
    assert time.monotonic() - fetched_at < HUB_TTL - 0.5, "too slow to check within the TTL"
    assert before.headers["Docker-Content-Digest"] == one.digest, "followed the move before the TTL ran out"
    # Only what the mirror asked: the access line of our own PUT may land after the mark, since
    # a server logs a request once its response is out.
    lines = [a for a in AccessLog.matching(access.since(mark, settle=0.05), prefix=manifests) if a.method != "PUT"]
    assert not lines, f"within the TTL the upstream was asked:\n{AccessLog.show(lines)}"

    sleep_until(fetched_at + HUB_TTL + 0.3)
    mark = access.mark(settle=0)
    after = fetch()
    assert after.headers["Docker-Content-Digest"] == two.digest and after.content == two.manifest
    moved_at = time.monotonic()
    lines = AccessLog.matching(access.since(mark), prefix=manifests)
    assert [(a.method, a.path, a.status) for a in lines] == [
        ("HEAD", tag_path, 200), ("GET", f"{manifests}{two.digest}", 200)], (
        f"after the TTL: want one HEAD of the tag, then a GET of the new digest; upstream saw:\n"
        f"{AccessLog.show(lines)}")

    # Fresh again for a TTL; then unchanged upstream means a HEAD and nothing else.
    mark = access.mark(settle=0)
    assert fetch().headers["Docker-Content-Digest"] == two.digest
    sleep_until(moved_at + HUB_TTL + 0.3)
    assert fetch().content == two.manifest
    lines = AccessLog.matching(access.since(mark), prefix=manifests)
    assert [(a.method, a.path) for a in lines] == [("HEAD", tag_path)], (
        f"revalidating an unchanged tag: want exactly one HEAD; upstream saw:\n{AccessLog.show(lines)}")


# -- 6. local repositories beside mirrored ones; no pushes into mirrored namespaces -----------

def test_local_push_and_pull_beside_mirrored_namespaces(mirror: RegistryProcess, hub: Hub,
                                                        mirror_images: MirrorImages) -> None:
    image = mirror_images.local
    ref = f"{mirror.host}/team/app:1"
    with_log([mirror], ["docker", "tag", image.id, ref])
    pushed = with_log([mirror], ["docker", "push", ref]).stdout
    match = re.search(r"^1: digest: (sha256:[0-9a-f]{64}) size: \d+$", pushed, re.M)
    assert match, pushed
    response = get(f"{mirror.url}/v2/team/app/manifests/1")
    assert response.status_code == 200 and response.headers["Docker-Content-Digest"] == match.group(1), \
        show(response, mirror)

    run(["docker", "image", "rm", "--force", image.id])
    pulled = with_log([mirror], ["docker", "pull", ref]).stdout
    assert "Already exists" not in pulled, pulled
    info = json.loads(run(["docker", "image", "inspect", ref]).stdout)[0]
    assert info["Id"] == image.id and f"{mirror.host}/team/app@{match.group(1)}" in info["RepoDigests"]
    (path, content), = image.files.items()
    assert run(["docker", "run", "--rm", "--network", "none", ref]).stdout == content


def test_skopeo_push_and_pull_of_a_local_repository(mirror: RegistryProcess, skopeo, oci_image: OciLayout,
                                                    tmp_path: Path) -> None:
    target = f"docker://{mirror.host}/team/skopeo-app:v1"
    with_log([mirror], [*skopeo.base_args, "copy", "--dest-tls-verify=false", "--preserve-digests",
                        oci_image.ref("v1"), target])
    response = get(f"{mirror.url}/v2/team/skopeo-app/manifests/v1")
    assert response.status_code == 200 and response.content == oci_image.manifest("v1"), show(response, mirror)
    layout = tmp_path / "back"
    with_log([mirror], [*skopeo.base_args, "copy", "--src-tls-verify=false", "--preserve-digests", target,
                        f"oci:{layout}:v1"])
    assert read_oci_layout(layout).reachable("v1") == oci_image.reachable("v1")


@pytest.mark.parametrize("repo", ["hub/e2e/pushed", "library/pushed", "someone/pushed"])
def test_docker_push_into_a_mirrored_namespace_is_denied(mirror: RegistryProcess, hub: Hub,
                                                         mirror_images: MirrorImages, repo: str) -> None:
    image = mirror_images.local
    if run(["docker", "image", "inspect", image.id], check=False).returncode != 0:
        with_log([mirror], ["docker", "pull", f"{mirror.host}/team/app:1"])  # the test above removed it
    ref = f"{mirror.host}/{repo}:1"
    with_log([mirror], ["docker", "tag", image.id, ref])
    try:
        result = run(["docker", "push", ref], check=False)
    finally:
        run(["docker", "image", "rm", ref], check=False)
    assert result.returncode != 0, f"docker push {ref} was accepted:\n{result.stdout}"
    assert re.search(r"denied: .*mirrored from hub", result.stderr), (
        f"docker push {ref}: want `denied: ... mirrored from hub ...`, got:\n{result.stderr}\n{mirror.log_tail()}")


@pytest.mark.parametrize("repo", ["hub/e2e/raw", "docker.io/e2e/raw", "library/raw", "someone/raw", "ghcr/e2e/raw",
                                  "ghcr.io/e2e/raw", "flaky/e2e/raw"])
def test_writes_into_mirrored_namespaces_are_403_denied(mirror: RegistryProcess, repo: str) -> None:
    image = small_image(f"denied {repo}")
    layer = image.layers[0]
    attempts = [
        httpx.post(f"{mirror.url}/v2/{repo}/blobs/uploads/", timeout=30),
        httpx.post(f"{mirror.url}/v2/{repo}/blobs/uploads/", params={"digest": layer},
                   content=image.blobs[layer], timeout=30),
        httpx.post(f"{mirror.url}/v2/{repo}/blobs/uploads/", params={"mount": layer, "from": "team/app"},
                   timeout=30),
        httpx.put(f"{mirror.url}/v2/{repo}/manifests/1", content=image.manifest,
                  headers={"Content-Type": image.media_type}, timeout=30),
        httpx.delete(f"{mirror.url}/v2/{repo}/manifests/{image.digest}", timeout=30),
    ]
    for response in attempts:
        assert response.status_code == 403, show(response, mirror)
        error = response.json()["errors"][0]
        assert error["code"] == "DENIED" and "mirrored from" in error["message"], show(response, mirror)


# -- routing edges: an unknown ?ns= host, and new local repositories while the hub is away ----

def test_unknown_ns_is_not_served_from_another_upstream(mirror: RegistryProcess, hub: Hub) -> None:
    response = get(f"{mirror.url}/v2/{HUB_IMAGE}/manifests/1?ns=quay.io")
    assert response.status_code == 404, show(response, mirror)


@pytest.fixture
def mirror_with_hub_down(tmp_path: Path) -> Iterator[RegistryProcess]:
    upstreams = [{"alias": "hub", "url": f"http://127.0.0.1:{free_port()}", "docker_hub": True}]
    env = {"REGISTRY_MIRROR_UPSTREAMS": json.dumps(upstreams), "REGISTRY_MIRROR_LOCAL_NAMESPACES": '["team"]'}
    with RegistryProcess(tmp_path / "data", env=env) as server:
        yield server


def test_push_of_a_new_local_repository_does_not_depend_on_docker_hub(mirror_with_hub_down: RegistryProcess,
                                                                      skopeo, oci_image: OciLayout) -> None:
    server = mirror_with_hub_down
    with_log([server], [*skopeo.base_args, "copy", "--dest-tls-verify=false", "--preserve-digests",
                        oci_image.ref("v1"), f"docker://{server.host}/team/new-app:v1"])
    response = get(f"{server.url}/v2/team/new-app/manifests/v1")
    assert response.status_code == 200 and response.content == oci_image.manifest("v1"), show(response, server)
