"""Unpack one image layer (a tar, gzip'd, zstd'd or plain) into its own directory, by the OCI image-spec.

Every path is walked component by component from a directory fd with O_NOFOLLOW, so no entry can
write outside the layer directory whatever it says: `..`, absolute names, and paths through a
symlink make the layer invalid; device nodes are refused. Whiteouts become overlay whiteouts (a
0/0 character device, `trusted.overlay.opaque=y` for `.wh..wh..opq`). A hardlink whose target is
in a lower layer links to (or copies) that layer's file. The uncompressed stream is hashed as it is
read and must match the config's diff_id.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO
from collections.abc import Iterator

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LayerError(Exception):
    """The layer is malformed or hostile; nothing of it is kept."""


class HashingReader(io.RawIOBase):
    """Hashes (and counts) every byte read through it."""

    def __init__(self, raw: BinaryIO, algorithm: str = "sha256") -> None:
        self.raw = raw
        self.hash = hashlib.new(algorithm)
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.hash.update(data)
        self.size += n
        return n

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def decompressed(fileobj: BinaryIO, media_type: str = "") -> BinaryIO:
    """The uncompressed tar stream, by the media type or else by the magic bytes."""
    head = fileobj.read(4)
    fileobj.seek(0)
    if media_type.endswith("zstd") or head == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard
        except ModuleNotFoundError:
            raise LayerError("a zstd-compressed layer needs the runtime extra: pip install 'registry[runtime]'") \
                from None
        return zstandard.ZstdDecompressor().stream_reader(fileobj, read_across_frames=True)
    if media_type.endswith("gzip") or head[:2] == b"\x1f\x8b":
        import gzip
        return gzip.GzipFile(fileobj=fileobj, mode="rb")  # type: ignore[return-value]
    return fileobj


def split_path(name: str) -> list[str]:
    """Components of a tar name, relative to the layer root; `..` anywhere is refused."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"entry {name!r} climbs out of the layer")
    return parts


def open_dir(root_fd: int, parts: list[str], create: bool) -> int:
    """An fd for root/parts, never following a symlink; missing directories are made when `create`."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise LayerError(f"path {'/'.join(parts)!r} goes through a symlink or a file") from None
                raise
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def _remove(dir_fd: int, name: str) -> None:
    """Remove whatever is at name (a directory with its contents), never following symlinks."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _set_attrs(dir_fd: int, name: str, member: tarfile.TarInfo, fd: int | None = None) -> None:
    """Owner, then mode (chown clears setuid), then times; symlinks get owner and times only."""
    if fd is not None:
        os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, member.mode & 0o7777)
        for key, value in member.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                try:
                    os.setxattr(fd, key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape"))
                except OSError:
                    pass  # e.g. a namespace this filesystem refuses; the file is still right
        os.utime(fd, ns=(int(member.mtime * 1e9),) * 2)
        return
    os.chown(name, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)
    os.utime(name, ns=(int(member.mtime * 1e9),) * 2, dir_fd=dir_fd, follow_symlinks=False)


class _Unpacker:
    def __init__(self, dest: Path, lowers: list[Path]) -> None:
        self.root_fd = os.open(dest, _DIR_FLAGS)
        self.lowers = lowers  # top-most first, for hardlinks to files of earlier layers
        self.skipped_devices: list[str] = []

    def close(self) -> None:
        os.close(self.root_fd)

    def entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = split_path(member.name)
        if not parts:
            return  # the root itself
        *parents, base = parts
        if member.ischr() or member.isblk():
            self.skipped_devices.append(member.name)
            return
        parent = open_dir(self.root_fd, parents, create=True)
        try:
            if base == OPAQUE:
                os.setxattr(parent, "trusted.overlay.opaque", b"y")
            elif base.startswith(WHITEOUT_PREFIX):
                target = base[len(WHITEOUT_PREFIX):]
                if not target or target in (".", ".."):
                    raise LayerError(f"bad whiteout {member.name!r}")
                _remove(parent, target)
                os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
            elif member.isdir():
                self._directory(parent, base, member)
            elif member.issym():
                _remove(parent, base)
                os.symlink(member.linkname, base, dir_fd=parent)
                _set_attrs(parent, base, member)
            elif member.islnk():
                self._hardlink(parent, base, member)
            elif member.isfifo():
                _remove(parent, base)
                os.mkfifo(base, 0o600, dir_fd=parent)
                fd = os.open(base, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                try:
                    _set_attrs(parent, base, member, fd)
                finally:
                    os.close(fd)
            elif member.isreg():
                self._file(tar, parent, base, member)
            else:
                raise LayerError(f"unsupported tar entry type {member.type!r} for {member.name!r}")
        finally:
            os.close(parent)

    def _directory(self, parent: int, base: str, member: tarfile.TarInfo) -> None:
        try:
            st = os.stat(base, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                _remove(parent, base)
                os.mkdir(base, 0o755, dir_fd=parent)
        except FileNotFoundError:
            os.mkdir(base, 0o755, dir_fd=parent)
        fd = os.open(base, _DIR_FLAGS, dir_fd=parent)
        try:
            _set_attrs(parent, base, member, fd)
        finally:
            os.close(fd)

    def _file(self, tar: tarfile.TarFile, parent: int, base: str, member: tarfile.TarInfo) -> None:
        _remove(parent, base)
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
        try:
            source = tar.extractfile(member)
            assert source is not None
            with os.fdopen(os.dup(fd), "wb", closefd=True) as out:
                shutil.copyfileobj(source, out, 1 << 20)
            _set_attrs(parent, base, member, fd)
        finally:
            os.close(fd)

    def _hardlink(self, parent: int, base: str, member: tarfile.TarInfo) -> None:
        *src_parents, src_base = split_path(member.linkname) or [""]
        if not src_base:
            raise LayerError(f"hardlink {member.name!r} to the root")
        _remove(parent, base)
        # The target is in this layer (earlier in the tar) or else in the nearest lower layer that has it.
        for root in [None, *self.lowers]:
            root_fd = self.root_fd if root is None else os.open(root, _DIR_FLAGS)
            try:
                try:
                    src_dir = open_dir(root_fd, src_parents, create=False)
                except (FileNotFoundError, LayerError):
                    continue
                try:
                    st = os.stat(src_base, dir_fd=src_dir, follow_symlinks=False)
                except FileNotFoundError:
                    os.close(src_dir)
                    continue
                try:
                    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                        raise LayerError(f"hardlink {member.name!r} to a deleted file")
                    if stat.S_ISDIR(st.st_mode):
                        raise LayerError(f"hardlink {member.name!r} to a directory")
                    try:
                        os.link(src_base, base, src_dir_fd=src_dir, dst_dir_fd=parent, follow_symlinks=False)
                    except OSError as exc:
                        if exc.errno != errno.EXDEV or not stat.S_ISREG(st.st_mode):
                            raise
                        self._copy_from(src_dir, src_base, parent, base, st)
                    return
                finally:
                    os.close(src_dir)
            finally:
                if root is not None:
                    os.close(root_fd)
        raise LayerError(f"hardlink {member.name!r} to {member.linkname!r}, which no layer has")

    @staticmethod
    def _copy_from(src_dir: int, src: str, dst_dir: int, dst: str, st: os.stat_result) -> None:
        sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dst_dir)
        try:
            while os.sendfile(dfd, sfd, None, 1 << 24):
                pass
            os.fchown(dfd, st.st_uid, st.st_gid)
            os.fchmod(dfd, stat.S_IMODE(st.st_mode))
        finally:
            os.close(sfd)
            os.close(dfd)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    try:
        yield from tar
    except tarfile.TarError as exc:
        raise LayerError(f"not a valid tar: {exc}") from None


def unpack_layer(blob: Path, dest: Path, diff_id: str, media_type: str = "",
                 lowers: list[Path] | None = None) -> list[str]:
    """Unpack `blob` into the new directory `dest` (made here; removed again on any error).

    Returns the names of device nodes that were refused. Raises LayerError when the uncompressed
    bytes do not hash to `diff_id` or an entry is hostile.
    """
    algorithm, _, expected = diff_id.partition(":")
    os.mkdir(dest, 0o755)
    try:
        with open(blob, "rb") as raw:
            hashing = HashingReader(decompressed(raw, media_type), algorithm or "sha256")
            stream = io.BufferedReader(hashing, 1 << 20)  # type: ignore[type-var]  # typeshed wants readinto(Buffer)
            unpacker = _Unpacker(dest, lowers or [])
            try:
                with tarfile.open(fileobj=stream, mode="r|") as tar:
                    for member in _members(tar):
                        unpacker.entry(tar, member)
                while stream.read(1 << 20):  # the zero blocks after the end marker count too
                    pass
            finally:
                unpacker.close()
        if hashing.hash.hexdigest() != expected:
            raise LayerError(f"layer content does not match its diff_id {diff_id}")
        return unpacker.skipped_devices
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
