"""The chapter 08 reference against independent oracles.

Oracles: examples worked out by hand (in the comments), slow loop versions written
here (perplexity from log-probabilities summed one token at a time, the LCS by brute
force over every subsequence, pass@k by counting every subset of k samples, ranks by
a sort), and, when they are installed, sacrebleu, rouge-score and scipy. None of those
is a dependency of the course: their tests are skipped without them.

Exceptions to the chapter conventions, and why: every function returns a Python number
(the contract says ``-> float``), so none runs on ``meta`` tensors; the string and
label metrics work on Python strings, not tensors.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import pytest
import torch

from solutions.evaluation import (
    bleu,
    cohens_kappa,
    exact_match,
    pairwise_win_rate,
    pass_at_k,
    perplexity,
    rouge_l,
    rouge_n,
    spearman_correlation,
)

# ----------------------------------------------------------------------- perplexity


def _perplexity_loop(logits: torch.Tensor, targets: torch.Tensor, ignore: int) -> float:
    logits, targets = logits.double().reshape(-1, logits.shape[-1]), targets.reshape(-1)
    total, count = 0.0, 0
    for row, t in zip(logits, targets.tolist(), strict=True):
        if t == ignore:
            continue
        total -= float(row[t] - torch.log(torch.exp(row).sum()))
        count += 1
    return math.exp(total / count)


@pytest.mark.parametrize("ignore", [-100, 0])
def test_perplexity_matches_a_loop_over_tokens(ignore: int) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g) * 2
    targets = torch.randint(0, 11, (3, 7), generator=g)
    targets[0, :3] = ignore
    got = perplexity(logits, targets, ignore_index=ignore)
    assert got == pytest.approx(_perplexity_loop(logits, targets, ignore), rel=1e-5)


def test_perplexity_of_uniform_and_perfect_models() -> None:
    # uniform over V tokens: every log-probability is -log V, so perplexity is V
    targets = torch.randint(0, 13, (4, 5))
    assert perplexity(torch.zeros(4, 5, 13), targets) == pytest.approx(13.0, rel=1e-6)
    # (almost) all mass on the target: perplexity 1
    logits = torch.nn.functional.one_hot(targets, 13).float() * 100
    assert perplexity(logits, targets) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_perplexity_in_other_dtypes(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(2, 6, 9, generator=g), torch.randint(0, 9, (2, 6), generator=g)
    expected = _perplexity_loop(logits.to(dtype).double(), targets, -100)
    assert perplexity(logits.to(dtype), targets) == pytest.approx(expected, rel=1e-4)


def test_perplexity_bad_shapes() -> None:
    with pytest.raises(ValueError, match="targets"):
        perplexity(torch.zeros(2, 5, 7), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        perplexity(torch.zeros(2, 5, 7), torch.zeros(2, 5))


# ----------------------------------------------------------------------------- bleu


def test_bleu_textbook_example_by_hand() -> None:
    # hyp (8 words): the the the cat sat on the mat
    # refs: "the cat sat on the mat" (6), "a cat is sitting on the mat today" (8)
    # unigrams: the x4 clipped to 2 (ref 1 has two), cat, sat, on, mat -> p1 = 6/8
    # bigrams: the-the x2 (no match), the-cat, cat-sat, sat-on, on-the, the-mat -> p2 = 5/7
    # c = 8, closest reference length 8 -> BP = exp(1 - 8/8) = 1
    got = bleu(
        ["the the the cat sat on the mat"],
        [["the cat sat on the mat"], ["a cat is sitting on the mat today"]],
        max_n=2,
    )
    assert got == pytest.approx(math.sqrt(6 / 8 * 5 / 7), rel=1e-12)


def test_bleu_corpus_sums_before_the_score() -> None:
    # seg 1: "the cat sat on mat" vs "the cat sat on the mat": p1 5/5, p2 3/4 (on-mat misses)
    # seg 2: "a dog ran" vs "a dog ran away":                  p1 3/3, p2 2/2
    # corpus: p1 = 8/8, p2 = 5/6, c = 8, r = 6 + 4 = 10, BP = exp(1 - 10/8)
    got = bleu(
        ["the cat sat on mat", "a dog ran"], [["the cat sat on the mat", "a dog ran away"]], 2
    )
    assert got == pytest.approx(math.exp(-0.25) * math.sqrt(5 / 6), rel=1e-12)
    # not the mean of the two sentence scores
    one = bleu(["the cat sat on mat"], [["the cat sat on the mat"]], 2)
    two = bleu(["a dog ran"], [["a dog ran away"]], 2)
    assert got != pytest.approx((one + two) / 2)


def test_bleu_brevity_penalty_ties_take_the_shorter_reference() -> None:
    # hyp of 5 words, references of 4 and 6 words: both 1 away, the shorter (4) wins,
    # c = 5 > r = 4 so BP = 1; every unigram of the hypothesis occurs in the second one
    got = bleu(["a b c d e"], [["a b c d"], ["a b c d e f"]], max_n=1)
    assert got == pytest.approx(1.0)
    # one 6-word reference only: BP = exp(1 - 6/5)
    assert bleu(["a b c d e"], [["a b c d e f"]], max_n=1) == pytest.approx(math.exp(-0.2))


def test_bleu_edges() -> None:
    assert bleu(["x y z w"], [["x y z w"]]) == pytest.approx(1.0)
    assert bleu(["a b c d"], [["a b c e"]]) == 0.0  # no 4-gram match, no smoothing
    assert bleu([""], [["a b"]]) == 0.0
    assert bleu(["The cat"], [["the cat"]], max_n=1) == pytest.approx(0.5)  # case-sensitive


def test_bleu_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_n"):
        bleu(["a"], [["a"]], max_n=0)
    with pytest.raises(ValueError, match=r"references\[1\]"):
        bleu(["a", "b"], [["a", "b"], ["a"]])
    with pytest.raises(ValueError, match="references"):
        bleu(["a"], [])


def test_bleu_against_sacrebleu() -> None:
    import sacrebleu  # the dev extra installs every oracle: a missing one fails, never skips

    rng = random.Random(0)
    words = "the cat dog sat on a mat rug and ran".split()
    refs = [
        [" ".join(rng.choices(words, k=rng.randint(8, 14))) for _ in range(20)] for _ in range(2)
    ]
    hyps = [" ".join(r.split()[: rng.randint(6, 14)]) for r in refs[0]]
    ours = bleu(hyps, refs)
    theirs = sacrebleu.corpus_bleu(hyps, refs, tokenize="none", smooth_method="none").score
    assert 100 * ours == pytest.approx(theirs, rel=1e-6)


# ------------------------------------------------------------------- rouge_n, rouge_l


def test_rouge_n_by_hand() -> None:
    # hyp tokens: the cat the cat sat; ref tokens: the cat was sitting
    # unigram overlap: the min(2,1) + cat min(2,1) = 2 -> P 2/5, R 2/4, F1 = 4/9
    got = rouge_n("The cat, the cat sat.", "the cat was sitting")
    assert got == pytest.approx({"precision": 2 / 5, "recall": 2 / 4, "f1": 4 / 9})
    # bigrams: hyp the-cat x2, cat-the, cat-sat; ref the-cat, cat-was, was-sitting
    # overlap 1 -> P 1/4, R 1/3, F1 = 2/7
    got = rouge_n("The cat, the cat sat.", "the cat was sitting", n=2)
    assert got == pytest.approx({"precision": 1 / 4, "recall": 1 / 3, "f1": 2 / 7})


def test_rouge_edges_and_errors() -> None:
    assert rouge_n("", "a b") == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert rouge_n("a", "a b", n=2) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert rouge_l("!!", "") == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    with pytest.raises(ValueError, match="n must"):
        rouge_n("a", "a", n=0)


def test_rouge_l_by_hand() -> None:
    # hyp a b x c d y e, ref a b c d e z: LCS = a b c d e (5) -> P 5/7, R 5/6
    got = rouge_l("a b x c d y e", "A b c, d e z.")
    f1 = 2 * (5 / 7) * (5 / 6) / (5 / 7 + 5 / 6)
    assert got == pytest.approx({"precision": 5 / 7, "recall": 5 / 6, "f1": f1})


def _lcs_brute_force(a: list[str], b: list[str]) -> int:
    best = 0
    for size in range(len(a) + 1):
        for idx in itertools.combinations(range(len(a)), size):
            sub, pos = [a[i] for i in idx], 0
            for w in b:  # is `sub` a subsequence of b?
                if pos < len(sub) and sub[pos] == w:
                    pos += 1
            if pos == len(sub):
                best = max(best, size)
    return best


def test_rouge_l_matches_brute_force_lcs() -> None:
    rng = random.Random(1)
    for _ in range(30):
        a = rng.choices("abcd", k=rng.randint(1, 8))
        b = rng.choices("abcd", k=rng.randint(1, 8))
        lcs = _lcs_brute_force(a, b)
        got = rouge_l(" ".join(a), " ".join(b))
        assert got["precision"] == pytest.approx(lcs / len(a))
        assert got["recall"] == pytest.approx(lcs / len(b))


def test_rouge_against_rouge_score() -> None:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    pairs = [("The cat, the cat sat.", "the cat was sitting"), ("a b x c d y e", "A b c, d e z.")]
    for hyp, ref in pairs:
        s = scorer.score(ref, hyp)
        for key, ours in (
            ("rouge1", rouge_n(hyp, ref)),
            ("rouge2", rouge_n(hyp, ref, 2)),
            ("rougeL", rouge_l(hyp, ref)),
        ):
            assert ours["precision"] == pytest.approx(s[key].precision)
            assert ours["recall"] == pytest.approx(s[key].recall)
            assert ours["f1"] == pytest.approx(s[key].fmeasure)


# ---------------------------------------------------------------------- exact_match


def test_exact_match_normalisation() -> None:
    preds = ["The Eiffel Tower.", "1889", "an apple", "Lyon", "U.S.A"]
    refs = ["eiffel  tower", "1889!", ["pear", "Apple"], "Paris", "usa"]
    assert exact_match(preds, refs) == pytest.approx(4 / 5)
    assert exact_match([], []) == 0.0
    assert exact_match(["theatre"], ["atre"]) == 0.0  # articles only as whole words
    with pytest.raises(ValueError, match="references"):
        exact_match(["a"], ["a", "b"])


# ------------------------------------------------------------------------ pass_at_k


def _pass_at_k_brute_force(n: int, c: int, k: int) -> float:
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 4, 7, 10])
def test_pass_at_k_equals_the_count_over_all_subsets(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_pass_at_k_brute_force(n, c, k), abs=1e-12)


def test_pass_at_k_large_and_errors() -> None:
    expected = 1 - math.comb(190, 10) / math.comb(200, 10)
    assert pass_at_k(200, 10, 10) == pytest.approx(expected, rel=1e-12)
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(5, 3, 3) == 1.0
    for args, name in (((0, 0, 1), "n"), ((5, 6, 1), "c"), ((5, 2, 0), "k"), ((5, 2, 6), "k")):
        with pytest.raises(ValueError, match=f"^{name} must"):
            pass_at_k(*args)


# ------------------------------------------------------------------- cohens_kappa


def test_cohens_kappa_by_hand() -> None:
    # a = 1 1 0 0, b = 1 0 0 0: p_o = 3/4; P_a(1) = 1/2, P_b(1) = 1/4
    # p_e = 1/2 * 1/4 + 1/2 * 3/4 = 1/2 -> kappa = (3/4 - 1/2) / (1 - 1/2) = 1/2
    assert cohens_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)
    # the textbook table: 20 yes-yes, 5 yes-no, 10 no-yes, 15 no-no (50 items)
    # p_o = 35/50 = 0.7; P_a(yes) = 0.5, P_b(yes) = 0.6 -> p_e = 0.3 + 0.2 = 0.5 -> 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohens_kappa(a, b) == pytest.approx(0.4)
    assert cohens_kappa("abca", "abca") == pytest.approx(1.0)
    assert cohens_kappa([1, 1], [1, 1]) == 1.0  # p_e = 1: the convention
    assert cohens_kappa([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="a and b"):
        cohens_kappa([1, 2], [1])


def test_cohens_kappa_against_sklearn() -> None:
    from sklearn import metrics

    rng = random.Random(2)
    a = rng.choices("xyz", k=40)
    b = [x if rng.random() < 0.6 else rng.choice("xyz") for x in a]
    assert cohens_kappa(a, b) == pytest.approx(metrics.cohen_kappa_score(a, b))


# ----------------------------------------------------------- spearman_correlation


def _average_ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for m in range(i, j + 1):
            ranks[order[m]] = (i + j) / 2 + 1  # positions i..j hold ranks i+1..j+1
        i = j + 1
    return ranks


def _pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy)


def test_spearman_by_hand() -> None:
    # x = 2 5 5 9 -> ranks 1 2.5 2.5 4; y ranks 1 2 3 4
    # centred: (-1.5, 0, 0, 1.5) and (-1.5, -0.5, 0.5, 1.5): Σxy = 4.5, Σx² = 4.5, Σy² = 5
    # rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    assert spearman_correlation([2, 5, 5, 9], [1, 2, 3, 4]) == pytest.approx(math.sqrt(0.9))
    # any increasing map keeps rho at 1, a decreasing one gives -1
    x = torch.randn(20, generator=torch.Generator().manual_seed(3))
    assert spearman_correlation(x, x.exp()) == pytest.approx(1.0)
    assert spearman_correlation(x, -(x**3)) == pytest.approx(-1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_spearman_matches_pearson_of_sorted_ranks(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randint(0, 6, (30,), generator=g).to(dtype)  # many ties
    y = (x + torch.randint(-2, 3, (30,), generator=g)).to(dtype)
    expected = _pearson(_average_ranks(x.tolist()), _average_ranks(y.tolist()))
    assert spearman_correlation(x, y) == pytest.approx(expected, rel=1e-9)


def test_spearman_against_scipy() -> None:
    from scipy import stats

    rng = random.Random(5)
    x, y = [rng.randint(1, 5) for _ in range(25)], [rng.random() for _ in range(25)]
    assert spearman_correlation(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_spearman_errors() -> None:
    with pytest.raises(ValueError, match="x and y"):
        spearman_correlation([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="x and y"):
        spearman_correlation([1.0], [2.0])
    with pytest.raises(ValueError, match="x and y"):
        spearman_correlation(torch.zeros(2, 2), torch.zeros(2, 2))


# ------------------------------------------------------------------ pairwise_win_rate


def test_pairwise_win_rate() -> None:
    # 3 wins of A, 2 ties, 1 win of B: (3 + 0.5 * 2) / 6 = 2/3
    assert pairwise_win_rate(["A", "tie", "B", "A", "tie", "A"]) == pytest.approx(2 / 3)
    assert pairwise_win_rate(["tie"] * 4) == 0.5
    assert pairwise_win_rate(("B",)) == 0.0
    with pytest.raises(ValueError, match="judgments"):
        pairwise_win_rate([])
    with pytest.raises(ValueError, match="judgments"):
        pairwise_win_rate(["A", "a"])


# ------------------------------------------------------------ the chapter's labels


def test_shipped_judgments_are_well_formed() -> None:
    path = Path(__file__).resolve().parent.parent / "course" / "data" / "08_judgments.json"
    items = json.loads(path.read_text(encoding="utf-8"))["items"]
    assert len(items) >= 12
    for it in items:
        assert it["human_preference"] in ("A", "B", "tie")
        assert it["human_score_a"] in range(1, 6) and it["human_score_b"] in range(1, 6)
        if it["human_preference"] == "A":
            assert it["human_score_a"] > it["human_score_b"], it
        if it["human_preference"] == "B":
            assert it["human_score_b"] > it["human_score_a"], it
        assert all(it[k].strip() for k in ("question", "reference", "answer_a", "answer_b"))
