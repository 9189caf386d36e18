"""Grading spec of chapter 03 (mixture of experts): inputs, tolerances and the usual mistakes.

Each exercise names the function or class of solutions/moe.py it grades. The
inputs are drawn so that no two router logits of a token are close: which
experts a token picks never depends on rounding. ``load_balancing_loss`` and
``MoELayer`` are graded with their gradients too (drivers in
autograder/public/moe.py), because the router learns only through them.
Hidden from students: it imports the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import solutions.moe as ref
from autograder.core.cases import call_case, randn, random_state
from autograder.core.spec import (
    ALL_CASES,
    Case,
    ChapterSpec,
    Exercise,
    Mistake,
    Promise,
    Tolerance,
)

GAP = 1e-3  # the smallest gap allowed between a token's top k + 1 router logits


def well_separated(logits: torch.Tensor, k: int) -> bool:
    """No token has two of its k + 1 largest logits within GAP of each other."""
    top = torch.topk(logits, min(k + 1, logits.shape[-1]), dim=-1).values  # (T, k+1)
    return bool((top[:, :-1] - top[:, 1:]).min() > GAP) if top.shape[-1] > 1 else True


def router_logits(g: torch.Generator, T: int, E: int, k: int, skew: float = 0.0) -> torch.Tensor:
    """Random logits (T, E) without near-ties; ``skew`` favours the low-numbered experts."""
    for _ in range(100):
        logits = randn(g, T, E, scale=1.5) - skew * torch.arange(E, dtype=torch.float32) / E
        if well_separated(logits, k):
            return logits
    raise RuntimeError("could not draw well-separated router logits")


# ------------------------------------------------------------------------ top_k_routing


def _routing_variant(kind: str) -> Callable:
    def routing(router_logits, k):
        if kind == "switch":  # softmax over all experts, then the top k probabilities
            return torch.topk(F.softmax(router_logits, dim=-1), k, dim=-1)
        top, idx = torch.topk(router_logits, k, dim=-1, largest=kind != "smallest")
        if kind == "softmax_tokens":
            return F.softmax(top, dim=0), idx
        if kind == "raw_logits":
            return top, idx
        if kind == "uniform":
            return torch.full_like(top, 1.0 / k), idx
        if kind == "index_order":
            idx, perm = torch.sort(idx, dim=-1)
            return F.softmax(top, dim=-1).gather(-1, perm), idx
        return F.softmax(top, dim=-1), idx

    return routing


def _routing_cases(g: torch.Generator) -> list[Case]:
    return [
        call_case("8 experts, k=2", router_logits(g, 10, 8, 2), 2),
        call_case("4 experts, k=1", router_logits(g, 7, 4, 1), 1),
        call_case("6 experts, k=3", router_logits(g, 9, 6, 3), k=3),
        call_case("k = E = 4", router_logits(g, 6, 4, 4), 4),
    ]


TOP_K = Exercise(
    name="top_k_routing",
    points=2,
    summary="the k largest router logits, softmax over those k",
    make_cases=_routing_cases,
    reference=lambda: ref.top_k_routing,
    output_names=("weights", "expert_indices"),
    tolerance=Tolerance(atol=1e-6, rtol=1e-5),
    mistakes=(
        Mistake(
            "switch_softmax_first",
            "your weights match a softmax over all E experts followed by the top k "
            "probabilities, left as they are. That is the Switch Transformer / GShard recipe, "
            "a real design, but this exercise follows Mixtral: take the top k logits first, "
            "then a softmax over just those k, so each token's k weights sum to 1.",
            _routing_variant("switch"),
        ),
        Mistake(
            "softmax_over_tokens",
            "your weights match a softmax over the tokens (dim=0): the softmax is per token, "
            "over its k selected logits (dim=-1).",
            _routing_variant("softmax_tokens"),
        ),
        Mistake(
            "raw_logits",
            "your weights are the selected logits themselves: turn them into weights with a "
            "softmax over the k selected logits.",
            _routing_variant("raw_logits"),
        ),
        Mistake(
            "smallest",
            "your answer picks the k smallest logits: the router sends a token to the experts "
            "with the LARGEST logits (torch.topk's default, largest=True).",
            _routing_variant("smallest"),
        ),
        Mistake(
            "uniform",
            "your weights are all 1/k: they must depend on the logits, a softmax over the k "
            "selected ones.",
            _routing_variant("uniform"),
        ),
        Mistake(
            "index_order",
            "your answer has each token's experts sorted by expert number: keep torch.topk's "
            "order, the highest logit first (slot 0 is the token's favourite expert).",
            _routing_variant("index_order"),
        ),
    ),
    promises=(
        Promise(
            "Top-k routing: each token picks its k highest-scoring experts (Mixtral).", ALL_CASES
        ),
        Promise(
            "The k selected logits are turned into weights by a softmax over those k only, so "
            "each token's weights sum to 1.",
            ALL_CASES,
        ),
        Promise(
            "(Switch and GShard instead take the softmax over all E experts and keep the top k "
            "probabilities as they are.)",
            why="a remark on other designs; the cases with k < E tell the two apart",
        ),
        Promise(
            "router_logits: shape (T, E), the router's score of each expert for each token.",
            ALL_CASES,
        ),
        Promise(
            "k: the number of experts per token, 1 <= k <= E.",
            ("4 experts, k=1", "8 experts, k=2", "6 experts, k=3", "k = E = 4"),
        ),
        Promise(
            "weights: shape (T, k), same dtype as router_logits; each row sums to 1.", ALL_CASES
        ),
        Promise(
            "expert_indices: shape (T, k), int64; the chosen experts of each token, highest "
            "logit first (the order of ``torch.topk``).",
            ALL_CASES,
        ),
        Promise(
            "Ties are broken as ``torch.topk`` breaks them, which PyTorch does not specify.",
            why="promises no tie order: the cases draw logits with no two of a token's top "
            "k + 1 within GAP, so any tie-breaking passes",
        ),
    ),
)

# ------------------------------------------------------------------- load_balancing_loss


def _lb_variant(kind: str) -> Callable:
    def loss(router_logits, expert_indices, num_experts):
        expert_indices = expert_indices.long()
        T, k = expert_indices.shape
        idx = expert_indices[:, :1] if kind == "top1_only" else expert_indices
        counts = F.one_hot(idx.reshape(-1).long(), num_experts).sum(0).to(router_logits.dtype)
        n = T if kind == "empty_nan" else max(T, 1)  # 0 / 0 = NaN for an empty input
        f = counts / (n * k if kind == "per_assignment" else n)
        probs = F.softmax(router_logits, dim=0 if kind == "probs_over_tokens" else -1)
        if kind == "probs_detached":
            probs = probs.detach()
        if kind == "probs_from_weights":  # the top-k weights scattered back into E slots
            top = router_logits.gather(-1, expert_indices)
            probs = torch.zeros_like(router_logits).scatter(-1, expert_indices, top.softmax(-1))
        P = probs.sum(0) / n
        scale = 1 if kind == "no_E" else num_experts
        if kind == "f_squared":
            return scale * (f * f).sum()
        return scale * (f * P).sum()

    return loss


def _lb_cases(g: torch.Generator) -> list[Case]:
    cases = []
    for label, T, E, k, skew in (
        ("8 experts, k=2", 16, 8, 2, 0.0),
        ("4 experts, k=1, skewed router", 12, 4, 1, 3.0),
        ("6 experts, k=3, skewed router", 10, 6, 3, 2.0),
    ):
        logits = router_logits(g, T, E, k, skew)
        cases.append(call_case(label, logits, torch.topk(logits, k, dim=-1).indices, E))
    # Indices that are not the top k of these logits (e.g. a router trained elsewhere).
    logits = router_logits(g, 9, 5, 2)
    others = torch.stack([torch.randperm(5, generator=g)[:2] for _ in range(9)])
    cases.append(call_case("5 experts, k=2, indices not from these logits", logits, others, 5))
    # Equal logits and every expert used equally often: the loss is exactly k.
    even = torch.tensor([[0, 1], [2, 3], [1, 0], [3, 2], [0, 2], [1, 3], [2, 0], [3, 1]])
    cases.append(call_case("uniform routing gives k = 2", torch.zeros(8, 4), even, 4))
    # Every token on expert 0, with a router sure of it: the loss is close to E.
    sure = randn(g, 10, 5) + 8.0 * (torch.arange(5) == 0)
    cases.append(
        call_case("collapsed onto expert 0", sure, torch.zeros(10, 1, dtype=torch.long), 5)
    )
    cases.append(
        call_case("empty input (T = 0)", torch.zeros(0, 4), torch.zeros(0, 2, dtype=torch.long), 4)
    )
    logits = router_logits(g, 7, 4, 2)
    int32 = torch.topk(logits, 2, dim=-1).indices.to(torch.int32)
    cases.append(call_case("int32 indices", logits, int32, 4))
    return cases


LB = Exercise(
    name="load_balancing_loss",
    points=2,
    summary="E · Σ f_i P_i, and its gradient with respect to the router logits",
    make_cases=_lb_cases,
    reference=lambda: ref.load_balancing_loss,
    driver="autograder.public.moe:loss_and_logit_grad",
    output_names=("loss", "gradient wrt router_logits"),
    tolerance=Tolerance(atol=1e-6, rtol=1e-5),
    dtypes=("float64",),
    mistakes=(
        Mistake(
            "per_assignment",
            "your loss matches f_i divided by T·k (the share of all assignments): here f_i is "
            "the number of (token, slot) assignments to expert i divided by T, the number of "
            "tokens, so the f_i sum to k.",
            _lb_variant("per_assignment"),
        ),
        Mistake(
            "no_E",
            "your loss matches Σ f_i P_i without the factor E (num_experts) in front: the "
            "factor makes uniform routing cost the same whatever the number of experts.",
            _lb_variant("no_E"),
        ),
        Mistake(
            "top1_only",
            "your loss matches counting only each token's first choice (expert_indices[:, 0]): "
            "f_i counts every (token, slot) assignment, all k slots.",
            _lb_variant("top1_only"),
        ),
        Mistake(
            "probs_over_tokens",
            "your loss matches a softmax over the tokens (dim=0): P_i is the mean over tokens "
            "of each token's softmax over the E experts (dim=-1).",
            _lb_variant("probs_over_tokens"),
        ),
        Mistake(
            "probs_from_weights",
            "your loss matches P_i computed from the k renormalised routing weights: P_i is "
            "the mean of the FULL softmax over all E router logits, so that every expert, "
            "chosen or not, gets a gradient.",
            _lb_variant("probs_from_weights"),
        ),
        Mistake(
            "probs_detached",
            "your loss has the right value but no gradient reaches the router logits: f_i is a "
            "count and carries no gradient, so P_i must be computed from router_logits with "
            "differentiable operations (no .detach(), .item(), torch.no_grad or numpy).",
            _lb_variant("probs_detached"),
        ),
        Mistake(
            "f_squared",
            "your loss matches E · Σ f_i²: the second factor is P_i, the mean router "
            "probability, which (unlike the count f_i) carries the gradient.",
            _lb_variant("f_squared"),
        ),
        Mistake(
            "empty_nan",
            "your loss is NaN for an empty input (T = 0 tokens): a mean over no tokens is 0/0. "
            "The docstring promises 0: divide the sums by max(T, 1).",
            _lb_variant("empty_nan"),
        ),
    ),
    promises=(
        Promise(
            "The auxiliary load-balancing loss of the Switch Transformer: E * sum_i f_i * P_i.",
            ALL_CASES,
        ),
        Promise(
            "f_i = (number of (token, slot) assignments to expert i) / T, the load of expert i "
            "(sum_i f_i = k);",
            ALL_CASES,
        ),
        Promise("P_i = the mean over the T tokens of softmax(router_logits)[:, i]", ALL_CASES),
        Promise("f_i carries no gradient (it counts); the gradient flows through P_i.", ALL_CASES),
        Promise(
            "Perfectly uniform routing gives k (1 for k = 1);",
            ("uniform routing gives k = 2",),
        ),
        Promise(
            "the loss rises towards E as the routing collapses onto few experts.",
            ("collapsed onto expert 0", "4 experts, k=1, skewed router"),
        ),
        Promise("Empty input (T = 0) gives 0.", ("empty input (T = 0)",)),
        Promise("router_logits: shape (T, E), the router's logits.", ALL_CASES),
        Promise(
            "expert_indices: shape (T, k), integer; the experts each token was sent to.",
            ("8 experts, k=2", "5 experts, k=2, indices not from these logits", "int32 indices"),
        ),
        Promise("num_experts: E.", ALL_CASES),
        Promise("A scalar tensor (shape ()), same dtype as router_logits.", ALL_CASES),
    ),
)

# ---------------------------------------------------------------------- expert_capacity


def _capacity_variant(kind: str) -> Callable:
    def capacity(num_tokens, num_experts, capacity_factor, k=1):
        kk = 1 if kind == "no_k" else k
        value = kk * num_tokens * capacity_factor / num_experts
        if kind == "k_divides":
            value = num_tokens * capacity_factor / (num_experts * k)
        if kind == "floor":
            return math.floor(value)
        return math.ceil(value)

    return capacity


# Capacity factors are dyadic (exact in binary) so that every way of ordering the
# product gives the same float and the ceiling never depends on rounding.
CAPACITY_CASES = (
    (12, 8, 1.25, 2),  # 3.75
    (10, 4, 1.0, 1),  # 2.5
    (100, 8, 0.5, 2),  # 12.5
    (7, 3, 1.5, 1),  # 3.5
    (64, 8, 1.0, 2),  # 16, exact
    (30, 8, 1.25, 2),  # 9.375
    (0, 8, 1.25, 2),  # 0: no tokens, no room needed
    (10, 1, 1.5, 1),  # 15: a single expert
)

CAPACITY = Exercise(
    name="expert_capacity",
    points=1,
    summary="ceil(k · T · capacity_factor / E)",
    make_cases=lambda g: [
        call_case(f"T={t}, E={e}, factor={c}, k={k}", t, e, c, k=k)
        if k != 1
        else call_case(f"T={t}, E={e}, factor={c}, k=1 (default)", t, e, c)
        for t, e, c, k in CAPACITY_CASES
    ],
    reference=lambda: ref.expert_capacity,
    tolerance=Tolerance(0.0, 0.0),
    mistakes=(
        Mistake(
            "floor",
            "your capacity matches rounding down (math.floor, int(), or round() where it rounds "
            "down): round UP (math.ceil), so that every expert has at least "
            "capacity_factor times its even share of room.",
            _capacity_variant("floor"),
        ),
        Mistake(
            "no_k",
            "your capacity matches leaving out k: with k slots per token there are k·T "
            "assignments to share among the E experts, so multiply by k.",
            _capacity_variant("no_k"),
        ),
        Mistake(
            "k_divides",
            "your capacity matches dividing by k: the k·T assignments are shared among the E "
            "experts, ceil(k · T · capacity_factor / E).",
            _capacity_variant("k_divides"),
        ),
        Mistake(
            "at_least_one",
            "your capacity is 1 for T = 0 tokens: ceil(k · 0 · capacity_factor / E) = 0, "
            "do not raise it to a minimum of 1.",
            lambda t, e, c, k=1: max(1, math.ceil(k * t * c / e)),
        ),
    ),
    promises=(
        Promise(
            "How many (token, slot) assignments each expert accepts: ceil(k * T * factor / E).",
            ALL_CASES,
        ),
        Promise(
            "With T tokens and k slots each there are k * T assignments; spread evenly, each of "
            "the E experts gets k * T / E.",
            ALL_CASES,
        ),
        Promise("The capacity factor leaves head room for uneven routing", ALL_CASES),
        Promise(
            "Computed as ``math.ceil(k * num_tokens * capacity_factor / num_experts)``.",
            ALL_CASES,
        ),
        Promise(
            "num_tokens: T >= 0.", ("T=0, E=8, factor=1.25, k=2", "T=12, E=8, factor=1.25, k=2")
        ),
        Promise(
            "num_experts: E >= 1.",
            ("T=10, E=1, factor=1.5, k=1 (default)", "T=64, E=8, factor=1.0, k=2"),
        ),
        Promise(
            "capacity_factor: > 0.",
            ("T=100, E=8, factor=0.5, k=2", "T=12, E=8, factor=1.25, k=2"),
        ),
        Promise(
            "k: experts per token, >= 1.",
            ("T=10, E=4, factor=1.0, k=1 (default)", "T=12, E=8, factor=1.25, k=2"),
        ),
        Promise("The capacity, a Python int.", ALL_CASES),
    ),
)

# ---------------------------------------------------------------------------- MoELayer


class _WrongMoE(ref.MoELayer):
    """Reference weights, a wrong forward (dense, for clarity): one flag per usual mistake."""

    routing = "mixtral"  # "mixtral" or "switch" (softmax over all experts before the top k)
    weighted = True
    detach_weights = False
    priority = "token"  # "token", "score", "slot" (all first choices first), "reverse"
    dense = False  # run every expert on every token (else only on the tokens routed to it)
    capacity_k = True
    renormalise = False
    zero_aux = False

    def forward(self, x):
        d = x.shape[-1]
        tokens = x.reshape(-1, d)
        T, E, k = tokens.shape[0], self.num_experts, self.k
        logits = self.router(tokens)
        if self.routing == "switch":
            w, idx = torch.topk(F.softmax(logits, dim=-1), k, dim=-1)
        else:
            w, idx = ref.top_k_routing(logits, k)
        if self.detach_weights:
            w = w.detach()
        keep = torch.ones(T, k, dtype=torch.bool)
        if self.capacity_factor is not None:
            cap = ref.expert_capacity(T, E, self.capacity_factor, k if self.capacity_k else 1)
            a = torch.arange(T * k)
            key = {
                "token": a,
                "reverse": -a,
                "slot": (a % k) * T + a // k,
                "score": -w.detach().reshape(-1),
            }[self.priority]
            order = torch.argsort(key, stable=True)
            onehot = F.one_hot(idx.reshape(-1)[order], E)  # (T*k, E) in priority order
            position = (onehot.cumsum(0) * onehot).sum(-1) - 1
            kept = torch.empty(T * k, dtype=torch.bool)
            kept[order] = position < cap
            keep = kept.reshape(T, k)
        aux = ref.load_balancing_loss(logits, idx, E)
        if self.zero_aux:
            aux = torch.zeros((), dtype=x.dtype)
        w = w * keep
        if self.renormalise:
            w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
        if not self.weighted:
            w = keep.to(w.dtype)
        if self.dense:
            every = torch.stack([expert(tokens) for expert in self.experts], dim=1)  # (T, E, d)
        else:
            every = tokens.new_zeros(T, E, d)
            for e, expert in enumerate(self.experts):
                rows = (idx == e).any(-1)  # the tokens routed to expert e
                every[rows, e] = expert(tokens[rows])
        chosen = every.gather(1, idx[..., None].expand(T, k, d))  # (T, k, d)
        y = (w[..., None] * chosen).sum(1)
        return y.reshape(x.shape), aux


def _wrong_moe(**flags: Any) -> type:
    return type("WrongMoE", (_WrongMoE,), flags)


def _moe_case(
    label: str, g: torch.Generator, init: dict[str, Any], shape: tuple[int, ...], skew: float = 0.0
) -> Case:
    """A case whose router logits have no near-ties; ``skew`` loads the first experts.

    With a capacity, at least one expert overflows, so that the order of dropping shows.
    """
    layer = ref.MoELayer(**init)
    E, k, factor = init["num_experts"], init.get("k", 2), init.get("capacity_factor")
    for _ in range(100):
        state = random_state(layer, g)
        state["router.weight"] = state["router.weight"] * 2.0
        x = randn(g, *shape)
        if skew:
            x = x + skew * state["router.weight"][0] / state["router.weight"][0].norm()
        logits = x.reshape(-1, shape[-1]) @ state["router.weight"].T
        if not well_separated(logits, k):
            continue
        counts = torch.bincount(torch.topk(logits, k).indices.flatten(), minlength=E)
        T = logits.shape[0]
        if factor is None or counts.max() > ref.expert_capacity(T, E, factor, k):
            break
    else:
        raise RuntimeError("could not draw well-separated routing")
    return {
        "label": label,
        "init": init,
        "state": state,
        "args": [x],
        "kwargs": {},
        "probe": randn(g, *shape),
    }


def _moe_cases(g: torch.Generator) -> list[Case]:
    return [
        _moe_case(
            "no capacity, (B, L, d) input", g, dict(d_model=8, d_ff=16, num_experts=4), (2, 5, 8)
        ),
        _moe_case(
            "no capacity, k=1, (T, d) input",
            g,
            dict(d_model=8, d_ff=12, num_experts=6, k=1),
            (12, 8),
        ),
        _moe_case(
            "capacity_factor=1.0, k=2, router favouring expert 0",
            g,
            dict(d_model=8, d_ff=16, num_experts=4, k=2, capacity_factor=1.0),
            (2, 12, 8),
            skew=1.5,
        ),
        _moe_case(
            "capacity_factor=0.5, k=2",
            g,
            dict(d_model=8, d_ff=16, num_experts=4, k=2, capacity_factor=0.5),
            (20, 8),
        ),
        _moe_case(
            "capacity_factor=1.25, k=1, router favouring expert 0",
            g,
            dict(d_model=8, d_ff=16, num_experts=4, k=1, capacity_factor=1.25),
            (2, 10, 8),
            skew=1.0,
        ),
    ]


MOE = Exercise(
    name="MoELayer",
    points=4,
    summary="route, run each expert on its own tokens, combine; drop beyond the capacity",
    make_cases=_moe_cases,
    reference=lambda: ref.MoELayer,
    driver="autograder.public.moe:moe_forward_and_router_grad",
    output_names=("y", "aux_loss", "router_grad", "experts run on tokens not routed to them"),
    tolerance=Tolerance(atol=2e-5, rtol=1e-4),
    dtypes=("float64",),
    depends_on=("top_k_routing", "load_balancing_loss", "expert_capacity"),
    mistakes=(
        Mistake(
            "unweighted",
            "your output matches the plain sum of the chosen experts' outputs: weight each "
            "expert's output by the token's routing weight for that expert (this is also the "
            "only way the router gets a gradient from the task loss).",
            _wrong_moe(weighted=False),
        ),
        Mistake(
            "switch_routing",
            "your output matches routing weights from a softmax over all E experts (Switch / "
            "GShard style): this layer uses top_k_routing, a softmax over the k selected logits.",
            _wrong_moe(routing="switch"),
        ),
        Mistake(
            "weights_detached",
            "your y and aux_loss are right but the gradient of y does not reach the router: "
            "multiply the expert outputs by the routing weights as tensors that keep their "
            "autograd history (no .detach(), .item(), torch.no_grad or numpy on the way).",
            _wrong_moe(detach_weights=True),
        ),
        Mistake(
            "capacity_without_k",
            "your output matches a capacity computed without k, "
            "expert_capacity(T, E, capacity_factor): with k slots per token pass k too, "
            "expert_capacity(T, E, capacity_factor, k).",
            _wrong_moe(capacity_k=False),
        ),
        Mistake(
            "score_priority",
            "your output matches keeping, in each expert, the assignments with the highest "
            "routing weights (a priority by score, as in batch-prioritised routing): this "
            "layer keeps the first assignments in token order, token 0 first.",
            _wrong_moe(priority="score"),
        ),
        Mistake(
            "slot_priority",
            "your output matches serving every token's first choice before any second choice "
            "(GShard's order): this layer keeps assignments in token order, token 0's slots "
            "first, then token 1's, whatever the slot.",
            _wrong_moe(priority="slot"),
        ),
        Mistake(
            "last_tokens_kept",
            "your output matches keeping the LAST assignments of each expert: drop in token "
            "order, i.e. keep the first C tokens (smallest index) routed to each expert.",
            _wrong_moe(priority="reverse"),
        ),
        Mistake(
            "renormalised_after_drop",
            "your output matches renormalising a token's remaining weights after a drop: "
            "dropped assignments contribute zero and the other weights stay as they are.",
            _wrong_moe(renormalise=True),
        ),
        Mistake(
            "no_aux_loss",
            "your aux_loss is zero: return load_balancing_loss(router_logits, expert_indices, "
            "num_experts) of this forward's routing.",
            _wrong_moe(zero_aux=True),
        ),
        Mistake(
            "dense_dispatch",
            "your output is right but every expert ran on all the tokens: that is the dense "
            "computation the layer exists to avoid. Gather each expert's own tokens (those "
            "routed to it), run the expert on just those rows, and scatter the weighted "
            "results back (index_add).",
            _wrong_moe(dense=True),
        ),
    ),
    promises=(
        Promise("A sparse mixture-of-experts feed-forward layer with top-k routing.", ALL_CASES),
        Promise("router: ``nn.Linear(d_model, num_experts, bias=False)``, the gate.", ALL_CASES),
        Promise(
            "experts: ``nn.ModuleList`` of num_experts ``FeedForward(d_model, d_ff)``", ALL_CASES
        ),
        Promise(
            "num_experts, k, capacity_factor: as given.",
            why="attributes a student may read; no output depends on their names",
        ),
        Promise("d_model: model width.", ALL_CASES),
        Promise("d_ff: hidden width of each expert.", ALL_CASES),
        Promise("num_experts: E >= 1.", ALL_CASES),
        Promise(
            "k: experts per token, 1 <= k <= E.",
            (
                "no capacity, (B, L, d) input",
                "no capacity, k=1, (T, d) input",
                "capacity_factor=0.5, k=2",
            ),
        ),
        Promise(
            "capacity_factor: None (no token is ever dropped) or > 0: each expert then accepts "
            "at most ``expert_capacity(T, E, capacity_factor, k)`` assignments per forward call.",
            (
                "no capacity, (B, L, d) input",
                "capacity_factor=1.0, k=2, router favouring expert 0",
                "capacity_factor=0.5, k=2",
                "capacity_factor=1.25, k=1, router favouring expert 0",
            ),
        ),
        Promise(
            "Route every token to k experts; each expert runs only on its own tokens.", ALL_CASES
        ),
        Promise(
            "The leading dimensions of x are flattened into T tokens, which form one pool: "
            "routing, capacity and the auxiliary loss are over all T together.",
            (
                "no capacity, (B, L, d) input",
                "capacity_factor=1.0, k=2, router favouring expert 0",
                "capacity_factor=1.25, k=1, router favouring expert 0",
            ),
        ),
        Promise(
            "Token t (in row-major order of the leading dimensions) is routed by "
            "``top_k_routing(router(x_t), k)`` and its output is y_t = sum_j weights[t, j] * "
            "experts[expert_indices[t, j]](x_t), which is the dense weighted sum when nothing "
            "is dropped.",
            ALL_CASES,
        ),
        Promise(
            "With a capacity C, each expert keeps the first C assignments in token order "
            "(smallest t first) and the rest are dropped: they contribute zero, the remaining "
            "weights are not renormalised (a token whose every slot is dropped gets y_t = 0, "
            "the residual connection around the layer carries it on).",
            (
                "capacity_factor=1.0, k=2, router favouring expert 0",
                "capacity_factor=0.5, k=2",
                "capacity_factor=1.25, k=1, router favouring expert 0",
            ),
        ),
        Promise(
            "x: shape (..., d_model).",
            ("no capacity, (B, L, d) input", "no capacity, k=1, (T, d) input"),
        ),
        Promise("y: shape (..., d_model), same dtype as x.", ALL_CASES),
        Promise(
            "aux_loss: a scalar tensor, ``load_balancing_loss(router_logits, expert_indices, "
            "E)`` over all T tokens, computed from the routing before any drop.",
            ALL_CASES,
        ),
        Promise(
            "It is not scaled: multiply it by a small coefficient (e.g. 0.01) and add it to the "
            "training loss.",
            ALL_CASES,
        ),
    ),
)

SPEC = ChapterSpec(
    number="03",
    slug="moe",
    title="Mixture of experts",
    exercises=(TOP_K, LB, CAPACITY, MOE),
)
