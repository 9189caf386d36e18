"""The isolated executor: every mode grades honestly, refuses to run where it cannot isolate,
proves its isolation before grading, and holds its limits with or without control groups."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from autograder.core import sandbox
from autograder.core.chapters import resolve_chapter
from autograder.core.grading import grade_submission
from autograder.core.sandbox import (
    GradingCancelled,
    IsolatedExecutor,
    IsolationUnavailable,
    Limits,
    bwrap_works,
    landlock_works,
    stage_grader_code,
)

ROOT = Path(__file__).resolve().parent.parent
INFO = resolve_chapter("01")
REFERENCE = ROOT / "solutions/attention.py"
needs_bwrap = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here")
needs_landlock = pytest.mark.skipif(not landlock_works(), reason="no Landlock here")


def _with(tmp_path: Path, extra: str) -> Path:
    """The reference with ``extra`` appended (later definitions replace earlier ones)."""
    path = tmp_path / "submission.py"
    path.write_text(REFERENCE.read_text() + "\n\n" + extra)
    return path


@needs_landlock
def test_process_isolation_is_confined_by_landlock_and_grades_the_reference() -> None:
    executor = IsolatedExecutor(isolation="process")
    assert executor.mode == "process" and "Landlock" in executor.warning
    assert sum(r.score for r in grade_submission(REFERENCE, INFO, executor=executor)) == 16


def test_none_isolation_grades_and_says_it_is_unsafe() -> None:
    executor = IsolatedExecutor(isolation="none")
    assert "without isolation" in executor.warning and "trust" in executor.warning
    assert sum(r.score for r in grade_submission(REFERENCE, INFO, executor=executor)) == 16


@needs_bwrap
def test_bwrap_mode_has_no_warning_and_grades_the_reference() -> None:
    executor = IsolatedExecutor(isolation="bwrap")
    assert executor.warning == ""
    assert sum(r.score for r in grade_submission(REFERENCE, INFO, executor=executor)) == 16


def test_auto_refuses_to_grade_when_nothing_can_isolate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "bwrap_works", lambda: False)
    monkeypatch.setattr(sandbox, "landlock_works", lambda: False)
    with pytest.raises(IsolationUnavailable, match="--isolation none"):
        IsolatedExecutor()
    with pytest.raises(IsolationUnavailable, match="Landlock"):
        IsolatedExecutor(isolation="process")


def _leaky(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the process mode forget to confine its child (a broken isolation)."""
    original = sandbox._confined_command

    def unconfined(
        stage: Path, run: sandbox._Run, hidden: list[Path], landlock: bool = True
    ) -> list[str]:
        cmd = original(stage, run, hidden, landlock)
        plan = json.loads((run.root / "plan.json").read_text())
        plan["confine"] = None
        (run.root / "plan.json").write_text(json.dumps(plan))
        return cmd

    monkeypatch.setattr(sandbox, "_confined_command", unconfined)


@needs_landlock
def test_probe_refuses_to_grade_when_the_reference_is_readable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _leaky(monkeypatch)
    executor = IsolatedExecutor(isolation="process")
    with pytest.raises(IsolationUnavailable, match=r"leaks here.*read .*solutions"):
        grade_submission(REFERENCE, INFO, executor=executor)


@needs_landlock
def test_probe_refuses_to_grade_when_a_protected_folder_is_writable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _leaky(monkeypatch)
    (tmp_path / "class").mkdir()
    executor = IsolatedExecutor(isolation="process", protected=[tmp_path / "class"])
    with pytest.raises(IsolationUnavailable, match="write in"):
        executor.verify()
    assert list((tmp_path / "class").iterdir()) == [], "the probe's file was not removed"


@needs_landlock
def test_probe_passes_when_confined_and_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / "class").mkdir()
    (tmp_path / "class" / "alice.ipynb").write_text("{}")
    executor = IsolatedExecutor(isolation="process", protected=[tmp_path / "class"])
    executor.verify()
    assert [p.name for p in (tmp_path / "class").iterdir()] == ["alice.ipynb"]


def test_an_installed_copy_of_the_reference_is_hidden_from_the_child(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    for name in ("solutions", "numpy", "torch"):
        (site / name).mkdir(parents=True)
    monkeypatch.setattr(sandbox, "_prefixes", lambda: [str(tmp_path / "venv")])
    hidden = sandbox._secret_paths()
    assert site / "solutions" in hidden
    allowed = sandbox._allowed_beneath(tmp_path / "venv", hidden)
    assert str(site / "numpy") in allowed and str(site / "torch") in allowed
    assert not any(Path(a) == site / "solutions" or site / "solutions" in Path(a).parents
                   for a in allowed)  # fmt: skip
    binds = sandbox._system_binds(hidden)
    assert ["--tmpfs", str(site / "solutions")] == binds[binds.index("--tmpfs") :][:2]


def test_exercise_timeout_costs_only_that_exercise(tmp_path: Path) -> None:
    endless = "def causal_mask(seq_len, device=None):\n    while True:\n        pass\n"
    path = _with(tmp_path, endless)
    executor = IsolatedExecutor(Limits(exercise_seconds=3))
    results = {r.name: r for r in grade_submission(path, INFO, executor=executor)}
    assert "took longer than 3 s" in results["causal_mask"].message
    block = results["TransformerBlock"]  # it calls causal_mask: graded again with a stand-in
    assert block.passed and "reference stands in for your `causal_mask`" in block.message
    assert sum(r.score for r in results.values()) == 15


@needs_bwrap
def test_without_control_groups_the_process_tree_is_polled_for_memory_and_processes(
    tmp_path: Path,
) -> None:
    forks = (
        "def gelu(x):\n    import os, time\n    for _ in range(100):\n"
        "        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\n"
        "    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))\n"
    )
    hog = (
        "def rms_norm(x, weight, eps=1e-6):\n    import os, time\n    for _ in range(2):\n"
        "        if os.fork() == 0:\n            hog = b'1' * (1200 << 20)\n"
        "            time.sleep(30)\n            os._exit(0)\n    time.sleep(20)\n"
        "    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight\n"
    )
    path = _with(tmp_path, forks + "\n\n" + hog)
    executor = IsolatedExecutor(Limits(memory_bytes=5 << 29, processes=32), isolation="bwrap")
    executor.use_cgroups = False
    results = {r.name: r for r in grade_submission(path, INFO, executor=executor)}
    assert "started more than 32 processes" in results["gelu"].message
    assert "more than 2.5 GiB of memory" in results["rms_norm"].message
    assert results["layer_norm"].passed and results["apply_rope"].passed


def test_cancel_stops_a_running_submission_within_seconds(tmp_path: Path) -> None:
    marker = "4242.25"
    path = _with(
        tmp_path,
        "def causal_mask(seq_len, device=None):\n    import subprocess, time\n"
        f"    subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        "    time.sleep(1000)\n",
    )
    executor = IsolatedExecutor()
    outcome: list[BaseException] = []

    def grade() -> None:
        try:
            grade_submission(path, INFO, executor=executor)
        except BaseException as exc:  # noqa: BLE001 - what it raised is the point
            outcome.append(exc)

    worker = threading.Thread(target=grade)
    worker.start()
    time.sleep(6)
    start = time.monotonic()
    executor.cancel()
    worker.join(timeout=10)
    assert not worker.is_alive() and time.monotonic() - start < 5
    assert len(outcome) == 1 and isinstance(outcome[0], GradingCancelled)
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True)
    assert left.returncode != 0, "the submission's process outlived the cancellation"
    with pytest.raises(GradingCancelled):
        executor(path, [])


def test_staged_code_has_no_specs_and_no_solutions(tmp_path: Path) -> None:
    stage = stage_grader_code(tmp_path / "stage")
    files = {p.relative_to(stage).as_posix() for p in stage.rglob("*.py")}
    assert "autograder/core/child.py" in files and "course/helpers.py" in files
    assert "autograder/attention.py" not in files
    assert not any(f.startswith("solutions/") for f in files)
