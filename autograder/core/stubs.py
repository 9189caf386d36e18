"""Student stubs derived from the reference, so the two can never drift apart.

A stub keeps the reference's signature and docstring *verbatim* (the very same
source lines) and replaces each body with ``raise NotImplementedError``. In a
notebook, every code cell whose metadata has ``llm_course.exercise = NAME``
holds the stub of NAME.

    python -m autograder.core.stubs sync course/01_attention.ipynb   # rewrite stub cells
    python -m autograder.core.stubs check course/01_attention.ipynb  # exit 1 if any drifted

``tests/test_notebooks.py`` runs the check for every notebook.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
from pathlib import Path

from autograder.core.chapters import chapter_from_filename

TODO = "raise NotImplementedError  # TODO: your code here"
NBGRADER_CODE_STUB = TODO  # what nbgrader puts in place of a solution region


def _lines(source: str, first: int, last: int) -> list[str]:
    """Lines ``first..last`` (1-based, inclusive) of ``source``."""
    return source.splitlines()[first - 1 : last]


def _docstring_node(node: ast.AST) -> ast.Expr | None:
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            return body[0]
    return None


BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def _is_super_init(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and ast.unparse(stmt) == "super().__init__()"


def _function_stub(source: str, node: ast.FunctionDef, solution: bool = False) -> list[str]:
    """Signature and docstring verbatim, then the stub (or the nbgrader solution region)."""
    start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
    doc = _docstring_node(node)
    first_body = node.body[0]
    head = _lines(source, start, first_body.lineno - 1)
    indent = " " * first_body.col_offset
    out = head + (_lines(source, doc.lineno, doc.end_lineno) if doc else [])
    body = node.body[1:] if doc else node.body
    # An nn.Module stub keeps the bare `super().__init__()` the reference starts with, so
    # that an unfinished class still constructs; a call with arguments (an Optimizer's
    # `super().__init__(params, defaults)`) is part of the exercise and stays out.
    if node.name == "__init__" and body and _is_super_init(body[0]):
        out.append(f"{indent}super().__init__()")
        body = body[1:]
    if not solution:
        return out + [indent + TODO]
    code = _lines(source, body[0].lineno, node.end_lineno) if body else [indent + "pass"]
    return out + [indent + BEGIN, *code, indent + END]


def _class_stub(source: str, node: ast.ClassDef, solution: bool = False) -> list[str]:
    doc = _docstring_node(node)
    first_body = node.body[0]
    out = _lines(source, node.lineno, first_body.lineno - 1)
    if doc:
        out += _lines(source, doc.lineno, doc.end_lineno)
    for item in node.body:
        if isinstance(item, ast.FunctionDef):
            out += [""] + _function_stub(source, item, solution)
    return out


def stub_source(module_source: str, name: str, solution: bool = False) -> str:
    """The stub of the top-level function or class ``name`` in ``module_source``.

    With ``solution``, the reference's bodies stay, each between nbgrader's
    ``### BEGIN SOLUTION`` and ``### END SOLUTION``: ``nbgrader generate_assignment``
    turns that back into exactly the stub (see ``NBGRADER_CODE_STUB``).
    """
    tree = ast.parse(module_source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return "\n".join(_function_stub(module_source, node, solution))
        if isinstance(node, ast.ClassDef) and node.name == name:
            return "\n".join(_class_stub(module_source, node, solution))
    raise KeyError(f"the reference defines no top-level function or class {name!r}")


def reference_source(notebook: Path) -> str:
    info = chapter_from_filename(notebook)
    if info is None:
        raise ValueError(f"cannot tell the chapter of {notebook}")
    module = importlib.import_module(f"solutions.{info.slug}")
    return Path(module.__file__).read_text(encoding="utf-8")


def exercise_cells(nb: dict) -> list[tuple[dict, str]]:
    """The notebook's stub cells with the exercise each one holds."""
    return [
        (cell, cell["metadata"]["llm_course"]["exercise"])
        for cell in nb["cells"]
        if cell.get("cell_type") == "code"
        and "exercise" in cell.get("metadata", {}).get("llm_course", {})
    ]


def cell_text(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def drifted(notebook: Path) -> list[str]:
    """Exercises whose stub cell differs from the stub derived from the reference."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    ref = reference_source(notebook)
    return [name for cell, name in exercise_cells(nb) if cell_text(cell) != stub_source(ref, name)]


def sync(notebook: Path) -> list[str]:
    """Rewrite every stub cell from the reference; return the exercises that changed."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    ref = reference_source(notebook)
    changed = []
    for cell, name in exercise_cells(nb):
        new = stub_source(ref, name)
        if cell_text(cell) != new:
            cell["source"] = new
            changed.append(name)
    if changed:
        notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Derive notebook stubs from solutions/.")
    parser.add_argument("mode", choices=["sync", "check"])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    status = 0
    for nb in args.notebooks:
        names = sync(nb) if args.mode == "sync" else drifted(nb)
        verb = "rewrote" if args.mode == "sync" else "drifted from the reference"
        if names:
            print(f"{nb}: {verb}: {', '.join(names)}")
            status = 1 if args.mode == "check" else status
    return status


if __name__ == "__main__":
    raise SystemExit(main())
