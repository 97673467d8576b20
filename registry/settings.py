"""The configuration as `registry serve` and its commands load it: registry/config.py's options and checks,
then each feature's own section checked by that feature's parser, so that a mistake anywhere stops the
start-up with one line naming the file or variable and the entry. config.py stays below the features it
configures (tests/test_layers.py); this module, above them, puts the two together."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from registry.auth.directory import DirectoryConfigError, check_directory
from registry.auth.files import check_files
from registry.config import Config, ConfigError
from registry.config import load as load_options
from registry.events.endpoints import NotificationsConfigError, parse_endpoints
from registry.gc.immutable import parse_immutable_tags
from registry.gc.policy import PolicyError, parse_quotas, parse_retention
from registry.replication.rules import ReplicationConfigError, parse_rules
from registry.mirror.upstreams import MirrorConfigError, parse_local_namespaces, parse_upstreams
from registry.startup import require_extra


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Config:
    # The extras first: the directory's check parses its filters with the ldap extra's own parser.
    return load_options(args, environ, checks=(_extras, _mirror, _policies, _auth_files, _directory, _notifications,
                                                  _replication))


def require_extras(config: Config) -> None:
    """S3, PostgreSQL and LDAP are extras (pyproject.toml): configured without them installed, the start-up ends
    in one line naming the extra, before any worker is forked or the database touched."""
    if config.storage.backend == "s3":
        require_extra("boto3", "storage.backend: s3", "s3")
    scheme = config.database_url.partition("://")[0]
    if scheme.partition("+")[2] == "asyncpg":
        require_extra("asyncpg", f"database.url: {scheme}", "postgres")
    if config.auth.ldap.url.strip():
        require_extra("ldap3", "auth.ldap.url", "ldap")


def _extras(config: Config, sources: Mapping[str, str]) -> None:
    require_extras(config)


def _mirror(config: Config, sources: Mapping[str, str]) -> None:
    if not config.mirror.upstreams:
        return
    try:
        upstreams = parse_upstreams(config.mirror.upstreams)
    except MirrorConfigError as exc:
        raise ConfigError(f"{sources.get('mirror.upstreams', 'mirror.upstreams')}: {exc}") from None
    try:
        parse_local_namespaces(config.mirror.local_namespaces, upstreams)
    except MirrorConfigError as exc:
        raise ConfigError(f"{sources.get('mirror.local_namespaces', 'mirror.local_namespaces')}: {exc}") from None


def _policies(config: Config, sources: Mapping[str, str]) -> None:
    for option, parse, value in (("retention.policies", parse_retention, config.retention.policies),
                                 ("quota.namespaces", parse_quotas, config.quota.namespaces),
                                 ("immutable_tags", parse_immutable_tags, config.immutable_tags)):
        try:
            parse(value)
        except PolicyError as exc:
            raise ConfigError(f"{sources.get(option, option)}: {exc}") from None


def _auth_files(config: Config, sources: Mapping[str, str]) -> None:
    check_files(config)  # policy, htpasswd and key files: an AuthFileError (a ConfigError) names file and entry


def _directory(config: Config, sources: Mapping[str, str]) -> None:
    try:
        check_directory(config)
    except DirectoryConfigError as exc:
        where = sources.get(exc.option)
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None


def _notifications(config: Config, sources: Mapping[str, str]) -> None:
    try:
        parse_endpoints(config.notifications.endpoints)
    except NotificationsConfigError as exc:
        raise ConfigError(f"{sources.get('notifications.endpoints', 'notifications.endpoints')}: {exc}") from None


def _replication(config: Config, sources: Mapping[str, str]) -> None:
    try:
        parse_rules(config.replication.rules)
    except ReplicationConfigError as exc:
        raise ConfigError(f"{sources.get('replication.rules', 'replication.rules')}: {exc}") from None
