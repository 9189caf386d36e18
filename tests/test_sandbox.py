"""The isolated executor: both modes grade honestly, limits hold, the fallback says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder.core.chapters import resolve_chapter
from autograder.core.grading import grade_submission
from autograder.core.sandbox import IsolatedExecutor, Limits, bwrap_works, stage_grader_code

ROOT = Path(__file__).resolve().parent.parent
INFO = resolve_chapter("01")


def test_plain_subprocess_fallback_grades_and_warns() -> None:
    executor = IsolatedExecutor(isolation="process")
    assert executor.mode == "process" and "not safe for grading untrusted work" in executor.warning
    results = grade_submission(ROOT / "solutions/attention.py", INFO, executor=executor)
    assert sum(r.score for r in results) == 16


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here")
def test_bwrap_mode_has_no_warning_and_grades_the_reference() -> None:
    executor = IsolatedExecutor(isolation="bwrap")
    assert executor.warning == ""
    assert sum(r.score for r in grade_submission(ROOT / "solutions/attention.py", INFO,
                                                 executor=executor)) == 16  # fmt: skip


def test_exercise_timeout_costs_only_that_exercise(tmp_path: Path) -> None:
    source = (ROOT / "solutions/attention.py").read_text()
    source += "\n\ndef causal_mask(seq_len, device=None):\n    while True:\n        pass\n"
    path = tmp_path / "slow.py"
    path.write_text(source)
    executor = IsolatedExecutor(Limits(exercise_seconds=3), isolation="process")
    results = {r.name: r for r in grade_submission(path, INFO, executor=executor)}
    assert "took longer than 3 s" in results["causal_mask"].message
    assert results["TransformerBlock"].score == 0  # it calls causal_mask
    assert sum(r.score for r in results.values()) == 13


def test_staged_code_has_no_specs_and_no_solutions(tmp_path: Path) -> None:
    stage = stage_grader_code(tmp_path / "stage")
    files = {p.relative_to(stage).as_posix() for p in stage.rglob("*.py")}
    assert "autograder/core/child.py" in files and "course/helpers.py" in files
    assert "autograder/attention.py" not in files
    assert not any(f.startswith("solutions/") for f in files)
