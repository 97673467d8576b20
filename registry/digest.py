"""Digests: parsing and validation by the OCI grammar, and streaming hashers."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from registry.errors import RegistryError

# algorithm -> length of its lowercase hex encoding
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
DEFAULT_ALGORITHM = "sha256"

_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def parse_digest(value: str) -> Digest:
    """Parse `algorithm:hex`, raising DIGEST_INVALID for anything malformed or unsupported."""
    if not value or len(value) > 256 or not _GRAMMAR.fullmatch(value):
        raise RegistryError("DIGEST_INVALID", "invalid digest format", detail={"digest": value[:256]})
    algorithm, _, encoded = value.partition(":")
    expected_length = ALGORITHMS.get(algorithm)
    if expected_length is None:
        raise RegistryError("DIGEST_INVALID", f"unsupported digest algorithm {algorithm!r}", detail={"digest": value})
    if len(encoded) != expected_length or not all(c in "0123456789abcdef" for c in encoded):
        raise RegistryError("DIGEST_INVALID", f"invalid {algorithm} digest", detail={"digest": value})
    return Digest(algorithm, encoded)


def is_digest(value: str) -> bool:
    return ":" in value


def digest_bytes(data: bytes, algorithm: str = DEFAULT_ALGORITHM) -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
