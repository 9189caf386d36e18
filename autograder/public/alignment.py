"""Chapter 06's driver: DPO's rewards are for logging, its losses are what is trained.

It runs beside student code and ships to students: plain data in, plain data out,
never an import of solutions/ or of a grading spec.
"""

from __future__ import annotations

from typing import Any

import torch

from autograder.core.spec import Case


def _carries_gradient(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


def _detached(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value


def dpo_with_gradients(obj: Any, case: Case) -> Any:
    """Call ``dpo_loss`` on log-probabilities that require gradients.

    The tensors share the case's storage (an in-place change is still seen by the
    grader). Returns (losses, chosen_rewards, rejected_rewards, rewards_detached,
    losses_have_gradient): whether neither reward carries a gradient, and whether
    the losses do.
    """
    args = [
        a.detach().requires_grad_(True)
        if isinstance(a, torch.Tensor) and a.is_floating_point()
        else a
        for a in case.get("args", [])
    ]
    with torch.enable_grad():
        answer = obj(*args, **case.get("kwargs", {}))
    if not isinstance(answer, tuple | list) or len(answer) != 3:
        return answer  # the comparison says what is wrong with it
    losses, chosen, rejected = answer
    detached = not (_carries_gradient(chosen) or _carries_gradient(rejected))
    return (
        _detached(losses),
        _detached(chosen),
        _detached(rejected),
        detached,
        _carries_gradient(losses),
    )
