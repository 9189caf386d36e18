"""`llm-course release`: the real nbgrader commands run on a small class and agree with
`llm-course grade`; the student bundle installs in a fresh venv and self-checks there."""

from __future__ import annotations

import copy
import csv
import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import solutions.attention as ref
from autograder.cli import main
from autograder.core.chapters import load_spec
from autograder.core.sandbox import bwrap_works
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
    assert nbgrader_scores == ours == {"alice": 16, "bob": 0, "carol": 12, "mallory": 0}


LATER_CHAPTERS = [c for c in present_chapters() if c.number != "01"]


@pytest.mark.slow
@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here")
@pytest.mark.parametrize("info", LATER_CHAPTERS, ids=[c.key for c in LATER_CHAPTERS])
def test_nbgrader_and_llm_course_agree_on_every_chapter(info, tmp_path: Path) -> None:
    """Each chapter's release through the real nbgrader: the reference earns every point,
    the untouched stubs none, and nbgrader's grades.csv says what `llm-course grade` says."""
    assert main(["release", "--out", str(tmp_path), "--chapters", info.number]) == 0
    course = tmp_path / "nbgrader"
    _run(["nbgrader", "generate_assignment", info.key], course)
    notebook = json.loads((course / "release" / info.key / f"{info.key}.ipynb").read_text())
    module = importlib.import_module(f"solutions.{info.slug}")
    for student, nb in {"alice": _filled(notebook, module=module), "bob": notebook}.items():
        path = course / "submitted" / student / info.key / f"{info.key}.ipynb"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(nb))
    _run(["nbgrader", "autograde", info.key], course)
    _run(["nbgrader", "export"], course)
    full = float(sum(e.points for e in load_spec(info).exercises))
    assert main(["grade", str(course / "submitted"), "--out", str(tmp_path / "ours")]) == 0
    ours = _scores(tmp_path / "ours" / "grades.csv", "score")
    assert _scores(course / "grades.csv", "score") == ours == {"alice": full, "bob": 0.0}


@pytest.mark.slow
def test_student_bundle_installs_in_a_fresh_venv_and_self_checks(
    released: Path, tmp_path: Path
) -> None:
    bundle = released / "student"
    assert not (bundle / "solutions").exists()
    assert not (bundle / "autograder" / "attention.py").exists()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
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
    )
    env = {k: v for k, v in os.environ.items() if k != "LLM_COURSE_CACHE"}
    loaded = subprocess.run([python, "-c", load], cwd=tmp_path, env=env, capture_output=True,
                            text=True)  # fmt: skip
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert "main (1, 2, 1024)" in loaded.stdout and "draft (1, 2, 1024)" in loaded.stdout


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
