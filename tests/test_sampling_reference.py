"""The reference of chapter 07 (solutions/sampling.py) against independent oracles.

Oracles: ``torch.argmax`` and slow Python loops over sorted lists for the filters;
Pearson's chi-square test (computed here with torch and math, no scipy) with fixed
seeds for the sampler; brute-force enumeration of every continuation for beam search.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import solutions.sampling as S
from autograder.core.draws import TableLM, chi_square, chi_square_threshold


def _loop_top_k(row: list[float], k: int) -> list[float]:
    kth = sorted(row, reverse=True)[min(k, len(row)) - 1]
    return [x if x >= kth else -math.inf for x in row]


def _loop_top_p(row: list[float], p: float) -> list[float]:
    m = max(row)
    exps = [math.exp(x - m) for x in row]
    probs = [e / sum(exps) for e in exps]
    order = sorted(range(len(row)), key=lambda i: -probs[i])
    kept, mass = set(), 0.0
    for i in order:
        if mass >= p:
            break
        kept.add(i)
        mass += probs[i]
    return [x if i in kept else -math.inf for i, x in enumerate(row)]


def _rows(t: torch.Tensor) -> list[list[float]]:
    return t.reshape(-1, t.shape[-1]).double().tolist()


# ------------------------------------------------------------------- the filters


def test_greedy_is_argmax_and_keeps_leading_dims() -> None:
    x = torch.randn(2, 3, 11)
    assert torch.equal(S.greedy(x), torch.argmax(x, dim=-1))
    assert S.greedy(x).shape == (2, 3)


def test_temperature_sharpens_and_flattens() -> None:
    z = torch.randn(4, 9)
    assert torch.allclose(S.apply_temperature(z, 0.5), z * 2)
    ent = [
        -(F.softmax(S.apply_temperature(z, T), -1) * F.log_softmax(S.apply_temperature(z, T), -1))
        .sum(-1)
        .mean()
        for T in (0.25, 1.0, 4.0)
    ]
    assert ent[0] < ent[1] < ent[2]


@pytest.mark.parametrize("k", [1, 3, 7, 20])
def test_top_k_matches_a_loop(k: int) -> None:
    x = torch.randn(5, 3, 7, generator=torch.Generator().manual_seed(k))
    out = S.top_k_filter(x, k)
    expected = torch.tensor([_loop_top_k(r, k) for r in _rows(x)]).reshape(x.shape)
    assert torch.equal(out.double(), expected)


def test_top_k_keeps_ties_with_the_kth() -> None:
    x = torch.tensor([[3.0, 2.0, 2.0, 1.0]])
    assert torch.isfinite(S.top_k_filter(x, 2)).tolist() == [[True, True, True, False]]


@pytest.mark.parametrize("p", [0.01, 0.3, 0.5, 0.9, 0.999, 1.0])
def test_top_p_matches_a_loop(p: float) -> None:
    x = 2 * torch.randn(6, 9, generator=torch.Generator().manual_seed(int(p * 1000)))
    out = S.top_p_filter(x.double(), p)
    expected = torch.tensor([_loop_top_p(r, p) for r in _rows(x)])
    assert torch.equal(out, expected)


def test_top_p_keeps_at_least_the_top_token_and_reaches_p() -> None:
    x = torch.randn(50, 12) * 3
    for p in (1e-6, 0.4, 0.95):
        out = S.top_p_filter(x, p)
        kept = torch.isfinite(out)
        assert bool(kept.gather(-1, x.argmax(-1, keepdim=True)).all())
        mass = (F.softmax(x, -1) * kept).sum(-1)
        assert bool((mass >= p - 1e-6).all())


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_filters_keep_the_dtype(dtype: torch.dtype) -> None:
    x = torch.randn(3, 10).to(dtype)
    for out in (S.apply_temperature(x, 0.7), S.top_k_filter(x, 3), S.top_p_filter(x, 0.8)):
        assert out.dtype == dtype and out.shape == x.shape
    assert S.sample_next_token(x, 0.8, 3, 0.9, torch.Generator().manual_seed(0)).shape == (3,)


def test_filters_and_greedy_run_on_meta() -> None:
    # sample_next_token with temperature > 0 draws with torch.multinomial, which meta
    # tensors do not support; generate, beam_search and best_of_n branch on data.
    x = torch.randn(2, 3, 10, device="meta")
    assert S.greedy(x).shape == (2, 3)
    assert S.apply_temperature(x, 2.0).device.type == "meta"
    assert S.top_k_filter(x, 4).shape == x.shape
    assert S.top_p_filter(x, 0.9).shape == x.shape
    assert S.sample_next_token(x[0], temperature=0.0).shape == (3,)


def test_bad_arguments_raise_value_errors() -> None:
    x = torch.randn(2, 5)
    model = TableLM(torch.randn(5, 5))
    ids = torch.zeros(1, 2, dtype=torch.long)
    for call, word in (
        (lambda: S.apply_temperature(x, 0.0), "temperature"),
        (lambda: S.top_k_filter(x, 0), "k"),
        (lambda: S.top_p_filter(x, 0.0), "p"),
        (lambda: S.top_p_filter(x, 1.5), "p"),
        (lambda: S.greedy(torch.tensor(1.0)), "logits"),
        (lambda: S.sample_next_token(x[0]), "logits"),
        (lambda: S.sample_next_token(x, top_k=0), "top_k"),
        (lambda: S.sample_next_token(x, top_p=2.0), "top_p"),
        (lambda: S.sample_next_token(x, temperature=-1.0), "temperature"),
        (lambda: S.generate(model, ids[0], 3), "input_ids"),
        (lambda: S.generate(model, ids, -1), "max_new_tokens"),
        (lambda: S.beam_search(model, ids.repeat(2, 1), 2, 3), "input_ids"),
        (lambda: S.beam_search(model, ids, 0, 3), "beam_width"),
        (lambda: S.best_of_n(model, ids, 0, lambda s: s.sum(-1).float(), max_new_tokens=2), "n"),
    ):
        with pytest.raises(ValueError, match=word):
            call()


# ------------------------------------------------------- the sampler, statistically


def _target(logits, temperature, top_k, top_p):
    z = logits / temperature
    if top_k is not None:
        z = torch.tensor([_loop_top_k(r, top_k) for r in _rows(z)])
    if top_p is not None:
        z = torch.tensor([_loop_top_p(r, top_p) for r in _rows(z)])
    return F.softmax(z, dim=-1)


@pytest.mark.parametrize(
    "temperature, top_k, top_p",
    [(1.0, None, None), (0.5, 3, None), (1.5, None, 0.7), (0.8, 5, 0.6), (2.0, 2, 1.0)],
)
def test_sampling_frequencies_match_the_filtered_distribution(temperature, top_k, top_p):
    g = torch.Generator().manual_seed(1234)
    logits = 1.5 * torch.randn(3, 8, generator=g)
    n = 20000
    draws = S.sample_next_token(logits.repeat(n, 1), temperature, top_k, top_p, generator=g)
    draws = draws.reshape(n, 3)
    target = _target(logits, temperature, top_k, top_p)
    for r in range(3):
        counts = torch.bincount(draws[:, r], minlength=8)
        assert int(counts[target[r] == 0].sum()) == 0, "a filtered token was drawn"
        stat, dof = chi_square(counts, target[r])
        # z = 4: an honest sampler fails once in ~30 000 (the seed is fixed anyway)
        assert dof == 0 or stat < chi_square_threshold(dof, z=4.0), (stat, dof)


def test_chi_square_test_has_power_against_a_wrong_temperature() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 8, generator=g)
    draws = S.sample_next_token(logits.repeat(20000, 1), 0.7, generator=g)
    stat, dof = chi_square(torch.bincount(draws, minlength=8), _target(logits, 1.0, None, None)[0])
    assert stat > chi_square_threshold(dof, z=4.0)


def test_top_k_and_top_p_never_emit_a_filtered_token() -> None:
    g = torch.Generator().manual_seed(7)
    logits = 3 * torch.randn(4, 30, generator=g)
    big = logits.repeat(5000, 1)
    for kw, keep in (
        ({"top_k": 4}, S.top_k_filter(logits, 4)),
        ({"top_p": 0.5}, S.top_p_filter(logits, 0.5)),
    ):
        draws = S.sample_next_token(big, 1.0, generator=g, **kw).reshape(5000, 4)
        allowed = torch.isfinite(keep)
        assert bool(allowed.gather(1, draws.T).all())


def test_temperature_zero_equals_greedy_and_leaves_the_generator_alone() -> None:
    logits = torch.randn(6, 9)
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    assert torch.equal(S.sample_next_token(logits, 0.0, 3, 0.5, generator=g), logits.argmax(-1))
    assert torch.equal(g.get_state(), state)


def test_sampler_follows_its_generator() -> None:
    logits = torch.randn(50, 9)
    a = S.sample_next_token(logits, generator=torch.Generator().manual_seed(5))
    b = S.sample_next_token(logits, generator=torch.Generator().manual_seed(5))
    c = S.sample_next_token(logits, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


# -------------------------------------------------------------------- generation


def _model(V: int = 6, seed: int = 0) -> TableLM:
    g = torch.Generator().manual_seed(seed)
    return TableLM(2 * torch.randn(V, V, generator=g), torch.randn(V, V, generator=g))


def test_generate_at_temperature_zero_is_the_greedy_loop() -> None:
    model = _model()
    ids = torch.tensor([[1, 2], [3, 0]])
    out = S.generate(model, ids, 6, temperature=0.0)
    loop = ids
    for _ in range(6):
        loop = torch.cat([loop, model(loop)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, loop)


def test_generate_pads_after_the_end_token_and_stops() -> None:
    model = _model(seed=1)
    ids = torch.randint(0, 6, (16, 2), generator=torch.Generator().manual_seed(0))
    out = S.generate(model, ids, 30, eos_token_id=0, generator=torch.Generator().manual_seed(0))
    new = out[:, 2:]
    for row in new.tolist():
        if 0 in row:
            first = row.index(0)
            assert all(t == 0 for t in row[first:])
    if out.shape[1] < 32:
        assert bool((new == 0).any(dim=1).all()) and bool((new[:, -1] == 0).all())


def test_generate_is_reproducible_with_a_seed() -> None:
    model = _model()
    ids = torch.zeros(3, 1, dtype=torch.long)
    a = S.generate(model, ids, 8, top_p=0.9, generator=torch.Generator().manual_seed(2))
    b = S.generate(model, ids, 8, top_p=0.9, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and a.shape == (3, 9)


def _seq_logprob(model, ids: torch.Tensor, L: int) -> float:
    lp = F.log_softmax(model(ids[None, :-1])[0].double(), -1)
    return float(lp[torch.arange(L - 1, ids.shape[0] - 1), ids[L:]].sum())


def test_beam_width_one_is_greedy() -> None:
    model = _model(seed=3)
    ids = torch.tensor([[2, 4]])
    assert torch.equal(S.beam_search(model, ids, 1, 7), S.generate(model, ids, 7, temperature=0))


def test_wide_beam_finds_the_most_probable_continuation_by_brute_force() -> None:
    V, T = 4, 3
    model = _model(V, seed=4)
    ids = torch.tensor([[1]])
    best = max(
        (torch.tensor([1, *c]) for c in itertools.product(range(V), repeat=T)),
        key=lambda s: _seq_logprob(model, s, 1),
    )
    assert torch.equal(S.beam_search(model, ids, V**T, T)[0], best)
    narrow = S.beam_search(model, ids, 2, T)[0]
    assert _seq_logprob(model, narrow, 1) <= _seq_logprob(model, best, 1) + 1e-9


def test_beam_search_with_an_end_token_uses_the_length_penalty() -> None:
    model = _model(5, seed=5)
    ids = torch.tensor([[3]])
    for lp in (0.0, 1.0, 3.0):
        out = S.beam_search(model, ids, 3, 6, length_penalty=lp, eos_token_id=0)[0]
        assert out[0] == 3 and out.shape[0] <= 7
        assert 0 not in out[1:-1].tolist()  # the end token can only come last


def test_best_of_n_returns_the_best_scored_sample() -> None:
    model = _model()
    ids = torch.tensor([[1, 2]])
    values = torch.randn(6)

    def score(s):
        return values[s[:, 2:]].sum(-1)

    out = S.best_of_n(
        model, ids, 8, score, max_new_tokens=5, generator=torch.Generator().manual_seed(0)
    )
    samples = S.generate(model, ids.expand(8, -1), 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[0], samples[score(samples).argmax()])
    one = S.best_of_n(
        model, ids, 1, score, max_new_tokens=5, generator=torch.Generator().manual_seed(0)
    )
    alone = S.generate(model, ids, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(one, alone)
