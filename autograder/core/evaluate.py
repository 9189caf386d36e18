"""Judge a submission's answers against materialised expectations: the parent side.

No student code runs here. For each exercise the answers of every case are
compared with the expected ones; a failing exercise gets the first failing
case's problem, and a hint when its answers match one of the usual mistakes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from autograder.core.compare import compare_outputs
from autograder.core.drivers import resolve_public
from autograder.core.materialize import MaterializedCase, MaterializedExercise
from autograder.core.runner import JobResult
from autograder.core.spec import DTYPE_TOLERANCE, Tolerance

STATUS_PASSED = "passed"
STATUS_FAILED = "failed"
STATUS_TODO = "not_implemented"
STATUS_MISSING = "missing"


@dataclass
class ExerciseResult:
    name: str
    score: float
    max_score: int
    status: str  # passed, failed, not_implemented, missing
    message: str = ""
    hint: str = ""
    mistake: str = ""  # the name of the recognised usual mistake, when there is one

    @property
    def passed(self) -> bool:
        return self.status == STATUS_PASSED

    def feedback(self) -> str:
        """The message and hint as one paragraph."""
        text = self.message
        if self.hint:
            text += f"\nHint: {self.hint}"
        return text


def _describe_value(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{tuple(value.shape)}" if value.dim() else f"{value.tolist()!r}"
    if isinstance(value, list | tuple) and len(value) > 4:
        return f"a list of {len(value)}"
    return repr(value)


def describe_case(case: MaterializedCase) -> str:
    """``'causal mask' with q (2, 6, 16), mask (6, 6)``: what a student needs to reproduce it."""
    parts = [_describe_value(a) for a in case.get("args", [])]
    parts += [f"{k}={_describe_value(v)}" for k, v in case.get("kwargs", {}).items()]
    init = case.get("init")
    text = f"case '{case.get('label', '?')}'"
    if init:
        text += " with " + ", ".join(f"{k}={v!r}" for k, v in init.items())
    if parts:
        text += (" and" if init else " with") + " inputs " + ", ".join(parts)
    return text


def case_tolerance(case: MaterializedCase, tol: Tolerance) -> Tolerance:
    """The exercise's tolerance, loosened for a case in a low-precision dtype."""
    least = DTYPE_TOLERANCE.get(str(case.get("dtype", "")))
    if least is None:
        return tol
    return Tolerance(max(tol.atol, least.atol), max(tol.rtol, least.rtol))


def _explained(
    ex: MaterializedExercise,
    mistake: str,
    outputs: list[Any],
    i: int,
    tol: Tolerance,
    checker: Callable[..., str | None] | None = None,
) -> bool:
    """The student's answer on case i is the mistake's, and the mistake's is wrong there
    (judged as an answer is: by the exercise's checker when it has one)."""
    case, names = ex["cases"][i], tuple(ex["output_names"])
    if mistake not in case["mistakes"] or outputs[i] is None:
        return False
    wrong, case_tol = case["mistakes"][mistake], case_tolerance(case, tol)
    if compare_outputs(wrong, outputs[i], case_tol, names) is not None:
        return False
    if checker is not None:
        try:
            return checker(case, wrong, case_tol) is not None
        except Exception:  # noqa: BLE001 - a checker may not take this mistake's answer
            return True
    return compare_outputs(case["expected"], wrong, case_tol, names) is not None


def _matching_mistakes(
    ex: MaterializedExercise,
    outputs: list[Any],
    failing: list[int],
    tol: Tolerance,
    checker: Callable[..., str | None] | None = None,
) -> list[tuple[str, int]]:
    """The usual mistakes that explain the failing cases, each with how many it explains.

    A mistake explains a case when the student's answer there is the mistake's (and the
    mistake's is wrong). The first mistake (in the spec's order) that explains every
    failing case is the answer. Otherwise mistakes are chosen greedily, most cases first,
    each explaining at least one case no earlier one did (at most three): a student who
    makes a usual mistake and also does something else differently (a second mistake, an
    output in the wrong dtype) still hears of each mistake recognised.
    """
    explains = {
        mistake: {i for i in failing if _explained(ex, mistake, outputs, i, tol, checker)}
        for mistake in ex["hints"]
    }
    for mistake, cases in explains.items():
        if len(cases) == len(failing):
            return [(mistake, len(cases))]
    chosen: list[tuple[str, int]] = []
    left = set(failing)
    while left and len(chosen) < 3:
        mistake = max(explains, key=lambda m: len(explains[m] & left), default="")
        if not mistake or not explains[mistake] & left:
            break
        chosen.append((mistake, len(explains[mistake] & left)))
        left -= explains.pop(mistake)
    return chosen


def evaluate_exercise(ex: MaterializedExercise, result: JobResult) -> ExerciseResult:
    """Points and feedback for one exercise from the student's answers."""
    points = ex["points"]
    if result["status"] == "not_implemented":
        return ExerciseResult(ex["name"], 0, points, STATUS_TODO, "not implemented yet")
    if result["status"] in ("missing", "unreadable"):
        return ExerciseResult(ex["name"], 0, points, STATUS_MISSING, result["message"])
    if result["status"] != "ok":
        return ExerciseResult(ex["name"], 0, points, STATUS_FAILED, result["message"])
    tol = Tolerance(ex["atol"], ex["rtol"])
    names = tuple(ex["output_names"])
    checker = resolve_public(ex["checker"]) if ex.get("checker") else None
    problems: list[tuple[int, str]] = []
    for i, case in enumerate(ex["cases"]):
        error = result["errors"][i] if i < len(result["errors"]) else "no answer"
        if error:
            problems.append((i, f"raised {error}"))
            continue
        case_tol = case_tolerance(case, tol)
        if checker is not None:
            problem = checker(case, result["outputs"][i], case_tol)
        else:
            problem = compare_outputs(case["expected"], result["outputs"][i], case_tol, names)
        if problem:
            problems.append((i, problem))
    if not problems:
        return ExerciseResult(ex["name"], points, points, STATUS_PASSED)
    first, problem = problems[0]
    message = f"{describe_case(ex['cases'][first])}: {problem}"
    if len(problems) > 1:
        message += f" ({len(problems)} of {len(ex['cases'])} cases fail)"
    failing = [i for i, _ in problems]
    found = _matching_mistakes(ex, result["outputs"], failing, tol, checker)
    mistake = found[0][0] if found else ""
    if len(found) == 1 and found[0][1] == len(problems):
        hint = ex["hints"][mistake]
    else:
        hint = " ".join(
            f"On {n} of the {len(problems)} failing cases, {ex['hints'][m]}" for m, n in found
        )
    return ExerciseResult(ex["name"], 0, points, STATUS_FAILED, message, hint, mistake)


def evaluate(
    exercises: list[MaterializedExercise], results: list[JobResult]
) -> list[ExerciseResult]:
    """Every exercise's result; notes when an exercise calls another that fails."""
    by_name = {r["exercise"]: r for r in results}
    out = [evaluate_exercise(ex, by_name[ex["name"]]) for ex in exercises]
    status = {r.name: r for r in out}
    for ex, res in zip(exercises, out, strict=True):
        broken = [d for d in ex["depends_on"] if d in status and not status[d].passed]
        if res.status == STATUS_FAILED and broken:
            res.message += (
                f" (note: {ex['name']} uses your {', '.join(broken)}, which "
                f"{'does' if len(broken) == 1 else 'do'} not pass yet; fix that first)"
            )
    return out
