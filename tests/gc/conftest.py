"""Registries for the maintenance tests: the embedded default and PostgreSQL + S3, each with its
own data so garbage collection sees only what the test made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.backends import SETUPS, postgres_s3_registry
from tests.support.server import RegistryProcess

Factory = Callable[..., RegistryProcess]


@pytest.fixture(params=SETUPS)
def make_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """make_registry(**REGISTRY_* overrides) -> a started registry on this test's set-up."""
    started: list[RegistryProcess] = []

    def make(**settings: Any) -> RegistryProcess:
        env = {f"REGISTRY_{k.upper()}": v if isinstance(v, str) else json.dumps(v) for k, v in settings.items()}
        data = tmp_path / f"data{len(started)}"
        if request.param == "sqlite+filesystem":
            server = RegistryProcess(data, env=env)
        else:
            server = postgres_s3_registry(data, request.getfixturevalue("postgres"),
                                          request.getfixturevalue("swift_s3"), env=env)
        started.append(server.start())
        return server

    make.setup = request.param  # type: ignore[attr-defined]
    yield make
    for server in started:
        server.stop()


def run_job(http: httpx.Client, kind: str, **body: Any) -> dict[str, Any]:
    response = http.post(f"/admin/api/{kind}", json=body, timeout=600)
    assert response.status_code == 200, response.text
    return response.json()


def item_set(report: dict[str, Any]) -> set[tuple]:
    return {tuple(sorted(item.items())) for item in report["items"]}
