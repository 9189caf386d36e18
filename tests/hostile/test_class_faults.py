"""Faults in a class's files, each graded beside honest submissions that keep full marks.

Links out of a student's folder (to the reference, to a classmate's notebook, a
linked student folder), a FIFO, devices, a socket, an oversized file, deeply
nested JSON, folder names that are spreadsheet formulas or the names of output
files: each costs only its own submission, never blocks or stops the class, and
never gives marks without work. An output disk that fills up mid-run (a real
tmpfs) costs only what could not be written, and a re-run finishes. Most of this
runs the class in this process (the point is reading and writing the files, not
isolation); one test runs the real ``llm-course grade`` under bubblewrap.
"""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import stat
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from autograder.cli import main
from autograder.core.batch import ClassGrader, RunReport, discover
from autograder.core.executors import in_process
from autograder.core.intake import MAX_SUBMISSION_BYTES
from autograder.core.sandbox import bwrap_works
from tests.hostile.corpus import reference_cells, write_notebook

ROOT = Path(__file__).resolve().parent.parent.parent
SOLUTIONS = ROOT / "solutions" / "attention.py"
HONEST = ("honest_one", "honest_two", "honest_nbgrader")


def _honest(path: Path, student: str) -> None:
    """The reference as a notebook, with a cell that says whose it is."""
    write_notebook(path, [*reference_cells(), f"GRADED_AS = {student!r}"])


def _folder(klass: Path, student: str) -> Path:
    (klass / student).mkdir(parents=True, exist_ok=True)
    return klass / student


@dataclass
class Fault:
    student: str
    make: Callable[[Path, Path, str], bool]  # (class, a folder outside it, student) -> made?
    score: float | None  # None: not graded at all, reported as a problem
    says: str  # in the student's messages (or the problem)


def _symlink(target: str | Path, name: str = "01_attention.ipynb") -> Callable[..., bool]:
    def make(klass: Path, outside: Path, student: str) -> bool:
        os.symlink(target, _folder(klass, student) / name)
        return True

    return make


def _fifo(klass: Path, outside: Path, student: str) -> bool:
    os.mkfifo(_folder(klass, student) / "01_attention.ipynb")
    return True


def _device(klass: Path, outside: Path, student: str) -> bool:
    try:  # the node of /dev/zero, in the student's folder (needs root)
        os.mknod(_folder(klass, student) / "01_attention.ipynb", stat.S_IFCHR | 0o644,
                 os.makedev(1, 5))  # fmt: skip
    except PermissionError:
        return False
    return True


def _socket(klass: Path, outside: Path, student: str) -> bool:
    folder = _folder(klass, student)
    here = os.getcwd()
    os.chdir(folder)  # a relative name: socket paths are limited to 108 bytes
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind("01_attention.ipynb")
    finally:
        os.chdir(here)
    return True


def _oversized(klass: Path, outside: Path, student: str) -> bool:
    text = SOLUTIONS.read_text() + "\n#" + "x" * MAX_SUBMISSION_BYTES + "\n"
    (_folder(klass, student) / "01_attention.py").write_text(text)
    return True


def _nested(name: str) -> Callable[..., bool]:
    def make(klass: Path, outside: Path, student: str) -> bool:
        (_folder(klass, student) / name).write_text("[" * 100_000)
        return True

    return make


def _linked_folder(klass: Path, outside: Path, student: str) -> bool:
    os.symlink(outside / "stolen", klass / student)
    return True


def _linked_assignment(klass: Path, outside: Path, student: str) -> bool:
    os.symlink(outside / "stolen", _folder(klass, student) / "01_attention")
    return True


FAULTS = [
    Fault("link_to_solutions", _symlink(SOLUTIONS, "01_attention.py"), 0, "symbolic link"),
    Fault("link_to_classmate", _symlink("../honest_one/01_attention.ipynb"), 0, "symbolic link"),
    Fault("link_to_dev_zero", _symlink("/dev/zero"), 0, "symbolic link (to /dev/zero)"),
    Fault("linked_folder", _linked_folder, None, "a symbolic link to a folder"),
    Fault("linked_assignment", _linked_assignment, None, "a symbolic link to a folder"),
    Fault("fifo", _fifo, 0, "is a named pipe (FIFO), not a regular file"),
    Fault("device", _device, 0, "is a character device, not a regular file"),
    Fault("unix_socket", _socket, 0, "is a socket, not a regular file"),
    Fault("oversized", _oversized, 0, "more than the 20.0 MB a submission may be"),
    Fault("nested_named", _nested("01_attention.ipynb"), 0, "nested too deeply"),
    Fault("nested_unnamed", _nested("homework.ipynb"), None, "nested too deeply"),
]


@dataclass
class Graded:
    klass: Path
    out: Path
    report: RunReport
    problems: list[str]
    made: dict[str, bool]
    given: list[bytes]  # every file the executor was asked to grade
    rows: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Graded:
    tmp = tmp_path_factory.mktemp("class_faults")
    klass, outside, out = tmp / "class", tmp / "outside", tmp / "out"
    _honest(klass / "honest_one" / "01_attention.ipynb", "honest_one")
    _honest(klass / "honest_two" / "01_attention.ipynb", "honest_two")
    _honest(klass / "honest_nbgrader" / "01_attention" / "01_attention.ipynb", "honest_nbgrader")
    _honest(outside / "stolen" / "01_attention.ipynb", "stolen")
    made = {f.student: f.make(klass, outside, f.student) for f in FAULTS}
    given: list[bytes] = []

    def spying(path: Path, jobs):
        given.append(path.read_bytes())
        return in_process(path, jobs)

    got: dict[str, object] = {}

    def run() -> None:  # in a thread: a file that blocks must fail the test, not hang it
        got["discovered"] = discover([klass])
        got["report"] = ClassGrader(out, spying, junit=True).grade_all(got["discovered"][0], 2)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(300)
    assert "report" in got, "grading the class blocked or crashed"
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    return Graded(klass, out, got["report"], got["discovered"][1], made, given, rows)


def test_honest_submissions_keep_full_marks_beside_the_faults(graded: Graded) -> None:
    assert graded.report.errors == []
    for student in HONEST:
        assert graded.rows[student]["score"] == "16", student


@pytest.mark.parametrize("fault", FAULTS, ids=[f.student for f in FAULTS])
def test_a_faulty_file_costs_only_its_own_submission(graded: Graded, fault: Fault) -> None:
    if not graded.made[fault.student]:
        pytest.skip(f"{fault.student} cannot be made here")
    if fault.score is None:
        assert fault.student not in graded.rows
        assert any(fault.student in p and fault.says in p for p in graded.problems), graded.problems
        return
    assert float(graded.rows[fault.student]["score"]) == fault.score
    results = json.loads((graded.out / "students" / fault.student / "results.json").read_text())
    assert results["score"] == fault.score and len(results["tests"]) == 10
    assert all(fault.says in t["output"] for t in results["tests"]), results["tests"][0]


def test_no_file_behind_a_link_reaches_the_grader(graded: Graded) -> None:
    owners = sorted(re.search(rb"GRADED_AS = '(\w+)'", b).group(1).decode() for b in graded.given
                    if b"GRADED_AS" in b)  # fmt: skip
    assert owners == sorted(HONEST), "each honest notebook graded once, nothing else behind it"
    assert SOLUTIONS.read_bytes() not in graded.given
    assert len(graded.given) == len(HONEST) + 1  # and the nested notebook, which is a file


def test_refusals_are_recorded_and_a_rerun_grades_nothing_again(graded: Graded) -> None:
    calls: list[Path] = []
    subs, _ = discover([graded.klass])
    report = ClassGrader(graded.out, lambda p, j: calls.append(p) or in_process(p, j)).grade_all(
        subs
    )
    assert calls == [] and report.graded == [] and report.already == len(subs)


@pytest.mark.slow
@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here")
def test_real_grade_of_a_faulty_class_under_bubblewrap(tmp_path: Path, capsys) -> None:
    """``llm-course grade --jobs 2``: formula ids, output-file ids, links, a FIFO, nested JSON."""
    klass, out = tmp_path / "class", tmp_path / "grades"
    honest = ["honest", "=cmd|' -C calc'!A0", "@x", "grades.csv", "students"]
    for student in honest:
        _honest(klass / student / "01_attention.ipynb", "x")
    _symlink(SOLUTIONS, "01_attention.py")(klass, tmp_path, "link_to_solutions")
    _fifo(klass, tmp_path, "fifo")
    _nested("01_attention.ipynb")(klass, tmp_path, "nested_named")
    _nested("homework.ipynb")(klass, tmp_path, "nested_unnamed")

    status = main(["grade", str(klass), "--out", str(out), "--jobs", "2", "--junit"])
    err = capsys.readouterr().err

    assert status == 1 and "homework.ipynb: cannot tell its chapter" in err  # a problem, reported
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        given = {r["student_id"]: float(r["score"]) for r in csv.DictReader(f)}
    assert given == {
        "honest": 16, "'=cmd|' -C calc'!A0": 16, "'@x": 16, "grades.csv": 16, "students": 16,
        "link_to_solutions": 0, "fifo": 0, "nested_named": 0,
    }  # fmt: skip
    for student in [*honest, "link_to_solutions", "fifo", "nested_named"]:
        assert (out / "students" / student / "results.json").is_file()
    assert (out / "junit.xml").read_text().count("<testsuite ") == 8
    assert "refused (0 points): link_to_solutions" in err


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 24 KB tmpfs (root only), and a function that gives it room."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(disk)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield (
            disk,
            lambda: subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True),
        )
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_an_output_disk_that_fills_up_costs_the_rest_of_that_run_and_a_rerun_finishes(
    tmp_path: Path, tiny_disk
) -> None:
    disk, give_room = tiny_disk
    klass, out = tmp_path / "class", disk / "out"
    students = ["ann", "ben", "cat", "dan", "eve"]
    for student in students:
        _honest(klass / student / "01_attention.ipynb", student)
    subs, _ = discover([klass])
    report = ClassGrader(out, in_process, junit=True).grade_all(subs)
    assert report.errors and all("No space left on device" in e for e in report.errors)
    assert len(report.graded) < len(students)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]

    give_room()
    report = ClassGrader(out, in_process, junit=True).grade_all(subs)
    assert report.errors == []
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        assert {r["student_id"]: r["score"] for r in csv.DictReader(f)} == dict.fromkeys(
            students, "16"
        )
    for student in students:
        assert json.loads((out / "students" / student / "results.json").read_text())["score"] == 16
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
