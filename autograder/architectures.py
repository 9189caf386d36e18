"""Grading spec of chapter 02 (architectures): inputs, tolerances and the usual mistakes.

Each exercise below names the function or class of solutions/architectures.py it
grades, makes seeded inputs, and lists wrong implementations that students
commonly write; when a submission's answers equal one of those, the hint says
what went wrong. ``mask_tokens_for_mlm`` is random: its answers are checked by
their properties and statistics (autograder/public/architectures.py), not by
equality. Hidden from students: it imports the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import solutions.architectures as ref
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

PUBLIC = "autograder.public.architectures"


def pick(g: torch.Generator, items: list[Any], n: int) -> list[Any]:
    """``n`` distinct items of ``items``, chosen by ``g``, in their original order."""
    idx = sorted(torch.randperm(len(items), generator=g)[:n].tolist())
    return [items[i] for i in idx]


def tied_random_state(module: torch.nn.Module, g: torch.Generator) -> dict[str, torch.Tensor]:
    """A random state_dict in which tied parameters (one tensor, two names) stay equal.

    Layer-norm gains near 1, matrices ~ 1/sqrt(fan_in), biases ~ 0.3.
    """
    state: dict[str, torch.Tensor] = {}
    seen: dict[int, torch.Tensor] = {}
    for name, p in module.state_dict(keep_vars=True).items():
        key = id(p)
        if key in seen:
            state[name] = seen[key]
            continue
        parts = name.split(".")
        if p.dim() == 1 and parts[-1] == "weight" and parts[-2].startswith("ln"):
            value = 1.0 + 0.3 * randn(g, *p.shape)
        elif p.dim() == 2:
            value = randn(g, *p.shape, scale=1.0 / math.sqrt(p.shape[1]))
        else:
            value = randn(g, *p.shape, scale=0.3)
        state[name] = seen[key] = value
    return state


def module_case(
    label: str, cls: type, init: dict[str, Any], g: torch.Generator, *args: Any
) -> Case:
    return {
        "label": label,
        "init": init,
        "state": tied_random_state(cls(**init), g),
        "args": list(args),
        "kwargs": {},
    }


# ----------------------------------------------------------------------------- NGramLM

CAFE = [
    "i want a caramel iced latte",
    "i want an iced latte",
    "i want a caramel latte",
    "she wants a caramel iced latte",
    "i want a hot chocolate",
    "he wants an iced tea",
    "i want a caramel macchiato",
    "we want two iced lattes",
    "i would like a caramel iced latte please",
    "she wants a vanilla latte",
    "i want a latte with oat milk",
    "they want a caramel iced coffee",
    "i want a small iced latte",
    "he wants a caramel iced latte too",
    "i want a cold brew",
    "you want a caramel frappe",
]


class _WrongNGram(ref.NGramLM):
    """The reference, with one usual mistake switched on by a class attribute."""

    vocab_extra = 0  # added to |V|: -1 leaves out </s>, +1 counts <s>
    one_start = False  # pad with a single <s> whatever n
    end_in_logprob = True  # sentence_logprob includes the factor P(</s> | ...)
    base = math.e
    k_times_vocab = True

    def _padded(self, words: list[str]) -> list[str]:
        starts = min(1, self.n - 1) if self.one_start else self.n - 1
        return ["<s>"] * starts + list(words) + ["</s>"]

    def fit(self, sentences):
        self.vocab = {"</s>"}
        self.ngram_counts, self.context_counts = {}, {}
        for sentence in sentences:
            self.vocab.update(sentence)
            padded = self._padded(sentence)
            for i in range(self.n - 1, len(padded)):
                gram = tuple(padded[i - self.n + 1 : i + 1])
                self.ngram_counts[gram] = self.ngram_counts.get(gram, 0) + 1
                self.context_counts[gram[:-1]] = self.context_counts.get(gram[:-1], 0) + 1
        return self

    def prob(self, word, context):
        context = tuple(context)
        c = context[len(context) - (self.n - 1) :]
        size = len(self.vocab) + self.vocab_extra
        numerator = self.ngram_counts.get(c + (word,), 0) + self.k
        smoothing = self.k * size if self.k_times_vocab else self.k
        denominator = self.context_counts.get(c, 0) + smoothing
        return numerator / denominator if denominator > 0 else 0.0

    def sentence_logprob(self, tokens):
        padded = self._padded(tokens)
        stop = len(padded) if self.end_in_logprob else len(padded) - 1
        total = 0.0
        for i in range(self.n - 1, stop):
            p = self.prob(padded[i], tuple(padded[i - self.n + 1 : i]))
            total += math.log(p, self.base) if p > 0 else -math.inf
        return total


def _wrong_ngram(**flags: Any) -> type:
    return type("WrongNGram", (_WrongNGram,), flags)


def _ngram_case(
    label: str,
    n: int,
    k: float | None,
    sentences: list[list[str]],
    queries: list[tuple],
    first_fit: list[list[str]] | None = None,
) -> Case:
    """``k`` None: the constructor's default; ``first_fit``: a fit before the real one."""
    fit = {"method": "fit", "args": [sentences], "returns_self": True, "label": "fit returns self"}
    calls: list[dict[str, Any]] = [fit]
    if first_fit is not None:
        calls.insert(0, {"method": "fit", "args": [first_fit]})
    for query in queries:
        if query[0] == "attribute":
            calls.append({"attribute": query[1], "label": query[1]})
        elif query[0] == "prob":
            _, word, context = query
            shown = " ".join(context) if context else "()"
            calls.append(
                {"method": "prob", "args": [word, tuple(context)], "label": f"P({word} | {shown})"}
            )
        else:
            words = query[1]
            calls.append(
                {
                    "method": "sentence_logprob",
                    "args": [list(words)],
                    "label": f"log P({' '.join(words)})",
                }
            )
    init = {"n": n} if k is None else {"n": n, "k": k}
    return {"label": label, "init": init, "calls": calls}


BIGRAM = "bigram, k=1, fitted on 10 orders"  # the first case's label


def _ngram_cases(g: torch.Generator) -> list[Case]:
    corpus = [CAFE[0].split()] + [s.split() for s in pick(g, CAFE[1:], 9)]
    latte = "i want a caramel iced latte".split()
    odd = "i want a caramelised latte".split()
    return [
        _ngram_case(
            f"bigram, k=1, fitted on {len(corpus)} orders",
            2,
            1.0,
            corpus,
            [
                ("attribute", "vocab"),
                ("attribute", "ngram_counts"),
                ("attribute", "context_counts"),
                ("prob", "i", ("<s>",)),
                ("prob", "caramel", ("a",)),
                ("prob", "iced", ("caramel",)),
                ("prob", "latte", ("caramelised",)),
                ("prob", "</s>", ("latte",)),
                ("prob", "caramelised", ("a",)),
                ("logprob", latte),
                ("logprob", odd),
            ],
        ),
        _ngram_case(
            "trigram, k=0.5",
            3,
            0.5,
            corpus,
            [
                ("prob", "i", ("<s>", "<s>")),
                ("prob", "want", ("<s>", "i")),
                ("prob", "latte", ("i", "want", "a", "caramel", "iced")),
                ("logprob", latte),
                ("logprob", "she wants a latte".split()),
            ],
        ),
        _ngram_case(
            "unigram, k=1",
            1,
            1.0,
            corpus,
            [("prob", "latte", ()), ("prob", "</s>", ()), ("logprob", odd)],
        ),
        _ngram_case(
            "bigram without smoothing (k=0)",
            2,
            0.0,
            corpus,
            [("prob", "want", ("i",)), ("prob", "latte", ("caramelised",)), ("logprob", odd)],
        ),
        _ngram_case(
            "bigram, k omitted (default 1)",
            2,
            None,
            corpus,
            [("prob", "caramel", ("a",)), ("prob", "latte", ("caramelised",)), ("logprob", latte)],
        ),
        _ngram_case(
            "fitted twice: the second fit replaces the first",
            2,
            1.0,
            corpus,
            [("prob", "caramel", ("a",)), ("prob", "tea", ("iced",)), ("logprob", latte)],
            first_fit=[s.split() for s in CAFE[-4:]],
        ),
    ]


NGRAM = Exercise(
    name="NGramLM",
    points=3,
    summary="count n-grams, add-k smoothing, the chain rule in log space",
    make_cases=_ngram_cases,
    reference=lambda: ref.NGramLM,
    driver=f"{PUBLIC}:labelled_methods",
    output_names=("answer",),
    tolerance=Tolerance(atol=1e-9, rtol=1e-7),
    mistakes=(
        Mistake(
            "no_end_in_vocab",
            "your numbers match a vocabulary without </s>: the model also predicts the end "
            "of the sentence, so </s> is one of the |V| outcomes the smoothing spreads over.",
            _wrong_ngram(vocab_extra=-1),
        ),
        Mistake(
            "start_in_vocab",
            "your numbers match a vocabulary that counts <s>: <s> is only ever context, "
            "never predicted, so it is not in V (V = the words seen in fit plus </s>).",
            _wrong_ngram(vocab_extra=+1),
        ),
        Mistake(
            "k_without_vocab",
            "your numbers match a denominator count(c) + k: add-k adds k to every one of "
            "the |V| counts, so the denominator is count(c) + k·|V|.",
            _wrong_ngram(k_times_vocab=False),
        ),
        Mistake(
            "one_start",
            "your numbers match padding with a single <s> for a trigram: pad with n-1 <s> "
            "so that the first word also has a full context of n-1 words.",
            _wrong_ngram(one_start=True),
        ),
        Mistake(
            "no_end_factor",
            "your log-probabilities leave out the last factor P(</s> | ...): the sentence "
            "is padded with one </s> at the end and its probability is part of the product.",
            _wrong_ngram(end_in_logprob=False),
        ),
        Mistake(
            "log10",
            "your log-probabilities match log base 10: use the natural log (math.log).",
            _wrong_ngram(base=10.0),
        ),
    ),
    promises=(
        Promise("An n-gram language model with add-k smoothing.", ALL_CASES),
        Promise(
            "P(w | c) = (count(c, w) + k) / (count(c) + k * |V|), where c is the n-1 words before "
            "w,",
            ALL_CASES,
        ),
        Promise(
            "Each sentence is padded with n-1 ``<s>`` in front and one ``</s>`` at the end, in "
            "``fit`` and in ``sentence_logprob`` alike.",
            ALL_CASES,
        ),
        Promise(
            "With k = 0 (no smoothing) a context never seen gives probability 0.",
            ("bigram without smoothing (k=0)",),
        ),
        Promise(
            "Words are plain Python strings and counts plain dicts: counting is not a tensor "
            "operation.",
            (BIGRAM,),
        ),
        Promise("n: the order (1 = unigram, 2 = bigram, ...).", ALL_CASES),
        Promise("k: the smoothing constant.", ALL_CASES),
        Promise(
            "vocab: set[str], the vocabulary V (seen words and ``</s>``).",
            (BIGRAM,),
        ),
        Promise(
            "ngram_counts: dict[tuple[str, ...], int], count(c, w) for each n-gram (c, w).",
            (BIGRAM,),
        ),
        Promise(
            "context_counts: dict[tuple[str, ...], int], count(c) for each context c.",
            (BIGRAM,),
        ),
        Promise(
            "n: the order of the model, >= 1.",
            ("unigram, k=1", BIGRAM, "trigram, k=0.5"),
        ),
        Promise(
            "k: the smoothing constant, >= 0.",
            ("bigram without smoothing (k=0)", "trigram, k=0.5", "bigram, k omitted (default 1)"),
        ),
        Promise(
            "Count the n-grams of the padded sentences (forgetting any earlier fit).",
            (BIGRAM, "fitted twice: the second fit replaces the first"),
        ),
        Promise("sentences: a list of sentences, each a list of words.", ALL_CASES),
        Promise("The model itself.", ALL_CASES),
        Promise("P(word | context) with add-k smoothing.", ALL_CASES),
        Promise(
            "word: the next word (a word outside the vocabulary gets the probability of a "
            "vocabulary word never seen in this context).",
            (BIGRAM,),
        ),
        Promise(
            "context: the words before it, at least n-1 of them; only the last n-1 are used "
            "(none for a unigram model).",
            ("trigram, k=0.5", "unigram, k=1"),
        ),
        Promise("The probability, a float in [0, 1].", ALL_CASES),
        Promise(
            "log P(sentence), natural log, by the chain rule over the padded sentence.", ALL_CASES
        ),
        Promise(
            "The sentence is padded with n-1 ``<s>`` in front and one ``</s>`` at the end; the "
            "sum runs over every word of the sentence and the final ``</s>``.",
            ALL_CASES,
        ),
        Promise("tokens: the sentence, a list of words.", ALL_CASES),
        Promise(
            "The log-probability, a float (-inf if a factor is 0, possible only with k = 0).",
            ("bigram without smoothing (k=0)", "trigram, k=0.5"),
        ),
    ),
)

# ---------------------------------------------------------------------------- rnn_cell


def _rnn_variant(kind: str) -> Callable:
    def cell(x, h, W, U, b, activation=torch.tanh):
        if kind == "u_not_transposed":
            return activation(x @ W.T + h @ U + b)
        if kind == "no_bias":
            return activation(x @ W.T + h @ U.T)
        if kind == "activation_ignored":
            return torch.tanh(x @ W.T + h @ U.T + b)
        if kind == "no_activation":
            return x @ W.T + h @ U.T + b
        return activation(x @ W.T + h @ U.T + b)

    return cell


def _rnn_args(g: torch.Generator, lead: tuple[int, ...], d_in: int, d_h: int) -> list:
    return [
        randn(g, *lead, d_in),
        randn(g, *lead, d_h, scale=0.8),
        randn(g, d_h, d_in, scale=1.0 / math.sqrt(d_in)),
        randn(g, d_h, d_h, scale=1.0 / math.sqrt(d_h)),
        randn(g, d_h, scale=0.5),
    ]


RNN = Exercise(
    name="rnn_cell",
    points=1,
    summary="h' = act(x Wᵀ + h Uᵀ + b)",
    make_cases=lambda g: [
        call_case("batch of 4, tanh", *_rnn_args(g, (4,), 5, 5)),
        call_case("leading dims, relu", *_rnn_args(g, (2, 3), 6, 6), activation="relu"),
        call_case("d_in=3, d_h=7, identity", *_rnn_args(g, (5,), 3, 7), activation="identity"),
    ],
    reference=lambda: ref.rnn_cell,
    driver=f"{PUBLIC}:rnn_with_activation",
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    mistakes=(
        Mistake(
            "u_not_transposed",
            "your answer matches h @ U instead of h @ U.T: with U of shape (d_h, d_h) "
            "stored as (out, in), like nn.Linear's weight, the product is h Uᵀ.",
            _rnn_variant("u_not_transposed"),
        ),
        Mistake(
            "no_bias",
            "your answer matches the cell without the bias b: h' = act(x Wᵀ + h Uᵀ + b).",
            _rnn_variant("no_bias"),
        ),
        Mistake(
            "activation_ignored",
            "your answer matches tanh even when another `activation` is passed: apply the "
            "function you are given.",
            _rnn_variant("activation_ignored"),
        ),
        Mistake(
            "no_activation",
            "your answer matches x Wᵀ + h Uᵀ + b with no activation applied.",
            _rnn_variant("no_activation"),
        ),
    ),
    promises=(
        Promise("One step of an Elman RNN: h' = activation(x W^T + h U^T + b).", ALL_CASES),
        Promise("x: the input at this step, shape (..., d_in).", ALL_CASES),
        Promise("h: the previous hidden state, shape (..., d_h).", ALL_CASES),
        Promise("W: input-to-hidden weights, shape (d_h, d_in).", ALL_CASES),
        Promise("U: hidden-to-hidden weights, shape (d_h, d_h).", ALL_CASES),
        Promise("b: bias, shape (d_h,).", ALL_CASES),
        Promise(
            "activation: an element-wise function (default ``torch.tanh``).",
            ("batch of 4, tanh", "leading dims, relu", "d_in=3, d_h=7, identity"),
        ),
        Promise("The new hidden state, shape (..., d_h).", ALL_CASES),
    ),
)

# ---------------------------------------------------------------------------- gru_cell


def _gru_variant(kind: str) -> Callable:
    def cell(x, h, W_z, W_r, W_h):
        hx = torch.cat([x, h], -1) if kind == "x_first" else torch.cat([h, x], -1)
        z = torch.sigmoid(hx @ W_z.T)
        r = torch.sigmoid(hx @ W_r.T)
        if kind == "x_first":
            inner = torch.cat([x, r * h], -1)
        elif kind == "no_reset":
            inner = hx
        else:
            inner = torch.cat([r * h, x], -1)
        act = torch.sigmoid if kind == "sigmoid_candidate" else torch.tanh
        candidate = act(inner @ W_h.T)
        if kind == "gate_swapped":
            return z * h + (1 - z) * candidate
        return (1 - z) * h + z * candidate

    return cell


def _gru_args(g: torch.Generator, lead: tuple[int, ...], d_in: int, d_h: int) -> list:
    scale = 1.5 / math.sqrt(d_in + d_h)
    return [
        randn(g, *lead, d_in),
        randn(g, *lead, d_h, scale=0.8),
        *[randn(g, d_h, d_h + d_in, scale=scale) for _ in range(3)],
    ]


GRU = Exercise(
    name="gru_cell",
    points=2,
    summary="update and reset gates, candidate state, interpolation",
    make_cases=lambda g: [
        call_case("batch of 4, d_in=3, d_h=5", *_gru_args(g, (4,), 3, 5)),
        call_case("leading dims, d_in=d_h=4", *_gru_args(g, (2, 3), 4, 4)),
        call_case("no batch, d_in=6, d_h=2", *_gru_args(g, (), 6, 2)),
    ],
    reference=lambda: ref.gru_cell,
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    mistakes=(
        Mistake(
            "gate_swapped",
            "your answer matches h' = z·h + (1 - z)·h~ (the convention of torch.nn.GRUCell): "
            "this exercise follows the contract, h' = (1 - z)·h + z·h~, so z = 1 means "
            "'take the new candidate'.",
            _gru_variant("gate_swapped"),
        ),
        Mistake(
            "x_first",
            "your answer matches concatenating [x, h]: the contract's order is [h, x], "
            "hidden state first (the weights' columns follow that order).",
            _gru_variant("x_first"),
        ),
        Mistake(
            "no_reset",
            "your answer matches a candidate computed from [h, x] without the reset gate: "
            "the candidate reads [r * h, x].",
            _gru_variant("no_reset"),
        ),
        Mistake(
            "sigmoid_candidate",
            "your answer matches a sigmoid for the candidate state: the gates use sigmoid, "
            "the candidate uses tanh.",
            _gru_variant("sigmoid_candidate"),
        ),
    ),
    promises=(
        Promise("One step of a gated recurrent unit (GRU), without biases.", ALL_CASES),
        Promise(
            "z = sigmoid([h, x] W_z^T) (update gate) r = sigmoid([h, x] W_r^T) (reset gate) "
            "h~ = tanh([r * h, x] W_h^T) (candidate state) h' = (1 - z) * h + z * h~",
            ALL_CASES,
        ),
        Promise("[a, b] is the concatenation along the last dimension, h first.", ALL_CASES),
        Promise(
            "(PyTorch's ``nn.GRUCell`` writes the same cell with z and 1 - z swapped",
            why="a remark on another library's convention; the formula above is what is graded",
        ),
        Promise("x: the input, shape (..., d_in).", ALL_CASES),
        Promise("h: the previous hidden state, shape (..., d_h).", ALL_CASES),
        Promise("W_z, W_r, W_h: weights, each of shape (d_h, d_h + d_in).", ALL_CASES),
        Promise("The new hidden state, shape (..., d_h).", ALL_CASES),
    ),
)

# ---------------------------------------------------------------------- skipgram_pairs


def _pairs_variant(kind: str) -> Callable:
    def pairs(token_ids, window):
        ids = token_ids.tolist() if isinstance(token_ids, torch.Tensor) else list(token_ids)
        out = []
        if kind == "by_offset":
            offsets = [o for o in range(-window, window + 1) if o != 0]
            for o in offsets:
                for i in range(len(ids)):
                    if 0 <= i + o < len(ids):
                        out.append((ids[i], ids[i + o]))
        else:
            w = window - 1 if kind == "window_exclusive" else window
            for i in range(len(ids)):
                for j in range(max(0, i - w), min(len(ids), i + w + 1)):
                    if j != i or kind == "with_center":
                        out.append((ids[j], ids[i]) if kind == "swapped" else (ids[i], ids[j]))
        return torch.tensor(out, dtype=torch.long).reshape(-1, 2)

    return pairs


PAIRS = Exercise(
    name="skipgram_pairs",
    points=1,
    summary="(center, context) pairs within a window, in order",
    make_cases=lambda g: [
        call_case("7 tokens, window 2", torch.randint(0, 20, (7,), generator=g).tolist(), 2),
        call_case("10 tokens, window 3", torch.randint(0, 6, (10,), generator=g).tolist(), 3),
        call_case("window wider than the text", torch.randint(0, 9, (3,), generator=g).tolist(), 4),
        call_case(
            "an int32 tensor of 8 tokens, window 1",
            torch.randint(0, 30, (8,), generator=g, dtype=torch.int32),
            1,
        ),
        call_case("a single token: no pairs", [int(torch.randint(0, 9, (1,), generator=g))], 2),
        call_case("an empty text", [], 3),
    ],
    reference=lambda: ref.skipgram_pairs,
    output_names=("pairs",),
    tolerance=Tolerance(0.0, 0.0),
    mistakes=(
        Mistake(
            "with_center",
            "your pairs include each word paired with itself (offset 0): the contexts are the "
            "positions j with 0 < |i - j| <= window.",
            _pairs_variant("with_center"),
        ),
        Mistake(
            "window_exclusive",
            "your pairs match |i - j| < window: the window includes the words exactly "
            "`window` positions away.",
            _pairs_variant("window_exclusive"),
        ),
        Mistake(
            "by_offset",
            "your pairs are the right ones in another order (grouped by offset): list the "
            "centers in order of position and, for each center, its contexts in order of position.",
            _pairs_variant("by_offset"),
        ),
        Mistake(
            "swapped",
            "your pairs match (context, center): each row is (center id, context id).",
            _pairs_variant("swapped"),
        ),
    ),
    promises=(
        Promise(
            "The (center, context) pairs of skip-gram: every word with each neighbour.", ALL_CASES
        ),
        Promise(
            "For each position i (in order), every position j with 0 < |i - j| <= window inside "
            "the sequence (in order of j) gives the pair (token_ids[i], token_ids[j]).",
            ALL_CASES,
        ),
        Promise(
            "token_ids: the token ids of one text, a list of ints or a 1-D integer tensor (the "
            "result is on its device).",
            ("7 tokens, window 2", "an int32 tensor of 8 tokens, window 1"),
        ),
        Promise(
            "window: the largest distance between center and context, >= 1.",
            (
                "an int32 tensor of 8 tokens, window 1",
                "7 tokens, window 2",
                "window wider than the text",
            ),
        ),
        Promise("A LongTensor of shape (N, 2), rows (center id, context id);", ALL_CASES),
        Promise("N = 0 gives (0, 2).", ("a single token: no pairs", "an empty text")),
    ),
)

# ----------------------------------------------------- skipgram_negative_sampling_loss


def _sgns_variant(kind: str) -> Callable:
    def loss(center_vecs, context_vecs, negative_vecs):
        pos = (center_vecs * context_vecs).sum(-1)
        neg = (negative_vecs * center_vecs[..., None, :]).sum(-1)
        if kind == "naive":
            per = -torch.log(torch.sigmoid(pos)) - torch.log(torch.sigmoid(-neg)).sum(-1)
        elif kind == "neg_sign":
            per = -F.logsigmoid(pos) - F.logsigmoid(neg).sum(-1)
        elif kind == "mean_negatives":
            per = -F.logsigmoid(pos) - F.logsigmoid(-neg).mean(-1)
        else:
            per = -F.logsigmoid(pos) - F.logsigmoid(-neg).sum(-1)
        if kind == "sum_batch":
            return per.sum()
        if kind == "not_negated":
            return -per.mean()
        return per.mean()

    return loss


SGNS = Exercise(
    name="skipgram_negative_sampling_loss",
    points=2,
    summary="-log σ(c·o) - Σ log σ(-c·n), batch mean, numerically stable",
    make_cases=lambda g: [
        call_case(
            "B=8, d=6, K=3",
            randn(g, 8, 6, scale=0.5),
            randn(g, 8, 6, scale=0.5),
            randn(g, 8, 3, 6, scale=0.5),
        ),
        call_case(
            "leading dims (2, 3), K=5",
            randn(g, 2, 3, 4),
            randn(g, 2, 3, 4),
            randn(g, 2, 3, 5, 4),
        ),
        call_case(
            "large scores (stability)",
            randn(g, 6, 8, scale=8.0),
            randn(g, 6, 8, scale=8.0),
            randn(g, 6, 4, 8, scale=8.0),
        ),
    ],  # fmt: skip
    reference=lambda: ref.skipgram_negative_sampling_loss,
    output_names=("loss",),
    tolerance=Tolerance(atol=1e-5, rtol=1e-5),
    mistakes=(
        Mistake(
            "mean_negatives",
            "your loss matches the mean over the K negatives: the negatives' terms are summed, "
            "-Σ_k log σ(-c·n_k).",
            _sgns_variant("mean_negatives"),
        ),
        Mistake(
            "neg_sign",
            "your loss matches log σ(+c·n_k) for the negatives: a negative word should score "
            "LOW, so its term is -log σ(-c·n_k).",
            _sgns_variant("neg_sign"),
        ),
        Mistake(
            "sum_batch",
            "your loss matches the sum over the batch: take the mean over the batch.",
            _sgns_variant("sum_batch"),
        ),
        Mistake(
            "not_negated",
            "your loss has the wrong sign (a log-likelihood to maximise): the loss is "
            "-log σ(c·o) - Σ log σ(-c·n_k), which is positive.",
            _sgns_variant("not_negated"),
        ),
        Mistake(
            "naive_log_sigmoid",
            "your loss overflows for large scores: log(sigmoid(s)) becomes log(0) = -inf once "
            "sigmoid underflows. Use F.logsigmoid, which is exact and finite.",
            _sgns_variant("naive"),
        ),
    ),
    promises=(
        Promise("The skip-gram negative-sampling loss of word2vec.", ALL_CASES),
        Promise(
            "For a center vector c, its true context vector o and K negative vectors n_k: loss = "
            "-log sigmoid(c . o) - sum_k log sigmoid(-c . n_k), averaged over the batch.",
            ALL_CASES,
        ),
        Promise(
            "Computed with ``F.logsigmoid``, which stays finite for large scores.",
            ("large scores (stability)",),
        ),
        Promise("center_vecs: shape (..., d), the center words' vectors.", ALL_CASES),
        Promise("context_vecs: shape (..., d), the true context words' vectors.", ALL_CASES),
        Promise(
            "negative_vecs: shape (..., K, d), the sampled negative words' vectors.", ALL_CASES
        ),
        Promise(
            "A scalar tensor: the mean over the batch (every leading position).",
            ("B=8, d=6, K=3", "leading dims (2, 3), K=5"),
        ),
    ),
)

# ------------------------------------------------------------------ mask_tokens_for_mlm


def _mlm_variant(kind: str) -> Callable:
    """A wrong masking that draws exactly like the reference (so its answers are
    recognised when a student draws in the documented order)."""

    def mask(
        input_ids, mask_token_id, vocab_size, mask_prob=0.15, special_token_ids=(), generator=None
    ):
        shape = input_ids.shape
        special = torch.tensor(list(special_token_ids), dtype=input_ids.dtype)
        is_special = (input_ids[..., None] == special).any(-1)
        selected = torch.rand(shape, generator=generator) < mask_prob
        if kind != "specials_selected":
            selected &= ~is_special
        u = torch.rand(shape, generator=generator)
        random_ids = torch.randint(vocab_size, shape, generator=generator, dtype=input_ids.dtype)
        to_mask = selected if kind == "all_mask" else selected & (u < 0.8)
        to_random = selected & (u >= 0.8) & (u < (1.0 if kind == "no_keep" else 0.9))
        inputs = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
        if kind != "all_mask":
            inputs = torch.where(to_random, random_ids, inputs)
        source = inputs if kind == "labels_corrupted" else input_ids
        labels = torch.where(selected, source, torch.full_like(input_ids, -100))
        if kind == "labels_everywhere":
            labels = input_ids.clone()
        return inputs, labels

    return mask


def _mlm_batch(g: torch.Generator, B: int, L: int, vocab_size: int) -> torch.Tensor:
    """[CLS]=1 w w ... w [SEP]=2 then [PAD]=0; ordinary ids in [4, vocab_size), [MASK]=3."""
    ids = torch.randint(4, vocab_size, (B, L), generator=g)
    lengths = torch.randint(L // 2, L + 1, (B,), generator=g)
    ids[:, 0] = 1
    for b, n in enumerate(lengths.tolist()):
        ids[b, n - 1] = 2
        ids[b, n:] = 0
    return ids


def _without(ids: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Ids in [0, V-1) moved to [0, V) without ``mask_id`` (the checker's statistics
    assume no original token is [MASK])."""
    return ids + (ids >= mask_id).to(ids.dtype)


def _mlm_cases(g: torch.Generator) -> list[Case]:
    seeds = torch.randint(0, 2**31 - 1, (5,), generator=g).tolist()
    return [
        {
            **call_case(
                "8 sequences of 64, mask_prob=0.15",
                _mlm_batch(g, 8, 64, 1000),
                3,
                1000,
                mask_prob=0.15,
                special_token_ids=(0, 1, 2),
            ),
            "seed": seeds[0],
        },
        {
            **call_case(
                "16 sequences of 128 (int32), mask_prob=0.5",
                _mlm_batch(g, 16, 128, 500).to(torch.int32),
                3,
                500,
                mask_prob=0.5,
                special_token_ids=(0, 1, 2),
            ),
            "seed": seeds[1],
        },
        {
            **call_case(
                "every ordinary token selected (mask_prob=1)",
                # ~90 selected positions: two seeds give the same draws with p < 1e-15
                _mlm_batch(g, 4, 32, 50),
                3,
                50,
                mask_prob=1.0,
                special_token_ids=(0, 1, 2),
            ),
            "seed": seeds[2],
        },
        {
            # mask_prob and special_token_ids omitted: 15%, and [CLS]/[SEP]/[PAD] ordinary
            **call_case(
                "defaults: mask_prob 0.15, no special tokens",
                _mlm_batch(g, 16, 64, 1000),
                3,
                1000,
            ),
            "seed": seeds[3],
        },
        {
            # ~325 random replacements over 8 ids: each id other than [MASK] is expected
            # ~35 times (check_mlm's coverage check needs m / 10 / V >= 40)
            **call_case(
                "8 ids, every position selected",
                _without(torch.randint(0, 7, (57, 57), generator=g, dtype=torch.int32), 3),
                3,
                8,
                mask_prob=1.0,
            ),
            "seed": seeds[4],
        },
    ]


MLM_POWER = (
    "Measured by simulation (a one-off script) over 200 grading seeds (1000..1199; every "
    "case of each seed, as grading runs them): the reference failed 0/200; each usual wrong "
    "answer failed 200/200: the Mistakes labels_everywhere, all_mask, no_keep, "
    "specials_selected, labels_corrupted; the mutants mlm_labels_everywhere, mlm_always_mask, "
    "mlm_specials_selected, mlm_ignores_generator, mlm_default_mask_prob, "
    "mlm_random_ids_skip_last, mlm_input_ids_masked_in_place; and the generic in_place, "
    "ignores:mask_prob, default:mask_prob (0.3), ignores:special_token_ids and "
    "default:special_token_ids ((0,)). Analytic bounds (check_mlm's 6-sigma thresholds): "
    "labels, specials, the generator, inputs changed in place and the skipped last id are "
    "exact checks (probability 1); all_mask is 27 sd and no_keep 18 sd away on the 8-id "
    "case (m = 3249 selected) and 9 sd on the mask_prob=0.5 case: missed with p < 1e-20; a "
    "default mask_prob of 0.3 is 13 sd away on the defaults case (1024 positions): missed "
    "with p ~ 3e-9. An honest answer fails a 6-sd check with p ~ 2e-9 each, 9 checks: "
    "< 2e-8; the coverage check (every id but [MASK] among ~325 random draws) with p < "
    "7 exp(-35); two seeds giving equal draws (the generator check) with p < 1e-15. "
    "Changed for this: the mask_prob=1 case grew from 2x8 to 4x32 tokens (with 2x8 the "
    "reference failed the generator check for 3 of 20 seeds), the driver now passes the "
    "case's own input_ids to the first call (an in-place change was invisible), and two cases "
    "were added (the defaults; 8 ids, for the uniform random replacements)."
)

MLM = Exercise(
    name="mask_tokens_for_mlm",
    points=2,
    summary="BERT's 80/10/10 corruption; labels -100 where not selected",
    make_cases=_mlm_cases,
    reference=lambda: ref.mask_tokens_for_mlm,
    driver=f"{PUBLIC}:mlm_draws",
    output_names=("inputs", "labels", "follows_generator"),
    tolerance=Tolerance(0.0, 0.0),
    checker=f"{PUBLIC}:check_mlm",
    mistakes=(
        Mistake(
            "labels_everywhere",
            "your labels hold the original id at every position: set them to -100 (ignored "
            "by the loss) wherever a position was not selected.",
            _mlm_variant("labels_everywhere"),
        ),
        Mistake(
            "all_mask",
            "you replace every selected token by [MASK]: BERT keeps 10% unchanged and "
            "replaces 10% by a random token, so the model cannot assume that only [MASK] "
            "positions matter.",
            _mlm_variant("all_mask"),
        ),
        Mistake(
            "no_keep",
            "you replace 80% by [MASK] and 20% by random tokens: 10% of the selected "
            "positions must keep their token.",
            _mlm_variant("no_keep"),
        ),
        Mistake(
            "specials_selected",
            "you select special tokens too: positions holding an id of special_token_ids are "
            "never selected.",
            _mlm_variant("specials_selected"),
        ),
        Mistake(
            "labels_corrupted",
            "your labels hold the corrupted inputs: the labels are the original ids, the "
            "tokens the model must recover.",
            _mlm_variant("labels_corrupted"),
        ),
    ),
    promises=(
        Promise("BERT's masked-language-model corruption, the 80/10/10 rule.", ALL_CASES),
        Promise(
            "Each position whose token is not special is selected independently with "
            "probability ``mask_prob``.",
            (
                "8 sequences of 64, mask_prob=0.15",
                "16 sequences of 128 (int32), mask_prob=0.5",
                "every ordinary token selected (mask_prob=1)",
                "defaults: mask_prob 0.15, no special tokens",
                "8 ids, every position selected",
            ),
        ),
        Promise(
            "A selected position becomes ``mask_token_id`` with probability 0.8, a token drawn "
            "uniformly from [0, vocab_size) with probability 0.1, and stays as it is with "
            "probability 0.1.",
            (
                "16 sequences of 128 (int32), mask_prob=0.5",
                "defaults: mask_prob 0.15, no special tokens",
                "8 ids, every position selected",
            ),
        ),
        Promise(
            "The labels hold the original token at the selected positions and -100 (the "
            "``ignore_index`` of ``F.cross_entropy``) everywhere else.",
            ALL_CASES,
        ),
        Promise(
            "Randomness, drawn from ``generator`` in this order, each with the shape of "
            "``input_ids`` on its device:",
            ALL_CASES,
        ),
        Promise(
            "0.8 <= u < 0.9: random token; else keep), ``torch.randint(vocab_size)`` (the "
            "random tokens).",
            why="the order of the draws is a suggestion (the next sentence): any order that "
            "gives the documented statistics passes; the 80/10/10 split itself is graded",
        ),
        Promise(
            "Only the statistics are graded, so another order of draws is fine.",
            why="says how the exercise is graded, not what the function does",
        ),
        Promise(
            "input_ids: integer tensor of token ids, shape (...), e.g. (B, L).",
            ("8 sequences of 64, mask_prob=0.15", "16 sequences of 128 (int32), mask_prob=0.5"),
        ),
        Promise("mask_token_id: the id of [MASK], in [0, vocab_size).", ALL_CASES),
        Promise(
            "vocab_size: the number of tokens, >= 1.",
            ("8 ids, every position selected", "16 sequences of 128 (int32), mask_prob=0.5"),
        ),
        Promise(
            "mask_prob: the probability of selecting a position, in [0, 1].",
            (
                "8 sequences of 64, mask_prob=0.15",
                "16 sequences of 128 (int32), mask_prob=0.5",
                "every ordinary token selected (mask_prob=1)",
                "defaults: mask_prob 0.15, no special tokens",
            ),
        ),
        Promise(
            "special_token_ids: ids never selected ([CLS], [SEP], padding...).",
            (
                "8 sequences of 64, mask_prob=0.15",
                "every ordinary token selected (mask_prob=1)",
                "defaults: mask_prob 0.15, no special tokens",
            ),
        ),
        Promise("generator: the source of randomness (on the device of input_ids).", ALL_CASES),
        Promise(
            "inputs: shape (...), same dtype as input_ids: the corrupted ids.",
            ("8 sequences of 64, mask_prob=0.15", "16 sequences of 128 (int32), mask_prob=0.5"),
        ),
        Promise(
            "labels: shape (...), same dtype: the original id where selected, else -100.",
            ("8 sequences of 64, mask_prob=0.15", "16 sequences of 128 (int32), mask_prob=0.5"),
        ),
    ),
    power=MLM_POWER,
)

# --------------------------------------------------------------------------------- GPT


class _WrongGPT(ref.GPT):
    positions = True
    final_norm = True
    tied = True
    probabilities = False
    causal = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.tied:
            self.lm_head.weight = torch.nn.Parameter(self.lm_head.weight.detach().clone())
        for block in self.blocks:
            block.causal = self.causal

    def forward(self, input_ids):
        L = input_ids.shape[1]
        x = self.tok_emb(input_ids)
        if self.positions:
            x = x + self.pos_emb(torch.arange(L))
        for block in self.blocks:
            x = block(x)
        if self.final_norm:
            x = self.ln_f(x)
        logits = self.lm_head(x)
        return logits.softmax(-1) if self.probabilities else logits


def _wrong_gpt(**flags: Any) -> type:
    return type("WrongGPT", (_WrongGPT,), flags)


INIT_LABEL = "the initial weights of a fresh 3-layer model"


def _gpt_cases(g: torch.Generator) -> list[Case]:
    a = {"vocab_size": 30, "d_model": 16, "n_layers": 2, "n_heads": 4, "max_seq_len": 12}
    b = {"vocab_size": 24, "d_model": 12, "n_layers": 1, "n_heads": 3, "max_seq_len": 6}
    b["d_ff"] = 20
    # built without loading weights: the initial weights' statistics are graded
    # (check_gpt); 64 positions and d_model 64 give every matrix at least 4096 entries
    c = {"vocab_size": 300, "d_model": 64, "n_layers": 3, "n_heads": 4, "max_seq_len": 64}
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    return [
        module_case("2 layers", ref.GPT, a, g, torch.randint(0, 30, (2, 9), generator=g)),
        module_case(
            "full length, d_ff=20", ref.GPT, b, g, torch.randint(0, 24, (3, 6), generator=g)
        ),
        {"label": INIT_LABEL, "init": c, "args": [], "kwargs": {}, "init_seed": seed},
    ]


GPT_POWER = (
    "Only the init case is random (the model's own initial draws, after "
    "torch.manual_seed(init_seed)); check_gpt accepts each parameter's std within 15% of the "
    "reference's and its mean within 15% of that std. Every matrix has >= 4096 entries, so an "
    "honest initialisation (any order of draws) is within 1.1% per sd: a false alarm needs a "
    "13-sd deviation (< 1e-30 over the 45 parameters). Usual wrong answers: PyTorch's default "
    "init (Linear std 1/sqrt(3*64) = 0.072 vs 0.02, Embedding std 1, biases not zero) and no "
    "residual scaling (0.02 vs 0.0082, mutants gpt_default_init, gpt_no_residual_scaling) are "
    "260% to 5000% off: failed with probability 1; the residual scale 1/sqrt(n_layers) instead "
    "of 1/sqrt(2 n_layers) is 41% off (> 30 sd): also failed with probability 1."
)

GPT = Exercise(
    name="GPT",
    points=3,
    summary="embeddings + positions, causal blocks, final norm, tied head",
    make_cases=_gpt_cases,
    reference=lambda: ref.GPT,
    driver=f"{PUBLIC}:gpt_forward_and_init",
    checker=f"{PUBLIC}:check_gpt",
    output_names=("logits", "n_parameters", "initial weights"),
    tolerance=Tolerance(atol=1e-4, rtol=1e-4),
    mistakes=(
        Mistake(
            "no_positions",
            "your logits match a model without position embeddings: add pos_emb(0..L-1) to "
            "the token embeddings, or the model cannot tell word order.",
            _wrong_gpt(positions=False),
        ),
        Mistake(
            "no_final_norm",
            "your logits match a model without the final layer norm: a pre-norm stack needs "
            "ln_f after the last block, before lm_head.",
            _wrong_gpt(final_norm=False),
        ),
        Mistake(
            "untied",
            "your model has vocab_size·d_model parameters too many: lm_head.weight must BE "
            "tok_emb.weight (self.lm_head.weight = self.tok_emb.weight), not a copy.",
            _wrong_gpt(tied=False),
        ),
        Mistake(
            "probabilities",
            "your model returns probabilities (a softmax of the logits): return the logits "
            "themselves; the loss and the samplers apply the softmax.",
            _wrong_gpt(probabilities=True),
        ),
        Mistake(
            "not_causal",
            "your logits match blocks without the causal mask: a language model's position t "
            "must not see the tokens after t (TransformerBlock(..., causal=True)).",
            _wrong_gpt(causal=False),
        ),
    ),
    promises=(
        Promise("A decoder-only transformer language model (GPT-2 style).", ALL_CASES),
        Promise(
            "logits = lm_head(ln_f(blocks(tok_emb(ids) + pos_emb(positions))))",
            ("2 layers", "full length, d_ff=20"),
        ),
        Promise("Submodules (these names are the state_dict keys):", ALL_CASES),
        Promise(
            "Weights start as in GPT-2: normal with std 0.02, biases zero, and the two "
            "projections that write into the residual stream (``attn.out_proj`` and "
            "``ff.fc2``) with std 0.02 / sqrt(2 n_layers).",
            (INIT_LABEL,),
        ),
        Promise("vocab_size: V, the number of tokens.", ALL_CASES),
        Promise(
            "d_model: the model width; divisible by n_heads.",
            why="a precondition on the caller's arguments (the docstring promises no error)",
        ),
        Promise("n_layers: the number of blocks.", ALL_CASES),
        Promise("n_heads: attention heads per block.", ("2 layers", "full length, d_ff=20")),
        Promise(
            "max_seq_len: the longest input (the number of learned positions).",
            ("full length, d_ff=20", INIT_LABEL),
        ),
        Promise(
            "d_ff: the MLP width, 4 * d_model when None.",
            ("2 layers", "full length, d_ff=20", INIT_LABEL),
        ),
        Promise("Next-token logits at every position.", ("2 layers", "full length, d_ff=20")),
        Promise(
            "input_ids: integer tensor of shape (B, L), L <= max_seq_len.",
            ("2 layers", "full length, d_ff=20"),
        ),
        Promise(
            "logits: shape (B, L, vocab_size); position t depends on ids 0..t only.",
            ("2 layers", "full length, d_ff=20"),
        ),
    ),
    power=GPT_POWER,
)

# ---------------------------------------------------------------------- EncoderDecoder


class _WrongEncDec(ref.EncoderDecoder):
    decoder_causal = True
    encoder_causal = False
    uses_memory = True
    enc_norm = True
    cross_residual = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for block in self.encoder:
            block.causal = self.encoder_causal

    def encode(self, src_ids):
        x = self.tok_emb(src_ids) + self.pos_emb(torch.arange(src_ids.shape[1]))
        for block in self.encoder:
            x = block(x)
        return self.ln_enc(x) if self.enc_norm else x

    def decode(self, tgt_ids, memory):
        L = tgt_ids.shape[1]
        mask = ref.causal_mask(L) if self.decoder_causal else None
        y = self.tok_emb(tgt_ids) + self.pos_emb(torch.arange(L))
        for layer in self.decoder:
            y = y + layer["self_attn"](layer["ln1"](y), mask=mask)
            h = layer["ln2"](y)
            cross = layer["cross_attn"](h, context=memory if self.uses_memory else None)
            y = y + cross if self.cross_residual else cross
            y = y + layer["ff"](layer["ln3"](y))
        return self.lm_head(self.ln_dec(y))


def _wrong_encdec(**flags: Any) -> type:
    return type("WrongEncoderDecoder", (_WrongEncDec,), flags)


def _encdec_cases(g: torch.Generator) -> list[Case]:
    E = ref.EncoderDecoder
    a = {
        "vocab_size": 24,
        "d_model": 16,
        "n_heads": 4,
        "n_encoder_layers": 2,
        "n_decoder_layers": 1,
        "max_seq_len": 10,
    }
    b = {**a, "vocab_size": 20, "d_model": 12, "n_heads": 3, "n_encoder_layers": 1}
    b.update(n_decoder_layers=2, d_ff=20)
    cases = [
        module_case(
            "source 9, target 6",
            E,
            a,
            g,
            torch.randint(0, 24, (2, 9), generator=g),
            torch.randint(0, 24, (2, 6), generator=g),
        ),
        module_case(
            "source 5, target 7, d_ff=20",
            E,
            b,
            g,
            torch.randint(0, 20, (3, 5), generator=g),
            torch.randint(0, 20, (3, 7), generator=g),
        ),
    ]
    # decode(tgt_ids, memory) is also graded on a memory of another length than the source
    for case, (B, S, d) in zip(cases, ((2, 4, 16), (3, 8, 12)), strict=True):
        case["memory"] = randn(g, B, S, d)
    return cases


ENCDEC = Exercise(
    name="EncoderDecoder",
    points=3,
    summary="bidirectional encoder, causal decoder with cross-attention",
    make_cases=_encdec_cases,
    reference=lambda: ref.EncoderDecoder,
    driver=f"{PUBLIC}:encoder_decoder_parts",
    output_names=("logits", "n_parameters", "encode(src_ids)", "decode(tgt_ids, memory)"),
    tolerance=Tolerance(atol=1e-4, rtol=1e-4),
    mistakes=(
        Mistake(
            "decoder_not_causal",
            "your logits match a decoder whose self-attention has no causal mask: target "
            "position t must not see the target tokens after t.",
            _wrong_encdec(decoder_causal=False),
        ),
        Mistake(
            "encoder_causal",
            "your logits match a causal encoder: the encoder reads the whole source at once, "
            "every position sees every other (TransformerBlock(..., causal=False)).",
            _wrong_encdec(encoder_causal=True),
        ),
        Mistake(
            "memory_ignored",
            "your logits match a cross-attention that attends to the target itself: its keys "
            "and values come from the encoder's output (context=memory).",
            _wrong_encdec(uses_memory=False),
        ),
        Mistake(
            "no_encoder_norm",
            "your logits match memory taken before ln_enc: normalise the encoder's output "
            "with ln_enc before the decoder reads it.",
            _wrong_encdec(enc_norm=False),
        ),
        Mistake(
            "cross_no_residual",
            "your logits match a cross-attention that replaces the decoder's stream instead "
            "of adding to it: y = y + cross_attn(ln2(y), context=memory).",
            _wrong_encdec(cross_residual=False),
        ),
    ),
    promises=(
        Promise(
            "The original transformer: an encoder reads the source, a decoder writes the target.",
            ALL_CASES,
        ),
        Promise("The encoder is a stack of bidirectional (non-causal) pre-norm blocks.", ALL_CASES),
        Promise("Each decoder layer has three pre-norm sublayers", ALL_CASES),
        Promise(
            "y = y + self_attn(ln1(y), mask=causal) y = y + cross_attn(ln2(y), context=memory) "
            "y = y + ff(ln3(y))",
            ALL_CASES,
        ),
        Promise(
            "Source and target share one vocabulary, and as in the 2017 paper one matrix serves "
            "as both embeddings and the output layer.",
            ALL_CASES,
        ),
        Promise(
            "Positions are learned (the paper found them as good as its sinusoids) and shared "
            "by both sides.",
            ALL_CASES,
        ),
        Promise("Submodules (these names are the state_dict keys):", ALL_CASES),
        Promise("vocab_size: V, shared by source and target.", ALL_CASES),
        Promise(
            "d_model: the model width; divisible by n_heads.",
            why="a precondition on the caller's arguments (the docstring promises no error)",
        ),
        Promise("n_heads: attention heads in every attention.", ALL_CASES),
        Promise("n_encoder_layers: encoder blocks, >= 1.", ALL_CASES),
        Promise("n_decoder_layers: decoder layers, >= 1.", ALL_CASES),
        Promise("max_seq_len: the longest source or target.", ALL_CASES),
        Promise(
            "d_ff: the MLP width, 4 * d_model when None.",
            ("source 9, target 6", "source 5, target 7, d_ff=20"),
        ),
        Promise("Read the source.", ALL_CASES),
        Promise("src_ids: integer tensor of shape (B, S), S <= max_seq_len.", ALL_CASES),
        Promise("memory: shape (B, S, d_model), the normalised output of the encoder.", ALL_CASES),
        Promise("Predict the next target token at every target position.", ALL_CASES),
        Promise("tgt_ids: integer tensor of shape (B, L), L <= max_seq_len.", ALL_CASES),
        Promise("memory: shape (B, S, d_model), the output of ``encode``.", ALL_CASES),
        Promise(
            "logits: shape (B, L, vocab_size); position t sees target ids 0..t and the whole "
            "source.",
            ALL_CASES,
        ),
        Promise("decode(tgt_ids, encode(src_ids)).", ALL_CASES),
        Promise("src_ids: integer tensor of shape (B, S).", ALL_CASES),
        Promise(
            "tgt_ids: integer tensor of shape (B, L) (teacher forcing: the target shifted "
            "right, starting with a start token).",
            ALL_CASES,
        ),
        Promise("logits: shape (B, L, vocab_size).", ALL_CASES),
    ),
)

# ------------------------------------------------------------------------------- scale


def _count_variant(kind: str) -> Callable:
    def count(n_layers, d_model, vocab_size=50257, n_ctx=2048):
        d = d_model
        if kind == "approx":
            return 12 * n_layers * d * d
        per_layer = 12 * d * d + (0 if kind == "no_small" else 13 * d)
        total = vocab_size * d + n_layers * per_layer
        if kind != "no_positions":
            total += n_ctx * d
        if kind == "untied":
            total += vocab_size * d
        if kind not in ("no_final_norm", "no_small"):
            total += 2 * d
        return total

    return count


GPT3_TABLE = ((12, 768), (24, 1024), (24, 1536), (24, 2048), (32, 2560), (32, 4096), (40, 5140))


def _count_cases(g: torch.Generator) -> list[Case]:
    L, d = pick(g, list(GPT3_TABLE), 1)[0]
    small_d = 16 * int(torch.randint(2, 9, (1,), generator=g))
    return [
        call_case("GPT-3 175B", 96, 12288),
        call_case(f"GPT-3 with {L} layers of width {d}", L, d),
        call_case(
            "small: 3 layers, vocab_size=1000, n_ctx=128", 3, small_d, vocab_size=1000, n_ctx=128
        ),
    ]


COUNT = Exercise(
    name="gpt_param_count",
    points=1,
    summary="embeddings + L(12d² + 13d) + final norm, tied head",
    make_cases=_count_cases,
    reference=lambda: ref.gpt_param_count,
    output_names=("n_params",),
    tolerance=Tolerance(0.0, 0.0),
    mistakes=(
        Mistake(
            "approx",
            "your count matches 12·L·d², the well-known approximation: this exercise wants "
            "the exact count, with embeddings, biases and layer norms.",
            _count_variant("approx"),
        ),
        Mistake(
            "no_positions",
            "your count leaves out the learned position embeddings (n_ctx·d).",
            _count_variant("no_positions"),
        ),
        Mistake(
            "untied",
            "your count has the vocabulary matrix twice: the output layer is tied to the "
            "token embeddings and adds no parameters.",
            _count_variant("untied"),
        ),
        Mistake(
            "no_small",
            "your count leaves out the biases and layer norms (13d per block and 2d for the "
            "final norm).",
            _count_variant("no_small"),
        ),
        Mistake(
            "no_final_norm",
            "your count leaves out the final layer norm (2d parameters).",
            _count_variant("no_final_norm"),
        ),
    ),
    promises=(
        Promise("The number of parameters of a GPT-2/GPT-3 style model, exactly.", ALL_CASES),
        Promise(
            "Token embeddings V d (shared with the output layer, so counted once) and learned "
            "positions n_ctx d;",
            ALL_CASES,
        ),
        Promise("V d + n_ctx d + n_layers (12 d^2 + 13 d) + 2 d.", ALL_CASES),
        Promise(
            "Equals ``sum(p.numel() for p in GPT(V, d, n_layers, h, n_ctx).parameters())``.",
            ALL_CASES,
        ),
        Promise("n_layers: the number of blocks, >= 1.", ALL_CASES),
        Promise("d_model: the model width d, >= 1.", ALL_CASES),
        Promise(
            "vocab_size: V (GPT-2's and GPT-3's byte-level BPE has 50257 tokens).",
            ("GPT-3 175B", "small: 3 layers, vocab_size=1000, n_ctx=128"),
        ),
        Promise(
            "n_ctx: the number of learned positions (2048 for GPT-3).",
            ("GPT-3 175B", "small: 3 layers, vocab_size=1000, n_ctx=128"),
        ),
        Promise("The parameter count, an int.", ALL_CASES),
    ),
)


def _flops_cases(g: torch.Generator) -> list[Case]:
    n = float(torch.randint(1, 1000, (1,), generator=g)) * 1e7
    return [
        call_case("GPT-3: 175e9 parameters, 300e9 tokens", 175e9, 300e9),
        call_case("Chinchilla: 70e9 parameters, 1.4e12 tokens", 70e9, 1.4e12),
        call_case(f"{n:g} parameters, 20 tokens each", n, 20 * n),
        call_case("no tokens (D = 0)", n, 0.0),
        call_case("integer arguments: 1000 parameters, 20000 tokens", 1000, 20000),
    ]


FLOPS = Exercise(
    name="training_flops",
    points=1,
    summary="C = 6 N D",
    make_cases=_flops_cases,
    reference=lambda: ref.training_flops,
    checker=f"{PUBLIC}:check_float",
    output_names=("flops",),
    tolerance=Tolerance(atol=0.0, rtol=1e-9),
    mistakes=(
        Mistake(
            "forward_only",
            "your answer is 2·N·D, the forward pass alone: training also runs the backward "
            "pass, about twice the forward, so C = 6·N·D.",
            lambda n_params, n_tokens: 2.0 * n_params * n_tokens,
        ),
        Mistake(
            "backward_once",
            "your answer is 4·N·D: the backward pass costs about twice the forward (gradients "
            "for the activations and for the weights), so C = 2ND + 4ND = 6·N·D.",
            lambda n_params, n_tokens: 4.0 * n_params * n_tokens,
        ),
        Mistake(
            "no_constant",
            "your answer is N·D: each parameter costs about 6 FLOPs per token in training.",
            lambda n_params, n_tokens: float(n_params) * n_tokens,
        ),
    ),
    promises=(
        Promise("The compute of training, C = 6 N D floating-point operations.", ALL_CASES),
        Promise(
            "Per token and parameter: 2 for the forward pass (a multiply and an add) and 4 for "
            "the backward pass (gradients with respect to activations and weights).",
            ALL_CASES,
        ),
        Promise("n_params: N, the number of parameters, > 0.", ALL_CASES),
        Promise(
            "n_tokens: D, the number of training tokens, >= 0.",
            ("no tokens (D = 0)", "GPT-3: 175e9 parameters, 300e9 tokens"),
        ),
        Promise(
            "C in FLOPs, a float.",
            ("integer arguments: 1000 parameters, 20000 tokens", "no tokens (D = 0)"),
        ),
    ),
)


def _chinchilla_variant(kind: str) -> Callable:
    def optimal(compute_flops, tokens_per_param=20.0):
        r = 20.0 if kind == "ratio_ignored" else tokens_per_param
        per = 2.0 if kind == "two" else 6.0
        n = compute_flops / (per * r) if kind == "no_sqrt" else math.sqrt(compute_flops / (per * r))
        return (r * n, n) if kind == "swapped" else (n, r * n)

    return optimal


def _chinchilla_cases(g: torch.Generator) -> list[Case]:
    c = float(torch.randint(1, 100, (1,), generator=g)) * 1e21
    return [
        call_case("Chinchilla's budget, 6 * 70e9 * 1.4e12", 6 * 70e9 * 1.4e12),
        call_case(f"C = {c:g}", c),
        call_case("tokens_per_param=10", 1e22, tokens_per_param=10.0),
    ]


CHINCHILLA = Exercise(
    name="chinchilla_optimal",
    points=1,
    summary="N = sqrt(C / (6 r)), D = r N",
    make_cases=_chinchilla_cases,
    reference=lambda: ref.chinchilla_optimal,
    output_names=("n_params", "n_tokens"),
    tolerance=Tolerance(atol=0.0, rtol=1e-9),
    mistakes=(
        Mistake(
            "two",
            "your answer solves C = 2·N·D (forward only): training costs C = 6·N·D.",
            _chinchilla_variant("two"),
        ),
        Mistake(
            "ratio_ignored",
            "your answer always uses 20 tokens per parameter: use `tokens_per_param`.",
            _chinchilla_variant("ratio_ignored"),
        ),
        Mistake(
            "swapped",
            "your answer returns (n_tokens, n_params): the first value is the number of "
            "parameters N, the second the number of tokens D = tokens_per_param·N.",
            _chinchilla_variant("swapped"),
        ),
        Mistake(
            "no_sqrt",
            "your answer misses the square root: with D = r·N, C = 6·r·N², so N = sqrt(C / (6 r)).",
            _chinchilla_variant("no_sqrt"),
        ),
    ),
    promises=(
        Promise(
            "The compute-optimal model size and data for a budget (Chinchilla's rule of thumb).",
            ALL_CASES,
        ),
        Promise(
            "Train on D = tokens_per_param * N tokens; with C = 6 N D this gives N = sqrt(C / "
            "(6 * tokens_per_param)) and D = tokens_per_param * N.",
            ALL_CASES,
        ),
        Promise("compute_flops: C, the training budget in FLOPs, > 0.", ALL_CASES),
        Promise(
            "tokens_per_param: D / N, about 20 by the Chinchilla paper, > 0.",
            ("Chinchilla's budget, 6 * 70e9 * 1.4e12", "tokens_per_param=10"),
        ),
        Promise("n_params: N, a float.", ALL_CASES),
        Promise("n_tokens: D, a float.", ALL_CASES),
    ),
)

SPEC = ChapterSpec(
    number="02",
    slug="architectures",
    title="Architectures, from n-grams to GPT",
    # in the order of the notebook
    exercises=(NGRAM, PAIRS, SGNS, RNN, GRU, ENCDEC, MLM, GPT, COUNT, FLOPS, CHINCHILLA),
)
