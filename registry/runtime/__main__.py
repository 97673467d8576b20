"""`python -m registry.runtime VERB ...`: the runtime's verbs alone, without loading the registry server's
modules (the full `registry` command imports SQLAlchemy, alembic and bcrypt for its other verbs)."""

from __future__ import annotations

import argparse
import sys

from registry.runtime import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="registry", description="The registry's container runtime.")
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
