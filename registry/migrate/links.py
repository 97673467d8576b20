"""Distribution's link files: a file whose whole content is a digest (`sha256:HEX`), nothing else.

The source is not trusted: a link file may be empty, huge, binary or truncated; each is refused with a
reason, never a traceback.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from registry.digest import Digest, parse_digest
from registry.errors import RegistryError

MAX_LINK_BYTES = 1024  # `sha512:` and 128 hex digits is 135 bytes


class BadLink(ValueError):
    """The link file cannot be read as a digest; the message says why."""


def parse_link(data: bytes) -> Digest:
    """The digest a link file's bytes name; surrounding ASCII whitespace is allowed (an editor's newline)."""
    if len(data) > MAX_LINK_BYTES:
        raise BadLink(f"link file is larger than {MAX_LINK_BYTES} bytes")
    try:
        text = data.decode("ascii").strip(" \t\r\n")
    except UnicodeDecodeError:
        raise BadLink("link file is not ASCII") from None
    if not text:
        raise BadLink("link file is empty")
    try:
        return parse_digest(text)
    except RegistryError as exc:
        raise BadLink(f"link file does not hold a digest ({exc.message}): {text[:80]!r}") from None


def read_link(path: Path) -> Digest:
    """Read and parse one link file; BadLink when it is missing, not a regular file or not a digest."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BadLink("link file is missing") from None
    except OSError as exc:
        raise BadLink(f"link file cannot be opened: {exc.strerror}") from None
    try:
        if not _is_regular(fd):
            raise BadLink("link is not a regular file")
        data = os.read(fd, MAX_LINK_BYTES + 1)
    except OSError as exc:
        raise BadLink(f"link file cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    return parse_link(data)


def _is_regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)
