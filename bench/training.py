"""Training throughput: the readable loop, the fast path and a plain-PyTorch baseline.

Two tables, every number measured in this run, the variants interleaved repeat by
repeat (so a busy machine slows them alike) and reported as medians:

1. nanoGPT's small CPU configuration (4 layers, 4 heads, width 128, context 128,
   batch 16, 65 characters): a baseline written here in plain PyTorch the way
   nanoGPT's model is (one fused query/key/value projection, no biases, exact GELU,
   ``F.scaled_dot_product_attention(is_causal=True)``, ``F.cross_entropy``,
   ``torch.optim.AdamW``), against the course's two paths on the same configuration:
   chapter 04's ``train_language_model`` on chapter 02's ``GPT`` (the exercises, from
   scratch), and ``solutions.fast.train_fast`` on ``CourseGPT`` (fused routines),
   in float32 and with bfloat16 matrix products.
2. The course models' own configurations ("main" and "draft"): readable against fast.

Each step is the whole of a training step: schedule, batch, forward, loss, backward,
clipping, optimizer. ``python -m bench training`` (or ``make bench``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench import markdown_table, median_times, write_report
from solutions.architectures import GPT
from solutions.course_model import CONFIGS
from solutions.fast import autocast_dtype, fused_copy, train_fast
from solutions.training import get_batch, lr_schedule, train_language_model

# nanoGPT's train.py with this configuration, run once on this machine (2 cores, torch
# 2.13 CPU, float32): 95 ms per iteration. nanoGPT cannot be a dependency (it is not a
# package); its figure is quoted in the caption, the baseline below is measured.
NANOGPT_MS = 95.0
NANO = {"vocab": 65, "d_model": 128, "n_layers": 4, "n_heads": 4, "block": 128, "batch": 16}
STEPS_PER_RUN, REPEATS = 15, 3
COURSE_STEPS, COURSE_REPEATS = 3, 3


class PlainGPT(nn.Module):
    """The baseline: a GPT written in plain PyTorch the way nanoGPT writes its model."""

    def __init__(self, vocab: int, d_model: int, n_layers: int, n_heads: int, block: int):
        super().__init__()
        self.n_heads = n_heads
        self.wte = nn.Embedding(vocab, d_model)
        self.wpe = nn.Embedding(block, d_model)
        self.layers = nn.ModuleList(
            nn.ModuleDict(
                {
                    "ln_1": nn.LayerNorm(d_model, bias=False),
                    "qkv": nn.Linear(d_model, 3 * d_model, bias=False),
                    "proj": nn.Linear(d_model, d_model, bias=False),
                    "ln_2": nn.LayerNorm(d_model, bias=False),
                    "up": nn.Linear(d_model, 4 * d_model, bias=False),
                    "down": nn.Linear(4 * d_model, d_model, bias=False),
                }
            )
            for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(d_model, bias=False)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self.head.weight = self.wte.weight
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        H = self.n_heads
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))  # (B, T, d)
        for layer in self.layers:
            q, k, v = layer["qkv"](layer["ln_1"](x)).split(x.shape[-1], dim=2)  # (B, T, d) x 3
            q, k, v = (t.view(B, T, H, -1).transpose(1, 2) for t in (q, k, v))  # (B, H, T, Dh)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, Dh)
            x = x + layer["proj"](y.transpose(1, 2).reshape(B, T, -1))  # (B, T, d)
            x = x + layer["down"](F.gelu(layer["up"](layer["ln_2"](x))))  # (B, T, d)
        return self.head(self.ln_f(x))  # (B, T, V)


def plain_loop(model: nn.Module, data: torch.Tensor, steps: int, batch: int, block: int):
    """The baseline's loop: the same schedule and batches, torch's routines."""
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_schedule(step, 1e-3, 1e-4, 0, steps)
        x, y = get_batch(data, batch, block, g)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()


def _runs(cfg: dict[str, int], steps: int, with_plain: bool) -> dict[str, object]:
    vocab, d, n_layers, n_heads, block, batch = (
        cfg[k] for k in ("vocab", "d_model", "n_layers", "n_heads", "block", "batch")
    )
    data = torch.randint(vocab, (200_000,), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    readable = GPT(vocab, d, n_layers, n_heads, block)
    fast32 = fused_copy(readable)
    common = dict(steps=steps, batch_size=batch, block_size=block, progress=False)

    def g() -> torch.Generator:
        return torch.Generator().manual_seed(1)

    runs: dict[str, object] = {}
    if with_plain:
        plain = PlainGPT(vocab, d, n_layers, n_heads, block)
        runs["plain PyTorch baseline (nanoGPT's way)"] = lambda: plain_loop(
            plain, data, steps, batch, block
        )
    runs["readable: chapter 04 loop, chapter 02 GPT"] = lambda: train_language_model(
        readable, data, generator=g(), **common
    )
    runs["fast path, float32"] = lambda: train_fast(
        fast32, data, generator=g(), precision="float32", **common
    )
    if autocast_dtype("cpu", "auto") is not None:  # bfloat16 where the CPU has it natively
        fast_auto = fused_copy(readable)
        runs["fast path, bfloat16 matrix products"] = lambda: train_fast(
            fast_auto, data, generator=g(), precision="auto", **common
        )
    return runs


def _rows(seconds: dict[str, float], steps: int, tokens: int, base: str) -> list[list[str]]:
    rows = []
    for name, s in seconds.items():
        ms = 1000 * s / steps
        row = [name, f"{ms:.1f}", f"{tokens / (s / steps):,.0f}", f"{seconds[base] / s:.2f}"]
        rows.append(row)
    return rows


def main() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(CONFIGS["main"].threads)
    try:
        runs = _runs(NANO, STEPS_PER_RUN, with_plain=True)
        seconds = median_times(runs, REPEATS)
        base = next(iter(runs))
        tokens = NANO["batch"] * NANO["block"]
        rows = _rows(seconds, STEPS_PER_RUN, tokens, base)
        for row, s in zip(rows, seconds.values(), strict=True):
            row.append(f"{NANOGPT_MS / (1000 * s / STEPS_PER_RUN):.2f}")
        nano = markdown_table(
            ["loop", "ms / step", "tokens / s", "speed vs baseline", "speed vs nanoGPT"],
            rows,
            note=(
                f"nanoGPT's small CPU configuration ({NANO['n_layers']} layers, "
                f"{NANO['n_heads']} heads, width {NANO['d_model']}, context {NANO['block']}, "
                f"batch {NANO['batch']}, {NANO['vocab']} characters, random ids). Median of "
                f"{REPEATS} interleaved repeats of {STEPS_PER_RUN} steps after a warm-up run, "
                f"{torch.get_num_threads()} CPU threads. Speed = time of the reference / time "
                f"of the row. nanoGPT's own train.py on this configuration, measured once on "
                f"this machine: {NANOGPT_MS:.0f} ms per iteration "
                f"({tokens / NANOGPT_MS * 1000:,.0f} tokens/s, float32)."
            ),
        )
        course_rows = []
        for size, cfg in CONFIGS.items():
            shape = {
                "vocab": 1024, "d_model": cfg.d_model, "n_layers": cfg.n_layers,
                "n_heads": cfg.n_heads, "block": cfg.max_seq_len, "batch": cfg.batch_size,
            }  # fmt: skip
            runs = _runs(shape, COURSE_STEPS, with_plain=False)
            seconds = median_times(runs, COURSE_REPEATS)
            tokens = cfg.batch_size * cfg.max_seq_len
            base = next(iter(runs))
            for row in _rows(seconds, COURSE_STEPS, tokens, base):
                course_rows.append([size, *row])
        course = markdown_table(
            ["course model", "loop", "ms / step", "tokens / s", "speed vs readable"],
            course_rows,
            note=(
                f"The configurations of `make model` (batch x context "
                f"{CONFIGS['main'].batch_size} x {CONFIGS['main'].max_seq_len}, 1,024 ids, random "
                f"ids); median of {COURSE_REPEATS} interleaved repeats of {COURSE_STEPS} steps. "
                '`make model` trains with the fast path and `precision="auto"`.'
            ),
        )
    finally:
        torch.set_num_threads(threads)
    write_report(
        "training",
        [("nanoGPT's configuration", nano), ("The course models' configurations", course)],
    )


if __name__ == "__main__":
    main()
