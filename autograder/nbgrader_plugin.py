"""nbgrader's autograde, with the points coming from the isolated grader.

``llm-course release`` writes an nbgrader_config.py whose autograde pipeline
replaces nbgrader's Execute step (which would run the student's notebook, tests
and all, in the student's own kernel, where a monkeypatch or a swallowed
exception can fake a pass) with :class:`IsolatedGrades`: it grades the
submitted notebook with ``llm-course``'s isolated grader and writes each
exercise's verdict into its autograded test cell: no output for a pass (full
points in nbgrader), an error with the grader's message for a failure.
nbgrader's own SaveAutoGrades then records those points as usual.

Students may submit either layout of a chapter's notebook:

- the one ``nbgrader generate_assignment`` made (nbgrader metadata on every
  solution and test cell): nbgrader's own checks apply, unchanged;
- the student bundle's ``course/NN_SLUG.ipynb`` (no nbgrader metadata; each
  stub cell names its exercise in ``{"llm_course": {"exercise": NAME}}``):
  :class:`StudentBundleCells`, in autograde's sanitize step before nbgrader's
  OverwriteCells and CheckCellMetadata, matches its cells to the assignment's by
  exercise name, wherever they are and whatever was added around them.

A notebook in neither layout, or one that no verdict can be written into, stops
``nbgrader autograde`` with an error naming the notebook and the problem
(nbgrader then exits with status 1) instead of scoring a silent 0.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_output

from autograder.core.chapters import resolve_chapter
from autograder.core.grading import expectations, grade_with_stand_ins
from autograder.core.sandbox import IsolatedExecutor

TEST_PREFIX = "test_"  # an exercise's autograded cell is grade_id "test_" + exercise name
_EXECUTOR: IsolatedExecutor | None = None

try:  # nbgrader is an instructor's tool; the student bundle does not need it
    from nbgrader.preprocessors.base import NbGraderPreprocessor as _Base
except ImportError:  # pragma: no cover
    from nbconvert.preprocessors import Preprocessor as _Base


class UngradableNotebook(Exception):
    """A submitted notebook whose grades nbgrader could not record: autograde must fail."""


def nbgrader_metadata(
    grade_id: str, *, solution: bool, grade: bool, points: float = 0
) -> dict[str, Any]:
    """A cell's ``nbgrader`` metadata: a solution cell, or an autograded test cell."""
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution,
            "schema_version": 3, "solution": solution, "task": False}  # fmt: skip
    if grade:
        meta["points"] = points
    return meta


def _grade_id(cell: NotebookNode) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta.get("grade_id") if isinstance(meta, dict) else None


def _exercise(cell: NotebookNode) -> str | None:
    """The exercise a student-bundle stub cell holds (its llm_course metadata), if any."""
    meta = cell.get("metadata", {}).get("llm_course")
    name = meta.get("exercise") if isinstance(meta, dict) else None
    return name if cell.get("cell_type") == "code" and isinstance(name, str) else None


def _text(cell: NotebookNode) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _label(resources: dict[str, Any]) -> str:
    """``student/assignment/notebook.ipynb``, how the log names a submitted notebook."""
    info = resources.get("nbgrader", {})
    parts = [info.get("student"), info.get("assignment")]
    name = f"{info.get('notebook') or resources.get('unique_key', 'notebook')}.ipynb"
    return "/".join([*(p for p in parts if p), name])


def _executor() -> IsolatedExecutor:
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = IsolatedExecutor()
    return _EXECUTOR


class StudentBundleCells(_Base):
    """Give a student-bundle notebook the assignment's solution and test cells, by name.

    A notebook with nbgrader cell metadata is left alone. Otherwise each stub cell
    whose ``llm_course.exercise`` is the name of one of the assignment's solution
    cells gets that cell's nbgrader metadata (with several, the last: it holds the
    definition that counts), and every autograded test cell of the assignment is
    put back with its grade_id and points: on the student's untouched copy of it
    (the self-check cell, same source) or as a new cell right after the exercise's
    stub cell (at the end if there is none). nbgrader's OverwriteCells then checks
    them against the database as for any submission, and SaveAutoGrades records
    the isolated grader's verdicts. A notebook with neither nbgrader metadata nor
    any of the assignment's exercise names raises :class:`UngradableNotebook`.
    """

    def preprocess(
        self, nb: NotebookNode, resources: dict[str, Any]
    ) -> tuple[NotebookNode, dict[str, Any]]:
        if any(_grade_id(cell) for cell in nb.cells):
            return nb, resources  # made by generate_assignment: nbgrader's checks apply
        solutions, tests = self._source_cells(resources)
        label = _label(resources)
        stubs: dict[str, NotebookNode] = {}
        for cell in nb.cells:
            name = _exercise(cell)
            if name is None:
                continue
            if name in stubs:
                self.log.warning(
                    "%s: exercise %s is in several cells; the last one is graded as its "
                    "solution cell",
                    label,
                    name,
                )
            stubs[name] = cell  # the last one, whose definition is the one that counts
        matched = [name for name in solutions if name in stubs]
        if not matched:
            found = sorted(stubs)
            why = (
                f"its exercise cells ({', '.join(found)}) are none of this assignment's "
                f"({', '.join(solutions)}): is it another chapter's notebook?"
                if found
                else "it has neither nbgrader cell metadata (the notebook `nbgrader "
                "generate_assignment` hands out) nor llm_course exercise names on its stub "
                "cells (the student bundle's course/NN_SLUG.ipynb)"
            )
            message = (f"{label} cannot be graded: {why}. Its cells cannot be matched to the "
                       "assignment's, so nbgrader would record 0 points for it.")  # fmt: skip
            self.log.error(message)
            raise UngradableNotebook(message)
        for name in solutions:
            if name in stubs:
                stubs[name].metadata["nbgrader"] = nbgrader_metadata(
                    name, solution=True, grade=False
                )
            else:
                self.log.warning(
                    "%s: no stub cell of exercise %s (llm_course metadata); its definition "
                    "is looked for in the other cells",
                    label,
                    name,
                )
        self._restore_tests(nb, tests, stubs)
        self.log.info(
            "%s: a student-bundle notebook, matched by exercise name: %d of %d exercise "
            "cells, %d test cells",
            label,
            len(matched),
            len(solutions),
            len(tests),
        )
        return nb, resources

    @staticmethod
    def _source_cells(
        resources: dict[str, Any],
    ) -> tuple[list[str], list[tuple[str, float, str]]]:
        """The assignment's solution cell names, and its autograded test cells as
        (grade_id, points, source), from nbgrader's database."""
        from nbgrader.api import Gradebook

        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            source = gb.find_notebook(info["notebook"], info["assignment"])
            solutions = [cell.name for cell in source.solution_cells]
            points = {cell.name: float(cell.max_score) for cell in source.grade_cells}
            tests = [
                (cell.name, points[cell.name], cell.source)
                for cell in source.source_cells
                if cell.name in points and cell.name not in solutions
            ]
        return solutions, tests

    @staticmethod
    def _restore_tests(
        nb: NotebookNode, tests: list[tuple[str, float, str]], stubs: dict[str, NotebookNode]
    ) -> None:
        taken = {id(cell) for cell in stubs.values()}
        after: dict[int, list[NotebookNode]] = {}
        at_end: list[NotebookNode] = []
        for grade_id, points, text in tests:
            meta = nbgrader_metadata(grade_id, solution=False, grade=True, points=points)
            copy = next((cell for cell in nb.cells
                         if cell.cell_type == "code" and id(cell) not in taken
                         and "nbgrader" not in cell.metadata
                         and _text(cell).strip() == text.strip()), None)  # fmt: skip
            if copy is not None:  # the student's own copy of the test (the self-check call)
                copy.metadata["nbgrader"] = meta
                taken.add(id(copy))
                continue
            cell = new_code_cell(text, metadata={"deletable": False, "editable": False,
                                                 "nbgrader": meta})  # fmt: skip
            if nb.get("nbformat_minor", 5) < 5:
                del cell["id"]  # cell ids came with nbformat 4.5
            stub = stubs.get(grade_id.removeprefix(TEST_PREFIX))
            (after.setdefault(id(stub), []) if stub is not None else at_end).append(cell)
        cells = []
        for cell in nb.cells:
            cells += [cell, *after.get(id(cell), [])]
        nb.cells = cells + at_end


class IsolatedGrades(_Base):
    """Set every autograded test cell's outputs from an isolated grading of the notebook."""

    def preprocess(
        self, nb: NotebookNode, resources: dict[str, Any]
    ) -> tuple[NotebookNode, dict[str, Any]]:
        chapter = nb.metadata.get("llm_course", {}).get("chapter") or resources.get("unique_key")
        info = resolve_chapter(str(chapter))
        expected = expectations(info)
        with tempfile.TemporaryDirectory(prefix="llm-course-nbgrader-") as tmp:
            path = Path(tmp) / f"{info.key}.ipynb"
            path.write_text(json.dumps(nb), encoding="utf-8")
            results = grade_with_stand_ins(info, expected, _executor(), path)
        by_id = {TEST_PREFIX + r.name: r for r in results}
        written = set()
        for cell in nb.cells:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
            if cell.cell_type != "code" or grade_id not in by_id:
                continue
            written.add(grade_id)
            result = by_id[grade_id]
            if result.passed:
                cell.outputs = [
                    new_output("stream", name="stdout", text="PASS (isolated grader)\n")
                ]
            else:
                cell.outputs = [new_output(
                    "error", ename="ExerciseFailed", evalue=result.feedback(),
                    traceback=[f"{result.name}: {result.status}", result.feedback()],
                )]  # fmt: skip
        missing = sorted(set(by_id) - written)
        if by_id and not written:
            why = (
                "a notebook of the student bundle needs the StudentBundleCells step that "
                "`llm-course release` writes into nbgrader_config.py: release again"
                if not any(_grade_id(cell) for cell in nb.cells)
                else "were they deleted? `c.OverwriteCells.add_missing_cells = True` in "
                "nbgrader_config.py puts them back"
            )
            message = (
                f"{_label(resources)}: none of the autograded test cells "
                f"({', '.join(missing)}) is in the notebook, so no points can be recorded "
                f"for it: {why}."
            )
            self.log.error(message)
            raise UngradableNotebook(message)
        if missing:
            self.log.warning(
                "%s: no test cell for %s: those exercises score 0",
                _label(resources),
                ", ".join(missing),
            )
        return nb, resources
