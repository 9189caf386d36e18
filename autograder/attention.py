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
from autograder.core.spec import Case, ChapterSpec, Exercise, Mistake, Tolerance

# ------------------------------------------------------ scaled_dot_product_attention


def _sdpa_variant(
    scale: str = "sqrt_d", axis: int = -1, mask_mode: str = "fill", fill: str = "-inf"
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
_INVERTED_HINT = (
    "your answer matches an inverted mask: True marks the positions that MAY be attended to, "
    "so fill the scores where the mask is False (scores.masked_fill(~mask, -inf))."
)


def _sdpa_cases(g: torch.Generator) -> list[Case]:
    pad = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    pad[0, ..., 5:] = False
    pad[1, ..., 3:] = False
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
        Mistake("softmax_axis", _AXIS_HINT, _sdpa_variant(axis=-2)),
        Mistake("softmax_axis_min", _AXIS_HINT, _sdpa_variant(axis=-2, fill="min")),
        Mistake("mask_inverted", _INVERTED_HINT, _sdpa_variant(mask_mode="inverted")),
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
    ),
)

# ---------------------------------------------------------------------- causal_mask


def _causal_cases(g: torch.Generator) -> list[Case]:
    del g  # no randomness needed
    return [call_case(f"seq_len={n}", n) for n in (1, 4, 7)]


CAUSAL = Exercise(
    name="causal_mask",
    points=1,
    summary="the lower-triangular boolean mask of a decoder",
    make_cases=_causal_cases,
    reference=lambda: ref.causal_mask,
    tolerance=Tolerance(0.0, 0.0),
    mistakes=(
        Mistake(
            "off_by_one",
            "your mask matches one without the diagonal: position i must be "
            "allowed to attend to itself, so keep the diagonal (torch.tril with diagonal=0).",
            lambda n, device=None: torch.ones(n, n, dtype=torch.bool).tril(-1),
        ),
        Mistake(
            "upper",
            "your mask matches the upper triangle: position i may attend to "
            "positions 0..i, which lie on and below the diagonal (torch.tril).",
            lambda n, device=None: torch.ones(n, n, dtype=torch.bool).triu(),
        ),
        Mistake(
            "disallowed",
            "your mask marks the positions that must NOT be attended to (the "
            "future). The contract's mask is True where attention is allowed: on and below "
            "the diagonal.",
            lambda n, device=None: torch.ones(n, n, dtype=torch.bool).triu(1),
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
    ]


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
    ),
)

# ------------------------------------------------------ sinusoidal_positional_encoding


def _pe_variant(kind: str) -> Callable:
    def encoding(seq_len, d_model, device=None, dtype=torch.float32):
        pos = torch.arange(seq_len, dtype=torch.float64)[:, None]
        j = torch.arange(d_model, dtype=torch.float64)
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


PE = Exercise(
    name="sinusoidal_positional_encoding",
    points=1,
    summary="the fixed sin/cos table of the original transformer",
    make_cases=lambda g: [call_case(f"L={n}, d={d}", n, d) for n, d in ((6, 8), (50, 16), (1, 4))],
    reference=lambda: ref.sinusoidal_positional_encoding,
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
    ),
)

# ------------------------------------------------------------------------ apply_rope


def _rope_variant(kind: str) -> Callable:
    def rope(x, positions=None, base=10000.0):
        L, d = x.shape[-2], x.shape[-1]
        if positions is None or kind == "positions_ignored":
            positions = torch.arange(L)
        i = torch.arange(d // 2, dtype=torch.float64)
        inv = base ** ((-i if kind == "no_two" else -2 * i) / d)
        ang = positions.double()[..., None] * inv  # (..., L, d/2)
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
    ]


ROPE = Exercise(
    name="apply_rope",
    points=2,
    summary="rotary position embeddings, rotate-half pairing",
    make_cases=_rope_cases,
    reference=lambda: ref.apply_rope,
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
    ),
)

# ------------------------------------------------------------- layer_norm, rms_norm


def _ln_variant(kind: str) -> Callable:
    def norm(x, weight, bias, eps=1e-5):
        dim = 0 if kind == "wrong_dim" else -1
        mean = x.mean(dim, keepdim=True)
        var = x.var(dim, keepdim=True, unbiased=kind == "unbiased")
        if kind == "eps_outside":
            return (x - mean) / (var.sqrt() + eps) * weight + bias
        return (x - mean) / torch.sqrt(var + eps) * weight + bias

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
        {**c, "kwargs": {"eps": 0.5}} if c["kwargs"] else c for c in _norm_cases(g, False)
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
)

SPEC = ChapterSpec(
    number="01",
    slug="attention",
    title="Attention and the transformer block",
    exercises=(SDPA, CAUSAL, MHA, PE, ROPE, LN, RMS, GELU, FF, BLOCK),
)
