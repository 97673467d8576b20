"""The configuration (registry/config.py load): a YAML file, REGISTRY_* environment values, and what
they name (policy, htpasswd and key files, mirror upstreams, retention, quotas, immutable tags). For any file and any
environment, a Config or one ConfigError, never another exception: `registry serve` prints that one
line and exits 2. The documented mistakes one by one are in tests/test_config.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.config import Config, ConfigError, options
from registry.settings import load
from tests.fuzz.conftest import fuzz
from tests.fuzz.strategies import SCALARS, YAML_PIECES, any_text, dumped_yaml, laughs, mutated, values
from tests.fuzz.test_config_entries import IMMUTABLE, QUOTAS, RETENTION, UPSTREAMS

SPECS = {spec.dotted: spec for spec in options()}
# Options naming files the loader reads: only these paths (a fuzzer must not name /dev/zero or a FIFO).
FILE_OPTIONS = {"auth.htpasswd", "auth.policy_file", "auth.token.key_file", "auth.token.external_public_key",
                "auth.token.external_jwks", "tls.cert_file", "tls.key_file"}
LISTS = {"mirror.upstreams": UPSTREAMS, "retention.policies": RETENTION, "quota.namespaces": QUOTAS,
         "immutable_tags": IMMUTABLE}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("config-fuzz")
    (root / "policy.yaml").write_text("rules:\n  - repositories: ['*']\n    anonymous: true\n    actions: [pull]\n")
    (root / "junk").write_bytes(b"\xff\xfe\x00junk: [\n")
    (root / "htpasswd").write_text("alice:$2b$04$" + "a" * 53 + "\n")
    (root / "jwks.json").write_text('{"keys": [{"kty": "EC"}]}')
    (root / "dir").mkdir()
    yield root


def _file_values(root: Path) -> st.SearchStrategy[str]:
    return st.sampled_from(["", str(root / "policy.yaml"), str(root / "junk"), str(root / "htpasswd"),
                            str(root / "jwks.json"), str(root / "dir"), str(root / "missing"), "relative/missing",
                            str(root / "a\x00b")])


def _value(dotted: str, root: Path) -> st.SearchStrategy[Any]:
    spec = SPECS[dotted]
    if dotted in FILE_OPTIONS:
        return _file_values(root)
    if dotted in LISTS:
        return st.one_of(st.lists(st.one_of(LISTS[dotted], SCALARS), max_size=3), SCALARS)
    if spec.choices:
        return st.one_of(st.sampled_from(spec.choices), mutated(st.sampled_from(spec.choices)), SCALARS)
    typical = {int: st.one_of(st.integers(-5, 10 ** 6), st.integers(-5, 10 ** 6).map(str)),
               float: st.one_of(st.floats(-10, 10 ** 6), st.sampled_from(["0.5", "1e3", ".inf", "nan", "٣"])),
               bool: st.one_of(st.booleans(), st.sampled_from(["yes", "off", "1", "maybe"])),
               str: st.sampled_from([":5000", "127.0.0.1:5000", "[::1]:0", ":65536", ":٣", "10.0.0.0/8,::1", ""])}
    return st.one_of(typical.get(spec.type, st.nothing()), SCALARS, values(max_leaves=4))


@st.composite
def documents(draw: st.DrawFn, root: Path) -> dict[str, Any]:
    """A configuration document: some options set (nested by their dotted path), unknown keys now and then."""
    document: dict[str, Any] = {}
    for dotted in draw(st.lists(st.sampled_from(sorted(SPECS)), max_size=5, unique=True)):
        node = document
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[leaf] = draw(_value(dotted, root))
    if draw(st.integers(0, 9)) == 0:
        document[draw(st.sampled_from(["unknown", "auth", "limits.rate", "storage"]))] = draw(SCALARS)
    return document


def _env_values(root: Path) -> st.SearchStrategy[dict[str, str]]:
    """REGISTRY_* variables as a shell hands them over: text (lone surrogates from surrogateescape), never NUL."""
    def value(dotted: str) -> st.SearchStrategy[str]:
        if dotted in FILE_OPTIONS:
            return _file_values(root).filter(lambda v: "\x00" not in v)
        text = st.one_of(any_text(30), st.sampled_from(['[{"alias": "a", "url": "http://u"}]', "[" * 5000, "[]", "{}",
                                                         "1" * 5000, "0x10", "٣", "1_000", "true", "-1", ".inf"]))
        return text.map(lambda t: t.replace("\x00", ""))
    names = st.lists(st.sampled_from(sorted(SPECS)), max_size=3, unique=True)
    return names.flatmap(lambda chosen: st.fixed_dictionaries({SPECS[d].env: value(d) for d in chosen}))


def _check(path: Path, data: bytes, environ: dict[str, str]) -> None:
    path.write_bytes(data)
    started = time.monotonic()
    try:
        config = load(None, {"REGISTRY_CONFIG": str(path), **environ})
    except ConfigError as exc:
        assert str(exc), exc
        return
    finally:
        assert time.monotonic() - started < 10, "a configuration of a few hundred bytes took seconds to read"
    assert isinstance(config, Config)


@fuzz
@given(data=st.data())
def test_any_configuration_file_and_environment(files: Path, data: st.DataObject) -> None:
    content = data.draw(st.one_of(
        documents(files).map(dumped_yaml),
        mutated(documents(files).map(lambda d: dumped_yaml(d).decode("utf-8", "surrogatepass")))
        .map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.lists(st.sampled_from(YAML_PIECES + ["listen: ", "workers: ", "auth:\n  mode: ", "mirror:\n  upstreams: ",
                                                "limits: {rate: ", "gc: {grace_period: "]), max_size=16)
        .map(lambda t: "".join(t).encode("utf-8", "surrogatepass")),
        st.binary(max_size=100)), label="file")
    environ = data.draw(st.one_of(st.just({}), _env_values(files)), label="environment")
    _check(files / "registry.yaml", content, environ)


@pytest.mark.parametrize("content", [
    b"workers: " + b"1" * 5000,  # ValueError from PyYAML's int()
    b"workers: 2001-02-30",  # ValueError from PyYAML's date()
    b"workers: " + b"[" * 5000,  # RecursionError from PyYAML's composer
    b"workers: \xff",  # UnicodeDecodeError reading the file
    b'workers: "\\U88888888888888888888"',  # OverflowError from PyYAML's scanner (chr of a too-wide escape)
    b"quota:\n  namespaces: [{namespace: a, bytes: 0x" + b"f" * 5000 + b"}]",  # str() of an int too wide
    b"mirror:\n  upstreams: [{alias: a, url: 'http://u', ca_file: \"a\\0b\"}]",  # ValueError: embedded null byte
    # YAML aliases that expand to 9**9 strings, then one option's str() or an error message walks them all
    ("retention:\n  policies: " + laughs(9, 9) + "\nlisten: *a8\n").encode(),
    ("retention:\n  policies: " + laughs(9, 9) + "\nmirror:\n  upstreams: *a8\n").encode(),
], ids=["int-5000-digits", "february-30", "nested-5000", "not-utf8", "escape-too-wide", "quota-hex-int", "ca-file-nul",
        "laughs-listen", "laughs-upstreams"])
def test_configuration_files_found_by_fuzzing(files: Path, content: bytes) -> None:
    _check(files / "found.yaml", content, {})


@pytest.mark.parametrize("environ", [
    {"REGISTRY_MIRROR_UPSTREAMS": "[" * 100_000},  # RecursionError from json.loads
    {"REGISTRY_GC_GRACE_PERIOD": "٣"},  # a digit of another script
    {"REGISTRY_QUOTA_NAMESPACES": '[{"namespace": "a", "bytes": ' + "1" * 5000 + "}]"},
    {"REGISTRY_LISTEN": ":\udc80"},
], ids=["deep-list", "arabic-digit", "json-int-5000-digits", "surrogate-port"])
def test_environments_found_by_fuzzing(files: Path, environ: dict[str, str]) -> None:
    _check(files / "empty.yaml", b"", environ)
