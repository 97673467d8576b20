"""Parse time of the one manifest reader (registry/manifest.py parse_manifest) on a typical 2 KB image
manifest and a 300 KB index, and on the refusals that used to cost a 500 (nested 10,000 deep, a
5,000-digit number).

    .venv/bin/python bench/manifest_reader.py                       # this checkout
    .venv/bin/python bench/manifest_reader.py --compare /work/main  # and another one (e.g. before a change)

CPU time of the process (not wall time: the machines are shared), in microseconds per parse: the
median of the rounds. With --compare, the rounds of the two checkouts alternate (one subprocess per
round and checkout), and the table shows both and their ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def typical_manifest() -> bytes:
    """An OCI image manifest of about 2 KB: config, 9 layers, a few annotations (pretty-printed, as
    buildkit writes them)."""
    document: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest("config"),
                   "size": 7023},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _digest(f"layer{i}"),
                    "size": 32654 * (i + 1)} for i in range(9)],
        "annotations": {"org.opencontainers.image.created": "2026-12-06T10:00:00Z",
                        "org.opencontainers.image.source": "https://example.com/project.git",
                        "org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567"},
    }
    return json.dumps(document, indent=3).encode()


def large_index(target: int = 300_000) -> bytes:
    """An OCI index of about 300 KB: many platform entries with annotations (attestation-style)."""
    manifests = []
    i = 0
    while True:
        manifests.append({
            "mediaType": OCI_MANIFEST, "digest": _digest(f"child{i}"), "size": 1000 + i,
            "platform": {"architecture": ["amd64", "arm64", "s390x", "ppc64le"][i % 4], "os": "linux",
                         **({"variant": "v8"} if i % 4 == 1 else {})},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                            "vnd.docker.reference.digest": _digest(f"ref{i}")},
        })
        i += 1
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
        if len(body) >= target:
            return body


def nested(depth: int = 10_000) -> bytes:
    return b'{"schemaVersion": 2, "x": ' + b"[" * depth + b"]" * depth + b"}"


def long_number(digits: int = 5_000) -> bytes:
    return b'{"schemaVersion": 2, "x": ' + b"7" * digits + b"}"


CASES = ["typical manifest", "large index", "nested 10,000 deep", "5,000-digit number"]


def one_round(checkout: Path) -> dict[str, float]:
    """Microseconds of CPU per parse of each case, by `checkout`'s registry.manifest (in this process)."""
    sys.path.insert(0, str(checkout.resolve()))
    from registry.manifest import parse_manifest  # noqa: E402  (from the checkout asked for)

    def attempt(payload: bytes, media_type: str) -> None:
        try:
            parse_manifest(payload, media_type)
        except Exception:  # noqa: BLE001  (a refusal is timed too: 400 now, 500 before)
            pass

    payloads = [typical_manifest(), large_index(), nested(), long_number()]
    media_types = [OCI_MANIFEST, OCI_INDEX, OCI_MANIFEST, OCI_MANIFEST]
    result = {}
    for label, payload, media_type in zip(CASES, payloads, media_types):
        timer = timeit.Timer(lambda: attempt(payload, media_type), timer=time.process_time)
        number = max(1, int(0.3 / max(timer.timeit(3) / 3, 1e-7)))  # about 0.3 s of CPU
        result[label] = timer.timeit(number) / number * 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = Path(__file__).resolve().parents[1]
    parser.add_argument("--checkout", type=Path, default=here, help="the checkout to time (default: this one)")
    parser.add_argument("--compare", type=Path, help="another checkout, timed in alternate rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--one-round", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_round:
        print(json.dumps(one_round(args.checkout)))
        return
    checkouts = [args.checkout] + ([args.compare] if args.compare else [])
    rounds: dict[Path, list[dict[str, float]]] = {c: [] for c in checkouts}
    for _ in range(args.rounds):
        for checkout in checkouts:
            out = subprocess.run([sys.executable, __file__, "--one-round", "--checkout", str(checkout)],
                                 check=True, capture_output=True, text=True).stdout
            rounds[checkout].append(json.loads(out))
    sizes = dict(zip(CASES, map(len, [typical_manifest(), large_index(), nested(), long_number()])))
    header = f"{'case':20} {'bytes':>8}" + "".join(f" {str(c)[-24:]:>26}" for c in checkouts)
    print(header + ("   ratio" if args.compare else "") + f"   (us CPU per parse, median of {args.rounds})")
    for label in CASES:
        medians = [statistics.median(r[label] for r in rounds[c]) for c in checkouts]
        line = f"{label:20} {sizes[label]:>8}" + "".join(f" {m:26.1f}" for m in medians)
        print(line + (f"   {medians[0] / medians[1]:5.2f}" if args.compare else ""))


if __name__ == "__main__":
    main()
