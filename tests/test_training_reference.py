"""The chapter 04 reference (solutions/training.py) is correct.

Every test names its independent oracle in its docstring: a PyTorch routine where one
exists (F.cross_entropy, torch.optim.AdamW, torch.nn.utils.clip_grad_norm_,
torch.optim.lr_scheduler.CosineAnnealingLR, nn.Linear), else a slow,
obviously-correct Python version written here (BPE training and encoding, the
deduplication, whitespace handling, the batch windows, the training loop).

Device coverage: cross_entropy, get_batch, clip_grad_norm, AdamW.step and the two
parallel layers (one rank, no process group) run on ``meta`` tensors and in float64
and bfloat16. The exceptions: normalize_text, deduplicate and BPETokenizer work on
Python strings and ints, lr_schedule on Python floats, train_language_model returns
Python floats (it reads the loss values), and all_reduce_gradients with a real
process group communicates values, which meta tensors do not have. The
multi-process behaviour (gloo, 2 and 3 ranks) is in tests/test_distributed.py.
"""

from __future__ import annotations

import collections
import copy
import heapq
import inspect
import io
import math
import random
import re
import unicodedata
from contextlib import redirect_stderr

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from solutions import training
from solutions.training import (
    AdamW,
    BPETokenizer,
    ColumnParallelLinear,
    RowParallelLinear,
    all_reduce_gradients,
    clip_grad_norm,
    cross_entropy,
    deduplicate,
    get_batch,
    lr_schedule,
    normalize_text,
    train_language_model,
)

PUBLIC_NAMES = [
    "normalize_text",
    "deduplicate",
    "BPETokenizer",
    "cross_entropy",
    "get_batch",
    "lr_schedule",
    "clip_grad_norm",
    "AdamW",
    "train_language_model",
    "all_reduce_gradients",
    "ColumnParallelLinear",
    "RowParallelLinear",
]
META = torch.device("meta")
PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def random_unicode(rng: random.Random, n: int) -> str:
    """Random text over ASCII, Latin-1, Greek, CJK, emoji, combining marks and spaces
    (every code point but the surrogates)."""
    ranges = [(32, 126), (160, 255), (0x370, 0x3FF), (0x4E00, 0x4E80), (0x1F600, 0x1F64F)]
    ranges += [(0x300, 0x36F), (0x2000, 0x200B), (9, 13), (0x10000, 0x10FFFF)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        c = rng.randint(lo, hi)
        out.append(chr(c) if not 0xD800 <= c <= 0xDFFF else "x")
    return "".join(out)


# ----------------------------------------------------------------------------- data


def slow_normalize(text: str) -> str:
    """Character by character: NFKC, then runs of str.isspace() become one space."""
    out, pending = [], False
    for ch in unicodedata.normalize("NFKC", text):
        if ch.isspace():
            pending = True
            continue
        if pending and out:
            out.append(" ")
        pending = False
        out.append(ch)
    return "".join(out)


def test_normalize_text_examples():
    """Oracle: the contract's examples (NFKC, whitespace collapsed, stripped)."""
    assert normalize_text("  ﬁne\u00a0Ｔｏｋｅｎ\t\tx²\n\nend  ") == "fine Token x2 end"
    assert normalize_text("cafe\u0301") == "café"
    assert normalize_text(" \t\n ") == ""
    assert normalize_text("") == ""


def test_normalize_text_matches_character_loop_on_random_text():
    """Oracle: a character loop with str.isspace, on 200 random Unicode strings."""
    rng = random.Random(1)
    for _ in range(200):
        text = random_unicode(rng, rng.randint(0, 60))
        assert normalize_text(text) == slow_normalize(text)


def slow_deduplicate(docs, threshold=0.8, shingle_size=3):
    """Every pair compared with Python sets; a document against every kept one."""

    def shingles(doc):
        w = doc.split()
        if not w:
            return set()
        if len(w) < shingle_size:
            return {tuple(w)}
        return {tuple(w[i : i + shingle_size]) for i in range(len(w) - shingle_size + 1)}

    kept = []
    for doc in docs:
        s = shingles(doc)
        duplicate = False
        for other in kept:
            o = shingles(other)
            if doc == other or (s | o and len(s & o) / len(s | o) >= threshold):
                duplicate = True
                break
        if not duplicate:
            kept.append(doc)
    return kept


def test_deduplicate_examples():
    """Oracle: hand-computed Jaccard similarities."""
    a = "the quick brown fox jumps over the lazy dog today"
    b = "the quick brown fox jumps over the lazy cat today"  # 6/10 of the shingles kept
    assert deduplicate([a, a, b]) == [a, b]
    assert deduplicate([a, b], threshold=0.5) == [a]
    assert deduplicate(["", "", "x"]) == ["", "x"]
    assert deduplicate(["a b", "a b c"], shingle_size=3) == ["a b", "a b c"]
    assert deduplicate(["a b c", "a b c d"], threshold=0.75, shingle_size=1) == ["a b c"]


def test_deduplicate_matches_pairwise_sets_on_random_corpora():
    """Oracle: all pairs compared with Python sets, on random near-duplicate corpora."""
    rng = random.Random(2)
    vocab = [f"w{i}" for i in range(12)]
    for trial in range(60):
        base = [[rng.choice(vocab) for _ in range(rng.randint(0, 12))] for _ in range(5)]
        docs = []
        for _ in range(20):
            words = list(rng.choice(base))
            for _ in range(rng.randint(0, 3)):
                if words:
                    words[rng.randrange(len(words))] = rng.choice(vocab)
            docs.append(" ".join(words))
        k = 1 + trial % 4
        t = rng.choice([0.3, 0.5, 0.8, 1.0])
        assert deduplicate(docs, t, k) == slow_deduplicate(docs, t, k)


# ------------------------------------------------------------------------ tokenizer


def slow_train(text: str, vocab_size: int, pattern: str | None = None) -> list[tuple[int, int]]:
    """Recount every pair after every merge; the most frequent, then the smallest pair."""
    chunks = re.findall(pattern, text) if pattern else [text]
    seqs = [list(c.encode("utf-8")) for c in chunks]
    merges = []
    for new_id in range(256, vocab_size):
        counts = collections.Counter()
        for s in seqs:
            for i in range(len(s) - 1):
                counts[(s[i], s[i + 1])] += 1
        if not counts:
            break
        best = max(counts.values())
        pair = min(p for p, n in counts.items() if n == best)
        merges.append(pair)
        seqs = [slow_merge(s, pair, new_id) for s in seqs]
    return merges


def slow_merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out = list(ids)
    i = 0
    while i < len(out) - 1:
        if (out[i], out[i + 1]) == pair:
            out[i : i + 2] = [new_id]
        i += 1
    return out


def slow_encode(merges: list[tuple[int, int]], text: str, pattern: str | None = None) -> list[int]:
    """Replay every merge in training order over each chunk."""
    out = []
    for chunk in re.findall(pattern, text) if pattern else [text]:
        ids = list(chunk.encode("utf-8"))
        for i, pair in enumerate(merges):
            ids = slow_merge(ids, pair, 256 + i)
        out += ids
    return out


def test_merge_pair_is_left_to_right_without_overlap():
    """Oracle: the docstring's example."""
    assert BPETokenizer.merge_pair([1, 1, 1], (1, 1), 256) == [256, 1]
    assert BPETokenizer.merge_pair([1, 1, 1, 1], (1, 1), 256) == [256, 256]
    assert BPETokenizer.merge_pair([1, 2, 3, 1, 2], (1, 2), 300) == [300, 3, 300]


def test_bpe_tie_goes_to_the_smallest_pair():
    """Oracle: hand count; "xy" and "ab" occur twice each, "xy" first, "ab" is smaller."""
    tok = BPETokenizer.train("xyxyabab", 257)
    assert list(tok.merges) == [(97, 98)]
    assert tok.vocab[256] == b"ab"


@pytest.mark.parametrize("pattern", [None, PATTERN])
def test_bpe_training_and_encoding_match_the_slow_versions(pattern):
    """Oracle: slow_train (recount everything after each merge) and slow_encode (replay
    the merges in order), on 150 random texts over a small alphabet (many ties)."""
    rng = random.Random(3)
    alphabet = "aab bc  ab\nxyzé€😀's"
    for _ in range(150):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 150)))
        vocab_size = rng.randint(256, 300)
        tok = BPETokenizer.train(text, vocab_size, pattern)
        merges = slow_train(text, vocab_size, pattern)
        assert list(tok.merges) == merges
        assert list(tok.merges.values()) == list(range(256, 256 + len(merges)))
        other = "".join(rng.choice(alphabet + "qQ") for _ in range(rng.randint(0, 80)))
        assert tok.encode(other) == slow_encode(merges, other, pattern)


def test_bpe_decode_of_encode_is_the_identity_on_random_unicode():
    """Oracle: the contract decode(encode(s)) == s, on 300 random Unicode strings, with
    tokenizers trained with and without a pattern."""
    rng = random.Random(4)
    corpus = random_unicode(rng, 3000)
    for tok in (BPETokenizer.train(corpus, 400), BPETokenizer.train(corpus, 400, PATTERN)):
        for _ in range(150):
            s = random_unicode(rng, rng.randint(0, 40))
            ids = tok.encode(s)
            assert all(0 <= i < len(tok.vocab) for i in ids)
            assert tok.decode(ids) == s
            assert tok.decode(torch.tensor(ids, dtype=torch.long)) == s


def test_bpe_vocab_bytes_and_constructor_roundtrip():
    """Oracle: the definition, vocab[256 + i] = vocab[a] + vocab[b]; rebuilding from the
    list of merges gives the same tokenizer."""
    tok = BPETokenizer.train("the theme of the thesis " * 20, 300, PATTERN)
    for (a, b), i in tok.merges.items():
        assert tok.vocab[i] == tok.vocab[a] + tok.vocab[b]
    again = BPETokenizer(list(tok.merges), PATTERN)
    assert again.merges == tok.merges and again.vocab == tok.vocab
    text = "the thesis of the theme"
    assert again.encode(text) == tok.encode(text)
    assert len(tok.encode(text)) < len(text.encode())


def test_bpe_decode_replaces_invalid_utf8():
    """Oracle: bytes.decode(errors="replace") on a cut euro sign."""
    tok = BPETokenizer()
    assert tok.decode([0xE2, 0x82]) == "\ufffd"
    assert tok.decode(list("€".encode())) == "€"


def test_bpe_stops_early_when_no_pair_is_left():
    """Oracle: hand count; "abc" has two pairs, then one, then none."""
    tok = BPETokenizer.train("abc", 1000)
    assert len(tok.merges) == 2 and tok.encode("abc") == [257]


def test_bpe_training_is_fast_with_a_pattern():
    """Oracle: the docstring's claim, on 200 kB of text (a generous 20 s bound)."""
    import time

    rng = random.Random(5)
    words = [
        "".join(rng.choice("etaoinshrdlu") for _ in range(rng.randint(1, 9))) for _ in range(3000)
    ]
    text = " ".join(rng.choice(words) for _ in range(40000))
    start = time.perf_counter()
    tok = BPETokenizer.train(text, 1256, PATTERN)
    assert time.perf_counter() - start < 20
    assert len(tok.merges) == 1000


# ------------------------------------------------------------------------ objective


@pytest.mark.parametrize("shape", [(7, 11), (2, 5, 13), (3,)])
def test_cross_entropy_matches_torch(shape):
    """Oracle: F.cross_entropy (the logits flattened to (N, V))."""
    logits = randn(*shape[:-1], shape[-1], seed=1) * 3
    targets = torch.randint(shape[-1], shape[:-1], generator=torch.Generator().manual_seed(2))
    expected = F.cross_entropy(logits.reshape(-1, shape[-1]), targets.reshape(-1))
    torch.testing.assert_close(cross_entropy(logits, targets), expected)


def test_cross_entropy_ignores_targets_and_survives_large_logits():
    """Oracle: F.cross_entropy with ignore_index, logits of scale 1000."""
    logits = randn(4, 6, 9, seed=3) * 1000
    targets = torch.randint(9, (4, 6), generator=torch.Generator().manual_seed(4))
    targets[0, :3] = -100
    targets[2, 5] = -100
    ours = cross_entropy(logits, targets)
    assert torch.isfinite(ours)
    torch.testing.assert_close(ours, F.cross_entropy(logits.reshape(-1, 9), targets.reshape(-1)))
    targets[targets == -100] = 5
    ours = cross_entropy(logits, targets, ignore_index=5)
    ref = F.cross_entropy(logits.reshape(-1, 9), targets.reshape(-1), ignore_index=5)
    torch.testing.assert_close(ours, ref)


def test_cross_entropy_gradient_matches_torch():
    """Oracle: the gradient of F.cross_entropy."""
    logits = randn(3, 4, 7, seed=5).requires_grad_()
    targets = torch.randint(7, (3, 4), generator=torch.Generator().manual_seed(6))
    targets[1, 2] = -100
    (g1,) = torch.autograd.grad(cross_entropy(logits, targets), logits)
    (g2,) = torch.autograd.grad(F.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1)), logits)
    torch.testing.assert_close(g1, g2)


def test_cross_entropy_all_ignored_is_nan_like_torch():
    """Oracle: F.cross_entropy returns NaN when no target counts."""
    logits, targets = randn(2, 3), torch.full((2,), -100)
    assert torch.isnan(cross_entropy(logits, targets))
    assert torch.isnan(F.cross_entropy(logits, targets))


def test_get_batch_rows_are_windows_from_the_documented_draw():
    """Oracle: a loop over the offsets drawn with the docstring's single randint call."""
    data = torch.arange(100, 140)
    x, y = get_batch(data, 5, 7, generator=torch.Generator().manual_seed(9))
    offsets = torch.randint(40 - 7, (5,), generator=torch.Generator().manual_seed(9))
    for b, o in enumerate(offsets.tolist()):
        assert x[b].tolist() == list(range(100 + o, 100 + o + 7))
        assert y[b].tolist() == list(range(101 + o, 101 + o + 7))
    assert x.dtype == data.dtype and x.shape == (5, 7)


def test_get_batch_reaches_every_offset_and_no_further():
    """Oracle: the set of valid offsets 0..N-T-1 (3000 draws from 8 offsets)."""
    data = torch.arange(12)
    x, y = get_batch(data, 3000, 4, generator=torch.Generator().manual_seed(0))
    assert set(x[:, 0].tolist()) == set(range(8))
    assert torch.equal(y, x + 1)


# ------------------------------------------------------------------------ optimiser


def slow_lr(step, max_lr, min_lr, warmup, total):
    if step < warmup:
        return max_lr * step / warmup
    if step >= total:
        return min_lr
    p = (step - warmup) / (total - warmup)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * p))


def test_lr_schedule_warmup_is_linear_from_zero():
    """Oracle: the contract: 0 at step 0, max_lr at warmup_steps, linear between."""
    lrs = [lr_schedule(s, 1.0, 0.1, 4, 20) for s in range(5)]
    assert lrs == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_lr_schedule_decay_matches_torch_cosine_annealing():
    """Oracle: torch.optim.lr_scheduler.CosineAnnealingLR(T_max=total - warmup, eta_min)
    for the decay, then min_lr."""
    warmup, total, max_lr, min_lr = 5, 25, 0.3, 0.03
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=max_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=min_lr)
    for step in range(warmup, total + 1):
        assert lr_schedule(step, max_lr, min_lr, warmup, total) == pytest.approx(
            opt.param_groups[0]["lr"], rel=1e-9
        )
        opt.step()
        sched.step()
    assert lr_schedule(total + 10, max_lr, min_lr, warmup, total) == min_lr


def test_lr_schedule_matches_formula_everywhere():
    """Oracle: slow_lr, the three branches written out."""
    for warmup, total in [(0, 10), (3, 10), (10, 10), (1, 2)]:
        for step in range(15):
            assert lr_schedule(step, 2.0, 0.5, warmup, total) == pytest.approx(
                slow_lr(step, 2.0, 0.5, warmup, total)
            )


def grads_like(shapes, seed, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    params = []
    for s in shapes:
        p = torch.zeros(s, dtype=dtype, device=device, requires_grad=True)
        p.grad = (torch.randn(s, generator=g) * 2).to(device=device, dtype=dtype)
        params.append(p)
    return params


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(max_norm):
    """Oracle: torch.nn.utils.clip_grad_norm_ (norm returned, gradients after)."""
    ours, theirs = grads_like([(3, 4), (5,), (2, 2)], 1), grads_like([(3, 4), (5,), (2, 2)], 1)
    ours.append(torch.zeros(3, requires_grad=True))  # no grad: skipped
    total = clip_grad_norm(ours, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    torch.testing.assert_close(total, expected)
    for a, b in zip(ours, theirs, strict=False):
        torch.testing.assert_close(a.grad, b.grad)


def test_clip_grad_norm_accepts_a_generator_and_a_single_tensor():
    """Oracle: torch.nn.utils.clip_grad_norm_ on the same inputs."""
    model = nn.Linear(4, 3)
    twin = copy.deepcopy(model)
    model(randn(2, 4)).sum().backward()
    twin(randn(2, 4)).sum().backward()
    torch.testing.assert_close(
        clip_grad_norm(model.parameters(), 0.1),
        torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.1),
    )
    (p,), (q,) = grads_like([(6,)], 3), grads_like([(6,)], 3)
    torch.testing.assert_close(clip_grad_norm(p, 1.0), torch.nn.utils.clip_grad_norm_(q, 1.0))
    torch.testing.assert_close(p.grad, q.grad)


def run_optimizer(make, steps=15, seed=0, dtype=torch.float32, lrs=None):
    """Trajectory of two parameters (and one without grad) under noisy quadratic gradients."""
    g = torch.Generator().manual_seed(seed)
    params = [
        nn.Parameter(torch.randn(4, 3, generator=g).to(dtype)),
        nn.Parameter(torch.randn(5, generator=g).to(dtype)),
        nn.Parameter(torch.randn(2, generator=g).to(dtype)),
    ]
    opt = make(params)
    out = []
    for t in range(steps):
        if lrs is not None:
            for group in opt.param_groups:
                group["lr"] = lrs[t]
        for p in params[:2]:
            p.grad = (2.0 * p.detach() + torch.randn(p.shape, generator=g).to(dtype)).to(dtype)
        opt.step()
        out.append(torch.cat([p.detach().flatten() for p in params]))
    return torch.stack(out)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"lr": 0.05, "weight_decay": 0.3}, {"lr": 0.02, "betas": (0.8, 0.9), "eps": 0.1}],
)
def test_adamw_trajectory_matches_torch(kwargs):
    """Oracle: torch.optim.AdamW with the same hyperparameters, 15 steps."""
    ours = run_optimizer(lambda p: AdamW(p, **kwargs))
    theirs = run_optimizer(lambda p: torch.optim.AdamW(p, **kwargs))
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


def test_adamw_groups_and_changing_lr_match_torch():
    """Oracle: torch.optim.AdamW with two parameter groups and an lr set before each step."""

    def groups(p):
        return [{"params": p[:1], "weight_decay": 0.2}, {"params": p[1:], "weight_decay": 0.0}]

    lrs = [0.01 * (1 + t % 4) for t in range(15)]
    ours = run_optimizer(lambda p: AdamW(groups(p), lr=0.1), lrs=lrs)
    theirs = run_optimizer(lambda p: torch.optim.AdamW(groups(p), lr=0.1), lrs=lrs)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


def test_adamw_state_names_and_closure():
    """Oracle: the docstring (state keys) and the Optimizer protocol (closure's loss)."""
    p = nn.Parameter(torch.ones(3))
    opt = AdamW([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 3.0
    assert set(opt.state[p]) == {"step", "exp_avg", "exp_avg_sq"} and opt.state[p]["step"] == 1


# ------------------------------------------------------------------------- the loop


class TinyLM(nn.Module):
    def __init__(self, vocab: int = 11, d: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.emb(ids)))


def test_train_language_model_follows_its_documented_steps():
    """Oracle: the six documented steps written out here with torch's own pieces
    (F.cross_entropy, clip_grad_norm_, the schedule formula) and torch.optim.SGD."""
    torch.manual_seed(0)
    data = torch.randint(11, (300,), generator=torch.Generator().manual_seed(1))
    ours, theirs = TinyLM(), TinyLM()
    theirs.load_state_dict(ours.state_dict())
    kwargs = {"steps": 20, "batch_size": 4, "block_size": 8, "max_lr": 0.5, "warmup_steps": 5}
    history = train_language_model(
        ours,
        data,
        **kwargs,
        grad_clip=0.3,
        optimizer=torch.optim.SGD(ours.parameters(), lr=0.0, momentum=0.9),
        generator=torch.Generator().manual_seed(2),
        progress=False,
    )
    opt = torch.optim.SGD(theirs.parameters(), lr=0.0, momentum=0.9)
    g = torch.Generator().manual_seed(2)
    expected = []
    for t in range(20):
        opt.param_groups[0]["lr"] = slow_lr(t, 0.5, 0.05, 5, 20)
        offsets = torch.randint(300 - 8, (4,), generator=g)
        x = torch.stack([data[o : o + 8] for o in offsets.tolist()])
        y = torch.stack([data[o + 1 : o + 9] for o in offsets.tolist()])
        loss = F.cross_entropy(theirs(x).reshape(-1, 11), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 0.3)
        opt.step()
        expected.append(loss.item())
    assert isinstance(history, list) and all(isinstance(v, float) for v in history)
    assert history == pytest.approx(expected, rel=1e-4, abs=1e-5)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_train_language_model_learns_with_its_default_adamw_and_shows_a_progress_bar():
    """Oracle: a deterministic sequence (next = current + 1 mod 11) is learnt: the loss
    falls from about ln 11 to near 0; tqdm writes its bar to stderr."""
    data = torch.arange(400) % 11
    model = TinyLM()
    err = io.StringIO()
    with redirect_stderr(err):
        history = train_language_model(
            model, data, steps=150, batch_size=8, block_size=8, max_lr=3e-2, warmup_steps=10,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
    assert len(history) == 150
    assert history[0] > 1.5 and sum(history[-10:]) / 10 < 0.1
    assert "training" in err.getvalue() and "150/150" in err.getvalue()


def test_default_optimizer_decays_only_matrices():
    """Oracle: with lr 0 the loop changes nothing, and the AdamW groups it builds hold the
    matrices (weight decay) and the vectors (none) - checked through the optimizer's step
    with zero gradients: only decayed parameters shrink."""
    model = TinyLM()
    before = copy.deepcopy(model.state_dict())
    data = torch.arange(100) % 11

    class Zero(nn.Module):  # zero gradients everywhere: only the weight decay moves weights
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, ids):
            return self.inner(ids) * 0.0

    train_language_model(
        Zero(model), data, steps=3, batch_size=2, block_size=4, max_lr=0.1, min_lr=0.1,
        weight_decay=0.5, grad_clip=None, progress=False,
    )  # fmt: skip
    after = model.state_dict()
    for name, value in after.items():
        if value.dim() >= 2:
            torch.testing.assert_close(value, before[name] * (1 - 0.1 * 0.5) ** 3)
        else:
            torch.testing.assert_close(value, before[name])


# ---------------------------------------------------------------- one-rank distributed


def test_parallel_layers_without_a_process_group_are_plain_linear_layers():
    """Oracle: F.linear with the layer's own weight and bias (world size 1)."""
    assert not dist.is_initialized()
    x = randn(2, 3, 8, seed=1, dtype=torch.float64).requires_grad_()
    for layer in (ColumnParallelLinear(8, 6), RowParallelLinear(8, 6)):
        layer = layer.double()
        assert layer.weight.shape == (6, 8) and layer.bias.shape == (6,)
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    model = nn.Linear(3, 2)
    model(randn(4, 3)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    all_reduce_gradients(model)  # one process: nothing to average
    for g, p in zip(grads, model.parameters(), strict=True):
        assert torch.equal(g, p.grad)


def test_parallel_layers_initialise_like_nn_linear():
    """Oracle: nn.Linear's bounds, U(-1/sqrt(in), 1/sqrt(in)), on a large layer."""
    layer = ColumnParallelLinear(400, 300)
    bound = 1 / math.sqrt(400)
    assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.95 * bound
    assert RowParallelLinear(400, 300, bias=False).bias is None


# --------------------------------------------------------------------- GPU-capability


class Env:
    def __init__(self, device="cpu", dtype=torch.float32):
        self.device, self.dtype = torch.device(device), dtype
        self.seed = 100

    def randn(self, *shape):
        self.seed += 1
        return randn(*shape, seed=self.seed).to(device=self.device, dtype=self.dtype)

    def ids(self, high, *shape):
        self.seed += 1
        g = torch.Generator().manual_seed(self.seed)
        return torch.randint(high, shape, generator=g).to(self.device)


def _clip_case(e):
    params = grads_like([(3, 4), (5,)], 7, dtype=e.dtype, device=e.device)
    total = clip_grad_norm(params, 1.0)
    return (total, *[p.grad for p in params])


def _adamw_case(e):
    params = [nn.Parameter(e.randn(3, 4)), nn.Parameter(e.randn(5))]
    opt = AdamW(params, lr=0.1, weight_decay=0.1)
    for _ in range(3):
        for p in params:
            p.grad = e.randn(*p.shape)
        opt.step()
    return tuple(p.detach() for p in params)


def _layer_case(cls, e):
    torch.manual_seed(0)
    layer = cls(8, 6).to(device=e.device, dtype=e.dtype)
    with torch.no_grad():
        layer.weight.copy_(e.randn(*layer.weight.shape))
        layer.bias.copy_(e.randn(*layer.bias.shape))
    return (layer(e.randn(2, 3, 8)),)


CASES = {
    "cross_entropy": (
        lambda e: (cross_entropy(e.randn(2, 5, 9) * 3, e.ids(9, 2, 5)),),
        [()],
    ),
    "get_batch": (
        lambda e: get_batch(e.ids(50, 40), 3, 6, generator=torch.Generator().manual_seed(1)),
        [(3, 6), (3, 6)],
    ),
    "clip_grad_norm": (_clip_case, [(), (3, 4), (5,)]),
    "AdamW": (_adamw_case, [(3, 4), (5,)]),
    "ColumnParallelLinear": (lambda e: _layer_case(ColumnParallelLinear, e), [(2, 3, 6)]),
    "RowParallelLinear": (lambda e: _layer_case(RowParallelLinear, e), [(2, 3, 6)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_runs_on_meta_device_with_correct_shapes(name):
    """Oracle: the contract's shapes; meta tensors prove no tensor is created on the wrong
    device and no value is read."""
    fn, shapes = CASES[name]
    outs = fn(Env(META))
    assert [tuple(o.shape) for o in outs] == shapes
    assert all(o.device.type == "meta" for o in outs)


@pytest.mark.parametrize("name", [n for n in CASES if n != "get_batch"])
def test_float64_matches_float32(name):
    """Oracle: the float32 result on the same seeded inputs."""
    fn, _ = CASES[name]
    for o32, o64 in zip(fn(Env(dtype=torch.float32)), fn(Env(dtype=torch.float64)), strict=True):
        assert o64.dtype == torch.float64
        torch.testing.assert_close(o64.float(), o32, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", [n for n in CASES if n != "get_batch"])
def test_bfloat16_stays_bfloat16_and_close_to_float32(name):
    """Oracle: the float32 result, with a tolerance loose enough for bfloat16's 8 bits."""
    fn, _ = CASES[name]
    for o32, o16 in zip(fn(Env(dtype=torch.float32)), fn(Env(dtype=torch.bfloat16)), strict=True):
        assert o16.dtype == torch.bfloat16
        torch.testing.assert_close(o16.float(), o32, atol=5e-2, rtol=5e-2)


# ------------------------------------------------------------------ invalid arguments


def _e(*shape, device="cpu", dtype=torch.float32):
    return torch.zeros(shape, device=device, dtype=dtype)


def _long(*shape, device="cpu"):
    return torch.zeros(shape, device=device, dtype=torch.long)


INVALID = {
    "normalize_type": (lambda d: normalize_text(b"bytes"), r"text must be a str"),
    "dedup_threshold": (lambda d: deduplicate(["a"], threshold=0.0), r"threshold must be in"),
    "dedup_shingle": (lambda d: deduplicate(["a"], shingle_size=0), r"shingle_size must be >= 1"),
    "bpe_vocab_size": (lambda d: BPETokenizer.train("abc", 100), r"vocab_size must be >= 256"),
    "bpe_bad_merge": (lambda d: BPETokenizer([(1, 300)]), r"merges: the pair \(1, 300\)"),
    "bpe_decode_unknown": (lambda d: BPETokenizer().decode([1, 999]), r"ids holds 999"),
    "bpe_pattern": (lambda d: BPETokenizer([], r"[a-z]+").encode("ab cd"), r"pattern"),
    "ce_scalar": (lambda d: cross_entropy(_e(device=d), _long(device=d)), r"logits must have"),
    "ce_shape": (
        lambda d: cross_entropy(_e(2, 3, 5, device=d), _long(2, 4, device=d)),
        r"targets must have shape logits.shape\[:-1\] = \(2, 3\)",
    ),
    "ce_float_targets": (
        lambda d: cross_entropy(_e(2, 5, device=d), _e(2, device=d)),
        r"targets must be an integer tensor",
    ),
    "batch_rank": (lambda d: get_batch(_long(2, 10, device=d), 2, 3), r"data must have shape"),
    "batch_too_short": (
        lambda d: get_batch(_long(5, device=d), 2, 5),
        r"data must hold at least block_size \+ 1 = 6",
    ),
    "batch_block": (lambda d: get_batch(_long(5, device=d), 2, 0), r"block_size must be >= 1"),
    "batch_size": (lambda d: get_batch(_long(5, device=d), 0, 2), r"batch_size must be >= 1"),
    "lr_step": (lambda d: lr_schedule(-1, 1.0, 0.1, 2, 10), r"step must be >= 0"),
    "lr_total": (lambda d: lr_schedule(0, 1.0, 0.1, 5, 3), r"total_steps must be >= warmup"),
    "lr_warmup": (lambda d: lr_schedule(0, 1.0, 0.1, -1, 3), r"warmup_steps must be >= 0"),
    "clip_max_norm": (lambda d: clip_grad_norm([_e(2, device=d)], 0.0), r"max_norm must be > 0"),
    "adamw_lr": (lambda d: AdamW([nn.Parameter(_e(2, device=d))], lr=-1), r"lr must be >= 0"),
    "adamw_betas": (
        lambda d: AdamW([nn.Parameter(_e(2, device=d))], betas=(0.9, 1.0)),
        r"betas must both be in \[0, 1\)",
    ),
    "adamw_eps": (lambda d: AdamW([nn.Parameter(_e(2, device=d))], eps=-1.0), r"eps must be"),
    "adamw_wd": (
        lambda d: AdamW([nn.Parameter(_e(2, device=d))], weight_decay=-0.1),
        r"weight_decay must be >= 0",
    ),
    "loop_steps": (
        lambda d: train_language_model(TinyLM(), _long(50), -1, 2, 4),
        r"steps must be >= 0",
    ),
    "loop_clip": (
        lambda d: train_language_model(TinyLM(), _long(50), 1, 2, 4, grad_clip=0.0),
        r"grad_clip must be > 0 or None",
    ),
    "column_x": (
        lambda d: ColumnParallelLinear(8, 6).to(d)(_e(2, 7, device=d)),
        r"x must have shape \(\.\.\., in_features=8\)",
    ),
    "row_x": (
        lambda d: RowParallelLinear(8, 6).to(d)(_e(2, 7, device=d)),
        r"x must have shape \(\.\.\., 8\)",
    ),
}


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_argument_raises_value_error_naming_it(name, device):
    """Oracle: the contract: a ValueError that names the argument (tensor checks read
    shapes only, so they hold on meta tensors too)."""
    fn, match = INVALID[name]
    with pytest.raises(ValueError, match=match):
        fn(device)


# ------------------------------------------------------------------------ copyability


def test_module_has_no_private_helpers():
    """Oracle: the notebook tool copies single public names; nothing private may exist."""
    private = [n for n in vars(training) if n.startswith("_") and not n.startswith("__")]
    assert private == []
    public = [
        n
        for n, v in vars(training).items()
        if (inspect.isfunction(v) or inspect.isclass(v)) and v.__module__ == training.__name__
    ]
    assert sorted(public) == sorted(PUBLIC_NAMES)


def test_public_names_work_when_copied_with_getsource():
    """Oracle: the module itself; each name's source, run in a namespace holding only the
    module's imports, gives the same results."""
    ns = {
        "heapq": heapq, "math": math, "re": re, "unicodedata": unicodedata,
        "Counter": collections.Counter, "defaultdict": collections.defaultdict,
        "Callable": collections.abc.Callable, "Iterable": collections.abc.Iterable,
        "torch": torch, "dist": dist, "nn": nn, "F": F, "tqdm": tqdm,
    }  # fmt: skip
    for name in PUBLIC_NAMES:
        exec(inspect.getsource(getattr(training, name)), ns)
    text = "the theme of the thesis, " * 10
    assert (
        ns["BPETokenizer"].train(text, 280, PATTERN).merges
        == BPETokenizer.train(text, 280, PATTERN).merges
    )
    assert ns["normalize_text"]("ﬁ  x") == "fi x"
    logits, targets = randn(3, 5), torch.tensor([0, 4, -100])
    torch.testing.assert_close(ns["cross_entropy"](logits, targets), cross_entropy(logits, targets))
    data = torch.arange(100) % 11
    kwargs = {"steps": 5, "batch_size": 2, "block_size": 4, "progress": False}
    torch.manual_seed(0)
    a = ns["train_language_model"](
        TinyLM(), data, generator=torch.Generator().manual_seed(0), **kwargs
    )
    torch.manual_seed(0)
    b = train_language_model(TinyLM(), data, generator=torch.Generator().manual_seed(0), **kwargs)
    assert a == b


def test_public_names_have_docstrings_with_shapes_and_type_hints():
    """Oracle: the conventions: a docstring with Args/Returns and full type hints."""
    for name in PUBLIC_NAMES:
        obj = getattr(training, name)
        doc = inspect.getdoc(obj) or ""
        assert "Args" in doc, name
        if inspect.isclass(obj):
            methods = [
                v
                for k, v in vars(obj).items()
                if inspect.isfunction(v) or isinstance(v, (classmethod, staticmethod))
            ]
            fns = [getattr(m, "__func__", m) for m in methods]
        else:
            fns = [obj]
            assert "Returns" in doc, name
        for fn in fns:
            sig = inspect.signature(fn)
            assert sig.return_annotation is not inspect.Signature.empty, (name, fn)
            for p in sig.parameters.values():
                if p.name not in ("self", "cls"):
                    assert p.annotation is not inspect.Parameter.empty, (name, p.name)
            if fn.__name__ != "__init__":
                assert "Returns" in (inspect.getdoc(fn) or ""), (name, fn.__name__)
    assert training.__doc__ and "Chapter 04" in training.__doc__


def test_modules_can_be_deep_copied_and_moved():
    """Oracle: nn.Module semantics (the autograder copies and moves reference modules)."""
    layer = copy.deepcopy(ColumnParallelLinear(4, 2)).to(torch.float64)
    assert layer.weight.dtype == torch.float64
