"""The seed of bench/scale.py: SQL that fills a migrated, empty database, on PostgreSQL or SQLite, and the
blob files that go with its rows.

Blob number `k` has the 8 bytes of `k` (big-endian, signed) as its content, so its digest is computed by the
database itself (sha256 of int8send(k)) and its file can be written from the number alone: fsck finds every
row's bytes, of the right size and hash. Numbers, in order:
- [0, blobs): the registry's blobs, each linked into at least one repository;
- [garbage_base, +3 * garbage): what gc collects (two per garbage manifest, and as many linked nowhere);
  garbage_base lies past every number a manifest names, so no kept manifest references them;
- [mirror_base, +mirror_links): the mirror cache's blobs, one per cached link.

Repository 1 is `big/repo`; repositories 2..R are `ns<i % 1000>/repo<i>`; after them come the mirror's
`hub/lib<j>`. Times are the epoch seconds given (`now`), or 30 days before it (`old`).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

OLD_DAYS = 30  # garbage is this old; gc runs with untagged_days below it
MIRROR_ALIAS = "hub"


def blob_bytes(number: int) -> bytes:
    return number.to_bytes(8, "big", signed=True)


def blob_digest(number: int) -> str:
    return "sha256:" + hashlib.sha256(blob_bytes(number)).hexdigest()


@dataclass(frozen=True)
class Dialect:
    """The few spellings that differ between PostgreSQL and SQLite (SQLite gets sha256 and int8send as
    functions of the seeding connection, and a recursive CTE for generate_series)."""

    sqlite: bool

    def series(self, low: int | str, high: int | str, name: str) -> str:
        """A FROM item with one integer column `name`, from `low` to `high` inclusive."""
        if self.sqlite:
            return (f"(WITH RECURSIVE s(x) AS (SELECT {low} UNION ALL SELECT x + 1 FROM s WHERE x < {high}) "
                    f"SELECT x AS {name} FROM s) {name}_series")
        return f"generate_series({low}, {high}) {name}"

    def sha256_hex(self, data: str) -> str:
        return f"sha256hex({data})" if self.sqlite else f"encode(sha256({data}), 'hex')"

    def blob(self, number: str) -> str:
        """The digest of blob number `number` (an SQL expression)."""
        return f"'sha256:' || {self.sha256_hex(f'int8send({number})')}"

    def json_bytes(self, text: str) -> str:
        return f"CAST({text} AS BLOB)" if self.sqlite else f"convert_to(({text})::text, 'UTF8')"

    def manifest(self, config: str, layer: str) -> str:
        """An image manifest's bytes, naming blob numbers `config` and `layer` (SQL expressions)."""
        obj, arr = ("json_object", "json_array") if self.sqlite else ("json_build_object", "json_build_array")
        return self.json_bytes(
            f"{obj}('schemaVersion', 2, 'mediaType', 'application/vnd.oci.image.manifest.v1+json', "
            f"'config', {obj}('mediaType', 'application/vnd.oci.image.config.v1+json', 'size', 1000, "
            f"'digest', {self.blob(config)}), 'layers', {arr}({obj}('mediaType', "
            f"'application/vnd.oci.image.layer.v1.tar+gzip', 'size', 4096, 'digest', {self.blob(layer)})))")

    def setval(self, sequence: str, value: int) -> list[str]:
        """SQLite takes max(id) + 1 for the next row by itself."""
        return [] if self.sqlite else [f"SELECT setval('{sequence}', {value})"]


@dataclass(frozen=True)
class Layout:
    """Where each kind of row starts, from the size's counts."""

    n: dict[str, int]

    @property
    def garbage_base(self) -> int:
        return max(self.n["blobs"], 2 * self.n["manifests"])

    @property
    def mirror_base(self) -> int:
        return self.garbage_base + 3 * self.n["garbage"]

    @property
    def garbage_manifest_base(self) -> int:
        """Ids after the manifests (1..manifests) and the referrers, which follow them."""
        return self.n["manifests"] + self.n["referrers"]

    def blob_numbers(self) -> list[range]:
        return [range(self.n["blobs"]), range(self.garbage_base, self.mirror_base),
                range(self.mirror_base, self.mirror_base + self.n["mirror_links"])]


def seed_sql(n: dict[str, int], d: Dialect, now: float) -> list[str]:
    """Statements that fill a migrated, empty database: the registry, gc's garbage, the mirror cache."""
    return [*registry_sql(n, d, now), *garbage_sql(n, d, now), *mirror_sql(n, d, now), "ANALYZE"]


def registry_sql(n: dict[str, int], d: Dialect, now: float) -> list[str]:
    repos, per_repo = n["repositories"], max(1, n["manifests"] // n["repositories"])
    # Link i puts repository r = i % repos and blob (r * per + i / repos) % blobs: the blobs of one repository
    # are distinct (no link is lost to the primary key), and all blobs are linked once links >= blobs.
    per, blobs = -(-n["links"] // repos), n["blobs"]
    return [
        f"INSERT INTO repositories (id, name, created_at) SELECT i, CASE WHEN i = 1 THEN 'big/repo' ELSE "
        f"'ns' || (i % 1000) || '/repo' || i END, {now} FROM {d.series(1, repos, 'i')}",
        f"INSERT INTO blobs (digest, size, created_at) SELECT {d.blob('i')}, 8, {now} "
        f"FROM {d.series(0, n['blobs'] - 1, 'i')}",
        # Manifest i + 1 lives in repository 1 + i / per_repo; its payload names blobs 2i and 2i + 1.
        f"INSERT INTO manifests (id, repository_id, digest, media_type, payload, size, created_at) "
        f"SELECT i + 1, 1 + (i / {per_repo}) % {repos}, 'sha256:' || {d.sha256_hex('p')}, "
        f"'application/vnd.oci.image.manifest.v1+json', p, length(p), {now} "
        f"FROM (SELECT i, {d.manifest('2 * i', '2 * i + 1')} AS p FROM {d.series(0, n['manifests'] - 1, 'i')}) m",
        f"INSERT INTO manifest_references (manifest_id, digest, kind) SELECT i + 1, {d.blob('2 * i + k')}, "
        f"'blob' FROM {d.series(0, n['manifests'] - 1, 'i')}, {d.series(0, 1, 'k')} "
        f"WHERE 2 * i + k < {blobs}",
        f"INSERT INTO repository_blobs (repository_id, digest, created_at) SELECT 1 + i % {repos}, "
        f"{d.blob(f'((i % {repos}) * {per} + i / {repos}) % {blobs}')}, {now} "
        # (WHERE true: SQLite's parser needs a WHERE before an upsert's ON CONFLICT after a SELECT.)
        f"FROM {d.series(0, n['links'] - 1, 'i')} WHERE true ON CONFLICT DO NOTHING",
        # Tags: the big repository's first, then one per manifest elsewhere until the total is reached.
        f"INSERT INTO tags (repository_id, name, manifest_id, updated_at) SELECT 1, 'v' || i, 1 + i % "
        f"{per_repo}, {now} FROM {d.series(0, n['big_tags'] - 1, 'i')}",
        f"INSERT INTO tags (repository_id, name, manifest_id, updated_at) SELECT m.repository_id, 't' || m.id, "
        f"m.id, {now} FROM manifests m WHERE m.repository_id <> 1 ORDER BY m.id "
        f"LIMIT {n['tags'] - n['big_tags']}",
        # Referrers of manifest 1 (in big/repo): artifacts whose subject it is; ids manifests + 1, ...
        f"INSERT INTO manifests (id, repository_id, digest, media_type, artifact_type, subject_digest, payload, "
        f"size, created_at) SELECT {n['manifests']} + 1 + i, 1, {d.blob('-i - 1')}, "
        f"'application/vnd.oci.image.manifest.v1+json', 'application/vnd.example.sig', "
        f"(SELECT digest FROM manifests WHERE id = 1), {d.json_bytes(repr('{}'))}, 2, {now} "
        f"FROM {d.series(0, n['referrers'] - 1, 'i')}",
    ]


def garbage_sql(n: dict[str, int], d: Dialect, now: float) -> list[str]:
    """What a full gc collects: `garbage` untagged manifests a month old in repositories 2.., each with two
    blobs linked a month ago (past the grace period), and as many blobs linked nowhere."""
    layout, old, count = Layout(n), now - OLD_DAYS * 86400, n["garbage"]
    base, first_id = layout.garbage_base, layout.garbage_manifest_base + 1
    repository = f"2 + i % {max(1, n['repositories'] - 1)}"
    return [
        f"INSERT INTO blobs (digest, size, created_at) SELECT {d.blob(f'{base} + i')}, 8, {old} "
        f"FROM {d.series(0, 3 * count - 1, 'i')}",
        f"INSERT INTO manifests (id, repository_id, digest, media_type, payload, size, created_at) "
        f"SELECT {first_id} + i, {repository}, 'sha256:' || {d.sha256_hex('p')}, "
        f"'application/vnd.oci.image.manifest.v1+json', p, length(p), {old} FROM (SELECT i, "
        f"{d.manifest(f'{base} + 2 * i', f'{base} + 2 * i + 1')} AS p FROM {d.series(0, count - 1, 'i')}) m",
        *d.setval("manifests_id_seq", first_id + count - 1),
        f"INSERT INTO manifest_references (manifest_id, digest, kind) SELECT {first_id} + i, "
        f"{d.blob(f'{base} + 2 * i + k')}, 'blob' FROM {d.series(0, count - 1, 'i')}, {d.series(0, 1, 'k')}",
        f"INSERT INTO repository_blobs (repository_id, digest, created_at) SELECT {repository}, "
        f"{d.blob(f'{base} + 2 * i + k')}, {old} FROM {d.series(0, count - 1, 'i')}, {d.series(0, 1, 'k')}",
    ]


def mirror_sql(n: dict[str, int], d: Dialect, now: float) -> list[str]:
    """The mirror cache: `mirror_links` links, each to a blob of its own, in `mirror_repos` repositories
    `hub/lib<j>`; linked now (gc's grace period keeps them), last pulled in link order long ago (the
    eviction pass takes the first ones)."""
    layout, repos, first = Layout(n), n["mirror_repos"], n["repositories"] + 1
    old = now - OLD_DAYS * 86400
    return [
        f"INSERT INTO repositories (id, name, created_at) SELECT {first} + j, '{MIRROR_ALIAS}/lib' || j, {now} "
        f"FROM {d.series(0, repos - 1, 'j')}",
        *d.setval("repositories_id_seq", first + repos - 1),
        f"INSERT INTO blobs (digest, size, created_at) SELECT {d.blob(f'{layout.mirror_base} + i')}, 8, {now} "
        f"FROM {d.series(0, n['mirror_links'] - 1, 'i')}",
        f"INSERT INTO repository_blobs (repository_id, digest, created_at, last_pulled_at) SELECT "
        f"{first} + i % {repos}, {d.blob(f'{layout.mirror_base} + i')}, {now}, {old} + i "
        f"FROM {d.series(0, n['mirror_links'] - 1, 'i')}",
    ]


def open_sqlite(path: Path) -> sqlite3.Connection:
    """A connection for the seed, with the two functions PostgreSQL has built in."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.create_function("int8send", 1, blob_bytes, deterministic=True)
    conn.create_function("sha256hex", 1, lambda data: hashlib.sha256(data).hexdigest(), deterministic=True)
    conn.execute("PRAGMA synchronous = OFF")  # a seed lost to a crash is seeded again
    return conn


def write_blob_files(store_root: Path, n: dict[str, int]) -> int:
    """The bytes of every seeded blob, where the filesystem store keeps them; returns how many."""
    written = 0
    made: set[Path] = set()
    for numbers in Layout(n).blob_numbers():
        for number in numbers:
            content = blob_bytes(number)
            hexdigest = hashlib.sha256(content).hexdigest()
            directory = store_root / "blobs" / "sha256" / hexdigest[:2]
            if directory not in made:
                directory.mkdir(parents=True, exist_ok=True)
                made.add(directory)
            with open(directory / hexdigest, "wb") as handle:
                handle.write(content)
            written += 1
    os.sync()  # the timed part should not pay for the seed's writeback
    return written
