"""The page with credentials on (token mode, which Docker clients use): the page's files challenge
with Basic, so a browser asks for the password once and sends it with the page's API calls; a user
without the admin role sees nothing; pushes still go through bearer tokens as before."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from tests.admin.conftest import open_chromium
from tests.auth.conftest import AuthRegistry, User, add_accounts, basic, secret

ADMIN = User("ada", secret("ada"))
PLAIN = User("paul", secret("paul"))


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    args = ["--auth-mode", "token", "--auth-admins", ADMIN.name]
    with AuthRegistry(tmp_path_factory.mktemp("page-auth") / "data", args=args) as registry:
        add_accounts(registry.data_dir, users=[ADMIN, PLAIN])
        yield registry


def test_challenges(locked: AuthRegistry):
    page = httpx.get(f"{locked.url}/admin/")
    assert page.status_code == 401 and page.headers["WWW-Authenticate"].startswith("Basic ")
    api = httpx.get(f"{locked.url}/admin/api/storage")
    assert api.status_code == 401 and api.headers["WWW-Authenticate"].startswith("Bearer ")
    assert httpx.get(f"{locked.url}/admin/api/storage", headers=basic(ADMIN.name, ADMIN.password)).status_code == 200
    assert httpx.get(f"{locked.url}/admin/", headers=basic(PLAIN.name, PLAIN.password)).status_code == 403


def test_admin_signs_in_through_the_browser(playwright, locked: AuthRegistry, tmp_path: Path, artifacts: Path):
    context = open_chromium(playwright, tmp_path / "profile",
                            http_credentials={"username": ADMIN.name, "password": ADMIN.password})
    try:
        page = context.new_page()
        page.goto(f"{locked.url}/admin/#/")
        page.wait_for_function("() => document.body.dataset.ready === '#/'")
        assert page.locator("#card-repositories .value").inner_text() == "0"
        page.locator("#whoami", has_text=ADMIN.name).wait_for()
        page.screenshot(path=str(artifacts / "signed-in.png"))
    finally:
        context.close()


def test_user_without_the_role_gets_nothing(playwright, locked: AuthRegistry, tmp_path: Path):
    context = open_chromium(playwright, tmp_path / "profile",
                            http_credentials={"username": PLAIN.name, "password": PLAIN.password})
    try:
        response = context.new_page().goto(f"{locked.url}/admin/")
        assert response is not None and response.status == 403
    finally:
        context.close()
