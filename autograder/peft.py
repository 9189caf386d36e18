"""Grading spec of chapter 05 (parameter-efficient fine-tuning): inputs, tolerances, mistakes.

Each exercise names the function or class of solutions/peft.py it grades. The
layers are built by the drivers of autograder/public/peft.py from plain
weights; their answers include which parameters stay trainable and what a
fresh layer computes (LoRA and adapters must start as the identity change).
The quantization cases are drawn so that no scaled weight lies within 1e-4 of
a midpoint between two NF4 levels: the nearest level never depends on rounding.
Hidden from students: it imports the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

import solutions.peft as ref
from autograder.core.cases import call_case, randn
from autograder.core.spec import Case, ChapterSpec, Exercise, Mistake, Tolerance

PUBLIC = "autograder.public.peft"
MIDPOINTS = (ref.NF4_LEVELS[1:] + ref.NF4_LEVELS[:-1]) / 2  # (15,)

# ------------------------------------------------------------------------- LoRALinear


def _lora_case(g: torch.Generator, label: str, n_in: int, n_out: int, bias: bool, x_shape, init):
    r = init.get("r", 8)
    case = {
        "label": label,
        "base_weight": randn(g, n_out, n_in, scale=1 / math.sqrt(n_in)),
        "init": init,
        "x": randn(g, *x_shape, n_in),
        "x_many": randn(g, 64, n_in),
        "state": {"lora_A": randn(g, r, n_in, scale=0.5), "lora_B": randn(g, n_out, r, scale=0.5)},
    }
    if bias:
        case["base_bias"] = randn(g, n_out, scale=0.3)
    return case


def _lora_cases(g: torch.Generator) -> list[Case]:
    return [
        _lora_case(
            g, "6 -> 5 with bias, r=2, alpha=4.0", 6, 5, True, (2, 3), {"r": 2, "alpha": 4.0}
        ),
        _lora_case(g, "8 -> 3 without bias, r=4, alpha=16.0", 8, 3, False, (4,), {"r": 4}),
        _lora_case(
            g,
            "5 -> 7, r=1, alpha=3.0, dropout=0.25 (off in eval mode)",
            5,
            7,
            True,
            (2, 2),
            {"r": 1, "alpha": 3.0, "dropout": 0.25},
        ),  # fmt: skip
    ]


class _WrongLoRA(ref.LoRALinear):
    scale = "alpha/r"  # "alpha/r", "alpha", "r/alpha"
    init_b = "zeros"  # "zeros", "random", "swap" (A zeros, B random)
    freeze = True
    merge_scaled = True
    drop = "lora"  # "lora", "both" (also the base path), "none"

    def __init__(self, base, r=8, alpha=16.0, dropout=0.0):
        super().__init__(base, r, alpha, dropout)
        self.scaling = {"alpha/r": alpha / r, "alpha": alpha, "r/alpha": r / alpha}[self.scale]
        with torch.no_grad():
            if self.init_b == "random":
                nn.init.kaiming_uniform_(self.lora_B, a=math.sqrt(5))
            if self.init_b == "swap":
                nn.init.kaiming_uniform_(self.lora_B, a=math.sqrt(5))
                self.lora_A.zero_()
        if not self.freeze:
            for p in self.base.parameters():
                p.requires_grad_(True)

    def forward(self, x):
        if self.drop == "lora":
            return super().forward(x)
        dropped = self.dropout(x) if self.drop == "both" else x
        return self.base(dropped) + self.scaling * (dropped @ self.lora_A.T @ self.lora_B.T)

    def merge(self):
        merged = super().merge()
        if not self.merge_scaled:
            with torch.no_grad():
                merged.weight.copy_(self.base.weight + self.lora_B @ self.lora_A)
        return merged


def _wrong_lora(**flags: Any) -> type:
    return type("WrongLoRA", (_WrongLoRA,), flags)


LORA = Exercise(
    name="LoRALinear",
    points=3,
    summary="frozen W x + b plus (alpha/r) B A x, B zeros at first; merge folds it into W",
    make_cases=_lora_cases,
    reference=lambda: ref.LoRALinear,
    driver=f"{PUBLIC}:lora_layer",
    output_names=(
        "fresh layer computes what the base layer does",
        "fresh layer in training mode computes what the base layer does",
        "lora_B gets a gradient at initialisation",
        "trainable parameters",
        "output",
        "merged weight",
        "merged output",
        "training mode (dropout) changes the LoRA path",
    ),
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    mistakes=(
        Mistake(
            "scaling_alpha",
            "your output matches scaling the update by alpha alone: the scaling is alpha / r, "
            "so that changing the rank does not change the size of the update.",
            _wrong_lora(scale="alpha"),
        ),
        Mistake(
            "scaling_r_over_alpha",
            "your output matches scaling the update by r / alpha: it is alpha / r.",
            _wrong_lora(scale="r/alpha"),
        ),
        Mistake(
            "b_random",
            "your layer changes the output before any training: lora_B must start at zeros "
            "(lora_A random), so that B A = 0 and the wrapped model is exactly the pretrained one.",
            _wrong_lora(init_b="random"),
        ),
        Mistake(
            "a_zeros",
            "your lora_B gets no gradient at the first step, which matches lora_A at zeros "
            "(B's gradient goes through x A^T): initialise lora_A at random (Kaiming-uniform, "
            "like nn.Linear) and lora_B at zeros, not the other way round.",
            _wrong_lora(init_b="swap"),
        ),
        Mistake(
            "base_trainable",
            "your layer leaves the base layer trainable: freeze base.weight and base.bias "
            "(requires_grad_(False)); only lora_A and lora_B learn.",
            _wrong_lora(freeze=False),
        ),
        Mistake(
            "dropout_on_base",
            "in training mode your layer changes the base layer's output too: apply dropout "
            "to the input of the LoRA path only, base(x) + scaling · (dropout(x) A^T B^T), so "
            "that the frozen layer computes what it was pretrained to compute.",
            _wrong_lora(drop="both"),
        ),
        Mistake(
            "dropout_ignored",
            "your layer ignores its dropout argument: in training mode apply nn.Dropout("
            "dropout) to the input of the LoRA path (eval mode turns it off by itself).",
            _wrong_lora(drop="none"),
        ),
        Mistake(
            "merge_unscaled",
            "your merged weight matches W + B A: merge must add the same update the forward "
            "adds, W + scaling · B A.",
            _wrong_lora(merge_scaled=False),
        ),
    ),
)

# ------------------------------------------------------------------------- apply_lora

TRANSFORMER = [
    ["embedding", "tok_emb", 11, 8],
    ["norm", "blocks.0.ln1", 8],
    ["linear", "blocks.0.attn.q_proj", 8, 8, True],
    ["linear", "blocks.0.attn.k_proj", 8, 8, True],
    ["linear", "blocks.0.attn.v_proj", 8, 8, True],
    ["linear", "blocks.0.attn.out_proj", 8, 8, True],
    ["linear", "blocks.0.ff.fc1", 8, 12, True],
    ["linear", "blocks.0.ff.fc2", 12, 8, True],
    ["linear", "blocks.1.attn.q_proj", 8, 8, False],
    ["linear", "blocks.1.attn.v_proj", 8, 8, False],
    ["norm", "ln_f", 8],
    ["linear", "lm_head", 8, 11, False],
    ["tie", "lm_head", "tok_emb"],
]
CROSS = [
    ["linear", "blocks.0.attn.c_proj", 6, 6, True],
    ["linear", "blocks.0.crossattn.c_proj", 6, 6, True],
    ["linear", "blocks.0.mlp.c_fc", 6, 10, True],
    ["linear", "blocks.0.mlp.c_proj", 10, 6, True],
    ["linear", "head", 6, 4, True],
]


def _apply_case(g: torch.Generator, label: str, layout, targets, r=8, alpha=None) -> Case:
    toy = {row[1]: row for row in layout if row[0] == "linear"}
    lora, inputs = {}, {}
    for name, (_, _, n_in, n_out, _) in toy.items():
        inputs[name] = randn(g, 3, n_in)
        lora[f"{name}.lora_A"] = randn(g, r, n_in, scale=0.5)
        lora[f"{name}.lora_B"] = randn(g, n_out, r, scale=0.5)
    kwargs = {} if alpha is None else {"r": r, "alpha": alpha}
    return {
        "label": label,
        "layout": layout,
        "args": [targets],
        "kwargs": kwargs,
        "lora": lora,
        "inputs": inputs,
    }


def _apply_cases(g: torch.Generator) -> list[Case]:
    return [
        _apply_case(g, "a transformer, targets q_proj and v_proj, r=2, alpha=8.0", TRANSFORMER,
                    ["q_proj", "v_proj"], r=2, alpha=8.0),
        _apply_case(g, 'GPT-2 names, targets "attn.c_proj" and "c_fc", r=3, alpha=3.0', CROSS,
                    ["attn.c_proj", "c_fc"], r=3, alpha=3.0),
        _apply_case(g, "a transformer, target fc1, default r and alpha", TRANSFORMER, ["fc1"]),
    ]  # fmt: skip


def _apply_variant(match: str = "dot", freeze: str = "others", pass_rank: bool = True) -> Callable:
    def apply_lora(model, target_modules, r=8, alpha=16.0):
        def hit(name):
            if match == "plain":
                return any(name.endswith(t) for t in target_modules)
            return any(name == t or name.endswith("." + t) for t in target_modules)

        names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and hit(n)]
        if freeze == "others":
            for p in model.parameters():
                p.requires_grad_(False)
        for name in names:
            parent, _, child = name.rpartition(".")
            parent = model.get_submodule(parent)
            layer = (
                ref.LoRALinear(getattr(parent, child), r, alpha)
                if pass_rank
                else (ref.LoRALinear(getattr(parent, child)))
            )
            setattr(parent, child, layer)
        if freeze == "everything":
            for p in model.parameters():
                p.requires_grad_(False)
        return model

    return apply_lora


APPLY = Exercise(
    name="apply_lora",
    points=2,
    summary="wrap the nn.Linear layers whose names end with a target, freeze everything else",
    make_cases=_apply_cases,
    reference=lambda: ref.apply_lora,
    driver=f"{PUBLIC}:lora_model",
    output_names=("wrapped layers", "trainable parameters", "outputs of the linear layers"),
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    depends_on=("LoRALinear",),
    mistakes=(
        Mistake(
            "plain_endswith",
            "your answer wraps layers whose name ends with a target only as a string "
            '("blocks.0.crossattn.c_proj" for the target "attn.c_proj"): match at a dot '
            'boundary, name == target or name.endswith("." + target).',
            _apply_variant(match="plain"),
        ),
        Mistake(
            "others_trainable",
            "your answer leaves the rest of the model trainable: freeze every parameter of the "
            "model (embeddings, norms, the layers not targeted), so only lora_A and lora_B learn.",
            _apply_variant(freeze="none"),
        ),
        Mistake(
            "lora_frozen",
            "your answer leaves nothing trainable: freeze the model's parameters BEFORE "
            "wrapping, so the new lora_A and lora_B stay trainable.",
            _apply_variant(freeze="everything"),
        ),
        Mistake(
            "rank_not_passed",
            "your wrapped layers use the default r and alpha: pass r and alpha on to every "
            "LoRALinear.",
            _apply_variant(pass_rank=False),
        ),
    ),
)

# -------------------------------------------------------------------- count_parameters

COUNT_LAYOUTS = {
    "tied embedding and output layer, a buffer, two frozen tensors": [
        *TRANSFORMER,
        ["buffer", "mask", 64],
        ["freeze", "tok_emb.weight"],
        ["freeze", "blocks.0.ln1.bias"],
    ],
    "no tying, everything frozen but one bias": [
        *CROSS,
        ["buffer", "running_mean", 6],
        *(
            ["freeze", f"{row[1]}.{p}"]
            for row in CROSS
            for p in ("weight", "bias")
            if row[1] != "head" or p != "bias"
        ),
    ],
}


def _count_variant(kind: str) -> Callable:
    def count(model, trainable_only=False):
        if kind == "state_dict":
            items = model.state_dict().values()
            return sum(t.numel() for t in items)
        params = [p for _, p in model.named_parameters(remove_duplicate=kind != "tied_twice")]
        if kind == "ignore_flag":
            return sum(p.numel() for p in params)
        if kind == "tensors":
            return sum(1 for p in params if p.requires_grad or not trainable_only)
        return sum(p.numel() for p in params if p.requires_grad or not trainable_only)

    return count


COUNT = Exercise(
    name="count_parameters",
    points=1,
    summary="the number of scalars in the parameters (shared ones once), or the trainable ones",
    make_cases=lambda g: [{"label": k, "layout": v} for k, v in COUNT_LAYOUTS.items()],
    reference=lambda: ref.count_parameters,
    driver=f"{PUBLIC}:parameter_counts",
    output_names=("all parameters", "trainable parameters"),
    tolerance=Tolerance(0.0, 0.0),
    mistakes=(
        Mistake(
            "tied_twice",
            "your count matches counting a shared (tied) weight twice: model.parameters() "
            "yields each tensor once; count that.",
            _count_variant("tied_twice"),
        ),
        Mistake(
            "buffers",
            "your count matches summing the state_dict, buffers included (and tied weights "
            "twice): count model.parameters() only.",
            _count_variant("state_dict"),
        ),
        Mistake(
            "ignore_flag",
            "your trainable count includes frozen parameters: with trainable_only=True count "
            "only the parameters with requires_grad.",
            _count_variant("ignore_flag"),
        ),
        Mistake(
            "tensors",
            "your count matches the number of parameter tensors: count their scalars (p.numel()).",
            _count_variant("tensors"),
        ),
    ),
)

# ---------------------------------------------------------------------------- Adapter


def _adapter_case(g: torch.Generator, label: str, d: int, b: int, x_shape) -> Case:
    return {
        "label": label,
        "init": {"d_model": d, "bottleneck": b},
        "x": randn(g, *x_shape, d),
        "state": {
            "down.weight": randn(g, b, d, scale=1.5 / math.sqrt(d)),
            "down.bias": randn(g, b, scale=0.5),
            "up.weight": randn(g, d, b, scale=1 / math.sqrt(b)),
            "up.bias": randn(g, d, scale=0.3),
        },
    }


def _adapter_cases(g: torch.Generator) -> list[Case]:
    return [
        _adapter_case(g, "d_model 8, bottleneck 3, x (2, 5, 8)", 8, 3, (2, 5)),
        _adapter_case(g, "d_model 6, bottleneck 6, x (4, 6)", 6, 6, (4,)),
    ]


class _WrongAdapter(ref.Adapter):
    residual = True
    act = "gelu"  # "gelu", "relu", "tanh_gelu"
    zero_up = True

    def __init__(self, d_model, bottleneck):
        super().__init__(d_model, bottleneck)
        if not self.zero_up:
            self.up = nn.Linear(bottleneck, d_model)

    def forward(self, x):
        h = self.down(x)
        h = {
            "gelu": F.gelu(h),
            "relu": F.relu(h),
            "tanh_gelu": F.gelu(h, approximate="tanh"),
        }[self.act]
        return x + self.up(h) if self.residual else self.up(h)


def _wrong_adapter(**flags: Any) -> type:
    return type("WrongAdapter", (_WrongAdapter,), flags)


ADAPTER = Exercise(
    name="Adapter",
    points=2,
    summary="x + up(gelu(down(x))), with up at zeros so it starts as the identity",
    make_cases=_adapter_cases,
    reference=lambda: ref.Adapter,
    driver=f"{PUBLIC}:adapter_forward",
    output_names=("fresh adapter returns its input", "output"),
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    mistakes=(
        Mistake(
            "no_residual",
            "your output matches up(gelu(down(x))) without the residual: return x + that, so "
            "the adapter only adds a correction to what the layer computes.",
            _wrong_adapter(residual=False),
        ),
        Mistake(
            "relu",
            "your output matches a ReLU in the bottleneck: use the exact GELU, F.gelu.",
            _wrong_adapter(act="relu"),
        ),
        Mistake(
            "tanh_gelu",
            "your output matches the tanh approximation of GELU: use the exact form, F.gelu "
            "with its default approximate='none'.",
            _wrong_adapter(act="tanh_gelu"),
        ),
        Mistake(
            "not_identity",
            "your fresh adapter changes its input: initialise up's weight and bias at zeros so "
            "the adapter starts as the identity (the pretrained model is unchanged at step 0).",
            _wrong_adapter(zero_up=False),
        ),
    ),
)

# ------------------------------------------------------------------------- SoftPrompt


def _prompt_case(g: torch.Generator, label: str, n: int, d: int, B: int, L: int) -> Case:
    return {
        "label": label,
        "init": {"n_tokens": n, "d_model": d},
        "state": {"prompt": randn(g, n, d)},
        "embeds": randn(g, B, L, d),
        "probe": randn(g, B, n + L, d),
    }


class _WrongPrompt(ref.SoftPrompt):
    where = "before"  # "before", "after"
    detach = False

    def forward(self, embeds):
        prompt = (self.prompt.detach() if self.detach else self.prompt).expand(
            embeds.shape[0], -1, -1
        )
        parts = [prompt, embeds] if self.where == "before" else [embeds, prompt]
        return torch.cat(parts, dim=1)


def _wrong_prompt(**flags: Any) -> type:
    return type("WrongPrompt", (_WrongPrompt,), flags)


PROMPT = Exercise(
    name="SoftPrompt",
    points=1,
    summary="concatenate n_tokens trained vectors before the embeddings of every sequence",
    make_cases=lambda g: [
        _prompt_case(g, "3 virtual tokens, embeds (2, 5, 4)", 3, 4, 2, 5),
        _prompt_case(g, "1 virtual token, embeds (3, 2, 6)", 1, 6, 3, 2),
    ],
    reference=lambda: ref.SoftPrompt,
    driver=f"{PUBLIC}:soft_prompt_forward",
    output_names=("output", "gradient wrt prompt"),
    tolerance=Tolerance(atol=1e-6, rtol=1e-5),
    mistakes=(
        Mistake(
            "after",
            "your output puts the prompt after the embeddings: the virtual tokens come first, "
            "torch.cat([prompt, embeds], dim=1).",
            _wrong_prompt(where="after"),
        ),
        Mistake(
            "detached",
            "your output has the right values but no gradient reaches the prompt: build it "
            "from self.prompt with differentiable operations (expand, cat), no .detach() or "
            ".data.",
            _wrong_prompt(detach=True),
        ),
    ),
)

# ------------------------------------------------------------------------ quantize_nf4


def nf4_friendly(
    g: torch.Generator, *shape: int, block_size: int, scale: float = 1.0, outlier: float = 0.0
):
    """Normal weights whose scaled values all lie >= 1e-4 away from an NF4 midpoint.

    A non-zero ``outlier`` replaces the sixth value before the check.
    """
    for _ in range(100):
        w = randn(g, *shape, scale=scale)
        if outlier:
            w.view(-1)[5] = outlier
        blocks = w.reshape(-1, block_size)
        scaled = blocks / blocks.abs().amax(1, keepdim=True).clamp_min(1e-30)
        if (scaled[..., None] - MIDPOINTS).abs().min() > 1e-4:
            return w
    raise RuntimeError("could not draw weights away from the NF4 midpoints")


def _quantize_cases(g: torch.Generator) -> list[Case]:
    zeros_first = nf4_friendly(g, 2, 64, block_size=64)
    zeros_first[0] = 0.0
    # an outlier: its block's other values crowd near 0
    heavy = nf4_friendly(g, 128, block_size=16, scale=0.02, outlier=0.3)
    return [
        call_case("w (8, 16), block_size 64", nf4_friendly(g, 8, 16, block_size=64)),
        call_case(
            "w (4, 24), block_size 32: blocks run across rows",
            nf4_friendly(g, 4, 24, block_size=32, scale=3.0),
            block_size=32,
        ),
        call_case("w (2, 64), the first block all zeros", zeros_first),
        call_case("w (128,), block_size 16, an outlier", heavy, 16),
    ]


def _quantize_variant(kind: str) -> Callable:
    def quantize(w, block_size=64):
        flat = w.mT.reshape(-1) if kind == "column_major" and w.dim() == 2 else w.reshape(-1)
        blocks = flat.reshape(1, -1) if kind == "global" else flat.reshape(-1, block_size)
        absmax = blocks.amax(1) if kind == "signed_max" else blocks.abs().amax(1)
        scaled = blocks / absmax.clamp_min(1e-30)[:, None]
        if kind == "uniform":
            levels = torch.linspace(-1, 1, 16, dtype=w.dtype)
        else:
            levels = ref.NF4_LEVELS.to(w.dtype)
        if kind == "floor":
            codes = (torch.searchsorted(levels, scaled.contiguous(), right=True) - 1).clamp(0, 15)
        else:
            codes = (scaled[..., None] - levels).abs().argmin(-1)
        if kind == "global":
            absmax = absmax.expand(w.numel() // block_size).contiguous()
        return codes.reshape(-1).to(torch.uint8), absmax

    return quantize


QUANTIZE = Exercise(
    name="quantize_nf4",
    points=2,
    summary="per block of block_size values: divide by the absmax, take the nearest NF4 level",
    make_cases=_quantize_cases,
    reference=lambda: ref.quantize_nf4,
    output_names=("codes", "absmax"),
    tolerance=Tolerance(atol=0.0, rtol=0.0),
    mistakes=(
        Mistake(
            "global",
            "your codes match one absmax for the whole tensor: every block of block_size "
            "consecutive values has its own scale (return one absmax per block).",
            _quantize_variant("global"),
        ),
        Mistake(
            "column_major",
            "your codes match blocks taken down the columns: flatten w in row-major order "
            "(w.reshape(-1)) and cut that into blocks.",
            _quantize_variant("column_major"),
        ),
        Mistake(
            "signed_max",
            "your answer matches the largest value of each block as its scale: the scale is "
            "the largest ABSOLUTE value, so every scaled value is in [-1, 1].",
            _quantize_variant("signed_max"),
        ),
        Mistake(
            "uniform",
            "your codes match 16 evenly spaced levels: use the NF4_LEVELS, which are denser "
            "near 0 where normal weights are.",
            _quantize_variant("uniform"),
        ),
        Mistake(
            "floor",
            "your codes match the level just below each value: take the NEAREST level (argmin "
            "of the absolute difference).",
            _quantize_variant("floor"),
        ),
    ),
)

# ---------------------------------------------------------------------- dequantize_nf4


def _dequantize_case(g: torch.Generator, label: str, shape, block_size: int) -> Case:
    n = math.prod(shape)
    codes = torch.randint(16, (n,), generator=g).to(torch.uint8)
    absmax = torch.rand(n // block_size, generator=g) * 2 + 0.1
    if block_size == 64 and "default" in label:  # block_size omitted: the documented 64
        return call_case(label, codes, absmax, shape)
    return call_case(label, codes, absmax, shape, block_size)


def _dequantize_variant(kind: str) -> Callable:
    def dequantize(codes, absmax, shape, block_size=64):
        levels = torch.linspace(-1, 1, 16) if kind == "uniform" else ref.NF4_LEVELS
        values = levels.to(absmax.dtype)[codes.long()]
        if kind == "tiled":
            scale = absmax.repeat(codes.numel() // absmax.numel())
        else:
            scale = absmax.repeat_interleave(block_size)
        if kind == "no_scale":
            scale = torch.ones_like(scale)
        return (values * scale).reshape(shape)

    return dequantize


DEQUANTIZE = Exercise(
    name="dequantize_nf4",
    points=1,
    summary="NF4_LEVELS[code] times the absmax of the code's block, reshaped",
    make_cases=lambda g: [
        _dequantize_case(g, "(8, 16), block_size 64", (8, 16), 64),
        _dequantize_case(g, "(4, 48), the default block_size", (4, 48), 64),
        _dequantize_case(g, "(3, 32), block_size 16", (3, 32), 16),
        _dequantize_case(g, "(2, 2, 12), block_size 8", (2, 2, 12), 8),
    ],
    reference=lambda: ref.dequantize_nf4,
    tolerance=Tolerance(atol=1e-6, rtol=1e-6),
    mistakes=(
        Mistake(
            "tiled",
            "your weights match the absmax values repeated as a whole (absmax.repeat): value "
            "i belongs to block i // block_size, so each absmax covers block_size consecutive "
            "values (repeat_interleave, or a view (n_blocks, block_size)).",
            _dequantize_variant("tiled"),
        ),
        Mistake(
            "uniform",
            "your weights match 16 evenly spaced levels: look the codes up in NF4_LEVELS.",
            _dequantize_variant("uniform"),
        ),
        Mistake(
            "no_scale",
            "your weights are the levels themselves: multiply each by its block's absmax.",
            _dequantize_variant("no_scale"),
        ),
    ),
)

# ------------------------------------------------------------------------ QLoRALinear


def _qlora_case(g, label, n_in, n_out, bias, x_shape, init) -> Case:
    case = _lora_case(g, label, n_in, n_out, bias, x_shape, init)
    block = init.get("block_size", 64)
    case["base_weight"] = nf4_friendly(g, n_out, n_in, block_size=block, scale=1 / math.sqrt(n_in))
    return case


class _WrongQLoRA(ref.QLoRALinear):
    quantized = True
    keep_weight = False
    scale = "alpha/r"
    init_b = "zeros"

    def __init__(self, base, r=8, alpha=16.0, block_size=64):
        super().__init__(base, r, alpha, block_size)
        if not self.quantized or self.keep_weight:
            self.register_buffer("weight", base.weight.detach().clone())
        if self.scale == "alpha":
            self.scaling = alpha
        if self.init_b == "random":
            with torch.no_grad():
                nn.init.kaiming_uniform_(self.lora_B, a=math.sqrt(5))

    def forward(self, x):
        if self.quantized:
            return super().forward(x)
        return F.linear(x, self.weight, self.bias) + self.scaling * (
            x @ self.lora_A.T @ self.lora_B.T
        )


def _wrong_qlora(**flags: Any) -> type:
    return type("WrongQLoRA", (_WrongQLoRA,), flags)


QLORA = Exercise(
    name="QLoRALinear",
    points=2,
    summary="LoRA on a base weight kept only as NF4 codes and block scales",
    make_cases=lambda g: [
        _qlora_case(
            g, "16 -> 8 with bias, r=2, alpha=4.0", 16, 8, True, (3,), {"r": 2, "alpha": 4.0}
        ),
        _qlora_case(
            g,
            "32 -> 4 without bias, r=4, alpha=8.0, block_size=32",
            32,
            4,
            False,
            (2, 3),
            {"r": 4, "alpha": 8.0, "block_size": 32},
        ),
    ],  # fmt: skip
    reference=lambda: ref.QLoRALinear,
    driver=f"{PUBLIC}:qlora_layer",
    output_names=(
        "fresh layer computes what it does with lora_B at zeros",
        "trainable parameters",
        "state_dict keys",
        "output with lora_B at zeros",
        "output",
    ),
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    depends_on=("quantize_nf4", "dequantize_nf4"),
    mistakes=(
        Mistake(
            "not_quantized",
            "your output matches the full-precision base weight: the layer computes with the "
            "NF4 weight, dequantize_nf4(codes, absmax, ...), and keeps only codes and absmax.",
            _wrong_qlora(quantized=False),
        ),
        Mistake(
            "weight_kept",
            "your layer still stores the full-precision weight: keep only the buffers codes, "
            "absmax (and bias); dropping the 32-bit weight is what saves the memory.",
            _wrong_qlora(keep_weight=True),
        ),
        Mistake(
            "scaling_alpha",
            "your output matches scaling the update by alpha alone: the scaling is alpha / r.",
            _wrong_qlora(scale="alpha"),
        ),
        Mistake(
            "b_random",
            "your layer changes the output before any training: lora_B starts at zeros.",
            _wrong_qlora(init_b="random"),
        ),
    ),
)

SPEC = ChapterSpec(
    number="05",
    slug="peft",
    title="Parameter-efficient fine-tuning",
    exercises=(LORA, APPLY, COUNT, ADAPTER, PROMPT, QUANTIZE, DEQUANTIZE, QLORA),
)
