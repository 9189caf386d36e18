"""Chapter 09's accelerations, each measured side by side with the way it replaces, in one run.

Four tables, every number a ratio to a baseline measured in the same run:

1. Attention at several lengths L (one head, d = 64, causal, float32): chapter 09's
   ``flash_attention`` (tiled, online softmax, plain PyTorch) against the naive attention
   that materialises the (L, L) scores (chapter 01's ``scaled_dot_product_attention``)
   and against ``torch.nn.functional.scaled_dot_product_attention`` (PyTorch's fused
   kernel). Time: medians of interleaved repeats in this process. Peak memory: each
   variant at each length runs in a fresh subprocess, which creates its inputs, resets
   the kernel's resident-set high-water mark (``/proc/self/clear_refs``), runs the
   attention once and reads ``VmHWM`` from ``/proc/self/status``: the peak resident
   memory above what the process held before the call.
2. Greedy generation on the course model (chapter 04, main): ``generate_with_kv_cache``
   against recomputing the whole prefix at every step (chapter 07's ``generate`` at
   temperature 0), tokens per second at several final lengths; both give the same tokens.
   Then the same at 512 and 1,024 tokens on a model of the course size with that context
   (random weights), with ``solutions.fast``'s preallocated cache beside chapter 09's.
3. Speculative decoding, the course's draft model proposing gamma tokens for the main
   model, against plain sampling from the main model (temperature 1): acceptance rate,
   target forward passes per generated token and the wall-clock ratio, for several gamma,
   recomputing the sequence (chapter 09's reference) and with a KV cache in both models
   (``solutions.fast.speculative_decode_cached``).
4. The main course model with every ``nn.Linear`` replaced by ``Int8Linear.from_float``:
   the bytes of its weights and the time of a forward pass against float32.

    python -m bench inference      (or: make bench)
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from bench import markdown_table, median_times, write_report
from course.helpers import replace_modules

ROOT = Path(__file__).resolve().parent.parent
# One CPU thread for every measurement: flash attention's per-tile operations and the tiny
# course models lose more to synchronising a second thread than they gain from it (and on
# a shared machine a second thread makes every timing depend on the neighbours).
THREADS = 1
D_HEAD = 64
LENGTHS = (1024, 4096, 16384)
ATTN_REPEATS = 5
KV_LENGTHS = (32, 64, 128)  # final lengths; the course model sees at most 128 tokens
KV_REPEATS = 7
LONG_LENGTHS = (512, 1024)  # final lengths on a course-size model with 1,024 positions
LONG_PROMPT, LONG_REPEATS = 16, 3
PROMPT = "Return the number of"
GAMMAS = (1, 2, 4, 8)
SPEC_PROMPTS = ("Return the", "If the file", "This module provides")
SPEC_NEW_TOKENS = 64
SPEC_REPEATS = 3
INT8_BATCH = (16, 128)
INT8_REPEATS = 9


# ------------------------------------------------------------------------- attention


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention the textbook way: chapter 01's reference, with its (L, L) scores."""
    from solutions.attention import causal_mask, scaled_dot_product_attention

    mask = causal_mask(q.shape[-2], device=q.device)  # (L, L)
    return scaled_dot_product_attention(q, k, v, mask)[0]  # (1, 1, L, d)


def flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Chapter 09's tiled attention with the online softmax, causal."""
    from solutions.inference import flash_attention

    return flash_attention(q, k, v, causal=True)


def attention_variants() -> dict[str, Callable[..., torch.Tensor]]:
    return {
        "flash_attention (ch. 09)": flash,
        "naive (ch. 01, (L, L) scores)": naive_attention,
        "torch SDPA": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    }


def _inputs(length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(length)
    return tuple(torch.randn(1, 1, length, D_HEAD, generator=g) for _ in range(3))


def _kib(field: str) -> int:
    """A line of /proc/self/status (VmRSS, VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_memory_child(name: str, length: int) -> None:
    """In a fresh process: the peak resident memory (bytes) of one attention call, printed."""
    torch.set_num_threads(THREADS)
    fn = attention_variants()[name]
    with torch.no_grad():
        fn(*_inputs(256))  # warm-up: lazy initialisation is not the attention's memory
        q, k, v = _inputs(length)
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
        before = _kib("VmRSS")
        out = fn(q, k, v)
        peak = _kib("VmHWM")
    print(json.dumps({"peak_bytes": 1024 * (peak - before), "out_bytes": out.nbytes}))


def peak_memory(name: str, length: int) -> int:
    """``peak_memory_child`` in a subprocess; returns the peak bytes above the baseline."""
    code = f"from bench.inference import peak_memory_child; peak_memory_child({name!r}, {length})"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_bytes"]


def bench_attention(progress: tqdm) -> str:
    variants = attention_variants()
    flash, naive, sdpa = variants
    rows = []
    for length in LENGTHS:
        q, k, v = _inputs(length)
        with torch.no_grad():
            gap = (variants[flash](q, k, v) - variants[sdpa](q, k, v)).abs().max().item()
            runs = {name: (lambda f=f, x=(q, k, v): f(*x)) for name, f in variants.items()}
            long = length == max(LENGTHS)  # seconds per call: warmed up by the shorter ones
            seconds = median_times(runs, 1 if long else ATTN_REPEATS, warm_up=not long)
        progress.update(1)
        peaks = {}
        for name in variants:
            peaks[name] = peak_memory(name, length)
            progress.update(1)
        scores_mib = length * length * 4 / 2**20
        for name in variants:
            rows.append(
                [
                    f"{length:,}",
                    name,
                    f"{1e3 * seconds[name]:.1f}",
                    f"{seconds[name] / seconds[naive]:.2f}",
                    f"{seconds[name] / seconds[sdpa]:.2f}",
                    f"{peaks[name] / 2**20:.1f}",
                    f"{peaks[name] / peaks[naive]:.3f}",
                    f"{peaks[name] / max(peaks[sdpa], 1):.1f}",
                    f"{scores_mib:,.0f}" if name == naive else "",
                ]
            )
        assert gap < 1e-4, f"flash_attention differs from torch SDPA by {gap} at L={length}"
    header = [
        "L",
        "attention",
        "ms",
        "time / naive",
        "time / SDPA",
        "peak MiB",
        "peak / naive",
        "peak / SDPA",
        "one (L, L) float32 matrix, MiB",
    ]
    note = (
        f"One head, d = {D_HEAD}, causal, float32, batch 1, {_threads()}. "
        f"Time: median of {ATTN_REPEATS} interleaved repeats after a warm-up (at "
        f"L = {max(LENGTHS):,}: one run, warmed up by the shorter lengths). Peak "
        "memory: each variant and length in its own subprocess, the resident-set high-water "
        "mark (`VmHWM`, reset through `/proc/self/clear_refs`) minus the resident set just "
        "before the call, after the inputs exist; the output itself is L x 64 x 4 bytes "
        f"({LENGTHS[-1] * D_HEAD * 4 / 2**20:.0f} MiB at L = {LENGTHS[-1]:,}). The flash "
        "output matches torch SDPA to 1e-4 at every length."
    )
    return markdown_table(header, rows, note)


# ---------------------------------------------------------------------- the course model


def _models():
    from solutions.course_model import load_course_model

    main, tokenizer = load_course_model("main")
    draft, _ = load_course_model("draft")
    return main.eval(), draft.eval(), tokenizer


def bench_kv_cache(main, tokenizer, progress: tqdm) -> str:
    from solutions.inference import generate_with_kv_cache
    from solutions.sampling import generate

    prompt = torch.tensor([tokenizer.encode(PROMPT)])  # (1, P)
    rows = []
    for length in KV_LENGTHS:
        new = length - prompt.shape[1]
        with torch.no_grad():
            cached = generate_with_kv_cache(main, prompt, new)
            full = generate(main, prompt, new, temperature=0.0)
            same = torch.equal(cached, full)
            seconds = median_times(
                {
                    "kv": lambda n=new: generate_with_kv_cache(main, prompt, n),
                    "full": lambda n=new: generate(main, prompt, n, temperature=0.0),
                },
                KV_REPEATS,
            )
        progress.update(1)
        assert same, f"KV-cache generation differs from recomputation at length {length}"
        tps = {name: new / s for name, s in seconds.items()}
        positions = sum(range(prompt.shape[1], length)) / (length - 1)
        rows.append(
            [
                f"{length}",
                f"{new}",
                f"{positions:.1f}",
                f"{tps['full']:,.0f}",
                f"{tps['kv']:,.0f}",
                f"{tps['kv'] / tps['full']:.2f}",
                "yes" if same else "NO",
            ]
        )
    header = [
        "final length",
        "new tokens",
        "positions computed, recompute / KV",
        "recompute tokens/s",
        "KV cache tokens/s",
        "KV / recompute",
        "same tokens",
    ]
    note = (
        f"Greedy generation on the main course model after the {prompt.shape[1]}-token prompt "
        f"{PROMPT!r}, batch 1, {_threads()}; median of {KV_REPEATS} "
        "interleaved repeats. Recompute: chapter 07's `generate` at temperature 0, which runs "
        "the model on the whole sequence at every step."
    )
    return markdown_table(header, rows, note)


def bench_long_kv_cache(progress: tqdm) -> str:
    from solutions.architectures import GPT
    from solutions.course_model import CONFIGS
    from solutions.fast import sample_cached
    from solutions.inference import generate_with_kv_cache
    from solutions.sampling import generate

    cfg = CONFIGS["main"]
    torch.manual_seed(0)
    model = GPT(1024, cfg.d_model, cfg.n_layers, cfg.n_heads, max(LONG_LENGTHS)).eval()
    prompt = torch.randint(1024, (1, LONG_PROMPT), generator=torch.Generator().manual_seed(0))
    rows = []
    for length in LONG_LENGTHS:
        new = length - LONG_PROMPT
        runs = {
            "full": lambda n=new: generate(model, prompt, n, temperature=0.0),
            "kv": lambda n=new: generate_with_kv_cache(model, prompt, n),
            "fast": lambda n=new: sample_cached(model, prompt, n, temperature=0.0),
        }
        with torch.no_grad():
            outs = {name: run() for name, run in runs.items()}
            seconds = median_times(runs, LONG_REPEATS, warm_up=False)
        progress.update(1)
        same = all(torch.equal(out, outs["full"]) for out in outs.values())
        tps = {name: new / s for name, s in seconds.items()}
        rows.append(
            [
                f"{length}",
                f"{tps['full']:,.0f}",
                f"{tps['kv']:,.0f}",
                f"{tps['kv'] / tps['full']:.1f}",
                f"{tps['fast']:,.0f}",
                f"{tps['fast'] / tps['full']:.1f}",
                "yes" if same else "no",
            ]
        )
    header = [
        "final length",
        "recompute tokens/s",
        "chapter 09 KV cache tokens/s",
        "speed-up",
        "preallocated cache (solutions.fast) tokens/s",
        "speed-up",
        "same tokens",
    ]
    note = (
        f"Greedy generation after a {LONG_PROMPT}-token random prompt on chapter 02's GPT with "
        f"the main course model's shape ({_count(model):,} parameters) and "
        f"{max(LONG_LENGTHS)} positions, random weights, batch 1, {_threads()}; median of "
        f"{LONG_REPEATS} interleaved repeats. Chapter 09's cache grows by `torch.cat` and "
        "computes attention by hand; the preallocated one writes into fixed buffers and runs "
        "`F.scaled_dot_product_attention` with one fused query/key/value product."
    )
    return markdown_table(header, rows, note)


def bench_speculative(main, draft, tokenizer, progress: tqdm) -> str:
    from solutions.fast import sample_cached, speculative_decode_cached
    from solutions.inference import speculative_decode
    from solutions.sampling import generate

    prompts = [torch.tensor([tokenizer.encode(p)]) for p in SPEC_PROMPTS]

    def plain(sampler: Callable[..., torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            for i, ids in enumerate(prompts):
                g = torch.Generator().manual_seed(i)
                sampler(main, ids, SPEC_NEW_TOKENS, temperature=1.0, generator=g)

        return run

    stats_by_run: dict[str, dict[str, float]] = {}

    def speculative(name: str, decode: Callable[..., tuple], gamma: int) -> Callable[[], None]:
        def run() -> None:
            totals: dict[str, float] = {}
            for i, ids in enumerate(prompts):
                g = torch.Generator().manual_seed(i)
                out, stats = decode(
                    main, draft, ids, SPEC_NEW_TOKENS, gamma=gamma, temperature=1.0, generator=g
                )
                totals["new"] = totals.get("new", 0) + out.shape[1] - ids.shape[1]
                for key, value in stats.items():
                    if isinstance(value, (int, float)):
                        totals[key] = totals.get(key, 0) + value
            stats_by_run[name] = totals

        return run

    runs = {"plain": plain(generate), "plain cached": plain(sample_cached)}
    for gamma in GAMMAS:
        runs[f"gamma={gamma}"] = speculative(f"gamma={gamma}", speculative_decode, gamma)
        runs[f"cached gamma={gamma}"] = speculative(
            f"cached gamma={gamma}", speculative_decode_cached, gamma
        )
    with torch.no_grad():
        seconds = median_times(runs, SPEC_REPEATS, warm_up=False)
    progress.update(1)

    def times(name: str) -> list[str]:
        return [
            f"{seconds[name] / seconds['plain']:.2f}",
            f"{seconds[name] / seconds['plain cached']:.2f}",
        ]

    rows = [
        ["plain sampling (main model)", "no", "", "1.00", "0", *times("plain")],
        ["plain sampling (main model)", "yes", "", "1.00", "0", *times("plain cached")],
    ]
    for cached in (False, True):
        for gamma in GAMMAS:
            name = f"cached gamma={gamma}" if cached else f"gamma={gamma}"
            s = stats_by_run[name]
            rows.append(
                [
                    f"speculative, gamma = {gamma}",
                    "yes, both models" if cached else "no",
                    f"{s[ACCEPTED] / s[PROPOSED]:.2f}",
                    f"{s[TARGET_CALLS] / s['new']:.2f}",
                    f"{s[DRAFT_CALLS] / s['new']:.2f}",
                    *times(name),
                ]
            )
    header = [
        "decoding",
        "KV cache",
        "acceptance rate (accepted / proposed)",
        "target forwards / token",
        "draft forwards / token",
        "time / plain without cache",
        "time / plain with cache",
    ]
    note = (
        f"Sampling at temperature 1, {SPEC_NEW_TOKENS} new tokens after each of "
        f"{len(SPEC_PROMPTS)} prompts, the draft course model ({_count(draft):,} parameters) "
        f"proposing for the main one ({_count(main):,}); {_threads()}, "
        f"median of {SPEC_REPEATS} interleaved repeats. Plain sampling without cache: chapter "
        "07's `generate`; with cache: `solutions.fast.sample_cached` (the same draws). "
        "Speculative without cache: chapter 09's `speculative_decode`; with caches: "
        "`solutions.fast.speculative_decode_cached`, which draws the same tokens."
    )
    return markdown_table(header, rows, note)


# The keys of speculative_decode's stats.
ACCEPTED, PROPOSED = "accepted", "proposed"
TARGET_CALLS, DRAFT_CALLS = "target_forwards", "draft_forwards"


def _threads() -> str:
    n = torch.get_num_threads()
    return f"{n} CPU thread" + ("s" if n > 1 else "")


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of every parameter and buffer, each shared tensor counted once."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.nbytes
    return total


def quantized_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose blocks' ``nn.Linear`` layers are ``Int8Linear.from_float``.

    The output layer stays: its weight is the token embedding (tied), which a lookup
    table needs in float anyway, so an int8 copy of it would add memory, not save it.
    """
    import copy

    from solutions.inference import Int8Linear

    return replace_modules(copy.deepcopy(model), torch.nn.Linear, Int8Linear.from_float, "blocks.")


def bench_int8(main, progress: tqdm) -> str:
    from solutions.course_model import CORPUS, evaluate_loss, prepare_data

    int8 = quantized_copy(main).eval()
    _, _, val_ids, _ = prepare_data(CORPUS, progress=False)
    val_ids = val_ids[: 64 * 128 + 1]
    g = torch.Generator().manual_seed(0)
    x = torch.randint(main.tok_emb.num_embeddings, INT8_BATCH, generator=g)
    with torch.no_grad():
        seconds = median_times({"fp32": lambda: main(x), "int8": lambda: int8(x)}, INT8_REPEATS)
        loss = {
            "fp32": evaluate_loss(main, val_ids, 128),
            "int8": evaluate_loss(int8, val_ids, 128),
        }
    progress.update(1)
    size = {"fp32": weight_bytes(main), "int8": weight_bytes(int8)}
    rows = []
    for name, label in (("fp32", "float32"), ("int8", "Int8Linear (per-channel)")):
        rows.append(
            [
                label,
                f"{size[name] / 2**20:.2f}",
                f"{size[name] / size['fp32']:.2f}",
                f"{1e3 * seconds[name]:.1f}",
                f"{seconds[name] / seconds['fp32']:.2f}",
                f"{math.exp(loss[name]):.3f}",
                f"{100 * (math.exp(loss[name] - loss['fp32']) - 1):+.2f}",
            ]
        )
    header = [
        "main course model",
        "weights MiB",
        "/ float32",
        "forward ms",
        "/ float32",
        "val ppl",
        "ppl change %",
    ]
    note = (
        "Every `nn.Linear` of the blocks (attention projections, MLP) replaced by "
        "`Int8Linear.from_float` (per-channel scales); the embeddings, whose matrix is also "
        "the tied output layer, and the norms stay float32. Forward pass on a batch "
        f"of {INT8_BATCH[0]} x {INT8_BATCH[1]} tokens, median of {INT8_REPEATS} interleaved "
        f"repeats, {_threads()}. Validation perplexity on the first "
        f"{len(val_ids) - 1:,} validation tokens."
    )
    return markdown_table(header, rows, note)


# ---------------------------------------------------------------------------- the page


def main() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        main_model, draft, tokenizer = _models()
        steps = len(LENGTHS) * 4 + len(KV_LENGTHS) + len(LONG_LENGTHS) + 2
        with tqdm(total=steps, desc="bench.inference") as progress:
            attention = bench_attention(progress)
            sections = [
                ("Flash attention: time and peak memory", attention),
                ("KV cache: greedy generation", bench_kv_cache(main_model, tokenizer, progress)),
                ("KV cache at 512 and 1,024 tokens", bench_long_kv_cache(progress)),
                (
                    "Speculative decoding",
                    bench_speculative(main_model, draft, tokenizer, progress),
                ),
                ("int8 weights", bench_int8(main_model, progress)),
            ]
    finally:
        torch.set_num_threads(threads)
    write_report("inference", sections)


if __name__ == "__main__":
    main()
