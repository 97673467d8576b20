"""Malformed policy, htpasswd and token key files: one clear error naming the file, the entry and the
reason; `registry serve` prints that one line and exits 2, never a traceback.

The loaders are checked directly (fast) for every kind of mistake; `registry serve` itself for one of
each file kind (and with several workers, which fork only after the check). An htpasswd file broken
while the server runs is logged and the users read before keep working.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from registry.auth.credentials import HtpasswdError, read_htpasswd
from registry.auth.files import AuthFileError
from registry.auth.policy import Policy, PolicyError
from registry.auth.tokens import KeyFileError, check_signing_key, external_keys
from registry.config import ConfigError
from tests.auth.conftest import AuthRegistry, write_htpasswd
from tests.support.server import free_port

GOOD_RULE = "  - repositories: [team/*]\n    users: [alice]\n    actions: [pull]\n"

# (policy text, fragments the one error line must hold besides the file's path)
BAD_POLICIES = {
    "not-a-mapping": ("- rules\n", ["top level must be a mapping"]),
    "unknown-top-key": ("rule:\n" + GOOD_RULE, ["unknown key 'rule'"]),
    "rules-a-mapping": ("rules:\n  repositories: [x]\n", ["rules must be a list", "got a mapping"]),
    "rules-a-string": ("rules: everything\n", ["rules must be a list", "got a string"]),
    "rule-a-string": ("rules:\n" + GOOD_RULE + "  - just text\n", ["rules[1]", "line 5", "a rule is a mapping"]),
    "rule-a-list": ("rules:\n  - [a, b]\n", ["rules[0] (line 2)", "a rule is a mapping", "got a list ['a', 'b']"]),
    "unknown-rule-key": ("rules:\n" + GOOD_RULE + "  - repositories: [x]\n    user: [bob]\n    actions: [pull]\n",
                         ["rules[1]", "line 5", "repositories x", "unknown key 'user'"]),
    "repositories-an-int": ("rules:\n  - repositories: 5\n    users: [a]\n    actions: [pull]\n",
                            ["rules[0]", "line 2", "repositories must be a list", "got a number 5"]),
    "repositories-a-mapping": ("rules:\n  - repositories: {a: b}\n    users: [a]\n    actions: [pull]\n",
                               ["rules[0]", "repositories must be a list"]),
    "repositories-empty": ("rules:\n  - repositories: []\n    users: [a]\n    actions: [pull]\n",
                           ["rules[0]", "at least one pattern"]),
    "repository-pattern-not-a-string": ("rules:\n  - repositories: [team/*, 7]\n    users: [a]\n    actions: [pull]\n",
                                        ["rules[0]", "repositories: 7 is not"]),
    "repository-pattern-empty": ("rules:\n  - repositories: ['']\n    users: [a]\n    actions: [pull]\n",
                                ["rules[0]", "repositories: '' is not"]),
    "actions-missing": ("rules:\n  - repositories: [x]\n    users: [a]\n", ["rules[0]", "actions must list"]),
    "actions-an-int": ("rules:\n  - repositories: [x]\n    users: [a]\n    actions: 3\n",
                       ["rules[0]", "actions must be a list"]),
    "unknown-action": ("rules:\n  - repositories: [x]\n    users: [a]\n    actions: [pull, pish]\n",
                       ["rules[0]", "unknown action 'pish'"]),
    "action-a-mapping": ("rules:\n  - repositories: [x]\n    users: [a]\n    actions: [{pull: yes}]\n",
                         ["rules[0]", "actions: {'pull': True} is not"]),
    "users-an-int": ("rules:\n  - repositories: [x]\n    users: 12\n    actions: [pull]\n",
                     ["rules[0]", "users must be a list", "got a number 12"]),
    "user-a-list": ("rules:\n  - repositories: [x]\n    users: [[a, b]]\n    actions: [pull]\n",
                    ["rules[0]", "users: ['a', 'b'] is not a user name"]),
    "user-null": ("rules:\n  - repositories: [x]\n    users: [~]\n    actions: [pull]\n",
                  ["rules[0]", "users: None is not a user name"]),
    "groups-a-mapping": ("rules:\n  - repositories: [x]\n    groups: {devs: 1}\n    actions: [pull]\n",
                         ["rules[0]", "groups must be a list"]),
    "anonymous-a-string": ("rules:\n  - repositories: [x]\n    anonymous: 'false'\n    actions: [pull]\n",
                           ["rules[0]", "anonymous must be true or false", "got a string 'false'"]),
    "authenticated-a-number": ("rules:\n  - repositories: [x]\n    authenticated: 1\n    actions: [pull]\n",
                               ["rules[0]", "authenticated must be true or false"]),
    "nobody": ("rules:\n  - repositories: [x]\n    actions: [pull]\n", ["rules[0]", "applies to nobody"]),
    "networks-an-int": ("rules:\n  - repositories: [x]\n    anonymous: true\n    networks: 10\n    actions: [pull]\n",
                        ["rules[0]", "networks must be a list"]),
    "network-not-a-cidr": ("rules:\n  - repositories: [x]\n    anonymous: true\n    networks: [10.0.0.0/8, lan]\n"
                           "    actions: [pull]\n", ["rules[0]", "networks: 'lan' is not a network"]),
    "network-an-int": ("rules:\n  - repositories: [x]\n    anonymous: true\n    networks: [10]\n    actions: [pull]\n",
                       ["rules[0]", "networks: 10 is not a network"]),
    "duplicate-key": ("rules:\n  - repositories: [x]\n    users: [a]\n    actions: [pull]\n    actions: [push]\n",
                      ["not valid YAML", "duplicate key 'actions'", "line 5"]),
    "bad-yaml": ("rules:\n  - repositories: [x\n", ["not valid YAML"]),
    "tab-indent": ("rules:\n\t- repositories: [x]\n", ["not valid YAML"]),
    "unhashable-key": ("rules:\n  - ? [a]\n    : b\n", ["not valid YAML", "unhashable"]),
    "admins-a-string-list-of-ints": ("admins: [1, 2]\n", ["admins: 1 is not"]),
    "admins-a-mapping": ("admins: {alice: true}\n", ["admins must be a list"]),
    "admin-empty-group": ("admins: ['group:']\n", ["admins: 'group:' names no group"]),
    "python-tag": ("rules: !!python/object/apply:os.system ['true']\n", ["not valid YAML"]),
}


@pytest.mark.parametrize("name", list(BAD_POLICIES))
def test_malformed_policy_is_one_clear_policy_error(tmp_path: Path, name: str) -> None:
    text, fragments = BAD_POLICIES[name]
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        Policy.load(path)
    message = str(caught.value)
    assert "\n" not in message.strip(), message
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert isinstance(caught.value, AuthFileError) and isinstance(caught.value, ConfigError)


def test_policy_file_that_cannot_be_read(tmp_path: Path) -> None:
    cases = {"missing": tmp_path / "nope.yaml", "a-directory": tmp_path}
    not_utf8 = tmp_path / "latin1.yaml"
    not_utf8.write_bytes(b"rules:\n  - repositories: [caf\xe9]\n")
    cases["not-utf8"] = not_utf8
    deep = tmp_path / "deep.yaml"
    deep.write_text("rules: " + "[" * 5000 + "]" * 5000 + "\n")
    cases["nested-5000-deep"] = deep
    for what, path in cases.items():
        with pytest.raises(PolicyError) as caught:
            Policy.load(path)
        assert str(caught.value).startswith(f"{path}: "), (what, str(caught.value))


def test_good_policy_loads_with_the_lenient_forms(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("admins: [alice, 'group:ops']\nrules:\n"
                    "  - repositories: team/*\n    users: bob\n    actions: [pull]\n"  # single strings: lists of one
                    "  - repositories: ['*']\n    anonymous: yes\n    networks: '10.0.0.0/8, 192.168.0.0/16'\n"
                    "    actions: [pull]\n"
                    "  - repositories: [ci/*]\n    authenticated: true\n    groups: [devs]\n    actions: [pull, push]\n")
    policy = Policy.load(path)
    assert [r.repositories for r in policy.rules] == [("team/*",), ("*",), ("ci/*",)]
    assert policy.rules[0].users == frozenset({"bob"})  # not {"b", "o"}: a string is one name
    assert len(policy.rules[1].networks) == 2 and policy.rules[1].anonymous
    assert policy.admin_users == {"alice"} and policy.admin_groups == {"ops"}
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert Policy.load(empty).rules == []


# -- htpasswd --------------------------------------------------------------------------------------

HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
BAD_HTPASSWD = {
    "md5": ("alice:$apr1$abc$defghijklmnop\n", ":1:", "only bcrypt"),
    "sha": ("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", ":1:", "only bcrypt"),
    "no-colon": (f"alice:{HASH}\nbob\n", ":2:", "expected USER:BCRYPT-HASH"),
    "empty-user": (f":{HASH}\n", ":1:", "expected USER:BCRYPT-HASH"),
    "truncated-hash": (f"alice:{HASH[:40]}\n", ":1:", "only bcrypt"),
    "bad-cost": ("alice:$2y$99$" + "a" * 53 + "\n", ":1:", "only bcrypt"),
    "duplicate-user": (f"alice:{HASH}\n# again\nalice:{HASH}\n", ":3:", "already on line 1"),
}


@pytest.mark.parametrize("name", list(BAD_HTPASSWD))
def test_malformed_htpasswd_names_the_line(tmp_path: Path, name: str) -> None:
    text, where, reason = BAD_HTPASSWD[name]
    path = tmp_path / "htpasswd"
    path.write_text(text)
    with pytest.raises(HtpasswdError) as caught:
        read_htpasswd(path)
    assert str(caught.value).startswith(f"{path}{where}") and reason in str(caught.value), str(caught.value)


def test_htpasswd_not_utf8_or_missing(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_bytes(b"caf\xe9:" + HASH.encode() + b"\n")
    with pytest.raises(HtpasswdError, match="cannot read"):
        read_htpasswd(path)
    with pytest.raises(HtpasswdError, match="cannot read"):
        read_htpasswd(tmp_path / "missing")


# -- token keys ------------------------------------------------------------------------------------

def _pem(key, password: bytes | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def test_signing_key_problems(tmp_path: Path) -> None:
    cases = {
        "garbage": (b"not a key\n", "ES256", "not a usable PEM private key"),
        "encrypted": (_pem(ec.generate_private_key(ec.SECP256R1()), b"secret"), "ES256", "unencrypted"),
        "rsa-for-es256": (_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "ES256",
                          "needs an EC P-256 key"),
        "ec-for-rs256": (_pem(ec.generate_private_key(ec.SECP256R1())), "RS256", "needs an RSA key"),
        "p384-for-es256": (_pem(ec.generate_private_key(ec.SECP384R1())), "ES256", "needs a P-256 key"),
        "ed25519": (_pem(ed25519.Ed25519PrivateKey.generate()), "ES256", "needs an EC P-256 key"),
    }
    for what, (data, algorithm, reason) in cases.items():
        path = tmp_path / f"{what}.pem"
        path.write_bytes(data)
        with pytest.raises(KeyFileError) as caught:
            check_signing_key(path, algorithm)
        assert str(caught.value).startswith(f"{path}: ") and reason in str(caught.value), (what, str(caught.value))
    good = tmp_path / "good.pem"
    good.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    assert check_signing_key(good, "ES256") is not None


def test_external_issuer_key_problems(tmp_path: Path) -> None:
    public = tmp_path / "public.pem"
    public.write_bytes(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        external_keys(str(public), "")
    ed = tmp_path / "ed.pem"
    ed.write_bytes(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(KeyFileError, match="EC or RSA keys only"):
        external_keys(str(ed), "")
    jwks_cases = {
        "not-json": (b"{keys", "not JSON"),
        "not-utf8": (b"\xff\xfe", "not JSON"),
        "a-list": (b"[]", "non-empty `keys` list"),
        "no-keys": (b'{"keys": []}', "non-empty `keys` list"),
        "key-a-string": (b'{"keys": ["k"]}', "keys[0]: not a usable key"),
        "key-without-kty": (b'{"keys": [{"crv": "P-256"}]}', "keys[0]: not a usable key"),
        "bad-coordinates": (json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}).encode(),
                            "keys[0]: not a usable key"),
    }
    for what, (data, reason) in jwks_cases.items():
        path = tmp_path / f"{what}.jwks"
        path.write_bytes(data)
        with pytest.raises(KeyFileError) as caught:
            external_keys("", str(path))
        assert str(caught.value).startswith(f"{path}: ") and reason in str(caught.value), (what, str(caught.value))


# -- `registry serve` ------------------------------------------------------------------------------

def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "registry", "serve", "--listen", f"127.0.0.1:{free_port()}",
                           "--data-dir", str(tmp_path / "data"), *args], capture_output=True, text=True, timeout=60)


def _assert_one_line_exit(result: subprocess.CompletedProcess, *fragments: str) -> None:
    text = result.stderr + result.stdout
    assert result.returncode == 2, text
    assert "Traceback" not in text, text
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("registry: configuration error: "), text
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_with_a_malformed_policy_exits_with_one_line(tmp_path: Path, workers: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n" + GOOD_RULE + "  - repositories: [x]\n    users: 7\n    actions: [pull]\n")
    result = _serve(tmp_path, "--auth-mode", "token", "--auth-policy-file", str(policy), "--workers", workers)
    _assert_one_line_exit(result, str(policy), "rules[1]", "line 5", "users must be a list")


def test_serve_with_malformed_htpasswd_or_keys_exits_with_one_line(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("alice:plaintext\n")
    _assert_one_line_exit(_serve(tmp_path, "--auth-mode", "basic", "--auth-htpasswd", str(htpasswd)),
                          f"{htpasswd}:1:", "only bcrypt")
    key = tmp_path / "token.pem"
    key.write_bytes(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    _assert_one_line_exit(_serve(tmp_path, "--auth-mode", "token", "--auth-token-key-file", str(key)),
                          str(key), "needs an EC P-256 key")
    jwks = tmp_path / "issuer.jwks"
    jwks.write_text('{"keys": [{"kty": "EC"}]}')
    _assert_one_line_exit(_serve(tmp_path, "--auth-mode", "token", "--auth-token-external-jwks", str(jwks)),
                          str(jwks), "keys[0]")
    _assert_one_line_exit(_serve(tmp_path, "--auth-anonymous-push-networks", "10.0.0.0/8,lan"),
                          "auth.anonymous_push_networks", "'lan' is not a network")


def test_htpasswd_broken_while_running_keeps_the_users_read_before(tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"hank": "hank-pw"})
    with AuthRegistry(tmp_path / "data", args=["--auth-mode", "basic", "--auth-htpasswd", str(htpasswd)]) as server:
        assert httpx.get(f"{server.url}/v2/", auth=("hank", "hank-pw")).status_code == 200
        time.sleep(0.01)
        htpasswd.write_text(htpasswd.read_text() + "half-written-line\n")  # an editor's save, say
        for _ in range(3):
            response = httpx.get(f"{server.url}/v2/", auth=("hank", "hank-pw"))
            assert response.status_code == 200, response.text
        assert httpx.get(f"{server.url}/v2/", auth=("hank", "wrong")).status_code == 401
        log = server.log_text()
        assert f"{htpasswd}:2: expected USER:BCRYPT-HASH" in log and "keeping the 1 user(s) read before" in log, log
        assert log.count("keeping the 1 user(s)") == 1, log  # once per change of the file, not per request
