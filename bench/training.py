"""Throughput of chapter 04's training loop on the course models' configurations.

For each course model ("main", "draft"), tokens per second of ``train_language_model``
(schedule, batch, forward, loss, backward, clipping, optimizer step), side by side in
one run: with this chapter's ``AdamW`` (the default) and with ``torch.optim.AdamW``
(PyTorch's multi-tensor implementation), on the same model, data and threads.
Later changes to the loop can be compared against these numbers.

    python -m bench.training      (or: make bench)
"""

from __future__ import annotations

import platform
import time

import torch

from bench import write_table
from solutions.architectures import GPT
from solutions.course_model import CONFIGS
from solutions.training import train_language_model

VOCAB = 1024
WARMUP_STEPS, TIMED_STEPS = 2, 8


def _tokens_per_second(size: str, optimizer: str) -> tuple[float, int]:
    cfg = CONFIGS[size]
    torch.manual_seed(0)
    model = GPT(VOCAB, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.max_seq_len)
    data = torch.randint(VOCAB, (200_000,), generator=torch.Generator().manual_seed(0))

    def run(steps: int) -> float:
        opt = None
        if optimizer == "torch.optim.AdamW":
            opt = torch.optim.AdamW(model.parameters(), lr=cfg.max_lr, betas=(0.9, 0.95))
        start = time.perf_counter()
        train_language_model(
            model, data, steps=steps, batch_size=cfg.batch_size, block_size=cfg.max_seq_len,
            max_lr=cfg.max_lr, warmup_steps=0, optimizer=opt, progress=False,
            generator=torch.Generator().manual_seed(1),
        )  # fmt: skip
        return time.perf_counter() - start

    run(WARMUP_STEPS)
    seconds = run(TIMED_STEPS)
    tokens = TIMED_STEPS * cfg.batch_size * cfg.max_seq_len
    return tokens / seconds, sum(p.numel() for p in model.parameters())


def main() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(CONFIGS["main"].threads)
    rows = []
    try:
        for size in CONFIGS:
            cfg = CONFIGS[size]
            ours, n_params = _tokens_per_second(size, "AdamW (chapter 04)")
            theirs, _ = _tokens_per_second(size, "torch.optim.AdamW")
            for name, tps in (("AdamW (chapter 04)", ours), ("torch.optim.AdamW", theirs)):
                rows.append(
                    [
                        size,
                        f"{n_params:,}",
                        f"{cfg.batch_size} x {cfg.max_seq_len}",
                        name,
                        f"{1000 * cfg.batch_size * cfg.max_seq_len / tps:.0f}",
                        f"{tps:,.0f}",
                        f"{tps / ours:.2f}",
                    ]
                )
    finally:
        torch.set_num_threads(threads)
    write_table(
        "training",
        [
            "model",
            "parameters",
            "batch x context",
            "optimizer",
            "ms / step",
            "tokens / s",
            "vs chapter 04 AdamW",
        ],  # fmt: skip
        rows,
        note=(
            f"train_language_model, {TIMED_STEPS} timed steps after {WARMUP_STEPS} warm-up "
            f"steps, random tokens (V = {VOCAB}), {CONFIGS['main'].threads} CPU threads, "
            f"torch {torch.__version__}, Python {platform.python_version()}."
        ),
    )


if __name__ == "__main__":
    main()
