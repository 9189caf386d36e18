"""How the student's object is called on one case, and how its answer is made plain.

This module runs wherever student code runs (in the self-check, and in the
isolated child process when grading), so it must never import solutions/ or a
chapter's spec. It receives plain data (tensors, numbers, strings, lists,
dicts) and returns plain data.
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import torch

from autograder.core.spec import Case


def _call(obj: Callable[..., Any], case: Case) -> Any:
    """Driver ``call``: a function, called with the case's arguments."""
    return obj(*case.get("args", []), **case.get("kwargs", {}))


def _module(obj: Callable[..., Any], case: Case) -> Any:
    """Driver ``module``: build an nn.Module, load the case's weights, run forward."""
    module = obj(**case.get("init", {}))
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{type(module).__name__} is not a torch.nn.Module subclass")
    if case.get("dtype"):  # a dtype variant: the module's weights in that dtype too
        module = module.to(getattr(torch, case["dtype"]))
    if case.get("device"):  # make gpu-check: the module on the case's device
        module = module.to(case["device"])
    state = case.get("state")
    if state is not None:
        result = module.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise StateDictMismatch(result.missing_keys, result.unexpected_keys)
    module.eval()
    before = {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items()}
    with torch.no_grad():
        output = module(*case.get("args", []), **case.get("kwargs", {}))
    after = module.state_dict(keep_vars=True)
    _report_changes(changed_tensors(before, after, "module"))
    return output


class StateDictMismatch(Exception):
    """The student's module has other parameter names than the exercise asks for."""

    def __init__(self, missing: list[str], unexpected: list[str]) -> None:
        # load_state_dict's view: `missing` are the module's own names the weights lack,
        # `unexpected` are the exercise's names the module lacks.
        parts = []
        if unexpected:
            parts.append(f"the exercise expects parameters {unexpected} that your module lacks")
        if missing:
            parts.append(f"your module has parameters {missing} that the exercise does not know")
        super().__init__("; ".join(parts) + " (name the submodules exactly as the docstring says)")


def _methods(obj: Callable[..., Any], case: Case) -> Any:
    """Driver ``methods``: build an object, then call its methods in order.

    ``case["calls"]`` is a list of ``{"method", "args", "kwargs", "record"}``; the
    answer is the tuple of the results of the calls with ``record`` true.
    """
    instance = obj(*case.get("init_args", []), **case.get("init", {}))
    recorded: list[tuple[str, Any, Any]] = []  # (what, the object returned, its value then)
    for number, call in enumerate(case["calls"], start=1):
        method = getattr(instance, call["method"], None)
        if method is None:
            raise AttributeError(f"{type(instance).__name__} has no method {call['method']!r}")
        result = method(*call.get("args", []), **call.get("kwargs", {}))
        if call.get("record", True):
            what = f"result of call {number} ({call['method']})"
            recorded.append((what, result, to_plain(result)))
    report_later_changes(recorded)
    return tuple(value for _, _, value in recorded)


def report_later_changes(recorded: list[tuple[str, Any, Any]]) -> None:
    """Flag returned tensors that a later call changed (a cache handing out its own storage).

    ``recorded`` holds, per returned object, a name, the object itself and a plain
    copy taken when it was returned; the answer graded is that copy.
    """
    for what, live, then in recorded:
        changes = changed_tensors(then, to_plain(live))
        _report_changes((what, f"changed by a later call: {change}") for _, change in changes)


DRIVERS: dict[str, Callable[[Callable[..., Any], Case], Any]] = {
    "call": _call,
    "module": _module,
    "methods": _methods,
}

# Chapter-specific drivers and checkers live in autograder/public/SLUG.py and are
# named "autograder.public.SLUG:function". They ship to students, so they must
# never import solutions/ or a grading spec.
PUBLIC_PREFIX = "autograder.public."


def resolve_public(name: str) -> Callable[..., Any]:
    """The function named ``autograder.public.SLUG:function``."""
    module_name, _, attr = name.partition(":")
    if not module_name.startswith(PUBLIC_PREFIX) or not attr:
        raise ValueError(f"{name!r} is not of the form {PUBLIC_PREFIX}SLUG:function")
    return getattr(importlib.import_module(module_name), attr)


def run_case(obj: Callable[..., Any], driver: str, case: Case) -> Any:
    """Call ``obj`` on ``case`` with the named driver and return its plain answer.

    Every tensor of the case is compared before and after the call: one that
    changed, and is not in ``case["mutable"]`` (what the reference itself changes,
    recorded when the case was materialised), raises :class:`InputModified`.
    """
    answer, changed = run_case_tracking(obj, driver, case)
    allowed = set(case.get("mutable", ()))
    wrong = [c for c in changed if c[0] not in allowed]
    if wrong:
        raise InputModified(wrong, _parameter_names(obj, driver))
    return answer


def run_case_tracking(
    obj: Callable[..., Any], driver: str, case: Case
) -> tuple[Any, list[tuple[str, str]]]:
    """The plain answer, and ``(path, what changed)`` for each input the call changed."""
    fn = DRIVERS[driver] if driver in DRIVERS else resolve_public(driver)
    work = clone_case(case)
    extra: list[tuple[str, str]] = []
    token = _EXTRA_CHANGES.set(extra)
    try:
        answer = to_plain(fn(obj, work))
    finally:
        _EXTRA_CHANGES.reset(token)
    return answer, [*changed_tensors(case, work), *extra]


# Changes a driver sees in objects it built itself (a module's parameters and buffers).
_EXTRA_CHANGES: contextvars.ContextVar[list[tuple[str, str]] | None] = contextvars.ContextVar(
    "llm_course_extra_changes", default=None
)


def _report_changes(changes: Any) -> None:
    sink = _EXTRA_CHANGES.get()
    if sink is not None:
        sink.extend(changes)


def changed_tensors(before: Any, after: Any, path: str = "") -> Any:
    """``(path, description)`` of every tensor of ``before`` that ``after`` no longer equals."""
    if isinstance(before, torch.Tensor):
        what = _tensor_change(before, after)
        if what:
            yield path, what
    elif isinstance(before, dict) and isinstance(after, dict):
        for key, value in before.items():
            yield from changed_tensors(value, after.get(key), _join(path, key))
    elif isinstance(before, list | tuple) and isinstance(after, list | tuple):
        for i, value in enumerate(before):
            if i < len(after):
                yield from changed_tensors(value, after[i], f"{path}[{i}]")


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _tensor_change(before: torch.Tensor, after: Any) -> str:
    if not isinstance(after, torch.Tensor):
        return "was replaced"
    if after.shape != before.shape or after.dtype != before.dtype:
        return (
            f"was resized or cast in place (now shape {tuple(after.shape)}, "
            f"dtype {str(after.dtype).removeprefix('torch.')})"
        )
    if before.numel() == 0:
        return ""
    same = before == after
    if before.is_floating_point() or before.is_complex():
        same = same | (torch.isnan(before) & torch.isnan(after))
    count = int((~same).sum())
    return f"{count} of {before.numel()} entries differ" if count else ""


def _parameter_names(obj: Any, driver: str) -> list[str]:
    """The names of the positional parameters a case's ``args`` go to (best effort)."""
    target = obj.forward if driver == "module" and hasattr(obj, "forward") else obj
    try:
        params = list(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return []
    return params[1:] if params and params[0] == "self" else params


class InputModified(Exception):
    """The student's code changed a tensor it was given (or returned earlier) in place."""

    def __init__(self, changed: list[tuple[str, str]], names: list[str]) -> None:
        parts = [f"{_friendly(path, names)} ({what})" for path, what in changed[:3]]
        super().__init__(
            "changed its input in place: "
            + "; ".join(parts)
            + ". The caller's tensors must not change: compute on new tensors (x = x * 2, "
            "not x *= 2 or x[...] = ...), or on a copy (x = x.clone())"
        )


def _friendly(path: str, names: list[str]) -> str:
    """``args[0]`` -> argument `logits`; ``kwargs.mask`` -> argument `mask`."""
    if path.startswith("args[") and "]" in path:
        index = int(path[5 : path.index("]")])
        rest = path[path.index("]") + 1 :]
        if index < len(names):
            return f"argument `{names[index]}`{rest}"
        return f"positional argument {index}{rest}"
    if path.startswith("kwargs."):
        return f"argument `{path[7:]}`"
    return f"`{path}`"


def clone_case(case: Case) -> Case:
    """A deep copy of the case, so an in-place edit by one call cannot leak into the next."""
    return clone_nested(case)


def clone_nested(value: Any) -> Any:
    """Nested dicts, lists and tuples copied, their tensors cloned."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: clone_nested(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(clone_nested(v) for v in value)
    return value


def to_plain(value: Any) -> Any:
    """Tensors (detached, on the CPU), numbers, strings, lists and dicts; nothing else."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").clone()
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, tuple):
        return tuple(to_plain(v) for v in value)
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    return {"__unsupported__": type(value).__name__}
