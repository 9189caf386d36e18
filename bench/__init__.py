"""Benchmarks: speed and memory measured side by side in one run, reported as ratios.

Each module has a ``main()`` that prints Markdown tables and writes them to
``bench/results/NAME.md``. Run one with ``python -m bench.NAME``, all with ``make bench``.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

RESULTS = Path(__file__).resolve().parent / "results"


def markdown_table(header: list[str], rows: list[list[str]], note: str = "") -> str:
    """A Markdown table, then ``note`` (what was measured and how) below it."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + ("\n\n" + note if note else "") + "\n"


def _save(name: str, text: str) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)
    return text


def write_table(name: str, header: list[str], rows: list[list[str]], note: str = "") -> str:
    """A Markdown table, printed and saved as bench/results/NAME.md."""
    return _save(name, markdown_table(header, rows, note))


def write_report(name: str, sections: list[tuple[str, str]]) -> str:
    """Titled tables (``markdown_table``) and the versions they were measured with,
    printed and saved as bench/results/NAME.md."""
    text = "\n".join(f"## {title}\n\n{table}" for title, table in sections)
    versions = f"torch {torch.__version__}, Python {platform.python_version()}"
    text += f"\n{versions}, {platform.machine()}.\n"
    return _save(name, text)


def median_times(
    runs: dict[str, Callable[[], object]],
    repeats: int,
    warm_up: bool = True,
    progress: tqdm | None = None,
) -> dict[str, float]:
    """Median seconds of each run, interleaved repeat by repeat so that a busy machine slows
    all of them alike (after one warm-up call each unless ``warm_up`` is False); one
    ``progress`` step per repeat."""
    if warm_up:
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
        if progress is not None:
            progress.update(1)
    return {name: statistics.median(t) for name, t in times.items()}
