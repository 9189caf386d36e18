"""Chapter 01's driver: plain data in, plain data out.

It runs beside student code and ships to students, so it never imports solutions/
or a grading spec.

- ``call_on_device``: call the function; on a case that asks for the ``meta``
  device (a device with shapes and dtypes but no values, available on every
  machine), the answer is where the result was created, its shape and dtype, so
  a ``device=`` argument that is ignored shows even on a grader without a GPU;
  a ``dtype`` given by name (``"float64"``) is passed as the ``torch.dtype``.
- ``check_precision``: the usual comparison, but a float64 answer is held to
  float64 precision (1e-9), so a result computed in float32 and cast fails.
"""

from __future__ import annotations

from typing import Any

import torch

from autograder.core.compare import compare
from autograder.core.spec import Case, Tolerance


def call_on_device(obj: Any, case: Case) -> Any:
    """Driver: ``obj(*args, **kwargs)``; for ``device="meta"`` its device, shape and dtype.

    A ``dtype`` keyword given as a name (``"float64"``, so that cases stay plain data)
    is passed as that ``torch.dtype``.
    """
    kwargs = dict(case.get("kwargs", {}))
    if isinstance(kwargs.get("dtype"), str):
        kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    out = obj(*case.get("args", []), **kwargs)
    if kwargs.get("device") != "meta" or not isinstance(out, torch.Tensor):
        return out
    return {
        "device": out.device.type,
        "shape": list(out.shape),
        "dtype": str(out.dtype).removeprefix("torch."),
    }


# A float64 answer is held to float64 precision: a docstring that promises the
# computation in float64 for float64 inputs is broken by computing in float32 and
# casting, which stays within the float32 tolerance of the exercise.
FLOAT64_TOLERANCE = Tolerance(atol=1e-9, rtol=1e-9)


def check_precision(case: Case, actual: Any, tolerance: Tolerance) -> str | None:
    """Checker: the usual comparison; where the expected output is float64, to 1e-9."""
    expected = case["expected"]
    if isinstance(expected, torch.Tensor) and expected.dtype == torch.float64:
        tolerance = FLOAT64_TOLERANCE
    return compare(expected, actual, tolerance, "output")
