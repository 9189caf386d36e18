"""How the student's object is called on one case, and how its answer is made plain.

This module runs wherever student code runs (in the self-check, and in the
isolated child process when grading), so it must never import solutions/ or a
chapter's spec. It receives plain data (tensors, numbers, strings, lists,
dicts) and returns plain data.
"""

from __future__ import annotations

import importlib
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


def _methods(obj: Callable[..., Any], case: Case) -> Any:
    """Driver ``methods``: build an object, then call its methods in order.

    ``case["calls"]`` is a list of ``{"method", "args", "kwargs", "record"}``; the
    answer is the tuple of the results of the calls with ``record`` true.
    """
    instance = obj(*case.get("init_args", []), **case.get("init", {}))
    recorded = []
    for call in case["calls"]:
        method = getattr(instance, call["method"], None)
        if method is None:
            raise AttributeError(f"{type(instance).__name__} has no method {call['method']!r}")
        result = method(*call.get("args", []), **call.get("kwargs", {}))
        if call.get("record", True):
            recorded.append(result)
    return tuple(recorded)


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
    """Call ``obj`` on ``case`` with the named driver and return its plain answer."""
    fn = DRIVERS[driver] if driver in DRIVERS else resolve_public(driver)
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
