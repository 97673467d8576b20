"""The files auth reads (policy, htpasswd, token keys), checked once before the server starts.

Every problem is one `AuthFileError` naming the file, where in it (line, entry) and why: a
`ConfigError`, so `registry serve` prints that one line and exits 2, before any worker forks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from registry.config import ConfigError

if TYPE_CHECKING:
    from registry.config import Config


class AuthFileError(ConfigError):
    """A policy, htpasswd or key file that cannot be used as it is."""


def check_files(config: Config) -> None:
    """Load every auth file the configuration names, as the server will; raise AuthFileError."""
    from registry.auth.credentials import read_htpasswd
    from registry.auth.policy import Policy, parse_networks
    from registry.auth.tokens import check_signing_key, external_keys

    auth = config.auth
    if auth.policy_file:
        Policy.load(Path(auth.policy_file))
    elif auth.mode == "none":
        parse_networks(auth.anonymous_push_networks, "auth.anonymous_push_networks")
    if auth.htpasswd:
        read_htpasswd(Path(auth.htpasswd))
    if auth.mode == "token":
        token = auth.token
        if token.external_public_key or token.external_jwks:
            external_keys(token.external_public_key, token.external_jwks)
        elif token.key_file and Path(token.key_file).exists():  # a missing one is generated at start
            check_signing_key(Path(token.key_file), token.algorithm)
