"""A pull rule against a remote that lies: a manifest whose bytes are not its digest, a blob whose bytes are
not its digest, a blob shorter than its descriptor, a referrers list of garbage. Each tag fails alone with
its reason, nothing of it is stored here, and the honest tag beside them is copied."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import web

from registry.client import RegistryClient
from registry.digest import parse_digest
from registry.replication.ends import LocalEnd, RemoteEnd
from registry.replication.engine import Replicator
from registry.replication.rules import parse_rule
from tests.replication.test_engine import content_at
from tests.support.images import OCI_MANIFEST, json_bytes, sha256

CONFIG = json_bytes({"architecture": "amd64", "os": "linux"})


def image(layer: bytes, declared_size: int | None = None) -> bytes:
    return json_bytes({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(CONFIG),
                                  "size": len(CONFIG)},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer),
                                   "size": declared_size if declared_size is not None else len(layer)}]})


def liar() -> web.Application:
    honest_layer, forged_layer, short_layer = b"honest layer", b"forged layer", b"short layer"
    manifests = {
        "honest": image(honest_layer),
        "forged-blob": image(forged_layer),
        "short-blob": image(short_layer, declared_size=len(short_layer) + 100),
    }
    blobs = {sha256(CONFIG): CONFIG, sha256(honest_layer): honest_layer,
             sha256(forged_layer): b"other bytes entirely", sha256(short_layer): short_layer}
    by_digest = {sha256(m): m for m in manifests.values()}

    async def tags(_: web.Request) -> web.Response:
        return web.json_response({"name": "team/app", "tags": ["forged-manifest", *manifests]})

    async def manifest(request: web.Request) -> web.Response:
        reference = request.match_info["reference"]
        if reference == "forged-manifest":  # the header names one digest, the bytes hash to another
            payload = image(honest_layer)[:-1] + b',"annotations":{"forged":"yes"}}'
            return web.Response(body=payload, content_type=OCI_MANIFEST,
                                headers={"Docker-Content-Digest": sha256(manifests["honest"])})
        payload = manifests.get(reference) or by_digest.get(reference)
        if payload is None:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "no"}]}, status=404)
        return web.Response(body=payload if request.method == "GET" else None, content_type=OCI_MANIFEST,
                            headers={"Docker-Content-Digest": sha256(payload), "Content-Length": str(len(payload))})

    async def blob(request: web.Request) -> web.Response:
        data = blobs.get(request.match_info["digest"])
        if data is None:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN", "message": "no"}]}, status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def referrers(_: web.Request) -> web.Response:
        return web.Response(body=json.dumps({"schemaVersion": 2, "manifests": [{"digest": 5}]}),
                            content_type="application/vnd.oci.image.index.v1+json")

    async def ping(_: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v2/", ping)
    app.router.add_get("/v2/team/app/tags/list", tags)
    app.router.add_route("*", "/v2/team/app/manifests/{reference}", manifest)
    app.router.add_get("/v2/team/app/blobs/{digest}", blob)
    app.router.add_get("/v2/team/app/referrers/{digest}", referrers)
    return app


def test_a_lying_remote_fails_tag_by_tag_and_stores_nothing_of_its_lies(tmp_path: Path) -> None:
    async def test() -> None:
        runner = web.AppRunner(liar())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        destination = await content_at(tmp_path / "destination")
        rule = parse_rule({"name": "r", "direction": "pull", "url": f"http://127.0.0.1:{port}",
                           "repositories": ["team/app"]})
        try:
            async with RegistryClient(rule.url, retries=0) as client:
                tally = await Replicator(rule, RemoteEnd(client), LocalEnd(destination)).run()
            end = LocalEnd(destination)
            failed = {line.split(":")[1].split(" ")[0] for line in tally.error_lines}
            assert {"forged-manifest", "forged-blob", "short-blob"} <= failed, tally.error_lines
            # The honest tag is copied; only its referrers list, garbage, fails.
            assert [line for line in tally.error_lines if "honest" in line] == [
                "team/app:honest: 502  referrers index: descriptor 0 is not a descriptor"]
            assert await end.tags("team/app") == ["honest"]
            assert not await end.has_blob("team/app", sha256(b"forged layer"))
            assert await destination.stored_size(parse_digest(sha256(b"forged layer"))) is None
        finally:
            await destination.db.close()
            await runner.cleanup()
    asyncio.run(test())
