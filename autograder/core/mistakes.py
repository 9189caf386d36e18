"""What a class got wrong: each exercise's recognised mistakes, counted over the students.

``llm-course grade`` writes ``DIR/mistakes.csv`` (chapter, exercise, mistake,
students, hint) and one bar chart per chapter, ``DIR/mistakes_NN_SLUG.png``, so
an instructor sees at a glance what to teach again. A failure that matches no
known mistake counts as ``(not recognised)``; an exercise left as the stub, as
``(not implemented)``.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

NOT_RECOGNISED = "(not recognised)"
NOT_IMPLEMENTED = "(not implemented)"


def count_mistakes(records: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    """(chapter, exercise, mistake) -> number of students, over graded submissions."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for record in records:
        for ex in record.get("exercises", []):
            if ex.get("status") == "passed":
                continue
            if ex.get("status") == "not_implemented":
                kind = NOT_IMPLEMENTED
            else:
                kind = ex.get("mistake") or NOT_RECOGNISED
            counts[(record["chapter"], ex["name"], kind)] += 1
    return counts


def _hints(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], str]:
    found = {}
    for record in records:
        for ex in record.get("exercises", []):
            if ex.get("mistake"):
                found[(record["chapter"], ex["name"], ex["mistake"])] = ex.get("hint", "")
    return found


def mistakes_csv(records: list[dict[str, Any]]) -> str:
    """The table, most frequent first within each chapter."""
    counts, hints = count_mistakes(records), _hints(records)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["chapter", "exercise", "mistake", "students", "hint"])
    for key, n in sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1:])):
        writer.writerow([*key, n, hints.get(key, "")])
    return buf.getvalue()


def write_charts(records: list[dict[str, Any]], out: Path) -> list[Path]:
    """One horizontal bar chart per chapter with failures; the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = count_mistakes(records)
    written = []
    for chapter in sorted({c for c, _, _ in counts}):
        rows = sorted(((e, m, n) for (c, e, m), n in counts.items() if c == chapter),
                      key=lambda r: (r[2], r[0]))  # fmt: skip
        fig, ax = plt.subplots(figsize=(8, 0.6 + 0.32 * len(rows)))
        labels = [f"{e}: {m}" for e, m, _ in rows]
        ax.barh(range(len(rows)), [n for _, _, n in rows], color="#4c72b0")
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.set_xlabel("students")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(f"Chapter {chapter}: what the class got wrong", fontsize=10)
        fig.tight_layout()
        path = out / f"mistakes_{chapter}.png"
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            fig.savefig(tmp, format="png", dpi=100)
            os.replace(tmp, path)
        finally:
            plt.close(fig)
            if os.path.exists(tmp):
                os.unlink(tmp)
        written.append(path)
    return written
