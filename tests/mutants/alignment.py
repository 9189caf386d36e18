"""Mutants of solutions/alignment.py (chapter 06)."""

from tests.mutants import Mutant

LOGP = "logp = F.log_softmax(logits, dim=-1)  # (B, L, V)"
MASKED_SUM = "return torch.where(mask, tok, torch.zeros_like(tok)).sum(dim=-1)  # (B,)"
SFT_TOTAL = "total = sequence_logprobs(logits, labels, loss_mask).sum()  # () sum of log p"
SFT_COUNT = "count = loss_mask.bool().sum().clamp_min(1)  # () number of response tokens"
SFT_RETURN = "return -total / count  # ()"
RM = "return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()  # ()"
DPO = "losses = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))  # (B,)"
PPO_MIN = "return -torch.minimum(unclipped, clipped).mean()  # ()"
K3 = "return torch.exp(log_ratio) - log_ratio - 1  # (...)"
DELTAS = "deltas = rewards + gamma * notdone * values[..., 1:] - values[..., :-1]  # (..., T)"
GROUPS = "groups = rewards.reshape(*rewards.shape[:-1], -1, group_size)  # (..., G, n)"

MUTANTS = (
    # sequence_logprobs
    Mutant(
        "logps_wrong_axis",
        "sequence_logprobs",
        ((LOGP, "logp = F.log_softmax(logits, dim=1)"),),
        "SEQUENCE axis",
    ),
    Mutant(
        "logps_no_mask",
        "sequence_logprobs",
        (
            ("safe = labels.masked_fill(~mask, 0)", "safe = labels.clamp_min(0)"),
            (MASKED_SUM, "return tok.sum(dim=-1)"),
        ),
        "EVERY position",
    ),
    Mutant(
        "logps_mean",
        "sequence_logprobs",
        ((MASKED_SUM, MASKED_SUM[:-7] + " / mask.sum(dim=-1).clamp_min(1)"),),
        "MEAN log-probability",
    ),
    Mutant("logps_raw_logits", "sequence_logprobs", ((LOGP, "logp = logits"),), "raw logits"),
    # sft_loss
    Mutant(
        "sft_all_tokens",
        "sft_loss",
        (
            (
                SFT_TOTAL,
                "total = sequence_logprobs(logits, labels, torch.ones_like(loss_mask)).sum()",
            ),
            (SFT_COUNT, "count = labels.numel()"),
        ),
        "ALL tokens",
    ),
    Mutant("sft_sum", "sft_loss", ((SFT_RETURN, "return -total"),), "SUM of the NLL"),
    Mutant(
        "sft_sequence_mean",
        "sft_loss",
        (
            (
                SFT_TOTAL,
                "total = (sequence_logprobs(logits, labels, loss_mask)"
                " / loss_mask.sum(-1).clamp_min(1)).mean()",
            ),
            (SFT_RETURN, "return -total"),
        ),
        "per-sequence means",
    ),
    Mutant("sft_no_minus", "sft_loss", ((SFT_RETURN, "return total / count"),), "LOG-LIKELIHOOD"),
    # reward_model_loss
    Mutant(
        "rm_swapped",
        "reward_model_loss",
        ((RM, "return -F.logsigmoid(rejected_rewards - chosen_rewards).mean()"),),
        "CHOSEN answer wins",
    ),
    Mutant(
        "rm_no_minus",
        "reward_model_loss",
        ((RM, "return F.logsigmoid(chosen_rewards - rejected_rewards).mean()"),),
        "without the minus sign",
    ),
    Mutant(
        "rm_sum",
        "reward_model_loss",
        ((RM, "return -F.logsigmoid(chosen_rewards - rejected_rewards).sum()"),),
        "SUM over pairs",
    ),
    Mutant(
        "rm_log_of_sigmoid",
        "reward_model_loss",
        ((RM, "return -torch.log(torch.sigmoid(chosen_rewards - rejected_rewards)).mean()"),),
        "F.logsigmoid(x)",
    ),
    # dpo_loss
    Mutant(
        "dpo_no_reference",
        "dpo_loss",
        (
            (
                "chosen_ratio = policy_chosen_logps - ref_chosen_logps",
                "chosen_ratio = policy_chosen_logps",
            ),
            (
                "rejected_ratio = policy_rejected_logps - ref_rejected_logps",
                "rejected_ratio = policy_rejected_logps",
            ),
        ),
        "without the reference model",
    ),
    Mutant(
        "dpo_beta_outside",
        "dpo_loss",
        ((DPO, "losses = -beta * F.logsigmoid(chosen_ratio - rejected_ratio)"),),
        "INSIDE the sigmoid",
    ),
    Mutant(
        "dpo_beta_divides",
        "dpo_loss",
        (
            (DPO, "losses = -F.logsigmoid((chosen_ratio - rejected_ratio) / beta)"),
            ("chosen_rewards = (beta * chosen_ratio)", "chosen_rewards = (chosen_ratio / beta)"),
            (
                "rejected_rewards = (beta * rejected_ratio)",
                "rejected_rewards = (rejected_ratio / beta)",
            ),
        ),
        "DIVIDED by beta",
    ),
    Mutant(
        "dpo_no_minus",
        "dpo_loss",
        ((DPO, "losses = F.logsigmoid(beta * (chosen_ratio - rejected_ratio))"),),
        "without the minus sign",
    ),
    Mutant(
        "dpo_swapped",
        "dpo_loss",
        ((DPO, "losses = -F.logsigmoid(beta * (rejected_ratio - chosen_ratio))"),),
        "rejected answer's log-ratio minus",
    ),
    Mutant(
        "dpo_rewards_without_beta",
        "dpo_loss",
        (
            ("chosen_rewards = (beta * chosen_ratio)", "chosen_rewards = (chosen_ratio)"),
            ("rejected_rewards = (beta * rejected_ratio)", "rejected_rewards = (rejected_ratio)"),
        ),
        "without beta",
    ),
    # ppo_clip_loss
    Mutant(
        "ppo_max",
        "ppo_clip_loss",
        ((PPO_MIN, "return -torch.maximum(unclipped, clipped).mean()"),),
        "MAX of the clipped",
    ),
    Mutant(
        "ppo_clip_advantage",
        "ppo_clip_loss",
        (
            (
                "clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages",
                "clipped = ratio * advantages.clamp(1 - clip_eps, 1 + clip_eps)",
            ),
        ),
        "clipping the ADVANTAGE",
    ),
    Mutant(
        "ppo_log_ratio",
        "ppo_clip_loss",
        (("ratio = torch.exp(logprobs - old_logprobs)", "ratio = (logprobs - old_logprobs)"),),
        "not exponentiated",
    ),
    Mutant(
        "ppo_clipped_only",
        "ppo_clip_loss",
        ((PPO_MIN, "return -clipped.mean()"),),
        "clipped term alone",
    ),
    Mutant(
        "ppo_no_minus",
        "ppo_clip_loss",
        ((PPO_MIN, "return torch.minimum(unclipped, clipped).mean()"),),
        "NEGATIVE",
    ),
    # kl_penalty
    Mutant(
        "kl_k1_reversed",
        "kl_penalty",
        (("return logprobs - ref_logprobs  # (...)", "return ref_logprobs - logprobs"),),
        "k1 estimate",
    ),
    Mutant(
        "kl_k3_swapped",
        "kl_penalty",
        (
            (
                "log_ratio = ref_logprobs - logprobs  # (...)",
                "log_ratio = logprobs - ref_logprobs  #",
            ),
        ),
        "roles of the policy and the reference swapped",
    ),
    Mutant(
        "kl_k3_mixed",
        "kl_penalty",
        ((K3, "return torch.exp(log_ratio) + log_ratio - 1"),),
        "same log-ratio",
    ),
    Mutant(
        "kl_k3_no_one",
        "kl_penalty",
        ((K3, "return torch.exp(log_ratio) - log_ratio"),),
        "without the - 1",
    ),
    # gae
    Mutant(
        "gae_no_lambda",
        "gae",
        (("base = torch.tensor(gamma * lam,", "base = torch.tensor(gamma,"),),
        "gamma alone",
    ),
    Mutant(
        "gae_no_bootstrap",
        "gae",
        (
            (
                DELTAS,
                "nxt = torch.cat([values[..., 1:-1], torch.zeros_like(values[..., -1:])], -1)\n"
                "    deltas = rewards + gamma * notdone * nxt - values[..., :-1]",
            ),
        ),
        "ignoring values[T]",
    ),
    Mutant(
        "gae_returns_next_value",
        "gae",
        (
            (
                "return advantages, advantages + values[..., :-1]",
                "return advantages, advantages + values[..., 1:]",
            ),
        ),
        "A_t + V_{t+1}",
    ),
    Mutant(
        "gae_dones_ignored",
        "gae",
        (
            (
                "    if dones is None:\n        dones = torch.zeros(",
                "    if True:\n        dones = torch.zeros(",
            ),
        ),
        "ignoring dones",
    ),
    Mutant(
        "gae_dones_bootstrap",
        "gae",
        ((DELTAS, "deltas = rewards + gamma * values[..., 1:] - values[..., :-1]"),),
        "still bootstraps",
    ),
    # group_relative_advantages
    Mutant(
        "grpo_biased_std",
        "group_relative_advantages",
        (
            (
                "std = groups.std(dim=-1, keepdim=True)",
                "std = groups.std(dim=-1, keepdim=True, unbiased=False)",
            ),
        ),
        "BIASED standard deviation",
    ),
    Mutant(
        "grpo_whole_batch",
        "group_relative_advantages",
        ((GROUPS, "groups = rewards.reshape(*rewards.shape[:-1], 1, -1)"),),
        "WHOLE batch",
    ),
    Mutant(
        "grpo_interleaved",
        "group_relative_advantages",
        (
            (
                GROUPS,
                "groups = rewards.reshape(*rewards.shape[:-1], group_size, -1).transpose(-1, -2)",
            ),
            (
                "return ((groups - mean) / (std + eps)).reshape(rewards.shape)",
                "return ((groups - mean) / (std + eps)).transpose(-1, -2).reshape(rewards.shape)",
            ),
        ),
        "with a stride",
    ),
    # cases added with the docstring promises (autograder/alignment.py)
    Mutant(
        "logps_int_mask",
        "sequence_logprobs",
        (("mask = loss_mask.bool()  # (B, L)", "mask = loss_mask  # (B, L)"),),
        "masked_fill",
    ),
    Mutant(
        "sft_empty_nan",
        "sft_loss",
        ((SFT_COUNT, "count = loss_mask.bool().sum()"),),
        "NaN (0 / 0)",
    ),
    Mutant(
        "dpo_rewards_not_detached",
        "dpo_loss",
        (
            (
                "chosen_rewards = (beta * chosen_ratio).detach()",
                "chosen_rewards = beta * chosen_ratio",
            ),
            (
                "rejected_rewards = (beta * rejected_ratio).detach()",
                "rejected_rewards = beta * rejected_ratio",
            ),
        ),
        "carry a gradient",
    ),
    Mutant(
        "gae_lam_only",
        "gae",
        (("base = torch.tensor(gamma * lam,", "base = torch.tensor(lam,"),),
        "by lam alone",
    ),
    Mutant(
        "gae_bootstrap_after_end",
        "gae",
        (
            (
                DELTAS,
                "last_alive = torch.ones_like(notdone[..., -1:])\n"
                "    alive = torch.cat([notdone[..., :-1], last_alive], dim=-1)\n"
                "    deltas = rewards + gamma * alive * values[..., 1:] - values[..., :-1]",
            ),
        ),
        "ignoring dones",
    ),
)
