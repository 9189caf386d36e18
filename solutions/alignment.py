"""Chapter 06: alignment (SFT, reward models, RLHF, DPO, GRPO), the reference.

A pretrained language model continues text; alignment makes it follow
instructions and prefer the answers people (or a program) prefer. The pieces:

1. ``sequence_logprobs``: log p(response | prompt), the sum of the log-probabilities
   of the response tokens; every method below is built on it.
2. ``sft_loss``: supervised fine-tuning, the mean next-token loss over the
   response tokens only (the prompt is context, not a target).
3. ``reward_model_loss``: the Bradley-Terry loss of a reward model on
   (chosen, rejected) pairs.
4. ``dpo_loss``: Direct Preference Optimization, the same pairwise loss with the
   policy's log-probability ratio to a frozen reference model as the reward.
5. ``ppo_clip_loss``: PPO's clipped surrogate objective (negated, to minimise).
6. ``kl_penalty``: per-token estimates of KL(policy || reference).
7. ``gae``: generalized advantage estimation from rewards and values.
8. ``group_relative_advantages``: GRPO's advantages, rewards standardised
   within each group of samples of the same prompt.

Every function keeps the device and dtype of its inputs and checks its
arguments from shapes only, so everything runs on ``meta`` tensors.
"""

import torch
import torch.nn.functional as F


def sequence_logprobs(
    logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor
) -> torch.Tensor:
    """The log-probability of each sequence's masked tokens: sum of log p(label).

    The logits are already aligned with the labels: ``logits[b, t]`` is the
    model's prediction for ``labels[b, t]`` (shift before calling). Positions
    where ``loss_mask`` is False count for nothing; their labels may be any
    integer (-100, the usual padding label, included).

    Args:
        logits: shape (B, L, V).
        labels: shape (B, L), int64 token ids.
        loss_mask: shape (B, L), bool (or 0/1), True on the tokens to score.

    Returns:
        logps: shape (B,), same dtype as logits.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (B, L, V), got shape {tuple(logits.shape)}")
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"labels must have shape (B, L) = {tuple(logits.shape[:2])}, got {tuple(labels.shape)}"
        )
    if loss_mask.shape != labels.shape:
        raise ValueError(
            f"loss_mask must have the shape of labels {tuple(labels.shape)}, "
            f"got {tuple(loss_mask.shape)}"
        )
    mask = loss_mask.bool()  # (B, L)
    logp = F.log_softmax(logits, dim=-1)  # (B, L, V)
    safe = labels.masked_fill(~mask, 0)  # (B, L) any valid id where masked out
    tok = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (B, L) log p(label)
    return torch.where(mask, tok, torch.zeros_like(tok)).sum(dim=-1)  # (B,)


def sft_loss(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Supervised fine-tuning loss: the mean negative log-likelihood of the response tokens.

    The mean is over all masked tokens of the batch together (a token-level mean,
    as ``F.cross_entropy(..., ignore_index=-100)`` computes it), so a long response
    weighs more than a short one. With no masked token at all the loss is 0.

    Args:
        logits: shape (B, L, V), aligned with labels.
        labels: shape (B, L), int64.
        loss_mask: shape (B, L), True on the response tokens.

    Returns:
        loss: a scalar, same dtype as logits.
    """
    total = sequence_logprobs(logits, labels, loss_mask).sum()  # () sum of log p
    count = loss_mask.bool().sum().clamp_min(1)  # () number of response tokens
    return -total / count  # ()


def reward_model_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss of a reward model: -log sigmoid(r_chosen - r_rejected), averaged.

    Under the Bradley-Terry model, P(chosen preferred to rejected) =
    sigmoid(r_chosen - r_rejected); the loss is the negative log-likelihood of
    the observed preferences. Uses ``F.logsigmoid`` (stable for large margins).

    Args:
        chosen_rewards: shape (...), the reward model's score of each preferred answer.
        rejected_rewards: same shape, the score of the other answer of each pair.

    Returns:
        loss: a scalar, the mean over the pairs.
    """
    if chosen_rewards.shape != rejected_rewards.shape:
        raise ValueError(
            f"rejected_rewards must have the shape of chosen_rewards "
            f"{tuple(chosen_rewards.shape)}, got {tuple(rejected_rewards.shape)}"
        )
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()  # ()


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Direct Preference Optimization: a Bradley-Terry loss on implicit rewards.

    The implicit reward of an answer is beta * (log pi(answer) - log pi_ref(answer)):
    how much more likely the policy makes it than the frozen reference model.

        losses = -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))
        chosen_rewards = beta * (pi_c - ref_c),  rejected_rewards = beta * (pi_r - ref_r)

    The rewards are detached (they are for logging; the gradient flows through
    the losses).

    Args:
        policy_chosen_logps: shape (B,), log pi(chosen | prompt) (``sequence_logprobs``).
        policy_rejected_logps: shape (B,), log pi(rejected | prompt).
        ref_chosen_logps: shape (B,), the same under the reference model.
        ref_rejected_logps: shape (B,).
        beta: > 0, the strength of the implicit KL constraint (larger: stay closer
            to the reference).

    Returns:
        (losses (B,), chosen_rewards (B,), rejected_rewards (B,)).
    """
    shape = policy_chosen_logps.shape
    for name, t in (
        ("policy_rejected_logps", policy_rejected_logps),
        ("ref_chosen_logps", ref_chosen_logps),
        ("ref_rejected_logps", ref_rejected_logps),
    ):
        if t.shape != shape:
            raise ValueError(
                f"{name} must have the shape of policy_chosen_logps {tuple(shape)}, "
                f"got {tuple(t.shape)}"
            )
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    chosen_ratio = policy_chosen_logps - ref_chosen_logps  # (B,) log pi/pi_ref, chosen
    rejected_ratio = policy_rejected_logps - ref_rejected_logps  # (B,)
    losses = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))  # (B,)
    chosen_rewards = (beta * chosen_ratio).detach()  # (B,)
    rejected_rewards = (beta * rejected_ratio).detach()  # (B,)
    return losses, chosen_rewards, rejected_rewards


def ppo_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    clip_eps: float = 0.2,
) -> torch.Tensor:
    """PPO's clipped surrogate objective, negated (a loss to minimise), mean over elements.

        ratio = exp(logprobs - old_logprobs)
        loss = -mean(min(ratio * A, clip(ratio, 1 - clip_eps, 1 + clip_eps) * A))

    Args:
        logprobs: shape (...), log pi(a_t | s_t) under the policy being trained.
        old_logprobs: same shape, under the policy that sampled the actions.
        advantages: broadcastable to logprobs' shape (per token, or (B, 1) per sequence).
        clip_eps: > 0, how far the ratio may move from 1 before its gradient stops.

    Returns:
        loss: a scalar.
    """
    if old_logprobs.shape != logprobs.shape:
        raise ValueError(
            f"old_logprobs must have the shape of logprobs {tuple(logprobs.shape)}, "
            f"got {tuple(old_logprobs.shape)}"
        )
    try:
        torch.broadcast_shapes(advantages.shape, logprobs.shape)
    except RuntimeError:
        raise ValueError(
            f"advantages of shape {tuple(advantages.shape)} do not broadcast to logprobs' "
            f"shape {tuple(logprobs.shape)}"
        ) from None
    if not clip_eps > 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")
    ratio = torch.exp(logprobs - old_logprobs)  # (...)
    unclipped = ratio * advantages  # (...)
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages  # (...)
    return -torch.minimum(unclipped, clipped).mean()  # ()


def kl_penalty(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k1"
) -> torch.Tensor:
    """Per-token estimates of KL(pi || pi_ref) from the log-probabilities of sampled tokens.

    With the tokens sampled from pi and log_ratio = ref_logprobs - logprobs:

        "k1": logprobs - ref_logprobs            (unbiased, can be negative)
        "k2": 0.5 * (logprobs - ref_logprobs)**2  (biased, never negative)
        "k3": exp(log_ratio) - log_ratio - 1      (unbiased, never negative)

    Args:
        logprobs: shape (...), log pi(token) under the policy.
        ref_logprobs: same shape, under the reference model.
        kind: "k1", "k2" or "k3".

    Returns:
        shape (...), one estimate per token.
    """
    if ref_logprobs.shape != logprobs.shape:
        raise ValueError(
            f"ref_logprobs must have the shape of logprobs {tuple(logprobs.shape)}, "
            f"got {tuple(ref_logprobs.shape)}"
        )
    if kind == "k1":
        return logprobs - ref_logprobs  # (...)
    if kind == "k2":
        return 0.5 * (logprobs - ref_logprobs) ** 2  # (...)
    if kind == "k3":
        log_ratio = ref_logprobs - logprobs  # (...) log pi_ref / pi
        return torch.exp(log_ratio) - log_ratio - 1  # (...)
    raise ValueError(f'kind must be "k1", "k2" or "k3", got {kind!r}')


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    gamma: float = 0.99,
    lam: float = 0.95,
    dones: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over a trajectory of T steps.

        delta_t = r_t + gamma * (1 - done_t) * V_{t+1} - V_t
        A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}   (A_T = 0)
        returns_t = A_t + V_t   (the targets of the value function)

    ``values`` has one more entry than ``rewards``: V_T is the value of the state
    after the last step (the bootstrap; 0 if the trajectory ended there).
    ``done_t`` True means an episode ended at step t: nothing after t flows back.
    Computed without a loop over t: A = M @ delta with M[t, s] = (gamma * lam)^(s - t)
    for s >= t in the same episode, else 0.

    Args:
        rewards: shape (..., T).
        values: shape (..., T + 1).
        gamma: the discount, in [0, 1].
        lam: the GAE parameter in [0, 1] (0: one-step TD error; 1: Monte Carlo
            return minus V_t).
        dones: shape (..., T), bool, or None (no episode ends inside the trajectory).

    Returns:
        (advantages (..., T), returns (..., T)), same dtype as rewards.
    """
    if rewards.dim() < 1:
        raise ValueError(f"rewards must have shape (..., T), got shape {tuple(rewards.shape)}")
    T = rewards.shape[-1]
    if values.shape != (*rewards.shape[:-1], T + 1):
        raise ValueError(
            f"values must have shape (..., T + 1) = {(*rewards.shape[:-1], T + 1)}, "
            f"got {tuple(values.shape)}"
        )
    if dones is not None and dones.shape != rewards.shape:
        raise ValueError(
            f"dones must have the shape of rewards {tuple(rewards.shape)}, got {tuple(dones.shape)}"
        )
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if not 0 <= lam <= 1:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    if dones is None:
        dones = torch.zeros(rewards.shape, dtype=torch.bool, device=rewards.device)
    notdone = (~dones.bool()).to(rewards.dtype)  # (..., T)
    deltas = rewards + gamma * notdone * values[..., 1:] - values[..., :-1]  # (..., T)
    steps = torch.arange(T, device=rewards.device)  # (T,)
    gap = steps[None, :] - steps[:, None]  # (T, T) s - t
    episode = torch.cumsum(dones.long(), dim=-1) - dones.long()  # (..., T) dones before t
    same = episode.unsqueeze(-1) == episode.unsqueeze(-2)  # (..., T, T) t and s in one episode
    base = torch.tensor(gamma * lam, dtype=rewards.dtype, device=rewards.device)  # ()
    decay = torch.pow(base, gap.clamp_min(0).to(rewards.dtype))  # (T, T) 0^0 = 1
    weights = torch.where(same & (gap >= 0), decay, torch.zeros_like(decay))  # (..., T, T)
    advantages = (weights @ deltas.unsqueeze(-1)).squeeze(-1)  # (..., T)
    return advantages, advantages + values[..., :-1]


def group_relative_advantages(
    rewards: torch.Tensor, group_size: int, eps: float = 1e-6
) -> torch.Tensor:
    """GRPO's advantages: each reward standardised within its group.

    The rewards come in consecutive groups of ``group_size`` samples of the same
    prompt: rewards[..., i * group_size : (i + 1) * group_size] is group i.

        A = (r - mean(group)) / (std(group) + eps)

    with the unbiased standard deviation (``torch.std``'s default, dividing by n - 1).
    A group whose rewards are all equal gets advantages 0: nothing to learn from it.

    Args:
        rewards: shape (..., G * group_size).
        group_size: the number of samples per prompt, >= 2.
        eps: added to the standard deviation.

    Returns:
        advantages: the shape of rewards.
    """
    if rewards.dim() < 1:
        raise ValueError(f"rewards must have shape (..., N), got shape {tuple(rewards.shape)}")
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2, got {group_size}")
    if rewards.shape[-1] % group_size != 0:
        raise ValueError(
            f"group_size {group_size} must divide the number of rewards {rewards.shape[-1]}"
        )
    groups = rewards.reshape(*rewards.shape[:-1], -1, group_size)  # (..., G, n)
    mean = groups.mean(dim=-1, keepdim=True)  # (..., G, 1)
    std = groups.std(dim=-1, keepdim=True)  # (..., G, 1) unbiased
    return ((groups - mean) / (std + eps)).reshape(rewards.shape)  # (..., G * n)
