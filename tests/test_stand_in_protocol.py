"""The stand-in protocol on its own (in one process: the child's side asks the parent's side
directly): gradients flow through a stand-in, changes made in place come back, classes get
the reference's parameters, and the parent refuses what it was not offered."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autograder.core.stand_ins import (
    METHOD,
    OBJECT,
    RECIPE,
    answer_with,
    stand_in,
)


def _reference_softmax_weighted(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
    probs = (x * w).softmax(dim=-1)
    return probs, probs.argmax(dim=-1)


def test_gradients_flow_through_a_function_stand_in_as_through_the_reference() -> None:
    ask = answer_with({"f": _reference_softmax_weighted})
    f = stand_in("f", ask)
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    w = torch.randn(5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    probs, index = f(x, w)
    assert index.dtype == torch.int64 and not index.requires_grad
    (probs[:, 0] * torch.arange(3.0)).sum().backward()
    got = (x.grad.clone(), w.grad.clone())
    x.grad = w.grad = None
    probs, _ = _reference_softmax_weighted(x, w)
    (probs[:, 0] * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(got, (x.grad, w.grad))


def _halve_grads(parameters, factor: float = 0.5) -> float:
    for p in parameters:
        p.grad.mul_(factor)
    return factor


def test_what_the_reference_changes_in_place_comes_back_to_the_callers_objects() -> None:
    layer = nn.Linear(3, 2)
    layer(torch.ones(1, 3)).sum().backward()
    before = layer.weight.grad.clone()
    halve = stand_in("halve", answer_with({"halve": _halve_grads}))
    assert halve(layer.parameters()) == 0.5  # a one-shot iterator, as model.parameters()
    torch.testing.assert_close(layer.weight.grad, before * 0.5)


class _Scale(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.inner = nn.Linear(d, d)
        self.register_buffer("gain", torch.full((d,), 2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.gain


def test_a_class_stand_in_has_the_reference_state_and_trains_like_it() -> None:
    Scale = stand_in("Scale", answer_with({"Scale": _Scale}), kind="class")
    ours, theirs = Scale(4), _Scale(4)
    assert set(ours.state_dict()) == set(theirs.state_dict()) == {
        "inner.weight", "inner.bias", "gain"
    }  # fmt: skip
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(2))
    ours(x).pow(2).sum().backward()
    theirs(x).pow(2).sum().backward()
    torch.testing.assert_close(ours.inner.weight.grad, theirs.inner.weight.grad)


class _Counter:
    def __init__(self) -> None:
        self.items: list[int] = []

    @property
    def size(self) -> int:
        return len(self.items)

    def add(self, n: int) -> int:
        self.items.append(n)
        return self.size


def test_a_plain_class_stand_in_keeps_its_state_across_method_calls() -> None:
    Counter = stand_in("Counter", answer_with({"Counter": _Counter}), kind="object")
    counter = Counter()
    assert counter.add(3) == 1 and counter.add(4) == 2
    assert counter.items == [3, 4] and counter.size == 2


def test_the_parent_builds_only_what_it_offers() -> None:
    ask = answer_with({"f": _reference_softmax_weighted}, {"Counter": _Counter})
    forged_model = {RECIPE: {"kind": "os:system", "args": ["true"]}}
    with pytest.raises(KeyError):
        ask("f", [forged_model, torch.ones(1)], {})
    with pytest.raises(KeyError):
        ask("f", [{OBJECT: {"kind": "Popen", "state": {}}}, torch.ones(1)], {})
    with pytest.raises(KeyError):
        ask("g", [torch.ones(1), torch.ones(1)], {})
    counter = answer_with({"Counter": _Counter})
    with pytest.raises(ValueError, match="only public"):
        counter("Counter", [], {METHOD: {"state": {"items": []}, "name": "__init__"}})
