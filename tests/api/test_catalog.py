"""Repository listing (Docker Registry HTTP API v2): GET /v2/_catalog with ?n= and ?last=."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import link_parts, next_link, push_image, unique_name

PAGE_SIZE = 1000  # the most names one response holds (registry/api/catalog.py), as documented in README.md


def catalog_all(client: httpx.Client, n: int | None = None) -> list[str]:
    """Every repository, following Link headers."""
    url: str | None = "/v2/_catalog" if n is None else f"/v2/_catalog?n={n}"
    names: list[str] = []
    for _ in range(10_000):
        if url is None:
            return names
        resp = client.get(url)
        assert resp.status_code == 200
        names.extend(resp.json()["repositories"])
        url = next_link(resp)
    raise AssertionError("catalog pagination does not end")


@pytest.fixture
def private(fresh_registry) -> Iterator[tuple[httpx.Client, list[str]]]:
    """A registry of its own holding exactly five repositories."""
    client = httpx.Client(base_url=fresh_registry.url, timeout=60)
    names = [f"catalog/{letter}" for letter in "edcba"]
    for name in names:
        push_image(client, name, "latest")
    yield client, sorted(names)
    client.close()


def test_catalog_is_200_json(client: httpx.Client) -> None:
    push_image(client, unique_name("catalog"), "latest")
    resp = client.get("/v2/_catalog")
    assert resp.status_code == 200
    assert resp.headers.get("Content-Type", "").split(";")[0] == "application/json"
    assert isinstance(resp.json()["repositories"], list)


def test_catalog_includes_pushed_repositories(client: httpx.Client) -> None:
    names = [unique_name("catalog") for _ in range(3)]
    for name in names:
        push_image(client, name, "latest")
    listed = catalog_all(client)
    for name in names:
        assert name in listed


def test_catalog_is_sorted(client: httpx.Client) -> None:
    push_image(client, unique_name("catalog"), "latest")
    repositories = client.get("/v2/_catalog").json()["repositories"]
    assert repositories == sorted(repositories)


def test_catalog_lists_each_repository_once(client: httpx.Client) -> None:
    name = unique_name("catalog")
    push_image(client, name, "a")
    push_image(client, name, "b")
    assert catalog_all(client).count(name) == 1


def test_catalog_lists_multi_component_names(client: httpx.Client) -> None:
    name = f"{unique_name('catalog')}/deep/er"
    push_image(client, name, "latest")
    assert name in catalog_all(client)


def test_catalog_exact_on_private_registry(private) -> None:
    client, names = private
    resp = client.get("/v2/_catalog")
    assert resp.json() == {"repositories": names}


def test_catalog_n_limits_results(private) -> None:
    client, names = private
    resp = client.get("/v2/_catalog", params={"n": 2})
    assert resp.status_code == 200
    assert resp.json()["repositories"] == names[:2]


def test_catalog_n_sets_link(private) -> None:
    client, names = private
    resp = client.get("/v2/_catalog", params={"n": 2})
    link = next_link(resp)
    assert link is not None
    path, query = link_parts(link)
    assert path == "/v2/_catalog"
    assert query == {"n": "2", "last": names[1]}


def test_following_catalog_links_yields_every_repository_once(private) -> None:
    client, names = private
    assert catalog_all(client, n=2) == names


def test_catalog_last_returns_repositories_after_it(private) -> None:
    client, names = private
    resp = client.get("/v2/_catalog", params={"last": names[2]})
    assert resp.json()["repositories"] == names[3:]


def test_catalog_last_page_has_no_link(private) -> None:
    client, names = private
    resp = client.get("/v2/_catalog", params={"n": 2, "last": names[2]})
    assert resp.json()["repositories"] == names[3:]
    assert "Link" not in resp.headers


def test_catalog_n_zero_is_empty(private) -> None:
    client, _ = private
    resp = client.get("/v2/_catalog", params={"n": 0})
    assert resp.status_code == 200
    assert resp.json()["repositories"] == []
    assert "Link" not in resp.headers


def test_catalog_of_empty_registry_is_empty(fresh_registry) -> None:
    with httpx.Client(base_url=fresh_registry.url, timeout=60) as client:
        resp = client.get("/v2/_catalog")
        assert resp.status_code == 200
        assert resp.json()["repositories"] == []


def add_repositories(data_dir: Path, names: list[str]) -> None:
    """Repositories holding one manifest row each, written straight into the registry's SQLite
    database: the catalog reads only these rows, and 1,000 pushes over HTTP would take minutes."""
    with sqlite3.connect(data_dir / "registry.db", timeout=30) as db:
        for number, name in enumerate(names):
            repository_id = db.execute("INSERT INTO repositories (name, created_at) VALUES (?, ?)",
                                       (name, time.time())).lastrowid
            db.execute("INSERT INTO manifests (repository_id, digest, media_type, payload, size, created_at) "
                       "VALUES (?, ?, 'application/vnd.oci.image.manifest.v1+json', x'7b7d', 2, ?)",
                       (repository_id, f"sha256:{number:064x}", time.time()))


@pytest.fixture
def crowded(fresh_registry) -> Iterator[tuple[httpx.Client, list[str]]]:
    """A registry of its own holding one repository more than a page."""
    names = [f"crowd/r{number:05d}" for number in range(PAGE_SIZE + 1)]
    add_repositories(fresh_registry.data_dir, names)
    with httpx.Client(base_url=fresh_registry.url, timeout=60) as client:
        yield client, names


def test_catalog_without_n_is_one_page_with_a_link_to_the_next(crowded) -> None:
    client, names = crowded
    resp = client.get("/v2/_catalog")
    assert resp.status_code == 200
    assert resp.json()["repositories"] == names[:PAGE_SIZE]
    link = next_link(resp)
    assert link is not None
    assert link_parts(link) == ("/v2/_catalog", {"n": str(PAGE_SIZE), "last": names[PAGE_SIZE - 1]})
    rest = client.get(link)
    assert rest.json()["repositories"] == names[PAGE_SIZE:]
    assert "Link" not in rest.headers
    assert catalog_all(client) == names


def test_catalog_n_above_the_page_size_is_cut_to_it_with_a_link(crowded) -> None:
    client, names = crowded
    resp = client.get("/v2/_catalog", params={"n": 5000})
    assert resp.status_code == 200
    assert resp.json()["repositories"] == names[:PAGE_SIZE]
    link = next_link(resp)
    assert link is not None
    assert link_parts(link) == ("/v2/_catalog", {"n": str(PAGE_SIZE), "last": names[PAGE_SIZE - 1]})
    assert catalog_all(client, n=5000) == names


def test_catalog_n_of_exactly_the_rest_has_no_link(crowded) -> None:
    client, names = crowded
    resp = client.get("/v2/_catalog", params={"n": PAGE_SIZE, "last": names[0]})
    assert resp.json()["repositories"] == names[1:]
    assert "Link" not in resp.headers
