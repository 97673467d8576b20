"""The `registry` command."""

from __future__ import annotations

import argparse
import sys

from registry import __version__


def _serve(args: argparse.Namespace) -> int:
    from registry.admin.logs import configure_logging
    from registry.settings import load
    from registry.metadata.db import migrate
    from registry.server import serve

    config = load(args)
    configure_logging(config.log_level, config.log_format)
    if config.database.migrate_on_start:
        migrate(config.database_url)
    return serve(config)


def _db_upgrade(args: argparse.Namespace) -> int:
    from registry.settings import load
    from registry.metadata.db import migrate

    config = load(args)
    migrate(config.database_url, args.revision)
    print(f"database at revision {args.revision}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from registry.config import add_arguments

    parser = argparse.ArgumentParser(prog="registry", description="A self-hosted OCI / Docker image registry.")
    parser.add_argument("--version", action="version", version=f"registry {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the registry server",
                                description="Run the registry. Options: defaults < --config YAML < REGISTRY_* "
                                            "environment < flags.")
    add_arguments(serve)
    serve.set_defaults(func=_serve)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply schema migrations")
    add_arguments(upgrade, ("data_dir", "database.url"))
    upgrade.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    upgrade.set_defaults(func=_db_upgrade)
    from registry import accounts_cli, gc_cli, migrate_cli, replication_cli
    from registry.runtime import cli as runtime_cli

    accounts_cli.add_commands(commands)
    gc_cli.add_commands(commands)
    migrate_cli.add_commands(commands)
    replication_cli.add_commands(commands)
    runtime_cli.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The exit code; a runtime verb (`run`, `ps`, ...) ends the process itself (see runtime's exit_now)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    from registry.runtime.cli import VERBS as RUNTIME_VERBS  # a table: no parser, no runtime modules
    if argv and argv[0] in RUNTIME_VERBS:
        # Starting a container should not pay for the server's imports (SQLAlchemy, alembic, bcrypt).
        from registry.runtime.__main__ import exit_now, main as runtime_main

        exit_now(runtime_main(argv))
    from registry.config import ConfigError  # not before: the runtime's verbs do without it
    from registry.startup import StartupError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"registry: configuration error: {exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"registry: cannot start: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
