"""Docker's device rules on cgroup v2, where they are an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) attached to
the container's cgroup rather than a devices.allow file. The program is written out instruction by instruction."""

from __future__ import annotations

import ctypes
import os
import struct

from registry.runtime import syscalls as sc

TYPE_CHECKING = False  # typing costs milliseconds of every container start; annotations only
if TYPE_CHECKING:
    from collections.abc import Sequence

SYS_BPF = 321
BPF_PROG_LOAD, BPF_PROG_ATTACH = 5, 8
BPF_PROG_TYPE_CGROUP_DEVICE, BPF_CGROUP_DEVICE = 15, 6
BPF_F_ALLOW_MULTI = 2
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD = 1

# (type, major, minor) that may be opened; None is a wildcard. Any node may be created (mknod).
ALLOWED = [(DEV_CHAR, 1, 3), (DEV_CHAR, 1, 5), (DEV_CHAR, 1, 7), (DEV_CHAR, 1, 8), (DEV_CHAR, 1, 9),
           (DEV_CHAR, 5, 0), (DEV_CHAR, 5, 1), (DEV_CHAR, 5, 2), (DEV_CHAR, 136, None), (DEV_CHAR, 10, 200)]

_LDXW, _MOV_X, _MOV_K, _AND_K, _RSH_K, _JNE_K, _EXIT = 0x61, 0xBF, 0xB7, 0x57, 0x77, 0x55, 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def program(allowed: Sequence[tuple[int, int | None, int | None]] = ALLOWED) -> bytes:
    """r1 is struct bpf_cgroup_dev_ctx {u32 access_type (access << 16 | type); u32 major; u32 minor}."""
    code = [
        _insn(_LDXW, 2, 1, 0), _insn(_MOV_X, 3, 2), _insn(_AND_K, 2, imm=0xFFFF), _insn(_RSH_K, 3, imm=16),
        _insn(_LDXW, 4, 1, 4), _insn(_LDXW, 5, 1, 8),
        _insn(_JNE_K, 3, off=2, imm=ACC_MKNOD), _insn(_MOV_K, 0, imm=1), _insn(_EXIT),  # mknod alone: allowed
    ]
    for dev_type, major, minor in allowed:
        checks = [(2, dev_type)] + ([(4, major)] if major is not None else []) + ([(5, minor)] if minor is not None
                                                                               else [])
        for i, (reg, value) in enumerate(checks):  # a mismatch skips the rest of this rule
            code.append(_insn(_JNE_K, reg, off=len(checks) - i - 1 + 2, imm=value))
        code += [_insn(_MOV_K, 0, imm=1), _insn(_EXIT)]
    code += [_insn(_MOV_K, 0, imm=0), _insn(_EXIT)]
    return b"".join(code)


def _load(insns: ctypes.Array, license_: ctypes.Array, log: ctypes.Array | None) -> int:
    attr = ctypes.create_string_buffer(struct.pack(
        "<IIQQIIQII16sII", BPF_PROG_TYPE_CGROUP_DEVICE, len(insns.raw) // 8, ctypes.addressof(insns),
        ctypes.addressof(license_), 1 if log is not None else 0, len(log) if log is not None else 0,
        ctypes.addressof(log) if log is not None else 0, 0, 0, b"registry_dev", 0, BPF_CGROUP_DEVICE).ljust(128, b"\0"))
    return sc.syscall(SYS_BPF, BPF_PROG_LOAD, attr, ctypes.c_uint(len(attr.raw)))


def attach(cgroup_dir: str) -> None:
    """Load the program and attach it to a cgroup v2 directory (it stays until the cgroup is removed)."""
    insns = ctypes.create_string_buffer(program())
    license_ = ctypes.create_string_buffer(b"Apache-2.0")
    try:
        prog_fd = _load(insns, license_, None)
    except OSError as exc:
        log = ctypes.create_string_buffer(1 << 16)  # load again, only to get the verifier's reason
        try:
            _load(insns, license_, log)
        except OSError:
            pass
        raise OSError(exc.errno, f"loading the device filter: {exc.strerror}: {log.value.decode()[-500:]}") from None
    cgroup_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        attach_attr = ctypes.create_string_buffer(
            struct.pack("<IIII", cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI).ljust(128, b"\0"))
        sc.syscall(SYS_BPF, BPF_PROG_ATTACH, attach_attr, ctypes.c_uint(len(attach_attr.raw)))
    finally:
        os.close(cgroup_fd)
        os.close(prog_fd)
