"""Grading a class: discovery, the output files, atomic records and resuming."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from autograder.core.batch import ClassGrader, discover
from autograder.core.executors import in_process

ROOT = Path(__file__).resolve().parent.parent


def _class(tmp: Path) -> Path:
    klass = tmp / "class"
    for student, source in (
        ("ann", "solutions/attention.py"),
        ("ben", "course/01_attention.ipynb"),
    ):
        (klass / student).mkdir(parents=True)
        suffix = Path(source).suffix
        shutil.copy(ROOT / source, klass / student / f"01_attention{suffix}")
    return klass


def test_discover_reads_student_folders_and_nbgrader_layout(tmp_path: Path) -> None:
    klass = _class(tmp_path)
    nested = tmp_path / "submitted" / "cat" / "01_attention"
    nested.mkdir(parents=True)
    shutil.copy(ROOT / "course/01_attention.ipynb", nested / "01_attention.ipynb")
    subs, problems = discover([klass, tmp_path / "submitted", tmp_path / "nowhere"])
    assert sorted(s.student_id for s in subs) == ["ann", "ben", "cat"]
    assert {s.chapter.key for s in subs} == {"01_attention"}
    assert problems == [f"{tmp_path / 'nowhere'} does not exist"]


def test_chapter_comes_from_notebook_metadata_when_the_name_says_nothing(tmp_path: Path) -> None:
    path = tmp_path / "dan" / "homework.ipynb"
    path.parent.mkdir()
    shutil.copy(ROOT / "course/01_attention.ipynb", path)
    subs, problems = discover([path])
    assert problems == [] and subs[0].chapter.key == "01_attention" and subs[0].student_id == "dan"


def test_outputs_gradescope_csv_and_resume(tmp_path: Path) -> None:
    klass, out = _class(tmp_path), tmp_path / "out"
    subs, _ = discover([klass])
    calls: list[str] = []

    def counting(path, jobs):
        calls.append(path.parent.name)
        return in_process(path, jobs)

    grader = ClassGrader(out, counting, junit=True)
    assert grader.grade_all(subs) == []
    with open(out / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert rows["ann"]["score"] == "16" and rows["ben"]["score"] == "0"
    assert rows["ann"]["max_score"] == "16" and rows["ann"]["apply_rope"] == "2"
    results = json.loads((out / "ann" / "results.json").read_text())
    assert results["score"] == 16 and results["max_score"] == 16
    assert {"name", "score", "max_score", "output", "status"} <= set(results["tests"][0])
    assert (out / "junit.xml").read_text().count("<testcase ") == 20
    assert sorted(calls) == ["ann", "ben"]

    calls.clear()
    assert grader.grade_all(subs) == [] and calls == []  # nothing new: nothing graded again
    shutil.copy(ROOT / "solutions/attention.py", klass / "ben" / "01_attention.py")
    (klass / "ben" / "01_attention.ipynb").unlink()
    subs, _ = discover([klass])
    grader.grade_all(subs)
    assert calls == ["ben"]  # only the changed submission
    with open(out / "grades.csv", newline="") as f:
        assert {r["student_id"]: r["score"] for r in csv.DictReader(f)} == {
            "ann": "16",
            "ben": "16",
        }


def test_a_grader_crash_on_one_submission_keeps_the_others(tmp_path: Path) -> None:
    klass, out = _class(tmp_path), tmp_path / "out"
    subs, _ = discover([klass])

    def flaky(path, jobs):
        if path.parent.name == "ben":
            raise RuntimeError("disk on fire")
        return in_process(path, jobs)

    errors = ClassGrader(out, flaky).grade_all(subs)
    assert len(errors) == 1 and "ben 01_attention: internal error" in errors[0]
    assert (out / "ann" / "results.json").exists() and not (out / "ben").exists()
    assert ClassGrader(out, in_process).grade_all(subs) == []  # a re-run finishes the rest
    assert (out / "ben" / "results.json").exists()
    assert not list(out.rglob("*.tmp")), "no temporary files are left behind"
