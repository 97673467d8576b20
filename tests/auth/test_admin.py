"""The admin role guards everything under /admin/: admins from config (users or group:NAME)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.auth.conftest import AuthRegistry, User, add_accounts, assert_error, basic, secret, token_for

ADMIN = User("root-admin", secret("admin"))
OPS = User("olga", secret("ops"), groups=("ops",))
PLAIN = User("pete", secret("pete"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    root = tmp_path_factory.mktemp("admin")
    args = ["--auth-mode", "token", "--tls-self-signed", "--auth-admins", f"{ADMIN.name},group:ops",
            "--auth-failed-login-limit", "1000"]
    with AuthRegistry(root / "data", args=args) as registry:
        add_accounts(registry.data_dir, users=[ADMIN, OPS, PLAIN])
        yield registry


def test_admin_endpoints_need_credentials(server):
    with server.client() as client:
        response = client.get("/admin/api/whoami")
    assert_error(response, 401, "UNAUTHORIZED", server)
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_admin_endpoints_refuse_users_without_the_role(server):
    with server.client() as client:
        assert_error(client.get("/admin/api/whoami", headers=basic(PLAIN.name, PLAIN.password)), 403, "DENIED", server)
        token = token_for(client, PLAIN.name, PLAIN.password)["token"]
        assert_error(client.get("/admin/api/whoami", headers={"Authorization": f"Bearer {token}"}), 403, "DENIED",
                     server)


def test_admins_by_name_and_by_group(server):
    with server.client() as client:
        for user in (ADMIN, OPS):
            response = client.get("/admin/api/whoami", headers=basic(user.name, user.password))
            assert response.status_code == 200, response.text
            assert response.json()["admin"] is True
            token = token_for(client, user.name, user.password)["token"]
            by_token = client.get("/admin/api/whoami", headers={"Authorization": f"Bearer {token}"})
            assert by_token.status_code == 200 and by_token.json()["name"] == user.name
