"""Chapter 09's claims on the trained course models (``make model``; trained here if missing).

The page book/09_inference.md shows each of these once; here they are checked in other
configurations, so a change to the reference or to the course model that breaks one
fails the suite and not only the website build:

- greedy generation with the KV cache gives the tokens of recomputation (chapter 07's
  ``generate`` at temperature 0) up to the model's full context, for a batch;
- speculative decoding with the draft model is the main model's greedy decoding at
  temperature 0, for every gamma, and at temperature 1 its tokens follow the main model's
  distribution (Pearson's chi-square against the exact probabilities, with the power to
  reject the draft's own distribution);
- ``generate_batch`` gives each prompt, padded or not, its own greedy tokens;
- ``PrefixCache`` computes a shared system prompt once and changes no token;
- the main model with int8 blocks (``Int8Linear.from_float``) keeps its validation
  perplexity within 1 % with a quarter of the linear layers' bytes;
- distillation: a draft-sized student trained on the main model's soft labels reaches a
  lower validation loss than the same student on the hard labels, same steps and batches;
- flash attention at L = 16384, d = 64 holds a small fraction of one (L, L) matrix.

Speeds are not asserted here (bench/inference.py measures them).
"""

from __future__ import annotations

import copy
import math
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import solutions.inference as S
from autograder.core.draws import chi_square
from course.helpers import replace_modules
from solutions.architectures import GPT
from solutions.course_model import CONFIGS, CORPUS, evaluate_loss, prepare_data
from solutions.sampling import generate
from solutions.training import get_batch, lr_schedule


@pytest.fixture(scope="module")
def data():
    _, train_ids, val_ids, _ = prepare_data(CORPUS, progress=False)
    return train_ids, val_ids


def _encode(tok, text: str) -> torch.Tensor:
    return torch.tensor([tok.encode(text)])  # (1, L)


def test_kv_cache_equals_recomputation_up_to_the_full_context(models) -> None:
    main, _, tok = models
    a, b = tok.encode("Return the number of"), tok.encode("If the path is")
    n = min(len(a), len(b))
    ids = torch.tensor([a[:n], b[:n]])  # (2, n)
    new = main.max_seq_len - n  # every position the model has
    got = S.generate_with_kv_cache(main, ids, new)
    assert got.shape == (2, main.max_seq_len)
    assert torch.equal(got, generate(main, ids, new, temperature=0.0))


@pytest.mark.parametrize("gamma", [2, 3, 8])
def test_speculative_at_temperature_zero_is_the_main_model_greedy(models, gamma: int) -> None:
    main, draft, tok = models
    ids = _encode(tok, "This module provides")
    got, stats = S.speculative_decode(main, draft, ids, 40, gamma=gamma, temperature=0)
    assert torch.equal(got, generate(main, ids, 40, temperature=0.0))
    assert stats["target_forwards"] < 40  # the draft's agreements save target passes
    assert stats["accepted"] > 0


def test_speculative_tokens_follow_the_main_model_distribution(models) -> None:
    """The first sampled token after a prompt, 1500 times: its frequencies against the main
    model's exact next-token probabilities, pooled into its 8 likeliest tokens and the rest.
    After this prompt the draft disagrees often (it accepts about 70 % of proposals), so
    the residual distribution is drawn from many times.
    """
    main, draft, tok = models
    ids = _encode(tok, "If the file")
    with torch.no_grad():
        p = main(ids)[0, -1].softmax(-1)  # (V,)
        q = draft(ids)[0, -1].softmax(-1)  # (V,)
    top = p.argsort(descending=True)[:8]  # (8,)
    other = torch.ones_like(p, dtype=torch.bool)
    other[top] = False

    def pooled(dist: torch.Tensor) -> torch.Tensor:
        return torch.cat([dist[top], dist[other].sum()[None]])  # (9,)

    counts = torch.zeros_like(p)
    g = torch.Generator().manual_seed(0)
    for _ in range(1500):
        out, _ = S.speculative_decode(main, draft, ids, 1, gamma=1, temperature=1.0, generator=g)
        counts[out[0, -1]] += 1
    assert 0.6 < float(torch.minimum(p, q).sum()) < 0.8  # the acceptance probability
    # 8 degrees of freedom: P(chi2 > 35) < 1e-4 for a correct sampler.
    assert chi_square(pooled(counts), pooled(p))[0] < 35
    # The test can tell: the draft's own distribution is rejected.
    assert chi_square(pooled(counts), pooled(q))[0] > 200


def test_generate_batch_gives_each_prompt_its_own_tokens(models) -> None:
    main, _, tok = models
    texts = ["Return", "The default value is", "If the file does not exist, raise", "Open the"]
    prompts = [torch.tensor(tok.encode(t)) for t in texts]
    assert min(len(p) for p in prompts) == 1 and len({len(p) for p in prompts}) >= 3
    outs = S.generate_batch(main, prompts, 30)
    for p, out in zip(prompts, outs, strict=True):
        assert torch.equal(out, generate(main, p[None], 30, temperature=0.0)[0])


def test_prefix_cache_computes_a_shared_system_prompt_once(models) -> None:
    main, _, tok = models
    system = "You explain the Python standard library in one short sentence.\n"
    questions = ["Return the current time", "Open a file", "Sort a list", "Join two paths"]
    cache = S.PrefixCache(main)
    total = 0
    for question in questions:
        ids = _encode(tok, system + question)
        total += ids.shape[1]
        assert torch.equal(cache.generate(ids, 12), S.generate_with_kv_cache(main, ids, 12))
    shared = len(tok.encode(system)) - 1  # the system prompt's last token may merge
    assert cache.stats["requests"] == len(questions)
    assert cache.stats["computed"] + cache.stats["reused"] == total
    assert cache.stats["reused"] >= (len(questions) - 1) * shared


def test_int8_course_model_keeps_its_perplexity(models, data) -> None:
    main, _, _ = models
    _, val_ids = data
    val = val_ids[: 32 * 128 + 1]
    linears = sum(m.weight.nbytes for m in main.blocks.modules() if isinstance(m, torch.nn.Linear))
    int8 = replace_modules(copy.deepcopy(main), torch.nn.Linear, S.Int8Linear.from_float, "blocks.")
    int8_bytes = sum(
        m.weight_int8.nbytes + m.scale.nbytes
        for m in int8.blocks.modules()
        if isinstance(m, S.Int8Linear)
    )
    assert int8_bytes < 0.27 * linears
    ppl = math.exp(evaluate_loss(main, val, 128))
    ppl_int8 = math.exp(evaluate_loss(int8, val, 128))
    assert abs(ppl_int8 / ppl - 1) < 0.01, (ppl, ppl_int8)


def _train_student(teacher, train_ids, soft: bool, steps: int = 100) -> GPT:
    cfg = CONFIGS["draft"]
    torch.manual_seed(0)
    student = GPT(1024, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.max_seq_len)
    opt = torch.optim.AdamW(student.parameters(), lr=4e-3, betas=(0.9, 0.95), weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_schedule(step, 4e-3, 4e-4, 20, steps)
        x, y = get_batch(train_ids, 8, 64, g)  # (8, 64), (8, 64)
        logits = student(x)  # (8, 64, V)
        if soft:
            with torch.no_grad():
                teacher_logits = teacher(x)  # (8, 64, V)
            loss = S.distillation_loss(logits, teacher_logits, temperature=1.0)
        else:
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return student.eval()


def test_distillation_beats_hard_labels_for_the_same_steps(models, data) -> None:
    main, _, _ = models
    train_ids, val_ids = data
    val = val_ids[: 16 * 128 + 1]
    hard = evaluate_loss(_train_student(main, train_ids, soft=False), val, 128)
    soft = evaluate_loss(_train_student(main, train_ids, soft=True), val, 128)
    assert soft < hard - 0.3, (soft, hard)


class _PeakBytes(TorchDispatchMode):
    """The most bytes held at once by the tensors created inside the ``with`` block.

    A tensor an operation returns is counted until it is freed, unless its storage is
    already counted or belongs to an argument (a view, an in-place result).
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                key = t.untyped_storage().data_ptr()
                if key not in self.live and key not in inputs:
                    self.live[key] = t.untyped_storage().nbytes()
                    self.peak = max(self.peak, sum(self.live.values()))
                    weakref.finalize(t, self.live.pop, key, None)
        return out


def test_peak_bytes_recorder_sees_the_naive_scores() -> None:
    L = 1024
    q, k, v = (torch.randn(1, 1, L, 64) for _ in range(3))
    with torch.no_grad(), _PeakBytes() as naive:
        (q @ k.transpose(-2, -1) / 8).softmax(dim=-1) @ v
    assert naive.peak >= 2 * 4 * L * L  # the scores and their softmax, both (L, L) float32


def test_flash_attention_at_16k_holds_a_small_fraction_of_one_score_matrix() -> None:
    L, d = 16384, 64
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, L, d, generator=g) for _ in range(3))
    with torch.no_grad(), _PeakBytes() as flash:
        out = S.flash_attention(q, k, v, causal=True)
    scores = 4 * L * L  # one (L, L) float32 matrix: 1 GiB; the naive way holds two or more
    assert flash.peak < 0.01 * scores, flash.peak
    assert flash.peak >= out.nbytes
    rows = slice(L - 64, L)  # the last queries see every key: check them against SDPA
    want = F.scaled_dot_product_attention(
        q[..., rows, :], k, v, attn_mask=torch.ones(64, L, dtype=torch.bool).tril(L - 64)
    )
    assert torch.allclose(out[..., rows, :], want, atol=1e-5)
