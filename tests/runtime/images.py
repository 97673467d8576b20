"""Images for the runtime tests, built entry by entry from busybox-static and pushed with httpx.

Each layer is a list of tar entries; it is written raw, then gzip'd, zstd'd or left plain as asked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.host import oci_arch

BUSYBOX = Path("/bin/busybox")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
               "plain": "application/vnd.oci.image.layer.v1.tar"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Entry:
    name: str
    kind: str = "file"          # file dir symlink hardlink chr blk fifo
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    link: str = ""
    devmajor: int = 0
    devminor: int = 0


def file(name: str, data: bytes | str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(name, "file", data.encode() if isinstance(data, str) else data, mode, uid, gid)


def directory(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(name, "dir", mode=mode, uid=uid, gid=gid)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, "symlink", mode=0o777, link=target)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, "hardlink", link=target)


def device(name: str, kind: str = "blk", major: int = 8, minor: int = 0) -> Entry:
    return Entry(name, kind, mode=0o660, devmajor=major, devminor=minor)


_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
          "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}


def tar_bytes(entries: list[Entry]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = _TYPES[e.kind]
            info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, 1700000000
            info.linkname = e.link
            info.devmajor, info.devminor = e.devmajor, e.devminor
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return raw.getvalue()


@dataclass
class Layer:
    blob: bytes
    diff_id: str
    media_type: str


def layer(entries: list[Entry], compression: str = "gzip") -> Layer:
    raw = tar_bytes(entries)
    if compression == "gzip":
        blob = gzip.compress(raw, mtime=0)
    elif compression == "zstd":
        import zstandard
        blob = zstandard.ZstdCompressor().compress(raw)
    else:
        blob = raw
    return Layer(blob, sha256(raw), LAYER_TYPES[compression])


@dataclass
class Image:
    reference: str            # host:port/name:tag
    digest: str
    layers: list[Layer] = field(default_factory=list)


def push(registry_url: str, name: str, tag: str, layers: list[Layer], config: dict[str, Any] | None = None,
         history: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None,
         architecture: str | None = None) -> Image:
    """Push blobs, config and an OCI manifest; `config` is the image config's `config` object. The image is for
    this host's architecture (busybox is the host's) unless `architecture` says otherwise."""
    document = {
        "architecture": architecture or oci_arch(), "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in layers]},
        "history": history or [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"}
                               for i in range(len(layers))],
    }
    config_bytes = json.dumps(document).encode()
    with httpx.Client(base_url=registry_url, timeout=60, headers=headers) as http:
        for blob in [config_bytes] + [lay.blob for lay in layers]:
            start = http.post(f"/v2/{name}/blobs/uploads/")
            assert start.status_code == 202, start.text
            location = start.headers["Location"]
            sep = "&" if "?" in location else "?"
            done = http.put(f"{location}{sep}digest={sha256(blob)}", content=blob,
                            headers={"Content-Type": "application/octet-stream"})
            assert done.status_code == 201, done.text
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config_bytes), "size": len(config_bytes)},
            "layers": [{"mediaType": lay.media_type, "digest": sha256(lay.blob), "size": len(lay.blob)}
                       for lay in layers],
        }
        body = json.dumps(manifest).encode()
        resp = http.put(f"/v2/{name}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert resp.status_code == 201, resp.text
    host = registry_url.split("://", 1)[1]
    return Image(f"{host}/{name}:{tag}", sha256(body), layers)


def busybox_entries() -> list[Entry]:
    """/bin/busybox with applet links, /etc/passwd and /etc/group with a user `app` (1000)."""
    entries = [directory("bin"), file("bin/busybox", BUSYBOX.read_bytes(), 0o755), directory("etc"),
               file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"),
               file("etc/group", "root:x:0:\napp:x:1000:\nextra:x:2000:app\n"),
               directory("root", 0o700), directory("tmp", 0o1777)]
    for applet in ("sh", "cat", "ls", "echo", "id", "stat", "find", "hostname", "ps", "sleep", "grep", "head",
                   "readlink", "wc", "true", "false", "mount", "touch", "nc", "httpd", "ip", "seq", "kill",
                   "pwd", "env", "dd", "tr", "sort", "uniq", "cut", "awk", "test", "[", "unshare"):
        entries.append(symlink(f"bin/{applet}", "busybox"))
    return entries
