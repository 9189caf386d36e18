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
from autograder.core.spec import ALL_CASES, Case, ChapterSpec, Exercise, Mistake, Promise, Tolerance

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
        {**_lora_case(g, LORA_DEFAULTS, 64, 16, True, (3,), {}), "check_init": True},
    ]


# r and alpha omitted (8 and 16.0); lora_A is 8 x 64 = 512 draws, enough to tell its
# distribution (see the power statement below).
LORA_DEFAULTS = "64 -> 16 with bias, r and alpha by default: lora_A Kaiming-uniform"


class _WrongLoRA(ref.LoRALinear):
    scale = "alpha/r"  # "alpha/r", "alpha", "r/alpha"
    init_b = "zeros"  # "zeros", "random", "swap" (A zeros, B random)
    init_a = "kaiming"  # "kaiming", "normal" (std 0.02)
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
            if self.init_a == "normal":
                nn.init.normal_(self.lora_A, std=0.02)
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
        "attributes",
        "fresh lora_A is Kaiming-uniform like nn.Linear",
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
        Mistake(
            "a_normal",
            "your fresh lora_A is not drawn as nn.Linear draws its weight: initialise it with "
            "nn.init.kaiming_uniform_(lora_A, a=math.sqrt(5)), uniform on "
            "[-1/sqrt(in_features), 1/sqrt(in_features)] (a normal with std 0.02 is the other "
            "common choice, but this layer promises Kaiming-uniform).",
            _wrong_lora(init_a="normal"),
        ),
    ),
    promises=(
        Promise("A frozen linear layer plus a trainable low-rank update", ALL_CASES),
        Promise("its weight and bias frozen (requires_grad False)", ALL_CASES),
        Promise("lora_A: Parameter (r, in_features), random (Kaiming-uniform", (LORA_DEFAULTS,)),
        Promise(
            "lora_B: Parameter (out_features, r), zeros: the layer starts as ``base``.", ALL_CASES
        ),
        Promise(
            "applied to the input of the LoRA path only",
            ("5 -> 7, r=1, alpha=3.0, dropout=0.25 (off in eval mode)",),
        ),
        Promise("in_features, out_features: those of base", ALL_CASES),
        Promise("r, alpha, scaling: as given, scaling = alpha / r.", ALL_CASES),
        Promise("base: the pretrained layer (in_features -> out_features).", ALL_CASES),
        Promise(
            "r: rank of the update, >= 1.",
            ("5 -> 7, r=1, alpha=3.0, dropout=0.25 (off in eval mode)", LORA_DEFAULTS),
        ),
        Promise(
            "alpha: the update is multiplied by alpha / r.",
            (
                "6 -> 5 with bias, r=2, alpha=4.0",
                "8 -> 3 without bias, r=4, alpha=16.0",
                LORA_DEFAULTS,
            ),
        ),
        Promise(
            "dropout: dropout probability on the LoRA path, in [0, 1).",
            (
                "5 -> 7, r=1, alpha=3.0, dropout=0.25 (off in eval mode)",
                "6 -> 5 with bias, r=2, alpha=4.0",
            ),
        ),
        Promise("x (..., in_features) -> (..., out_features).", ALL_CASES),
        Promise(
            "A new ``nn.Linear`` with weight W + scaling · B A (same bias)",
            ALL_CASES,
        ),
    ),
    power="lora_A's initialisation is checked on 512 draws (r = 8, in_features = 64) against "
    "U[-b, b], b = 1/sqrt(64): every |value| <= b and the sample std within 20% of b/sqrt(3). "
    "Honest answer: the std's relative standard error is sqrt(0.8/512)/2 = 0.020, so the 20% "
    "band is 10 standard errors, P(false alarm) < 1e-20. Wrong answers: a normal with std "
    "0.02 (0.28 times the target's std 0.072), nn.init.kaiming_uniform_ with its default a = 0 "
    "(bound sqrt(6/64), P(all 512 within b) = (1/sqrt 6)^512), a normal with std b, "
    "xavier_uniform, lora_A at zeros: each fails with probability > 1 - 1e-20 (simulated "
    "once, 10000 seeded draws per answer: 0 honest ones flagged, every wrong one).",
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
        _apply_case(g, APPLY_WHOLE_NAME, CROSS, ["head", "mlp.c_proj"], r=2, alpha=2.0),
    ]  # fmt: skip


APPLY_WHOLE_NAME = 'GPT-2 names, targets "head" (a whole name) and "mlp.c_proj", r=2, alpha=2.0'


def _apply_variant(match: str = "dot", freeze: str = "others", pass_rank: bool = True) -> Callable:
    def apply_lora(model, target_modules, r=8, alpha=16.0):
        def hit(name):
            if match == "plain":
                return any(name.endswith(t) for t in target_modules)
            if match == "dot_only":
                return any(name.endswith("." + t) for t in target_modules)
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
    output_names=(
        "wrapped layers",
        "trainable parameters",
        "outputs of the linear layers",
        "returns the model it was given",
    ),
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
        Mistake(
            "dot_only",
            'your answer does not wrap a layer whose whole name equals a target ("head"): a '
            'layer is targeted when name == target or name.endswith("." + target).',
            _apply_variant(match="dot_only"),
        ),
    ),
    promises=(
        Promise("Wrap the targeted ``nn.Linear`` layers of ``model`` in ``LoRALinear``", ALL_CASES),
        Promise(
            "ends with one of ``target_modules`` at a dot boundary",
            (
                "a transformer, targets q_proj and v_proj, r=2, alpha=8.0",
                'GPT-2 names, targets "attn.c_proj" and "c_fc", r=3, alpha=3.0',
                APPLY_WHOLE_NAME,
            ),
        ),
        Promise("Every parameter of the model is frozen, then only the new", ALL_CASES),
        Promise("The model is changed in place and returned.", ALL_CASES),
        Promise("model: any module.", ALL_CASES),
        Promise("target_modules: non-empty list of name suffixes.", ALL_CASES),
        Promise(
            "r, alpha: passed to every ``LoRALinear``.",
            (
                "a transformer, targets q_proj and v_proj, r=2, alpha=8.0",
                "a transformer, target fc1, default r and alpha",
            ),
        ),
        Promise("model.", ALL_CASES),
    ),
)

# -------------------------------------------------------------------- count_parameters

COUNT_TIED = "tied embedding and output layer, a buffer, two frozen tensors"
COUNT_LAYOUTS = {
    COUNT_TIED: [
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
    promises=(
        Promise("The number of scalars in the parameters of ``model``", ALL_CASES),
        Promise("(a shared tensor counts once)", (COUNT_TIED,)),
        Promise("Buffers are not parameters and are not counted.", ALL_CASES),
        Promise(
            "With ``trainable_only`` only the parameters with ``requires_grad`` count.", ALL_CASES
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
        {**_adapter_case(g, ADAPTER_INIT, 64, 8, (3,)), "check_init": True},
    ]


# down is 8 x 64 = 512 draws, enough to tell its distribution (see the power statement).
ADAPTER_INIT = "d_model 64, bottleneck 8: down has nn.Linear's default initialisation"


class _WrongAdapter(ref.Adapter):
    residual = True
    act = "gelu"  # "gelu", "relu", "tanh_gelu"
    zero_up = True
    zero_down = False

    def __init__(self, d_model, bottleneck):
        super().__init__(d_model, bottleneck)
        if not self.zero_up:
            self.up = nn.Linear(bottleneck, d_model)
        if self.zero_down:
            nn.init.zeros_(self.down.weight)
            nn.init.zeros_(self.down.bias)

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
    output_names=(
        "fresh adapter returns its input",
        "output",
        "fresh down layer has nn.Linear's default initialisation",
    ),
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
        Mistake(
            "down_zeros",
            "your fresh down layer is at zeros: only up starts at zeros; down keeps nn.Linear's "
            "default initialisation (with both at zeros, up's weight gets no gradient: "
            "gelu(down(x)) = 0).",
            _wrong_adapter(zero_down=True),
        ),
    ),
    promises=(
        Promise("A residual bottleneck adapter: x + up(gelu(down(x)))", ALL_CASES),
        Promise("the identity at initialisation", ALL_CASES),
        Promise(
            "down: ``nn.Linear(d_model, bottleneck)``, default initialisation.", (ADAPTER_INIT,)
        ),
        Promise("up: ``nn.Linear(bottleneck, d_model)``, weight and bias zeros.", ALL_CASES),
        Promise("The activation is the exact GELU", ALL_CASES),
        Promise("d_model: width of the input and the output.", ALL_CASES),
        Promise(
            "bottleneck: hidden width, >= 1",
            ("d_model 8, bottleneck 3, x (2, 5, 8)", "d_model 6, bottleneck 6, x (4, 6)"),
        ),
        Promise("x (..., d_model) -> (..., d_model).", ALL_CASES),
    ),
    power="down's initialisation is checked on 512 draws (bottleneck 8, d_model 64) against "
    "nn.Linear's U[-b, b], b = 1/sqrt(64): every |value| <= b and the sample std within 20% of "
    "b/sqrt(3), 10 standard errors: P(false alarm) < 1e-20; down at zeros, a normal with std "
    "0.02 or nn.init.kaiming_uniform_ with a = 0 fail with probability > 1 - 1e-20 "
    "(simulated once, 10000 seeded draws per answer: 0 honest ones flagged, every wrong one).",
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


# 32 x 64 = 2048 draws, enough to tell N(0, 0.02^2) (see the power statement).
PROMPT_INIT = "32 virtual tokens, d_model 64: prompt ~ N(0, 0.02^2) at first"


class _WrongPrompt(ref.SoftPrompt):
    where = "before"  # "before", "after"
    detach = False
    init_std = 0.02

    def __init__(self, n_tokens, d_model):
        super().__init__(n_tokens, d_model)
        if self.init_std != 0.02:
            with torch.no_grad():
                self.prompt.normal_(0.0, self.init_std)

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
        {**_prompt_case(g, PROMPT_INIT, 32, 64, 2, 3), "check_init": True},
    ],
    reference=lambda: ref.SoftPrompt,
    driver=f"{PUBLIC}:soft_prompt_forward",
    output_names=("output", "gradient wrt prompt", "fresh prompt ~ N(0, 0.02^2)"),
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
        Mistake(
            "randn",
            "your fresh prompt is not drawn from a normal with std 0.02: initialise it as "
            "0.02 * torch.randn(n_tokens, d_model) (std 1 is far larger than the embeddings').",
            _wrong_prompt(init_std=1.0),
        ),
    ),
    promises=(
        Promise("trained vectors put before the input embeddings", ALL_CASES),
        Promise("normal with std 0.02 at initialisation", (PROMPT_INIT,)),
        Promise("prompt: Parameter (n_tokens, d_model)", ALL_CASES),
        Promise(
            "n_tokens: number of virtual tokens, >= 1.",
            ("3 virtual tokens, embeds (2, 5, 4)", "1 virtual token, embeds (3, 2, 6)"),
        ),
        Promise("d_model: embedding width.", ALL_CASES),
        Promise("the prompt first", ALL_CASES),
    ),
    power="the fresh prompt is checked on 2048 draws against N(0, 0.02^2): sample std within "
    "20% of 0.02 (14 standard errors of 1/sqrt(2n) = 0.016), |mean| <= 5 standard errors, "
    "kurtosis > 2.4 (a normal's is 3, its standard error sqrt(24/n) = 0.108: 5.5 of them). "
    "Honest answer: P(false alarm) about 6e-7, from the mean bound (5 standard errors, "
    "two-sided) and the kurtosis bound (2e-8). Wrong answers: std 1 (torch.randn without "
    "0.02), zeros, uniform on [-0.02, 0.02] (std 0.0115) fail with probability > 1 - 1e-20 "
    "(simulated once, 10000 seeded draws per answer: 0 honest ones flagged, every wrong one).",
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
    promises=(
        Promise("4-bit NormalFloat quantization with one absmax scale per block.", ALL_CASES),
        Promise(
            "``w`` is flattened (row-major) and cut into blocks",
            ("w (4, 24), block_size 32: blocks run across rows",),
        ),
        Promise("the index of the nearest of the 16 ``NF4_LEVELS``", ALL_CASES),
        Promise(
            "A block of zeros has absmax 0 and codes 7 (the level 0.0).",
            ("w (2, 64), the first block all zeros",),
        ),
        Promise("One code per byte here", ALL_CASES),
        Promise("w: any shape, numel a multiple of block_size, floating point.", ALL_CASES),
        Promise(
            "block_size: values per block, >= 1.",
            ("w (8, 16), block_size 64", "w (4, 24), block_size 32: blocks run across rows"),
        ),
        Promise("codes: (numel,) uint8 in [0, 15].", ALL_CASES),
        Promise("absmax: (numel // block_size,) in w's dtype.", ALL_CASES),
    ),
)

# ---------------------------------------------------------------------- dequantize_nf4


DEQUANTIZE_INT64 = "(5, 16), block_size 16, int64 codes"


def _dequantize_case(g: torch.Generator, label: str, shape, block_size: int) -> Case:
    n = math.prod(shape)
    codes = torch.randint(16, (n,), generator=g)  # int64
    if "int64" not in label:
        codes = codes.to(torch.uint8)
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
        _dequantize_case(g, DEQUANTIZE_INT64, (5, 16), 16),
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
    promises=(
        Promise("NF4_LEVELS[code] times its block's absmax", ALL_CASES),
        Promise(
            "codes: (numel,) integers in [0, 15].",
            ("(8, 16), block_size 64", DEQUANTIZE_INT64),
        ),
        Promise("absmax: (numel // block_size,), floating point.", ALL_CASES),
        Promise("shape: the shape of the weight", ALL_CASES),
        Promise(
            "block_size: as used to quantize.",
            ("(4, 48), the default block_size", "(3, 32), block_size 16"),
        ),
        Promise("w: tensor of ``shape`` in absmax's dtype.", ALL_CASES),
    ),
)

# ------------------------------------------------------------------------ QLoRALinear


def _qlora_case(g, label, n_in, n_out, bias, x_shape, init) -> Case:
    case = _lora_case(g, label, n_in, n_out, bias, x_shape, init)
    block = init.get("block_size", 64)
    case["base_weight"] = nf4_friendly(g, n_out, n_in, block_size=block, scale=1 / math.sqrt(n_in))
    return case


# r, alpha and block_size omitted (8, 16.0, 64); lora_A is 8 x 64 = 512 draws.
QLORA_DEFAULTS = "64 -> 16 with bias, r, alpha and block_size by default: lora_A Kaiming-uniform"


class _WrongQLoRA(ref.QLoRALinear):
    quantized = True
    keep_weight = False
    scale = "alpha/r"
    init_b = "zeros"
    init_a = "kaiming"
    codes_dtype = torch.uint8

    def __init__(self, base, r=8, alpha=16.0, block_size=64):
        super().__init__(base, r, alpha, block_size)
        if not self.quantized or self.keep_weight:
            self.register_buffer("weight", base.weight.detach().clone())
        if self.scale == "alpha":
            self.scaling = alpha
        if self.init_b == "random":
            with torch.no_grad():
                nn.init.kaiming_uniform_(self.lora_B, a=math.sqrt(5))
        if self.init_a == "normal":
            with torch.no_grad():
                nn.init.normal_(self.lora_A, std=0.02)
        self.codes = self.codes.to(self.codes_dtype)

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
        {**_qlora_case(g, QLORA_DEFAULTS, 64, 16, True, (2,), {}), "check_init": True},
    ],  # fmt: skip
    reference=lambda: ref.QLoRALinear,
    driver=f"{PUBLIC}:qlora_layer",
    output_names=(
        "fresh layer computes what it does with lora_B at zeros",
        "trainable parameters",
        "state_dict keys",
        "output with lora_B at zeros",
        "output",
        "buffers (shape, dtype)",
        "attributes",
        "fresh lora_A is Kaiming-uniform like nn.Linear",
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
        Mistake(
            "codes_int64",
            "your codes buffer is not uint8: store the NF4 codes one per byte (torch.uint8), "
            "8 times less memory than int64.",
            _wrong_qlora(codes_dtype=torch.int64),
        ),
        Mistake(
            "a_normal",
            "your fresh lora_A is not Kaiming-uniform like LoRALinear's: "
            "nn.init.kaiming_uniform_(lora_A, a=math.sqrt(5)).",
            _wrong_qlora(init_a="normal"),
        ),
    ),
    promises=(
        Promise(
            "LoRA on a base weight stored in NF4: dequantize(W) x + b + (alpha/r) B A x.", ALL_CASES
        ),
        Promise("The base weight is quantized once, at construction", ALL_CASES),
        Promise("codes: buffer (out_features * in_features,) uint8", ALL_CASES),
        Promise(
            "absmax: buffer (out_features * in_features // block_size,), W's dtype.", ALL_CASES
        ),
        Promise(
            "bias: buffer (out_features,) copied from base (absent if base has none)",
            (
                "16 -> 8 with bias, r=2, alpha=4.0",
                "32 -> 4 without bias, r=4, alpha=8.0, block_size=32",
            ),
        ),
        Promise(
            "lora_A: Parameter (r, in_features), Kaiming-uniform like ``LoRALinear``.",
            (QLORA_DEFAULTS,),
        ),
        Promise("lora_B: Parameter (out_features, r), zeros.", ALL_CASES),
        Promise(
            "in_features, out_features, r, alpha, scaling (= alpha / r), block_size.", ALL_CASES
        ),
        Promise(
            "its weight's numel must be a multiple of block_size",
            why="a precondition on the caller's base layer (the docstring promises no error); "
            "every case's base layer is quantized and checked through the outputs",
        ),
        Promise(
            "r: rank of the update, >= 1.",
            ("16 -> 8 with bias, r=2, alpha=4.0", QLORA_DEFAULTS),
        ),
        Promise(
            "alpha: the update is multiplied by alpha / r.",
            ("16 -> 8 with bias, r=2, alpha=4.0", QLORA_DEFAULTS),
        ),
        Promise(
            "block_size: values per absmax block.",
            ("32 -> 4 without bias, r=4, alpha=8.0, block_size=32", QLORA_DEFAULTS),
        ),
        Promise("x (..., in_features) -> (..., out_features).", ALL_CASES),
    ),
    power="lora_A's initialisation is checked on 512 draws (r = 8, in_features = 64), as for "
    "LoRALinear: P(false alarm) < 1e-20; a normal with std 0.02, kaiming_uniform_ with a = 0 or "
    "zeros fail with probability > 1 - 1e-20 (simulated once, 10000 seeded draws per answer: "
    "0 honest ones flagged, every wrong one).",
)

SPEC = ChapterSpec(
    number="05",
    slug="peft",
    title="Parameter-efficient fine-tuning",
    exercises=(LORA, APPLY, COUNT, ADAPTER, PROMPT, QUANTIZE, DEQUANTIZE, QLORA),
)
