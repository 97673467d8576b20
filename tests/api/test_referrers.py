"""OCI 1.1 artifacts: manifests with `subject` and GET /v2/<name>/referrers/<digest>."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import (
    EMPTY_DESCRIPTOR,
    OCI_INDEX,
    OCI_MANIFEST,
    Pushed,
    assert_error,
    encode,
    image_manifest,
    push_image,
    push_manifest,
    put_manifest,
    random_digest,
    sha256,
    unique_name,
)

SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"
CUSTOM_CONFIG = "application/vnd.example.config.v1+json"


@pytest.fixture
def name() -> str:
    return unique_name("referrers")


@pytest.fixture
def subject(client: httpx.Client, name: str) -> Pushed:
    return push_image(client, name, "subject")


def push_artifact(client: httpx.Client, name: str, subject: dict, artifact_type: str | None = SBOM,
                  annotations: dict[str, str] | None = None, **kwargs) -> Pushed:
    """An artifact manifest (empty config unless told otherwise) whose subject is `subject`, pushed by digest."""
    kwargs.setdefault("empty_config", True)
    body, blobs = image_manifest(client, name, artifact_type=artifact_type, subject=subject,
                                 annotations=annotations, **kwargs)
    push_manifest(client, name, sha256(body), body)
    return Pushed(body, OCI_MANIFEST, sha256(body), blobs)


def referrers(client: httpx.Client, name: str, digest: str, **params: str) -> httpx.Response:
    return client.get(f"/v2/{name}/referrers/{digest}", params=params)


def by_digest(resp: httpx.Response) -> dict[str, dict]:
    return {entry["digest"]: entry for entry in resp.json()["manifests"]}


# -- PUT with subject ------------------------------------------------------------------------

def test_put_artifact_with_subject_is_201_with_oci_subject(client: httpx.Client, name: str,
                                                           subject: Pushed) -> None:
    body, _ = image_manifest(client, name, empty_config=True, artifact_type=SBOM, subject=subject.descriptor())
    resp = put_manifest(client, name, sha256(body), body)
    assert resp.status_code == 201
    assert resp.headers.get("OCI-Subject") == subject.digest


def test_put_artifact_with_missing_subject_is_201(client: httpx.Client, name: str) -> None:
    missing = {"mediaType": OCI_MANIFEST, "digest": random_digest(), "size": 321}
    body, _ = image_manifest(client, name, empty_config=True, artifact_type=SBOM, subject=missing)
    resp = put_manifest(client, name, sha256(body), body)
    assert resp.status_code == 201
    assert resp.headers.get("OCI-Subject") == missing["digest"]


def test_put_artifact_with_subject_by_tag(client: httpx.Client, name: str, subject: Pushed) -> None:
    body, _ = image_manifest(client, name, empty_config=True, artifact_type=SBOM, subject=subject.descriptor())
    resp = put_manifest(client, name, "sbom", body)
    assert resp.status_code == 201
    assert resp.headers.get("OCI-Subject") == subject.digest


def test_put_manifest_without_subject_has_no_oci_subject(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name)
    resp = put_manifest(client, name, "plain", body)
    assert resp.status_code == 201
    assert "OCI-Subject" not in resp.headers


def test_artifact_manifest_is_pullable_with_exact_bytes(client: httpx.Client, name: str, subject: Pushed) -> None:
    artifact = push_artifact(client, name, subject.descriptor())
    resp = client.get(f"/v2/{name}/manifests/{artifact.digest}", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200
    assert resp.content == artifact.body


# -- GET referrers ---------------------------------------------------------------------------

def test_referrers_content_type_is_oci_index(client: httpx.Client, name: str, subject: Pushed) -> None:
    """"The Content-Type header MUST be set to application/vnd.oci.image.index.v1+json." """
    push_artifact(client, name, subject.descriptor())
    resp = referrers(client, name, subject.digest)
    assert resp.status_code == 200
    assert resp.headers.get("Content-Type") == OCI_INDEX


def test_referrers_is_200_image_index(client: httpx.Client, name: str, subject: Pushed) -> None:
    push_artifact(client, name, subject.descriptor())
    resp = referrers(client, name, subject.digest)
    assert resp.status_code == 200
    index = resp.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    assert isinstance(index["manifests"], list)


def test_referrers_lists_descriptor_of_each_referrer(client: httpx.Client, name: str, subject: Pushed) -> None:
    notes = {"org.example.sbom.format": "json", "org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    sbom = push_artifact(client, name, subject.descriptor(), SBOM, notes)
    sig = push_artifact(client, name, subject.descriptor(), SIGNATURE, {"org.example.fingerprint": "abcd"})
    entries = by_digest(referrers(client, name, subject.digest))
    assert set(entries) == {sbom.digest, sig.digest}
    assert entries[sbom.digest] == {"mediaType": OCI_MANIFEST, "digest": sbom.digest, "size": len(sbom.body),
                                    "artifactType": SBOM, "annotations": notes}
    assert entries[sig.digest] == {"mediaType": OCI_MANIFEST, "digest": sig.digest, "size": len(sig.body),
                                   "artifactType": SIGNATURE, "annotations": {"org.example.fingerprint": "abcd"}}


def test_referrer_descriptor_size_matches_manifest_bytes(client: httpx.Client, name: str,
                                                         subject: Pushed) -> None:
    artifact = push_artifact(client, name, subject.descriptor())
    entry = by_digest(referrers(client, name, subject.digest))[artifact.digest]
    assert entry["size"] == len(artifact.body)
    assert entry["mediaType"] == OCI_MANIFEST


def test_referrer_without_artifact_type_uses_config_media_type(client: httpx.Client, name: str,
                                                               subject: Pushed) -> None:
    artifact = push_artifact(client, name, subject.descriptor(), artifact_type=None, empty_config=False,
                             config_media_type=CUSTOM_CONFIG)
    entry = by_digest(referrers(client, name, subject.digest))[artifact.digest]
    assert entry["artifactType"] == CUSTOM_CONFIG


def test_referrer_with_empty_config_and_no_artifact_type(client: httpx.Client, name: str,
                                                         subject: Pushed) -> None:
    artifact = push_artifact(client, name, subject.descriptor(), artifact_type=None)
    entry = by_digest(referrers(client, name, subject.digest))[artifact.digest]
    assert entry["artifactType"] == EMPTY_DESCRIPTOR["mediaType"]


def test_referrer_without_annotations_has_none_or_empty(client: httpx.Client, name: str,
                                                        subject: Pushed) -> None:
    artifact = push_artifact(client, name, subject.descriptor())
    entry = by_digest(referrers(client, name, subject.digest))[artifact.digest]
    assert entry.get("annotations", {}) == {}


def test_index_referrer_without_artifact_type_omits_it(client: httpx.Client, name: str, subject: Pushed) -> None:
    child = push_image(client, name)
    body = encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child.descriptor()],
                   "subject": subject.descriptor(), "annotations": {"org.example.kind": "bundle"}})
    resp = put_manifest(client, name, sha256(body), body, OCI_INDEX)
    assert resp.status_code == 201
    assert resp.headers.get("OCI-Subject") == subject.digest
    entry = by_digest(referrers(client, name, subject.digest))[sha256(body)]
    assert entry["mediaType"] == OCI_INDEX
    assert entry["size"] == len(body)
    assert "artifactType" not in entry
    assert entry["annotations"] == {"org.example.kind": "bundle"}


def test_index_referrer_with_artifact_type(client: httpx.Client, name: str, subject: Pushed) -> None:
    child = push_image(client, name)
    body = encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": SBOM,
                   "manifests": [child.descriptor()], "subject": subject.descriptor()})
    assert put_manifest(client, name, sha256(body), body, OCI_INDEX).status_code == 201
    entry = by_digest(referrers(client, name, subject.digest))[sha256(body)]
    assert entry["artifactType"] == SBOM


def test_referrers_of_missing_subject(client: httpx.Client, name: str) -> None:
    missing = {"mediaType": OCI_MANIFEST, "digest": random_digest(), "size": 321}
    artifact = push_artifact(client, name, missing)
    resp = referrers(client, name, missing["digest"])
    assert resp.status_code == 200
    assert set(by_digest(resp)) == {artifact.digest}


def test_referrers_with_none_is_200_empty_list(client: httpx.Client, name: str, subject: Pushed) -> None:
    resp = referrers(client, name, subject.digest)
    assert resp.status_code == 200
    assert resp.json()["manifests"] == []


def test_empty_referrers_content_type_is_oci_index(client: httpx.Client, name: str, subject: Pushed) -> None:
    resp = referrers(client, name, subject.digest)
    assert resp.headers.get("Content-Type") == OCI_INDEX


def test_referrers_of_unknown_digest_is_200_empty_list(client: httpx.Client, name: str, subject: Pushed) -> None:
    resp = referrers(client, name, random_digest())
    assert resp.status_code == 200
    assert resp.json()["manifests"] == []


def test_referrers_are_scoped_to_repository(client: httpx.Client, name: str, subject: Pushed) -> None:
    other = unique_name("referrers")
    push_artifact(client, other, subject.descriptor())
    assert referrers(client, name, subject.digest).json()["manifests"] == []


def test_referrers_do_not_include_unrelated_manifests(client: httpx.Client, name: str, subject: Pushed) -> None:
    unrelated_subject = push_image(client, name, "other")
    push_artifact(client, name, unrelated_subject.descriptor())
    mine = push_artifact(client, name, subject.descriptor())
    assert set(by_digest(referrers(client, name, subject.digest))) == {mine.digest}


def test_deleted_referrer_disappears(client: httpx.Client, name: str, subject: Pushed) -> None:
    gone = push_artifact(client, name, subject.descriptor(), SBOM)
    kept = push_artifact(client, name, subject.descriptor(), SIGNATURE)
    assert client.delete(f"/v2/{name}/manifests/{gone.digest}").status_code == 202
    assert set(by_digest(referrers(client, name, subject.digest))) == {kept.digest}


def test_referrer_pushed_twice_is_listed_once(client: httpx.Client, name: str, subject: Pushed) -> None:
    artifact = push_artifact(client, name, subject.descriptor())
    push_manifest(client, name, "again", artifact.body)
    digests = [entry["digest"] for entry in referrers(client, name, subject.digest).json()["manifests"]]
    assert digests == [artifact.digest]


def test_referrers_keep_any_text_exactly_and_come_in_push_order(client: httpx.Client, name: str,
                                                                 subject: Pushed) -> None:
    """The listing is written as text (api/referrers.py): quotes, backslashes and non-ASCII in an
    artifactType or an annotation come back as pushed, and the order is the pushes'."""
    odd_type = 'application/vnd.example"quoted\\back+caf\u00e9'
    notes = {"org.example.note": 'say "hi" \\ na\u00efve \u2713 \n', "org.example.empty": ""}
    odd = push_artifact(client, name, subject.descriptor(), odd_type, notes)
    more = [push_artifact(client, name, subject.descriptor(), SBOM, {"n": str(i)}) for i in range(4)]
    listed = referrers(client, name, subject.digest).json()["manifests"]
    assert [entry["digest"] for entry in listed] == [odd.digest, *(m.digest for m in more)]
    assert listed[0] == {"mediaType": OCI_MANIFEST, "digest": odd.digest, "size": len(odd.body),
                         "artifactType": odd_type, "annotations": notes}


# -- artifactType filter ---------------------------------------------------------------------

def test_artifact_type_filter_returns_only_matching(client: httpx.Client, name: str, subject: Pushed) -> None:
    sbom = push_artifact(client, name, subject.descriptor(), SBOM)
    push_artifact(client, name, subject.descriptor(), SIGNATURE)
    resp = referrers(client, name, subject.digest, artifactType=SBOM)
    assert resp.status_code == 200
    assert set(by_digest(resp)) == {sbom.digest}
    assert all(entry["artifactType"] == SBOM for entry in resp.json()["manifests"])


def test_artifact_type_filter_sets_filters_applied(client: httpx.Client, name: str, subject: Pushed) -> None:
    push_artifact(client, name, subject.descriptor(), SBOM)
    resp = referrers(client, name, subject.digest, artifactType=SBOM)
    assert resp.headers.get("OCI-Filters-Applied") == "artifactType"


def test_artifact_type_filter_with_no_match_is_empty(client: httpx.Client, name: str, subject: Pushed) -> None:
    push_artifact(client, name, subject.descriptor(), SBOM)
    resp = referrers(client, name, subject.digest, artifactType="application/vnd.example.none")
    assert resp.status_code == 200
    assert resp.json()["manifests"] == []


def test_artifact_type_filter_matches_config_media_type(client: httpx.Client, name: str,
                                                        subject: Pushed) -> None:
    artifact = push_artifact(client, name, subject.descriptor(), artifact_type=None, empty_config=False,
                             config_media_type=CUSTOM_CONFIG)
    push_artifact(client, name, subject.descriptor(), SBOM)
    resp = referrers(client, name, subject.digest, artifactType=CUSTOM_CONFIG)
    assert set(by_digest(resp)) == {artifact.digest}


def test_unfiltered_referrers_have_no_filters_applied(client: httpx.Client, name: str, subject: Pushed) -> None:
    push_artifact(client, name, subject.descriptor(), SBOM)
    resp = referrers(client, name, subject.digest)
    assert "OCI-Filters-Applied" not in resp.headers


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("digest", ["notadigest", "sha256:xyz", "sha256:abc123"])
def test_referrers_with_malformed_digest_is_400(client: httpx.Client, name: str, subject: Pushed,
                                                digest: str) -> None:
    resp = referrers(client, name, digest)
    assert resp.status_code == 400
    if resp.content:
        assert_error(resp, 400)
