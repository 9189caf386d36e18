"""Where student code runs: in this process (self-check) or in a child process (grading).

An executor maps (submission path, jobs) to job results. Both executors run
the same :func:`autograder.core.runner.run_jobs`; the subprocess one passes
plain data through files loaded with ``weights_only=True``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from autograder.core.runner import JobResult, run_jobs

Executor = Callable[[Path, list[dict[str, Any]]], list[JobResult]]


def in_process(path: Path, jobs: list[dict[str, Any]]) -> list[JobResult]:
    """Run the submission in this interpreter (the student's own self-check)."""
    return run_jobs(path, jobs)  # type: ignore[arg-type]


def _failed(jobs: list[dict[str, Any]], message: str) -> list[JobResult]:
    return [
        JobResult(exercise=j["exercise"], status="crashed", message=message, outputs=[], errors=[])
        for j in jobs
    ]


def subprocess_executor(timeout: float = 300.0) -> Executor:
    """Run the submission in a fresh Python process; a crash there costs only its jobs."""

    def run(path: Path, jobs: list[dict[str, Any]]) -> list[JobResult]:
        with tempfile.TemporaryDirectory(prefix="llm-course-") as tmp:
            jobs_in, results_out = Path(tmp) / "jobs.pt", Path(tmp) / "results.pt"
            torch.save(jobs, jobs_in)
            cmd = [sys.executable, "-m", "autograder.core.child", str(path), str(jobs_in)]
            try:
                proc = subprocess.run(
                    [*cmd, str(results_out)], capture_output=True, timeout=timeout, text=True
                )
            except subprocess.TimeoutExpired:
                return _failed(jobs, f"the submission ran longer than {timeout:g} s")
            if proc.returncode != 0 or not results_out.exists():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
                return _failed(
                    jobs, f"the submission's process died (exit {proc.returncode}) {tail[0]}"
                )
            return torch.load(results_out, weights_only=True)

    return run
