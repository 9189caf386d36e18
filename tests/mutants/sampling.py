"""Mutants of solutions/sampling.py (chapter 07)."""

from tests.mutants import Mutant

MUTANTS = (
    # greedy
    Mutant(
        "greedy_argmin",
        "greedy",
        (("return logits.argmax(dim=-1)  # (...)", "return logits.argmin(dim=-1)"),),
        "LEAST probable",
    ),
    Mutant(
        "greedy_first_dim",
        "greedy",
        (("return logits.argmax(dim=-1)  # (...)", "return logits.argmax(dim=0)"),),
        "first dimension",
    ),
    Mutant(
        "greedy_last_on_ties",
        "greedy",
        (
            (
                "return logits.argmax(dim=-1)  # (...)",
                "return logits.shape[-1] - 1 - logits.flip(-1).argmax(dim=-1)",
            ),
        ),
        "LAST of the largest",
    ),
    # apply_temperature
    Mutant(
        "temperature_multiplied",
        "apply_temperature",
        (("return logits / temperature  # (..., V)", "return logits * temperature"),),
        "logits * T",
    ),
    Mutant(
        "temperature_returns_probabilities",
        "apply_temperature",
        (
            (
                "return logits / temperature  # (..., V)",
                "return (logits / temperature).softmax(dim=-1)",
            ),
        ),
        "softmax(logits / T)",
    ),
    # top_k_filter
    Mutant(
        "top_k_drops_kth",
        "top_k_filter",
        (
            (
                'logits.masked_fill(logits < kth, float("-inf"))',
                'logits.masked_fill(logits <= kth, float("-inf"))',
            ),
        ),
        "k-th largest too",
    ),
    Mutant(
        "top_k_smallest",
        "top_k_filter",
        (
            ("torch.topk(logits, k, dim=-1)", "torch.topk(logits, k, dim=-1, largest=False)"),
            (
                'logits.masked_fill(logits < kth, float("-inf"))',
                'logits.masked_fill(logits > kth, float("-inf"))',
            ),
        ),
        "SMALLEST",
    ),
    Mutant(
        "top_k_zero_fill",
        "top_k_filter",
        (
            (
                'logits.masked_fill(logits < kth, float("-inf"))',
                "logits.masked_fill(logits < kth, 0.0)",
            ),
        ),
        "filtered logits to 0",
    ),
    # top_p_filter
    Mutant(
        "top_p_inclusive_cumsum",
        "top_p_filter",
        (("drop = before >= p", "drop = probs.cumsum(dim=-1) > p"),),
        "crosses p",
    ),
    Mutant(
        "top_p_zero_fill",
        "top_p_filter",
        (
            (
                'sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))',
                "sorted_logits = sorted_logits.masked_fill(drop, 0.0)",
            ),
        ),
        "filtered logits to 0",
    ),
    Mutant(
        "top_p_keeps_at_exact_mass",
        "top_p_filter",
        (("drop = before >= p", "drop = before > p"),),
        "BELOW p",
    ),
    # sample_next_token
    Mutant(
        "sample_temperature_multiplied",
        "sample_next_token",
        (
            (
                "logits = apply_temperature(logits, temperature)  # (B, V)",
                "logits = logits * temperature",
            ),
        ),
        "multiplied by the temperature",
    ),
    Mutant(
        "sample_filters_before_temperature",
        "sample_next_token",
        (
            ("logits = apply_temperature(logits, temperature)  # (B, V)", "pass"),
            (
                "probs = F.softmax(logits, dim=-1)  # (B, V), zero where filtered",
                "probs = F.softmax(apply_temperature(logits, temperature), dim=-1)",
            ),
        ),
        "BEFORE the temperature",
    ),
    Mutant(
        "sample_ignores_top_k",
        "sample_next_token",
        (("if top_k is not None:\n", "if False:\n"),),
        "ignoring top_k",
    ),
    Mutant(
        "sample_top_p_before_top_k",
        "sample_next_token",
        (
            (
                "    if top_k is not None:\n        logits = top_k_filter(logits, top_k)\n"
                "    if top_p is not None:\n        logits = top_p_filter(logits, top_p)\n",
                "    if top_p is not None:\n        logits = top_p_filter(logits, top_p)\n"
                "    if top_k is not None:\n        logits = top_k_filter(logits, top_k)\n",
            ),
        ),
        "top-p BEFORE top-k",
    ),
    Mutant(
        "sample_draws_at_temperature_zero",
        "sample_next_token",
        (
            (
                "        return greedy(logits)  # (B,)",
                "        torch.multinomial(logits.softmax(-1), 1, generator=generator)\n"
                "        return greedy(logits)  # (B,)",
            ),
        ),
        "generator must not be used",
    ),
    # generate
    Mutant(
        "generate_no_padding",
        "generate",
        (("next_ids = next_ids.masked_fill(finished, eos_token_id)", "pass"),),
        "keep sampling after",
    ),
    Mutant(
        "generate_no_early_stop",
        "generate",
        (
            (
                "        if eos_token_id is not None and bool(finished.all()):\n"
                "            break\n",
                "",
            ),
        ),
        "even when every row",
    ),
    Mutant(
        "generate_last_token_only",
        "generate",
        (("logits = model(ids)[:, -1, :]", "logits = model(ids[:, -1:])[:, -1, :]"),),
        "only the last token",
    ),
    Mutant(
        "generate_first_position",
        "generate",
        (("logits = model(ids)[:, -1, :]", "logits = model(ids)[:, 0, :]"),),
        "FIRST position",
    ),
    Mutant(
        "generate_adds_a_token_when_asked_for_none",
        "generate",
        (("for _ in range(max_new_tokens):", "for _ in range(max(max_new_tokens, 1)):"),),
        "max_new_tokens = 0",
    ),
    # beam_search
    Mutant(
        "beam_raw_logits",
        "beam_search",
        (("logp = F.log_softmax(logits.float(), dim=-1)  # (W, V)", "logp = logits.float()"),),
        "raw logits",
    ),
    Mutant(
        "beam_not_cumulative",
        "beam_search",
        (
            ("cand = (scores[:, None] + logp).flatten()  # (W * V,)", "cand = logp.flatten()"),
            (
                "beam, token = divmod(index, V)\n",
                "beam, token = divmod(index, V)\n            score = score + float(scores[beam])\n",
            ),
        ),
        "last token's log-probability",
    ),
    Mutant(
        "beam_no_length_normalisation",
        "beam_search",
        (
            (
                "# (L + step,)\n"
                "                    finished.append((score / step**length_penalty, seq))",
                "\n                    finished.append((score, seq))",
            ),
            (
                "finished.append((score / step**length_penalty, seq))\n    best",
                "finished.append((score, seq))\n    best",
            ),
        ),
        "raw total",
    ),
    Mutant(
        "beam_finishes_eos_beyond_width",
        "beam_search",
        (("                if rank < beam_width:\n", "                if True:\n"),),
        "end token",
    ),
    Mutant(
        "beam_no_early_stop",
        "beam_search",
        (
            (
                "if len(finished) >= beam_width or len(keep_beam) == 0:",
                "if len(keep_beam) == 0:",
            ),
        ),
        "end token",
    ),
    Mutant(
        "beam_alive_not_counted",
        "beam_search",
        (
            (
                "    for score, seq in zip(scores.tolist(), beams, strict=True):\n",
                "    for score, seq in zip(scores.tolist(), beams, strict=True) if not finished "
                "else ():\n",
            ),
        ),
        "end token",
    ),
    Mutant(
        "beam_end_token_not_counted",
        "beam_search",
        (
            (
                "# (L + step,)\n"
                "                    finished.append((score / step**length_penalty, seq))",
                "# (L + step,)\n"
                "                    n = max(step - 1, 1)\n"
                "                    finished.append((score / n**length_penalty, seq))",
            ),
        ),
        "end token",
    ),
    # best_of_n
    Mutant(
        "best_of_n_argmin",
        "best_of_n",
        (("best = scores.argmax()  # ()", "best = scores.argmin()"),),
        "LOWEST-scored",
    ),
    Mutant(
        "best_of_n_drops_sampling_args",
        "best_of_n",
        (
            (
                "samples = generate(model, input_ids.expand(n, -1), **sampling)",
                "samples = generate(model, input_ids.expand(n, -1), sampling['max_new_tokens'], "
                "generator=sampling.get('generator'))",
            ),
        ),
        "without the sampling arguments",
    ),
    Mutant(
        "best_of_n_last_on_ties",
        "best_of_n",
        (("best = scores.argmax()  # ()", "best = len(scores) - 1 - scores.flip(0).argmax()"),),
        "LAST of the best-scored",
    ),
)
