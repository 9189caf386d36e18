"""Compare an answer with the expected one and say, in words, what is wrong.

``compare`` returns ``None`` when the answer is right, otherwise one sentence a
student can act on: a wrong type, a wrong shape, a wrong dtype, NaNs, or which
positions differ and by how much.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from autograder.core.spec import Tolerance


def describe(value: Any) -> str:
    """A short description of a value for messages: ``Tensor (2, 3) float32``, ``float``."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {_dtype(value.dtype)}"
    if isinstance(value, dict) and "__unsupported__" in value:
        return f"a {value['__unsupported__']}"
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _index(flat: int, shape: torch.Size) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        index.append(flat % size)
        flat //= size
    return tuple(reversed(index))


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def compare_tensors(expected: torch.Tensor, actual: Any, tol: Tolerance, name: str) -> str | None:
    """Shape, dtype, finiteness, then values; the first problem found is reported."""
    if not isinstance(actual, torch.Tensor):
        return f"`{name}` should be a tensor, got {describe(actual)}"
    if actual.shape != expected.shape:
        return f"`{name}` has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    if actual.dtype != expected.dtype:
        return f"`{name}` has dtype {_dtype(actual.dtype)}, expected {_dtype(expected.dtype)}"
    if expected.numel() == 0:
        return None
    if expected.dtype == torch.bool or not expected.is_floating_point():
        wrong = actual != expected
        count = int(wrong.sum())
        if count == 0:
            return None
        first = _index(int(wrong.flatten().nonzero()[0]), expected.shape)
        return (
            f"`{name}` differs at {count} of {expected.numel()} positions; first at {first}: "
            f"expected {expected[first].tolist()}, got {actual[first].tolist()}"
        )
    exp, act = expected.double(), actual.double()
    bad_nan = torch.isnan(act) & ~torch.isnan(exp)
    if bad_nan.any():
        first = _index(int(bad_nan.flatten().nonzero()[0]), expected.shape)
        return (
            f"`{name}` has NaN at {int(bad_nan.sum())} of {expected.numel()} positions "
            f"(first at {first}), where a number was expected"
        )
    both_same_inf = torch.isinf(exp) & (act == exp)
    diff = (act - exp).abs().masked_fill(both_same_inf, 0.0)
    diff = diff.masked_fill(torch.isnan(exp) & torch.isnan(act), 0.0)
    limit = tol.atol + tol.rtol * exp.abs().masked_fill(~torch.isfinite(exp), 0.0)
    wrong = ~(diff <= limit)
    count = int(wrong.sum())
    if count == 0:
        return None
    worst_flat = int(torch.where(wrong, diff.nan_to_num(math.inf), -1.0).flatten().argmax())
    worst = _index(worst_flat, expected.shape)
    return (
        f"`{name}` differs at {count} of {expected.numel()} positions; the largest difference "
        f"is {_fmt(float(diff[worst]))} at index {worst}: expected {_fmt(float(exp[worst]))}, "
        f"got {_fmt(float(act[worst]))} (tolerance: atol {tol.atol:g}, rtol {tol.rtol:g})"
    )


def compare(expected: Any, actual: Any, tol: Tolerance, name: str = "output") -> str | None:
    """``None`` if ``actual`` matches ``expected`` (recursively), else what is wrong."""
    if isinstance(actual, dict) and "__unsupported__" in actual:
        return f"`{name}` should be {describe(expected)}, got {describe(actual)}"
    if isinstance(expected, torch.Tensor):
        return compare_tensors(expected, actual, tol, name)
    if isinstance(expected, tuple | list):
        if not isinstance(actual, tuple | list):
            return f"`{name}` should be {describe(expected)}, got {describe(actual)}"
        if len(actual) != len(expected):
            return f"`{name}` should have {len(expected)} elements, got {len(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            problem = compare(e, a, tol, f"{name}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"`{name}` should be a dict, got {describe(actual)}"
        missing = sorted(set(expected) - set(actual))
        if missing:
            return f"`{name}` lacks the keys {missing}"
        for key in expected:
            problem = compare(expected[key], actual[key], tol, f"{name}[{key!r}]")
            if problem:
                return problem
        return None
    if isinstance(expected, bool) or expected is None or isinstance(expected, str):
        if type(actual) is not type(expected) or actual != expected:
            return f"`{name}` should be {expected!r}, got {actual!r}"
        return None
    if isinstance(expected, int | float):
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            return f"`{name}` should be a number, got {describe(actual)}"
        if isinstance(expected, int) and not isinstance(actual, int):
            return f"`{name}` should be an int, got {describe(actual)} ({actual!r})"
        if math.isclose(actual, expected, rel_tol=tol.rtol, abs_tol=tol.atol):
            return None
        return f"`{name}` is {_fmt(actual)}, expected {_fmt(expected)}"
    raise TypeError(f"cannot compare expected value of type {type(expected).__name__}")


def compare_outputs(
    expected: Any, actual: Any, tol: Tolerance, names: tuple[str, ...]
) -> str | None:
    """Compare an exercise's answer, naming each output (``out``, ``weights``...)."""
    if len(names) == 1:
        return compare(expected, actual, tol, names[0])
    if not isinstance(actual, tuple | list) or len(actual) != len(names):
        wanted = ", ".join(names)
        return f"should return a tuple ({wanted}), got {describe(actual)}"
    for n, e, a in zip(names, expected, actual, strict=True):
        problem = compare(e, a, tol, n)
        if problem:
            return problem
    return None
