"""Tag listing: GET /v2/<name>/tags/list with ?n= and ?last= pagination."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import (
    assert_error,
    link_parts,
    next_link,
    push_image,
    push_manifest,
    unique_name,
)

TAGS = ["delta", "alpha", "echo", "charlie", "bravo"]


@pytest.fixture
def tagged(client: httpx.Client) -> str:
    """A repository with the five TAGS (pushed out of order) on one manifest."""
    name = unique_name("tags")
    pushed = push_image(client, name, TAGS[0])
    for tag in TAGS[1:]:
        push_manifest(client, name, tag, pushed.body)
    return name


def test_tags_list_is_200_json(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list")
    assert resp.status_code == 200
    assert resp.headers.get("Content-Type", "").split(";")[0] == "application/json"


def test_tags_list_has_name_and_sorted_tags(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list")
    assert resp.json() == {"name": tagged, "tags": sorted(TAGS)}


def test_tags_list_without_n_has_no_link(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list")
    assert "Link" not in resp.headers


def test_tags_list_sorts_digits_and_separators(client: httpx.Client) -> None:
    name = unique_name("tags")
    tags = ["v10", "v2", "v1.0", "v1-rc", "v1_0", "0", "latest"]
    pushed = push_image(client, name, tags[0])
    for tag in tags[1:]:
        push_manifest(client, name, tag, pushed.body)
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == sorted(tags)


def test_tags_n_limits_results(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"n": 2})
    assert resp.status_code == 200
    assert resp.json() == {"name": tagged, "tags": ["alpha", "bravo"]}


def test_tags_n_sets_link_to_next_page(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"n": 2})
    link = next_link(resp)
    assert link is not None
    path, query = link_parts(link)
    assert path == f"/v2/{tagged}/tags/list"
    assert query == {"n": "2", "last": "bravo"}


def test_tags_link_header_format(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"n": 2})
    assert resp.headers["Link"] == f'</v2/{tagged}/tags/list?n=2&last=bravo>; rel="next"'


def test_following_tag_links_yields_every_tag_once(client: httpx.Client, tagged: str) -> None:
    seen: list[str] = []
    url: str | None = f"/v2/{tagged}/tags/list?n=2"
    pages = 0
    while url is not None:
        resp = client.get(url)
        assert resp.status_code == 200
        page = resp.json()["tags"]
        assert len(page) <= 2
        seen.extend(page)
        url = next_link(resp)
        pages += 1
        assert pages <= len(TAGS) + 1, "pagination does not end"
    assert seen == sorted(TAGS)


def test_last_page_has_no_link(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"n": 2, "last": "delta"})
    assert resp.json()["tags"] == ["echo"]
    assert "Link" not in resp.headers


def test_full_last_page_has_no_link(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"n": 2, "last": "charlie"})
    assert resp.json()["tags"] == ["delta", "echo"]
    assert "Link" not in resp.headers


def test_n_equal_to_total_returns_all(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"n": len(TAGS)})
    assert resp.json()["tags"] == sorted(TAGS)


def test_n_equal_to_total_has_no_link(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"n": len(TAGS)})
    assert "Link" not in resp.headers


def test_n_larger_than_total_returns_all_without_link(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"n": 100})
    assert resp.json()["tags"] == sorted(TAGS)
    assert "Link" not in resp.headers


def test_n_zero_returns_empty_list_without_link(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"n": 0})
    assert resp.status_code == 200
    assert resp.json()["tags"] == []
    assert "Link" not in resp.headers


def test_last_returns_tags_after_it(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"last": "bravo"})
    assert resp.status_code == 200
    assert resp.json()["tags"] == ["charlie", "delta", "echo"]


def test_last_with_n(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"n": 2, "last": "alpha"})
    assert resp.json()["tags"] == ["bravo", "charlie"]


def test_last_that_is_not_a_tag_starts_after_its_position(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"last": "c"})
    assert resp.json()["tags"] == ["charlie", "delta", "echo"]


def test_last_after_every_tag_is_empty(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"last": "zzz"})
    assert resp.status_code == 200
    assert resp.json()["tags"] == []


@pytest.mark.parametrize("n", ["-1", "abc"])
def test_invalid_n_is_400(client: httpx.Client, tagged: str, n: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"n": n})
    assert_error(resp, 400)


def test_tags_of_unknown_repository_is_404_name_unknown(client: httpx.Client) -> None:
    resp = client.get(f"/v2/{unique_name('nowhere')}/tags/list")
    assert_error(resp, 404, "NAME_UNKNOWN")


def test_deleted_tag_is_not_listed(client: httpx.Client, tagged: str) -> None:
    assert client.delete(f"/v2/{tagged}/manifests/charlie").status_code == 202
    assert client.get(f"/v2/{tagged}/tags/list").json()["tags"] == ["alpha", "bravo", "delta", "echo"]
