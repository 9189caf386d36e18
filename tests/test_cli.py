"""`llm-course check`: what a student sees, the exit statuses, and that it needs no solutions/;
`llm-course grade`: who sees the isolation warning, and stopping on SIGINT/SIGTERM."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from autograder.cli import main


def test_shipped_notebook_lists_every_exercise_as_not_implemented(root: Path, capsys) -> None:
    status = main(["check", "01", "--notebook", str(root / "course/01_attention.ipynb")])
    out = capsys.readouterr().out
    assert status == 1
    assert out.count("TODO") == 10
    assert "0 of 10 exercises pass, 10 not implemented yet; 0/16 points" in out


def test_reference_lists_every_exercise_as_passed(root: Path, capsys) -> None:
    status = main(["check", "attention", "--notebook", str(root / "solutions/attention.py")])
    out = capsys.readouterr().out
    assert status == 0
    assert out.count("PASS") == 10 and "16/16 points" in out


def test_notebook_with_reference_filled_in_passes(root: Path, tmp_path: Path, capsys) -> None:
    import solutions.attention as ref
    from tests.notebook_tools import with_reference

    path = tmp_path / "01_attention.ipynb"
    path.write_text(json.dumps(with_reference(root / "course/01_attention.ipynb", ref)))
    assert main(["check", "01", "--notebook", str(path)]) == 0
    assert capsys.readouterr().out.count("PASS") == 10


def test_broken_notebook_fails_every_exercise_with_the_reason(tmp_path: Path, capsys) -> None:
    path = tmp_path / "mine.ipynb"
    path.write_text("not json at all")
    assert main(["check", "01", "--notebook", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.count("mine.ipynb is not a valid notebook: it is not JSON") == 10


@pytest.mark.parametrize(
    "argv, phrase",
    [
        (["check", "42"], "unknown chapter '42'"),
        (["check", "01", "--notebook", "/nonexistent/x.ipynb"], "does not exist"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_with_status_2(argv: list[str], phrase: str, capsys) -> None:
    assert main(argv) == 2
    assert phrase in capsys.readouterr().err


def test_check_works_without_solutions_or_specs(root: Path, tmp_path: Path) -> None:
    """A student's copy: autograder without the chapter specs, no solutions/ anywhere."""
    spec = root / "autograder"

    def leave_out(folder: str, names: list[str]) -> set[str]:
        """The chapter's spec (not public/attention.py, which students do get)."""
        spec_here = Path(folder) == spec
        return {n for n in names if n == "__pycache__" or (spec_here and n == "attention.py")}

    shutil.copytree(spec, tmp_path / "autograder", ignore=leave_out)
    shutil.copytree(root / "course", tmp_path / "course")
    shutil.copy(root / "solutions/attention.py", tmp_path / "my_answers.py")
    site = sysconfig.get_paths()["purelib"]
    env = {"PYTHONPATH": f"{tmp_path}:{site}", "PATH": "/usr/bin:/bin"}
    probe = subprocess.run(
        [sys.executable, "-S", "-c", "import solutions"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0, "solutions/ must not be importable in this test"
    for target, status, word in (
        ("my_answers.py", 0, "PASS"),
        ("course/01_attention.ipynb", 1, "TODO"),
    ):
        proc = subprocess.run(
            [sys.executable, "-S", "-m", "autograder", "check", "01", "--notebook", target],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == status, proc.stderr
        assert proc.stdout.count(word) == 10


def _honest_class(klass: Path, students: list[str], root: Path) -> None:
    for student in students:
        (klass / student).mkdir(parents=True)
        shutil.copy(root / "solutions/attention.py", klass / student / "01_attention.py")


def test_grade_tells_the_isolation_warning_to_the_instructor_only(
    root: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autograder.core import sandbox
    from autograder.core.executors import in_process

    class Unsafe:
        mode, warning = "none", "student code runs without isolation: use only for code you trust"

        def __init__(self, *args, **kwargs) -> None:
            pass

        def __call__(self, path, jobs):
            return in_process(path, jobs)

    monkeypatch.setattr(sandbox, "IsolatedExecutor", Unsafe)
    klass, out = tmp_path / "class", tmp_path / "out"
    _honest_class(klass, ["ann"], root)
    assert main(["grade", str(klass), "--out", str(out)]) == 0
    assert Unsafe.warning in capsys.readouterr().err
    assert Unsafe.warning in (out / "grading.log").read_text()
    results = (out / "students" / "ann" / "results.json").read_text()
    assert "isolation" not in results and json.loads(results)["score"] == 16


SLEEPER = "\n\ndef gelu(x):\n    import time\n    time.sleep(1000)\n"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_grading_within_seconds_and_a_rerun_finishes(
    root: Path, tmp_path: Path, signum: int
) -> None:
    from autograder.core.sandbox import bwrap_works

    if not bwrap_works():
        pytest.skip("bubblewrap cannot run here")
    klass, out = tmp_path / "class", tmp_path / "out"
    _honest_class(klass, ["a_sleeper", "b_honest", "c_honest"], root)
    with open(klass / "a_sleeper" / "01_attention.py", "a") as f:
        f.write(SLEEPER)  # the last definition of gelu wins
    command = [sys.executable, "-m", "autograder", "grade", str(klass), "--out", str(out),
               "--jobs", "2"]  # fmt: skip
    proc = subprocess.Popen(
        [*command, "--exercise-timeout", "600"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while not (out / "students" / "c_honest" / "01_attention.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    time.sleep(1.0)  # the sleeper is in gelu by now
    began = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    seconds = time.monotonic() - began
    print(f"{signal.Signals(signum).name} stopped grading in {seconds:.2f} s")

    assert seconds < 10, f"took {seconds:.1f} s to stop"
    assert proc.returncode == 128 + signum, err
    assert "run the same command again to grade the rest" in err
    assert "2 submission(s) graded in this run, 1 not graded yet" in err
    with open(out / "grades.csv", newline="") as f:
        assert {r["student_id"]: r["score"] for r in csv.DictReader(f)} == {
            "b_honest": "16",
            "c_honest": "16",
        }
    assert not (out / "students" / "a_sleeper").exists(), "no record for the interrupted one"
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]

    rerun = subprocess.run(
        [*command, "--exercise-timeout", "3"], cwd=root, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "grading 1 submissions (2 already graded)" in rerun.stderr
    with open(out / "grades.csv", newline="") as f:
        scores = {r["student_id"]: r["score"] for r in csv.DictReader(f)}
    # gelu hangs; FeedForward and TransformerBlock call it
    # a_sleeper's gelu costs its own point; FeedForward and TransformerBlock, which call
    # it, pass with the reference standing in for it
    assert scores == {"a_sleeper": "15", "b_honest": "16", "c_honest": "16"}
