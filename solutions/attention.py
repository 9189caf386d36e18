"""Chapter 01: attention and the transformer block, the reference implementation.

This module builds a transformer block from first principles, the way the
original "Attention Is All You Need" paper and GPT-2/Llama-style models do it:

1. ``scaled_dot_product_attention``: softmax(q k^T / sqrt(d)) v, with an optional
   boolean mask (True = this query may look at this key).
2. ``causal_mask``: the lower-triangular mask of a decoder (no peeking ahead).
3. ``MultiHeadAttention``: project to queries, keys and values, split into heads,
   attend in every head in parallel, merge the heads, project back.
4. Positions: ``sinusoidal_positional_encoding`` (added to the embeddings) and
   ``apply_rope`` (rotary embeddings, applied to queries and keys).
5. Normalisation and the MLP: ``layer_norm``, ``rms_norm``, ``gelu``,
   ``FeedForward``.
6. ``TransformerBlock``: a pre-norm block, x + attn(ln(x)) then x + ff(ln(x)).

Conventions: every function takes and returns tensors on the device and in the
float dtype of its inputs, accepts leading batch dimensions wherever a shape
starts with ``...``, and raises ``ValueError`` naming the argument when a shape
is wrong. The checks only read shapes, so everything runs on ``meta`` tensors.
Each public function only uses ``math``, ``torch``, ``nn``, ``F`` and the other
public names of this module, so it can be copied on its own into a notebook.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention: softmax(q k^T / sqrt(d)) v.

    Args:
        q: queries, shape (..., Lq, d).
        k: keys, shape (..., Lk, d).
        v: values, shape (..., Lk, dv).
        mask: optional bool tensor broadcastable to (..., Lq, Lk); True where
            query i may attend to key j (the convention of the boolean mask of
            ``torch.nn.functional.scaled_dot_product_attention``). A query row
            with no allowed key gets uniform weights instead of NaN.

    Returns:
        out: shape (..., Lq, dv), the weighted average of the values.
        weights: shape (..., Lq, Lk), the attention weights; every row sums to 1.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() < 2:
            raise ValueError(
                f"{name} must have at least 2 dimensions (..., L, d), got shape {tuple(t.shape)}"
            )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same last dimension d, got q {tuple(q.shape)} "
            f"and k {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same length Lk (dimension -2), got k {tuple(k.shape)} "
            f"and v {tuple(v.shape)}"
        )
    try:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"the leading (batch) dimensions of q, k and v must broadcast, got q "
            f"{tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        ) from None
    scores_shape = (*batch, q.shape[-2], k.shape[-2])
    if mask is not None:
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor (True = allowed), got {mask.dtype}")
        try:
            ok = torch.broadcast_shapes(mask.shape, scores_shape) == scores_shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"mask must be broadcastable to (..., Lq, Lk) = {scores_shape}, "
                f"got shape {tuple(mask.shape)}"
            )

    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., Lq, Lk)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)  # (..., Lq, Lk)
    weights = F.softmax(scores, dim=-1)  # (..., Lq, Lk)
    out = weights @ v  # (..., Lq, dv)
    return out, weights


def causal_mask(seq_len: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The mask of a decoder: position i may attend to positions 0..i.

    Args:
        seq_len: L, the sequence length (>= 0).
        device: where to create the mask.

    Returns:
        A bool tensor of shape (L, L), True on and below the diagonal.
    """
    if seq_len < 0:
        raise ValueError(f"seq_len must be >= 0, got {seq_len}")
    ones = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device)  # (L, L)
    return torch.tril(ones)  # (L, L)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, the same function as ``torch.nn.MultiheadAttention``.

    Attributes:
        q_proj, k_proj, v_proj, out_proj: ``nn.Linear(d_model, d_model, bias=bias)``.
        n_heads: number of heads H.
        d_head: d_model // n_heads, the size of one head.

    Args:
        d_model: model width; must be divisible by n_heads.
        n_heads: number of heads.
        bias: whether the four projections have a bias.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True) -> None:
        super().__init__()
        if n_heads < 1:
            raise ValueError(f"n_heads must be >= 1, got {n_heads}")
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model must be divisible by n_heads, got d_model={d_model}, n_heads={n_heads}"
            )
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Self-attention on x, or cross-attention from x to context.

        Args:
            x: shape (B, L, d_model); the queries come from x.
            context: optional, shape (B, S, d_model); the keys and values come
                from context (cross-attention) or from x when None (S = L).
            mask: optional bool tensor broadcastable to (B, n_heads, L, S),
                True where attention is allowed (e.g. ``causal_mask(L)``).

        Returns:
            Shape (B, L, d_model).
        """
        d_model = self.n_heads * self.d_head
        if x.dim() != 3 or x.shape[-1] != d_model:
            raise ValueError(f"x must have shape (B, L, d_model={d_model}), got {tuple(x.shape)}")
        if context is None:
            context = x
        elif context.dim() != 3 or context.shape[0] != x.shape[0] or context.shape[-1] != d_model:
            raise ValueError(
                f"context must have shape (B={x.shape[0]}, S, d_model={d_model}), "
                f"got {tuple(context.shape)}"
            )
        B, L, _ = x.shape
        S = context.shape[1]
        H, Dh = self.n_heads, self.d_head

        q = self.q_proj(x).view(B, L, H, Dh).transpose(1, 2)  # (B, H, L, Dh)
        k = self.k_proj(context).view(B, S, H, Dh).transpose(1, 2)  # (B, H, S, Dh)
        v = self.v_proj(context).view(B, S, H, Dh).transpose(1, 2)  # (B, H, S, Dh)
        out, _ = scaled_dot_product_attention(q, k, v, mask)  # (B, H, L, Dh)
        out = out.transpose(1, 2).reshape(B, L, d_model)  # (B, L, d_model)
        return self.out_proj(out)  # (B, L, d_model)


def sinusoidal_positional_encoding(
    seq_len: int,
    d_model: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The fixed positional encoding of the original transformer.

    PE[p, 2i] = sin(p / 10000^(2i/d_model)), PE[p, 2i+1] = cos(p / 10000^(2i/d_model)).

    Args:
        seq_len: L, the number of positions (>= 0).
        d_model: model width; must be even and positive.
        device: where to create the table.
        dtype: the float dtype of the result (computed in float32, or float64).

    Returns:
        Shape (L, d_model).
    """
    if seq_len < 0:
        raise ValueError(f"seq_len must be >= 0, got {seq_len}")
    if d_model <= 0 or d_model % 2 != 0:
        raise ValueError(f"d_model must be a positive even number, got {d_model}")
    work = torch.float64 if dtype == torch.float64 else torch.float32
    pos = torch.arange(seq_len, device=device, dtype=work)  # (L,)
    two_i = torch.arange(0, d_model, 2, device=device, dtype=work)  # (d/2,)
    inv_freq = 10000.0 ** (-two_i / d_model)  # (d/2,)
    angles = pos[:, None] * inv_freq[None, :]  # (L, d/2)
    pe = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (L, d/2, 2)
    return pe.reshape(seq_len, d_model).to(dtype)  # (L, d_model): sin, cos interleaved


def apply_rope(
    x: torch.Tensor,
    positions: torch.Tensor | None = None,
    base: float = 10000.0,
) -> torch.Tensor:
    """Rotary position embedding (RoPE), rotate-half convention (Llama, GPT-NeoX).

    Dimension i is paired with dimension i + d/2 and the pair is rotated by the
    angle positions[p] * base^(-2i/d), i in [0, d/2):
    out = x * cos + rotate_half(x) * sin, with rotate_half(x) = cat(-x2, x1).

    Args:
        x: shape (..., L, d), d even (queries or keys, e.g. (B, H, L, d)).
        positions: optional, shape (L,) or broadcastable with x's leading
            dimensions as (..., L) (e.g. (B, 1, L) for x of shape (B, H, L, d));
            integer or float. Defaults to 0..L-1.
        base: the base of the frequencies.

    Returns:
        Shape (..., L, d), same dtype as x (angles computed in float32, or
        float64 for float64 input).
    """
    if x.dim() < 2:
        raise ValueError(f"x must have at least 2 dimensions (..., L, d), got {tuple(x.shape)}")
    L, d = x.shape[-2], x.shape[-1]
    if d % 2 != 0:
        raise ValueError(f"the last dimension of x must be even for RoPE, got d={d}")
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    if positions is None:
        positions = torch.arange(L, device=x.device)  # (L,)
    if positions.dim() < 1 or positions.shape[-1] != L:
        raise ValueError(
            f"positions must have shape (L,) or (..., L) with L={L}, got {tuple(positions.shape)}"
        )
    try:
        ok = torch.broadcast_shapes((*positions.shape, d), x.shape) == x.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"positions of shape {tuple(positions.shape)} do not broadcast with x of shape "
            f"{tuple(x.shape)} as (..., L)"
        )

    i = torch.arange(d // 2, device=x.device, dtype=work)  # (d/2,)
    inv_freq = base ** (-2.0 * i / d)  # (d/2,)
    angles = positions.to(device=x.device, dtype=work)[..., None] * inv_freq  # (..., L, d/2)
    angles = torch.cat([angles, angles], dim=-1)  # (..., L, d)
    xw = x.to(work)  # (..., L, d)
    rotated = torch.cat([-xw[..., d // 2 :], xw[..., : d // 2]], dim=-1)  # (..., L, d)
    return (xw * angles.cos() + rotated * angles.sin()).to(x.dtype)  # (..., L, d)


def layer_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Layer normalisation over the last dimension (as ``F.layer_norm``).

    y = (x - mean) / sqrt(var + eps) * weight + bias, with the biased variance.

    Args:
        x: shape (..., d).
        weight: shape (d,), the gain.
        bias: shape (d,), the shift, or None for no shift.
        eps: added to the variance.

    Returns:
        Shape (..., d).
    """
    if x.dim() < 1:
        raise ValueError("x must have at least 1 dimension (..., d), got a scalar")
    d = x.shape[-1]
    if weight.shape != (d,):
        raise ValueError(f"weight must have shape (d,) = ({d},), got {tuple(weight.shape)}")
    if bias is not None and bias.shape != (d,):
        raise ValueError(f"bias must have shape (d,) = ({d},), got {tuple(bias.shape)}")
    mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
    var = x.var(dim=-1, keepdim=True, unbiased=False)  # (..., 1)
    y = (x - mean) * torch.rsqrt(var + eps) * weight  # (..., d)
    return y if bias is None else y + bias  # (..., d)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMS normalisation over the last dimension (Llama): x / sqrt(mean(x^2) + eps) * weight.

    Args:
        x: shape (..., d).
        weight: shape (d,), the gain.
        eps: added to the mean square.

    Returns:
        Shape (..., d).
    """
    if x.dim() < 1:
        raise ValueError("x must have at least 1 dimension (..., d), got a scalar")
    d = x.shape[-1]
    if weight.shape != (d,):
        raise ValueError(f"weight must have shape (d,) = ({d},), got {tuple(weight.shape)}")
    ms = x.pow(2).mean(dim=-1, keepdim=True)  # (..., 1)
    return x * torch.rsqrt(ms + eps) * weight  # (..., d)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

    Args:
        x: any shape.

    Returns:
        Same shape as x.
    """
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class FeedForward(nn.Module):
    """The position-wise MLP of a transformer: fc2(act(fc1(x))).

    Attributes (these names are the state_dict keys):
        fc1: ``nn.Linear(d_model, d_ff)``.
        fc2: ``nn.Linear(d_ff, d_model)``.
        activation: "gelu" (this module's tanh-approximate ``gelu``) or "relu".

    Args:
        d_model: model width.
        d_ff: hidden width (usually 4 * d_model).
        activation: "gelu" or "relu".
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu") -> None:
        super().__init__()
        if activation not in ("gelu", "relu"):
            raise ValueError(f"activation must be 'gelu' or 'relu', got {activation!r}")
        self.activation = activation
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x of shape (..., d_model). Returns: shape (..., d_model)."""
        if x.dim() < 1 or x.shape[-1] != self.fc1.in_features:
            raise ValueError(
                f"x must have shape (..., d_model={self.fc1.in_features}), got {tuple(x.shape)}"
            )
        h = self.fc1(x)  # (..., d_ff)
        h = gelu(h) if self.activation == "gelu" else torch.relu(h)  # (..., d_ff)
        return self.fc2(h)  # (..., d_model)


class TransformerBlock(nn.Module):
    """A pre-norm transformer block (GPT-2 style).

    x = x + attn(ln1(x), mask=causal_mask(L) if causal else None)
    x = x + ff(ln2(x))

    Attributes (these names are the state_dict keys):
        ln1: ``nn.LayerNorm(d_model)``, before attention.
        attn: ``MultiHeadAttention(d_model, n_heads)``.
        ln2: ``nn.LayerNorm(d_model)``, before the MLP.
        ff: ``FeedForward(d_model, d_ff)`` (GELU).
        causal: whether position t only sees positions 0..t.

    Args:
        d_model: model width; must be divisible by n_heads.
        n_heads: number of attention heads.
        d_ff: hidden width of the MLP.
        causal: use a causal mask in the attention.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, causal: bool = True) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, d_ff)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x of shape (B, L, d_model). Returns: shape (B, L, d_model)."""
        if x.dim() != 3:
            raise ValueError(f"x must have shape (B, L, d_model), got {tuple(x.shape)}")
        L = x.shape[1]
        mask = causal_mask(L, device=x.device) if self.causal else None  # (L, L)
        x = x + self.attn(self.ln1(x), mask=mask)  # (B, L, d_model)
        x = x + self.ff(self.ln2(x))  # (B, L, d_model)
        return x
