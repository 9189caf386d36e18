"""Confine this process's file system and network access with Linux's Landlock.

Used by the grading child when bubblewrap cannot run (``--isolation process``):
before any student code is loaded, :func:`restrict` leaves the process able to
read only the paths it is given (Python, the system libraries, the staged
grader code, the submission), write only the ones it is given (a private
temporary folder), make no TCP connection, and signal or trace no process
outside itself. Landlock is unprivileged, applies to root as well, and cannot
be undone by the process or its children.

Only the standard library is used (``ctypes`` system calls), so the check of
whether it works (:func:`abi_version`) costs nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform

_SYSCALLS = {  # (create_ruleset, add_rule, restrict_self): the same on every architecture
    "x86_64": (444, 445, 446),
    "aarch64": (444, 445, 446),
}
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2
_PR_SET_NO_NEW_PRIVS = 38

# Access rights for files (ABI 1 to 5), by the ABI that introduced them.
_FS_ABI1 = (1 << 13) - 1  # execute, write, read file, read dir, remove, make ...
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
_READ = (1 << 0) | (1 << 2) | (1 << 3)  # execute, read file, read dir
_FILE_ONLY = (1 << 0) | (1 << 1) | (1 << 2) | _FS_TRUNCATE | _FS_IOCTL_DEV
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2  # ABI 4
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2  # ABI 6


class LandlockUnavailable(OSError):
    """This kernel (or architecture, or container) does not offer Landlock."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """Landlock's ABI version here, or 0 when it is not available."""
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None or platform.system() != "Linux":
        return 0
    libc = _libc()
    version = libc.syscall(numbers[0], None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(int(version), 0)


def _fs_rights(abi: int) -> int:
    rights = _FS_ABI1
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


def restrict(read: list[str], write: list[str]) -> int:
    """Allow only reading ``read`` and reading and writing ``write``; return the ABI used.

    Paths that do not exist are skipped. Raises :class:`LandlockUnavailable` when
    the kernel cannot do it: the caller must then not run untrusted code.
    """
    abi = abi_version()
    if abi < 1:
        raise LandlockUnavailable("Landlock is not available on this system")
    create, add_rule, restrict_self = _SYSCALLS[platform.machine()]
    libc = _libc()
    handled = _fs_rights(abi)
    attr = _RulesetAttr(handled_access_fs=handled)
    size = ctypes.sizeof(ctypes.c_uint64)  # ABI 1-3: only the file system field
    if abi >= 4:
        attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP
        size = 2 * ctypes.sizeof(ctypes.c_uint64)
    if abi >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL
        size = ctypes.sizeof(_RulesetAttr)
    ruleset = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        raise LandlockUnavailable(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        for paths, rights in ((read, _READ), (write, handled)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    allowed = rights if os.path.isdir(path) else rights & _FILE_ONLY
                    rule = _PathBeneath(allowed_access=allowed & handled, parent_fd=fd)
                    if libc.syscall(add_rule, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0):
                        err = os.strerror(ctypes.get_errno())
                        raise LandlockUnavailable(f"landlock_add_rule({path}): {err}")
                finally:
                    os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
            raise LandlockUnavailable(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
        if libc.syscall(restrict_self, ruleset, 0):
            err = os.strerror(ctypes.get_errno())
            raise LandlockUnavailable(f"landlock_restrict_self: {err}")
    finally:
        os.close(ruleset)
    return abi
