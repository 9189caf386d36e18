"""Grading spec of chapter 08 (evaluation): inputs, tolerances and the usual mistakes.

Each exercise names the function of solutions/evaluation.py it grades, makes seeded
inputs (random sentences over a small vocabulary, random logits, random labels) and
lists wrong implementations students commonly write. Hidden from students: it imports
the reference.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

import torch

import solutions.evaluation as ref
from autograder.core.cases import call_case, randn
from autograder.core.spec import (
    ALL_CASES,
    Case,
    ChapterSpec,
    Exercise,
    Mistake,
    Promise,
    Tolerance,
)

EXACT = Tolerance(atol=1e-9, rtol=1e-9)
# the call driver, a nan answer as the text "nan" (a float nan never equals the expected nan)
NAN_AS_TEXT = "autograder.public.evaluation:call_nan_as_text"
WORDS = "the cat dog sat on a mat rug and ran to big red".split()


def _randint(g: torch.Generator, high: int) -> int:
    return int(torch.randint(high, (1,), generator=g))


def _sentence(g: torch.Generator, length: int) -> list[str]:
    return [WORDS[_randint(g, len(WORDS))] for _ in range(length)]


def _perturb(g: torch.Generator, words: list[str], edits: int) -> list[str]:
    """Substitute, delete or insert ``edits`` words; the first four words stay intact."""
    words = list(words)
    for _ in range(edits):
        kind, pos = _randint(g, 3), 4 + _randint(g, max(len(words) - 4, 1))
        pos = min(pos, len(words))
        if kind == 0 and pos < len(words):
            words[pos] = WORDS[_randint(g, len(WORDS))]
        elif kind == 1 and pos < len(words) and len(words) > 5:
            del words[pos]
        else:
            words.insert(pos, WORDS[_randint(g, len(WORDS))])
    return words


# ----------------------------------------------------------------------- perplexity


def _ppl_variant(kind: str) -> Callable:
    def perplexity(logits, targets, ignore_index=-100):
        if kind == "index_default":
            ignore_index = -100
        if kind == "all_ignored_one" and bool((targets == ignore_index).all()):
            return 1.0
        logp = logits.double().log_softmax(-1)  # (..., V)
        keep = targets != ignore_index
        safe = targets.masked_fill(~keep, 0).long()
        nll = -logp.gather(-1, safe[..., None])[..., 0] * keep  # (...)
        if kind == "sum":
            return math.exp(float(nll.sum()))
        if kind == "count_ignored":
            return math.exp(float(nll.sum() / nll.numel()))
        mean = float(nll.sum() / keep.sum())
        if kind == "no_exp":
            return mean
        if kind == "base2":
            return 2.0**mean
        return math.exp(mean)

    return perplexity


def _ppl_cases(g: torch.Generator) -> list[Case]:
    t1 = torch.randint(0, 10, (2, 6), generator=g)
    t1[0, :2] = -100  # a prompt that is not scored
    t1[1, 4:] = -100  # padding
    t3 = torch.randint(0, 7, (3, 5), generator=g)
    t3[:, 0] = 0
    return [
        call_case(
            "one sequence", randn(g, 8, 12, scale=2.0), torch.randint(0, 12, (8,), generator=g)
        ),
        call_case("batch with ignored positions", randn(g, 2, 6, 10, scale=2.0), t1),
        call_case("ignore_index=0", randn(g, 3, 5, 7), t3, ignore_index=0),
        call_case(
            "every target ignored: nan",
            randn(g, 2, 3, 5),
            torch.full((2, 3), -100, dtype=torch.long),
        ),
    ]


PERPLEXITY = Exercise(
    name="perplexity",
    points=2,
    summary="exp of the mean negative log-likelihood over non-ignored targets",
    make_cases=_ppl_cases,
    reference=lambda: ref.perplexity,
    tolerance=Tolerance(atol=1e-6, rtol=1e-4),
    mistakes=(
        Mistake(
            "all_ignored_one",
            "your answer matches 1.0 when every target is ignored: with no scored position "
            "the mean is 0 / 0, and perplexity is nan (what F.cross_entropy's mean gives).",
            _ppl_variant("all_ignored_one"),
        ),
        Mistake(
            "sum",
            "your answer matches exp of the SUM of the negative log-likelihoods: "
            "perplexity is exp of their MEAN over the scored positions.",
            _ppl_variant("sum"),
        ),
        Mistake(
            "count_ignored",
            "your answer matches dividing by every position, ignored ones included: "
            "leave positions whose target equals ignore_index out of the count too.",
            _ppl_variant("count_ignored"),
        ),
        Mistake(
            "no_exp",
            "your answer matches the mean negative log-likelihood itself (the "
            "cross-entropy): perplexity is its exponential, exp(mean NLL).",
            _ppl_variant("no_exp"),
        ),
        Mistake(
            "base2",
            "your answer matches 2 ** (mean NLL): the log-likelihoods are natural logs, "
            "so perplexity is exp(mean NLL).",
            _ppl_variant("base2"),
        ),
        Mistake(
            "index_default",
            "your answer matches ignoring -100 even when another ignore_index is "
            "given: use the ignore_index argument.",
            _ppl_variant("index_default"),
        ),
    ),
    driver=NAN_AS_TEXT,
    dtypes=("float64",),
    promises=(
        Promise("Perplexity: exp of the mean negative log-likelihood of the targets.", ALL_CASES),
        Promise(
            "logits: shape (..., V); ``logits[..., t, :]`` is the model's prediction for "
            "``targets[..., t]`` (already aligned: shift before calling).",
            ("one sequence", "batch with ignored positions", "ignore_index=0"),
        ),
        Promise("targets: integer ids, shape (...) = ``logits.shape[:-1]``.", ALL_CASES),
        Promise(
            "ignore_index: targets equal to it (padding, the prompt) are left out of the mean, "
            "numerator and denominator alike.",
            ("batch with ignored positions", "ignore_index=0", "every target ignored: nan"),
        ),
        Promise(
            "over the N non-ignored positions, a float >= 1",
            ("one sequence", "batch with ignored positions", "ignore_index=0"),
        ),
        Promise("(nan when every target is ignored)", ("every target ignored: nan",)),
    ),
)

# ----------------------------------------------------------------------------- bleu


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[t : t + n]) for t in range(len(words) - n + 1))


def _bleu_variant(kind: str) -> Callable:
    def bleu(hypotheses, references, max_n=4):
        if kind == "sentence_average":
            if not hypotheses:
                return 0.0
            scores = [
                ref.bleu([h], [[stream[i]] for stream in references], max_n)
                for i, h in enumerate(hypotheses)
            ]
            return sum(scores) / len(scores)
        matches, totals = [0] * max_n, [0] * max_n
        c = r = 0
        for i, h in enumerate(hypotheses):
            hyp = h.split()
            refs = [stream[i].split() for stream in references]
            c += len(hyp)
            if kind == "longest_ref":
                r += max(len(x) for x in refs)
            elif kind == "longer_on_ties":
                r -= min((abs(len(x) - len(hyp)), -len(x)) for x in refs)[1]
            elif kind == "first_ref":
                r += len(refs[0])
            else:
                r += min((abs(len(x) - len(hyp)), len(x)) for x in refs)[1]
            for n in range(1, max_n + 1):
                counts = _ngrams(hyp, n)
                best = Counter()
                for x in refs:
                    if kind == "summed_references":
                        best += _ngrams(x, n)
                    else:
                        best |= _ngrams(x, n)
                if kind == "unclipped":
                    matches[n - 1] += sum(cnt for gram, cnt in counts.items() if best[gram])
                else:
                    matches[n - 1] += sum(min(cnt, best[gram]) for gram, cnt in counts.items())
                totals[n - 1] += max(len(hyp) - n + 1, 0)
        if kind == "smoothed" and c > 0:
            matches = [max(m, 0.1) for m in matches]
        if c == 0 or min(matches) == 0:
            return 0.0
        precisions = [m / t for m, t in zip(matches, totals, strict=True)]
        if kind == "arithmetic":
            mean = sum(precisions) / max_n
        else:
            mean = math.exp(sum(math.log(p) for p in precisions) / max_n)
        bp = 1.0 if (c > r or kind == "no_bp") else math.exp(1 - r / c)
        return bp * mean

    return bleu


def _bleu_cases(g: torch.Generator) -> list[Case]:
    cases = []
    # one reference per hypothesis; hypotheses a little shorter (the brevity penalty acts)
    refs = [_sentence(g, 10 + _randint(g, 5)) for _ in range(4)]
    hyps = [_perturb(g, r, 2)[:-1] for r in refs]
    cases.append(
        call_case(
            "4 segments, 1 reference", [" ".join(h) for h in hyps], [[" ".join(r) for r in refs]]
        )
    )
    # two references of different lengths, repeated words (clipping matters)
    refs_a = [_sentence(g, 9 + _randint(g, 4)) for _ in range(3)]
    refs_b = [_perturb(g, r, 3) + _sentence(g, 3) for r in refs_a]
    hyps = [r[:6] + [r[0]] * 3 + r[6:8] for r in refs_a]
    cases.append(
        call_case(
            "3 segments, 2 references, repeated words",
            [" ".join(h) for h in hyps],
            [[" ".join(r) for r in refs_b], [" ".join(r) for r in refs_a]],
        )
    )
    # bigram BLEU, a short hypothesis against a short and a long reference
    base = _sentence(g, 8)
    cases.append(
        call_case(
            "max_n=2, short hypothesis",
            [" ".join(base[:5]), " ".join(_perturb(g, base, 2))],
            [
                [" ".join(base[:7]), " ".join(base)],
                [" ".join(base + _sentence(g, 6)), " ".join(base)],
            ],
            max_n=2,
        )
    )
    # four references: the closest (12 words) is neither the first (8) nor the longest (16)
    base = _sentence(g, 16)
    hyp = base[:11]
    hyp[7] = WORDS[_randint(g, len(WORDS))]
    cases.append(
        call_case(
            "4 references, the closest is neither the first nor the longest",
            [" ".join(hyp)],
            [[" ".join(base[:8])], [" ".join(base[:5])], [" ".join(base[:12])], [" ".join(base)]],
        )
    )
    # the hand example of the reference tests
    cases.append(
        call_case(
            "the textbook example",
            ["the the the cat sat on the mat"],
            [["the cat sat on the mat"], ["a cat is sitting on the mat today"]],
            max_n=2,
        )
    )
    # trigrams match but no 4-gram does: BLEU-4 is 0 (no smoothing)
    cases.append(
        call_case(
            "a zero 4-gram precision: 0 (no smoothing)",
            ["the cat sat on the mat"],
            [["the cat sat and on the mat"]],
        )
    )
    cases.append(
        call_case(
            "case-sensitive words, extra spaces",
            ["The cat  sat on the Mat", "a dog ran to the red rug"],
            [["the cat sat on the mat", "A dog ran to the red rug"]],
            max_n=2,
        )
    )
    # references of 8 and 12 words, both 2 words from the hypothesis's 10: r is the shorter
    base = _sentence(g, 12)
    cases.append(
        call_case(
            "two references equally close: the shorter counts",
            [" ".join(base[:10])],
            [[" ".join(base[:8])], [" ".join(base)]],
        )
    )
    cases.append(call_case("empty corpus: 0", [], [[]]))
    return cases


BLEU = Exercise(
    name="bleu",
    points=3,
    summary="corpus BLEU: clipped n-gram precisions, geometric mean, brevity penalty",
    make_cases=_bleu_cases,
    reference=lambda: ref.bleu,
    tolerance=Tolerance(atol=1e-7, rtol=1e-6),
    mistakes=(
        Mistake(
            "smoothed",
            "your answer matches a smoothed BLEU: without smoothing, BLEU is 0 as soon as one "
            "n-gram precision p_n is 0 (log 0).",
            _bleu_variant("smoothed"),
        ),
        Mistake(
            "longer_on_ties",
            "your answer matches taking the LONGER of two references equally close to the "
            "hypothesis length: on ties the shorter reference length counts in r.",
            _bleu_variant("longer_on_ties"),
        ),
        Mistake(
            "summed_references",
            "your answer matches clipping at the SUM of an n-gram's counts over the references: "
            "clip at its largest count in any one reference (Counter | Counter, not +).",
            _bleu_variant("summed_references"),
        ),
        Mistake(
            "unclipped",
            "your answer matches n-gram precisions without clipping: count each "
            "hypothesis n-gram at most as often as it occurs in one reference "
            "(min(count, max reference count)), or 'the the the' scores perfectly.",
            _bleu_variant("unclipped"),
        ),
        Mistake(
            "longest_ref",
            "your answer matches a brevity penalty against the longest reference: "
            "use the reference length closest to the hypothesis length (ties: the shorter).",
            _bleu_variant("longest_ref"),
        ),
        Mistake(
            "first_ref",
            "your answer matches a brevity penalty against the first reference only: "
            "use the reference length closest to the hypothesis length (ties: the shorter).",
            _bleu_variant("first_ref"),
        ),
        Mistake(
            "no_bp",
            "your answer matches BLEU without the brevity penalty: multiply by "
            "exp(1 - r/c) when the hypotheses are not longer than the references (c <= r).",
            _bleu_variant("no_bp"),
        ),
        Mistake(
            "arithmetic",
            "your answer matches the arithmetic mean of the n-gram precisions: BLEU "
            "takes their geometric mean, exp((1/max_n) Σ log p_n).",
            _bleu_variant("arithmetic"),
        ),
        Mistake(
            "sentence_average",
            "your answer matches the average of sentence-level BLEU scores: corpus "
            "BLEU sums matches, n-gram counts and lengths over all segments first, then "
            "computes one score.",
            _bleu_variant("sentence_average"),
        ),
    ),
    promises=(
        Promise("Corpus BLEU (Papineni et al., 2002) in [0, 1]", ALL_CASES),
        Promise("without smoothing.", ("a zero 4-gram precision: 0 (no smoothing)",)),
        Promise(
            "Tokens are whitespace-separated words (``str.split()``, case-sensitive).",
            ("case-sensitive words, extra spaces",),
        ),
        Promise(
            "For each n in 1..max_n the modified precision p_n sums, over the whole corpus, "
            "each hypothesis n-gram's count clipped at its largest count in any one reference "
            "of that hypothesis, divided by the total number of hypothesis n-grams.",
            (
                "4 segments, 1 reference",
                "3 segments, 2 references, repeated words",
                "the textbook example",
            ),
        ),
        Promise(
            "The brevity penalty compares the total hypothesis length c with r, the sum over "
            "hypotheses of the reference length closest to the hypothesis length",
            ("4 references, the closest is neither the first nor the longest",),
        ),
        Promise(
            "(ties: the shorter reference)", ("two references equally close: the shorter counts",)
        ),
        Promise(
            "BP = 1 if c > r else exp(1 - r / c).",
            ("4 segments, 1 reference", "two references equally close: the shorter counts"),
        ),
        Promise(
            "BLEU = BP · exp((1/max_n) Σ_n log p_n)",
            ("4 segments, 1 reference", "3 segments, 2 references, repeated words"),
        ),
        Promise("and 0 when any p_n is 0", ("a zero 4-gram precision: 0 (no smoothing)",)),
        Promise("(or the corpus is empty)", ("empty corpus: 0",)),
        Promise("hypotheses: the system outputs, one string per segment (length S).", ALL_CASES),
        Promise(
            "references: ``references[j][i]`` is the j-th reference of hypothesis i (the "
            "layout of sacrebleu): a list of R reference streams, each of length S.",
            ("3 segments, 2 references, repeated words", "max_n=2, short hypothesis"),
        ),
        Promise(
            "max_n: the longest n-gram, >= 1.",
            ("max_n=2, short hypothesis", "4 segments, 1 reference"),
        ),
        Promise(
            "The BLEU score as a float in [0, 1] (multiply by 100 for the usual scale).",
            ALL_CASES,
        ),
    ),
)

# ------------------------------------------------------------------ rouge_n, rouge_l


def _tokens(text: str, kind: str) -> list[str]:
    if kind == "split":
        return text.split()
    if kind == "no_lower":
        return re.findall(r"[A-Za-z0-9]+", text)
    return re.findall(r"[a-z0-9]+", text.lower())


def _prf(overlap: int, n_hyp: int, n_ref: int, swapped: bool) -> dict[str, float]:
    p = overlap / n_hyp if n_hyp else 0.0
    r = overlap / n_ref if n_ref else 0.0
    if swapped:
        p, r = r, p
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f1}


def _rouge_n_variant(kind: str) -> Callable:
    def rouge_n(hypothesis, reference, n=1):
        hyp, refw = _tokens(hypothesis, kind), _tokens(reference, kind)
        h, r = _ngrams(hyp, n), _ngrams(refw, n)
        if kind == "unclipped":
            overlap = sum(c for gram, c in h.items() if gram in r)
        else:
            overlap = sum((h & r).values())
        return _prf(overlap, sum(h.values()), sum(r.values()), kind == "swapped")

    return rouge_n


def _rouge_l_variant(kind: str) -> Callable:
    def rouge_l(hypothesis, reference):
        hyp, refw = _tokens(hypothesis, kind), _tokens(reference, kind)
        best = 0
        table = [[0] * (len(refw) + 1) for _ in range(len(hyp) + 1)]
        for i in range(1, len(hyp) + 1):
            for j in range(1, len(refw) + 1):
                if hyp[i - 1] == refw[j - 1]:
                    table[i][j] = table[i - 1][j - 1] + 1
                elif kind != "substring":
                    table[i][j] = max(table[i - 1][j], table[i][j - 1])
                best = max(best, table[i][j])
        return _prf(best, len(hyp), len(refw), kind == "swapped")

    return rouge_l


def _rouge_pairs(g: torch.Generator) -> list[tuple[str, str]]:
    pairs = []
    for _ in range(2):
        r = _sentence(g, 9 + _randint(g, 4))
        h = _perturb(g, r, 3)
        h[0] = h[0].capitalize()
        pairs.append((" ".join(h) + ".", " ".join(r[:3]) + ", " + " ".join(r[3:]) + "!"))
    pairs.append(("The cat sat on the mat; the cat sat.", "the cat was sitting on the mat"))
    return pairs


def _rouge_n_cases(g: torch.Generator) -> list[Case]:
    pairs = _rouge_pairs(g)
    return [
        call_case("unigrams", *pairs[0]),
        call_case("bigrams", *pairs[1], n=2),
        call_case("repeated words, unigrams", *pairs[2]),
        call_case("repeated words, bigrams", *pairs[2], n=2),
        call_case("trigrams", *pairs[0], n=3),
        call_case(
            "digits, underscores and accents",
            "Route_66 runs 2 km past the café; cats run.",
            "route 66 runs 2km past the cafe, the cat runs",
        ),
        call_case("both shorter than n: every value 0.0", "The cat.", "a dog!", n=3),
    ]


_SPLIT_HINT = (
    "your answer matches splitting on whitespace only: lowercase the text and treat "
    "every run of characters other than [a-z0-9] as a separator (re.findall(r'[a-z0-9]+', "
    "text.lower())), so 'Cat,' and 'cat' are the same token."
)
_NO_LOWER_HINT = (
    "your answer matches tokens that keep their capitals: lowercase the text before "
    "splitting, so 'The' and 'the' are the same token."
)
_SWAP_HINT = (
    "your answer matches precision and recall swapped: precision divides the overlap "
    "by the HYPOTHESIS count, recall by the REFERENCE count."
)

ROUGE_N = Exercise(
    name="rouge_n",
    points=2,
    summary="clipped n-gram overlap: precision, recall and F1",
    make_cases=_rouge_n_cases,
    reference=lambda: ref.rouge_n,
    tolerance=EXACT,
    mistakes=(
        Mistake(
            "unclipped",
            "your answer matches an overlap without clipping: an n-gram that occurs "
            "3 times in the hypothesis and once in the reference counts once "
            "(min of the two counts; Counter & Counter).",
            _rouge_n_variant("unclipped"),
        ),
        Mistake("swapped", _SWAP_HINT, _rouge_n_variant("swapped")),
        Mistake("split", _SPLIT_HINT, _rouge_n_variant("split")),
        Mistake("no_lower", _NO_LOWER_HINT, _rouge_n_variant("no_lower")),
    ),
    promises=(
        Promise(
            "ROUGE-N (Lin, 2004): n-gram overlap between one hypothesis and one reference.",
            ALL_CASES,
        ),
        Promise(
            "Tokens: the text lowercased, every run of characters other than [a-z0-9] is a "
            "separator (so punctuation disappears), no stemming.",
            ("unigrams", "repeated words, unigrams", "digits, underscores and accents"),
        ),
        Promise(
            "The overlap counts each n-gram min(count in hypothesis, count in reference) times.",
            ("repeated words, unigrams", "repeated words, bigrams"),
        ),
        Promise("hypothesis: the system output.", ALL_CASES),
        Promise("reference: the reference text.", ALL_CASES),
        Promise("n: the n-gram order, >= 1.", ("unigrams", "bigrams", "trigrams")),
        Promise(
            '``{"precision": overlap / hypothesis n-grams, "recall": overlap / reference '
            'n-grams, "f1": 2PR / (P + R)}``',
            ("unigrams", "bigrams", "trigrams"),
        ),
        Promise("each 0.0 where its denominator is 0.", ("both shorter than n: every value 0.0",)),
    ),
)


def _rouge_l_cases(g: torch.Generator) -> list[Case]:
    pairs = _rouge_pairs(g)
    return [
        call_case("perturbed sentence", *pairs[0]),
        call_case("another one", *pairs[1]),
        call_case("gaps in the common subsequence", "a b x c d y e", "A b c, d e z."),
        call_case("hand example", *pairs[2]),
        call_case(
            "digits, underscores and accents",
            "Route_66 runs 2 km past the café; cats run.",
            "route 66 runs 2km past the cafe, the cat runs",
        ),
        call_case("a hypothesis with no words: every value 0.0", "?! ...", "the cat sat"),
    ]


ROUGE_L = Exercise(
    name="rouge_l",
    points=2,
    summary="longest common subsequence: precision, recall and F1",
    make_cases=_rouge_l_cases,
    reference=lambda: ref.rouge_l,
    tolerance=EXACT,
    mistakes=(
        Mistake(
            "substring",
            "your answer matches the longest common SUBSTRING (contiguous): ROUGE-L "
            "uses the longest common SUBSEQUENCE, whose words keep their order but may "
            "have gaps (when the words differ, take max(table[i-1][j], table[i][j-1])).",
            _rouge_l_variant("substring"),
        ),
        Mistake("swapped", _SWAP_HINT, _rouge_l_variant("swapped")),
        Mistake("split", _SPLIT_HINT, _rouge_l_variant("split")),
        Mistake("no_lower", _NO_LOWER_HINT, _rouge_l_variant("no_lower")),
    ),
    promises=(
        Promise("ROUGE-L: the longest common subsequence (LCS) of the two token lists.", ALL_CASES),
        Promise(
            "Tokens as in ``rouge_n`` (lowercase, runs of [a-z0-9]).",
            (
                "perturbed sentence",
                "gaps in the common subsequence",
                "digits, underscores and accents",
            ),
        ),
        Promise(
            "A subsequence keeps the order of the tokens but need not be contiguous.",
            ("gaps in the common subsequence", "hand example"),
        ),
        Promise("hypothesis: the system output.", ALL_CASES),
        Promise("reference: the reference text.", ALL_CASES),
        Promise(
            '``{"precision": LCS / len(hypothesis), "recall": LCS / len(reference), '
            '"f1": 2PR / (P + R)}``',
            ("perturbed sentence", "another one", "hand example"),
        ),
        Promise(
            "each 0.0 where its denominator is 0.",
            ("a hypothesis with no words: every value 0.0",),
        ),
    ),
)

# ---------------------------------------------------------------------- exact_match


def _em_variant(kind: str) -> Callable:
    def exact_match(predictions, references):
        hits = 0
        for p, accepted in zip(predictions, references, strict=True):
            accepted = [accepted] if isinstance(accepted, str) else list(accepted)
            if kind == "first_only":
                accepted = accepted[:1]

            def norm(text):
                if kind == "raw":
                    return text
                text = text.lower()
                if kind != "keep_punct":
                    text = re.sub(r"[^\w\s]|_", "", text)
                if kind == "inside_words":
                    text = re.sub(r"(a|an|the)", " ", text)
                elif kind != "keep_articles":
                    text = re.sub(r"\b(a|an|the)\b", " ", text)
                return " ".join(text.split())

            hits += norm(p) in [norm(a) for a in accepted]
        return hits / len(predictions) if predictions else 0.0

    return exact_match


def _em_cases(g: torch.Generator) -> list[Case]:
    del g
    return [
        call_case(
            "one reference each",
            ["Paris", "the Eiffel Tower.", "1889", "Gustave  eiffel", "a tower", "Lyon", "U.S."]
            + ["an apple"],
            ["paris!", "Eiffel Tower", "1889.", "Gustave Eiffel", "tower", "Paris", "US"]
            + ["the apple"],
        ),
        call_case(
            "several accepted answers",
            ["an apple", "Blue!", "seven", "The Nile", "rome"],
            [["apples", "apple"], ["azure", "blue"], ["7", "seven"], ["Amazon"], ["rome"]],
        ),
        call_case(
            "articles only as whole words",
            ["theme", "Anna", "a banana", "The", "an"],
            ["me", "na", "bnn", "", "a"],
        ),
        call_case(
            "underscores are punctuation, other letters are not",
            ["snake_case", "Café", "naïve"],
            ["snakecase", "caf", "naïve!"],
        ),
        call_case("no predictions: 0.0", [], []),
    ]


EXACT_MATCH = Exercise(
    name="exact_match",
    points=1,
    summary="the fraction of normalised predictions equal to a reference",
    make_cases=_em_cases,
    reference=lambda: ref.exact_match,
    tolerance=EXACT,
    mistakes=(
        Mistake(
            "raw",
            "your answer matches comparing the raw strings: normalise both sides first "
            "(lowercase, drop punctuation and the articles a/an/the, collapse whitespace).",
            _em_variant("raw"),
        ),
        Mistake(
            "keep_articles",
            "your answer matches a normalisation that keeps the articles: remove 'a', "
            "'an' and 'the' as whole words.",
            _em_variant("keep_articles"),
        ),
        Mistake(
            "keep_punct",
            "your answer matches a normalisation that keeps punctuation: remove every "
            "character that is not a letter, digit or whitespace.",
            _em_variant("keep_punct"),
        ),
        Mistake(
            "inside_words",
            "your answer matches removing a, an and the inside words too ('theme' becomes "
            "'me'): remove the articles as whole words only (r'\\b(a|an|the)\\b').",
            _em_variant("inside_words"),
        ),
        Mistake(
            "first_only",
            "your answer matches comparing with the first accepted answer only: a "
            "prediction counts when it matches ANY of its references.",
            _em_variant("first_only"),
        ),
    ),
    promises=(
        Promise(
            "The fraction of predictions equal to a reference after SQuAD-style normalisation.",
            ALL_CASES,
        ),
        Promise(
            "Normalisation (of both sides): lowercase; remove punctuation (every character "
            "that is not a letter, a digit or whitespace)",
            ("one reference each", "underscores are punctuation, other letters are not"),
        ),
        Promise(
            'remove the articles "a", "an", "the" as whole words',
            ("one reference each", "articles only as whole words"),
        ),
        Promise(
            "collapse runs of whitespace to one space and strip the ends.",
            ("one reference each", "articles only as whole words"),
        ),
        Promise('So "The Eiffel Tower." matches "eiffel  tower".', ("one reference each",)),
        Promise("predictions: the model's answers, length S.", ALL_CASES),
        Promise(
            "references: length S; each entry is one reference string or a list of accepted "
            "answers (a prediction counts when it matches any of them).",
            ("one reference each", "several accepted answers"),
        ),
        Promise(
            "A float in [0, 1]: matches / S", ("one reference each", "several accepted answers")
        ),
        Promise("(0.0 for S = 0)", ("no predictions: 0.0",)),
    ),
)

# ------------------------------------------------------------------------ pass_at_k


def _pass_variant(kind: str) -> Callable:
    def pass_at_k(n, c, k):
        if kind == "power":
            return 1.0 - (1.0 - c / n) ** k
        if kind == "all_correct":
            return math.comb(c, k) / math.comb(n, k)
        if kind == "c_over_n":
            return c / n
        return ref.pass_at_k(n, c, k)

    return pass_at_k


PASS_AT_K = Exercise(
    name="pass_at_k",
    points=2,
    summary="the unbiased estimator 1 - C(n-c, k) / C(n, k)",
    make_cases=lambda g: [
        *(
            call_case(f"n={n}, c={c}, k={k}", n, c, k)
            for n, c, k in ((10, 3, 1), (10, 3, 4), (20, 0, 5), (6, 4, 3), (200, 13, 10), (7, 7, 2))
        ),
        call_case("n - c = k: not yet 1", 10, 6, 4),
    ],
    reference=lambda: ref.pass_at_k,
    tolerance=Tolerance(atol=1e-9, rtol=1e-7),
    mistakes=(
        Mistake(
            "power",
            "your answer matches 1 - (1 - c/n)^k, which draws the k samples WITH "
            "replacement and is biased: the k samples are a subset of the n drawn, so "
            "use 1 - C(n-c, k) / C(n, k).",
            _pass_variant("power"),
        ),
        Mistake(
            "all_correct",
            "your answer matches C(c, k) / C(n, k), the chance that ALL k samples are "
            "correct: pass@k asks for at least one, 1 - C(n-c, k) / C(n, k).",
            _pass_variant("all_correct"),
        ),
        Mistake(
            "c_over_n",
            "your answer matches c / n whatever k is: that is pass@1; for k > 1 use "
            "1 - C(n-c, k) / C(n, k).",
            _pass_variant("c_over_n"),
        ),
    ),
    promises=(
        Promise(
            "The unbiased pass@k estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k).",
            ALL_CASES,
        ),
        Promise(
            "Draw n samples per problem, count the c that pass the tests; the chance that a "
            "random subset of k of the n samples holds at least one correct one is "
            "1 - C(n-c, k)/C(n, k).",
            ALL_CASES,
        ),
        Promise(
            "Computed as 1 - Π_{i=n-c+1}^{n} (1 - k/i), which never forms huge binomials.",
            why="how the reference computes the same value (an implementation note): any exact "
            "formula gives the same floats within the tolerance, and n=200, c=13, k=10 checks "
            "a case where binomials are large",
        ),
        Promise("n: samples drawn, >= 1.", ALL_CASES),
        Promise("c: samples that passed, 0 <= c <= n.", ("n=20, c=0, k=5", "n=7, c=7, k=2")),
        Promise("k: the budget, 1 <= k <= n.", ("n=10, c=3, k=1", "n=10, c=3, k=4")),
        Promise("A float in [0, 1]", ALL_CASES),
        Promise(
            "1.0 when n - c < k (every subset of k holds a correct one).",
            ("n=6, c=4, k=3", "n=7, c=7, k=2", "n - c = k: not yet 1"),
        ),
    ),
)

# ---------------------------------------------------------------------- cohens_kappa


def _kappa_variant(kind: str) -> Callable:
    def cohens_kappa(a, b):
        a, b = list(a), list(b)
        n = len(a)
        po = sum(x == y for x, y in zip(a, b, strict=True)) / n
        ca, cb = Counter(a), Counter(b)
        labels = set(ca) | set(cb)
        if kind == "observed":
            return po
        if kind == "pooled":
            pe = sum(((ca[x] + cb[x]) / (2 * n)) ** 2 for x in labels)
        elif kind == "uniform":
            pe = 1.0 / len(labels)
        else:  # "first_only": both marginals taken from rater a
            pe = sum((ca[x] / n) ** 2 for x in labels)
        return 1.0 if pe == 1.0 else (po - pe) / (1 - pe)

    return cohens_kappa


def _kappa_cases(g: torch.Generator) -> list[Case]:
    a = torch.randint(0, 3, (20,), generator=g)
    noise = torch.randint(0, 3, (20,), generator=g)
    b = torch.where(torch.rand(20, generator=g) < 0.6, a, noise)
    names = ["bad", "ok", "good"]
    c = [names[int(i)] for i in torch.randint(0, 3, (15,), generator=g)]
    d = [x if float(torch.rand(1, generator=g)) < 0.5 else "good" for x in c]
    return [
        call_case("three integer labels", a.tolist(), b.tolist()),
        call_case("string labels, a lenient rater", c, d),
        call_case("binary, skewed", [1, 1, 1, 1, 1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 0, 1, 0, 1, 1, 1]),
        call_case("one label for everything: 1.0", ["good"] * 6, ["good"] * 6),
    ]


KAPPA = Exercise(
    name="cohens_kappa",
    points=2,
    summary="(p_o - p_e) / (1 - p_e), chance from each rater's own marginals",
    make_cases=_kappa_cases,
    reference=lambda: ref.cohens_kappa,
    tolerance=EXACT,
    mistakes=(
        Mistake(
            "observed",
            "your answer matches the raw agreement p_o: kappa corrects it for chance, "
            "(p_o - p_e) / (1 - p_e).",
            _kappa_variant("observed"),
        ),
        Mistake(
            "pooled",
            "your answer matches a chance agreement from the pooled labels of both raters "
            "(Scott's pi): Cohen's p_e multiplies each rater's OWN label frequencies, "
            "Σ P_a(label) · P_b(label).",
            _kappa_variant("pooled"),
        ),
        Mistake(
            "uniform",
            "your answer matches a chance agreement of 1/K (uniform labels): p_e comes "
            "from the raters' label frequencies, Σ P_a(label) · P_b(label).",
            _kappa_variant("uniform"),
        ),
        Mistake(
            "first_only",
            "your answer matches a chance agreement from the first rater's frequencies "
            "alone: use Σ P_a(label) · P_b(label), one factor per rater.",
            _kappa_variant("first_only"),
        ),
    ),
    promises=(
        Promise(
            "Cohen's kappa: the agreement of two raters beyond what chance would give.", ALL_CASES
        ),
        Promise(
            "kappa = (p_o - p_e) / (1 - p_e), p_o the fraction of items on which the raters "
            "agree, p_e = Σ_label P_a(label) P_b(label) the agreement expected if each rater "
            "drew labels independently from their own marginal frequencies.",
            ("three integer labels", "string labels, a lenient rater", "binary, skewed"),
        ),
        Promise(
            "a: the first rater's labels (any hashable values: ints, strings), length N >= 1.",
            ("three integer labels", "string labels, a lenient rater"),
        ),
        Promise("b: the second rater's labels, length N.", ALL_CASES),
        Promise(
            "A float in [-1, 1]: 1 perfect agreement, 0 chance level.",
            ("three integer labels", "binary, skewed"),
        ),
        Promise(
            "When p_e = 1 (both raters always give the same single label) the result is 1.0.",
            ("one label for everything: 1.0",),
        ),
    ),
)

# -------------------------------------------------------------- spearman_correlation


def _spearman_variant(kind: str) -> Callable:
    def spearman(x, y):
        x = torch.as_tensor(x).double()
        y = torch.as_tensor(y).double()
        if kind == "pearson":
            rx, ry = x, y
        elif kind == "ordinal":
            rx = x.argsort(stable=True).argsort().double() + 1
            ry = y.argsort(stable=True).argsort().double() + 1
        else:
            rx = (x[None] < x[:, None]).sum(1) + ((x[None] == x[:, None]).sum(1) + 1) / 2
            ry = (y[None] < y[:, None]).sum(1) + ((y[None] == y[:, None]).sum(1) + 1) / 2
        if kind == "formula":
            n = x.shape[0]
            return float(1 - 6 * ((rx - ry) ** 2).sum() / (n * (n * n - 1)))
        rx, ry = rx - rx.mean(), ry - ry.mean()
        return float((rx * ry).sum() / ((rx * rx).sum() * (ry * ry).sum()).sqrt())

    return spearman


def _spearman_cases(g: torch.Generator) -> list[Case]:
    x = randn(g, 12)
    y = x**3 + 0.5 * randn(g, 12)  # monotone-ish and far from linear
    scores = torch.randint(1, 6, (15,), generator=g).float()  # 1..5 ratings: many ties
    judge = scores + torch.randint(-1, 2, (15,), generator=g).float()
    return [
        call_case("no ties, non-linear", x, y.exp()),
        call_case("ratings with ties", scores, judge),
        call_case(
            "lists with ties", [1, 2, 2, 3, 5, 5, 5, 8], [0.3, 0.1, 0.9, 0.2, 0.8, 0.7, 0.4, 1.0]
        ),
        call_case("a constant y: nan", randn(g, 6), torch.full((6,), 3.0)),
    ]


SPEARMAN = Exercise(
    name="spearman_correlation",
    points=2,
    summary="the Pearson correlation of the average ranks",
    make_cases=_spearman_cases,
    reference=lambda: ref.spearman_correlation,
    tolerance=Tolerance(atol=1e-7, rtol=1e-6),
    mistakes=(
        Mistake(
            "pearson",
            "your answer matches the Pearson correlation of the raw values: Spearman's "
            "is the Pearson correlation of their RANKS.",
            _spearman_variant("pearson"),
        ),
        Mistake(
            "ordinal",
            "your answer matches ranks that break ties by position (argsort of argsort): "
            "tied values must all get the average of the ranks they span.",
            _spearman_variant("ordinal"),
        ),
        Mistake(
            "formula",
            "your answer matches 1 - 6 Σ d² / (n(n² - 1)): that shortcut is exact only "
            "without ties; compute the Pearson correlation of the average ranks.",
            _spearman_variant("formula"),
        ),
    ),
    driver=NAN_AS_TEXT,
    dtypes=("float64",),
    promises=(
        Promise(
            "Spearman's rank correlation: the Pearson correlation of the ranks of x and y.",
            ALL_CASES,
        ),
        Promise(
            "Ranks start at 1",
            why="a convention with no effect on the answer: the correlation of ranks is the "
            "same whatever rank the smallest value gets",
        ),
        Promise(
            "tied values all get the average of the ranks they span (values 2, 5, 5, 9 have "
            "ranks 1, 2.5, 2.5, 4).",
            ("ratings with ties", "lists with ties"),
        ),
        Promise(
            "Computed in float64 on the device of x.",
            why="how the reference computes: a float32 computation of the same ranks differs "
            "by less than 1e-8 on these sizes (measured on 20 draws each of N = 50 to 3000), "
            "far inside the tolerance, and grading runs on the CPU",
        ),
        Promise(
            "x: numbers, shape (N,), N >= 2 (a 1-D tensor or a list).",
            ("no ties, non-linear", "lists with ties"),
        ),
        Promise("y: numbers, shape (N,).", ALL_CASES),
        Promise("A float in [-1, 1];", ("no ties, non-linear", "ratings with ties")),
        Promise("nan when x or y is constant.", ("a constant y: nan",)),
    ),
)

# ----------------------------------------------------------------- pairwise_win_rate


def _win_variant(kind: str) -> Callable:
    def pairwise_win_rate(judgments):
        c = Counter(judgments)
        if kind == "ties_lost":
            return c["A"] / len(judgments)
        if kind == "ties_dropped":
            return c["A"] / (c["A"] + c["B"])
        if kind == "ties_won":
            return (c["A"] + c["tie"]) / len(judgments)
        return (c["B"] + 0.5 * c["tie"]) / len(judgments)  # "b_wins"

    return pairwise_win_rate


def _win_cases(g: torch.Generator) -> list[Case]:
    verdicts = ["A", "B", "tie"]
    cases = []
    for size, label in ((16, "16 pairs"), (9, "9 pairs")):
        draws = torch.multinomial(torch.tensor([0.5, 0.25, 0.25]), size, True, generator=g)
        js = [verdicts[int(i)] for i in draws]
        js[:3] = ["A", "tie", "B"]  # every kind of verdict occurs
        cases.append(call_case(label, js))
    cases.append(call_case("mostly ties", ["tie", "tie", "A", "tie", "B", "B"]))
    return cases


WIN_RATE = Exercise(
    name="pairwise_win_rate",
    points=1,
    summary="(wins of A + half the ties) / all pairs",
    make_cases=_win_cases,
    reference=lambda: ref.pairwise_win_rate,
    tolerance=EXACT,
    mistakes=(
        Mistake(
            "ties_lost",
            "your answer matches counting ties as losses: a tie counts half a win, "
            "(#A + 0.5 #tie) / n.",
            _win_variant("ties_lost"),
        ),
        Mistake(
            "ties_dropped",
            "your answer matches dropping the ties from the count: keep them, each "
            "worth half a win, (#A + 0.5 #tie) / n.",
            _win_variant("ties_dropped"),
        ),
        Mistake(
            "ties_won",
            "your answer matches counting ties as wins: a tie counts half, (#A + 0.5 #tie) / n.",
            _win_variant("ties_won"),
        ),
        Mistake(
            "b_wins",
            "your answer matches the win rate of B: the function returns A's, (#A + 0.5 #tie) / n.",
            _win_variant("b_wins"),
        ),
    ),
    promises=(
        Promise(
            "The win rate of system A over system B from pairwise judgments, ties counting half.",
            ALL_CASES,
        ),
        Promise(
            'judgments: one verdict per compared pair, each exactly "A" (A\'s output is better), '
            '"B" (B\'s output is better) or "tie"; at least one.',
            ALL_CASES,
        ),
        Promise('(#"A" + 0.5 · #"tie") / len(judgments), a float in [0, 1];', ALL_CASES),
        Promise(
            "0.5 means no preference.",
            why="how to read the value; the formula above (every case) fixes it",
        ),
    ),
)

SPEC = ChapterSpec(
    number="08",
    slug="evaluation",
    title="Evaluation",
    exercises=(
        PERPLEXITY,
        BLEU,
        ROUGE_N,
        ROUGE_L,
        EXACT_MATCH,
        PASS_AT_K,
        KAPPA,
        SPEARMAN,
        WIN_RATE,
    ),
)
