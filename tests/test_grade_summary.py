"""What an instructor reads at the end of `llm-course grade`: per chapter, how many
submissions were graded, unreadable, timed out or crashed, which ones, and where the
details are; and `llm-course check` finding the notebook from the course's folders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from autograder.cli import default_notebook
from autograder.core.batch import ClassGrader, class_summary, discover, submission_problems
from autograder.core.executors import in_process

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = "took longer than 60 s (an endless loop, or far too slow)"
CRASH = "the grading process was killed (out of memory?)"


def _executor(path: Path, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """In process, except that a submission marked `hang` or `crash` loses its first
    exercise the way the sandbox words it."""
    results = in_process(path, jobs)
    text = path.read_text(encoding="utf-8")
    for word, message in (("hang", TIMEOUT), ("crash", CRASH)):
        if f"# {word}" in text:
            results[0] = {**results[0], "status": "crashed", "message": message}
    return results


def _class(tmp: Path) -> Path:
    klass = tmp / "class"
    reference = (ROOT / "solutions" / "attention.py").read_text(encoding="utf-8")
    for student, text in (
        ("ann", reference),
        ("ben", reference + "\n# hang\n"),
        ("cat", reference + "\n# crash\n"),
        ("dan", "def nothing_of_the_chapter(:\n"),
    ):
        (klass / student).mkdir(parents=True)
        (klass / student / "01_attention.py").write_text(text, encoding="utf-8")
    (klass / "eve").mkdir()
    os.symlink(ROOT / "solutions" / "attention.py", klass / "eve" / "01_attention.py")
    return klass


def test_summary_counts_and_names_each_kind_of_trouble(tmp_path: Path) -> None:
    out = tmp_path / "grades"
    subs, _ = discover([_class(tmp_path)])
    grader = ClassGrader(out, _executor)
    report = grader.grade_all(subs)
    console, log = class_summary(out, report)
    text = "\n".join(console)
    row = next(line for line in console if line.startswith("01_attention"))
    # graded, unreadable, timed out, crashed, not graded
    assert row.split()[1:] == ["3", "2", "1", "1", "0"], text
    assert "ben 01_attention (scaled_dot_product_attention)" in text
    assert f"cat 01_attention (scaled_dot_product_attention: {CRASH})" in text
    assert "dan 01_attention" in text and "eve 01_attention" in text
    assert str(out / "grading.log") in text and str(out / "grades.csv") in text
    assert "results.json" in text
    # the log has the same table and lists (the console cuts long entries at 160 characters,
    # so how much of an entry shows depends on the length of the paths in it)
    shown, logged = console[:-3], log[: len(console) - 3]
    assert len(shown) == len(logged)
    assert all(full.startswith(line) for line, full in zip(shown, logged, strict=True))


def test_submission_problems_reads_the_records_words() -> None:
    def record(*messages: str, sha: str = "abc") -> dict[str, Any]:
        exercises = [
            {"name": f"ex{i}", "status": "failed", "message": m} for i, m in enumerate(messages)
        ]
        return {"sha256": sha, "exercises": exercises}

    assert submission_problems(record("wrong shape", "")) == {
        "unreadable": [], "timed out": [], "crashed": []
    }  # fmt: skip
    found = submission_problems(record(TIMEOUT, CRASH, "not run: the submission used up its 900 s"))
    assert found["timed out"] == ["ex0", "ex2"]
    assert found["crashed"] == [f"ex1: {CRASH}"]
    assert submission_problems(record("x", sha="refused: a symbolic link"))["unreadable"] == [
        "a symbolic link"
    ]


def test_check_finds_the_notebook_from_the_top_folder_course_or_deeper(tmp_path: Path) -> None:
    top, elsewhere = tmp_path / "top", tmp_path / "elsewhere"
    notebook = top / "course" / "01_attention.ipynb"
    (top / "course" / "data").mkdir(parents=True)
    elsewhere.mkdir()
    notebook.write_text(json.dumps({"cells": []}), encoding="utf-8")
    assert default_notebook("course/01_attention.ipynb", top) == Path("course/01_attention.ipynb")
    assert default_notebook("course/01_attention.ipynb", top / "course") == Path(
        "01_attention.ipynb"
    )
    assert default_notebook("course/01_attention.ipynb", top / "course" / "data") == notebook
    assert default_notebook("course/01_attention.ipynb", elsewhere) == Path(
        "course/01_attention.ipynb"
    )
