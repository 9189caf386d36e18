"""Every usual wrong answer of chapter 01 loses its exercise, with feedback naming the mistake.

The mutants are edits of the reference source (tests/mutants/attention.py), run
through the same path as a student's file: the loader, the drivers, the
comparison. Both the hidden grading (fresh seeds, expectations computed from
solutions/) and the student's self-check (committed fixtures) must catch each.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import solutions.attention as ref
from autograder.core.chapters import resolve_chapter
from autograder.core.executors import in_process
from autograder.core.grading import grade_submission
from autograder.selfcheck import check_submission
from tests.mutants.attention import MUTANTS

INFO = resolve_chapter("01")


def _by_name(results):
    return {r.name: r for r in results}


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_grading_fails_the_mutated_exercise_and_names_the_mistake(mutant, tmp_path: Path) -> None:
    path = mutant.write(ref, tmp_path)
    result = _by_name(grade_submission(path, INFO, executor=in_process))[mutant.exercise]
    assert result.status == "failed", f"{mutant.name} was not caught: {result}"
    assert result.score == 0
    assert mutant.expect in result.feedback(), result.feedback()


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_selfcheck_fails_the_mutated_exercise_and_names_the_mistake(mutant, tmp_path: Path) -> None:
    path = mutant.write(ref, tmp_path)
    result = _by_name(check_submission(INFO, path))[mutant.exercise]
    assert result.status == "failed"
    assert mutant.expect in result.feedback(), result.feedback()


def test_every_exercise_has_at_least_two_mutants() -> None:
    from autograder.attention import SPEC

    counts = {e.name: 0 for e in SPEC.exercises}
    for m in MUTANTS:
        counts[m.exercise] += 1
    assert all(n >= 2 for n in counts.values()), counts
