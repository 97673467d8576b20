"""The image store on the host, content-addressed.

    ROOT/layers/<diff_id hex>/      one unpacked directory per layer (by its uncompressed digest), shared
    ROOT/l/<12 hex>  -> ../layers/<hex>   short names so an overlay option stays under a page
    ROOT/images/<manifest hex>.json  manifest, config and layer list of a pulled image
    ROOT/refs.json                  image reference -> manifest digest
    ROOT/tmp/                       downloads in flight (verified, unpacked, then deleted)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path

TYPE_CHECKING = False  # typing costs milliseconds of every container start; annotations only
if TYPE_CHECKING:
    from typing import Any
    from collections.abc import Iterator

from registry.runtime.paths import runtime_root
from registry.runtime.records import Record, as_json

SHORT = 12


class LayerRecord(Record):
    def __init__(self, digest: str, diff_id: str, size: int, media_type: str) -> None:
        self.digest = digest          # the blob as pulled (compressed)
        self.diff_id = diff_id        # the uncompressed tar
        self.size = size
        self.media_type = media_type


class ImageRecord(Record):
    def __init__(self, digest: str, reference: str, config_digest: str, config: dict[str, Any],
                 layers: list[LayerRecord] | None = None, pulled: float = 0.0) -> None:
        self.digest = digest                  # manifest digest
        self.reference = reference            # as pulled, e.g. 127.0.0.1:5000/team/app:1.0
        self.config_digest = config_digest
        self.config = config
        self.layers = layers or []
        self.pulled = pulled

    @property
    def id(self) -> str:
        return self.config_digest.split(":", 1)[1][:12]


class ImageStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or runtime_root()
        for sub in ("layers", "l", "images", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One writer of refs.json and the layer directories at a time, across processes."""
        with open(self.root / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    # -- layers ------------------------------------------------------------------------------
    def layer_dir(self, diff_id: str) -> Path:
        return self.root / "layers" / diff_id.split(":", 1)[1]

    def short_path(self, diff_id: str) -> str:
        """The layer's path relative to ROOT, short: what goes into an overlay lowerdir."""
        return f"l/{diff_id.split(':', 1)[1][:SHORT]}"

    def has_layer(self, diff_id: str) -> bool:
        return self.layer_dir(diff_id).is_dir()

    def commit_layer(self, tmp_dir: Path, diff_id: str) -> None:
        """Move an unpacked layer into place (another pull may have won: then drop ours)."""
        target = self.layer_dir(diff_id)
        try:
            os.rename(tmp_dir, target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(tmp_dir, ignore_errors=True)
        link = self.root / self.short_path(diff_id)
        if not link.is_symlink():
            with contextlib.suppress(FileExistsError):
                os.symlink(f"../layers/{target.name}", link)

    # -- images ------------------------------------------------------------------------------
    def _refs(self) -> dict[str, str]:
        try:
            return json.loads((self.root / "refs.json").read_text())
        except FileNotFoundError:
            return {}

    def _write_refs(self, refs: dict[str, str]) -> None:
        tmp = self.root / "refs.json.tmp"
        tmp.write_text(json.dumps(refs, indent=1, sort_keys=True))
        os.replace(tmp, self.root / "refs.json")

    def save_image(self, record: ImageRecord) -> None:
        with self.lock():
            path = self.root / "images" / (record.digest.split(":", 1)[1] + ".json")
            path.write_text(json.dumps(as_json(record)))
            refs = self._refs()
            refs[record.reference] = record.digest
            self._write_refs(refs)

    def image_by_digest(self, digest: str) -> ImageRecord | None:
        try:
            raw = json.loads((self.root / "images" / (digest.split(":", 1)[1] + ".json")).read_text())
        except (FileNotFoundError, IndexError):
            return None
        raw["layers"] = [LayerRecord(**layer) for layer in raw["layers"]]
        return ImageRecord(**raw)

    def lookup(self, name: str) -> ImageRecord | None:
        """By reference as pulled, by its normalized form, by manifest digest, or by an image id prefix."""
        refs = self._refs()
        digest = refs.get(name)
        if digest is None:
            normalized = _normalize(name)
            digest = refs.get(normalized) if normalized else None
        if digest is None and name.startswith("sha256:"):
            digest = name
        if digest is None and len(name) >= 6 and all(c in "0123456789abcdef" for c in name):
            for image in self.images():
                hexes = (image.config_digest.split(":", 1)[1], image.digest.split(":", 1)[1])
                if any(h.startswith(name) for h in hexes):
                    return image
        return self.image_by_digest(digest) if digest else None

    def images(self) -> list[ImageRecord]:
        out = []
        for path in sorted((self.root / "images").glob("*.json")):
            image = self.image_by_digest("sha256:" + path.stem)
            if image:
                out.append(image)
        return out

    def references(self) -> dict[str, str]:
        return self._refs()

    def remove_reference(self, name: str) -> str | None:
        """Untag; the image record and unused layers go once no reference and no container needs them."""
        with self.lock():
            refs = self._refs()
            key = name if name in refs else _normalize(name)
            digest = refs.pop(key, None) if key else None
            if digest is None:
                return None
            self._write_refs(refs)
            return digest

    def prune(self, keep_images: set[str]) -> list[str]:
        """Delete image records no reference or container names and layers no remaining image uses."""
        removed: list[str] = []
        with self.lock():
            wanted = set(self._refs().values()) | keep_images
            used_layers: set[str] = set()
            for image in self.images():
                if image.digest in wanted:
                    used_layers.update(layer.diff_id.split(":", 1)[1] for layer in image.layers)
                else:
                    (self.root / "images" / (image.digest.split(":", 1)[1] + ".json")).unlink()
                    removed.append(image.digest)
            for layer in (self.root / "layers").iterdir():
                if layer.name not in used_layers:
                    (self.root / "l" / layer.name[:SHORT]).unlink(missing_ok=True)
                    shutil.rmtree(layer, ignore_errors=True)
        return removed


def _normalize(name: str) -> str | None:
    from registry.errors import RegistryError
    from registry.reference import parse_image_reference

    try:
        return str(parse_image_reference(name))
    except RegistryError:  # not a reference: a name the store does not know
        return None
