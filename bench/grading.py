"""Seconds per submission for grading chapter 01, side by side in one run:

- ``llm-course grade`` (isolated with bubblewrap, one worker and two workers),
- ``nbgrader autograde`` as nbgrader ships it (runs each notebook in a kernel),
- ``nbgrader autograde`` with llm-course's isolated grader giving the points.

    python -m bench.grading      (or: make bench)
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import solutions.attention as ref
from autograder.release import release
from bench import write_table

STUDENTS = 6
BIN = Path(sys.executable).parent


def _run(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - start


def _class(released_nb: dict) -> dict[str, dict]:
    """Half the class hands in the reference, half the untouched notebook."""
    filled = copy.deepcopy(released_nb)
    for cell in filled["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution"):
            cell["source"] = inspect.getsource(getattr(ref, meta["grade_id"]))
    return {f"student{i:02d}": filled if i % 2 == 0 else released_nb for i in range(STUDENTS)}


def _submit(course: Path, notebooks: dict[str, dict]) -> None:
    for student, nb in notebooks.items():
        path = course / "submitted" / student / "01_attention" / "01_attention.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(nb))


def main() -> None:
    load = os.getloadavg()[0]  # others' work on the machine changes every row
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        root = Path(tmp)
        release(root / "rel")
        isolated = root / "rel" / "nbgrader"
        _run(["nbgrader", "generate_assignment", "01_attention"], isolated)
        nb = json.loads((isolated / "release/01_attention/01_attention.ipynb").read_text())
        notebooks = _class(nb)

        plain = root / "plain"  # nbgrader as shipped: Execute in the student's kernel
        shutil.copytree(isolated, plain)
        config = (plain / "nbgrader_config.py").read_text()
        config = config[: config.index("c.Autograde.autograde_preprocessors")]
        (plain / "nbgrader_config.py").write_text(config)
        for course in (isolated, plain):
            _submit(course, notebooks)

        ours_1 = _run([str(BIN / "llm-course"), "grade", str(isolated / "submitted"), "--out",
                       str(root / "g1")], root)  # fmt: skip
        ours_2 = _run([str(BIN / "llm-course"), "grade", str(isolated / "submitted"), "--out",
                       str(root / "g2"), "--jobs", "2"], root)  # fmt: skip
        nbgrader_plain = _run(["nbgrader", "autograde", "01_attention"], plain)
        nbgrader_isolated = _run(["nbgrader", "autograde", "01_attention"], isolated)

    base = nbgrader_plain / STUDENTS
    rows = []
    for name, total in (
        ("llm-course grade, isolated, 1 worker", ours_1),
        ("llm-course grade, isolated, 2 workers", ours_2),
        ("nbgrader autograde, as shipped (kernel)", nbgrader_plain),
        ("nbgrader autograde, points from llm-course", nbgrader_isolated),
    ):
        per = total / STUDENTS
        rows.append([name, f"{per:.2f}", f"{per / base:.2f}"])
    write_table(
        "grading",
        ["chapter 01, per submission", "seconds", "ratio to nbgrader as shipped"],
        rows,
        note=f"{STUDENTS} submissions (half complete, half untouched stubs), one run, "
        "wall time including start-up. nbgrader as shipped gives the untouched stubs full "
        "points: its test cells call the self-check, which only prints. "
        f"Load average at the start: {load:.1f} on {os.cpu_count()} cores.",
    )


if __name__ == "__main__":
    main()
