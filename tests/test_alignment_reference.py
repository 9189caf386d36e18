"""The reference of chapter 06 (solutions/alignment.py) against independent oracles.

Oracles: ``F.cross_entropy`` (with ignore_index) for the token log-probabilities and
the SFT loss; ``F.binary_cross_entropy_with_logits`` for the Bradley-Terry and DPO
losses; slow Python loops for PPO's objective (a branch per element), the KL
estimators (``math``), GAE (the backward recursion) and GRPO (``statistics.stdev``
per group). Every function runs on ``meta`` tensors (none is data-dependent), in
float64 and in bfloat16.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch
import torch.nn.functional as F

import solutions.alignment as A


def _batch(seed: int, B: int = 3, L: int = 7, V: int = 11, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, L, V, generator=g).to(dtype)
    labels = torch.randint(0, V, (B, L), generator=g)
    mask = torch.zeros(B, L, dtype=torch.bool)
    for b in range(B):  # a prompt, then a response of a different length per row
        start = int(torch.randint(1, L - 1, (1,), generator=g))
        stop = int(torch.randint(start + 1, L + 1, (1,), generator=g))
        mask[b, start:stop] = True
    return logits, labels, mask


# ------------------------------------------------------------ log-probabilities, SFT


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sequence_logprobs_matches_cross_entropy(seed: int) -> None:
    logits, labels, mask = _batch(seed)
    ignored = labels.masked_fill(~mask, -100)
    nll = F.cross_entropy(logits.transpose(1, 2), ignored, ignore_index=-100, reduction="none")
    out = A.sequence_logprobs(logits, ignored, mask)  # -100 labels where masked out
    assert torch.allclose(out, -nll.sum(dim=1), atol=1e-5)


def test_sequence_logprobs_accepts_a_float_mask_and_is_zero_without_tokens() -> None:
    logits, labels, mask = _batch(3)
    assert torch.allclose(
        A.sequence_logprobs(logits, labels, mask.float()), A.sequence_logprobs(logits, labels, mask)
    )
    zero = A.sequence_logprobs(logits, labels, torch.zeros_like(mask))
    assert torch.equal(zero, torch.zeros(3))


@pytest.mark.parametrize("seed", [0, 4])
def test_sft_loss_matches_cross_entropy_with_ignore_index(seed: int) -> None:
    logits, labels, mask = _batch(seed, B=4)
    expected = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.masked_fill(~mask, -100).reshape(-1)
    )
    assert torch.allclose(A.sft_loss(logits, labels, mask), expected, atol=1e-6)
    assert A.sft_loss(logits, labels, torch.zeros_like(mask)) == 0


def test_sft_loss_gradient_only_reaches_response_positions() -> None:
    logits, labels, mask = _batch(5)
    logits.requires_grad_(True)
    A.sft_loss(logits, labels, mask).backward()
    assert bool((logits.grad[~mask] == 0).all()) and bool((logits.grad[mask] != 0).any())


# -------------------------------------------------------------------- pairwise losses


def test_reward_model_loss_is_a_binary_cross_entropy() -> None:
    c, r = torch.randn(50), torch.randn(50)
    expected = F.binary_cross_entropy_with_logits(c - r, torch.ones(50))
    assert torch.allclose(A.reward_model_loss(c, r), expected, atol=1e-6)
    far = A.reward_model_loss(torch.tensor([-200.0]), torch.tensor([200.0]))
    assert torch.isfinite(far) and abs(float(far) - 400.0) < 1e-3  # stable for big margins
    assert float(A.reward_model_loss(torch.zeros(3), torch.zeros(3))) == pytest.approx(math.log(2))


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_dpo_loss_matches_a_binary_cross_entropy_on_log_ratios(beta: float) -> None:
    g = torch.Generator().manual_seed(int(beta * 10))
    pc, pr, rc, rr = (-5 * torch.rand(6, generator=g) - 1 for _ in range(4))
    losses, cr, rjr = A.dpo_loss(pc, pr, rc, rr, beta=beta)
    margin = beta * ((pc - rc) - (pr - rr))
    oracle = F.binary_cross_entropy_with_logits(margin, torch.ones(6), reduction="none")
    assert torch.allclose(losses, oracle, atol=1e-6)
    assert torch.allclose(cr, beta * (pc - rc)) and torch.allclose(rjr, beta * (pr - rr))
    assert torch.allclose(losses, -F.logsigmoid(cr - rjr), atol=1e-6)


def test_dpo_loss_is_log2_when_policy_equals_reference_and_gradient_raises_chosen() -> None:
    pc, pr = torch.tensor([-3.0, -4.0], requires_grad=True), torch.tensor([-2.0, -6.0])
    losses, cr, rjr = A.dpo_loss(pc, pr, pc.detach(), pr.clone(), beta=0.1)
    assert torch.allclose(losses, torch.full((2,), math.log(2)))
    assert not cr.requires_grad and not rjr.requires_grad  # detached, for logging
    losses.sum().backward()
    assert bool((pc.grad < 0).all())  # descending the loss raises log pi(chosen)


# ------------------------------------------------------------------------------- PPO


def _loop_ppo(logprobs, old, adv, eps):
    total, n = 0.0, 0
    for lp, o, a in zip(
        logprobs.flatten().tolist(), old.flatten().tolist(), adv.flatten().tolist(), strict=True
    ):
        ratio = math.exp(lp - o)
        if a >= 0:
            objective = min(ratio, 1 + eps) * a
        else:
            objective = max(ratio, 1 - eps) * a
        total += objective
        n += 1
    return -total / n


@pytest.mark.parametrize("eps", [0.1, 0.2, 0.5])
def test_ppo_clip_loss_matches_a_loop(eps: float) -> None:
    g = torch.Generator().manual_seed(int(eps * 100))
    old = -3 * torch.rand(4, 9, generator=g)
    logprobs = old + 0.6 * torch.randn(4, 9, generator=g)  # ratios well outside the clip range
    adv = torch.randn(4, 9, generator=g)
    out = A.ppo_clip_loss(logprobs, old, adv, clip_eps=eps)
    assert float(out) == pytest.approx(_loop_ppo(logprobs, old, adv, eps), abs=1e-5)
    per_seq = torch.randn(4, 1, generator=g)  # one advantage per sequence, broadcast
    out = A.ppo_clip_loss(logprobs, old, per_seq, clip_eps=eps)
    expected = _loop_ppo(logprobs, old, per_seq.expand(4, 9), eps)
    assert float(out) == pytest.approx(expected, abs=1e-5)


def test_ppo_gradient_stops_outside_the_clip_range() -> None:
    old = torch.zeros(4)
    logprobs = torch.log(torch.tensor([1.5, 0.5, 1.5, 0.5])).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0])
    A.ppo_clip_loss(logprobs, old, adv, clip_eps=0.2).backward()
    # too good already (ratio 1.5 with A > 0, 0.5 with A < 0): no gradient; the others: some
    assert logprobs.grad[:2].tolist() == [0.0, 0.0] and bool((logprobs.grad[2:] != 0).all())


# -------------------------------------------------------------------------------- KL


def test_kl_estimators_match_math_and_are_unbiased() -> None:
    lp, ref = torch.randn(20) - 2, torch.randn(20) - 2
    k1, k2, k3 = (A.kl_penalty(lp, ref, k) for k in ("k1", "k2", "k3"))
    for i in range(20):
        a, b = float(lp[i]), float(ref[i])
        assert float(k1[i]) == pytest.approx(a - b, abs=1e-6)
        assert float(k2[i]) == pytest.approx(0.5 * (a - b) ** 2, abs=1e-6)
        assert float(k3[i]) == pytest.approx(math.exp(b - a) - (b - a) - 1, abs=1e-5)
    assert bool((k3 >= 0).all()) and torch.equal(A.kl_penalty(lp, lp, "k3"), torch.zeros(20))
    # Monte Carlo: tokens drawn from p, the mean of k1 and of k3 is KL(p || q)
    g = torch.Generator().manual_seed(0)
    logp, logq = F.log_softmax(torch.randn(8, generator=g), -1), F.log_softmax(torch.randn(8), -1)
    exact = float((logp.exp() * (logp - logq)).sum())
    draws = torch.multinomial(logp.exp(), 200_000, replacement=True, generator=g)
    for kind in ("k1", "k3"):
        estimate = float(A.kl_penalty(logp[draws], logq[draws], kind).mean())
        assert estimate == pytest.approx(exact, abs=0.01)


# ------------------------------------------------------------------------------- GAE


def _loop_gae(rewards, values, gamma, lam, dones=None):
    T = len(rewards)
    dones = dones or [False] * T
    adv, last = [0.0] * T, 0.0
    for t in reversed(range(T)):
        nonterminal = 0.0 if dones[t] else 1.0
        delta = rewards[t] + gamma * nonterminal * values[t + 1] - values[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv, [a + v for a, v in zip(adv, values[:-1], strict=False)]


@pytest.mark.parametrize("gamma, lam", [(0.99, 0.95), (0.9, 0.0), (1.0, 1.0), (0.5, 0.7)])
def test_gae_matches_the_backward_loop(gamma: float, lam: float) -> None:
    g = torch.Generator().manual_seed(int(100 * gamma + 10 * lam))
    r, v = torch.randn(12, generator=g).double(), torch.randn(13, generator=g).double()
    adv, ret = A.gae(r, v, gamma, lam)
    e_adv, e_ret = _loop_gae(r.tolist(), v.tolist(), gamma, lam)
    assert torch.allclose(adv, torch.tensor(e_adv, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(ret, torch.tensor(e_ret, dtype=torch.float64), atol=1e-10)


def test_gae_with_dones_and_batches_matches_the_loop() -> None:
    g = torch.Generator().manual_seed(7)
    r, v = torch.randn(3, 10, generator=g), torch.randn(3, 11, generator=g)
    dones = torch.rand(3, 10, generator=g) < 0.25
    adv, ret = A.gae(r, v, 0.9, 0.8, dones=dones)
    for b in range(3):
        e_adv, e_ret = _loop_gae(r[b].tolist(), v[b].tolist(), 0.9, 0.8, dones[b].tolist())
        assert torch.allclose(adv[b], torch.tensor(e_adv), atol=1e-5)
        assert torch.allclose(ret[b], torch.tensor(e_ret), atol=1e-5)


def test_gae_with_lambda_one_is_the_discounted_return_minus_the_value() -> None:
    r, v = torch.randn(8).double(), torch.randn(9).double()
    adv, ret = A.gae(r, v, 0.9, 1.0)
    mc = [sum(0.9**k * float(r[t + k]) for k in range(8 - t)) + 0.9 ** (8 - t) * float(v[8])
          for t in range(8)]  # fmt: skip
    assert torch.allclose(ret, torch.tensor(mc, dtype=torch.float64), atol=1e-10)


# ------------------------------------------------------------------------------ GRPO


def test_group_relative_advantages_match_statistics_per_group() -> None:
    g = torch.Generator().manual_seed(0)
    r = torch.randint(0, 3, (12,), generator=g).float()
    r[4:8] = 1.0  # a group with identical rewards: advantages 0
    adv = A.group_relative_advantages(r, 4, eps=1e-6)
    for start in range(0, 12, 4):
        group = r[start : start + 4].tolist()
        mean, std = statistics.mean(group), statistics.stdev(group)
        for i, x in enumerate(group):
            assert float(adv[start + i]) == pytest.approx((x - mean) / (std + 1e-6), abs=1e-5)
    assert adv[4:8].tolist() == [0.0] * 4
    batched = A.group_relative_advantages(r.reshape(2, 6), 3)
    assert torch.allclose(batched.reshape(-1), A.group_relative_advantages(r, 3))


# ------------------------------------------------------------- devices, dtypes, errors


def _calls(device: str, dtype: torch.dtype):
    logits, labels, mask = _batch(0, dtype=dtype)
    logits, labels, mask = logits.to(device), labels.to(device), mask.to(device)

    def t(*shape):
        return torch.randn(*shape, dtype=dtype).to(device)

    return {
        "sequence_logprobs": (A.sequence_logprobs(logits, labels, mask), (3,)),
        "sft_loss": (A.sft_loss(logits, labels, mask), ()),
        "reward_model_loss": (A.reward_model_loss(t(5), t(5)), ()),
        "dpo_loss": (A.dpo_loss(t(4), t(4), t(4), t(4))[0], (4,)),
        "ppo_clip_loss": (A.ppo_clip_loss(t(2, 5), t(2, 5), t(2, 1)), ()),
        "kl_penalty": (A.kl_penalty(t(2, 5), t(2, 5), "k3"), (2, 5)),
        "gae": (A.gae(t(2, 6), t(2, 7))[0], (2, 6)),
        "group_relative_advantages": (A.group_relative_advantages(t(8), 4), (8,)),
    }


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_every_function_keeps_the_dtype(dtype: torch.dtype) -> None:
    for name, (out, shape) in _calls("cpu", dtype).items():
        assert out.dtype == dtype and out.shape == shape, name
        assert bool(torch.isfinite(out).all()), name


def test_bfloat16_is_close_to_float32() -> None:
    low, high = _calls("cpu", torch.bfloat16), _calls("cpu", torch.float32)
    for name in ("sequence_logprobs", "sft_loss"):
        assert torch.allclose(low[name][0].float(), high[name][0], rtol=0.05, atol=0.1), name


def test_every_function_runs_on_meta() -> None:
    for name, (out, shape) in _calls("meta", torch.float32).items():
        assert out.device.type == "meta" and out.shape == shape, name
    dones = torch.zeros(2, 6, dtype=torch.bool, device="meta")
    out = A.gae(torch.randn(2, 6, device="meta"), torch.randn(2, 7, device="meta"), dones=dones)
    assert out[1].device.type == "meta"


def test_bad_arguments_raise_value_errors() -> None:
    logits, labels, mask = _batch(0)
    x = torch.randn(4)
    for call, word in (
        (lambda: A.sequence_logprobs(logits[0], labels, mask), "logits"),
        (lambda: A.sequence_logprobs(logits, labels[:, :-1], mask), "labels"),
        (lambda: A.sequence_logprobs(logits, labels, mask[:2]), "loss_mask"),
        (lambda: A.sft_loss(logits, labels, mask[:, 1:]), "loss_mask"),
        (lambda: A.reward_model_loss(x, torch.randn(3)), "rejected_rewards"),
        (lambda: A.dpo_loss(x, x, torch.randn(3), x), "ref_chosen_logps"),
        (lambda: A.dpo_loss(x, x, x, x, beta=0.0), "beta"),
        (lambda: A.ppo_clip_loss(x, torch.randn(5), x), "old_logprobs"),
        (lambda: A.ppo_clip_loss(x, x, torch.randn(3)), "advantages"),
        (lambda: A.ppo_clip_loss(x, x, x, clip_eps=-0.1), "clip_eps"),
        (lambda: A.kl_penalty(x, torch.randn(5)), "ref_logprobs"),
        (lambda: A.kl_penalty(x, x, "k4"), "kind"),
        (lambda: A.gae(x, torch.randn(4)), "values"),
        (lambda: A.gae(x, torch.randn(5), dones=torch.zeros(3, dtype=torch.bool)), "dones"),
        (lambda: A.gae(x, torch.randn(5), gamma=1.5), "gamma"),
        (lambda: A.gae(x, torch.randn(5), lam=-0.5), "lam"),
        (lambda: A.gae(torch.tensor(1.0), torch.randn(2)), "rewards"),
        (lambda: A.group_relative_advantages(torch.randn(10), 4), "group_size"),
        (lambda: A.group_relative_advantages(torch.randn(10), 1), "group_size"),
        (lambda: A.group_relative_advantages(torch.tensor(1.0), 2), "rewards"),
    ):
        with pytest.raises(ValueError, match=word):
            call()
