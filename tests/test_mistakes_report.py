"""``grade`` tells the instructor what the class got wrong: mistakes.csv and a chart per chapter."""

from __future__ import annotations

import csv
import importlib
from pathlib import Path

from autograder.core.batch import ClassGrader, discover
from autograder.core.executors import in_process
from autograder.core.mistakes import NOT_IMPLEMENTED, NOT_RECOGNISED, count_mistakes
from tests.mutants.attention import MUTANTS

ROOT = Path(__file__).resolve().parent.parent


def _mutant(name: str) -> str:
    mutant = next(m for m in MUTANTS if m.name == name)
    return mutant.apply(importlib.import_module("solutions.attention"))


def test_mistakes_csv_counts_each_recognised_mistake_over_the_class(tmp_path: Path) -> None:
    klass, out = tmp_path / "class", tmp_path / "grades"
    unbiased = next(m for m in MUTANTS if m.exercise == "layer_norm").name
    sources = {
        "ann": (ROOT / "solutions/attention.py").read_text(),
        "ben": _mutant(unbiased),
        "cat": _mutant(unbiased),
        "dan": (ROOT / "course/01_attention.ipynb").read_text(),
    }
    for student, text in sources.items():
        suffix = ".ipynb" if text.lstrip().startswith("{") else ".py"
        path = klass / student / f"01_attention{suffix}"
        path.parent.mkdir(parents=True)
        path.write_text(text)
    subs, problems = discover([klass])
    assert not problems
    grader = ClassGrader(out, in_process)
    grader.grade_all(subs)

    with open(out / "mistakes.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_key = {(r["exercise"], r["mistake"]): r for r in rows}
    recognised = [r for r in rows if r["exercise"] == "layer_norm" and r["mistake"] not in
                  (NOT_RECOGNISED, NOT_IMPLEMENTED)]  # fmt: skip
    assert len(recognised) == 1 and recognised[0]["students"] == "2", rows
    assert recognised[0]["hint"], "the hint is shown beside the mistake"
    assert by_key[("gelu", NOT_IMPLEMENTED)]["students"] == "1"  # dan handed in the stub
    assert (out / "mistakes_01_attention.png").stat().st_size > 1000


def test_unrecognised_failures_are_counted_apart() -> None:
    records = [
        {"chapter": "01_attention", "exercises": [
            {"name": "gelu", "status": "failed", "mistake": ""},
            {"name": "gelu", "status": "passed", "mistake": ""},
        ]},
        {"chapter": "01_attention", "exercises": [
            {"name": "gelu", "status": "failed", "mistake": "erf"},
        ]},
    ]  # fmt: skip
    counts = count_mistakes(records)
    assert counts[("01_attention", "gelu", NOT_RECOGNISED)] == 1
    assert counts[("01_attention", "gelu", "erf")] == 1
