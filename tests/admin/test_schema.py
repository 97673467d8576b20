"""Schema-driven: schemathesis generates requests for every operation in /admin/api/openapi.json
(valid and invalid parameters and bodies) against a real server with content in it. No answer may
be a 5xx, and every answer must match the status codes and schemas the file documents.

The GC, retention and fsck operations are documented before this branch serves them: until they
exist their 404 is accepted (it is documented for the GET of a last report).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from tests.api.helpers import push_image, push_index
from tests.support.server import RegistryProcess, free_port

MAINTENANCE = ("/admin/api/gc", "/admin/api/retention", "/admin/api/fsck")


@pytest.fixture(scope="module")
def schema_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    # A webhook endpoint nobody listens on: its test event is answered (not delivered), not a 404.
    endpoints = [{"name": "ci", "url": f"http://127.0.0.1:{free_port()}/events", "timeout": "1s"}]
    # A replication rule of the configuration that copies team/app within this registry: its run is in the history.
    port = free_port()
    rules = [{"name": "copy", "direction": "pull", "url": f"http://127.0.0.1:{port}", "repositories": ["team/app"],
              "destination_prefix": "copy/"}]
    env = {"REGISTRY_NOTIFICATIONS_ENDPOINTS": json.dumps(endpoints), "REGISTRY_REPLICATION_RULES": json.dumps(rules)}
    with RegistryProcess(tmp_path_factory.mktemp("schema") / "data", port=port, env=env) as registry:
        with httpx.Client(base_url=registry.url) as client:
            push_image(client, "team/app", "latest")
            push_index(client, "team/multi", "latest")
            client.post("/v2/team/app/blobs/uploads/")
            assert client.post("/admin/api/replication/rules/copy/run").status_code == 202
            deadline = time.monotonic() + 60
            while [r["status"] for r in client.get("/admin/api/replication/runs").json()["runs"]] != ["succeeded"]:
                assert time.monotonic() < deadline, registry.log_tail()
                time.sleep(0.2)
        yield registry


@pytest.fixture
def admin_schema(schema_server: RegistryProcess):  # type: ignore[no-untyped-def]
    return schemathesis.from_uri(f"{schema_server.url}/admin/api/openapi.json", base_url=schema_server.url)


schema = schemathesis.from_pytest_fixture("admin_schema")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_api_never_fails_and_matches_its_description(case):  # type: ignore[no-untyped-def]
    response = case.call(timeout=30)
    checks = [not_a_server_error]
    if not (case.path in MAINTENANCE and response.status_code == 404):
        checks += [status_code_conformance, response_schema_conformance]
    case.validate_response(response, checks=tuple(checks))


def test_the_document_is_valid_openapi() -> None:
    """openapi-spec-validator accepts the document as served (it refused `"required": []`, which OpenAPI 3.0
    forbids: an empty list must be left out)."""
    from openapi_spec_validator import validate

    from registry.admin.page import OPENAPI

    validate(json.loads(OPENAPI.read_text()))
