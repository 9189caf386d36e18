"""The reference of chapter 09 (solutions/inference.py) against independent oracles.

Oracles: slow Python loops for the quantizers (Python's ``round`` is half to even
like ``torch.round``), ``torch.quantize_per_tensor`` with the parameters of
``torch.ao.quantization.MinMaxObserver`` for the zero-point scheme,
``F.linear`` on dequantized weights for ``Int8Linear``, ``F.kl_div`` and
``F.cross_entropy`` for distillation, ``F.scaled_dot_product_attention`` for flash
attention (and a ``TorchDispatchMode`` that records every tensor it creates, to
prove no (Lq, Lk) matrix exists), the model's own full forward pass recomputed at
every step for the KV cache, and the exact target distribution (enumerated)
with Pearson's chi-square for speculative sampling.

Not run on ``meta`` (data-dependent): the decoding loops (they pick tokens with
argmax or sampling and stop on them) and ``PrefixCache`` (it compares ids).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import solutions.inference as S
from autograder.core.draws import TableLM, chi_square
from solutions.architectures import GPT


def _gpt(seed: int = 0, vocab: int = 40, d: int = 32, layers: int = 2, heads: int = 4) -> GPT:
    torch.manual_seed(seed)
    return GPT(vocab, d, layers, heads, max_seq_len=48).eval()


# ------------------------------------------------------------------ quantization


def _loop_int8(w: torch.Tensor, per_channel: bool) -> tuple[list[list[int]], list[float]]:
    rows = w.double().tolist()
    if per_channel:
        scales = [max(abs(x) for x in row) / 127 for row in rows]
    else:
        scales = [max(abs(x) for row in rows for x in row) / 127] * len(rows)
    q = [
        [max(-127, min(127, round(x / s))) for x in row]
        for row, s in zip(rows, scales, strict=True)
    ]
    return q, scales


@pytest.mark.parametrize("per_channel", [True, False])
def test_quantize_int8_matches_a_loop(per_channel: bool) -> None:
    w = torch.randn(6, 9, dtype=torch.float64) * torch.tensor([0.1, 1, 3, 10, 0.01, 1.0])[:, None]
    q, scale = S.quantize_int8(w, per_channel=per_channel)
    want_q, want_s = _loop_int8(w, per_channel)
    assert q.dtype == torch.int8 and q.shape == w.shape
    assert q.tolist() == want_q
    assert scale.shape == ((6, 1) if per_channel else ())
    assert torch.allclose(scale.expand(6, 1).flatten(), torch.tensor(want_s, dtype=torch.float64))
    err = (S.dequantize_int8(q, scale) - w).abs()
    assert bool((err <= scale / 2 + 1e-12).all())  # rounding error at most half a step
    assert q.abs().max() == 127  # the absmax maps to +-127 exactly


def test_quantize_int8_per_channel_beats_per_tensor_on_uneven_rows() -> None:
    w = torch.randn(8, 64) * torch.logspace(-2, 1, 8)[:, None]
    err = {
        pc: (S.dequantize_int8(*S.quantize_int8(w, per_channel=pc)) - w).abs().mean()
        for pc in (True, False)
    }
    assert err[True] < err[False] / 3


def test_quantize_int8_zero_rows_and_leading_dims() -> None:
    w = torch.randn(2, 3, 5)
    w[0, 1] = 0
    q, scale = S.quantize_int8(w)
    assert scale.shape == (2, 3, 1) and bool(torch.isfinite(scale).all())
    assert q[0, 1].abs().sum() == 0
    assert torch.allclose(S.dequantize_int8(q, scale), w, atol=float(scale.max()))


def test_quantize_zeropoint_matches_torch_quantize_per_tensor() -> None:
    g = torch.Generator().manual_seed(0)
    for shift in (0.0, 1.5, -2.0):  # mixed signs, all positive, all negative
        w = torch.randn(7, 11, generator=g) + shift
        q, scale, zp = S.quantize_zeropoint(w, bits=8)
        observer = torch.ao.quantization.MinMaxObserver(dtype=torch.quint8)
        observer(w)
        want_scale, want_zp = observer.calculate_qparams()
        assert torch.allclose(scale, want_scale[0]) and int(zp) == int(want_zp[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized dtypes are deprecated, still the oracle
            want = torch.quantize_per_tensor(w, float(scale), int(zp), torch.quint8)
        assert q.dtype == torch.uint8
        assert torch.equal(q, want.int_repr())
        back = S.dequantize_zeropoint(q, scale, zp)
        assert torch.allclose(back, want.dequantize(), atol=1e-6)
        assert float((back - w).abs().max()) <= float(scale) / 2 + 1e-6


def test_quantize_zeropoint_low_bits_matches_a_loop() -> None:
    w = torch.randn(4, 6, dtype=torch.float64) - 0.3
    for bits in (2, 4):
        q, scale, zp = S.quantize_zeropoint(w, bits=bits)
        qmax = 2**bits - 1
        flat = w.flatten().tolist()
        lo, hi = min(min(flat), 0.0), max(max(flat), 0.0)
        s = (hi - lo) / qmax
        z = max(0, min(qmax, round(-lo / s)))
        want = [max(0, min(qmax, round(x / s) + z)) for x in flat]
        assert math.isclose(float(scale), s) and int(zp) == z
        assert q.flatten().tolist() == want
        assert int(q.max()) <= qmax
    zeros = S.quantize_zeropoint(torch.zeros(3))
    assert zeros[0].tolist() == [0, 0, 0] and int(zeros[2]) == 0


@pytest.mark.parametrize("bias", [True, False])
def test_int8_linear_equals_linear_on_dequantized_weights(bias: bool) -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 10, bias=bias)
    layer = S.Int8Linear.from_float(lin)
    assert set(layer.state_dict()) == (
        {"weight_int8", "scale", "bias"} if bias else {"weight_int8", "scale"}
    )
    x = torch.randn(3, 5, 16)
    q, scale = S.quantize_int8(lin.weight.detach())
    want = F.linear(x, S.dequantize_int8(q, scale), lin.bias)
    assert torch.allclose(layer(x), want, atol=1e-5)
    assert (layer(x) - lin(x)).abs().max() < 0.02  # close to the float layer
    fresh = S.Int8Linear(16, 10, bias=bias)  # the grader rebuilds it from a state_dict
    fresh.load_state_dict(layer.state_dict())
    assert torch.equal(fresh(x), layer(x))


# ----------------------------------------------------------------- distillation


@pytest.mark.parametrize("T", [1.0, 2.0, 5.0])
def test_distillation_matches_kl_div_and_cross_entropy(T: float) -> None:
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(3, 4, 12, generator=g), torch.randn(3, 4, 12, generator=g) * 2
    labels = torch.randint(0, 12, (3, 4), generator=g)
    log_s = F.log_softmax(s / T, -1).reshape(-1, 12)
    log_t = F.log_softmax(t / T, -1).reshape(-1, 12)
    kl = F.kl_div(log_s, log_t, log_target=True, reduction="batchmean")  # KL(teacher ‖ student)
    ce = F.cross_entropy(s.reshape(-1, 12), labels.reshape(-1))
    assert torch.allclose(S.distillation_loss(s, t, T), T**2 * kl)
    for alpha in (0.0, 0.3, 1.0):
        got = S.distillation_loss(s, t, T, labels=labels, alpha=alpha)
        assert torch.allclose(got, alpha * T**2 * kl + (1 - alpha) * ce)


def test_distillation_gradient_size_stays_comparable_across_temperatures() -> None:
    torch.manual_seed(0)
    t = torch.randn(64, 20) * 3
    sizes = []
    for T in (2.0, 8.0):
        s = torch.randn(64, 20, requires_grad=True)
        S.distillation_loss(s, t, T).backward()
        sizes.append(float(s.grad.norm()))  # T² * (1/T) soft gradient ~ T^-1 * (s - t) / V ...
    assert 0.25 < sizes[1] / sizes[0] < 4  # without T² the ratio would be ~ (2/8)^2 smaller


def test_distillation_equal_logits_give_zero_and_dtypes() -> None:
    s = torch.randn(2, 5, 7)
    assert float(S.distillation_loss(s, s.clone())) == pytest.approx(0.0, abs=1e-6)
    for dtype in (torch.float64, torch.bfloat16):
        out = S.distillation_loss(s.to(dtype), (s + 1e-1 * torch.randn_like(s)).to(dtype))
        assert out.dtype == dtype and out.shape == ()


# ------------------------------------------------------------- flash attention


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    ("Lq", "Lk", "block"), [(50, 50, 16), (37, 64, 7), (64, 23, 128), (9, 9, 1)]
)
def test_flash_attention_equals_scaled_dot_product_attention(causal, Lq, Lk, block) -> None:
    g = torch.Generator().manual_seed(Lq * Lk + block)
    q = torch.randn(2, 3, Lq, 16, generator=g, dtype=torch.float64) * 2
    k = torch.randn(2, 3, Lk, 16, generator=g, dtype=torch.float64) * 2
    v = torch.randn(2, 3, Lk, 8, generator=g, dtype=torch.float64)  # dv != d
    out = S.flash_attention(q, k, v, causal=causal, block_size=block)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # top-left causal
    assert out.shape == (2, 3, Lq, 8) and out.dtype == torch.float64
    assert torch.allclose(out, want, atol=1e-12)


def test_flash_attention_large_scores_and_dtypes() -> None:
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(4, 70, 32, generator=g) * 6 for _ in range(3))  # exp would overflow
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(S.flash_attention(q, k, v, causal=True, block_size=16), want, atol=1e-4)
    qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
    out = S.flash_attention(qb, kb, vb, block_size=16)
    assert out.dtype == torch.bfloat16
    want = F.scaled_dot_product_attention(qb.float(), kb.float(), vb.float())
    assert bool(((out.float() - want).abs() <= 0.01 * want.abs() + 0.01).all())  # bf16 rounding


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operation returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_flash_attention_never_creates_an_lq_by_lk_matrix() -> None:
    L, d, block = 8192, 64, 256
    q, k, v = (torch.empty(L, d, device="meta") for _ in range(3))
    with _LargestTensor() as naive:
        F.softmax(q @ k.T, dim=-1) @ v  # the naive way, for comparison
    with _LargestTensor() as flash:
        out = S.flash_attention(q, k, v, causal=True, block_size=block)
    assert out.shape == (L, d) and out.device.type == "meta"
    assert naive.largest == L * L
    assert flash.largest <= max(L * d, block * block)  # the inputs/outputs or one tile
    assert flash.largest * 100 < L * L


def test_flash_attention_bad_arguments() -> None:
    q = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match="block_size"):
        S.flash_attention(q, q, q, block_size=0)
    with pytest.raises(ValueError, match="k must"):
        S.flash_attention(q, torch.randn(2, 5, 4), q)
    with pytest.raises(ValueError, match="leading"):
        S.flash_attention(q, torch.randn(3, 5, 8), torch.randn(3, 5, 8))
    with pytest.raises(ValueError, match="Lk"):
        S.flash_attention(q, q, torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match="rank"):
        S.flash_attention(torch.randn(8), q, q)


# ------------------------------------------------------------------- KV cache


def test_kv_cache_appends_and_crops() -> None:
    cache = S.KVCache(2)
    assert cache.length == 0
    a, b = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 2, 4)
    k, v = cache.update(0, a, -a)
    assert torch.equal(k, a) and torch.equal(v, -a)
    k, v = cache.update(0, b, -b)
    assert torch.equal(k, torch.cat([a, b], 2)) and torch.equal(v, -torch.cat([a, b], 2))
    assert cache.length == 5
    cache.crop(2)
    assert cache.length == 2 and torch.equal(cache.keys[0], a[:, :, :2])
    with pytest.raises(ValueError, match="layer"):
        cache.update(2, a, a)
    with pytest.raises(ValueError, match="length"):
        cache.crop(3)
    with pytest.raises(ValueError, match="k must"):
        cache.update(0, torch.randn(1, 3, 1, 4), torch.randn(1, 3, 1, 4))
    with pytest.raises(ValueError, match="n_layers"):
        S.KVCache(0)


def test_forward_with_cache_in_chunks_equals_the_full_forward() -> None:
    model = _gpt()
    ids = torch.randint(0, 40, (3, 20))
    cache = S.KVCache(2)
    with torch.no_grad():
        parts = [
            S.forward_with_cache(model, ids[:, a:b], cache) for a, b in ((0, 7), (7, 8), (8, 20))
        ]
        want = model(ids)
    assert cache.length == 20
    assert torch.allclose(torch.cat(parts, dim=1), want, atol=1e-5)


def test_forward_with_cache_runs_on_meta_and_in_float64() -> None:
    model = _gpt().to("meta")
    cache = S.KVCache(2)
    out = S.forward_with_cache(model, torch.zeros(2, 5, dtype=torch.long, device="meta"), cache)
    out = S.forward_with_cache(model, torch.zeros(2, 1, dtype=torch.long, device="meta"), cache)
    assert out.shape == (2, 1, 40) and out.device.type == "meta" and cache.length == 6
    model = _gpt().double()
    ids = torch.randint(0, 40, (1, 10))
    with torch.no_grad():
        got = S.forward_with_cache(model, ids, S.KVCache(2))
        assert got.dtype == torch.float64
        assert torch.allclose(got, model(ids), atol=1e-12)


def _greedy_by_recomputation(model, ids: torch.Tensor, n: int) -> torch.Tensor:
    with torch.no_grad():
        for _ in range(n):
            nxt = model(ids)[:, -1].argmax(-1, keepdim=True)  # the whole prefix every step
            ids = torch.cat([ids, nxt], dim=1)
    return ids


def test_generate_with_kv_cache_equals_recomputation_on_a_random_gpt() -> None:
    model = _gpt(1)
    ids = torch.randint(0, 40, (3, 6))
    got = S.generate_with_kv_cache(model, ids, 30)
    assert got.shape == (3, 36)
    assert torch.equal(got, _greedy_by_recomputation(model, ids, 30))
    assert torch.equal(S.generate_with_kv_cache(model, ids, 0), ids)
    with pytest.raises(ValueError, match="max_new_tokens"):
        S.generate_with_kv_cache(model, ids, 43)


@pytest.fixture(scope="module")
def course_models():
    from solutions.course_model import load_course_model

    main, tok = load_course_model("main")
    draft, _ = load_course_model("draft")
    return main.eval(), draft.eval(), tok


def test_generate_with_kv_cache_on_the_course_model(course_models) -> None:
    main, _, tok = course_models
    ids = torch.tensor([tok.encode('def quantize(w):\n    """Return the')])
    got = S.generate_with_kv_cache(main, ids, 30)
    assert torch.equal(got, _greedy_by_recomputation(main, ids, 30))


def test_kv_cache_works_with_the_public_course_gpt(course_models) -> None:
    from course.model import CourseGPT

    main, _, _ = course_models
    cfg = (main.tok_emb.num_embeddings, main.tok_emb.embedding_dim, len(main.blocks),
           main.blocks[0].attn.n_heads, main.pos_emb.num_embeddings)  # fmt: skip
    public = CourseGPT(*cfg).eval()
    public.load_state_dict(main.state_dict())
    ids = torch.randint(0, 1024, (2, 9))
    assert torch.equal(
        S.generate_with_kv_cache(public, ids, 20), _greedy_by_recomputation(public, ids, 20)
    )


def test_generate_batch_gives_each_prompt_its_own_tokens(course_models) -> None:
    main, _, tok = course_models
    texts = ["Return the", 'def f(x):\n    """Compute the sum of', "import os\n"]
    prompts = [torch.tensor(tok.encode(t)) for t in texts]
    outs = S.generate_batch(main, prompts, 25, pad_id=5)
    for p, out in zip(prompts, outs, strict=True):
        assert out.shape == (p.shape[0] + 25,)
        assert torch.equal(out, _greedy_by_recomputation(main, p[None], 25)[0])
    with pytest.raises(ValueError, match="prompts"):
        S.generate_batch(main, [], 3)


def test_prefix_cache_reuses_the_shared_prefix_and_counts_tokens() -> None:
    model = _gpt(2)
    system = torch.randint(0, 40, (15,))
    pc = S.PrefixCache(model)
    lengths = (4, 6, 1)
    for i, n in enumerate(lengths):
        ids = torch.cat([system, torch.randint(0, 40, (n,))])[None]
        got = pc.generate(ids, 10)
        assert torch.equal(got, _greedy_by_recomputation(model, ids, 10))
        if i > 0:  # the system prompt (at least) comes from the cache
            assert pc.stats["reused"] >= 15 * i
    assert pc.stats["requests"] == 3
    assert pc.stats["computed"] + pc.stats["reused"] == 3 * 15 + sum(lengths)
    ids = torch.cat([system, torch.tensor([1, 2])])[None]
    before = dict(pc.stats)
    logits, cache = pc.prefill(ids)
    assert cache.length == 17
    assert pc.stats["reused"] - before["reused"] >= 15
    with torch.no_grad():
        assert torch.allclose(logits, model(ids)[:, -1], atol=1e-5)
    before = dict(pc.stats)
    same, _ = pc.prefill(ids)  # the whole prompt is cached: only its last token is computed
    assert torch.allclose(same, logits, atol=1e-5)
    assert pc.stats["computed"] - before["computed"] == 1
    assert pc.stats["reused"] - before["reused"] == 16
    with pytest.raises(ValueError, match="input_ids"):
        pc.prefill(torch.zeros(2, 3, dtype=torch.long))


# --------------------------------------------------------- speculative decoding


def test_speculative_at_temperature_zero_is_the_target_greedy_decoding(course_models) -> None:
    main, draft, tok = course_models
    ids = torch.tensor([tok.encode('def speculative(x):\n    """Return')])
    want = _greedy_by_recomputation(main, ids, 24)
    for gamma in (1, 5):
        got, stats = S.speculative_decode(main, draft, ids, 24, gamma=gamma, temperature=0)
        assert torch.equal(got, want)
        assert stats["target_forwards"] == stats["rounds"] < 24
        assert 0 <= stats["accepted"] <= stats["proposed"] == stats["draft_forwards"]


def test_speculative_with_the_target_as_draft_accepts_everything() -> None:
    model = _gpt(4)
    ids = torch.randint(0, 40, (1, 5))
    g = torch.Generator().manual_seed(0)
    out, stats = S.speculative_decode(model, model, ids, 20, gamma=4, temperature=1.0, generator=g)
    assert out.shape == (1, 25)
    assert stats["accepted"] == stats["proposed"]
    assert stats["target_forwards"] == 4  # 5 tokens a round: 4 accepted + the bonus
    assert stats["proposed"] == 16


def _spec_frequencies(target, draft, prompt, runs, gamma, T):
    counts = torch.zeros(target.table.shape[0] ** 2)
    V = target.table.shape[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny operations: threads only cost time
    try:
        for seed in range(runs):
            g = torch.Generator().manual_seed(seed)
            out, _ = S.speculative_decode(
                target, draft, prompt, 2, gamma=gamma, temperature=T, generator=g
            )
            counts[out[0, -2] * V + out[0, -1]] += 1
    finally:
        torch.set_num_threads(threads)
    return counts


def _chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    assert float(counts[probs == 0].sum()) == 0  # never a token of probability 0
    return chi_square(counts, probs)[0]


@pytest.mark.parametrize(("gamma", "T"), [(1, 1.0), (3, 0.7)])
def test_speculative_samples_have_exactly_the_target_distribution(gamma: int, T: float) -> None:
    g = torch.Generator().manual_seed(7)
    V = 4
    target = TableLM(torch.randn(V, V, generator=g))
    draft = TableLM(torch.randn(V, V, generator=g) * 2)  # a poor draft: many rejections
    prompt = torch.tensor([[2]])
    p = F.softmax(target.table / T, dim=-1)  # (V, V) p(next | last)
    exact = (p[2][:, None] * p).flatten()  # p(x1) p(x2 | x1)
    counts = _spec_frequencies(target, draft, prompt, 1200, gamma, T)
    # 15 degrees of freedom: P(chi2 > 80) < 1e-9 for a correct sampler.
    assert _chi_square(counts, exact) < 80
    # The test has power: the draft's own distribution is far away.
    q = F.softmax(draft.table / T, dim=-1)
    assert _chi_square(counts, (q[2][:, None] * q).flatten()) > 300


def test_speculative_bad_arguments() -> None:
    model = _gpt()
    ids = torch.zeros(1, 3, dtype=torch.long)
    for kwargs, name in (({"gamma": 0}, "gamma"), ({"temperature": -1.0}, "temperature")):
        with pytest.raises(ValueError, match=name):
            S.speculative_decode(model, model, ids, 4, **kwargs)
    with pytest.raises(ValueError, match="input_ids"):
        S.speculative_decode(model, model, torch.zeros(2, 3, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="max_new_tokens"):
        S.speculative_decode(model, model, ids, -1)


# ------------------------------------------------------------ meta and errors


def test_quantizers_and_distillation_run_on_meta() -> None:
    w = torch.empty(5, 7, device="meta")
    q, scale = S.quantize_int8(w)
    assert q.device.type == "meta" and q.dtype == torch.int8 and scale.shape == (5, 1)
    assert S.dequantize_int8(q, scale).shape == (5, 7)
    q, scale, zp = S.quantize_zeropoint(w, bits=4)
    assert q.device.type == "meta" and q.shape == (5, 7) and zp.shape == ()
    out = S.distillation_loss(w, w, labels=torch.empty(5, dtype=torch.long, device="meta"))
    assert out.device.type == "meta" and out.shape == ()
    layer = S.Int8Linear(7, 3).to("meta")
    assert layer(w).shape == (5, 3)


def test_quantizers_in_bfloat16_and_float64() -> None:
    w = torch.randn(4, 16)
    for dtype in (torch.bfloat16, torch.float64):
        q, scale = S.quantize_int8(w.to(dtype))
        assert scale.dtype == dtype and q.dtype == torch.int8
        assert (S.dequantize_int8(q, scale).float() - w).abs().max() < 0.05
        q, scale, zp = S.quantize_zeropoint(w.to(dtype))
        assert (S.dequantize_zeropoint(q, scale, zp).float() - w).abs().max() < 0.05
    layer = S.Int8Linear.from_float(torch.nn.Linear(16, 4).double())
    assert layer(w.double()).dtype == torch.float64


def test_quantizer_and_distillation_bad_arguments() -> None:
    with pytest.raises(ValueError, match="bits"):
        S.quantize_zeropoint(torch.randn(3), bits=9)
    with pytest.raises(ValueError, match="w must"):
        S.quantize_int8(torch.tensor(1.0))
    with pytest.raises(ValueError, match="w must"):
        S.quantize_zeropoint(torch.arange(3))
    with pytest.raises(ValueError, match="q must"):
        S.dequantize_int8(torch.zeros(3), torch.ones(()))
    with pytest.raises(ValueError, match="linear"):
        S.Int8Linear.from_float(torch.nn.Conv1d(2, 2, 1))
    s = torch.randn(3, 5)
    with pytest.raises(ValueError, match="same shape"):
        S.distillation_loss(s, torch.randn(3, 6))
    with pytest.raises(ValueError, match="temperature"):
        S.distillation_loss(s, s, temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        S.distillation_loss(s, s, labels=torch.zeros(3, dtype=torch.long), alpha=1.5)
    with pytest.raises(ValueError, match="labels"):
        S.distillation_loss(s, s, labels=torch.zeros(4, dtype=torch.long))


def test_cache_forward_and_batch_bad_arguments() -> None:
    model = _gpt()
    ids = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="input_ids"):
        S.forward_with_cache(model, torch.zeros(4, dtype=torch.long), S.KVCache(2))
    with pytest.raises(ValueError, match="cache"):
        S.forward_with_cache(model, ids, S.KVCache(3))
    with pytest.raises(ValueError, match="positions"):
        S.forward_with_cache(
            model, ids, S.KVCache(2), positions=torch.zeros(2, 3, dtype=torch.long)
        )
    with pytest.raises(ValueError, match="key_mask"):
        S.forward_with_cache(model, ids, S.KVCache(2), key_mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="exceed"):
        S.forward_with_cache(model, torch.zeros(1, 49, dtype=torch.long), S.KVCache(2))
    with pytest.raises(ValueError, match="max_new_tokens"):
        S.generate_batch(model, [torch.zeros(40, dtype=torch.long)], 9)
    with pytest.raises(ValueError, match="prompts"):
        S.generate_batch(model, [torch.zeros(2, 3, dtype=torch.long)], 1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        S.PrefixCache(model).generate(torch.zeros(1, 3, dtype=torch.long), -1)
