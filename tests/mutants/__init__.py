"""Mutants: the usual wrong answers, written as edits of the reference source.

Each mutant names the exercise it breaks, the edits (old text -> new text, each
old text must occur exactly once in the reference, so a mutant cannot silently
stop applying), and a phrase the grader's feedback must contain.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


@dataclass(frozen=True)
class Mutant:
    name: str
    exercise: str
    edits: tuple[tuple[str, str], ...]
    expect: str  # a phrase the feedback (message + hint) must contain

    def apply(self, module: ModuleType) -> str:
        source = inspect.getsource(module)
        for old, new in self.edits:
            count = source.count(old)
            if count != 1:
                raise AssertionError(f"mutant {self.name}: {old!r} occurs {count} times")
            source = source.replace(old, new)
        return source

    def write(self, module: ModuleType, folder: Path) -> Path:
        path = folder / f"{self.name}.py"
        path.write_text(self.apply(module), encoding="utf-8")
        return path
