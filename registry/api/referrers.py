"""GET /v2/<name>/referrers/<digest>: an OCI image index of the manifests whose subject it is."""

import json

from aiohttp import web

from registry import manifest as mf
from registry.api.common import digest_param, is_printable_key, routed
from registry.http_errors import HTTPError


async def referrers(request: web.Request) -> web.Response:
    store, name = await routed(request)
    subject = digest_param(request.match_info["digest"])
    artifact_type = request.query.get("artifactType") or None
    if artifact_type is not None and not is_printable_key(artifact_type):  # a media type is printable ASCII
        raise HTTPError("UNSUPPORTED", "artifactType must be a media type", status=400,
                            detail={"artifactType": artifact_type[:100]})
    found = await store.referrers(name, subject, artifact_type)
    descriptors = []
    for ref in found:
        descriptor = {"mediaType": ref.media_type, "digest": ref.digest, "size": ref.size}
        if ref.artifact_type:
            descriptor["artifactType"] = ref.artifact_type
        if ref.annotations:
            descriptor["annotations"] = ref.annotations
        descriptors.append(descriptor)
    headers = {"Content-Type": mf.OCI_INDEX}
    if artifact_type:
        headers["OCI-Filters-Applied"] = "artifactType"
    index = {"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": descriptors}
    return web.Response(body=json.dumps(index).encode(), headers=headers)
