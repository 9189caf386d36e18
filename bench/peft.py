"""Chapter 05's memory savings on the trained main course model, measured side by side in one run.

Five ways to fine-tune the main course model (chapter 04, 940,800 parameters), each on a
fresh copy of it, with ``torch.optim.AdamW``:

- full fine-tuning: every parameter trained, float32 weights; the naive way, and the
  baseline of every ratio (PyTorch has no LoRA or NF4 routine to compare against);
- LoRA at rank 4, 8 and 16 (``apply_lora``, alpha = 2r) on every linear layer of the
  blocks (q, k, v, out projections, fc1, fc2), the targets of book/05_peft.md;
- QLoRA at rank 8: every ``nn.Linear`` of the blocks replaced by ``QLoRALinear`` (its
  weight kept only as NF4 codes and absmax scales, blocks of 64), everything else frozen.

Memory, read off the tensors themselves after one training step (nothing is computed from
a formula): the bytes of the weights held (float32 parameters, NF4 codes, absmax scales and
the biases of ``QLoRALinear``, which are buffers), the same with the codes packed two per
byte (``quantize_nf4`` stores one code per uint8), the gradients (``p.grad``), the AdamW
state (every tensor in ``optimizer.state``: both moments and the step counters), and the
activations autograd saves for the backward pass (every tensor given to
``saved_tensors_hooks`` during the forward pass, each storage counted once, parameters and
buffers left out). Time: one training step (forward, cross-entropy, backward, AdamW step)
on a batch of 8 x 128 tokens, each method in turn within every repeat (interleaved, so a
busy machine slows all of them alike), medians, one CPU thread.

A second table times the forward pass (no autograd) of the model with LoRA at rank 8 (B
set to random values so that the update is not zero), of the same model with every
``LoRALinear`` merged back into one ``nn.Linear``, of the base model and of the QLoRA
model, interleaved; the merged logits are checked against the unmerged ones.

    python -m bench peft      (or: make bench)
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from bench import markdown_table, median_times, write_report
from course.helpers import replace_modules
from solutions.course_model import load_course_model
from solutions.peft import LoRALinear, QLoRALinear, apply_lora, count_parameters

THREADS = 1
BATCH, CONTEXT = 8, 128
BLOCK_LINEARS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
LORA_RANKS = (4, 8, 16)
QLORA_RANK = 8
STEP_REPEATS = 15
FORWARD_REPEATS = 21
LR = 1e-4


def _qlora(model: nn.Module, r: int) -> nn.Module:
    """Every nn.Linear of the blocks in NF4 with rank-r LoRA; every other parameter frozen."""
    for p in model.parameters():
        p.requires_grad_(False)
    qlora = lambda lin: QLoRALinear(lin, r=r, alpha=2.0 * r)  # noqa: E731
    return replace_modules(model, nn.Linear, qlora, under="blocks.")


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def weight_bytes(model: nn.Module) -> tuple[int, int]:
    """(bytes held, bytes with the NF4 codes packed two per byte): parameters + buffers."""
    held = _bytes(model.parameters()) + _bytes(model.buffers())  # parameters(): tied once
    codes = [m.codes for m in model.modules() if isinstance(m, QLoRALinear)]
    return held, held - _bytes(codes) + sum((c.numel() + 1) // 2 for c in codes)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def saved_activation_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for backward (each storage once, weights excluded)."""
    weights = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = _loss(model, x, y)
    del loss
    return sum(seen.values())


class Method:
    """One way to fine-tune: a model, its optimizer and a training step."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model, self.x, self.y = model.train(), x, y
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=LR, weight_decay=0.0)

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        _loss(self.model, self.x, self.y).backward()
        self.opt.step()

    def memory(self) -> dict[str, int]:
        """Measured after one step: grads still held, optimizer state allocated."""
        self.opt.zero_grad(set_to_none=True)
        _loss(self.model, self.x, self.y).backward()
        grads = _bytes(p.grad for p in self.params if p.grad is not None)
        self.opt.step()
        state = [t for s in self.opt.state.values() for t in s.values() if torch.is_tensor(t)]
        held, packed = weight_bytes(self.model)
        return {
            "trainable": count_parameters(self.model, trainable_only=True),
            "weights": held,
            "packed": packed,
            "grads": grads,
            "state": _bytes(state),
            "steps": _bytes(t for t in state if t.dim() == 0),
            "activations": saved_activation_bytes(self.model, self.x, self.y),
        }


def _kib(n: int) -> str:
    return f"{n / 1024:,.0f}"


def bench_training(base: nn.Module, x, y, progress: tqdm) -> str:
    torch.manual_seed(0)  # LoRA's random A
    models = {"full fine-tuning (float32)": copy.deepcopy(base)}
    for r in LORA_RANKS:
        models[f"LoRA r = {r}"] = apply_lora(copy.deepcopy(base), BLOCK_LINEARS, r, 2.0 * r)
    models[f"QLoRA r = {QLORA_RANK} (NF4)"] = _qlora(copy.deepcopy(base), QLORA_RANK)
    methods = {name: Method(model, x, y) for name, model in models.items()}
    memory = {name: m.memory() for name, m in methods.items()}
    progress.update(1)
    seconds = median_times({n: m.step for n, m in methods.items()}, STEP_REPEATS, progress=progress)

    full_name = next(iter(methods))
    full, total = memory[full_name], count_parameters(base)

    def persistent(mem: dict[str, int], key: str = "weights") -> int:
        return mem[key] + mem["grads"] + mem["state"]

    rows = []
    for name, mem in memory.items():
        ratio = f"{persistent(mem) / persistent(full):.3f}"
        if mem["packed"] != mem["weights"]:
            ratio += f" ({persistent(mem, 'packed') / persistent(full):.3f} packed)"
        with_act = (persistent(mem) + mem["activations"]) / (persistent(full) + full["activations"])
        rows.append(
            [
                name,
                f"{mem['trainable']:,} ({100 * mem['trainable'] / total:.1f} %)",
                _kib(mem["weights"]),
                _kib(mem["packed"]),
                _kib(mem["grads"]),
                _kib(mem["state"]),
                ratio,
                _kib(mem["activations"]),
                f"{with_act:.3f}",
                f"{1e3 * seconds[name]:.0f}",
                f"{seconds[name] / seconds[full_name]:.2f}",
            ]
        )
    header = [
        "method",
        "trainable parameters",
        "weights KiB (as held)",
        "weights KiB (4-bit packed)",
        "gradients KiB",
        "AdamW state KiB",
        "weights + grads + state / full",
        "saved activations KiB",
        "all of it / full",
        "step ms",
        "step / full",
    ]
    steps = {m["steps"] for m in memory.values()}
    note = (
        f"Main course model ({total:,} parameters, the embedding tied to the output layer), "
        f"a batch of {BATCH} x {CONTEXT} tokens, torch.optim.AdamW for every method. "
        "PyTorch has no LoRA or NF4 routine: the baseline is the naive way, full "
        "fine-tuning of float32 weights. LoRA and QLoRA target every nn.Linear of the "
        "blocks (the 24 of 4 blocks); the embeddings and norms stay float32 and frozen. "
        "'As held': NF4 codes one per uint8, as quantize_nf4 stores them; 'packed': two codes "
        "per byte, as a real kernel stores them. The AdamW state is both moments, 8 bytes "
        "per trained parameter, plus the step counters (one 0-dim float32 tensor per "
        f"parameter tensor: {' to '.join(str(s) for s in sorted(steps)[:: len(steps) - 1])} "
        "bytes). At this batch the activations dwarf the weights of so small a model: "
        "'all of it' adds them, and most of the saving of LoRA disappears in it. "
        "'Saved activations': what autograd keeps for the backward pass; for QLoRA it "
        "also holds the dequantized float32 weights, which F.linear saves to compute the "
        "gradient of its input (except where that input needs no gradient, as for the first "
        "block's q, k, v projections); a real QLoRA kernel dequantizes again in the backward "
        f"pass instead. Step: forward + backward + AdamW step, median of {STEP_REPEATS} "
        f"interleaved repeats, {THREADS} CPU thread."
    )
    return markdown_table(header, rows, note)


def bench_forward(base: nn.Module, x: torch.Tensor, progress: tqdm) -> str:
    torch.manual_seed(0)
    lora = apply_lora(copy.deepcopy(base), BLOCK_LINEARS, r=8, alpha=16.0).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in lora.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.copy_(0.02 * torch.randn(m.lora_B.shape, generator=g))
    merged = replace_modules(copy.deepcopy(lora), LoRALinear, LoRALinear.merge).eval()
    qlora = _qlora(copy.deepcopy(base), QLORA_RANK).eval()
    with torch.no_grad():
        gap = (merged(x) - lora(x)).abs().max().item()
        unchanged = (lora(x) - base(x)).abs().max().item()
    assert gap < 1e-4 < unchanged, (gap, unchanged)
    models = {
        "base model (float32, no LoRA)": base.eval(),
        "LoRA r = 8, unmerged": lora,
        "LoRA r = 8, merged": merged,
        f"QLoRA r = {QLORA_RANK} (dequantized every call)": qlora,
    }

    def run(model: nn.Module) -> Callable[[], None]:
        def forward() -> None:
            with torch.no_grad():
                model(x)

        return forward

    runs = {n: run(m) for n, m in models.items()}
    seconds = median_times(runs, FORWARD_REPEATS, progress=progress)
    first = next(iter(models))
    rows = [[name, f"{1e3 * s:.1f}", f"{s / seconds[first]:.2f}"] for name, s in seconds.items()]
    note = (
        f"Forward pass without autograd on {BATCH} x {CONTEXT} tokens, median of "
        f"{FORWARD_REPEATS} interleaved repeats, {THREADS} CPU thread. LoRA on the 24 linear "
        "layers of the blocks, B random so that the update is not zero; merging gives the "
        f"unmerged logits to {gap:.1e} (they differ from the base model's by {unchanged:.2f})."
    )
    return markdown_table(["model", "forward ms", "/ base"], rows, note)


def main() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        base, _ = load_course_model("main")
        g = torch.Generator().manual_seed(0)
        tokens = torch.randint(base.tok_emb.num_embeddings, (BATCH, CONTEXT + 1), generator=g)
        x, y = tokens[:, :-1], tokens[:, 1:]  # (B, T), (B, T)
        with tqdm(total=1 + STEP_REPEATS + FORWARD_REPEATS, desc="bench.peft") as progress:
            sections = [
                ("Fine-tuning memory and step time", bench_training(base, x, y, progress)),
                ("Merged against unmerged LoRA: forward time", bench_forward(base, x, progress)),
            ]
    finally:
        torch.set_num_threads(threads)
    write_report("peft", sections)


if __name__ == "__main__":
    main()
