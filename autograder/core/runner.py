"""Run a submission's objects on the cases of each exercise: the student side.

``run_jobs`` takes plain data in (which object, which driver, which cases) and
gives plain data out (the answers, or what went wrong). It is the whole of what
must run beside student code, so grading can run it in a separate, isolated
process (see :mod:`autograder.core.child`) and compare in the parent.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypedDict

from autograder.core.drivers import run_case
from autograder.core.loader import SubmissionError, load_submission, student_error
from autograder.core.spec import Case
from autograder.core.stand_ins import Ask, stand_in


class Job(TypedDict, total=False):
    exercise: str
    driver: str
    cases: list[Case]
    # the student's functions the parent answers for while this job runs (the reference
    # in their place), so a failing dependency does not also fail this exercise
    stand_ins: list[str]
    stand_in_kinds: dict[str, str]  # name -> "function", "class" (nn.Module) or "object"


class JobResult(TypedDict):
    exercise: str
    # "ok" (every case ran; outputs may still be wrong), "missing", "not_implemented",
    # "unreadable" (the file is not a submission); per-case crashes are in `errors`.
    status: str
    message: str
    outputs: list[Any]  # one per case; None where that case raised
    errors: list[str | None]  # one per case


def _result(exercise: str, status: str, message: str = "") -> JobResult:
    return JobResult(exercise=exercise, status=status, message=message, outputs=[], errors=[])


def run_job(obj: Any, job: Job) -> JobResult:
    """Run one exercise's cases on the student's object."""
    result = _result(job["exercise"], "ok")
    for case in job["cases"]:
        try:
            output = run_case(obj, job["driver"], case)
        except NotImplementedError:
            return _result(job["exercise"], "not_implemented", "not implemented yet")
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - student code may raise anything
            result["outputs"].append(None)
            result["errors"].append(student_error(exc))
        else:
            result["outputs"].append(output)
            result["errors"].append(None)
    return result


def run_jobs(
    path: str | Path,
    jobs: list[Job],
    skip: Collection[str] = (),
    on_statement: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[int, JobResult], None] | None = None,
    ask: Ask | None = None,
) -> list[JobResult]:
    """Load the submission at ``path`` and run every job; never raises for student faults.

    The callbacks let a supervising process follow the progress: ``on_statement``
    before each loaded statement (see :func:`load_submission`), ``on_start(i)``
    before job i, ``on_result(i, result)`` after it. With ``ask``, each name in a
    job's ``stand_ins`` is replaced, while that job runs, by a function that asks
    the parent for the answer.
    """
    try:
        submission = load_submission(path, skip=skip, on_statement=on_statement)
    except SubmissionError as exc:
        results = [_result(job["exercise"], "unreadable", str(exc)) for job in jobs]
        for i, result in enumerate(results):
            if on_result is not None:
                on_result(i, result)
        return results
    results = []
    for i, job in enumerate(jobs):
        if on_start is not None:
            on_start(i)
        obj, reason = submission.lookup(job["exercise"])
        if obj is None:
            result = _result(job["exercise"], "missing", reason or "not defined")
        else:
            names = job.get("stand_ins", []) if ask is not None else []
            saved = {n: submission.namespace[n] for n in names if n in submission.namespace}
            kinds = job.get("stand_in_kinds", {})
            for name in names:
                kind = kinds.get(name, "function")
                submission.namespace[name] = stand_in(name, ask, kind)  # type: ignore[arg-type]
            try:
                result = run_job(obj, job)
            finally:
                for name in names:
                    submission.namespace.pop(name, None)
                submission.namespace.update(saved)
        results.append(result)
        if on_result is not None:
            on_result(i, result)
    return results
