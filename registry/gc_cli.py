"""`registry gc`, `registry retention` and `registry fsck`: maintenance from the command line.

Safe while the server runs: the same leases and locked re-checks as scheduled runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from registry.config import WHERE_THE_DATA_IS, add_arguments
from registry.settings import load
from registry.gc.policy import format_bytes


async def _with_maintenance(args: argparse.Namespace, job: str) -> dict[str, Any]:
    from registry.gc.jobs import Maintenance, Settings
    from registry.metadata.db import Database, migrate
    from registry.storage import create_store

    config = load(args)
    if config.database.migrate_on_start:
        await asyncio.to_thread(migrate, config.database_url)
    db = Database(config.database_url)
    store = create_store(config)
    try:
        maintenance = Maintenance(db, store, Settings.from_config(config))
        if job == "fsck":
            return await maintenance.fsck(args.sample, repair=args.repair)
        return await getattr(maintenance, job)(dry_run=args.dry_run)
    finally:
        await store.close()
        await db.close()


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return
    seconds = report["finished_at"] - report["started_at"]
    verb = "would delete" if report["dry_run"] else "deleted"
    if report["kind"] == "fsck":
        print(f"fsck: {report['checked']} blobs checked, {report['hashed']} re-hashed "
              f"({format_bytes(report['hashed_bytes'])}) in {seconds:.1f}s; {len(report['problems'])} problems")
        for problem in report["problems"]:
            what = problem.get("digest") or problem.get("name")
            fix = problem.get("quarantined") or problem.get("repaired") or problem.get("repair_failed") or ""
            print(f"  {problem['problem']:8} {what} {problem.get('reason', '')} {fix}".rstrip())
        return
    counts = ", ".join(f"{n} {k}" for k, n in report["deleted"].items())
    print(f"{report['kind']}: {verb} {counts}; frees {format_bytes(report['freed_bytes'])} in {seconds:.1f}s")
    for item in report["items"]:
        name = item.get("tag") or item.get("digest") or item.get("id")
        where = f"{item['repository']} " if item.get("repository") else ""
        print(f"  {item['type']:8} {where}{name}")
    if report.get("items_truncated"):
        print("  ... (more; --json for the report, which lists the first 10,000)")


def _collect_command(job: str):
    def command(args: argparse.Namespace) -> int:
        from registry.gc.jobs import MaintenanceBusy

        try:
            report = asyncio.run(_with_maintenance(args, job))
        except MaintenanceBusy as exc:
            print(f"registry {job}: {exc}", file=sys.stderr)
            return 3
        _print(report, args.json)
        return 0
    return command


def _fsck(args: argparse.Namespace) -> int:
    report = asyncio.run(_with_maintenance(args, "fsck"))
    _print(report, args.json)
    unrepaired = [p for p in report["problems"] if not (args.repair and ("quarantined" in p or "repaired" in p))]
    return 1 if unrepaired else 0


def add_commands(commands: Any) -> None:
    gc = commands.add_parser("gc", help="collect garbage: retention policies, unreferenced manifests, blobs and "
                                        "stale uploads", description="Online garbage collection (safe while the "
                                        "registry serves). See gc.* and retention.* options.")
    retention = commands.add_parser("retention", help="apply retention policies only (tags and the manifests "
                                                      "they kept); gc frees the bytes")
    for parser, job in ((gc, "gc"), (retention, "retention")):
        add_arguments(parser, (*WHERE_THE_DATA_IS, "gc", "retention"))
        parser.add_argument("--dry-run", action="store_true", help="list what would go and what it frees")
        parser.add_argument("--json", action="store_true", help="print the full JSON report")
        parser.set_defaults(func=_collect_command(job))
    fsck = commands.add_parser("fsck", help="check that stored blobs match their digests and the database",
                               description="Exit status 1 when problems remain (unrepaired).")
    add_arguments(fsck, (*WHERE_THE_DATA_IS, "fsck"))
    fsck.add_argument("--sample", type=float, default=None, metavar="FRACTION",
                      help="re-hash only this random fraction of blobs (all are checked for presence and size)")
    fsck.add_argument("--repair", action="store_true", help="quarantine bad bytes and forget rows without "
                                                            "good bytes (a re-push restores them)")
    fsck.add_argument("--json", action="store_true", help="print the full JSON report")
    fsck.set_defaults(func=_fsck)
