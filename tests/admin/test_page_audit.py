"""The audit trail and webhooks, through the API and on the page (headless Chromium).

A scripted session against a registry with basic auth and a policy: alice pushes and pulls, deletes
an image; bob (who may only pull) tries to push; someone fails to log in; ada (an admin) runs gc.
Every one of these is an entry of the audit API, filterable, exported as CSV and JSON, and a row of
the page's Audit view; the repository page says who pushed each tag; the Webhooks view shows the
endpoint's counters and sends a test event a real receiver gets.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import httpx
import pytest

from tests.admin.conftest import open_chromium, watch_errors
from tests.auth.conftest import (OCI_MANIFEST, AuthRegistry, User, basic, describe, make_image, post_blob, push_image, secret,
                                 write_htpasswd)
from tests.support.webhooks import WebhookReceiver

ALICE = User("alice", secret("alice"))
BOB = User("bob", secret("bob"))
ADA = User("ada", secret("ada"))
POLICY = """\
rules:
  - repositories: ["team/*"]
    users: [alice]
    actions: [pull, push, delete]
  - repositories: ["team/*"]
    users: [bob]
    actions: [pull]
"""


@dataclass
class Session:
    server: AuthRegistry
    receiver: WebhookReceiver
    kept: str      # digest of team/app:v1 (alice's, stays)
    deleted: str   # digest of team/app:v2 (deleted by alice)


def _ok(response: httpx.Response, server: AuthRegistry, status: int = 200) -> httpx.Response:
    assert response.status_code == status, describe(response, server)
    return response


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    root = tmp_path_factory.mktemp("audit")
    (root / "policy.yaml").write_text(POLICY)
    htpasswd = write_htpasswd(root / "htpasswd", {u.name: u.password for u in (ALICE, BOB, ADA)})
    receiver = WebhookReceiver().start()
    endpoints = [{"name": "ci", "url": receiver.url, "ignore": {"actions": ["pull"]}}]
    args = ["--auth-mode", "basic", "--auth-htpasswd", str(htpasswd), "--auth-policy-file",
            str(root / "policy.yaml"), "--auth-admins", ADA.name]
    server = AuthRegistry(root / "data", args=args, env={"REGISTRY_NOTIFICATIONS_ENDPOINTS": json.dumps(endpoints)})
    try:
        with server, server.client() as http:
            alice, bob = basic(ALICE.name, ALICE.password), basic(BOB.name, BOB.password)
            _ok(http.get("/v2/", headers=alice), server)  # docker login
            kept = push_image(http, "team/app", "v1", alice)
            doomed = push_image(http, "team/app", "v2", alice)
            _ok(http.get("/v2/team/app/manifests/v1", headers={**bob, "Accept": OCI_MANIFEST}), server)
            _ok(http.delete(f"/v2/team/app/manifests/{doomed.digest}", headers=alice), server, 202)
            response = post_blob(http, "team/app", make_image("bob's").layer, bob)
            assert response.status_code == 403, describe(response, server)  # bob may only pull
            assert http.get("/v2/", headers=basic("mallory", "guess")).status_code == 401
            _ok(http.post("/admin/api/gc", json={"dry_run": False}, headers=basic(ADA.name, ADA.password)), server)
            time.sleep(1.5)  # pulls, logins, denials and admin actions are written within the second
            yield Session(server, receiver, kept.digest, doomed.digest)
    finally:
        receiver.stop()


def _entries(session: Session, **filters: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{session.server.url}/admin/api/audit", params={**filters, "limit": "1000"},
                         headers=basic(ADA.name, ADA.password), timeout=30)
    return _ok(response, session.server).json()["entries"]


def _find(entries: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    found = [e for e in entries if all(e.get(k) == v for k, v in fields.items())]
    assert len(found) >= 1, f"no entry with {fields} in {[(e['action'], e['actor'], e['reference']) for e in entries]}"
    return found[0]


def test_every_step_of_the_session_is_in_the_audit_api(session: Session) -> None:
    entries = _entries(session)
    alice = {"name": "alice", "kind": "user", "address": "127.0.0.1"}
    _find(entries, action="login", outcome="ok", actor=alice)
    assert _find(entries, action="push", target="manifest", reference="v1")["actor"] == alice
    assert _find(entries, action="push", target="manifest", reference="v2")["digest"] == session.deleted
    assert len([e for e in entries if e["action"] == "push" and e["target"] == "blob"]) == 4
    pull = _find(entries, action="pull", target="manifest", reference="v1")
    assert pull["actor"]["name"] == "bob" and pull["digest"] == session.kept
    delete = _find(entries, action="delete", digest=session.deleted)
    assert delete["actor"] == alice and delete["repository"] == "team/app"
    denied = _find(entries, action="denied", outcome="denied")
    assert denied["actor"]["name"] == "bob" and denied["repository"] == "team/app"
    assert denied["detail"]["action"] == "push"
    failed = _find(entries, action="login", outcome="failed")
    assert failed["actor"] == {"name": "mallory", "kind": "user", "address": "127.0.0.1"}
    gc = _find(entries, action="admin", outcome="ok")
    assert gc["actor"]["name"] == "ada" and gc["detail"] == {"method": "POST", "path": "/admin/api/gc", "status": 200}
    times = [e["time"] for e in entries]
    assert times == sorted(times, reverse=True)

    bobs = _entries(session, actor="bob")
    assert {(e["action"], e["outcome"]) for e in bobs} == {("pull", "ok"), ("denied", "denied")}
    logins = _entries(session, action="login")
    assert {e["outcome"] for e in logins} == {"ok", "failed"}
    assert _entries(session, repository="team/app", since=str(time.time() + 3600)) == []
    assert len(_entries(session, repository="team/app", until="2000-01-01")) == 0
    assert {e["action"] for e in _entries(session, repository="team/app")} == {"push", "pull", "delete", "denied"}


def test_exports_hold_the_same_entries(session: Session) -> None:
    auth = basic(ADA.name, ADA.password)
    url = f"{session.server.url}/admin/api/audit/export"
    as_json = _ok(httpx.get(url, params={"format": "json", "repository": "team/app"}, headers=auth), session.server)
    assert as_json.headers["Content-Disposition"] == 'attachment; filename="audit.json"'
    as_csv = _ok(httpx.get(url, params={"format": "csv", "repository": "team/app"}, headers=auth), session.server)
    assert as_csv.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [int(r["seq"]) for r in rows] == [e["seq"] for e in as_json.json()] == \
        [e["seq"] for e in _entries(session, repository="team/app")]
    assert {r["actor"] for r in rows} == {"alice", "bob"}


def test_webhooks_got_the_pushes_and_deletes(session: Session) -> None:
    session.receiver.wait_for(lambda: any(e["action"] == "delete" for e in session.receiver.events()), 15, "the delete")
    events = session.receiver.events()
    assert {e["action"] for e in events} == {"push", "delete"}  # pulls are ignored by this endpoint
    manifest_pushes = [e for e in events if e["action"] == "push" and e["target"].get("tag")]
    assert [(e["target"]["tag"], e["actor"]) for e in manifest_pushes] == [("v1", {"name": "alice"}),
                                                                        ("v2", {"name": "alice"})]


def open_view(page: Any, session: Session, fragment: str) -> None:
    page.goto(f"{session.server.url}/admin/{fragment}")
    page.wait_for_function("h => document.body.dataset.ready === h", arg=fragment)


def test_the_page_shows_the_audit_trail_pushers_and_webhooks(playwright: Any, session: Session, tmp_path: Path,
                                                              artifacts: Path) -> None:
    context = open_chromium(playwright, tmp_path / "profile",
                            http_credentials={"username": ADA.name, "password": ADA.password})
    try:
        page = context.new_page()
        errors = watch_errors(page)

        open_view(page, session, "#/audit")
        rows = page.locator("#audit tbody tr")
        seen = {(rows.nth(i).get_attribute("data-action"), rows.nth(i).get_attribute("data-outcome"))
                for i in range(rows.count())}
        assert {("push", "ok"), ("pull", "ok"), ("delete", "ok"), ("denied", "denied"), ("login", "failed"),
                ("login", "ok"), ("admin", "ok")} <= seen
        denied = page.locator('#audit tr[data-action="denied"]').first
        assert "bob" in denied.locator(".who").inner_text() and "team/app" in denied.inner_text()
        failed = page.locator('#audit tr[data-action="login"][data-outcome="failed"]').first
        assert "mallory" in failed.locator(".who").inner_text()
        gc = page.locator('#audit tr[data-action="admin"]').first
        assert "ada" in gc.inner_text() and "POST /admin/api/gc" in gc.locator(".detail").inner_text()
        page.screenshot(path=str(artifacts / "audit.png"), full_page=True)

        page.fill("#audit-actor", "bob")
        page.click("#audit-filters button[type=submit]")
        page.wait_for_function("() => document.body.dataset.ready === '#/audit?actor=bob'")
        rows = page.locator("#audit tbody tr")
        assert sorted(rows.nth(i).get_attribute("data-action") for i in range(rows.count())) == ["denied", "pull"]
        assert page.locator("#audit-export-csv").get_attribute("href") == "/admin/api/audit/export?actor=bob&format=csv"

        open_view(page, session, "#/audit?action=login")
        assert page.locator("#audit tbody tr").count() == 2

        open_view(page, session, "#/repo/team%2Fapp")
        v1 = page.locator('#tags tr[data-tag="v1"]')
        assert v1.locator(".pushed-by").inner_text() == "alice"

        open_view(page, session, "#/notifications")
        endpoint = page.locator('#endpoints tr[data-endpoint="ci"]')
        assert int(endpoint.locator(".sent").inner_text()) >= 5 and endpoint.locator(".pending").inner_text() == "0"
        before = len(session.receiver.events())
        endpoint.locator("button.send-test").click()
        endpoint.locator(".test-result", has_text="delivered (200)").wait_for()
        assert [e["action"] for e in session.receiver.events()[before:]] == ["test"]
        page.screenshot(path=str(artifacts / "webhooks.png"), full_page=True)
        assert errors == []
    finally:
        context.close()
