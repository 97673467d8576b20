"""The Replication view of the admin page in headless Chromium (issue 22).

This registry starts with a pull rule in its configuration, with no schedule, from a second instance
of the registry holding one small image. On the page: the configuration's rule is read-only; "Run now"
makes a run appear, succeeded with its figures, and the image then answers here. A push rule back to
the second instance is added through the form, run, edited, refused a bad value (the server's message
is shown and nothing changes) and deleted after its confirmation. The history pages with "More",
narrows to one rule and opens each run to the lines it copied.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.admin.conftest import watch_errors
from tests.admin.test_page import open_view, shown_bytes
from tests.support.images import OCI_MANIFEST
from tests.support.mirror import Image, push_image, small_image
from tests.support.server import RegistryProcess

CONFIG_RULE = "from-source"
API_RULE = "to-source"
RUN_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def image() -> Image:
    return small_image("admin-page-replication")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, image: Image) -> Iterator[RegistryProcess]:
    """The second registry: team/app:v1 (copied by the pull rule) and team/app:latest (left out by its tags)."""
    with RegistryProcess(tmp_path_factory.mktemp("source") / "data") as registry:
        push_image(registry.url, "team/app", "v1", image)
        push_image(registry.url, "team/app", "latest", image)
        yield registry


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, source: RegistryProcess) -> Iterator[RegistryProcess]:
    """This registry, with the configuration's pull rule (no schedule: it runs only when asked)."""
    rule = {"name": CONFIG_RULE, "direction": "pull", "url": source.url, "repositories": ["team/app"],
            "tags": ["v*"], "destination_prefix": "dc1/"}
    env = {"REGISTRY_REPLICATION_RULES": json.dumps([rule])}
    with RegistryProcess(tmp_path_factory.mktemp("replica") / "data", env=env) as registry:
        yield registry


def rules(admin: httpx.Client) -> dict[str, dict[str, Any]]:
    response = admin.get("/admin/api/replication/rules")
    assert response.status_code == 200, response.text
    return {r["name"]: r for r in response.json()["rules"]}


def runs_of(admin: httpx.Client, rule: str) -> list[dict[str, Any]]:
    response = admin.get("/admin/api/replication/runs", params={"rule": rule})
    assert response.status_code == 200, response.text
    return response.json()["runs"]


def manifest_digest(base_url: str, repository: str, tag: str) -> str | None:
    response = httpx.get(f"{base_url}/v2/{repository}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}, timeout=30)
    return response.headers["Docker-Content-Digest"] if response.status_code == 200 else None


def run_through_api(admin: httpx.Client, rule: str, timeout: float = 30) -> dict[str, Any]:
    """Ask for a run of `rule` without the page and wait for it to finish (a test run on its own)."""
    before = len(runs_of(admin, rule))
    assert admin.post(f"/admin/api/replication/rules/{rule}/run").status_code == 202
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in runs_of(admin, rule) if r["status"] != "running"]
        if len(found) > before:
            return found[0]
        assert time.monotonic() < deadline, f"no run of {rule} finished within {timeout}s"
        time.sleep(0.3)


def rule_row(page: Any, name: str) -> Any:
    return page.locator(f'#replication-rules tr[data-rule="{name}"]')


def run_now_and_wait(page: Any, name: str) -> Any:
    """Click the rule's "Run now": the row says "requested" at once, and the view refreshes by itself
    until the run is in the history, finished."""
    rule_row(page, name).locator("button.run-rule").click()
    rule_row(page, name).locator(".state .status-requested, .state .status-running").first.wait_for()
    finished = page.locator(f'#replication-runs tr[data-rule="{name}"][data-status="succeeded"]')
    finished.wait_for(timeout=RUN_TIMEOUT_MS)
    rule_row(page, name).locator(".state .status-succeeded").wait_for()
    return finished


def test_the_configured_rule_is_read_only_and_runs_now(chromium: Any, server: RegistryProcess,
                                                       source: RegistryProcess, admin: httpx.Client, image: Image,
                                                       artifacts: Path) -> None:
    page = chromium.new_page()
    errors = watch_errors(page)
    try:
        open_view(page, server, "#/replication")
        assert page.locator("header nav a.active").inner_text() == "Replication"
        row = rule_row(page, CONFIG_RULE)
        assert row.get_attribute("data-origin") == "config"
        assert row.locator(".direction").inner_text() == f"pull from {source.url}"
        filters = row.locator(".filters").inner_text()
        assert "repositories team/app" in filters and "tags v*" in filters and "prefix dc1/" in filters
        assert row.locator(".trigger").inner_text() == "manual only"
        assert row.locator(".enabled").inner_text() == "yes"
        assert "configuration" in row.locator(".origin").inner_text()
        assert row.locator(".state").inner_text() == "never run"
        assert row.locator("button.edit-rule, button.delete-rule").count() == 0
        assert "read-only" in row.locator(".actions").inner_text()
        assert page.locator("#no-runs").is_visible()

        run = run_now_and_wait(page, CONFIG_RULE)
        [done] = runs_of(admin, CONFIG_RULE)
        assert (done["status"], done["trigger"], done["manifests"], done["blobs"], done["errors"]) == (
            "succeeded", "manual", 1, 2, 0), done
        assert done["bytes"] == sum(len(b) for b in image.blobs.values())
        state = rule_row(page, CONFIG_RULE).locator(".state").inner_text()
        assert (f"1 manifests, 2 blobs, {shown_bytes(done['bytes'])}, {done['mounted']} mounted, 0 errors"
                in state), state
        assert run.locator(".errors").inner_text() == "0"
        assert run.locator(".bytes").inner_text() == shown_bytes(done["bytes"])
        # Opened, the run shows what it copied; v1 only (latest is not among the rule's tags).
        run.locator("button.run-toggle").click()
        detail = page.locator(f'#replication-runs tr.run-detail[data-detail-of="{done["id"]}"]')
        assert detail.is_visible()
        assert detail.locator(".run-copied pre").inner_text() == f"dc1/team/app:v1@{image.digest}"
        assert detail.locator(".run-errors").count() == 0
        page.screenshot(path=str(artifacts / "replication.png"), full_page=True)
        assert errors == []
    finally:
        page.close()
    assert manifest_digest(server.url, "dc1/team/app", "v1") == image.digest
    assert manifest_digest(server.url, "dc1/team/app", "latest") is None


def test_an_api_rule_is_added_run_edited_refused_and_deleted_through_the_form(
        chromium: Any, server: RegistryProcess, source: RegistryProcess, admin: httpx.Client, image: Image,
        artifacts: Path) -> None:
    if manifest_digest(server.url, "dc1/team/app", "v1") is None:  # the first test's copy, when run alone
        run_through_api(admin, CONFIG_RULE)
    assert manifest_digest(server.url, "dc1/team/app", "v1") == image.digest
    page = chromium.new_page()
    errors = watch_errors(page)
    try:
        open_view(page, server, "#/replication")
        assert page.locator("#rule-form-title").inner_text() == "Add a rule"
        page.fill("#rule-name", API_RULE)
        page.select_option("#rule-direction", "push")
        page.fill("#rule-url", source.url)
        page.fill("#rule-username", "robot")
        page.fill("#rule-password", "robot-secret")
        page.fill("#rule-repositories", "dc1/**")
        page.fill("#rule-tags", "v1")
        page.fill("#rule-destination_prefix", "back/")
        page.locator("#rule-save").click()
        row = rule_row(page, API_RULE)
        row.wait_for()
        assert row.get_attribute("data-origin") == "api"
        assert row.locator(".direction").inner_text().startswith(f"push to {source.url}")
        assert "tags v1" in row.locator(".filters").inner_text()
        assert row.locator(".origin").inner_text() == "admin API"
        stored = rules(admin)[API_RULE]
        assert (stored["direction"], stored["repositories"], stored["tags"], stored["destination_prefix"],
                stored["username"], stored["password_set"], stored["concurrency"], stored["referrers"]) == (
            "push", ["dc1/**"], ["v1"], "back/", "robot", True, 4, True)
        assert page.locator("#rule-name").input_value() == ""  # the form is back to adding

        run_now_and_wait(page, API_RULE)
        assert manifest_digest(source.url, "back/dc1/team/app", "v1") == image.digest

        # Edited: the tags change, the stored password stays (its field is left empty).
        row.locator("button.edit-rule").click()
        assert page.locator("#rule-form-title").inner_text() == f"Edit rule {API_RULE}"
        assert page.locator("#rule-name").get_attribute("readonly") is not None
        assert page.locator("#rule-tags").input_value() == "v1"
        assert page.locator("#rule-password").input_value() == ""
        page.fill("#rule-tags", "v1, v2")
        page.locator("#rule-save").click()
        page.wait_for_function("() => document.querySelector('#replication-rules tr[data-rule=\"to-source\"] "
                               ".filters').textContent.includes('v1, v2')")
        stored = rules(admin)[API_RULE]
        assert (stored["tags"], stored["password_set"], stored["username"]) == (["v1", "v2"], True, "robot")

        # A bad value: the server's 400 message next to the form, and the rule as it was.
        row.locator("button.edit-rule").click()
        page.fill("#rule-versions", ">=banana")
        page.fill("#rule-tags", "v3")
        page.locator("#rule-save").click()
        page.locator("#rule-form-error:not(:empty)").wait_for()
        refused = admin.put(f"/admin/api/replication/rules/{API_RULE}", json={
            **{k: v for k, v in stored.items() if k in ("name", "direction", "url", "username", "tags")},
            "versions": ">=banana"})
        assert refused.status_code == 400, refused.text
        problem = refused.json()["errors"][0]
        assert page.locator("#rule-form-error").inner_text() == f"{problem['code']}: {problem['message']}"
        assert "versions" in problem["message"]
        assert rules(admin)[API_RULE] == stored
        assert page.locator("#rule-form-title").inner_text() == f"Edit rule {API_RULE}"  # still editing
        page.screenshot(path=str(artifacts / "replication-refused.png"), full_page=True)
        page.locator("#rule-cancel").click()
        assert page.locator("#rule-form-title").inner_text() == "Add a rule"
        assert page.locator("#rule-form-error").inner_text() == ""

        # Deleted after the confirmation (cancelled once first).
        row.locator("button.delete-rule").click()
        dialog = page.locator("dialog#confirm")
        dialog.wait_for(state="visible")
        assert API_RULE in dialog.inner_text()
        page.locator("#confirm-cancel").click()
        assert API_RULE in rules(admin)
        row.locator("button.delete-rule").click()
        dialog.wait_for(state="visible")
        page.locator("#confirm-ok").click()
        row.wait_for(state="detached")
        assert API_RULE not in rules(admin) and CONFIG_RULE in rules(admin)
        assert len(runs_of(admin, API_RULE)) == 1  # its history stays
        assert errors == []
    finally:
        page.close()


def test_the_history_pages_with_more_and_narrows_to_one_rule(chromium: Any, server: RegistryProcess,
                                                             admin: httpx.Client) -> None:
    while len(runs_of(admin, CONFIG_RULE)) < 2:  # so that narrowing to it still leaves more than one
        run_through_api(admin, CONFIG_RULE)
    everything = admin.get("/admin/api/replication/runs").json()["runs"]
    assert len(everything) >= 2 and everything[-1]["rule"] == CONFIG_RULE
    page = chromium.new_page()
    errors = watch_errors(page)
    try:
        open_view(page, server, "#/replication?limit=1")
        shown = page.locator("#replication-runs tr[data-run]")
        assert shown.count() == 1 and shown.first.get_attribute("data-run") == str(everything[0]["id"])
        for count in range(2, len(everything) + 1):
            page.locator("#more-runs").click()
            page.wait_for_function("n => document.querySelectorAll('#replication-runs tr[data-run]').length === n",
                                   arg=count)
        assert page.locator("#more-runs").is_hidden()
        assert [shown.nth(i).get_attribute("data-run") for i in range(shown.count())] == [
            str(r["id"]) for r in everything]

        rule_row(page, CONFIG_RULE).locator("a.rule-name").click()
        page.wait_for_function("h => document.body.dataset.ready === h",
                               arg=f"#/replication?rule={CONFIG_RULE}")
        assert page.locator("h2", has_text=f"Runs of {CONFIG_RULE}").is_visible()
        ours = [r["id"] for r in everything if r["rule"] == CONFIG_RULE]
        assert [shown.nth(i).get_attribute("data-run") for i in range(shown.count())] == [str(i) for i in ours]
        page.locator("#all-runs").click()
        page.wait_for_function("n => document.querySelectorAll('#replication-runs tr[data-run]').length === n",
                               arg=len(everything))
        assert errors == []
    finally:
        page.close()
