"""`python -m registry.runtime VERB ...`: the runtime's verbs alone, without loading the registry server's
modules (the full `registry` command imports SQLAlchemy, alembic and bcrypt for its other verbs)."""

from __future__ import annotations

import argparse
import os
import sys

from registry.runtime import cli

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="registry", description="The registry's container runtime.")
    # `registry run ...` builds the parser of `run` alone; a help request or an unknown verb gets them all.
    verb = argv[0] if argv and argv[0] in cli.VERBS else None
    cli.add_commands(parser.add_subparsers(dest="command", required=True), only=verb)
    args = parser.parse_args(argv)
    return args.func(args)


def exit_now(code: int) -> NoReturn:
    """End with `code` once stdout and stderr are flushed, skipping the interpreter's teardown of every module
    (12 ms of each `registry run`, measured). Everything the verbs open is closed by then, and nothing of
    theirs runs at exit."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # `registry ps | head`: what was not read is not an error
        pass
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
