"""The vocabulary of a grading spec: chapters, exercises, cases, tolerances, mistakes.

A chapter's spec (``autograder/SLUG.py``) lists its exercises. Each exercise says
which object the student writes, how to call it (a *driver*, see
:mod:`autograder.core.drivers`), how to make seeded inputs, how close an answer
must be (or a *checker* for answers that need not equal the reference's), and
which usual mistakes to recognise.

A spec is *materialised* into plain data (inputs, expected outputs, the outputs
of each known mistake) by :mod:`autograder.core.materialize`. That plain data
is what the self-check fixtures store and what grading compares against, so the
student's code only ever sees tensors and numbers, never the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

# A case is plain data: everything a driver needs to call the student's object.
# keys: "label" (str), "args" (list), "kwargs" (dict), and for the "module"
# driver "init" (dict of constructor arguments) and "state" (a state_dict).
Case = dict[str, Any]


@dataclass(frozen=True)
class Tolerance:
    """Two outputs agree when |actual - expected| <= atol + rtol * |expected|."""

    atol: float = 1e-5
    rtol: float = 1e-4


@dataclass(frozen=True)
class Mistake:
    """A usual wrong answer, written as a wrong implementation.

    ``impl`` is called through the exercise's driver exactly like the student's
    object; when the student's output matches the mistake's on the failing cases,
    ``hint`` is shown.
    """

    name: str
    hint: str
    impl: Callable[..., Any]


@dataclass(frozen=True)
class Promise:
    """A behaviour the reference's docstring promises, and the cases that exercise it.

    ``quote`` is words of the docstring (whitespace aside); every sentence of the
    docstring must contain a promise's quote or lie inside one. ``cases`` are the
    labels of the exercise's cases that exercise it (``"*"``: every case does); a
    sentence that promises no behaviour (a definition, a pointer to another
    function) names no case and says ``why`` instead.
    """

    quote: str
    cases: tuple[str, ...] = ()
    why: str = ""


ALL_CASES = ("*",)  # a promise every case exercises (the output's shape, its meaning)


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: a function or class named in CURRICULUM.md."""

    name: str
    points: int
    make_cases: Callable[[torch.Generator], list[Case]]
    reference: Callable[[], Any]  # lazy: returns the reference object from solutions/
    driver: str = "call"
    output_names: tuple[str, ...] = ("output",)
    tolerance: Tolerance = field(default_factory=Tolerance)
    mistakes: tuple[Mistake, ...] = ()
    depends_on: tuple[str, ...] = ()  # exercises this one calls (named in failure messages)
    # For answers that need not equal the reference's (random draws, any valid order):
    # "autograder.public.SLUG:function" taking (case, actual, tolerance) and returning
    # None when the answer is right, else what is wrong. case["expected"] is the
    # reference's answer on that case.
    checker: str | None = None
    summary: str = ""  # one line: what the exercise is about
    # Each case with float32 tensors is also graded in these dtypes (its tensors cast, the
    # reference's answer in that dtype): the output must follow the input's dtype. None
    # means float64 for the "call" and "module" drivers without a checker; () opts out.
    dtypes: tuple[str, ...] | None = None
    # The docstring's sentences beside the cases that exercise them (see Promise and
    # autograder.core.promises, whose check fails when a sentence has none).
    promises: tuple[Promise, ...] = ()
    # For an exercise whose answers are random draws: the probability that its checks
    # fail each usual wrong answer (and an honest one), and how that was measured.
    power: str = ""

    def dtype_variants(self) -> tuple[str, ...]:
        """The extra dtypes this exercise's float32 cases are also graded in."""
        if self.dtypes is not None:
            return self.dtypes
        return ("float64",) if self.driver in ("call", "module") and not self.checker else ()


# The least tolerance of a case in a low-precision dtype variant (bfloat16 keeps 8 bits).
DTYPE_TOLERANCE = {"bfloat16": Tolerance(3e-2, 3e-2)}


@dataclass(frozen=True)
class ChapterSpec:
    """All exercises of one chapter, in the order the notebook presents them."""

    number: str  # "01"
    slug: str  # "attention"
    title: str
    exercises: tuple[Exercise, ...]

    @property
    def key(self) -> str:
        """The chapter's file stem, e.g. ``01_attention``."""
        return f"{self.number}_{self.slug}"

    @property
    def max_score(self) -> int:
        return sum(e.points for e in self.exercises)

    def exercise(self, name: str) -> Exercise:
        for e in self.exercises:
            if e.name == name:
                return e
        raise KeyError(f"chapter {self.key} has no exercise named {name!r}")
