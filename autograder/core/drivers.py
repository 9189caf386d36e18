"""How the student's object is called on one case, and how its answer is made plain.

This module runs wherever student code runs (in the self-check, and in the
isolated child process when grading), so it must never import solutions/ or a
chapter's spec. It receives plain data (tensors, numbers, strings, lists,
dicts) and returns plain data.
"""

from __future__ import annotations

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
    state = case.get("state")
    if state is not None:
        result = module.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise StateDictMismatch(result.missing_keys, result.unexpected_keys)
    module.eval()
    with torch.no_grad():
        return module(*case.get("args", []), **case.get("kwargs", {}))


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


DRIVERS: dict[str, Callable[[Callable[..., Any], Case], Any]] = {
    "call": _call,
    "module": _module,
}


def run_case(obj: Callable[..., Any], driver: str, case: Case) -> Any:
    """Call ``obj`` on ``case`` with the named driver and return its plain answer."""
    try:
        fn = DRIVERS[driver]
    except KeyError:
        raise ValueError(f"unknown driver {driver!r}; known: {sorted(DRIVERS)}") from None
    return to_plain(fn(obj, clone_case(case)))


def clone_case(case: Case) -> Case:
    """A deep copy of the case, so an in-place edit by one call cannot leak into the next."""
    return _clone(case)


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_clone(v) for v in value)
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
