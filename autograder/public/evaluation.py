"""Chapter 08's driver: plain data in, plain data out (ships to students, never imports
solutions/ or a grading spec).

- ``call_nan_as_text``: the ``call`` driver, except that a float nan answer becomes the
  text ``"nan"``. Where the reference answers nan (a perplexity with every target
  ignored, the correlation of a constant), the answer must be nan too; as text it
  compares equal to itself, which a float nan never does (``math.isclose``).
"""

from __future__ import annotations

import math
from typing import Any

from autograder.core.spec import Case


def call_nan_as_text(obj: Any, case: Case) -> Any:
    """``obj(*args, **kwargs)``, with a float nan answer returned as ``"nan"``."""
    answer = obj(*case.get("args", []), **case.get("kwargs", {}))
    if isinstance(answer, float) and math.isnan(answer):
        return "nan"
    return answer
