"""Helpers for writing a spec's seeded inputs (instructor side: used by autograder/SLUG.py)."""

from __future__ import annotations

import math
from typing import Any

import torch

from autograder.core.spec import Case


def randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    """Standard normal draws from ``g``, times ``scale``."""
    return torch.randn(*shape, generator=g) * scale


def random_state(module: torch.nn.Module, g: torch.Generator) -> dict[str, torch.Tensor]:
    """A state_dict with random values: norm gains near 1, weights ~ 1/sqrt(fan_in).

    Random gains and biases make a wrong wiring (the wrong norm, a missing bias)
    change the answer, which default initial values (ones and zeros) would hide.
    """
    state = {}
    for name, p in module.state_dict().items():
        if p.dim() == 1 and name.startswith(("ln", "norm")) and name.endswith("weight"):
            state[name] = 1.0 + 0.3 * randn(g, *p.shape)
        elif p.dim() == 2:
            state[name] = randn(g, *p.shape, scale=1.0 / math.sqrt(p.shape[1]))
        else:
            state[name] = randn(g, *p.shape, scale=0.3)
    return state


def module_case(
    label: str, cls: type, init: dict[str, Any], g: torch.Generator, *args: Any, **kwargs: Any
) -> Case:
    """A case for the ``module`` driver: build ``cls(**init)`` with random weights, run forward."""
    return {
        "label": label,
        "init": init,
        "state": random_state(cls(**init), g),
        "args": list(args),
        "kwargs": kwargs,
    }


def call_case(label: str, *args: Any, **kwargs: Any) -> Case:
    """A case for the ``call`` driver."""
    return {"label": label, "args": list(args), "kwargs": kwargs}
