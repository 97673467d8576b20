"""What an import did: per kind (repositories, tags, manifests, blobs) how many were imported, were already
there, or were skipped (each skip with its reason), and the bytes. Text for people, JSON for programs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TextIO

from registry.gc.policy import format_bytes

KINDS = ("repositories", "tags", "manifests", "blobs")
_SINGULAR = {"repositories": "repository", "tags": "tag", "manifests": "manifest", "blobs": "blob"}


@dataclass
class Report:
    source: str
    layout: str
    dry_run: bool = False
    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {kind: {"imported": 0, "present": 0, "skipped": 0} for kind in KINDS})
    bytes: dict[str, int] = field(default_factory=lambda: {"imported": 0, "present": 0})
    skipped: list[dict[str, str]] = field(default_factory=list)

    def count(self, kind: str, outcome: str) -> None:
        self.counts[kind][outcome] += 1

    def skip(self, kind: str, repository: str | None, name: str, reason: str) -> None:
        """`kind`: one of KINDS; `name`: the digest, tag or path skipped."""
        self.counts[kind]["skipped"] += 1
        self.skipped.append({"type": _SINGULAR[kind], "repository": repository or "", "name": name,
                             "reason": reason})

    @property
    def complete(self) -> bool:
        return not self.skipped

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "layout": self.layout, "dry_run": self.dry_run, **self.counts,
                "bytes": self.bytes, "skipped": self.skipped}

    def write(self, out: TextIO, as_json: bool) -> None:
        if as_json:
            json.dump(self.as_json(), out, indent=2)
            out.write("\n")
            return
        imported = "would import" if self.dry_run else "imported"
        out.write(f"import from {self.source} ({self.layout}{', dry run' if self.dry_run else ''}):\n")
        for kind in KINDS:
            count = self.counts[kind]
            out.write(f"  {kind:13} {count['imported']:6} {imported}, {count['present']:6} already present, "
                      f"{count['skipped']:6} skipped\n")
        out.write(f"  {'bytes':13} {format_bytes(self.bytes['imported'])} {imported}, "
                  f"{format_bytes(self.bytes['present'])} already present\n")
        for item in self.skipped:
            where = f"{item['repository']} " if item["repository"] else ""
            out.write(f"  skipped {item['type']:10} {where}{item['name']}: {item['reason']}\n")
        if self.complete:
            out.write("nothing skipped\n")
