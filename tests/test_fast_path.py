"""The fast paths of solutions/fast.py compute what the readable references compute.

Training: ``train_fast`` on a ``CourseGPT`` gives chapter 04's ``train_language_model``
losses on chapter 02's ``GPT`` from the same weights and batches. Decoding: the cached
forward equals the full forward, sampling with a cache draws what chapter 07's
``generate`` draws, and speculative decoding with caches (rolled back after every
verification) draws exactly what chapter 09's ``speculative_decode`` draws.
"""

from __future__ import annotations

import pytest
import torch

from solutions.architectures import GPT
from solutions.fast import (
    DecodeCache,
    autocast_dtype,
    cached_logits,
    fused_copy,
    sample_cached,
    speculative_decode_cached,
    train_fast,
)
from solutions.inference import speculative_decode
from solutions.sampling import generate
from solutions.training import train_language_model

V, T = 61, 16


def _models(dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[GPT, torch.nn.Module]:
    torch.manual_seed(seed)
    readable = GPT(V, 32, 2, 4, T).to(dtype)
    return readable, fused_copy(readable)


def _train_both(dtype: torch.dtype, precision: str, steps: int = 30):
    readable, fast = _models(dtype)
    data = (torch.arange(3000) * 7 + torch.arange(3000) // 5) % V  # a pattern to learn
    kwargs = dict(
        steps=steps, batch_size=8, block_size=T, max_lr=3e-3, warmup_steps=5, progress=False
    )  # fmt: skip
    slow_losses = train_language_model(
        readable, data, generator=torch.Generator().manual_seed(2), **kwargs
    )
    fast_losses = train_fast(
        fast, data, generator=torch.Generator().manual_seed(2), precision=precision, **kwargs
    )
    return readable, fast, torch.tensor(slow_losses), torch.tensor(fast_losses)


def test_fast_training_gives_the_readable_losses_and_weights_in_float32():
    readable, fast, slow, quick = _train_both(torch.float32, "float32")
    assert slow[-1] < slow[0] - 0.3, "the run must learn something for the comparison to mean much"
    torch.testing.assert_close(quick, slow, rtol=1e-5, atol=1e-5)  # measured: 7e-7
    for name, p in readable.state_dict().items():
        torch.testing.assert_close(fast.state_dict()[name], p, rtol=1e-3, atol=1e-4, msg=name)


def test_fast_training_gives_the_readable_losses_in_float64_to_rounding():
    _, fast, slow, quick = _train_both(torch.float64, "auto", steps=10)
    assert next(fast.parameters()).dtype == torch.float64
    torch.testing.assert_close(quick, slow, rtol=1e-10, atol=1e-10)


def test_fast_training_in_bfloat16_stays_near_the_float32_losses():
    _, fast, slow, quick = _train_both(torch.float32, "bfloat16")
    assert next(fast.parameters()).dtype == torch.float32, "weights stay in float32"
    # measured: 4e-4; leaving weight decay on the biases alone moves the losses by 4e-3
    assert (quick - slow).abs().max() < 5e-3, f"largest loss gap {(quick - slow).abs().max():.3g}"


def test_fast_training_steps_zero_and_bad_arguments():
    _, fast = _models()
    data = torch.randint(V, (100,))
    assert train_fast(fast, data, 0, 2, T, progress=False) == []
    with pytest.raises(ValueError, match="grad_clip"):
        train_fast(fast, data, 1, 2, T, grad_clip=0.0, progress=False)
    with pytest.raises(ValueError, match="precision"):
        train_fast(fast, data, 1, 2, T, precision="fp8", progress=False)


def test_autocast_dtype_is_bfloat16_only_where_asked_or_native():
    assert autocast_dtype("cpu", "float32") is None
    assert autocast_dtype("cpu", "bfloat16") is torch.bfloat16
    assert autocast_dtype("meta", "auto") is None
    native = torch.cpu._is_avx512_bf16_supported()
    assert autocast_dtype("cpu", "auto") is (torch.bfloat16 if native else None)


def test_fused_copy_has_the_readable_models_function_and_state_dict():
    readable, fast = _models(torch.float64)
    ids = torch.randint(V, (3, T))
    assert fast.state_dict().keys() == readable.state_dict().keys()
    torch.testing.assert_close(fast(ids), readable(ids), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("chunks", [(T,), (5, 1, 1, 3, 6), (1,) * T])
def test_cached_logits_equal_the_full_forward_in_any_chunks(chunks):
    readable, _ = _models(torch.float64)
    ids = torch.randint(V, (2, T))
    full = readable(ids)
    cache = DecodeCache(readable, 2)
    start = 0
    for n in chunks:
        out = cached_logits(cache, ids[:, start : start + n])
        torch.testing.assert_close(out, full[:, start : start + n], rtol=1e-10, atol=1e-10)
        start += n
    assert cache.length == T


def test_rolled_back_cache_continues_as_if_the_dropped_tokens_never_came():
    readable, _ = _models(torch.float64)
    ids = torch.randint(V, (1, 12))
    other = torch.randint(V, (1, 4))
    cache = DecodeCache(readable, 1)
    cached_logits(cache, ids[:, :8])
    cached_logits(cache, other)  # proposals that get rejected
    cache.rollback(8)
    out = cached_logits(cache, ids[:, 8:])
    torch.testing.assert_close(out, readable(ids)[:, 8:], rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="length"):
        cache.rollback(13)
    with pytest.raises(ValueError, match="new tokens"):
        cached_logits(cache, torch.randint(V, (1, T)))


def test_cached_decoding_runs_on_the_meta_device():
    with torch.device("meta"):
        model = GPT(V, 32, 2, 4, T)
    cache = DecodeCache(model, 1)
    out = cached_logits(cache, torch.zeros(1, 3, dtype=torch.long, device="meta"))
    assert out.device.type == "meta" and out.shape == (1, 3, V)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_sampling_with_a_cache_draws_what_generate_draws(temperature):
    readable, fast = _models(torch.float64)
    prompt = torch.randint(V, (2, 3))
    for seed in range(5):
        want = generate(
            readable, prompt, 9, temperature, generator=torch.Generator().manual_seed(seed)
        )
        got = sample_cached(fast, prompt, 9, temperature, torch.Generator().manual_seed(seed))
        assert torch.equal(got, want)
    assert torch.equal(sample_cached(fast, prompt, 0), prompt)


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0])
@pytest.mark.parametrize("gamma", [1, 3, 6])
def test_speculative_decoding_with_caches_draws_what_the_readable_one_draws(temperature, gamma):
    target, _ = _models(torch.float64, seed=0)
    torch.manual_seed(5)
    draft = GPT(V, 16, 1, 2, T).to(torch.float64)
    prompt = torch.randint(V, (1, 2))
    for seed in range(6):
        want, want_stats = speculative_decode(
            target, draft, prompt, T - 2, gamma, temperature, torch.Generator().manual_seed(seed)
        )
        got, stats = speculative_decode_cached(
            target, draft, prompt, T - 2, gamma, temperature, torch.Generator().manual_seed(seed)
        )
        assert torch.equal(got, want), f"seed {seed}"
        assert stats == want_stats
    if temperature == 0.0:
        greedy = generate(target, prompt, T - 2, temperature=0.0)
        assert torch.equal(got, greedy), "at temperature 0 the answer is the target's greedy one"


def test_speculative_decoding_with_caches_is_exact_when_the_draft_is_the_target():
    target, fast = _models(torch.float64)
    prompt = torch.randint(V, (1, 3))
    out, stats = speculative_decode_cached(
        fast, target, prompt, 10, 4, 1.0, torch.Generator().manual_seed(0)
    )
    assert stats["accepted"] == stats["proposed"], "p = q: every proposal is accepted"
    assert out.shape == (1, 13)
