"""`llm-course check`: what a student sees, the exit statuses, and that it needs no solutions/."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
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
    shutil.copytree(
        root / "autograder",
        tmp_path / "autograder",
        ignore=shutil.ignore_patterns("attention.py", "__pycache__"),
    )
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
