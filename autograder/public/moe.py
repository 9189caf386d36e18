"""Chapter 03's drivers: they also grade the gradient, since that is what a router learns from.

Both run beside student code and ship to students: plain data in, plain data
out, never an import of solutions/ or of a grading spec.
"""

from __future__ import annotations

from typing import Any

import torch

from autograder.core.drivers import StateDictMismatch
from autograder.core.spec import Case


def _gradient(terms: list[tuple[Any, torch.Tensor | None]], wrt: torch.Tensor) -> torch.Tensor:
    """d(sum over terms of sum(output * weight))/d(wrt); zeros when no gradient reaches ``wrt``.

    ``terms`` are (output, weight) pairs, weight None meaning all ones. Outputs that
    are not tensors, carry no gradient or do not match their weight's shape add nothing
    (the comparison of the outputs reports those).
    """
    total = None
    for output, weight in terms:
        if not isinstance(output, torch.Tensor) or not output.requires_grad:
            continue
        if not output.is_floating_point():
            continue
        if weight is not None and weight.shape != output.shape:
            continue
        term = output.sum() if weight is None else (output * weight.to(output.dtype)).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros_like(wrt)
    (grad,) = torch.autograd.grad(total, wrt, allow_unused=True)
    return torch.zeros_like(wrt) if grad is None else grad.detach()


def loss_and_logit_grad(obj: Any, case: Case) -> tuple[Any, torch.Tensor]:
    """Call ``load_balancing_loss`` and differentiate it with respect to the router logits.

    Returns (loss, d loss / d router_logits).
    """
    args = list(case.get("args", []))
    logits = args[0].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = obj(logits, *args[1:], **case.get("kwargs", {}))
        grad = _gradient([(loss, None)], logits)
    return (loss.detach() if isinstance(loss, torch.Tensor) else loss), grad


def moe_forward_and_router_grad(obj: Any, case: Case) -> tuple[Any, Any, torch.Tensor]:
    """Build the MoE layer, load the case's weights, run forward with gradients on.

    Returns (y, aux_loss, router_grad), where router_grad is the gradient of
    sum(y * case["probe"]) + aux_loss with respect to ``router.weight``: zero
    when the routing weights or the auxiliary loss are cut off from the router.
    """
    module = obj(**case.get("init", {}))
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{type(module).__name__} is not a torch.nn.Module subclass")
    state = case.get("state")
    if state is not None:
        result = module.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise StateDictMismatch(result.missing_keys, result.unexpected_keys)
    module.eval()
    with torch.enable_grad():
        out = module(*case.get("args", []), **case.get("kwargs", {}))
        if not isinstance(out, tuple | list) or len(out) != 2:
            got = f"a {type(out).__name__}" + (
                f" of {len(out)}" if isinstance(out, tuple | list) else ""
            )
            raise TypeError(f"forward must return a tuple (y, aux_loss), got {got}")
        y, aux_loss = out
        router_weight = module.router.weight
        grad = _gradient([(y, case["probe"]), (aux_loss, None)], router_weight)
    plain = tuple(v.detach() if isinstance(v, torch.Tensor) else v for v in (y, aux_loss))
    return plain[0], plain[1], grad
