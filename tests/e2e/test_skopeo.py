"""Real skopeo against the registry: OCI layouts in and out byte-exact, image indexes, inspect,
list-tags, delete. The registry is plain HTTP, hence the `tls-verify=false` flags.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.host import oci_arch
from tests.support.images import OCI_INDEX, OCI_MANIFEST, CommandFailed, OciLayout, read_oci_layout
from tests.support.server import RegistryProcess

pytestmark = pytest.mark.e2e

NO_TLS = ("--src-tls-verify=false", "--dest-tls-verify=false")


def with_log(registry: RegistryProcess, call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except CommandFailed as exc:
        raise AssertionError(f"{exc}\n--- registry log {registry.log_path} (tail)\n{registry.log_tail()}") from None


def copy(skopeo, registry: RegistryProcess, src: str, dst: str, *extra: str) -> None:
    with_log(registry, skopeo, "copy", *NO_TLS, "--preserve-digests", *extra, src, dst)


def inspect(skopeo, registry: RegistryProcess, ref: str, *extra: str, check: bool = True):
    return with_log(registry, skopeo, "inspect", "--tls-verify=false", *extra, ref, check=check)


def inspect_raw(skopeo, registry: RegistryProcess, ref: str, *extra: str) -> bytes:
    """`skopeo inspect --raw`, as bytes (no newline translation)."""
    return with_log(registry, skopeo, "inspect", "--tls-verify=false", "--raw", *extra, ref, text=False).stdout


def list_tags(skopeo, registry: RegistryProcess, repo: str) -> list[str]:
    out = with_log(registry, skopeo, "list-tags", "--tls-verify=false", f"docker://{registry.host}/{repo}").stdout
    return sorted(json.loads(out)["Tags"])


@pytest.fixture(scope="module")
def image_repo(skopeo, registry: RegistryProcess, oci_image: OciLayout) -> str:
    """skopeo/image with tags v1 and other, copied in from the OCI layout."""
    repo = f"{registry.host}/skopeo/image"
    for tag in ("v1", "other"):
        copy(skopeo, registry, oci_image.ref(tag), f"docker://{repo}:{tag}")
    return repo


@pytest.fixture(scope="module")
def index_repo(skopeo, registry: RegistryProcess, oci_index: OciLayout) -> str:
    """skopeo/multi:multi, the whole image index copied in with --all."""
    repo = f"{registry.host}/skopeo/multi"
    copy(skopeo, registry, oci_index.ref("multi"), f"docker://{repo}:multi", "--all")
    return repo


def assert_same_image(back: OciLayout, original: OciLayout, tag: str) -> None:
    assert back.refs[tag].digest == original.refs[tag].digest
    assert back.refs[tag].media_type == original.refs[tag].media_type
    assert back.manifest(tag) == original.manifest(tag), "manifest bytes changed in the round trip"
    sent, received = original.reachable(tag), back.reachable(tag)
    assert sorted(received) == sorted(sent), "different set of blobs after the round trip"
    for digest, data in sent.items():
        assert received[digest] == data, f"blob {digest} differs after the round trip"
    assert sorted(back.blobs) == sorted(sent), "unexpected extra blobs in the pulled layout"


def test_oci_image_round_trip_is_byte_exact(skopeo, registry, oci_image: OciLayout, image_repo: str,
                                            tmp_path: Path) -> None:
    for tag in ("v1", "other"):
        out = tmp_path / tag
        copy(skopeo, registry, f"docker://{image_repo}:{tag}", f"oci:{out}:{tag}")
        back = read_oci_layout(out)
        assert back.refs[tag].media_type == OCI_MANIFEST
        assert_same_image(back, oci_image, tag)


def test_image_index_round_trip_with_all_is_byte_exact(skopeo, registry, oci_index: OciLayout, index_repo: str,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "multi"
    copy(skopeo, registry, f"docker://{index_repo}:multi", f"oci:{out}:multi", "--all")
    back = read_oci_layout(out)
    assert back.refs["multi"].media_type == OCI_INDEX
    assert_same_image(back, oci_index, "multi")

    # The registry serves the index and each platform's manifest by digest, unchanged.
    index_bytes = oci_index.manifest("multi")
    assert inspect_raw(skopeo, registry, f"docker://{index_repo}:multi") == index_bytes
    children = json.loads(index_bytes)["manifests"]
    assert [c["platform"]["architecture"] for c in children] == ["amd64", "arm64"]
    for child in children:
        raw = inspect_raw(skopeo, registry, f"docker://{index_repo}@{child['digest']}")
        assert raw == oci_index.blobs[child["digest"]]
        # skopeo resolves the index to the platform asked for.
        info = json.loads(with_log(registry, skopeo, "--override-arch", child["platform"]["architecture"],
                                   "--override-os", "linux", "inspect", "--tls-verify=false",
                                   f"docker://{index_repo}:multi").stdout)
        assert info["Architecture"] == child["platform"]["architecture"]
        assert info["Layers"] == [layer["digest"] for layer in json.loads(raw)["layers"]]


def test_inspect(skopeo, registry, oci_image: OciLayout, image_repo: str, session_id: str) -> None:
    manifest_bytes = oci_image.manifest("v1")
    manifest = json.loads(manifest_bytes)
    digest = oci_image.refs["v1"].digest
    for ref in (f"docker://{image_repo}:v1", f"docker://{image_repo}@{digest}"):
        info = json.loads(inspect(skopeo, registry, ref).stdout)
        assert info["Digest"] == digest
        assert info["Architecture"] == oci_arch() and info["Os"] == "linux"  # oci_image is built for this host
        assert info["Layers"] == [layer["digest"] for layer in manifest["layers"]]
        assert info["Labels"] == {"e2e.session": session_id, "e2e.tag": "v1"}
        assert "v1" in info["RepoTags"] and "other" in info["RepoTags"]
        # --raw is the pushed manifest, byte for byte; --config --raw the config blob.
        assert inspect_raw(skopeo, registry, ref) == manifest_bytes
        config = inspect_raw(skopeo, registry, ref, "--config")
        assert config == oci_image.blobs[manifest["config"]["digest"]]


def test_list_tags(skopeo, registry, image_repo: str, index_repo: str) -> None:
    assert list_tags(skopeo, registry, "skopeo/image") == ["other", "v1"]
    assert list_tags(skopeo, registry, "skopeo/multi") == ["multi"]


def test_delete(skopeo, registry, oci_image: OciLayout, image_repo: str) -> None:
    repo = f"{registry.host}/skopeo/deleteme"
    copy(skopeo, registry, oci_image.ref("v1"), f"docker://{repo}:doomed")
    copy(skopeo, registry, oci_image.ref("other"), f"docker://{repo}:keep")
    digest = oci_image.refs["v1"].digest
    assert json.loads(inspect(skopeo, registry, f"docker://{repo}:doomed").stdout)["Digest"] == digest

    with_log(registry, skopeo, "delete", "--tls-verify=false", f"docker://{repo}:doomed")

    for ref in (f"docker://{repo}:doomed", f"docker://{repo}@{digest}"):
        result = inspect(skopeo, registry, ref, "--raw", check=False)
        assert result.returncode != 0, f"`skopeo inspect {ref}` still works after delete:\n{result.stdout[:500]}"
        assert "manifest unknown" in result.stderr.lower(), result.stderr
    assert list_tags(skopeo, registry, "skopeo/deleteme") == ["keep"]
    assert json.loads(inspect(skopeo, registry, f"docker://{repo}:keep").stdout)["Digest"] == \
        oci_image.refs["other"].digest
    # The same manifest in another repository is untouched.
    assert inspect_raw(skopeo, registry, f"docker://{image_repo}:v1") == oci_image.manifest("v1")
