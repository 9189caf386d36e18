"""Grading spec of chapter 01 (attention): inputs, tolerances and the usual mistakes.

Each exercise below names the function or class of solutions/attention.py it
grades, makes seeded inputs, and lists wrong implementations that students
commonly write. When a submission's answers equal one of those, the hint says
what went wrong. Hidden from students: it imports the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import solutions.attention as ref
from autograder.core.cases import call_case, module_case, randn
from autograder.core.spec import (
    ALL_CASES,
    Case,
    ChapterSpec,
    Exercise,
    Mistake,
    Promise,
    Tolerance,
)

# ------------------------------------------------------ scaled_dot_product_attention


def _sdpa_variant(
    scale: str = "sqrt_d", axis: int = -1, mask_mode: str = "fill", fill: str = "min"
) -> Callable:
    """A wrong attention; ``fill`` is -inf or the dtype's most negative number (both are
    right for masking, but they differ where a whole column or row is masked)."""

    def attention(q, k, v, mask=None):
        value = float("-inf") if fill == "-inf" else torch.finfo(q.dtype).min
        d = {
            "sqrt_d": math.sqrt(q.shape[-1]),
            "none": 1.0,
            "d": q.shape[-1],
            "sqrt_dv": math.sqrt(v.shape[-1]),
        }[scale]
        scores = q @ k.transpose(-2, -1) / d
        if mask is not None and mask_mode == "inverted":
            scores = scores.masked_fill(mask, value)
        elif mask is not None and mask_mode == "fill":
            scores = scores.masked_fill(~mask, value)
        weights = scores.softmax(dim=axis)
        if mask is not None and mask_mode == "after_softmax":
            weights = weights * mask
        return weights @ v, weights

    return attention


_AXIS_HINT = (
    "your answer matches a softmax over the queries (dim=-2): each query's weights over the "
    "keys must sum to 1, so take the softmax over the last dimension (dim=-1)."
)
_MASKED_ROW_HINT = (
    "your answer has NaN in a query row whose mask allows no key: masking with -inf makes "
    "that row's softmax 0/0. Fill the masked scores with a very negative finite number "
    "(torch.finfo(scores.dtype).min): such a row then gets uniform weights, as promised."
)
_INVERTED_HINT = (
    "your answer matches an inverted mask: True marks the positions that MAY be attended to, "
    "so fill the scores where the mask is False (scores.masked_fill(~mask, -inf))."
)


def _sdpa_cases(g: torch.Generator) -> list[Case]:
    pad = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    pad[0, ..., 5:] = False
    pad[1, ..., 3:] = False
    blocked = torch.rand(2, 4, 5, generator=g) < 0.6
    blocked[..., 0] = True  # every row allows a key, but for the two rows below
    blocked[0, 1] = False
    blocked[1, 3] = False
    return [
        call_case(
            "no batch, no mask",
            randn(g, 5, 8, scale=1.5),
            randn(g, 7, 8, scale=1.5),
            randn(g, 7, 4),
        ),
        call_case(
            "batch and heads, causal mask",
            randn(g, 2, 3, 6, 16),
            randn(g, 2, 3, 6, 16),
            randn(g, 2, 3, 6, 16),
            mask=ref.causal_mask(6),
        ),
        call_case(
            "cross-attention with a padding mask",
            randn(g, 2, 2, 4, 8, scale=1.5),
            randn(g, 2, 2, 7, 8, scale=1.5),
            randn(g, 2, 2, 7, 3),
            mask=pad,
        ),
        call_case(
            "a query row with no allowed key",
            randn(g, 2, 4, 8, scale=1.5),
            randn(g, 2, 5, 8, scale=1.5),
            randn(g, 2, 5, 3),
            mask=blocked,
        ),
    ]


SDPA = Exercise(
    name="scaled_dot_product_attention",
    points=3,
    summary="softmax(q kᵀ / sqrt(d)) v with a boolean mask",
    make_cases=_sdpa_cases,
    reference=lambda: ref.scaled_dot_product_attention,
    output_names=("out", "weights"),
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    mistakes=(
        Mistake(
            "no_scale",
            "your answer matches attention without the 1/sqrt(d) scale: divide "
            "the scores q·kᵀ by sqrt(d), d = q.shape[-1], before the softmax.",
            _sdpa_variant(scale="none"),
        ),
        Mistake(
            "scale_by_d",
            "your answer matches scores divided by d instead of sqrt(d): the "
            "scale is 1/sqrt(d), d = q.shape[-1].",
            _sdpa_variant(scale="d"),
        ),
        Mistake(
            "scale_by_dv",
            "your answer matches a scale of 1/sqrt(dv) (the size of the values): "
            "the scale uses d, the size of queries and keys, q.shape[-1].",
            _sdpa_variant(scale="sqrt_dv"),
        ),
        Mistake("softmax_axis", _AXIS_HINT, _sdpa_variant(axis=-2, fill="-inf")),
        Mistake("softmax_axis_min", _AXIS_HINT, _sdpa_variant(axis=-2, fill="min")),
        Mistake("mask_inverted", _INVERTED_HINT, _sdpa_variant(mask_mode="inverted", fill="-inf")),
        Mistake(
            "mask_inverted_min", _INVERTED_HINT, _sdpa_variant(mask_mode="inverted", fill="min")
        ),
        Mistake(
            "mask_after_softmax",
            "your answer matches zeroing masked weights after the "
            "softmax: then the rows no longer sum to 1. Mask the scores with -inf before "
            "the softmax.",
            _sdpa_variant(mask_mode="after_softmax"),
        ),
        Mistake("masked_row_nan", _MASKED_ROW_HINT, _sdpa_variant(fill="-inf")),
    ),
    promises=(
        Promise("Attention: softmax(q k^T / sqrt(d)) v.", ALL_CASES),
        Promise("q: queries, shape (..., Lq, d).", ALL_CASES),
        Promise("k: keys, shape (..., Lk, d).", ALL_CASES),
        Promise(
            "v: values, shape (..., Lk, dv).",
            (
                "no batch, no mask",
                "cross-attention with a padding mask",
                "a query row with no allowed key",
            ),
        ),
        Promise(
            "mask: optional bool tensor broadcastable to (..., Lq, Lk);",
            (
                "no batch, no mask",
                "batch and heads, causal mask",
                "cross-attention with a padding mask",
                "a query row with no allowed key",
            ),
        ),
        Promise(
            "True where query i may attend to key j",
            (
                "batch and heads, causal mask",
                "cross-attention with a padding mask",
                "a query row with no allowed key",
            ),
        ),
        Promise(
            "A query row with no allowed key gets uniform weights instead of NaN.",
            ("a query row with no allowed key",),
        ),
        Promise("out: shape (..., Lq, dv), the weighted average of the values.", ALL_CASES),
        Promise(
            "weights: shape (..., Lq, Lk), the attention weights; every row sums to 1.", ALL_CASES
        ),
    ),
)

# ---------------------------------------------------------------------- causal_mask


def _causal_cases(g: torch.Generator) -> list[Case]:
    del g  # no randomness needed
    cases = [call_case(f"seq_len={n}", n) for n in (0, 1, 4, 7)]
    # meta tensors have a device, a shape and a dtype but no values: the driver
    # answers those, so an ignored `device` shows on any machine
    return [*cases, call_case("on the meta device", 3, device="meta")]


CAUSAL = Exercise(
    name="causal_mask",
    points=1,
    summary="the lower-triangular boolean mask of a decoder",
    make_cases=_causal_cases,
    reference=lambda: ref.causal_mask,
    driver="autograder.public.attention:call_on_device",
    tolerance=Tolerance(0.0, 0.0),
    mistakes=(
        Mistake(
            "off_by_one",
            "your mask matches one without the diagonal: position i must be "
            "allowed to attend to itself, so keep the diagonal (torch.tril with diagonal=0).",
            lambda n, device=None: torch.ones(n, n, dtype=torch.bool, device=device).tril(-1),
        ),
        Mistake(
            "upper",
            "your mask matches the upper triangle: position i may attend to "
            "positions 0..i, which lie on and below the diagonal (torch.tril).",
            lambda n, device=None: torch.ones(n, n, dtype=torch.bool, device=device).triu(),
        ),
        Mistake(
            "disallowed",
            "your mask marks the positions that must NOT be attended to (the "
            "future). The contract's mask is True where attention is allowed: on and below "
            "the diagonal.",
            lambda n, device=None: torch.ones(n, n, dtype=torch.bool, device=device).triu(1),
        ),
        Mistake(
            "device_ignored",
            "your mask is created on the CPU whatever `device` says (the case asks for "
            "device='meta'): create it there, torch.ones(L, L, dtype=torch.bool, device=device).",
            lambda n, device=None: torch.ones(n, n, dtype=torch.bool).tril(),
        ),
    ),
    promises=(
        Promise("The mask of a decoder: position i may attend to positions 0..i.", ALL_CASES),
        Promise(
            "seq_len: L, the sequence length (>= 0).",
            ("seq_len=0", "seq_len=1", "seq_len=4", "seq_len=7"),
        ),
        Promise("device: where to create the mask.", ("on the meta device",)),
        Promise(
            "A bool tensor of shape (L, L), True on and below the diagonal.",
            ("seq_len=0", "seq_len=1", "seq_len=4", "seq_len=7", "on the meta device"),
        ),
    ),
)

# --------------------------------------------------------------- MultiHeadAttention


class _WrongMHA(ref.MultiHeadAttention):
    """Reference weights, a wrong forward: one flag per usual mistake."""

    split = "heads"  # "heads", "no_transpose" (view as (B, H, L, Dh)), "single" (no heads)
    scale_by_model = False
    use_context = True
    out_projection = True
    first_head_mask = False  # a (B, n_heads, L, S) mask read through its first head only

    def forward(self, x, context=None, mask=None):
        ctx = context if (context is not None and self.use_context) else x
        B, L, D = x.shape
        S = ctx.shape[1]
        H, Dh = (1, D) if self.split == "single" else (self.n_heads, self.d_head)

        def heads(t, n):
            if self.split == "no_transpose":
                return t.reshape(B, H, n, Dh)
            return t.view(B, n, H, Dh).transpose(1, 2)

        q, k, v = heads(self.q_proj(x), L), heads(self.k_proj(ctx), S), heads(self.v_proj(ctx), S)
        scores = q @ k.transpose(-2, -1) / math.sqrt(D if self.scale_by_model else Dh)
        one_head = self.first_head_mask or self.split == "single"  # one head: one pattern
        if mask is not None and one_head and mask.dim() == 4:
            mask = mask[:, :1]
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        out = scores.softmax(-1) @ v
        out = (
            out.reshape(B, L, D)
            if self.split == "no_transpose"
            else out.transpose(1, 2).reshape(B, L, D)
        )
        return self.out_proj(out) if self.out_projection else out


def _wrong_mha(**flags: Any) -> type:
    return type("WrongMHA", (_WrongMHA,), flags)


def _mha_cases(g: torch.Generator) -> list[Case]:
    M = ref.MultiHeadAttention
    pad = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    pad[1, ..., 3:] = False
    cross = torch.rand(2, 1, 4, 4, generator=g) < 0.5
    cross[..., 0] = True  # every query may attend to some key
    return [
        module_case("self-attention", M, {"d_model": 16, "n_heads": 4}, g, randn(g, 2, 5, 16)),
        module_case(
            "causal self-attention",
            M,
            {"d_model": 16, "n_heads": 4},
            g,
            randn(g, 2, 5, 16),
            mask=ref.causal_mask(5),
        ),
        module_case(
            "cross-attention",
            M,
            {"d_model": 16, "n_heads": 2},
            g,
            randn(g, 2, 4, 16),
            context=randn(g, 2, 6, 16),
        ),
        module_case(
            "no bias, padding mask",
            M,
            {"d_model": 12, "n_heads": 3, "bias": False},
            g,
            randn(g, 2, 5, 12),
            mask=pad,
        ),
        module_case(
            "masked cross-attention",
            M,
            {"d_model": 16, "n_heads": 4},
            g,
            randn(g, 2, 4, 16),
            context=randn(g, 2, 4, 16),
            mask=cross,
        ),
        module_case(
            "per-head mask",
            M,
            {"d_model": 16, "n_heads": 4},
            g,
            randn(g, 3, 5, 16),
            mask=_per_head_mask(g),
        ),
    ]


def _per_head_mask(g: torch.Generator) -> torch.Tensor:
    """A mask of full shape (B=3, n_heads=4, L=5, S=5): each head of each row its own pattern."""
    mask = torch.rand(3, 4, 5, 5, generator=g) < 0.5
    mask |= torch.eye(5, dtype=torch.bool)  # every query may attend to itself
    return mask


MHA = Exercise(
    name="MultiHeadAttention",
    points=3,
    summary="project, split into heads, attend, merge, project",
    make_cases=_mha_cases,
    reference=lambda: ref.MultiHeadAttention,
    driver="module",
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    depends_on=("scaled_dot_product_attention",),
    mistakes=(
        Mistake(
            "scale_by_d_model",
            "your answer matches scaling the scores by 1/sqrt(d_model): "
            "within a head the queries have d_head = d_model / n_heads dimensions, so the "
            "scale is 1/sqrt(d_head).",
            _wrong_mha(scale_by_model=True),
        ),
        Mistake(
            "no_transpose",
            "your answer matches reshaping (B, L, d_model) straight to "
            "(B, n_heads, L, d_head): that mixes positions between heads. View as "
            "(B, L, n_heads, d_head), then transpose(1, 2) (and undo both when merging).",
            _wrong_mha(split="no_transpose"),
        ),
        Mistake(
            "single_head",
            "your answer matches one head of size d_model: split the "
            "projections into n_heads heads of d_head = d_model / n_heads dimensions.",
            _wrong_mha(split="single"),
        ),
        Mistake(
            "context_ignored",
            "your answer matches keys and values taken from x even when "
            "`context` is given: in cross-attention the queries come from x, the keys and "
            "values from context.",
            _wrong_mha(use_context=False),
        ),
        Mistake(
            "no_out_proj",
            "your answer matches the merged heads without `out_proj`: apply "
            "the output projection after merging the heads.",
            _wrong_mha(out_projection=False),
        ),
        Mistake(
            "one_mask_for_every_head",
            "your answer matches applying the first head's mask to every head: a mask of "
            "shape (B, n_heads, L, S) gives each head its own pattern; let it broadcast "
            "against the scores of shape (B, n_heads, L, S) as it is.",
            _wrong_mha(first_head_mask=True),
        ),
    ),
    promises=(
        Promise(
            "Multi-head attention, the same function as ``torch.nn.MultiheadAttention``.",
            ALL_CASES,
        ),
        Promise(
            "q_proj, k_proj, v_proj, out_proj: ``nn.Linear(d_model, d_model, bias=bias)``.",
            ALL_CASES,
        ),
        Promise("n_heads: number of heads H.", ALL_CASES),
        Promise("d_head: d_model // n_heads, the size of one head.", ALL_CASES),
        Promise(
            "d_model: model width; must be divisible by n_heads.",
            why="a precondition on the caller's arguments (the docstring promises no error)",
        ),
        Promise("n_heads: number of heads.", ALL_CASES),
        Promise(
            "bias: whether the four projections have a bias.",
            ("self-attention", "no bias, padding mask"),
        ),
        Promise(
            "Self-attention on x, or cross-attention from x to context.",
            ("self-attention", "cross-attention", "masked cross-attention"),
        ),
        Promise("x: shape (B, L, d_model); the queries come from x.", ALL_CASES),
        Promise(
            "context: optional, shape (B, S, d_model); the keys and values come from context",
            (
                "self-attention",
                "causal self-attention",
                "cross-attention",
                "masked cross-attention",
            ),
        ),
        Promise(
            "mask: optional bool tensor broadcastable to (B, n_heads, L, S), True where "
            "attention is allowed (e.g. ``causal_mask(L)``).",
            (
                "self-attention",
                "causal self-attention",
                "no bias, padding mask",
                "masked cross-attention",
                "per-head mask",
            ),
        ),
        Promise("Shape (B, L, d_model).", ALL_CASES),
    ),
)

# ------------------------------------------------------ sinusoidal_positional_encoding


def _pe_variant(kind: str) -> Callable:
    def encoding(seq_len, d_model, device=None, dtype=torch.float32):
        pos = torch.arange(seq_len, dtype=torch.float64, device=device)[:, None]
        j = torch.arange(d_model, dtype=torch.float64, device=device)
        pair = torch.div(j, 2, rounding_mode="floor")
        exponent = {"per_dim": j / 2, "no_two": pair / 2}.get(kind, pair) * 2 / d_model
        angles = pos / 10000.0**exponent  # (L, d): column j uses its own frequency
        even = j % 2 == 0
        if kind == "halves":
            half = angles[:, ::2]
            return torch.cat([half.sin(), half.cos()], dim=-1).to(dtype)
        if kind == "swapped":
            return torch.where(even, angles.cos(), angles.sin()).to(dtype)
        return torch.where(even, angles.sin(), angles.cos()).to(dtype)

    return encoding


def _pe_cases(g: torch.Generator) -> list[Case]:
    del g  # no randomness needed
    cases = [call_case(f"L={n}, d={d}", n, d) for n, d in ((6, 8), (50, 16), (1, 4), (0, 4))]
    return [
        *cases,
        # graded to 1e-9 (check_precision): a table computed in float32 and cast fails
        call_case("L=50, d=16, dtype=float64", 50, 16, dtype="float64"),
        call_case("on the meta device", 5, 6, device="meta"),
    ]


PE = Exercise(
    name="sinusoidal_positional_encoding",
    points=1,
    summary="the fixed sin/cos table of the original transformer",
    make_cases=_pe_cases,
    reference=lambda: ref.sinusoidal_positional_encoding,
    driver="autograder.public.attention:call_on_device",
    checker="autograder.public.attention:check_precision",
    tolerance=Tolerance(atol=1e-4, rtol=1e-4),
    mistakes=(
        Mistake(
            "halves",
            "your table matches all the sines in the first half of the columns and "
            "all the cosines in the second: the contract interleaves them, sin in even "
            "columns 2i, cos in odd columns 2i+1.",
            _pe_variant("halves"),
        ),
        Mistake(
            "per_dim",
            "your table matches a frequency per column j (10000^(j/d)): columns 2i "
            "and 2i+1 share one frequency, 10000^(2i/d).",
            _pe_variant("per_dim"),
        ),
        Mistake(
            "no_two",
            "your table matches the exponent i/d for pair i: it is 2i/d, i.e. the "
            "even column index divided by d_model.",
            _pe_variant("no_two"),
        ),
        Mistake(
            "swapped",
            "your table matches cos in the even columns and sin in the odd ones: "
            "PE[p, 2i] is the sine, PE[p, 2i+1] the cosine.",
            _pe_variant("swapped"),
        ),
        Mistake(
            "computed_in_float32",
            "your float64 table matches one computed in float32 and then cast: with "
            "dtype=torch.float64 compute the positions and frequencies in float64 too.",
            lambda n, d, device=None, dtype=torch.float32: ref.sinusoidal_positional_encoding(
                n, d, device=device
            ).to(dtype),
        ),
        Mistake(
            "device_ignored",
            "your table is created on the CPU whatever `device` says (the case asks for "
            "device='meta'): pass device=device to every torch.arange/torch.zeros you create.",
            lambda n, d, device=None, dtype=torch.float32: ref.sinusoidal_positional_encoding(
                n, d, dtype=dtype
            ),
        ),
    ),
    promises=(
        Promise("The fixed positional encoding of the original transformer.", ALL_CASES),
        Promise(
            "PE[p, 2i] = sin(p / 10000^(2i/d_model)), PE[p, 2i+1] = cos(p / 10000^(2i/d_model)).",
            ("L=6, d=8", "L=50, d=16", "L=1, d=4", "L=50, d=16, dtype=float64"),
        ),
        Promise("seq_len: L, the number of positions (>= 0).", ("L=1, d=4", "L=0, d=4")),
        Promise(
            "d_model: model width; must be even and positive.",
            why="a precondition on the caller's arguments (the docstring promises no error)",
        ),
        Promise("device: where to create the table.", ("on the meta device",)),
        Promise(
            "dtype: the float dtype of the result (computed in float32, or float64).",
            ("L=6, d=8", "L=50, d=16, dtype=float64", "on the meta device"),
        ),
        Promise("Shape (L, d_model).", ALL_CASES),
    ),
)

# ------------------------------------------------------------------------ apply_rope


def _rope_variant(kind: str) -> Callable:
    def rope(x, positions=None, base=10000.0):
        L, d = x.shape[-2], x.shape[-1]
        if positions is None or kind == "positions_ignored":
            positions = torch.arange(L)
        i = torch.arange(d // 2, dtype=torch.float64)
        if kind == "rounded":
            positions = positions.round()
        inv = base ** ((-i if kind == "no_two" else -2 * i) / d)
        ang = positions.double()[..., None] * inv  # (..., L, d/2)
        if kind == "float32":
            ang = ang.float().double()
        if kind == "reversed":
            ang = -ang
        cos, sin = ang.cos(), ang.sin()
        xd = x.double()
        if kind == "interleaved":
            x1, x2 = xd[..., 0::2], xd[..., 1::2]
            out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
            return out.flatten(-2).to(x.dtype)
        x1, x2 = xd[..., : d // 2], xd[..., d // 2 :]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)

    return rope


def _rope_cases(g: torch.Generator) -> list[Case]:
    return [
        call_case("heads, default positions", randn(g, 2, 3, 6, 8)),
        call_case("explicit positions", randn(g, 5, 4), torch.tensor([3, 0, 7, 7, 10])),
        call_case("base 500", randn(g, 1, 2, 4, 16), base=500.0),
        call_case(
            "float positions",
            randn(g, 2, 6, 8),
            torch.tensor([0.0, 0.5, 1.25, 3.0, 7.5, 2.75]),
        ),
        call_case(
            "positions per sequence (B, 1, L)",
            randn(g, 2, 3, 5, 8),
            torch.randint(0, 50, (2, 1, 5), generator=g),
        ),
        # graded to 1e-9 (check_precision): angles computed in float32 are off by ~1e-5
        call_case(
            "float64 input, positions up to 1000",
            randn(g, 3, 4, 16).double(),
            1000.0 * torch.rand(4, generator=g, dtype=torch.float64),
        ),
    ]


ROPE = Exercise(
    name="apply_rope",
    points=2,
    summary="rotary position embeddings, rotate-half pairing",
    make_cases=_rope_cases,
    reference=lambda: ref.apply_rope,
    checker="autograder.public.attention:check_precision",
    dtypes=("float64",),
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    mistakes=(
        Mistake(
            "interleaved",
            "your answer matches rotating adjacent dimensions (2i, 2i+1) "
            "together (the GPT-J layout): this course uses rotate-half, where dimension i "
            "pairs with i + d/2 (Llama, GPT-NeoX).",
            _rope_variant("interleaved"),
        ),
        Mistake(
            "reversed",
            "your answer matches a rotation by minus the angle: with "
            "rotate_half(x) = cat(-x2, x1), out = x·cos + rotate_half(x)·sin.",
            _rope_variant("reversed"),
        ),
        Mistake(
            "no_two",
            "your answer matches frequencies base^(-i/d): the frequency of pair i is base^(-2i/d).",
            _rope_variant("no_two"),
        ),
        Mistake(
            "positions_ignored",
            "your answer matches positions 0..L-1 even when `positions` "
            "is given: use the positions passed in.",
            _rope_variant("positions_ignored"),
        ),
        Mistake(
            "positions_rounded",
            "your answer matches positions rounded to integers: positions may be floats "
            "(0.5, 1.25...); convert them to the float dtype without rounding.",
            _rope_variant("rounded"),
        ),
        Mistake(
            "angles_float32",
            "your float64 answer matches angles computed in float32: for a float64 x, "
            "compute the frequencies and angles in float64.",
            _rope_variant("float32"),
        ),
    ),
    promises=(
        Promise(
            "Rotary position embedding (RoPE), rotate-half convention (Llama, GPT-NeoX).",
            ALL_CASES,
        ),
        Promise(
            "Dimension i is paired with dimension i + d/2 and the pair is rotated by the angle "
            "positions[p] * base^(-2i/d), i in [0, d/2): out = x * cos + rotate_half(x) * sin, "
            "with rotate_half(x) = cat(-x2, x1).",
            ALL_CASES,
        ),
        Promise(
            "x: shape (..., L, d), d even (queries or keys, e.g. (B, H, L, d)).",
            ALL_CASES,
        ),
        Promise(
            "positions: optional, shape (L,) or broadcastable with x's leading dimensions as "
            "(..., L) (e.g. (B, 1, L) for x of shape (B, H, L, d));",
            ("explicit positions", "positions per sequence (B, 1, L)", "heads, default positions"),
        ),
        Promise(
            "integer or float.",
            ("explicit positions", "float positions", "float64 input, positions up to 1000"),
        ),
        Promise("Defaults to 0..L-1.", ("heads, default positions", "base 500")),
        Promise("base: the base of the frequencies.", ("base 500", "heads, default positions")),
        Promise(
            "Shape (..., L, d), same dtype as x (angles computed in float32, or float64 for "
            "float64 input).",
            ("heads, default positions", "float64 input, positions up to 1000"),
        ),
    ),
)

# ------------------------------------------------------------- layer_norm, rms_norm


def _ln_variant(kind: str) -> Callable:
    def norm(x, weight, bias, eps=1e-5):
        dim = 0 if kind == "wrong_dim" else -1
        mean = x.mean(dim, keepdim=True)
        var = x.var(dim, keepdim=True, unbiased=kind == "unbiased")
        shift = 0.0 if bias is None else bias
        if kind == "eps_outside":
            return (x - mean) / (var.sqrt() + eps) * weight + shift
        return (x - mean) / torch.sqrt(var + eps) * weight + shift

    return norm


def _norm_cases(g: torch.Generator, with_bias: bool) -> list[Case]:
    cases = []
    for label, shape, eps, scale in (
        ("rows of 5", (4, 5), None, 1.0),
        ("batch, eps=0.1", (2, 3, 8), 0.1, 1.0),
        # values so small that the default eps matters: a wrong default shows
        ("tiny values, the default eps", (3, 6), None, 1e-3),
    ):
        d = shape[-1]
        args = [scale * (randn(g, *shape, scale=2.0) + 1.0), 1.0 + 0.5 * randn(g, d)]
        if with_bias:
            args.append(randn(g, d, scale=0.5))
        cases.append(call_case(label, *args, **({"eps": eps} if eps else {})))
    if with_bias:  # the shift is optional: None means no shift
        x = randn(g, 3, 7, scale=2.0) + 1.0
        cases.append(call_case("no shift (bias=None)", x, 1.0 + 0.5 * randn(g, 7), None))
    return cases


LN = Exercise(
    name="layer_norm",
    points=1,
    summary="normalise over the last dimension, then scale and shift",
    make_cases=lambda g: _norm_cases(g, with_bias=True),
    reference=lambda: ref.layer_norm,
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    mistakes=(
        Mistake(
            "unbiased",
            "your answer matches the unbiased variance (dividing by d - 1): layer "
            "norm uses the biased variance, x.var(dim=-1, unbiased=False).",
            _ln_variant("unbiased"),
        ),
        Mistake(
            "eps_outside",
            "your answer matches (x - mean) / (std + eps): eps goes inside the "
            "square root, (x - mean) / sqrt(var + eps).",
            _ln_variant("eps_outside"),
        ),
        Mistake(
            "wrong_dim",
            "your answer matches normalising over the first dimension: layer "
            "norm normalises each vector over the LAST dimension (dim=-1).",
            _ln_variant("wrong_dim"),
        ),
    ),
    promises=(
        Promise("Layer normalisation over the last dimension (as ``F.layer_norm``).", ALL_CASES),
        Promise(
            "y = (x - mean) / sqrt(var + eps) * weight + bias, with the biased variance.",
            ALL_CASES,
        ),
        Promise("x: shape (..., d).", ALL_CASES),
        Promise("weight: shape (d,), the gain.", ALL_CASES),
        Promise(
            "bias: shape (d,), the shift, or None for no shift.",
            ("rows of 5", "batch, eps=0.1", "tiny values, the default eps", "no shift (bias=None)"),
        ),
        Promise("eps: added to the variance.", ("batch, eps=0.1", "tiny values, the default eps")),
        Promise("Shape (..., d).", ALL_CASES),
    ),
)


def _rms_variant(kind: str) -> Callable:
    def norm(x, weight, eps=1e-6):
        if kind == "centered":
            x = x - x.mean(-1, keepdim=True)
        ms = x.pow(2).mean(-1, keepdim=True)
        if kind == "eps_outside":
            return x / (ms.sqrt() + eps) * weight
        if kind == "no_sqrt":
            return x / (ms + eps) * weight
        return x / torch.sqrt(ms + eps) * weight

    return norm


RMS = Exercise(
    name="rms_norm",
    points=1,
    summary="divide by the root mean square, then scale",
    make_cases=lambda g: [
        {**c, "label": "batch, eps=0.5", "kwargs": {"eps": 0.5}} if c["kwargs"] else c
        for c in _norm_cases(g, False)
    ],
    reference=lambda: ref.rms_norm,
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    mistakes=(
        Mistake(
            "centered",
            "your answer matches subtracting the mean first: RMSNorm does not "
            "center, it only divides by sqrt(mean(x²) + eps).",
            _rms_variant("centered"),
        ),
        Mistake(
            "eps_outside",
            "your answer matches x / (rms + eps): eps goes inside the square "
            "root, x / sqrt(mean(x²) + eps).",
            _rms_variant("eps_outside"),
        ),
        Mistake(
            "no_sqrt",
            "your answer matches dividing by the mean square itself: divide by its square root.",
            _rms_variant("no_sqrt"),
        ),
    ),
    promises=(
        Promise(
            "RMS normalisation over the last dimension (Llama): x / sqrt(mean(x^2) + eps) * "
            "weight.",
            ALL_CASES,
        ),
        Promise("x: shape (..., d).", ALL_CASES),
        Promise("weight: shape (d,), the gain.", ALL_CASES),
        Promise(
            "eps: added to the mean square.", ("batch, eps=0.5", "tiny values, the default eps")
        ),
        Promise("Shape (..., d).", ALL_CASES),
    ),
)

# ----------------------------------------------------------------------------- gelu

GELU = Exercise(
    name="gelu",
    points=1,
    summary="the tanh approximation of GELU",
    make_cases=lambda g: [
        call_case("1000 values", randn(g, 1000, scale=3.0)),
        call_case("a grid from -5 to 5", torch.linspace(-5.0, 5.0, 41).reshape(1, 41)),
    ],
    reference=lambda: ref.gelu,
    tolerance=Tolerance(atol=1e-5, rtol=1e-5),
    mistakes=(
        Mistake(
            "exact_erf",
            "your answer matches the exact GELU, x·Φ(x) with erf "
            "(F.gelu's default): the course uses the tanh approximation "
            "0.5x(1 + tanh(sqrt(2/π)(x + 0.044715x³))).",
            lambda x: F.gelu(x),
        ),
        Mistake(
            "sigmoid",
            "your answer matches x·sigmoid(1.702x), another approximation: use the tanh form.",
            lambda x: x * torch.sigmoid(1.702 * x),
        ),
        Mistake(
            "no_half",
            "your answer is twice the expected one: the formula starts with 0.5.",
            lambda x: x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
        ),
        Mistake(
            "sqrt_2pi",
            "your answer matches sqrt(2π) in place of sqrt(2/π) inside the tanh.",
            lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 * math.pi) * (x + 0.044715 * x**3))),
        ),
    ),
    promises=(
        Promise(
            "GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).", ALL_CASES
        ),
        Promise("x: any shape.", ALL_CASES),
        Promise("Same shape as x.", ALL_CASES),
    ),
)

# ---------------------------------------------------------------------- FeedForward


class _WrongFF(ref.FeedForward):
    act: Callable | None = None  # None: the reference's choice

    def forward(self, x):
        h = self.fc1(x)
        if self.act is None:
            h = ref.gelu(h) if self.activation == "gelu" else torch.relu(h)
        else:
            h = type(self).act(h)
        return self.fc2(h)


def _wrong_ff(act: Callable) -> type:
    return type("WrongFF", (_WrongFF,), {"act": staticmethod(act)})


FF = Exercise(
    name="FeedForward",
    points=1,
    summary="fc2(act(fc1(x)))",
    make_cases=lambda g: [
        module_case("gelu", ref.FeedForward, {"d_model": 8, "d_ff": 32}, g, randn(g, 2, 5, 8)),
        module_case(
            "relu",
            ref.FeedForward,
            {"d_model": 8, "d_ff": 16, "activation": "relu"},
            g,
            randn(g, 3, 8),
        ),
    ],
    reference=lambda: ref.FeedForward,
    driver="module",
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    depends_on=("gelu",),
    mistakes=(
        Mistake(
            "exact_gelu",
            "your answer matches the exact GELU (nn.GELU() or F.gelu without "
            "approximate='tanh'): use this chapter's tanh-approximate gelu.",
            _wrong_ff(F.gelu),
        ),
        Mistake(
            "activation_ignored",
            "your answer matches GELU even when activation='relu': "
            "use the activation the constructor was given.",
            _wrong_ff(ref.gelu),
        ),
        Mistake(
            "no_activation",
            "your answer matches fc2(fc1(x)) with no activation between: "
            "without it two linear layers collapse into one.",
            _wrong_ff(lambda h: h),
        ),
    ),
    promises=(
        Promise("The position-wise MLP of a transformer: fc2(act(fc1(x))).", ALL_CASES),
        Promise("fc1: ``nn.Linear(d_model, d_ff)``.", ALL_CASES),
        Promise("fc2: ``nn.Linear(d_ff, d_model)``.", ALL_CASES),
        Promise(
            'activation: "gelu" (this module\'s tanh-approximate ``gelu``) or "relu".',
            ("gelu", "relu"),
        ),
        Promise("d_model: model width.", ALL_CASES),
        Promise("d_ff: hidden width (usually 4 * d_model).", ALL_CASES),
        Promise('activation: "gelu" or "relu".', ("gelu", "relu")),
        Promise("x of shape (..., d_model).", ALL_CASES),
        Promise("Returns: shape (..., d_model).", ALL_CASES),
    ),
)

# ----------------------------------------------------------------- TransformerBlock


class _WrongBlock(ref.TransformerBlock):
    post_norm = False
    residual = True
    mask_mode = "follow"  # "follow" the causal flag, "never", "always"
    shared_norm = False

    def forward(self, x):
        L = x.shape[1]
        causal = {"follow": self.causal, "never": False, "always": True}[self.mask_mode]
        mask = ref.causal_mask(L) if causal else None
        ln2 = self.ln1 if self.shared_norm else self.ln2
        if self.post_norm:
            x = self.ln1(x + self.attn(x, mask=mask))
            return ln2(x + self.ff(x))
        a = self.attn(self.ln1(x), mask=mask)
        x = x + a if self.residual else a
        f = self.ff(ln2(x))
        return x + f if self.residual else f


def _wrong_block(**flags: Any) -> type:
    return type("WrongBlock", (_WrongBlock,), flags)


BLOCK = Exercise(
    name="TransformerBlock",
    points=2,
    summary="pre-norm: x + attn(ln1(x)), then x + ff(ln2(x))",
    make_cases=lambda g: [
        module_case(
            "causal",
            ref.TransformerBlock,
            {"d_model": 16, "n_heads": 4, "d_ff": 32, "causal": True},
            g,
            randn(g, 2, 6, 16),
        ),
        module_case(
            "not causal",
            ref.TransformerBlock,
            {"d_model": 16, "n_heads": 2, "d_ff": 24, "causal": False},
            g,
            randn(g, 2, 5, 16),
        ),
        module_case(
            "causal by default (argument omitted)",
            ref.TransformerBlock,
            {"d_model": 8, "n_heads": 2, "d_ff": 16},
            g,
            randn(g, 1, 4, 8),
        ),
    ],
    reference=lambda: ref.TransformerBlock,
    driver="module",
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    depends_on=("MultiHeadAttention", "FeedForward", "causal_mask"),
    mistakes=(
        Mistake(
            "post_norm",
            "your answer matches a post-norm block, ln(x + sublayer(x)) (the "
            "original 2017 layout): this block is pre-norm, x + sublayer(ln(x)).",
            _wrong_block(post_norm=True),
        ),
        Mistake(
            "no_residual",
            "your answer matches the block without residual connections: "
            "add each sublayer's output to its input, x = x + attn(ln1(x)).",
            _wrong_block(residual=False),
        ),
        Mistake(
            "never_causal",
            "your answer matches attention without the causal mask when "
            "causal=True: position t must not see positions after t.",
            _wrong_block(mask_mode="never"),
        ),
        Mistake(
            "always_causal",
            "your answer matches a causal mask even when causal=False.",
            _wrong_block(mask_mode="always"),
        ),
        Mistake(
            "shared_norm",
            "your answer matches using ln1 before the feed-forward too: it has its own norm, ln2.",
            _wrong_block(shared_norm=True),
        ),
    ),
    promises=(
        Promise("A pre-norm transformer block (GPT-2 style).", ALL_CASES),
        Promise(
            "x = x + attn(ln1(x), mask=causal_mask(L) if causal else None) x = x + ff(ln2(x))",
            ALL_CASES,
        ),
        Promise("ln1: ``nn.LayerNorm(d_model)``, before attention.", ALL_CASES),
        Promise("attn: ``MultiHeadAttention(d_model, n_heads)``.", ALL_CASES),
        Promise("ln2: ``nn.LayerNorm(d_model)``, before the MLP.", ALL_CASES),
        Promise("ff: ``FeedForward(d_model, d_ff)`` (GELU).", ALL_CASES),
        Promise(
            "causal: whether position t only sees positions 0..t.",
            ("causal", "not causal", "causal by default (argument omitted)"),
        ),
        Promise(
            "d_model: model width; must be divisible by n_heads.",
            why="a precondition on the caller's arguments (the docstring promises no error)",
        ),
        Promise("n_heads: number of attention heads.", ALL_CASES),
        Promise("d_ff: hidden width of the MLP.", ALL_CASES),
        Promise(
            "causal: use a causal mask in the attention.",
            ("causal", "not causal", "causal by default (argument omitted)"),
        ),
        Promise("x of shape (B, L, d_model).", ALL_CASES),
        Promise("Returns: shape (B, L, d_model).", ALL_CASES),
    ),
)

SPEC = ChapterSpec(
    number="01",
    slug="attention",
    title="Attention and the transformer block",
    exercises=(SDPA, CAUSAL, MHA, PE, ROPE, LN, RMS, GELU, FF, BLOCK),
)
