"""`registry replicate RULE`: run a replication rule now, in this process, and print what it did.

Safe while the server runs: the rule's lease keeps one run at a time across processes (exit 3 when
another process runs it now). Exit 0 when the run succeeded, 1 when something failed to copy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import uuid
from typing import Any

from registry.config import WHERE_THE_DATA_IS, add_arguments
from registry.settings import load


async def _replicate(args: argparse.Namespace) -> dict[str, Any]:
    from registry.command_content import local_content
    from registry.replication.rules import parse_rules
    from registry.replication.service import run_rule, sync_config_rules

    config = load(args)
    async with local_content(config, "replicate") as content:
        await sync_config_rules(content.db, parse_rules(config.replication.rules), drop_others=False)
        owner = f"{socket.gethostname()}:cli/{uuid.uuid4().hex[:12]}"
        result = await run_rule(content.db, content, args.rule, "manual", owner)
    return {"run": result.run_id, "rule": args.rule, "status": result.status, **result.tally.counts(),
            "skipped": result.tally.skipped, "errors_seen": result.tally.error_lines,
            "skipped_seen": result.tally.skip_lines, "copied": result.tally.copied}


def _command(args: argparse.Namespace) -> int:
    from registry.replication.service import RuleBusy

    try:
        report = asyncio.run(_replicate(args))
    except RuleBusy as exc:
        print(f"registry replicate: rule {args.rule} is running in {exc} now; try again when it ends",
              file=sys.stderr)
        return 3
    except KeyError:
        print(f"registry replicate: no replication rule named {args.rule!r} (replication.rules, or the admin API)",
              file=sys.stderr)
        return 2
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(f"replicate {report['rule']}: run {report['run']} {report['status']}: {report['manifests']} manifests, "
              f"{report['blobs']} blobs ({report['bytes']} bytes) sent, {report['mounted']} mounted, "
              f"{report['present']} already there, {report['deleted']} deleted, {report['skipped']} skipped, "
              f"{report['errors']} errors")
        for line in report["errors_seen"]:
            print(f"  error: {line}")
        for line in report["skipped_seen"]:
            print(f"  skipped: {line}")
    return 0 if report["status"] == "succeeded" else 1


def add_commands(commands: Any) -> None:
    parser = commands.add_parser("replicate", help="run a replication rule now",
                                 description="Run one replication rule (replication.rules, or one made through "
                                             "the admin API) now and print what it copied. Safe while the "
                                             "server runs. Exit status: 0 succeeded, 1 something failed to "
                                             "copy, 2 no such rule, 3 another process runs it now.")
    add_arguments(parser, (*WHERE_THE_DATA_IS, "quota", "gc", "replication"))
    parser.add_argument("rule", help="the rule's name")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=_command)
