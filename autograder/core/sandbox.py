"""Run a submission's jobs in an isolated, resource-limited child process.

Isolation, strongest first (``isolation="auto"`` takes the first that works):

- ``bwrap``: the child (:mod:`autograder.core.child`) runs under bubblewrap: no
  network, a read-only system, and of the file system only Python, the venv
  (with any installed copy of solutions/ or the specs masked), a copy of the
  student-side grader code, a private copy of the submission and the jobs file;
  /tmp and /dev/shm are small RAM-backed tmpfs of their own.
- ``process``: a plain subprocess confined by Landlock (:mod:`autograder.core.landlock`)
  before any student code runs: it reads only the same paths, writes only a
  private folder, makes no TCP connection and can signal no process outside.
- ``none``: a plain subprocess with limits only, for code you trust; never chosen
  by ``auto``, which refuses to grade (:class:`IsolationUnavailable`) rather
  than run untrusted code unconfined.

Every run of a submission has a child of its own, never used before and never
again: its own sandbox, control group, limits and private folder (bound as
/submission and /jobs). To hide Python's and torch's start-up, children are
started ahead (:meth:`IsolatedExecutor.calls_ahead`): such a spare imports torch,
the student side of the grader and what the notebooks import, then waits on a
pipe, holding no submission; when the parent takes it for a run, it puts that
run's submission and jobs into the child's own folder and only then lets it go.
No process that ran student code is ever given another run.

Before the first submission, a probe child is started the same way and tries
to read solutions/, the specs and the repository and to write there; if it can,
grading is refused. The child's environment is a fixed allow-list.

The child reports only through a pipe, in framed messages of a fixed shape and
size (:mod:`autograder.core.channel`); the parent never reads a path the child
could choose. Memory (all the submission's processes and its tmpfs together)
and the number of processes are capped by a control group when one can be made
here (:mod:`autograder.core.cgroups`), else by polling the process tree; CPU
time, address space and file size by ``prlimit``; the wall time of loading and
of each exercise is watched from here.

When an exercise hangs or kills the child, that exercise fails and a new child
runs the exercises after it; when a statement of the submission hangs or kills
the child while loading, the statement is skipped (its names count as broken)
and loading starts again. So a timeout or a crash costs one exercise, never the
others, and never another student's grade.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import resource
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from autograder.core import cgroups, landlock
from autograder.core.channel import FrameReader, decode_plain, encode_plain
from autograder.core.drivers import to_plain
from autograder.core.runner import JobResult

PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent  # holds autograder/, course/
MAX_RELOADS = 8  # statements skipped at most while loading one submission
MAX_SPARES = 2  # children started ahead when more submissions are known to come
SHM_BYTES = 64 << 20  # the sandbox's /dev/shm
CHILD_ENV = {  # the child's whole environment: nothing of the grader's own
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MPLBACKEND": "Agg",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    "PYTHONNOUSERSITE": "1",
}


@dataclass(frozen=True)
class Limits:
    """Per-submission and per-exercise limits of the isolated child."""

    exercise_seconds: float = 60.0  # wall time of one exercise (all its cases)
    load_seconds: float = 90.0  # wall time of starting Python and loading the submission
    # wall time of all the exercises together: the worst case of one submission (each of
    # its exercises hanging); the reference's slowest chapter (09) takes about 11 s
    submission_seconds: float = 300.0
    cpu_seconds: int = 900  # CPU time of one child process
    memory_bytes: int = 4 << 30  # all of the submission's processes and its /tmp together
    processes: int = 64  # processes and threads of the submission at once
    file_bytes: int = 256 << 20  # largest file the child may write
    tmp_bytes: int = 512 << 20  # the child's /tmp (RAM under bubblewrap)
    result_bytes: int = 64 << 20  # one exercise's answers, as sent to the parent


# How the parent answers a child's question: (function name, args, kwargs) -> the answer.
Answer = Callable[[str, list[Any], dict[str, Any]], Any]


def _answering(answer: Answer, allowed: set[str]) -> Callable[[bytes], bytes]:
    """The parent's side of a question: only for the names offered, plain data both ways."""

    def reply(payload: bytes) -> bytes:
        name = "?"
        try:
            question = decode_plain(payload)
            name = str(question["name"])
            if name not in allowed or not isinstance(question["args"], list):
                raise ValueError("not a function offered to this exercise")
            value = answer(name, question["args"], dict(question["kwargs"]))
            return encode_plain({"value": to_plain(value)})
        except Exception as exc:  # noqa: BLE001 - the child is told, the parent goes on
            why = str(exc).splitlines()[0][:300] if str(exc) else ""
            return encode_plain(
                {"error": f"the reference's `{name}` gave no answer: {type(exc).__name__} {why}"}
            )

    return reply


class IsolationUnavailable(RuntimeError):
    """Student code cannot be isolated here; the message says why and what to do."""


class GradingCancelled(Exception):
    """:meth:`IsolatedExecutor.cancel` was called while this submission was graded."""


def _failure(exercise: str, message: str) -> JobResult:
    return JobResult(exercise=exercise, status="crashed", message=message, outputs=[], errors=[])


def stage_grader_code(dest: Path) -> Path:
    """Copy what the child needs (the student side of the grader, course helpers) to ``dest``.

    The chapter specs (they import solutions/) and solutions/ itself are left out.
    """
    src = PACKAGE_ROOT / "autograder"
    (dest / "autograder").mkdir(parents=True)
    for name in ("__init__.py", "selfcheck.py"):
        shutil.copy2(src / name, dest / "autograder" / name)
    for sub in ("core", "public"):
        shutil.copytree(
            src / sub, dest / "autograder" / sub, ignore=shutil.ignore_patterns("__pycache__")
        )
    (dest / "course").mkdir()
    for path in (PACKAGE_ROOT / "course").glob("*.py"):
        shutil.copy2(path, dest / "course" / path.name)
    return dest


def _secret_paths() -> list[Path]:
    """Where the answers live: the repository's solutions/ and specs, and any installed copy."""
    found = [PACKAGE_ROOT / "solutions", PACKAGE_ROOT / "autograder"]
    for prefix in _prefixes():
        for lib in Path(prefix).glob("lib*/python3*/site-packages"):
            found += [lib / "solutions", lib / "autograder", lib / "course"]
    return [p for p in found if p.exists()]


def _prefixes() -> list[str]:
    return sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), sys.prefix})


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _allowed_beneath(root: Path, hidden: list[Path]) -> list[str]:
    """``root``'s entries (recursively) that contain none of ``hidden``."""
    if any(_inside(root, h) for h in hidden):
        return []
    if not any(_inside(h, root) for h in hidden):
        return [str(root)]
    allowed: list[str] = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return allowed
    for entry in entries:
        allowed += _allowed_beneath(entry, hidden)
    return allowed


_SYSTEM_READ = ["/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc"]


def _system_binds(hidden: list[Path]) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for path in _SYSTEM_READ[1:]:
        args += ["--ro-bind-try", path, path]
    for prefix in _prefixes():
        args += ["--ro-bind", prefix, prefix]
    for secret in hidden:  # an installed copy of solutions/ or the specs: hidden by a tmpfs
        if any(_inside(secret, Path(p)) for p in _prefixes()) and secret.is_dir():
            args += ["--tmpfs", str(secret)]
    return args


@dataclass
class _Run:
    """The private folders of one child: its jobs, its copy of the submission, its work."""

    root: Path
    submission: Path
    jobs_file: Path
    work: Path


@dataclass
class _Child:
    """A started child and what the parent holds of it (a descriptor is None once closed)."""

    proc: subprocess.Popen
    run: _Run
    group: Any  # its control group, or None
    read_fd: int | None  # its frames
    answer_w: int | None  # the parent's answers to its questions
    go_w: int | None  # one byte lets it start
    stderr: _TailReader


class _Spawner(threading.Thread):
    """The one thread of an executor that starts children (see
    :meth:`IsolatedExecutor._spawn`); ``None`` on its queue ends it."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="llm-course-spawner")
        self.requests: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )

    def run(self) -> None:
        while (request := self.requests.get()) is not None:
            start, future = request
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(start())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for it
                future.set_exception(exc)


class _Pool:
    """An executor's spare children and its spawner thread (nothing of the executor, so
    that a forgotten executor's spares are killed when it is collected)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spares: list[Future[_Child]] = []
        self.spawner: _Spawner | None = None

    def submit(self, start: Callable[[], _Child]) -> Future[_Child]:
        future: Future[_Child] = Future()
        with self.lock:
            if self.spawner is None:
                self.spawner = _Spawner()
                self.spawner.start()
            self.spawner.requests.put((start, future))
        return future

    def drop(self) -> list[Future[_Child]]:
        with self.lock:
            spares, self.spares = self.spares, []
        return spares

    def shutdown(self) -> None:
        """Kill the spares and end the spawner thread."""
        for spare in self.drop():
            try:
                _discard_child(spare.result())
            except Exception:  # noqa: BLE001 - it never started
                pass
        with self.lock:
            spawner, self.spawner = self.spawner, None
        if spawner is not None:
            spawner.requests.put(None)


def _discard_child(child: _Child) -> None:
    """Kill a child and remove what it had: its folder, its group, the parent's pipe ends."""
    try:
        IsolatedExecutor._kill(child.proc, child.group)
        child.proc.wait()
    finally:
        for fd in (child.read_fd, child.answer_w, child.go_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        child.read_fd = child.answer_w = child.go_w = None
        child.stderr.join(timeout=5)
        if child.group is not None:
            child.group.remove()
        shutil.rmtree(child.run.root, ignore_errors=True)


def _safe_name(name: str) -> str:
    stem, suffix = os.path.splitext(name)
    stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", stem)[:100] or "submission"
    return stem + (suffix if suffix in (".ipynb", ".py") else ".ipynb")


def _bwrap_base(tmp_bytes: int) -> list[str]:
    """bubblewrap sharing nothing, with its own /proc, /dev and small RAM-backed /tmp, /dev/shm."""
    return [
        "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(SHM_BYTES),
        "--tmpfs",
        "/dev/shm",
        "--size",
        str(tmp_bytes),
        "--tmpfs",
        "/tmp",
    ]


def _bwrap_command(stage: Path, run: _Run, limits: Limits, hidden: list[Path]) -> list[str]:
    """The child under bubblewrap; of this run's folder it sees only the submission's
    folder and the jobs' folder (read-only) and its plan."""
    inner = f"/submission/{run.submission.name}"
    plan = run.root / "plan.json"
    plan.write_text(
        json.dumps({"submission": inner, "jobs_file": "/jobs/jobs.pt", "confine": None}),
        encoding="utf-8",
    )
    args = [
        *_bwrap_base(limits.tmp_bytes),
        "--new-session",
        *_system_binds(hidden),
        "--ro-bind",
        str(stage),
        "/grader",
        "--ro-bind",
        str(run.submission.parent),
        "/submission",
        "--ro-bind",
        str(run.jobs_file.parent),
        "/jobs",
        "--ro-bind",
        str(plan),
        "/plan.json",
        "--chdir",
        "/tmp",
        "--clearenv",
    ]
    env = {**CHILD_ENV, "HOME": "/tmp", "TMPDIR": "/tmp", "PYTHONPATH": "/grader"}
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [*args, sys.executable, "-s", "-m", "autograder.core.child", "/plan.json"]


def _confined_command(
    stage: Path, run: _Run, hidden: list[Path], landlock: bool = True
) -> list[str]:
    """The plain-subprocess child; with Landlock it may read only what grading needs."""
    read = [*_SYSTEM_READ, "/proc", "/sys/devices/system/cpu", "/dev/urandom", "/dev/random"]
    for prefix in _prefixes():
        read += _allowed_beneath(Path(prefix), hidden)
    read += [str(stage), str(run.submission.parent), str(run.jobs_file.parent)]
    plan = run.root / "plan.json"
    confine = {"read": read, "write": [str(run.work), "/dev/null", "/dev/zero"]}
    plan.write_text(
        json.dumps(
            {
                "submission": str(run.submission),
                "jobs_file": str(run.jobs_file),
                "confine": confine if landlock else None,
                "reap": True,  # no pid namespace: the child ends what the student left running
            }
        ),
        encoding="utf-8",
    )
    return [sys.executable, "-s", "-m", "autograder.core.child", str(plan)]


def _run_bwrap_probe(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=60, env=CHILD_ENV).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@lru_cache(maxsize=1)
def bwrap_works() -> bool:
    """Whether bubblewrap is installed and can start Python in a sandbox here."""
    return shutil.which("bwrap") is not None and _run_bwrap_probe(
        [*_bwrap_base(Limits().tmp_bytes), *_system_binds([]), sys.executable, "-c", "pass"]
    )


def landlock_works() -> bool:
    """Whether this kernel offers Landlock (the confinement without bubblewrap)."""
    return landlock.abi_version() >= 1


def _limit_wrapper(limits: Limits) -> list[str]:
    if shutil.which("prlimit") is None:
        return []
    return [
        "prlimit",
        f"--as={limits.memory_bytes}",
        f"--cpu={limits.cpu_seconds}",
        f"--fsize={limits.file_bytes}",
        "--core=0",
        "--",
    ]


def _set_limits(limits: Limits) -> None:  # pragma: no cover - runs in the forked child
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class _TailReader(threading.Thread):
    """Drains a pipe, keeping only its last few kilobytes (a 100 MB print costs nothing)."""

    def __init__(self, stream: Any, keep: int = 4096) -> None:
        super().__init__(daemon=True)
        self.stream, self.keep, self.tail = stream, keep, b""

    def run(self) -> None:
        while chunk := self.stream.read(65536):
            self.tail = (self.tail + chunk)[-self.keep :]

    def last_line(self) -> str:
        lines = self.tail.decode("utf-8", "replace").strip().splitlines()
        return lines[-1][:300] if lines else ""


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc (empty where /proc is absent)."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _session_members(sid: int) -> list[int]:
    """Processes whose process group or session is ``sid``."""
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if name.isdigit():
            try:
                if sid in (os.getpgid(int(name)), os.getsid(int(name))):
                    found.append(int(name))
            except OSError:
                pass
    return found


def _tmpfs_bytes(tree: list[int]) -> int:
    """The sandbox's /tmp and /dev/shm in use, seen through a sandboxed process's root."""
    try:
        ours = os.readlink("/proc/self/ns/mnt")
    except OSError:
        return 0
    for pid in tree:
        try:
            if os.readlink(f"/proc/{pid}/ns/mnt") == ours:
                continue
        except OSError:
            continue
        return sum(_used_bytes(f"/proc/{pid}/root{inner}") for inner in ("/tmp", "/dev/shm"))
    return 0


def _resident_bytes(pids: list[int]) -> int:
    """Memory of the processes, shared pages counted once (PSS; RSS where PSS is unknown)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                for line in f:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
            continue
        except (OSError, ValueError, IndexError):
            pass
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            pass
    return total


def _used_bytes(folder: str) -> int:
    try:
        st = os.statvfs(folder)
    except OSError:
        return 0
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _folder_bytes(folder: Path, cap: int = 20000) -> int:
    """Bytes of the files under ``folder`` (at most ``cap`` entries are looked at)."""
    total, seen = 0, 0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames:
            seen += 1
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
        seen += len(dirnames)
        if seen > cap:
            return 1 << 62
    return total


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _sha256(path: Path) -> str:
    """The hash of a regular file (never a FIFO or device, which could block)."""
    if not _is_regular(path):
        return ""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _probe_files(places: list[Path], per_folder: int = 4) -> list[Path]:
    """A few regular files in (or being) each of ``places``, for the probe to try."""
    files: list[Path] = []
    for place in places:
        if _is_regular(place):
            files.append(place)
            continue
        found = 0
        for dirpath, dirnames, filenames in os.walk(place):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))[:8]
            regular = [n for n in sorted(filenames) if _is_regular(Path(dirpath) / n)]
            for name in regular[:per_folder]:
                files.append(Path(dirpath) / name)
                found += 1
            if found >= per_folder:
                break
    return files


class IsolatedExecutor:
    """An executor (see :mod:`autograder.core.executors`) that isolates student code.

    ``protected`` are more paths the probe must find unreachable (the class's
    folder, the output folder); solutions/, the specs and the repository always are.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        isolation: str = "auto",
        protected: Sequence[str | Path] = (),
    ) -> None:
        if isolation not in ("auto", "bwrap", "process", "none"):
            raise ValueError(f"isolation must be auto, bwrap, process or none, got {isolation!r}")
        self.limits = limits or Limits()
        if isolation == "bwrap" and not bwrap_works():
            raise IsolationUnavailable("bubblewrap (bwrap) is not installed or cannot run here")
        if isolation == "process" and not landlock_works():
            raise IsolationUnavailable(
                "--isolation process confines student code with Linux's Landlock, which this "
                "system does not offer; install bubblewrap, or pass --isolation none to grade "
                "code you trust without isolation"
            )
        if isolation == "auto":
            if bwrap_works():
                isolation = "bwrap"
            elif landlock_works():
                isolation = "process"
            else:
                raise IsolationUnavailable(
                    "student code cannot be isolated here: bubblewrap cannot run and the kernel "
                    "has no Landlock, so a submission could read solutions/ and other students' "
                    "work. Grade on Linux with bubblewrap (apt-get install bubblewrap), or pass "
                    "--isolation none to grade code you trust without isolation."
                )
        self.mode = isolation
        self.warning = {
            "bwrap": "",
            "process": "bubblewrap is not available: student code runs in a subprocess "
            "confined by Landlock (its own files only, no TCP), without a network namespace "
            "of its own",
            "none": "student code runs without isolation (--isolation none): it can read "
            "solutions/ and any file this user can; use only for code you trust",
        }[isolation]
        self.protected = [Path(p).resolve() for p in protected]
        self._hidden = _secret_paths()
        self._stage_dir = tempfile.TemporaryDirectory(prefix="llm-course-stage-")
        self.stage = stage_grader_code(Path(self._stage_dir.name) / "grader")
        self._lock = threading.Lock()
        self._verified = isolation == "none"
        self._live: set[subprocess.Popen] = set()
        self._cancelled = threading.Event()
        self.use_cgroups = True  # tests turn it off to exercise the polling fallback
        # spare children started ahead of the runs; each waits, torch imported, for its
        # submission (:meth:`_take`); those left unused are killed by :meth:`close`
        self.warm = True
        self._ahead: int | None = None  # calls announced ahead (:meth:`calls_ahead`)
        self._callers = 0  # calls in progress
        self._pool = _Pool()
        weakref.finalize(self, self._pool.shutdown)

    # -- cancellation -------------------------------------------------------------------------

    def cancel(self) -> None:
        """Kill every running child; calls in progress and later raise :class:`GradingCancelled`."""
        self._cancelled.set()
        with self._lock:
            live = list(self._live)
        for proc in live:
            self._kill(proc)
        self.close()

    # -- the probe ----------------------------------------------------------------------------

    def verify(self) -> None:
        """Start a child as for grading; refuse to grade if it reaches a secret path.

        The probe reads the reference, the specs, the fixtures and files of the
        ``protected`` folders and sends back their hashes, which are compared here
        with the real files (a file of the same name in the sandbox is no leak);
        and it creates a file in each of those folders, looked for here.
        """
        with self._lock:
            if self._verified:
                return
            reads = _probe_files([*self._hidden, PACKAGE_ROOT, *self.protected])
            folders = [p for p in [*self._hidden, PACKAGE_ROOT, *self.protected] if p.is_dir()]
            token = secrets.token_hex(8)
            probe = {"read": [str(p) for p in reads], "write": [str(p) for p in folders]}
            probe["token"] = token
            with tempfile.TemporaryDirectory(prefix="llm-course-probe-") as tmp:
                run = self._prepare(Path(tmp), "probe.py", b"", [], [])
                cmd = self._command(run)
                plan_path = run.root / "plan.json"
                plan = json.loads(plan_path.read_text(encoding="utf-8"))
                plan["probe"] = probe
                plan_path.write_text(json.dumps(plan), encoding="utf-8")
                try:
                    done = subprocess.run(
                        [*cmd, "1"],
                        capture_output=True,
                        timeout=120,
                        env=self._child_env(run),
                        cwd=str(run.work),
                    )
                except (OSError, subprocess.SubprocessError) as exc:
                    raise IsolationUnavailable(f"the isolation probe did not run: {exc}") from None
            leaks = []
            for folder in folders:
                planted = folder / f".llm-course-probe-{token}"
                if planted.exists():
                    leaks.append(f"write in {folder}")
                    planted.unlink(missing_ok=True)
            lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
            if done.returncode != 0 or not lines:
                why = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
                raise IsolationUnavailable(
                    f"the {self.mode} isolation could not be set up here "
                    f"({'; '.join(why) or f'status {done.returncode}'}); refusing to run "
                    "student code"
                )
            report = json.loads(lines[-1])
            for path, digest in report.get("read", {}).items():
                if path in probe["read"] and digest == _sha256(Path(path)):
                    leaks.append(f"read {path}")
            if report.get("imported"):
                leaks.append(f"import solutions ({report['imported']})")
            if leaks:
                raise IsolationUnavailable(
                    f"the {self.mode} isolation leaks here, refusing to grade: a student's code "
                    "could " + "; ".join(leaks[:5])
                )
            self._verified = True
        self._keep_spares()  # the first submission's child starts now

    # -- one submission -----------------------------------------------------------------------

    @staticmethod
    def _layout(root: Path) -> _Run:
        """The private folders of one child, empty: its submission, its jobs, its work."""
        sub_dir, jobs_dir, work = root / "submission", root / "jobs", root / "work"
        for folder in (sub_dir, jobs_dir, work):
            folder.mkdir(exist_ok=True)
        return _Run(
            root=root,
            submission=sub_dir / "submission.ipynb",  # named when the submission arrives
            jobs_file=jobs_dir / "jobs.pt",
            work=work,
        )

    @staticmethod
    def _fill(
        run: _Run, name: str, data: bytes, jobs: list[dict[str, Any]], skip: list[str]
    ) -> None:
        """Put the submission (under a safe name) and the jobs into the child's folders."""
        run.submission = run.submission.parent / _safe_name(name)
        run.submission.write_bytes(data)
        torch.save({"jobs": jobs, "skip": skip}, run.jobs_file)

    def _prepare(
        self, root: Path, name: str, data: bytes, jobs: list[dict[str, Any]], skip: list[str]
    ) -> _Run:
        run = self._layout(root)
        self._fill(run, name, data, jobs, skip)
        return run

    def _child_env(self, run: _Run) -> dict[str, str]:
        """The environment a child starts with (bubblewrap then sets the sandbox's own)."""
        env = dict(CHILD_ENV)
        if self.mode != "bwrap":
            work = str(run.work)
            env.update(HOME=work, TMPDIR=work, PYTHONPATH=str(self.stage))
        return env

    def _command(self, run: _Run) -> list[str]:
        """The child's command line, the pipe's descriptor still to be appended."""
        wrapper = _limit_wrapper(self.limits)
        if self.mode == "bwrap":
            return [*wrapper, *_bwrap_command(self.stage, run, self.limits, self._hidden)]
        landlock = self.mode == "process"
        return [*wrapper, *_confined_command(self.stage, run, self._hidden, landlock)]

    # -- warm children ------------------------------------------------------------------------

    def _spawn(self) -> _Child:
        """Start a child in its own sandbox, control group and private folder, with no
        submission yet: it imports torch and the grader, then waits for :meth:`_go`.

        Runs in the spawner thread only (bubblewrap ends its child when the thread that
        started it ends, so that thread must outlive every child).
        """
        root = Path(tempfile.mkdtemp(prefix="llm-course-run-"))
        run = self._layout(root)
        group = (
            cgroups.create(self.limits.memory_bytes, self.limits.processes)
            if self.use_cgroups
            else None
        )
        read_fd, write_fd = os.pipe()  # frames, to the parent
        question_r, answer_w = os.pipe()  # the parent's answers, to the child
        go_r, go_w = os.pipe()  # one byte: the submission is in place
        ends = (write_fd, question_r, go_r)
        try:
            cmd = [*self._command(run), *map(str, ends)]
            if group is not None:
                cmd = group.join_command(cmd)
            extra: dict[str, Any] = {}
            if not _limit_wrapper(self.limits):
                extra["preexec_fn"] = lambda: _set_limits(self.limits)
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                pass_fds=ends,
                env=self._child_env(run),
                cwd=str(run.work),
                **extra,
            )
        except BaseException:
            for fd in (read_fd, answer_w, go_w):
                os.close(fd)
            if group is not None:
                group.remove()
            shutil.rmtree(root, ignore_errors=True)
            raise
        finally:
            for fd in ends:
                os.close(fd)
        with self._lock:
            self._live.add(proc)
        if self._cancelled.is_set():
            self._kill(proc)
        stderr = _TailReader(proc.stderr)
        stderr.start()
        return _Child(proc, run, group, read_fd, answer_w, go_w, stderr)

    def _take(self) -> _Child:
        """A started child no other run has used: a spare if one is alive, else a new one.

        Either way a spare is started for the next run, so that its start-up (Python,
        torch) overlaps the grading of this one.
        """
        child = None
        while child is None:
            if self._cancelled.is_set():
                raise GradingCancelled("grading was cancelled")
            with self._pool.lock:
                spare = self._pool.spares.pop(0) if self._pool.spares else None
            child = (spare or self._pool.submit(self._spawn)).result()
            if child.proc.poll() is not None:  # it died waiting: never give it work
                self._discard(child)
                child = None
        self._keep_spares()
        return child

    def _keep_spares(self) -> None:
        """Start spare children, one for each call in progress (at least one), or as many
        as :meth:`calls_ahead` announced (at most :data:`MAX_SPARES`), unless grading was
        cancelled or ``warm`` is off."""
        if not self.warm or self._cancelled.is_set() or not self._verified:
            return  # (verify() starts them once the probe has passed)
        with self._lock:
            wanted = max(1, self._callers)
            if self._ahead is not None:
                wanted = min(self._ahead, max(wanted, MAX_SPARES))
        with self._pool.lock:
            missing = wanted - len(self._pool.spares)
        for _ in range(missing):
            spare = self._pool.submit(self._spawn)
            with self._pool.lock:
                self._pool.spares.append(spare)

    def _discard(self, child: _Child) -> None:
        try:
            _discard_child(child)
        finally:
            with self._lock:
                self._live.discard(child.proc)

    def calls_ahead(self, count: int) -> None:
        """Say that ``count`` more calls will start after those in progress (a class's
        queue): up to :data:`MAX_SPARES` children, never more than ``count``, are started
        ahead for them (a call that needs another child, after a crash or for stand-ins,
        starts it). The spares already started are kept; :meth:`close` forgets the count."""
        with self._lock:
            self._ahead = max(0, count)
        self._keep_spares()

    def close(self) -> None:
        """Kill the spare children; the executor stays usable (later calls start new ones,
        and spares again)."""
        self._drop_spares()
        with self._lock:
            self._ahead = None

    def _drop_spares(self) -> None:
        for spare in self._pool.drop():
            try:
                child = spare.result()
            except Exception:  # noqa: BLE001 - it never started
                continue
            self._discard(child)

    answers_questions = True  # grading.py may pass ``answer`` (stand-ins for dependencies)

    def __call__(
        self, path: Path, jobs: list[dict[str, Any]], answer: Answer | None = None
    ) -> list[JobResult]:
        """Run ``jobs`` on the submission at ``path``; with ``answer``, the child may ask
        the parent for the answers of the functions its jobs name as ``stand_ins``."""
        if self._cancelled.is_set():
            raise GradingCancelled("grading was cancelled")
        if not self._verified:
            self.verify()
        with self._lock:
            self._callers += 1
        try:
            return self._grade(Path(path).read_bytes(), Path(path).name, jobs, answer)
        finally:
            with self._lock:
                self._callers -= 1

    def _grade(
        self, data: bytes, name: str, jobs: list[dict[str, Any]], answer: Answer | None
    ) -> list[JobResult]:
        results: dict[int, JobResult] = {}
        pending = list(range(len(jobs)))
        skip: list[str] = []
        deadline = time.monotonic() + self.limits.submission_seconds
        max_runs = len(jobs) + MAX_RELOADS + 2  # a child that keeps dying is not restarted forever
        for _ in range(max_runs):
            if not pending:
                break
            child = self._take()
            try:
                self._fill(child.run, name, data, [jobs[i] for i in pending], skip)
                outcome = self._supervise(child, [jobs[i] for i in pending], deadline, answer)
            finally:
                self._discard(child)
            if self._cancelled.is_set():
                raise GradingCancelled("grading was cancelled")
            for local, got in outcome["results"].items():
                results[pending[local]] = got
            if outcome["phase"] == "loading":  # died or hung while loading the submission
                key = outcome["loading"]
                if key is None or key in skip or len(skip) >= MAX_RELOADS or outcome["late"]:
                    why = f"loading the submission {outcome['why']}"
                    for i in pending:
                        results.setdefault(i, _failure(jobs[i]["exercise"], why))
                    break
                skip.append(key)
            elif outcome["phase"] == "job":
                failed = pending[outcome["job"]]
                results.setdefault(failed, _failure(jobs[failed]["exercise"], outcome["why"]))
            pending = [i for i in pending if i not in results]
            if outcome["late"]:
                for i in pending:
                    results[i] = _failure(
                        jobs[i]["exercise"],
                        f"not run: the submission used up its {self.limits.submission_seconds:g} s",
                    )
                break
        for i in range(len(jobs)):
            results.setdefault(
                i, _failure(jobs[i]["exercise"], "not run: the grading process kept ending early")
            )
        return [results[i] for i in range(len(jobs))]

    def _go(self, child: _Child, ask: bool) -> None:
        """Name the submission in the child's plan and let it start."""
        plan_path = child.run.root / "plan.json"
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
        plan["submission"] = str(Path(plan["submission"]).parent / child.run.submission.name)
        plan["ask"] = ask
        with open(plan_path, "w", encoding="utf-8") as f:  # the same file: it is bound as such
            f.write(json.dumps(plan))
        try:
            os.write(child.go_w, b"g")
        except OSError:
            pass  # it died waiting: its exit is seen and described as any other
        finally:
            os.close(child.go_w)
            child.go_w = None

    def _supervise(
        self,
        child: _Child,
        jobs: list[dict[str, Any]],
        deadline: float,
        answer: Answer | None = None,
    ) -> dict[str, Any]:
        """Give a child its jobs and watch it until it ends or overruns; say where it stopped
        and why."""
        count = len(jobs)
        allowed = {name for job in jobs for name in job.get("stand_ins", [])}
        asks = answer is not None and bool(allowed)
        proc, run, group = child.proc, child.run, child.group
        reader = FrameReader(
            child.read_fd,
            [(j["exercise"], len(j["cases"])) for j in jobs],
            self.limits.result_bytes,
            answer=_answering(answer, allowed) if asks and answer is not None else None,
            reply_fd=child.answer_w if asks else None,
        )
        child.read_fd = None  # the reader closes it
        self._go(child, asks)
        reader.start()
        stderr = child.stderr
        launched = time.monotonic()
        current, current_since, done_since, why, late = None, launched, None, "", False
        next_poll = launched
        try:
            while proc.poll() is None:
                time.sleep(0.02)
                now = time.monotonic()
                _, started, finished = reader.snapshot()
                if started != current:
                    current, current_since = started, now
                if reader.error:
                    why = reader.error
                elif finished >= count:  # all done: the child is exiting
                    done_since = done_since or now
                    if now - done_since < 5.0:
                        continue
                    why = "did not exit after its last exercise"
                elif current is None and now - launched > self.limits.load_seconds:
                    why = f"took longer than {self.limits.load_seconds:g} s"
                elif current is not None and now - current_since > self.limits.exercise_seconds:
                    why = (
                        f"took longer than {self.limits.exercise_seconds:g} s "
                        "(an endless loop, or far too slow)"
                    )
                elif now > deadline:
                    why, late = "was stopped: the submission ran out of time", True
                elif now >= next_poll:
                    next_poll = now + 0.1
                    why = self._over_limits(proc.pid, run, group)
                    if not why:
                        continue
                else:
                    continue
                self._kill(proc, group)
                break
            proc.wait()
        finally:
            self._kill(proc, group)
            reader.join(timeout=10)
            stderr.join(timeout=5)
        loading, started, _ = reader.snapshot()
        if reader.error and not why:
            why = reader.error
        if started is None:
            phase = "loading"
        elif started in reader.results:
            phase = "between"  # it ended after a finished job: nobody to charge
        else:
            phase = "job"
        if not why:
            why = self._describe_exit(proc.returncode, stderr.last_line(), group)
        return {
            "phase": phase,
            "job": started,
            "loading": loading,
            "why": why,
            "late": late,
            "results": dict(reader.results),
        }

    def _over_limits(self, pid: int, run: _Run, group: Any) -> str:
        """Whether the submission went over its memory or process cap.

        With a control group the kernel enforces both and its OOM killer stops one
        process; any OOM kill then ends the child, so the exercise fails even if
        the process killed was not the one answering. Without one, the whole
        process tree's memory and size are polled here.
        """
        if self.mode != "bwrap" and _folder_bytes(run.work) > self.limits.tmp_bytes:
            return f"the grading process wrote more than {self.limits.tmp_bytes >> 20} MiB of files"
        if group is not None:
            return self._memory_message() if group.oom_kills() > 0 else ""
        tree = process_tree(pid)
        if len(tree) > self.limits.processes:
            return f"started more than {self.limits.processes} processes"
        used = _resident_bytes(tree)
        if self.mode == "bwrap":
            used += _tmpfs_bytes(tree)
        if used > self.limits.memory_bytes:
            return self._memory_message()
        return ""

    def _memory_message(self) -> str:
        gib = self.limits.memory_bytes / (1 << 30)
        return (
            f"the grading process used more than {gib:g} GiB of memory "
            "(all of its processes and its /tmp together)"
        )

    def _describe_exit(self, code: int, last_line: str, group: Any = None) -> str:
        if group is not None and group.oom_kills() > 0:
            return self._memory_message()
        if group is not None and group.fork_refusals() > 0 and code != 0:
            return (
                f"the grading process tried to run more than {self.limits.processes} "
                "processes and threads, and then ended"
            )
        if self.mode == "bwrap" and 128 < code < 128 + 65:
            code = 128 - code  # bwrap reports a signal N of its child as 128 + N
        if code < 0:
            sig = signal.Signals(-code).name
            what = {
                "SIGXCPU": f"used more than {self.limits.cpu_seconds} s of CPU time",
                "SIGXFSZ": "wrote a file larger than the limit",
                "SIGKILL": "was killed (out of memory?)",
            }.get(sig, f"was killed by {sig}")
            return f"the grading process {what}"
        detail = f": {last_line}" if last_line else ""
        return f"the grading process exited (status {code}) while running this{detail}"

    @staticmethod
    def _kill(proc: subprocess.Popen, group: Any = None) -> None:
        """Kill the child, everything in its control group, and what it started in its session.

        A process group or session id stays reserved while any member lives, so after
        the child is reaped its id can only still name the submission's own processes.
        """
        if group is not None:
            group.kill_all()
        if proc.returncode is None:  # not reaped yet: its pid is still its own
            for pid in reversed(process_tree(proc.pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for pid in _session_members(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
