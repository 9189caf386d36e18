"""Benchmarks: speed and memory measured side by side in one run, reported as ratios.

Each module has a ``main()`` that prints a Markdown table and writes it to
``bench/results/NAME.md``. Run one with ``python -m bench.NAME``, all with ``make bench``.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_table(name: str, header: list[str], rows: list[list[str]], note: str = "") -> str:
    """A Markdown table, printed and saved as bench/results/NAME.md."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    text = "\n".join(lines) + ("\n\n" + note if note else "") + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)
    return text
