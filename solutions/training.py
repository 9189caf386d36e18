"""Chapter 04: training a language model, the reference implementation.

Everything between a pile of text and a trained model, in the order a
pre-training run meets it:

1. Data: ``normalize_text`` (Unicode NFKC, whitespace collapsed) and
   ``deduplicate`` (exact and near-duplicate documents, by the Jaccard
   similarity of their word shingles).
2. Tokens: ``BPETokenizer``, byte-level byte-pair encoding trained from
   scratch (the tokenizer family of GPT-2 and Llama 3).
3. The objective: ``get_batch`` cuts random windows from the token stream and
   ``cross_entropy`` scores next-token predictions.
4. The optimiser: ``AdamW``, ``lr_schedule`` (linear warmup, cosine decay) and
   ``clip_grad_norm``; ``train_language_model`` puts it all in a loop.
5. Beyond one machine: ``all_reduce_gradients`` (data parallelism by hand) and
   ``ColumnParallelLinear`` / ``RowParallelLinear`` (tensor parallelism, as in
   Megatron-LM), on the default ``torch.distributed`` process group. They run
   on CPU processes with the gloo backend and, unchanged, on GPUs with nccl.

Conventions: tensors stay on the device and in the float dtype of the inputs;
randomness comes only from an optional ``generator``; a wrong argument raises a
``ValueError`` naming it. ``cross_entropy``, ``get_batch``, ``clip_grad_norm``,
``AdamW`` and the parallel layers (as one rank) run on ``meta`` tensors; the
exceptions are the text functions (strings, not tensors), ``lr_schedule``
(Python floats), ``train_language_model`` (it returns the loss values) and
collectives over a real process group (they move values). Each public name only
uses this module's imports and the other public names, so it can be copied on
its own into a notebook.
"""

import heapq
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

# ----------------------------------------------------------------------------- data


def normalize_text(text: str) -> str:
    """Unicode NFKC normalisation, then every run of whitespace becomes one space.

    NFKC maps compatibility characters to their plain form (the ligature "ﬁ" to
    "fi", full-width "Ａ" to "A", a non-breaking space to a space, "²" to "2").
    Whitespace is what ``str.split()`` splits on (spaces, tabs, line breaks and
    the Unicode spaces); the result has no leading or trailing whitespace.

    Args:
        text: any string.

    Returns:
        The normalised string.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text)
    return " ".join(text.split())


def deduplicate(docs: list[str], threshold: float = 0.8, shingle_size: int = 3) -> list[str]:
    """Drop exact and near-duplicate documents, keeping the first occurrence.

    A document's shingles are the set of its runs of ``shingle_size``
    consecutive words (words: ``doc.split()``, compared as they are, so
    normalise first); a document with fewer words than that has one shingle,
    all of its words. Two documents are near-duplicates when the Jaccard
    similarity of their shingle sets, |A ∩ B| / |A ∪ B|, is >= ``threshold``.
    Documents are read in order; each is kept unless it equals, or is a
    near-duplicate of, a document *kept* so far.

    Args:
        docs: the documents, in order.
        threshold: the similarity from which a document counts as a duplicate,
            in (0, 1].
        shingle_size: the number of words in a shingle (>= 1).

    Returns:
        The kept documents, in their original order.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if shingle_size < 1:
        raise ValueError(f"shingle_size must be >= 1, got {shingle_size}")
    kept: list[str] = []
    kept_texts: set[str] = set()
    kept_shingles: list[set[tuple[str, ...]]] = []
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)  # shingle -> kept documents
    for doc in docs:
        if doc in kept_texts:
            continue
        words = doc.split()
        count = max(len(words) - shingle_size + 1, 1) if words else 0
        shingles = {tuple(words[i : i + shingle_size]) for i in range(count)}
        shared = Counter(j for s in shingles for j in index.get(s, ()))  # kept doc -> |A ∩ B|
        if any(
            n / (len(shingles) + len(kept_shingles[j]) - n) >= threshold for j, n in shared.items()
        ):
            continue
        for s in shingles:
            index[s].append(len(kept))
        kept.append(doc)
        kept_texts.add(doc)
        kept_shingles.append(shingles)
    return kept


# ------------------------------------------------------------------------ tokenizer


class BPETokenizer:
    """Byte-level byte-pair encoding (BPE), trained from scratch.

    Ids 0..255 are the 256 byte values, so every string can be encoded (as its
    UTF-8 bytes) and nothing is ever unknown. Training learns merges: merge i
    joins an adjacent pair of ids (a, b) into the new id 256 + i, whose bytes
    are those of a followed by those of b.

    Optionally a regular expression ``pattern`` first splits the text into
    chunks (words, numbers, punctuation, spaces, as GPT-2 does) and merges never
    cross a chunk boundary; with ``pattern=None`` the whole text is one chunk.

    Attributes:
        merges: dict {(a, b): new_id}, in the order the merges were learned
            (new ids 256, 257, ...).
        vocab: dict {id: bytes}, the bytes of every id.
        pattern: the chunking regular expression, or None.

    Args:
        merges: the learned pairs in order; pair i becomes id 256 + i.
        pattern: the chunking regular expression, or None.
    """

    def __init__(
        self, merges: list[tuple[int, int]] | None = None, pattern: str | None = None
    ) -> None:
        self.pattern = pattern
        self.merges: dict[tuple[int, int], int] = {}
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}
        for a, b in merges or []:
            if a not in self.vocab or b not in self.vocab:
                raise ValueError(
                    f"merges: the pair ({a}, {b}) uses an id that does not exist yet "
                    f"(ids so far: 0..{len(self.vocab) - 1})"
                )
            new_id = len(self.vocab)
            self.merges[(a, b)] = new_id
            self.vocab[new_id] = self.vocab[a] + self.vocab[b]

    @staticmethod
    def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
        """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, left to right.

        Occurrences do not overlap: with pair (a, a), [a, a, a] becomes [new_id, a].

        Args:
            ids: a list of token ids.
            pair: the two adjacent ids to join.
            new_id: the id that replaces them.

        Returns:
            A new list of ids.
        """
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        return out

    @classmethod
    def train(cls, text: str, vocab_size: int, pattern: str | None = None) -> "BPETokenizer":
        """Learn ``vocab_size - 256`` merges from ``text``.

        Each merge takes the most frequent adjacent pair of ids in the current
        token sequence of every chunk (pairs are counted at every position, so
        [a, a, a] holds (a, a) twice), ties broken by the smallest pair
        (smallest first id, then smallest second id); it gets the next id and
        all its occurrences are replaced, left to right (``merge_pair``).
        Training stops early when no adjacent pair is left.

        Chunks with the same text are counted once with their frequency, and
        only the chunks holding the merged pair are updated, so training on
        megabytes of text split by a ``pattern`` takes seconds.

        Args:
            text: the training text.
            vocab_size: the size of the vocabulary to reach (>= 256).
            pattern: a regular expression whose ``re.findall`` matches split
                the text into chunks and together cover every character, or
                None to treat the whole text as one chunk.

        Returns:
            The trained tokenizer.
        """
        if vocab_size < 256:
            raise ValueError(f"vocab_size must be >= 256 (the byte ids), got {vocab_size}")
        chunks = Counter(re.findall(pattern, text) if pattern is not None else [text])
        words = [list(chunk.encode("utf-8")) for chunk in chunks]  # each chunk's ids
        freqs = list(chunks.values())
        counts: Counter[tuple[int, int]] = Counter()  # pair -> occurrences in the corpus
        where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> chunks holding it
        for w, (ids, f) in enumerate(zip(words, freqs, strict=True)):
            for pair in zip(ids[:-1], ids[1:], strict=True):
                counts[pair] += f
                where[pair].add(w)
        heap = [(-n, a, b) for (a, b), n in counts.items()]  # most frequent, then smallest
        heapq.heapify(heap)
        merges: list[tuple[int, int]] = []
        while 256 + len(merges) < vocab_size:
            while heap and counts.get((heap[0][1], heap[0][2]), 0) != -heap[0][0]:
                heapq.heappop(heap)  # an outdated count
            if not heap:
                break
            _, a, b = heapq.heappop(heap)
            new_id = 256 + len(merges)
            merges.append((a, b))
            changed = set()
            for w in where.pop((a, b)):
                ids, f = words[w], freqs[w]
                for pair in zip(ids[:-1], ids[1:], strict=True):
                    counts[pair] -= f
                    changed.add(pair)
                ids = cls.merge_pair(ids, (a, b), new_id)
                for pair in zip(ids[:-1], ids[1:], strict=True):
                    counts[pair] += f
                    where[pair].add(w)
                    changed.add(pair)
                words[w] = ids
            for pair in changed:
                if counts[pair] > 0:
                    heapq.heappush(heap, (-counts[pair], pair[0], pair[1]))
                else:
                    del counts[pair]
        return cls(merges, pattern)

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text``.

        Each chunk starts as its UTF-8 bytes; then, while some adjacent pair is
        a learned merge, the pair with the smallest new id (the earliest merge)
        is replaced everywhere (``merge_pair``). That gives the same ids as
        replaying every merge in training order.

        Args:
            text: any string of Unicode characters.

        Returns:
            The ids, a list of ints in [0, len(vocab)).
        """
        chunks = re.findall(self.pattern, text) if self.pattern is not None else [text]
        if self.pattern is not None and "".join(chunks) != text:
            raise ValueError("text: the tokenizer's pattern does not cover every character")
        done: dict[str, list[int]] = {}  # a chunk's ids, for chunks seen before
        out: list[int] = []
        for chunk in chunks:
            if chunk not in done:
                ids = list(chunk.encode("utf-8"))
                while len(ids) >= 2:
                    pair = min(
                        zip(ids[:-1], ids[1:], strict=True),
                        key=lambda p: self.merges.get(p, math.inf),
                    )
                    if pair not in self.merges:
                        break
                    ids = self.merge_pair(ids, pair, self.merges[pair])
                done[chunk] = ids
            out.extend(done[chunk])
        return out

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        """The text of ``ids``: their bytes joined, read as UTF-8.

        Bytes that are not valid UTF-8 (a character cut between two calls, say)
        become U+FFFD, the replacement character. decode(encode(s)) == s.

        Args:
            ids: a list of ids, or a 1-D integer tensor.

        Returns:
            The text.
        """
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"ids must be a 1-D tensor, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        unknown = [i for i in ids if i not in self.vocab]
        if unknown:
            raise ValueError(
                f"ids holds {unknown[0]}, not an id of this vocabulary of {len(self.vocab)}"
            )
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")


# ------------------------------------------------------------------------ objective


def cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100
) -> torch.Tensor:
    """The mean negative log-likelihood of the targets (as ``F.cross_entropy``).

    loss = mean over positions with targets != ignore_index of
    logsumexp(logits) - logits[target], computed with logsumexp so that large
    logits neither overflow nor underflow. NaN when every target is ignored.

    Args:
        logits: shape (..., V), unnormalised scores.
        targets: integer tensor of shape (...), ids in [0, V) or ignore_index.
        ignore_index: the target value of positions that do not count.

    Returns:
        A scalar tensor (shape ()), in the dtype of logits (computed in float32
        for 16-bit inputs).
    """
    if logits.dim() < 1:
        raise ValueError("logits must have at least 1 dimension (..., V), got a scalar")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets must have shape logits.shape[:-1] = {tuple(logits.shape[:-1])}, "
            f"got {tuple(targets.shape)}"
        )
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise ValueError(f"targets must be an integer tensor, got {targets.dtype}")
    work = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    log_probs = work - torch.logsumexp(work, dim=-1, keepdim=True)  # (..., V)
    keep = targets != ignore_index  # (...)
    safe = torch.where(keep, targets, torch.zeros_like(targets))  # (...), ignored -> id 0
    nll = -log_probs.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (...)
    nll = torch.where(keep, nll, torch.zeros_like(nll))  # (...)
    return (nll.sum() / keep.sum()).to(logits.dtype)  # ()


def get_batch(
    data: torch.Tensor,
    batch_size: int,
    block_size: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of a token stream, and the same windows one token later.

    The offsets are drawn with exactly one call,
    ``torch.randint(N - block_size, (batch_size,), generator=generator,
    device=D)`` where D is the generator's device (data's device when
    generator is None), then moved to data's device. Row b is
    x[b] = data[o_b : o_b + block_size] and y[b] = data[o_b + 1 : o_b + block_size + 1]:
    y[b, t] is the token that follows x[b, t].

    Args:
        data: shape (N,), token ids, N >= block_size + 1.
        batch_size: B, the number of windows.
        block_size: T, the length of each window.
        generator: the source of randomness (the global one when None).

    Returns:
        x: shape (B, T), dtype and device of data.
        y: shape (B, T), x shifted by one position.
    """
    if data.dim() != 1:
        raise ValueError(f"data must have shape (N,), got {tuple(data.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if data.shape[0] < block_size + 1:
        raise ValueError(
            f"data must hold at least block_size + 1 = {block_size + 1} tokens, got {data.shape[0]}"
        )
    draw_on = generator.device if generator is not None else data.device
    offsets = torch.randint(
        data.shape[0] - block_size, (batch_size,), generator=generator, device=draw_on
    ).to(data.device)  # (B,)
    index = offsets[:, None] + torch.arange(block_size, device=data.device)  # (B, T)
    return data[index], data[index + 1]  # (B, T), (B, T)


# ------------------------------------------------------------------------ optimiser


def lr_schedule(
    step: int, max_lr: float, min_lr: float, warmup_steps: int, total_steps: int
) -> float:
    """Linear warmup, then cosine decay: the learning rate of step ``step``.

    - step < warmup_steps: max_lr * step / warmup_steps (0 at step 0);
    - warmup_steps <= step <= total_steps: with p = (step - warmup_steps) /
      (total_steps - warmup_steps), min_lr + (max_lr - min_lr) * (1 + cos(pi p)) / 2,
      from max_lr down to min_lr;
    - step > total_steps (or total_steps == warmup_steps <= step): min_lr.

    Args:
        step: the step, >= 0.
        max_lr: the peak learning rate.
        min_lr: the final learning rate.
        warmup_steps: the length of the warmup, >= 0.
        total_steps: the step where the decay ends, >= warmup_steps.

    Returns:
        The learning rate, a float.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if total_steps < warmup_steps:
        raise ValueError(f"total_steps must be >= warmup_steps = {warmup_steps}, got {total_steps}")
    if step < warmup_steps:
        return max_lr * step / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def clip_grad_norm(
    parameters: torch.Tensor | Iterable[torch.Tensor], max_norm: float
) -> torch.Tensor:
    """Scale all gradients together so their global L2 norm is at most ``max_norm``.

    The same effect as ``torch.nn.utils.clip_grad_norm_``: total = the L2 norm of
    all gradients concatenated; every gradient is multiplied, in place, by
    min(1, max_norm / (total + 1e-6)). Parameters without a gradient are skipped.

    Args:
        parameters: a tensor or an iterable of tensors (``model.parameters()``).
        max_norm: the largest global norm allowed, > 0.

    Returns:
        total: a scalar tensor, the global norm *before* clipping.
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros((), device="cpu")
    norms = torch.stack([torch.linalg.vector_norm(g.detach()) for g in grads])  # (n,)
    total = torch.linalg.vector_norm(norms)  # ()
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)  # ()
    for g in grads:
        g.detach().mul_(scale.to(g.dtype))
    return total


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    For each parameter p with gradient g, at its step t = 1, 2, ...:
        p <- p * (1 - lr * weight_decay)           (decay, not through the gradient)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    m and v start at zero (``self.state[p]["exp_avg"]``, ``["exp_avg_sq"]``,
    ``["step"]``). The hyperparameters are read from each parameter group at
    every step, so a schedule may change ``group["lr"]`` between steps.
    Parameters whose grad is None are left alone.

    Args:
        params: an iterable of parameters, or of dicts (parameter groups).
        lr: the learning rate, >= 0.
        betas: (beta1, beta2), each in [0, 1).
        eps: added to the denominator, >= 0.
        weight_decay: the decoupled weight decay, >= 0.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must both be in [0, 1), got {betas}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update of every parameter that has a gradient.

        Args:
            closure: optional, a function that recomputes and returns the loss.

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2) = group["lr"], group["betas"]
            eps, weight_decay = group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t, m, v, g = state["step"], state["exp_avg"], state["exp_avg_sq"], p.grad
                p.mul_(1.0 - lr * weight_decay)  # decoupled weight decay
                m.mul_(beta1).add_(g, alpha=1.0 - beta1)  # first moment
                v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)  # second moment
                denom = (v.sqrt() / math.sqrt(1.0 - beta2**t)).add_(eps)  # sqrt(v_hat) + eps
                p.addcdiv_(m, denom, value=-lr / (1.0 - beta1**t))  # lr * m_hat / denom
        return loss


# ------------------------------------------------------------------------- the loop


def train_language_model(
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
) -> list[float]:
    """Train a language model on a token stream; a progress bar shows the loss.

    Step t = 0, 1, ..., steps - 1 does, in this order:
        1. lr = lr_schedule(t, max_lr, min_lr, warmup_steps, steps), written
           into every parameter group of the optimizer;
        2. x, y = get_batch(data, batch_size, block_size, generator);
        3. loss = cross_entropy(model(x), y);
        4. optimizer.zero_grad(), then loss.backward();
        5. clip_grad_norm(model.parameters(), grad_clip) unless grad_clip is None;
        6. optimizer.step().

    Args:
        model: any module mapping ids (B, T) to logits (B, T, V), on data's device.
        data: shape (N,), the training tokens.
        steps: the number of optimisation steps (>= 0).
        batch_size: B, windows per step.
        block_size: T, tokens per window.
        max_lr: the peak learning rate.
        min_lr: the final learning rate; max_lr / 10 when None.
        warmup_steps: the steps of linear warmup.
        weight_decay: the decoupled weight decay of the default optimizer.
        grad_clip: the largest global gradient norm, or None for no clipping.
        optimizer: the optimizer to use; when None, this module's ``AdamW`` with
            betas (0.9, 0.95), weight decay on the parameters with 2 or more
            dimensions (matrices, embeddings) and none on biases and norm gains.
        generator: the randomness of ``get_batch``.
        progress: show a tqdm progress bar with the loss.

    Returns:
        The loss of every step (before that step's update), a list of floats.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if grad_clip is not None and grad_clip <= 0:
        raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip}")
    min_lr = max_lr / 10 if min_lr is None else min_lr
    if optimizer is None:
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        optimizer = AdamW([g for g in groups if g["params"]], lr=max_lr, betas=(0.9, 0.95))
    model.train()
    losses = []
    bar = tqdm(range(steps), desc="training", disable=not progress, dynamic_ncols=True)
    for step in bar:
        lr = lr_schedule(step, max_lr, min_lr, warmup_steps, steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(data, batch_size, block_size, generator)  # (B, T), (B, T)
        loss = cross_entropy(model(x), y)  # ()
        optimizer.zero_grad()
        loss.backward()
        if grad_clip is not None:
            clip_grad_norm(model.parameters(), grad_clip)
        optimizer.step()
        losses.append(loss.detach())
        if progress and (step % 10 == 0 or step == steps - 1):
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
    return torch.stack(losses).tolist() if losses else []


# ---------------------------------------------------------------------- distributed


def all_reduce_gradients(model: nn.Module) -> None:
    """Average every gradient of ``model`` over the ranks (data parallelism by hand).

    Each rank has computed gradients on its own share of the batch; after this
    call every rank holds the mean of all ranks' gradients, exactly the
    gradient of the mean loss over the whole batch, so identical replicas stay
    identical after the optimizer step. All gradients travel in one flat buffer
    (one all-reduce instead of one per parameter, as DDP's buckets do).
    Parameters whose grad is None are skipped: every rank must have the same
    set of gradients. Without an initialised process group (one process),
    nothing changes.

    Args:
        model: the replica on this rank, after ``loss.backward()``.

    Returns:
        None; the gradients are changed in place.
    """
    if not dist.is_available() or not dist.is_initialized():
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])  # (total,)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    start = 0
    for g in grads:
        g.copy_(flat[start : start + g.numel()].view_as(g))
        start += g.numel()


class ColumnParallelLinear(nn.Module):
    """y = x W^T + b with W split by rows (output features) over the ranks (Megatron-LM).

    With world size R and k = out_features / R, rank r holds
    ``weight`` = W[r k : (r+1) k] of shape (k, in_features) and ``bias`` =
    b[r k : (r+1) k] of shape (k,), and computes its k outputs from the whole
    input. With ``gather_output`` the slices are gathered (all-gather), so every
    rank returns the full y; otherwise each rank returns its slice (to feed a
    ``RowParallelLinear`` with ``input_is_parallel=True``).

    Backward, assuming every rank computes the same loss from the result: the
    gradient of a rank's slice is its part of the gradient of y (no
    communication), and since each rank's input gradient only accounts for its
    own k outputs, the input gradients are summed over the ranks (all-reduce).
    Without an initialised process group it is one rank: a plain linear layer.

    Attributes (these names are the state_dict keys):
        weight: ``nn.Parameter`` of shape (out_features / R, in_features).
        bias: ``nn.Parameter`` of shape (out_features / R,), or None.

    Args:
        in_features: the input size.
        out_features: the full output size; divisible by the world size.
        bias: whether there is a bias.
        gather_output: return the full output (True) or this rank's slice.
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, gather_output: bool = True
    ) -> None:
        super().__init__()
        ready = dist.is_available() and dist.is_initialized()
        self.world_size = dist.get_world_size() if ready else 1
        self.rank = dist.get_rank() if ready else 0
        if out_features % self.world_size != 0:
            raise ValueError(
                f"out_features must be divisible by the world size {self.world_size}, "
                f"got {out_features}"
            )
        self.in_features, self.out_features = in_features, out_features
        self.gather_output = gather_output
        local, bound = out_features // self.world_size, 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(local, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(local).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x of shape (..., in_features), the same on every rank.

        Returns:
            Shape (..., out_features) with gather_output, else (..., out_features / R).
        """
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"x must have shape (..., in_features={self.in_features}), got {tuple(x.shape)}"
            )
        if self.world_size > 1 and x.requires_grad and torch.is_grad_enabled():

            def sum_over_ranks(grad: torch.Tensor) -> torch.Tensor:
                grad = grad.clone()
                dist.all_reduce(grad)
                return grad

            x = x.view_as(x)
            x.register_hook(sum_over_ranks)  # backward: the input gradient summed over ranks
        y = F.linear(x, self.weight, self.bias)  # (..., k)
        if not self.gather_output or self.world_size == 1:
            return y
        pieces = [torch.empty_like(y) for _ in range(self.world_size)]
        dist.all_gather(pieces, y.detach().contiguous())  # every rank's slice
        pieces[self.rank] = y  # our own slice keeps its gradient path
        return torch.cat(pieces, dim=-1)  # (..., out_features)


class RowParallelLinear(nn.Module):
    """y = x W^T + b with W split by columns (input features) over the ranks (Megatron-LM).

    With world size R and k = in_features / R, rank r holds ``weight`` =
    W[:, r k : (r+1) k] of shape (out_features, k) and the whole ``bias`` b. It
    multiplies its slice x[..., r k : (r+1) k] of the input, the partial
    products are summed over the ranks (all-reduce), then b is added once.
    Every rank returns the full y.

    With ``input_is_parallel`` the input already is this rank's slice (the
    output of a ``ColumnParallelLinear`` with ``gather_output=False``): a
    Megatron MLP then needs one all-reduce forward and one backward. Backward,
    assuming every rank computes the same loss from y: the partial products get
    the gradient of y unchanged (the all-reduce is the identity backward), and
    when the input was the full x, its gradient (nonzero only on the rank's
    slice) is summed over the ranks. Without an initialised process group it is
    one rank: a plain linear layer.

    Attributes (these names are the state_dict keys):
        weight: ``nn.Parameter`` of shape (out_features, in_features / R).
        bias: ``nn.Parameter`` of shape (out_features,), or None.

    Args:
        in_features: the full input size; divisible by the world size.
        out_features: the output size.
        bias: whether there is a bias.
        input_is_parallel: the input is this rank's slice (True) or the full x.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        input_is_parallel: bool = False,
    ) -> None:
        super().__init__()
        ready = dist.is_available() and dist.is_initialized()
        self.world_size = dist.get_world_size() if ready else 1
        self.rank = dist.get_rank() if ready else 0
        if in_features % self.world_size != 0:
            raise ValueError(
                f"in_features must be divisible by the world size {self.world_size}, "
                f"got {in_features}"
            )
        self.in_features, self.out_features = in_features, out_features
        self.input_is_parallel = input_is_parallel
        local, bound = in_features // self.world_size, 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(out_features, local).uniform_(-bound, bound))
        self.bias = (
            nn.Parameter(torch.empty(out_features).uniform_(-bound, bound)) if bias else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x of shape (..., in_features), the same on every rank, or with
        input_is_parallel this rank's slice (..., in_features / R).

        Returns:
            Shape (..., out_features), the same on every rank.
        """
        k = self.in_features // self.world_size
        expected = k if self.input_is_parallel else self.in_features
        if x.dim() < 1 or x.shape[-1] != expected:
            raise ValueError(f"x must have shape (..., {expected}), got {tuple(x.shape)}")
        if not self.input_is_parallel and self.world_size > 1:
            if x.requires_grad and torch.is_grad_enabled():

                def sum_over_ranks(grad: torch.Tensor) -> torch.Tensor:
                    grad = grad.clone()
                    dist.all_reduce(grad)
                    return grad

                x = x.view_as(x)
                x.register_hook(sum_over_ranks)  # backward: each rank fills its own slice
            x = x[..., self.rank * k : (self.rank + 1) * k]  # (..., k)
        partial = F.linear(x, self.weight)  # (..., out_features)
        if self.world_size > 1:
            total = partial.detach().clone()
            dist.all_reduce(total)  # the sum of every rank's partial product
            partial = total + (partial - partial.detach())  # value: total; backward: identity
        return partial if self.bias is None else partial + self.bias  # (..., out_features)
