"""A verified password is remembered for a minute (registry/auth/credentials.py), but what was remembered is
who the caller is, not where they called from: a policy rule limited to `networks` judges each request's
own address, also when the login itself came from the cache."""

from __future__ import annotations

from pathlib import Path

from tests.auth.conftest import OTHER_ADDRESS, AuthRegistry, assert_error, basic, describe, post_blob, secret, write_htpasswd

POLICY = """\
rules:
  - repositories: ["net/*"]
    users: [nettie]
    networks: ["127.0.0.1/32"]
    actions: [pull, push]
"""


def test_a_remembered_login_is_judged_by_the_address_of_each_request(tmp_path: Path) -> None:
    password = secret("nettie")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"nettie": password})
    args = ["--auth-mode", "basic", "--auth-htpasswd", str(htpasswd), "--auth-policy-file", str(policy)]
    with AuthRegistry(tmp_path / "data", args=args) as server, server.client() as near, \
            server.client(local_address=OTHER_ADDRESS) as far:
        credentials = basic("nettie", password)
        allowed = post_blob(near, "net/app", b"from inside the network", credentials)
        assert allowed.status_code == 201, describe(allowed, server)
        # The same credentials within the minute: a cache hit, from an address the rule does not cover.
        assert_error(post_blob(far, "net/app", b"from outside the network", credentials), 403, "DENIED", server)
        assert_error(far.get("/v2/net/app/tags/list", headers=credentials), 403, "DENIED", server)
        again = post_blob(near, "net/app", b"from inside again", credentials)
        assert again.status_code == 201, describe(again, server)
