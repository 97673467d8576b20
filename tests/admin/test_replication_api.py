"""The replication admin API (/admin/api/replication) and `registry replicate`, against real processes.

The remote is a second instance of this registry with basic authentication (an htpasswd file), holding
one image: a run succeeds only with the rule's stored password. The registry under test has one rule
from its configuration (REGISTRY_REPLICATION_RULES) and gets others through the API; no rule has a
schedule, so every run here is one the test asked for.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from registry.metadata import leases
from registry.metadata import replication as replication_rows
from registry.metadata.db import Database
from registry.settings import load
from tests.auth.conftest import AuthRegistry, basic, push_image, write_htpasswd
from tests.support.server import RegistryProcess

BASE = "/admin/api/replication"
USER, PASSWORD = "sync", "replication-pw-4c1d"
CONFIG_RULE = "cfg"


class Remote:
    def __init__(self, server: AuthRegistry, digest: str) -> None:
        self.server = server
        self.digest = digest  # of remote/app:v1

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    root = tmp_path_factory.mktemp("replication-remote")
    htpasswd = write_htpasswd(root / "htpasswd", {USER: PASSWORD})
    args = ["--auth-mode", "basic", "--auth-htpasswd", str(htpasswd)]
    with AuthRegistry(root / "data", args=args) as server, server.client() as client:
        assert client.get("/v2/").status_code == 401, "the remote must want credentials"
        image = push_image(client, "remote/app", "v1", basic(USER, PASSWORD))
        yield Remote(server, image.digest)


def config_rules(remote: Remote) -> str:
    rule = {"name": CONFIG_RULE, "direction": "pull", "url": remote.url, "username": USER, "password": PASSWORD,
            "repositories": ["remote/app"], "destination_prefix": "cfg/"}
    return json.dumps([rule])


@pytest.fixture(scope="module")
def server(remote: Remote, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """This module's registry (overrides conftest's): one rule from the configuration."""
    env = {"REGISTRY_REPLICATION_RULES": config_rules(remote)}
    with RegistryProcess(tmp_path_factory.mktemp("replication-api") / "data", env=env) as registry:
        yield registry


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: " \
                                           f"{response.status_code} {response.text[:500]}"
    return response.json()


def assert_spec_error(response: httpx.Response, status: int, code: str) -> None:
    """The status and the distribution spec's error body {"errors": [{"code", "message", ...}]}."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body.get("errors"), list) and body["errors"], body
    assert all(isinstance(e.get("code"), str) and isinstance(e.get("message"), str) and e["message"]
               for e in body["errors"]), body
    assert code in [e["code"] for e in body["errors"]], body


def listed(admin: httpx.Client) -> dict[str, dict[str, Any]]:
    return {rule["name"]: rule for rule in ok(admin.get(f"{BASE}/rules"))["rules"]}


def run_and_wait(admin: httpx.Client, rule: str, timeout: float = 60) -> dict[str, Any]:
    """Ask for a run (202) and wait for a run of `rule` newer than any before to finish; its row."""
    before = {r["id"] for r in ok(admin.get(f"{BASE}/runs", params={"rule": rule, "limit": 500}))["runs"]}
    assert ok(admin.post(f"{BASE}/rules/{rule}/run"), 202) == {"rule": rule, "requested": True}
    deadline = time.monotonic() + timeout
    while True:
        runs = ok(admin.get(f"{BASE}/runs", params={"rule": rule}))["runs"]
        new = [r for r in runs if r["id"] not in before and r["status"] != "running"]
        if new:
            return new[0]
        assert time.monotonic() < deadline, f"no finished run of {rule} within {timeout}s: {runs}"
        time.sleep(0.2)


def has_manifest(server: RegistryProcess, repository: str, reference: str) -> bool:
    response = httpx.head(f"{server.url}/v2/{repository}/manifests/{reference}", timeout=30,
                          headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    return response.status_code == 200


# -- rules ----------------------------------------------------------------------------------------

def test_the_list_shows_a_config_rule_with_its_origin_and_never_its_password(admin: httpx.Client,
                                                                            remote: Remote) -> None:
    response = admin.get(f"{BASE}/rules")
    rule = listed(admin)[CONFIG_RULE]
    assert rule["origin"] == "config"
    assert rule["password_set"] is True
    assert "password" not in rule
    assert PASSWORD not in response.text
    assert (rule["direction"], rule["url"], rule["username"]) == ("pull", remote.url, USER)
    assert rule["repositories"] == ["remote/app"] and rule["destination_prefix"] == "cfg/"
    assert rule["running"] is False and rule["next_run_at"] is None


def test_put_creates_then_replaces_and_a_put_without_password_keeps_the_stored_one(
        admin: httpx.Client, server: RegistryProcess, remote: Remote) -> None:
    definition = {"direction": "pull", "url": remote.url, "username": USER, "repositories": ["remote/app"],
                  "destination_prefix": "api1/"}
    created = ok(admin.put(f"{BASE}/rules/from-remote", json={**definition, "password": PASSWORD}), 201)
    assert created["name"] == "from-remote" and created["password_set"] is True and "password" not in created
    assert PASSWORD not in json.dumps(created)

    # Replaced without a password: the stored one stays, and the run authenticates with it.
    replaced = ok(admin.put(f"{BASE}/rules/from-remote", json={**definition, "destination_prefix": "api2/"}), 200)
    assert replaced["destination_prefix"] == "api2/" and replaced["password_set"] is True
    rule = listed(admin)["from-remote"]
    assert rule["origin"] == "api" and rule["destination_prefix"] == "api2/" and rule["password_set"] is True
    run = run_and_wait(admin, "from-remote")
    assert run["status"] == "succeeded", run
    assert run["manifests"] >= 1 and run["blobs"] == 2 and run["bytes"] > 0 and run["errors"] == 0, run
    assert has_manifest(server, "api2/remote/app", remote.digest)
    assert has_manifest(server, "api2/remote/app", "v1")
    assert not has_manifest(server, "api1/remote/app", "v1")


def test_the_remote_refuses_a_wrong_password(admin: httpx.Client, server: RegistryProcess, remote: Remote) -> None:
    """The control for the test above: without the right password the same rule fails."""
    body = {"direction": "pull", "url": remote.url, "username": USER, "password": "wrong",
            "repositories": ["remote/app"], "destination_prefix": "wrong/"}
    ok(admin.put(f"{BASE}/rules/wrong-password", json=body), 201)
    run = run_and_wait(admin, "wrong-password")
    assert run["status"] == "failed" and run["errors"] >= 1, run
    assert not has_manifest(server, "wrong/remote/app", "v1")
    assert ok(admin.delete(f"{BASE}/rules/wrong-password")) == {"deleted": "wrong-password"}


def test_a_config_rule_cannot_be_replaced_or_deleted_through_the_api(admin: httpx.Client) -> None:
    before = listed(admin)[CONFIG_RULE]
    response = admin.put(f"{BASE}/rules/{CONFIG_RULE}", json={"direction": "push", "url": "http://127.0.0.1:9"})
    assert_spec_error(response, 403, "DENIED")
    assert_spec_error(admin.delete(f"{BASE}/rules/{CONFIG_RULE}"), 403, "DENIED")
    after = listed(admin)[CONFIG_RULE]
    assert {k: after[k] for k in ("direction", "url", "origin", "password_set")} == \
           {k: before[k] for k in ("direction", "url", "origin", "password_set")}


def test_delete_of_an_unknown_rule_is_404_and_of_an_api_rule_keeps_its_history(admin: httpx.Client,
                                                                              remote: Remote) -> None:
    assert_spec_error(admin.delete(f"{BASE}/rules/no-such-rule"), 404, "NOT_FOUND")
    assert_spec_error(admin.post(f"{BASE}/rules/no-such-rule/run"), 404, "NOT_FOUND")
    body = {"direction": "pull", "url": remote.url, "username": USER, "password": PASSWORD,
            "repositories": ["remote/app"], "destination_prefix": "gone/"}
    ok(admin.put(f"{BASE}/rules/short-lived", json=body), 201)
    run = run_and_wait(admin, "short-lived")
    assert ok(admin.delete(f"{BASE}/rules/short-lived")) == {"deleted": "short-lived"}
    assert "short-lived" not in listed(admin)
    assert_spec_error(admin.delete(f"{BASE}/rules/short-lived"), 404, "NOT_FOUND")
    assert ok(admin.get(f"{BASE}/runs/{run['id']}"))["rule"] == "short-lived"


# -- runs -----------------------------------------------------------------------------------------

def test_a_run_asked_for_succeeds_and_is_found_by_id_and_by_paging(admin: httpx.Client, server: RegistryProcess,
                                                                   remote: Remote) -> None:
    first = run_and_wait(admin, CONFIG_RULE)
    assert first["status"] == "succeeded" and first["trigger"] == "manual", first
    assert first["rule"] == CONFIG_RULE and first["finished_at"] >= first["started_at"]
    assert has_manifest(server, "cfg/remote/app", remote.digest)
    assert ok(admin.get(f"{BASE}/runs/{first['id']}")) == first
    second = run_and_wait(admin, CONFIG_RULE)
    assert second["status"] == "succeeded" and second["id"] > first["id"], second
    assert (second["blobs"], second["bytes"]) == (0, 0), second  # nothing new at the remote

    everything = ok(admin.get(f"{BASE}/runs", params={"limit": 500}))
    assert everything["next"] is None
    ids = [r["id"] for r in everything["runs"]]
    assert len(ids) >= 3 and ids == sorted(ids, reverse=True), ids
    walked: list[int] = []
    params: dict[str, Any] = {"limit": 1}
    while True:
        page = ok(admin.get(f"{BASE}/runs", params=params))
        assert len(page["runs"]) == 1, page
        walked.append(page["runs"][0]["id"])
        if page["next"] is None:
            break
        assert page["next"] == walked[-1]
        params["last"] = page["next"]
    assert walked == ids
    only_config = ok(admin.get(f"{BASE}/runs", params={"rule": CONFIG_RULE}))["runs"]
    assert [r["id"] for r in only_config] == [second["id"], first["id"]]
    assert_spec_error(admin.get(f"{BASE}/runs/{max(ids) + 1000}"), 404, "NOT_FOUND")


def test_metrics_count_runs_and_bytes_per_rule(admin: httpx.Client) -> None:
    """Runs by rule and status, and bytes sent by rule, as the history has them. `from-remote` pulled the
    image first; `cfg`'s runs found its blobs here already (mounted, 0 bytes sent)."""
    run_and_wait(admin, CONFIG_RULE)
    metrics = admin.get("/metrics").text
    for rule in (CONFIG_RULE, "from-remote"):
        history = ok(admin.get(f"{BASE}/runs", params={"rule": rule, "limit": 500}))["runs"]
        succeeded = sum(1 for r in history if r["status"] == "succeeded")
        runs = re.search(rf'^registry_replication_runs_total\{{rule="{rule}",status="succeeded"\}} (\S+)$',
                         metrics, re.M)
        assert succeeded >= 1 and runs and float(runs.group(1)) == succeeded, (rule, history, metrics[-3000:])
        sent = re.search(rf'^registry_replication_bytes_total\{{rule="{rule}"\}} (\S+)$', metrics, re.M)
        assert sent and float(sent.group(1)) == sum(r["bytes"] for r in history), (rule, metrics[-3000:])
        if rule == "from-remote":
            assert float(sent.group(1)) > 0


# -- registry replicate ----------------------------------------------------------------------------

def replicate(server: RegistryProcess, remote: Remote, rule: str, *extra: str,
              with_rules: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "REGISTRY_REPLICATION_RULES": config_rules(remote) if with_rules else "[]"}
    return subprocess.run([sys.executable, "-m", "registry", "replicate", rule, "--data-dir", str(server.data_dir),
                           *extra], env=env, capture_output=True, text=True, timeout=120)


def test_the_cli_runs_a_rule_and_prints_its_report(server: RegistryProcess, remote: Remote,
                                                   admin: httpx.Client) -> None:
    result = replicate(server, remote, CONFIG_RULE, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rule"] == CONFIG_RULE and report["status"] == "succeeded" and report["errors"] == 0, report
    assert {"manifests", "blobs", "bytes", "mounted", "present", "deleted", "skipped", "copied"} <= report.keys()
    run = ok(admin.get(f"{BASE}/runs/{report['run']}"))  # the server sees the CLI's run
    assert run["status"] == "succeeded" and run["trigger"] == "manual" and "cli/" in run["owner"], run


def test_the_cli_started_without_the_servers_rules_runs_them_and_takes_none_away(
        server: RegistryProcess, remote: Remote, admin: httpx.Client) -> None:
    result = replicate(server, remote, CONFIG_RULE, "--json", with_rules=False)
    assert result.returncode == 0, result.stderr
    names = [r["name"] for r in ok(admin.get(f"{BASE}/rules"))["rules"]]
    assert CONFIG_RULE in names, names


def test_the_cli_says_so_for_an_unknown_rule(server: RegistryProcess, remote: Remote) -> None:
    result = replicate(server, remote, "no-such-rule", "--json")
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-rule" in lines[0], result.stderr


def test_the_cli_exits_3_while_another_process_holds_the_rules_lease(server: RegistryProcess,
                                                                    remote: Remote) -> None:
    database_url = load(environ={"REGISTRY_DATA_DIR": str(server.data_dir)}).database_url
    holder = "another-host/test-holder"

    async def lease(take: bool) -> bool:
        db = Database(database_url)
        try:
            async with db.write(durable=False) as conn:
                if take:
                    return await leases.take(db, conn, replication_rows.RULE, CONFIG_RULE, holder, 120)
                await leases.release(conn, replication_rows.RULE, CONFIG_RULE, holder)
                return True
        finally:
            await db.close()

    assert asyncio.run(lease(take=True))
    try:
        result = replicate(server, remote, CONFIG_RULE, "--json")
    finally:
        asyncio.run(lease(take=False))
    assert result.returncode == 3, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and holder in lines[0], result.stderr
    result = replicate(server, remote, CONFIG_RULE, "--json")  # released: it runs again
    assert result.returncode == 0, result.stderr
