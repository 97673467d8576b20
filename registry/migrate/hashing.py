"""Checking a source blob's bytes against its digest before anything is adopted: streamed through the
hash in chunks (a layer may be gigabytes), in a worker thread so the event loop stays free."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from registry.digest import Digest

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Checked:
    """`size` when the bytes match the digest; else `problem` ("missing" or "corrupt") and why."""

    size: int | None
    problem: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


async def check_blob(path: Path, digest: Digest) -> Checked:
    return await asyncio.to_thread(_check, path, digest)


def _check(path: Path, digest: Digest) -> Checked:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return Checked(None, "missing", "no blob data for this digest (a dangling link)")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Checked(None, "corrupt", "the blob's data is a symbolic link")
        return Checked(None, "missing", f"the blob's data cannot be opened: {exc.strerror}")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return Checked(None, "corrupt", "the blob's data is not a regular file")
        hasher = digest.hasher()
        size = 0
        while chunk := os.read(fd, CHUNK_BYTES):
            hasher.update(chunk)
            size += len(chunk)
    except OSError as exc:
        return Checked(None, "corrupt", f"the blob's data cannot be read: {exc.strerror}")
    finally:
        os.close(fd)
    if hasher.hexdigest() != digest.hex:
        return Checked(None, "corrupt", f"its {size} bytes hash to {digest.algorithm}:{hasher.hexdigest()}")
    return Checked(size)


def read_verified(path: Path, digest: Digest, limit: int) -> bytes | Checked:
    """A small blob (a manifest) read whole, at most `limit` bytes, and verified; else what is wrong."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return Checked(None, "missing", "no blob data for this digest (a dangling link)")
    except OSError as exc:
        return Checked(None, "missing", f"the blob's data cannot be opened: {exc.strerror}")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return Checked(None, "corrupt", "the blob's data is not a regular file")
        if info.st_size > limit:
            return Checked(None, "corrupt", f"{info.st_size} bytes: larger than a manifest may be ({limit})")
        chunks = []
        size = 0
        while size <= limit and (chunk := os.read(fd, CHUNK_BYTES)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        return Checked(None, "corrupt", f"the blob's data cannot be read: {exc.strerror}")
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        return Checked(None, "corrupt", f"larger than a manifest may be ({limit} bytes)")
    hasher = digest.hasher()
    hasher.update(data)
    if hasher.hexdigest() != digest.hex:
        return Checked(None, "corrupt", f"its {len(data)} bytes hash to {digest.algorithm}:{hasher.hexdigest()}")
    return data
