"""Every chapter's grading spec: the reference gets full marks, the shipped stubs zero, and
each listed mistake fails with its own hint."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

from autograder.core.chapters import CHAPTERS, load_spec
from autograder.core.evaluate import evaluate_exercise
from autograder.core.executors import in_process
from autograder.core.grading import expectations, grade_submission
from autograder.core.materialize import jobs_for
from autograder.core.runner import run_job

ROOT = Path(__file__).resolve().parent.parent
PRESENT = [c for c in CHAPTERS if (ROOT / "autograder" / f"{c.slug}.py").exists()]
MISTAKES = [
    (info, ex, m) for info in PRESENT for ex in load_spec(info).exercises for m in ex.mistakes
]


@pytest.mark.parametrize("info", PRESENT, ids=[c.key for c in PRESENT])
def test_reference_gets_full_marks(info) -> None:
    module = importlib.import_module(f"solutions.{info.slug}")
    results = grade_submission(Path(module.__file__), info, executor=in_process)
    assert [r.name for r in results if not r.passed] == []
    assert sum(r.score for r in results) == load_spec(info).max_score


@pytest.mark.parametrize("info", PRESENT, ids=[c.key for c in PRESENT])
def test_shipped_stubs_get_zero_and_are_not_implemented(info) -> None:
    results = grade_submission(ROOT / info.notebook, info, executor=in_process)
    assert sum(r.score for r in results) == 0
    assert {r.status for r in results} == {"not_implemented"}


@pytest.mark.parametrize("info", PRESENT, ids=[c.key for c in PRESENT])
def test_every_exercise_has_points_cases_and_two_mistakes(info) -> None:
    g = torch.Generator().manual_seed(0)
    for e in load_spec(info).exercises:
        assert e.points > 0 and len(e.make_cases(g)) >= 2 and len(e.mistakes) >= 2, e.name


@pytest.mark.parametrize(
    "info, exercise, mistake", MISTAKES,
    ids=[f"{i.number}-{e.name}-{m.name}" for i, e, m in MISTAKES],
)  # fmt: skip
def test_each_spec_mistake_fails_and_gets_its_own_hint(info, exercise, mistake) -> None:
    chapter = expectations(info)
    mex = next(x for x in chapter["exercises"] if x["name"] == exercise.name)
    result = evaluate_exercise(mex, run_job(mistake.impl, jobs_for(chapter, [exercise.name])[0]))
    assert result.status == "failed" and result.score == 0
    assert result.hint == mistake.hint
