"""The fast paths beside the readable references, as nanoGPT keeps both.

The chapters build everything from scratch so that every line can be read: chapter
01's attention, chapter 04's ``cross_entropy``, ``clip_grad_norm``, ``AdamW`` and
``train_language_model``, chapter 09's ``KVCache`` and ``speculative_decode``. This
module runs the same algorithms through PyTorch's fused routines, for the places
where speed matters more than reading: training the course models, and the benches.

Training (``train_fast``) is chapter 04's loop step for step: the same learning-rate
schedule, the same batches from the same generator, the same order of operations,
the same optimizer defaults (betas (0.9, 0.95), weight decay on matrices only, the
global gradient norm clipped); only the routines differ:

- the model is ``course.model.CourseGPT`` (``fused_copy`` makes one from chapter 02's
  ``GPT``, same ``state_dict``): ``F.scaled_dot_product_attention(is_causal=True)``,
  ``nn.LayerNorm``, ``F.gelu``;
- ``F.cross_entropy``, ``torch.nn.utils.clip_grad_norm_`` and ``torch.optim.AdamW``
  (multi-tensor ``foreach`` on the CPU, ``fused`` on CUDA: what measured best);
- ``precision="auto"``: the matrix products in bfloat16 (``torch.autocast``) where
  the hardware multiplies bfloat16 natively (CUDA, or a CPU with AVX512-BF16), with
  the weights, the optimizer and the loss in float32; float32 everywhere else. The
  course models pass ``precision="float32"`` (``solutions.course_model.PRECISION``):
  trained in bfloat16 on one machine and float32 on another they would be two
  different models, and the pages state the numbers of one.

``tests/test_fast_path.py`` shows that both paths give the same losses (to 1e-5 in
float32, to 5e-3 in bfloat16) and ``bench.training`` measures them side by side.

Decoding (``DecodeCache``, ``cached_logits``, ``sample_cached``,
``speculative_decode_cached``) keeps a preallocated key/value cache per model, so a
step runs the model on the new tokens only, and speculative decoding rolls the caches
back to the accepted tokens after every verification. With the same generator it
draws exactly what chapter 09's ``speculative_decode`` draws (which recomputes the
whole sequence at every call).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from course.model import CourseGPT
from solutions.sampling import sample_next_token
from solutions.training import get_batch, lr_schedule

__all__ = [
    "DecodeCache",
    "autocast_dtype",
    "cached_logits",
    "fused_copy",
    "sample_cached",
    "speculative_decode_cached",
    "train_fast",
]

PRECISIONS = ("auto", "float32", "bfloat16")


# ------------------------------------------------------------------------ training


def fused_copy(model: nn.Module) -> CourseGPT:
    """A ``CourseGPT`` with the weights of chapter 02's ``GPT`` ``model`` (copied).

    Both have the same ``state_dict`` keys, so the copy's weights can be loaded back
    into a ``GPT`` (``gpt.load_state_dict(fast.state_dict())``).
    """
    blocks = model.blocks
    fast = CourseGPT(
        vocab_size=model.tok_emb.num_embeddings,
        d_model=model.tok_emb.embedding_dim,
        n_layers=len(blocks),
        n_heads=blocks[0].attn.n_heads,
        max_seq_len=model.pos_emb.num_embeddings,
        d_ff=blocks[0].ff.fc1.out_features,
    )
    first = next(model.parameters())
    fast = fast.to(device=first.device, dtype=first.dtype)
    fast.load_state_dict(model.state_dict())
    return fast


def autocast_dtype(device: torch.device | str, precision: str = "auto") -> torch.dtype | None:
    """The dtype of autocast's matrix products for ``precision`` on ``device`` (None: off).

    "auto" is bfloat16 where the hardware multiplies it natively (CUDA with bf16
    support, a CPU with AVX512-BF16) and None elsewhere, where bfloat16 would be
    emulated and slower than float32; "float32" is None; "bfloat16" is bfloat16.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        return torch.bfloat16 if native else None
    return None


def _optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """torch's AdamW with chapter 04's defaults: decay on matrices only, betas (0.9, 0.95)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    on_cuda = bool(params) and params[0].device.type == "cuda"
    kind = {"fused": True} if on_cuda else {"foreach": True}
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=(0.9, 0.95), **kind)


def train_fast(
    model: nn.Module,
    data: torch.Tensor,
    steps: int,
    batch_size: int,
    block_size: int,
    max_lr: float = 1e-3,
    min_lr: float | None = None,
    warmup_steps: int = 0,
    weight_decay: float = 0.1,
    grad_clip: float | None = 1.0,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    precision: str = "auto",
) -> list[float]:
    """Chapter 04's ``train_language_model`` through PyTorch's fused routines.

    The arguments, the steps and the result are those of ``train_language_model``
    (the same schedule, batches and optimizer defaults, in the same order); the
    model should be a ``CourseGPT`` (see ``fused_copy``) for the fused attention.
    ``precision`` chooses the dtype of the matrix products (see ``autocast_dtype``);
    the weights, gradients, optimizer state and loss stay in the model's dtype.

    Returns:
        The loss of every step (before that step's update), a list of floats.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if grad_clip is not None and grad_clip <= 0:
        raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip}")
    min_lr = max_lr / 10 if min_lr is None else min_lr
    if optimizer is None:
        optimizer = _optimizer(model, max_lr, weight_decay)
    device = data.device
    low = autocast_dtype(device, precision)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc="training (fast path)", disable=not progress, dynamic_ncols=True)
    for step in bar:
        lr = lr_schedule(step, max_lr, min_lr, warmup_steps, steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(data, batch_size, block_size, generator)  # (B, T), (B, T)
        with torch.autocast(device.type, dtype=low or torch.bfloat16, enabled=low is not None):
            logits = model(x)  # (B, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())  # () float32 in autocast
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
        optimizer.step()
        losses.append(loss.detach())
        if progress and (step % 10 == 0 or step == steps - 1):
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
    return torch.stack(losses).tolist() if losses else []


# ------------------------------------------------------------------------ decoding


class DecodeCache:
    """Preallocated keys and values of one GPT for one batch of sequences.

    ``keys[i]`` and ``values[i]`` have shape (B, H, max_len, Dh); positions
    0..length - 1 hold the tokens seen so far. Going back to an earlier length
    (``rollback``) costs nothing: the rows after it are simply overwritten later.
    The query/key/value weights of each layer are concatenated once, here, so a
    decoding step runs one matrix product for all three (the model must not change
    while the cache is in use).

    Args:
        model: chapter 02's ``GPT`` or ``CourseGPT`` (the same submodules).
        batch_size: B.
        max_len: the most positions, at most the model's ``max_seq_len``.
    """

    def __init__(self, model: nn.Module, batch_size: int, max_len: int | None = None) -> None:
        positions = model.pos_emb.num_embeddings
        max_len = positions if max_len is None else max_len
        if not 1 <= max_len <= positions:
            raise ValueError(f"max_len must be in 1..{positions}, got {max_len}")
        weight = model.tok_emb.weight
        attn = model.blocks[0].attn
        shape = (batch_size, attn.n_heads, max_len, attn.d_head)
        self.model = model
        self.keys = [weight.new_zeros(shape) for _ in model.blocks]
        self.values = [weight.new_zeros(shape) for _ in model.blocks]
        self.qkv = [
            (
                torch.cat([b.attn.q_proj.weight, b.attn.k_proj.weight, b.attn.v_proj.weight]),
                torch.cat([b.attn.q_proj.bias, b.attn.k_proj.bias, b.attn.v_proj.bias]),
            )
            for b in model.blocks
        ]  # per layer: (3 d_model, d_model), (3 d_model,)
        self.length = 0
        self.max_len = max_len

    def rollback(self, length: int) -> None:
        """Forget every position from ``length`` on (0 <= length <= self.length)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"length must be in 0..{self.length}, got {length}")
        self.length = length


@torch.no_grad()
def cached_logits(cache: DecodeCache, new_ids: torch.Tensor) -> torch.Tensor:
    """The model's logits for ``new_ids`` (B, T_new), after the ``cache.length`` cached tokens.

    Equals ``model(all_ids)[:, cache.length:]`` (before the call); the new tokens'
    keys and values are written into the cache, whose length grows by T_new.
    """
    model = cache.model
    B, T_new = new_ids.shape
    past = cache.length
    if T_new < 1 or past + T_new > cache.max_len:
        raise ValueError(
            f"new_ids: {past} cached + {T_new} new tokens must be in 1..{cache.max_len}"
        )
    device = new_ids.device
    end = past + T_new
    positions = torch.arange(past, end, device=device)  # (T_new,)
    mask = None
    if T_new > 1:  # new token t sees the cache and the new tokens up to itself
        cols = torch.arange(end, device=device)  # (S,)
        mask = cols[None, :] <= positions[:, None]  # (T_new, S)
    x = model.tok_emb(new_ids) + model.pos_emb(positions)  # (B, T_new, d_model)
    for i, block in enumerate(model.blocks):
        attn = block.attn
        H, Dh = attn.n_heads, attn.d_head
        qkv = F.linear(block.ln1(x), *cache.qkv[i])  # (B, T_new, 3 d_model)
        q, k, v = qkv.view(B, T_new, 3, H, Dh).permute(2, 0, 3, 1, 4)  # each (B, H, T_new, Dh)
        cache.keys[i][:, :, past:end] = k
        cache.values[i][:, :, past:end] = v
        keys = cache.keys[i][:, :, :end]  # (B, H, S, Dh)
        values = cache.values[i][:, :, :end]  # (B, H, S, Dh)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (B, H, T_new, Dh)
        x = x + attn.out_proj(y.transpose(1, 2).reshape(B, T_new, H * Dh))  # (B, T_new, d)
        x = x + block.ff(block.ln2(x))  # (B, T_new, d_model)
    cache.length = end
    return model.lm_head(model.ln_f(x))  # (B, T_new, V)


@torch.no_grad()
def sample_cached(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Chapter 07's ``generate`` (no top-k, top-p or end token) with a KV cache.

    The same draws as ``generate`` (one ``sample_next_token`` call per step), so the
    same generator gives the same tokens; each step runs the model on one token.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    ids = input_ids
    if max_new_tokens == 0:
        return ids
    cache = DecodeCache(model, ids.shape[0], ids.shape[1] + max_new_tokens - 1)
    new = ids
    for _ in range(max_new_tokens):
        logits = cached_logits(cache, new)[:, -1, :]  # (B, V)
        new = sample_next_token(logits, temperature, None, None, generator)[:, None]  # (B, 1)
        new = new.to(ids.dtype)
        ids = torch.cat([ids, new], dim=1)  # (B, L + t + 1)
    return ids


@torch.no_grad()
def speculative_decode_cached(
    target: nn.Module,
    draft: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    gamma: int = 4,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, int]]:
    """Chapter 09's ``speculative_decode`` with a KV cache in both models.

    The same rounds, acceptance rule and draws (so the same generator gives the same
    tokens and statistics, "target_forwards" and "draft_forwards" counting calls
    that run only the tokens not yet cached). After each verification both caches
    are rolled back to the tokens kept: the target's to the accepted proposals (its
    last token, drawn from the residual or as the bonus, is fed with the next
    proposals), the draft's to what it has seen of them.

    Args:
        target, draft: chapter 02 GPTs or ``CourseGPT``s with the same vocabulary.
        input_ids: shape (1, L), the prompt; L + max_new_tokens <= both models' positions.
        max_new_tokens, gamma, temperature, generator: as in ``speculative_decode``.

    Returns:
        ids (1, L + max_new_tokens) and the statistics of ``speculative_decode``.
    """
    if input_ids.dim() != 2 or input_ids.shape[0] != 1 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids must have shape (1, L >= 1), got {tuple(input_ids.shape)}")
    if max_new_tokens < 0 or gamma < 1 or temperature < 0:
        raise ValueError(
            f"need max_new_tokens >= 0, gamma >= 1, temperature >= 0, got {max_new_tokens}, "
            f"{gamma}, {temperature}"
        )
    stats = {"proposed": 0, "accepted": 0, "target_forwards": 0, "draft_forwards": 0, "rounds": 0}
    L = input_ids.shape[1]
    if max_new_tokens == 0:
        return input_ids, stats
    total = L + max_new_tokens
    target_cache = DecodeCache(target, 1, total)
    draft_cache = DecodeCache(draft, 1, total)
    device = input_ids.device
    ids = input_ids

    def probs(logits: torch.Tensor) -> torch.Tensor:  # (..., V) -> (..., V)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        if temperature == 0:
            return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
        return F.softmax(logits / temperature, dim=-1)

    while ids.shape[1] < total:
        k = min(gamma, total - ids.shape[1])
        start = ids.shape[1]
        seq, qs = ids, []
        for _ in range(k):
            q = probs(cached_logits(draft_cache, seq[:, draft_cache.length :])[:, -1, :])  # (1, V)
            x = torch.multinomial(q, 1, generator=generator)  # (1, 1)
            qs.append(q)
            seq = torch.cat([seq, x.to(seq.dtype)], dim=1)  # (1, start + i + 1)
        fed = target_cache.length
        p = probs(cached_logits(target_cache, seq[:, fed:])[:, -(k + 1) :, :])  # (1, k + 1, V)
        q = torch.stack(qs, dim=1).to(p.dtype)  # (1, k, V)
        proposed = seq[:, start:]  # (1, k)
        p_x = p[:, :k].gather(-1, proposed[..., None]).squeeze(-1)  # (1, k)
        q_x = q.gather(-1, proposed[..., None]).squeeze(-1)  # (1, k)
        u = torch.rand(k, generator=generator, device=device)  # (k,)
        accept = u < p_x[0] / q_x[0]  # (k,)
        n = int(accept.to(torch.int64).cumprod(dim=0).sum())  # accepted before the first rejection
        if n < k:
            residual = (p[:, n] - q[:, n]).clamp_min(0)  # (1, V)
            mass = residual.sum(dim=-1, keepdim=True)  # (1, 1)
            last = torch.where(mass > 0, residual, p[:, n])  # (1, V)
        else:
            last = p[:, k]  # (1, V) the bonus token
        extra = torch.multinomial(last, 1, generator=generator)  # (1, 1)
        ids = torch.cat([ids, proposed[:, :n], extra.to(ids.dtype)], dim=1)
        target_cache.rollback(start + n)  # the kept proposals; `extra` is fed next round
        draft_cache.rollback(min(draft_cache.length, start + n))
        stats["proposed"] += k
        stats["accepted"] += n
        stats["target_forwards"] += 1
        stats["draft_forwards"] += k
        stats["rounds"] += 1
    return ids[:, :total], stats
