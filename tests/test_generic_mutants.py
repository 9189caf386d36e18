"""Mistakes of the kinds every exercise can make, generated for every exercise, each caught.

The grader's core checks what no exercise lists (inputs changed in place, the
output's dtype, optional arguments), so a wrong answer of those kinds must lose
its exercise in every chapter: see tests/mutants/generic.py for the kinds.
A ``default`` or ``ignores`` mutant that survives means the spec has no case
that omits (or gives) that optional argument: add one.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import torch

from autograder.core.chapters import CHAPTERS, load_spec
from autograder.core.drivers import run_case
from autograder.core.executors import in_process
from autograder.core.grading import grade_submission
from autograder.core.materialize import dtype_variant
from tests.mutants.generic import GenericMutant, is_literal, optional_parameters, wrong_default

ROOT = Path(__file__).resolve().parent.parent
PRESENT = [c for c in CHAPTERS if (ROOT / "solutions" / f"{c.slug}.py").exists()]


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _tensors(v)]
    return []


def _float_output_follows_dtype(exercise: Any, obj: Any, cases: list[dict]) -> bool:
    """Whether the exercise is graded in float64 and the reference then answers in float64."""
    if "float64" not in exercise.dtype_variants():
        return False
    for case in cases:
        variant = dtype_variant(case, "float64")
        if variant is not None:
            answer = run_case(obj, exercise.driver, variant)
            return any(t.dtype == torch.float64 for t in _tensors(answer))
    return False


def _mutants() -> list[tuple[Any, GenericMutant]]:
    found = []
    for info in PRESENT:
        reference = importlib.import_module(f"solutions.{info.slug}")
        for exercise in load_spec(info).exercises:
            if exercise.driver not in ("call", "module"):
                continue
            obj = getattr(reference, exercise.name)
            cases = exercise.make_cases(torch.Generator().manual_seed(0))
            inputs = [t for c in cases for t in _tensors([c.get("args"), c.get("kwargs")])]
            if any(t.numel() for t in inputs):
                found.append((info, GenericMutant("in_place", exercise.name)))
            if _float_output_follows_dtype(exercise, obj, cases):
                found.append((info, GenericMutant("float32_out", exercise.name)))
            for param in optional_parameters(obj):
                if not is_literal(param.default):
                    continue
                found.append((info, GenericMutant("ignores", exercise.name, param.name)))
                wrong = wrong_default(param.default)
                if wrong is not None:
                    found.append((info, GenericMutant("default", exercise.name, param.name, wrong)))
    return found


MUTANTS = _mutants()


@pytest.mark.parametrize("info, mutant", MUTANTS, ids=[f"{i.number}-{m.name}" for i, m in MUTANTS])
def test_generic_mistake_loses_its_exercise(info: Any, mutant: GenericMutant, tmp_path: Path):
    reference = importlib.import_module(f"solutions.{info.slug}")
    path = mutant.write(reference, tmp_path)
    results = grade_submission(path, info, executor=in_process, only=[mutant.exercise])
    result = next(r for r in results if r.name == mutant.exercise)
    assert result.status == "failed", f"{mutant.name} was not caught"
    assert mutant.expect in result.feedback(), result.feedback()


def test_the_generic_mutants_cover_every_chapter_and_kind() -> None:
    """A guard against the generator silently producing nothing (counts as of writing)."""
    kinds = {kind: sum(m.kind == kind for _, m in MUTANTS) for kind in
             ("in_place", "float32_out", "ignores", "default")}  # fmt: skip
    assert kinds["in_place"] >= 30 and kinds["float32_out"] >= 20, kinds
    assert kinds["ignores"] >= 20 and kinds["default"] >= 20, kinds
    assert {i.key for i, _ in MUTANTS} == {i.key for i in PRESENT}
