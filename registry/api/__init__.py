"""The Distribution v2 / OCI distribution-spec routes: one handler module per resource."""

from aiohttp import web

from registry.api import base, blobs, catalog, manifests, referrers, tags, uploads

NAME = "{name:.+}"


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v2/", base.version_check)
    r.add_get("/v2", base.version_check)
    r.add_get("/v2/_catalog", catalog.catalog)
    r.add_get(f"/v2/{NAME}/tags/list", tags.list_tags)
    r.add_get(f"/v2/{NAME}/referrers/{{digest}}", referrers.referrers)
    for path in (f"/v2/{NAME}/blobs/uploads/", f"/v2/{NAME}/blobs/uploads"):
        r.add_post(path, uploads.start_upload)
    upload = f"/v2/{NAME}/blobs/uploads/{{uuid}}"
    r.add_get(upload, uploads.upload_status)
    r.add_patch(upload, uploads.patch_upload)
    r.add_put(upload, uploads.finish_upload)
    r.add_delete(upload, uploads.cancel_upload)
    blob = f"/v2/{NAME}/blobs/{{digest}}"
    r.add_get(blob, blobs.get_blob)
    r.add_delete(blob, blobs.delete_blob)
    manifest = f"/v2/{NAME}/manifests/{{reference}}"
    r.add_get(manifest, manifests.get_manifest)
    r.add_put(manifest, manifests.put_manifest)
    r.add_delete(manifest, manifests.delete_manifest)
