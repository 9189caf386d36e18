"""The MoE layer's time against running every expert on every token, side by side in one run.

E = 8 experts, k = 2, d_model = 256, d_ff = 1024, 4096 tokens, on the CPU:

- ``MoELayer`` (solutions/moe.py): each expert runs only on the tokens routed to it;
- dense: every expert on every token, combined with the same routing weights (zero for
  the experts a token did not choose), the naive way; its output is checked to be equal;
- one dense ``FeedForward(d_model, k * d_ff)``: the same multiply-adds per token as the
  k chosen experts, with no routing at all. PyTorch has no mixture-of-experts routine;
  this is the floor that sparse dispatch can approach, and the gap to it is the cost of
  routing, sorting, gathering and scattering.

Each is timed forward only (inference, no autograd) and forward + backward (training),
interleaved repeat by repeat so that a busy machine slows all of them alike; the table
gives the medians and the ratios to the dense computation.

    python -m bench.moe      (or: make bench)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench import median_times, write_table
from solutions.attention import FeedForward
from solutions.moe import MoELayer, top_k_routing

E, K, D_MODEL, D_FF, TOKENS = 8, 2, 256, 1024, 4096
REPEATS = 7


def dense_moe(layer: MoELayer, x: torch.Tensor) -> torch.Tensor:
    """Every expert on every token, weighted by the routing weights (0 where not chosen)."""
    weights, idx = top_k_routing(layer.router(x), layer.k)  # (T, k), (T, k)
    gate = torch.zeros(x.shape[0], layer.num_experts, device=x.device, dtype=x.dtype)
    gate = gate.scatter(1, idx, weights)  # (T, E)
    every = torch.stack([expert(x) for expert in layer.experts], dim=1)  # (T, E, d)
    return (gate[..., None] * every).sum(dim=1)  # (T, d)


def _forward(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            fn()

    return run


def _training_step(fn: Callable[[], torch.Tensor], params: list[torch.nn.Parameter]):
    def run() -> None:
        for p in params:
            p.grad = None
        fn().square().mean().backward()

    return run


def main() -> None:
    torch.manual_seed(0)
    layer = MoELayer(D_MODEL, D_FF, E, k=K)
    same_flops = FeedForward(D_MODEL, K * D_FF)
    x = torch.randn(TOKENS, D_MODEL)
    with torch.no_grad():
        gap = (layer(x)[0] - dense_moe(layer, x)).abs().max().item()
    assert gap < 1e-4, f"the sparse layer differs from the dense computation by {gap}"

    params = list(layer.parameters()) + list(same_flops.parameters())
    candidates = {
        "MoELayer (sparse dispatch)": lambda: layer(x)[0],
        "dense: every expert on every token": lambda: dense_moe(layer, x),
        f"one FeedForward(d_ff = k·{D_FF}), no routing": lambda: same_flops(x),
    }
    modes = {
        "forward": {n: _forward(f) for n, f in candidates.items()},
        "forward + backward": {n: _training_step(f, params) for n, f in candidates.items()},
    }
    medians = {mode: median_times(runs, REPEATS) for mode, runs in modes.items()}

    dense_name = "dense: every expert on every token"
    rows = []
    for name in candidates:
        row = [name]
        for mode in modes:
            median = medians[mode][name]
            ratio = median / medians[mode][dense_name]
            row += [f"{1e3 * median:.1f}", f"{ratio:.2f}"]
        rows.append(row)
    note = (
        f"E = {E} experts, k = {K}, d_model = {D_MODEL}, d_ff = {D_FF}, {TOKENS} tokens, "
        f"float32 on the CPU ({torch.get_num_threads()} threads, torch {torch.__version__}); "
        f"median of {REPEATS} interleaved repeats. Ratios are to the dense computation; k/E = "
        f"{K / E:.2f} is the share of the expert work that sparse dispatch keeps. The sparse "
        f"and dense outputs agree to {gap:.1e}."
    )
    header = ["computation", "forward ms", "ratio", "forward + backward ms", "ratio"]
    write_table("moe", header, rows, note)


if __name__ == "__main__":
    main()
