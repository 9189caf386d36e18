"""Mutants of solutions/moe.py (chapter 03)."""

from tests.mutants import Mutant

SELECT = "top_logits, expert_indices = torch.topk(router_logits, k, dim=-1)"
SOFTMAX_K = "weights = F.softmax(top_logits, dim=-1)"
COUNTS = "f = counts.to(router_logits.dtype) / max(T, 1)"
PROBS = "probs = F.softmax(router_logits, dim=-1)"
CEIL = "return math.ceil(k * num_tokens * capacity_factor / num_experts)"
GROUP = "order = torch.argsort(flat_expert, stable=True)"

MUTANTS = (
    # top_k_routing
    Mutant(
        "routing_softmax_over_all_experts_first",
        "top_k_routing",
        (
            (SELECT, "weights, expert_indices = torch.topk(F.softmax(router_logits, -1), k)"),
            (SOFTMAX_K, "pass"),
        ),
        "Switch Transformer / GShard recipe",
    ),
    Mutant(
        "routing_softmax_over_tokens",
        "top_k_routing",
        ((SOFTMAX_K, "weights = F.softmax(top_logits, dim=0)"),),
        "softmax over the tokens",
    ),
    Mutant(
        "routing_smallest_logits",
        "top_k_routing",
        ((SELECT, SELECT.replace("dim=-1)", "dim=-1, largest=False)")),),
        "k smallest logits",
    ),
    Mutant(
        "routing_raw_logits_as_weights",
        "top_k_routing",
        ((SOFTMAX_K, "weights = top_logits"),),
        "selected logits themselves",
    ),
    Mutant(
        "routing_experts_sorted_by_number",
        "top_k_routing",
        (
            (
                SOFTMAX_K,
                "expert_indices, perm = torch.sort(expert_indices, dim=-1)\n"
                "    weights = F.softmax(top_logits, dim=-1).gather(-1, perm)",
            ),
        ),
        "sorted by expert number",
    ),
    # load_balancing_loss
    Mutant(
        "lb_f_divided_by_T_times_k",
        "load_balancing_loss",
        ((COUNTS, COUNTS.replace("max(T, 1)", "max(T * expert_indices.shape[1], 1)")),),
        "divided by T·k",
    ),
    Mutant(
        "lb_missing_factor_E",
        "load_balancing_loss",
        (("return num_experts * (f * P).sum()", "return (f * P).sum()"),),
        "without the factor E",
    ),
    Mutant(
        "lb_counts_first_choice_only",
        "load_balancing_loss",
        (
            (
                "assignments = expert_indices.reshape(-1).long()",
                "assignments = expert_indices[:, 0].long()",
            ),
        ),
        "only each token's first choice",
    ),
    Mutant(
        "lb_softmax_over_tokens",
        "load_balancing_loss",
        ((PROBS, "probs = F.softmax(router_logits, dim=0)"),),
        "softmax over the tokens",
    ),
    Mutant(
        "lb_probabilities_detached",
        "load_balancing_loss",
        ((PROBS, "probs = F.softmax(router_logits.detach(), dim=-1)"),),
        "no gradient reaches the router logits",
    ),
    # expert_capacity
    Mutant(
        "capacity_floor",
        "expert_capacity",
        ((CEIL, CEIL.replace("math.ceil", "math.floor")),),
        "rounding down",
    ),
    Mutant(
        "capacity_int_truncation",
        "expert_capacity",
        ((CEIL, CEIL.replace("math.ceil", "int")),),
        "rounding down",
    ),
    Mutant(
        "capacity_forgets_k",
        "expert_capacity",
        ((CEIL, "return math.ceil(num_tokens * capacity_factor / num_experts)"),),
        "leaving out k",
    ),
    # MoELayer
    Mutant(
        "moe_outputs_not_weighted",
        "MoELayer",
        (("expert_out * w[:, None]", "expert_out"),),
        "plain sum of the chosen experts' outputs",
    ),
    Mutant(
        "moe_switch_style_weights",
        "MoELayer",
        (
            (
                "weights, expert_indices = top_k_routing(router_logits, k)",
                "weights, expert_indices = torch.topk(F.softmax(router_logits, -1), k)",
            ),
        ),
        "softmax over all E experts (Switch",
    ),
    Mutant(
        "moe_routing_weights_detached",
        "MoELayer",
        (("w = weights.reshape(-1)[order]", "w = weights.detach().reshape(-1)[order]"),),
        "does not reach the router",
    ),
    Mutant(
        "moe_capacity_forgets_k",
        "MoELayer",
        (
            (
                "capacity = expert_capacity(T, E, self.capacity_factor, k)",
                "capacity = expert_capacity(T, E, self.capacity_factor)",
            ),
        ),
        "capacity computed without k",
    ),
    Mutant(
        "moe_drops_by_score_priority",
        "MoELayer",
        (
            (
                GROUP,
                "by_score = torch.argsort(-weights.reshape(-1), stable=True)\n"
                "        order = by_score[torch.argsort(flat_expert[by_score], stable=True)]",
            ),
        ),
        "priority by score",
    ),
    Mutant(
        "moe_first_choices_before_second_choices",
        "MoELayer",
        (
            (
                "flat_expert = expert_indices.reshape(-1)",
                "flat_expert = expert_indices.t().reshape(-1)",
            ),
            ("token_of = order // k", "token_of = order % T"),
            ("w = weights.reshape(-1)[order]", "w = weights.t().reshape(-1)[order]"),
        ),
        "GShard's order",
    ),
    Mutant(
        "moe_keeps_the_last_tokens",
        "MoELayer",
        (
            (
                "order = order[rank < capacity]",
                "order = order[rank >= counts[flat_expert[order]] - capacity]",
            ),
        ),
        "LAST assignments",
    ),
    Mutant(
        "moe_no_aux_loss",
        "MoELayer",
        (
            (
                "aux_loss = load_balancing_loss(router_logits, expert_indices, E)",
                "aux_loss = torch.zeros((), device=x.device, dtype=x.dtype)",
            ),
        ),
        "aux_loss is zero",
    ),
    # added with the docstring promises
    Mutant(
        "routing_rejects_k_equal_E",
        "top_k_routing",
        (("not 1 <= k <= E:", "not 1 <= k < E:"),),
        "k = E = 4",
    ),
    Mutant(
        "lb_f_normalised_to_sum_one",
        "load_balancing_loss",
        (
            (
                "f = counts.to(router_logits.dtype) / max(T, 1)",
                "f = counts.to(router_logits.dtype) / max(int(counts.sum()), 1)",
            ),
        ),
        "divided by T·k",
    ),
    Mutant(
        "lb_mean_over_experts",
        "load_balancing_loss",
        (("return num_experts * (f * P).sum()", "return num_experts * (f * P).mean()"),),
        "without the factor E",
    ),
    Mutant(
        "lb_empty_input_nan",
        "load_balancing_loss",
        (("P = probs.sum(dim=0) / max(T, 1)", "P = probs.mean(dim=0)"),),
        "T = 0",
    ),
    Mutant(
        "lb_int32_indices_unsupported",
        "load_balancing_loss",
        (
            (
                "assignments = expert_indices.reshape(-1).long()",
                "assignments = expert_indices.reshape(-1)",
            ),
        ),
        "int32 indices",
    ),
    Mutant(
        "capacity_at_least_one",
        "expert_capacity",
        (
            (
                "return math.ceil(k * num_tokens * capacity_factor / num_experts)",
                "return max(1, math.ceil(k * num_tokens * capacity_factor / num_experts))",
            ),
        ),
        "T = 0 tokens",
    ),
    Mutant(
        "capacity_rejects_one_expert",
        "expert_capacity",
        (
            (
                "    if not capacity_factor > 0:",
                "    if num_experts < 2:\n"
                '        raise ValueError("num_experts must be >= 2")\n'
                "    if not capacity_factor > 0:",
            ),
        ),
        "E=1",
    ),
    Mutant(
        "moe_dense_dispatch",
        "MoELayer",
        (
            (
                "outs = [expert(chunk) for expert, chunk in zip(self.experts, chunks, "
                "strict=True)]",
                "outs = [\n"
                "            expert(tokens)[ids]\n"
                "            for expert, ids in zip(\n"
                "                self.experts, torch.split(token_of, counts.tolist()), "
                "strict=True\n"
                "            )\n"
                "        ]",
            ),
        ),
        "every expert ran on all the tokens",
    ),
)
