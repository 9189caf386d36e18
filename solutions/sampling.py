"""Chapter 07: decoding and sampling, the reference implementation.

A language model gives, at each step, a vector of logits over the vocabulary.
Decoding turns that vector into the next token:

1. ``greedy``: the most probable token (deterministic).
2. ``apply_temperature``: divide the logits by T; T < 1 sharpens, T > 1 flattens.
3. ``top_k_filter``: keep the k largest logits, the rest -inf.
4. ``top_p_filter``: keep the smallest set of most probable tokens whose total
   probability reaches p (nucleus sampling), the rest -inf.
5. ``sample_next_token``: temperature, then top-k, then top-p, then one draw.
6. ``generate``: the autoregressive loop, with an optional end-of-sequence token.
7. ``beam_search``: keep the ``beam_width`` best partial sequences by log-probability.
8. ``best_of_n``: draw n samples, keep the one a scoring function likes best.

A language model here is any callable mapping token ids (B, L) to logits
(B, L, V). Every function keeps the device and dtype of its inputs; randomness
only comes from the ``generator`` argument. Shape checks read shapes only, so
the filters run on ``meta`` tensors; the decoding loops (``generate``,
``beam_search``, ``best_of_n``) stop on data-dependent conditions and need real
tensors.
"""

import torch
import torch.nn.functional as F


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The most probable token: argmax over the vocabulary.

    Args:
        logits: shape (..., V).

    Returns:
        ids: shape (...), int64, the index of the largest logit (the first on ties).
    """
    if logits.dim() < 1:
        raise ValueError(f"logits must have shape (..., V), got shape {tuple(logits.shape)}")
    return logits.argmax(dim=-1)  # (...)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Logits divided by the temperature: softmax(logits / T).

    Args:
        logits: shape (..., V).
        temperature: T > 0. T < 1 sharpens the distribution, T > 1 flattens it.

    Returns:
        shape (..., V), same dtype as logits.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return logits / temperature  # (..., V)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row; every value strictly below the k-th
    largest becomes -inf (so ties with the k-th largest are all kept).

    Args:
        logits: shape (..., V).
        k: number of tokens to keep, k >= 1 (k > V keeps everything).

    Returns:
        shape (..., V), same dtype as logits.
    """
    if logits.dim() < 1:
        raise ValueError(f"logits must have shape (..., V), got shape {tuple(logits.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1) the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))  # (..., V)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most probable tokens whose total
    probability is at least p (always at least the most probable one); the rest -inf.

    Sorted by decreasing probability, token j is kept when the probability of the
    tokens before it is still below p.

    Args:
        logits: shape (..., V).
        p: the probability mass to keep, 0 < p <= 1.

    Returns:
        shape (..., V), same dtype as logits.
    """
    if logits.dim() < 1:
        raise ValueError(f"logits must have shape (..., V), got shape {tuple(logits.shape)}")
    if not 0 < p <= 1:
        raise ValueError(f"p must be in (0, 1], got {p}")
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (..., V)
    probs = sorted_logits.softmax(dim=-1)  # (..., V)
    before = probs.cumsum(dim=-1) - probs  # (..., V) mass of the more probable tokens
    drop = before >= p  # (..., V); the first token has before = 0 < p: always kept
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter(-1, order, sorted_logits)  # (..., V)


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row: temperature, then top-k, then top-p, then a draw.

    The generator is consumed by exactly one call
    ``torch.multinomial(probs, 1, generator=generator)`` on the filtered
    probabilities ``probs`` of shape (B, V). With temperature 0 the answer is
    ``greedy(logits)`` and the generator is not used.

    Args:
        logits: shape (B, V), the next-token logits.
        temperature: T >= 0; 0 means greedy.
        top_k: keep the k most probable tokens (None: no top-k filter).
        top_p: keep the nucleus of mass p (None: no top-p filter).
        generator: the source of randomness.

    Returns:
        ids: shape (B,), int64.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, V), got shape {tuple(logits.shape)}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
    if temperature == 0:
        return greedy(logits)  # (B,)
    logits = apply_temperature(logits, temperature)  # (B, V)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = F.softmax(logits, dim=-1)  # (B, V), zero where filtered
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)


def generate(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Autoregressive decoding: append one sampled token per step.

    Each step runs the model on the whole sequence so far, takes the logits of
    the last position and calls ``sample_next_token`` once on the (B, V) batch
    (so the generator is consumed by one ``torch.multinomial`` call per step
    when temperature > 0). A row that has emitted ``eos_token_id`` is finished:
    from then on it gets ``eos_token_id`` (padding) whatever was drawn for it.
    Decoding stops after ``max_new_tokens`` steps, or as soon as every row is
    finished.

    Args:
        model: a callable mapping ids (B, L) to logits (B, L, V).
        input_ids: shape (B, L), the prompts (int64).
        max_new_tokens: the most tokens to add, >= 0.
        temperature, top_k, top_p: as in ``sample_next_token`` (0: greedy).
        eos_token_id: the end-of-sequence token, or None to always run
            max_new_tokens steps.
        generator: the source of randomness.

    Returns:
        ids: shape (B, L + new), new <= max_new_tokens; the prompts come first.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (B, L), got shape {tuple(input_ids.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    ids = input_ids
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)  # (B,)
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(ids)[:, -1, :]  # (B, V) the last position's logits
        next_ids = sample_next_token(logits, temperature, top_k, top_p, generator)  # (B,)
        if eos_token_id is not None:
            next_ids = next_ids.masked_fill(finished, eos_token_id)
            finished = finished | (next_ids == eos_token_id)
        ids = torch.cat([ids, next_ids[:, None].to(ids.dtype)], dim=1)  # (B, L + t + 1)
        if eos_token_id is not None and bool(finished.all()):
            break
    return ids


def beam_search(
    model,
    input_ids: torch.Tensor,
    beam_width: int,
    max_new_tokens: int,
    length_penalty: float = 1.0,
    eos_token_id: int | None = None,
) -> torch.Tensor:
    """Beam search: keep the ``beam_width`` best partial sequences by total log-probability.

    At every step each alive beam is extended by every token; candidates are
    ranked by beam score + log p(token) (log_softmax of the last logits). Going
    down that ranking, a candidate ending in ``eos_token_id`` is finished (if
    its rank is below ``beam_width``), the others become the new alive beams
    until there are ``beam_width`` of them. Search stops after
    ``max_new_tokens`` steps or once ``beam_width`` sequences are finished; the
    alive beams then count as finished too. The answer is the finished sequence
    with the largest score / (number of generated tokens) ** length_penalty
    (an end token counts as generated).

    Args:
        model: a callable mapping ids (B, L) to logits (B, L, V).
        input_ids: shape (1, L), one prompt.
        beam_width: W >= 1 (1 is greedy decoding).
        max_new_tokens: the most tokens to add, >= 1.
        length_penalty: the exponent of the length normalisation (0: raw sums,
            which favour short sequences; larger values favour long ones).
        eos_token_id: the end-of-sequence token, or None.

    Returns:
        ids: shape (1, L + new), the prompt followed by the best continuation.
    """
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must have shape (1, L), got shape {tuple(input_ids.shape)}")
    if beam_width < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    beams = input_ids  # (W, L + t), the alive beams
    scores = torch.zeros(1, device=input_ids.device)  # (W,) their total log-probabilities
    finished: list[tuple[float, torch.Tensor]] = []  # (normalised score, ids (L + n,))
    for step in range(1, max_new_tokens + 1):
        with torch.no_grad():
            logits = model(beams)[:, -1, :]  # (W, V)
        logp = F.log_softmax(logits.float(), dim=-1)  # (W, V)
        V = logp.shape[-1]
        cand = (scores[:, None] + logp).flatten()  # (W * V,)
        top = cand.topk(min(2 * beam_width, cand.numel()))  # the best candidates, sorted
        keep_beam, keep_tok, keep_score = [], [], []
        for rank, (score, index) in enumerate(
            zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ):
            beam, token = divmod(index, V)
            if eos_token_id is not None and token == eos_token_id:
                if rank < beam_width:
                    seq = torch.cat([beams[beam], beams.new_tensor([token])])  # (L + step,)
                    finished.append((score / step**length_penalty, seq))
            else:
                keep_beam.append(beam)
                keep_tok.append(token)
                keep_score.append(score)
            if len(keep_beam) == beam_width:
                break
        b = torch.tensor(keep_beam, device=beams.device, dtype=torch.long)  # (W,)
        t = torch.tensor(keep_tok, device=beams.device, dtype=beams.dtype)  # (W,)
        beams = torch.cat([beams[b], t[:, None]], dim=1)  # (W, L + step)
        scores = torch.tensor(keep_score, device=beams.device)  # (W,)
        if len(finished) >= beam_width or len(keep_beam) == 0:
            break
    for score, seq in zip(scores.tolist(), beams, strict=True):
        finished.append((score / step**length_penalty, seq))
    best = max(range(len(finished)), key=lambda i: finished[i][0])  # first of the best on ties
    return finished[best][1][None, :]  # (1, L + new)


def best_of_n(
    model,
    input_ids: torch.Tensor,
    n: int,
    score_fn,
    **sampling,
) -> torch.Tensor:
    """Best-of-N: sample n continuations, return the one ``score_fn`` scores highest.

    The n samples come from ONE call ``generate(model, input_ids.expand(n, -1),
    **sampling)`` (so they consume the generator like a batch of n rows), then
    ONE call ``score_fn(samples)`` scores them all.

    Args:
        model: a callable mapping ids (B, L) to logits (B, L, V).
        input_ids: shape (1, L), one prompt.
        n: the number of samples, >= 1.
        score_fn: maps samples (n, L + new) to scores (n,) (a reward model, a
            verifier, the model's own log-probability...).
        **sampling: the arguments of ``generate`` (max_new_tokens, temperature,
            top_k, top_p, eos_token_id, generator).

    Returns:
        ids: shape (1, L + new), the best sample (the first of the best on ties).
    """
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must have shape (1, L), got shape {tuple(input_ids.shape)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    samples = generate(model, input_ids.expand(n, -1), **sampling)  # (n, L + new)
    scores = score_fn(samples)  # (n,)
    best = scores.argmax()  # ()
    return samples[best][None, :]  # (1, L + new)
