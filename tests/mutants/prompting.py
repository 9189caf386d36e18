"""Mutants of solutions/prompting.py (chapter 10)."""

from tests.mutants import Mutant

SC_LOOP = """    ids = prompt_ids[None, :].expand(n_samples, P)  # (n, P)
    with torch.no_grad():
        for _ in range(max_new_tokens):  # a loop over decoding steps
            logits = model(ids)[:, -1, :]  # (n, V)
            probs = F.softmax(logits / temperature, dim=-1)  # (n, V)
            nxt = torch.multinomial(probs, 1, generator=generator)  # (n, 1)
            ids = torch.cat([ids, nxt.to(device=ids.device, dtype=ids.dtype)], dim=1)
"""
SC_CHAIN_BY_CHAIN = """    rows = []
    with torch.no_grad():
        for _ in range(n_samples):  # one chain after the other
            row = prompt_ids[None, :]
            for _ in range(max_new_tokens):
                probs = F.softmax(model(row)[:, -1, :] / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
                row = torch.cat([row, nxt.to(row.dtype)], dim=1)
            rows.append(row)
    ids = torch.cat(rows)
"""
CD_LIKELIHOOD = """    P = prompt_ids.shape[0]
    with torch.no_grad():  # every option scored in full (classify_by_likelihood's answer)
        best, best_score = 0, None
        for i, opt in enumerate(options):
            ids = torch.cat([prompt_ids.long(), opt[:-1].long()])
            logp = F.log_softmax(model(ids[None])[0, P - 1 :].float(), dim=-1)
            score = float(logp.gather(-1, opt.long()[:, None]).sum())
            if best_score is None or score > best_score:
                best, best_score = i, score
    return best
    alive = torch.ones(n, dtype=torch.bool, device=device)"""

MUTANTS = (
    # few_shot_prompt
    Mutant(
        "few_shot_query_not_cut",
        "few_shot_prompt",
        (
            (
                "parts.append(before + str(query) + middle)",
                "parts.append(before + str(query) + middle + after)",
            ),
        ),
        "cut the template just before {output}",
    ),
    Mutant(
        "few_shot_str_format",
        "few_shot_prompt",
        (
            (
                "parts.append(before + str(x) + middle + str(y) + after)",
                "parts.append(template.format(input=x, output=y))",
            ),
            (
                "parts.append(before + str(query) + middle)",
                "parts.append(template[:o].format(input=query))",
            ),
        ),
        "str.format turns",
    ),
    Mutant(
        "few_shot_chained_replace",
        "few_shot_prompt",
        (
            (
                "parts.append(before + str(x) + middle + str(y) + after)",
                'parts.append(template.replace("{input}", str(x)).replace("{output}", str(y)))',
            ),
        ),
        "chained str.replace",
    ),
    Mutant(
        "few_shot_newline_join",
        "few_shot_prompt",
        (('    return "".join(parts)', '    return "\\n".join(parts)'),),
        "joining the rendered examples",
    ),
    # sequence_logprob
    Mutant(
        "logprob_own_position",
        "sequence_logprob",
        (
            ("rest = continuation_ids[:-1].to(", "rest = continuation_ids.to("),
            (
                "tuple(logits.shape[:2]) != (1, P + C - 1):",
                "tuple(logits.shape[:2]) != (1, P + C):",
            ),
            ("pred = logits[0, P - 1 :]", "pred = logits[0, P:]"),
        ),
        "at its OWN position",
    ),
    Mutant(
        "logprob_raw_logits",
        "sequence_logprob",
        (
            (
                "logp = F.log_softmax(pred.to(torch.promote_types(pred.dtype, torch.float32)), "
                "dim=-1)\n    target = continuation_ids",
                "logp = pred.to(torch.promote_types(pred.dtype, torch.float32))\n"
                "    target = continuation_ids",
            ),
        ),
        "summing raw logits",
    ),
    Mutant(
        "logprob_mean",
        "sequence_logprob",
        (
            (
                "return token_logp.sum().to(logits.dtype)",
                "return token_logp.mean().to(logits.dtype)",
            ),
        ),
        "MEAN log-probability",
    ),
    Mutant(
        "logprob_under_no_grad",
        "sequence_logprob",
        (
            (
                "    logits = model(ids[None])  # (1, P + C - 1, V)",
                "    with torch.no_grad():\n        logits = model(ids[None])",
            ),
        ),
        "carries no gradient",
    ),
    # classify_by_likelihood
    Mutant(
        "classify_scores_the_padding",
        "classify_by_likelihood",
        (
            (
                "scores = token_logp.masked_fill(~valid, 0.0).sum(dim=-1)",
                "scores = token_logp.sum(dim=-1)",
            ),
        ),
        "scoring the padding",
    ),
    Mutant(
        "classify_normalize_with_prompt",
        "classify_by_likelihood",
        (
            (
                "scores = scores / lengths.to(device=logits.device, dtype=scores.dtype)",
                "scores = scores / (lengths + P).to(device=logits.device, dtype=scores.dtype)",
            ),
        ),
        "prompt's length plus",
    ),
    Mutant(
        "classify_normalize_ignored",
        "classify_by_likelihood",
        (("    if normalize:\n", "    if False:\n"),),
        "ignoring normalize",
    ),
    Mutant(
        "classify_last_on_ties",
        "classify_by_likelihood",
        (
            (
                "return scores, int(scores.argmax())",
                "return scores, n - 1 - int(scores.flip(0).argmax())",
            ),
        ),
        "LAST of the best-scored",
    ),
    # majority_vote
    Mutant(
        "vote_counts_none",
        "majority_vote",
        (
            (
                "counts = Counter(a for a in answers if a is not None)  # keys in order of first "
                "occurrence\n    if not counts:\n        return None\n",
                "counts = Counter(answers)\n    if not counts:\n        return None\n",
            ),
        ),
        "counting None as an answer",
    ),
    Mutant(
        "vote_tie_latest",
        "majority_vote",
        (
            (
                "return next(a for a, c in counts.items() if c == best)"
                "  # the earliest of the tied",
                "return [a for a, c in counts.items() if c == best][-1]",
            ),
        ),
        "seen LAST",
    ),
    Mutant(
        "vote_tie_sorted",
        "majority_vote",
        (
            (
                "return next(a for a, c in counts.items() if c == best)"
                "  # the earliest of the tied",
                "return min(a for a, c in counts.items() if c == best)",
            ),
        ),
        "by sorting the answers",
    ),
    # self_consistency
    Mutant(
        "self_consistency_chain_by_chain",
        "self_consistency",
        ((SC_LOOP, SC_CHAIN_BY_CHAIN),),
        "one after the other",
    ),
    Mutant(
        "self_consistency_temperature_ignored",
        "self_consistency",
        (
            (
                "probs = F.softmax(logits / temperature, dim=-1)  # (n, V)",
                "probs = F.softmax(logits, dim=-1)",
            ),
        ),
        "temperature 1 whatever",
    ),
    Mutant(
        "self_consistency_argmax",
        "self_consistency",
        (
            (
                "nxt = torch.multinomial(probs, 1, generator=generator)  # (n, 1)",
                "nxt = probs.argmax(dim=-1, keepdim=True)",
            ),
        ),
        "greedy decoding (argmax)",
    ),
    Mutant(
        "self_consistency_decodes_the_prompt",
        "self_consistency",
        (
            (
                "answers = [parse(decode(row)) for row in ids[:, P:].tolist()]",
                "answers = [parse(decode(row)) for row in ids.tolist()]",
            ),
        ),
        "parsing the prompt's text",
    ),
    Mutant(
        "self_consistency_counts_none",
        "self_consistency",
        (
            (
                "counts = Counter(a for a in answers if a is not None)  # keys in order of first "
                "occurrence\n    if not counts:\n        return None, answers",
                "counts = Counter(answers)\n    if not counts:\n        return None, answers",
            ),
        ),
        "counting None in the vote",
    ),
    # constrained_decode
    Mutant(
        "constrained_likelihood",
        "constrained_decode",
        (
            (
                "    alive = torch.ones(n, dtype=torch.bool, device=device)",
                CD_LIKELIHOOD,
            ),
        ),
        "scoring every option in full",
    ),
    Mutant(
        "constrained_first_token_only",
        "constrained_decode",
        (("done = alive & (lengths == step + 1)  # (n,)", "done = alive"),),
        "deciding on the first token alone",
    ),
    Mutant(
        "constrained_prompt_logits_every_step",
        "constrained_decode",
        (
            (
                "logits = model(ids[None])[0, -1]  # (V,)",
                "logits = model(prompt_ids.long()[None])[0, -1]",
            ),
        ),
        "reading the logits of the prompt at every step",
    ),
    Mutant(
        "constrained_highest_id_on_ties",
        "constrained_decode",
        (
            (
                "token = allowed[values.argmax().to(device)]",
                "token = allowed[(len(values) - 1 - values.flip(0).argmax()).to(device)]",
            ),
        ),
        "LOWEST token id",
    ),
    Mutant(
        "constrained_with_grad",
        "constrained_decode",
        (
            (
                "    with torch.no_grad():\n        for step in range(L):",
                "    if True:\n        for step in range(L):",
            ),
        ),
        "record gradients",
    ),
    # bm25_scores
    Mutant(
        "bm25_idf_without_one",
        "bm25_scores",
        (
            (
                "# (Q,) documents containing each query term\n"
                "    idf = torch.log1p((N - df + 0.5) / (df + 0.5))",
                "# (Q,) documents containing each query term\n"
                "    idf = torch.log((N - df + 0.5) / (df + 0.5))",
            ),
        ),
        "always positive",
    ),
    Mutant(
        "bm25_no_length_normalisation",
        "bm25_scores",
        (
            (
                "|D| / avgdl\n    denom = tf + k1 * (1 - b + b * rel[:, None])",
                "|D| / avgdl\n    denom = tf + k1 + 0 * rel[:, None]  # b ignored",
            ),
        ),
        "without length normalisation",
    ),
    Mutant(
        "bm25_unsaturated",
        "bm25_scores",
        (
            (
                "term = torch.where(tf > 0, tf * (k1 + 1) / denom.clamp_min(1e-300), 0.0)"
                "  # (N, Q)\n"
                "    return",
                "term = tf\n    return",
            ),
        ),
        "grows without bound",
    ),
    Mutant(
        "bm25_distinct_query_terms",
        "bm25_scores",
        (
            (
                "    counts = [Counter(doc) for doc in documents]",
                "    query = list(dict.fromkeys(query))\n"
                "    counts = [Counter(doc) for doc in documents]",
            ),
        ),
        "each distinct query term once",
    ),
    Mutant(
        "bm25_no_zero_guards",
        "bm25_scores",
        (
            (
                "rel = dl / avgdl if bool(avgdl > 0) else torch.zeros_like(dl)  # (N,) |D| / avgdl",
                "rel = dl / avgdl  # (N,) |D| / avgdl",
            ),
            (
                "term = torch.where(tf > 0, tf * (k1 + 1) / denom.clamp_min(1e-300), 0.0)"
                "  # (N, Q)\n"
                "    return",
                "term = tf * (k1 + 1) / denom\n    return",
            ),
        ),
        "0 / 0 = nan",
    ),
    # retrieval_prompt
    Mutant(
        "retrieval_not_lowercased",
        "retrieval_prompt",
        (
            (
                'query = re.findall(r"\\w+", question.lower())',
                'query = re.findall(r"\\w+", question)',
            ),
            (
                'counts = [Counter(re.findall(r"\\w+", doc.lower())) for doc in documents]',
                'counts = [Counter(re.findall(r"\\w+", doc)) for doc in documents]',
            ),
        ),
        "without lowercasing",
    ),
    Mutant(
        "retrieval_split_on_whitespace",
        "retrieval_prompt",
        (
            ('query = re.findall(r"\\w+", question.lower())', "query = question.lower().split()"),
            (
                'counts = [Counter(re.findall(r"\\w+", doc.lower())) for doc in documents]',
                "counts = [Counter(doc.lower().split()) for doc in documents]",
            ),
        ),
        "split on whitespace",
    ),
    Mutant(
        "retrieval_numbered_from_0",
        "retrieval_prompt",
        (('f"[{r + 1}] {documents[i]}\\n"', 'f"[{r}] {documents[i]}\\n"'),),
        "numbered from 0",
    ),
    Mutant(
        "retrieval_original_order",
        "retrieval_prompt",
        (
            (
                "indices = order[: min(k, N)].tolist()",
                "indices = sorted(order[: min(k, N)].tolist())",
            ),
        ),
        "in their original order",
    ),
    Mutant(
        "retrieval_ties_by_decreasing_index",
        "retrieval_prompt",
        (
            (
                "order = torch.sort(scores, descending=True, stable=True).indices",
                "order = N - 1 - torch.sort(scores.flip(0), descending=True, stable=True).indices",
            ),
        ),
        "DEcreasing index",
    ),
    # induction_scores
    Mutant(
        "induction_reads_the_copy",
        "induction_scores",
        (
            (
                "diag = torch.diagonal(attention, offset=-(period - 1), dim1=-2, dim2=-1)",
                "diag = torch.diagonal(attention, offset=-period, dim1=-2, dim2=-1)",
            ),
            ("return diag[..., 1:].mean(dim=-1)", "return diag.mean(dim=-1)"),
        ),
        "earlier copy itself",
    ),
    Mutant(
        "induction_keeps_row_period_minus_1",
        "induction_scores",
        (("return diag[..., 1:].mean(dim=-1)", "return diag.mean(dim=-1)"),),
        "also counts query position period - 1",
    ),
    Mutant(
        "induction_transposed",
        "induction_scores",
        (
            (
                "diag = torch.diagonal(attention, offset=-(period - 1), dim1=-2, dim2=-1)",
                "diag = torch.diagonal(attention, offset=-(period - 1), dim1=-1, dim2=-2)",
            ),
        ),
        "row t is the query",
    ),
    Mutant(
        "induction_sum",
        "induction_scores",
        (("return diag[..., 1:].mean(dim=-1)", "return diag[..., 1:].sum(dim=-1)"),),
        "the SUM over the query positions",
    ),
)
