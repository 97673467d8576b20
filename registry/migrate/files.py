"""Writing a file durably and all at once: a temporary file in the same directory, fsynced, renamed into
place, then the directory fsynced. A crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from registry.storage.filesystem import fsync_directory


class StagedFile:
    """`with StagedFile(path) as out: out.write(...)`; in place only when the block ends without error."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.temporary = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")
        self._fd = -1

    def __enter__(self) -> StagedFile:
        self._fd = os.open(self.temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        return self

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def __exit__(self, kind: object, *rest: object) -> None:
        try:
            if kind is None:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
        if kind is not None:
            self.temporary.unlink(missing_ok=True)
            return
        os.rename(self.temporary, self.final)
        fsync_directory(self.final.parent)


def write_file(final: Path, data: bytes) -> None:
    with StagedFile(final) as out:
        out.write(data)
