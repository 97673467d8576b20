"""Capabilities, no_new_privs, seccomp and rlimits for the container process, in the order the kernel needs.

The order matters: drop the bounding set while CAP_SETPCAP is still held, change user, set the
capability sets, then no_new_privs, and seccomp last (it may forbid the calls before it).
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource

from registry.runtime import syscalls as sc

# Docker's default capability set.
DEFAULT_CAPS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
    "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13,
    "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31,
}
DEFAULT_CAP_MASK = sum(1 << bit for bit in DEFAULT_CAPS.values())  # 0xa80425fb

_CAP_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def drop_bounding_set(keep: int = DEFAULT_CAP_MASK) -> None:
    for cap in range(_last_cap() + 1):
        if not keep & (1 << cap):
            sc.prctl(sc.PR_CAPBSET_DROP, cap)


def set_capabilities(mask: int) -> None:
    """Effective = permitted = mask; inheritable and ambient empty."""
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        word = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = word
        data[i].inheritable = 0
    sc.syscall(sc.SYS_CAPSET, ctypes.byref(header), ctypes.byref(data))
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)


def set_no_new_privs() -> None:
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)


# -- seccomp ---------------------------------------------------------------------------------
# A deny list after Docker's default profile: calls that reach the kernel's global state (modules,
# clocks, mounts, namespaces, keyrings, kexec, bpf, io_uring, ...). x32 and foreign arches are refused.
DENIED_SYSCALLS = {
    "syslog": 103, "uselib": 134, "ustat": 136, "sysfs": 139, "vhangup": 153, "pivot_root": 155, "_sysctl": 156,
    "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169,
    "iopl": 172, "ioperm": 173, "create_module": 174, "init_module": 175, "delete_module": 176,
    "get_kernel_syms": 177, "query_module": 178, "quotactl": 179, "nfsservctl": 180, "getpmsg": 181,
    "putpmsg": 182, "afs_syscall": 183, "tuxcall": 184, "security": 185, "lookup_dcookie": 212,
    "clock_settime": 227, "vserver": 236, "mbind": 237, "set_mempolicy": 238, "get_mempolicy": 239,
    "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272, "move_pages": 279,
    "perf_event_open": 298, "name_to_handle_at": 303, "open_by_handle_at": 304, "clock_adjtime": 305,
    "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "mount_setattr": 442,
}
_SYS_CLONE = 56
_SYS_CLONE3 = 435
_NAMESPACE_FLAGS = (sc.CLONE_NEWNS | sc.CLONE_NEWCGROUP | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWUSER
                    | sc.CLONE_NEWPID | sc.CLONE_NEWNET)
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000

_LD_ABS_W, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW, _RET_KILL_PROCESS, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def seccomp_program(denied: list[int] | None = None) -> list[tuple[int, int, int, int]]:
    """The BPF program as (code, jt, jf, k): refused calls get EPERM, clone3 ENOSYS (so libc falls
    back to clone, whose namespace flags are checked), clone with namespace flags EPERM."""
    numbers = sorted(set(denied if denied is not None else DENIED_SYSCALLS.values()))
    n = len(numbers)
    allow, eperm, enosys = 9 + n, 10 + n, 11 + n  # indexes of the three return instructions

    def to(target: int, at: int) -> int:
        return target - at - 1

    prog: list[tuple[int, int, int, int]] = [
        (_LD_ABS_W, 0, 0, 4),                      # 0: arch
        (_JEQ, 1, 0, _AUDIT_ARCH_X86_64),          # 1
        (_RET, 0, 0, _RET_KILL_PROCESS),           # 2
        (_LD_ABS_W, 0, 0, 0),                      # 3: syscall number
        (_JGE, to(eperm, 4), 0, _X32_BIT),         # 4
    ]
    for i, number in enumerate(numbers):
        at = 5 + i
        prog.append((_JEQ, to(eperm, at), 0, number))
    prog.append((_JEQ, to(enosys, 5 + n), 0, _SYS_CLONE3))
    prog.append((_JEQ, 0, to(allow, 6 + n), _SYS_CLONE))
    prog.append((_LD_ABS_W, 0, 0, 16))            # clone's flags (low word of args[0])
    prog.append((_JSET, to(eperm, 8 + n), to(allow, 8 + n), _NAMESPACE_FLAGS))
    prog.append((_RET, 0, 0, _RET_ALLOW))
    prog.append((_RET, 0, 0, _RET_ERRNO | errno.EPERM))
    prog.append((_RET, 0, 0, _RET_ERRNO | errno.ENOSYS))
    assert len(prog) == 12 + n
    return prog


def install_seccomp() -> None:
    prog = seccomp_program()
    filters = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), filters)
    sc.prctl(sc.PR_SET_SECCOMP, 2, ctypes.addressof(fprog))


# -- rlimits ---------------------------------------------------------------------------------
def set_rlimits() -> None:
    """Docker's defaults for open files: a soft 1024 that programs may raise."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard if hard != resource.RLIM_INFINITY and hard < 524288
                                                else 524288))


def drop_privileges(uid: int, gid: int, groups: list[int], caps: int = DEFAULT_CAP_MASK) -> None:
    """Bounding set, user, capability sets, no_new_privs, seccomp: the last steps before execve."""
    set_rlimits()
    drop_bounding_set(caps)
    os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # a non-root uid loses every capability here, as with Docker
    set_capabilities(caps if uid == 0 else 0)
    set_no_new_privs()
    install_seccomp()
