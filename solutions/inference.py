"""Chapter 09: inference acceleration, the reference implementation.

Serving a language model is dominated by memory traffic and repeated work. This
chapter removes some of both:

1. ``quantize_int8`` / ``dequantize_int8``: symmetric absmax int8 weights, one
   scale per output row (per channel) or one for the whole tensor.
   ``quantize_zeropoint`` / ``dequantize_zeropoint``: the asymmetric (affine)
   scheme with a zero point. ``Int8Linear``: a linear layer that stores int8
   weights and rescales its output.
2. ``distillation_loss``: train a small student on a big teacher's softened
   distribution (Hinton et al., 2015).
3. ``flash_attention``: exact attention computed block by block with the online
   softmax, so no (Lq, Lk) matrix is ever held (Dao et al., 2022).
4. ``KVCache``, ``forward_with_cache``, ``generate_with_kv_cache``: keep the keys
   and values of past tokens, so each decoding step processes one new token.
   ``PrefixCache`` reuses the cached keys and values of a prompt prefix shared by
   several requests. ``generate_batch`` decodes prompts of different lengths
   together (left padding, an attention mask over keys, per-row positions).
5. ``speculative_decode``: a small draft model proposes gamma tokens, the target
   checks them in one forward pass; rejection sampling keeps the output
   distribution exactly the target's (Leviathan et al., 2023; Chen et al., 2023).

The KV-cache functions run the course's GPT (chapter 02's ``GPT`` or
``course.model.CourseGPT``: ``tok_emb``, ``pos_emb``, ``blocks`` of ``ln1``,
``attn`` (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``, ``n_heads``), ``ln2``,
``ff``, then ``ln_f`` and ``lm_head``) with its own weights. ``speculative_decode``
takes any callables mapping ids (B, L) to logits (B, L, V).

Everything follows the device and dtype of its inputs; randomness only comes from
``generator``. The quantizers, ``distillation_loss``, ``flash_attention``,
``KVCache`` and ``forward_with_cache`` run on ``meta`` tensors; the decoding loops
(``generate_with_kv_cache``, ``generate_batch``, ``PrefixCache``,
``speculative_decode``) pick tokens from data and need real tensors.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def quantize_int8(w: torch.Tensor, per_channel: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric absmax quantization to int8: w ≈ q * scale.

    scale = max |w| / 127 over each row (the last dimension: one scale per output
    channel of a linear layer's (out, in) weight) when ``per_channel``, else over
    the whole tensor; q = round(w / scale) (half to even) clamped to [-127, 127].
    A row (or tensor) of zeros gets scale = the dtype's smallest normal number, so
    q = 0 there and nothing divides by zero.

    Args:
        w: float tensor of shape (..., in), usually (out, in).
        per_channel: one scale per row (True) or one scale for all of w (False).

    Returns:
        q: int8, shape (..., in).
        scale: w's dtype, shape (..., 1) when per_channel, else shape () (a scalar).
    """
    if w.dim() < 1 or not w.is_floating_point():
        raise ValueError(f"w must be a float tensor of shape (..., in), got {tuple(w.shape)}")
    if per_channel:
        absmax = w.abs().amax(dim=-1, keepdim=True)  # (..., 1)
    else:
        absmax = w.abs().amax()  # ()
    scale = (absmax / 127).clamp_min(torch.finfo(w.dtype).tiny)  # (..., 1) or ()
    q = (w / scale).round().clamp(-127, 127).to(torch.int8)  # (..., in)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Back to floats: q * scale, in scale's dtype.

    Args:
        q: int8, shape (..., in).
        scale: float, shape (..., 1) or () (broadcastable to q).

    Returns:
        shape (..., in), scale's dtype.
    """
    if q.dtype != torch.int8:
        raise ValueError(f"q must be int8, got {q.dtype}")
    return q.to(scale.dtype) * scale  # (..., in)


def quantize_zeropoint(
    w: torch.Tensor, bits: int = 8
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric (affine) quantization of the whole tensor: w ≈ (q - zero_point) * scale.

    The range [lo, hi] = [min(w.min(), 0), max(w.max(), 0)] (it always contains 0,
    so 0 is exactly representable) is mapped onto the 2**bits integers
    0..2**bits - 1: scale = (hi - lo) / (2**bits - 1), zero_point =
    round(-lo / scale), q = clamp(round(w / scale) + zero_point, 0, 2**bits - 1);
    rounding is half to even. This is PyTorch's ``MinMaxObserver`` for quint8 at
    bits = 8. A tensor of zeros gets scale = the dtype's smallest normal number.

    Args:
        w: float tensor of any shape.
        bits: 2 <= bits <= 8.

    Returns:
        q: uint8, w's shape, values in [0, 2**bits - 1].
        scale: shape (), w's dtype.
        zero_point: shape (), int64, in [0, 2**bits - 1].
    """
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in 2..8, got {bits}")
    if not w.is_floating_point():
        raise ValueError(f"w must be a float tensor, got {w.dtype}")
    qmax = 2**bits - 1
    lo = w.amin().clamp_max(0)  # ()
    hi = w.amax().clamp_min(0)  # ()
    scale = ((hi - lo) / qmax).clamp_min(torch.finfo(w.dtype).tiny)  # ()
    zero_point = (-lo / scale).round().clamp(0, qmax).to(torch.int64)  # ()
    q = ((w / scale).round() + zero_point).clamp(0, qmax).to(torch.uint8)  # w's shape
    return q, scale, zero_point


def dequantize_zeropoint(
    q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor
) -> torch.Tensor:
    """Back to floats: (q - zero_point) * scale, in scale's dtype.

    Args:
        q: uint8 of any shape; scale: shape (); zero_point: shape (), integer.

    Returns:
        q's shape, scale's dtype.
    """
    return (q.to(torch.int64) - zero_point).to(scale.dtype) * scale  # q's shape


class Int8Linear(nn.Module):
    """A linear layer with int8 weights: y = (x @ q^T) * scale + bias.

    The weight is stored quantized per output channel (``quantize_int8`` with
    per_channel=True): 4x less memory than float32. Since each output feature j
    has its own scale s_j, x @ (q * s)^T = (x @ q^T) * s: the matmul runs on the
    integer values (cast to x's dtype here; int8 kernels do it in integers) and
    the scales are applied once per output.

    Buffers (these names are the state_dict keys):
        weight_int8: int8, shape (out_features, in_features).
        scale: float, shape (out_features, 1) (float32, or the dtype of the layer
            given to ``from_float``).
        bias: float, shape (out_features,), only when ``bias`` is True.

    Args:
        in_features, out_features: as in ``nn.Linear``.
        bias: whether the layer has a bias.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"in_features and out_features must be >= 1, got {in_features}, {out_features}"
            )
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer(
            "weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8)
        )
        self.register_buffer("scale", torch.ones(out_features, 1))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_float(cls, linear: nn.Linear) -> "Int8Linear":
        """The int8 version of ``linear``: its weight quantized per output row, its
        bias kept in float, on linear's device.

        Args:
            linear: an ``nn.Linear`` (weight (out, in), optional bias (out,)).

        Returns:
            an ``Int8Linear`` with the same in/out features.
        """
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        layer = layer.to(linear.weight.device)
        with torch.no_grad():
            w = linear.weight.detach()  # (out, in)
            q, scale = quantize_int8(w, per_channel=True)  # (out, in), (out, 1)
            layer.weight_int8 = q
            layer.scale = scale
            if linear.bias is not None:
                layer.bias = linear.bias.detach().clone()
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x of shape (..., in_features). Returns: shape (..., out_features), x's dtype."""
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"x must have shape (..., in_features={self.in_features}), got {tuple(x.shape)}"
            )
        y = x @ self.weight_int8.to(x.dtype).T  # (..., out) on the integer values
        y = y * self.scale.to(x.dtype).squeeze(-1)  # (..., out) one scale per output
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 2.0,
    labels: torch.Tensor | None = None,
    alpha: float = 0.5,
) -> torch.Tensor:
    """Knowledge distillation: match the teacher's softened distribution.

    loss = alpha * T² * KL(softmax(t / T) ‖ softmax(s / T)) + (1 - alpha) * CE(s, labels)

    The KL is summed over the vocabulary and averaged over every other position;
    the cross-entropy (on the student's raw logits, temperature 1) is averaged.
    The T² keeps the soft term's gradients the same size whatever T (they scale
    as 1/T²). Without labels the loss is the soft term alone, T² * KL (no alpha).

    Args:
        student_logits: shape (..., V).
        teacher_logits: shape (..., V), the same as student_logits (no gradient
            needs to flow into it).
        temperature: T > 0.
        labels: optional int64 of shape (...), the true next tokens.
        alpha: the weight of the soft term, in [0, 1].

    Returns:
        a scalar (shape ()), student_logits' dtype.
    """
    if student_logits.dim() < 1 or student_logits.shape != teacher_logits.shape:
        raise ValueError(
            "student_logits and teacher_logits must have the same shape (..., V), got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if labels is not None and labels.shape != student_logits.shape[:-1]:
        raise ValueError(
            f"labels must have shape {tuple(student_logits.shape[:-1])}, got {tuple(labels.shape)}"
        )
    V = student_logits.shape[-1]
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)  # (..., V)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)  # (..., V)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1)  # (...) KL(teacher ‖ student)
    soft = temperature**2 * kl.mean()  # ()
    if labels is None:
        return soft
    hard = F.cross_entropy(student_logits.reshape(-1, V), labels.reshape(-1))  # ()
    return alpha * soft + (1 - alpha) * hard


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    block_size: int = 128,
) -> torch.Tensor:
    """Exact attention softmax(q k^T / sqrt(d)) v, computed tile by tile.

    The queries are cut into blocks of ``block_size`` rows; for each query block
    the keys and values are read block by block, keeping per query row a running
    max m, a running sum l of exp(score - m) and an accumulator acc of
    exp(score - m) @ v. When a new key block raises the max to m', the old l and
    acc are rescaled by exp(m - m') (the online softmax); at the end out = acc / l.
    At most (block_size, block_size) scores exist at once, never (Lq, Lk).

    With ``causal``, query i sees keys 0..i (the top-left alignment of
    ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``; Lq and
    Lk may differ), and key blocks entirely after a query block are skipped.
    Accumulation is in float32 at least (float64 inputs stay float64).

    Args:
        q: shape (..., Lq, d).
        k: shape (..., Lk, d), the same leading dimensions as q, Lk >= 1.
        v: shape (..., Lk, dv).
        causal: mask keys after each query.
        block_size: rows of a query block and of a key block, >= 1.

    Returns:
        out: shape (..., Lq, dv), q's dtype.
    """
    if q.dim() < 2 or k.dim() != q.dim() or v.dim() != q.dim():
        raise ValueError(
            "q, k, v must have shapes (..., Lq, d), (..., Lk, d), (..., Lk, dv) with the same "
            f"rank >= 2, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape[:-2] != q.shape[:-2] or v.shape[:-2] != q.shape[:-2]:
        raise ValueError(
            f"q, k, v must have the same leading dimensions, got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"k must have d={q.shape[-1]} as its last dimension, got {tuple(k.shape)}")
    if v.shape[-2] != k.shape[-2] or k.shape[-2] < 1:
        raise ValueError(
            f"k and v must have the same Lk >= 1, got {tuple(k.shape)} and {tuple(v.shape)}"
        )
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    Lq, d = q.shape[-2], q.shape[-1]
    Lk, dv = k.shape[-2], v.shape[-1]
    acc_dtype = torch.promote_types(q.dtype, torch.float32)
    scale = 1.0 / math.sqrt(d)
    out = torch.empty(*q.shape[:-1], dv, dtype=q.dtype, device=q.device)  # (..., Lq, dv)
    for i0 in range(0, Lq, block_size):
        i1 = min(i0 + block_size, Lq)
        qb = q[..., i0:i1, :].to(acc_dtype) * scale  # (..., bq, d)
        m = torch.full((*qb.shape[:-1], 1), float("-inf"), dtype=acc_dtype, device=q.device)
        l = torch.zeros((*qb.shape[:-1], 1), dtype=acc_dtype, device=q.device)  # (..., bq, 1)
        acc = torch.zeros((*qb.shape[:-1], dv), dtype=acc_dtype, device=q.device)  # (..., bq, dv)
        k_end = min(Lk, i1) if causal else Lk  # keys after the last query of the block: skipped
        for j0 in range(0, k_end, block_size):
            j1 = min(j0 + block_size, k_end)
            kb = k[..., j0:j1, :].to(acc_dtype)  # (..., bk, d)
            vb = v[..., j0:j1, :].to(acc_dtype)  # (..., bk, dv)
            s = qb @ kb.transpose(-2, -1)  # (..., bq, bk) the only scores alive
            if causal and j1 - 1 > i0:  # some key of this block comes after some query
                rows = torch.arange(i0, i1, device=q.device)[:, None]  # (bq, 1)
                cols = torch.arange(j0, j1, device=q.device)[None, :]  # (1, bk)
                s = s.masked_fill(cols > rows, float("-inf"))  # (..., bq, bk)
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))  # (..., bq, 1)
            p = torch.exp(s - m_new)  # (..., bq, bk)
            rescale = torch.exp(m - m_new)  # (..., bq, 1); 0 on the first block
            l = l * rescale + p.sum(dim=-1, keepdim=True)  # (..., bq, 1)
            acc = acc * rescale + p @ vb  # (..., bq, dv)
            m = m_new
        out[..., i0:i1, :] = (acc / l).to(q.dtype)  # (..., bq, dv)
    return out


class KVCache:
    """The keys and values of every layer for the tokens processed so far.

    Layer i holds ``keys[i]`` and ``values[i]`` of shape (B, H, T, Dh) (None before
    its first update). Appending with ``torch.cat`` keeps it simple; serving
    systems preallocate the maximum length instead (or pages of it).

    Args:
        n_layers: the number of layers (one key and one value tensor each).
    """

    def __init__(self, n_layers: int) -> None:
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers

    @property
    def length(self) -> int:
        """T, the number of positions cached (those of layer 0; 0 when empty)."""
        return 0 if self.keys[0] is None else self.keys[0].shape[-2]

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new positions' keys and values of ``layer``, return all of them.

        Args:
            layer: the layer index, 0 <= layer < n_layers.
            k, v: shape (B, H, T_new, Dh), the new positions.

        Returns:
            keys, values: shape (B, H, T + T_new, Dh), the cached ones first.
        """
        if not 0 <= layer < len(self.keys):
            raise ValueError(f"layer must be in 0..{len(self.keys) - 1}, got {layer}")
        if k.dim() != 4 or v.shape[:-1] != k.shape[:-1]:
            raise ValueError(
                "k and v must have shapes (B, H, T_new, Dh), got "
                f"{tuple(k.shape)}, {tuple(v.shape)}"
            )
        old_k, old_v = self.keys[layer], self.values[layer]
        if old_k is not None:
            if old_k.shape[:2] != k.shape[:2] or old_k.shape[-1] != k.shape[-1]:
                raise ValueError(
                    f"k must have shape {(*old_k.shape[:2], 'T_new', old_k.shape[-1])} like the "
                    f"cache, got {tuple(k.shape)}"
                )
            k = torch.cat([old_k, k], dim=-2)  # (B, H, T + T_new, Dh)
            v = torch.cat([old_v, v], dim=-2)  # (B, H, T + T_new, Dv)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def crop(self, length: int) -> None:
        """Keep only the first ``length`` positions (e.g. drop rejected draft tokens).

        Args:
            length: 0 <= length <= self.length.
        """
        if not 0 <= length <= self.length:
            raise ValueError(f"length must be in 0..{self.length}, got {length}")
        for i in range(len(self.keys)):
            if self.keys[i] is not None:
                self.keys[i] = self.keys[i][..., :length, :]  # (B, H, length, Dh)
                self.values[i] = self.values[i][..., :length, :]  # (B, H, length, Dv)


def forward_with_cache(
    model: nn.Module,
    input_ids: torch.Tensor,
    cache: KVCache,
    positions: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run the course GPT on new tokens only, reading and extending ``cache``.

    With T = cache.length tokens already cached, the new tokens sit at positions
    T..T + T_new - 1: they get those position embeddings, and in each block their
    queries attend to the cached keys and to the new keys up to themselves (new
    token t sees keys 0..T + t). Their keys and values are appended to the cache
    before attending. The result equals ``model(all_ids)[:, T:]``.

    For left-padded batches (``generate_batch``), ``positions`` gives each new
    token's position and ``key_mask`` says which of the T + T_new keys are real
    tokens; a query never sees a masked key other than itself (so a padding query,
    which sees only itself, stays finite).

    Args:
        model: the course GPT (``tok_emb``, ``pos_emb``, ``blocks``, ``ln_f``,
            ``lm_head``), used with its own weights.
        input_ids: shape (B, T_new), the new tokens.
        cache: a ``KVCache`` with one entry per block, holding T positions.
        positions: optional int64 (B, T_new); default T..T + T_new - 1 on every row.
        key_mask: optional bool (B, T + T_new), True for real tokens; default all True.

    Returns:
        logits: shape (B, T_new, vocab_size).
    """
    if input_ids.dim() != 2 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids must have shape (B, T_new >= 1), got {tuple(input_ids.shape)}")
    if len(cache.keys) != len(model.blocks):
        raise ValueError(f"cache must have {len(model.blocks)} layers, got {len(cache.keys)}")
    B, T_new = input_ids.shape
    past = cache.length
    if past + T_new > model.pos_emb.num_embeddings:
        raise ValueError(
            f"input_ids: {past} cached + {T_new} new tokens exceed the model's "
            f"{model.pos_emb.num_embeddings} positions"
        )
    if positions is None:
        positions = torch.arange(past, past + T_new, device=input_ids.device)[None, :]  # (1, T_new)
    elif positions.shape != input_ids.shape:
        raise ValueError(
            f"positions must have shape {tuple(input_ids.shape)}, got {tuple(positions.shape)}"
        )
    if key_mask is not None and key_mask.shape != (B, past + T_new):
        raise ValueError(
            f"key_mask must have shape {(B, past + T_new)}, got {tuple(key_mask.shape)}"
        )
    rows = torch.arange(past, past + T_new, device=input_ids.device)[:, None]  # (T_new, 1)
    cols = torch.arange(past + T_new, device=input_ids.device)[None, :]  # (1, S)
    allowed = (cols <= rows)[None, None]  # (1, 1, T_new, S) causal
    if key_mask is not None:
        allowed = allowed & (key_mask[:, None, None, :] | (cols == rows))  # (B, 1, T_new, S)
    x = model.tok_emb(input_ids) + model.pos_emb(positions)  # (B, T_new, d_model)
    for i, block in enumerate(model.blocks):
        attn = block.attn
        H = attn.n_heads
        h = block.ln1(x)  # (B, T_new, d_model)
        q = attn.q_proj(h).view(B, T_new, H, -1).transpose(1, 2)  # (B, H, T_new, Dh)
        k = attn.k_proj(h).view(B, T_new, H, -1).transpose(1, 2)  # (B, H, T_new, Dh)
        v = attn.v_proj(h).view(B, T_new, H, -1).transpose(1, 2)  # (B, H, T_new, Dh)
        k, v = cache.update(i, k, v)  # (B, H, S, Dh), S = past + T_new
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T_new, S)
        scores = scores.masked_fill(~allowed, float("-inf"))
        y = scores.softmax(dim=-1) @ v  # (B, H, T_new, Dh)
        y = y.transpose(1, 2).reshape(B, T_new, -1)  # (B, T_new, d_model)
        x = x + attn.out_proj(y)  # (B, T_new, d_model)
        x = x + block.ff(block.ln2(x))  # (B, T_new, d_model)
    return model.lm_head(model.ln_f(x))  # (B, T_new, vocab_size)


def generate_with_kv_cache(
    model: nn.Module, input_ids: torch.Tensor, max_new_tokens: int
) -> torch.Tensor:
    """Greedy decoding with a KV cache: the same tokens as recomputing the prefix.

    One ``forward_with_cache`` call on the whole prompt (the prefill), then one per
    new token on that token alone; each step appends the argmax of the last
    position's logits.

    Args:
        model: the course GPT (see ``forward_with_cache``).
        input_ids: shape (B, L), L >= 1, the prompts.
        max_new_tokens: >= 0, with L + max_new_tokens <= the model's positions.

    Returns:
        ids: shape (B, L + max_new_tokens), the prompts first.
    """
    if input_ids.dim() != 2 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids must have shape (B, L >= 1), got {tuple(input_ids.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if input_ids.shape[1] + max_new_tokens > model.pos_emb.num_embeddings:
        raise ValueError(
            f"max_new_tokens: {input_ids.shape[1]} + {max_new_tokens} tokens exceed the model's "
            f"{model.pos_emb.num_embeddings} positions"
        )
    cache = KVCache(len(model.blocks))
    ids = input_ids
    new = input_ids  # (B, T_new) the tokens the model has not seen yet
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = forward_with_cache(model, new, cache)[:, -1, :]  # (B, V)
            new = logits.argmax(dim=-1, keepdim=True).to(ids.dtype)  # (B, 1)
            ids = torch.cat([ids, new], dim=1)  # (B, L + t + 1)
    return ids


class PrefixCache:
    """Reuse the keys and values of prompt prefixes across requests.

    Every prompt ``prefill`` processes is remembered with its KV cache. A new
    prompt that starts like a remembered one (a shared system prompt, a few-shot
    preamble, an earlier turn of the conversation) copies the longest such common
    prefix from that cache, which is valid because the model is causal: keys and
    values at a position depend only on the tokens up to it. Only the rest of the
    prompt is computed (at least its last token, whose logits are needed). Nothing
    is evicted here; a server bounds this memory (dropping the least recently used
    prompts first, or sharing fixed-size blocks of the cache between requests).

    Attributes:
        model: the course GPT.
        entries: list of (ids (L,), KVCache) of the prompts seen, in order.
        stats: dict with "requests" (prefill calls), "computed" (prompt tokens run
            through the model) and "reused" (prompt tokens copied from a cache).

    Args:
        model: the course GPT (see ``forward_with_cache``).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.entries: list[tuple[torch.Tensor, KVCache]] = []
        self.stats = {"requests": 0, "computed": 0, "reused": 0}

    def prefill(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
        """Process one prompt, reusing the longest cached prefix.

        Args:
            input_ids: shape (1, L), L >= 1.

        Returns:
            logits: shape (1, V), the next-token logits after the prompt.
            cache: a fresh ``KVCache`` holding the prompt's L positions (extend it
                with ``forward_with_cache`` to decode; the stored copy is not changed).
        """
        if input_ids.dim() != 2 or input_ids.shape[0] != 1 or input_ids.shape[1] < 1:
            raise ValueError(f"input_ids must have shape (1, L >= 1), got {tuple(input_ids.shape)}")
        ids = input_ids[0]  # (L,)
        L = ids.shape[0]
        best, best_entry = 0, None
        for old_ids, old_cache in self.entries:
            n = min(L - 1, old_ids.shape[0])  # at least the last token is computed
            same = (old_ids[:n] == ids[:n]).to(torch.int64).cumprod(dim=0)  # (n,) 1 while equal
            shared = int(same.sum())
            if shared > best:
                best, best_entry = shared, old_cache
        cache = KVCache(len(self.model.blocks))
        if best_entry is not None:
            for i in range(len(cache.keys)):
                k = best_entry.keys[i][..., :best, :]  # (1, H, best, Dh)
                v = best_entry.values[i][..., :best, :]  # (1, H, best, Dh)
                cache.update(i, k, v)
        with torch.no_grad():
            logits = forward_with_cache(self.model, input_ids[:, best:], cache)  # (1, L - best, V)
        stored = KVCache(len(cache.keys))
        stored.keys, stored.values = list(cache.keys), list(cache.values)  # later updates rebind
        self.entries.append((ids.clone(), stored))
        self.stats["requests"] += 1
        self.stats["computed"] += L - best
        self.stats["reused"] += best
        return logits[:, -1, :], cache

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy decoding after a cached prefill: the same tokens as
        ``generate_with_kv_cache(model, input_ids, max_new_tokens)``.

        Args:
            input_ids: shape (1, L); max_new_tokens >= 0.

        Returns:
            ids: shape (1, L + max_new_tokens).
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        logits, cache = self.prefill(input_ids)  # (1, V)
        ids = input_ids
        with torch.no_grad():
            for step in range(max_new_tokens):
                new = logits.argmax(dim=-1, keepdim=True).to(ids.dtype)  # (1, 1)
                ids = torch.cat([ids, new], dim=1)  # (1, L + step + 1)
                if step + 1 < max_new_tokens:
                    logits = forward_with_cache(self.model, new, cache)[:, -1, :]  # (1, V)
        return ids


def generate_batch(
    model: nn.Module, prompts: list[torch.Tensor], max_new_tokens: int, pad_id: int = 0
) -> list[torch.Tensor]:
    """Greedy decoding of prompts of different lengths in one batch.

    The prompts are left-padded with ``pad_id`` to the longest length Lmax, so the
    next token of every row is in the last column. Each row's positions start at 0
    on its first real token, and a key mask hides the padding from every real
    query. Row b then gets exactly the tokens ``generate_with_kv_cache(model,
    prompts[b][None], max_new_tokens)`` gives it (up to float rounding in the
    batched matmuls). Decoding uses one ``KVCache`` for the batch.

    Args:
        model: the course GPT (see ``forward_with_cache``).
        prompts: B >= 1 int64 tensors of shapes (L_b,), L_b >= 1.
        max_new_tokens: >= 0, with Lmax + max_new_tokens <= the model's positions.
        pad_id: the token put in the padding (any id: it is masked).

    Returns:
        B tensors of shapes (L_b + max_new_tokens,): each prompt, then its tokens.
    """
    if len(prompts) < 1 or any(p.dim() != 1 or p.shape[0] < 1 for p in prompts):
        raise ValueError("prompts must be a non-empty list of 1-D tensors of length >= 1")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    device = prompts[0].device
    lengths = torch.tensor([p.shape[0] for p in prompts], device=device)  # (B,)
    Lmax = max(p.shape[0] for p in prompts)
    if Lmax + max_new_tokens > model.pos_emb.num_embeddings:
        raise ValueError(
            f"max_new_tokens: {Lmax} + {max_new_tokens} tokens exceed the model's "
            f"{model.pos_emb.num_embeddings} positions"
        )
    B = len(prompts)
    ids = torch.full((B, Lmax), pad_id, dtype=prompts[0].dtype, device=device)  # (B, Lmax)
    for b, p in enumerate(prompts):
        ids[b, Lmax - p.shape[0] :] = p
    pad = (Lmax - lengths)[:, None]  # (B, 1) padding tokens per row
    cols = torch.arange(Lmax, device=device)[None, :]  # (1, Lmax)
    key_mask = cols >= pad  # (B, Lmax) True on real tokens
    positions = (cols - pad).clamp_min(0)  # (B, Lmax)
    cache = KVCache(len(model.blocks))
    new, out = ids, []
    with torch.no_grad():
        for step in range(max_new_tokens):
            logits = forward_with_cache(model, new, cache, positions, key_mask)[:, -1, :]  # (B, V)
            new = logits.argmax(dim=-1, keepdim=True).to(ids.dtype)  # (B, 1)
            out.append(new)
            positions = (lengths + step)[:, None]  # (B, 1) the new token's position
            key_mask = torch.cat([key_mask, key_mask.new_ones(B, 1)], dim=1)  # (B, S + 1)
    gen = torch.cat(out, dim=1) if out else ids[:, :0]  # (B, max_new_tokens)
    return [torch.cat([p, gen[b]]) for b, p in enumerate(prompts)]


def speculative_decode(
    target,
    draft,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    gamma: int = 4,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, int]]:
    """Speculative sampling: the draft proposes, the target verifies in one pass.

    Each round the draft samples k = min(gamma, tokens still needed) tokens
    x_1..x_k one by one from its distributions q_i. The target runs once on the
    sequence with all k appended, giving its distributions p_1..p_{k+1}. Going in
    order, x_i is accepted with probability min(1, p_i(x_i) / q_i(x_i)) (one
    uniform draw u_i each: accept when u_i < p_i(x_i) / q_i(x_i)). At the first
    rejection a token is drawn from the residual norm(max(0, p_i - q_i)) and the
    round ends; if all k are accepted a bonus token is drawn from p_{k+1}. Every
    token produced this way has exactly the target's distribution. The answer is
    cut to max_new_tokens new tokens.

    Distributions are softmax(logits / temperature); at temperature 0 they are
    one-hot on the argmax, so the answer is exactly the target's greedy decoding.
    Per round the generator is consumed by the k draft draws (``torch.multinomial``
    on (1, V)), one ``torch.rand(k)`` and one draw from the residual or p_{k+1}.
    Models are recomputed on the whole sequence (no KV cache), so a target
    forward pass costs the same whether it checks 1 or gamma tokens.

    Args:
        target, draft: callables mapping ids (1, L) to logits (1, L, V) (same V).
        input_ids: shape (1, L), the prompt.
        max_new_tokens: >= 0.
        gamma: tokens proposed per round, >= 1.
        temperature: >= 0 (0: greedy).
        generator: the source of randomness.

    Returns:
        ids: shape (1, L + max_new_tokens).
        stats: {"proposed": draft tokens proposed, "accepted": of those accepted,
            "target_forwards": target calls, "draft_forwards": draft calls,
            "rounds": rounds}. The acceptance rate is accepted / proposed.
    """
    if input_ids.dim() != 2 or input_ids.shape[0] != 1 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids must have shape (1, L >= 1), got {tuple(input_ids.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if gamma < 1:
        raise ValueError(f"gamma must be >= 1, got {gamma}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    stats = {"proposed": 0, "accepted": 0, "target_forwards": 0, "draft_forwards": 0, "rounds": 0}
    device = input_ids.device
    L = input_ids.shape[1]
    ids = input_ids

    def probs(logits: torch.Tensor) -> torch.Tensor:  # (..., V) -> (..., V)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        if temperature == 0:
            return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
        return F.softmax(logits / temperature, dim=-1)

    with torch.no_grad():
        while ids.shape[1] - L < max_new_tokens:
            k = min(gamma, max_new_tokens - (ids.shape[1] - L))
            seq, qs = ids, []
            for _ in range(k):
                q = probs(draft(seq)[:, -1, :])  # (1, V)
                x = torch.multinomial(q, 1, generator=generator)  # (1, 1)
                qs.append(q)
                seq = torch.cat([seq, x.to(seq.dtype)], dim=1)  # (1, L' + i + 1)
            p = probs(target(seq)[:, -(k + 1) :, :])  # (1, k + 1, V)
            q = torch.stack(qs, dim=1).to(p.dtype)  # (1, k, V)
            proposed = seq[:, ids.shape[1] :]  # (1, k)
            p_x = p[:, :k].gather(-1, proposed[..., None]).squeeze(-1)  # (1, k)
            q_x = q.gather(-1, proposed[..., None]).squeeze(-1)  # (1, k)
            u = torch.rand(k, generator=generator, device=device)  # (k,)
            accept = u < p_x[0] / q_x[0]  # (k,) probability min(1, p/q)
            n = int(
                accept.to(torch.int64).cumprod(dim=0).sum()
            )  # accepted before the first rejection
            if n < k:
                residual = (p[:, n] - q[:, n]).clamp_min(0)  # (1, V)
                total = residual.sum(dim=-1, keepdim=True)  # (1, 1)
                last = torch.where(total > 0, residual, p[:, n])  # (1, V) p = q: never rejected
            else:
                last = p[:, k]  # (1, V) the bonus token
            extra = torch.multinomial(last, 1, generator=generator)  # (1, 1)
            ids = torch.cat([ids, proposed[:, :n], extra.to(ids.dtype)], dim=1)
            stats["proposed"] += k
            stats["accepted"] += n
            stats["target_forwards"] += 1
            stats["draft_forwards"] += k
            stats["rounds"] += 1
    return ids[:, : L + max_new_tokens], stats
