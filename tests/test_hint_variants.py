"""Hints survive variations: a usual mistake is still named when the student also does
something else differently.

Each project mutant whose feedback names a usual mistake (its ``expect`` phrase is in one
of the exercise's hints) is graded again as a *variant*: the same mistake together with a
second, generic one on the same exercise (floating outputs returned in float32 where the
case is float64, an optional argument ignored or defaulted wrongly, or a crash on the first
input). The exercise must still fail, and its hint must still name the first mistake. A
second mistake that hides the first on every case (ignoring the mask hides a mask applied
after the softmax), so that no answer of the variant is the mistake's, is not a variant of
it: the next one is tried.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from autograder.core.chapters import CHAPTERS, load_spec
from autograder.core.drivers import resolve_public
from autograder.core.evaluate import _explained, evaluate_exercise
from autograder.core.grading import expectations
from autograder.core.materialize import jobs_for
from autograder.core.runner import run_jobs
from autograder.core.spec import Tolerance
from tests.mutants import Mutant
from tests.mutants.generic import GenericMutant
from tests.test_generic_mutants import MUTANTS as GENERIC

ROOT = Path(__file__).resolve().parent.parent
PRESENT = [c for c in CHAPTERS if (ROOT / "tests" / "mutants" / f"{c.slug}.py").exists()]
PREFERENCE = ("float32_out", "ignores", "default")  # the second mistake, when it applies


def _second_mistakes(info: Any, exercise: str) -> list[GenericMutant]:
    """Generic mistakes for the exercise, in order of preference (a crash on the first
    input comes last: it applies to every exercise)."""
    options = [m for i, m in GENERIC if i.key == info.key and m.exercise == exercise]
    options.sort(key=lambda m: PREFERENCE.index(m.kind) if m.kind in PREFERENCE else 9)
    return [m for m in options if m.kind in PREFERENCE] + [GenericMutant("raises_once", exercise)]


def _run(path: Path, info: Any, exercise: str) -> tuple[Any, Any]:
    """The student's answers on the grading cases, and how they are judged."""
    ex = next(e for e in expectations(info)["exercises"] if e["name"] == exercise)
    result = run_jobs(path, jobs_for(expectations(info), [exercise]))[0]  # type: ignore[arg-type]
    return result, evaluate_exercise(ex, result)


def _named(info: Any, mutant: Mutant) -> str:
    """The usual mistake whose hint holds the mutant's expected phrase."""
    spec = load_spec(info).exercise(mutant.exercise)
    return next(m.name for m in spec.mistakes if mutant.expect in m.hint)


def _variants() -> list[Any]:
    found = []
    for info in PRESENT:
        spec = load_spec(info)
        mutants: list[Mutant] = importlib.import_module(f"tests.mutants.{info.slug}").MUTANTS
        for mutant in mutants:
            hints = [m.hint for m in spec.exercise(mutant.exercise).mistakes]
            if not any(mutant.expect in hint for hint in hints):
                continue
            found.append(pytest.param(info, mutant, id=f"{info.number}-{mutant.name}"))
    return found


VARIANTS = _variants()


def test_every_chapter_has_hinted_mutants_to_vary() -> None:
    chapters = {p.values[0].key for p in VARIANTS}
    assert chapters == {c.key for c in PRESENT}, sorted(chapters)
    assert len(VARIANTS) >= 100, len(VARIANTS)


@pytest.mark.parametrize("info, mutant", VARIANTS)
def test_a_hint_is_still_given_when_the_student_also_errs_elsewhere(
    info: Any, mutant: Mutant, tmp_path: Path
) -> None:
    reference = importlib.import_module(f"solutions.{info.slug}")
    ex = next(e for e in expectations(info)["exercises"] if e["name"] == mutant.exercise)
    mistake, tol = _named(info, mutant), Tolerance(ex["atol"], ex["rtol"])
    checker = resolve_public(ex["checker"]) if ex.get("checker") else None
    for second in _second_mistakes(info, mutant.exercise):
        path = tmp_path / f"{mutant.name}_{second.name.replace(':', '_')}.py"
        path.write_text(second.source(reference, base=mutant.apply(reference)), encoding="utf-8")
        variant, result = _run(path, info, mutant.exercise)
        outputs = variant["outputs"]
        if not any(_explained(ex, mistake, outputs, i, tol, checker) for i in range(len(outputs))):
            continue  # this second mistake hides the first on every case: try another
        assert result.status == "failed", f"{mutant.name} with {second.name} passed"
        assert mutant.expect in result.hint, f"with {second.name}: {result.feedback()}"
        return
    pytest.skip("no variant tried answers like the mistake on any case")
