"""One mistake costs one exercise: each of the project's mutants, graded together with the
exercises that call the mutated one, loses its own exercise and none of theirs (they are
graded again with the reference standing in for the student's failing functions and
classes: gradients flow through the stand-ins, models and caches are passed to them, see
autograder/core/stand_ins.py)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from autograder.core.chapters import CHAPTERS, load_spec
from autograder.core.executors import in_process_answering
from autograder.core.grading import grade_submission

ROOT = Path(__file__).resolve().parent.parent
PRESENT = [c for c in CHAPTERS if (ROOT / "tests" / "mutants" / f"{c.slug}.py").exists()]


def _callers(spec, name: str) -> list[str]:
    """The exercises that call ``name``, directly or through others."""
    found: list[str] = []
    changed = True
    while changed:
        changed = False
        for ex in spec.exercises:
            if ex.name not in found and ({name, *found} & set(ex.depends_on)):
                found.append(ex.name)
                changed = True
    return found


CASES = []
for info in PRESENT:
    spec = load_spec(info)
    for mutant in importlib.import_module(f"tests.mutants.{info.slug}").MUTANTS:
        callers = _callers(spec, mutant.exercise)
        if callers:
            CASES.append(pytest.param(info, mutant, callers, id=f"{info.number}-{mutant.name}"))


def test_every_chapter_with_callers_has_its_mutants_graded_with_them() -> None:
    assert len(CASES) >= 84, "fewer mutants are graded with their callers than when written"


@pytest.mark.parametrize("info, mutant, callers", CASES)
def test_a_mutant_costs_its_own_exercise_and_none_that_call_it(info, mutant, callers, tmp_path):
    path = mutant.write(importlib.import_module(f"solutions.{info.slug}"), tmp_path)
    only = [mutant.exercise, *callers]
    results = {r.name: r for r in grade_submission(path, info, in_process_answering, only=only)}
    assert not results[mutant.exercise].passed
    lost = {n: results[n].message for n in callers if not results[n].passed}
    assert not lost, f"{mutant.name} also cost {lost}"
