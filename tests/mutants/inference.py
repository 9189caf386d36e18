"""Mutants of solutions/inference.py (chapter 09)."""

from tests.mutants import Mutant

MUTANTS = (
    # quantize_int8
    Mutant(
        "int8_signed_max",
        "quantize_int8",
        (
            (
                "absmax = w.abs().amax(dim=-1, keepdim=True)  # (..., 1)",
                "absmax = w.amax(dim=-1, keepdim=True)",
            ),
        ),
        "largest magnitude",
    ),
    Mutant(
        "int8_truncate",
        "quantize_int8",
        (
            (
                "q = (w / scale).round().clamp(-127, 127)",
                "q = (w / scale).clamp(-127, 127)",
            ),
        ),
        "truncating",
    ),
    Mutant(
        "int8_per_tensor",
        "quantize_int8",
        (("    if per_channel:\n", "    if False:\n"),),
        "ONE scale",
    ),
    # dequantize_int8
    Mutant(
        "dequant_divide",
        "dequantize_int8",
        (("return q.to(scale.dtype) * scale  # (..., in)", "return q.to(scale.dtype) / scale"),),
        "q / scale",
    ),
    Mutant(
        "dequant_float32",
        "dequantize_int8",
        (("return q.to(scale.dtype) * scale  # (..., in)", "return q.float() * scale.float()"),),
        "always float32",
    ),
    # quantize_zeropoint
    Mutant(
        "zp_sign",
        "quantize_zeropoint",
        (("zero_point = (-lo / scale).round()", "zero_point = (lo / scale).round()"),),
        "round(lo / scale)",
    ),
    Mutant(
        "zp_no_zero",
        "quantize_zeropoint",
        (
            ("lo = w.amin().clamp_max(0)  # ()", "lo = w.amin()"),
            ("hi = w.amax().clamp_min(0)  # ()", "hi = w.amax()"),
        ),
        "without 0",
    ),
    Mutant(
        "zp_levels",
        "quantize_zeropoint",
        (("scale = ((hi - lo) / qmax)", "scale = ((hi - lo) / (qmax + 1))"),),
        "2**bits - 1 steps",
    ),
    # dequantize_zeropoint
    Mutant(
        "dzp_uint8_wrap",
        "dequantize_zeropoint",
        (("return (q.to(torch.int64) - zero_point)", "return (q - zero_point)"),),
        "wraps around",
    ),
    Mutant(
        "dzp_plus",
        "dequantize_zeropoint",
        (("return (q.to(torch.int64) - zero_point)", "return (q.to(torch.int64) + zero_point)"),),
        "SUBTRACT",
    ),
    # Int8Linear
    Mutant(
        "int8linear_no_scale",
        "Int8Linear",
        (("y = y * self.scale.to(x.dtype).squeeze(-1)", "y = y  # no scale"),),
        "without the scales",
    ),
    Mutant(
        "int8linear_no_bias",
        "Int8Linear",
        (
            (
                "        if self.bias is not None:\n            y = y +",
                "        if False:\n            y = y +",
            ),
        ),
        "without its bias",
    ),
    Mutant(
        "int8linear_per_tensor",
        "Int8Linear",
        (
            (
                "q, scale = quantize_int8(w, per_channel=True)",
                "q, scale = quantize_int8(w, per_channel=False)",
            ),
            ("layer.scale = scale", "layer.scale = scale.expand(linear.out_features, 1).clone()"),
        ),
        "ONE scale for the whole matrix",
    ),
    # distillation_loss
    Mutant(
        "distill_no_t2",
        "distillation_loss",
        (("soft = temperature**2 * kl.mean()", "soft = kl.mean()"),),
        "without the factor T²",
    ),
    Mutant(
        "distill_swapped",
        "distillation_loss",
        (
            (
                "kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1)",
                "kl = (log_p_s.exp() * (log_p_s - log_p_t)).sum(dim=-1)",
            ),
        ),
        "KL(student ‖ teacher)",
    ),
    Mutant(
        "distill_teacher_only",
        "distillation_loss",
        (
            (
                "log_p_s = F.log_softmax(student_logits / temperature, dim=-1)",
                "log_p_s = F.log_softmax(student_logits, dim=-1)",
            ),
        ),
        "teacher only",
    ),
    Mutant(
        "distill_alpha_swapped",
        "distillation_loss",
        (("return alpha * soft + (1 - alpha) * hard", "return (1 - alpha) * soft + alpha * hard"),),
        "alpha weighs",
    ),
    # flash_attention
    Mutant(
        "flash_no_rescale",
        "flash_attention",
        (("rescale = torch.exp(m - m_new)", "rescale = torch.ones_like(m_new)"),),
        "without rescaling",
    ),
    Mutant(
        "flash_no_division",
        "flash_attention",
        (("out[..., i0:i1, :] = (acc / l).to(q.dtype)", "out[..., i0:i1, :] = acc.to(q.dtype)"),),
        "divide it by the running sum",
    ),
    Mutant(
        "flash_causal_off_by_one",
        "flash_attention",
        (
            ("s = s.masked_fill(cols > rows, ", "s = s.masked_fill(cols > rows + 1, "),
            ("k_end = min(Lk, i1) if causal else Lk", "k_end = min(Lk, i1 + 1) if causal else Lk"),
        ),
        "key i + 1",
    ),
    Mutant(
        "flash_no_scale",
        "flash_attention",
        (("scale = 1.0 / math.sqrt(d)", "scale = 1.0"),),
        "1/sqrt(d)",
    ),
    Mutant(
        "flash_one_tile",
        "flash_attention",
        (
            (
                "    for i0 in range(0, Lq, block_size):",
                "    block_size = max(Lq, Lk)  # everything in one tile\n"
                "    for i0 in range(0, Lq, block_size):",
            ),
        ),
        "score matrix",
    ),
    # KVCache
    Mutant(
        "kv_prepend",
        "KVCache",
        (
            ("k = torch.cat([old_k, k], dim=-2)", "k = torch.cat([k, old_k], dim=-2)"),
            ("v = torch.cat([old_v, v], dim=-2)", "v = torch.cat([v, old_v], dim=-2)"),
        ),
        "FIRST",
    ),
    Mutant(
        "kv_returns_new_only",
        "KVCache",
        (
            (
                "old_k, old_v = self.keys[layer], self.values[layer]",
                "new_k, new_v = k, v\n        old_k, old_v = self.keys[layer], self.values[layer]",
            ),
            ("return k, v", "return new_k, new_v"),
        ),
        "only the new keys",
    ),
    Mutant(
        "kv_crop_keeps_last",
        "KVCache",
        (
            (
                "self.keys[i] = self.keys[i][..., :length, :]",
                "self.keys[i] = self.keys[i][..., -length:, :]",
            ),
            (
                "self.values[i] = self.values[i][..., :length, :]",
                "self.values[i] = self.values[i][..., -length:, :]",
            ),
        ),
        "LAST positions",
    ),
    # forward_with_cache
    Mutant(
        "fwd_no_offset",
        "forward_with_cache",
        (
            (
                "positions = torch.arange(past, past + T_new, device=input_ids.device)[None, :]",
                "positions = torch.arange(T_new, device=input_ids.device)[None, :]",
            ),
        ),
        "positions 0..T_new-1",
    ),
    Mutant(
        "fwd_new_keys_only",
        "forward_with_cache",
        (
            ("k, v = cache.update(i, k, v)", "cache.update(i, k, v)"),
            ("masked_fill(~allowed, ", "masked_fill(~allowed[..., -T_new:], "),
        ),
        "new tokens' keys only",
    ),
    Mutant(
        "fwd_no_causal_mask",
        "forward_with_cache",
        (("allowed = (cols <= rows)[None, None]", "allowed = (cols >= 0)[None, None]"),),
        "new tokens after them",
    ),
    Mutant(
        "fwd_ignores_key_mask",
        "forward_with_cache",
        (("    if key_mask is not None:\n        allowed", "    if False:\n        allowed"),),
        "attending to the padding",
    ),
    # generate_with_kv_cache
    Mutant(
        "gen_recomputes",
        "generate_with_kv_cache",
        (
            (
                "logits = forward_with_cache(model, new, cache)[:, -1, :]  # (B, V)",
                "logits = model(ids)[:, -1, :]",
            ),
        ),
        "recomputes the prefix",
    ),
    Mutant(
        "gen_fresh_cache",
        "generate_with_kv_cache",
        (
            (
                "logits = forward_with_cache(model, new, cache)[:, -1, :]  # (B, V)",
                "cache = KVCache(len(model.blocks))\n"
                "            logits = forward_with_cache(model, new, cache)[:, -1, :]",
            ),
        ),
        "NEW cache at every step",
    ),
    # generate_batch
    Mutant(
        "batch_no_mask",
        "generate_batch",
        (("key_mask = cols >= pad  # (B, Lmax)", "key_mask = (cols >= pad) | True  # (B, Lmax)"),),
        "attending to the padding",
    ),
    Mutant(
        "batch_no_shift",
        "generate_batch",
        (
            ("positions = (cols - pad).clamp_min(0)", "positions = cols.expand(B, -1)"),
            (
                "positions = (lengths + step)[:, None]",
                "positions = torch.full((B, 1), Lmax + step, device=device)",
            ),
        ),
        "counted from the first column",
    ),
    # PrefixCache
    Mutant(
        "prefix_no_reuse",
        "PrefixCache",
        (("if shared > best:", "if False:"),),
        "nothing was reused",
    ),
    Mutant(
        "prefix_one_too_many",
        "PrefixCache",
        (
            (
                "shared = int(same.sum())",
                "shared = int(same.sum())\n"
                "            shared = shared + 1 if 0 < shared < n else shared",
            ),
        ),
        "one position beyond",
    ),
    # speculative_decode
    Mutant(
        "spec_inverted_ratio",
        "speculative_decode",
        (("accept = u < p_x[0] / q_x[0]", "accept = u < q_x[0] / p_x[0]"),),
        "probability q/p",
    ),
    Mutant(
        "spec_residual_from_p",
        "speculative_decode",
        (("residual = (p[:, n] - q[:, n]).clamp_min(0)", "residual = p[:, n]"),),
        "norm(max(0, p - q))",
    ),
    Mutant(
        "spec_no_bonus",
        "speculative_decode",
        (
            (
                "extra = torch.multinomial(last, 1, generator=generator)  # (1, 1)",
                "extra = torch.multinomial(last, 1, generator=generator) if n < k else "
                "proposed[:, :0]",
            ),
        ),
        "bonus token",
    ),
    Mutant(
        "spec_draft_proposes_greedily",
        "speculative_decode",
        (
            (
                "x = torch.multinomial(q, 1, generator=generator)  # (1, 1)",
                "x = q.argmax(dim=-1, keepdim=True)  # (1, 1)",
            ),
        ),
        "SAMPLE each proposal",
    ),
    # promises of the docstrings (cases added with them)
    Mutant(
        "int8_rounds_half_up",
        "quantize_int8",
        (
            (
                "(w / scale).round().clamp(-127, 127)",
                "(w / scale + 0.5).floor().clamp(-127, 127)",
            ),
        ),
        "halves round to even",
    ),
    Mutant(
        "zp_zero_tensor_divides_by_zero",
        "quantize_zeropoint",
        (
            (
                "scale = ((hi - lo) / qmax).clamp_min(torch.finfo(w.dtype).tiny)  # ()",
                "scale = (hi - lo) / qmax  # ()",
            ),
        ),
        "a tensor of zeros",
    ),
    Mutant(
        "zp_rounds_half_up",
        "quantize_zeropoint",
        (
            (
                "q = ((w / scale).round() + zero_point)",
                "q = ((w / scale + 0.5).floor() + zero_point)",
            ),
        ),
        "halves round to even",
    ),
    Mutant(
        "int8linear_scale_always_float32",
        "Int8Linear",
        (("            layer.scale = scale\n", "            layer.scale = scale.float()\n"),),
        "float64 layer",
    ),
    Mutant(
        "flash_returns_float32",
        "flash_attention",
        (
            (
                "out = torch.empty(*q.shape[:-1], dv, dtype=q.dtype, device=q.device)",
                "out = torch.empty(*q.shape[:-1], dv, dtype=torch.float32, device=q.device)",
            ),
        ),
        "float64 inputs",
    ),
    Mutant(
        "kv_crop_to_zero_refused",
        "KVCache",
        (("if not 0 <= length <= self.length:", "if not 0 < length <= self.length:"),),
        "crop to 0",
    ),
    Mutant(
        "gen_cached_at_least_one_token",
        "generate_with_kv_cache",
        (("for _ in range(max_new_tokens):", "for _ in range(max(max_new_tokens, 1)):"),),
        "max_new_tokens = 0",
    ),
    Mutant(
        "batch_no_tokens_crashes",
        "generate_batch",
        (
            (
                "gen = torch.cat(out, dim=1) if out else ids[:, :0]",
                "gen = torch.cat(out, dim=1)",
            ),
        ),
        "max_new_tokens = 0",
    ),
    Mutant(
        "prefix_entries_newest_first",
        "PrefixCache",
        (
            (
                "self.entries.append((ids.clone(), stored))",
                "self.entries.insert(0, (ids.clone(), stored))",
            ),
        ),
        "entries",
    ),
    Mutant(
        "spec_at_least_one_round",
        "speculative_decode",
        (
            (
                "while ids.shape[1] - L < max_new_tokens:",
                "while ids.shape[1] - L < max(max_new_tokens, 1):",
            ),
        ),
        "max_new_tokens = 0",
    ),
    Mutant(
        "spec_rand_before_the_draft",
        "speculative_decode",
        (
            ("            u = torch.rand(k, generator=generator, device=device)  # (k,)\n", ""),
            (
                "            seq, qs = ids, []\n",
                "            seq, qs = ids, []\n"
                "            u = torch.rand(k, generator=generator, device=device)  # (k,)\n",
            ),
        ),
        "how the generator is consumed",
    ),
)
