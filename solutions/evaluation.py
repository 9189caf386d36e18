"""Chapter 08: evaluating language models, the reference implementation.

How good is a model? This module collects the numbers people report:

1. ``perplexity``: exp of the mean negative log-likelihood of held-out text.
2. Overlap with references: ``bleu`` (corpus BLEU, precision-flavoured, from machine
   translation), ``rouge_n`` and ``rouge_l`` (recall-flavoured, from summarisation).
3. Task success: ``exact_match`` (normalised string equality) and ``pass_at_k`` (the
   unbiased estimator of the chance that one of k samples passes the unit tests).
4. Calibrating an automatic judge (an "autorater") against human labels:
   ``cohens_kappa`` (agreement beyond chance), ``spearman_correlation`` (agreement of
   rankings) and ``pairwise_win_rate`` (how often system A beats system B).

Conventions: ``perplexity`` and ``spearman_correlation`` compute with tensors on the
device of their inputs. The string metrics (BLEU, ROUGE, exact match) and the label
statistics work on Python strings and labels: counting n-grams of words is not a tensor
operation. Every function returns a Python float (or a dict of floats), so none of them
runs on ``meta`` tensors: the value is the answer. Bad arguments raise ``ValueError``
naming the argument. Each public function only uses ``math``, ``re``, ``Counter``,
``torch`` and ``F``, so it can be copied on its own into a notebook.
"""

import math
import re
from collections import Counter

import torch
import torch.nn.functional as F


def perplexity(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> float:
    """Perplexity: exp of the mean negative log-likelihood of the targets.

    Args:
        logits: shape (..., V); ``logits[..., t, :]`` is the model's prediction for
            ``targets[..., t]`` (already aligned: shift before calling).
        targets: integer ids, shape (...) = ``logits.shape[:-1]``.
        ignore_index: targets equal to it (padding, the prompt) are left out of the
            mean, numerator and denominator alike.

    Returns:
        exp(-(1/N) Σ log softmax(logits)[target]) over the N non-ignored positions, a
        float >= 1 (nan when every target is ignored).
    """
    if logits.dim() < 1 or targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets must have shape logits.shape[:-1] = {tuple(logits.shape[:-1])}, "
            f"got {tuple(targets.shape)}"
        )
    if targets.is_floating_point():
        raise ValueError(f"targets must hold integer ids, got dtype {targets.dtype}")
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).to(torch.promote_types(logits.dtype, torch.float32)),
        targets.reshape(-1).long(),  # (N,)
        ignore_index=ignore_index,
        reduction="mean",
    )  # mean over non-ignored positions
    return float(torch.exp(nll))


def bleu(hypotheses: list[str], references: list[list[str]], max_n: int = 4) -> float:
    """Corpus BLEU (Papineni et al., 2002) in [0, 1], without smoothing.

    Tokens are whitespace-separated words (``str.split()``, case-sensitive). For each n
    in 1..max_n the modified precision p_n sums, over the whole corpus, each hypothesis
    n-gram's count clipped at its largest count in any one reference of that hypothesis,
    divided by the total number of hypothesis n-grams. The brevity penalty compares the
    total hypothesis length c with r, the sum over hypotheses of the reference length
    closest to the hypothesis length (ties: the shorter reference):
    BP = 1 if c > r else exp(1 - r / c). BLEU = BP · exp((1/max_n) Σ_n log p_n), and 0
    when any p_n is 0 (or the corpus is empty).

    Args:
        hypotheses: the system outputs, one string per segment (length S).
        references: ``references[j][i]`` is the j-th reference of hypothesis i (the layout
            of sacrebleu): a list of R reference streams, each of length S.
        max_n: the longest n-gram, >= 1.

    Returns:
        The BLEU score as a float in [0, 1] (multiply by 100 for the usual scale).
    """
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}")
    if len(references) == 0:
        raise ValueError("references must hold at least one reference stream")
    for j, stream in enumerate(references):
        if len(stream) != len(hypotheses):
            raise ValueError(
                f"references[{j}] must have one reference per hypothesis "
                f"({len(hypotheses)}), got {len(stream)}"
            )
    matches = [0] * max_n  # clipped n-gram matches, per n
    totals = [0] * max_n  # hypothesis n-grams, per n
    hyp_len, ref_len = 0, 0
    for i, hypothesis in enumerate(hypotheses):
        hyp = hypothesis.split()
        refs = [stream[i].split() for stream in references]
        hyp_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]  # closest, shorter
        for n in range(1, max_n + 1):
            counts = Counter(tuple(hyp[t : t + n]) for t in range(len(hyp) - n + 1))
            max_ref = Counter()  # the largest count of each n-gram in any one reference
            for r in refs:
                max_ref |= Counter(tuple(r[t : t + n]) for t in range(len(r) - n + 1))
            matches[n - 1] += sum(min(c, max_ref[g]) for g, c in counts.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / max_n
    brevity = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return brevity * math.exp(log_precision)


def rouge_n(hypothesis: str, reference: str, n: int = 1) -> dict[str, float]:
    """ROUGE-N (Lin, 2004): n-gram overlap between one hypothesis and one reference.

    Tokens: the text lowercased, every run of characters other than [a-z0-9] is a
    separator (so punctuation disappears), no stemming. The overlap counts each n-gram
    min(count in hypothesis, count in reference) times.

    Args:
        hypothesis: the system output.
        reference: the reference text.
        n: the n-gram order, >= 1.

    Returns:
        ``{"precision": overlap / hypothesis n-grams, "recall": overlap / reference
        n-grams, "f1": 2PR / (P + R)}``, each 0.0 where its denominator is 0.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    hyp = re.findall(r"[a-z0-9]+", hypothesis.lower())
    ref = re.findall(r"[a-z0-9]+", reference.lower())
    hyp_grams = Counter(tuple(hyp[t : t + n]) for t in range(len(hyp) - n + 1))
    ref_grams = Counter(tuple(ref[t : t + n]) for t in range(len(ref) - n + 1))
    overlap = sum((hyp_grams & ref_grams).values())  # clipped counts
    n_hyp, n_ref = sum(hyp_grams.values()), sum(ref_grams.values())
    precision = overlap / n_hyp if n_hyp else 0.0
    recall = overlap / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def rouge_l(hypothesis: str, reference: str) -> dict[str, float]:
    """ROUGE-L: the longest common subsequence (LCS) of the two token lists.

    Tokens as in ``rouge_n`` (lowercase, runs of [a-z0-9]). A subsequence keeps the
    order of the tokens but need not be contiguous.

    Args:
        hypothesis: the system output.
        reference: the reference text.

    Returns:
        ``{"precision": LCS / len(hypothesis), "recall": LCS / len(reference),
        "f1": 2PR / (P + R)}``, each 0.0 where its denominator is 0.
    """
    hyp = re.findall(r"[a-z0-9]+", hypothesis.lower())
    ref = re.findall(r"[a-z0-9]+", reference.lower())
    # table[j] = LCS of the hypothesis prefix seen so far and ref[:j]
    table = [0] * (len(ref) + 1)
    for word in hyp:
        previous = table[:]
        for j in range(1, len(ref) + 1):
            if word == ref[j - 1]:
                table[j] = previous[j - 1] + 1
            else:
                table[j] = max(previous[j], table[j - 1])
    lcs = table[-1]
    precision = lcs / len(hyp) if hyp else 0.0
    recall = lcs / len(ref) if ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def exact_match(predictions: list[str], references: list[str] | list[list[str]]) -> float:
    """The fraction of predictions equal to a reference after SQuAD-style normalisation.

    Normalisation (of both sides): lowercase; remove punctuation (every character that
    is not a letter, a digit or whitespace); remove the articles "a", "an", "the" as
    whole words; collapse runs of whitespace to one space and strip the ends. So
    "The Eiffel Tower." matches "eiffel  tower".

    Args:
        predictions: the model's answers, length S.
        references: length S; each entry is one reference string or a list of accepted
            answers (a prediction counts when it matches any of them).

    Returns:
        A float in [0, 1]: matches / S (0.0 for S = 0).
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"references must have one entry per prediction ({len(predictions)}), "
            f"got {len(references)}"
        )
    hits = 0
    for prediction, accepted in zip(predictions, references, strict=True):
        accepted = [accepted] if isinstance(accepted, str) else list(accepted)
        normalised = []
        for text in [prediction, *accepted]:
            text = re.sub(r"[^\w\s]|_", "", text.lower())  # punctuation
            text = re.sub(r"\b(a|an|the)\b", " ", text)  # articles
            normalised.append(" ".join(text.split()))  # whitespace
        hits += normalised[0] in normalised[1:]
    return hits / len(predictions) if predictions else 0.0


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k).

    Draw n samples per problem, count the c that pass the tests; the chance that a random
    subset of k of the n samples holds at least one correct one is 1 - C(n-c, k)/C(n, k).
    Computed as 1 - Π_{i=n-c+1}^{n} (1 - k/i), which never forms huge binomials.

    Args:
        n: samples drawn, >= 1.
        c: samples that passed, 0 <= c <= n.
        k: the budget, 1 <= k <= n.

    Returns:
        A float in [0, 1]; 1.0 when n - c < k (every subset of k holds a correct one).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c must be in [0, n] = [0, {n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n] = [1, {n}], got {k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def cohens_kappa(a: list, b: list) -> float:
    """Cohen's kappa: the agreement of two raters beyond what chance would give.

    kappa = (p_o - p_e) / (1 - p_e), p_o the fraction of items on which the raters agree,
    p_e = Σ_label P_a(label) P_b(label) the agreement expected if each rater drew labels
    independently from their own marginal frequencies.

    Args:
        a: the first rater's labels (any hashable values: ints, strings), length N >= 1.
        b: the second rater's labels, length N.

    Returns:
        A float in [-1, 1]: 1 perfect agreement, 0 chance level. When p_e = 1 (both
        raters always give the same single label) the result is 1.0.
    """
    a, b = list(a), list(b)
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"a and b must be non-empty and of equal length, got {len(a)}, {len(b)}")
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[label] * count_b[label] for label in count_a) / n**2
    if expected == 1.0:
        return 1.0
    return (observed - expected) / (1.0 - expected)


def spearman_correlation(x: torch.Tensor | list[float], y: torch.Tensor | list[float]) -> float:
    """Spearman's rank correlation: the Pearson correlation of the ranks of x and y.

    Ranks start at 1; tied values all get the average of the ranks they span (values
    2, 5, 5, 9 have ranks 1, 2.5, 2.5, 4). Computed in float64 on the device of x.

    Args:
        x: numbers, shape (N,), N >= 2 (a 1-D tensor or a list).
        y: numbers, shape (N,).

    Returns:
        A float in [-1, 1]; nan when x or y is constant.
    """
    x = torch.as_tensor(x).to(torch.float64)  # (N,)
    y = torch.as_tensor(y).to(device=x.device, dtype=torch.float64)  # (N,)
    if x.dim() != 1 or x.shape != y.shape or x.shape[0] < 2:
        raise ValueError(
            f"x and y must be 1-D of the same length >= 2, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    ranks = []
    for v in (x, y):
        less = (v[None, :] < v[:, None]).sum(dim=1)  # (N,) values strictly below v_i
        equal = (v[None, :] == v[:, None]).sum(dim=1)  # (N,) values tied with v_i, itself too
        ranks.append(less.to(v.dtype) + (equal.to(v.dtype) + 1) / 2)  # (N,) average ranks
    rx, ry = ranks[0] - ranks[0].mean(), ranks[1] - ranks[1].mean()  # (N,) centred ranks
    return float((rx * ry).sum() / torch.sqrt((rx * rx).sum() * (ry * ry).sum()))


def pairwise_win_rate(judgments: list[str]) -> float:
    """The win rate of system A over system B from pairwise judgments, ties counting half.

    Args:
        judgments: one verdict per compared pair, each exactly "A" (A's output is better),
            "B" (B's output is better) or "tie"; at least one.

    Returns:
        (#"A" + 0.5 · #"tie") / len(judgments), a float in [0, 1]; 0.5 means no
        preference.
    """
    judgments = list(judgments)
    if len(judgments) == 0:
        raise ValueError("judgments must hold at least one verdict")
    unknown = sorted({str(j) for j in judgments} - {"A", "B", "tie"})
    if unknown:
        raise ValueError(f'judgments must be "A", "B" or "tie", got {unknown}')
    counts = Counter(judgments)
    return (counts["A"] + 0.5 * counts["tie"]) / len(judgments)
