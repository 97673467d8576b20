"""Configuration layering: defaults < YAML < REGISTRY_* environment < flags."""

import subprocess
import sys

import pytest

from registry.cli import build_parser
from registry.config import ConfigError, options
from registry.settings import load


def _args(*argv: str):
    return build_parser().parse_args(["serve", *argv])


def test_defaults_are_the_embedded_setup():
    config = load(_args(), environ={})
    assert config.listen == ":5000"
    assert config.host_port == ("0.0.0.0", 5000)
    assert config.database_url.startswith("sqlite+aiosqlite:///") and config.database_url.endswith("/data/registry.db")
    assert config.storage.backend == "filesystem"


def test_each_layer_overrides_the_one_below(tmp_path):
    yaml_file = tmp_path / "registry.yml"
    yaml_file.write_text("listen: 127.0.0.1:7000\ndata_dir: /from/yaml\nstorage:\n  root: /yaml/blobs\n"
                         "database:\n  pool_size: 3\n")
    from_yaml = load(_args("--config", str(yaml_file)), environ={})
    assert (from_yaml.listen, from_yaml.data_dir, from_yaml.storage.root, from_yaml.database.pool_size) == \
        ("127.0.0.1:7000", "/from/yaml", "/yaml/blobs", 3)

    env = {"REGISTRY_LISTEN": "127.0.0.1:7001", "REGISTRY_DATABASE_POOL_SIZE": "4",
           "REGISTRY_DELETE_ENABLED": "false"}
    from_env = load(_args("--config", str(yaml_file)), environ=env)
    assert (from_env.listen, from_env.data_dir, from_env.database.pool_size, from_env.delete_enabled) == \
        ("127.0.0.1:7001", "/from/yaml", 4, False)

    from_flags = load(_args("--config", str(yaml_file), "--listen", "127.0.0.1:7002", "--delete-enabled"),
                      environ=env)
    assert (from_flags.listen, from_flags.delete_enabled, from_flags.database.pool_size) == \
        ("127.0.0.1:7002", True, 4)


def test_config_file_from_environment(tmp_path):
    yaml_file = tmp_path / "r.yml"
    yaml_file.write_text("data_dir: /env/file\n")
    assert load(_args(), environ={"REGISTRY_CONFIG": str(yaml_file)}).data_dir == "/env/file"


@pytest.mark.parametrize("content, message", [
    ("nonsense: 1\n", "unknown option nonsense"),
    ("database:\n  pool_size: many\n", "database.pool_size"),
    ("log_level: loud\n", "not one of"),
    ("- a list\n", "mapping"),
])
def test_bad_yaml_is_a_clear_error(tmp_path, content, message):
    yaml_file = tmp_path / "bad.yml"
    yaml_file.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load(_args("--config", str(yaml_file)), environ={})


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="REGISTRY_DELETE_ENABLED"):
        load(_args(), environ={"REGISTRY_DELETE_ENABLED": "perhaps"})
    with pytest.raises(ConfigError, match="listen"):
        load(_args(), environ={"REGISTRY_LISTEN": "nowhere"})


def test_help_documents_every_option():
    help_text = subprocess.run([sys.executable, "-m", "registry", "serve", "--help"], capture_output=True,
                               text=True, check=True).stdout
    for spec in options():
        assert spec.flag in help_text, spec.flag
        assert spec.env in help_text.replace("\n", " ").replace("  ", ""), spec.env


def test_bad_config_exits_2_with_message(tmp_path):
    result = subprocess.run([sys.executable, "-m", "registry", "serve", "--listen", "bogus"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "configuration error" in result.stderr


def test_mirror_upstream_ca_file_is_checked_at_start(tmp_path):
    def upstream(ca_file: str) -> dict[str, str]:
        return {"REGISTRY_MIRROR_UPSTREAMS": f'[{{"alias": "corp", "url": "https://corp:5000", "ca_file": "{ca_file}"}}]'}

    with pytest.raises(ConfigError, match=r"REGISTRY_MIRROR_UPSTREAMS: mirror.upstreams\[0\]: ca_file: .*missing.crt"):
        load(_args(), environ=upstream(str(tmp_path / "missing.crt")))
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"ca_file: .*garbage.crt"):
        load(_args(), environ=upstream(str(garbage)))
    from registry.tls import ensure_self_signed
    ensure_self_signed(tmp_path / "tls", ["corp"])
    assert load(_args(), environ=upstream(str(tmp_path / "tls" / "ca.crt"))).mirror.upstreams[0]["ca_file"]


@pytest.mark.parametrize("section, message", [
    ("mirror:\n  upstreams:\n    - {alias: up, url: 'http://x:1', tag_ttl: abc}\n",
     r"mirror.upstreams\[0\]: tag_ttl must be a number; got a string 'abc'"),
    ("mirror:\n  upstreams:\n    - {alias: up, url: 'http://x:1', tag_ttl: .nan}\n", r"tag_ttl must be a finite number"),
    ("mirror:\n  upstreams:\n    - {alias: up, url: 'http://x:1', tag_ttl: -5}\n", r"tag_ttl must be .* at least 0"),
    ("mirror:\n  upstreams:\n    - {alias: up, url: 'http://x:99999'}\n", r"mirror.upstreams\[0\]: url: Port out of range"),
    ("mirror:\n  upstreams:\n    - {alias: up, url: 'http://x:1', docker_hub: 'no'}\n",
     r"docker_hub must be true or false; got a string 'no'"),
    ("mirror:\n  upstreams:\n    - {alias: up, url: 'http://x:1', username: [a]}\n", r"username must be text; got a list"),
    ("mirror:\n  upstreams:\n    - {alias: up, url: 'http://x:1', tag_ttl: " + "9" * 400 + "}\n", r"tag_ttl: too large"),
    ("mirror:\n  upstreams:\n    - just a string\n", r"mirror.upstreams\[0\]: an entry is a mapping; got a string"),
    ("retention:\n  policies:\n    - {repositories: 'a/*', keep_last: -1}\n", r"retention.policies\[0\]: keep_last"),
    ("retention:\n  policies:\n    - {repositories: 'a/*', keep_last: 2.5}\n", r"keep_last must be a whole number; got a number 2.5"),
    ("retention:\n  policies:\n    - {repositories: 'a/*', keep_last: 1, keep_tags: '('}\n",
     r"keep_tags: not a regular expression"),
    ("quota:\n  namespaces:\n    - {namespace: team, bytes: " + "9" * 400 + "}\n", r"quota.namespaces\[0\]: bytes"),
    ("quota:\n  namespaces:\n    - {namespace: team, bytes: '1e999GiB'}\n", r"quota.namespaces\[0\]: bytes: not a size"),
    ("immutable_tags:\n  - {repositories: 'prod**', tags: 'v*'}\n",
     r"immutable_tags\[0\]: repositories: 'prod\*\*' has \*\* inside a path segment"),
    ("immutable_tags:\n  - {repositories: 'prod/**', tags: 'a/b'}\n", r"immutable_tags\[0\]: tags: 'a/b' holds a /"),
    ("immutable_tags:\n  - {repositories: 'prod/**'}\n", r"immutable_tags\[0\]: tags: required"),
    ("immutable_tags:\n  - {repositories: 'Prod/*', tags: 'v*'}\n", r"repositories: 'Prod/\*' has upper-case letters"),
    ("immutable_tags:\n  - {repositories: 'prod/**', tags: 'v*', actions: [push]}\n",
     r"immutable_tags\[0\]: unknown key 'actions' \(known: repositories, tags\)"),
    ("notifications:\n  endpoints:\n    - {name: ci, url: 'ftp://x'}\n",
     r"notifications.endpoints\[0\]: url: an http:// or https:// URL with a host"),
    ("notifications:\n  endpoints:\n    - {name: ci, url: 'http://x', timeout: 5 minutes}\n",
     r"notifications.endpoints\[0\]: timeout: a duration such as 500ms"),
    ("notifications:\n  endpoints:\n    - {name: ci, url: 'http://x', ignore: {actions: [pull, tag]}}\n",
     r"notifications.endpoints\[0\]: ignore: actions: 'tag' is not one of push, pull, mount, delete"),
    ("notifications:\n  endpoints:\n    - {name: ci, url: 'http://x', headers: {Authorization: [a, {b: c}]}}\n",
     r"notifications.endpoints\[0\]: headers: Authorization: a value is text; got a mapping"),
    ("notifications:\n  endpoints:\n    - {name: ci, url: 'http://x'}\n    - {name: ci, url: 'http://y'}\n",
     r"notifications.endpoints\[1\]: name 'ci' is used by an earlier endpoint"),
    ("notifications:\n  endpoints: {name: ci}\n", r"notifications.endpoints: expected a list"),
    ("audit:\n  retention_days: -1\n", r"audit.retention_days: must not be negative"),
    ("limits:\n  header_bytes: -.inf\n", r"limits.header_bytes: not a whole number"),
    ("limits:\n  header_bytes: '٣٣٣٣٣'\n", r"limits.header_bytes: not a whole number"),
    ("listen: ':٥٠٠٠'\n", r"listen: expected host:port"),
])
def test_malformed_entries_name_the_file_the_entry_and_the_reason(tmp_path, section, message):
    yaml_file = tmp_path / "registry.yml"
    yaml_file.write_text(section)
    with pytest.raises(ConfigError, match=message) as caught:
        load(_args("--config", str(yaml_file)), environ={})
    assert "\n" not in str(caught.value)
    if "listen" not in section:
        assert str(caught.value).startswith(str(yaml_file)), str(caught.value)


def test_malformed_entry_stops_serve_with_one_line(tmp_path):
    yaml_file = tmp_path / "registry.yml"
    yaml_file.write_text("mirror:\n  upstreams:\n    - {alias: up, url: 'http://x:1', tag_ttl: abc}\n")
    result = subprocess.run([sys.executable, "-m", "registry", "serve", "--config", str(yaml_file)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"{yaml_file}: mirror.upstreams[0]: tag_ttl must be a number" in result.stderr
