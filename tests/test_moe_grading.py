"""Grading chapter 03, beyond the checks every chapter gets (tests/test_mutants.py runs the
mutants of tests/mutants/moe.py, tests/test_specs.py the spec's mistakes and marks).

These are the chapter's own points: a student's notebook is graded in the sandbox with
the chapter's drivers (autograder/public/moe.py) and chapter 01's blocks from
course/blocks.py; the MoE cases really drop tokens and have no near-ties; and a layer
whose outputs are right but whose router cannot learn is caught through the gradient.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import solutions.moe as ref
from autograder.core.chapters import resolve_chapter
from autograder.core.executors import in_process
from autograder.core.grading import grade_submission
from autograder.core.sandbox import IsolatedExecutor
from autograder.moe import GAP, MOE, SPEC
from tests.notebook_tools import with_reference

INFO = resolve_chapter("03")


def _by_name(results):
    return {r.name: r for r in results}


def test_notebook_with_the_reference_gets_full_marks_in_the_sandbox(root: Path, tmp_path) -> None:
    """The student's path: a notebook importing FeedForward from course.blocks, graded
    isolated (no solutions/ in the sandbox), with the chapter's public drivers."""
    path = tmp_path / "03_moe.ipynb"
    path.write_text(json.dumps(with_reference(root / INFO.notebook, ref)))
    results = grade_submission(path, INFO, executor=IsolatedExecutor())
    assert [(r.name, r.message) for r in results if not r.passed] == []
    assert sum(r.score for r in results) == SPEC.max_score == 9


@pytest.mark.parametrize("seed", [0, 1, 2026])
def test_moe_cases_drop_tokens_and_have_no_near_ties(seed: int) -> None:
    """The capacity cases really overflow some expert (else token order is never tested),
    and no token's top k + 1 router logits are within the spec's GAP of each other."""
    for case in MOE.make_cases(torch.Generator().manual_seed(seed)):
        x, w = case["args"][0], case["state"]["router.weight"]
        logits = x.reshape(-1, x.shape[-1]) @ w.T
        k = case["init"].get("k", 2)
        top = torch.topk(logits, k + 1, dim=-1).values
        assert (top[:, :-1] - top[:, 1:]).min() > GAP
        factor = case["init"].get("capacity_factor")
        if factor is not None:
            T, E = logits.shape
            counts = torch.bincount(torch.topk(logits, k).indices.flatten(), minlength=E)
            assert counts.max() > ref.expert_capacity(T, E, factor, k), case["label"]


def test_a_router_cut_off_from_autograd_is_caught_through_the_gradient(tmp_path: Path) -> None:
    """Right y and aux_loss, but the router logits computed under torch.no_grad: the
    driver's router gradient tells it apart."""
    source = Path(ref.__file__).read_text()
    source = source.replace(
        "router_logits = self.router(tokens)  # (T, E)",
        "with torch.no_grad():\n            router_logits = self.router(tokens)  # (T, E)",
    )
    path = tmp_path / "no_grad_router.py"
    path.write_text(source)
    result = _by_name(grade_submission(path, INFO, executor=in_process))["MoELayer"]
    assert result.status == "failed" and "`router_grad` differs" in result.message


def test_a_forward_that_returns_only_y_gets_a_clear_message(tmp_path: Path) -> None:
    """The contract's forward returns (y, aux_loss); a lone tensor is reported as such."""
    source = Path(ref.__file__).read_text()
    source = source.replace("return y.reshape(x.shape), aux_loss", "return y.reshape(x.shape)")
    path = tmp_path / "only_y.py"
    path.write_text(source)
    result = _by_name(grade_submission(path, INFO, executor=in_process))["MoELayer"]
    assert result.status == "failed"
    assert "forward must return a tuple (y, aux_loss), got a Tensor" in result.message
