"""Chapter 03: mixture of experts, the reference implementation.

A mixture-of-experts (MoE) layer replaces the one feed-forward network of a
transformer block by ``E`` of them, the *experts*, and a small *router* that
sends each token to only ``k`` of them. The layer holds E times the parameters
of one feed-forward network but spends on each token only the compute of k:
the activation is sparse. This is the layer of GShard, the Switch Transformer
(k = 1) and Mixtral (E = 8, k = 2).

1. ``top_k_routing``: keep the k largest router logits of each token, and turn
   them into weights with a softmax over just those k (Mixtral).
2. ``load_balancing_loss``: the auxiliary loss E * sum_i f_i * P_i of the Switch
   Transformer, which pushes the router to spread the tokens evenly.
3. ``expert_capacity``: how many (token, slot) assignments an expert accepts
   when every expert has a fixed-size buffer, ceil(k * T * capacity_factor / E).
4. ``MoELayer``: route, gather each expert's tokens, run each expert only on
   its own tokens, and scatter the weighted results back; with a capacity, the
   assignments beyond an expert's capacity are dropped in token order.

Conventions: tensors stay on the device and in the float dtype of the inputs;
bad arguments raise ``ValueError`` naming the argument, checked from shapes
only. ``top_k_routing``, ``load_balancing_loss`` and ``expert_capacity`` run on
``meta`` tensors. The one exception is ``MoELayer.forward``: sparse dispatch
gives each expert as many rows as tokens were routed to it, a number that
depends on the values of the router logits, so it cannot run on ``meta``
tensors (and on a GPU it reads the per-expert counts back once per call).
Each public name only uses ``math``, ``torch``, ``nn``, ``F``, chapter 01's
``FeedForward`` and the other public names of this module.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from solutions.attention import FeedForward


def top_k_routing(router_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k routing: each token picks its k highest-scoring experts (Mixtral).

    The k selected logits are turned into weights by a softmax over those k
    only, so each token's weights sum to 1. (Switch and GShard instead take the
    softmax over all E experts and keep the top k probabilities as they are.)

    Args:
        router_logits: shape (T, E), the router's score of each expert for each token.
        k: the number of experts per token, 1 <= k <= E.

    Returns:
        weights: shape (T, k), same dtype as router_logits; each row sums to 1.
        expert_indices: shape (T, k), int64; the chosen experts of each token,
            highest logit first (the order of ``torch.topk``). Ties are broken
            as ``torch.topk`` breaks them, which PyTorch does not specify.
    """
    if router_logits.dim() != 2:
        raise ValueError(f"router_logits must have shape (T, E), got {tuple(router_logits.shape)}")
    E = router_logits.shape[-1]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= E:
        raise ValueError(f"k must be an int with 1 <= k <= E = {E}, got {k!r}")
    top_logits, expert_indices = torch.topk(router_logits, k, dim=-1)  # (T, k), (T, k)
    weights = F.softmax(top_logits, dim=-1)  # (T, k): softmax over the k selected
    return weights, expert_indices


def load_balancing_loss(
    router_logits: torch.Tensor, expert_indices: torch.Tensor, num_experts: int
) -> torch.Tensor:
    """The auxiliary load-balancing loss of the Switch Transformer: E * sum_i f_i * P_i.

    f_i = (number of (token, slot) assignments to expert i) / T, the load of
    expert i (sum_i f_i = k); P_i = the mean over the T tokens of
    softmax(router_logits)[:, i], the router's average probability of expert i.
    f_i carries no gradient (it counts); the gradient flows through P_i.
    Perfectly uniform routing gives k (1 for k = 1); the loss rises towards E as
    the routing collapses onto few experts. Empty input (T = 0) gives 0.

    Args:
        router_logits: shape (T, E), the router's logits.
        expert_indices: shape (T, k), integer; the experts each token was sent to.
        num_experts: E.

    Returns:
        A scalar tensor (shape ()), same dtype as router_logits.
    """
    if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
        raise ValueError(f"num_experts must be an int >= 1, got {num_experts!r}")
    if router_logits.dim() != 2 or router_logits.shape[-1] != num_experts:
        raise ValueError(
            f"router_logits must have shape (T, E = num_experts = {num_experts}), "
            f"got {tuple(router_logits.shape)}"
        )
    T = router_logits.shape[0]
    if expert_indices.dim() != 2 or expert_indices.shape[0] != T or expert_indices.shape[1] < 1:
        raise ValueError(
            f"expert_indices must have shape (T = {T}, k) with k >= 1, "
            f"got {tuple(expert_indices.shape)}"
        )
    if expert_indices.is_floating_point() or expert_indices.dtype == torch.bool:
        raise ValueError(f"expert_indices must be an integer tensor, got {expert_indices.dtype}")

    assignments = expert_indices.reshape(-1).long()  # (T*k,)
    counts = torch.zeros(num_experts, dtype=torch.long, device=router_logits.device)  # (E,)
    counts = counts.scatter_add(0, assignments, torch.ones_like(assignments))  # (E,)
    f = counts.to(router_logits.dtype) / max(T, 1)  # (E,) assignments per token
    probs = F.softmax(router_logits, dim=-1)  # (T, E)
    P = probs.sum(dim=0) / max(T, 1)  # (E,) mean router probability
    return num_experts * (f * P).sum()  # ()


def expert_capacity(num_tokens: int, num_experts: int, capacity_factor: float, k: int = 1) -> int:
    """How many (token, slot) assignments each expert accepts: ceil(k * T * factor / E).

    With T tokens and k slots each there are k * T assignments; spread evenly,
    each of the E experts gets k * T / E. The capacity factor leaves head room
    for uneven routing (1.25 is a common choice); assignments beyond an expert's
    capacity are dropped. Computed as
    ``math.ceil(k * num_tokens * capacity_factor / num_experts)``.

    Args:
        num_tokens: T >= 0.
        num_experts: E >= 1.
        capacity_factor: > 0.
        k: experts per token, >= 1.

    Returns:
        The capacity, a Python int.
    """
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 0:
        raise ValueError(f"num_tokens must be an int >= 0, got {num_tokens!r}")
    if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
        raise ValueError(f"num_experts must be an int >= 1, got {num_experts!r}")
    if not capacity_factor > 0:
        raise ValueError(f"capacity_factor must be > 0, got {capacity_factor!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    return math.ceil(k * num_tokens * capacity_factor / num_experts)


class MoELayer(nn.Module):
    """A sparse mixture-of-experts feed-forward layer with top-k routing.

    Attributes (these names are the state_dict keys):
        router: ``nn.Linear(d_model, num_experts, bias=False)``, the gate.
        experts: ``nn.ModuleList`` of num_experts ``FeedForward(d_model, d_ff)``
            (chapter 01's MLP, GELU), so the keys are ``experts.0.fc1.weight``...
        num_experts, k, capacity_factor: as given.

    Args:
        d_model: model width.
        d_ff: hidden width of each expert.
        num_experts: E >= 1.
        k: experts per token, 1 <= k <= E.
        capacity_factor: None (no token is ever dropped) or > 0: each expert
            then accepts at most ``expert_capacity(T, E, capacity_factor, k)``
            assignments per forward call.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        num_experts: int,
        k: int = 2,
        capacity_factor: float | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
            raise ValueError(f"num_experts must be an int >= 1, got {num_experts!r}")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_experts:
            raise ValueError(
                f"k must be an int with 1 <= k <= num_experts = {num_experts}, got {k!r}"
            )
        if capacity_factor is not None and not capacity_factor > 0:
            raise ValueError(f"capacity_factor must be None or > 0, got {capacity_factor!r}")
        self.num_experts = num_experts
        self.k = k
        self.capacity_factor = capacity_factor
        self.router = nn.Linear(d_model, num_experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(d_model, d_ff) for _ in range(num_experts))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Route every token to k experts; each expert runs only on its own tokens.

        The leading dimensions of x are flattened into T tokens, which form one
        pool: routing, capacity and the auxiliary loss are over all T together.
        Token t (in row-major order of the leading dimensions) is routed by
        ``top_k_routing(router(x_t), k)`` and its output is
        y_t = sum_j weights[t, j] * experts[expert_indices[t, j]](x_t), which
        is the dense weighted sum when nothing is dropped. With a capacity C,
        each expert keeps the first C assignments in token order (smallest t
        first) and the rest are dropped: they contribute zero, the remaining
        weights are not renormalised (a token whose every slot is dropped gets
        y_t = 0, the residual connection around the layer carries it on).

        Args:
            x: shape (..., d_model).

        Returns:
            y: shape (..., d_model), same dtype as x.
            aux_loss: a scalar tensor, ``load_balancing_loss(router_logits,
                expert_indices, E)`` over all T tokens, computed from the
                routing before any drop. It is not scaled: multiply it by a
                small coefficient (e.g. 0.01) and add it to the training loss.
        """
        d_model = self.router.in_features
        if x.dim() < 1 or x.shape[-1] != d_model:
            raise ValueError(f"x must have shape (..., d_model={d_model}), got {tuple(x.shape)}")
        E, k = self.num_experts, self.k
        tokens = x.reshape(-1, d_model)  # (T, d)
        T = tokens.shape[0]
        router_logits = self.router(tokens)  # (T, E)
        weights, expert_indices = top_k_routing(router_logits, k)  # (T, k), (T, k)
        aux_loss = load_balancing_loss(router_logits, expert_indices, E)  # ()

        # The T*k assignments, a = t*k + j, grouped by expert; a stable sort keeps
        # them in token order inside each group.
        flat_expert = expert_indices.reshape(-1)  # (T*k,)
        order = torch.argsort(flat_expert, stable=True)  # (T*k,)
        counts = torch.zeros(E, dtype=torch.long, device=x.device)  # (E,)
        counts = counts.scatter_add(0, flat_expert, torch.ones_like(flat_expert))  # (E,)
        if self.capacity_factor is not None:
            capacity = expert_capacity(T, E, self.capacity_factor, k)
            start = torch.cumsum(counts, dim=0) - counts  # (E,) where each group starts
            rank = torch.arange(T * k, device=x.device) - start[flat_expert[order]]  # (T*k,)
            order = order[rank < capacity]  # (N,) the kept assignments, still grouped
            counts = counts.clamp(max=capacity)  # (E,)
        token_of = order // k  # (N,) the token of each kept assignment
        gathered = tokens[token_of]  # (N, d)
        chunks = torch.split(gathered, counts.tolist())  # E pieces of (n_e, d)
        outs = [expert(chunk) for expert, chunk in zip(self.experts, chunks, strict=True)]
        expert_out = torch.cat(outs, dim=0)  # (N, d): each expert saw only its tokens
        w = weights.reshape(-1)[order]  # (N,)
        y = torch.zeros_like(tokens).index_add(0, token_of, expert_out * w[:, None])  # (T, d)
        return y.reshape(x.shape), aux_loss
