"""``llm-course release --out DIR``: the instructor's nbgrader course and the student bundle.

DIR/nbgrader/  an nbgrader course folder: nbgrader_config.py and
               source/NN_SLUG/NN_SLUG.ipynb, the notebooks with the reference
               inside ``### BEGIN SOLUTION`` regions (solution cells) and each
               self-check cell as an autograded test cell worth the exercise's
               points. ``nbgrader generate_assignment`` turns them into exactly
               the notebooks the students get; ``nbgrader autograde`` takes its
               points from the isolated grader (see autograder.nbgrader_plugin),
               and grades the student bundle's notebooks too (their cells are
               matched to the source's by exercise name).
DIR/student/   what students install: the notebooks, the course helpers, the
               self-check with its fixtures and the trained course models
               (course/data/course_model/, read by course.model); no solutions/,
               no grading specs.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from autograder.core.chapters import CHAPTERS, ChapterInfo
from autograder.core.fixtures import load_fixture
from autograder.core.stubs import NBGRADER_CODE_STUB, exercise_cells, reference_source, stub_source
from autograder.nbgrader_plugin import TEST_PREFIX, nbgrader_metadata

ROOT = Path(__file__).resolve().parent.parent
CHECK_CELL = re.compile(r'^\s*check\("(\d\d)",\s*(\w+)\)\s*$')

NBGRADER_CONFIG = f'''"""nbgrader configuration written by `llm-course release`."""

from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    IgnorePattern,
    LimitOutput,
    OverwriteCells,
    OverwriteKernelspec,
    SaveAutoGrades,
)

from autograder.nbgrader_plugin import IsolatedGrades, StudentBundleCells

c = get_config()  # noqa: F821 - provided by nbgrader
c.CourseDirectory.course_id = "llm-course"
# The stub that replaces each solution region: the very line of the shipped notebooks.
c.ClearSolutions.code_stub = {{"python": {NBGRADER_CODE_STUB!r}}}
# Students may also hand in the student bundle's notebook (course/NN_SLUG.ipynb, no
# nbgrader metadata): StudentBundleCells matches its cells to the assignment's by exercise
# name before nbgrader checks them, and stops autograde on a notebook that matches neither.
c.Autograde.sanitize_preprocessors = [
    ClearOutput,
    DeduplicateIds,
    OverwriteKernelspec,
    StudentBundleCells,
    OverwriteCells,
    CheckCellMetadata,
]
# Points come from llm-course's isolated grader, not from running the notebook in the
# student's kernel: nbgrader's Execute step is replaced by IsolatedGrades.
c.Autograde.autograde_preprocessors = [
    IsolatedGrades,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
'''


def nbgrader_source(info: ChapterInfo) -> dict:
    """The chapter's notebook with solution regions and autograded test cells."""
    path = ROOT / info.notebook
    nb = json.loads(path.read_text(encoding="utf-8"))
    reference = reference_source(path)
    points = {ex["name"]: ex["points"] for ex in load_fixture(info)["exercises"]}
    for cell, name in exercise_cells(nb):
        cell["source"] = stub_source(reference, name, solution=True)
        cell["metadata"]["nbgrader"] = nbgrader_metadata(name, solution=True, grade=False)
    for cell in nb["cells"]:
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        match = CHECK_CELL.match(text) if cell["cell_type"] == "code" else None
        if match and match.group(1) == info.number:
            name = match.group(2)
            meta = nbgrader_metadata(
                TEST_PREFIX + name, solution=False, grade=True, points=points[name]
            )
            cell["metadata"]["nbgrader"] = meta
    nb["metadata"].setdefault("llm_course", {"chapter": info.number, "slug": info.slug})
    return nb


def present_chapters() -> list[ChapterInfo]:
    return [c for c in CHAPTERS if (ROOT / c.notebook).exists() and c.fixture.exists()]


def write_nbgrader_course(dest: Path, chapters: list[ChapterInfo]) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "nbgrader_config.py").write_text(NBGRADER_CONFIG, encoding="utf-8")
    written = []
    for info in chapters:
        path = dest / "source" / info.key / f"{info.key}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(nbgrader_source(info), indent=1) + "\n", encoding="utf-8")
        written.append(path)
    return written


STUDENT_PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "llm-course-student"
version = "0.1.0"
description = "The LLM course: notebooks, helpers and the self-check (no solutions)."
requires-python = ">=3.10"
dependencies = ["torch>=2.1", "numpy", "einops", "matplotlib", "tqdm", "nbformat"]

[project.optional-dependencies]
jupyter = ["jupyterlab", "ipykernel"]

[project.scripts]
llm-course = "autograder.cli:main"

[tool.setuptools.packages.find]
include = ["autograder*", "course*"]

[tool.setuptools.package-data]
autograder = ["fixtures/*.pt"]
course = ["*.ipynb", "data/*.json", "data/course_model/*"]
"""

STUDENT_README = """# The LLM course: student bundle

    pip install ".[jupyter]"   # after installing PyTorch (a CUDA build if you have a GPU);
                               # plain `pip install .` if you bring your own Jupyter
    jupyter lab course/01_attention.ipynb
    llm-course check 01 --notebook course/01_attention.ipynb

Each exercise is a stub: keep its signature and docstring, write the body. The
self-check compares your functions with stored answers on fixed inputs and says
what is wrong. Grading uses other inputs. The chapters after 04 use the course's
own small language model; it ships already trained with the first of them
(course/data/course_model/, loaded by `course.model.load_course_model()`).
"""


# The course model mirrors exercises of chapters 02 (GPT) and 04 (the BPE encoder): it
# ships only with a chapter after those, the first to need it.
MODEL_FROM_CHAPTER = 5


def _ignore_for(chapters: list[ChapterInfo]):
    """Leave out the grading specs (autograder/SLUG.py), the fixtures of chapters not
    released, caches and instructor-only code."""
    specs = {f"{c.slug}.py" for c in CHAPTERS}
    other_fixtures = {c.fixture.name for c in CHAPTERS if c not in chapters}

    def ignore(directory: str, names: list[str]) -> list[str]:
        ignored = {"__pycache__"}
        here = Path(directory).resolve()
        if here == (ROOT / "autograder").resolve():
            ignored |= specs | {"release.py", "nbgrader_plugin.py"}
        if here == (ROOT / "autograder" / "fixtures").resolve():
            ignored |= other_fixtures
        return [n for n in names if n in ignored]

    return ignore


def copy_course_model(dest: Path) -> None:
    """The trained course models (trained now if the cache has none), for course.model."""
    from course.model import FILES, SIZES
    from solutions.course_model import cache_dir, train_course_model

    for size in SIZES:
        train_course_model(size)  # a no-op when `make model` has run
    source = cache_dir()  # where train_course_model keeps them
    dest.mkdir(parents=True, exist_ok=True)
    for size in SIZES:
        for name in FILES:
            shutil.copy2(source / name.format(size=size), dest / name.format(size=size))


# Chapter 10's model of small tasks ships with chapter 10 (beside the course models).
TASK_MODEL_CHAPTER = "10"


def copy_task_model(dest: Path) -> None:
    """Chapter 10's trained tasks model (trained now if the cache has none)."""
    from course.model import TASK_MODEL
    from solutions.course_model import cache_dir
    from solutions.task_model import train_task_model

    train_task_model(progress=False)  # a no-op when `make model` has run
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".pt"):
        shutil.copy2(cache_dir() / f"{TASK_MODEL}{suffix}", dest / f"{TASK_MODEL}{suffix}")


def write_student_bundle(dest: Path, chapters: list[ChapterInfo]) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(ROOT / "autograder", dest / "autograder", ignore=_ignore_for(chapters))
    with_model = any(int(c.number) >= MODEL_FROM_CHAPTER for c in chapters)
    keys, numbers = {c.key for c in chapters}, {c.number for c in chapters}
    (dest / "course" / "data").mkdir(parents=True)
    for path in (ROOT / "course").iterdir():
        if (path.suffix == ".py" and (path.name != "model.py" or with_model)) or (
            path.suffix == ".ipynb" and path.stem in keys
        ):
            shutil.copy2(path, dest / "course" / path.name)
    for path in sorted((ROOT / "course" / "data").glob("[0-9][0-9]_*")):
        if path.name[:2] in numbers:  # a chapter's data (NN_...) ships with its chapter
            shutil.copy2(path, dest / "course" / "data" / path.name)
    if with_model:
        copy_course_model(dest / "course" / "data" / "course_model")
    if any(c.number == TASK_MODEL_CHAPTER for c in chapters):
        copy_task_model(dest / "course" / "data" / "course_model")
    (dest / "pyproject.toml").write_text(STUDENT_PYPROJECT, encoding="utf-8")
    (dest / "README.md").write_text(STUDENT_README, encoding="utf-8")
    return dest


def release(out: Path, chapters: list[ChapterInfo] | None = None) -> tuple[list[Path], Path]:
    """Write DIR/nbgrader and DIR/student for ``chapters`` (default: every chapter
    present); return the source notebooks and the bundle."""
    present = present_chapters()
    if chapters is None:
        chapters = present
    missing = [c.key for c in chapters if c not in present]
    if missing:
        raise ValueError(f"chapters: {', '.join(missing)} not present in this repository")
    chapters = sorted(set(chapters), key=lambda c: int(c.number))
    return (
        write_nbgrader_course(out / "nbgrader", chapters),
        write_student_bundle(out / "student", chapters),
    )
