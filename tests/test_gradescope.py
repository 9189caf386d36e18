"""The Gradescope autograder zip, end to end in a simulated Gradescope container.

``llm-course release --gradescope`` builds chapter 01's zip; it is unpacked into
a folder laid out as Gradescope's /autograder, and setup.sh runs under
bubblewrap with that folder bound as /autograder and no network (so every
package comes from the zip's wheels). Then run_autograder grades three uploads
there, and each results.json is checked against Gradescope's documented format
and against ``llm-course grade`` on the same files. Inside that outer sandbox
the grader's own bubblewrap may not start: that exercises the fallback.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from autograder import gradescope
from autograder.cli import main
from autograder.core.chapters import resolve_chapter
from tests.hostile.corpus import reference_cells, write_notebook

ATTENTION = resolve_chapter("01")
WRONG_MASK = (
    "def causal_mask(seq_len, device=None):\n"
    "    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).triu()\n"
)
WRONG_GELU = "def gelu(x):\n    return x * torch.sigmoid(x)\n"
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}
# where each upload lands in /autograder/submission (any name: run_autograder finds it)
UPLOADS = {
    "honest": "my work.ipynb",
    "partly_wrong": "attention_solution.py",
    "broken": "01_attention.ipynb",
}


def _write_uploads(folder: Path) -> dict[str, Path]:
    paths = {kind: folder / kind / name for kind, name in UPLOADS.items()}
    write_notebook(paths["honest"], reference_cells())
    cells = reference_cells(replace={"causal_mask": WRONG_MASK, "gelu": WRONG_GELU})
    paths["partly_wrong"].parent.mkdir(parents=True)
    paths["partly_wrong"].write_text("\n\n\n".join(cells) + "\n", encoding="utf-8")
    paths["broken"].parent.mkdir(parents=True)
    paths["broken"].write_text('{"cells": [ this is not JSON', encoding="utf-8")
    return paths


def _in_container(root: Path, command: list[str], timeout: float) -> subprocess.CompletedProcess:
    """``command`` under bubblewrap with ``root`` as /autograder, a read-only system and no
    network, as root, like Gradescope's container."""
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
    cmd += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for path in ("/bin", "/lib", "/lib64", "/sbin", "/sys"):
        cmd += ["--ro-bind-try", path, path]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    cmd += ["--bind", str(root), "/autograder", "--chdir", "/autograder", "--clearenv"]
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PIP_CONFIG_FILE": "/dev/null",  # no local index or wheel folder: only the zip's
        "LLM_COURSE_NO_APT": "1",
    }
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    return subprocess.run(cmd + command, capture_output=True, text=True, timeout=timeout)


def _bwrap_runs() -> bool:
    if shutil.which("bwrap") is None:
        return False
    done = subprocess.run(
        ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True
    )
    return done.returncode == 0


needs_bwrap = pytest.mark.skipif(not _bwrap_runs(), reason="bubblewrap cannot run here")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Chapter 01's zip, unpacked into a Gradescope root and set up; then three gradings."""
    work = tmp_path_factory.mktemp("gradescope")
    started = time.monotonic()
    assert main(["release", "--gradescope", str(work / "zips"), "--chapters", "01"]) == 0
    build_seconds = time.monotonic() - started
    zip_path = work / "zips" / "01_attention-gradescope.zip"
    root = work / "autograder"
    for name in ("source", "submission", "results"):
        (root / name).mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
        for info in zf.infolist():  # zipfile drops the permission bits: as Gradescope, keep them
            mode = info.external_attr >> 16
            if mode:
                (root / "source" / info.filename).chmod(mode & 0o777)
    # Gradescope copies run_autograder to /autograder/ when it builds the image
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    started = time.monotonic()
    setup = _in_container(root, ["/bin/bash", "/autograder/source/setup.sh"], timeout=600)
    setup_seconds = time.monotonic() - started
    assert setup.returncode == 0, setup.stdout + setup.stderr
    uploads = _write_uploads(work / "uploads")
    results, stdout = {}, {}
    for kind, path in uploads.items():
        shutil.rmtree(root / "submission")
        shutil.rmtree(root / "results")
        (root / "submission").mkdir()
        (root / "results").mkdir()
        shutil.copy2(path, root / "submission" / path.name)
        done = _in_container(root, ["/autograder/run_autograder"], timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        results[kind] = json.loads((root / "results" / "results.json").read_text())
        stdout[kind] = done.stdout
    print(
        f"zip {zip_path.stat().st_size / 1e6:.0f} MB built in {build_seconds:.0f} s; "
        f"setup.sh {setup_seconds:.0f} s"
    )
    return {
        "zip": zip_path,
        "root": root,
        "uploads": uploads,
        "results": results,
        "stdout": stdout,
        "setup_seconds": setup_seconds,
    }


def check_gradescope_schema(results: dict[str, Any]) -> None:
    """results.json as Gradescope's autograder specification documents it."""
    allowed = {
        "score",
        "execution_time",
        "output",
        "output_format",
        "visibility",
        "stdout_visibility",
        "extra_data",
        "tests",
        "leaderboard",
    }
    assert set(results) <= allowed, set(results) - allowed
    assert isinstance(results["score"], int | float)
    assert isinstance(results["execution_time"], int | float) and results["execution_time"] >= 0
    assert isinstance(results["output"], str) and results["output"]
    assert results["stdout_visibility"] in VISIBILITIES
    assert isinstance(results["tests"], list) and results["tests"]
    test_keys = {
        "score",
        "max_score",
        "status",
        "name",
        "name_format",
        "number",
        "output",
        "output_format",
        "tags",
        "visibility",
        "extra_data",
    }
    for test in results["tests"]:
        assert set(test) <= test_keys, set(test) - test_keys
        assert isinstance(test["name"], str) and test["name"]
        assert isinstance(test["score"], int | float)
        assert isinstance(test["max_score"], int | float)
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] in ("passed", "failed")
        assert isinstance(test["output"], str)
        assert test["visibility"] in VISIBILITIES
    assert results["score"] == sum(t["score"] for t in results["tests"])


def _visible_text(results: dict[str, Any]) -> str:
    shown = [results["output"]]
    shown += [
        t["name"] + "\n" + t["output"] for t in results["tests"] if t["visibility"] != "hidden"
    ]
    return "\n".join(shown)


def _exercises(results: dict[str, Any]) -> dict[str, float]:
    return {t["name"]: t["score"] for t in results["tests"] if t["name"] != gradescope.STAFF_TEST}


# -- the zip ---------------------------------------------------------------------------------


@pytest.mark.slow
@needs_bwrap
def test_the_zip_has_gradescopes_layout_and_everything_to_install_offline(built) -> None:
    with zipfile.ZipFile(built["zip"]) as zf:
        names = set(zf.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
        project = next(n for n in names if n.startswith("wheels/llm_course-"))
        with zf.open(project) as f, zipfile.ZipFile(f) as wheel:
            inside = set(wheel.namelist())
        run = zf.read("run_autograder").decode()
    assert {"setup.sh", "run_autograder", "chapter.json", "requirements.txt"} <= names
    assert modes["setup.sh"] & stat.S_IXUSR and modes["run_autograder"] & stat.S_IXUSR
    assert any(n.startswith("wheels/torch-") and "cpu" in n for n in names)
    assert any(n.startswith("wheels/pip-") for n in names)
    # the instructor's copy: the reference and the grading specs are in it
    assert {"solutions/attention.py", "autograder/attention.py"} <= inside
    assert "--chapter 01" in run
    root = built["root"]
    assert (root / "venv" / "bin" / "python").exists()
    assert (root / "llm-course" / "solutions" / "attention.py").exists()
    # the course is not in the venv, which student code may read (it needs torch from there)
    assert not list((root / "venv").glob("lib/python3*/site-packages/solutions"))
    print(f"zip: {built['zip'].stat().st_size / 1e6:.0f} MB, setup: {built['setup_seconds']:.0f} s")


# -- the three gradings ----------------------------------------------------------------------


@pytest.mark.slow
@needs_bwrap
@pytest.mark.parametrize("kind", list(UPLOADS))
def test_results_json_follows_gradescopes_format(built, kind: str) -> None:
    results = built["results"][kind]
    check_gradescope_schema(results)
    assert results["stdout_visibility"] == "hidden"
    staff = [t for t in results["tests"] if t["name"] == gradescope.STAFF_TEST]
    assert len(staff) == 1 and staff[0]["visibility"] == "hidden"
    assert "isolation: " in staff[0]["output"]
    # which isolation ran, and its warning, are for the staff only
    visible = _visible_text(results)
    assert "isolation" not in visible and "Landlock" not in visible
    assert "bubblewrap" not in visible
    assert "isolation: " in built["stdout"][kind]


@pytest.mark.slow
@needs_bwrap
def test_each_upload_gets_the_score_it_deserves(built) -> None:
    honest, wrong, broken = (built["results"][k] for k in ("honest", "partly_wrong", "broken"))
    assert honest["score"] == 16 and all(
        t["status"] == "passed" for t in honest["tests"] if t["visibility"] == "visible"
    )
    scores = _exercises(wrong)
    assert 0 < wrong["score"] < 16
    assert scores["01_attention: causal_mask"] == 0 and scores["01_attention: gelu"] == 0
    assert scores["01_attention: layer_norm"] == 1
    mask = next(t for t in wrong["tests"] if t["name"] == "01_attention: causal_mask")
    assert mask["visibility"] == "visible" and "Hint:" in mask["output"]
    assert "upper triangle" in mask["output"]
    assert broken["score"] == 0
    assert all(t["status"] == "failed" for t in broken["tests"] if t["visibility"] == "visible")
    assert all(t["output"] for t in broken["tests"])


@pytest.mark.slow
@needs_bwrap
def test_scores_equal_llm_course_grade_on_the_same_files(built, tmp_path: Path) -> None:
    klass = tmp_path / "class"
    for kind, path in built["uploads"].items():
        (klass / kind).mkdir(parents=True)
        shutil.copy2(path, klass / kind / path.name)
    out = tmp_path / "out"
    main(["grade", str(klass), "--chapter", "01", "--out", str(out)])
    for kind in UPLOADS:
        expected = json.loads((out / "students" / kind / "results.json").read_text())
        got = built["results"][kind]
        assert _exercises(got) == {t["name"]: t["score"] for t in expected["tests"]}, kind
        assert got["score"] == expected["score"]
        by_name = {t["name"]: t["output"] for t in expected["tests"]}
        for test in got["tests"]:
            if test["name"] in by_name:
                assert test["output"] == by_name[test["name"]]


# -- without the container -------------------------------------------------------------------


def test_where_nothing_can_isolate_the_student_is_told_grading_did_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from autograder.core import sandbox

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise sandbox.IsolationUnavailable("bubblewrap cannot run and the kernel has no Landlock")

    monkeypatch.setattr(sandbox, "IsolatedExecutor", refuse)
    (tmp_path / "submission").mkdir()
    write_notebook(tmp_path / "submission" / "anything.ipynb", reference_cells())
    assert gradescope.main(["--chapter", "01", "--root", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    check_gradescope_schema(results)
    assert results["score"] == 0 and results["output"] == gradescope.FAILED_TO_RUN
    assert "Landlock" not in _visible_text(results)
    assert "no Landlock" in capsys.readouterr().out  # stdout: hidden from the student


def test_an_internal_error_still_writes_results_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in the grader")

    monkeypatch.setattr(gradescope, "grade_upload", crash)
    assert gradescope.main(["--chapter", "01", "--root", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    check_gradescope_schema(results)
    assert results["score"] == 0 and "a bug in the grader" not in _visible_text(results)
    assert "a bug in the grader" in capsys.readouterr().out


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")


@pytest.mark.parametrize(
    ("files", "chosen"),
    [
        (["homework (3).ipynb"], "homework (3).ipynb"),
        (["answers.txt"], "answers.txt"),
        (["notes.md", "work/attention.py"], "work/attention.py"),
        (["a.ipynb", "b.py", "01_attention.ipynb"], "01_attention.ipynb"),
        (["a.py", "b.py", "mine.ipynb"], "mine.ipynb"),
        ([".hidden.py", "__MACOSX/x.ipynb", "real.ipynb"], "real.ipynb"),
    ],
)
def test_the_one_uploaded_file_is_found_whatever_its_name(
    tmp_path: Path, files: list[str], chosen: str
) -> None:
    _touch(tmp_path, *files)
    assert gradescope.find_submission(tmp_path, ATTENTION) == tmp_path / chosen


@pytest.mark.parametrize("files", [[], ["a.ipynb", "b.ipynb"], ["x.txt", "y.txt"]])
def test_an_ambiguous_or_empty_upload_is_explained_to_the_student(
    tmp_path: Path, files: list[str]
) -> None:
    _touch(tmp_path, *files)
    (tmp_path / "submission").mkdir(exist_ok=True)
    for name in files:
        shutil.move(tmp_path / name, tmp_path / "submission" / name)
    with pytest.raises(gradescope.NoSubmission):
        gradescope.find_submission(tmp_path / "submission", ATTENTION)
    results = gradescope.grade_upload(tmp_path, ATTENTION)
    check_gradescope_schema(results)
    assert results["score"] == 0 and "upload" in results["output"].lower()


@pytest.mark.parametrize(
    "argv",
    [["release"], ["release", "--gradescope", "{tmp}", "--chapters", "99"]],
    ids=["no-destination", "unknown-chapter"],
)
def test_release_usage_errors_exit_with_status_2(tmp_path: Path, argv: list[str], capsys) -> None:
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    assert "llm-course release" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.zip"))
