"""Mutants of solutions/architectures.py (chapter 02): the usual wrong answers."""

from tests.mutants import Mutant

MUTANTS = (
    # NGramLM
    Mutant(
        "ngram_no_end_in_vocab",
        "NGramLM",
        (('self.vocab = {"</s>"}', "self.vocab = set()"),),
        "vocabulary without </s>",
    ),
    Mutant(
        "ngram_k_without_vocab",
        "NGramLM",
        (("+ self.k * len(self.vocab)", "+ self.k"),),
        "count(c) + k·|V|",
    ),
    Mutant(
        "ngram_single_start",
        "NGramLM",
        (
            (
                'padded = ["<s>"] * (self.n - 1) + list(sentence)',
                'padded = ["<s>"] * min(1, self.n - 1) + list(sentence)',
            ),
            (
                'padded = ["<s>"] * (self.n - 1) + list(tokens)',
                'padded = ["<s>"] * min(1, self.n - 1) + list(tokens)',
            ),
        ),
        "single <s>",
    ),
    Mutant(
        "ngram_no_end_factor",
        "NGramLM",
        (
            (
                'padded = ["<s>"] * (self.n - 1) + list(tokens) + ["</s>"]',
                'padded = ["<s>"] * (self.n - 1) + list(tokens)',
            ),
        ),
        "P(</s> | ...)",
    ),
    Mutant(
        "ngram_log10",
        "NGramLM",
        (("total += math.log(p) if p > 0", "total += math.log10(p) if p > 0"),),
        "log base 10",
    ),
    # rnn_cell
    Mutant(
        "rnn_u_not_transposed",
        "rnn_cell",
        (("activation(x @ W.T + h @ U.T + b)", "activation(x @ W.T + h @ U + b)"),),
        "h @ U.T",
    ),
    Mutant(
        "rnn_no_bias",
        "rnn_cell",
        (("activation(x @ W.T + h @ U.T + b)", "activation(x @ W.T + h @ U.T)"),),
        "without the bias",
    ),
    Mutant(
        "rnn_always_tanh",
        "rnn_cell",
        (("return activation(x @ W.T + h @ U.T + b)", "return torch.tanh(x @ W.T + h @ U.T + b)"),),
        "even when another `activation`",
    ),
    # gru_cell
    Mutant(
        "gru_gate_swapped",
        "gru_cell",
        (("return (1 - z) * h + z * candidate", "return z * h + (1 - z) * candidate"),),
        "torch.nn.GRUCell",
    ),
    Mutant(
        "gru_x_first",
        "gru_cell",
        (
            ("hx = torch.cat([h, x], dim=-1)", "hx = torch.cat([x, h], dim=-1)"),
            ("torch.cat([r * h, x], dim=-1)", "torch.cat([x, r * h], dim=-1)"),
        ),
        "[h, x]",
    ),
    Mutant(
        "gru_no_reset",
        "gru_cell",
        (("torch.tanh(torch.cat([r * h, x], dim=-1) @ W_h.T)", "torch.tanh(hx @ W_h.T)"),),
        "reset gate",
    ),
    # skipgram_pairs
    Mutant(
        "pairs_with_center",
        "skipgram_pairs",
        (("offsets = offsets[offsets != 0]", "offsets = offsets[offsets != 99]"),),
        "paired with itself",
    ),
    Mutant(
        "pairs_window_exclusive",
        "skipgram_pairs",
        (
            (
                "offsets = torch.arange(-window, window + 1, device=device)",
                "offsets = torch.arange(-window + 1, window, device=device)",
            ),
        ),
        "exactly",
    ),
    Mutant(
        "pairs_swapped",
        "skipgram_pairs",
        (
            (
                "torch.stack([ids[centers[valid]], ids[ctx[valid]]], dim=-1)",
                "torch.stack([ids[ctx[valid]], ids[centers[valid]]], dim=-1)",
            ),
        ),
        "(center id, context id)",
    ),
    # skipgram_negative_sampling_loss
    Mutant(
        "sgns_mean_negatives",
        "skipgram_negative_sampling_loss",
        (("F.logsigmoid(-negative).sum(-1)", "F.logsigmoid(-negative).mean(-1)"),),
        "mean over the K negatives",
    ),
    Mutant(
        "sgns_negative_sign",
        "skipgram_negative_sampling_loss",
        (("F.logsigmoid(-negative).sum(-1)", "F.logsigmoid(negative).sum(-1)"),),
        "score LOW",
    ),
    Mutant(
        "sgns_naive_log_sigmoid",
        "skipgram_negative_sampling_loss",
        (
            (
                "loss = -F.logsigmoid(positive) - F.logsigmoid(-negative).sum(-1)",
                "loss = -torch.log(torch.sigmoid(positive)) - "
                "torch.log(torch.sigmoid(-negative)).sum(-1)",
            ),
        ),
        "F.logsigmoid",
    ),
    # mask_tokens_for_mlm
    Mutant(
        "mlm_labels_everywhere",
        "mask_tokens_for_mlm",
        (
            (
                "labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))",
                "labels = input_ids.clone()",
            ),
        ),
        "was not selected",
    ),
    Mutant(
        "mlm_always_mask",
        "mask_tokens_for_mlm",
        (
            (
                "inputs = torch.where(selected & (u >= 0.8) & (u < 0.9), random_ids, inputs)",
                "inputs = torch.where(selected, torch.full_like(input_ids, mask_token_id), inputs)",
            ),
        ),
        "80/10/10",
    ),
    Mutant(
        "mlm_specials_selected",
        "mask_tokens_for_mlm",
        (("selected = selected & ~is_special  # (...)", "pass"),),
        "never be selected",
    ),
    Mutant(
        "mlm_ignores_generator",
        "mask_tokens_for_mlm",
        (
            (
                "selected = torch.rand(shape, generator=generator, device=device) < mask_prob",
                "selected = torch.rand(shape, device=device) < mask_prob",
            ),
        ),
        "does not draw its randomness from `generator`",
    ),
    # GPT
    Mutant(
        "gpt_no_positions",
        "GPT",
        (
            (
                "x = self.tok_emb(input_ids) + self.pos_emb(positions)",
                "x = self.tok_emb(input_ids)",
            ),
        ),
        "without position embeddings",
    ),
    Mutant(
        "gpt_no_final_norm",
        "GPT",
        (("return self.lm_head(self.ln_f(x))", "return self.lm_head(x)"),),
        "final layer norm",
    ),
    Mutant(
        "gpt_untied_head",
        "GPT",
        (("self.lm_head.weight = self.tok_emb.weight  # weight tying", "pass"),),
        "parameters too many",
    ),
    Mutant(
        "gpt_not_causal",
        "GPT",
        (
            (
                "TransformerBlock(d_model, n_heads, d_ff, causal=True) for _ in range(n_layers)",
                "TransformerBlock(d_model, n_heads, d_ff, causal=False) for _ in range(n_layers)",
            ),
        ),
        "without the causal mask",
    ),
    # EncoderDecoder
    Mutant(
        "encdec_decoder_not_causal",
        "EncoderDecoder",
        (
            (
                'y = y + layer["self_attn"](layer["ln1"](y), mask=mask)',
                'y = y + layer["self_attn"](layer["ln1"](y), mask=None)',
            ),
        ),
        "no causal mask",
    ),
    Mutant(
        "encdec_memory_ignored",
        "EncoderDecoder",
        (
            (
                'layer["cross_attn"](layer["ln2"](y), context=memory)',
                'layer["cross_attn"](layer["ln2"](y), context=None)',
            ),
        ),
        "attends to the target itself",
    ),
    Mutant(
        "encdec_causal_encoder",
        "EncoderDecoder",
        (
            (
                "TransformerBlock(d_model, n_heads, d_ff, causal=False)\n",
                "TransformerBlock(d_model, n_heads, d_ff, causal=True)\n",
            ),
        ),
        "causal encoder",
    ),
    Mutant(
        "encdec_no_encoder_norm",
        "EncoderDecoder",
        (("return self.ln_enc(x)  # (B, S, d_model)", "return x"),),
        "before ln_enc",
    ),
    # gpt_param_count
    Mutant(
        "count_no_positions",
        "gpt_param_count",
        (("embeddings = vocab_size * d + n_ctx * d", "embeddings = vocab_size * d"),),
        "position embeddings (n_ctx·d)",
    ),
    Mutant(
        "count_untied",
        "gpt_param_count",
        (
            (
                "embeddings = vocab_size * d + n_ctx * d",
                "embeddings = 2 * vocab_size * d + n_ctx * d",
            ),
        ),
        "vocabulary matrix twice",
    ),
    Mutant(
        "count_no_final_norm",
        "gpt_param_count",
        (("(attention + mlp + norms) + 2 * d", "(attention + mlp + norms)"),),
        "final layer norm",
    ),
    # training_flops
    Mutant(
        "flops_forward_only",
        "training_flops",
        (("return 6.0 * float(n_params)", "return 2.0 * float(n_params)"),),
        "forward pass alone",
    ),
    Mutant(
        "flops_4nd",
        "training_flops",
        (("return 6.0 * float(n_params)", "return 4.0 * float(n_params)"),),
        "C = 2ND + 4ND",
    ),
    # chinchilla_optimal
    Mutant(
        "chinchilla_2nd",
        "chinchilla_optimal",
        (
            (
                "n_params = math.sqrt(compute_flops / (6.0 * tokens_per_param))",
                "n_params = math.sqrt(compute_flops / (2.0 * tokens_per_param))",
            ),
        ),
        "C = 2·N·D",
    ),
    Mutant(
        "chinchilla_swapped",
        "chinchilla_optimal",
        (
            (
                "return n_params, tokens_per_param * n_params",
                "return tokens_per_param * n_params, n_params",
            ),
        ),
        "returns (n_tokens, n_params)",
    ),
    Mutant(
        "chinchilla_ratio_ignored",
        "chinchilla_optimal",
        (
            (
                "n_params = math.sqrt(compute_flops / (6.0 * tokens_per_param))",
                "n_params = math.sqrt(compute_flops / (6.0 * 20.0))",
            ),
            (
                "return n_params, tokens_per_param * n_params",
                "return n_params, 20.0 * n_params",
            ),
        ),
        "always uses 20",
    ),
    # added with the docstring promises
    Mutant(
        "ngram_default_k_half",
        "NGramLM",
        (
            (
                "def __init__(self, n: int, k: float = 1.0)",
                "def __init__(self, n: int, k: float = 0.5)",
            ),
        ),
        "k omitted",
    ),
    Mutant(
        "ngram_fit_accumulates",
        "NGramLM",
        (
            (
                "        self.ngram_counts, self.context_counts = {}, {}\n        for sentence",
                "        for sentence",
            ),
        ),
        "fitted twice",
    ),
    Mutant(
        "ngram_counts_renamed",
        "NGramLM",
        (
            (
                "self.ngram_counts: dict[tuple[str, ...], int] = {}",
                "self.counts: dict[tuple[str, ...], int] = {}",
            ),
            (
                "self.ngram_counts, self.context_counts = {}, {}",
                "self.counts, self.context_counts = {}, {}",
            ),
            (
                "self.ngram_counts[gram] = self.ngram_counts.get(gram, 0) + 1",
                "self.counts[gram] = self.counts.get(gram, 0) + 1",
            ),
            (
                "numerator = self.ngram_counts.get(c + (word,), 0) + self.k",
                "numerator = self.counts.get(c + (word,), 0) + self.k",
            ),
        ),
        "ngram_counts",
    ),
    Mutant(
        "ngram_fit_returns_none",
        "NGramLM",
        (("        return self\n\n    def prob", "        return None\n\n    def prob"),),
        "fit returns self",
    ),
    Mutant(
        "pairs_int32_kept",
        "skipgram_pairs",
        (("ids = token_ids.long()  # (T,)", "ids = token_ids  # (T,)"),),
        "int32 tensor",
    ),
    Mutant(
        "pairs_empty_flat",
        "skipgram_pairs",
        (
            (
                "    return torch.stack([ids[centers[valid]], ids[ctx[valid]]], dim=-1)",
                "    pairs = torch.stack([ids[centers[valid]], ids[ctx[valid]]], dim=-1)\n"
                "    return pairs if len(pairs) else torch.zeros(0, dtype=torch.long)",
            ),
        ),
        "no pairs",
    ),
    Mutant(
        "mlm_default_mask_prob",
        "mask_tokens_for_mlm",
        (("    mask_prob: float = 0.15,", "    mask_prob: float = 0.3,"),),
        "with mask_prob=0.15",
    ),
    Mutant(
        "mlm_random_ids_skip_last",
        "mask_tokens_for_mlm",
        (("        vocab_size, shape, generator=", "        vocab_size - 1, shape, generator="),),
        "never used the ids",
    ),
    Mutant(
        "gpt_default_init",
        "GPT",
        (
            (
                "self.lm_head.weight = self.tok_emb.weight  # weight tying\n"
                "        for name, p in self.named_parameters():",
                "self.lm_head.weight = self.tok_emb.weight  # weight tying\n"
                "        for name, p in []:",
            ),
        ),
        "GPT-2's initialisation",
    ),
    Mutant(
        "gpt_no_residual_scaling",
        "GPT",
        (
            (
                'residual = name.endswith(("attn.out_proj.weight", "ff.fc2.weight"))',
                "residual = False",
            ),
        ),
        "0.02 / sqrt(2 n_layers)",
    ),
    Mutant(
        "encdec_encode_unnormalised",
        "EncoderDecoder",
        (
            ("return self.ln_enc(x)  # (B, S, d_model)", "return x  # (B, S, d_model)"),
            (
                "return self.decode(tgt_ids, self.encode(src_ids))",
                "return self.decode(tgt_ids, self.ln_enc(self.encode(src_ids)))",
            ),
        ),
        "encode(src_ids)",
    ),
    Mutant(
        "flops_rejects_zero_tokens",
        "training_flops",
        (("if n_tokens < 0:", "if n_tokens <= 0:"),),
        "D = 0",
    ),
    Mutant(
        "mlm_input_ids_masked_in_place",
        "mask_tokens_for_mlm",
        (
            (
                "    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))",
                "    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))\n"
                "    input_ids = input_ids.masked_fill_(selected & (u < 0.8), mask_token_id)",
            ),
        ),
        "changed its input in place",
    ),
    Mutant(
        "flops_int_for_int_arguments",
        "training_flops",
        (
            (
                "return 6.0 * float(n_params) * float(n_tokens)",
                "return 6 * n_params * n_tokens",
            ),
        ),
        "should be a float",
    ),
)
