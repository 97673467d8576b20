"""Build test images for the real clients: docker images with the legacy builder, OCI layouts by hand.

Everything is made from busybox-static (/bin/busybox): there is no Docker Hub here.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping, Sequence

from tests.support.host import oci_arch

BUSYBOX = Path("/bin/busybox")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
REF_NAME = "org.opencontainers.image.ref.name"


# -- running clients ------------------------------------------------------------------------

class CommandFailed(AssertionError):
    """A client command exited non-zero; the message carries everything needed to diagnose it."""

    def __init__(self, result: subprocess.CompletedProcess) -> None:
        self.result = result
        super().__init__(describe(result))


def describe(result: subprocess.CompletedProcess) -> str:
    def text(value: object) -> str:
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        return str(value or "").strip()[-6000:]
    cmd = " ".join(str(a) for a in result.args)
    return f"$ {cmd}\nexit status {result.returncode}\n--- stdout\n{text(result.stdout)}\n--- stderr\n{text(result.stderr)}"


def run(args: Sequence[object], *, check: bool = True, timeout: float = 120, text: bool = True,
        env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command, capturing output; raise CommandFailed (an AssertionError) on failure if `check`."""
    full_env = {**os.environ, **(env or {})}
    try:
        result = subprocess.run([str(a) for a in args], capture_output=True, text=text, timeout=timeout,
                                env=full_env)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"$ {' '.join(str(a) for a in args)}\ntimed out after {timeout}s\n"
                             f"--- stdout\n{exc.stdout!r}\n--- stderr\n{exc.stderr!r}") from None
    if check and result.returncode != 0:
        raise CommandFailed(result)
    return result


# -- docker images --------------------------------------------------------------------------

@dataclass
class DockerImage:
    tag: str                      # local tag, e.g. e2e-1a2b3c4d/app1:latest
    id: str                       # sha256:... image id
    diff_ids: list[str]           # RootFS.Layers, bottom first
    files: dict[str, str] = field(default_factory=dict)  # path in the image -> expected content


def docker_build(context: Path, tag: str, dockerfile: str, timeout: float = 120) -> DockerImage:
    """`docker build` with the legacy builder (there is no buildx here)."""
    (context / "Dockerfile").write_text(dockerfile)
    run(["docker", "build", "--quiet", "--tag", tag, str(context)], env={"DOCKER_BUILDKIT": "0"},
        timeout=timeout)
    return docker_image(tag)


def docker_image(ref: str) -> DockerImage:
    info = json.loads(run(["docker", "image", "inspect", ref]).stdout)[0]
    return DockerImage(tag=ref, id=info["Id"], diff_ids=list(info["RootFS"]["Layers"]))


def make_base_context(context: Path, session: str) -> None:
    """rootfs/ with busybox and a few applet symlinks, plus a per-session file so every layer is new."""
    rootfs = context / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in ("sh", "cat", "ls", "echo"):
        os.symlink("busybox", rootfs / "bin" / applet)
    (rootfs / "etc" / "e2e-session").write_text(f"{session}\n")
    (context / "base-release").write_text(f"e2e base {session}\n")


BASE_DOCKERFILE = """\
FROM scratch
COPY rootfs/ /
COPY base-release /etc/base-release
"""


def app_dockerfile(base: str, path: str) -> str:
    return f"""\
FROM {base}
COPY app.txt {path}
CMD ["/bin/busybox", "cat", "{path}"]
"""


# -- OCI layouts ----------------------------------------------------------------------------

def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def json_bytes(value: object) -> bytes:
    return json.dumps(value, indent=2, sort_keys=False).encode() + b"\n"


def tar_gz(entries: Sequence[tuple[str, bytes | None, int]], mtime: int = 1700000000) -> tuple[bytes, str]:
    """A reproducible gzip'd tar of (path, content or None for a directory, mode) entries.

    Returns (compressed bytes, diff id of the uncompressed tar).
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content, mode in entries:
            info = tarfile.TarInfo(path)
            info.mtime = mtime
            info.mode = mode
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    uncompressed = raw.getvalue()
    compressed = gzip.compress(uncompressed, compresslevel=6, mtime=0)
    return compressed, sha256(uncompressed)


@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict | None = None
    annotations: dict | None = None

    def to_json(self) -> dict:
        out: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            out["platform"] = self.platform
        if self.annotations:
            out["annotations"] = self.annotations
        return out


class OciLayoutWriter:
    """Writes an OCI image layout directory: oci-layout, index.json, blobs/sha256/<hex>."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs: dict[str, bytes] = {}
        self.refs: list[Descriptor] = []

    def add_blob(self, data: bytes, media_type: str, **extra: object) -> Descriptor:
        digest = sha256(data)
        self.blobs[digest] = data
        return Descriptor(media_type, digest, len(data), **extra)  # type: ignore[arg-type]

    def add_image(self, arch: str, layers: Sequence[tuple[bytes, str]], created: str = "2024-01-01T00:00:00Z",
                  cmd: Sequence[str] = ("/bin/busybox", "sh"), labels: dict | None = None) -> Descriptor:
        """An image manifest for linux/`arch` with the given (gzip bytes, diff id) layers."""
        config = {
            "created": created,
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"], "Labels": labels or {}},
            "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
            "history": [{"created": created, "created_by": "tests/support/images.py"} for _ in layers],
        }
        config_desc = self.add_blob(json_bytes(config), OCI_CONFIG)
        layer_descs = [self.add_blob(data, OCI_LAYER_GZIP) for data, _ in layers]
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc.to_json(),
            "layers": [d.to_json() for d in layer_descs],
            "annotations": {"org.opencontainers.image.created": created},
        }
        return self.add_blob(json_bytes(manifest), OCI_MANIFEST,
                             platform={"architecture": arch, "os": "linux"})

    def add_index(self, manifests: Sequence[Descriptor]) -> Descriptor:
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [m.to_json() for m in manifests],
        }
        return self.add_blob(json_bytes(index), OCI_INDEX)

    def tag(self, desc: Descriptor, name: str) -> None:
        self.refs.append(Descriptor(desc.media_type, desc.digest, desc.size, annotations={REF_NAME: name}))

    def write(self) -> None:
        blob_dir = self.root / "blobs" / "sha256"
        blob_dir.mkdir(parents=True, exist_ok=True)
        for digest, data in self.blobs.items():
            (blob_dir / digest.split(":", 1)[1]).write_bytes(data)
        (self.root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        index = {"schemaVersion": 2, "manifests": [d.to_json() for d in self.refs]}
        (self.root / "index.json").write_text(json.dumps(index))


@dataclass
class OciLayout:
    """What a test needs to know about an OCI layout directory."""
    path: Path
    refs: dict[str, Descriptor]                 # tag -> descriptor in index.json
    blobs: dict[str, bytes]                     # digest -> bytes (every blob file in the layout)

    def ref(self, tag: str) -> str:
        return f"oci:{self.path}:{tag}"

    def manifest(self, tag: str) -> bytes:
        return self.blobs[self.refs[tag].digest]

    def reachable(self, tag: str) -> dict[str, bytes]:
        """Every blob reachable from `tag` (the manifest or index itself included)."""
        out: dict[str, bytes] = {}
        stack = [self.refs[tag].digest]
        while stack:
            digest = stack.pop()
            if digest in out:
                continue
            data = self.blobs[digest]
            out[digest] = data
            try:
                doc = json.loads(data)
            except (UnicodeDecodeError, ValueError):
                continue
            if not isinstance(doc, dict):
                continue
            if doc.get("mediaType") in (OCI_INDEX, DOCKER_LIST) or "manifests" in doc:
                stack.extend(m["digest"] for m in doc.get("manifests", []))
            if "config" in doc and isinstance(doc["config"], dict) and "layers" in doc:
                stack.append(doc["config"]["digest"])
                stack.extend(layer["digest"] for layer in doc["layers"])
        return out


def read_oci_layout(path: Path) -> OciLayout:
    path = Path(path)
    index = json.loads((path / "index.json").read_text())
    refs: dict[str, Descriptor] = {}
    for entry in index.get("manifests", []):
        name = (entry.get("annotations") or {}).get(REF_NAME)
        if name:
            refs[name] = Descriptor(entry["mediaType"], entry["digest"], entry["size"],
                                    platform=entry.get("platform"), annotations=entry.get("annotations"))
    blobs: dict[str, bytes] = {}
    for alg_dir in (path / "blobs").iterdir():
        for blob in alg_dir.iterdir():
            blobs[f"{alg_dir.name}:{blob.name}"] = blob.read_bytes()
    return OciLayout(path, refs, blobs)


def busybox_layer() -> tuple[bytes, str]:
    """busybox at /bin/busybox."""
    busybox = BUSYBOX.read_bytes()
    return tar_gz([("bin", None, 0o755), ("bin/busybox", busybox, 0o755)])


def file_layer(path: str, content: bytes) -> tuple[bytes, str]:
    parent = path.strip("/").rsplit("/", 1)[0] if "/" in path.strip("/") else ""
    entries: list[tuple[str, bytes | None, int]] = []
    if parent:
        entries.append((parent, None, 0o755))
    entries.append((path.strip("/"), content, 0o644))
    return tar_gz(entries)


def write_single_arch_layout(root: Path, session: str) -> OciLayout:
    """Two images for this host's architecture (its busybox runs in them) sharing the busybox layer: tags `v1`
    and `other`."""
    writer = OciLayoutWriter(root)
    base = busybox_layer()
    v1 = writer.add_image(oci_arch(), [base, file_layer("/etc/hello.txt", f"hello {session}\n".encode())],
                          labels={"e2e.session": session, "e2e.tag": "v1"})
    other = writer.add_image(oci_arch(), [base, file_layer("/etc/other.txt", f"other {session}\n".encode())],
                             labels={"e2e.session": session, "e2e.tag": "other"})
    writer.tag(v1, "v1")
    writer.tag(other, "other")
    writer.write()
    return read_oci_layout(root)


def write_multi_arch_layout(root: Path, session: str) -> OciLayout:
    """An OCI image index (tag `multi`) over linux/amd64 and linux/arm64 manifests.

    Deliberately these two platforms on any host: both images hold the host's busybox, so at most one of them
    runs here; each only has to be valid. Both images share a data layer, so the registry sees one blob
    referenced from two manifests.
    """
    writer = OciLayoutWriter(root)
    shared = file_layer("/etc/multi.txt", f"multi {session}\n".encode())
    amd64 = writer.add_image("amd64", [busybox_layer(), shared], labels={"e2e.session": session})
    arm64_busybox = tar_gz([("bin", None, 0o755), ("bin/busybox", BUSYBOX.read_bytes(), 0o755),
                            ("etc", None, 0o755), ("etc/arch", b"arm64\n", 0o644)])
    arm64 = writer.add_image("arm64", [arm64_busybox, shared], labels={"e2e.session": session})
    index = writer.add_index([amd64, arm64])
    writer.tag(index, "multi")
    writer.write()
    return read_oci_layout(root)
