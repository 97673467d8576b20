"""GET /v2/<name>/referrers/<digest>: an OCI image index of the manifests whose subject it is."""

from json.encoder import encode_basestring_ascii as json_string

from aiohttp import web

from registry import manifest as mf
from registry.api.common import digest_param, is_printable_key, routed
from registry.content.model import Referrer
from registry.http_errors import HTTPError

_INDEX_START = f'{{"schemaVersion": 2, "mediaType": {json_string(mf.OCI_INDEX)}, "manifests": ['


async def referrers(request: web.Request) -> web.Response:
    store, name = await routed(request)
    subject = digest_param(request.match_info["digest"])
    artifact_type = request.query.get("artifactType") or None
    if artifact_type is not None and not is_printable_key(artifact_type):  # a media type is printable ASCII
        raise HTTPError("UNSUPPORTED", "artifactType must be a media type", status=400,
                            detail={"artifactType": artifact_type[:100]})
    found = await store.referrers(name, subject, artifact_type)
    headers = {"Content-Type": mf.OCI_INDEX}
    if artifact_type:
        headers["OCI-Filters-Applied"] = "artifactType"
    # Written as text, not built as dicts for json.dumps: a subject with a thousand referrers (signatures,
    # SBOMs, attestations) costs a few milliseconds, not tens.
    body = ", ".join(map(_descriptor, found)).join((_INDEX_START, "]}"))
    return web.Response(body=body.encode(), headers=headers)


def _descriptor(ref: Referrer) -> str:
    """The referrer's descriptor as JSON text. Its digest and media type were checked on push (a digest,
    one of the manifest media types): nothing to escape; its annotations are the column's JSON text."""
    digest, media_type, size, artifact_type, annotations_json = ref
    return (f'{{"mediaType": "{media_type}", "digest": "{digest}", "size": {size:d}'
            + (f', "artifactType": {json_string(artifact_type)}' if artifact_type else "")
            + (f', "annotations": {annotations_json}' if annotations_json else "") + "}")
