"""Grading spec of chapter 09 (inference acceleration): inputs, tolerances, usual mistakes.

Quantizers, ``Int8Linear``, ``distillation_loss`` and ``flash_attention`` are compared
with the reference (integers exactly, floats with a tolerance per operation);
``flash_attention`` must also compute a long causal case without any tensor
near the size of the (Lq, Lk) scores (a dispatch mode records every tensor).
The KV-cache exercises run the public ``course.model.CourseGPT`` with random
weights; ``generate_with_kv_cache`` must also embed each token only once.
``speculative_decode`` is random: a checker compares it exactly at temperature 0
(the target's greedy tokens and the counts), checks that the target used as its
own draft accepts everything with a bonus token per round (its tokens compared
exactly: they depend only on the documented use of the generator), and runs it on
many seeds on tiny table models to compare the first two tokens with the target's
exact distribution (chi-square, outcomes expected fewer than 5 times pooled; see
SPECULATIVE_POWER). Each exercise lists its docstring's promises beside the cases
that exercise them. Hidden from students: it imports the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

import solutions.inference as ref
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
from solutions.architectures import GPT

PUBLIC = "autograder.public.inference"
EXACT = Tolerance(0.0, 0.0)
RUNS = 600  # seeded runs of speculative_decode per sampled case
NEG = float("-inf")


def _gpt_case(g: torch.Generator, vocab: int = 24, d: int = 16, layers: int = 2,
              heads: int = 2, max_len: int = 40) -> tuple[dict[str, int], dict]:  # fmt: skip
    """A config and random weights for the course GPT (the output layer tied)."""
    config = {"vocab_size": vocab, "d_model": d, "n_layers": layers, "n_heads": heads,
              "max_seq_len": max_len}  # fmt: skip
    state = random_state(GPT(**config), g)
    # Random tied weights make greedy decoding repeat the last token; strong position
    # embeddings make the next token depend on where it is, so decoding moves on.
    state["pos_emb.weight"] = state["pos_emb.weight"] * 5.0
    state["lm_head.weight"] = state["tok_emb.weight"]
    return config, state


def _ids(g: torch.Generator, B: int, L: int, V: int = 24) -> torch.Tensor:
    return torch.randint(0, V, (B, L), generator=g)


# ------------------------------------------------------------------ quantize_int8


def _int8_variant(kind: str) -> Callable:
    def quantize_int8(w, per_channel=True):
        if kind == "per_tensor":
            per_channel = False
        if kind == "per_column":
            absmax = w.abs().amax(dim=0, keepdim=True) if per_channel else w.abs().amax()
        elif kind == "signed_max":
            absmax = w.amax(dim=-1, keepdim=True) if per_channel else w.amax()
        else:
            absmax = w.abs().amax(dim=-1, keepdim=True) if per_channel else w.abs().amax()
        levels = 128 if kind == "divide_128" else 127
        scale = (absmax / levels).clamp_min(torch.finfo(w.dtype).tiny)
        x = w / scale
        x = x if kind == "truncate" else x.round()
        return x.clamp(-127, 127).to(torch.int8), scale

    return quantize_int8


def _weights(g: torch.Generator, rows: int, cols: int) -> torch.Tensor:
    return randn(g, rows, cols) * torch.logspace(-1.5, 1, rows)[:, None]  # uneven rows


def _int8_cases(g: torch.Generator) -> list[Case]:
    w = _weights(g, 6, 10)
    w[2] = -w[2].abs()  # a row with only negative values
    odd = randn(g, 2, 3, 8)
    odd[1, 2] = 0.0  # a row of zeros
    return [
        call_case("per channel, uneven rows", w),
        call_case("per tensor", _weights(g, 5, 7), per_channel=False),
        call_case("leading dimensions and a zero row", odd),
        call_case("a layer's weight (16, 12)", randn(g, 16, 12, scale=0.2)),
        # scale = 127 / 127 = 1 exactly: w / scale has exact halves
        call_case("halves round to even", torch.tensor([[127.0, 0.5, 1.5, 2.5, -1.5, -0.5]])),
    ]


QUANTIZE_INT8 = Exercise(
    name="quantize_int8",
    points=2,
    summary="symmetric absmax int8, one scale per row or per tensor",
    make_cases=_int8_cases,
    reference=lambda: ref.quantize_int8,
    output_names=("q", "scale"),
    tolerance=Tolerance(1e-8, 1e-6),
    mistakes=(
        Mistake(
            "signed_max",
            "your scale matches max(w) / 127, the largest VALUE: use the largest magnitude, "
            "max |w| / 127 (w.abs().amax), or negative weights overflow.",
            _int8_variant("signed_max"),
        ),
        Mistake(
            "per_tensor",
            "your answer matches ONE scale for the whole tensor even with per_channel=True: "
            "take max |w| over each row (the last dimension, keepdim=True).",
            _int8_variant("per_tensor"),
        ),
        Mistake(
            "per_column",
            "your scales are per input column (max over dim 0): per channel means one "
            "scale per OUTPUT row, the max over the last dimension.",
            _int8_variant("per_column"),
        ),
        Mistake(
            "truncate",
            "your q matches truncating w / scale toward zero (.to(torch.int8) without "
            "rounding): round to the nearest integer first (torch.round).",
            _int8_variant("truncate"),
        ),
        Mistake(
            "divide_128",
            "your scale matches max |w| / 128: symmetric int8 uses the levels -127..127, so "
            "scale = max |w| / 127 and the largest weight maps to exactly 127.",
            _int8_variant("divide_128"),
        ),
    ),
    promises=(
        Promise("Symmetric absmax quantization to int8: w ≈ q * scale.", ALL_CASES),
        Promise(
            "scale = max |w| / 127 over each row (the last dimension: one scale per output "
            "channel of a linear layer's (out, in) weight) when ``per_channel``, else over the "
            "whole tensor",
            ("per channel, uneven rows", "per tensor", "leading dimensions and a zero row"),
        ),
        Promise(
            "q = round(w / scale) (half to even) clamped to [-127, 127].",
            ("per channel, uneven rows", "halves round to even"),
        ),
        Promise(
            "A row (or tensor) of zeros gets scale = the dtype's smallest normal number, so "
            "q = 0 there and nothing divides by zero.",
            ("leading dimensions and a zero row",),
        ),
        Promise(
            "w: float tensor of shape (..., in), usually (out, in).",
            ("leading dimensions and a zero row", "a layer's weight (16, 12)"),
        ),
        Promise(
            "per_channel: one scale per row (True) or one scale for all of w (False).",
            ("per channel, uneven rows", "per tensor"),
        ),
        Promise("q: int8, shape (..., in).", ALL_CASES),
        Promise(
            "scale: w's dtype, shape (..., 1) when per_channel, else shape () (a scalar).",
            ("per channel, uneven rows", "per tensor"),
        ),
    ),
)

# ---------------------------------------------------------------- dequantize_int8


def _quantized(g: torch.Generator, w: torch.Tensor, per_channel: bool = True) -> list:
    q, scale = ref.quantize_int8(w, per_channel=per_channel)
    return [q, scale]


def _dequant_cases(g: torch.Generator) -> list[Case]:
    return [
        call_case("per channel", *_quantized(g, _weights(g, 6, 9))),
        call_case("per tensor", *_quantized(g, _weights(g, 4, 5), per_channel=False)),
        call_case("float64 scales", *_quantized(g, _weights(g, 3, 7).double())),
    ]


DEQUANTIZE_INT8 = Exercise(
    name="dequantize_int8",
    points=1,
    summary="q * scale",
    make_cases=_dequant_cases,
    reference=lambda: ref.dequantize_int8,
    output_names=("w",),
    tolerance=Tolerance(1e-7, 1e-6),
    mistakes=(
        Mistake(
            "divide",
            "your answer matches q / scale: quantization divided by the scale, so "
            "dequantization multiplies, q * scale.",
            lambda q, scale: q.to(scale.dtype) / scale,
        ),
        Mistake(
            "no_scale",
            "your answer matches the integers as floats, without the scale: multiply by scale.",
            lambda q, scale: q.to(scale.dtype),
        ),
        Mistake(
            "float32",
            "your answer is always float32: return scale's dtype (q.to(scale.dtype) * scale).",
            lambda q, scale: q.float() * scale.float(),
        ),
    ),
    promises=(
        Promise("Back to floats: q * scale, in scale's dtype.", ALL_CASES),
        Promise("q: int8, shape (..., in).", ALL_CASES),
        Promise(
            "scale: float, shape (..., 1) or () (broadcastable to q).",
            ("per channel", "per tensor"),
        ),
        Promise("shape (..., in), scale's dtype.", ("float64 scales", "per channel")),
    ),
)

# ----------------------------------------------------------- quantize_zeropoint


def _zp_variant(kind: str) -> Callable:
    def quantize_zeropoint(w, bits=8):
        qmax = 2**bits - 1
        if kind == "no_zero":
            lo, hi = w.amin(), w.amax()
        else:
            lo, hi = w.amin().clamp_max(0), w.amax().clamp_min(0)
        levels = 2**bits if kind == "levels" else qmax
        scale = ((hi - lo) / levels).clamp_min(torch.finfo(w.dtype).tiny)
        zp = (lo / scale) if kind == "sign" else (-lo / scale)
        zp = zp.round().clamp(0, qmax).to(torch.int64)
        x = (w / scale).floor() if kind == "floor" else (w / scale).round()
        q = (x + zp).clamp(0, qmax).to(torch.uint8)
        return q, scale, zp

    return quantize_zeropoint


def _zp_cases(g: torch.Generator) -> list[Case]:
    return [
        call_case("mixed signs, 8 bits", randn(g, 5, 7) - 0.4),
        call_case("all positive, 8 bits", randn(g, 4, 6).abs() + 1.5),
        call_case("4 bits", randn(g, 3, 8) + 0.3, bits=4),
        call_case("all negative, 2 bits", -randn(g, 10).abs() - 2.0, bits=2),
        call_case("a tensor of zeros", torch.zeros(3, 4)),
        # lo = 0, hi = 255: scale = 1 and zero_point = 0 exactly, w / scale has exact halves
        call_case("halves round to even", torch.tensor([0.0, 0.5, 1.5, 2.5, 254.5, 255.0])),
    ]


QUANTIZE_ZEROPOINT = Exercise(
    name="quantize_zeropoint",
    points=2,
    summary="asymmetric quantization with a zero point",
    make_cases=_zp_cases,
    reference=lambda: ref.quantize_zeropoint,
    output_names=("q", "scale", "zero_point"),
    tolerance=Tolerance(1e-8, 1e-6),
    mistakes=(
        Mistake(
            "sign",
            "your zero point matches round(lo / scale), which is <= 0: the zero point is "
            "round(-lo / scale), the integer that stands for 0.0.",
            _zp_variant("sign"),
        ),
        Mistake(
            "no_zero",
            "your range matches [w.min(), w.max()] without 0: extend it to contain 0 "
            "(lo = min(w.min(), 0), hi = max(w.max(), 0)) so 0.0 is exactly representable.",
            _zp_variant("no_zero"),
        ),
        Mistake(
            "levels",
            "your scale matches (hi - lo) / 2**bits: there are 2**bits levels but 2**bits - 1 "
            "steps between them, scale = (hi - lo) / (2**bits - 1).",
            _zp_variant("levels"),
        ),
        Mistake(
            "floor",
            "your q matches floor(w / scale): round to the nearest level (torch.round).",
            _zp_variant("floor"),
        ),
    ),
    promises=(
        Promise(
            "Asymmetric (affine) quantization of the whole tensor: w ≈ (q - zero_point) * scale.",
            ALL_CASES,
        ),
        Promise(
            "The range [lo, hi] = [min(w.min(), 0), max(w.max(), 0)] (it always contains 0, so "
            "0 is exactly representable) is mapped onto the 2**bits integers 0..2**bits - 1: "
            "scale = (hi - lo) / (2**bits - 1), zero_point = round(-lo / scale), "
            "q = clamp(round(w / scale) + zero_point, 0, 2**bits - 1)",
            ("mixed signs, 8 bits", "all positive, 8 bits", "4 bits", "all negative, 2 bits"),
        ),
        Promise("rounding is half to even.", ("halves round to even",)),
        Promise(
            "This is PyTorch's ``MinMaxObserver`` for quint8 at bits = 8.",
            ("mixed signs, 8 bits", "all positive, 8 bits"),
        ),
        Promise(
            "A tensor of zeros gets scale = the dtype's smallest normal number.",
            ("a tensor of zeros",),
        ),
        Promise("w: float tensor of any shape.", ("mixed signs, 8 bits", "all negative, 2 bits")),
        Promise("bits: 2 <= bits <= 8.", ("mixed signs, 8 bits", "4 bits", "all negative, 2 bits")),
        Promise("q: uint8, w's shape, values in [0, 2**bits - 1].", ALL_CASES),
        Promise("scale: shape (), w's dtype.", ALL_CASES),
        Promise(
            "zero_point: shape (), int64, in [0, 2**bits - 1].",
            ("mixed signs, 8 bits", "all negative, 2 bits", "all positive, 8 bits"),
        ),
    ),
)

# --------------------------------------------------------- dequantize_zeropoint


def _dzp_cases(g: torch.Generator) -> list[Case]:
    cases = []
    for label, w, bits in (
        ("mixed signs, 8 bits", randn(g, 4, 6) - 0.5, 8),
        ("all negative (large zero point)", -randn(g, 9).abs() - 1.0, 8),
        ("4 bits, float64", randn(g, 3, 5).double() + 0.2, 4),
    ):
        cases.append(call_case(label, *ref.quantize_zeropoint(w, bits=bits)))
    return cases


DEQUANTIZE_ZEROPOINT = Exercise(
    name="dequantize_zeropoint",
    points=1,
    summary="(q - zero_point) * scale",
    make_cases=_dzp_cases,
    reference=lambda: ref.dequantize_zeropoint,
    output_names=("w",),
    tolerance=Tolerance(1e-7, 1e-6),
    mistakes=(
        Mistake(
            "uint8_wrap",
            "your answer matches q - zero_point computed in uint8, which wraps around below "
            "0 (3 - 5 = 254): convert q to a signed integer (or float) before subtracting.",
            lambda q, scale, zp: (q - zp).to(scale.dtype) * scale,
        ),
        Mistake(
            "plus",
            "your answer matches (q + zero_point) * scale: SUBTRACT the zero point.",
            lambda q, scale, zp: (q.to(torch.int64) + zp).to(scale.dtype) * scale,
        ),
        Mistake(
            "no_zero_point",
            "your answer matches q * scale: subtract the zero point first.",
            lambda q, scale, zp: q.to(scale.dtype) * scale,
        ),
    ),
    promises=(
        Promise("Back to floats: (q - zero_point) * scale, in scale's dtype.", ALL_CASES),
        Promise(
            "q: uint8 of any shape; scale: shape (); zero_point: shape (), integer.",
            ("mixed signs, 8 bits", "all negative (large zero point)"),
        ),
        Promise("q's shape, scale's dtype.", ("4 bits, float64", "mixed signs, 8 bits")),
    ),
)

# -------------------------------------------------------------------- Int8Linear


class _WrongInt8Linear(ref.Int8Linear):
    kind = ""

    @classmethod
    def from_float(cls, linear):
        layer = super().from_float(linear)
        if cls.kind == "per_tensor":
            q, scale = ref.quantize_int8(linear.weight.detach(), per_channel=False)
            layer.weight_int8 = q
            layer.scale = scale.expand(linear.out_features, 1).clone()
        return layer

    def forward(self, x):
        y = x @ self.weight_int8.to(x.dtype).T
        if self.kind != "no_scale":
            y = y * self.scale.to(x.dtype).squeeze(-1)
        if self.bias is not None and self.kind != "no_bias":
            y = y + self.bias.to(x.dtype)
        return y


def _wrong_int8_linear(kind: str) -> type:
    return type("WrongInt8Linear", (_WrongInt8Linear,), {"kind": kind})


def _linear_case(label: str, g: torch.Generator, n_in: int, n_out: int, bias: bool,
                 x_shape: tuple[int, ...]) -> Case:  # fmt: skip
    case = call_case(label, randn(g, *x_shape, n_in))
    case["weight"] = _weights(g, n_out, n_in) / math.sqrt(n_in)
    if bias:
        case["bias"] = randn(g, n_out, scale=0.5)
    return case


def _float64_linear_case(g: torch.Generator) -> Case:
    case = _linear_case("a float64 layer and input", g, 8, 5, True, (4,))
    for key in ("weight", "bias"):
        case[key] = case[key].double()
    case["args"] = [case["args"][0].double()]
    return case


INT8_LINEAR = Exercise(
    name="Int8Linear",
    points=3,
    summary="a linear layer with int8 weights and per-row scales",
    make_cases=lambda g: [
        _linear_case("with bias", g, 12, 8, True, (5,)),
        _linear_case("without bias, leading dimensions", g, 10, 6, False, (2, 3)),
        _linear_case("wide layer", g, 32, 4, True, (3,)),
        _float64_linear_case(g),
    ],
    reference=lambda: ref.Int8Linear,
    driver=f"{PUBLIC}:int8_linear",
    output_names=("weight_int8", "scale", "y"),
    tolerance=Tolerance(1e-5, 1e-4),
    depends_on=("quantize_int8",),
    mistakes=(
        Mistake(
            "per_tensor",
            "your weights match ONE scale for the whole matrix: quantize per output row "
            "(quantize_int8(weight, per_channel=True)), scale of shape (out_features, 1).",
            _wrong_int8_linear("per_tensor"),
        ),
        Mistake(
            "no_scale",
            "your output matches x @ q^T without the scales: multiply output feature j by "
            "its scale s_j, y = (x @ q^T) * s + bias.",
            _wrong_int8_linear("no_scale"),
        ),
        Mistake(
            "no_bias",
            "your output matches the layer without its bias: add the bias of the float layer.",
            _wrong_int8_linear("no_bias"),
        ),
    ),
    promises=(
        Promise("A linear layer with int8 weights: y = (x @ q^T) * scale + bias.", ALL_CASES),
        Promise(
            "The weight is stored quantized per output channel (``quantize_int8`` with "
            "per_channel=True): 4x less memory than float32.",
            ALL_CASES,
        ),
        Promise(
            "Since each output feature j has its own scale s_j, x @ (q * s)^T = (x @ q^T) * s",
            why="an identity that explains the computation: x @ (q * s)^T and (x @ q^T) * s "
            "give the same y within the tolerance, which every case checks",
        ),
        Promise(
            "Buffers (these names are the state_dict keys): weight_int8: int8, shape "
            "(out_features, in_features). scale: float, shape (out_features, 1)",
            ALL_CASES,
        ),
        Promise(
            "(float32, or the dtype of the layer given to ``from_float``).",
            ("with bias", "a float64 layer and input"),
        ),
        Promise(
            "bias: float, shape (out_features,), only when ``bias`` is True.",
            ("with bias", "without bias, leading dimensions"),
        ),
        Promise("in_features, out_features: as in ``nn.Linear``.", ALL_CASES),
        Promise(
            "The int8 version of ``linear``: its weight quantized per output row, its bias kept "
            "in float, on linear's device.",
            ALL_CASES,
        ),
        Promise(
            "linear: an ``nn.Linear`` (weight (out, in), optional bias (out,)).",
            ("with bias", "without bias, leading dimensions"),
        ),
        Promise("an ``Int8Linear`` with the same in/out features.", ALL_CASES),
        Promise(
            "bias: whether the layer has a bias.", ("with bias", "without bias, leading dimensions")
        ),
        Promise("x of shape (..., in_features).", ("without bias, leading dimensions",)),
        Promise(
            "Returns: shape (..., out_features), x's dtype.",
            ("with bias", "a float64 layer and input"),
        ),
    ),
)

# ------------------------------------------------------------- distillation_loss


def _distill_variant(kind: str) -> Callable:
    def distillation_loss(s, t, temperature=2.0, labels=None, alpha=0.5):
        T = temperature
        V = s.shape[-1]
        log_s = F.log_softmax(s if kind == "teacher_only" else s / T, dim=-1)
        log_t = F.log_softmax(t / T, dim=-1)
        if kind == "swapped":
            kl = (log_s.exp() * (log_s - log_t)).sum(-1)
        else:
            kl = (log_t.exp() * (log_t - log_s)).sum(-1)
        kl = kl / V if kind == "vocab_mean" else kl
        soft = kl.mean() if kind == "no_t2" else T**2 * kl.mean()
        if labels is None:
            return soft
        hard = F.cross_entropy(
            (s / T if kind == "ce_at_t" else s).reshape(-1, V), labels.reshape(-1)
        )
        if kind == "alpha_swapped":
            return (1 - alpha) * soft + alpha * hard
        return alpha * soft + (1 - alpha) * hard

    return distillation_loss


def _distill_cases(g: torch.Generator) -> list[Case]:
    def pair(*shape: int) -> list[torch.Tensor]:
        return [randn(g, *shape, scale=2.0), randn(g, *shape, scale=3.0)]

    return [
        call_case("T = 2, no labels", *pair(8, 12)),
        call_case(
            "T = 4, labels, alpha = 0.3", *pair(2, 5, 10), temperature=4.0,
            labels=torch.randint(0, 10, (2, 5), generator=g), alpha=0.3,
        ),
        call_case("T = 0.5, no labels", *pair(3, 4, 7), temperature=0.5),
        call_case(
            "the default T and alpha, labels",
            *pair(4, 6),
            labels=torch.randint(0, 6, (4,), generator=g),
        ),
        call_case(
            "T = 2, labels, alpha = 0.8", *pair(6, 9),
            labels=torch.randint(0, 9, (6,), generator=g), alpha=0.8,
        ),
    ]  # fmt: skip


DISTILLATION = Exercise(
    name="distillation_loss",
    points=3,
    summary="alpha T² KL(teacher ‖ student) + (1 - alpha) CE",
    make_cases=_distill_cases,
    reference=lambda: ref.distillation_loss,
    output_names=("loss",),
    tolerance=Tolerance(1e-5, 1e-4),
    mistakes=(
        Mistake(
            "no_t2",
            "your loss matches the KL term without the factor T²: multiply it by "
            "temperature**2 (the soft gradients shrink as 1/T², the factor restores them).",
            _distill_variant("no_t2"),
        ),
        Mistake(
            "swapped",
            "your loss matches KL(student ‖ teacher): distillation uses KL(teacher ‖ student) "
            "= sum p_t (log p_t - log p_s), the teacher's probabilities as weights.",
            _distill_variant("swapped"),
        ),
        Mistake(
            "teacher_only",
            "your loss matches a temperature on the teacher only: divide BOTH logits by T "
            "before the softmax.",
            _distill_variant("teacher_only"),
        ),
        Mistake(
            "vocab_mean",
            "your KL matches an average over the vocabulary too: sum the KL over the "
            "vocabulary, average over the positions only.",
            _distill_variant("vocab_mean"),
        ),
        Mistake(
            "alpha_swapped",
            "your loss matches (1 - alpha) on the soft term and alpha on the cross-entropy: "
            "alpha weighs the distillation (KL) term.",
            _distill_variant("alpha_swapped"),
        ),
        Mistake(
            "ce_at_t",
            "your cross-entropy matches the student's logits divided by T: the hard-label "
            "term uses the raw logits (temperature 1).",
            _distill_variant("ce_at_t"),
        ),
    ),
    promises=(
        Promise("Knowledge distillation: match the teacher's softened distribution.", ALL_CASES),
        Promise(
            "loss = alpha * T² * KL(softmax(t / T) ‖ softmax(s / T)) + (1 - alpha) * CE(s, labels)",
            (
                "T = 4, labels, alpha = 0.3",
                "the default T and alpha, labels",
                "T = 2, labels, alpha = 0.8",
            ),
        ),
        Promise(
            "The KL is summed over the vocabulary and averaged over every other position; the "
            "cross-entropy (on the student's raw logits, temperature 1) is averaged.",
            ("T = 2, no labels", "T = 4, labels, alpha = 0.3", "T = 2, labels, alpha = 0.8"),
        ),
        Promise(
            "The T² keeps the soft term's gradients the same size whatever T (they scale as 1/T²).",
            ("T = 2, no labels", "T = 4, labels, alpha = 0.3", "T = 0.5, no labels"),
        ),
        Promise(
            "Without labels the loss is the soft term alone, T² * KL (no alpha).",
            ("T = 2, no labels", "T = 0.5, no labels"),
        ),
        Promise(
            "student_logits: shape (..., V).", ("T = 4, labels, alpha = 0.3", "T = 0.5, no labels")
        ),
        Promise(
            "teacher_logits: shape (..., V), the same as student_logits",
            ALL_CASES,
        ),
        Promise(
            "(no gradient needs to flow into it).",
            why="what the caller may do with the teacher (detach it): the loss's value does "
            "not depend on it",
        ),
        Promise(
            "temperature: T > 0.",
            (
                "T = 2, no labels",
                "T = 4, labels, alpha = 0.3",
                "T = 0.5, no labels",
                "the default T and alpha, labels",
            ),
        ),
        Promise(
            "labels: optional int64 of shape (...), the true next tokens.",
            ("T = 2, no labels", "T = 4, labels, alpha = 0.3"),
        ),
        Promise(
            "alpha: the weight of the soft term, in [0, 1].",
            (
                "T = 4, labels, alpha = 0.3",
                "the default T and alpha, labels",
                "T = 2, labels, alpha = 0.8",
            ),
        ),
        Promise("a scalar (shape ()), student_logits' dtype.", ALL_CASES),
    ),
)

# --------------------------------------------------------------- flash_attention


def _flash_variant(kind: str) -> Callable:
    def flash_attention(q, k, v, causal=False, block_size=128):
        Lq, d = q.shape[-2], q.shape[-1]
        Lk, dv = k.shape[-2], v.shape[-1]
        if kind == "naive":
            s = q @ k.transpose(-2, -1) / math.sqrt(d)
            if causal:
                s = s.masked_fill(torch.ones(Lq, Lk, dtype=torch.bool).tril().logical_not(), NEG)
            return s.softmax(-1) @ v
        scale = 1.0 if kind == "no_scale" else 1.0 / math.sqrt(d)
        shift = 1 if kind == "off_by_one" else 0
        out = torch.empty(*q.shape[:-1], dv, dtype=q.dtype)
        for i0 in range(0, Lq, block_size):
            i1 = min(i0 + block_size, Lq)
            qb = q[..., i0:i1, :] * scale
            m = torch.full((*qb.shape[:-1], 1), NEG)
            l = torch.zeros((*qb.shape[:-1], 1))
            acc = torch.zeros((*qb.shape[:-1], dv))
            k_end = min(Lk, i1 + shift) if causal else Lk
            for j0 in range(0, k_end, block_size):
                j1 = min(j0 + block_size, k_end)
                s = qb @ k[..., j0:j1, :].transpose(-2, -1)
                if causal:
                    rows = torch.arange(i0, i1)[:, None]
                    cols = torch.arange(j0, j1)[None, :]
                    s = s.masked_fill(cols > rows + shift, NEG)
                m_new = torch.maximum(m, s.amax(-1, keepdim=True))
                p = torch.exp(s - m_new)
                rescale = torch.ones_like(m) if kind == "no_rescale" else torch.exp(m - m_new)
                l = l * rescale + p.sum(-1, keepdim=True)
                acc = acc * rescale + p @ v[..., j0:j1, :]
                m = m_new
            out[..., i0:i1, :] = acc if kind == "no_division" else acc / l
        return out

    return flash_attention


def _flash_cases(g: torch.Generator) -> list[Case]:
    long = [randn(g, 1, 1024, 4, scale=3.0) for _ in range(3)]
    cases = [
        call_case(
            "non-causal, Lq != Lk, dv != d", randn(g, 2, 2, 40, 8, scale=3.0),
            randn(g, 2, 2, 56, 8, scale=3.0), randn(g, 2, 2, 56, 4), block_size=16,
        ),
        call_case(
            "causal, L = 50, block 16", *(randn(g, 2, 50, 8, scale=3.0) for _ in range(3)),
            causal=True, block_size=16,
        ),
        call_case(
            "causal, Lq = 30 < Lk = 45 (query i sees keys 0..i)", randn(g, 30, 8, scale=3.0),
            randn(g, 45, 8, scale=3.0), randn(g, 45, 8), causal=True, block_size=8,
        ),
        call_case(
            "one block larger than the sequence", *(randn(g, 2, 12, 8) for _ in range(3)),
            block_size=128,
        ),
        call_case("long causal sequence (L = 1024, block 128)", *long, causal=True, block_size=128),
        call_case(
            "float64 inputs stay float64",
            *(randn(g, 2, 20, 8, scale=3.0).double() for _ in range(3)),
            causal=True, block_size=8,
        ),
    ]  # fmt: skip
    cases[-2]["max_elements"] = 1024 * 1024 // 6  # room for (Lq, block_size) tiles
    return cases


FLASH = Exercise(
    name="flash_attention",
    points=4,
    summary="exact attention in tiles with the online softmax",
    make_cases=_flash_cases,
    reference=lambda: ref.flash_attention,
    driver=f"{PUBLIC}:flash",
    checker=f"{PUBLIC}:check_flash",
    output_names=("out", "tiled"),
    tolerance=Tolerance(1e-5, 1e-4),
    mistakes=(
        Mistake(
            "no_rescale",
            "your output matches accumulating without rescaling: when a block raises the "
            "running max from m to m', multiply the running sum and the accumulator by "
            "exp(m - m') before adding the new block.",
            _flash_variant("no_rescale"),
        ),
        Mistake(
            "no_division",
            "your output matches the accumulator itself: divide it by the running sum at "
            "the end (out = acc / l).",
            _flash_variant("no_division"),
        ),
        Mistake(
            "no_scale",
            "your output matches scores without the 1/sqrt(d) factor: scale q k^T by "
            "1/sqrt(d) as scaled_dot_product_attention does.",
            _flash_variant("no_scale"),
        ),
        Mistake(
            "off_by_one",
            "your causal output matches query i seeing key i + 1 too: query i sees keys "
            "0..i only (mask key j when j > i).",
            _flash_variant("off_by_one"),
        ),
        Mistake(
            "naive",
            "your function computes the whole (Lq, Lk) score matrix at once: the point of "
            "flash attention is to never hold it (tiles, online softmax).",
            _flash_variant("naive"),
        ),
    ),
    promises=(
        Promise("Exact attention softmax(q k^T / sqrt(d)) v, computed tile by tile.", ALL_CASES),
        Promise(
            "The queries are cut into blocks of ``block_size`` rows; for each query block the "
            "keys and values are read block by block, keeping per query row a running max m, a "
            "running sum l of exp(score - m) and an accumulator acc of exp(score - m) @ v.",
            ("causal, L = 50, block 16", "long causal sequence (L = 1024, block 128)"),
        ),
        Promise(
            "When a new key block raises the max to m', the old l and acc are rescaled by "
            "exp(m - m') (the online softmax); at the end out = acc / l.",
            ("non-causal, Lq != Lk, dv != d", "causal, L = 50, block 16"),
        ),
        Promise(
            "At most (block_size, block_size) scores exist at once, never (Lq, Lk).",
            ("long causal sequence (L = 1024, block 128)",),
        ),
        Promise(
            "With ``causal``, query i sees keys 0..i (the top-left alignment of "
            "``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``;",
            ("causal, L = 50, block 16", "causal, Lq = 30 < Lk = 45 (query i sees keys 0..i)"),
        ),
        Promise(
            "Lq and Lk may differ), and key blocks entirely after a query block are skipped.",
            ("causal, Lq = 30 < Lk = 45 (query i sees keys 0..i)", "non-causal, Lq != Lk, dv != d"),
        ),
        Promise(
            "Accumulation is in float32 at least (float64 inputs stay float64).",
            ("float64 inputs stay float64",),
        ),
        Promise(
            "q: shape (..., Lq, d).", ("non-causal, Lq != Lk, dv != d", "causal, L = 50, block 16")
        ),
        Promise(
            "k: shape (..., Lk, d), the same leading dimensions as q, Lk >= 1.",
            ("non-causal, Lq != Lk, dv != d",),
        ),
        Promise("v: shape (..., Lk, dv).", ("non-causal, Lq != Lk, dv != d",)),
        Promise(
            "causal: mask keys after each query.",
            ("causal, L = 50, block 16", "non-causal, Lq != Lk, dv != d"),
        ),
        Promise(
            "block_size: rows of a query block and of a key block, >= 1.",
            ("causal, L = 50, block 16", "one block larger than the sequence"),
        ),
        Promise("out: shape (..., Lq, dv), q's dtype.", ALL_CASES),
    ),
)

# ----------------------------------------------------------------------- KVCache


class _WrongKVCache(ref.KVCache):
    kind = ""

    def update(self, layer, k, v):
        old_k, old_v = self.keys[layer], self.values[layer]
        new_k, new_v = k, v
        if old_k is not None:
            if self.kind == "prepend":
                k, v = torch.cat([k, old_k], dim=-2), torch.cat([v, old_v], dim=-2)
            else:
                k, v = torch.cat([old_k, k], dim=-2), torch.cat([old_v, v], dim=-2)
        self.keys[layer], self.values[layer] = k, v
        return (new_k, new_v) if self.kind == "new_only" else (k, v)

    def crop(self, length):
        if self.kind != "keep_last":
            return super().crop(length)
        for i in range(len(self.keys)):
            if self.keys[i] is not None:
                self.keys[i] = self.keys[i][..., -length:, :]
                self.values[i] = self.values[i][..., -length:, :]


def _wrong_cache(kind: str) -> type:
    return type("WrongKVCache", (_WrongKVCache,), {"kind": kind})


def _kv_cases(g: torch.Generator) -> list[Case]:
    def kv(B: int, H: int, T: int, D: int) -> list[torch.Tensor]:
        return [randn(g, B, H, T, D), randn(g, B, H, T, D)]

    first = {"label": "two layers: prefill 3, two steps, crop to 2, one step", "n_layers": 2,
             "calls": [("update", 0, *kv(1, 2, 3, 4)), ("update", 1, *kv(1, 2, 3, 4)),
                       ("update", 0, *kv(1, 2, 1, 4)), ("update", 1, *kv(1, 2, 1, 4)),
                       ("update", 0, *kv(1, 2, 1, 4)), ("update", 1, *kv(1, 2, 1, 4)),
                       ("crop", 2), ("update", 0, *kv(1, 2, 2, 4))]}  # fmt: skip
    second = {"label": "batch of 2, 3 heads, one layer", "n_layers": 1,
              "calls": [("update", 0, *kv(2, 3, 4, 5)), ("update", 0, *kv(2, 3, 2, 5)),
                        ("crop", 5), ("update", 0, *kv(2, 3, 1, 5))]}  # fmt: skip
    third = {"label": "crop before any update (layer 0 is None), crop to 0", "n_layers": 2,
             "calls": [("crop", 0), ("update", 1, *kv(1, 2, 3, 4)), ("crop", 0),
                       ("update", 0, *kv(1, 2, 3, 4)), ("crop", 0),
                       ("update", 0, *kv(1, 2, 2, 4))]}  # fmt: skip
    return [first, second, third]


KV_CACHE = Exercise(
    name="KVCache",
    points=2,
    summary="append keys and values per layer, crop",
    make_cases=_kv_cases,
    reference=lambda: ref.KVCache,
    driver=f"{PUBLIC}:kv_cache_calls",
    output_names=("results",),
    tolerance=EXACT,
    mistakes=(
        Mistake(
            "new_only",
            "update returns only the new keys and values: append them to the cache and "
            "return ALL cached positions (the attention needs every past key).",
            _wrong_cache("new_only"),
        ),
        Mistake(
            "prepend",
            "your cache puts the new positions FIRST: append them after the cached ones, "
            "torch.cat([old, new], dim=-2), so position t stays at index t.",
            _wrong_cache("prepend"),
        ),
        Mistake(
            "keep_last",
            "crop keeps the LAST positions: it keeps the first `length` ones (dropping the "
            "newest, e.g. rejected draft tokens).",
            _wrong_cache("keep_last"),
        ),
    ),
    promises=(
        Promise("The keys and values of every layer for the tokens processed so far.", ALL_CASES),
        Promise(
            "Layer i holds ``keys[i]`` and ``values[i]`` of shape (B, H, T, Dh)",
            (
                "two layers: prefill 3, two steps, crop to 2, one step",
                "batch of 2, 3 heads, one layer",
            ),
        ),
        Promise(
            "(None before its first update).",
            ("crop before any update (layer 0 is None), crop to 0",),
        ),
        Promise(
            "Appending with ``torch.cat`` keeps it simple; serving systems preallocate the "
            "maximum length instead (or pages of it).",
            why="how the cache is stored (any storage gives the same keys and values) and a "
            "remark on serving systems",
        ),
        Promise(
            "n_layers: the number of layers (one key and one value tensor each).",
            (
                "two layers: prefill 3, two steps, crop to 2, one step",
                "crop before any update (layer 0 is None), crop to 0",
            ),
        ),
        Promise(
            "Append the new positions' keys and values of ``layer``, return all of them.",
            ALL_CASES,
        ),
        Promise(
            "layer: the layer index, 0 <= layer < n_layers.",
            (
                "two layers: prefill 3, two steps, crop to 2, one step",
                "crop before any update (layer 0 is None), crop to 0",
            ),
        ),
        Promise(
            "k, v: shape (B, H, T_new, Dh), the new positions.",
            (
                "two layers: prefill 3, two steps, crop to 2, one step",
                "batch of 2, 3 heads, one layer",
            ),
        ),
        Promise(
            "keys, values: shape (B, H, T + T_new, Dh), the cached ones first.",
            (
                "two layers: prefill 3, two steps, crop to 2, one step",
                "batch of 2, 3 heads, one layer",
            ),
        ),
        Promise(
            "Keep only the first ``length`` positions (e.g. drop rejected draft tokens).",
            (
                "two layers: prefill 3, two steps, crop to 2, one step",
                "batch of 2, 3 heads, one layer",
                "crop before any update (layer 0 is None), crop to 0",
            ),
        ),
        Promise(
            "length: 0 <= length <= self.length.",
            (
                "two layers: prefill 3, two steps, crop to 2, one step",
                "crop before any update (layer 0 is None), crop to 0",
            ),
        ),
    ),
)

# ------------------------------------------------------------ forward_with_cache


def _forward_variant(kind: str) -> Callable:
    def forward_with_cache(model, input_ids, cache, positions=None, key_mask=None):
        B, T_new = input_ids.shape
        past = cache.length
        if positions is None or kind == "ignore_positions":
            start = 0 if kind == "no_offset" else past
            positions = torch.arange(start, start + T_new)[None, :]
        rows = torch.arange(past, past + T_new)[:, None]
        cols = torch.arange(past + T_new)[None, :]
        allowed = (cols <= rows)[None, None] if kind != "no_causal" else (cols >= 0)[None, None]
        if key_mask is not None and kind != "ignore_key_mask":
            allowed = allowed & (key_mask[:, None, None, :] | (cols == rows))
        x = model.tok_emb(input_ids) + model.pos_emb(positions)
        for i, block in enumerate(model.blocks):
            attn = block.attn
            H = attn.n_heads
            h = block.ln1(x)
            q = attn.q_proj(h).view(B, T_new, H, -1).transpose(1, 2)
            k = attn.k_proj(h).view(B, T_new, H, -1).transpose(1, 2)
            v = attn.v_proj(h).view(B, T_new, H, -1).transpose(1, 2)
            k_all, v_all = cache.update(i, k, v)
            mask = allowed
            if kind == "new_keys_only":
                k_all, v_all, mask = k, v, allowed[..., -T_new:]
            scores = q @ k_all.transpose(-2, -1) / math.sqrt(q.shape[-1])
            y = scores.masked_fill(~mask, NEG).softmax(-1) @ v_all
            x = x + attn.out_proj(y.transpose(1, 2).reshape(B, T_new, -1))
            x = x + block.ff(block.ln2(x))
        return model.lm_head(model.ln_f(x))

    return forward_with_cache


def _padded(g: torch.Generator, lengths: list[int], extra: int, V: int = 24) -> dict:
    """Left-padded prompts plus ``extra`` decoded tokens: ids, positions, key_mask."""
    Lmax = max(lengths)
    L = Lmax + extra
    ids = _ids(g, len(lengths), L, V)
    pad = torch.tensor([Lmax - n for n in lengths])[:, None]  # (B, 1)
    cols = torch.arange(L)[None, :]
    return {"ids": ids.masked_fill(cols < pad, 0), "positions": (cols - pad).clamp_min(0),
            "key_mask": cols >= pad, "Lmax": Lmax}  # fmt: skip


def _forward_cases(g: torch.Generator) -> list[Case]:
    cases = []
    for label, B, chunks in (
        ("B = 2: prefill 5, steps of 1, then a chunk of 5", 2, [(0, 5), (5, 6), (6, 7), (7, 12)]),
        ("one token at a time", 1, [(i, i + 1) for i in range(9)]),
    ):
        config, state = _gpt_case(g)
        case = call_case(label, _ids(g, B, chunks[-1][1]))
        case.update(config=config, state=state, chunks=chunks)
        cases.append(case)
    config, state = _gpt_case(g, layers=1)
    p = _padded(g, [4, 7, 2], 3)
    case = call_case("left-padded batch (lengths 4, 7, 2) with positions and key_mask", p["ids"])
    case.update(config=config, state=state, chunks=[(0, 7), (7, 8), (8, 9), (9, 10)],
                positions=p["positions"], key_mask=p["key_mask"])  # fmt: skip
    cases.append(case)
    return cases


FORWARD_WITH_CACHE = Exercise(
    name="forward_with_cache",
    points=4,
    summary="run only the new tokens, attending to the cached keys and values",
    make_cases=_forward_cases,
    reference=lambda: ref.forward_with_cache,
    driver=f"{PUBLIC}:forward_in_chunks",
    output_names=("logits", "cache_length"),
    tolerance=Tolerance(1e-5, 1e-4),
    mistakes=(
        Mistake(
            "no_offset",
            "your logits match new tokens placed at positions 0..T_new-1: with T tokens "
            "cached the new ones are at positions T..T + T_new - 1 (pos_emb of those).",
            _forward_variant("no_offset"),
        ),
        Mistake(
            "new_keys_only",
            "your logits match attention over the new tokens' keys only: attend to ALL the "
            "keys and values that cache.update returns (the cached ones and the new ones).",
            _forward_variant("new_keys_only"),
        ),
        Mistake(
            "no_causal",
            "your logits match new tokens that see the new tokens after them: new token t "
            "sees keys 0..T + t only (a causal mask offset by the T cached positions).",
            _forward_variant("no_causal"),
        ),
        Mistake(
            "ignore_key_mask",
            "your logits match real tokens attending to the padding: hide the keys where "
            "key_mask is False.",
            _forward_variant("ignore_key_mask"),
        ),
        Mistake(
            "ignore_positions",
            "your logits match ignoring the `positions` argument: when given, it holds each "
            "new token's position (left padding shifts them).",
            _forward_variant("ignore_positions"),
        ),
    ),
    promises=(
        Promise(
            "Run the course GPT on new tokens only, reading and extending ``cache``.", ALL_CASES
        ),
        Promise(
            "With T = cache.length tokens already cached, the new tokens sit at positions "
            "T..T + T_new - 1: they get those position embeddings, and in each block their "
            "queries attend to the cached keys and to the new keys up to themselves (new token "
            "t sees keys 0..T + t).",
            ("B = 2: prefill 5, steps of 1, then a chunk of 5", "one token at a time"),
        ),
        Promise(
            "Their keys and values are appended to the cache before attending.",
            ("B = 2: prefill 5, steps of 1, then a chunk of 5", "one token at a time"),
        ),
        Promise(
            "The result equals ``model(all_ids)[:, T:]``.",
            ("B = 2: prefill 5, steps of 1, then a chunk of 5", "one token at a time"),
        ),
        Promise(
            "For left-padded batches (``generate_batch``), ``positions`` gives each new "
            "token's position and ``key_mask`` says which of the T + T_new keys are real tokens;",
            ("left-padded batch (lengths 4, 7, 2) with positions and key_mask",),
        ),
        Promise(
            "a query never sees a masked key other than itself (so a padding query, which sees "
            "only itself, stays finite).",
            ("left-padded batch (lengths 4, 7, 2) with positions and key_mask",),
        ),
        Promise(
            "model: the course GPT (``tok_emb``, ``pos_emb``, ``blocks``, ``ln_f``, "
            "``lm_head``), used with its own weights.",
            ALL_CASES,
        ),
        Promise(
            "input_ids: shape (B, T_new), the new tokens.",
            (
                "B = 2: prefill 5, steps of 1, then a chunk of 5",
                "left-padded batch (lengths 4, 7, 2) with positions and key_mask",
            ),
        ),
        Promise("cache: a ``KVCache`` with one entry per block, holding T positions.", ALL_CASES),
        Promise(
            "positions: optional int64 (B, T_new); default T..T + T_new - 1 on every row.",
            (
                "B = 2: prefill 5, steps of 1, then a chunk of 5",
                "left-padded batch (lengths 4, 7, 2) with positions and key_mask",
            ),
        ),
        Promise(
            "key_mask: optional bool (B, T + T_new), True for real tokens; default all True.",
            (
                "B = 2: prefill 5, steps of 1, then a chunk of 5",
                "left-padded batch (lengths 4, 7, 2) with positions and key_mask",
            ),
        ),
        Promise("logits: shape (B, T_new, vocab_size).", ALL_CASES),
    ),
)

# -------------------------------------------------------- generate_with_kv_cache


def _generate_variant(kind: str) -> Callable:
    def generate_with_kv_cache(model, input_ids, max_new_tokens):
        ids, new = input_ids, input_ids
        cache = ref.KVCache(len(model.blocks))
        with torch.no_grad():
            for _ in range(max_new_tokens):
                if kind == "recompute":
                    logits = model(ids)[:, -1, :]
                else:
                    if kind == "fresh_cache":
                        cache = ref.KVCache(len(model.blocks))
                    out = ref.forward_with_cache(model, new, cache)
                    logits = out[:, 0, :] if kind == "first_position" else out[:, -1, :]
                new = logits.argmax(dim=-1, keepdim=True)
                ids = torch.cat([ids, new], dim=1)
        return ids

    return generate_with_kv_cache


def _generate_cases(g: torch.Generator) -> list[Case]:
    cases = []
    for label, B, L, n in (("B = 2, prompt of 5", 2, 5, 12), ("B = 1, prompt of 9", 1, 9, 15),
                           ("B = 3, prompt of 1", 3, 1, 8),
                           ("max_new_tokens = 0: the prompts back", 2, 3, 0)):  # fmt: skip
        config, state = _gpt_case(g)
        case = call_case(label, _ids(g, B, L), n)
        case.update(config=config, state=state)
        cases.append(case)
    return cases


GENERATE = Exercise(
    name="generate_with_kv_cache",
    points=3,
    summary="greedy decoding, one new token per step",
    make_cases=_generate_cases,
    reference=lambda: ref.generate_with_kv_cache,
    driver=f"{PUBLIC}:generate_cached",
    checker=f"{PUBLIC}:check_generate_cached",
    output_names=("ids", "cached"),
    tolerance=EXACT,
    depends_on=("KVCache", "forward_with_cache"),
    mistakes=(
        Mistake(
            "recompute",
            "your loop runs the model on the whole sequence at every step: that is what the "
            "cache avoids.",
            _generate_variant("recompute"),
        ),
        Mistake(
            "fresh_cache",
            "your tokens match a NEW cache at every step (each token then sees only itself at "
            "position 0): create one KVCache before the loop and keep extending it.",
            _generate_variant("fresh_cache"),
        ),
        Mistake(
            "first_position",
            "your tokens match the prompt's FIRST position's logits after the prefill: the "
            "next token comes from the last position, logits[:, -1].",
            _generate_variant("first_position"),
        ),
    ),
    promises=(
        Promise(
            "Greedy decoding with a KV cache: the same tokens as recomputing the prefix.",
            ALL_CASES,
        ),
        Promise(
            "One ``forward_with_cache`` call on the whole prompt (the prefill), then one per new "
            "token on that token alone; each step appends the argmax of the last position's "
            "logits.",
            ("B = 2, prompt of 5", "B = 1, prompt of 9", "B = 3, prompt of 1"),
        ),
        Promise("model: the course GPT (see ``forward_with_cache``).", ALL_CASES),
        Promise(
            "input_ids: shape (B, L), L >= 1, the prompts.",
            ("B = 2, prompt of 5", "B = 3, prompt of 1"),
        ),
        Promise(
            "max_new_tokens: >= 0, with L + max_new_tokens <= the model's positions.",
            ("B = 1, prompt of 9", "max_new_tokens = 0: the prompts back"),
        ),
        Promise("ids: shape (B, L + max_new_tokens), the prompts first.", ALL_CASES),
    ),
)

# ---------------------------------------------------------------- generate_batch


def _batch_variant(kind: str) -> Callable:
    def generate_batch(model, prompts, max_new_tokens, pad_id=0):
        lengths = torch.tensor([p.shape[0] for p in prompts])
        Lmax, B = int(lengths.max()), len(prompts)
        ids = torch.full((B, Lmax), pad_id, dtype=torch.long)
        for b, p in enumerate(prompts):
            ids[b, Lmax - p.shape[0] :] = p
        pad = (Lmax - lengths)[:, None]
        cols = torch.arange(Lmax)[None, :]
        key_mask = (cols >= pad) | (kind == "no_mask")
        positions = cols.expand(B, -1) if kind == "no_shift" else (cols - pad).clamp_min(0)
        cache = ref.KVCache(len(model.blocks))
        new, out = ids, []
        with torch.no_grad():
            for step in range(max_new_tokens):
                logits = ref.forward_with_cache(model, new, cache, positions, key_mask)[:, -1]
                new = logits.argmax(-1, keepdim=True)
                out.append(new)
                start = torch.full((B, 1), Lmax) if kind == "no_shift" else lengths[:, None]
                positions = start + step
                key_mask = torch.cat([key_mask, key_mask.new_ones(B, 1)], dim=1)
        gen = torch.cat(out, dim=1) if out else ids[:, :0]
        if kind == "no_prompt":
            return list(gen)
        return [torch.cat([p, gen[b]]) for b, p in enumerate(prompts)]

    return generate_batch


def _batch_cases(g: torch.Generator) -> list[Case]:
    cases = []
    for label, lengths, n, pad in (
        ("lengths 2, 12, 1, 5", [2, 12, 1, 5], 6, 0),
        ("lengths 1, 9, 3, 10, pad_id 5", [1, 9, 3, 10], 5, 5),
        ("lengths 11, 3 (pad_id omitted: 0)", [11, 3], 6, None),
        ("one prompt", [4], 5, 0),
        ("max_new_tokens = 0: the prompts back", [3, 1], 0, None),
    ):
        config, state = _gpt_case(g)
        prompts = [_ids(g, 1, n_)[0] for n_ in lengths]
        case = call_case(label, prompts, n, **({} if pad is None else {"pad_id": pad}))
        case.update(config=config, state=state)
        cases.append(case)
    return cases


GENERATE_BATCH = Exercise(
    name="generate_batch",
    points=3,
    summary="several prompts at once: left padding, a key mask, shifted positions",
    make_cases=_batch_cases,
    reference=lambda: ref.generate_batch,
    driver=f"{PUBLIC}:batch_generate",
    output_names=("ids",),
    tolerance=EXACT,
    depends_on=("forward_with_cache",),
    mistakes=(
        Mistake(
            "no_mask",
            "your tokens match real tokens attending to the padding: pass a key_mask that is "
            "False on the padding.",
            _batch_variant("no_mask"),
        ),
        Mistake(
            "no_shift",
            "your tokens match positions counted from the first column, padding included: "
            "each row's first real token is at position 0.",
            _batch_variant("no_shift"),
        ),
        Mistake(
            "no_prompt",
            "you return only the new tokens: return each prompt followed by its tokens.",
            _batch_variant("no_prompt"),
        ),
    ),
    promises=(
        Promise("Greedy decoding of prompts of different lengths in one batch.", ALL_CASES),
        Promise(
            "The prompts are left-padded with ``pad_id`` to the longest length Lmax, so the "
            "next token of every row is in the last column.",
            (
                "lengths 2, 12, 1, 5",
                "lengths 1, 9, 3, 10, pad_id 5",
                "lengths 11, 3 (pad_id omitted: 0)",
            ),
        ),
        Promise(
            "Each row's positions start at 0 on its first real token, and a key mask hides the "
            "padding from every real query.",
            (
                "lengths 2, 12, 1, 5",
                "lengths 1, 9, 3, 10, pad_id 5",
                "lengths 11, 3 (pad_id omitted: 0)",
            ),
        ),
        Promise(
            "Row b then gets exactly the tokens ``generate_with_kv_cache(model, prompts[b][None], "
            "max_new_tokens)`` gives it (up to float rounding in the batched matmuls).",
            (
                *(
                    "lengths 2, 12, 1, 5",
                    "lengths 1, 9, 3, 10, pad_id 5",
                    "lengths 11, 3 (pad_id omitted: 0)",
                ),
                "one prompt",
            ),
        ),
        Promise(
            "Decoding uses one ``KVCache`` for the batch.",
            why="how the batch is decoded; the tokens (every case) are what is promised, and "
            "any correct cache layout gives the same ones",
        ),
        Promise("model: the course GPT (see ``forward_with_cache``).", ALL_CASES),
        Promise(
            "prompts: B >= 1 int64 tensors of shapes (L_b,), L_b >= 1.",
            ("lengths 2, 12, 1, 5", "one prompt"),
        ),
        Promise(
            "max_new_tokens: >= 0, with Lmax + max_new_tokens <= the model's positions.",
            ("lengths 2, 12, 1, 5", "max_new_tokens = 0: the prompts back"),
        ),
        Promise(
            "pad_id: the token put in the padding (any id: it is masked).",
            ("lengths 1, 9, 3, 10, pad_id 5", "lengths 11, 3 (pad_id omitted: 0)"),
        ),
        Promise(
            "B tensors of shapes (L_b + max_new_tokens,): each prompt, then its tokens.",
            ALL_CASES,
        ),
    ),
)

# ------------------------------------------------------------------- PrefixCache


class _WrongPrefixCache(ref.PrefixCache):
    kind = ""

    def prefill(self, input_ids):
        ids = input_ids[0]
        L = ids.shape[0]
        best, entry = 0, None
        for old_ids, old_cache in self.entries:
            n = min(L - 1, old_ids.shape[0])
            same = (old_ids[:n] == ids[:n]).long().cumprod(0)
            shared = int(same.sum())
            if self.kind == "whole_only" and shared < n:  # not all of the old prompt
                continue
            if self.kind == "plus_one" and 0 < shared < n:
                shared += 1
            if shared > best and self.kind != "no_reuse":
                best, entry = shared, old_cache
        cache = ref.KVCache(len(self.model.blocks))
        if entry is not None:
            for i in range(len(cache.keys)):
                cache.update(i, entry.keys[i][..., :best, :], entry.values[i][..., :best, :])
        with torch.no_grad():
            logits = ref.forward_with_cache(self.model, input_ids[:, best:], cache)
        stored = ref.KVCache(len(cache.keys))
        stored.keys, stored.values = list(cache.keys), list(cache.values)
        self.entries.append((ids.clone(), stored))
        self.stats["requests"] += 1
        self.stats["computed"] += L - best
        self.stats["reused"] += best
        return logits[:, -1, :], cache


def _wrong_prefix(kind: str) -> type:
    return type("WrongPrefixCache", (_WrongPrefixCache,), {"kind": kind})


def _prefix_cases(g: torch.Generator) -> list[Case]:
    config, state = _gpt_case(g)
    system = _ids(g, 1, 12)

    def turn(*parts: torch.Tensor) -> torch.Tensor:
        return torch.cat(parts, dim=1)

    a, b, c = _ids(g, 1, 4), _ids(g, 1, 6), _ids(g, 1, 3)
    first = call_case(
        "a shared system prompt, a repeated request, a partial overlap, a stranger",
        [turn(system, a), turn(system, b), turn(system, a), turn(system[:, :7], c), _ids(g, 1, 5)],
    )
    first.update(config=config, state=state, max_new_tokens=4)
    config, state = _gpt_case(g, layers=1)
    x, y = _ids(g, 1, 6), _ids(g, 1, 5)
    second = call_case("a conversation: each turn extends the last", [x, turn(x, y), turn(x, y, c)])
    second.update(config=config, state=state, max_new_tokens=3)
    return [first, second]


PREFIX_CACHE = Exercise(
    name="PrefixCache",
    points=3,
    summary="reuse the keys and values of a shared prompt prefix",
    make_cases=_prefix_cases,
    reference=lambda: ref.PrefixCache,
    driver=f"{PUBLIC}:prefix_requests",
    output_names=("generated", "stats", "logits", "entries"),
    tolerance=Tolerance(1e-5, 1e-4),
    depends_on=("KVCache", "forward_with_cache"),
    mistakes=(
        Mistake(
            "no_reuse",
            "your stats say nothing was reused: copy the longest common prefix with a "
            "remembered prompt from its cache and compute only the rest.",
            _wrong_prefix("no_reuse"),
        ),
        Mistake(
            "plus_one",
            "your answer matches reusing one position beyond the common prefix: positions "
            "reused must hold the SAME tokens in both prompts.",
            _wrong_prefix("plus_one"),
        ),
        Mistake(
            "whole_only",
            "your stats match reusing a remembered prompt only when all of it is a prefix of "
            "the new one: any common prefix can be reused (the model is causal), take the "
            "longest.",
            _wrong_prefix("whole_only"),
        ),
    ),
    promises=(
        Promise("Reuse the keys and values of prompt prefixes across requests.", ALL_CASES),
        Promise("Every prompt ``prefill`` processes is remembered with its KV cache.", ALL_CASES),
        Promise(
            "A new prompt that starts like a remembered one (a shared system prompt, a few-shot "
            "preamble, an earlier turn of the conversation) copies the longest such common "
            "prefix from that cache",
            ALL_CASES,
        ),
        Promise(
            "which is valid because the model is causal: keys and values at a position depend "
            "only on the tokens up to it.",
            why="why reuse is exact; the same logits and tokens as without reuse (every case) "
            "are what is checked",
        ),
        Promise(
            "Only the rest of the prompt is computed (at least its last token, whose logits are "
            "needed).",
            ("a shared system prompt, a repeated request, a partial overlap, a stranger",),
        ),
        Promise(
            "Nothing is evicted here",
            ("a shared system prompt, a repeated request, a partial overlap, a stranger",),
        ),
        Promise(
            "a server bounds this memory (dropping the least recently used prompts first, or "
            "sharing fixed-size blocks of the cache between requests).",
            why="a remark on serving systems, not on this class",
        ),
        Promise(
            "model: the course GPT.",
            why="the attribute holding the model the class was built with; every answer is "
            "computed with it",
        ),
        Promise("entries: list of (ids (L,), KVCache) of the prompts seen, in order.", ALL_CASES),
        Promise(
            'stats: dict with "requests" (prefill calls), "computed" (prompt tokens run through '
            'the model) and "reused" (prompt tokens copied from a cache).',
            ALL_CASES,
        ),
        Promise("model: the course GPT (see ``forward_with_cache``).", ALL_CASES),
        Promise("Process one prompt, reusing the longest cached prefix.", ALL_CASES),
        Promise("input_ids: shape (1, L), L >= 1.", ALL_CASES),
        Promise("logits: shape (1, V), the next-token logits after the prompt.", ALL_CASES),
        Promise(
            "cache: a fresh ``KVCache`` holding the prompt's L positions (extend it with "
            "``forward_with_cache`` to decode; the stored copy is not changed).",
            ("a shared system prompt, a repeated request, a partial overlap, a stranger",),
        ),
        Promise(
            "Greedy decoding after a cached prefill: the same tokens as "
            "``generate_with_kv_cache(model, input_ids, max_new_tokens)``.",
            ALL_CASES,
        ),
        Promise("input_ids: shape (1, L); max_new_tokens >= 0.", ALL_CASES),
        Promise("ids: shape (1, L + max_new_tokens).", ALL_CASES),
    ),
)

# ------------------------------------------------------------ speculative_decode


def _spec_variant(kind: str) -> Callable:
    def speculative_decode(target, draft, input_ids, max_new_tokens, gamma=4, temperature=1.0,
                           generator=None):  # fmt: skip
        stats = {"proposed": 0, "accepted": 0, "target_forwards": 0, "draft_forwards": 0,
                 "rounds": 0}  # fmt: skip
        L = input_ids.shape[1]
        ids = input_ids

        def probs(logits):
            if temperature == 0:
                return F.one_hot(logits.argmax(-1), logits.shape[-1]).float()
            return F.softmax(logits.float() / temperature, dim=-1)

        with torch.no_grad():
            while ids.shape[1] - L < max_new_tokens:
                k = min(gamma, max_new_tokens - (ids.shape[1] - L))
                seq, qs = ids, []
                for _ in range(k):
                    q = probs(draft(seq)[:, -1, :])
                    if kind == "greedy_draft":
                        x = q.argmax(dim=-1, keepdim=True)
                    else:
                        x = torch.multinomial(q, 1, generator=generator)
                    qs.append(q)
                    seq = torch.cat([seq, x], dim=1)
                p = probs(target(seq)[:, -(k + 1) :, :])
                q = torch.stack(qs, dim=1)
                proposed = seq[:, ids.shape[1] :]
                p_x = p[:, :k].gather(-1, proposed[..., None]).squeeze(-1)
                q_x = q.gather(-1, proposed[..., None]).squeeze(-1)
                u = torch.rand(k, generator=generator)
                ratio = q_x[0] / p_x[0] if kind == "inverted" else p_x[0] / q_x[0]
                accept = u < ratio
                if kind == "always_accept":
                    accept = torch.ones(k, dtype=torch.bool)
                n = int(accept.long().cumprod(0).sum())
                extra = proposed[:, :0]
                if n < k:
                    residual = p[:, n] if kind == "residual_p" else (p[:, n] - q[:, n]).clamp_min(0)
                    total = residual.sum(-1, keepdim=True)
                    last = torch.where(total > 0, residual, p[:, n])
                    extra = torch.multinomial(last, 1, generator=generator)
                elif kind != "no_bonus":
                    extra = torch.multinomial(p[:, k], 1, generator=generator)
                ids = torch.cat([ids, proposed[:, :n], extra], dim=1)
                stats["proposed"] += k
                stats["accepted"] += n
                stats["target_forwards"] += 1
                stats["draft_forwards"] += k
                stats["rounds"] += 1
        return ids[:, : L + max_new_tokens], stats

    return speculative_decode


def _seed(g: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 10_000, (1,), generator=g))


def _spec_cases(g: torch.Generator) -> list[Case]:
    cases = []
    for label, L, n, gamma in (("temperature 0, gamma = 3", 5, 14, 3),
                               ("temperature 0, gamma = 1", 3, 9, 1),
                               ("max_new_tokens = 0: no round", 4, 0, 2)):  # fmt: skip
        t_config, t_state = _gpt_case(g, max_len=32)
        d_config, d_state = _gpt_case(g, d=8, layers=1, max_len=32)
        case = call_case(label, _ids(g, 1, L), n, gamma=gamma, temperature=0.0)
        case.update(kind="greedy", target_config=t_config, target_state=t_state,
                    draft_config=d_config, draft_state=d_state, seed=_seed(g))  # fmt: skip
        cases.append(case)
    config, state = _gpt_case(g, max_len=32)
    case = call_case("the target as its own draft, T = 1, gamma = 4", _ids(g, 1, 4), 13, gamma=4)
    case.update(kind="self", target_config=config, target_state=state, draft_config=config,
                draft_state=state, seed=_seed(g))  # fmt: skip
    cases.append(case)
    V = 4
    for label, gamma, T in (
        ("many runs on a 4-token vocabulary, gamma = 1", 1, 1.0),
        ("many runs on a 4-token vocabulary, gamma = 3, T = 0.7", 3, 0.7),
    ):
        target = randn(g, V, V, scale=1.0)
        # A poor draft: it piles mass on the target's favourite token of each row, so many
        # proposals are rejected and the residual max(0, p - q) is far from p.
        draft = target + 3.0 * F.one_hot(target.argmax(-1), V)
        first = int(torch.randint(0, V, (1,), generator=g))
        p = F.softmax(target / T, dim=-1)
        case = call_case(label, torch.tensor([[first]]), 2, gamma=gamma, temperature=T)
        case.update(kind="sampled", target_table=target, draft_table=draft, runs=RUNS,
                    seed=_seed(g), target_probs=(p[first][:, None] * p).flatten())  # fmt: skip
        cases.append(case)
    # A flat draft unrelated to the target (gamma omitted: the default 4, so k = 2): a draft
    # that proposes its argmax instead of sampling q gives its favourite token far too often.
    target = randn(g, V, V, scale=1.0)
    draft = randn(g, V, V, scale=0.3)
    first = int(torch.randint(0, V, (1,), generator=g))
    p = F.softmax(target, dim=-1)
    case = call_case("many runs, a flat draft, the default gamma", torch.tensor([[first]]), 2)
    case.update(kind="sampled", target_table=target, draft_table=draft, runs=RUNS,
                seed=_seed(g), target_probs=(p[first][:, None] * p).flatten())  # fmt: skip
    cases.append(case)
    return cases


SPECULATIVE_POWER = (
    "Computed once by a script: the exact law of the first two new tokens on each sampled "
    "case's bigram tables, for the reference and each usual wrong answer, then the 600 graded "
    "runs drawn 4000 times per sampled case from that law and failed as the checker does (a "
    "token of probability 0, or chi-square above the z = 6 threshold after pooling the "
    "outcomes expected fewer than 5 times), over 40 grading seeds (0..39). Power: accepting "
    "with q/p (inverted), drawing the residual from p, accepting every proposal, and a draft "
    "that proposes its argmax (spec_draft_proposes_greedily, greedy_draft) each failed every "
    "simulated grading (power 1.0 to 4 decimals). The greedy draft is caught by the added "
    "case 'many runs, a flat draft, the default gamma' (non-centrality 500 to 1200 against a "
    "threshold near 70); the two older sampled cases gave it 0.1 to 2.4 and it passed them at "
    "3 of 3 seeds. No bonus token keeps the target's law at max_new_tokens = 2 (power 0 there) "
    "and fails deterministically on 'the target as its own draft' (stats, tokens), as do "
    "torch.rand drawn before the draft (spec_rand_before_the_draft: that case's tokens are "
    "compared exactly, the docstring fixing the generator's use) and a round when "
    "max_new_tokens = 0 (stats). False alarm of an honest answer: 0 of 480000 simulated "
    "case gradings with the pooling; without it (as before) 4.3e-4 per grading over 100 seeds, "
    "from outcomes expected about once in 600 runs, so rare outcomes are now pooled."
)

SPECULATIVE = Exercise(
    name="speculative_decode",
    points=5,
    summary="draft proposes, target verifies: the target's exact distribution",
    make_cases=_spec_cases,
    reference=lambda: ref.speculative_decode,
    driver=f"{PUBLIC}:speculative",
    checker=f"{PUBLIC}:check_speculative",
    output_names=("ids", "stats"),
    tolerance=EXACT,
    mistakes=(
        Mistake(
            "inverted",
            "your answers match accepting a proposal with probability q/p: accept it with "
            "probability min(1, p(x) / q(x)), target over draft.",
            _spec_variant("inverted"),
        ),
        Mistake(
            "residual_p",
            "your answers match drawing from the target's p after a rejection: draw from the "
            "residual norm(max(0, p - q)), or tokens the draft over-proposes come out too "
            "often.",
            _spec_variant("residual_p"),
        ),
        Mistake(
            "always_accept",
            "your answers match accepting every proposal: the draft's distribution, not the "
            "target's. Accept x with probability min(1, p(x) / q(x)).",
            _spec_variant("always_accept"),
        ),
        Mistake(
            "no_bonus",
            "your answers match rounds without a bonus token: when all proposals are "
            "accepted, draw one more token from the target's last distribution p_{k+1}.",
            _spec_variant("no_bonus"),
        ),
        Mistake(
            "greedy_draft",
            "your answers match a draft that proposes its most probable token: the draft must "
            "SAMPLE each proposal from q (torch.multinomial(q, 1, generator=generator)), or the "
            "acceptance test min(1, p(x) / q(x)) no longer gives the target's distribution.",
            _spec_variant("greedy_draft"),
        ),
    ),
    promises=(
        Promise(
            "Speculative sampling: the draft proposes, the target verifies in one pass.",
            ALL_CASES,
        ),
        Promise(
            "Each round the draft samples k = min(gamma, tokens still needed) tokens x_1..x_k "
            "one by one from its distributions q_i.",
            (
                *("temperature 0, gamma = 3", "temperature 0, gamma = 1"),
                "many runs, a flat draft, the default gamma",
            ),
        ),
        Promise(
            "The target runs once on the sequence with all k appended, giving its distributions "
            "p_1..p_{k+1}.",
            (
                *("temperature 0, gamma = 3", "temperature 0, gamma = 1"),
                "the target as its own draft, T = 1, gamma = 4",
            ),
        ),
        Promise(
            "Going in order, x_i is accepted with probability min(1, p_i(x_i) / q_i(x_i)) (one "
            "uniform draw u_i each: accept when u_i < p_i(x_i) / q_i(x_i)).",
            (
                *(
                    "many runs on a 4-token vocabulary, gamma = 1",
                    "many runs on a 4-token vocabulary, gamma = 3, T = 0.7",
                    "many runs, a flat draft, the default gamma",
                ),
                "the target as its own draft, T = 1, gamma = 4",
            ),
        ),
        Promise(
            "At the first rejection a token is drawn from the residual norm(max(0, p_i - q_i)) "
            "and the round ends;",
            (
                "many runs on a 4-token vocabulary, gamma = 1",
                "many runs on a 4-token vocabulary, gamma = 3, T = 0.7",
                "many runs, a flat draft, the default gamma",
            ),
        ),
        Promise(
            "if all k are accepted a bonus token is drawn from p_{k+1}.",
            (
                "the target as its own draft, T = 1, gamma = 4",
                "many runs on a 4-token vocabulary, gamma = 1",
            ),
        ),
        Promise(
            "Every token produced this way has exactly the target's distribution.",
            (
                "many runs on a 4-token vocabulary, gamma = 1",
                "many runs on a 4-token vocabulary, gamma = 3, T = 0.7",
                "many runs, a flat draft, the default gamma",
            ),
        ),
        Promise(
            "The answer is cut to max_new_tokens new tokens.",
            ("temperature 0, gamma = 3", "the target as its own draft, T = 1, gamma = 4"),
        ),
        Promise(
            "Distributions are softmax(logits / temperature); at temperature 0 they are one-hot "
            "on the argmax, so the answer is exactly the target's greedy decoding.",
            (
                *("temperature 0, gamma = 3", "temperature 0, gamma = 1"),
                "many runs on a 4-token vocabulary, gamma = 3, T = 0.7",
            ),
        ),
        Promise(
            "Per round the generator is consumed by the k draft draws (``torch.multinomial`` on "
            "(1, V)), one ``torch.rand(k)`` and one draw from the residual or p_{k+1}.",
            ("the target as its own draft, T = 1, gamma = 4",),
        ),
        Promise(
            "Models are recomputed on the whole sequence (no KV cache)",
            ("temperature 0, gamma = 3", "temperature 0, gamma = 1"),
        ),
        Promise(
            "so a target forward pass costs the same whether it checks 1 or gamma tokens.",
            why="a remark on cost; the number of target passes is checked through stats",
        ),
        Promise(
            "target, draft: callables mapping ids (1, L) to logits (1, L, V) (same V).",
            ALL_CASES,
        ),
        Promise("input_ids: shape (1, L), the prompt.", ALL_CASES),
        Promise(
            "max_new_tokens: >= 0.", ("temperature 0, gamma = 3", "max_new_tokens = 0: no round")
        ),
        Promise(
            "gamma: tokens proposed per round, >= 1.",
            (
                *("temperature 0, gamma = 3", "temperature 0, gamma = 1"),
                "the target as its own draft, T = 1, gamma = 4",
                "many runs, a flat draft, the default gamma",
            ),
        ),
        Promise(
            "temperature: >= 0 (0: greedy).",
            (
                *("temperature 0, gamma = 3", "temperature 0, gamma = 1"),
                "the target as its own draft, T = 1, gamma = 4",
                "many runs on a 4-token vocabulary, gamma = 3, T = 0.7",
            ),
        ),
        Promise(
            "generator: the source of randomness.",
            (
                *(
                    "many runs on a 4-token vocabulary, gamma = 1",
                    "many runs on a 4-token vocabulary, gamma = 3, T = 0.7",
                    "many runs, a flat draft, the default gamma",
                ),
                "the target as its own draft, T = 1, gamma = 4",
            ),
        ),
        Promise("ids: shape (1, L + max_new_tokens).", ALL_CASES),
        Promise(
            'stats: {"proposed": draft tokens proposed, "accepted": of those accepted, '
            '"target_forwards": target calls, "draft_forwards": draft calls, "rounds": rounds}.',
            (
                *("temperature 0, gamma = 3", "temperature 0, gamma = 1"),
                "the target as its own draft, T = 1, gamma = 4",
                "max_new_tokens = 0: no round",
            ),
        ),
        Promise(
            "The acceptance rate is accepted / proposed.",
            why="the definition of a quantity computed from stats, not returned",
        ),
    ),
    power=SPECULATIVE_POWER,
)

SPEC = ChapterSpec(
    number="09",
    slug="inference",
    title="Inference acceleration",
    exercises=(
        QUANTIZE_INT8,
        DEQUANTIZE_INT8,
        QUANTIZE_ZEROPOINT,
        DEQUANTIZE_ZEROPOINT,
        INT8_LINEAR,
        DISTILLATION,
        FLASH,
        KV_CACHE,
        FORWARD_WITH_CACHE,
        GENERATE,
        GENERATE_BATCH,
        PREFIX_CACHE,
        SPECULATIVE,
    ),
)
