"""Mutants of solutions/attention.py (chapter 01)."""

from tests.mutants import Mutant

MUTANTS = (
    # scaled_dot_product_attention
    Mutant(
        "sdpa_no_scale",
        "scaled_dot_product_attention",
        (("scores = (q @ k.transpose(-2, -1)) * scale", "scores = q @ k.transpose(-2, -1)"),),
        "without the 1/sqrt(d) scale",
    ),
    Mutant(
        "sdpa_scale_by_d",
        "scaled_dot_product_attention",
        (("scale = 1.0 / math.sqrt(q.shape[-1])", "scale = 1.0 / q.shape[-1]"),),
        "divided by d instead of sqrt(d)",
    ),
    Mutant(
        "sdpa_scale_by_dv",
        "scaled_dot_product_attention",
        (("scale = 1.0 / math.sqrt(q.shape[-1])", "scale = 1.0 / math.sqrt(v.shape[-1])"),),
        "1/sqrt(dv)",
    ),
    Mutant(
        "sdpa_softmax_over_queries",
        "scaled_dot_product_attention",
        (("weights = F.softmax(scores, dim=-1)", "weights = F.softmax(scores, dim=-2)"),),
        "softmax over the queries",
    ),
    Mutant(
        "sdpa_mask_inverted",
        "scaled_dot_product_attention",
        (("scores.masked_fill(~mask,", "scores.masked_fill(mask,"),),
        "inverted mask",
    ),
    Mutant(
        "sdpa_mask_after_softmax",
        "scaled_dot_product_attention",
        (
            ("scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)", "pass"),
            (
                "out = weights @ v",
                "weights = weights if mask is None else weights * mask\n    out = weights @ v",
            ),
        ),
        "after the softmax",
    ),
    Mutant(
        "sdpa_masked_row_nan",
        "scaled_dot_product_attention",
        (
            (
                "scores.masked_fill(~mask, torch.finfo(scores.dtype).min)",
                'scores.masked_fill(~mask, float("-inf"))',
            ),
        ),
        "uniform weights",
    ),
    # causal_mask
    Mutant(
        "causal_no_diagonal",
        "causal_mask",
        (("return torch.tril(ones)", "return torch.tril(ones, diagonal=-1)"),),
        "attend to itself",
    ),
    Mutant(
        "causal_upper",
        "causal_mask",
        (("return torch.tril(ones)", "return torch.triu(ones)"),),
        "upper triangle",
    ),
    Mutant(
        "causal_future_marked",
        "causal_mask",
        (("return torch.tril(ones)", "return torch.triu(ones, diagonal=1)"),),
        "must NOT be attended",
    ),
    Mutant(
        "causal_rejects_empty",
        "causal_mask",
        (
            (
                "    ones = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device)",
                "    if seq_len == 0:\n"
                '        raise ValueError("seq_len must be positive")\n'
                "    ones = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device)",
            ),
        ),
        "seq_len=0",
    ),
    Mutant(
        "causal_device_ignored",
        "causal_mask",
        (
            (
                "ones = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device)",
                "ones = torch.ones(seq_len, seq_len, dtype=torch.bool)",
            ),
        ),
        "device='meta'",
    ),
    # MultiHeadAttention
    Mutant(
        "mha_reshape_without_transpose",
        "MultiHeadAttention",
        (
            (
                "q = self.q_proj(x).view(B, L, H, Dh).transpose(1, 2)",
                "q = self.q_proj(x).reshape(B, H, L, Dh)",
            ),
            (
                "k = self.k_proj(context).view(B, S, H, Dh).transpose(1, 2)",
                "k = self.k_proj(context).reshape(B, H, S, Dh)",
            ),
            (
                "v = self.v_proj(context).view(B, S, H, Dh).transpose(1, 2)",
                "v = self.v_proj(context).reshape(B, H, S, Dh)",
            ),
            (
                "out = out.transpose(1, 2).reshape(B, L, d_model)",
                "out = out.reshape(B, L, d_model)",
            ),
        ),
        "transpose(1, 2)",
    ),
    Mutant(
        "mha_scale_by_d_model",
        "MultiHeadAttention",
        (
            (
                "out, _ = scaled_dot_product_attention(q, k, v, mask)",
                "out, _ = scaled_dot_product_attention(q * math.sqrt(Dh / d_model), k, v, mask)",
            ),
        ),
        "1/sqrt(d_model)",
    ),
    Mutant(
        "mha_context_ignored",
        "MultiHeadAttention",
        (("        B, L, _ = x.shape\n", "        B, L, _ = x.shape\n        context = x\n"),),
        "cross-attention",
    ),
    Mutant(
        "mha_no_out_proj",
        "MultiHeadAttention",
        (("return self.out_proj(out)  # (B, L, d_model)", "return out"),),
        "out_proj",
    ),
    Mutant(
        "mha_mask_ignored_in_cross_attention",
        "MultiHeadAttention",
        (
            (
                "out, _ = scaled_dot_product_attention(q, k, v, mask)",
                "out, _ = scaled_dot_product_attention(q, k, v, mask if context is x else None)",
            ),
        ),
        "masked cross-attention",
    ),
    Mutant(
        "mha_one_mask_for_every_head",
        "MultiHeadAttention",
        (
            (
                "out, _ = scaled_dot_product_attention(q, k, v, mask)",
                "head0 = mask if mask is None or mask.dim() < 4 else mask[:, :1]\n"
                "        out, _ = scaled_dot_product_attention(q, k, v, head0)",
            ),
        ),
        "the first head's mask to every head",
    ),
    # sinusoidal_positional_encoding
    Mutant(
        "pe_sin_then_cos_halves",
        "sinusoidal_positional_encoding",
        (
            (
                "pe = torch.stack([angles.sin(), angles.cos()], dim=-1)",
                "pe = torch.cat([angles.sin(), angles.cos()], dim=-1)",
            ),
        ),
        "interleaves",
    ),
    Mutant(
        "pe_sin_cos_swapped",
        "sinusoidal_positional_encoding",
        (
            (
                "pe = torch.stack([angles.sin(), angles.cos()], dim=-1)",
                "pe = torch.stack([angles.cos(), angles.sin()], dim=-1)",
            ),
        ),
        "PE[p, 2i] is the sine",
    ),
    Mutant(
        "pe_exponent_without_two",
        "sinusoidal_positional_encoding",
        (
            (
                "inv_freq = 10000.0 ** (-two_i / d_model)",
                "inv_freq = 10000.0 ** (-two_i / 2 / d_model)",
            ),
        ),
        "exponent i/d",
    ),
    Mutant(
        "pe_rejects_empty",
        "sinusoidal_positional_encoding",
        (
            (
                "    if seq_len < 0:\n"
                '        raise ValueError(f"seq_len must be >= 0, got {seq_len}")\n'
                "    if d_model <= 0",
                "    if seq_len < 1:\n"
                '        raise ValueError(f"seq_len must be >= 0, got {seq_len}")\n'
                "    if d_model <= 0",
            ),
        ),
        "L=0",
    ),
    Mutant(
        "pe_computed_in_float32",
        "sinusoidal_positional_encoding",
        (
            (
                "work = torch.float64 if dtype == torch.float64 else torch.float32",
                "work = torch.float32",
            ),
        ),
        "computed in float32",
    ),
    Mutant(
        "pe_dtype_ignored",
        "sinusoidal_positional_encoding",
        (
            (
                "work = torch.float64 if dtype == torch.float64 else torch.float32",
                "work = dtype = torch.float32",
            ),
        ),
        "dtype=float64",
    ),
    Mutant(
        "pe_device_ignored",
        "sinusoidal_positional_encoding",
        (
            (
                "    work = torch.float64 if dtype == torch.float64 else torch.float32",
                "    device = None\n"
                "    work = torch.float64 if dtype == torch.float64 else torch.float32",
            ),
        ),
        "device='meta'",
    ),
    # apply_rope
    Mutant(
        "rope_adjacent_pairs",
        "apply_rope",
        (
            (
                "angles = torch.cat([angles, angles], dim=-1)",
                "angles = angles.repeat_interleave(2, dim=-1)",
            ),
            (
                "rotated = torch.cat([-xw[..., d // 2 :], xw[..., : d // 2]], dim=-1)",
                "rotated = torch.stack([-xw[..., 1::2], xw[..., 0::2]], dim=-1).flatten(-2)",
            ),
        ),
        "adjacent dimensions",
    ),
    Mutant(
        "rope_rotation_reversed",
        "apply_rope",
        (
            (
                "xw * angles.cos() + rotated * angles.sin()",
                "xw * angles.cos() - rotated * angles.sin()",
            ),
        ),
        "minus the angle",
    ),
    Mutant(
        "rope_frequency_without_two",
        "apply_rope",
        (("inv_freq = base ** (-2.0 * i / d)", "inv_freq = base ** (-i / d)"),),
        "base^(-i/d)",
    ),
    Mutant(
        "rope_positions_ignored",
        "apply_rope",
        (
            (
                "    if positions is None:\n        positions = torch.arange(L, device=x.device)",
                "    positions = torch.arange(L, device=x.device)",
            ),
        ),
        "positions passed in",
    ),
    Mutant(
        "rope_float_positions_rounded",
        "apply_rope",
        (
            (
                "angles = positions.to(device=x.device, dtype=work)[..., None] * inv_freq",
                "angles = positions.round().to(device=x.device, dtype=work)[..., None] * inv_freq",
            ),
        ),
        "rounded to integers",
    ),
    Mutant(
        "rope_positions_assumed_1d",
        "apply_rope",
        (
            (
                "angles = positions.to(device=x.device, dtype=work)[..., None] * inv_freq",
                "angles = positions.to(device=x.device, dtype=work)[:, None] * inv_freq",
            ),
        ),
        "positions per sequence",
    ),
    Mutant(
        "rope_angles_in_float32",
        "apply_rope",
        (
            (
                "work = torch.float64 if x.dtype == torch.float64 else torch.float32",
                "work = torch.float32",
            ),
        ),
        "angles computed in float32",
    ),
    # layer_norm
    Mutant(
        "ln_unbiased_variance",
        "layer_norm",
        (
            (
                "var = x.var(dim=-1, keepdim=True, unbiased=False)",
                "var = x.var(dim=-1, keepdim=True, unbiased=True)",
            ),
        ),
        "unbiased variance",
    ),
    Mutant(
        "ln_eps_outside_sqrt",
        "layer_norm",
        (
            (
                "y = (x - mean) * torch.rsqrt(var + eps) * weight",
                "y = (x - mean) / (var.sqrt() + eps) * weight",
            ),
        ),
        "inside the square root",
    ),
    Mutant(
        "ln_over_first_dim",
        "layer_norm",
        (
            ("mean = x.mean(dim=-1, keepdim=True)", "mean = x.mean(dim=0, keepdim=True)"),
            (
                "var = x.var(dim=-1, keepdim=True, unbiased=False)",
                "var = x.var(dim=0, keepdim=True, unbiased=False)",
            ),
        ),
        "LAST dimension",
    ),
    Mutant(
        "ln_bias_none_unsupported",
        "layer_norm",
        (("return y if bias is None else y + bias", "return y + bias"),),
        "bias=None",
    ),
    # rms_norm
    Mutant(
        "rms_centered",
        "rms_norm",
        (
            (
                "ms = x.pow(2).mean(dim=-1, keepdim=True)",
                "x = x - x.mean(dim=-1, keepdim=True)\n"
                "    ms = x.pow(2).mean(dim=-1, keepdim=True)",
            ),
        ),
        "does not center",
    ),
    Mutant(
        "rms_eps_outside_sqrt",
        "rms_norm",
        (("return x * torch.rsqrt(ms + eps) * weight", "return x / (ms.sqrt() + eps) * weight"),),
        "inside the square root",
    ),
    # gelu
    Mutant(
        "gelu_exact_erf",
        "gelu",
        (("return 0.5 * x * (1.0 + torch.tanh(", "return F.gelu(x) + 0 * (1.0 + torch.tanh("),),
        "exact GELU",
    ),
    Mutant(
        "gelu_sqrt_2pi",
        "gelu",
        (("torch.tanh(math.sqrt(2.0 / math.pi)", "torch.tanh(math.sqrt(2.0 * math.pi)"),),
        "sqrt(2π)",
    ),
    Mutant(
        "gelu_missing_half",
        "gelu",
        (("return 0.5 * x * (1.0 + torch.tanh(", "return x * (1.0 + torch.tanh("),),
        "starts with 0.5",
    ),
    # FeedForward
    Mutant(
        "ff_exact_gelu",
        "FeedForward",
        (("h = gelu(h) if self.activation", "h = F.gelu(h) if self.activation"),),
        "exact GELU",
    ),
    Mutant(
        "ff_activation_ignored",
        "FeedForward",
        (('h = gelu(h) if self.activation == "gelu" else torch.relu(h)', "h = gelu(h)"),),
        "activation='relu'",
    ),
    Mutant(
        "ff_no_activation",
        "FeedForward",
        (('h = gelu(h) if self.activation == "gelu" else torch.relu(h)', "pass"),),
        "no activation",
    ),
    # TransformerBlock
    Mutant(
        "block_post_norm",
        "TransformerBlock",
        (
            (
                "x = x + self.attn(self.ln1(x), mask=mask)",
                "x = self.ln1(x + self.attn(x, mask=mask))",
            ),
            ("x = x + self.ff(self.ln2(x))", "x = self.ln2(x + self.ff(x))"),
        ),
        "post-norm",
    ),
    Mutant(
        "block_no_residual",
        "TransformerBlock",
        (
            ("x = x + self.attn(self.ln1(x), mask=mask)", "x = self.attn(self.ln1(x), mask=mask)"),
            ("x = x + self.ff(self.ln2(x))", "x = self.ff(self.ln2(x))"),
        ),
        "residual",
    ),
    Mutant(
        "block_never_causal",
        "TransformerBlock",
        (("mask = causal_mask(L, device=x.device) if self.causal else None", "mask = None"),),
        "causal mask when causal=True",
    ),
    Mutant(
        "block_always_causal",
        "TransformerBlock",
        (
            (
                "mask = causal_mask(L, device=x.device) if self.causal else None",
                "mask = causal_mask(L, device=x.device)",
            ),
        ),
        "even when causal=False",
    ),
    Mutant(
        "block_ln1_twice",
        "TransformerBlock",
        (("x = x + self.ff(self.ln2(x))", "x = x + self.ff(self.ln1(x))"),),
        "ln2",
    ),
    Mutant(
        "block_default_not_causal",
        "TransformerBlock",
        (
            (
                "d_ff: int, causal: bool = True) -> None:",
                "d_ff: int, causal: bool = False) -> None:",
            ),
        ),
        "causal by default",
    ),
)
