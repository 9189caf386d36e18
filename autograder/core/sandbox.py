"""Run a submission's jobs in an isolated, resource-limited child process.

The child (:mod:`autograder.core.child`) runs under bubblewrap when it works
here: no network, a read-only system, and of the file system only Python, the
venv, a copy of the student-side grader code (no specs, no solutions/), the
submission itself (read-only) and an empty folder for its answers. Address
space, CPU time and file size are limited with ``prlimit``; the wall time of
loading and of each exercise is watched from here.

When an exercise hangs or kills the child, that exercise fails and a new child
runs the exercises after it; when a statement of the submission hangs or kills
the child while loading, the statement is skipped (its names count as broken)
and loading starts again. So a timeout or a crash costs one exercise, never the
others, and never another student's grade.

Without bubblewrap (a student's macOS laptop), or where it cannot run, the
child is a plain subprocess with the same limits, and ``warning`` says so.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from autograder.core.runner import JobResult

PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent  # holds autograder/, course/
MAX_RELOADS = 8  # statements skipped at most while loading one submission


@dataclass(frozen=True)
class Limits:
    """Per-submission and per-exercise limits of the isolated child."""

    exercise_seconds: float = 60.0  # wall time of one exercise (all its cases)
    load_seconds: float = 90.0  # wall time of starting Python and loading the submission
    submission_seconds: float = 900.0  # wall time of all the exercises together
    cpu_seconds: int = 900  # CPU time of one child process
    memory_bytes: int = 4 << 30  # address space of the child (torch alone maps ~1 GB)
    file_bytes: int = 256 << 20  # largest file the child may write


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


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for path in ("/bin", "/lib", "/lib64", "/sbin", "/etc"):
        args += ["--ro-bind-try", path, path]
    for prefix in {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), sys.prefix}:
        args += ["--ro-bind", prefix, prefix]
    return args


def _bwrap_command(stage: Path, submission: Path, jobs: Path, out: Path) -> list[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "PYTHONPATH": "/grader",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }
    args = [
        "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        *_system_binds(),
        "--ro-bind",
        str(stage),
        "/grader",
        "--ro-bind",
        str(submission),
        f"/submission/{submission.name}",
        "--ro-bind",
        str(jobs),
        "/jobs/jobs.pt",
        "--bind",
        str(out),
        "/out",
        "--chdir",
        "/tmp",
        "--clearenv",
    ]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [
        *args,
        sys.executable,
        "-s",
        "-m",
        "autograder.core.child",
        f"/submission/{submission.name}",
        "/jobs/jobs.pt",
        "/out",
    ]


@lru_cache(maxsize=1)
def bwrap_works() -> bool:
    """Whether bubblewrap is installed and can start Python in a sandbox here."""
    if shutil.which("bwrap") is None:
        return False
    cmd = [
        "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        *_system_binds(),
        sys.executable,
        "-c",
        "pass",
    ]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


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


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _started(out: Path) -> int | None:
    text = _read_text(out / "started")
    return int(text) if text and text.strip().isdigit() else None


def _load_result(path: Path, exercise: str) -> JobResult | None:
    """A child's result, loaded safely and checked for shape; None if absent or forged."""
    if not path.exists():
        return None
    try:
        result = torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 - whatever the file holds, it is not a result
        return _failure(exercise, "the grading process left an unreadable result")
    keys = {"exercise", "status", "message", "outputs", "errors"}
    if not isinstance(result, dict) or set(result) != keys or result["exercise"] != exercise:
        return _failure(exercise, "the grading process left a malformed result")
    return result  # type: ignore[return-value]


class IsolatedExecutor:
    """An executor (see :mod:`autograder.core.executors`) that isolates student code."""

    def __init__(self, limits: Limits | None = None, isolation: str = "auto") -> None:
        if isolation not in ("auto", "bwrap", "process"):
            raise ValueError(f"isolation must be auto, bwrap or process, got {isolation!r}")
        self.limits = limits or Limits()
        use_bwrap = isolation == "bwrap" or (isolation == "auto" and bwrap_works())
        if isolation == "bwrap" and not bwrap_works():
            raise RuntimeError("bubblewrap (bwrap) is not installed or cannot run here")
        self.mode = "bwrap" if use_bwrap else "process"
        self.warning = (
            ""
            if use_bwrap
            else "bubblewrap is not available: student code runs in a plain subprocess with "
            "resource limits but can read any file this user can (not safe for grading "
            "untrusted work)"
        )
        self._stage_dir = tempfile.TemporaryDirectory(prefix="llm-course-stage-")
        self.stage = stage_grader_code(Path(self._stage_dir.name) / "grader")

    def _command(self, submission: Path, jobs: Path, out: Path) -> tuple[list[str], dict]:
        wrapper = _limit_wrapper(self.limits)
        if self.mode == "bwrap":
            return [*wrapper, *_bwrap_command(self.stage, submission, jobs, out)], {}
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(out),
            "PYTHONPATH": str(self.stage),
            "OMP_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            "PYTHONHASHSEED": "0",
        }
        cmd = [
            *wrapper,
            sys.executable,
            "-s",
            "-m",
            "autograder.core.child",
            str(submission),
            str(jobs),
            str(out),
        ]
        extra: dict[str, Any] = {"env": env, "cwd": str(out)}
        if not wrapper:
            extra["preexec_fn"] = lambda: _set_limits(self.limits)
        return cmd, extra

    def __call__(self, path: Path, jobs: list[dict[str, Any]]) -> list[JobResult]:
        path = Path(path).resolve()
        results: dict[int, JobResult] = {}
        pending = list(range(len(jobs)))
        skip: list[str] = []
        deadline = time.monotonic() + self.limits.submission_seconds
        with tempfile.TemporaryDirectory(prefix="llm-course-run-") as tmp:
            run = 0
            while pending:
                run += 1
                out, jobs_dir = Path(tmp) / f"out{run}", Path(tmp) / f"jobs{run}"
                out.mkdir()
                jobs_dir.mkdir()
                torch.save({"jobs": [jobs[i] for i in pending], "skip": skip}, jobs_dir / "jobs.pt")
                outcome = self._supervise(path, jobs_dir / "jobs.pt", out, len(pending), deadline)
                for local, i in enumerate(pending):
                    got = _load_result(out / f"result_{local}.pt", jobs[i]["exercise"])
                    if got is not None:
                        results[i] = got
                if outcome["phase"] == "loading":  # died or hung while loading the submission
                    key = outcome["loading"]
                    if key is None or key in skip or len(skip) >= MAX_RELOADS or outcome["late"]:
                        for i in pending:
                            results.setdefault(
                                i,
                                _failure(
                                    jobs[i]["exercise"], f"loading the submission {outcome['why']}"
                                ),
                            )
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
                            "not run: the submission "
                            f"used up its {self.limits.submission_seconds:g} s",
                        )
                    break
        return [results[i] for i in range(len(jobs))]

    def _supervise(
        self, submission: Path, jobs: Path, out: Path, count: int, deadline: float
    ) -> dict[str, Any]:
        """Run one child until it ends or overruns; say where it stopped and why."""
        cmd, extra = self._command(submission, jobs, out)
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            **extra,
        )
        stderr = _TailReader(proc.stderr)
        stderr.start()
        launched = time.monotonic()
        current, current_since, done_since, why, late = None, launched, None, "", False
        while proc.poll() is None:
            time.sleep(0.02)
            now = time.monotonic()
            started = _started(out)
            if started != current:
                current, current_since = started, now
            if (out / f"result_{count - 1}.pt").exists():  # all done: the child is exiting
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
            else:
                continue
            self._kill(proc)
            break
        proc.wait()
        stderr.join(timeout=5)
        started = _started(out)
        if started is None:
            phase = "loading"
        elif (out / f"result_{started}.pt").exists():
            phase = "between"  # it ended after a finished job: nobody to charge
        else:
            phase = "job"
        if not why:
            why = self._describe_exit(proc.returncode, stderr.last_line())
        return {
            "phase": phase,
            "job": started,
            "loading": _read_text(out / "loading"),
            "why": why,
            "late": late,
        }

    def _describe_exit(self, code: int, last_line: str) -> str:
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
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
