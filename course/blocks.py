"""Chapter 01's building blocks, ready to use in the chapters that stack them.

Chapter 02 builds a GPT and an encoder-decoder out of transformer blocks, and
later chapters train and serve those models. Their notebooks import the blocks
from here, so that a model you write in chapter 02 does not depend on whether
every exercise of chapter 01 is finished, and so that it is graded on its own.

The four names and their ``state_dict`` keys are exactly those of chapter 01
(``causal_mask``, ``MultiHeadAttention`` with ``q_proj``/``k_proj``/``v_proj``/
``out_proj``, ``FeedForward`` with ``fc1``/``fc2``, ``TransformerBlock`` with
``ln1``/``attn``/``ln2``/``ff``), and they compute the same functions. They are
written with PyTorch's fused routines (``F.scaled_dot_product_attention``,
``nn.LayerNorm``, ``F.gelu(approximate="tanh")``) rather than from scratch:
writing those from scratch is what chapter 01 is for.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["FeedForward", "MultiHeadAttention", "TransformerBlock", "causal_mask"]


def causal_mask(seq_len: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Bool (L, L), True on and below the diagonal: position i may attend to 0..i."""
    if seq_len < 0:
        raise ValueError(f"seq_len must be >= 0, got {seq_len}")
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()


class MultiHeadAttention(nn.Module):
    """Multi-head attention: ``forward(x, context=None, mask=None) -> (B, L, d_model)``.

    ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` are ``nn.Linear(d_model, d_model,
    bias=bias)``; ``mask`` is bool, broadcastable to (B, n_heads, L, S), True = allowed.
    Self-attention when ``context`` is None, cross-attention on ``context (B, S, d_model)``.
    ``is_causal=True`` (without a mask) is the causal mask without building it: the fused
    kernel then skips the blocks above the diagonal.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True) -> None:
        super().__init__()
        if n_heads < 1 or d_model % n_heads != 0:
            raise ValueError(
                f"d_model must be divisible by n_heads >= 1, got d_model={d_model}, "
                f"n_heads={n_heads}"
            )
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        if is_causal and mask is not None:
            raise ValueError("give either mask or is_causal=True, not both")
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"x must have shape (B, L, d_model={self.d_model}), got {tuple(x.shape)}"
            )
        context = x if context is None else context
        B, L, _ = x.shape
        S = context.shape[1]
        H, Dh = self.n_heads, self.d_head
        q = self.q_proj(x).view(B, L, H, Dh).transpose(1, 2)  # (B, H, L, Dh)
        k = self.k_proj(context).view(B, S, H, Dh).transpose(1, 2)  # (B, H, S, Dh)
        v = self.v_proj(context).view(B, S, H, Dh).transpose(1, 2)  # (B, H, S, Dh)
        if (
            q.dtype == torch.bfloat16
            and q.device.type == "cpu"
            and torch.is_autocast_enabled("cpu")
        ):
            # Under CPU autocast the projections run in bfloat16, but PyTorch's CPU flash
            # attention is 2-3x slower in bfloat16 than in float32 (bench.training): it
            # runs in float32, with autocast off (which would cast its inputs back).
            with torch.autocast("cpu", enabled=False):
                out = F.scaled_dot_product_attention(
                    q.float(), k.float(), v.float(), attn_mask=mask, is_causal=is_causal
                )
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        # out: (B, H, L, Dh)
        out = out.transpose(1, 2).reshape(B, L, self.d_model)  # (B, L, d_model)
        return self.out_proj(out)  # (B, L, d_model)


class FeedForward(nn.Module):
    """fc2(act(fc1(x))) with ``fc1 = nn.Linear(d_model, d_ff)``, ``fc2 = nn.Linear(d_ff,
    d_model)``; act is the tanh-approximate GELU ("gelu") or ReLU ("relu")."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu") -> None:
        super().__init__()
        if activation not in ("gelu", "relu"):
            raise ValueError(f"activation must be 'gelu' or 'relu', got {activation!r}")
        self.activation = activation
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)  # (..., d_ff)
        h = F.gelu(h, approximate="tanh") if self.activation == "gelu" else F.relu(h)
        return self.fc2(h)  # (..., d_model)


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(ln1(x)), then x + ff(ln2(x)); causal by default.

    Submodules (the state_dict keys): ``ln1``, ``attn`` (MultiHeadAttention), ``ln2``,
    ``ff`` (FeedForward). ``forward(x (B, L, d_model)) -> (B, L, d_model)``.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, causal: bool = True) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, d_ff)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"x must have shape (B, L, d_model), got {tuple(x.shape)}")
        x = x + self.attn(self.ln1(x), is_causal=self.causal)  # (B, L, d_model)
        return x + self.ff(self.ln2(x))  # (B, L, d_model)
