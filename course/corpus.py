"""Real text that every Python installation carries: the standard library's own prose.

The course trains its language models offline, so its corpus must already be on
the machine. The docstrings and comments of the standard library of the running
interpreter are English prose about programming, written by many people over
thirty years: enough text for a small model, with the duplicates and near-
duplicates (licence headers, repeated docstrings) that real corpora have.

    from course.corpus import stdlib_documents
    docs = stdlib_documents()            # every module (a few seconds)
    docs = stdlib_documents(["json", "textwrap"])   # a few modules (fast)

The documents come raw, in a fixed order (files sorted by path): cleaning and
deduplication are chapter 04's exercises (``normalize_text``, ``deduplicate``).
No module is imported: the files are parsed, so nothing runs.
"""

from __future__ import annotations

import ast
import os
import sysconfig
from pathlib import Path

# Folders left out: tests and demos (code-heavy, huge), GUI and legacy tools, vendored
# wheels, and the hundred codec tables of `encodings`.
SKIPPED_FOLDERS = frozenset(
    {
        "test",
        "tests",
        "idlelib",
        "tkinter",
        "turtledemo",
        "lib2to3",
        "site-packages",
        "dist-packages",
        "ensurepip",
        "__phello__",
        "pydoc_data",
        "encodings",
        "distutils",
        "__pycache__",
    }
)


def stdlib_root() -> Path:
    """The folder of the running interpreter's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(modules: list[str] | None = None) -> list[Path]:
    """The standard library's .py files, sorted; only those of ``modules`` when given.

    A module name selects its file or package (``textwrap`` -> textwrap.py,
    ``json`` -> every file of the json package).
    """
    root = stdlib_root()
    tops = sorted(p.name for p in root.iterdir()) if modules is None else sorted(modules)
    files = []
    for top in tops:
        single = root / (top if top.endswith(".py") else f"{top}.py")
        package = root / top
        if single.is_file():
            files.append(single)
        elif package.is_dir() and top not in SKIPPED_FOLDERS and not top.startswith("config-"):
            for folder, subfolders, names in os.walk(package):
                subfolders[:] = sorted(d for d in subfolders if d not in SKIPPED_FOLDERS)
                files += [Path(folder) / n for n in names if n.endswith(".py")]
    return sorted(set(files))


def _docstrings(body: list[ast.stmt], out: list[str]) -> None:
    """Docstrings of the classes and functions in ``body``, nested ones included."""
    for node in body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node)
            if doc:
                out.append(doc)
            _docstrings(node.body, out)
        elif isinstance(node, ast.If | ast.Try | ast.With | ast.For | ast.While):
            for field in ("body", "orelse", "finalbody"):
                _docstrings(getattr(node, field, []), out)
            for handler in getattr(node, "handlers", []):
                _docstrings(handler.body, out)


def _comment_blocks(source: str) -> list[str]:
    """Runs of consecutive full-line comments, each run one document (``#`` removed)."""
    blocks, block = [], []
    for line in source.splitlines():
        text = line.strip()
        if text.startswith("#") and not text.startswith("#!"):
            block.append(text.lstrip("#").strip())
        elif block:
            blocks.append("\n".join(block))
            block = []
    if block:
        blocks.append("\n".join(block))
    return [b for b in blocks if b.strip()]


def file_documents(path: Path) -> list[str]:
    """The docstrings (module, classes, functions) and comment blocks of one file."""
    source = path.read_text(encoding="utf-8", errors="replace")
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    docs = []
    module_doc = ast.get_docstring(tree)
    if module_doc:
        docs.append(module_doc)
    _docstrings(tree.body, docs)
    return docs + _comment_blocks(source)


def stdlib_documents(modules: list[str] | None = None) -> list[str]:
    """Every docstring and comment block of the standard library (or of ``modules``)."""
    return [doc for path in stdlib_files(modules) for doc in file_documents(path)]
