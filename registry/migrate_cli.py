"""`registry import` and `registry export`: moving repositories in from a registry:2 storage root or an OCI
image layout, and out to an OCI image layout (registry/migrate/, docs/migrating.md).

Safe while the server runs on the same configuration: every write goes through the content layer, in the
same transactions and under the same locks as a push.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from registry.config import WHERE_THE_DATA_IS, Config, add_arguments
from registry.gc.policy import format_bytes
from registry.settings import load

IMPORT_DESCRIPTION = """\
Import repositories from PATH: a CNCF Distribution (registry:2, Debian's docker-registry) filesystem storage
root (the directory holding docker/registry/v2/, or v2 itself), or an OCI image layout (oci-layout and
index.json; give --repository). Every blob and manifest is checked against its digest; what is corrupt,
missing or refused is skipped with its reason, with all that needs it. Running it again changes nothing
that is there already, and finishes an interrupted import. Exit status: 0 when nothing was skipped, 1 when
something was skipped (the report lists each with its reason), 2 on a usage error (a bad PATH)."""

EXPORT_DESCRIPTION = """\
Write REPOSITORY's tags (all of them, or those listed) as an OCI image layout at DEST, with every manifest,
index child, config, layer and referrer, byte for byte. DEST is created; an existing OCI layout is added to;
any other non-empty directory is refused. Exit status: 0 when all was written, 1 when a blob was missing or
corrupt in the storage, 2 on a usage error."""


async def _storage(config: Config) -> tuple[Any, Any]:
    from registry.metadata.db import Database, migrate
    from registry.storage import create_store

    if config.database.migrate_on_start:
        await asyncio.to_thread(migrate, config.database_url)
    return Database(config.database_url), create_store(config)


async def _run_import(args: argparse.Namespace, source: Any) -> Any:
    from registry.command_content import local_content
    from registry.migrate.importer import Importer

    config = load(args)
    async with local_content(config, "import") as content:
        importer = Importer(content, source, prefix=args.repository_prefix, dry_run=args.dry_run,
                            manifest_limit=config.limits.manifest_bytes, blob_limit=config.limits.blob_bytes)
        return await importer.run()


def _import(args: argparse.Namespace) -> int:
    from registry.metadata.db import DatabaseUnavailable
    from registry.migrate.layouts import open_source
    from registry.migrate.source import LayoutError
    from registry.storage import StorageFull, StorageUnavailable

    try:
        source = open_source(Path(args.path), args.repository)
    except LayoutError as exc:
        print(f"registry import: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_run_import(args, source))
    except (StorageFull, StorageUnavailable, DatabaseUnavailable) as exc:
        print(f"registry import: stopped ({type(exc).__name__}: {exc}); what was imported stays, and running "
              "the same command again finishes the job", file=sys.stderr)
        return 1
    report.write(sys.stdout, args.json)
    return 0 if report.complete else 1


async def _run_export(args: argparse.Namespace, repository: str, tags: list[str] | None) -> Any:
    from registry.migrate.exporter import Exporter

    config = load(args)
    db, store = await _storage(config)
    try:
        return await Exporter(db, store, repository, tags, Path(args.dest)).run()
    finally:
        await store.close()
        await db.close()


def _export(args: argparse.Namespace) -> int:
    from registry.errors import RegistryError
    from registry.migrate.exporter import ExportError, parse_target
    from registry.reference import validate_name, validate_tag

    try:
        repository, tags = parse_target(args.target)
        validate_name(repository)
        for tag in tags or []:
            validate_tag(tag)
        report = asyncio.run(_run_export(args, repository, tags))
    except RegistryError as exc:
        print(f"registry export: {args.target[:300]!r}: {exc.message}", file=sys.stderr)
        return 2
    except ExportError as exc:
        print(f"registry export: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(report.as_json(), sys.stdout, indent=2)
        print()
    else:
        print(f"export of {repository} to {report.destination}: tags {', '.join(report.tags)}; "
              f"{report.manifests} manifests ({report.referrers} referrers), {report.blobs_written} blobs written "
              f"({format_bytes(report.bytes_written)}), {report.blobs_present} already there")
        for problem in report.problems:
            print(f"  problem: {problem}")
    return 1 if report.problems else 0


def add_commands(commands: Any) -> None:
    shown = (*WHERE_THE_DATA_IS, "limits.manifest_bytes", "limits.blob_bytes", "quota")
    imports = commands.add_parser("import", help="import repositories from a registry:2 storage root or an OCI "
                                                 "image layout", description=IMPORT_DESCRIPTION)
    add_arguments(imports, shown)
    imports.add_argument("path", metavar="PATH", help="a registry:2 storage root, or an OCI image layout")
    imports.add_argument("--repository-prefix", metavar="P", default=None,
                         help="import each repository NAME as P/NAME")
    imports.add_argument("--repository", metavar="NAME", default=None,
                         help="the repository an OCI image layout is imported into (required for one)")
    imports.add_argument("--dry-run", action="store_true", help="check and report without writing anything")
    imports.add_argument("--json", action="store_true", help="print the report as JSON")
    imports.set_defaults(func=_import)

    exports = commands.add_parser("export", help="write a repository's tags as an OCI image layout",
                                  description=EXPORT_DESCRIPTION)
    add_arguments(exports, WHERE_THE_DATA_IS)
    exports.add_argument("target", metavar="REPOSITORY[:TAG[,TAG...]]", help="the repository, and the tags to "
                                                                            "export (default: all)")
    exports.add_argument("dest", metavar="DEST", help="the OCI image layout directory to write")
    exports.add_argument("--json", action="store_true", help="print the report as JSON")
    exports.set_defaults(func=_export)
