"""Load a submission: the definitions of a notebook or .py file, and nothing else.

Only imports, function and class definitions and UPPER_CASE constants are taken
from the code cells; every other top-level statement (training loops, plots,
self-check calls, prints) is left out, so loading a notebook is quick and has
no side effects of its own. Each statement is run on its own: a failing import
or a cell with a syntax error costs only what depends on it, and is reported
with the cell it came from.
"""

from __future__ import annotations

import ast
import json
import linecache
import re
import sys
import threading
import traceback
import types
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_DEFINES = re.compile(r"^(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)", re.MULTILINE)
# CPython 3.11 keeps the AST converter's recursion depth in state shared by all threads:
# two threads parsing at once can fail with "SystemError: AST constructor recursion depth
# mismatch" (python/cpython#106905). A class graded in-process on several threads parses
# submissions concurrently, so parsing and compiling a tree hold this lock.
_AST_LOCK = threading.Lock()


class SubmissionError(Exception):
    """The file cannot be read as a submission at all (not JSON, not a notebook...)."""


@dataclass
class Chunk:
    """A piece of source with where it came from (``cell 3`` or the file name)."""

    origin: str
    source: str


@dataclass
class Submission:
    """What a submission defines, and what went wrong while loading it."""

    path: Path
    namespace: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # problems not tied to one name
    broken: dict[str, str] = field(default_factory=dict)  # name -> why it is unusable

    def lookup(self, name: str) -> tuple[Any, str | None]:
        """The object called ``name`` or ``None``, with the reason when it is absent."""
        if name in self.broken:
            return None, self.broken[name]
        if name in self.namespace:
            obj = self.namespace[name]
            origin = getattr(obj, "__module__", self.namespace.get("__name__"))
            if callable(obj) and origin != self.namespace.get("__name__"):
                return None, (
                    f"`{name}` is imported from {origin}, not defined in {self.path.name}: "
                    "write your own"
                )
            return obj, None
        reason = f"`{name}` is not defined in {self.path.name}"
        if self.notes:
            reason += " (while loading: " + "; ".join(self.notes) + ")"
        return None, reason


def read_chunks(path: Path) -> list[Chunk]:
    """The code of a notebook's code cells, or of a .py file, as chunks."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SubmissionError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SubmissionError(f"{path} cannot be read as UTF-8 text: {exc}") from None
    if path.suffix == ".py":
        return [Chunk(path.name, text)]
    if path.suffix != ".ipynb":
        raise SubmissionError(f"{path.name}: a submission must be a .ipynb notebook or a .py file")
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SubmissionError(
            f"{path.name} is not a valid notebook: it is not JSON "
            f"(line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "was it saved from Jupyter, or truncated?"
        ) from None
    except RecursionError:
        raise SubmissionError(
            f"{path.name} is not a valid notebook: its JSON is nested too deeply to read"
        ) from None
    except (ValueError, MemoryError) as exc:  # e.g. an integer of 5000 digits
        raise SubmissionError(f"{path.name} is not a valid notebook: {exc}") from None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise SubmissionError(f"{path.name} is JSON but not a Jupyter notebook (no list of cells)")
    chunks = []
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(str(s) for s in source)
        chunks.append(Chunk(f"cell {number}", _strip_magics(str(source))))
    return chunks


def _strip_magics(source: str) -> str:
    """Blank out IPython-only lines (``%magic``, ``!shell``) keeping line numbers."""
    lines = source.split("\n")
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines)


def _is_constant(node: ast.stmt) -> bool:
    targets = (
        node.targets
        if isinstance(node, ast.Assign)
        else [node.target]
        if isinstance(node, ast.AnnAssign) and node.value is not None
        else []
    )
    return bool(targets) and all(isinstance(t, ast.Name) and t.id.isupper() for t in targets)


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _short_error(exc: BaseException, filename_prefix: str = "<") -> str:
    """``ValueError: ... (cell 3, line 7)``: the last frame that is the student's code."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith(filename_prefix):
            where = f" ({frame.filename.strip('<>')}, line {frame.lineno})"
            break
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}{where}" if message else type(exc).__name__ + where


def _record(sub: Submission, chunk: Chunk, node: ast.stmt, why: str) -> None:
    """Charge a failed statement to the names it defines (or to the notes)."""
    try:
        statement = ast.unparse(node).splitlines()[0]
    except (RecursionError, MemoryError, ValueError, IndexError):
        statement = f"line {node.lineno}"
    problem = f"{chunk.origin}: `{statement}` failed: {why}"
    names = _defined_names(node)
    for name in names:
        sub.broken[name] = problem
    if not names:
        sub.notes.append(problem)


def load_submission(
    path: str | Path,
    module_name: str = "submission",
    skip: Collection[str] = (),
    on_statement: Callable[[str], None] | None = None,
) -> Submission:
    """Run the definitions of ``path`` in a fresh module and return what they define.

    Each statement has a key ``"cell 3#1"`` (its chunk and index). ``on_statement``
    is told the key before the statement runs, and statements whose key is in
    ``skip`` are not run but reported: the isolated grader uses both to load the
    rest of a submission whose definitions kill or hang the process.
    Raises :class:`SubmissionError` only when the file is not a submission at all.
    """
    path = Path(path)
    chunks = read_chunks(path)
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sub = Submission(path=path, namespace=module.__dict__)
    sys.modules[module_name] = module  # dataclasses and pickling look classes up here
    for chunk in chunks:
        filename = f"<{chunk.origin}>"
        lines = chunk.source.splitlines(keepends=True)
        linecache.cache[filename] = (len(chunk.source), None, lines, filename)
        try:
            with _AST_LOCK:
                tree = ast.parse(chunk.source, filename=filename)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            if isinstance(exc, SyntaxError):
                problem = f"{chunk.origin} has a syntax error on line {exc.lineno}: {exc.msg}"
            elif isinstance(exc, ValueError):
                problem = f"{chunk.origin} cannot be parsed: {exc}"
            else:  # the parser's stack overflowed
                problem = f"{chunk.origin} cannot be parsed: its code is nested too deeply"
            names = _DEFINES.findall(chunk.source)
            for name in names:
                sub.broken[name] = problem
            if not names:
                sub.notes.append(problem)
            continue
        for index, node in enumerate(tree.body):
            if not (isinstance(node, _KEPT) or _is_constant(node)):
                continue
            key = f"{chunk.origin}#{index}"
            if key in skip:
                _record(sub, chunk, node, "it killed or hung the grading process")
                continue
            if on_statement is not None:
                on_statement(key)
            try:
                with _AST_LOCK:
                    code = compile(ast.Module(body=[node], type_ignores=[]), filename, "exec")
                exec(code, sub.namespace)  # noqa: S102 - this is the point of a loader
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - SystemExit included
                _record(sub, chunk, node, _short_error(exc))
            else:
                for name in _defined_names(node):
                    sub.broken.pop(name, None)
    return sub


def student_error(exc: BaseException) -> str:
    """A one-line account of an exception raised by student code, with its cell and line."""
    return _short_error(exc)
