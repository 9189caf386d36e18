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

import torch

from autograder.core.drivers import run_case
from autograder.core.loader import SubmissionError, load_submission, student_error
from autograder.core.spec import Case


class Job(TypedDict, total=False):
    exercise: str
    driver: str
    cases: list[Case]
    # the student's functions the parent answers for while this job runs (the reference
    # in their place), so a failing dependency does not also fail this exercise
    stand_ins: list[str]


Ask = Callable[[str, list[Any], dict[str, Any]], Any]
GENERATOR = "__torch_generator_state__"  # a generator argument of a stand-in, as plain data


def revive_generators(value: Any, made: list[torch.Generator]) -> Any:
    """The arguments a stand-in sent, with its generators rebuilt (appended to ``made``)."""
    if isinstance(value, dict) and set(value) == {GENERATOR}:
        generator = torch.Generator()
        generator.set_state(value[GENERATOR])
        made.append(generator)
        return generator
    if isinstance(value, list | tuple):
        return type(value)(revive_generators(v, made) for v in value)
    if isinstance(value, dict):
        return {k: revive_generators(v, made) for k, v in value.items()}
    return value


def answer_with(functions: dict[str, Callable[..., Any]]) -> Ask:
    """The parent's answers for stand-ins: ``functions[name]`` called on the arguments sent,
    and the state of each generator argument after the call (in the order they were given)."""

    def answer(name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        made: list[torch.Generator] = []
        args = revive_generators(list(args), made)
        kwargs = revive_generators(dict(kwargs), made)
        value = functions[name](*args, **kwargs)
        return {"value": value, "generator_states": [g.get_state() for g in made]}

    return answer


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
            for name in names:
                submission.namespace[name] = stand_in(name, ask)  # type: ignore[arg-type]
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


def _plain_argument(value: Any, name: str) -> Any:
    if isinstance(value, torch.Tensor):
        if value.requires_grad:
            raise TypeError(f"the reference's `{name}` cannot stand in where gradients flow")
        return value.detach().to("cpu")
    if value is None or isinstance(value, bool | int | float | str | torch.dtype):
        return value
    if isinstance(value, torch.device):
        return "cpu"  # the parent answers on its CPU; the answer is moved back below
    if isinstance(value, torch.Generator):  # its state goes, the state after comes back
        return {GENERATOR: value.get_state()}
    if isinstance(value, list | tuple):
        return type(value)(_plain_argument(v, name) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain_argument(v, name) for k, v in value.items()}
    raise TypeError(f"the reference's `{name}` cannot stand in for a {type(value).__name__}")


def _to_device(value: Any, device: torch.device | None) -> Any:
    if device is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list | tuple):
        return type(value)(_to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


def stand_in(name: str, ask: Ask) -> Callable[..., Any]:
    """A function that answers as the parent says ``name`` would (plain data only)."""

    def answered_by_the_parent(*args: Any, **kwargs: Any) -> Any:
        plain_args = [_plain_argument(a, name) for a in args]
        plain_kwargs = {k: _plain_argument(v, name) for k, v in kwargs.items()}
        given = [*args, *kwargs.values()]
        devices = [a for a in given if isinstance(a, torch.device)]
        devices += [a.device for a in given if isinstance(a, torch.Tensor)]
        reply = ask(name, plain_args, plain_kwargs)
        generators = [a for a in given if isinstance(a, torch.Generator)]
        for generator, state in zip(generators, reply["generator_states"], strict=True):
            generator.set_state(state)  # as if the reference had drawn from it here
        return _to_device(reply["value"], devices[0] if devices else None)

    answered_by_the_parent.__name__ = name
    return answered_by_the_parent
