"""`llm-course release`: the real nbgrader commands run on a small class and agree with
`llm-course grade`; the student bundle installs in a fresh venv and self-checks there."""

from __future__ import annotations

import copy
import csv
import importlib
import inspect
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import solutions.attention as ref
from autograder.cli import main
from autograder.core.chapters import load_spec
from autograder.core.sandbox import bwrap_works
from autograder.core.stubs import exercise_cells
from autograder.nbgrader_plugin import IsolatedGrades, UngradableNotebook
from autograder.release import present_chapters
from tests.notebook_tools import with_reference

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _filled(
    released: dict, edits: dict[str, tuple[str, str]] | None = None, module: object = ref
) -> dict:
    """The released notebook with the reference written into every solution cell."""
    nb = copy.deepcopy(released)
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution"):
            source = inspect.getsource(getattr(module, meta["grade_id"]))
            old, new = (edits or {}).get(meta["grade_id"], ("", ""))
            cell["source"] = source.replace(old, new) if old else source
    return nb


def _scores(path: Path, column: str) -> dict[str, float]:
    with open(path, newline="") as f:
        return {row["student_id"]: float(row[column]) for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("release")
    assert main(["release", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here")
def test_nbgrader_autograde_agrees_with_llm_course_grade(released: Path) -> None:
    course = released / "nbgrader"
    _run(["nbgrader", "generate_assignment", "01_attention"], course)
    release_nb = course / "release" / "01_attention" / "01_attention.ipynb"
    notebook = json.loads(release_nb.read_text())

    # What nbgrader hands out is exactly the notebook the course ships.
    shipped = json.loads((ROOT / "course" / "01_attention.ipynb").read_text())

    def text(nb: dict) -> list[str]:
        return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                for c in nb["cells"]]  # fmt: skip

    assert text(notebook) == text(shipped)

    cheat = copy.deepcopy(notebook)  # redefines check(): a kernel-run test cell would pass
    fake = "def check(*args, **kwargs):\n    return None"
    cheat["cells"].insert(1, {"cell_type": "code", "metadata": {}, "outputs": [],
                              "execution_count": None, "source": fake})  # fmt: skip
    class_ = {
        "alice": _filled(notebook),
        "bob": notebook,
        "carol": _filled(notebook, {"gelu": ("0.5 * x *", "x *")}),
        "mallory": cheat,
    }
    for student, nb in class_.items():
        path = course / "submitted" / student / "01_attention" / "01_attention.ipynb"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(nb))
    _run(["nbgrader", "autograde", "01_attention"], course)
    _run(["nbgrader", "export"], course)
    nbgrader_scores = _scores(course / "grades.csv", "score")

    out = released / "llm-course-grades"
    assert main(["grade", str(course / "submitted"), "--out", str(out)]) == 0
    ours = _scores(out / "grades.csv", "score")
    # carol's gelu is wrong: it costs gelu only (its callers pass with a stand-in)
    assert nbgrader_scores == ours == {"alice": 16, "bob": 0, "carol": 15, "mallory": 0}


@pytest.mark.slow
def test_student_bundle_installs_in_a_fresh_venv_and_self_checks(
    released: Path, tmp_path: Path
) -> None:
    bundle = released / "student"
    assert not (bundle / "solutions").exists()
    assert not (bundle / "autograder" / "attention.py").exists()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile"]
    _run([*pip, "torch==2.13.0"], tmp_path)
    _run([*pip, str(bundle)], tmp_path)
    python = str(venv / "bin" / "python")
    probe = subprocess.run([python, "-c", "import solutions"], cwd=tmp_path, capture_output=True)
    assert probe.returncode != 0, "the bundle must not make solutions importable"
    answers = tmp_path / "answers.py"
    answers.write_text(inspect.getsource(ref))
    llm = str(venv / "bin" / "llm-course")
    todo = subprocess.run([llm, "check", "01", "--notebook", str(bundle / "course" /
                                                                "01_attention.ipynb")],
                          cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert todo.returncode == 1 and todo.stdout.count("TODO") == 10, todo.stdout + todo.stderr
    ok = subprocess.run([llm, "check", "01", "--notebook", str(answers)], cwd=tmp_path,
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.count("PASS") == 10, ok.stdout + ok.stderr
    for info in present_chapters()[1:]:  # every other chapter: its notebook, reference in
        module = importlib.import_module(f"solutions.{info.slug}")
        answers = tmp_path / f"{info.key}.ipynb"
        answers.write_text(json.dumps(with_reference(bundle / "course" / answers.name, module)))
        done = subprocess.run([llm, "check", info.number, "--notebook", str(answers)],
                              cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
        n = len(load_spec(info).exercises)
        assert done.returncode == 0 and done.stdout.count("PASS") == n, info.key + done.stdout
    # The course model ships with the bundle and loads without solutions/.
    load = (
        "import torch; from course.model import load_course_model\n"
        "for size in ('main', 'draft'):\n"
        "    model, tok = load_course_model(size)\n"
        "    print(size, tuple(model(torch.tensor([tok.encode('Return the')])).shape))\n"
        "from course.model import load_task_model\n"
        "model, tok = load_task_model()\n"
        "print('tasks', tuple(model(torch.tensor([tok.encode('abc -> ')])).shape))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LLM_COURSE_CACHE"}
    loaded = subprocess.run([python, "-c", load], cwd=tmp_path, env=env, capture_output=True,
                            text=True)  # fmt: skip
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert "main (1, 2, 1024)" in loaded.stdout and "draft (1, 2, 1024)" in loaded.stdout
    assert "tasks (1, 7, 68)" in loaded.stdout, loaded.stdout  # chapter 10's, 68 characters


def test_release_of_some_chapters_ships_only_theirs(tmp_path: Path) -> None:
    """A release for chapters 01 and 02 (as an instructor hands them out week by week):
    their notebooks and fixtures only, and no course model, whose GPT and tokenizer
    mirror exercises of chapters 02 and 04."""
    assert main(["release", "--out", str(tmp_path), "--chapters", "2,attention"]) == 0
    bundle = tmp_path / "student"
    notebooks = sorted(p.name for p in (bundle / "course").glob("*.ipynb"))
    assert notebooks == ["01_attention.ipynb", "02_architectures.ipynb"]
    fixtures = sorted(p.name for p in (bundle / "autograder" / "fixtures").glob("*.pt"))
    assert fixtures == ["01_attention.pt", "02_architectures.pt"]
    assert not (bundle / "course" / "model.py").exists()
    assert not any((bundle / "course" / "data").iterdir())  # no 08 labels, no model
    sources = sorted(p.name for p in (tmp_path / "nbgrader" / "source").iterdir())
    assert sources == ["01_attention", "02_architectures"]


def test_release_names_an_unknown_chapter(tmp_path: Path, capsys) -> None:
    assert main(["release", "--out", str(tmp_path), "--chapters", "01,nope"]) == 2
    assert "unknown chapter 'nope'" in capsys.readouterr().err


# Students may hand in the student bundle's notebook (DIR/student/course/01_attention.ipynb:
# no nbgrader metadata, the stub cells named by their llm_course metadata) instead of the
# one nbgrader generate_assignment made. One release of chapter 01, one autograde run.
# Half done: 3 + 1 + 3 + 1 of the 16 points.
HALF = ("scaled_dot_product_attention", "causal_mask", "MultiHeadAttention",
        "sinusoidal_positional_encoding")  # fmt: skip


def _bundle_filled(bundle: dict, names: tuple[str, ...] | None = None) -> dict:
    """The bundle notebook with the reference pasted into the stub cells of ``names``."""
    nb = copy.deepcopy(bundle)
    for cell, name in exercise_cells(nb):
        if names is None or name in names:
            cell["source"] = inspect.getsource(getattr(ref, name))
    return nb


def _code_cell(source: str, metadata: dict | None = None) -> dict:
    return {"cell_type": "code", "metadata": metadata or {}, "outputs": [],
            "execution_count": None, "source": source}  # fmt: skip


def _reordered(bundle: dict) -> dict:
    """The reference, with the cells after the imports shuffled, gelu's self-check deleted,
    and extra cells: a note, scratch code, and a wrong copy of the gelu stub cell
    (metadata and all, as Jupyter copies a cell) above the right one."""
    nb = _bundle_filled(bundle)
    head, rest = nb["cells"][:2], nb["cells"][2:]
    rest = [c for c in rest if "".join(c["source"]) != 'check("01", gelu)']
    random.Random(0).shuffle(rest)
    wrong_gelu = inspect.getsource(ref.gelu).replace("0.5 * x *", "x *")
    extra = [
        {"cell_type": "markdown", "metadata": {}, "source": "My notes: try gelu first."},
        _code_cell(wrong_gelu, {"llm_course": {"exercise": "gelu"}}),
        _code_cell("scratch = torch.randn(3, 4)\nprint(scratch.shape)"),
    ]
    nb["cells"] = head + extra + rest
    return nb


def _submit(course: Path, notebooks: dict[str, dict]) -> None:
    for student, nb in notebooks.items():
        path = course / "submitted" / student / "01_attention" / "01_attention.ipynb"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(nb))


def _autograded(course: Path, student: str) -> dict:
    return json.loads((course / "autograded" / student / "01_attention" /
                       "01_attention.ipynb").read_text())  # fmt: skip


def _graded_cells(nb: dict) -> list[tuple[int, dict]]:
    return [(i, c) for i, c in enumerate(nb["cells"]) if c["metadata"].get("nbgrader")]


@pytest.fixture(scope="module")
def bundle_class(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Chapter 01 released, with a class of student-bundle notebooks (and one made by
    generate_assignment) autograded and exported; the course folder and autograde's log."""
    out = tmp_path_factory.mktemp("release01")
    assert main(["release", "--out", str(out), "--chapters", "01"]) == 0
    course = out / "nbgrader"
    _run(["nbgrader", "generate_assignment", "01_attention"], course)
    bundle = json.loads((out / "student" / "course" / "01_attention.ipynb").read_text())
    released = json.loads((course / "release" / "01_attention" / "01_attention.ipynb").read_text())
    _submit(course, {
        "ana": _bundle_filled(bundle),  # the reference pasted into the stub cells
        "ben": bundle,  # the shipped stubs, untouched
        "cai": _bundle_filled(bundle, HALF),  # half done
        "dee": _reordered(bundle),
        "fay": _filled(released),  # the notebook nbgrader hands out, as before
    })  # fmt: skip
    log = _run(["nbgrader", "autograde", "01_attention"], course).stderr
    _run(["nbgrader", "export"], course)
    return course, log


@pytest.mark.slow
@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here")
def test_student_bundle_notebooks_score_under_nbgrader_as_under_llm_course_grade(
    bundle_class: tuple[Path, str],
) -> None:
    course, log = bundle_class
    nbgrader_scores = _scores(course / "grades.csv", "score")
    assert main(["grade", str(course / "submitted"), "--out", str(course / "ours")]) == 0
    ours = _scores(course / "ours" / "grades.csv", "score")
    assert nbgrader_scores == ours == {"ana": 16, "ben": 0, "cai": 8, "dee": 16, "fay": 16}
    assert set(_scores(course / "grades.csv", "max_score").values()) == {16}
    # nbgrader's OverwriteCells found every matched cell as the database has it.
    assert "has changed" not in log and "does not exist in the database" not in log
    for student in ("ana", "ben", "cai", "dee"):
        assert f"{student}/01_attention/01_attention.ipynb: a student-bundle notebook" in log


@pytest.mark.slow
@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here")
def test_shipped_stub_and_half_done_bundle_notebooks_say_what_failed(
    bundle_class: tuple[Path, str],
) -> None:
    course, _ = bundle_class
    points = {e.name: e.points for e in load_spec(present_chapters()[0]).exercises}
    for student, done in (("ben", ()), ("cai", HALF)):
        nb = _autograded(course, student)
        cells = {c["metadata"]["nbgrader"]["grade_id"]: c for _, c in _graded_cells(nb)}
        assert set(cells) == set(points) | {"test_" + name for name in points}
        for name, value in points.items():
            test = cells["test_" + name]
            assert test["metadata"]["nbgrader"]["points"] == value
            assert cells[name]["metadata"]["nbgrader"]["solution"]
            outputs = test["outputs"]
            if name in done:
                assert [o["output_type"] for o in outputs] == ["stream"], (student, name)
            else:
                assert [o["output_type"] for o in outputs] == ["error"], (student, name)
                assert "not implemented" in outputs[0]["evalue"], outputs[0]["evalue"]


@pytest.mark.slow
@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here")
def test_reordered_bundle_notebook_with_extra_cells_is_matched_by_name(
    bundle_class: tuple[Path, str],
) -> None:
    """dee's cells are shuffled, gelu's self-check is gone and a wrong copy of the gelu
    stub sits above the right one: still full marks (score checked above), each test cell
    right after its own exercise's stub, the last gelu cell being the graded one."""
    course, _ = bundle_class
    nb = _autograded(course, "dee")
    graded = _graded_cells(nb)
    ids = [c["metadata"]["nbgrader"]["grade_id"] for _, c in graded]
    assert len(ids) == len(set(ids)) == 20
    for index, cell in graded:
        grade_id = cell["metadata"]["nbgrader"]["grade_id"]
        if grade_id.startswith("test_"):
            stub = next(i for i, c in graded if c["metadata"]["nbgrader"]["grade_id"] ==
                        grade_id.removeprefix("test_"))  # fmt: skip
            assert cell["outputs"][0]["output_type"] == "stream", grade_id
            if grade_id == "test_gelu":  # restored from the database: right after the stub
                assert index == stub + 1 and "".join(cell["source"]) == 'check("01", gelu)'
    gelu_cells = [i for i, c in enumerate(nb["cells"])
                  if c["metadata"].get("llm_course", {}).get("exercise") == "gelu"]  # fmt: skip
    assert len(gelu_cells) == 2
    assert "nbgrader" not in nb["cells"][gelu_cells[0]]["metadata"]  # the wrong copy
    assert nb["cells"][gelu_cells[1]]["metadata"]["nbgrader"]["grade_id"] == "gelu"
    sources = ["".join(c["source"]) for c in nb["cells"]]
    assert "My notes: try gelu first." in sources and any("scratch" in s for s in sources)


@pytest.mark.slow
def test_notebook_in_neither_layout_stops_nbgrader_autograde(
    bundle_class: tuple[Path, str], tmp_path: Path
) -> None:
    """No nbgrader metadata and no exercise names (zoe: the reference, every cell's metadata
    stripped), or exercise names of another chapter (yan: chapter 02's notebook): autograde
    exits non-zero and says which notebook and why, instead of recording 0 points."""
    course = tmp_path / "course"
    shutil.copytree(bundle_class[0], course)  # the others are graded already: skipped
    bare = _bundle_filled(json.loads((ROOT / "course" / "01_attention.ipynb").read_text()))
    for cell in bare["cells"]:
        cell["metadata"] = {}
    other = json.loads((ROOT / "course" / "02_architectures.ipynb").read_text())
    _submit(course, {"zoe": bare, "yan": other})
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    proc = subprocess.run(["nbgrader", "autograde", "01_attention"], cwd=course, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert "zoe/01_attention/01_attention.ipynb cannot be graded" in log, log[-3000:]
    assert "neither nbgrader cell metadata" in log
    assert "yan/01_attention/01_attention.ipynb cannot be graded" in log
    assert "none of this assignment's" in log
    assert "processing assignment '01_attention' for student 'zoe'" in log
    assert not (course / "autograded" / "zoe" / "01_attention" / "01_attention.ipynb").exists()


@pytest.mark.slow
@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here")
def test_isolated_grades_refuses_a_notebook_without_test_cells(
    bundle_class: tuple[Path, str],
) -> None:
    """With an nbgrader_config.py that lacks StudentBundleCells (an older release), a
    bundle notebook reaches IsolatedGrades without test cells: an error, not a 0."""
    path = bundle_class[0].parent / "student" / "course" / "01_attention.ipynb"
    bundle = nbformat.reads(path.read_text(), as_version=4)
    resources = {"unique_key": "01_attention",
                 "nbgrader": {"student": "ben", "assignment": "01_attention",
                              "notebook": "01_attention"}}  # fmt: skip
    with pytest.raises(UngradableNotebook, match="ben/01_attention/01_attention.ipynb: none of"):
        IsolatedGrades().preprocess(bundle, resources)
