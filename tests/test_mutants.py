"""Every usual wrong answer of every chapter loses its exercise, with feedback naming it.

The mutants are edits of the reference source (tests/mutants/SLUG.py), run
through the same path as a student's file: the loader, the drivers, the
comparison. Both the hidden grading (fresh seeds, expectations computed from
solutions/) and the student's self-check (committed fixtures) must catch each.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from autograder.core.chapters import CHAPTERS, load_spec
from autograder.core.executors import in_process
from autograder.core.grading import grade_submission
from autograder.selfcheck import check_submission

ROOT = Path(__file__).resolve().parent.parent
PRESENT = [c for c in CHAPTERS if (ROOT / "tests" / "mutants" / f"{c.slug}.py").exists()]
CASES = [
    (info, mutant)
    for info in PRESENT
    for mutant in importlib.import_module(f"tests.mutants.{info.slug}").MUTANTS
]
IDS = [f"{info.number}-{m.name}" for info, m in CASES]


def _result(results, name):
    return next(r for r in results if r.name == name)


@pytest.mark.parametrize("info, mutant", CASES, ids=IDS)
def test_grading_fails_the_mutated_exercise_and_names_the_mistake(info, mutant, tmp_path: Path):
    reference = importlib.import_module(f"solutions.{info.slug}")
    path = mutant.write(reference, tmp_path)
    only = [mutant.exercise]  # the other exercises are the reference's own: no need to run them
    result = _result(grade_submission(path, info, executor=in_process, only=only), mutant.exercise)
    assert result.status == "failed", f"{mutant.name} was not caught: {result}"
    assert result.score == 0
    assert mutant.expect in result.feedback(), result.feedback()


@pytest.mark.parametrize("info, mutant", CASES, ids=IDS)
def test_selfcheck_fails_the_mutated_exercise_and_names_the_mistake(info, mutant, tmp_path: Path):
    reference = importlib.import_module(f"solutions.{info.slug}")
    path = mutant.write(reference, tmp_path)
    result = _result(check_submission(info, path, only=[mutant.exercise]), mutant.exercise)
    assert result.status == "failed"
    assert mutant.expect in result.feedback(), result.feedback()


@pytest.mark.parametrize("info", PRESENT, ids=[c.key for c in PRESENT])
def test_every_exercise_has_at_least_two_mutants(info) -> None:
    counts = {e.name: 0 for e in load_spec(info).exercises}
    for chapter, mutant in CASES:
        if chapter == info:
            counts[mutant.exercise] += 1
    assert all(n >= 2 for n in counts.values()), counts
