"""`registry pull`: resolve a reference through registry.client, pick the platform, fetch and verify the
config and layers, unpack each layer once into the image store."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import platform as host_platform
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

from registry import json_strict
from registry.client.client import RegistryClient, trust_context
from registry.digest import parse_digest
from registry.manifest import DOCKER_MANIFEST, INDEXES, OCI_MANIFEST, parse_manifest
from registry.reference import DEFAULT_REGISTRY, ImageReference, parse_image_reference
from registry.runtime.progress import Progress
from registry.runtime.store import ImageRecord, ImageStore, LayerRecord
from registry.runtime.unpack import LayerError, unpack_layer

LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
}
CONFIG_LIMIT = 16 * 1024 * 1024  # image configs are kilobytes; a runaway one is refused, not buffered
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


class PullError(Exception):
    pass


def host_platform_spec() -> tuple[str, str, str]:
    machine = host_platform.machine()
    return "linux", _ARCH.get(machine, machine), "v7" if machine == "armv7l" else ""


def insecure_registry(host: str) -> bool:
    """Hosts where, as with docker's insecure registries, plain HTTP and unverified HTTPS are allowed:
    127.0.0.0/8, localhost, ::1, and those in REGISTRY_INSECURE_REGISTRIES."""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    insecure = {h.strip() for h in os.environ.get("REGISTRY_INSECURE_REGISTRIES", "").split(",") if h.strip()}
    return host in insecure or name in ("localhost", "[::1]") or name.startswith("127.")


def endpoints(ref: ImageReference, mirrors: list[str]) -> list[str]:
    """Base URLs to try in order: Docker Hub's mirrors first (as dockerd's registry-mirrors), then the
    registry; an insecure registry over HTTPS first, then plain HTTP (as docker does)."""
    if ref.registry == DEFAULT_REGISTRY:
        return [m.rstrip("/") for m in mirrors] + ["https://registry-1.docker.io"]
    if insecure_registry(ref.registry):
        return [f"https://{ref.registry}", f"http://{ref.registry}"]
    return [f"https://{ref.registry}"]


def tls_for(base: str) -> ssl.SSLContext | None:
    """The CAs the user gave for this registry (certs.d); for an insecure registry without one, no
    certificate check at all, as docker does."""
    host = base.split("://", 1)[1]
    cas = registry_cas(host)
    if cas or not base.startswith("https://") or not insecure_registry(host):
        return trust_context(cas)
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    return unverified


CERTS_DIRS = (Path("/etc/docker/certs.d"), Path("/etc/containers/certs.d"))


def registry_cas(host: str, certs_dirs: tuple[Path, ...] = CERTS_DIRS) -> list[Path]:
    """The CA certificates a user gave for this registry, where docker and podman look for them:
    `/etc/docker/certs.d/HOST:PORT/*.crt` and `/etc/containers/certs.d/HOST:PORT/*.crt`."""
    found: list[Path] = []
    for directory in certs_dirs:
        try:
            found += sorted(p for p in (directory / host).glob("*.crt") if p.is_file())
        except OSError:
            continue
    return found


def docker_credentials(host: str) -> tuple[str, str]:
    """Credentials `docker login` saved in ~/.docker/config.json (DOCKER_CONFIG honoured)."""
    config_dir = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        auths = json.loads((config_dir / "config.json").read_text()).get("auths", {})
    except (OSError, ValueError):
        return "", ""
    keys = [host, f"https://{host}", f"http://{host}"]
    if host == DEFAULT_REGISTRY:
        keys += ["https://index.docker.io/v1/", "index.docker.io"]
    for key in keys:
        entry = auths.get(key) or {}
        if entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
    return "", ""


def choose_platform(index: dict[str, Any]) -> str:
    want_os, want_arch, want_variant = host_platform_spec()
    candidates = []
    for entry in index.get("manifests", []):
        plat = entry.get("platform") or {}
        if plat.get("os") == want_os and plat.get("architecture") == want_arch:
            if not want_variant or plat.get("variant") in (None, want_variant):
                candidates.append(entry["digest"])
    if not candidates:
        raise PullError(f"no image for {want_os}/{want_arch} in the index")
    return candidates[0]


class Puller:
    def __init__(self, store: ImageStore, progress: Progress | None = None, mirrors: list[str] | None = None,
                 concurrency: int = 3) -> None:
        self.store = store
        self.progress = progress or Progress()
        self.mirrors = mirrors if mirrors is not None else [
            m for m in os.environ.get("REGISTRY_MIRRORS", "").split(",") if m.strip()]
        self.concurrency = concurrency

    async def pull(self, name: str) -> ImageRecord:
        ref = parse_image_reference(name)
        user, password = docker_credentials(ref.registry)
        errors = []
        for base in endpoints(ref, self.mirrors):
            # HTTPS to an insecure registry is a probe (its port may speak plain HTTP): no retries,
            # plain HTTP comes next.
            probing = base.startswith("https://") and insecure_registry(base.split("://", 1)[1])
            async with RegistryClient(base, user, password, user_agent="registry-runtime", tls=tls_for(base),
                                      retries=0 if probing else 3) as client:
                try:
                    if probing:
                        await client.ping()
                    return await self._pull_from(client, ref)
                except (LayerError, PullError):
                    raise
                except Exception as exc:  # noqa: BLE001 - an unreachable mirror: try the next endpoint
                    errors.append(f"{base}: {exc}")
        raise PullError("; ".join(errors))

    async def _pull_from(self, client: RegistryClient, ref: ImageReference) -> ImageRecord:
        response = await client.get_manifest(ref.repository, ref.reference)
        assert response.payload is not None
        digest = "sha256:" + hashlib.sha256(response.payload).hexdigest()
        if ref.digest and ref.digest != digest:
            raise PullError(f"manifest digest {digest} is not the {ref.digest} asked for")
        parsed = parse_manifest(response.payload, response.media_type)
        if parsed.media_type in INDEXES:
            child = choose_platform(parsed.document)
            response = await client.get_manifest(ref.repository, child)
            assert response.payload is not None
            digest = "sha256:" + hashlib.sha256(response.payload).hexdigest()
            if digest != child:
                raise PullError(f"manifest {child} arrived as {digest}")
            parsed = parse_manifest(response.payload, response.media_type)
        if parsed.media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
            raise PullError(f"{ref} is a {parsed.media_type}, not an image")
        manifest = parsed.document
        config_bytes = await client.small_blob(ref.repository, manifest["config"]["digest"], CONFIG_LIMIT)
        try:  # verified against its digest: the image's fault, the same at every endpoint
            config = json_strict.loads(config_bytes)
        except json_strict.StrictJSONError as exc:
            raise PullError(f"the image config of {ref} {exc}") from None
        if not isinstance(config, dict):
            raise PullError(f"the image config of {ref} is not a JSON object")
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        layers = manifest.get("layers", [])
        if len(diff_ids) != len(layers):
            raise PullError("the config's diff_ids do not match the manifest's layers")
        records = []
        for layer, diff_id in zip(layers, diff_ids):
            if layer["mediaType"] not in LAYER_TYPES:
                raise PullError(f"unsupported layer media type {layer['mediaType']}")
            parse_digest(layer["digest"])
            parse_digest(diff_id)
            records.append(LayerRecord(layer["digest"], diff_id, int(layer["size"]), layer["mediaType"]))
        await self._layers(client, ref.repository, records)
        record = ImageRecord(digest, str(ref), manifest["config"]["digest"], config, records, time.time())
        self.store.save_image(record)
        return record

    async def _layers(self, client: RegistryClient, repository: str, layers: list[LayerRecord]) -> None:
        rows = []
        for layer in layers:
            exists = self.store.has_layer(layer.diff_id)
            rows.append(self.progress.add(layer.digest.split(":", 1)[1][:12], layer.size,
                                          "exists" if exists else "waiting"))
            if exists and not self.progress.tty:
                self.progress.update(rows[-1], status="exists")
        limit = asyncio.Semaphore(self.concurrency)
        downloads: dict[int, asyncio.Task[Path]] = {}
        for i, layer in enumerate(layers):
            if not self.store.has_layer(layer.diff_id):
                downloads[i] = asyncio.create_task(self._download(client, repository, layer, rows[i], limit))
        try:
            # Unpacked in order: a layer's hardlinks may point into the layers below it.
            for i, layer in enumerate(layers):
                if i not in downloads:
                    continue
                blob = await downloads[i]
                self.progress.update(rows[i], status="unpacking")
                lowers = [self.store.layer_dir(lower.diff_id) for lower in reversed(layers[:i])]
                tmp = self.store.root / "tmp" / f"layer-{uuid.uuid4().hex}"
                try:
                    await asyncio.to_thread(unpack_layer, blob, tmp, layer.diff_id, layer.media_type, lowers)
                    self.store.commit_layer(tmp, layer.diff_id)
                except LayerError as exc:
                    self.progress.update(rows[i], status="failed")
                    raise LayerError(f"layer {layer.digest}: {exc}") from None
                finally:
                    blob.unlink(missing_ok=True)
                self.progress.update(rows[i], status="done")
        finally:
            for task in downloads.values():
                task.cancel()
            for task in downloads.values():
                if task.done() and not task.cancelled() and task.exception() is None:
                    task.result().unlink(missing_ok=True)

    async def _download(self, client: RegistryClient, repository: str, layer: LayerRecord, row: int,
                        limit: asyncio.Semaphore) -> Path:
        expected = parse_digest(layer.digest)
        path = self.store.root / "tmp" / f"blob-{uuid.uuid4().hex}"
        async with limit:
            self.progress.update(row, status="downloading")
            hasher = hashlib.new(expected.algorithm)
            done = 0
            try:
                # Written on this command's own loop: page-cache writes of a MiB cost less than a thread hop.
                with open(path, "wb") as out:  # noqa: ASYNC230
                    async with client.blob(repository, layer.digest) as response:
                        async for chunk in response.content.iter_chunked(1 << 20):
                            hasher.update(chunk)
                            out.write(chunk)
                            done += len(chunk)
                            self.progress.update(row, done)
                if hasher.hexdigest() != expected.hex:
                    raise PullError(f"layer {layer.digest} does not match its digest")
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        self.progress.update(row, status="downloaded")
        return path


def pull(name: str, store: ImageStore | None = None, quiet: bool = False) -> ImageRecord:
    import io
    progress = Progress(io.StringIO()) if quiet else Progress()
    return asyncio.run(Puller(store or ImageStore(), progress).pull(name))
