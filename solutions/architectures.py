"""Chapter 02: architectures, from n-grams to GPT, the reference implementation.

The history of language models told as code, each step fixing a weakness of the
one before:

1. ``NGramLM``: count which word follows which n-1 words, smooth the counts
   (add-k), and score a sentence by the chain rule. No generalisation: a word
   never seen in a context gets only the smoothing mass.
2. Word vectors: ``skipgram_pairs`` and ``skipgram_negative_sampling_loss``
   (word2vec): words that occur in similar contexts get similar vectors.
3. Recurrent networks: ``rnn_cell`` (Elman) and ``gru_cell`` fold a sequence
   into a state one step at a time; the gates of the GRU let gradients survive
   long distances.
4. Transformers: ``mask_tokens_for_mlm`` (BERT's corruption of the input),
   ``EncoderDecoder`` (the original transformer, with cross-attention) and
   ``GPT`` (the decoder-only model that the later chapters train and serve).
5. Scale: ``gpt_param_count``, ``training_flops`` and ``chinchilla_optimal``.

Conventions: tensors stay on the device and in the float dtype of the inputs,
leading batch dimensions are allowed wherever a shape starts with ``...``, and
bad arguments raise ``ValueError`` naming the argument, checked from shapes
only. Everything that takes tensors runs on ``meta`` tensors except
``skipgram_pairs``, whose number of pairs depends on the data. ``NGramLM`` and
the three scale functions work on Python strings and numbers, not tensors.
Each public name only uses ``math``, ``torch``, ``nn``, ``F``, chapter 01's
building blocks imported below and the other public names of this module.
"""

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from solutions.attention import FeedForward, MultiHeadAttention, TransformerBlock, causal_mask


class NGramLM:
    """An n-gram language model with add-k smoothing.

    P(w | c) = (count(c, w) + k) / (count(c) + k * |V|), where c is the n-1 words
    before w, count(c, w) counts the n-gram (c, w) in the training sentences,
    count(c) counts c as the context of an n-gram, and V is the vocabulary: every
    word seen in ``fit`` plus ``</s>`` (``<s>`` is never predicted, so it is not
    in V). Each sentence is padded with n-1 ``<s>`` in front and one ``</s>`` at
    the end, in ``fit`` and in ``sentence_logprob`` alike. With k = 0 (no
    smoothing) a context never seen gives probability 0.

    Words are plain Python strings and counts plain dicts: counting is not a
    tensor operation.

    Attributes (after ``fit``):
        n: the order (1 = unigram, 2 = bigram, ...).
        k: the smoothing constant.
        vocab: set[str], the vocabulary V (seen words and ``</s>``).
        ngram_counts: dict[tuple[str, ...], int], count(c, w) for each n-gram (c, w).
        context_counts: dict[tuple[str, ...], int], count(c) for each context c.

    Args:
        n: the order of the model, >= 1.
        k: the smoothing constant, >= 0.
    """

    def __init__(self, n: int, k: float = 1.0) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        self.n = n
        self.k = float(k)
        self.vocab: set[str] = set()
        self.ngram_counts: dict[tuple[str, ...], int] = {}
        self.context_counts: dict[tuple[str, ...], int] = {}

    def fit(self, sentences: list[list[str]]) -> "NGramLM":
        """Count the n-grams of the padded sentences (forgetting any earlier fit).

        Args:
            sentences: a list of sentences, each a list of words.

        Returns:
            The model itself.
        """
        if isinstance(sentences, str) or any(isinstance(s, str) for s in sentences):
            raise ValueError("sentences must be a list of sentences, each a list of words")
        self.vocab = {"</s>"}
        self.ngram_counts, self.context_counts = {}, {}
        for sentence in sentences:
            self.vocab.update(sentence)
            padded = ["<s>"] * (self.n - 1) + list(sentence) + ["</s>"]
            for i in range(self.n - 1, len(padded)):
                gram = tuple(padded[i - self.n + 1 : i + 1])  # (c_1, ..., c_{n-1}, w)
                self.ngram_counts[gram] = self.ngram_counts.get(gram, 0) + 1
                self.context_counts[gram[:-1]] = self.context_counts.get(gram[:-1], 0) + 1
        return self

    def prob(self, word: str, context: tuple[str, ...]) -> float:
        """P(word | context) with add-k smoothing.

        Args:
            word: the next word (a word outside the vocabulary gets the
                probability of a vocabulary word never seen in this context).
            context: the words before it, at least n-1 of them; only the last
                n-1 are used (none for a unigram model).

        Returns:
            The probability, a float in [0, 1].
        """
        if not self.vocab:
            raise ValueError("the model has no vocabulary yet: call fit(sentences) first")
        context = tuple(context)
        if len(context) < self.n - 1:
            raise ValueError(
                f"context must hold at least n-1 = {self.n - 1} words, got {len(context)}: "
                f"{context!r}"
            )
        c = context[len(context) - (self.n - 1) :]  # the last n-1 words
        numerator = self.ngram_counts.get(c + (word,), 0) + self.k
        denominator = self.context_counts.get(c, 0) + self.k * len(self.vocab)
        return numerator / denominator if denominator > 0 else 0.0

    def sentence_logprob(self, tokens: list[str]) -> float:
        """log P(sentence), natural log, by the chain rule over the padded sentence.

        The sentence is padded with n-1 ``<s>`` in front and one ``</s>`` at the
        end; the sum runs over every word of the sentence and the final ``</s>``.

        Args:
            tokens: the sentence, a list of words.

        Returns:
            The log-probability, a float (-inf if a factor is 0, possible only with k = 0).
        """
        if isinstance(tokens, str):
            raise ValueError("tokens must be a list of words, got a string (split it first)")
        padded = ["<s>"] * (self.n - 1) + list(tokens) + ["</s>"]
        total = 0.0
        for i in range(self.n - 1, len(padded)):
            p = self.prob(padded[i], tuple(padded[i - self.n + 1 : i]))
            total += math.log(p) if p > 0 else -math.inf
        return total


def rnn_cell(
    x: torch.Tensor,
    h: torch.Tensor,
    W: torch.Tensor,
    U: torch.Tensor,
    b: torch.Tensor,
    activation: Callable[[torch.Tensor], torch.Tensor] = torch.tanh,
) -> torch.Tensor:
    """One step of an Elman RNN: h' = activation(x W^T + h U^T + b).

    Args:
        x: the input at this step, shape (..., d_in).
        h: the previous hidden state, shape (..., d_h).
        W: input-to-hidden weights, shape (d_h, d_in).
        U: hidden-to-hidden weights, shape (d_h, d_h).
        b: bias, shape (d_h,).
        activation: an element-wise function (default ``torch.tanh``).

    Returns:
        The new hidden state, shape (..., d_h).
    """
    if x.dim() < 1 or h.dim() < 1:
        raise ValueError(
            f"x and h must have shape (..., d), got {tuple(x.shape)}, {tuple(h.shape)}"
        )
    d_in, d_h = x.shape[-1], h.shape[-1]
    if W.shape != (d_h, d_in):
        raise ValueError(f"W must have shape (d_h, d_in) = ({d_h}, {d_in}), got {tuple(W.shape)}")
    if U.shape != (d_h, d_h):
        raise ValueError(f"U must have shape (d_h, d_h) = ({d_h}, {d_h}), got {tuple(U.shape)}")
    if b.shape != (d_h,):
        raise ValueError(f"b must have shape (d_h,) = ({d_h},), got {tuple(b.shape)}")
    if x.shape[:-1] != h.shape[:-1]:
        raise ValueError(
            f"x and h must have the same leading dimensions, got x {tuple(x.shape)} and "
            f"h {tuple(h.shape)}"
        )
    return activation(x @ W.T + h @ U.T + b)  # (..., d_h)


def gru_cell(
    x: torch.Tensor,
    h: torch.Tensor,
    W_z: torch.Tensor,
    W_r: torch.Tensor,
    W_h: torch.Tensor,
) -> torch.Tensor:
    """One step of a gated recurrent unit (GRU), without biases.

    z = sigmoid([h, x] W_z^T)           (update gate)
    r = sigmoid([h, x] W_r^T)           (reset gate)
    h~ = tanh([r * h, x] W_h^T)         (candidate state)
    h' = (1 - z) * h + z * h~

    [a, b] is the concatenation along the last dimension, h first. (PyTorch's
    ``nn.GRUCell`` writes the same cell with z and 1 - z swapped and applies r
    after the matrix product; this is the form of the contract.)

    Args:
        x: the input, shape (..., d_in).
        h: the previous hidden state, shape (..., d_h).
        W_z, W_r, W_h: weights, each of shape (d_h, d_h + d_in).

    Returns:
        The new hidden state, shape (..., d_h).
    """
    if x.dim() < 1 or h.dim() < 1:
        raise ValueError(
            f"x and h must have shape (..., d), got {tuple(x.shape)}, {tuple(h.shape)}"
        )
    d_in, d_h = x.shape[-1], h.shape[-1]
    for name, w in (("W_z", W_z), ("W_r", W_r), ("W_h", W_h)):
        if w.shape != (d_h, d_h + d_in):
            raise ValueError(
                f"{name} must have shape (d_h, d_h + d_in) = ({d_h}, {d_h + d_in}), "
                f"got {tuple(w.shape)}"
            )
    if x.shape[:-1] != h.shape[:-1]:
        raise ValueError(
            f"x and h must have the same leading dimensions, got x {tuple(x.shape)} and "
            f"h {tuple(h.shape)}"
        )
    hx = torch.cat([h, x], dim=-1)  # (..., d_h + d_in)
    z = torch.sigmoid(hx @ W_z.T)  # (..., d_h)
    r = torch.sigmoid(hx @ W_r.T)  # (..., d_h)
    candidate = torch.tanh(torch.cat([r * h, x], dim=-1) @ W_h.T)  # (..., d_h)
    return (1 - z) * h + z * candidate  # (..., d_h)


def skipgram_pairs(token_ids: list[int] | torch.Tensor, window: int) -> torch.Tensor:
    """The (center, context) pairs of skip-gram: every word with each neighbour.

    For each position i (in order), every position j with 0 < |i - j| <= window
    inside the sequence (in order of j) gives the pair (token_ids[i], token_ids[j]).

    Args:
        token_ids: the token ids of one text, a list of ints or a 1-D integer
            tensor (the result is on its device).
        window: the largest distance between center and context, >= 1.

    Returns:
        A LongTensor of shape (N, 2), rows (center id, context id); N = 0 gives (0, 2).
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    if isinstance(token_ids, torch.Tensor):
        if token_ids.dim() != 1 or token_ids.is_floating_point():
            raise ValueError(
                f"token_ids must be a 1-D integer tensor or a list of ints, got shape "
                f"{tuple(token_ids.shape)} and dtype {token_ids.dtype}"
            )
        ids = token_ids.long()  # (T,)
    else:
        ids = torch.tensor(list(token_ids), dtype=torch.long).reshape(-1)  # (T,)
    T, device = ids.shape[0], ids.device
    positions = torch.arange(T, device=device)  # (T,)
    offsets = torch.arange(-window, window + 1, device=device)  # (2w+1,)
    offsets = offsets[offsets != 0]  # (2w,), increasing: contexts in order of position
    ctx = positions[:, None] + offsets[None, :]  # (T, 2w)
    valid = (ctx >= 0) & (ctx < T)  # (T, 2w)
    centers = positions[:, None].expand(T, offsets.shape[0])  # (T, 2w)
    # Boolean indexing reads row by row: centers in order, then contexts in order.
    return torch.stack([ids[centers[valid]], ids[ctx[valid]]], dim=-1)  # (N, 2)


def skipgram_negative_sampling_loss(
    center_vecs: torch.Tensor,
    context_vecs: torch.Tensor,
    negative_vecs: torch.Tensor,
) -> torch.Tensor:
    """The skip-gram negative-sampling loss of word2vec.

    For a center vector c, its true context vector o and K negative vectors n_k:
    loss = -log sigmoid(c . o) - sum_k log sigmoid(-c . n_k), averaged over the
    batch. Computed with ``F.logsigmoid``, which stays finite for large scores.

    Args:
        center_vecs: shape (..., d), the center words' vectors.
        context_vecs: shape (..., d), the true context words' vectors.
        negative_vecs: shape (..., K, d), the sampled negative words' vectors.

    Returns:
        A scalar tensor: the mean over the batch (every leading position).
    """
    if center_vecs.dim() < 1 or center_vecs.shape != context_vecs.shape:
        raise ValueError(
            f"center_vecs and context_vecs must have the same shape (..., d), got "
            f"{tuple(center_vecs.shape)} and {tuple(context_vecs.shape)}"
        )
    if (
        negative_vecs.dim() != center_vecs.dim() + 1
        or negative_vecs.shape[:-2] != center_vecs.shape[:-1]
        or negative_vecs.shape[-1] != center_vecs.shape[-1]
    ):
        raise ValueError(
            f"negative_vecs must have shape (..., K, d) = {tuple(center_vecs.shape[:-1])} + "
            f"(K, {center_vecs.shape[-1]}), got {tuple(negative_vecs.shape)}"
        )
    positive = (center_vecs * context_vecs).sum(-1)  # (...,)
    negative = (negative_vecs * center_vecs[..., None, :]).sum(-1)  # (..., K)
    loss = -F.logsigmoid(positive) - F.logsigmoid(-negative).sum(-1)  # (...,)
    return loss.mean()  # ()


def mask_tokens_for_mlm(
    input_ids: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    mask_prob: float = 0.15,
    special_token_ids: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masked-language-model corruption, the 80/10/10 rule.

    Each position whose token is not special is selected independently with
    probability ``mask_prob``. A selected position becomes ``mask_token_id``
    with probability 0.8, a token drawn uniformly from [0, vocab_size) with
    probability 0.1, and stays as it is with probability 0.1. The labels hold
    the original token at the selected positions and -100 (the ``ignore_index``
    of ``F.cross_entropy``) everywhere else.

    Randomness, drawn from ``generator`` in this order, each with the shape of
    ``input_ids`` on its device: ``torch.rand`` (position selected when < mask_prob),
    ``torch.rand`` (u < 0.8: mask; 0.8 <= u < 0.9: random token; else keep),
    ``torch.randint(vocab_size)`` (the random tokens). Only the statistics are
    graded, so another order of draws is fine.

    Args:
        input_ids: integer tensor of token ids, shape (...), e.g. (B, L).
        mask_token_id: the id of [MASK], in [0, vocab_size).
        vocab_size: the number of tokens, >= 1.
        mask_prob: the probability of selecting a position, in [0, 1].
        special_token_ids: ids never selected ([CLS], [SEP], padding...).
        generator: the source of randomness (on the device of input_ids).

    Returns:
        inputs: shape (...), same dtype as input_ids: the corrupted ids.
        labels: shape (...), same dtype: the original id where selected, else -100.
    """
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise ValueError(f"input_ids must be an integer tensor, got dtype {input_ids.dtype}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}")
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(
            f"mask_token_id must be in [0, vocab_size={vocab_size}), got {mask_token_id}"
        )
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
    device, shape = input_ids.device, input_ids.shape
    special = torch.tensor(list(special_token_ids), dtype=input_ids.dtype, device=device)  # (S,)
    is_special = (input_ids[..., None] == special).any(dim=-1)  # (...)
    selected = torch.rand(shape, generator=generator, device=device) < mask_prob  # (...)
    selected = selected & ~is_special  # (...)
    u = torch.rand(shape, generator=generator, device=device)  # (...)
    random_ids = torch.randint(
        vocab_size, shape, generator=generator, device=device, dtype=input_ids.dtype
    )  # (...)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))  # (...)
    inputs = torch.where(selected & (u < 0.8), torch.full_like(input_ids, mask_token_id), input_ids)
    inputs = torch.where(selected & (u >= 0.8) & (u < 0.9), random_ids, inputs)  # (...)
    return inputs, labels


class GPT(nn.Module):
    """A decoder-only transformer language model (GPT-2 style).

    logits = lm_head(ln_f(blocks(tok_emb(ids) + pos_emb(positions))))

    Submodules (these names are the state_dict keys):
        tok_emb: ``nn.Embedding(vocab_size, d_model)``, the token embeddings.
        pos_emb: ``nn.Embedding(max_seq_len, d_model)``, learned position embeddings.
        blocks: ``nn.ModuleList`` of n_layers chapter-01 ``TransformerBlock(d_model,
            n_heads, d_ff, causal=True)`` (each with ln1, attn, ln2, ff).
        ln_f: ``nn.LayerNorm(d_model)``, the final norm of a pre-norm stack.
        lm_head: ``nn.Linear(d_model, vocab_size, bias=False)`` whose weight IS
            ``tok_emb.weight`` (tied: one matrix reads and writes tokens).

    Weights start as in GPT-2: normal with std 0.02, biases zero, and the two
    projections that write into the residual stream (``attn.out_proj`` and
    ``ff.fc2``) with std 0.02 / sqrt(2 n_layers).

    Args:
        vocab_size: V, the number of tokens.
        d_model: the model width; divisible by n_heads.
        n_layers: the number of blocks.
        n_heads: attention heads per block.
        max_seq_len: the longest input (the number of learned positions).
        d_ff: the MLP width, 4 * d_model when None.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        max_seq_len: int,
        d_ff: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("d_model", d_model),
            ("n_layers", n_layers),
            ("n_heads", n_heads),
            ("max_seq_len", max_seq_len),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model must be divisible by n_heads, got d_model={d_model}, n_heads={n_heads}"
            )
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.max_seq_len = max_seq_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_seq_len, d_model)
        self.blocks = nn.ModuleList(
            [TransformerBlock(d_model, n_heads, d_ff, causal=True) for _ in range(n_layers)]
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # weight tying
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                residual = name.endswith(("attn.out_proj.weight", "ff.fc2.weight"))
                nn.init.normal_(
                    p, mean=0.0, std=0.02 / math.sqrt(2 * n_layers) if residual else 0.02
                )

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits at every position.

        Args:
            input_ids: integer tensor of shape (B, L), L <= max_seq_len.

        Returns:
            logits: shape (B, L, vocab_size); position t depends on ids 0..t only.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (B, L), got {tuple(input_ids.shape)}")
        L = input_ids.shape[1]
        if L > self.max_seq_len:
            raise ValueError(
                f"input_ids has length L={L}, longer than max_seq_len={self.max_seq_len}"
            )
        positions = torch.arange(L, device=input_ids.device)  # (L,)
        x = self.tok_emb(input_ids) + self.pos_emb(positions)  # (B, L, d_model)
        for block in self.blocks:
            x = block(x)  # (B, L, d_model)
        return self.lm_head(self.ln_f(x))  # (B, L, vocab_size)


class EncoderDecoder(nn.Module):
    """The original transformer: an encoder reads the source, a decoder writes the target.

    The encoder is a stack of bidirectional (non-causal) pre-norm blocks. Each
    decoder layer has three pre-norm sublayers, each added to the residual stream:
    causal self-attention over the target, cross-attention from the target to the
    encoder's output (the *memory*), and the MLP:

        y = y + self_attn(ln1(y), mask=causal)
        y = y + cross_attn(ln2(y), context=memory)
        y = y + ff(ln3(y))

    Source and target share one vocabulary, and as in the 2017 paper one matrix
    serves as both embeddings and the output layer. Positions are learned (the
    paper found them as good as its sinusoids) and shared by both sides.

    Submodules (these names are the state_dict keys):
        tok_emb: ``nn.Embedding(vocab_size, d_model)``.
        pos_emb: ``nn.Embedding(max_seq_len, d_model)``.
        encoder: ``nn.ModuleList`` of ``TransformerBlock(d_model, n_heads, d_ff,
            causal=False)``.
        ln_enc: ``nn.LayerNorm(d_model)``, applied to the encoder's output: memory.
        decoder: ``nn.ModuleList`` of ``nn.ModuleDict`` with keys ``ln1``,
            ``self_attn`` (``MultiHeadAttention``), ``ln2``, ``cross_attn``
            (``MultiHeadAttention``), ``ln3``, ``ff`` (``FeedForward(d_model, d_ff)``).
        ln_dec: ``nn.LayerNorm(d_model)``, before the output layer.
        lm_head: ``nn.Linear(d_model, vocab_size, bias=False)``, weight tied to
            ``tok_emb.weight``.

    Args:
        vocab_size: V, shared by source and target.
        d_model: the model width; divisible by n_heads.
        n_heads: attention heads in every attention.
        n_encoder_layers: encoder blocks, >= 1.
        n_decoder_layers: decoder layers, >= 1.
        max_seq_len: the longest source or target.
        d_ff: the MLP width, 4 * d_model when None.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_heads: int,
        n_encoder_layers: int,
        n_decoder_layers: int,
        max_seq_len: int,
        d_ff: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("d_model", d_model),
            ("n_heads", n_heads),
            ("n_encoder_layers", n_encoder_layers),
            ("n_decoder_layers", n_decoder_layers),
            ("max_seq_len", max_seq_len),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model must be divisible by n_heads, got d_model={d_model}, n_heads={n_heads}"
            )
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.max_seq_len = max_seq_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_seq_len, d_model)
        self.encoder = nn.ModuleList(
            [
                TransformerBlock(d_model, n_heads, d_ff, causal=False)
                for _ in range(n_encoder_layers)
            ]
        )
        self.ln_enc = nn.LayerNorm(d_model)
        self.decoder = nn.ModuleList(
            [
                nn.ModuleDict(
                    {
                        "ln1": nn.LayerNorm(d_model),
                        "self_attn": MultiHeadAttention(d_model, n_heads),
                        "ln2": nn.LayerNorm(d_model),
                        "cross_attn": MultiHeadAttention(d_model, n_heads),
                        "ln3": nn.LayerNorm(d_model),
                        "ff": FeedForward(d_model, d_ff),
                    }
                )
                for _ in range(n_decoder_layers)
            ]
        )
        self.ln_dec = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # one matrix for embeddings and output
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                nn.init.normal_(p, mean=0.0, std=0.02)

    def encode(self, src_ids: torch.Tensor) -> torch.Tensor:
        """Read the source.

        Args:
            src_ids: integer tensor of shape (B, S), S <= max_seq_len.

        Returns:
            memory: shape (B, S, d_model), the normalised output of the encoder.
        """
        if src_ids.dim() != 2 or src_ids.shape[1] > self.max_seq_len:
            raise ValueError(
                f"src_ids must have shape (B, S) with S <= max_seq_len={self.max_seq_len}, "
                f"got {tuple(src_ids.shape)}"
            )
        positions = torch.arange(src_ids.shape[1], device=src_ids.device)  # (S,)
        x = self.tok_emb(src_ids) + self.pos_emb(positions)  # (B, S, d_model)
        for block in self.encoder:
            x = block(x)  # (B, S, d_model), every position sees every position
        return self.ln_enc(x)  # (B, S, d_model)

    def decode(self, tgt_ids: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Predict the next target token at every target position.

        Args:
            tgt_ids: integer tensor of shape (B, L), L <= max_seq_len.
            memory: shape (B, S, d_model), the output of ``encode``.

        Returns:
            logits: shape (B, L, vocab_size); position t sees target ids 0..t
            and the whole source.
        """
        if tgt_ids.dim() != 2 or tgt_ids.shape[1] > self.max_seq_len:
            raise ValueError(
                f"tgt_ids must have shape (B, L) with L <= max_seq_len={self.max_seq_len}, "
                f"got {tuple(tgt_ids.shape)}"
            )
        d_model = self.tok_emb.embedding_dim
        if memory.dim() != 3 or memory.shape[0] != tgt_ids.shape[0] or memory.shape[2] != d_model:
            raise ValueError(
                f"memory must have shape (B={tgt_ids.shape[0]}, S, d_model={d_model}), "
                f"got {tuple(memory.shape)}"
            )
        L = tgt_ids.shape[1]
        positions = torch.arange(L, device=tgt_ids.device)  # (L,)
        mask = causal_mask(L, device=tgt_ids.device)  # (L, L)
        y = self.tok_emb(tgt_ids) + self.pos_emb(positions)  # (B, L, d_model)
        for layer in self.decoder:
            y = y + layer["self_attn"](layer["ln1"](y), mask=mask)  # (B, L, d_model)
            y = y + layer["cross_attn"](layer["ln2"](y), context=memory)  # (B, L, d_model)
            y = y + layer["ff"](layer["ln3"](y))  # (B, L, d_model)
        return self.lm_head(self.ln_dec(y))  # (B, L, vocab_size)

    def forward(self, src_ids: torch.Tensor, tgt_ids: torch.Tensor) -> torch.Tensor:
        """decode(tgt_ids, encode(src_ids)).

        Args:
            src_ids: integer tensor of shape (B, S).
            tgt_ids: integer tensor of shape (B, L) (teacher forcing: the target
                shifted right, starting with a start token).

        Returns:
            logits: shape (B, L, vocab_size).
        """
        if src_ids.dim() != 2 or tgt_ids.dim() != 2 or src_ids.shape[0] != tgt_ids.shape[0]:
            raise ValueError(
                f"src_ids and tgt_ids must have shapes (B, S) and (B, L) with the same B, got "
                f"{tuple(src_ids.shape)} and {tuple(tgt_ids.shape)}"
            )
        return self.decode(tgt_ids, self.encode(src_ids))  # (B, L, vocab_size)


def gpt_param_count(n_layers: int, d_model: int, vocab_size: int = 50257, n_ctx: int = 2048) -> int:
    """The number of parameters of a GPT-2/GPT-3 style model, exactly.

    Token embeddings V d (shared with the output layer, so counted once) and
    learned positions n_ctx d; per block: attention 4 d^2 + 4 d (q, k, v and
    output projections with biases), MLP 8 d^2 + 5 d (d -> 4d -> d with
    biases), two layer norms 4 d; and the final layer norm 2 d:

        V d + n_ctx d + n_layers (12 d^2 + 13 d) + 2 d.

    Equals ``sum(p.numel() for p in GPT(V, d, n_layers, h, n_ctx).parameters())``.

    Args:
        n_layers: the number of blocks, >= 1.
        d_model: the model width d, >= 1.
        vocab_size: V (GPT-2's and GPT-3's byte-level BPE has 50257 tokens).
        n_ctx: the number of learned positions (2048 for GPT-3).

    Returns:
        The parameter count, an int.
    """
    for name, value in (
        ("n_layers", n_layers),
        ("d_model", d_model),
        ("vocab_size", vocab_size),
        ("n_ctx", n_ctx),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    d = d_model
    embeddings = vocab_size * d + n_ctx * d  # tokens (tied with the head) and positions
    attention = 4 * d * d + 4 * d  # q, k, v, out projections with biases
    mlp = d * 4 * d + 4 * d + 4 * d * d + d  # fc1 (d -> 4d) and fc2 (4d -> d) with biases
    norms = 2 * 2 * d  # ln1 and ln2, gain and bias each
    return embeddings + n_layers * (attention + mlp + norms) + 2 * d  # + the final ln_f


def training_flops(n_params: float, n_tokens: float) -> float:
    """The compute of training, C = 6 N D floating-point operations.

    Per token and parameter: 2 for the forward pass (a multiply and an add) and
    4 for the backward pass (gradients with respect to activations and weights).

    Args:
        n_params: N, the number of parameters, > 0.
        n_tokens: D, the number of training tokens, >= 0.

    Returns:
        C in FLOPs, a float.
    """
    if n_params <= 0:
        raise ValueError(f"n_params must be > 0, got {n_params}")
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0, got {n_tokens}")
    return 6.0 * float(n_params) * float(n_tokens)


def chinchilla_optimal(compute_flops: float, tokens_per_param: float = 20.0) -> tuple[float, float]:
    """The compute-optimal model size and data for a budget (Chinchilla's rule of thumb).

    Train on D = tokens_per_param * N tokens; with C = 6 N D this gives
    N = sqrt(C / (6 * tokens_per_param)) and D = tokens_per_param * N.

    Args:
        compute_flops: C, the training budget in FLOPs, > 0.
        tokens_per_param: D / N, about 20 by the Chinchilla paper, > 0.

    Returns:
        n_params: N, a float.
        n_tokens: D, a float.
    """
    if compute_flops <= 0:
        raise ValueError(f"compute_flops must be > 0, got {compute_flops}")
    if tokens_per_param <= 0:
        raise ValueError(f"tokens_per_param must be > 0, got {tokens_per_param}")
    n_params = math.sqrt(compute_flops / (6.0 * tokens_per_param))
    return n_params, tokens_per_param * n_params
