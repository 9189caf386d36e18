"""Grading chapter 01: the reference gets full marks, the stubs zero, and every listed
mistake of the spec is recognised with its own hint."""

from __future__ import annotations

from pathlib import Path

import torch

from autograder.attention import SPEC
from autograder.core.chapters import resolve_chapter
from autograder.core.executors import in_process
from autograder.core.grading import expectations, grade_submission
from autograder.core.materialize import GRADING_SEED, SELFCHECK_SEED, materialize
from autograder.core.sandbox import IsolatedExecutor

INFO = resolve_chapter("01")


def test_reference_file_gets_full_marks_in_a_separate_process(root: Path) -> None:
    results = grade_submission(
        root / "solutions" / "attention.py", INFO, executor=IsolatedExecutor()
    )
    assert [r.name for r in results if not r.passed] == []
    assert sum(r.score for r in results) == SPEC.max_score == 16


def test_same_submission_always_gets_the_same_score(root: Path) -> None:
    path = root / "solutions" / "attention.py"
    first = [(r.name, r.score) for r in grade_submission(path, INFO, executor=in_process)]
    expectations.cache_clear()
    second = [(r.name, r.score) for r in grade_submission(path, INFO, executor=in_process)]
    assert first == second


def test_grading_inputs_differ_from_the_selfcheck_fixture_inputs() -> None:
    grading, selfcheck = materialize(SPEC, GRADING_SEED), materialize(SPEC, SELFCHECK_SEED)
    sdpa_g, sdpa_s = grading["exercises"][0]["cases"][0], selfcheck["exercises"][0]["cases"][0]
    assert not torch.equal(sdpa_g["args"][0], sdpa_s["args"][0])


def test_a_crash_in_one_case_costs_only_that_exercise(tmp_path: Path, root: Path) -> None:
    source = (root / "solutions" / "attention.py").read_text()
    source += "\n\ndef gelu(x):\n    raise RuntimeError('boom')\n"
    path = tmp_path / "crashing.py"
    path.write_text(source)
    results = {r.name: r for r in grade_submission(path, INFO, executor=in_process)}
    assert results["gelu"].status == "failed"
    assert "RuntimeError: boom" in results["gelu"].message
    assert "crashing.py, line" in results["gelu"].message
    assert results["layer_norm"].passed and results["scaled_dot_product_attention"].passed


def test_failing_dependency_is_named_in_the_dependent_exercise(tmp_path: Path, root: Path) -> None:
    source = (root / "solutions" / "attention.py").read_text()
    source = source.replace("scores = (q @ k.transpose(-2, -1)) * scale", "scores = q @ k.mT")
    path = tmp_path / "no_scale.py"
    path.write_text(source)
    results = {r.name: r for r in grade_submission(path, INFO, executor=in_process)}
    assert "uses your scaled_dot_product_attention" in results["MultiHeadAttention"].message


def test_wrong_parameter_names_are_reported(tmp_path: Path, root: Path) -> None:
    source = (root / "solutions" / "attention.py").read_text()
    source = source.replace("self.fc1 = nn.Linear", "self.up = nn.Linear")
    source = source.replace("self.fc1(x)", "self.up(x)").replace("self.fc1.in_features", "8")
    path = tmp_path / "renamed.py"
    path.write_text(source)
    result = {r.name: r for r in grade_submission(path, INFO, executor=in_process)}["FeedForward"]
    assert "expects parameters ['fc1.weight', 'fc1.bias'] that your module lacks" in result.message
    assert "your module has parameters ['up.weight', 'up.bias']" in result.message
