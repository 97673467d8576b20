"""One typed configuration: defaults < YAML file < REGISTRY_* environment < command-line flags.

Every option is a dataclass field with a `help` text; the YAML keys, the environment names
(`REGISTRY_` + the dotted path in upper case with `_`), and the `--flags` (`--` + the dotted
path with `-`) all derive from the fields, so none of the four layers can drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator, Mapping, Sequence

import yaml

from registry.config_entries import described, whole_number
from registry.numbers import ascii_decimal


def option(default: Any, help: str, **kwargs: Any) -> Any:
    if isinstance(default, list):  # mutable defaults need a factory
        return field(default_factory=lambda: list(default), metadata={"help": help, **kwargs})
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class DatabaseConfig:
    url: str = option("", "SQLAlchemy URL of the metadata database; empty means SQLite at DATA_DIR/registry.db "
                          "(e.g. postgresql+asyncpg://user:pw@host/db)")
    pool_size: int = option(10, "connections kept open in the pool")
    migrate_on_start: bool = option(True, "apply schema migrations at start-up (for the embedded default)")


@dataclass
class S3Config:
    bucket: str = option("", "S3 bucket for blobs and staged uploads")
    prefix: str = option("", "key prefix inside the bucket")
    region: str = option("", "S3 region (empty: boto3's default chain)")
    endpoint_url: str = option("", "S3 endpoint URL, for S3-compatible servers (empty: AWS)")
    path_style: bool = option(False, "path-style addressing (http://host/bucket/key) instead of virtual hosts")
    storage_class: str = option("", "storage class for blobs (e.g. STANDARD_IA); empty: the bucket's default")
    access_key: str = option("", "access key id (empty: boto3's standard credential chain)")
    secret_key: str = option("", "secret access key (empty: boto3's standard credential chain)")
    part_size: int = option(8 * 1024 * 1024, "multipart part size in bytes (at least 5 MiB); doubles every "
                                             "1,000 parts so a 100 GiB layer stays under 10,000 parts")
    max_connections: int = option(32, "concurrent connections (and threads) to S3")
    redirect: bool = option(False, "answer blob GETs with a 307 redirect to a pre-signed URL instead of streaming")
    redirect_expiry: int = option(1200, "lifetime of a pre-signed redirect URL, in seconds")


@dataclass
class StorageConfig:
    backend: str = option("filesystem", "blob storage backend", choices=("filesystem", "s3"))
    root: str = option("", "filesystem backend: directory for blobs and staged uploads; empty means DATA_DIR")
    min_free_bytes: int = option(256 * 1024 * 1024, "free space, in bytes, the storage root's disk (and the SQLite "
                                                    "database's, with SQLite) must keep: below it /readyz answers "
                                                    "503 `down: disk full` until space is freed; 0: not checked")
    s3: S3Config = field(default_factory=S3Config)


@dataclass
class TokenConfig:
    issuer: str = option("registry", "the `iss` of tokens this registry issues and accepts")
    algorithm: str = option("ES256", "signature of issued tokens", choices=("ES256", "RS256"))
    key_file: str = option("", "PEM private key that signs tokens; empty: one is generated in DATA_DIR/auth/")
    expiry: int = option(300, "lifetime of an access token, in seconds")
    refresh_expiry: int = option(30 * 86400, "lifetime of a refresh (offline) token, in seconds")
    realm: str = option("", "token endpoint advertised to clients; empty: this server's /auth/token")
    external_public_key: str = option("", "PEM public key of an external token issuer (its tokens are accepted "
                                          "instead of this registry's own)")
    external_jwks: str = option("", "JWKS file of an external token issuer")


@dataclass
class LdapConfig:
    url: str = option("", "LDAP directory URL(s), comma separated and tried in order: ldap://HOST[:389] or "
                          "ldaps://HOST[:636]; empty: no directory (local users and robots only)")
    bind_dn: str = option("", "DN of the service account the registry searches the directory as; empty: "
                              "anonymous searches")
    bind_password: str = option("", "password of bind_dn (or bind_password_file, or the environment)")
    bind_password_file: str = option("", "file holding the password of bind_dn (its first line)")
    base_dn: str = option("", "where users are searched (the whole subtree), e.g. ou=people,dc=example,dc=org")
    user_filter: str = option("(&(objectClass=inetOrgPerson)(uid={username}))",
                              "LDAP filter finding a user; {username} is the login name, escaped (RFC 4515)")
    group_base_dn: str = option("", "where groups are searched; empty: base_dn")
    group_filter: str = option("(&(objectClass=groupOfNames)(member={dn}))",
                               "LDAP filter finding a user's groups; {dn} is the user's DN and {username} the "
                               "login name, both escaped; empty: no group search")
    group_name_attribute: str = option("cn", "attribute of a group entry holding its name")
    member_of_attribute: str = option("", "attribute of the user entry listing the user's groups by DN (memberOf "
                                          "on Active Directory or with OpenLDAP's memberof overlay); a group's "
                                          "name is its DN's first value; empty: not read")
    group_map: list = option([], "directory groups to policy groups: a YAML list of {directory, group}, directory "
                                 "being a group's name or DN (case-insensitive); empty: each group's name is a "
                                 "policy group as it is; when set, only the groups listed count")
    start_tls: bool = option(False, "upgrade ldap:// connections to TLS with StartTLS")
    ca_file: str = option("", "PEM CA certificate(s) the directory's certificate must chain to (ldaps:// and "
                              "StartTLS); empty: the system's CAs")
    tls_verify: bool = option(True, "verify the directory's certificate and name (turn off only to try things "
                                    "out)")
    connect_timeout: float = option(5.0, "seconds to wait for a connection to a directory server")
    timeout: float = option(10.0, "seconds to wait for each answer of the directory")
    cache_seconds: float = option(60.0, "seconds a successful directory login is remembered (keyed by the user "
                                        "and a salted hash of the password); failures are never remembered; "
                                        "0: every login asks the directory")
    pool_size: int = option(4, "connections kept open to the directory for searches, and as many for users' "
                               "binds (each used by one login at a time)")


@dataclass
class AuthConfig:
    mode: str = option("none", "none: no credentials (anonymous push only from anonymous_push_networks); basic: "
                               "HTTP basic auth; token: Docker token authentication with the built-in or an "
                               "external token server", choices=("none", "basic", "token"))
    service: str = option("registry", "service name in token challenges and the tokens' audience")
    htpasswd: str = option("", "htpasswd file (bcrypt entries) of users, besides those of `registry user add`")
    policy_file: str = option("", "YAML access policy (rules by repository pattern); empty: the default policy")
    anonymous_pull: bool = option(False, "with basic/token auth and the default policy: allow pulls without "
                                         "credentials")
    anonymous_push_networks: str = option("127.0.0.0/8,::1", "with mode none: networks allowed to push and "
                                                            "delete anonymously (others may only pull)")
    admins: str = option("", "users and groups (group:NAME) with the admin role")
    failed_login_limit: int = option(10, "failed logins per client and user per minute before 429")
    token: TokenConfig = field(default_factory=TokenConfig)
    ldap: LdapConfig = field(default_factory=LdapConfig)


@dataclass
class TLSConfig:
    cert_file: str = option("", "PEM certificate chain to serve HTTPS with")
    key_file: str = option("", "PEM private key of the certificate")
    self_signed: bool = option(False, "serve HTTPS with a generated self-signed certificate (development); "
                                      "its CA is written to DATA_DIR/tls/ca.crt")
    hostnames: str = option("localhost,127.0.0.1", "names and addresses the self-signed certificate covers")


@dataclass
class LimitsConfig:
    manifest_bytes: int = option(4 * 1024 * 1024, "largest manifest accepted, in bytes")
    blob_bytes: int = option(0, "largest blob accepted, in bytes (0: no limit)")
    header_bytes: int = option(16384, "longest request line, header name or header value, in bytes (longer: "
                                      "431)")
    header_total_bytes: int = option(65536, "largest request head (request line and all header fields), in bytes "
                                            "(larger: 431)")
    rate: float = option(2000.0, "requests per second allowed per client address (0: no limit)")
    burst: int = option(20000, "requests a client may send at once above the rate")
    body_timeout: float = option(120.0, "seconds a request body may stall before the request is aborted")
    idle_timeout: float = option(75.0, "seconds a connection may sit idle, or dribble its headers, before it is "
                                       "closed")


@dataclass
class MirrorConfig:
    upstreams: list = option([], "upstream registries to mirror: a YAML list of {alias, url, host, docker_hub, "
                                 "username, password, tag_ttl, ca_file} (env/flag: the same as JSON)")
    max_stale: int = option(7 * 86400, "seconds cached content may be served past its freshness while the "
                                       "upstream fails (429, 5xx, timeouts, unreachable)")
    cache_bytes: int = option(0, "size cap for mirrored blobs, least recently pulled evicted first (0: no cap)")
    local_namespaces: list = option([], "with a docker_hub upstream, the repository name prefixes that stay this "
                                        "registry's own (e.g. [team, ci]); every other name without an upstream's "
                                        "prefix is Docker Hub's, and pushes to it are refused")


@dataclass
class GCConfig:
    grace_period: float = option(3600.0, "seconds an unreferenced blob link is kept (a layer whose manifest is "
                                         "not pushed yet); a HEAD, GET or mount of the blob in that repository "
                                         "restarts it; older unreferenced links and blobs are collected")
    untagged_days: float = option(-1.0, "days after which untagged manifests (not needed by a tagged index or "
                                        "as a referrer of a kept manifest) are collected; negative: keep them")
    upload_expiry: float = option(86400.0, "seconds an upload session may sit idle before gc purges it and its "
                                           "staged data")
    orphan_grace_period: float = option(3600.0, "seconds stored blob bytes that no blob row records (left by a crash "
                                                "between storing a push's bytes and recording them) are kept, "
                                                "counted from the file's or object's modification time, before gc "
                                                "deletes them; negative: never (fsck --repair still quarantines "
                                                "them)")
    interval: float = option(0.0, "seconds between scheduled gc runs (retention policies included); 0: only "
                                  "`registry gc` and the admin API run it")
    batch_size: int = option(500, "rows per sweep transaction, and per page the mark reads back (smaller: shorter "
                                  "pauses for concurrent pushes, less memory)")


@dataclass
class RetentionConfig:
    policies: list = option([], "retention policies, first match per repository: a YAML list of {repositories "
                                "(glob), keep_last, older_than_days, keep_tags (regex), keep_pulled_within_days} "
                                "(env/flag: the same as JSON); a tag goes when no rule keeps it")
    interval: float = option(0.0, "seconds between scheduled retention-only runs (gc applies the policies too); "
                                  "0: off")


@dataclass
class QuotaConfig:
    namespaces: list = option([], "byte quotas: a YAML list of {namespace, bytes} (bytes as a number or with "
                                  "units, e.g. 10GiB); each blob counts once per namespace")


@dataclass
class FsckConfig:
    interval: float = option(0.0, "seconds between scheduled integrity checks (report only, no repair); 0: off")
    sample: float = option(1.0, "fraction of blobs a scheduled check re-hashes (1: all); all are checked for "
                                "presence and size")


@dataclass
class NotificationsConfig:
    endpoints: list = option([], "webhook endpoints sent every push, pull, mount and delete in CNCF Distribution's "
                                 "event envelope, in order and at least once: a YAML list of {name, url, headers, "
                                 "timeout, threshold, backoff, ignoredmediatypes, ignore: {mediatypes, actions}, "
                                 "disabled}, Distribution's keys (env/flag: the same as JSON)")


@dataclass
class ReplicationConfig:
    rules: list = option([], "replication rules: a YAML list of {name, direction: pull|push, url, username, password, "
                             "ca_file, repositories, tags, versions, platforms, destination_prefix, schedule, "
                             "on_push, concurrency, delete, referrers, enabled} (env/flag: the same as JSON); "
                             "see docs/replication.md. The admin API adds more")


@dataclass
class AuditConfig:
    retention_days: float = option(90.0, "days audit entries (every push, pull, delete, login, denial and admin "
                                         "action) are kept; older ones are purged hourly, except those a webhook "
                                         "endpoint has not been sent yet; 0: kept forever")


@dataclass
class Config:
    listen: str = option(":5000", "address to listen on, host:port (an empty host means all interfaces)")
    workers: int = option(1, "server processes sharing the listening socket (use every core; with several "
                             "registry hosts, PostgreSQL is the database they share)")
    data_dir: str = option("./data", "directory for the embedded database and filesystem blob store")
    log_level: str = option("info", "log level", choices=("debug", "info", "warning", "error"))
    log_format: str = option("text", "log lines as text, or as one JSON object per line (access lines carry "
                                     "request_id, remote, user, method, path, route, status, duration_ms, "
                                     "bytes_in, bytes_out, user_agent)",
                             choices=("text", "json"))
    delete_enabled: bool = option(True, "allow DELETE of manifests, tags and blobs")
    immutable_tags: list = option([], "immutable-tag rules: a YAML list of {repositories, tags} (env/flag: the same "
                                      "as JSON), e.g. [{repositories: prod/**, tags: v*}]; a matching tag, once "
                                      "pushed, is never moved to another manifest nor deleted, and retention keeps "
                                      "it. repositories: `*` within a path segment, `**` across segments; tags: "
                                      "`*`, `?`, `[...]`. The admin API adds more; a mirror's cache is never held")
    upload_chunk_bytes: int = option(4 * 1024 * 1024, "read/write buffer for streamed request bodies, in bytes")
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    mirror: MirrorConfig = field(default_factory=MirrorConfig)
    gc: GCConfig = field(default_factory=GCConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    fsck: FsckConfig = field(default_factory=FsckConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)

    # Derived values, resolved once so every reader agrees.
    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return (host.strip("[]") or "0.0.0.0", listen_port(port))

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{Path(self.data_dir).resolve() / 'registry.db'}"

    @property
    def storage_root(self) -> Path:
        return Path(self.storage.root or self.data_dir).resolve()


@dataclass(frozen=True)
class OptionSpec:
    path: tuple[str, ...]
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def env(self) -> str:
        return "REGISTRY_" + "_".join(self.path).upper()

    @property
    def flag(self) -> str:
        return "--" + "-".join(self.path).replace("_", "-")

    @property
    def dest(self) -> str:
        return "__".join(self.path)


def options(cls: type = Config, prefix: tuple[str, ...] = ()) -> Iterator[OptionSpec]:
    """Every leaf option of the configuration, in declaration order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        ftype = hints[f.name]
        if isinstance(ftype, type) and dataclasses.is_dataclass(ftype):
            yield from options(ftype, prefix + (f.name,))
        else:
            default = f.default if f.default is not dataclasses.MISSING else \
                (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            yield OptionSpec(prefix + (f.name,), ftype, default, f.metadata.get("help", ""), f.metadata.get("choices"))


def listen_port(text: str) -> int:
    """The port of `listen`: 1 to 5 ASCII digits, below 65536."""
    port = ascii_decimal(text, 5)
    if port is None or port > 65535:
        raise ValueError(f"not a port: {text!r}")
    return port


_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?")


def _number(value: Any) -> float:
    """A float option: a finite YAML number, or an ASCII decimal (no NaN, no infinity, no other digits)."""
    text = value.strip(" \t") if isinstance(value, str) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    elif text is not None and len(text) <= 40 and _FLOAT.fullmatch(text):
        result = float(text)
    else:
        raise ValueError(f"not a number: {str(value)[:40]!r}")
    if not math.isfinite(result):
        raise ValueError(f"not a finite number: {str(value)[:40]!r}")
    return result


def _coerce(spec: OptionSpec, value: Any, source: str) -> Any:
    try:
        if spec.type is list:
            listed = json.loads(value) if isinstance(value, str) else value
            if not isinstance(listed, list):
                raise ValueError("expected a list (YAML, or JSON in the environment and flags)")
            return listed
        if spec.type is bool:
            if isinstance(value, bool):
                result: Any = value
            elif str(value).lower() in ("1", "true", "yes", "on"):
                result = True
            elif str(value).lower() in ("0", "false", "no", "off"):
                result = False
            else:
                raise ValueError(f"not a boolean: {value!r}")
        elif spec.type is int:
            result = whole_number(value)
        elif spec.type is float:
            result = _number(value)
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            result = spec.type(value)
        else:  # never str() of a list or mapping: YAML aliases can make one of 9**9 strings
            raise ValueError(f"must be text; got {described(value)}")
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise ConfigError(f"{source}: {spec.dotted}: {exc}") from None
    if isinstance(result, str) and "\0" in result:  # no path, URL or name holds one; open() would raise
        raise ConfigError(f"{source}: {spec.dotted}: contains a NUL character")
    if spec.choices and result not in spec.choices:
        raise ConfigError(f"{source}: {spec.dotted}: {result!r} is not one of {', '.join(spec.choices)}")
    return result


class ConfigError(Exception):
    pass


def _set(config: Config, path: tuple[str, ...], value: Any) -> None:
    target: Any = config
    for part in path[:-1]:
        target = getattr(target, part)
    setattr(target, path[-1], value)


# What a command that is not the server needs to find the registry's data; its own sections come on top.
WHERE_THE_DATA_IS = ("data_dir", "database.url", "storage.backend", "storage.root")


def add_arguments(parser: argparse.ArgumentParser, shown: tuple[str, ...] | None = None) -> None:
    """Add --config and one flag per option; defaults stay None so unset flags do not override.

    With `shown` (dotted option names or section prefixes), every option is still accepted but only those
    appear in --help and in usage lines: `registry user add --help` need not list the server's 70 options."""
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file (env: REGISTRY_CONFIG)")
    if shown is not None:
        parser.epilog = ("Every option of `registry serve` is accepted too, as a flag, in --config or as its "
                         "REGISTRY_* variable (`registry serve --help` lists them).")
    for spec in options():
        listed = shown is None or any(spec.dotted == s or spec.dotted.startswith(s + ".") for s in shown)
        kwargs: dict[str, Any] = {"dest": spec.dest, "default": None,
                                  "help": f"{spec.help} (default: {spec.default!r}; env: {spec.env})" if listed
                                  else argparse.SUPPRESS}
        if spec.choices:
            kwargs["choices"] = spec.choices
        if spec.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = spec.path[-1].upper()
        parser.add_argument(spec.flag, **kwargs)


# A feature's own section checked by the feature's parser (registry/settings.py lists them): config stays
# below the features it configures. Given the configuration and where each option's value came from.
SectionCheck = Callable[[Config, Mapping[str, str]], None]


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None,
         checks: Sequence[SectionCheck] = ()) -> Config:
    """The configuration from defaults, file, environment and flags, checked; `checks` add the sections'."""
    environ = os.environ if environ is None else environ
    config = Config()
    sources: dict[str, str] = {}  # option -> where its value came from (a file, a variable, a flag)
    config_file = getattr(args, "config", None) or environ.get("REGISTRY_CONFIG")
    if config_file:
        _apply_yaml(config, Path(config_file), sources)
    for spec in options():
        if spec.env in environ:
            _set(config, spec.path, _coerce(spec, environ[spec.env], spec.env))
            sources[spec.dotted] = spec.env
    if args is not None:
        for spec in options():
            value = getattr(args, spec.dest, None)
            if value is not None:
                _set(config, spec.path, _coerce(spec, value, spec.flag))
                sources[spec.dotted] = spec.flag
    _validate(config, sources)
    for check in checks:
        check(config, sources)
    return config


def _apply_yaml(config: Config, path: Path, sources: dict[str, str]) -> None:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    # ValueError: an int of 4,300+ digits; OverflowError: a \U escape past C's int (PyYAML's scanner)
    except (OSError, ValueError, OverflowError, RecursionError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    known = {spec.path: spec for spec in options()}

    def walk(node: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in node.items():
            path_ = prefix + (str(key).replace("-", "_"),)
            if isinstance(value, dict) and path_ not in known:
                walk(value, path_)
            elif path_ in known:
                _set(config, path_, _coerce(known[path_], value, str(path)))
                sources[known[path_].dotted] = str(path)
            else:
                raise ConfigError(f"{path}: unknown option {'.'.join(path_)}")

    walk(document, ())


def _validate(config: Config, sources: dict[str, str]) -> None:
    try:
        listen_port(config.listen.rpartition(":")[2])
    except ValueError:
        raise ConfigError(f"listen: expected host:port, got {config.listen!r}") from None
    if config.workers < 1:
        raise ConfigError("workers: must be at least 1")
    if config.upload_chunk_bytes < 4096:
        raise ConfigError("upload_chunk_bytes: must be at least 4096")
    if config.limits.header_bytes < 1024 or config.limits.header_total_bytes < config.limits.header_bytes:
        raise ConfigError("limits.header_bytes must be at least 1024, and limits.header_total_bytes at least that")
    if config.storage.min_free_bytes < 0:
        raise ConfigError("storage.min_free_bytes: must not be negative (0 turns the check off)")
    if config.gc.batch_size < 1 or config.gc.grace_period < 0 or not 0 <= config.fsck.sample <= 1:
        raise ConfigError("gc.batch_size must be positive, gc.grace_period not negative, fsck.sample in [0, 1]")
    if config.audit.retention_days < 0:
        where = sources.get("audit.retention_days", "")
        raise ConfigError(f"{where + ': ' if where else ''}audit.retention_days: must not be negative (0 keeps "
                          "entries forever)")
    if bool(config.tls.cert_file) != bool(config.tls.key_file):
        raise ConfigError("tls.cert_file and tls.key_file go together")
    if config.storage.backend == "s3":
        if not config.storage.s3.bucket:
            raise ConfigError("storage.s3.bucket: required with storage.backend=s3 (env REGISTRY_STORAGE_S3_BUCKET)")
        if config.storage.s3.part_size < 5 * 1024 * 1024:
            raise ConfigError("storage.s3.part_size: S3 needs parts of at least 5 MiB")
