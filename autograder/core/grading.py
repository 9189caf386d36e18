"""Grade one submission against the reference on fresh seeds (the instructor's side)."""

from __future__ import annotations

import inspect
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from autograder.core.chapters import ChapterInfo, load_spec
from autograder.core.evaluate import ExerciseResult, evaluate
from autograder.core.executors import Executor
from autograder.core.materialize import (
    GRADING_SEED,
    MaterializedChapter,
    jobs_for,
    materialize,
    selected,
)
from autograder.core.spec import ChapterSpec
from autograder.core.stand_ins import answer_with


@lru_cache(maxsize=16)
def expectations(info: ChapterInfo, seed: int = GRADING_SEED) -> MaterializedChapter:
    """The chapter's grading cases and answers, computed once per process from solutions/."""
    return materialize(load_spec(info), seed)


def grade_submission(
    path: str | Path,
    info: ChapterInfo,
    executor: Executor | None = None,
    seed: int = GRADING_SEED,
    only: list[str] | None = None,
) -> list[ExerciseResult]:
    """Points per exercise for the submission at ``path``; never raises for student faults.

    ``only`` grades just the exercises it names (the others are not run at all).
    """
    chapter = expectations(info, seed)
    if executor is None:
        from autograder.core.sandbox import IsolatedExecutor

        executor = IsolatedExecutor()
    return grade_with_stand_ins(info, chapter, executor, Path(path), only)


def _closure(name: str, deps: dict[str, list[str]], failing: set[str]) -> set[str]:
    """The failing exercises ``name`` reaches through its dependencies (not itself)."""
    found: set[str] = set()
    todo = list(deps.get(name, []))
    while todo:
        dep = todo.pop()
        if dep in found or dep == name:
            continue
        if dep in failing:
            found.add(dep)
        todo += deps.get(dep, [])
    return found


def _roots(stand: set[str], deps: dict[str, list[str]], failing: set[str]) -> set[str]:
    """Those of ``stand`` whose own dependencies all pass: the likely first mistakes."""
    return {n for n in stand if not _closure(n, deps, failing)}


def _kind(reference: Any) -> str:
    """How a stand-in replaces the reference: a function, a module class, an object class."""
    if not inspect.isclass(reference):
        return "function"
    return "class" if issubclass(reference, torch.nn.Module) else "object"


def grade_with_stand_ins(
    info: ChapterInfo,
    chapter: MaterializedChapter,
    executor: Executor,
    path: Path,
    only: list[str] | None = None,
) -> list[ExerciseResult]:
    """Grade, then grade again each failing exercise that calls a failing function or
    class of the student's, with the reference answering in place of those.

    One mistake costs one exercise: an exercise that passes again earns its points, and
    its message names the student's functions that made it fail. The first retry stands
    in only for the failing dependencies whose own dependencies pass (the likely first
    mistakes: a caller between them is then graded with the student's own code, which
    may take arguments no stand-in can send, such as a model); an exercise still failing
    is retried once more with every failing dependency stood in for. The reference's
    code stays here: the child only receives its answers (plain tensors), for the names
    offered, while that exercise runs. Executors that cannot relay questions (the
    self-check's, in process) grade once.
    """
    exercises = selected(chapter, only)
    results = evaluate(exercises, executor(path, jobs_for(chapter, only)))
    if not getattr(executor, "answers_questions", False):
        return results
    by_name = {r.name: r for r in results}
    failing = {r.name for r in results if not r.passed}
    spec = load_spec(info)
    kinds = {
        e.name: _kind(e.reference())
        for e in spec.exercises
        if inspect.isroutine(e.reference()) or inspect.isclass(e.reference())
    }
    answerable = set(kinds)
    deps = {ex["name"]: list(ex["depends_on"]) for ex in chapter["exercises"]}
    closures = {
        ex["name"]: _closure(ex["name"], deps, failing) & answerable
        for ex in exercises
        if by_name[ex["name"]].status == "failed"
    }
    tried: dict[str, list[frozenset[str]]] = {name: [] for name in closures}
    for pick in (lambda c: _roots(c, deps, failing), lambda c: c):
        retry = {}
        for name, closure in closures.items():
            stand = frozenset(pick(closure))
            if stand and not by_name[name].passed and stand not in tried[name]:
                retry[name] = sorted(stand)
                tried[name].append(stand)
        if retry:
            _retry(spec, chapter, executor, path, retry, kinds, by_name)
    return results


def _retry(
    spec: ChapterSpec,
    chapter: MaterializedChapter,
    executor: Executor,
    path: Path,
    retry: dict[str, list[str]],
    kinds: dict[str, str],
    by_name: dict[str, ExerciseResult],
) -> None:
    """Grade the exercises of ``retry`` again, each with the reference standing in for
    the names it lists; an exercise that passes takes the new score and message."""
    names = sorted({n for stand in retry.values() for n in stand})
    references = {n: spec.exercise(n).reference() for n in names}
    objects = {n: spec.exercise(n).reference() for n, k in kinds.items() if k == "object"}
    jobs = [
        {
            **job,
            "stand_ins": retry[job["exercise"]],
            "stand_in_kinds": {n: kinds[n] for n in retry[job["exercise"]]},
        }
        for job in jobs_for(chapter, sorted(retry))
    ]
    again = evaluate(
        selected(chapter, sorted(retry)),
        executor(path, jobs, answer=answer_with(references, objects)),  # type: ignore[call-arg]
    )
    for second in again:
        first, stand = by_name[second.name], retry[second.name]
        yours = ", ".join(f"`{n}`" for n in stand)
        if second.passed:
            first.score, first.status, first.hint, first.mistake = second.score, "passed", "", ""
            first.message = (
                f"passes when the reference stands in for your {yours}: it failed only "
                f"because {'that fails' if len(stand) == 1 else 'those fail'} (graded there)"
            )
        elif "even with the reference" not in first.message:
            first.message += f" It fails even with the reference standing in for your {yours}."
