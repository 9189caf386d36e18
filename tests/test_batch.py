"""Grading a class: discovery, the output files, atomic records, resuming, faults and stopping."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from autograder.core import batch
from autograder.core.batch import ClassGrader, discover, grades_csv
from autograder.core.executors import in_process

ROOT = Path(__file__).resolve().parent.parent


def _put(
    klass: Path, student: str, source: str = "solutions/attention.py", mark: bool = True
) -> Path:
    """``klass/STUDENT/01_attention.py|.ipynb``: a copy of ``source`` that says whose it is."""
    text = (ROOT / source).read_text(encoding="utf-8")
    if not mark:
        pass
    elif source.endswith(".py"):
        text += f"\n# graded-as: {student}\n"
    else:
        nb = json.loads(text)
        nb["metadata"]["graded-as"] = student
        text = json.dumps(nb)
    path = klass / student / f"01_attention{Path(source).suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _who(path: Path) -> str:
    """Whose submission an executor was given (it only gets a private copy)."""
    return re.search(r'graded-as"?: "?([^"\n]*)', path.read_text(encoding="utf-8")).group(1)


def _class(tmp: Path) -> Path:
    klass = tmp / "class"
    _put(klass, "ann")
    _put(klass, "ben", "course/01_attention.ipynb")
    return klass


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        return {r["student_id"]: r for r in csv.DictReader(f)}


def _no_temporary_files(out: Path) -> bool:
    return not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_discover_reads_student_folders_and_nbgrader_layout(tmp_path: Path) -> None:
    klass = _class(tmp_path)
    nested = tmp_path / "submitted" / "cat" / "01_attention"
    nested.mkdir(parents=True)
    shutil.copy(ROOT / "course/01_attention.ipynb", nested / "01_attention.ipynb")
    checkpoints = tmp_path / "submitted" / "cat" / ".ipynb_checkpoints"
    checkpoints.mkdir()
    shutil.copy(ROOT / "course/01_attention.ipynb", checkpoints / "01_attention-checkpoint.ipynb")
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


def test_one_unreadable_notebook_is_a_problem_and_discovery_goes_on(tmp_path: Path) -> None:
    klass = _class(tmp_path)
    (klass / "eve").mkdir()
    (klass / "eve" / "homework.ipynb").write_text("[" * 100_000)  # RecursionError in json
    subs, problems = discover([klass])
    assert sorted(s.student_id for s in subs) == ["ann", "ben"]
    assert len(problems) == 1 and "homework.ipynb: cannot tell its chapter" in problems[0]
    assert "nested too deeply" in problems[0]


def test_outputs_gradescope_csv_and_resume(tmp_path: Path) -> None:
    klass, out = _class(tmp_path), tmp_path / "out"
    subs, _ = discover([klass])
    calls: list[str] = []

    def counting(path, jobs):
        calls.append(_who(path))
        return in_process(path, jobs)

    grader = ClassGrader(out, counting, junit=True)
    assert grader.grade_all(subs).errors == []
    rows = _rows(out)
    assert rows["ann"]["score"] == "16" and rows["ben"]["score"] == "0"
    assert rows["ann"]["max_score"] == "16" and rows["ann"]["apply_rope"] == "2"
    results = json.loads((out / "students" / "ann" / "results.json").read_text())
    assert results["score"] == 16 and results["max_score"] == 16
    assert {"name", "score", "max_score", "output", "status"} <= set(results["tests"][0])
    assert (out / "junit.xml").read_text().count("<testcase ") == 20
    assert sorted(calls) == ["ann", "ben"]

    calls.clear()
    report = grader.grade_all(subs)
    assert report.errors == [] and report.already == 2 and calls == []  # nothing new
    (klass / "ben" / "01_attention.ipynb").unlink()
    _put(klass, "ben")
    subs, _ = discover([klass])
    grader.grade_all(subs)
    assert calls == ["ben"]  # only the changed submission
    assert {s: r["score"] for s, r in _rows(out).items()} == {"ann": "16", "ben": "16"}


def test_the_executor_grades_a_private_copy_of_the_bytes_that_were_hashed(tmp_path: Path) -> None:
    klass, out = _class(tmp_path), tmp_path / "out"
    subs, _ = discover([klass])
    seen: dict[str, tuple[Path, bytes]] = {}

    def swapping(path, jobs):
        seen[_who(path)] = (path, path.read_bytes())
        original = klass / "ann" / "01_attention.py"
        original.write_text("def gelu(x):\n    return x\n")  # changed while being graded
        return in_process(path, jobs)

    ClassGrader(out, swapping).grade_all(subs)
    path, graded = seen["ann"]
    assert path.name == "01_attention.py" and klass not in path.parents
    record = json.loads((out / "students" / "ann" / "01_attention.json").read_text())
    assert record["sha256"] == hashlib.sha256(graded).hexdigest()
    assert record["score"] == 16  # the bytes hashed are the bytes graded
    assert not path.exists(), "the private copy is removed after grading"


def test_a_grader_crash_on_one_submission_keeps_the_others(tmp_path: Path) -> None:
    klass, out = _class(tmp_path), tmp_path / "out"
    subs, _ = discover([klass])

    def flaky(path, jobs):
        if _who(path) == "ben":
            raise RuntimeError("disk on fire")
        return in_process(path, jobs)

    errors = ClassGrader(out, flaky).grade_all(subs).errors
    assert len(errors) == 1 and "ben 01_attention: internal error" in errors[0]
    students = out / "students"
    assert (students / "ann" / "results.json").exists() and not (students / "ben").exists()
    assert ClassGrader(out, in_process).grade_all(subs).errors == []  # a re-run finishes the rest
    assert (students / "ben" / "results.json").exists()
    assert _no_temporary_files(out)


@pytest.mark.parametrize("name", ["grades.csv", "junit.xml", "students", "grading.log"])
def test_student_folders_named_like_output_files_collide_with_nothing(
    tmp_path: Path, name: str
) -> None:
    klass, out = tmp_path / "class", tmp_path / "out"
    _put(klass, "ann")
    _put(klass, name)
    subs, problems = discover([klass])
    report = ClassGrader(out, in_process, junit=True).grade_all(subs)
    assert problems == [] and report.errors == []
    assert {s: r["score"] for s, r in _rows(out).items()} == {"ann": "16", name: "16"}
    assert (out / "junit.xml").read_text().count("<testsuite ") == 2
    for student in ("ann", name):
        assert json.loads((out / "students" / student / "results.json").read_text())["score"] == 16


def test_csv_text_cells_are_escaped_against_formula_injection(tmp_path: Path) -> None:
    klass, out = tmp_path / "class", tmp_path / "out"
    hostile = ["=cmd|' -C calc'!A0", "+x", "-x", "@x", "\tx", "\rx", "ok\r=1+1"]
    for student in ["ann", *hostile]:
        _put(klass, student, mark=False)
    os.makedirs(os.fsencode(klass) + b"/caf\xe9")  # a folder name that is not UTF-8
    shutil.copy(klass / "ann" / "01_attention.py", os.fsencode(klass) + b"/caf\xe9/01_attention.py")
    subs, _ = discover([klass])
    report = ClassGrader(out, in_process).grade_all(subs)
    assert report.errors == []
    rows = _rows(out)
    escaped = {"'" + s if s[0] in "=+-@\t\r" else s for s in hostile}
    assert set(rows) == {"ann", "caf\\udce9", *escaped}
    assert all(r["score"] == "16" for r in rows.values())
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        lines = f.read().split("\r\n")
    assert len(lines) == 2 + len(rows), "one line per row: no id may start a row of its own"
    for line in lines[1:-1]:
        assert not line.lstrip('"').startswith(("=", "+", "-", "@", "\t", "\r")), line

    record = {"student_id": "ann", "chapter": "01_attention", "score": 1, "max_score": 1,
              "exercises": [{"name": "=HYPERLINK(\"http://x\")", "score": 1}]}  # fmt: skip
    header = next(csv.reader(grades_csv([record]).splitlines()))
    assert header[-1] == '\'=HYPERLINK("http://x")'


class _FullDisk:
    """``os.fsync`` that fails with ENOSPC from its ``after``-th call on, until ``free()``."""

    def __init__(self, after: int) -> None:
        self.calls, self.after, self.full = 0, after, True
        self._fsync = os.fsync

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.full and self.calls > self.after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._fsync(fd)

    def free(self) -> None:
        self.full = False


def test_a_full_disk_costs_only_what_it_could_not_write_and_a_rerun_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    klass, out = tmp_path / "class", tmp_path / "out"
    for student in ("ann", "ben", "cat"):
        _put(klass, student)
    subs, _ = discover([klass])
    # writes: grades.csv, mistakes.csv and junit.xml at the start, then ann's record;
    # everything after fails
    disk = _FullDisk(after=4)
    monkeypatch.setattr(batch.os, "fsync", disk)
    report = ClassGrader(out, in_process, junit=True).grade_all(subs)
    assert report.graded == ["ann 01_attention"]
    assert sum("No space left on device" in e for e in report.errors) == len(report.errors) >= 3
    assert (out / "students" / "ann" / "01_attention.json").exists()
    assert not (out / "students" / "ann" / "results.json").exists()  # lost to the full disk
    assert not (out / "students" / "ben" / "01_attention.json").exists()
    assert _no_temporary_files(out), "a failed write leaves no temporary file"

    disk.free()
    report = ClassGrader(out, in_process, junit=True).grade_all(subs)
    assert report.errors == [] and report.already == 1
    assert sorted(report.graded) == ["ben 01_attention", "cat 01_attention"]
    assert {s: r["score"] for s, r in _rows(out).items()} == {"ann": "16", "ben": "16", "cat": "16"}
    for student in ("ann", "ben", "cat"):  # ann's results.json is rebuilt from its record
        assert json.loads((out / "students" / student / "results.json").read_text())["score"] == 16
    assert _no_temporary_files(out)


def test_half_written_records_are_regraded_and_stale_temporary_files_removed(
    tmp_path: Path,
) -> None:
    klass, out = _class(tmp_path), tmp_path / "out"
    _put(klass, "ben")
    (klass / "ben" / "01_attention.ipynb").unlink()
    subs, _ = discover([klass])
    assert ClassGrader(out, in_process).grade_all(subs).errors == []
    ben = out / "students" / "ben"
    (ben / "01_attention.json").write_text('{"version": 1, "student_id": "ben", "sco')
    stale = [ben / ".01_attention.json.k2j3h4g5.tmp", out / ".grades.csv.abc_123.tmp"]
    for path in stale:
        path.write_text("half")
    report = ClassGrader(out, in_process).grade_all(subs)
    assert report.graded == ["ben 01_attention"] and report.already == 1
    assert json.loads((ben / "01_attention.json").read_text())["score"] == 16
    assert not any(p.exists() for p in stale)


def test_the_isolation_warning_never_reaches_a_students_results(tmp_path: Path) -> None:
    klass, out = _class(tmp_path), tmp_path / "out"

    def warned(path, jobs):
        return in_process(path, jobs)

    warned.warning = "bubblewrap is not available: not safe for grading untrusted work"
    subs, _ = discover([klass])
    ClassGrader(out, warned).grade_all(subs)
    for student in ("ann", "ben"):
        text = (out / "students" / student / "results.json").read_text()
        assert "bubblewrap" not in text and json.loads(text)["output"] == ""


class _Cancellable:
    """An executor whose ``sleeper*`` submissions run until ``cancel()`` (like the sandbox's)."""

    def __init__(self, can_cancel: bool = True) -> None:
        self.sleeping: list[str] = []
        self.cancelled = threading.Event()
        if can_cancel:
            self.cancel = self.cancelled.set

    def __call__(self, path, jobs):
        if _who(path).startswith("sleeper"):
            self.sleeping.append(_who(path))
            self.cancelled.wait(60)
            raise RuntimeError("GradingCancelled: the run was stopped")
        return in_process(path, jobs)


def _stop_mid_run(tmp_path: Path, executor: _Cancellable) -> tuple[Path, batch.RunReport, float]:
    """ann and ben graded, two sleepers running, zoe not started: then stop."""
    klass, out = tmp_path / "class", tmp_path / "out"
    for student in ("ann", "ben", "sleeper1", "sleeper2", "zoe"):
        _put(klass, student)
    subs, _ = discover([klass])
    grader = ClassGrader(out, executor)
    got: list[batch.RunReport] = []
    runner = threading.Thread(target=lambda: got.append(grader.grade_all(subs, jobs=2)))
    runner.start()
    deadline = time.monotonic() + 60
    while len(executor.sleeping) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    began = time.monotonic()
    grader.request_stop()
    runner.join(30)
    return out, got[0], time.monotonic() - began


@pytest.mark.parametrize("can_cancel", [True, False], ids=["cancel", "no_cancel"])
def test_a_stop_cancels_running_submissions_keeps_finished_ones_and_a_rerun_finishes(
    tmp_path: Path, can_cancel: bool
) -> None:
    executor = _Cancellable(can_cancel)
    out, report, seconds = _stop_mid_run(tmp_path, executor)
    assert seconds < 3, f"stopping took {seconds:.1f} s"
    assert report.stopped and report.errors == []
    assert executor.cancelled.is_set() == can_cancel
    assert sorted(report.graded) == ["ann 01_attention", "ben 01_attention"]
    assert report.interrupted == 3  # the two sleepers, and zoe who never started
    assert report.abandoned == (0 if can_cancel else 2)
    assert set(_rows(out)) == {"ann", "ben"}
    assert not (out / "students" / "sleeper1").exists(), "no record of an interrupted submission"
    assert _no_temporary_files(out)

    executor.cancelled.set()  # let the stuck calls end
    subs, _ = discover([tmp_path / "class"])
    report = ClassGrader(out, in_process).grade_all(subs)
    assert report.already == 2 and len(report.graded) == 3
    assert set(_rows(out)) == {"ann", "ben", "sleeper1", "sleeper2", "zoe"}
