"""One control group per grading child: memory and process count capped for the whole tree.

A per-process address-space limit lets a submission fork three children of
1.4 GB each, or fill a RAM-backed /tmp; a control group counts everything the
submission's processes use together (their memory, the page cache and tmpfs
pages they wrote) and how many processes and threads they have. The kernel
enforces both: over the memory cap its OOM killer stops a process of the group,
over the process cap ``fork`` fails.

Both cgroup v1 (a ``memory`` and a ``pids`` hierarchy) and v2 (one unified
hierarchy with those controllers enabled) are used when this process may create
groups under its own; otherwise :func:`create` returns None and the caller falls
back to polling the process tree (see :mod:`autograder.core.sandbox`).
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")
_counter = itertools.count()


def _own_paths() -> dict[str, str]:
    """controller (``memory``, ``pids``, or ``""`` for v2) -> this process's group path."""
    paths: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _write(path: Path, value: str) -> None:
    path.write_text(value)


@dataclass
class ControlGroup:
    """A control group (one folder per hierarchy) that a child joins before it starts."""

    folders: list[Path]  # the group's folder in each hierarchy
    version: int
    memory: Path  # the folder with the memory controller's files
    pids: Path

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process writes its pid to, to join."""
        return [str(f / "cgroup.procs") for f in self.folders]

    def join_command(self, cmd: list[str]) -> list[str]:
        """``cmd`` run by a shell that first moves itself into the group (no race with fork)."""
        files = self.procs_files()
        script = (
            'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 97; shift; '
            'n=$((n - 1)); done; exec "$@"'
        )
        return ["/bin/sh", "-c", script, "sh", str(len(files)), *files, *cmd]

    def _count(self, name: str, key: str) -> int:
        try:
            for line in (
                (self.memory if name == "memory" else self.pids)
                .joinpath(self._events(name))
                .read_text()
                .splitlines()
            ):
                field, _, value = line.partition(" ")
                if field == key:
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def _events(self, name: str) -> str:
        if name == "memory":
            return "memory.events" if self.version == 2 else "memory.oom_control"
        return "pids.events"

    def oom_kills(self) -> int:
        """How many processes of the group the kernel killed for memory."""
        return self._count("memory", "oom_kill")

    def fork_refusals(self) -> int:
        """How many times a fork or thread start was refused at the process cap."""
        return self._count("pids", "max")

    def peak_memory(self) -> int:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int((self.memory / name).read_text().strip())
        except (OSError, ValueError):
            return 0

    def pids_inside(self) -> list[int]:
        found: set[int] = set()
        for folder in self.folders:
            try:
                found.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                pass
        return sorted(found)

    def kill_all(self, wait: float = 5.0) -> bool:
        """SIGKILL every process in the group until none is left; True when it is empty."""
        deadline = time.monotonic() + wait
        while True:
            pids = self.pids_inside()
            if not pids:
                return True
            if self.version == 2 and (self.folders[0] / "cgroup.kill").exists():
                try:
                    _write(self.folders[0] / "cgroup.kill", "1")
                except OSError:
                    pass
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is left and delete the group's folders."""
        self.kill_all()
        for folder in self.folders:
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def _make(folder: Path) -> Path:
    folder.mkdir()
    return folder


def create(memory_bytes: int, max_processes: int) -> ControlGroup | None:
    """A new group under this process's own, capped at ``memory_bytes`` (memory of all its
    processes, tmpfs included, no swap) and ``max_processes`` (processes and threads);
    None when control groups cannot be used here."""
    own = _own_paths()
    name = f"llm-course-{os.getpid()}-{next(_counter)}"
    made: list[Path] = []
    try:
        v1_memory, v1_pids = _ROOT / "memory", _ROOT / "pids"
        if "memory" in own and "pids" in own and v1_memory.is_dir() and v1_pids.is_dir():
            mem = _make(v1_memory / own["memory"].lstrip("/") / name)
            made.append(mem)
            pids = _make(v1_pids / own["pids"].lstrip("/") / name)
            made.append(pids)
            _write(mem / "memory.limit_in_bytes", str(memory_bytes))
            if (mem / "memory.memsw.limit_in_bytes").exists():
                _write(mem / "memory.memsw.limit_in_bytes", str(memory_bytes))
            _write(pids / "pids.max", str(max_processes))
            return ControlGroup(folders=made, version=1, memory=mem, pids=pids)
        if "" in own and (_ROOT / "cgroup.controllers").exists():
            parent = _ROOT / own[""].lstrip("/")
            enabled = (parent / "cgroup.subtree_control").read_text().split()
            if "memory" not in enabled or "pids" not in enabled:
                return None
            group = _make(parent / name)
            made.append(group)
            _write(group / "memory.max", str(memory_bytes))
            if (group / "memory.swap.max").exists():
                _write(group / "memory.swap.max", "0")
            _write(group / "pids.max", str(max_processes))
            return ControlGroup(folders=made, version=2, memory=group, pids=group)
    except OSError:
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                pass
    return None
