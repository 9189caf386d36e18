"""Grading spec of chapter 04 (training): inputs, tolerances and the usual mistakes.

Each exercise names the function or class of solutions/training.py it grades.
Several need a driver of their own (autograder/public/training.py): the
tokenizer is trained and then used, the optimizer runs a few steps on a fixed
problem, the training loop trains a bigram model with an optimizer that records
what the loop did, and the distributed exercises run on 2 or 3 forked
processes joined in a gloo process group. ``get_batch`` is judged by a checker
that explains what is wrong with the windows before comparing them with the
documented draw. Hidden from students: it imports the reference.
"""

from __future__ import annotations

import math
import re
import sys
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F

import solutions.training as ref
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

PUBLIC = "autograder.public.training"


def _pick(g: torch.Generator, items: list | tuple | str) -> Any:
    return items[int(torch.randint(len(items), (1,), generator=g))]


WORDS = (
    "the model reads text one token at a time and learns to predict the next one from "
    "all the tokens before it while the optimizer moves every weight a little"
).split()

# --------------------------------------------------------------------- normalize_text


def _normalize_cases(g: torch.Generator) -> list[Case]:
    odd = ["ﬁne", "ﬂow", "Ｔｏｋｅｎ", "x²", "cafe\u0301", "Ⅻ", "①", "naïve", "½"]
    spaces = [" ", "  ", "\t", "\n", "\u00a0", " \n\t ", "\u3000", "\r\n"]
    cases = []
    for label, n in (("mixed words and spaces", 8), ("longer text", 14)):
        parts = ["  " if label == "longer text" else "\n"]
        for i in range(n):
            parts.append(_pick(g, odd) if i % 2 else _pick(g, WORDS))
            parts.append(_pick(g, spaces))
        cases.append(call_case(label, "".join(parts)))
    cases.append(call_case("only whitespace", " \t\n\u00a0 "))
    cases.append(call_case("compatibility characters only", "ﬁ ｆｉ ²³ ℌ ﬀ cafe\u0301"))
    cases.append(call_case("the empty string", ""))
    return cases


def _normalize_variant(form: str = "NFKC", spaces: str = "all", strip: bool = True) -> Callable:
    def normalize(text):
        if form:
            text = unicodedata.normalize(form, text)
        text = re.sub(r"\s+" if spaces == "all" else " +", " ", text)
        return text.strip() if strip else text

    return normalize


NORMALIZE = Exercise(
    name="normalize_text",
    points=1,
    summary="Unicode NFKC, then every run of whitespace becomes one space",
    make_cases=_normalize_cases,
    reference=lambda: ref.normalize_text,
    tolerance=Tolerance(0.0, 0.0),
    mistakes=(
        Mistake(
            "nfc",
            "your text matches NFC normalisation: use NFKC, which also maps compatibility "
            "characters to their plain form (ﬁ -> fi, full-width Ｔ -> T, ² -> 2).",
            _normalize_variant(form="NFC"),
        ),
        Mistake(
            "no_unicode",
            "your text matches collapsing whitespace without Unicode normalisation: apply "
            'unicodedata.normalize("NFKC", text) first.',
            _normalize_variant(form=""),
        ),
        Mistake(
            "spaces_only",
            "your text matches collapsing runs of spaces only: tabs, line breaks and Unicode "
            "spaces are whitespace too (str.split() with no argument splits on all of them).",
            _normalize_variant(spaces="spaces"),
        ),
        Mistake(
            "no_strip",
            "your text keeps a space at the start or the end: remove leading and trailing "
            "whitespace too.",
            _normalize_variant(strip=False),
        ),
    ),
    promises=(
        Promise(
            "Unicode NFKC normalisation, then every run of whitespace becomes one space.",
            ("mixed words and spaces", "longer text", "compatibility characters only"),
        ),
        Promise(
            "NFKC maps compatibility characters to their plain form",
            ("mixed words and spaces", "longer text", "compatibility characters only"),
        ),
        Promise(
            "Whitespace is what ``str.split()`` splits on",
            ("mixed words and spaces", "longer text", "only whitespace"),
        ),
        Promise("text: any string.", ("the empty string", "only whitespace", "longer text")),
        Promise("The normalised string.", ALL_CASES),
    ),
)

# ------------------------------------------------------------------------ deduplicate


def _words(g: torch.Generator, n: int, prefix: str = "w") -> list[str]:
    return [f"{prefix}{int(i)}" for i in torch.randint(1000, (n,), generator=g)]


def _dedup_cases(g: torch.Generator) -> list[Case]:
    base = _words(g, 40)
    near = list(base)
    near[20] = "changed"  # 3 of 38 shingles change: Jaccard 35/41 = 0.85
    other = _words(g, 30, "v")
    reordered = base[::-1]  # the same words, other shingles
    short = " ".join(_words(g, 2, "s"))
    other_short = " ".join(_words(g, 2, "t"))
    docs1 = [" ".join(base), short, " ".join(other), " ".join(near), short, " ".join(reordered)]
    a, b, c, d, e, f = (_words(g, 1, x)[0] for x in "abcdef")
    # shingle_size=1: A = {a,b,c,d}; B = {a,b,c,e} (J(A,B) = 3/5); C = {a,b,e,f}
    # (J(A,C) = 2/6, J(B,C) = 3/5): C is kept because B, its near-duplicate, was dropped.
    chain = [f"{a} {b} {c} {d}", f"{a} {b} {c} {e}", f"{a} {b} {e} {f}", f"{a} {b} {c} {d}"]
    # shingle_size=1: {a,b,c} against {a,b,c,d,e,f}: Jaccard exactly 0.5.
    edge = [f"{a} {b} {c}", f"{f} {e} {d} {c} {b} {a}", f"{d} {e}"]
    return [
        call_case("duplicates, a near-duplicate and a reordered text", docs1),
        call_case("a chain of near-duplicates, shingle_size=1", chain, 0.5, shingle_size=1),
        call_case("similarity exactly at the threshold, shingle_size=1", edge, 0.5, 1),
        call_case("threshold 0.9", [docs1[3], docs1[0], docs1[2]], threshold=0.9),
        # the default shingle_size 3: Jaccard 35/41 = 0.854 >= 0.85 (dropped); with 4-word
        # shingles it would be 33/41 = 0.805 (kept)
        call_case(
            "a near-duplicate at 0.854, the default shingle_size",
            [docs1[0], docs1[3]],
            threshold=0.85,
        ),
        call_case(
            DEDUP_SHORT,
            [short, "", other_short, short.replace(" ", "\t"), "", " ".join(other[:3])],
        ),
    ]


# Documents of fewer words than shingle_size (one shingle: all their words) and an empty one
# (no shingle): the same two words with a tab between them have the same single shingle, a
# near-duplicate (Jaccard 1) though not an exact one; different short documents share nothing.
DEDUP_SHORT = "documents shorter than shingle_size and an empty one"


DEDUP_CASES = (
    "duplicates, a near-duplicate and a reordered text",
    "a chain of near-duplicates, shingle_size=1",
    "similarity exactly at the threshold, shingle_size=1",
    "threshold 0.9",
    "a near-duplicate at 0.854, the default shingle_size",
)


def _dedup_variant(
    against: str = "kept", strict: bool = False, unit: str = "shingles", keep: str = "first"
) -> Callable:
    def deduplicate(docs, threshold=0.8, shingle_size=3):
        def shingles(doc):
            w = doc.split()
            if unit == "words":
                return set(w)
            n = max(len(w) - shingle_size + 1, 1) if w else 0
            return {tuple(w[i : i + shingle_size]) for i in range(n)}

        order = list(reversed(docs)) if keep == "last" else list(docs)
        kept, seen = [], []
        for doc in order:
            s = shingles(doc)
            dup = False
            for other_doc, other in seen:
                union = len(s | other)
                sim = len(s & other) / union if union else float(doc == other_doc)
                if (sim > threshold) if strict else (sim >= threshold):
                    dup = True
                    break
            if against == "all":
                seen.append((doc, s))
            if not dup:
                kept.append(doc)
                if against == "kept":
                    seen.append((doc, s))
        return list(reversed(kept)) if keep == "last" else kept

    return deduplicate


DEDUP = Exercise(
    name="deduplicate",
    points=2,
    summary="drop exact and near-duplicates (Jaccard of word shingles), keep the first",
    make_cases=_dedup_cases,
    reference=lambda: ref.deduplicate,
    tolerance=Tolerance(0.0, 0.0),
    mistakes=(
        Mistake(
            "against_all",
            "your answer matches comparing each document with every earlier document, "
            "dropped ones included: compare it only with the documents KEPT so far (a "
            "document similar only to a dropped one stays).",
            _dedup_variant(against="all"),
        ),
        Mistake(
            "strict_threshold",
            "your answer matches a strict comparison: a similarity equal to the threshold "
            "counts as a duplicate (>= threshold).",
            _dedup_variant(strict=True),
        ),
        Mistake(
            "word_sets",
            "your answer matches comparing sets of single words: the shingles are runs of "
            "shingle_size consecutive words, so the same words in another order are a "
            "different text.",
            _dedup_variant(unit="words"),
        ),
        Mistake(
            "keep_last",
            "your answer matches keeping the last of a group of duplicates: keep the first "
            "occurrence.",
            _dedup_variant(keep="last"),
        ),
    ),
    promises=(
        Promise(
            "Drop exact and near-duplicate documents, keeping the first occurrence.",
            (DEDUP_CASES[0], DEDUP_SHORT),
        ),
        Promise(
            "A document's shingles are the set of its runs of ``shingle_size``",
            (DEDUP_CASES[0], DEDUP_CASES[4]),
        ),
        Promise(
            "a document with fewer words than that has one shingle, all of its words",
            (DEDUP_SHORT,),
        ),
        Promise("is >= ``threshold``", (DEDUP_CASES[2], DEDUP_CASES[4])),
        Promise("a near-duplicate of, a document *kept* so far", (DEDUP_CASES[1],)),
        Promise("docs: the documents, in order.", ALL_CASES),
        Promise(
            "threshold: the similarity from which a document counts as a duplicate",
            (DEDUP_CASES[0], DEDUP_CASES[2], DEDUP_CASES[3]),
        ),
        Promise(
            "shingle_size: the number of words in a shingle (>= 1).",
            (DEDUP_CASES[1], DEDUP_CASES[4]),
        ),
        Promise("The kept documents, in their original order.", ALL_CASES),
    ),
)

# ----------------------------------------------------------------------- BPETokenizer

GPT2_LIKE = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
ROUNDTRIP = ["héllo wörld € 😀 日本語", "", "tab\tand\nnewline  ", "ﬁ x² cafe\u0301"]


BPE_CASES = (
    "train on a text with tied pairs, no pattern, vocab_size=270",
    "train with a GPT-2-like chunking pattern, vocab_size=300",
    "built from the merges [(98, 99), (97, 98), (256, 97), (97, 257), (99, 99)]",
    "train on 'aaabcbc' until no pair is left (vocab_size=300); merge_pair",
)


def _bpe_cases(g: torch.Generator) -> list[Case]:
    # Ties: "xy" and "ab" occur equally often and "xy" comes first; the smallest pair wins.
    words = [_pick(g, ["ab", "xy", "ba", "yx", "aab"]) for _ in range(30)]
    text1 = "xyxy abab " + "".join(words) + " xyab" * 3
    text2 = " ".join(_pick(g, WORDS) for _ in range(60)) + ". The end, isn't it?"
    merges = [(98, 99), (97, 98), (256, 97), (97, 257), (99, 99)]  # "bc", "ab", "bca", "aab", "cc"
    return [
        {
            "label": "train on a text with tied pairs, no pattern, vocab_size=270",
            "text": text1,
            "vocab_size": 270,
            "encode": [text1[:30], "yxba xyab!"],
            "decode": [[120, 121, 32], [0xE2, 0x82], [0xE2, 0x82, 0xAC, 97]],
            "roundtrip": ROUNDTRIP,
        },
        {
            "label": "train with a GPT-2-like chunking pattern, vocab_size=300",
            "text": text2,
            "pattern": GPT2_LIKE,
            "vocab_size": 300,
            "encode": [text2[:50], "the next token, isn't it"],
            "decode": [[116, 104, 101]],
            "roundtrip": ROUNDTRIP,
        },
        {
            "label": "built from the merges [(98, 99), (97, 98), (256, 97), (97, 257), (99, 99)]",
            "merges": [list(m) for m in merges],
            "encode": ["abc", "abcabca", "aabcc", "cab"],
            "decode": [[257, 256, 0xE2, 0x82, 0xAC], [259, 258, 260]],
            "roundtrip": ROUNDTRIP,
        },
        {
            # (a, a) twice in "aaa" (overlapping) ties (b, c): the smallest pair goes first;
            # five merges leave one token, so training stops long before vocab_size.
            "label": BPE_CASES[3],
            "text": "aaabcbc",
            "vocab_size": 300,
            "encode": ["aaabcbc", "aa", "bcb"],
            "decode": [[256, 97]],
            "roundtrip": ROUNDTRIP[:2],
            "merge_pair": [
                [[97, 97, 97], [97, 97], 256],
                [[5, 6, 5, 6, 6, 5], [5, 6], 300],
                [[], [1, 2], 256],
                [[1], [1, 2], 256],
                [[2, 1, 2], [1, 2], 257],
            ],
        },
    ]


class _WrongBPE(ref.BPETokenizer):
    """Reference tokenizer with one wrong step, chosen by flags."""

    ties = "smallest"  # "smallest", "first_seen", "largest"
    split = True  # train honours the chunking pattern
    encode_order = "rank"  # "rank", "left_to_right"
    per_token_decode = False

    @classmethod
    def train(cls, text, vocab_size, pattern=None):
        chunks = re.findall(pattern, text) if pattern is not None and cls.split else [text]
        seqs = [list(c.encode("utf-8")) for c in chunks]
        merges = []
        for new_id in range(256, vocab_size):
            counts: Counter = Counter()
            for s in seqs:
                for pair in zip(s[:-1], s[1:], strict=True):
                    counts[pair] += 1
            if not counts:
                break
            best = max(counts.values())
            tied = [p for p, n in counts.items() if n == best]  # in order of first occurrence
            pair = {"smallest": min(tied), "largest": max(tied), "first_seen": tied[0]}[cls.ties]
            merges.append(pair)
            seqs = [cls.merge_pair(s, pair, new_id) for s in seqs]
        return cls(merges, pattern)

    def encode(self, text):
        if self.encode_order == "rank":
            return super().encode(text)
        chunks = re.findall(self.pattern, text) if self.pattern is not None else [text]
        out = []
        for chunk in chunks:
            ids = list(chunk.encode("utf-8"))
            while True:
                pairs = [p for p in zip(ids[:-1], ids[1:], strict=True) if p in self.merges]
                if not pairs:
                    break
                ids = self.merge_pair(ids, pairs[0], self.merges[pairs[0]])
            out += ids
        return out

    def decode(self, ids):
        if not self.per_token_decode:
            return super().decode(ids)
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return "".join(self.vocab[i].decode("utf-8", errors="replace") for i in ids)


def _wrong_bpe(**flags: Any) -> type:
    return type("WrongBPE", (_WrongBPE,), flags)


class _OverlappingBPE(ref.BPETokenizer):
    """The reference, but merge_pair steps one position after replacing a pair (a, a),
    so an occurrence overlapping the last one is replaced too."""

    @staticmethod
    def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
                out.append(new_id)
                i += 1 if pair[0] == pair[1] else 2
            else:
                out.append(ids[i])
                i += 1
        return out


BPE = Exercise(
    name="BPETokenizer",
    points=3,
    summary="byte-level BPE: train the merges, encode, decode",
    make_cases=_bpe_cases,
    reference=lambda: ref.BPETokenizer,
    driver=f"{PUBLIC}:bpe_methods",
    output_names=(
        "merges",
        "encoded",
        "decoded",
        "roundtrip",
        "decoded from a 1-D tensor",
        "vocab",
        "pattern attribute",
        "merge_pair",
    ),
    tolerance=Tolerance(0.0, 0.0),
    mistakes=(
        Mistake(
            "ties_first_seen",
            "your merges match breaking ties between equally frequent pairs by their first "
            "occurrence (what max() over a Counter does): break ties by the smallest pair, "
            "min over the tied (a, b).",
            _wrong_bpe(ties="first_seen"),
        ),
        Mistake(
            "ties_largest",
            "your merges match breaking ties by the largest pair: take the smallest (a, b) "
            "among the most frequent pairs.",
            _wrong_bpe(ties="largest"),
        ),
        Mistake(
            "pattern_ignored",
            "your merges match counting pairs across chunk boundaries: with a pattern, split "
            "the text with re.findall(pattern, text) and count pairs inside each chunk only.",
            _wrong_bpe(split=False),
        ),
        Mistake(
            "encode_left_to_right",
            "your ids match merging the leftmost pair that is a merge: at each step merge the "
            "pair with the smallest new id (the earliest learned merge), wherever it is.",
            _wrong_bpe(encode_order="left_to_right"),
        ),
        Mistake(
            "decode_per_token",
            "your text matches decoding each token on its own: a character's UTF-8 bytes may "
            "be split over several tokens, so join all the bytes first, then decode once.",
            _wrong_bpe(per_token_decode=True),
        ),
        Mistake(
            "merge_pair_overlapping",
            "your ids match merge_pair replacing occurrences that overlap: after replacing the "
            "pair at positions i and i + 1, go on from i + 2, so with the pair (a, a) the ids "
            "[a, a, a] become [new_id, a], not [new_id, new_id, a].",
            _OverlappingBPE,
        ),
    ),
    promises=(
        Promise("Byte-level byte-pair encoding (BPE), trained from scratch.", ALL_CASES),
        Promise("Ids 0..255 are the 256 byte values", ALL_CASES),
        Promise("merge i joins an adjacent pair of ids (a, b) into the new id 256 + i", ALL_CASES),
        Promise(
            "merges never cross a chunk boundary",
            (BPE_CASES[0], BPE_CASES[1]),
        ),
        Promise("merges: dict {(a, b): new_id}, in the order the merges were learned", ALL_CASES),
        Promise("vocab: dict {id: bytes}, the bytes of every id.", ALL_CASES),
        Promise("pattern: the chunking regular expression, or None.", (BPE_CASES[0], BPE_CASES[1])),
        Promise("merges: the learned pairs in order; pair i becomes id 256 + i.", (BPE_CASES[2],)),
        Promise("The token ids of ``text``.", ALL_CASES),
        Promise("the pair with the smallest new id (the earliest merge)", (BPE_CASES[2],)),
        Promise("replaying every merge in training order", (BPE_CASES[2],)),
        Promise("text: any string of Unicode characters.", ALL_CASES),
        Promise("The ids, a list of ints in [0, len(vocab)).", ALL_CASES),
        Promise("The text of ``ids``: their bytes joined, read as UTF-8.", ALL_CASES),
        Promise("become U+FFFD, the replacement character", (BPE_CASES[0],)),
        Promise("decode(encode(s)) == s.", ALL_CASES),
        Promise("ids: a list of ids, or a 1-D integer tensor.", ALL_CASES),
        Promise("The text.", ALL_CASES),
        # merge_pair (graded directly on the last case, and through train on every trained one)
        Promise("Replace every occurrence of ``pair`` in ``ids`` by ``new_id``", BPE_CASES[::3]),
        Promise("Occurrences do not overlap", (BPE_CASES[3],)),
        Promise("ids: a list of token ids.", (BPE_CASES[3],)),
        Promise("pair: the two adjacent ids to join.", (BPE_CASES[3],)),
        Promise("new_id: the id that replaces them.", (BPE_CASES[3],)),
        Promise("A new list of ids.", (BPE_CASES[3],)),
        # train
        Promise("Learn ``vocab_size - 256`` merges from ``text``.", BPE_CASES[:2]),
        Promise("the most frequent adjacent pair", (*BPE_CASES[:2], BPE_CASES[3])),
        Promise("pairs are counted at every position", (BPE_CASES[3],)),
        Promise("ties broken by the smallest pair", (BPE_CASES[0], BPE_CASES[3])),
        Promise("it gets the next id and all its occurrences are replaced", BPE_CASES[::3]),
        Promise("Training stops early when no adjacent pair is left.", (BPE_CASES[3],)),
        Promise(
            "Chunks with the same text are counted once with their frequency",
            why="how to make training fast; the merges learned are the same either way",
        ),
        Promise("text: the training text.", (*BPE_CASES[:2], BPE_CASES[3])),
        Promise("vocab_size: the size of the vocabulary to reach (>= 256).", BPE_CASES[:2]),
        Promise("pattern: a regular expression whose ``re.findall`` matches", (BPE_CASES[1],)),
        Promise("The trained tokenizer.", (*BPE_CASES[:2], BPE_CASES[3])),
    ),
)

# ---------------------------------------------------------------------- cross_entropy


def _ce_cases(g: torch.Generator) -> list[Case]:
    t2 = torch.randint(12, (2, 5), generator=g)
    t2[0, 1] = t2[1, 3] = t2[1, 4] = -100
    t3 = torch.randint(8, (2, 3), generator=g)
    t3[1, 0] = 3
    t3[0, 2] = 3
    return [
        call_case(
            "(4, 10) logits", randn(g, 4, 10, scale=2.0), torch.randint(10, (4,), generator=g)
        ),
        call_case("(2, 5, 12) logits, three targets ignored", randn(g, 2, 5, 12), t2),
        call_case(
            "large logits (scale 200), ignore_index=3",
            randn(g, 2, 3, 8, scale=200.0),
            t3,
            ignore_index=3,
        ),
        call_case(CE_ALL_IGNORED, randn(g, 2, 3, 5), torch.full((2, 3), -100)),
        # the last float32 case: also graded in bfloat16 (see dtypes below)
        call_case(CE_BF16, _near_200_logits(g), torch.randint(40, (4, 2), generator=g)),
    ]


CE_ALL_IGNORED = "every target ignored (NaN)"
CE_BF16 = "logits near 200, also graded in bfloat16 (computed in float32)"


def _near_200_logits(g: torch.Generator) -> torch.Tensor:
    """(4, 2, 40) logits, most rows all 200. In bfloat16 (this case's dtype variant) their
    logsumexp, 200 + ln 40 = 203.69, rounds to 204 (spacing 1 there), so a log-softmax computed
    in bfloat16 is off by 0.31 per position, beyond the variant's tolerance (0.03 + 0.03 |x|);
    in float32 it is exact to bfloat16's rounding of the result."""
    logits = torch.full((4, 2, 40), 200.0)
    logits[0, 0] += randn(g, 40, scale=2.0)
    return logits


def _ce_variant(kind: str) -> Callable:
    def ce(logits, targets, ignore_index=-100):
        dtype = logits.dtype
        if kind != "no_upcast" and dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        if kind == "naive":
            log_probs = torch.log(logits.exp() / logits.exp().sum(-1, keepdim=True))
        else:
            log_probs = F.log_softmax(logits, dim=-1)
        ignore = -100 if kind == "fixed_ignore" else ignore_index
        keep = targets != ignore
        nll = -log_probs.gather(-1, targets.clamp(0, logits.shape[-1] - 1)[..., None])[..., 0]
        nll = torch.where(keep, nll, torch.zeros_like(nll))
        if kind == "sum":
            return nll.sum().to(dtype)
        if kind == "mean_all":
            return (nll.sum() / targets.numel()).to(dtype)
        if kind == "all_ignored_zero":
            return (nll.sum() / keep.sum().clamp_min(1)).to(dtype)
        if kind == "no_upcast":
            log_probs = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
            nll = -log_probs.gather(-1, targets.clamp(0, logits.shape[-1] - 1)[..., None])[..., 0]
            return torch.where(keep, nll, torch.zeros_like(nll)).sum() / keep.sum()
        return (nll.sum() / keep.sum()).to(dtype)

    return ce


CE = Exercise(
    name="cross_entropy",
    points=2,
    summary="mean negative log-likelihood over the targets that are not ignored",
    make_cases=_ce_cases,
    reference=lambda: ref.cross_entropy,
    dtypes=("float64", "bfloat16"),
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    mistakes=(
        Mistake(
            "all_ignored_zero",
            "your loss is 0 when every target is ignored: the mean over no position is 0 / 0, "
            "NaN (as F.cross_entropy gives); do not clamp the count.",
            _ce_variant("all_ignored_zero"),
        ),
        Mistake(
            "mean_over_all",
            "your loss matches dividing by the number of ALL positions: the mean is over the "
            "positions whose target is not ignore_index (divide by their count).",
            _ce_variant("mean_all"),
        ),
        Mistake(
            "sum",
            "your loss matches the sum of the per-position losses: take the mean over the "
            "positions that count.",
            _ce_variant("sum"),
        ),
        Mistake(
            "naive_softmax",
            "your loss matches log(exp(z) / sum(exp(z))) computed directly: exp overflows for "
            "large logits. Use logsumexp: log p = z - logsumexp(z).",
            _ce_variant("naive"),
        ),
        Mistake(
            "fixed_ignore_index",
            "your loss matches ignoring the targets equal to -100 whatever ignore_index is: use "
            "the ignore_index argument.",
            _ce_variant("fixed_ignore"),
        ),
        Mistake(
            "no_upcast",
            "your loss for bfloat16 logits matches a log-softmax computed in bfloat16, whose "
            "logsumexp is rounded to 8 bits: compute in float32 (logits.float()) for 16-bit "
            "inputs and cast the result back to the logits' dtype.",
            _ce_variant("no_upcast"),
        ),
    ),
    promises=(
        Promise("The mean negative log-likelihood of the targets", ALL_CASES),
        Promise(
            "mean over positions with targets != ignore_index",
            (
                "(2, 5, 12) logits, three targets ignored",
                "large logits (scale 200), ignore_index=3",
            ),
        ),
        Promise(
            "large logits neither overflow nor underflow",
            ("large logits (scale 200), ignore_index=3",),
        ),
        Promise("NaN when every target is ignored.", (CE_ALL_IGNORED,)),
        Promise("logits: shape (..., V), unnormalised scores.", ALL_CASES),
        Promise(
            "targets: integer tensor of shape (...), ids in [0, V) or ignore_index.", ALL_CASES
        ),
        Promise(
            "ignore_index: the target value of positions that do not count.",
            (
                "(2, 5, 12) logits, three targets ignored",
                "large logits (scale 200), ignore_index=3",
            ),
        ),
        Promise("A scalar tensor (shape ()), in the dtype of logits", ALL_CASES),
        Promise("(computed in float32 for 16-bit inputs)", (CE_BF16,)),
    ),
)

# -------------------------------------------------------------------------- get_batch


def _batch_cases(g: torch.Generator) -> list[Case]:
    def case(label, data, batch, block, coverage=False, global_rng=False):
        seed = int(torch.randint(2**31 - 1, (1,), generator=g))
        c = call_case(label, data, batch, block)
        return {**c, "seed": seed, "coverage": coverage, "global_rng": global_rng}

    return [
        case("30 distinct tokens, B=4, T=6", torch.randperm(30, generator=g) + 100, 4, 6),
        case(
            "int32 tokens, B=3, T=10", (torch.randperm(50, generator=g) + 7).to(torch.int32), 3, 10
        ),
        case("10 tokens, B=200, T=3", torch.randperm(10, generator=g), 200, 3, coverage=True),
        case(BATCH_GLOBAL, torch.randperm(40, generator=g), 5, 4, global_rng=True),
    ]


BATCH_GLOBAL = "no generator: the global one (seeded), B=5, T=4"
BATCH_POWER = (
    "The checker compares with the documented draw itself (the generator seeded per case), so "
    "it is exact, not statistical; what is random is only the seed. Honest answer: it equals the "
    "documented draw and fails only if that draw misses an offset in the coverage case, "
    "P <= 7 * (6/7)^200 = 3e-13. Usual wrong answers: y = x (no_shift) fails the shift check "
    "on every seed; offsets one short (short_range) never draw offset 6 of the coverage case "
    "(P(fail) = 1); randperm gives 7 rows for B = 200 (P = 1); ignoring the generator (the "
    "global one) gives two different batches for two equally seeded generators, P(pass) <= "
    "24^-4 = 3e-6 from the first case alone; a generator of its own when None differs from the "
    "globally seeded draw of the last case, P(pass) = 36^-5 = 2e-8. Simulated once over 1000 "
    "grading seeds (1000..1999): the reference failed 0 times, each of the 4 Mistakes and 4 "
    "mutants failed 1000 times."
)
BATCH_LABELS = ("30 distinct tokens, B=4, T=6", "int32 tokens, B=3, T=10", "10 tokens, B=200, T=3")


def _batch_variant(kind: str) -> Callable:
    def get_batch(data, batch_size, block_size, generator=None):
        high = data.shape[0] - block_size - (1 if kind == "short_range" else 0)
        if kind == "own_generator" and generator is None:
            generator = torch.Generator()
        o = torch.randint(high, (batch_size,), generator=generator)
        idx = o[:, None] + torch.arange(block_size)
        if kind == "no_shift":
            return data[idx], data[idx]
        if kind == "randperm":
            o = torch.randperm(high, generator=generator)[:batch_size]
            idx = o[:, None] + torch.arange(block_size)
        return data[idx], data[idx + 1]

    return get_batch


BATCH = Exercise(
    name="get_batch",
    points=1,
    summary="random windows x and the same windows one token later, y",
    make_cases=_batch_cases,
    reference=lambda: ref.get_batch,
    driver=f"{PUBLIC}:call_with_generator",
    output_names=("x", "y", "x_again", "y_again"),
    checker=f"{PUBLIC}:check_batch",
    tolerance=Tolerance(0.0, 0.0),
    mistakes=(
        Mistake(
            "no_shift",
            "your y equals x: y is the next token of each position, data[o + 1 : o + T + 1].",
            _batch_variant("no_shift"),
        ),
        Mistake(
            "short_range",
            "your offsets stop one short: torch.randint's upper bound is exclusive, so "
            "torch.randint(N - block_size, ...) already gives every valid offset.",
            _batch_variant("short_range"),
        ),
        Mistake(
            "randperm",
            "your offsets match torch.randperm (drawing without replacement): draw them with "
            "replacement, torch.randint(N - block_size, (batch_size,), generator=generator).",
            _batch_variant("randperm"),
        ),
        Mistake(
            "own_generator",
            "with generator=None your offsets match a new torch.Generator() of its own: draw "
            "from the global generator then (torch.randint(..., generator=None)), so that "
            "torch.manual_seed makes the batches reproducible.",
            _batch_variant("own_generator"),
        ),
    ),
    promises=(
        Promise(
            "Random windows of a token stream, and the same windows one token later.", ALL_CASES
        ),
        Promise("The offsets are drawn with exactly one call", ALL_CASES),
        Promise("(data's device when generator is None)", (BATCH_GLOBAL,)),
        Promise("y[b, t] is the token that follows x[b, t]", ALL_CASES),
        Promise(
            # The boundary of N >= block_size + 1, the last window ending at data[N - 1], is
            # the largest offset, N - block_size - 1: the coverage case draws it.
            "data: shape (N,), token ids, N >= block_size + 1.",
            BATCH_LABELS,
        ),
        Promise("batch_size: B, the number of windows.", ALL_CASES),
        Promise("block_size: T, the length of each window.", ALL_CASES),
        Promise("generator: the source of randomness", BATCH_LABELS),
        Promise("(the global one when None)", (BATCH_GLOBAL,)),
        Promise("x: shape (B, T), dtype and device of data.", ALL_CASES),
        Promise("y: shape (B, T), x shifted by one position.", ALL_CASES),
    ),
    power=BATCH_POWER,
)

# ------------------------------------------------------------------------ lr_schedule


def _lr_cases(g: torch.Generator) -> list[Case]:
    peak = float(torch.empty(()).uniform_(1e-4, 3e-3, generator=g))
    return [
        {**call_case("warmup 10, total 50", peak, peak / 10, 10, 50), "steps": list(range(61))},
        {**call_case("no warmup, min_lr 0", 3e-4, 0.0, 0, 20), "steps": list(range(26))},
        {**call_case("warmup 3, total 8", 1.0, 0.2, 3, 8), "steps": list(range(12))},
        {**call_case(LR_NO_DECAY, 0.5, 0.05, 5, 5), "steps": list(range(9))},
    ]


LR_NO_DECAY = "warmup 5 = total 5: no decay, min_lr from step 5"
LR_LABELS = ("warmup 10, total 50", "no warmup, min_lr 0", "warmup 3, total 8")


def _lr_variant(kind: str) -> Callable:
    def lr(step, max_lr, min_lr, warmup_steps, total_steps):
        if step < warmup_steps:
            return max_lr * (step + 1 if kind == "warmup_plus_one" else step) / warmup_steps
        if step >= total_steps and (kind != "no_floor" or total_steps == warmup_steps):
            return min_lr
        start = 0 if kind == "from_zero" else warmup_steps
        p = (step - start) / (total_steps - start)
        floor = 0.0 if kind == "to_zero" else min_lr
        return floor + (max_lr - floor) * 0.5 * (1 + math.cos(math.pi * p))

    return lr


LR = Exercise(
    name="lr_schedule",
    points=1,
    summary="linear warmup from 0, cosine decay to min_lr, then min_lr",
    make_cases=_lr_cases,
    reference=lambda: ref.lr_schedule,
    driver=f"{PUBLIC}:schedule_curve",
    output_names=("lr",),
    tolerance=Tolerance(atol=1e-12, rtol=1e-9),
    mistakes=(
        Mistake(
            "warmup_plus_one",
            "your warmup matches max_lr * (step + 1) / warmup_steps: it starts at 0, "
            "max_lr * step / warmup_steps.",
            _lr_variant("warmup_plus_one"),
        ),
        Mistake(
            "to_zero",
            "your schedule matches a cosine that ends at 0: it ends at min_lr, "
            "min_lr + (max_lr - min_lr) * (1 + cos(pi p)) / 2.",
            _lr_variant("to_zero"),
        ),
        Mistake(
            "cosine_from_zero",
            "your schedule matches a cosine measured from step 0: the decay starts after the "
            "warmup, p = (step - warmup_steps) / (total_steps - warmup_steps).",
            _lr_variant("from_zero"),
        ),
        Mistake(
            "no_floor",
            "your schedule goes up again after total_steps: from then on it stays at min_lr.",
            _lr_variant("no_floor"),
        ),
    ),
    promises=(
        Promise("Linear warmup, then cosine decay: the learning rate of step ``step``.", ALL_CASES),
        Promise(
            "step < warmup_steps: max_lr * step / warmup_steps (0 at step 0)",
            ("warmup 10, total 50", "warmup 3, total 8", LR_NO_DECAY),
        ),
        Promise("min_lr + (max_lr - min_lr) * (1 + cos(pi p)) / 2", LR_LABELS),
        Promise("step > total_steps", LR_LABELS),
        Promise("(or total_steps == warmup_steps <= step): min_lr", (LR_NO_DECAY,)),
        Promise("step: the step, >= 0.", ALL_CASES),
        Promise("max_lr: the peak learning rate.", ALL_CASES),
        Promise("min_lr: the final learning rate.", ALL_CASES),
        Promise("warmup_steps: the length of the warmup, >= 0.", ALL_CASES),
        Promise("total_steps: the step where the decay ends, >= warmup_steps.", ALL_CASES),
        Promise("The learning rate, a float.", ALL_CASES),
    ),
)

# --------------------------------------------------------------------- clip_grad_norm


def _clip_cases(g: torch.Generator) -> list[Case]:
    return [
        {
            **call_case("three parameters, norm above max_norm", 1.0),
            "grads": [randn(g, 3, 4), randn(g, 5), randn(g, 2, 2, 2)],
        },
        {
            **call_case("norm below max_norm, one parameter without grad", 10.0),
            "grads": [randn(g, 4, 3, scale=0.5), None, randn(g, 6, scale=0.5)],
        },
        {
            **call_case("a single tensor, max_norm=0.5", 0.5),
            "grads": [randn(g, 7, scale=2.0)],
            "single": True,
        },
        {
            **call_case(CLIP_ITERATOR, 1.5),
            "grads": [randn(g, 4, 4), None, randn(g, 3)],
            "iterator": True,
        },
    ]


CLIP_ITERATOR = "a generator of parameters (as model.parameters()), norm above max_norm"


def _clip_variant(kind: str) -> Callable:
    def clip(parameters, max_norm):
        if kind == "iterates_twice":  # a generator is empty the second time
            params = [parameters] if isinstance(parameters, torch.Tensor) else parameters
            grads = [p.grad for p in params if p.grad is not None]
            total = torch.stack([g.norm() for g in grads]).norm()
            coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
            for p in [parameters] if isinstance(parameters, torch.Tensor) else parameters:
                if p.grad is not None:
                    p.grad.mul_(coef)
            return total
        params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
        grads = [p.grad for p in params if p.grad is not None]
        norms = torch.stack([g.norm() for g in grads])
        total = norms.sum() if kind == "sum_of_norms" else norms.norm()
        if kind == "per_param":
            for g, n in zip(grads, norms, strict=True):
                g.mul_(torch.clamp(max_norm / (n + 1e-6), max=1.0))
            return total
        coef = max_norm / (total + 1e-6)
        if kind != "always":
            coef = torch.clamp(coef, max=1.0)
        for g in grads:
            g.mul_(coef)
        if kind == "after":
            return torch.stack([g.norm() for g in grads]).norm()
        return total

    return clip


CLIP = Exercise(
    name="clip_grad_norm",
    points=1,
    summary="scale all gradients together so their global norm is at most max_norm",
    make_cases=_clip_cases,
    reference=lambda: ref.clip_grad_norm,
    driver=f"{PUBLIC}:clip_gradients",
    output_names=("total_norm", "grads"),
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    mistakes=(
        Mistake(
            "per_param",
            "your gradients match clipping each parameter on its own: the norm is global, the "
            "L2 norm of all gradients together, and one factor scales them all.",
            _clip_variant("per_param"),
        ),
        Mistake(
            "always",
            "your gradients match rescaling to max_norm even when the norm is below it: the "
            "factor is min(1, max_norm / (total + 1e-6)).",
            _clip_variant("always"),
        ),
        Mistake(
            "norm_after",
            "your total_norm matches the norm AFTER clipping: return the norm before.",
            _clip_variant("after"),
        ),
        Mistake(
            "sum_of_norms",
            "your total_norm matches the sum of the per-parameter norms: the global norm is "
            "sqrt(sum of squares), the norm of the vector of the per-parameter norms.",
            _clip_variant("sum_of_norms"),
        ),
        Mistake(
            "iterates_twice",
            "your gradients are not scaled when the parameters come as a generator "
            "(model.parameters()): a generator is empty the second time it is iterated; make "
            "a list of them first.",
            _clip_variant("iterates_twice"),
        ),
    ),
    promises=(
        Promise("Scale all gradients together so their global L2 norm is at most", ALL_CASES),
        Promise(
            "every gradient is multiplied, in place, by min(1, max_norm / (total + 1e-6))",
            (
                "three parameters, norm above max_norm",
                "norm below max_norm, one parameter without grad",
                CLIP_ITERATOR,
            ),
        ),
        Promise(
            "Parameters without a gradient are skipped.",
            ("norm below max_norm, one parameter without grad", CLIP_ITERATOR),
        ),
        Promise(
            "parameters: a tensor or an iterable of tensors (``model.parameters()``).",
            (
                "a single tensor, max_norm=0.5",
                "three parameters, norm above max_norm",
                CLIP_ITERATOR,
            ),
        ),
        Promise("max_norm: the largest global norm allowed, > 0.", ALL_CASES),
        Promise("total: a scalar tensor, the global norm *before* clipping.", ALL_CASES),
    ),
)

# ------------------------------------------------------------------------------ AdamW


def _adam_cases(g: torch.Generator) -> list[Case]:
    def problem(shapes: list[tuple[int, ...]], steps: int) -> dict[str, Any]:
        return {
            "params": [randn(g, *s) for s in shapes],
            "curvature": [torch.rand(*s, generator=g) * 2 + 0.1 for s in shapes],
            "center": [randn(g, *s) for s in shapes],
            "noise": [[randn(g, *s, scale=0.3) for s in shapes] for _ in range(steps)],
        }

    return [
        {
            "label": "two parameters, lr=0.05, 8 steps",
            "init": {"lr": 0.05},
            **problem([(3, 4), (5,)], 8),
        },
        {
            "label": "two parameter groups (weight decay 0.1 and 0), eps=0.1, betas "
            "(0.8, 0.9), a parameter without grad, 6 steps",
            "init": {"lr": 0.03, "betas": (0.8, 0.9), "eps": 0.1},
            "groups": [
                {"params": [0, 2], "weight_decay": 0.1},
                {"params": [1], "weight_decay": 0.0, "lr": 0.08},
            ],
            "frozen": [2],
            **problem([(4, 2), (3,), (2, 2)], 6),
        },
        {
            "label": "the learning rate changed before every step, weight_decay=0.5, 10 steps",
            "init": {"lr": 0.1, "weight_decay": 0.5},
            "lrs": [0.01 * (t + 1) for t in range(10)],
            **problem([(6,)], 10),
        },
        {
            "label": ADAM_DEFAULTS,
            "init": {},
            "closure": True,
            **problem([(5, 3), (4,)], 12),
        },
    ]


# lr 1e-3 moves a parameter by about 1e-3 a step: over 12 steps a wrong default lr (1e-2,
# 3e-4) is far outside the tolerance.
ADAM_DEFAULTS = "every default (lr 1e-3), gradients set by a closure passed to step, 12 steps"
ADAM_LABELS = (
    "two parameters, lr=0.05, 8 steps",
    "two parameter groups (weight decay 0.1 and 0), eps=0.1, betas (0.8, 0.9), a parameter "
    "without grad, 6 steps",
    "the learning rate changed before every step, weight_decay=0.5, 10 steps",
)


def _adam_variant(
    bias_correction: bool = True,
    decoupled: bool = True,
    decay_times_lr: bool = True,
    eps_inside: bool = False,
    cached_lr: bool = False,
    closure_loss: bool = True,
) -> type:
    class WrongAdamW(torch.optim.Optimizer):
        def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
            super().__init__(
                params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
            )
            self.initial_lrs = [group["lr"] for group in self.param_groups]

        @torch.no_grad()
        def step(self, closure=None):
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            for gi, group in enumerate(self.param_groups):
                lr = self.initial_lrs[gi] if cached_lr else group["lr"]
                (b1, b2), eps, wd = group["betas"], group["eps"], group["weight_decay"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    st = self.state[p]
                    if not st:
                        st["step"] = 0
                        st["exp_avg"], st["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                    st["step"] += 1
                    t, grad = st["step"], p.grad
                    if decoupled:
                        p.mul_(1 - (lr * wd if decay_times_lr else wd))
                    else:
                        grad = grad + wd * p
                    st["exp_avg"].mul_(b1).add_(grad, alpha=1 - b1)
                    st["exp_avg_sq"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
                    m_hat, v_hat = st["exp_avg"], st["exp_avg_sq"]
                    if bias_correction:
                        m_hat, v_hat = m_hat / (1 - b1**t), v_hat / (1 - b2**t)
                    denom = (v_hat + eps).sqrt() if eps_inside else v_hat.sqrt() + eps
                    p.sub_(lr * m_hat / denom)
            return loss if closure_loss else None

    return WrongAdamW


ADAMW = Exercise(
    name="AdamW",
    points=3,
    summary="Adam with decoupled weight decay, the same trajectory as torch.optim.AdamW",
    make_cases=_adam_cases,
    reference=lambda: ref.AdamW,
    driver=f"{PUBLIC}:optimizer_trajectory",
    output_names=("trajectory", "what step returned (NaN: None)", "state"),
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    mistakes=(
        Mistake(
            "no_bias_correction",
            "your trajectory matches Adam without bias correction: divide m by (1 - beta1^t) "
            "and v by (1 - beta2^t), t counting this parameter's steps from 1.",
            _adam_variant(bias_correction=False),
        ),
        Mistake(
            "l2_not_decoupled",
            "your trajectory matches weight decay added to the gradient (Adam with L2): AdamW "
            "decouples it, p <- p * (1 - lr * weight_decay), outside m and v.",
            _adam_variant(decoupled=False),
        ),
        Mistake(
            "decay_without_lr",
            "your trajectory matches p <- p * (1 - weight_decay): the decay is scaled by the "
            "learning rate, p * (1 - lr * weight_decay).",
            _adam_variant(decay_times_lr=False),
        ),
        Mistake(
            "eps_inside_sqrt",
            "your trajectory matches sqrt(v_hat + eps): eps is added after the square root, "
            "sqrt(v_hat) + eps.",
            _adam_variant(eps_inside=True),
        ),
        Mistake(
            "lr_cached",
            "your trajectory matches a learning rate read once at construction: read "
            "group['lr'] (and the other hyperparameters) at every step, a schedule changes it.",
            _adam_variant(cached_lr=True),
        ),
        Mistake(
            "closure_loss_dropped",
            "your step(closure) returns None: call the closure (under torch.enable_grad()) "
            "and return the loss it gives.",
            _adam_variant(closure_loss=False),
        ),
    ),
    promises=(
        Promise("Adam with decoupled weight decay (Loshchilov & Hutter)", ALL_CASES),
        Promise("p <- p * (1 - lr * weight_decay)", ALL_CASES),
        Promise("m and v start at zero", ALL_CASES),
        Promise(
            "The hyperparameters are read from each parameter group at every step",
            (ADAM_LABELS[1], ADAM_LABELS[2]),
        ),
        Promise("Parameters whose grad is None are left alone.", (ADAM_LABELS[1],)),
        Promise(
            "params: an iterable of parameters, or of dicts (parameter groups).",
            (ADAM_LABELS[0], ADAM_LABELS[1]),
        ),
        Promise("lr: the learning rate, >= 0.", (ADAM_LABELS[0], ADAM_DEFAULTS)),
        Promise("betas: (beta1, beta2), each in [0, 1).", (ADAM_LABELS[0], ADAM_LABELS[1])),
        Promise("eps: added to the denominator, >= 0.", (ADAM_LABELS[1],)),
        Promise(
            "weight_decay: the decoupled weight decay, >= 0.",
            (ADAM_LABELS[0], ADAM_LABELS[1], ADAM_LABELS[2]),
        ),
        Promise("One update of every parameter that has a gradient.", ALL_CASES),
        Promise(
            "closure: optional, a function that recomputes and returns the loss.",
            (ADAM_LABELS[0], ADAM_DEFAULTS),
        ),
        Promise("The closure's loss, or None.", ALL_CASES),
    ),
)

# ------------------------------------------------------------------ train_language_model


def _loop_cases(g: torch.Generator) -> list[Case]:
    def case(label, vocab, n, seed_scale, default_optimizer=False, **kwargs):
        walk = torch.cumsum(torch.randint(-1, 2, (n,), generator=g), 0) % vocab  # learnable
        state = {"table.weight": randn(g, vocab, vocab, scale=seed_scale)}
        extra: dict[str, Any] = {}
        if default_optimizer:  # a GainBigram: a bias too, and logits times 8
            state["bias"] = randn(g, vocab, scale=0.5)
            extra = {"default_optimizer": True, "gain": 8.0}
            extra["default_progress"] = "weight_decay" not in kwargs
        return {
            "label": label,
            "vocab_size": vocab,
            "state": state,
            "data": walk,
            "seed": int(torch.randint(2**31 - 1, (1,), generator=g)),
            "kwargs": kwargs,
            **extra,
        }

    return [
        case(
            "12 steps, warmup 3, clipping at 0.15",
            8,
            200,
            0.5,
            steps=12,
            batch_size=4,
            block_size=8,
            max_lr=2.0,
            min_lr=0.2,
            warmup_steps=3,
            grad_clip=0.15,
        ),
        case(
            "8 steps, no warmup, no clipping",
            6,
            120,
            1.0,
            steps=8,
            batch_size=3,
            block_size=5,
            max_lr=0.3,
            grad_clip=None,
        ),
        case(
            LOOP_DEFAULTS,
            6,
            150,
            1.0,
            default_optimizer=True,
            steps=10,
            batch_size=4,
            block_size=6,
            max_lr=0.05,
            warmup_steps=2,
        ),
        case(
            LOOP_DECAY,
            5,
            100,
            1.0,
            default_optimizer=True,
            steps=6,
            batch_size=3,
            block_size=4,
            max_lr=0.1,
            min_lr=0.02,
            weight_decay=0.5,
            grad_clip=None,
        ),
        case(LOOP_NO_STEP, 5, 40, 1.0, steps=0, batch_size=2, block_size=4, max_lr=0.1),
    ]


LOOP_DEFAULTS = (
    "the default optimizer (AdamW, betas (0.9, 0.95), no decay of the bias), weight_decay, "
    "grad_clip and progress by default, 10 steps"
)
LOOP_DECAY = "the default optimizer with weight_decay=0.5, no clipping, 6 steps"
LOOP_NO_STEP = "steps = 0: no step, an empty history"
LOOP_POWER = (
    "The loop draws its batches from a generator the driver seeds per case, so a run is "
    "deterministic given the seed and compared with the reference's run on the same seed "
    "(tolerance 1e-4): an honest loop gives the same batches, losses, learning rates and "
    "weights, P(false alarm) = 0 up to float rounding (0 of 200 seeds). Each usual wrong answer "
    "changes a recorded quantity whatever the seed: no_schedule and schedule_off_by_one the "
    "learning rates of every step, no_zero_grad the gradient norms from step 2, "
    "clip_after_step the norms seen by the step (clipping at 0.15 binds), targets_not_shifted "
    "the losses, default_betas and decay_everything the final weights of the default-optimizer "
    "case, no clipping by default its weights (gain 8 puts the gradient norms above 1), "
    "progress ignored the bar, steps = 0 the empty history, weight_decay ignored the weights "
    "of the weight_decay=0.5 case. Simulated once over 200 grading "
    "seeds (1000..1199): the reference failed 0 times, each of the 7 Mistakes and 11 mutants "
    "failed 200 times."
)
LOOP_LABELS = ("12 steps, warmup 3, clipping at 0.15", "8 steps, no warmup, no clipping")


def _loop_variant(
    zero_grad: bool = True,
    schedule: bool = True,
    clip_first: bool = True,
    shifted: bool = True,
    step_offset: int = 0,
    betas: tuple[float, float] = (0.9, 0.95),
    decay_all: bool = False,
) -> Callable:
    def train(model, data, steps, batch_size, block_size, max_lr=1e-3, min_lr=None,
              warmup_steps=0, weight_decay=0.1, grad_clip=1.0, optimizer=None, generator=None,
              progress=True):  # fmt: skip
        min_lr = max_lr / 10 if min_lr is None else min_lr
        if optimizer is None:
            params = list(model.parameters())
            groups = [
                {
                    "params": [p for p in params if decay_all or p.dim() >= 2],
                    "weight_decay": weight_decay,
                },
                {
                    "params": [p for p in params if not decay_all and p.dim() < 2],
                    "weight_decay": 0.0,
                },
            ]
            optimizer = ref.AdamW([g for g in groups if g["params"]], lr=max_lr, betas=betas)
        if progress:  # what the driver looks for: tqdm's counter
            print(f"training: 100%|| {steps}/{steps} [00:00<00:00]", file=sys.stderr)
        losses = []
        for step in range(steps):
            if schedule:
                lr = ref.lr_schedule(step + step_offset, max_lr, min_lr, warmup_steps, steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
            x, y = ref.get_batch(data, batch_size, block_size, generator)
            loss = ref.cross_entropy(model(x), y if shifted else x)
            if zero_grad:
                optimizer.zero_grad()
            loss.backward()
            if grad_clip is not None and clip_first:
                ref.clip_grad_norm(model.parameters(), grad_clip)
            optimizer.step()
            if grad_clip is not None and not clip_first:
                ref.clip_grad_norm(model.parameters(), grad_clip)
            losses.append(loss.item())
        return losses

    return train


LOOP = Exercise(
    name="train_language_model",
    points=2,
    summary="the training loop: schedule, batch, loss, backward, clip, step",
    make_cases=_loop_cases,
    reference=lambda: ref.train_language_model,
    driver=f"{PUBLIC}:train_loop",
    output_names=("losses", "learning_rates", "grad_norms", "final_weights", "progress bar shown"),
    tolerance=Tolerance(atol=1e-4, rtol=1e-4),
    depends_on=("get_batch", "lr_schedule", "clip_grad_norm", "cross_entropy"),
    mistakes=(
        Mistake(
            "no_zero_grad",
            "your run matches a loop that never clears the gradients: call "
            "optimizer.zero_grad() before loss.backward(), or they add up over the steps.",
            _loop_variant(zero_grad=False),
        ),
        Mistake(
            "no_schedule",
            "your run matches a loop that never sets the learning rate: write "
            "lr_schedule(step, ...) into every optimizer.param_groups[i]['lr'] at each step.",
            _loop_variant(schedule=False),
        ),
        Mistake(
            "clip_after_step",
            "your run matches clipping after optimizer.step(): clip between loss.backward() "
            "and optimizer.step(), so the step uses the clipped gradients.",
            _loop_variant(clip_first=False),
        ),
        Mistake(
            "targets_not_shifted",
            "your run matches a loss against x itself: the targets are y, the tokens one "
            "position later.",
            _loop_variant(shifted=False),
        ),
        Mistake(
            "schedule_off_by_one",
            "your run matches lr_schedule(step + 1, ...): step t uses lr_schedule(t, ...), "
            "t from 0.",
            _loop_variant(step_offset=1),
        ),
        Mistake(
            "default_betas",
            "your default optimizer matches AdamW with its own default betas (0.9, 0.999): "
            "the loop's default is AdamW(..., betas=(0.9, 0.95)), as GPT-style pre-training "
            "uses.",
            _loop_variant(betas=(0.9, 0.999)),
        ),
        Mistake(
            "decay_everything",
            "your default optimizer matches weight decay on every parameter: decay only the "
            "parameters with 2 or more dimensions (p.dim() >= 2); biases and norm gains get "
            "weight_decay 0 (two parameter groups).",
            _loop_variant(decay_all=True),
        ),
    ),
    promises=(
        Promise("Train a language model on a token stream", ALL_CASES),
        Promise("a progress bar shows the loss", (LOOP_DEFAULTS,)),
        Promise(
            "1. lr = lr_schedule(t, max_lr, min_lr, warmup_steps, steps)",
            (*LOOP_LABELS, LOOP_DEFAULTS, LOOP_DECAY),
        ),
        Promise("2. x, y = get_batch(data, batch_size, block_size, generator);", ALL_CASES),
        Promise("3. loss = cross_entropy(model(x), y);", ALL_CASES),
        Promise("4. optimizer.zero_grad(), then loss.backward();", ALL_CASES),
        Promise(
            "5. clip_grad_norm(model.parameters(), grad_clip) unless grad_clip is None;",
            (*LOOP_LABELS, LOOP_DEFAULTS),
        ),
        Promise("6. optimizer.step().", ALL_CASES),
        Promise("model: any module mapping ids (B, T) to logits (B, T, V)", ALL_CASES),
        Promise("data: shape (N,), the training tokens.", ALL_CASES),
        Promise("steps: the number of optimisation steps (>= 0).", (*LOOP_LABELS, LOOP_NO_STEP)),
        Promise("batch_size: B, windows per step.", ALL_CASES),
        Promise("block_size: T, tokens per window.", ALL_CASES),
        Promise("max_lr: the peak learning rate.", ALL_CASES),
        Promise("min_lr: the final learning rate; max_lr / 10 when None.", LOOP_LABELS),
        Promise("warmup_steps: the steps of linear warmup.", LOOP_LABELS),
        Promise(
            "weight_decay: the decoupled weight decay of the default optimizer.",
            (LOOP_DEFAULTS, LOOP_DECAY),
        ),
        Promise(
            "grad_clip: the largest global gradient norm, or None", (*LOOP_LABELS, LOOP_DEFAULTS)
        ),
        Promise(
            "optimizer: the optimizer to use; when None", (*LOOP_LABELS, LOOP_DEFAULTS, LOOP_DECAY)
        ),
        Promise("generator: the randomness of ``get_batch``.", ALL_CASES),
        Promise(
            "progress: show a tqdm progress bar with the loss.",
            (LOOP_DEFAULTS, *LOOP_LABELS),
        ),
        Promise("The loss of every step (before that step's update), a list of floats.", ALL_CASES),
    ),
    power=LOOP_POWER,
)

# ----------------------------------------------------------------------- distributed


def _mlp_state(g: torch.Generator, sizes: list[int]) -> dict[str, torch.Tensor]:
    state, index = {}, 0
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        state[f"{index}.weight"] = randn(g, b, a, scale=1 / math.sqrt(a))
        state[f"{index}.bias"] = randn(g, b, scale=0.3)
        index += 2  # a Tanh sits between two Linear layers
    return state


def _allreduce_cases(g: torch.Generator) -> list[Case]:
    def case(label, world, sizes, frozen=()):
        state = _mlp_state(g, sizes)
        grads = [
            {k: (None if k in frozen else randn(g, *v.shape)) for k, v in state.items()}
            for _ in range(world)
        ]
        return {"label": label, "world_size": world, "sizes": sizes, "state": state, "grads": grads}

    return [
        case("2 ranks, a 4-3-2 MLP", 2, [4, 3, 2]),
        case("3 ranks, a 5-4-3 MLP, one bias frozen (grad None)", 3, [5, 4, 3], ("2.bias",)),
        {**case(NO_GROUP, 1, [3, 2]), "no_group": True},
    ]


NO_GROUP = "one process, no process group: nothing changes"
ALLREDUCE_LABELS = ("2 ranks, a 4-3-2 MLP", "3 ranks, a 5-4-3 MLP, one bias frozen (grad None)")


def _allreduce_variant(kind: str) -> Callable:
    def all_reduce_gradients(model):
        if not dist.is_initialized():
            return
        params = [p for p in model.parameters() if p.grad is not None]
        field = "data" if kind == "params" else "grad"  # "params": averages the weights
        if kind == "per_parameter":
            for p in params:
                dist.all_reduce(p.grad)
                p.grad /= dist.get_world_size()
            return
        flat = torch.cat([getattr(p, field).reshape(-1) for p in params])
        dist.all_reduce(flat)
        if kind == "halve":
            flat /= 2
        elif kind != "sum":
            flat /= dist.get_world_size()
        start = 0
        for p in params:
            n = p.numel()
            getattr(p, field).copy_(flat[start : start + n].view_as(p))
            start += n

    return all_reduce_gradients


ALLREDUCE = Exercise(
    name="all_reduce_gradients",
    points=2,
    summary="average the gradients over the ranks (index i of each output is rank i)",
    make_cases=_allreduce_cases,
    reference=lambda: ref.all_reduce_gradients,
    driver=f"{PUBLIC}:data_parallel_grads",
    output_names=("grads", "at most one dist.all_reduce call", "returned None"),
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    mistakes=(
        Mistake(
            "sum_not_mean",
            "your gradients match the SUM over the ranks: divide by the world size "
            "(dist.get_world_size()) to get the mean.",
            _allreduce_variant("sum"),
        ),
        Mistake(
            "halved",
            "your gradients match dividing by 2 whatever the number of ranks: divide by "
            "dist.get_world_size().",
            _allreduce_variant("halve"),
        ),
        Mistake(
            "parameters_averaged",
            "your gradients are unchanged: average the gradients (p.grad), not the "
            "parameters; the optimizer then takes the same step on every rank.",
            _allreduce_variant("params"),
        ),
        Mistake(
            "per_parameter",
            "your gradients are right but travel in one dist.all_reduce per parameter: "
            "concatenate them into one flat buffer (torch.cat of the flattened gradients), "
            "all-reduce it once, and copy the slices back.",
            _allreduce_variant("per_parameter"),
        ),
    ),
    promises=(
        Promise("Average every gradient of ``model`` over the ranks", ALLREDUCE_LABELS),
        Promise("every rank holds the mean of all ranks' gradients", ALLREDUCE_LABELS),
        Promise("All gradients travel in one flat buffer", ALLREDUCE_LABELS),
        Promise(
            "Parameters whose grad is None are skipped",
            ("3 ranks, a 5-4-3 MLP, one bias frozen (grad None)",),
        ),
        Promise(
            "Without an initialised process group (one process), nothing changes.", (NO_GROUP,)
        ),
        Promise("model: the replica on this rank, after ``loss.backward()``.", ALL_CASES),
        Promise("None; the gradients are changed in place.", ALL_CASES),
    ),
)


def _parallel_cases(g: torch.Generator, kind: str) -> list[Case]:
    def case(label, world, batch_shape, bias=True, parallel=False):
        n_in, n_out = 6, 6
        weight = randn(g, n_out, n_in, scale=1 / math.sqrt(n_in))
        b = randn(g, n_out, scale=0.3)
        x = randn(g, *batch_shape, n_in)
        probe = randn(g, *batch_shape, n_out)
        states, inputs, probes = [], [], []
        for r in range(world):
            if kind == "column":
                k = n_out // world
                st = {"weight": weight[r * k : (r + 1) * k]}
                if bias:
                    st["bias"] = b[r * k : (r + 1) * k]
                inputs.append(x)
                probes.append(probe[..., r * k : (r + 1) * k] if parallel else probe)
            else:
                k = n_in // world
                st = {"weight": weight[:, r * k : (r + 1) * k]}
                if bias:
                    st["bias"] = b
                inputs.append(x[..., r * k : (r + 1) * k] if parallel else x)
                probes.append(probe)
            states.append({key: v.clone() for key, v in st.items()})
        flag = "gather_output" if kind == "column" else "input_is_parallel"
        value = (not parallel) if kind == "column" else parallel
        init = {"in_features": n_in, "out_features": n_out, "bias": bias, flag: value}
        if bias and not parallel:  # the defaults, bias=True and gather_output=True /
            del init["bias"], init[flag]  # input_is_parallel=False, by omission
        return {
            "label": label,
            "world_size": world,
            "init": init,
            "rank_states": states,
            "rank_inputs": inputs,
            "rank_probes": probes,
        }

    no_group = {**case(LAYER_NO_GROUP, 1, (3,)), "no_group": True}
    if kind == "column":
        return [
            case(COLUMN_LABELS[0], 2, (2, 3)),
            case(
                "3 ranks, no bias, each rank keeps its slice (gather_output=False)",
                3,
                (4,),
                bias=False,
                parallel=True,
            ),  # fmt: skip
            no_group,
        ]
    return [
        case(ROW_LABELS[0], 2, (2, 3)),
        case("3 ranks, input already split (input_is_parallel=True)", 3, (4,), parallel=True),
        no_group,
    ]


LAYER_NO_GROUP = "one process, no process group: a plain linear layer"
COLUMN_LABELS = (
    "2 ranks, gathered output (bias and gather_output by default)",
    "3 ranks, no bias, each rank keeps its slice (gather_output=False)",
)
ROW_LABELS = (
    "2 ranks, full input (bias and input_is_parallel by default)",
    "3 ranks, input already split (input_is_parallel=True)",
)


def _grad_summed_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """``x`` unchanged forward; backward, its gradient all-reduced over the ranks."""

    def hook(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad

    x = x.view_as(x)
    x.register_hook(hook)
    return x


class _WrongColumn(ref.ColumnParallelLinear):
    reduce_input_grad = True
    gather = "manual"  # "manual", "autograd" (torch.distributed.nn), "detached"

    def forward(self, x):
        if self.reduce_input_grad and self.world_size > 1 and x.requires_grad:
            x = _grad_summed_over_ranks(x)
        y = F.linear(x, self.weight, self.bias)
        if not self.gather_output or self.world_size == 1:
            return y
        if self.gather == "autograd":
            with warnings.catch_warnings():  # deprecated in favour of functional collectives
                warnings.simplefilter("ignore", FutureWarning)
                return torch.cat(dist_fn.all_gather(y), dim=-1)
        pieces = [torch.empty_like(y) for _ in range(self.world_size)]
        dist.all_gather(pieces, y.detach().contiguous())
        if self.gather == "manual":
            pieces[self.rank] = y
        return torch.cat(pieces, dim=-1)


def _wrong_column(**flags: Any) -> type:
    return type("WrongColumn", (_WrongColumn,), flags)


COLUMN = Exercise(
    name="ColumnParallelLinear",
    points=2,
    summary="a linear layer split by output features over the ranks (index i is rank i)",
    make_cases=lambda g: _parallel_cases(g, "column"),
    reference=lambda: ref.ColumnParallelLinear,
    driver=f"{PUBLIC}:tensor_parallel_layer",
    output_names=("output", "input_grad", "weight_grad", "bias_grad"),
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    mistakes=(
        Mistake(
            "input_grad_not_summed",
            "your input gradient matches each rank's own part only: a rank's input gradient "
            "covers its own output features, so sum it over the ranks in backward (a hook "
            "on x that all-reduces the gradient).",
            _wrong_column(reduce_input_grad=False),
        ),
        Mistake(
            "autograd_all_gather",
            "your gradients match torch.distributed.nn.functional.all_gather, whose backward "
            "SUMS the gradients of all ranks: every rank already has the full gradient of the "
            "same loss, so the backward of the gather is just taking your own slice.",
            _wrong_column(gather="autograd"),
        ),
        Mistake(
            "gathered_output_detached",
            "your gathered output carries no gradient to the weights: keep your own slice "
            "`y` (not a detached copy) in the list you concatenate.",
            _wrong_column(gather="detached"),
        ),
    ),
    promises=(
        Promise("y = x W^T + b with W split by rows (output features) over the ranks", ALL_CASES),
        Promise("rank r holds ``weight`` = W[r k : (r+1) k]", COLUMN_LABELS),
        Promise("With ``gather_output`` the slices are gathered (all-gather)", COLUMN_LABELS),
        Promise("the input gradients are summed over the ranks (all-reduce)", COLUMN_LABELS),
        Promise("Without an initialised process group it is one rank", (LAYER_NO_GROUP,)),
        Promise("weight: ``nn.Parameter`` of shape (out_features / R, in_features).", ALL_CASES),
        Promise("bias: ``nn.Parameter`` of shape (out_features / R,), or None.", ALL_CASES),
        Promise("in_features: the input size.", ALL_CASES),
        Promise("out_features: the full output size; divisible by the world size.", ALL_CASES),
        Promise("bias: whether there is a bias.", ALL_CASES),
        Promise(
            "gather_output: return the full output (True) or this rank's slice.", COLUMN_LABELS
        ),
        Promise("x of shape (..., in_features), the same on every rank.", ALL_CASES),
        Promise(
            "Shape (..., out_features) with gather_output, else (..., out_features / R).",
            COLUMN_LABELS,
        ),
    ),
)


class _WrongRow(ref.RowParallelLinear):
    reduce = "manual"  # "manual", "none", "autograd"
    bias_before = False
    reduce_input_grad = True

    def forward(self, x):
        k = self.in_features // self.world_size
        if not self.input_is_parallel:
            if self.reduce_input_grad and x.requires_grad and self.world_size > 1:
                x = _grad_summed_over_ranks(x)
            x = x[..., self.rank * k : (self.rank + 1) * k]
        part = F.linear(x, self.weight, self.bias if self.bias_before else None)
        if self.world_size == 1:
            pass
        elif self.reduce == "autograd":
            with warnings.catch_warnings():  # deprecated in favour of functional collectives
                warnings.simplefilter("ignore", FutureWarning)
                part = dist_fn.all_reduce(part)
        elif self.reduce == "manual":
            total = part.detach().clone()
            dist.all_reduce(total)
            part = total + (part - part.detach())
        return part if self.bias_before or self.bias is None else part + self.bias


def _wrong_row(**flags: Any) -> type:
    return type("WrongRow", (_WrongRow,), flags)


ROW = Exercise(
    name="RowParallelLinear",
    points=2,
    summary="a linear layer split by input features over the ranks (index i is rank i)",
    make_cases=lambda g: _parallel_cases(g, "row"),
    reference=lambda: ref.RowParallelLinear,
    driver=f"{PUBLIC}:tensor_parallel_layer",
    output_names=("output", "input_grad", "weight_grad", "bias_grad"),
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    mistakes=(
        Mistake(
            "no_all_reduce",
            "your output matches one rank's partial product: sum the partial products of all "
            "ranks (dist.all_reduce) before adding the bias.",
            _wrong_row(reduce="none"),
        ),
        Mistake(
            "bias_before_reduce",
            "your output matches the bias added on every rank before the all-reduce, so it is "
            "counted world_size times: add it once, after the reduction.",
            _wrong_row(bias_before=True),
        ),
        Mistake(
            "autograd_all_reduce",
            "your gradients match torch.distributed.nn.functional.all_reduce, whose backward "
            "all-reduces (sums) the gradient again: every rank already holds the full "
            "gradient of the same loss, so the backward of this all-reduce is the identity.",
            _wrong_row(reduce="autograd"),
        ),
        Mistake(
            "input_grad_not_summed",
            "your input gradient matches each rank's own slice only: with the full x as "
            "input, sum the input gradient over the ranks in backward (a hook on x that "
            "all-reduces the gradient).",
            _wrong_row(reduce_input_grad=False),
        ),
    ),
    promises=(
        Promise("y = x W^T + b with W split by columns (input features) over the ranks", ALL_CASES),
        Promise("rank r holds ``weight`` = W[:, r k : (r+1) k]", ROW_LABELS),
        Promise("the partial products are summed over the ranks (all-reduce)", ROW_LABELS),
        Promise("Every rank returns the full y.", ROW_LABELS),
        Promise(
            "With ``input_is_parallel`` the input already is this rank's slice", (ROW_LABELS[1],)
        ),
        Promise("the partial products get the gradient of y unchanged", ROW_LABELS),
        Promise("Without an initialised process group it is one rank", (LAYER_NO_GROUP,)),
        Promise("weight: ``nn.Parameter`` of shape (out_features, in_features / R).", ALL_CASES),
        Promise("bias: ``nn.Parameter`` of shape (out_features,), or None.", ALL_CASES),
        Promise("in_features: the full input size; divisible by the world size.", ALL_CASES),
        Promise("out_features: the output size.", ALL_CASES),
        Promise("bias: whether there is a bias.", ALL_CASES),
        Promise(
            "input_is_parallel: the input is this rank's slice (True) or the full x.", ROW_LABELS
        ),
        Promise("x of shape (..., in_features), the same on every rank, or with", ROW_LABELS),
        Promise("input_is_parallel this rank's slice (..., in_features / R).", (ROW_LABELS[1],)),
        Promise("Shape (..., out_features), the same on every rank.", ALL_CASES),
    ),
)

SPEC = ChapterSpec(
    number="04",
    slug="training",
    title="Training",
    exercises=(
        NORMALIZE,
        DEDUP,
        BPE,
        CE,
        BATCH,
        LR,
        CLIP,
        ADAMW,
        LOOP,
        ALLREDUCE,
        COLUMN,
        ROW,
    ),
)
