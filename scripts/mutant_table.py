"""Print the mutant table of a chapter as Markdown: mutant, exercise, caught, message shown.

.venv/bin/python scripts/mutant_table.py attention [WIDTH]

WIDTH cuts each message to that many characters (the whole message by default).
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autograder.core.chapters import resolve_chapter  # noqa: E402
from autograder.core.executors import in_process  # noqa: E402
from autograder.core.grading import grade_submission  # noqa: E402


def main(slug: str, width: int | None = None) -> int:
    info = resolve_chapter(slug)
    reference = importlib.import_module(f"solutions.{info.slug}")
    mutants = importlib.import_module(f"tests.mutants.{info.slug}").MUTANTS
    print("| mutant | exercise | caught | message shown |")
    print("|---|---|---|---|")
    missed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for m in mutants:
            path = m.write(reference, Path(tmp))
            results = grade_submission(path, info, executor=in_process, only=[m.exercise])
            result = next(r for r in results if r.name == m.exercise)
            caught = not result.passed and m.expect in result.feedback()
            missed += not caught
            shown = (result.hint or result.message).replace("\n", " ")
            if width is not None and len(shown) > width:
                shown = shown[: width - 3] + "..."
            shown = shown.replace("|", "\\|")
            print(f"| {m.name} | {m.exercise} | {'yes' if caught else 'NO'} | {shown} |")
    return 1 if missed else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    raise SystemExit(
        main(args[0] if args else "attention", int(args[1]) if len(args) > 1 else None)
    )
