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


def _rows_counter(rows: list[int], i: int) -> Any:
    """A forward pre-hook adding the number of rows (tokens) expert ``i`` is given."""

    def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() >= 1:
            rows[i] += args[0].reshape(-1, args[0].shape[-1]).shape[0]

    return hook


def moe_forward_and_router_grad(obj: Any, case: Case) -> tuple[Any, Any, torch.Tensor, Any]:
    """Build the MoE layer, load the case's weights, run forward with gradients on.

    Returns (y, aux_loss, router_grad, dense), where router_grad is the gradient of
    sum(y * case["probe"]) + aux_loss with respect to ``router.weight``: zero
    when the routing weights or the auxiliary loss are cut off from the router;
    and ``dense`` lists the experts that ran on more tokens than were routed to
    them (the top k of the router's logits, k from the case, 2 by default): empty
    for sparse dispatch, every expert for a layer that runs each expert on all tokens.
    """
    module = obj(**case.get("init", {}))
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{type(module).__name__} is not a torch.nn.Module subclass")
    if case.get("dtype"):  # a dtype variant: the layer's weights in that dtype too
        module = module.to(getattr(torch, case["dtype"]))
    state = case.get("state")
    if state is not None:
        result = module.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise StateDictMismatch(result.missing_keys, result.unexpected_keys)
    module.eval()
    experts = getattr(module, "experts", None)
    experts = list(experts) if isinstance(experts, torch.nn.ModuleList) else []
    rows = [0] * len(experts)
    handles = [e.register_forward_pre_hook(_rows_counter(rows, i)) for i, e in enumerate(experts)]
    try:
        with torch.enable_grad():
            out = module(*case.get("args", []), **case.get("kwargs", {}))
    finally:
        for handle in handles:
            handle.remove()
    with torch.enable_grad():
        if not isinstance(out, tuple | list) or len(out) != 2:
            got = f"a {type(out).__name__}" + (
                f" of {len(out)}" if isinstance(out, tuple | list) else ""
            )
            raise TypeError(f"forward must return a tuple (y, aux_loss), got {got}")
        y, aux_loss = out
        router_weight = module.router.weight
        grad = _gradient([(y, case["probe"]), (aux_loss, None)], router_weight)
    plain = tuple(v.detach() if isinstance(v, torch.Tensor) else v for v in (y, aux_loss))
    return plain[0], plain[1], grad, _dense_experts(module, case, rows)


def _dense_experts(module: torch.nn.Module, case: Case, rows: list[int]) -> list[int]:
    """The experts that ran on more rows than the assignments routed to them."""
    if not rows:
        return []
    x = case["args"][0]
    weight = module.router.weight.detach()
    with torch.no_grad():
        logits = x.reshape(-1, x.shape[-1]).to(weight.dtype) @ weight.T  # (T, E)
    k = min(case.get("init", {}).get("k", 2), logits.shape[-1])
    routed = torch.bincount(torch.topk(logits, k, dim=-1).indices.flatten(), minlength=len(rows))
    return [i for i, n in enumerate(rows) if n > int(routed[i])]
