"""Turn a chapter's spec into plain data: inputs, expected outputs, mistake outputs.

This runs where solutions/ is available (the instructor's side, and the
fixture generator). Its result is what the student's self-check fixtures
store and what the grader compares a submission's answers against.
"""

from __future__ import annotations

import zlib
from typing import Any, TypedDict

import torch

from autograder.core.drivers import run_case, run_case_tracking
from autograder.core.spec import Case, ChapterSpec, Exercise

# The self-check fixtures use this seed; grading uses others, so a submission
# cannot pass by remembering the fixtures' answers.
SELFCHECK_SEED = 0
GRADING_SEED = 2026


class MaterializedCase(TypedDict, total=False):
    label: str
    mutable: list[str]  # inputs the reference changes in place (every other must not change)
    args: list[Any]
    kwargs: dict[str, Any]
    init: dict[str, Any]
    state: dict[str, torch.Tensor]
    expected: Any
    mistakes: dict[str, Any]  # mistake name -> its output on this case (absent if it raised)


class MaterializedExercise(TypedDict):
    name: str
    points: int
    driver: str
    output_names: list[str]
    atol: float
    rtol: float
    depends_on: list[str]
    summary: str
    checker: str | None
    hints: dict[str, str]
    cases: list[MaterializedCase]


class MaterializedChapter(TypedDict):
    number: str
    slug: str
    title: str
    seed: int
    exercises: list[MaterializedExercise]


def exercise_generator(name: str, seed: int) -> torch.Generator:
    """A CPU generator seeded by the exercise's name and the run's seed."""
    return torch.Generator().manual_seed(zlib.crc32(name.encode()) + 1_000_003 * seed)


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
        return value.to(dtype)
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_cast(v, dtype) for v in value)
    return value


def _has_float32(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.dtype == torch.float32
    if isinstance(value, dict):
        return any(_has_float32(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_float32(v) for v in value)
    return False


def dtype_variant(case: Case, dtype: str) -> Case | None:
    """``case`` with its float32 inputs and weights in ``dtype``; None if it has none."""
    inputs = {k: case[k] for k in ("args", "kwargs", "state") if k in case}
    if not _has_float32(inputs):
        return None
    variant = {**case, **_cast(inputs, getattr(torch, dtype))}
    variant["label"] = f"{case.get('label', 'case')} [{dtype}]"
    variant["dtype"] = dtype
    return variant


def with_dtype_variants(exercise: Exercise, cases: list[Case]) -> list[Case]:
    """The cases, then the first and the last float32 case again in every dtype the
    exercise is graded in (an output that does not follow the input's dtype shows on any
    case; two keep grading quick while covering a second shape)."""
    extra = []
    for dtype in exercise.dtype_variants():
        variants = [v for v in (dtype_variant(c, dtype) for c in cases) if v is not None]
        extra += variants[:1] + variants[1:][-1:]
    return [*cases, *extra]


def materialize_exercise(exercise: Exercise, seed: int) -> MaterializedExercise:
    cases: list[Case] = exercise.make_cases(exercise_generator(exercise.name, seed))
    cases = with_dtype_variants(exercise, cases)
    reference = exercise.reference()
    out_cases: list[MaterializedCase] = []
    for case in cases:
        expected, changed = run_case_tracking(reference, exercise.driver, case)
        if changed:  # what the reference itself changes may change; every other input may not
            case = {**case, "mutable": sorted({path for path, _ in changed})}
        mistakes: dict[str, Any] = {}
        for mistake in exercise.mistakes:
            try:
                mistakes[mistake.name] = run_case(mistake.impl, exercise.driver, case)
            except Exception:  # noqa: BLE001 - a mistake may not apply to every case
                pass
        out_cases.append(MaterializedCase(**case, expected=expected, mistakes=mistakes))
    return MaterializedExercise(
        name=exercise.name,
        points=exercise.points,
        driver=exercise.driver,
        output_names=list(exercise.output_names),
        atol=exercise.tolerance.atol,
        rtol=exercise.tolerance.rtol,
        depends_on=list(exercise.depends_on),
        summary=exercise.summary,
        checker=exercise.checker,
        hints={m.name: m.hint for m in exercise.mistakes},
        cases=out_cases,
    )


def materialize(spec: ChapterSpec, seed: int) -> MaterializedChapter:
    """Every exercise of the chapter, with seeded inputs and the answers to expect."""
    return MaterializedChapter(
        number=spec.number,
        slug=spec.slug,
        title=spec.title,
        seed=seed,
        exercises=[materialize_exercise(e, seed) for e in spec.exercises],
    )


def selected(
    chapter: MaterializedChapter, only: list[str] | None = None
) -> list[MaterializedExercise]:
    """The chapter's exercises, or those of them that ``only`` names."""
    return [ex for ex in chapter["exercises"] if only is None or ex["name"] in only]


def jobs_for(chapter: MaterializedChapter, only: list[str] | None = None) -> list[dict[str, Any]]:
    """What the student side needs: the cases without expected or mistake outputs."""
    jobs = []
    for ex in selected(chapter, only):
        cases = [
            {k: v for k, v in case.items() if k not in ("expected", "mistakes")}
            for case in ex["cases"]
        ]
        jobs.append({"exercise": ex["name"], "driver": ex["driver"], "cases": cases})
    return jobs
