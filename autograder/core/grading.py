"""Grade one submission against the reference on fresh seeds (the instructor's side)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from autograder.core.chapters import ChapterInfo, load_spec
from autograder.core.evaluate import ExerciseResult, evaluate
from autograder.core.executors import Executor
from autograder.core.materialize import (
    GRADING_SEED,
    MaterializedChapter,
    jobs_for,
    materialize,
    selected,
)


@lru_cache(maxsize=16)
def expectations(info: ChapterInfo, seed: int = GRADING_SEED) -> MaterializedChapter:
    """The chapter's grading cases and answers, computed once per process from solutions/."""
    return materialize(load_spec(info), seed)


def grade_submission(
    path: str | Path,
    info: ChapterInfo,
    executor: Executor | None = None,
    seed: int = GRADING_SEED,
    only: list[str] | None = None,
) -> list[ExerciseResult]:
    """Points per exercise for the submission at ``path``; never raises for student faults.

    ``only`` grades just the exercises it names (the others are not run at all).
    """
    chapter = expectations(info, seed)
    if executor is None:
        from autograder.core.sandbox import IsolatedExecutor

        executor = IsolatedExecutor()
    run = executor
    return evaluate(selected(chapter, only), run(Path(path), jobs_for(chapter, only)))
