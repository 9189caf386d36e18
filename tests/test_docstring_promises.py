"""Every sentence of every exercise's docstring is exercised by a case (or says why no case
can exercise it), and every random exercise states how likely its checks are to fail the
usual wrong answers."""

from __future__ import annotations

import inspect

import pytest
import torch

from autograder.core.chapters import CHAPTERS, load_spec
from autograder.core.promises import promise_problems, sentences, table, uncovered
from autograder.core.spec import Exercise, Promise

EXERCISES = [
    pytest.param(ex, id=f"{info.number}-{ex.name}")
    for info in CHAPTERS
    for ex in load_spec(info).exercises
]


def _is_random(exercise: Exercise) -> bool:
    """Its reference (or a method of it) draws from a generator it is given."""
    reference = exercise.reference()
    targets = [reference]
    if inspect.isclass(reference):
        targets = [f for f in vars(reference).values() if inspect.isfunction(f)]
    return any("generator" in inspect.signature(f).parameters for f in targets)


@pytest.mark.parametrize("exercise", EXERCISES)
def test_every_docstring_sentence_is_exercised_by_a_case(exercise: Exercise) -> None:
    missing = uncovered(exercise)
    assert not missing, f"`{exercise.name}`: no promise quotes these sentences: {missing}"


@pytest.mark.parametrize("exercise", EXERCISES)
def test_every_promise_quotes_the_docstring_and_names_existing_cases(exercise: Exercise) -> None:
    assert not promise_problems(exercise), promise_problems(exercise)


@pytest.mark.parametrize("exercise", [p for p in EXERCISES if _is_random(p.values[0])])
def test_every_random_exercise_states_its_power(exercise: Exercise) -> None:
    assert len(exercise.power) > 40, f"`{exercise.name}` draws at random: state the power"


def _toy(doc: str, promises: tuple[Promise, ...]) -> Exercise:
    def clip(x: torch.Tensor, limit: float = 1.0) -> torch.Tensor:
        return x.clamp(-limit, limit)

    clip.__doc__ = doc

    def cases(g: torch.Generator) -> list[dict]:
        return [{"label": "small", "args": [torch.randn(3, generator=g)], "kwargs": {}}]

    return Exercise("clip", 1, cases, lambda: clip, promises=promises)


TOY_DOC = """Values clipped to [-limit, limit].

    Values exactly at the limit are kept, e.g. 1.0 stays 1.0.

    Args:
        x: any shape.
        limit: the bound (default 1.0).
    """


def test_the_check_names_a_sentence_no_promise_quotes() -> None:
    toy = _toy(TOY_DOC, (Promise("Values clipped to [-limit, limit].", ("small",)),))
    assert uncovered(toy) == [
        "Values exactly at the limit are kept, e.g. 1.0 stays 1.0.",
        "x: any shape.",
        "limit: the bound (default 1.0).",
    ]
    assert ("limit: the bound (default 1.0).", "**NOT EXERCISED**") in table(toy)


def test_the_check_names_a_missing_case_a_wrong_quote_and_a_promise_without_either() -> None:
    toy = _toy(
        TOY_DOC,
        (
            Promise("exactly at the limit", ("at the limit",)),
            Promise("clipped to [-1, 1]", ("small",)),
            Promise("x: any shape."),
        ),
    )
    problems = promise_problems(toy)
    assert any("do not exist: ['at the limit']" in p for p in problems)
    assert any("not in the docstring: 'clipped to [-1, 1]'" in p for p in problems)
    assert any("names no case and gives no reason" in p for p in problems)


def test_sentences_split_at_sentence_ends_and_argument_entries_but_not_abbreviations() -> None:
    assert sentences(inspect.cleandoc(TOY_DOC)) == [
        "Values clipped to [-limit, limit].",
        "Values exactly at the limit are kept, e.g. 1.0 stays 1.0.",
        "x: any shape.",
        "limit: the bound (default 1.0).",
    ]
