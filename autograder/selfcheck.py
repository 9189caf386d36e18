"""The student's self-check: run your code on the committed fixtures and say what is wrong.

In a notebook::

    from autograder.selfcheck import check
    check("01", scaled_dot_product_attention)

From a shell: ``llm-course check 01 --notebook course/01_attention.ipynb``.
Set ``LLM_COURSE_STRICT=1`` to make a failing check raise (the notebook tests do).
Needs neither solutions/ nor the grading specs: the expected answers come from
the fixtures in ``autograder/fixtures/``. Grading uses other inputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from autograder.core.chapters import ChapterInfo, resolve_chapter
from autograder.core.evaluate import ExerciseResult, evaluate, evaluate_exercise
from autograder.core.executors import in_process
from autograder.core.fixtures import load_fixture
from autograder.core.materialize import jobs_for, selected
from autograder.core.report import format_result
from autograder.core.runner import run_job


def check(chapter: str, obj: Any, name: str | None = None) -> None:
    """Check one function or class of a chapter against its fixture and print the verdict."""
    passes(chapter, obj, name, quiet=False)


def passes(chapter: str, obj: Any, name: str | None = None, quiet: bool = True) -> bool:
    """Whether ``obj`` passes its exercise's self-check (printing the verdict unless quiet)."""
    info = resolve_chapter(chapter)
    fixture = load_fixture(info)
    name = name or getattr(obj, "__name__", None)
    exercises = {ex["name"]: ex for ex in fixture["exercises"]}
    if name not in exercises:
        raise ValueError(
            f"chapter {info.key} has no exercise called {name!r}; "
            f"its exercises are {', '.join(exercises)}"
        )
    ex = exercises[name]
    result = evaluate_exercise(ex, run_job(obj, jobs_for(fixture, only=[name])[0]))
    if not quiet:
        if result.status == "not_implemented":
            print(
                f"TODO    {name}: not implemented yet (the stub still raises NotImplementedError)"
            )
        else:
            print(format_result(result))
    if os.environ.get("LLM_COURSE_STRICT") == "1" and not result.passed:
        raise AssertionError(f"self-check of {name} failed: {result.feedback()}")
    return result.passed


def check_submission(
    info: ChapterInfo, path: Path, only: list[str] | None = None
) -> list[ExerciseResult]:
    """Every exercise of a notebook or .py file (or those ``only`` names), checked against
    the chapter's fixture."""
    fixture = load_fixture(info)
    return evaluate(selected(fixture, only), in_process(path, jobs_for(fixture, only)))


def check_chapter(chapter: str, path: str | Path) -> list[ExerciseResult]:
    return check_submission(resolve_chapter(chapter), Path(path))
