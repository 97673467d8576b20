"""The files auth reads (registry/auth/policy.py Policy.load and parse_networks, registry/auth/credentials.py
read_htpasswd): for any bytes in the file, a policy or htpasswd table, or one PolicyError / HtpasswdError
that names the file, never another exception (TypeError, AttributeError and ValueError were seen).
The documented mistakes one by one are in tests/auth/test_auth_files.py."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from registry.auth.credentials import HtpasswdError, read_htpasswd
from registry.auth.policy import RULE_KEYS, Policy, PolicyError, parse_networks
from tests.fuzz.conftest import fuzz
from tests.fuzz.strategies import SCALARS, YAML_PIECES, any_text, dumped_yaml, laughs, mutated, values

GOOD_POLICY = """admins: [alice, "group:ops"]
rules:
  - repositories: ["*"]
    anonymous: true
    actions: [pull]
  - repositories: ["team/*", "ops/**"]
    groups: [devs]
    users: [bob]
    networks: 10.0.0.0/8, ::1
    actions: [pull, push, delete]
"""


_RULE_VALUES = st.one_of(st.sampled_from([["*"], ["team/*"], [], "team/*", ["pull"], ["pull", "push"], ["fly"],
                                          ["10.0.0.0/8"], "10.0.0.0/8,::1", [""], ["group:"], True, False, None]),
                         SCALARS, st.lists(SCALARS, max_size=3))
_RULES = st.dictionaries(st.one_of(st.sampled_from(RULE_KEYS), SCALARS.filter(lambda k: isinstance(k, str))),
                         _RULE_VALUES, max_size=6)
DOCUMENTS = st.one_of(
    st.fixed_dictionaries({}, optional={"rules": st.one_of(st.lists(st.one_of(_RULES, SCALARS), max_size=4), SCALARS),
                                        "admins": st.one_of(st.lists(SCALARS, max_size=3), SCALARS)}),
    values(max_leaves=8))


FILES = st.one_of(
    DOCUMENTS.map(dumped_yaml),
    mutated(st.just(GOOD_POLICY), max_edits=4).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from(YAML_PIECES + ["rules:", "admins:", "repositories: ", "actions: ", "users: ", "groups: ",
                                            "networks: ", "anonymous: ", "authenticated: ", "10.0.0.0/33", "group:"]),
             max_size=24).map(lambda t: "".join(t).encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
    st.sampled_from([GOOD_POLICY.encode("utf-16"), b"\xef\xbb\xbf" + GOOD_POLICY.encode(), b"\xff\xfe", b""]))


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("policy-fuzz") / "policy.yaml"


def _load(path: Path, data: bytes) -> Policy | None:
    path.write_bytes(data)
    try:
        return Policy.load(path)
    except PolicyError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message.strip(), message
        assert len(message) < len(data) + 1000, f"an error message of {len(message)} characters"  # no expansion
        return None


@fuzz
@given(data=FILES)
@example(data=b"rules: " + b"[" * 5000)
@example(data=b"rules: 0x" + b"f" * 5000)  # an int too wide for repr() in the error message
@example(data=b"rules: " + b"1" * 5000)  # ValueError from PyYAML's int()
@example(data=b'rules: "\\U88888888888888888888"')  # OverflowError from PyYAML's scanner
@example(data=b"rules:\n  - repositories: 2001-02-30\n")  # ValueError from PyYAML's date()
@example(data=("admins: " + laughs(9, 9) + "\nrules: [*a8]\n").encode())  # repr of 9**9 strings: a hang
def test_any_policy_file_loads_or_is_one_policy_error(policy_path: Path, data: bytes) -> None:
    started = time.monotonic()
    policy = _load(policy_path, data)
    assert time.monotonic() - started < 10, "a policy file of a few hundred bytes took seconds to read"
    if policy is not None:
        for rule in policy.rules:
            assert rule.repositories and rule.actions <= {"pull", "push", "delete"}
            assert all(isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network)) for n in rule.networks)


NETWORKS = st.sampled_from(["10.0.0.0/8", "::1", "127.0.0.0/8,::1", "192.168.1.1/24", "fe80::/10"])


@fuzz
@given(st.one_of(NETWORKS, mutated(NETWORKS), any_text(), st.lists(st.one_of(NETWORKS, SCALARS), max_size=4)))
@example(["10.0.0.0/8", 5])
@example("10.0.0.0/" + "9" * 5000)
@example("１０.0.0.0/8")
def test_network_lists(value: Any) -> None:
    try:
        networks = parse_networks(value, "auth.anonymous_push_networks")
    except PolicyError as exc:
        assert str(exc).startswith("auth.anonymous_push_networks: ")
        return
    assert all(isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network)) for n in networks)


HASH = "$2b$04$" + "a" * 53
HTPASSWD = st.lists(st.one_of(st.builds(lambda u, h: f"{u}:{h}", st.sampled_from(["alice", "bob", "", "é"]),
                                        st.sampled_from([HASH, "$2y$10$" + "b" * 53, "$apr1$x", "{SHA}x", ""])),
                              st.sampled_from(["# comment", "", "  ", HASH])), max_size=5).map("\n".join)


@fuzz
@given(st.one_of(HTPASSWD.map(str.encode), mutated(HTPASSWD).map(lambda t: t.encode("utf-8", "surrogatepass")),
                 st.binary(max_size=100)))
@example(b"alice:$2b$\xd9\xa3\xd9\xa3$" + b"a" * 53)
def test_any_htpasswd_file(policy_path: Path, data: bytes) -> None:
    path = policy_path.with_name("htpasswd")
    path.write_bytes(data)
    try:
        entries = read_htpasswd(path)
    except HtpasswdError as exc:
        assert str(exc).startswith(str(path))
        return
    assert all(user and len(hashed) == 60 for user, hashed in entries.items())
