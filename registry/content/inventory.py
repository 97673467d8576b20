"""The registry's contents as operators see them: the model behind the admin API.

Reads go through registry/metadata/inventory.py and, for image configs, the blob store;
deletes of tags and manifests reuse LocalContent so they behave exactly like the v2 DELETEs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from typing import Any

from registry import json_strict
from registry import manifest as mf
from registry.content.local import LocalContent
from registry.digest import parse_digest
from registry.errors import RegistryError
from registry.events.journal import Change
from registry.gc.immutable import ImmutableRule, held_repository_error
from registry.metadata import immutable_rules as rule_rows
from registry.metadata import inventory as rows
from registry.metadata import manifests as manifest_rows
from registry.metadata import repositories as repo_rows
from registry.metadata import tags as tag_rows
from registry.metadata import uploads as upload_rows
from registry.metadata.db import Connection
from registry.numbers import ascii_decimal

CONFIG_READ_LIMIT = 1024 * 1024  # image configs are a few KiB; never pull a huge blob into memory
LISTED_REFERRERS = 10  # per untagged manifest on a page; the count says how many there are in all
MAX_DELETED_REFERRERS = 1000  # with one manifest, in one transaction
MAX_IMMUTABLE_RULES = 1000  # in the database; each move or delete of a tag reads them all


class Inventory:
    def __init__(self, local: LocalContent) -> None:
        self.local = local
        self.db = local.db
        self.store = local.store

    # -- repositories -------------------------------------------------------------------
    async def repositories(self, search: str | None, limit: int, last: str | None) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return [asdict(r) for r in await rows.repository_page(conn, search, limit, last)]

    async def repository(self, name: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            found = await rows.repository_stats(conn, name)
        if found is None:
            raise RegistryError("NAME_UNKNOWN", detail={"name": name})
        return asdict(found)

    async def delete_repository(self, name: str) -> dict[str, Any]:
        async with self.db.write() as conn:
            repo_id = await self._repository_id(conn, name)
            held = await self.local.immutable.holding(conn, name, await tag_rows.tag_names(conn, repo_id))
            if held is not None:
                raise held_repository_error(name, *held)
            summary = (await rows.repository_stats(conn, name))
            pending = await rows.upload_ids(conn, repo_id)
            await rows.delete_repository(conn, repo_id)
            await self.local.record(conn, Change("delete", "repository", name))
        for upload_id in pending:  # staged bytes of unfinished uploads; committed blobs wait for GC
            await self.store.abort_upload(upload_id)
        assert summary is not None
        return {"deleted": name, "tags": summary.tag_count, "manifests": summary.manifest_count,
                "uploads": len(pending)}

    # -- tags and manifests -------------------------------------------------------------
    async def tags(self, name: str, limit: int, last: str | None) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            repo_id = await self._repository_id(conn, name)
            tagged = await rows.tag_page(conn, repo_id, limit, last)
            children, sizes = await _children_and_sizes(conn, repo_id, [(t.payload, t.media_type) for t in tagged])
            rules = await self.local.immutable.rules(conn)
        configs = await asyncio.gather(*[self._config(t.payload, t.media_type) for t in tagged])
        result = []
        for t, config in zip(tagged, configs):
            summary = _summary(t.payload, t.media_type, children, sizes)
            if config is not None and not summary["platforms"]:
                summary["platforms"] = [_platform_name(config)]
            holding = self.local.immutable.rule_holding(rules, name, t.tag)
            result.append({"tag": t.tag, "digest": t.digest, "media_type": t.media_type, "updated_at": t.updated_at,
                           "pushed_by": t.pushed_by, "created_at": t.created_at, "last_pulled_at": t.last_pulled_at,
                           "created": (config or {}).get("created"),
                           "immutable": str(holding) if holding is not None else None, **summary})
        return result

    async def manifest(self, name: str, digest: str) -> dict[str, Any]:
        parse_digest(digest)  # DIGEST_INVALID for anything else
        async with self.db.read() as conn:
            repo_id = await self._repository_id(conn, name)
            found = (await rows.manifests_by_digest(conn, repo_id, [digest])).get(digest)
            if found is None:
                raise RegistryError("MANIFEST_UNKNOWN", detail={"digest": digest})
            children, sizes = await _children_and_sizes(conn, repo_id, [(found.payload, found.media_type)])
            tag_names = await rows.tags_of(conn, repo_id, digest)
            parents = await rows.parents_of(conn, repo_id, digest)
            referrers = await manifest_rows.referrers(conn, name, digest, None)
        document = _document(found.payload)
        detail: dict[str, Any] = {
            "repository": name, "digest": digest, "media_type": found.media_type,
            "artifact_type": found.artifact_type, "subject": found.subject, "manifest_size": len(found.payload),
            "created_at": found.created_at, "last_pulled_at": found.last_pulled_at, "tags": tag_names,
            "parents": parents, "annotations": document.get("annotations") or {},
            "referrers": [{"digest": r.digest, "media_type": r.media_type, "size": r.size,
                           "artifact_type": r.artifact_type, "annotations": r.annotations or {}} for r in referrers],
            **_summary(found.payload, found.media_type, children, sizes),
        }
        if found.media_type in mf.IMAGE_MANIFESTS:
            detail["config"] = await self._config(found.payload, found.media_type)
            detail["layers"] = [{"digest": d["digest"], "media_type": d.get("mediaType"), "size": d.get("size"),
                                 "stored": d["digest"] in sizes} for d in document.get("layers") or []
                                if isinstance(d, dict) and isinstance(d.get("digest"), str)]
        return detail

    async def untagged(self, name: str, limit: int, last: str | None) -> list[dict[str, Any]]:
        """The repository's manifests that no tag, index or subject names (rows.untagged_page), newest
        first, each with its size, platforms and first referrers; `cursor` is the next page's `last`."""
        before = None
        if last is not None:
            before = ascii_decimal(last, 19)
            if before is None:
                raise RegistryError("PAGINATION_NUMBER_INVALID", "last must be the `next` of the previous page",
                                    detail={"last": last[:100]})
        async with self.db.read() as conn:
            repo_id = await self._repository_id(conn, name)
            found = await rows.untagged_page(conn, repo_id, limit, before)
            children, sizes = await _children_and_sizes(conn, repo_id, [(m.payload, m.media_type) for m in found])
            referrers = await rows.referrers_of_each(conn, repo_id, [m.digest for m in found], LISTED_REFERRERS)
        by_subject: dict[str, list[rows.ReferrerRow]] = {}
        for r in referrers:
            by_subject.setdefault(r.subject, []).append(r)
        result = []
        for m in found:
            listed = by_subject.get(m.digest, [])
            result.append({
                "digest": m.digest, "media_type": m.media_type, "artifact_type": m.artifact_type,
                "missing_subject": m.subject, "manifest_size": len(m.payload), "created_at": m.created_at,
                "last_pulled_at": m.last_pulled_at, "cursor": str(m.id),
                "referrer_count": listed[0].count if listed else 0,
                "referrers": [{"digest": r.digest, "media_type": r.media_type, "artifact_type": r.artifact_type,
                               "size": r.size} for r in listed],
                **_summary(m.payload, m.media_type, children, sizes)})
        return result

    async def delete_tag(self, name: str, tag: str) -> None:
        await self.local.delete_manifest(name, tag)

    async def delete_manifest(self, name: str, digest: str, with_referrers: bool = False) -> list[str]:
        """Delete one manifest, as the v2 DELETE does; `with_referrers`: its referrers too, in one
        transaction. Returns the referrers deleted."""
        if with_referrers:
            return await self.local.delete_with_referrers(name, parse_digest(digest), MAX_DELETED_REFERRERS)
        await self.local.delete_manifest(name, parse_digest(digest))
        return []

    # -- immutable-tag rules ------------------------------------------------------------
    async def immutable_rules(self) -> list[dict[str, Any]]:
        """Every rule in force: the configuration's (no id: changed in the configuration) first."""
        async with self.db.read() as conn:
            return [rule.describe() for rule in await self.local.immutable.rules(conn)]

    async def add_immutable_rule(self, rule: ImmutableRule, created_by: str | None) -> tuple[dict[str, Any], bool]:
        """The rule as stored, and whether this added it (False: the database had it already)."""
        async with self.db.write() as conn:
            if await rule_rows.count(conn) >= MAX_IMMUTABLE_RULES:
                raise RegistryError("DENIED", f"there are {MAX_IMMUTABLE_RULES} immutable-tag rules already; "
                                    "delete one, or widen a pattern to cover several")
            row, added = await rule_rows.add_rule(self.db, conn, rule.repositories, rule.tags, created_by)
        return ImmutableRule(row.repositories, row.tags, row.id, row.created_at, row.created_by).describe(), added

    async def delete_immutable_rule(self, rule_id: int) -> None:
        async with self.db.write() as conn:
            if not await rule_rows.delete_rule(conn, rule_id):
                raise RegistryError("NOT_FOUND", f"no immutable-tag rule {rule_id} in the database (rules of the "
                                    "configuration are changed there)", detail={"id": rule_id})

    async def _config(self, payload: bytes, media_type: str) -> dict[str, Any] | None:
        """The image config's useful parts, or None (an index, an artifact, or not stored here)."""
        if media_type not in mf.IMAGE_MANIFESTS:
            return None
        config = _document(payload).get("config")
        if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
            return None
        digest = parse_digest(config["digest"])
        size = await self.store.stat(digest)
        if size is None or size > CONFIG_READ_LIMIT:
            return None
        data = b"".join([chunk async for chunk in self.store.read(digest, 0, size)])
        return _config_summary(data)

    # -- storage ------------------------------------------------------------------------
    async def storage(self) -> dict[str, Any]:
        async with self.db.read() as conn:
            t = await rows.totals(conn)
        saved = max(t.logical_bytes - t.physical_bytes, 0)
        return {**asdict(t), "backend": self.store.backend_name, "dedup_saved_bytes": saved,
                "dedup_ratio": round(t.logical_bytes / t.physical_bytes, 3) if t.physical_bytes else None}

    async def growth(self, points: int) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            found = await rows.growth(conn, points, time.time())
        return [{"time": t, "physical_bytes": p, "logical_bytes": lg} for t, p, lg in found]

    # -- upload sessions ----------------------------------------------------------------
    async def uploads(self, limit: int, last: str | None) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return [asdict(u) for u in await rows.upload_page(conn, limit, last, time.time())]

    async def cancel_upload(self, upload_id: str) -> None:
        async with self.db.read() as conn:
            found = await upload_rows.get_upload(conn, upload_id)
        if found is None:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id})
        await self.local.cancel_upload(found.repository, upload_id)

    async def _repository_id(self, conn: Any, name: str) -> int:
        repo_id = await repo_rows.repository_id(conn, name)
        if repo_id is None:
            raise RegistryError("NAME_UNKNOWN", detail={"name": name})
        return repo_id


# -- pure helpers over manifest bytes (already validated when pushed) ---------------------
async def _children_and_sizes(conn: Connection, repo_id: int, stored: list[tuple[bytes, str]]
                              ) -> tuple[dict[str, rows.StoredManifest], dict[str, int]]:
    """For manifests given as (payload, media type): the child manifests their indexes list, and the sizes
    of every blob they and those children reference, in two statements."""
    children = await rows.manifests_by_digest(conn, repo_id, sorted({
        d.digest for payload, media_type in stored for d in _index_entries(payload, media_type)}))
    blob_digests = {d for payload, media_type in stored for d in _blob_digests(payload, media_type)}
    blob_digests |= {d for c in children.values() for d in _blob_digests(c.payload, c.media_type)}
    return children, await rows.blob_sizes(conn, sorted(blob_digests))


def _document(payload: bytes) -> dict[str, Any]:
    """The JSON object in stored bytes by the strict reader; {} when it refuses them (bytes stored
    before it was strict: too deep for json.loads, or numbers int() refuses)."""
    try:
        document = json_strict.loads(payload)
    except json_strict.StrictJSONError:
        return {}
    return document if isinstance(document, dict) else {}


def _descriptors(document: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = document.get(key)
    items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    return [d for d in items if isinstance(d, dict) and isinstance(d.get("digest"), str)]


def _index_entries(payload: bytes, media_type: str) -> list[mf.Descriptor]:
    if media_type not in mf.INDEXES:
        return []
    return [mf.Descriptor(str(d.get("mediaType", "")), d["digest"], int(d.get("size") or 0))
            for d in _descriptors(_document(payload), "manifests")]


def _blob_digests(payload: bytes, media_type: str) -> list[str]:
    if media_type not in mf.IMAGE_MANIFESTS:
        return []
    document = _document(payload)
    return [d["digest"] for d in _descriptors(document, "config") + _descriptors(document, "layers")]


def _image_size(payload: bytes, sizes: dict[str, int]) -> int:
    document = _document(payload)
    return sum(sizes.get(d["digest"], int(d.get("size") or 0))
               for d in _descriptors(document, "config") + _descriptors(document, "layers"))


def _platform_name(platform: dict[str, Any]) -> str:
    parts = [platform.get("os") or "?", platform.get("architecture") or "?"]
    if platform.get("variant"):
        parts.append(platform["variant"])
    return "/".join(str(p) for p in parts)


def _summary(payload: bytes, media_type: str, children: dict[str, rows.StoredManifest],
             sizes: dict[str, int]) -> dict[str, Any]:
    """Size (blob bytes a pull of every platform moves, each blob once) and platforms."""
    if media_type in mf.IMAGE_MANIFESTS:
        return {"size": _image_size(payload, sizes), "platforms": [], "manifests": []}
    entries = []
    seen: dict[str, int] = {}
    for d in _descriptors(_document(payload), "manifests"):
        child = children.get(d["digest"])
        platform = d.get("platform") if isinstance(d.get("platform"), dict) else {}
        size = None
        if child is not None and child.media_type in mf.IMAGE_MANIFESTS:
            size = _image_size(child.payload, sizes)
            for digest in _blob_digests(child.payload, child.media_type):
                seen[digest] = sizes.get(digest, 0)
        entries.append({"digest": d["digest"], "media_type": d.get("mediaType"), "platform":
                        _platform_name(platform) if platform else None, "size": size, "stored": child is not None,
                        "artifact_type": d.get("artifactType")})
    return {"size": sum(seen.values()), "platforms": [e["platform"] for e in entries if e["platform"]],
            "manifests": entries}


def _config_summary(data: bytes) -> dict[str, Any] | None:
    document = _document(data)
    if not document:
        return None
    config: dict[str, Any] = document["config"] if isinstance(document.get("config"), dict) else {}
    env = config.get("Env") if isinstance(config.get("Env"), list) else []
    return {
        "created": document.get("created"), "os": document.get("os"), "architecture": document.get("architecture"),
        "variant": document.get("variant"), "author": document.get("author"),
        "entrypoint": config.get("Entrypoint"), "cmd": config.get("Cmd"), "working_dir": config.get("WorkingDir"),
        "user": config.get("User"), "env": env, "labels": config.get("Labels") or {},
        "exposed_ports": sorted((config.get("ExposedPorts") or {}).keys()) if isinstance(
            config.get("ExposedPorts"), dict) else [],
        "history": len(document.get("history") or []) if isinstance(document.get("history"), list) else 0,
    }
