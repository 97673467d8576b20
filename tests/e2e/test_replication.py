"""Replication with real registries (issue 22, acceptance 1 and 2).

Pull: a Debian `docker-registry` (CNCF Distribution 2.8.2) with three repositories, a two-platform
index and a signature (pushed with the OCI 1.1 `sha256-<hex>` tag, as Distribution has no referrers
API), reached through a link that splits and delays bytes. A scheduled rule copies exactly the
filtered set, byte-exact; its next run sends nothing; a moved tag is followed.

Push: `docker push` to A shows up in B (this registry again, over TLS with a CA the test made) within
seconds; A killed with SIGKILL in the middle of a run resumes after a restart without sending a
completed blob again (B's log shows each blob's upload finished once).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.auth.conftest import AuthRegistry, User, add_accounts
from tests.support.images import OCI_INDEX, OCI_MANIFEST, OciLayout, json_bytes, run, sha256
from tests.support.mirror import DistributionProcess, push_blob
from tests.support.netlab import Site, Splitter
from tests.support.server import RegistryProcess
from tests.support.testca import TestCA

pytestmark = pytest.mark.e2e

USER, PASSWORD = "sync", "sync-password"
SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"


def inspect_raw(skopeo, reference: str, creds: str | None = None, ca_dir: Path | None = None) -> bytes:
    tls = [f"--cert-dir={ca_dir}"] if ca_dir else ["--tls-verify=false"]
    auth = [f"--creds={creds}"] if creds else []
    return skopeo("inspect", "--raw", *tls, *auth, f"docker://{reference}", text=False).stdout


def runs(registry: RegistryProcess, rule: str) -> list[dict]:
    response = httpx.get(f"{registry.url}/admin/api/replication/runs", params={"rule": rule}, timeout=30,
                         verify=registry.verify())
    assert response.status_code == 200, response.text
    return response.json()["runs"]


def wait_for_runs(registry: RegistryProcess, rule: str, count: int, timeout: float = 120) -> list[dict]:
    """The rule's history once `count` runs have finished (newest first)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in runs(registry, rule) if r["status"] != "running"]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{rule}: {len(found)} of {count} runs finished within {timeout}s: {found}\n"
                        f"{registry.log_tail()}")
        time.sleep(0.3)


def push_signature(upstream: DistributionProcess, repository: str, subject_digest: str, subject_size: int) -> str:
    """A cosign-style signature manifest naming `subject`, and the OCI 1.1 fallback tag listing it."""
    auth = (USER, PASSWORD)
    payload = b'{"critical":{"image":{"docker-manifest-digest":"' + subject_digest.encode() + b'"}}}'
    layer_digest = push_blob(upstream.url, repository, payload, auth)
    empty = b"{}"
    config_digest = push_blob(upstream.url, repository, empty, auth)
    signature = json_bytes({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIGNATURE_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config_digest, "size": 2},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": layer_digest,
                    "size": len(payload)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject_size}})
    signature_digest = sha256(signature)
    response = httpx.put(f"{upstream.url}/v2/{repository}/manifests/{signature_digest}", content=signature,
                         headers={"Content-Type": OCI_MANIFEST}, auth=auth, timeout=30)
    assert response.status_code == 201, response.text
    fallback = json_bytes({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": signature_digest, "size": len(signature),
         "artifactType": SIGNATURE_TYPE}]})
    tag = subject_digest.replace(":", "-")
    response = httpx.put(f"{upstream.url}/v2/{repository}/manifests/{tag}", content=fallback,
                         headers={"Content-Type": OCI_INDEX}, auth=auth, timeout=30)
    assert response.status_code == 201, response.text
    return signature_digest


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionProcess]:
    registry = DistributionProcess(tmp_path_factory.mktemp("replication-upstream"), {USER: PASSWORD}).start()
    try:
        yield registry
    finally:
        registry.stop()


def copy_to(skopeo, source: str, upstream: DistributionProcess, target: str, all_platforms: bool = False) -> None:
    skopeo("copy", *(["--all"] if all_platforms else []), "--dest-tls-verify=false",
           f"--dest-creds={USER}:{PASSWORD}", "--preserve-digests", source, f"docker://{upstream.host}/{target}")


def test_a_scheduled_pull_rule_copies_the_filtered_set_byte_exact_then_nothing_then_follows_a_moved_tag(
        upstream: DistributionProcess, skopeo, oci_image: OciLayout, oci_index: OciLayout,
        tmp_path: Path) -> None:
    image, other, index = f"oci:{oci_image.path}:v1", f"oci:{oci_image.path}:other", f"oci:{oci_index.path}:multi"
    copy_to(skopeo, image, upstream, "team/app:v1.2.0")
    copy_to(skopeo, other, upstream, "team/app:v1.3.0")
    copy_to(skopeo, image, upstream, "team/app:v2.0.0")  # outside the version range
    copy_to(skopeo, image, upstream, "team/app:latest")  # outside the tag globs
    copy_to(skopeo, index, upstream, "team/multi:v1.5.0", all_platforms=True)
    copy_to(skopeo, other, upstream, "tools/lib:v1.4.1")
    copy_to(skopeo, image, upstream, "private/secret:v1.2.0")  # outside the repository globs
    subject = inspect_raw(skopeo, f"{upstream.host}/team/app:v1.2.0", f"{USER}:{PASSWORD}")
    signature = push_signature(upstream, "team/app", sha256(subject), len(subject))

    site = Site("loopback", "127.0.0.1")
    link = Splitter(site, upstream.host, tmp_path / "splitter.log", max_piece=4096, max_delay=0.001).start()
    rule = {"name": "from-dc1", "direction": "pull", "url": f"http://{link.host}", "username": USER,
            "password": PASSWORD, "repositories": ["team/*", "tools/lib"], "tags": ["v*"], "versions": ">=1.2 <2",
            "destination_prefix": "dc1/", "schedule": "every 3s", "concurrency": 3}
    env = {"REGISTRY_REPLICATION_RULES": json.dumps([rule])}
    try:
        with RegistryProcess(tmp_path / "data", env=env) as registry:
            first = wait_for_runs(registry, "from-dc1", 1)[-1]
            assert first["status"] == "succeeded", first
            expected = {"team/app:v1.2.0", "team/app:v1.3.0", "team/multi:v1.5.0", "tools/lib:v1.4.1"}
            for reference in expected:
                ours = inspect_raw(skopeo, f"{registry.host}/dc1/{reference}")
                theirs = inspect_raw(skopeo, f"{upstream.host}/{reference}", f"{USER}:{PASSWORD}")
                assert sha256(ours) == sha256(theirs), reference
            catalog = httpx.get(f"{registry.url}/v2/_catalog", timeout=30).json()["repositories"]
            assert sorted(catalog) == ["dc1/team/app", "dc1/team/multi", "dc1/tools/lib"]
            tags = httpx.get(f"{registry.url}/v2/dc1/team/app/tags/list", timeout=30).json()["tags"]
            assert sorted(tags) == ["v1.2.0", "v1.3.0"]
            # Both platforms of the index, by digest.
            for child in json.loads(inspect_raw(skopeo, f"{registry.host}/dc1/team/multi:v1.5.0"))["manifests"]:
                assert httpx.head(f"{registry.url}/v2/dc1/team/multi/manifests/{child['digest']}",
                                  timeout=30).status_code == 200
            # The signature came along, found by the referrers API here.
            referrers = httpx.get(f"{registry.url}/v2/dc1/team/app/referrers/{sha256(subject)}", timeout=30).json()
            assert [m["digest"] for m in referrers["manifests"]] == [signature]
            assert first["blobs"] > 0 and first["bytes"] > 0 and first["errors"] == 0
            assert link.stats().down_pieces > 100  # the bytes really came through the chopped link

            second = wait_for_runs(registry, "from-dc1", 2)[0]
            assert second["status"] == "succeeded", second
            for run_row in (first, second):
                print(f"run {run_row['id']}: {run_row['manifests']} manifests, {run_row['blobs']} blobs, "
                      f"{run_row['bytes']} bytes, {run_row['present']} present, "
                      f"{run_row['finished_at'] - run_row['started_at']:.2f}s")
            assert (second["bytes"], second["blobs"], second["manifests"]) == (0, 0, 0), second

            # The upstream moves v1.2.0 to another image; the next run follows it.
            copy_to(skopeo, other, upstream, "team/app:v1.2.0")
            moved = sha256(inspect_raw(skopeo, f"{upstream.host}/team/app:v1.2.0", f"{USER}:{PASSWORD}"))
            deadline = time.monotonic() + 60
            while sha256(inspect_raw(skopeo, f"{registry.host}/dc1/team/app:v1.2.0")) != moved:
                assert time.monotonic() < deadline, registry.log_tail()
                time.sleep(0.5)
            # Every run is visible in the history, and in the metrics.
            metrics = httpx.get(f"{registry.url}/metrics", timeout=30).text
            assert re.search(r'registry_replication_runs_total\{rule="from-dc1",status="succeeded"\} [1-9]', metrics)
    finally:
        link.stop()


# -- push -----------------------------------------------------------------------------------------

def blob_finishes(log_path: Path, digest: str) -> int:
    """How many uploads of `digest` B finished (the PUT that closes an upload names the digest)."""
    text = log_path.read_text(errors="replace")
    hex_part = digest.partition(":")[2]
    return len(re.findall(rf'"PUT /v2/\S+/blobs/uploads/\S*digest=sha256(?::|%3A){hex_part}\S*" 201 ', text))


class TokenClient:
    """HEADs on a registry in token mode, as the user `sync`: the token dance by hand (httpx has none)."""

    def __init__(self, registry: AuthRegistry) -> None:
        self.registry = registry
        self.http = httpx.Client(verify=registry.verify(), timeout=30)
        self.tokens: dict[str, str] = {}

    def status(self, path: str) -> int:
        scope = f"repository:{path.split('/v2/')[1].rsplit('/', 2)[0]}:pull"
        headers = {"Authorization": f"Bearer {self.tokens[scope]}"} if scope in self.tokens else {}
        answer = self.http.head(f"{self.registry.url}{path}", headers=headers)
        if answer.status_code != 401:
            return answer.status_code
        challenge = dict(re.findall(r'(\w+)="([^"]*)"', answer.headers["WWW-Authenticate"]))
        token = self.http.get(challenge["realm"], params={"service": challenge["service"], "scope": scope},
                              auth=(USER, PASSWORD))
        assert token.status_code == 200, token.text
        self.tokens[scope] = token.json()["token"]
        return self.status(path)


def test_a_push_rule_follows_docker_pushes_within_seconds_and_resumes_after_sigkill_without_resending(
        tmp_path: Path, docker_images, skopeo) -> None:
    ca = TestCA(tmp_path / "ca")
    cert = ca.issue(["127.0.0.1", "localhost"])
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"rules:\n  - repositories: [\"prod/*\"]\n    users: [{USER}]\n    actions: [pull, push]\n")
    b = AuthRegistry(tmp_path / "b" / "data", ca_file=ca.cert_file, args=[
        "--auth-mode", "token", "--auth-policy-file", str(policy), "--tls-cert-file", str(cert.cert_file),
        "--tls-key-file", str(cert.key_file)]).start()
    add_accounts(b.data_dir, users=[User(USER, PASSWORD)])
    site = Site("loopback", "127.0.0.1")
    link = Splitter(site, b.host, tmp_path / "splitter.log", max_piece=65536, max_delay=0.002).start()
    rule = {"name": "to-b", "direction": "push", "url": f"https://localhost:{link.port}", "ca_file": str(ca.cert_file),
            "username": USER, "password": PASSWORD, "repositories": ["prod/**"], "on_push": True, "concurrency": 1}
    env = {"REGISTRY_REPLICATION_RULES": json.dumps([rule])}
    a = RegistryProcess(tmp_path / "a" / "data", env=env)
    at_b = TokenClient(b)
    try:
        a.start()
        # docker push to A shows up in B within seconds.
        image = docker_images.app1
        run(["docker", "tag", image.id, f"{a.host}/prod/app:v1"], timeout=60)
        run(["docker", "push", f"{a.host}/prod/app:v1"], timeout=180)
        pushed_at = time.monotonic()
        digest = httpx.head(f"{a.url}/v2/prod/app/manifests/v1", timeout=30,
                            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
                            ).headers["Docker-Content-Digest"]
        while at_b.status(f"/v2/prod/app/manifests/{digest}") != 200:
            assert time.monotonic() - pushed_at < 20, a.log_tail()
            time.sleep(0.2)
        print(f"docker push to A: in B after {time.monotonic() - pushed_at:.2f}s")
        trust = tmp_path / "certs"  # a cert dir holds CAs (*.crt) only: a lone key would be taken for a client's
        trust.mkdir()
        (trust / "ca.crt").write_bytes(ca.cert_file.read_bytes())
        ours = inspect_raw(skopeo, f"127.0.0.1:{b.port}/prod/app:v1", f"{USER}:{PASSWORD}", ca_dir=trust)
        assert sha256(ours) == digest

        # The same image in another repository: B mounts its layers from prod/app, no byte crosses again.
        run(["docker", "tag", image.id, f"{a.host}/prod/copy:v1"], timeout=60)
        run(["docker", "push", f"{a.host}/prod/copy:v1"], timeout=180)
        deadline = time.monotonic() + 20
        while at_b.status(f"/v2/prod/copy/manifests/{digest}") != 200:
            assert time.monotonic() < deadline, a.log_tail()
            time.sleep(0.2)
        mounted = re.findall(r'"POST /v2/prod/copy/blobs/uploads/\?mount=\S*from=prod(?:/|%2F)app\S*" 201 ',
                             b.log_path.read_text())
        sent_to_copy = re.findall(r'"PUT /v2/prod/copy/blobs/uploads/\S*" 201 ', b.log_path.read_text())
        assert len(mounted) == len(image.diff_ids) + 1 and not sent_to_copy, (mounted, sent_to_copy)  # and the config

        # Three big layers pushed to A; A is killed once B has the first, and restarted.
        layers = [os.urandom(24 * 1024 * 1024) for _ in range(3)]
        digests = [push_blob(a.url, "prod/big", data) for data in layers]
        config = json_bytes({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                             "diff_ids": digests}})
        config_digest = push_blob(a.url, "prod/big", config)
        manifest = json_bytes({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(x)}
                       for d, x in zip(digests, layers, strict=True)]})
        before = link.stats(settle=0)
        response = httpx.put(f"{a.url}/v2/prod/big/manifests/v1", content=manifest,
                             headers={"Content-Type": OCI_MANIFEST}, timeout=30)
        assert response.status_code == 201, response.text
        deadline = time.monotonic() + 60
        while sum(at_b.status(f"/v2/prod/big/blobs/{d}") == 200 for d in digests) < 1:
            assert time.monotonic() < deadline, a.log_tail()
            time.sleep(0.05)
        a.kill()
        done_at_kill = [d for d in digests if at_b.status(f"/v2/prod/big/blobs/{d}") == 200]
        assert len(done_at_kill) < 3, "the run finished before the kill: make the layers bigger"
        restarted_at = time.monotonic()
        a.start()
        deadline = time.monotonic() + 90
        while at_b.status("/v2/prod/big/manifests/v1") != 200:
            assert time.monotonic() < deadline, a.log_tail()
            time.sleep(0.3)
        print(f"restart to done: {time.monotonic() - restarted_at:.1f}s; {len(done_at_kill)} of 3 layers at B at "
              "the kill")
        for d in done_at_kill:
            assert blob_finishes(b.log_path, d) == 1, f"{d} was sent again after the restart"
        sent = (link.stats() - before).up_bytes
        total = sum(len(x) for x in layers)
        print(f"bytes to B: {sent} for {total} of layers")
        # What crossed: every layer once, plus at most the one in flight at the kill (and requests' heads).
        assert sent < total + len(layers[0]) + 1024 * 1024, (sent, total)
        history = runs(a, "to-b")
        assert any(r["status"] == "interrupted" for r in history), history
        assert any(r["trigger"] == "resume" and r["status"] == "succeeded" for r in history), history
    finally:
        at_b.http.close()
        a.stop()
        link.stop()
        b.stop()


def test_registry_replicate_pushes_to_distribution_with_the_referrers_tag_it_needs(
        upstream: DistributionProcess, skopeo, oci_image: OciLayout, tmp_path: Path) -> None:
    """On demand from the command line, to a registry without the referrers API (Distribution 2.8.2, basic
    auth): the image byte-exact, its signature, and the `sha256-<hex>` tag that lists it there."""
    rule = {"name": "to-dist", "direction": "push", "url": upstream.url, "username": USER, "password": PASSWORD,
            "repositories": ["shipped/*"], "destination_prefix": "mirror/"}
    env = {"REGISTRY_REPLICATION_RULES": json.dumps([rule])}
    with RegistryProcess(tmp_path / "data", env=env) as registry:
        skopeo("copy", "--dest-tls-verify=false", "--preserve-digests", f"oci:{oci_image.path}:v1",
               f"docker://{registry.host}/shipped/app:v1")
        subject = inspect_raw(skopeo, f"{registry.host}/shipped/app:v1")
        payload = b'{"signed":"' + sha256(subject).encode() + b'"}'
        layer = push_blob(registry.url, "shipped/app", payload)
        config = push_blob(registry.url, "shipped/app", b"{}")
        signature = json_bytes({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIGNATURE_TYPE,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": layer, "size": len(payload)}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": sha256(subject), "size": len(subject)}})
        response = httpx.put(f"{registry.url}/v2/shipped/app/manifests/{sha256(signature)}", content=signature,
                             headers={"Content-Type": OCI_MANIFEST}, timeout=30)
        assert response.status_code == 201, response.text

        command = [sys.executable, "-m", "registry", "replicate", "to-dist", "--data-dir", str(registry.data_dir),
                   "--json"]
        result = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["status"] == "succeeded" and report["errors"] == 0, report
        assert "Traceback" not in result.stderr

        theirs = inspect_raw(skopeo, f"{upstream.host}/mirror/shipped/app:v1", f"{USER}:{PASSWORD}")
        assert theirs == subject
        listed = json.loads(inspect_raw(skopeo, f"{upstream.host}/mirror/shipped/app:{sha256(subject).replace(':', '-')}",
                                        f"{USER}:{PASSWORD}"))
        assert [m["digest"] for m in listed["manifests"]] == [sha256(signature)]
        again = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        second = json.loads(again.stdout)
        assert (second["blobs"], second["bytes"], second["manifests"]) == (0, 0, 0), second
        unknown = subprocess.run([*command[:4], "nope", *command[5:]], env={**os.environ, **env},
                                 capture_output=True, text=True, timeout=300)
        assert unknown.returncode == 2 and "no replication rule named 'nope'" in unknown.stderr
        assert "Traceback" not in unknown.stderr
