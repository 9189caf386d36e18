"""Where student code runs: in this process (self-check) or isolated (grading).

An executor maps (submission path, jobs) to job results. Both run the same
:func:`autograder.core.runner.run_jobs`: here :func:`in_process`, and
:class:`autograder.core.sandbox.IsolatedExecutor` for grading, which passes
plain data through files loaded with ``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from autograder.core.runner import JobResult, run_jobs

Executor = Callable[[Path, list[dict[str, Any]]], list[JobResult]]


def in_process(path: Path, jobs: list[dict[str, Any]]) -> list[JobResult]:
    """Run the submission in this interpreter (the student's own self-check)."""
    return run_jobs(path, jobs)  # type: ignore[arg-type]
