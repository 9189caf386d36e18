"""Run a course notebook top to bottom, as shipped or with the reference filled in."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from autograder.core.stubs import exercise_cells


def with_reference(notebook: Path, module: object) -> dict:
    """The notebook with every stub cell replaced by the reference's own source."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    for cell, name in exercise_cells(nb):
        cell["source"] = inspect.getsource(getattr(module, name))
    return nb


def execute(nb: dict, cwd: Path, strict: bool, timeout: int = 300) -> nbformat.NotebookNode:
    """Execute ``nb`` in a fresh kernel; with ``strict`` a failing self-check raises."""
    node = nbformat.reads(json.dumps(nb), as_version=4)
    env_before = os.environ.get("LLM_COURSE_STRICT"), os.environ.get("MPLBACKEND")
    os.environ["LLM_COURSE_STRICT"] = "1" if strict else "0"
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures as outputs
    try:
        NotebookClient(
            node, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
        ).execute()
    finally:
        for key, value in zip(("LLM_COURSE_STRICT", "MPLBACKEND"), env_before, strict=True):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return node


def outputs_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def count_images(nb: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
    )
