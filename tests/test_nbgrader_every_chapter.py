"""Every chapter after 01 through the real nbgrader, as one class: the reference earns every
point, the untouched stubs none, and nbgrader's grades.csv says what `llm-course grade` says.

The chapters share one course folder, so nbgrader starts four times in all, not four times
per chapter: `generate_assignment "*"` and `autograde "*"` take every assignment (nbgrader
expands the glob), then one `export` and one `llm-course grade` of the whole folder. Each
chapter is still its own test of the rows that concern it. (Chapter 01 has its own, longer
round trip with a cheat and a wrong answer in tests/test_release_nbgrader.py.)
"""

from __future__ import annotations

import csv
import importlib
import json
from pathlib import Path

import pytest

from autograder.cli import main
from autograder.core.chapters import load_spec
from autograder.core.sandbox import bwrap_works
from autograder.release import present_chapters
from tests.test_release_nbgrader import _filled, _run

LATER_CHAPTERS = [c for c in present_chapters() if c.number != "01"]
STUDENTS = ("alice", "bob")  # alice: the reference in every solution cell; bob: the stubs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here"),
]


def _scores(path: Path, assignment: str) -> dict[tuple[str, str], float]:
    """{(chapter, student): score} of a grades.csv whose column ``assignment`` names it."""
    with open(path, newline="") as f:
        return {
            (row[assignment], row["student_id"]): float(row["score"]) for row in csv.DictReader(f)
        }


@pytest.fixture(scope="module")
def class_graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """One release of the later chapters, through nbgrader and `llm-course grade`:
    {"nbgrader": {(key, student): score}, "ours": {...}}."""
    out = tmp_path_factory.mktemp("every-chapter")
    numbers = ",".join(c.number for c in LATER_CHAPTERS)
    assert main(["release", "--out", str(out), "--chapters", numbers]) == 0
    course = out / "nbgrader"
    _run(["nbgrader", "generate_assignment", "*"], course)
    for info in LATER_CHAPTERS:
        released = course / "release" / info.key / f"{info.key}.ipynb"
        notebook = json.loads(released.read_text())
        module = importlib.import_module(f"solutions.{info.slug}")
        for student, nb in zip(STUDENTS, (_filled(notebook, module=module), notebook), strict=True):
            path = course / "submitted" / student / info.key / f"{info.key}.ipynb"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(nb))
    _run(["nbgrader", "autograde", "*"], course)
    _run(["nbgrader", "export"], course)
    assert main(["grade", str(course / "submitted"), "--out", str(out / "ours")]) == 0
    return {
        "nbgrader": _scores(course / "grades.csv", "assignment"),
        "ours": _scores(out / "ours" / "grades.csv", "chapter"),
    }


@pytest.mark.parametrize("info", LATER_CHAPTERS, ids=[c.key for c in LATER_CHAPTERS])
def test_nbgrader_and_llm_course_agree_on_every_chapter(info, class_graded: dict) -> None:
    full = float(sum(e.points for e in load_spec(info).exercises))
    expected = {(info.key, "alice"): full, (info.key, "bob"): 0.0}
    for grader, scores in class_graded.items():
        mine = {k: v for k, v in scores.items() if k[0] == info.key}
        assert mine == expected, f"{grader}: {mine}"
