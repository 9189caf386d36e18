"""Read a submission safely: one regular file inside the student's folder, read once.

A student chooses what sits in their folder. A symbolic link there would make the
grader read whatever it points to (the reference solution, another student's
notebook), a FIFO would block the reader forever, a device like ``/dev/zero``
never ends. So :func:`read_submission` walks from a folder the instructor named
(the class folder) down to the file without following any symbolic link
(``O_NOFOLLOW`` on every step, each step opened relative to the one before),
refuses anything that is not a regular file before opening it, refuses files
larger than :data:`MAX_SUBMISSION_BYTES`, and reads the bytes once. The SHA-256
comes from those bytes, and :func:`private_copy` writes exactly those bytes to a
private folder for the grader, so what is hashed is what is graded, whatever
happens to the original file meanwhile.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MAX_SUBMISSION_BYTES = 20 * 1024 * 1024  # a chapter's notebook without outputs is < 1 MB

_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_NOCTTY = getattr(os, "O_NOCTTY", 0)


class Refused(Exception):
    """The file cannot be taken as a submission; the message says why, for the student."""


@dataclass(frozen=True)
class Taken:
    """A submission's bytes as read once, its file name and their SHA-256."""

    name: str
    data: bytes
    sha256: str


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _refuse_link(name: str, dir_fd: int) -> Refused:
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError:
        target = "?"
    return Refused(
        f"{name} is a symbolic link (to {target}), not a regular file: links are not "
        "followed; submit the file itself"
    )


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _walk(root: Path, parts: tuple[str, ...]) -> int:
    """A descriptor of ``root/parts...``; only ``root`` itself may be reached through a link."""
    fd = os.open(root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    try:
        for part in parts:
            st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise _refuse_link(part, fd)
            if not stat.S_ISDIR(st.st_mode):
                raise Refused(f"{part} is {_kind(st.st_mode)}, not a folder")
            inner = os.open(part, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read(fd: int, limit: int, name: str) -> bytes:
    chunks, total = [], 0
    while True:
        chunk = os.read(fd, min(1 << 20, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise Refused(
                f"{name} grew past {_size(limit)} while being read: the largest a submission may be"
            )


def read_submission(
    path: str | Path, root: str | Path | None = None, limit: int = MAX_SUBMISSION_BYTES
) -> Taken:
    """Read the regular file ``path`` once, without following links below ``root``.

    ``root`` is a folder the instructor named (a link to it is fine); every step
    from it to ``path`` must be a real folder and ``path`` a regular file of at
    most ``limit`` bytes. It defaults to the file's own folder. Never blocks on
    a FIFO or a device. Raises :class:`Refused` with the reason otherwise, and
    FileNotFoundError when the file is gone.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise Refused(f"{path} is not inside {root}") from None
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise Refused(f"{path}: not a file inside {root}")
    name = parts[-1]
    try:
        dir_fd = _walk(root, parts[:-1])
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise _refuse_link(name, dir_fd)
            if not stat.S_ISREG(st.st_mode):
                raise Refused(f"{name} is {_kind(st.st_mode)}, not a regular file")
            flags = os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_NOCTTY | _O_CLOEXEC
            fd = os.open(name, flags, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        try:
            st = os.fstat(fd)  # what was opened, which may not be what was looked at
            if not stat.S_ISREG(st.st_mode):
                raise Refused(f"{name} is {_kind(st.st_mode)}, not a regular file")
            if st.st_size > limit:
                raise Refused(
                    f"{name} is {_size(st.st_size)}, more than the {_size(limit)} a submission "
                    "may be (clear the notebook's outputs and save it again)"
                )
            data = _read(fd, limit, name)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise  # gone since it was listed: not the student's doing, so not a refusal
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a link between the look and the open
            raise Refused(f"{name} is a symbolic link, not a regular file") from None
        raise Refused(f"{path} cannot be read: {exc.strerror or exc}") from None
    return Taken(name=name, data=data, sha256=hashlib.sha256(data).hexdigest())


@contextmanager
def private_copy(taken: Taken) -> Iterator[Path]:
    """``taken``'s bytes in a fresh private folder, under the original file name."""
    with tempfile.TemporaryDirectory(prefix="llm-course-submission-") as tmp:
        copy = Path(tmp) / taken.name
        with open(copy, "xb") as f:
            f.write(taken.data)
        os.chmod(copy, 0o444)
        yield copy
