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


def in_process_answering(
    path: Path, jobs: list[dict[str, Any]], answer: Any = None
) -> list[JobResult]:
    """In this interpreter, with stand-ins answered by calling ``answer`` directly.

    For tests only, where the reference is importable anyway: the isolated executor
    relays the same questions to the parent instead (see grading.grade_with_stand_ins).
    """
    return run_jobs(path, jobs, ask=answer)  # type: ignore[arg-type]


in_process_answering.answers_questions = True  # type: ignore[attr-defined]
