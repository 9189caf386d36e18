"""Mutants of solutions/evaluation.py (chapter 08)."""

from tests.mutants import Mutant

MUTANTS = (
    # perplexity
    Mutant(
        "ppl_sum",
        "perplexity",
        (('reduction="mean",', 'reduction="sum",'),),
        "SUM of the negative",
    ),
    Mutant(
        "ppl_no_exp",
        "perplexity",
        (("return float(torch.exp(nll))", "return float(nll)"),),
        "the cross-entropy",
    ),
    Mutant(
        "ppl_base2",
        "perplexity",
        (("return float(torch.exp(nll))", "return float(2.0**nll)"),),
        "natural logs",
    ),
    Mutant(
        "ppl_ignore_index_dropped",
        "perplexity",
        (("ignore_index=ignore_index,", "ignore_index=-100,"),),
        "use the ignore_index argument",
    ),
    # bleu
    Mutant(
        "bleu_unclipped",
        "bleu",
        (("sum(min(c, max_ref[g]) for", "sum(c * (max_ref[g] > 0) for"),),
        "without clipping",
    ),
    Mutant(
        "bleu_longest_reference",
        "bleu",
        (
            (
                "ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]",
                "ref_len += max(len(r) for r in refs)",
            ),
        ),
        "the longest reference",
    ),
    Mutant(
        "bleu_no_brevity_penalty",
        "bleu",
        (("brevity = 1.0 if hyp_len > ref_len else", "brevity = 1.0 if True else"),),
        "without the brevity penalty",
    ),
    Mutant(
        "bleu_arithmetic_mean",
        "bleu",
        (
            (
                "log_precision = sum(math.log(m / t) for",
                "log_precision = math.log(sum(m / t for",
            ),
            ("strict=True)) / max_n", "strict=True)) / max_n)"),
        ),
        "arithmetic mean",
    ),
    # rouge_n
    Mutant(
        "rouge_n_unclipped",
        "rouge_n",
        (
            (
                "overlap = sum((hyp_grams & ref_grams).values())",
                "overlap = sum(c for g, c in hyp_grams.items() if g in ref_grams)",
            ),
        ),
        "without clipping",
    ),
    Mutant(
        "rouge_n_swapped",
        "rouge_n",
        (
            (
                'return {"precision": precision, "recall": recall, "f1": f1}\n\n\ndef rouge_l',
                'return {"precision": recall, "recall": precision, "f1": f1}\n\n\ndef rouge_l',
            ),
        ),
        "swapped",
    ),
    Mutant(
        "rouge_n_whitespace_tokens",
        "rouge_n",
        (
            (
                '    hyp = re.findall(r"[a-z0-9]+", hypothesis.lower())\n'
                '    ref = re.findall(r"[a-z0-9]+", reference.lower())\n    hyp_grams',
                "    hyp = hypothesis.split()\n    ref = reference.split()\n    hyp_grams",
            ),
        ),
        "whitespace only",
    ),
    # rouge_l
    Mutant(
        "rouge_l_substring",
        "rouge_l",
        (
            ("table[j] = max(previous[j], table[j - 1])", "table[j] = 0"),
            ("lcs = table[-1]", "lcs = best"),
            (
                "table[j] = previous[j - 1] + 1",
                "table[j] = previous[j - 1] + 1\n                best = max(best, table[j])",
            ),
            ("table = [0] * (len(ref) + 1)", "table = [0] * (len(ref) + 1)\n    best = 0"),
        ),
        "SUBSTRING",
    ),
    Mutant(
        "rouge_l_swapped",
        "rouge_l",
        (
            (
                "precision = lcs / len(hyp) if hyp else 0.0",
                "precision = lcs / len(ref) if ref else 0.0",
            ),
            ("recall = lcs / len(ref) if ref else 0.0", "recall = lcs / len(hyp) if hyp else 0.0"),
        ),
        "swapped",
    ),
    Mutant(
        "rouge_l_no_lowercase",
        "rouge_l",
        (
            (
                '    hyp = re.findall(r"[a-z0-9]+", hypothesis.lower())\n'
                '    ref = re.findall(r"[a-z0-9]+", reference.lower())\n    # table',
                '    hyp = re.findall(r"[A-Za-z0-9]+", hypothesis)\n'
                '    ref = re.findall(r"[A-Za-z0-9]+", reference)\n    # table',
            ),
        ),
        "keep their capitals",
    ),
    # exact_match
    Mutant(
        "em_articles_kept",
        "exact_match",
        (('text = re.sub(r"\\b(a|an|the)\\b", " ", text)  # articles', "pass"),),
        "keeps the articles",
    ),
    Mutant(
        "em_no_normalisation",
        "exact_match",
        (
            (
                "hits += normalised[0] in normalised[1:]",
                "hits += prediction in accepted",
            ),
        ),
        "comparing the raw strings",
    ),
    Mutant(
        "em_first_reference_only",
        "exact_match",
        (("hits += normalised[0] in normalised[1:]", "hits += normalised[0] in normalised[1:2]"),),
        "ANY of its references",
    ),
    # pass_at_k
    Mutant(
        "pass_with_replacement",
        "pass_at_k",
        (
            (
                "return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))",
                "return 1.0 - (1.0 - c / n) ** k",
            ),
            ("    if n - c < k:\n        return 1.0\n", ""),
        ),
        "WITH replacement",
    ),
    Mutant(
        "pass_ignores_k",
        "pass_at_k",
        (
            (
                "return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))",
                "return c / n",
            ),
            ("    if n - c < k:\n        return 1.0\n", ""),
        ),
        "whatever k is",
    ),
    Mutant(
        "pass_all_correct",
        "pass_at_k",
        (
            (
                "return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))",
                "return math.comb(c, k) / math.comb(n, k)",
            ),
            ("    if n - c < k:\n        return 1.0\n", ""),
        ),
        "ALL k samples",
    ),
    # cohens_kappa
    Mutant(
        "kappa_no_chance_correction",
        "cohens_kappa",
        (("return (observed - expected) / (1.0 - expected)", "return observed"),),
        "raw agreement",
    ),
    Mutant(
        "kappa_pooled_marginals",
        "cohens_kappa",
        (
            (
                "expected = sum(count_a[label] * count_b[label] for label in count_a) / n**2",
                "expected = sum((count_a[x] + count_b[x]) ** 2 for x in count_a | count_b)"
                " / (2 * n) ** 2",
            ),
        ),
        "Scott's pi",
    ),
    Mutant(
        "kappa_uniform_chance",
        "cohens_kappa",
        (
            (
                "expected = sum(count_a[label] * count_b[label] for label in count_a) / n**2",
                "expected = 1.0 / len(set(a) | set(b))",
            ),
        ),
        "1/K",
    ),
    # spearman_correlation
    Mutant(
        "spearman_pearson_of_values",
        "spearman_correlation",
        (("ranks.append(less.to(v.dtype) + (equal.to(v.dtype) + 1) / 2)", "ranks.append(v)"),),
        "raw values",
    ),
    Mutant(
        "spearman_ordinal_ranks",
        "spearman_correlation",
        (
            (
                "ranks.append(less.to(v.dtype) + (equal.to(v.dtype) + 1) / 2)",
                "ranks.append(v.argsort(stable=True).argsort().double() + 1)",
            ),
        ),
        "break ties",
    ),
    Mutant(
        "spearman_d_squared_formula",
        "spearman_correlation",
        (
            (
                "return float((rx * ry).sum() / torch.sqrt((rx * rx).sum() * (ry * ry).sum()))",
                "n = x.shape[0]\n"
                "    return float(1 - 6 * ((rx - ry) ** 2).sum() / (n * (n * n - 1)))",
            ),
        ),
        "only without ties",
    ),
    # pairwise_win_rate
    Mutant(
        "win_ties_lost",
        "pairwise_win_rate",
        (
            (
                'return (counts["A"] + 0.5 * counts["tie"])',
                'return (counts["A"] + 0.0 * counts["tie"])',
            ),
        ),
        "counting ties as losses",
    ),
    Mutant(
        "win_ties_dropped",
        "pairwise_win_rate",
        (
            (
                'return (counts["A"] + 0.5 * counts["tie"]) / len(judgments)',
                'return counts["A"] / (counts["A"] + counts["B"])',
            ),
        ),
        "dropping the ties",
    ),
    Mutant(
        "win_ties_won",
        "pairwise_win_rate",
        (
            (
                'return (counts["A"] + 0.5 * counts["tie"])',
                'return (counts["A"] + 1.0 * counts["tie"])',
            ),
        ),
        "counting ties as wins",
    ),
    # promises of the docstrings (cases added with them)
    Mutant(
        "ppl_all_ignored_gives_one",
        "perplexity",
        (("return float(torch.exp(nll))", "return float(torch.exp(nll.nan_to_num(0.0)))"),),
        "every target ignored",
    ),
    Mutant(
        "bleu_smoothed",
        "bleu",
        (
            ("if hyp_len == 0 or min(matches) == 0:", "if hyp_len == 0:"),
            ("math.log(m / t)", "math.log(max(m, 0.1) / t)"),
        ),
        "no smoothing",
    ),
    Mutant(
        "bleu_lowercases",
        "bleu",
        (
            ("hyp = hypothesis.split()", "hyp = hypothesis.lower().split()"),
            (
                "refs = [stream[i].split() for stream in references]",
                "refs = [stream[i].lower().split() for stream in references]",
            ),
        ),
        "case-sensitive",
    ),
    Mutant(
        "bleu_longer_reference_on_ties",
        "bleu",
        (
            (
                "ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]",
                "ref_len -= min((abs(len(r) - len(hyp)), -len(r)) for r in refs)[1]",
            ),
        ),
        "the LONGER",
    ),
    Mutant(
        "bleu_empty_corpus_divides_by_zero",
        "bleu",
        (
            (
                "if hyp_len == 0 or min(matches) == 0:",
                "if min(m / t for m, t in zip(matches, totals, strict=True)) == 0:",
            ),
        ),
        "empty corpus",
    ),
    Mutant(
        "rouge_n_word_characters",
        "rouge_n",
        (
            (
                'hyp = re.findall(r"[a-z0-9]+", hypothesis.lower())\n'
                '    ref = re.findall(r"[a-z0-9]+", reference.lower())\n    hyp_grams',
                'hyp = re.findall(r"\\w+", hypothesis.lower())\n'
                '    ref = re.findall(r"\\w+", reference.lower())\n    hyp_grams',
            ),
        ),
        "underscores",
    ),
    Mutant(
        "rouge_n_no_zero_guard",
        "rouge_n",
        (("precision = overlap / n_hyp if n_hyp else 0.0", "precision = overlap / n_hyp"),),
        "shorter than n",
    ),
    Mutant(
        "rouge_l_word_characters",
        "rouge_l",
        (
            (
                'hyp = re.findall(r"[a-z0-9]+", hypothesis.lower())\n'
                '    ref = re.findall(r"[a-z0-9]+", reference.lower())\n    # table[j]',
                'hyp = re.findall(r"\\w+", hypothesis.lower())\n'
                '    ref = re.findall(r"\\w+", reference.lower())\n    # table[j]',
            ),
        ),
        "underscores",
    ),
    Mutant(
        "rouge_l_no_zero_guard",
        "rouge_l",
        (("precision = lcs / len(hyp) if hyp else 0.0", "precision = lcs / len(hyp)"),),
        "no words",
    ),
    Mutant(
        "em_keeps_underscores",
        "exact_match",
        (('re.sub(r"[^\\w\\s]|_", "", text.lower())', 're.sub(r"[^\\w\\s]", "", text.lower())'),),
        "underscore",
    ),
    Mutant(
        "em_articles_inside_words",
        "exact_match",
        (('re.sub(r"\\b(a|an|the)\\b", " ", text)', 're.sub(r"(a|an|the)", " ", text)'),),
        "whole words",
    ),
    Mutant(
        "em_no_predictions_divides_by_zero",
        "exact_match",
        (
            (
                "return hits / len(predictions) if predictions else 0.0",
                "return hits / len(predictions)",
            ),
        ),
        "no predictions",
    ),
    Mutant(
        "pass_one_when_n_minus_c_equals_k",
        "pass_at_k",
        (("if n - c < k:", "if n - c <= k:"),),
        "n - c = k",
    ),
    Mutant(
        "kappa_no_single_label_guard",
        "cohens_kappa",
        (("    if expected == 1.0:\n        return 1.0\n", ""),),
        "one label",
    ),
    Mutant(
        "spearman_constant_gives_zero",
        "spearman_correlation",
        (
            (
                "return float((rx * ry).sum() / torch.sqrt((rx * rx).sum() * (ry * ry).sum()))",
                "den = torch.sqrt((rx * rx).sum() * (ry * ry).sum())\n"
                "    return float((rx * ry).sum() / den) if den > 0 else 0.0",
            ),
        ),
        "constant",
    ),
    Mutant(
        "bleu_clip_at_summed_references",
        "bleu",
        (("max_ref |= Counter(", "max_ref += Counter("),),
        "one reference",
    ),
)
