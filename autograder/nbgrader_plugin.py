"""nbgrader's autograde, with the points coming from the isolated grader.

``llm-course release`` writes an nbgrader_config.py whose autograde pipeline
replaces nbgrader's Execute step (which would run the student's notebook, tests
and all, in the student's own kernel, where a monkeypatch or a swallowed
exception can fake a pass) with :class:`IsolatedGrades`: it grades the
submitted notebook with ``llm-course``'s isolated grader and writes each
exercise's verdict into its autograded test cell: no output for a pass (full
points in nbgrader), an error with the grader's message for a failure.
nbgrader's own SaveAutoGrades then records those points as usual.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from nbformat import NotebookNode
from nbformat.v4 import new_output

from autograder.core.chapters import resolve_chapter
from autograder.core.evaluate import evaluate
from autograder.core.grading import expectations
from autograder.core.materialize import jobs_for
from autograder.core.sandbox import IsolatedExecutor

TEST_PREFIX = "test_"  # an exercise's autograded cell is grade_id "test_" + exercise name
_EXECUTOR: IsolatedExecutor | None = None

try:  # nbgrader is an instructor's tool; the student bundle does not need it
    from nbgrader.preprocessors.base import NbGraderPreprocessor as _Base
except ImportError:  # pragma: no cover
    from nbconvert.preprocessors import Preprocessor as _Base


def _executor() -> IsolatedExecutor:
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = IsolatedExecutor()
    return _EXECUTOR


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
            results = evaluate(expected["exercises"], _executor()(path, jobs_for(expected)))
        by_id = {TEST_PREFIX + r.name: r for r in results}
        for cell in nb.cells:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
            if cell.cell_type != "code" or grade_id not in by_id:
                continue
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
        return nb, resources
