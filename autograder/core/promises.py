"""Every sentence of an exercise's docstring beside the cases that exercise it.

A docstring is a promise to students: "ties with the k-th largest are all kept",
"k > V keeps everything", "the generator is not used at temperature 0". A promise
that no case exercises is a wrong answer the grader lets through. Each exercise of
a spec lists :class:`~autograder.core.spec.Promise` entries; :func:`uncovered`
splits the reference's docstring into sentences and names those that no promise
quotes, :func:`promise_problems` the promises whose quote or cases do not exist.

    python -m autograder.core.promises [CHAPTER ...]   # the table, in Markdown
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any

import torch

from autograder.core.spec import ALL_CASES, Exercise

SECTION = re.compile(
    r"^(Args|Arguments|Returns|Yields|Raises|Attributes|Examples?|Notes?)( \([^)]*\))?:(\s|$)"
)
ENTRY = re.compile(r"^\s+[\w*][\w*, ]*(\s\([^)]*\))?:\s")  # "    logits: shape (..., V)."
ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.")


def normalise(text: str) -> str:
    """``text`` with every run of whitespace one space."""
    return " ".join(text.split())


def docstring(obj: Any) -> str:
    """The docstring a student reads: a function's, or a class's and its own methods'."""
    parts = [inspect.cleandoc(obj.__doc__ or "")]
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if isinstance(member, classmethod | staticmethod):
                member = member.__func__
            if inspect.isfunction(member) and (name == "__init__" or not name.startswith("_")):
                parts.append(inspect.cleandoc(member.__doc__ or ""))
    return "\n\n".join(p for p in parts if p)


def _units(doc: str) -> list[str]:
    """Paragraphs, and each entry of an Args/Returns section on its own."""
    units: list[list[str]] = [[]]
    in_section = False
    for line in doc.splitlines():
        if not line.strip():
            units.append([])
            continue
        header = SECTION.match(line.strip())
        if header:
            in_section = True
            units.append([])
            rest = line.strip()[header.end() :].strip()  # "Args: x of shape (B, L)."
            if rest:
                units[-1].append(rest)
                units.append([])
            continue
        if in_section and ENTRY.match(line):
            units.append([])
        elif not line.startswith(" "):
            in_section = False
        units[-1].append(line)
    return [normalise(" ".join(u)) for u in units if u]


def sentences(doc: str) -> list[str]:
    """The docstring's sentences (a sentence ends at . ! ? or ; before the next one)."""
    found = []
    for unit in _units(doc):
        for abbreviation in ABBREVIATIONS:
            unit = unit.replace(abbreviation, abbreviation.replace(".", "\0"))
        for sentence in re.split(r"(?<=[.!?;])\s+(?=[A-Z`(\d*\"'])", unit):
            if sentence.strip():
                found.append(sentence.replace("\0", "."))
    return found


def case_labels(exercise: Exercise) -> list[str]:
    """The labels of the exercise's cases (any seed gives the same labels)."""
    cases = exercise.make_cases(torch.Generator().manual_seed(0))
    return [c.get("label", "") for c in cases]


def uncovered(exercise: Exercise) -> list[str]:
    """The docstring's sentences that no promise of the exercise quotes."""
    quotes = [normalise(p.quote) for p in exercise.promises]
    return [
        s for s in sentences(docstring(exercise.reference()))
        if not any(q in s or s in q for q in quotes)
    ]  # fmt: skip


def promise_problems(exercise: Exercise, labels: list[str] | None = None) -> list[str]:
    """What is wrong with the exercise's promises: a quote not in the docstring, a case
    label that does not exist, a promise with neither cases nor a reason."""
    doc = normalise(docstring(exercise.reference()))
    labels = case_labels(exercise) if labels is None else labels
    problems = []
    for p in exercise.promises:
        if normalise(p.quote) not in doc:
            problems.append(f"quotes words not in the docstring: {p.quote!r}")
        if not p.cases and not p.why:
            problems.append(f"names no case and gives no reason: {p.quote!r}")
        if p.cases and p.why:
            problems.append(f"names cases and a reason (which is it?): {p.quote!r}")
        if p.cases != ALL_CASES:
            missing = [c for c in p.cases if c not in labels]
            if missing:
                problems.append(f"names cases that do not exist: {missing} for {p.quote!r}")
    return problems


def table(exercise: Exercise) -> list[tuple[str, str]]:
    """(sentence, how it is exercised) for each sentence of the docstring."""
    rows = []
    for s in sentences(docstring(exercise.reference())):
        how = [
            ("every case" if p.cases == ALL_CASES else ", ".join(p.cases)) or f"({p.why})"
            for p in exercise.promises
            if normalise(p.quote) in s or s in normalise(p.quote)
        ]
        rows.append((s, "; ".join(how) or "**NOT EXERCISED**"))
    return rows


def main(argv: list[str]) -> int:
    from autograder.core.chapters import CHAPTERS, load_spec, resolve_chapter

    infos = [resolve_chapter(a) for a in argv] or list(CHAPTERS)
    for info in infos:
        spec = load_spec(info)
        print(f"\n## {info.key}\n")
        for exercise in spec.exercises:
            print(f"\n### `{exercise.name}`\n\n| docstring | cases |\n|---|---|")
            for sentence, how in table(exercise):
                cells = [text.replace("|", "\\|") for text in (sentence, how)]
                print(f"| {cells[0]} | {cells[1]} |")
            if exercise.power:
                print(f"\nPower: {exercise.power}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
