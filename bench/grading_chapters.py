"""Per chapter: exercises, cases graded, mutants, and the seconds to grade one submission,
for this tree and for an earlier revision, side by side in one run.

The submission is the chapter's notebook with the reference filled in (every exercise
graded in full), graded in the isolated child as ``llm-course grade`` does, by a new executor each
time (a cold child, never one started ahead), best of two. The
earlier revision (``--before REV``, default the commit before the grader's generic
checks: babb67a) is checked out in a temporary git worktree and measured by this same
file in a subprocess.

    python -m bench.grading_chapters [--before REV]      (or: make bench)
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BEFORE = "babb67a"
ROOT = Path(__file__).resolve().parent.parent


def _reference_notebook(info: object, folder: Path) -> Path:
    from autograder.core.stubs import exercise_cells

    nb = json.loads((ROOT / info.notebook).read_text(encoding="utf-8"))  # type: ignore[attr-defined]
    module = importlib.import_module(f"solutions.{info.slug}")  # type: ignore[attr-defined]
    for cell, name in exercise_cells(nb):
        cell["source"] = inspect.getsource(getattr(module, name))
    path = folder / Path(info.notebook).name  # type: ignore[attr-defined]
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def measure() -> list[dict[str, object]]:
    """This tree's numbers, one dict per chapter."""
    from autograder.core.chapters import CHAPTERS, load_spec
    from autograder.core.grading import expectations, grade_submission
    from autograder.core.sandbox import IsolatedExecutor

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-chapters-") as tmp:
        for info in CHAPTERS:
            spec = load_spec(info)
            chapter = expectations(info)
            mutants = importlib.import_module(f"tests.mutants.{info.slug}").MUTANTS
            path = _reference_notebook(info, Path(tmp))
            times, score = [], 0
            for _ in range(2):
                executor = IsolatedExecutor()  # a new one each time: no child started ahead
                executor.verify()  # the probe, as grade runs it once before the class
                start = time.perf_counter()
                results = grade_submission(path, info, executor)
                times.append(time.perf_counter() - start)
                score = sum(r.score for r in results)
                getattr(executor, "close", lambda: None)()
            rows.append({
                "chapter": info.key,
                "exercises": len(spec.exercises),
                "cases": sum(len(ex["cases"]) for ex in chapter["exercises"]),
                "mutants": len(mutants),
                "seconds": min(times),
                "score": f"{score}/{spec.max_score}",
            })  # fmt: skip
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def _before(rev: str) -> list[dict[str, object]]:
    """The same numbers for revision ``rev``, measured in a temporary worktree."""
    with tempfile.TemporaryDirectory(prefix="bench-before-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                       check=True, capture_output=True)  # fmt: skip
        try:
            shutil.copy2(Path(__file__), tree / "bench" / "grading_chapters.py")
            if (ROOT / ".cache").exists():  # the course models, trained once
                (tree / ".cache").symlink_to(ROOT / ".cache")
            env = {**os.environ, "PYTHONPATH": str(tree)}
            out = subprocess.run(
                [sys.executable, "-m", "bench.grading_chapters", "--json"],
                cwd=tree, env=env, check=True, capture_output=True, text=True,
            )  # fmt: skip
            return json.loads(out.stdout)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           capture_output=True)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="the earlier revision (git)")
    parser.add_argument("--json", action="store_true", help="print this tree's numbers only")
    args = parser.parse_args(argv if argv is not None else [])
    if args.json:
        print(json.dumps(measure()))
        return
    from bench import write_table

    old = {row["chapter"]: row for row in _before(args.before)}
    rows = []
    for new in measure():
        was = old.get(str(new["chapter"]), {})
        rows.append([
            new["chapter"], new["exercises"],
            f"{was.get('cases', '-')} → {new['cases']}",
            f"{was.get('mutants', '-')} → {new['mutants']}",
            f"{float(was.get('seconds', 'nan')):.2f} → {float(new['seconds']):.2f}",  # type: ignore[arg-type]
            new["score"],
        ])  # fmt: skip
    write_table(
        "grading_chapters",
        [
            "chapter",
            "exercises",
            "cases graded",
            "mutants",
            "seconds per submission",
            "score",
        ],  # fmt: skip
        rows,
        f"Before: revision {args.before}; after: this tree; measured one after the other in one "
        "run. One submission per chapter (the notebook with the reference filled in), graded "
        "in the isolated child as `llm-course grade` does, by a new executor each time (its "
        "child started cold: no child started ahead), best of two. Cases include the dtype "
        "variants; mutants are tests/mutants/SLUG.py's (the generic mutants are extra).",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
