"""`auth.ldap` checked when the configuration is loaded: each mistake is one ConfigError naming the option
(and the file or variable that set it), before the server starts; `registry serve` prints that one line
and exits 2. The checks run here through registry.settings.load, as `registry serve` runs them; no
directory is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from registry.auth.directory import directory_settings
from registry.config import ConfigError
from registry.settings import load
from tests.auth.test_auth_files import _assert_one_line_exit, _serve

GOOD = {"REGISTRY_AUTH_MODE": "basic", "REGISTRY_AUTH_LDAP_URL": "ldap://127.0.0.1:1",
        "REGISTRY_AUTH_LDAP_BASE_DN": "ou=people,dc=example,dc=org"}


def _env(**options: str) -> dict[str, str]:
    return {**GOOD, **{f"REGISTRY_AUTH_LDAP_{key.upper()}": value for key, value in options.items()}}


def _error(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load(None, environ)
    return str(caught.value)


# (REGISTRY_AUTH_LDAP_* settings, fragments of the one error)
BAD = {
    "scheme": ({"url": "http://directory"}, ["REGISTRY_AUTH_LDAP_URL: auth.ldap.url:", "'http://directory' is not"]),
    "no-host": ({"url": "ldap://"}, ["auth.ldap.url", "is not ldap://HOST"]),
    "a-dn-in-the-url": ({"url": "ldap://directory/dc=example,dc=org"}, ["auth.ldap.url", "only the scheme, host"]),
    "port": ({"url": "ldap://directory:99999"}, ["auth.ldap.url", "'ldap://directory:99999'", "out of range"]),
    "one-of-several": ({"url": "ldaps://a, ftp://b"}, ["auth.ldap.url", "'ftp://b' is not"]),
    "start-tls-on-ldaps": ({"url": "ldaps://directory", "start_tls": "true"}, ["auth.ldap.start_tls", "ldap:// URLs"]),
    "no-base-dn": ({"base_dn": ""}, ["auth.ldap.base_dn: required"]),
    "user-filter-without-name": ({"user_filter": "(uid=alice)"}, ["auth.ldap.user_filter", "must hold {username}"]),
    "user-filter-without-parentheses": ({"user_filter": "uid={username}"}, ["auth.ldap.user_filter",
                                                                           "not a filter in parentheses"]),
    "user-filter-unbalanced": ({"user_filter": "(&(uid={username})"}, ["auth.ldap.user_filter",
                                                                      "not a valid LDAP filter"]),
    "user-filter-no-operator": ({"user_filter": "(uid={username})(cn=x)"}, ["auth.ldap.user_filter",
                                                                           "not a valid LDAP filter"]),
    "group-filter-without-placeholder": ({"group_filter": "(objectClass=groupOfNames)"},
                                         ["auth.ldap.group_filter", "must hold {dn} or {username}"]),
    "bind-dn-without-password": ({"bind_dn": "cn=registry,dc=example,dc=org"},
                                 ["auth.ldap.bind_dn: needs bind_password"]),
    "password-without-bind-dn": ({"bind_password": "secret"}, ["auth.ldap.bind_password: given without"]),
    "attribute-name": ({"member_of_attribute": "member of"}, ["auth.ldap.member_of_attribute", "not an attribute"]),
    "no-group-name-attribute": ({"group_name_attribute": ""}, ["auth.ldap.group_name_attribute: required"]),
    "timeout": ({"timeout": "0"}, ["auth.ldap.timeout: must be at least 0.1"]),
    "connect-timeout": ({"connect_timeout": "-1"}, ["auth.ldap.connect_timeout"]),
    "cache": ({"cache_seconds": "-5"}, ["auth.ldap.cache_seconds: must be at least 0"]),
    "pool": ({"pool_size": "0"}, ["auth.ldap.pool_size: must be at least 1"]),
    "group-map-not-a-list": ({"group_map": '{"a": "b"}'}, ["auth.ldap.group_map", "expected a list"]),
    "group-map-entry-a-string": ({"group_map": '["devs"]'}, ["auth.ldap.group_map: entry 1", "a mapping"]),
    "group-map-unknown-key": ({"group_map": '[{"directory": "devs", "groups": "x"}]'},
                              ["auth.ldap.group_map: entry 1", "unknown key 'groups'"]),
    "group-map-without-group": ({"group_map": '[{"directory": "devs"}]'}, ["entry 1", "group: required"]),
    "group-map-blank": ({"group_map": '[{"directory": " ", "group": "devs"}]'}, ["entry 1", "must not be blank"]),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_ldap_option_is_one_error_naming_it(name: str) -> None:
    options, fragments = BAD[name]
    message = _error(_env(**options))
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_a_directory_needs_credentials_to_ask_for() -> None:
    message = _error({**GOOD, "REGISTRY_AUTH_MODE": "none"})
    assert "auth.ldap.url: a directory needs auth.mode basic or token" in message, message


def test_the_password_file_and_ca_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    message = _error(_env(bind_dn="cn=registry", bind_password_file=str(missing)))
    assert f"auth.ldap.bind_password_file: {missing}: cannot read it" in message, message
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert f"{empty} is empty" in _error(_env(bind_dn="cn=registry", bind_password_file=str(empty)))
    both = tmp_path / "both"
    both.write_text("secret\n")
    assert "not both" in _error(_env(bind_dn="cn=registry", bind_password="x", bind_password_file=str(both)))
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    message = _error(_env(ca_file=str(garbage)))
    assert f"auth.ldap.ca_file: {garbage}: not a readable PEM CA file" in message, message
    assert "auth.ldap.ca_file" in _error(_env(ca_file=str(missing)))


def test_the_password_file_gives_its_first_line_and_the_map_its_names(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret: with spaces \nsecond line\n")
    config = load(None, _env(bind_dn="cn=registry,dc=example,dc=org", bind_password_file=str(password),
                             group_map='[{"directory": "CN=Ops, OU=Groups,DC=example,DC=org", "group": "ops"},'
                                       ' {"directory": "Devs", "group": "developers"}]'))
    settings = directory_settings(config)
    assert settings is not None
    assert settings.bind_password == "s3cret: with spaces "
    assert settings.bind_password not in repr(settings)
    assert settings.group_map == (("cn=ops,ou=groups,dc=example,dc=org", "ops"), ("devs", "developers"))
    assert settings.group_base_dn == "ou=people,dc=example,dc=org"  # the user base when none is given
    assert [(e.host, e.port, e.tls) for e in settings.endpoints] == [("127.0.0.1", 1, False)]
    tls = directory_settings(load(None, _env(url="ldaps://a.example, ldap://b.example:10389,ldaps://[::1]")))
    assert tls is not None
    assert [(e.host, e.port, e.tls) for e in tls.endpoints] == [("a.example", 636, True), ("b.example", 10389, False),
                                                               ("::1", 636, True)]


def test_serve_with_a_bad_ldap_section_exits_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "registry.yaml"
    config.write_text(yaml.safe_dump({"auth": {"mode": "token", "ldap": {
        "url": "ldap://127.0.0.1:1", "base_dn": "dc=example,dc=org", "user_filter": "(&(uid={username})"}}}))
    _assert_one_line_exit(_serve(tmp_path, "--config", str(config)), f"{config}: auth.ldap.user_filter",
                          "not a valid LDAP filter")
