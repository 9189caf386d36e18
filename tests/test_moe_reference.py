"""The chapter 03 reference (solutions/moe.py) is correct.

Every test names its independent oracle in its docstring. PyTorch has no
mixture-of-experts routine, so the oracles are slow, obviously-correct Python
loops written here (one token at a time, one expert call per token and slot),
torch.autograd.gradcheck, and the properties the chapter states.

Device coverage: top_k_routing, load_balancing_loss, expert_capacity (pure Python)
and the MoELayer constructor run on ``meta`` tensors. MoELayer.forward is the one
exception: the sparse dispatch gives each expert as many rows as tokens were routed
to it, a number read from the router's values (``counts.tolist()`` for
``torch.split``, boolean indexing for the capacity), which meta tensors do not have.
"""

import copy
import inspect
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from solutions import moe
from solutions.attention import FeedForward
from solutions.moe import MoELayer, expert_capacity, load_balancing_loss, top_k_routing

PUBLIC_NAMES = ["top_k_routing", "load_balancing_loss", "expert_capacity", "MoELayer"]
META = torch.device("meta")


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def seeded_layer(seed: int = 0, router_scale: float = 1.0, **init) -> MoELayer:
    """A MoELayer with seeded weights (router scaled to make the routing decisive)."""
    init = {"d_model": 8, "d_ff": 16, "num_experts": 4, **init}
    torch.manual_seed(seed)
    layer = MoELayer(**init)
    with torch.no_grad():
        layer.router.weight.mul_(router_scale)
    return layer


# --------------------------------------------------------------------------- loop oracles


def routing_loop(logits: torch.Tensor, k: int) -> tuple[list[list[float]], list[list[int]]]:
    """Per token: sort the experts by logit in Python, keep k, softmax with math.exp."""
    weights, indices = [], []
    for row in logits.tolist():
        best = sorted(range(len(row)), key=lambda e: -row[e])[:k]
        exps = [math.exp(row[e] - row[best[0]]) for e in best]
        weights.append([v / sum(exps) for v in exps])
        indices.append(best)
    return weights, indices


def lb_loss_loop(logits: torch.Tensor, indices: torch.Tensor, E: int) -> float:
    """E * sum_i f_i * P_i with counts and softmaxes written out one token at a time."""
    T = logits.shape[0]
    counts = [0] * E
    for row in indices.tolist():
        for e in row:
            counts[e] += 1
    mean_p = [0.0] * E
    for row in logits.tolist():
        z = sum(math.exp(v) for v in row)
        for e, v in enumerate(row):
            mean_p[e] += math.exp(v) / z / T
    return E * sum(counts[e] / T * mean_p[e] for e in range(E))


def moe_loop(layer: MoELayer, x: torch.Tensor) -> tuple[torch.Tensor, list[list[bool]]]:
    """One token at a time in token order, each chosen expert called on that token alone;
    with a capacity, a per-expert counter keeps the first C assignments and drops the rest.
    Returns y (T, d) and, per token and slot, whether the assignment was kept."""
    tokens = x.reshape(-1, x.shape[-1])
    T, E, k = tokens.shape[0], layer.num_experts, layer.k
    capacity = None
    if layer.capacity_factor is not None:
        capacity = math.ceil(k * T * layer.capacity_factor / E)
    used = [0] * E
    rows, kept = [], []
    for t in range(T):
        logits = layer.router(tokens[t])  # (E,)
        top = torch.topk(logits, k)
        w = torch.softmax(top.values, dim=0)
        out = torch.zeros_like(tokens[t])
        kept_t = []
        for j, e in enumerate(top.indices.tolist()):
            keep = capacity is None or used[e] < capacity
            used[e] += 1
            kept_t.append(keep)
            if keep:
                out = out + w[j] * layer.experts[e](tokens[t])
        rows.append(out)
        kept.append(kept_t)
    return torch.stack(rows), kept


# --------------------------------------------------------------------------- top_k_routing


@pytest.mark.parametrize("T,E,k", [(10, 8, 2), (7, 4, 1), (5, 6, 6), (1, 3, 2)])
def test_top_k_routing_matches_python_loop(T, E, k):
    """Oracle: routing_loop (Python sort per token, math.exp softmax)."""
    logits = randn(T, E, seed=T + E + k) * 2
    weights, indices = top_k_routing(logits, k)
    w_loop, i_loop = routing_loop(logits, k)
    assert weights.shape == indices.shape == (T, k)
    assert weights.dtype == torch.float32 and indices.dtype == torch.int64
    assert indices.tolist() == i_loop
    torch.testing.assert_close(weights, torch.tensor(w_loop))


def test_top_k_routing_equals_renormalised_full_softmax():
    """Oracle: algebra. The softmax over the k selected logits equals the full softmax's
    top k probabilities divided by their sum; without the division (Switch's recipe) the
    weights sum to less than 1."""
    logits = randn(12, 8, seed=3)
    weights, indices = top_k_routing(logits, 3)
    probs = torch.softmax(logits, dim=-1).gather(-1, indices)
    torch.testing.assert_close(weights, probs / probs.sum(-1, keepdim=True))
    torch.testing.assert_close(weights.sum(-1), torch.ones(12))
    assert (probs.sum(-1) < 1).all()


def test_top_k_routing_with_k_equal_E_is_a_sorted_softmax():
    """Oracle: torch.sort + torch.softmax: with k = E every expert is chosen."""
    logits = randn(6, 5, seed=4)
    weights, indices = top_k_routing(logits, 5)
    values, order = torch.sort(logits, dim=-1, descending=True)
    assert torch.equal(indices, order)
    torch.testing.assert_close(weights, torch.softmax(values, dim=-1))


# --------------------------------------------------------------------------- load_balancing_loss


@pytest.mark.parametrize("T,E,k", [(16, 8, 2), (9, 4, 1), (10, 6, 3)])
def test_load_balancing_loss_matches_python_loop(T, E, k):
    """Oracle: lb_loss_loop, counts and softmax means written out token by token; also
    with indices that are not the top k of the logits."""
    logits = randn(T, E, seed=T * E) * 1.5
    _, indices = top_k_routing(logits, k)
    loss = load_balancing_loss(logits, indices, E)
    assert loss.shape == () and loss.dtype == torch.float32
    assert loss.item() == pytest.approx(lb_loss_loop(logits, indices, E), rel=1e-5)
    g = torch.Generator().manual_seed(T)
    others = torch.stack([torch.randperm(E, generator=g)[:k] for _ in range(T)])
    assert load_balancing_loss(logits, others, E).item() == pytest.approx(
        lb_loss_loop(logits, others, E), rel=1e-5
    )


@pytest.mark.parametrize("E,k", [(4, 1), (8, 1), (8, 2), (6, 3)])
def test_load_balancing_loss_is_k_for_perfectly_uniform_routing(E, k):
    """Oracle: the formula by hand. Uniform routing (equal logits, every expert chosen
    equally often) gives f_i = k/E and P_i = 1/E, so E * sum_i f_i P_i = k: exactly 1 for
    Switch's top-1 routing, 1 per slot in general."""
    T = 4 * E
    logits = torch.zeros(T, E)
    indices = (torch.arange(T * k).reshape(T, k)) % E  # every expert k*T/E times
    assert load_balancing_loss(logits, indices, E).item() == pytest.approx(float(k))


@pytest.mark.parametrize("k", [1, 2])
def test_load_balancing_loss_grows_as_routing_collapses(k):
    """Oracle: the stated property. Logits favouring experts 0..k-1 more and more strongly
    give a loss that rises strictly from k (uniform) towards E (total collapse)."""
    E, T = 8, 64
    noise = randn(T, E, seed=5) * 0.01
    bias = torch.zeros(E)
    bias[:k] = 1.0
    losses = []
    for strength in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0):
        logits = noise + strength * bias
        if strength == 0.0:
            indices = (torch.arange(T * k).reshape(T, k)) % E  # spread evenly
        else:
            indices = torch.topk(logits, k, dim=-1).indices
        losses.append(load_balancing_loss(logits, indices, E).item())
    assert losses[0] == pytest.approx(k, abs=1e-2)
    assert all(a < b for a, b in zip(losses, losses[1:], strict=False)), losses
    assert losses[-1] == pytest.approx(E, rel=1e-3)


def test_load_balancing_loss_gradient_matches_finite_differences():
    """Oracle: torch.autograd.gradcheck (central finite differences) in float64, with the
    indices held fixed: the gradient flows through P_i only."""
    logits = randn(6, 4, seed=6, dtype=torch.float64).requires_grad_(True)
    indices = torch.topk(logits.detach(), 2, dim=-1).indices
    assert torch.autograd.gradcheck(lambda z: load_balancing_loss(z, indices, 4), (logits,))
    (grad,) = torch.autograd.grad(load_balancing_loss(logits, indices, 4), logits)
    assert grad.abs().sum() > 0


def test_load_balancing_loss_of_no_tokens_is_zero():
    """Oracle: the documented choice for T = 0 (no NaN from 0/0)."""
    loss = load_balancing_loss(torch.zeros(0, 4), torch.zeros(0, 2, dtype=torch.long), 4)
    assert loss.item() == 0.0


# --------------------------------------------------------------------------- expert_capacity


@pytest.mark.parametrize(
    "T,E,factor,k",
    [(12, 8, 1.25, 2), (10, 4, 1.0, 1), (100, 8, 0.5, 2), (7, 3, 1.5, 1), (0, 4, 2.0, 2)],
)
def test_expert_capacity_is_the_exact_ceiling(T, E, factor, k):
    """Oracle: exact rational arithmetic (fractions.Fraction) and an integer ceiling."""
    from fractions import Fraction

    exact = Fraction(k * T) * Fraction(factor) / E
    expected = -((-exact.numerator) // exact.denominator)
    capacity = expert_capacity(T, E, factor, k)
    assert capacity == expected and type(capacity) is int


def test_expert_capacity_default_k_is_one():
    """Oracle: the signature's default, k = 1 (Switch)."""
    assert expert_capacity(10, 4, 1.0) == expert_capacity(10, 4, 1.0, k=1) == 3


# --------------------------------------------------------------------------- MoELayer


def test_moe_layer_has_the_contract_attributes():
    """Oracle: the contract (router: Linear without bias, experts: ModuleList of FeedForward)."""
    layer = MoELayer(12, 24, 5, k=2, capacity_factor=1.5)
    assert isinstance(layer.router, nn.Linear) and layer.router.bias is None
    assert (layer.router.in_features, layer.router.out_features) == (12, 5)
    assert isinstance(layer.experts, nn.ModuleList) and len(layer.experts) == 5
    assert all(isinstance(e, FeedForward) and e.fc1.out_features == 24 for e in layer.experts)
    assert (layer.num_experts, layer.k, layer.capacity_factor) == (5, 2, 1.5)
    assert "router.weight" in layer.state_dict() and "experts.4.fc2.bias" in layer.state_dict()


@pytest.mark.parametrize("k", [1, 2, 4])
def test_moe_layer_equals_dense_loop_without_capacity(k):
    """Oracle: moe_loop, the dense weighted sum computed one token at a time, and
    load_balancing_loss of the same routing for aux_loss."""
    layer = seeded_layer(seed=7, k=k)
    x = randn(3, 5, 8, seed=8)
    y, aux = layer(x)
    y_loop, kept = moe_loop(layer, x)
    assert y.shape == x.shape and all(all(row) for row in kept)
    torch.testing.assert_close(y.reshape(-1, 8), y_loop, atol=1e-6, rtol=1e-5)
    logits = layer.router(x.reshape(-1, 8))
    expected_aux = load_balancing_loss(logits, torch.topk(logits, k).indices, 4)
    torch.testing.assert_close(aux, expected_aux)


@pytest.mark.parametrize("factor,k", [(1.0, 2), (0.5, 2), (1.25, 1), (0.3, 3)])
def test_moe_layer_drops_in_token_order_with_a_capacity(factor, k):
    """Oracle: moe_loop, whose per-expert counters keep the first C assignments in token
    order; the router favours expert 0 so that it overflows."""
    layer = seeded_layer(seed=9, router_scale=3.0, k=k, capacity_factor=factor)
    x = randn(2, 12, 8, seed=10) + 0.5 * layer.router.weight[0].detach()
    y, _ = layer(x)
    y_loop, kept = moe_loop(layer, x)
    assert not all(all(row) for row in kept), "this case should drop something"
    torch.testing.assert_close(y.reshape(-1, 8), y_loop, atol=1e-6, rtol=1e-5)


def test_moe_layer_a_token_with_every_slot_dropped_gets_zero():
    """Oracle: the contract (dropped assignments contribute zero, no renormalisation):
    with k = 1 and a tiny capacity, every token after the first C of its expert is 0."""
    layer = seeded_layer(seed=11, k=1, capacity_factor=0.25)
    x = randn(16, 8, seed=12)
    y, _ = layer(x)
    _, kept = moe_loop(layer, x)
    dropped = torch.tensor([not row[0] for row in kept])
    assert dropped.any() and (y[dropped] == 0).all() and (y[~dropped] != 0).any(-1).all()


def test_moe_layer_runs_each_expert_only_on_its_own_tokens():
    """Oracle: forward hooks counting the rows each expert receives. Sparse dispatch means
    one call per expert per forward, with exactly the tokens routed to it (min(count, C)
    with a capacity): k*T rows in all, not E*T."""
    for factor in (None, 0.75):
        layer = seeded_layer(seed=13, num_experts=8, k=2, capacity_factor=factor)
        seen = []
        for e, expert in enumerate(layer.experts):
            expert.register_forward_hook(
                lambda m, inp, out, e=e, seen=seen: seen.append((e, inp[0].shape[0]))
            )
        x = randn(4, 10, 8, seed=14)
        layer(x)
        logits = layer.router(x.reshape(-1, 8))
        counts = torch.bincount(torch.topk(logits, 2).indices.flatten(), minlength=8)
        if factor is not None:
            counts = counts.clamp(max=expert_capacity(40, 8, factor, 2))
        assert sorted(e for e, _ in seen) == list(range(8))  # one call per expert
        assert [n for _, n in sorted(seen)] == counts.tolist()
        assert sum(n for _, n in seen) <= 2 * 40


def test_moe_layer_flattens_leading_dimensions_into_one_pool():
    """Oracle: the same layer on x.reshape(-1, d): routing, capacity and aux_loss are over
    all B*L tokens together, and y has x's shape."""
    layer = seeded_layer(seed=15, router_scale=2.0, capacity_factor=0.75)
    x = randn(2, 3, 4, 8, seed=16)
    y, aux = layer(x)
    y_flat, aux_flat = layer(x.reshape(-1, 8))
    assert y.shape == x.shape
    torch.testing.assert_close(y.reshape(-1, 8), y_flat, rtol=0, atol=0)
    torch.testing.assert_close(aux, aux_flat, rtol=0, atol=0)


def test_gradients_reach_the_router_and_the_chosen_experts_only():
    """Oracle: autograd through moe_loop (the dense loop), compared with the sparse layer's
    gradients: same router gradient, from the task loss and from aux_loss; an expert that
    no token chose gets a zero gradient (it is called on an empty batch, or not at all)."""
    layer = seeded_layer(seed=17, num_experts=6, k=2, router_scale=4.0)
    x = randn(10, 8, seed=18) + 2.0 * layer.router.weight[0].detach()
    probe = randn(10, 8, seed=19)
    y, aux = layer(x)
    ((y * probe).sum() + aux).backward()
    sparse = {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}
    layer.zero_grad()
    y_loop, _ = moe_loop(layer, x)
    logits = layer.router(x)
    aux_loop = load_balancing_loss(logits, torch.topk(logits, 2).indices, 6)
    ((y_loop * probe).sum() + aux_loop).backward()
    assert sparse["router.weight"].abs().sum() > 0
    torch.testing.assert_close(sparse["router.weight"], layer.router.weight.grad)
    chosen = set(torch.topk(logits, 2).indices.flatten().tolist())
    assert len(chosen) < 6, "this case should leave an expert unused"
    for e, expert in enumerate(layer.experts):
        grad = expert.fc1.weight.grad
        if e in chosen:
            torch.testing.assert_close(sparse[f"experts.{e}.fc1.weight"], grad)
        else:
            assert grad is None  # the loop never called it
            assert sparse.get(f"experts.{e}.fc1.weight", torch.zeros(1)).abs().sum() == 0


def test_aux_loss_gradient_alone_reaches_the_router():
    """Oracle: autograd: aux_loss by itself has a non-zero gradient on router.weight and
    none on the experts (it depends on the router's probabilities only)."""
    layer = seeded_layer(seed=20, router_scale=2.0)
    _, aux = layer(randn(12, 8, seed=21))
    aux.backward()
    assert layer.router.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in layer.experts.parameters())


def test_moe_layer_handles_an_empty_batch():
    """Oracle: shapes: zero tokens give an empty y and aux_loss 0."""
    y, aux = seeded_layer(capacity_factor=1.0)(torch.zeros(2, 0, 8))
    assert y.shape == (2, 0, 8) and aux.item() == 0.0


# --------------------------------------------------------------------------- devices and dtypes


def test_routing_and_loss_run_on_meta_device():
    """Oracle: the contract's shapes; meta tensors prove no tensor is created on the wrong
    device and no value is read. (MoELayer.forward is the documented exception.)"""
    logits = torch.empty(10, 8, device=META)
    weights, indices = top_k_routing(logits, 2)
    assert weights.shape == indices.shape == (10, 2) and weights.device.type == "meta"
    loss = load_balancing_loss(logits, indices, 8)
    assert loss.shape == () and loss.device.type == "meta"
    layer = MoELayer(16, 32, 4, k=2, capacity_factor=1.0).to(META)
    assert layer.router.weight.device.type == "meta"


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_routing_and_loss_keep_the_dtype(dtype):
    """Oracle: the float32 results on the same logits (bfloat16: logits rounded to
    bfloat16 first and well separated, so the choice of experts cannot change)."""
    logits = torch.arange(40, dtype=torch.float32).reshape(5, 8).remainder(7) * 0.5
    logits = logits + torch.arange(8) * 0.06  # distinct within each row, exact in bfloat16
    low = logits.to(dtype)
    weights, indices = top_k_routing(low, 3)
    w32, i32 = top_k_routing(low.float(), 3)
    assert weights.dtype == dtype and torch.equal(indices, i32)
    tol = {"atol": 1e-6, "rtol": 1e-6} if dtype == torch.float64 else {"atol": 1e-2, "rtol": 1e-2}
    torch.testing.assert_close(weights.float(), w32, **tol)
    loss = load_balancing_loss(low, indices, 8)
    assert loss.dtype == dtype
    torch.testing.assert_close(loss.float(), load_balancing_loss(low.float(), i32, 8), **tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("factor", [None, 0.75])
def test_moe_layer_in_float64_and_bfloat16(dtype, factor):
    """Oracle: moe_loop run in the same dtype (the routing of a low-precision router can
    differ from float32's, so the loop, which uses the same router, is the fair reference);
    float64 also matches float32 closely."""
    layer = seeded_layer(seed=22, router_scale=2.0, capacity_factor=factor)
    x = randn(3, 6, 8, seed=23)
    layer_low = copy.deepcopy(layer).to(dtype)
    y, aux = layer_low(x.to(dtype))
    assert y.dtype == dtype and aux.dtype == dtype
    y_loop, _ = moe_loop(layer_low, x.to(dtype))
    tol = {"atol": 1e-10, "rtol": 1e-8} if dtype == torch.float64 else {"atol": 2e-2, "rtol": 2e-2}
    torch.testing.assert_close(y.reshape(-1, 8), y_loop, **tol)
    if dtype == torch.float64:
        y32, aux32 = layer(x)
        torch.testing.assert_close(y.float(), y32, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(aux.float(), aux32, atol=1e-6, rtol=1e-6)


# --------------------------------------------------------------------------- invalid arguments


def _e(*shape: int, device: str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.zeros(shape, device=device, dtype=dtype)


def _idx(*shape: int, device: str = "cpu") -> torch.Tensor:
    return torch.zeros(shape, device=device, dtype=torch.long)


INVALID = {
    "routing_rank": (
        lambda d: top_k_routing(_e(2, 3, 8, device=d), 2),
        r"router_logits must have shape \(T, E\)",
    ),
    "routing_rank_1": (
        lambda d: top_k_routing(_e(8, device=d), 2),
        r"router_logits must have shape",
    ),
    "routing_k_zero": (
        lambda d: top_k_routing(_e(4, 8, device=d), 0),
        r"k must be an int with 1 <= k <= E = 8",
    ),
    "routing_k_too_big": (lambda d: top_k_routing(_e(4, 8, device=d), 9), r"k must be .*got 9"),
    "routing_k_float": (lambda d: top_k_routing(_e(4, 8, device=d), 2.0), r"k must be an int"),
    "lb_num_experts": (
        lambda d: load_balancing_loss(_e(4, 8, device=d), _idx(4, 2, device=d), 6),
        r"router_logits must have shape \(T, E = num_experts = 6\)",
    ),
    "lb_num_experts_zero": (
        lambda d: load_balancing_loss(_e(4, 8, device=d), _idx(4, 2, device=d), 0),
        r"num_experts must be an int >= 1",
    ),
    "lb_logits_rank": (
        lambda d: load_balancing_loss(_e(2, 4, 8, device=d), _idx(4, 2, device=d), 8),
        r"router_logits must have shape",
    ),
    "lb_indices_rank": (
        lambda d: load_balancing_loss(_e(4, 8, device=d), _idx(8, device=d), 8),
        r"expert_indices must have shape \(T = 4, k\)",
    ),
    "lb_indices_tokens": (
        lambda d: load_balancing_loss(_e(4, 8, device=d), _idx(5, 2, device=d), 8),
        r"expert_indices must have shape \(T = 4, k\)",
    ),
    "lb_indices_dtype": (
        lambda d: load_balancing_loss(_e(4, 8, device=d), _e(4, 2, device=d), 8),
        r"expert_indices must be an integer tensor",
    ),
    "capacity_factor_zero": (lambda d: expert_capacity(10, 4, 0.0), r"capacity_factor must be > 0"),
    "capacity_factor_negative": (
        lambda d: expert_capacity(10, 4, -1.0),
        r"capacity_factor must be > 0",
    ),
    "capacity_tokens": (lambda d: expert_capacity(-1, 4, 1.0), r"num_tokens must be an int >= 0"),
    "capacity_experts": (lambda d: expert_capacity(10, 0, 1.0), r"num_experts must be an int >= 1"),
    "capacity_k": (lambda d: expert_capacity(10, 4, 1.0, k=0), r"k must be an int >= 1"),
    "moe_k_zero": (
        lambda d: MoELayer(8, 16, 4, k=0),
        r"k must be an int with 1 <= k <= num_experts = 4",
    ),
    "moe_k_too_big": (lambda d: MoELayer(8, 16, 4, k=5), r"k must be .*got 5"),
    "moe_num_experts": (lambda d: MoELayer(8, 16, 0, k=1), r"num_experts must be an int >= 1"),
    "moe_capacity_factor": (
        lambda d: MoELayer(8, 16, 4, capacity_factor=0.0),
        r"capacity_factor must be None or > 0",
    ),
    "moe_x_dim": (
        lambda d: MoELayer(8, 16, 4).to(d)(_e(2, 5, 6, device=d)),
        r"x must have shape \(\.\.\., d_model=8\)",
    ),
    "moe_x_scalar": (lambda d: MoELayer(8, 16, 4).to(d)(_e(device=d)), r"x must have shape"),
}


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_argument_raises_value_error_naming_it(name, device):
    """Oracle: the contract: a ValueError that names the argument, on CPU and on meta
    tensors (the checks read shapes only)."""
    fn, match = INVALID[name]
    with pytest.raises(ValueError, match=match):
        fn(device)


# --------------------------------------------------------------------------- copyability


def test_module_has_no_private_helpers():
    """Oracle: the notebook tool copies single public names; nothing private may exist."""
    private = [n for n in vars(moe) if n.startswith("_") and not n.startswith("__")]
    assert private == []
    own = [
        n
        for n, v in vars(moe).items()
        if (inspect.isfunction(v) or inspect.isclass(v)) and v.__module__ == moe.__name__
    ]
    assert sorted(own) == sorted(PUBLIC_NAMES)


def test_public_names_work_when_copied_with_getsource():
    """Oracle: the module itself; each name's inspect.getsource, executed in a namespace
    holding only math, torch, nn, F and chapter 01's FeedForward (what the notebook's
    first cell imports), gives the same results."""
    ns = {"math": math, "torch": torch, "nn": nn, "F": F, "FeedForward": FeedForward}
    for name in PUBLIC_NAMES:
        exec(inspect.getsource(getattr(moe, name)), ns)
    layer = seeded_layer(seed=24, capacity_factor=0.75)
    copied = ns["MoELayer"](8, 16, 4, capacity_factor=0.75)
    copied.load_state_dict(layer.state_dict())
    x = randn(2, 7, 8, seed=25)
    for a, b in zip(copied(x), layer(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert ns["expert_capacity"](12, 8, 1.25, 2) == 4


def test_public_names_have_docstrings_with_shapes_and_type_hints():
    """Oracle: the conventions: a docstring with Args/Returns and full type hints."""
    for name in PUBLIC_NAMES:
        obj = getattr(moe, name)
        doc = inspect.getdoc(obj) or ""
        assert "Args" in doc, name
        fns = [obj.__init__, obj.forward] if inspect.isclass(obj) else [obj]
        assert "Returns" in (inspect.getdoc(fns[-1]) or ""), name
        for fn in fns:
            sig = inspect.signature(fn)
            assert sig.return_annotation is not inspect.Signature.empty, (name, fn)
            for p in sig.parameters.values():
                if p.name != "self":
                    assert p.annotation is not inspect.Parameter.empty, (name, p.name)
    assert moe.__doc__ and "Chapter 03" in moe.__doc__
