"""Grading spec of chapter 06 (alignment): inputs, tolerances and the usual mistakes.

Every exercise is a deterministic function, compared with the reference's
answer (float32, tolerance of float32 arithmetic). The cases include what the
usual mistakes get wrong: responses of different lengths and labels of -100
outside the loss mask, margins large enough to overflow log(sigmoid(x)),
ratios outside PPO's clip range with advantages of both signs, a trajectory
with episode ends and a non-zero bootstrap value, and a GRPO group whose
rewards are all equal. Hidden from students: it imports the reference.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

import solutions.alignment as ref
from autograder.core.cases import call_case, randn
from autograder.core.spec import ALL_CASES, Case, ChapterSpec, Exercise, Mistake, Promise, Tolerance

TOL = Tolerance(1e-5, 1e-4)

# ------------------------------------------------------------ sequence_logprobs, SFT


def _lm_batch(g: torch.Generator, B: int, L: int, V: int, ignore: bool = False):
    logits = randn(g, B, L, V, scale=2.0)
    labels = torch.randint(0, V, (B, L), generator=g)
    mask = torch.zeros(B, L, dtype=torch.bool)
    for b in range(B):  # a prompt, then a response whose length differs between rows
        start = 1 + b % (L - 2)
        stop = min(L, start + 1 + (2 * b + 1) % (L - start))
        mask[b, start:stop] = True
    if ignore:
        labels = labels.masked_fill(~mask, -100)
    return logits, labels, mask


def _token_logps(logits, labels, mask, kind: str = ""):
    """log p(label) per position (0 where masked out), with a usual mistake."""
    if kind == "wrong_axis":
        logp = F.log_softmax(logits, dim=1)
    elif kind == "raw_logits":
        logp = logits
    else:
        logp = F.log_softmax(logits, dim=-1)
    tok = logp.gather(-1, labels.clamp_min(0)[..., None])[..., 0]  # -100 labels: any id
    if kind == "no_mask":
        return tok
    return tok * mask


def _logps_variant(kind: str) -> Callable:
    def sequence_logprobs(logits, labels, loss_mask):
        tok = _token_logps(logits, labels, loss_mask, kind)
        if kind == "mean":
            return tok.sum(-1) / loss_mask.sum(-1).clamp_min(1)
        return tok.sum(-1)

    return sequence_logprobs


def _logps_cases(g: torch.Generator) -> list[Case]:
    return [
        call_case("prompts and responses of different lengths", *_lm_batch(g, 3, 7, 9)),
        call_case("labels of -100 where the mask is False", *_lm_batch(g, 4, 6, 8, ignore=True)),
        call_case("one sequence, V = 30", *_lm_batch(g, 1, 8, 30)),
        _int_mask_case(g),
    ]


def _int_mask_case(g: torch.Generator) -> Case:
    logits, labels, mask = _lm_batch(g, 3, 6, 7, ignore=True)
    return call_case("a 0/1 int64 loss_mask", logits, labels, mask.long())


SEQUENCE_LOGPROBS = Exercise(
    name="sequence_logprobs",
    points=2,
    summary="sum of log p(label) over the masked tokens",
    make_cases=_logps_cases,
    reference=lambda: ref.sequence_logprobs,
    output_names=("logps",),
    tolerance=TOL,
    mistakes=(
        Mistake(
            "wrong_axis",
            "your answer matches a log-softmax over the SEQUENCE axis (dim=1): normalise "
            "over the vocabulary, the last axis (dim=-1).",
            _logps_variant("wrong_axis"),
        ),
        Mistake(
            "no_mask",
            "your answer matches summing over EVERY position: only the positions where "
            "loss_mask is True count (the prompt and the padding do not).",
            _logps_variant("no_mask"),
        ),
        Mistake(
            "mean",
            "your answer matches the MEAN log-probability per sequence: return the sum over "
            "the masked tokens, log p(response) = sum_t log p(y_t | y_<t).",
            _logps_variant("mean"),
        ),
        Mistake(
            "raw_logits",
            "your answer matches summing raw logits: take log_softmax over the vocabulary "
            "first, then pick the label's entry.",
            _logps_variant("raw_logits"),
        ),
    ),
    promises=(
        Promise("sum of log p(label)", ALL_CASES),
        Promise("The logits are already aligned with the labels", ALL_CASES),
        Promise(
            "Positions where ``loss_mask`` is False count for nothing",
            (
                "prompts and responses of different lengths",
                "labels of -100 where the mask is False",
            ),
        ),
        Promise("logits: shape (B, L, V).", ALL_CASES),
        Promise("labels: shape (B, L), int64 token ids.", ALL_CASES),
        Promise(
            "bool (or 0/1), True on the tokens to score",
            ("prompts and responses of different lengths", "a 0/1 int64 loss_mask"),
        ),
        Promise("logps: shape (B,), same dtype as logits.", ALL_CASES),
    ),
)


def _sft_variant(kind: str) -> Callable:
    def sft_loss(logits, labels, loss_mask):
        tok = _token_logps(logits, labels, loss_mask, "no_mask" if kind == "all_tokens" else "")
        if kind == "all_tokens":
            return -tok.mean()
        if kind == "sum":
            return -tok.sum()
        if kind == "sequence_mean":
            return -(tok.sum(-1) / loss_mask.sum(-1).clamp_min(1)).mean()
        if kind == "no_minus":
            return tok.sum() / loss_mask.sum().clamp_min(1)
        if kind == "empty_nan":
            return -tok.sum() / loss_mask.sum()
        return -tok.sum() / loss_mask.sum().clamp_min(1)

    return sft_loss


def _sft_cases(g: torch.Generator) -> list[Case]:
    return [
        call_case("responses of different lengths", *_lm_batch(g, 4, 7, 9)),
        call_case("a batch of 3, V = 6", *_lm_batch(g, 3, 8, 6)),
        call_case("one sequence", *_lm_batch(g, 1, 6, 12)),
        _no_response_case(g),
    ]


def _no_response_case(g: torch.Generator) -> Case:
    logits, labels, mask = _lm_batch(g, 2, 5, 7)
    return call_case("no response token at all (loss 0)", logits, labels, torch.zeros_like(mask))


SFT_LOSS = Exercise(
    name="sft_loss",
    points=2,
    summary="mean NLL over the response tokens only",
    make_cases=_sft_cases,
    reference=lambda: ref.sft_loss,
    output_names=("loss",),
    tolerance=TOL,
    depends_on=("sequence_logprobs",),
    mistakes=(
        Mistake(
            "all_tokens",
            "your answer matches the mean over ALL tokens: the prompt is context, not a "
            "target; average the NLL over the tokens where loss_mask is True only.",
            _sft_variant("all_tokens"),
        ),
        Mistake(
            "sum",
            "your answer matches the SUM of the NLL: divide by the number of response tokens "
            "(a mean), so the loss does not grow with the batch.",
            _sft_variant("sum"),
        ),
        Mistake(
            "sequence_mean",
            "your answer matches a mean of per-sequence means: average over all response "
            "tokens of the batch together (as F.cross_entropy with ignore_index does).",
            _sft_variant("sequence_mean"),
        ),
        Mistake(
            "no_minus",
            "your answer matches the mean LOG-LIKELIHOOD: the loss is its negative.",
            _sft_variant("no_minus"),
        ),
        Mistake(
            "empty_nan",
            "your answer is NaN (0 / 0) when loss_mask has no True at all: the loss is then 0; "
            "divide by the number of response tokens clamped to at least 1.",
            _sft_variant("empty_nan"),
        ),
    ),
    promises=(
        Promise("the mean negative log-likelihood of the response tokens", ALL_CASES),
        Promise(
            "The mean is over all masked tokens of the batch together",
            ("responses of different lengths", "a batch of 3, V = 6"),
        ),
        Promise(
            "With no masked token at all the loss is 0.", ("no response token at all (loss 0)",)
        ),
        Promise("logits: shape (B, L, V), aligned with labels.", ALL_CASES),
        Promise("labels: shape (B, L), int64.", ALL_CASES),
        Promise("loss_mask: shape (B, L), True on the response tokens.", ALL_CASES),
        Promise("loss: a scalar, same dtype as logits.", ALL_CASES),
    ),
)

# ----------------------------------------------------------------- reward_model_loss


def _rm_variant(kind: str) -> Callable:
    def reward_model_loss(chosen, rejected):
        diff = rejected - chosen if kind == "swapped" else chosen - rejected
        if kind == "log_of_sigmoid":
            return -torch.log(torch.sigmoid(diff)).mean()
        if kind == "no_minus":
            return F.logsigmoid(diff).mean()
        if kind == "sum":
            return -F.logsigmoid(diff).sum()
        return -F.logsigmoid(diff).mean()

    return reward_model_loss


RM_LOSS = Exercise(
    name="reward_model_loss",
    points=1,
    summary="Bradley-Terry: -log sigmoid(r_chosen - r_rejected)",
    make_cases=lambda g: [
        call_case("8 pairs", randn(g, 8, scale=2.0), randn(g, 8, scale=2.0)),
        call_case("a batch of pairs (2, 5)", randn(g, 2, 5), randn(g, 2, 5)),
        call_case(
            "margins of +-120 (log(sigmoid) overflows)",
            torch.tensor([60.0, -60.0, 1.0]),
            torch.tensor([-60.0, 60.0, 0.5]),
        ),
    ],
    reference=lambda: ref.reward_model_loss,
    output_names=("loss",),
    tolerance=TOL,
    mistakes=(
        Mistake(
            "swapped",
            "your answer matches sigmoid(r_rejected - r_chosen): the probability that the "
            "CHOSEN answer wins is sigmoid(r_chosen - r_rejected).",
            _rm_variant("swapped"),
        ),
        Mistake(
            "no_minus",
            "your answer matches log sigmoid without the minus sign: the loss is the "
            "NEGATIVE log-likelihood, -logsigmoid(r_chosen - r_rejected).",
            _rm_variant("no_minus"),
        ),
        Mistake(
            "sum",
            "your answer matches the SUM over pairs: take the mean.",
            _rm_variant("sum"),
        ),
        Mistake(
            "log_of_sigmoid",
            "your answer matches torch.log(torch.sigmoid(x)), which gives -inf once sigmoid "
            "underflows to 0 for a large negative margin: use F.logsigmoid(x).",
            _rm_variant("log_of_sigmoid"),
        ),
    ),
    promises=(
        Promise("-log sigmoid(r_chosen - r_rejected), averaged", ALL_CASES),
        Promise("P(chosen preferred to rejected) = sigmoid(r_chosen - r_rejected)", ALL_CASES),
        Promise(
            "Uses ``F.logsigmoid`` (stable for large margins).",
            ("margins of +-120 (log(sigmoid) overflows)",),
        ),
        Promise("chosen_rewards: shape (...)", ("8 pairs", "a batch of pairs (2, 5)")),
        Promise("rejected_rewards: same shape", ALL_CASES),
        Promise("loss: a scalar, the mean over the pairs.", ALL_CASES),
    ),
)

# -------------------------------------------------------------------------- dpo_loss


def _dpo_variant(kind: str) -> Callable:
    def dpo_loss(pc, pr, rc, rr, beta=0.1):
        cr, rj = pc - rc, pr - rr
        if kind == "no_reference":
            cr, rj = pc, pr
        margin = beta * (cr - rj)
        if kind == "beta_outside":
            losses = -beta * F.logsigmoid(cr - rj)
        elif kind == "no_minus":
            losses = F.logsigmoid(margin)
        elif kind == "swapped":
            losses = -F.logsigmoid(-margin)
        elif kind == "beta_divides":
            losses = -F.logsigmoid((cr - rj) / beta)
        else:
            losses = -F.logsigmoid(margin)
        if kind == "rewards_without_beta":
            return losses, cr.detach(), rj.detach()
        if kind == "beta_divides":
            return losses, (cr / beta).detach(), (rj / beta).detach()
        if kind == "not_detached":
            return losses, beta * cr, beta * rj
        return losses, (beta * cr).detach(), (beta * rj).detach()

    return dpo_loss


def _logps(g: torch.Generator, n: int) -> torch.Tensor:
    return -1.0 - 20.0 * torch.rand(n, generator=g)  # summed token log-probabilities


def _dpo_cases(g: torch.Generator) -> list[Case]:
    return [
        call_case("beta by default (0.1)", *(_logps(g, 6) for _ in range(4))),
        call_case("beta = 0.5", *(_logps(g, 4) for _ in range(4)), beta=0.5),
        call_case("beta = 2", *(_logps(g, 5) for _ in range(4)), beta=2.0),
    ]


DPO = Exercise(
    name="dpo_loss",
    points=3,
    summary="-log sigmoid(beta * (log-ratio chosen - log-ratio rejected))",
    make_cases=_dpo_cases,
    reference=lambda: ref.dpo_loss,
    # Called on log-probabilities that require gradients: the answer also says whether
    # the rewards are detached and whether the losses carry a gradient.
    driver="autograder.public.alignment:dpo_with_gradients",
    dtypes=("float64",),
    output_names=(
        "losses",
        "chosen_rewards",
        "rejected_rewards",
        "rewards_detached",
        "losses_have_gradient",
    ),
    tolerance=TOL,
    mistakes=(
        Mistake(
            "no_reference",
            "your answer matches DPO without the reference model: the implicit reward is "
            "beta * (log pi(y) - log pi_ref(y)); subtract the reference's log-probabilities.",
            _dpo_variant("no_reference"),
        ),
        Mistake(
            "beta_outside",
            "your answer matches -beta * logsigmoid(margin): beta multiplies the margin "
            "INSIDE the sigmoid, -logsigmoid(beta * (chosen ratio - rejected ratio)).",
            _dpo_variant("beta_outside"),
        ),
        Mistake(
            "beta_divides",
            "your answer matches a margin DIVIDED by beta: beta multiplies the log-ratios.",
            _dpo_variant("beta_divides"),
        ),
        Mistake(
            "no_minus",
            "your answer matches logsigmoid without the minus sign: the loss is "
            "-logsigmoid(...), which is positive.",
            _dpo_variant("no_minus"),
        ),
        Mistake(
            "swapped",
            "your answer matches the rejected answer's log-ratio minus the chosen's: the "
            "margin is (chosen ratio) - (rejected ratio).",
            _dpo_variant("swapped"),
        ),
        Mistake(
            "rewards_without_beta",
            "your losses are right but the rewards match the log-ratios without beta: "
            "chosen_rewards = beta * (pi_c - ref_c), rejected_rewards = beta * (pi_r - ref_r).",
            _dpo_variant("rewards_without_beta"),
        ),
        Mistake(
            "not_detached",
            "your rewards carry a gradient: they are for logging, so return them detached "
            "(beta * (pi_c - ref_c)).detach(); the gradient flows through the losses only.",
            _dpo_variant("not_detached"),
        ),
    ),
    promises=(
        Promise("a Bradley-Terry loss on implicit rewards", ALL_CASES),
        Promise("The implicit reward of an answer is beta * (log pi(answer)", ALL_CASES),
        Promise("losses = -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))", ALL_CASES),
        Promise("The rewards are detached", ALL_CASES),
        Promise("policy_chosen_logps: shape (B,)", ALL_CASES),
        Promise("policy_rejected_logps: shape (B,)", ALL_CASES),
        Promise("ref_chosen_logps: shape (B,)", ALL_CASES),
        Promise("ref_rejected_logps: shape (B,).", ALL_CASES),
        Promise(
            "beta: > 0, the strength of the implicit KL constraint",
            ("beta by default (0.1)", "beta = 0.5", "beta = 2"),
        ),
        Promise("(losses (B,), chosen_rewards (B,), rejected_rewards (B,)).", ALL_CASES),
    ),
)

# --------------------------------------------------------------------- ppo_clip_loss


def _ppo_variant(kind: str) -> Callable:
    def ppo_clip_loss(logprobs, old_logprobs, advantages, clip_eps=0.2):
        if kind == "log_ratio":
            ratio = logprobs - old_logprobs
        else:
            ratio = torch.exp(logprobs - old_logprobs)
        unclipped = ratio * advantages
        if kind == "clip_advantage":
            clipped = ratio * advantages.clamp(1 - clip_eps, 1 + clip_eps)
        else:
            clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages
        if kind == "max":
            return -torch.maximum(unclipped, clipped).mean()
        if kind == "clipped_only":
            return -clipped.mean()
        if kind == "no_minus":
            return torch.minimum(unclipped, clipped).mean()
        return -torch.minimum(unclipped, clipped).mean()

    return ppo_clip_loss


def _ppo_case(g: torch.Generator, label: str, shape: tuple, adv_shape: tuple, **kw) -> Case:
    old = -3.0 * torch.rand(*shape, generator=g)
    new = old + 0.5 * randn(g, *shape)  # ratios from about 0.4 to 2.5
    return call_case(label, new, old, randn(g, *adv_shape), **kw)


PPO = Exercise(
    name="ppo_clip_loss",
    points=2,
    summary="-mean(min(ratio * A, clip(ratio) * A))",
    make_cases=lambda g: [
        _ppo_case(g, "per-token advantages, clip_eps by default", (3, 8), (3, 8)),
        _ppo_case(g, "one advantage per sequence, clip_eps = 0.1", (4, 6), (4, 1), clip_eps=0.1),
        _ppo_case(g, "a flat batch, clip_eps = 0.3", (20,), (20,), clip_eps=0.3),
    ],
    reference=lambda: ref.ppo_clip_loss,
    output_names=("loss",),
    tolerance=TOL,
    mistakes=(
        Mistake(
            "max",
            "your answer matches the MAX of the clipped and unclipped terms: PPO takes the "
            "min (a pessimistic bound), so a large ratio earns no extra credit.",
            _ppo_variant("max"),
        ),
        Mistake(
            "clip_advantage",
            "your answer matches clipping the ADVANTAGE: clip the probability ratio, "
            "clamp(ratio, 1 - clip_eps, 1 + clip_eps) * A.",
            _ppo_variant("clip_advantage"),
        ),
        Mistake(
            "log_ratio",
            "your answer matches a ratio that is not exponentiated: ratio = "
            "exp(logprobs - old_logprobs), not the difference of the log-probabilities.",
            _ppo_variant("log_ratio"),
        ),
        Mistake(
            "clipped_only",
            "your answer matches the clipped term alone: take the min of ratio * A and "
            "clip(ratio) * A.",
            _ppo_variant("clipped_only"),
        ),
        Mistake(
            "no_minus",
            "your answer matches the surrogate objective itself: the loss is its NEGATIVE "
            "(we minimise the loss to maximise the objective).",
            _ppo_variant("no_minus"),
        ),
    ),
    promises=(
        Promise("PPO's clipped surrogate objective, negated (a loss to minimise)", ALL_CASES),
        Promise("ratio = exp(logprobs - old_logprobs)", ALL_CASES),
        Promise("logprobs: shape (...), log pi(a_t | s_t)", ALL_CASES),
        Promise("old_logprobs: same shape", ALL_CASES),
        Promise(
            "advantages: broadcastable to logprobs' shape",
            (
                "per-token advantages, clip_eps by default",
                "one advantage per sequence, clip_eps = 0.1",
            ),
        ),
        Promise("clip_eps: > 0, how far the ratio may move from 1", ALL_CASES),
        Promise("loss: a scalar.", ALL_CASES),
    ),
)

# ------------------------------------------------------------------------ kl_penalty


def _kl_variant(variant: str) -> Callable:
    def kl_penalty(logprobs, ref_logprobs, kind="k1"):
        d = logprobs - ref_logprobs
        if kind == "k1":
            return -d if variant == "k1_reversed" else d
        if kind == "k2":
            return 0.5 * d**2
        if variant == "k3_swapped":
            return torch.exp(d) - d - 1
        if variant == "k3_mixed":
            return torch.exp(-d) - d - 1
        if variant == "k3_no_one":
            return torch.exp(-d) + d
        return torch.exp(-d) + d - 1

    return kl_penalty


def _kl_case(g: torch.Generator, label: str, *shape: int, **kwargs) -> Case:
    logp = -4.0 * torch.rand(*shape, generator=g)
    return call_case(label, logp, logp + 0.8 * randn(g, *shape), **kwargs)


KL = Exercise(
    name="kl_penalty",
    points=2,
    summary="per-token KL estimates k1, k2, k3",
    make_cases=lambda g: [
        _kl_case(g, "k1 by default", 3, 6),
        _kl_case(g, "k3", 3, 6, kind="k3"),
        _kl_case(g, "k3, one sequence", 10, kind="k3"),
        _kl_case(g, "k2", 2, 5, kind="k2"),
    ],
    reference=lambda: ref.kl_penalty,
    output_names=("kl",),
    tolerance=TOL,
    mistakes=(
        Mistake(
            "k1_reversed",
            "your k1 matches logref - logp: the k1 estimate of KL(pi || pi_ref) is "
            "logprobs - ref_logprobs.",
            _kl_variant("k1_reversed"),
        ),
        Mistake(
            "k3_swapped",
            "your k3 matches exp(logp - logref) - (logp - logref) - 1, the roles of the "
            "policy and the reference swapped: with r = logref - logp, k3 = exp(r) - r - 1.",
            _kl_variant("k3_swapped"),
        ),
        Mistake(
            "k3_mixed",
            "your k3 matches exp(logref - logp) - (logp - logref) - 1: the same log-ratio "
            "r = logref - logp appears in both terms, k3 = exp(r) - r - 1.",
            _kl_variant("k3_mixed"),
        ),
        Mistake(
            "k3_no_one",
            "your k3 matches exp(r) - r without the - 1: k3 = exp(r) - r - 1 is 0 when the "
            "policy and the reference agree.",
            _kl_variant("k3_no_one"),
        ),
    ),
    promises=(
        Promise("Per-token estimates of KL(pi || pi_ref)", ALL_CASES),
        Promise("log_ratio = ref_logprobs - logprobs", ("k3", "k3, one sequence")),
        Promise('"k1": logprobs - ref_logprobs', ("k1 by default",)),
        Promise('"k2": 0.5 * (logprobs - ref_logprobs)**2', ("k2",)),
        Promise('"k3": exp(log_ratio) - log_ratio - 1', ("k3", "k3, one sequence")),
        Promise("logprobs: shape (...), log pi(token) under the policy.", ALL_CASES),
        Promise("ref_logprobs: same shape, under the reference model.", ALL_CASES),
        Promise('kind: "k1", "k2" or "k3".', ("k1 by default", "k2", "k3")),
        Promise("shape (...), one estimate per token.", ALL_CASES),
    ),
)

# ------------------------------------------------------------------------------- gae


def _gae_variant(kind: str) -> Callable:
    def gae(rewards, values, gamma=0.99, lam=0.95, dones=None):
        T = rewards.shape[-1]
        if dones is None or kind == "dones_ignored":
            dones = torch.zeros(rewards.shape, dtype=torch.bool)
        adv = torch.zeros_like(rewards)
        last = torch.zeros_like(rewards[..., 0])
        decay = {"no_lambda": gamma, "lam_only": lam}.get(kind, gamma * lam)
        for t in reversed(range(T)):
            alive = (~dones[..., t]).to(rewards.dtype)
            nxt = values[..., t + 1]
            if kind == "no_bootstrap" and t == T - 1:
                nxt = torch.zeros_like(nxt)
            cut = torch.ones_like(alive) if kind == "dones_bootstrap" else alive
            delta = rewards[..., t] + gamma * cut * nxt - values[..., t]
            last = delta + decay * alive * last
            adv[..., t] = last
        base = values[..., 1:] if kind == "returns_next_value" else values[..., :-1]
        return adv, adv + base

    return gae


def _gae_cases(g: torch.Generator) -> list[Case]:
    dones = torch.tensor([[False, False, True, False, False, False, True, False],
                          [False, True, False, False, False, False, False, False]])  # fmt: skip
    return [
        call_case("T = 6, gamma and lam by default", randn(g, 6), randn(g, 7)),
        call_case("gamma = 0.9, lam = 0.5", randn(g, 8), randn(g, 9), 0.9, 0.5),
        call_case("lam = 0 (one-step TD errors)", randn(g, 5), randn(g, 6), 0.8, 0.0),
        call_case(
            "a batch of 2 with episode ends",
            randn(g, 2, 8),
            randn(g, 2, 9),
            gamma=0.95,
            lam=0.9,
            dones=dones,
        ),
        call_case("lam = 1 (Monte Carlo returns minus V_t)", randn(g, 7), randn(g, 8), 0.9, 1.0),
        call_case(
            "the episode ends at the last step (V_T not used)",
            randn(g, 5),
            randn(g, 6) + 2.0,
            dones=torch.tensor([False, False, False, False, True]),
        ),
    ]


GAE = Exercise(
    name="gae",
    points=3,
    summary="generalized advantage estimation and returns",
    make_cases=_gae_cases,
    reference=lambda: ref.gae,
    output_names=("advantages", "returns"),
    tolerance=TOL,
    mistakes=(
        Mistake(
            "no_lambda",
            "your answer matches advantages discounted by gamma alone: GAE discounts the TD "
            "errors by gamma * lam, A_t = delta_t + gamma * lam * A_{t+1}.",
            _gae_variant("no_lambda"),
        ),
        Mistake(
            "no_bootstrap",
            "your answer matches ignoring values[T], the value after the last step: the last "
            "TD error is r_{T-1} + gamma * V_T - V_{T-1} (values has T + 1 entries).",
            _gae_variant("no_bootstrap"),
        ),
        Mistake(
            "returns_next_value",
            "your returns match A_t + V_{t+1}: the returns are A_t + V_t, "
            "advantages + values[..., :-1].",
            _gae_variant("returns_next_value"),
        ),
        Mistake(
            "dones_ignored",
            "your answer matches ignoring dones: where an episode ends (done_t), multiply "
            "both V_{t+1} and A_{t+1} by (1 - done_t).",
            _gae_variant("dones_ignored"),
        ),
        Mistake(
            "dones_bootstrap",
            "your answer stops the advantage at an episode end but still bootstraps from "
            "V_{t+1}: delta_t = r_t + gamma * (1 - done_t) * V_{t+1} - V_t.",
            _gae_variant("dones_bootstrap"),
        ),
        Mistake(
            "lam_only",
            "your answer matches advantages discounted by lam alone: GAE discounts the TD "
            "errors by gamma * lam, so lam = 1 gives the Monte Carlo return minus V_t.",
            _gae_variant("lam_only"),
        ),
    ),
    promises=(
        Promise("Generalized advantage estimation over a trajectory of T steps.", ALL_CASES),
        Promise("delta_t = r_t + gamma * (1 - done_t) * V_{t+1} - V_t", ALL_CASES),
        Promise("``values`` has one more entry than ``rewards``", ALL_CASES),
        Promise(
            "0 if the trajectory ended there).",
            ("the episode ends at the last step (V_T not used)",),
        ),
        Promise(
            "``done_t`` True means an episode ended at step t",
            ("a batch of 2 with episode ends", "the episode ends at the last step (V_T not used)"),
        ),
        Promise(
            "Computed without a loop over t",
            why="how the reference computes it: the outputs are those of the formulas above "
            "(a loop over t gives the same answer; the course's conventions, not the grader, "
            "ask for tensor operations)",
        ),
        Promise("rewards: shape (..., T).", ALL_CASES),
        Promise("values: shape (..., T + 1).", ALL_CASES),
        Promise(
            "gamma: the discount, in [0, 1].",
            ("T = 6, gamma and lam by default", "gamma = 0.9, lam = 0.5"),
        ),
        Promise(
            "lam: the GAE parameter in [0, 1] (0: one-step TD error;",
            ("T = 6, gamma and lam by default", "lam = 0 (one-step TD errors)"),
        ),
        Promise("1: Monte Carlo return minus V_t).", ("lam = 1 (Monte Carlo returns minus V_t)",)),
        Promise(
            "dones: shape (..., T), bool, or None",
            ("T = 6, gamma and lam by default", "a batch of 2 with episode ends"),
        ),
        Promise("(advantages (..., T), returns (..., T)), same dtype as rewards.", ALL_CASES),
    ),
)

# --------------------------------------------------------- group_relative_advantages


def _grpo_variant(kind: str) -> Callable:
    def group_relative_advantages(rewards, group_size, eps=1e-6):
        if kind == "whole_batch":  # all the rewards of a row as one group
            groups = rewards.reshape(*rewards.shape[:-1], 1, -1)
        elif kind == "interleaved":
            groups = rewards.reshape(*rewards.shape[:-1], group_size, -1).transpose(-1, -2)
        else:
            groups = rewards.reshape(*rewards.shape[:-1], -1, group_size)
        mean = groups.mean(-1, keepdim=True)
        std = groups.std(-1, keepdim=True, unbiased=kind != "biased_std")
        out = (groups - mean) / (std + eps)
        if kind == "interleaved":
            out = out.transpose(-1, -2)
        return out.reshape(rewards.shape)

    return group_relative_advantages


def _grpo_cases(g: torch.Generator) -> list[Case]:
    equal = torch.randint(0, 4, (12,), generator=g).float()
    equal[4:8] = 1.0  # every sample of prompt 2 got the same reward
    return [
        call_case("3 groups of 4, one with equal rewards", equal, 4),
        call_case("2 groups of 3 with rewards 0 or 1", torch.tensor([1.0, 0, 0, 1, 1, 0]), 3),
        call_case("4 groups of 5, eps = 0.1", randn(g, 20), 5, eps=0.1),
        call_case("a batch (2, 6) of groups of 2", randn(g, 2, 6), 2),
    ]


GRPO = Exercise(
    name="group_relative_advantages",
    points=2,
    summary="(r - group mean) / (group std + eps)",
    make_cases=_grpo_cases,
    reference=lambda: ref.group_relative_advantages,
    output_names=("advantages",),
    tolerance=TOL,
    mistakes=(
        Mistake(
            "biased_std",
            "your answer matches the BIASED standard deviation (dividing by n): use the "
            "unbiased one, torch.std's default (dividing by n - 1).",
            _grpo_variant("biased_std"),
        ),
        Mistake(
            "whole_batch",
            "your answer matches normalising over the WHOLE batch: each group (the samples "
            "of one prompt) is standardised by its own mean and std.",
            _grpo_variant("whole_batch"),
        ),
        Mistake(
            "interleaved",
            "your answer matches groups taken with a stride: group i is the CONSECUTIVE "
            "block rewards[i * group_size : (i + 1) * group_size].",
            _grpo_variant("interleaved"),
        ),
    ),
    promises=(
        Promise("each reward standardised within its group", ALL_CASES),
        Promise("The rewards come in consecutive groups of ``group_size`` samples", ALL_CASES),
        Promise("A = (r - mean(group)) / (std(group) + eps)", ALL_CASES),
        Promise("with the unbiased standard deviation", ALL_CASES),
        Promise(
            "A group whose rewards are all equal gets advantages 0",
            ("3 groups of 4, one with equal rewards",),
        ),
        Promise("rewards: shape (..., G * group_size).", ("a batch (2, 6) of groups of 2",)),
        Promise(
            "group_size: the number of samples per prompt, >= 2.",
            why="a precondition on the caller's group_size (the docstring promises no error "
            "for 1); every case's group_size is exercised by the formula above",
        ),
        Promise("eps: added to the standard deviation.", ("4 groups of 5, eps = 0.1",)),
        Promise("advantages: the shape of rewards.", ALL_CASES),
    ),
)

SPEC = ChapterSpec(
    number="06",
    slug="alignment",
    title="Alignment: SFT, reward models, RLHF, DPO, GRPO",
    exercises=(SEQUENCE_LOGPROBS, SFT_LOSS, RM_LOSS, DPO, PPO, KL, GAE, GRPO),
)
