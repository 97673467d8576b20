"""Untagged manifests on the admin API and page: listed with their referrers, deletable with them.

The repository is filled the way users leave manifests untagged: skopeo pushes `team/app:v1` twice
with different images (the first is left untagged when the tag moves), and `team/app:multi`, an
index whose tag is then deleted. Beside them: a signature of the first image, a signature of that
signature, and a referrer whose subject was never pushed. Index children and referrers are not
listed on their own: they show under their index or subject.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.admin.conftest import watch_errors
from tests.admin.test_page import open_view
from tests.api.helpers import OCI_MANIFEST, Pushed, image_manifest, push_manifest, random_digest, sha256
from tests.support.clients import Skopeo, skopeo  # noqa: F401  (skopeo: a fixture, with a private policy)
from tests.support.images import write_multi_arch_layout, write_single_arch_layout
from tests.support.server import RegistryProcess

NO_TLS = ("--src-tls-verify=false", "--dest-tls-verify=false")
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"
REPO = "team/app"


def push_referrer(client: httpx.Client, subject: dict[str, Any], artifact_type: str) -> Pushed:
    body, blobs = image_manifest(client, REPO, empty_config=True, artifact_type=artifact_type, subject=subject)
    push_manifest(client, REPO, sha256(body), body)
    return Pushed(body, OCI_MANIFEST, sha256(body), blobs)


def manifest_status(client: httpx.Client, digest: str) -> int:
    return client.head(f"/v2/{REPO}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}).status_code


@pytest.fixture(scope="module")
def filled(server: RegistryProcess, skopeo: Skopeo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("layouts")
    single = write_single_arch_layout(root / "single", "untagged")
    multi = write_multi_arch_layout(root / "multi", "untagged")
    skopeo("copy", *NO_TLS, single.ref("v1"), f"docker://{server.host}/{REPO}:v1")
    skopeo("copy", *NO_TLS, "--all", multi.ref("multi"), f"docker://{server.host}/{REPO}:multi")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        old = single.refs["v1"]
        signature = push_referrer(client, {"mediaType": OCI_MANIFEST, "digest": old.digest, "size": old.size},
                                  SIGNATURE)
        signature_of_signature = push_referrer(client, signature.descriptor(), SIGNATURE)
        sbom = push_referrer(client, {"mediaType": OCI_MANIFEST, "digest": random_digest(), "size": 100}, SBOM)
        assert client.delete(f"/v2/{REPO}/manifests/multi").status_code == 202  # the index is left untagged
    skopeo("copy", *NO_TLS, single.ref("other"), f"docker://{server.host}/{REPO}:v1")  # v1 moves on
    return {"old": old.digest, "index": multi.refs["multi"].digest, "signature": signature.digest,
            "signature_of_signature": signature_of_signature.digest, "dangling": sbom.digest,
            "current": single.refs["other"].digest}


def untagged(admin: httpx.Client, **params: Any) -> httpx.Response:
    return admin.get(f"/admin/api/repositories/{REPO}/untagged", params=params)


def test_the_list_holds_what_nothing_names_newest_first(admin: httpx.Client, filled: dict[str, Any]) -> None:
    page = untagged(admin).json()
    assert [m["digest"] for m in page["manifests"]] == [filled["dangling"], filled["index"], filled["old"]]
    assert page["next"] is None
    by_digest = {m["digest"]: m for m in page["manifests"]}
    old = by_digest[filled["old"]]
    assert old["referrer_count"] == 1
    assert [(r["digest"], r["artifact_type"]) for r in old["referrers"]] == [(filled["signature"], SIGNATURE)]
    assert old["size"] > 0 and old["platforms"] == [] and old["missing_subject"] is None
    index = by_digest[filled["index"]]
    assert sorted(index["platforms"]) == ["linux/amd64", "linux/arm64"] and index["referrer_count"] == 0
    assert by_digest[filled["dangling"]]["missing_subject"] is not None
    # One at a time, the pages walk the same list.
    walked, last = [], None
    while True:
        one = untagged(admin, limit=1, **({"last": last} if last else {})).json()
        walked += [m["digest"] for m in one["manifests"]]
        last = one["next"]
        if last is None:
            break
    assert walked == [m["digest"] for m in page["manifests"]]


@pytest.mark.parametrize(("params", "code"), [({"last": "x1"}, "PAGINATION_NUMBER_INVALID"),
                                               ({"last": "1" * 30}, "PAGINATION_NUMBER_INVALID"),
                                               ({"limit": "0"}, "PAGINATION_NUMBER_INVALID")])
def test_a_bad_page_is_a_400(admin: httpx.Client, filled: dict[str, Any], params: dict[str, str], code: str) -> None:
    resp = untagged(admin, **params)
    assert resp.status_code == 400 and resp.json()["errors"][0]["code"] == code


def test_unknown_repository_is_a_404(admin: httpx.Client, filled: dict[str, Any]) -> None:
    resp = admin.get("/admin/api/repositories/no/such/untagged")
    assert resp.status_code == 404 and resp.json()["errors"][0]["code"] == "NAME_UNKNOWN"


def test_a_bad_referrers_flag_deletes_nothing(admin: httpx.Client, filled: dict[str, Any]) -> None:
    resp = admin.delete(f"/admin/api/repositories/{REPO}/manifests/{filled['old']}", params={"referrers": "yes"})
    assert resp.status_code == 400 and resp.json()["errors"][0]["code"] == "UNSUPPORTED"
    assert manifest_status(admin, filled["old"]) == 200


def test_the_page_lists_them_and_deletes_one_with_its_referrers(chromium: Any, server: RegistryProcess,
                                                                  admin: httpx.Client, filled: dict[str, Any],
                                                                  skopeo: Skopeo, artifacts: Path) -> None:
    page = chromium.new_page()
    errors = watch_errors(page)
    try:
        open_view(page, server, "#/repo/team%2Fapp")
        rows = page.locator("#untagged tbody tr")
        assert [rows.nth(i).get_attribute("data-digest") for i in range(rows.count())] == [
            filled["dangling"], filled["index"], filled["old"]]
        old = page.locator(f'#untagged tr[data-digest="{filled["old"]}"]')
        assert old.locator(".referrers a").inner_text() == SIGNATURE
        assert "linux/arm64" in page.locator(f'#untagged tr[data-digest="{filled["index"]}"]').inner_text()
        page.screenshot(path=str(artifacts / "untagged.png"), full_page=True)

        old.locator("button.delete-untagged").click()
        dialog = page.locator("dialog#confirm")
        dialog.wait_for(state="visible")
        assert "and its 1 referrer" in dialog.inner_text()
        page.locator("#confirm-cancel").click()
        assert manifest_status(admin, filled["old"]) == 200
        old.locator("button.delete-untagged").click()
        dialog.wait_for(state="visible")
        page.locator("#confirm-ok").click()
        old.wait_for(state="detached")
        assert page.locator("#untagged tbody tr").count() == 2
        assert errors == []
    finally:
        page.close()
    # The image, its signature and the signature's signature are gone; the moved tag still pulls.
    for digest in (filled["old"], filled["signature"], filled["signature_of_signature"]):
        assert manifest_status(admin, digest) == 404
    skopeo("inspect", "--tls-verify=false", f"docker://{server.host}/{REPO}:v1")
    deleted = [e for e in admin.get("/admin/api/audit", params={"action": "delete"}).json()["entries"]
               if e.get("digest") in (filled["old"], filled["signature"], filled["signature_of_signature"])]
    assert len(deleted) == 3


def test_delete_without_the_flag_leaves_the_referrers(admin: httpx.Client, filled: dict[str, Any]) -> None:
    index = filled["index"]
    done = admin.delete(f"/admin/api/repositories/{REPO}/manifests/{index}").json()
    assert done == {"deleted": f"{REPO}@{index}", "referrers": []}
    # Its children are no index's now: each is listed on its own.
    assert len(untagged(admin).json()["manifests"]) == 3


def test_more_buttons_fetch_the_next_pages(chromium: Any, server: RegistryProcess, admin: httpx.Client) -> None:
    """101 tags and 101 untagged manifests: the page shows 100 of each, and each "More" button the rest."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        body, _ = image_manifest(client, "team/many")
        for i in range(101):
            push_manifest(client, "team/many", f"t{i:03}", body)
            referrer, _ = image_manifest(client, "team/many", empty_config=True, artifact_type=SBOM,
                                         subject={"mediaType": OCI_MANIFEST, "digest": random_digest(), "size": 1})
            push_manifest(client, "team/many", sha256(referrer), referrer)
    page = chromium.new_page()
    try:
        open_view(page, server, "#/repo/team%2Fmany")
        for table, button in (("#tags", "#more-tags"), ("#untagged", "#more-untagged")):
            assert page.locator(f"{table} tbody tr").count() == 100
            page.locator(button).click()
            page.wait_for_function("([t]) => document.querySelectorAll(t + ' tbody tr').length === 101",
                                   arg=[table])
            assert page.locator(button).is_hidden()
    finally:
        page.close()
