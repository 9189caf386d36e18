"""The chapter 02 reference (solutions/architectures.py) is correct.

Every test names its independent oracle in its docstring: a PyTorch routine where one
exists (nn.RNNCell, nn.GRUCell, nn.TransformerEncoderLayer / nn.TransformerDecoderLayer,
torch.utils.flop_counter), else a slow, obviously-correct Python loop written here, or
a published number (the GPT-3 paper's model table, Chinchilla's 70B / 1.4T).

Device and dtype: the tensor functions and modules run on `meta` tensors and in float64
and bfloat16. The exceptions, and why:
- `NGramLM`, `gpt_param_count`, `training_flops`, `chinchilla_optimal` work on Python
  strings and numbers, not tensors (counting words and arithmetic on counts);
- `skipgram_pairs` returns as many pairs as the data allows, a data-dependent size that
  `meta` tensors cannot have; it is integer-only, so float dtypes do not apply;
- `mask_tokens_for_mlm` takes and returns integer ids: it runs on `meta` and keeps int32
  and int64, and float dtypes do not apply.
"""

import inspect
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import course.blocks as blocks
import solutions.attention as attention
from solutions import architectures
from solutions.architectures import (
    GPT,
    EncoderDecoder,
    NGramLM,
    chinchilla_optimal,
    gpt_param_count,
    gru_cell,
    mask_tokens_for_mlm,
    rnn_cell,
    skipgram_negative_sampling_loss,
    skipgram_pairs,
    training_flops,
)

PUBLIC_NAMES = [
    "NGramLM",
    "rnn_cell",
    "gru_cell",
    "skipgram_pairs",
    "skipgram_negative_sampling_loss",
    "mask_tokens_for_mlm",
    "GPT",
    "EncoderDecoder",
    "gpt_param_count",
    "training_flops",
    "chinchilla_optimal",
]
META = torch.device("meta")


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def seeded_(module: nn.Module, seed: int = 0, scale: float = 0.3) -> nn.Module:
    """Every parameter seeded normal (layer-norm gains around 1); tied ones once."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g) * scale
            is_gain = p.dim() == 1 and name.endswith("weight") and ".ln" in f".{name}"
            p.copy_(1.0 + noise if is_gain else noise)
    return module


# ------------------------------------------------------------------------------ NGramLM

CORPUS = [
    "i want a caramel iced latte",
    "i want an iced latte",
    "she wants a caramel latte",
    "i want a hot chocolate",
    "he wants an iced tea please",
    "i want a caramel iced latte too",
]
SENTENCES = [s.split() for s in CORPUS]


def slow_prob(sentences, n, k, word, context):
    """count(c, w) and count(c) by scanning every padded sentence, then add-k."""
    vocab = {w for s in sentences for w in s} | {"</s>"}
    c = tuple(context)[len(context) - (n - 1) :]
    joint = total = 0
    for s in sentences:
        padded = ["<s>"] * (n - 1) + s + ["</s>"]
        for i in range(n - 1, len(padded)):
            if tuple(padded[i - n + 1 : i]) == c:
                total += 1
                joint += padded[i] == word
    if total + k * len(vocab) == 0:
        return 0.0
    return (joint + k) / (total + k * len(vocab))


@pytest.mark.parametrize("n,k", [(1, 1.0), (2, 1.0), (2, 0.1), (3, 0.5), (4, 2.0)])
def test_ngram_prob_and_logprob_match_slow_counting(n, k):
    """Oracle: slow_prob, which rescans the corpus for every query, and the chain rule
    written out with math.log."""
    lm = NGramLM(n, k).fit(SENTENCES)
    words = sorted({w for s in SENTENCES for w in s}) + ["</s>", "unseen"]
    contexts = [
        ("<s>",) * (n - 1),
        ("i", "want", "a")[-(n - 1) :] if n > 1 else (),
        ("x",) * (n - 1),
    ]
    for context in contexts:
        for word in words:
            assert lm.prob(word, context) == pytest.approx(
                slow_prob(SENTENCES, n, k, word, context)
            )
    for sentence in (
        ["i", "want", "a", "caramel", "iced", "latte"],
        ["i", "want", "a", "caramelised", "latte"],
    ):
        padded = ["<s>"] * (n - 1) + sentence + ["</s>"]
        expected = sum(
            math.log(slow_prob(SENTENCES, n, k, padded[i], padded[i - n + 1 : i]))
            for i in range(n - 1, len(padded))
        )
        assert lm.sentence_logprob(sentence) == pytest.approx(expected)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_ngram_distribution_over_the_vocabulary_sums_to_one(n):
    """Oracle: the definition of a distribution: sum over V (seen words and </s>, not <s>)."""
    lm = NGramLM(n, 0.3).fit(SENTENCES)
    assert lm.vocab == {w for s in SENTENCES for w in s} | {"</s>"}
    for context in [
        ("<s>",) * (n - 1),
        ("a", "caramel")[2 - (n - 1) :] if n > 1 else (),
        ("zz",) * (n - 1),
    ]:
        assert sum(lm.prob(w, context) for w in lm.vocab) == pytest.approx(1.0)


def test_ngram_caramel_iced_latte_beats_caramelised_latte():
    """Oracle: the issue's example: with context, the familiar order wins; the unigram,
    blind to order, prefers the shorter sentence."""
    a, b = "i want a caramel iced latte".split(), "i want a caramelised latte".split()
    for n in (2, 3):
        lm = NGramLM(n, 0.1).fit(SENTENCES)
        assert lm.sentence_logprob(a) > lm.sentence_logprob(b) + 3
    uni = NGramLM(1, 1.0).fit(SENTENCES)
    assert uni.sentence_logprob(b) > uni.sentence_logprob(a)


def test_ngram_without_smoothing_is_the_count_ratio():
    """Oracle: hand counts in CORPUS: every 'i' is followed by 'want', 'a' is followed by
    'caramel' 3 times out of 4; an unseen context or word has probability 0 and
    log-probability -inf."""
    lm = NGramLM(2, 0.0).fit(SENTENCES)
    assert lm.prob("want", ("i",)) == 1.0
    assert lm.prob("caramel", ("a",)) == pytest.approx(3 / 4)  # a caramel x3, a hot x1
    assert lm.prob("latte", ("caramelised",)) == 0.0
    assert lm.sentence_logprob("i want a caramelised latte".split()) == -math.inf


def test_ngram_uses_the_last_words_of_a_long_context_and_refits_from_scratch():
    """Oracle: the docstring: only the last n-1 words count; fit forgets earlier data."""
    lm = NGramLM(2).fit(SENTENCES)
    assert lm.prob("latte", ("i", "want", "iced")) == lm.prob("latte", ("iced",))
    lm.fit([["only", "this"]])
    assert lm.vocab == {"only", "this", "</s>"}
    assert lm.prob("this", ("only",)) == pytest.approx(2 / 4)


# ------------------------------------------------------------------------------ RNN cells


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell_matches_torch_rnn_cell(nonlinearity):
    """Oracle: nn.RNNCell with weight_ih = W, weight_hh = U, bias_ih = b, bias_hh = 0."""
    cell = nn.RNNCell(5, 7, nonlinearity=nonlinearity)
    W, U, b = randn(7, 5, seed=1), randn(7, 7, seed=2) * 0.4, randn(7, seed=3)
    with torch.no_grad():
        cell.weight_ih.copy_(W)
        cell.weight_hh.copy_(U)
        cell.bias_ih.copy_(b)
        cell.bias_hh.zero_()
    x, h = randn(4, 5, seed=4), randn(4, 7, seed=5)
    act = torch.tanh if nonlinearity == "tanh" else torch.relu
    torch.testing.assert_close(rnn_cell(x, h, W, U, b, act), cell(x, h))


def test_rnn_cell_leading_dims_and_custom_activation():
    """Oracle: the formula evaluated row by row with plain matrix-vector products."""
    x, h = randn(2, 3, 4, seed=6), randn(2, 3, 6, seed=7)
    W, U, b = randn(6, 4, seed=8), randn(6, 6, seed=9), randn(6, seed=10)
    out = rnn_cell(x, h, W, U, b, activation=torch.sigmoid)
    assert out.shape == (2, 3, 6)
    for i in range(2):
        for j in range(3):
            expected = torch.sigmoid(W @ x[i, j] + U @ h[i, j] + b)
            torch.testing.assert_close(out[i, j], expected)


def gru_loop(x, h, W_z, W_r, W_h):
    """The contract's GRU, one scalar at a time with math.exp / math.tanh (float64)."""
    hx = list(map(float, h)) + list(map(float, x))
    d_h = len(h)
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    z = [sig(sum(float(W_z[i, j]) * hx[j] for j in range(len(hx)))) for i in range(d_h)]
    r = [sig(sum(float(W_r[i, j]) * hx[j] for j in range(len(hx)))) for i in range(d_h)]
    rhx = [r[i] * hx[i] for i in range(d_h)] + hx[d_h:]
    cand = [math.tanh(sum(float(W_h[i, j]) * rhx[j] for j in range(len(rhx)))) for i in range(d_h)]
    return torch.tensor(
        [(1 - z[i]) * hx[i] + z[i] * cand[i] for i in range(d_h)], dtype=torch.float64
    )


def test_gru_cell_matches_a_scalar_loop():
    """Oracle: gru_loop, the contract's equations one scalar at a time."""
    x, h = randn(3, 4, seed=11), randn(3, 5, seed=12)
    Ws = [randn(5, 9, seed=13 + i) * 0.5 for i in range(3)]
    out = gru_cell(x, h, *Ws)
    assert out.shape == (3, 5)
    for b in range(3):
        torch.testing.assert_close(out[b].double(), gru_loop(x[b], h[b], *Ws), atol=1e-5, rtol=1e-5)


def test_gru_cell_from_a_zero_state_matches_torch_gru_cell():
    """Oracle: nn.GRUCell (no bias) from h = 0, where its two differences from the contract
    vanish: r * (W_hn h) = W_hn (r * h) = 0, and its z is ours with the sign of the update
    weights flipped (sigmoid(-a) = 1 - sigmoid(a))."""
    d_in, d_h = 4, 6
    Ws = [randn(d_h, d_h + d_in, seed=20 + i) for i in range(3)]
    cell = nn.GRUCell(d_in, d_h, bias=False)
    with torch.no_grad():  # weight_ih rows: reset, update, new
        cell.weight_ih.copy_(torch.cat([Ws[1][:, d_h:], -Ws[0][:, d_h:], Ws[2][:, d_h:]]))
        cell.weight_hh.copy_(torch.randn(3 * d_h, d_h))
    x, h = randn(5, d_in, seed=30), torch.zeros(5, d_h)
    torch.testing.assert_close(gru_cell(x, h, *Ws), cell(x, h))


def test_gru_cell_with_a_closed_update_gate_keeps_the_state():
    """Oracle: the GRU's defining property: z = 0 gives h' = h (and z = 1 gives h~)."""
    x, h = randn(3, 4, seed=31).abs(), randn(3, 5, seed=32)
    W_r, W_h = randn(5, 9, seed=33), randn(5, 9, seed=34)
    W_closed = torch.zeros(5, 9)
    W_closed[:, 5:] = -1e4  # x > 0: the update gate is sigmoid(-large) = 0
    torch.testing.assert_close(gru_cell(x, h, W_closed, W_r, W_h), h)


# ------------------------------------------------------------------------------ skip-gram


def pairs_loop(ids, window):
    return [
        (ids[i], ids[j])
        for i in range(len(ids))
        for j in range(len(ids))
        if 0 < abs(i - j) <= window
    ]


@pytest.mark.parametrize("length,window", [(1, 1), (2, 1), (7, 2), (10, 3), (4, 9)])
def test_skipgram_pairs_match_a_double_loop(length, window):
    """Oracle: pairs_loop, a double loop over (i, j) in order with 0 < |i - j| <= window."""
    ids = torch.randint(0, 50, (length,), generator=torch.Generator().manual_seed(length)).tolist()
    out = skipgram_pairs(ids, window)
    assert out.dtype == torch.long and out.shape == (len(pairs_loop(ids, window)), 2)
    assert [tuple(p) for p in out.tolist()] == pairs_loop(ids, window)
    torch.testing.assert_close(skipgram_pairs(torch.tensor(ids, dtype=torch.int32), window), out)


def test_skipgram_pairs_of_nothing_is_an_empty_table():
    """Oracle: the contract's shape (N, 2) with N = 0."""
    assert skipgram_pairs([], 2).shape == (0, 2)


def sgns_loop(c, o, negs):
    """The loss with math.exp / math.log1p, one pair at a time (float64)."""
    log_sig = lambda s: -math.log1p(math.exp(-s)) if s > 0 else s - math.log1p(math.exp(s))  # noqa: E731
    total = 0.0
    for b in range(c.shape[0]):
        total -= log_sig(float(c[b] @ o[b]))
        for k in range(negs.shape[1]):
            total -= log_sig(-float(c[b] @ negs[b, k]))
    return total / c.shape[0]


def test_sgns_loss_matches_a_loop_and_stays_finite_for_large_scores():
    """Oracle: sgns_loop, a stable scalar log-sigmoid, pair by pair; large scores
    (where log(sigmoid) would underflow to -inf) stay finite."""
    for scale in (0.5, 10.0):
        c, o, n = (
            randn(6, 8, seed=40) * scale,
            randn(6, 8, seed=41) * scale,
            randn(6, 4, 8, seed=42) * scale,
        )
        loss = skipgram_negative_sampling_loss(c, o, n)
        assert loss.dim() == 0 and torch.isfinite(loss)
        assert loss.item() == pytest.approx(sgns_loop(c.double(), o.double(), n.double()), rel=1e-5)


def test_sgns_loss_leading_dims_are_batch_dims_and_gradients_flow():
    """Oracle: the same loss on the flattened batch; autograd reaches all three inputs."""
    c, o, n = randn(2, 3, 5, seed=43), randn(2, 3, 5, seed=44), randn(2, 3, 4, 5, seed=45)
    flat = skipgram_negative_sampling_loss(c.reshape(6, 5), o.reshape(6, 5), n.reshape(6, 4, 5))
    for t in (c, o, n):
        t.requires_grad_(True)
    loss = skipgram_negative_sampling_loss(c, o, n)
    torch.testing.assert_close(loss, flat)
    loss.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (c, o, n))


# ------------------------------------------------------------------------------ BERT masking


def test_mask_tokens_statistics_and_invariants_on_a_large_batch():
    """Oracle: the 80/10/10 rule as binomial proportions (6 standard deviations) and the
    contract's invariants: labels, unchanged unselected positions, specials never selected."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 30000, (64, 512), generator=g)
    ids[:, 0], ids[:, -1] = 1, 2
    inputs, labels = mask_tokens_for_mlm(
        ids, 3, 30000, mask_prob=0.15, special_token_ids=(1, 2), generator=g
    )
    selected = labels != -100
    assert inputs.dtype == labels.dtype == ids.dtype
    assert torch.equal(labels[selected], ids[selected]) and torch.equal(
        inputs[~selected], ids[~selected]
    )
    assert not selected[:, 0].any() and not selected[:, -1].any()
    n = 64 * 510
    rate = selected.sum().item() / n
    assert abs(rate - 0.15) < 6 * math.sqrt(0.15 * 0.85 / n)
    m = selected.sum().item()
    for fraction, expected in (
        ((inputs[selected] == 3).float().mean().item(), 0.8),
        ((inputs[selected] == ids[selected]).float().mean().item(), 0.1),
    ):
        assert abs(fraction - expected) < 6 * math.sqrt(expected * (1 - expected) / m)


def test_mask_tokens_draws_in_the_documented_order():
    """Oracle: the docstring's order of draws, replayed by hand from the same seed."""
    ids = torch.randint(4, 100, (3, 20), generator=torch.Generator().manual_seed(5))
    inputs, labels = mask_tokens_for_mlm(
        ids, 3, 100, mask_prob=0.5, generator=torch.Generator().manual_seed(9)
    )
    g = torch.Generator().manual_seed(9)
    selected = torch.rand(ids.shape, generator=g) < 0.5
    u = torch.rand(ids.shape, generator=g)
    random_ids = torch.randint(100, ids.shape, generator=g)
    expected = ids.clone()
    expected[selected & (u < 0.8)] = 3
    expected[selected & (u >= 0.8) & (u < 0.9)] = random_ids[selected & (u >= 0.8) & (u < 0.9)]
    assert torch.equal(inputs, expected)
    assert torch.equal(labels, torch.where(selected, ids, -100))


def test_mask_tokens_extreme_probabilities_and_int32():
    """Oracle: the definition: mask_prob 0 selects nothing, 1 every non-special position."""
    ids = torch.tensor([[1, 5, 6, 7, 2, 0, 0]], dtype=torch.int32)
    inputs, labels = mask_tokens_for_mlm(ids, 3, 10, mask_prob=0.0, special_token_ids=(0, 1, 2))
    assert torch.equal(inputs, ids) and (labels == -100).all() and labels.dtype == torch.int32
    _, labels = mask_tokens_for_mlm(ids, 3, 10, mask_prob=1.0, special_token_ids=(0, 1, 2))
    assert (labels != -100).tolist() == [[False, True, True, True, False, False, False]]


# ------------------------------------------------------------------------------ GPT


def torch_block_like(block: nn.Module, causal_decoder: bool = False) -> nn.Module:
    """nn.TransformerEncoderLayer(norm_first=True) holding a chapter-01 block's weights."""
    d = block.ln1.weight.shape[0]
    layer = nn.TransformerEncoderLayer(
        d, block.attn.n_heads, block.ff.fc1.out_features, dropout=0.0,
        activation=lambda t: F.gelu(t, approximate="tanh"), batch_first=True, norm_first=True,
    )  # fmt: skip
    copy_attention(layer.self_attn, block.attn)
    copy_mlp_and_norms(layer, block.ff, [block.ln1, block.ln2])
    return layer


def copy_attention(theirs: nn.MultiheadAttention, ours: nn.Module) -> None:
    with torch.no_grad():
        theirs.in_proj_weight.copy_(
            torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight])
        )
        theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        theirs.out_proj.weight.copy_(ours.out_proj.weight)
        theirs.out_proj.bias.copy_(ours.out_proj.bias)


def copy_mlp_and_norms(layer: nn.Module, ff: nn.Module, norms: list[nn.Module]) -> None:
    with torch.no_grad():
        layer.linear1.load_state_dict(ff.fc1.state_dict())
        layer.linear2.load_state_dict(ff.fc2.state_dict())
        for i, norm in enumerate(norms, start=1):
            getattr(layer, f"norm{i}").load_state_dict(norm.state_dict())


def test_gpt_has_the_contract_submodules_and_tied_head():
    """Oracle: the contract (tok_emb, pos_emb, blocks of causal TransformerBlocks, ln_f,
    lm_head whose weight is tok_emb's) and gpt_param_count for the total."""
    model = GPT(vocab_size=50, d_model=32, n_layers=3, n_heads=4, max_seq_len=16)
    assert isinstance(model.tok_emb, nn.Embedding) and model.pos_emb.weight.shape == (16, 32)
    assert len(model.blocks) == 3 and all(
        isinstance(b, attention.TransformerBlock) and b.causal for b in model.blocks
    )
    assert model.blocks[0].ff.fc1.out_features == 128 and isinstance(model.ln_f, nn.LayerNorm)
    assert model.lm_head.weight is model.tok_emb.weight and model.lm_head.bias is None
    keys = {k.split(".")[0] for k in model.state_dict()}
    assert keys == {"tok_emb", "pos_emb", "blocks", "ln_f", "lm_head"}
    assert sum(p.numel() for p in model.parameters()) == gpt_param_count(3, 32, 50, 16)


def test_gpt_matches_torch_transformer_layers():
    """Oracle: embeddings by indexing, nn.TransformerEncoderLayer(norm_first=True, tanh
    GELU) with a causal mask for each block, F.layer_norm, and a product with the
    embedding matrix for the tied head."""
    torch.manual_seed(0)
    model = seeded_(GPT(vocab_size=40, d_model=16, n_layers=2, n_heads=4, max_seq_len=12), seed=3)
    ids = torch.randint(0, 40, (2, 9), generator=torch.Generator().manual_seed(4))
    x = model.tok_emb.weight[ids] + model.pos_emb.weight[:9]
    causal = nn.Transformer.generate_square_subsequent_mask(9)
    for block in model.blocks:
        x = torch_block_like(block).train()(x, src_mask=causal, is_causal=True)
    x = F.layer_norm(x, (16,), model.ln_f.weight, model.ln_f.bias)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), x @ model.tok_emb.weight.T, atol=1e-5, rtol=1e-4)


def test_gpt_is_causal_and_uses_positions():
    """Oracle: perturbation: changing token t changes no logit before t; the same token
    at two positions gets different logits."""
    model = GPT(30, 16, 2, 2, 10).eval()
    ids = torch.randint(0, 30, (1, 10), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model(ids)
        changed = ids.clone()
        changed[0, 6] = (ids[0, 6] + 1) % 30
        out2 = model(changed)
        torch.testing.assert_close(out2[:, :6], out[:, :6])
        assert not torch.allclose(out2[:, 6:], out[:, 6:])
        same = model(torch.full((1, 4), 7))
        assert not torch.allclose(same[0, 0], same[0, 3])


def test_gpt_initialisation_follows_gpt2():
    """Oracle: the docstring: std 0.02, residual projections 0.02 / sqrt(2 n_layers),
    zero biases."""
    torch.manual_seed(0)
    model = GPT(1000, 128, 4, 4, 64)
    assert model.tok_emb.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.blocks[0].ff.fc2.weight.std().item() == pytest.approx(
        0.02 / math.sqrt(8), rel=0.05
    )
    assert model.blocks[0].attn.q_proj.bias.abs().max() == 0


def test_gpt_learns_a_repeating_sequence():
    """Oracle: a model that can learn drives its loss on a memorisable sequence near 0."""
    torch.manual_seed(0)
    model = GPT(12, 32, 1, 2, 12)
    seq = torch.arange(12)[None] % 6
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = F.cross_entropy(model(seq[:, :-1]).flatten(0, 1), seq[0, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_models_with_course_blocks_equal_models_with_chapter_01_blocks():
    """Oracle: solutions.attention (chapter 01's tested reference): the notebook's GPT and
    EncoderDecoder, built on course.blocks, load the same state_dict and give the same
    logits (what the notebook run with the reference relies on)."""
    ns = {"math": math, "torch": torch, "nn": nn, "F": F, "Callable": Callable}
    ns.update({n: getattr(blocks, n) for n in blocks.__all__})
    for name in ("GPT", "EncoderDecoder"):
        exec(inspect.getsource(getattr(architectures, name)), ns)
    gpt = seeded_(GPT(30, 16, 2, 4, 10), seed=6).eval()
    gpt2 = ns["GPT"](30, 16, 2, 4, 10).eval()
    gpt2.load_state_dict(gpt.state_dict())
    ed = seeded_(EncoderDecoder(20, 12, 3, 1, 2, 8), seed=7).eval()
    ed2 = ns["EncoderDecoder"](20, 12, 3, 1, 2, 8).eval()
    ed2.load_state_dict(ed.state_dict())
    src, tgt = torch.randint(0, 20, (2, 8)), torch.randint(0, 20, (2, 5))
    with torch.no_grad():
        torch.testing.assert_close(gpt2(src), gpt(src), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ed2(src, tgt), ed(src, tgt), atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------ EncoderDecoder


def test_encoder_decoder_matches_torch_transformer_layers():
    """Oracle: nn.TransformerEncoderLayer / nn.TransformerDecoderLayer (norm_first=True,
    tanh GELU, no dropout) with copied weights, the target's causal mask, F.layer_norm, and
    the tied embedding matrix as output layer."""
    model = seeded_(EncoderDecoder(25, 16, 4, 2, 2, 10), seed=8).eval()
    src = torch.randint(0, 25, (2, 9), generator=torch.Generator().manual_seed(1))
    tgt = torch.randint(0, 25, (2, 6), generator=torch.Generator().manual_seed(2))
    E, P = model.tok_emb.weight, model.pos_emb.weight
    x = E[src] + P[:9]
    for block in model.encoder:
        x = torch_block_like(block).train()(x)
    memory = F.layer_norm(x, (16,), model.ln_enc.weight, model.ln_enc.bias)
    y = E[tgt] + P[:6]
    causal = nn.Transformer.generate_square_subsequent_mask(6)
    for ours in model.decoder:
        layer = nn.TransformerDecoderLayer(
            16, 4, 64, dropout=0.0, activation=lambda t: F.gelu(t, approximate="tanh"),
            batch_first=True, norm_first=True,
        )  # fmt: skip
        copy_attention(layer.self_attn, ours["self_attn"])
        copy_attention(layer.multihead_attn, ours["cross_attn"])
        copy_mlp_and_norms(layer, ours["ff"], [ours["ln1"], ours["ln2"], ours["ln3"]])
        y = layer.train()(y, memory, tgt_mask=causal, tgt_is_causal=True)
    expected = F.layer_norm(y, (16,), model.ln_dec.weight, model.ln_dec.bias) @ E.T
    with torch.no_grad():
        torch.testing.assert_close(model(src, tgt), expected, atol=1e-5, rtol=1e-4)


def test_encoder_decoder_reads_the_whole_source_and_a_causal_target():
    """Oracle: perturbation: the last source token changes every target position; a target
    token changes only the positions from it on. Attributes and tying: the contract."""
    model = EncoderDecoder(20, 16, 2, 1, 1, 8).eval()
    assert model.lm_head.weight is model.tok_emb.weight
    assert set(model.decoder[0].keys()) == {"ln1", "self_attn", "ln2", "cross_attn", "ln3", "ff"}
    assert all(not b.causal for b in model.encoder)
    src, tgt = torch.randint(0, 20, (1, 8)), torch.randint(0, 20, (1, 6))
    with torch.no_grad():
        out = model(src, tgt)
        src2 = src.clone()
        src2[0, -1] = (src[0, -1] + 1) % 20
        assert not torch.isclose(model(src2, tgt), out).all(-1).any()
        tgt2 = tgt.clone()
        tgt2[0, 3] = (tgt[0, 3] + 1) % 20
        out2 = model(src, tgt2)
        torch.testing.assert_close(out2[:, :3], out[:, :3])
        assert not torch.allclose(out2[:, 3:], out[:, 3:])


# ------------------------------------------------------------------------------ scale

GPT3 = [  # the GPT-3 paper, table 2.1: name, n_layers, d_model, parameters
    ("125M", 12, 768, 125e6),
    ("350M", 24, 1024, 350e6),
    ("760M", 24, 1536, 760e6),
    ("1.3B", 24, 2048, 1.3e9),
    ("2.7B", 32, 2560, 2.7e9),
    ("6.7B", 32, 4096, 6.7e9),
    ("13B", 40, 5140, 13e9),
    ("175B", 96, 12288, 175e9),
]


@pytest.mark.parametrize("name,n_layers,d_model,paper", GPT3, ids=[g[0] for g in GPT3])
def test_gpt_param_count_reproduces_the_gpt3_table_within_3_percent(name, n_layers, d_model, paper):
    """Oracle: the GPT-3 paper's parameter counts (vocabulary 50257, 2048 positions)."""
    count = gpt_param_count(n_layers, d_model)
    assert isinstance(count, int)
    assert abs(count - paper) / paper < 0.03, (name, count)


@pytest.mark.parametrize(
    "n_layers,d_model,vocab,n_ctx", [(1, 8, 10, 4), (3, 32, 100, 16), (12, 768, 50257, 1024)]
)
def test_gpt_param_count_equals_the_parameters_of_the_module(n_layers, d_model, vocab, n_ctx):
    """Oracle: sum(p.numel()) over GPT(...).parameters(), built on the meta device (the
    last one is GPT-2 small: 124,439,808, the number usually quoted for it)."""
    with torch.device("meta"):
        model = GPT(vocab, d_model, n_layers, max(1, d_model // 64), n_ctx)
    assert gpt_param_count(n_layers, d_model, vocab, n_ctx) == sum(
        p.numel() for p in model.parameters()
    )
    if d_model == 768:
        assert gpt_param_count(n_layers, d_model, vocab, n_ctx) == 124_439_808


def test_training_flops_is_six_n_d_and_close_to_a_measured_training_step():
    """Oracle: 6ND by definition, and torch.utils.flop_counter's count of one forward and
    backward pass of a GPT whose width dwarfs its sequence length (attention's own
    products are then small): within 10% of 6 * (parameters in matrices) * tokens."""
    from torch.utils.flop_counter import FlopCounterMode

    assert training_flops(70e9, 1.4e12) == 6 * 70e9 * 1.4e12
    torch.manual_seed(0)
    model = GPT(512, 256, 2, 4, 16)
    ids = torch.randint(0, 512, (4, 16))
    with FlopCounterMode(display=False) as counter:
        model(ids).sum().backward()
    matrix_params = sum(
        p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "pos_emb" not in n
    )
    predicted = training_flops(matrix_params, ids.numel())
    assert abs(counter.get_total_flops() - predicted) / predicted < 0.10


def test_chinchilla_optimal_gives_chinchilla_for_its_budget():
    """Oracle: the Chinchilla paper: 70B parameters and 1.4T tokens for C = 6 * 70e9 * 1.4e12;
    and the algebra: 6ND = C, D / N = tokens_per_param, N grows as sqrt(C)."""
    n, d = chinchilla_optimal(6 * 70e9 * 1.4e12)
    assert n == pytest.approx(70e9, rel=1e-12) and d == pytest.approx(1.4e12, rel=1e-12)
    n, d = chinchilla_optimal(1e22, tokens_per_param=10.0)
    assert training_flops(n, d) == pytest.approx(1e22) and d / n == pytest.approx(10.0)
    assert chinchilla_optimal(4e22)[0] == pytest.approx(2 * chinchilla_optimal(1e22)[0])


# ------------------------------------------------------------------------------ devices, dtypes


class Env:
    """The same seeded inputs and modules on any device and dtype."""

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.device, self.dtype, self.seed = torch.device(device), dtype, 1000

    def randn(self, *shape: int, scale: float = 1.0) -> torch.Tensor:
        self.seed += 1
        return (randn(*shape, seed=self.seed) * scale).to(device=self.device, dtype=self.dtype)

    def ids(self, high: int, *shape: int) -> torch.Tensor:
        self.seed += 1
        g = torch.Generator().manual_seed(self.seed)
        return torch.randint(0, high, shape, generator=g).to(self.device)

    def module(self, module: nn.Module) -> nn.Module:
        self.seed += 1
        return seeded_(module, seed=self.seed).to(device=self.device, dtype=self.dtype).eval()


CASES = {
    "rnn_cell": (
        lambda e: (
            rnn_cell(e.randn(2, 3, 4), e.randn(2, 3, 6), e.randn(6, 4), e.randn(6, 6), e.randn(6)),
        ),
        [(2, 3, 6)],
    ),
    "gru_cell": (
        lambda e: (
            gru_cell(e.randn(3, 4), e.randn(3, 5), e.randn(5, 9), e.randn(5, 9), e.randn(5, 9)),
        ),
        [(3, 5)],
    ),
    "sgns_loss": (
        lambda e: (
            skipgram_negative_sampling_loss(e.randn(6, 8), e.randn(6, 8), e.randn(6, 3, 8)),
        ),
        [()],
    ),
    "gpt": (lambda e: (e.module(GPT(30, 16, 2, 4, 10))(e.ids(30, 2, 7)),), [(2, 7, 30)]),
    "encoder_decoder": (
        lambda e: (e.module(EncoderDecoder(20, 12, 3, 1, 2, 8))(e.ids(20, 2, 8), e.ids(20, 2, 5)),),
        [(2, 5, 20)],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_runs_on_meta_device_with_correct_shapes(name):
    """Oracle: the contract's shapes; meta tensors prove no tensor is created elsewhere."""
    fn, shapes = CASES[name]
    with torch.no_grad():
        outs = fn(Env(META))
    assert [tuple(o.shape) for o in outs] == shapes and all(o.device.type == "meta" for o in outs)


def test_mask_tokens_runs_on_meta_device():
    """Oracle: the contract's shapes and dtype, on meta ids (a CPU generator is allowed)."""
    ids = torch.zeros(4, 9, dtype=torch.long, device=META)
    inputs, labels = mask_tokens_for_mlm(
        ids, 3, 100, special_token_ids=(0, 1), generator=torch.Generator()
    )
    assert inputs.device.type == labels.device.type == "meta" and inputs.shape == (4, 9)
    assert labels.dtype == torch.long


@pytest.mark.parametrize("name", list(CASES))
def test_float64_matches_float32(name):
    """Oracle: the float32 result on the same seeded inputs."""
    fn, _ = CASES[name]
    with torch.no_grad():
        o32, o64 = fn(Env(dtype=torch.float32)), fn(Env(dtype=torch.float64))
    for a, b in zip(o32, o64, strict=True):
        assert b.dtype == torch.float64
        torch.testing.assert_close(b.float(), a, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_bfloat16_stays_bfloat16_and_close_to_float32(name):
    """Oracle: the float32 result, with a tolerance for bfloat16's 8 bits."""
    fn, _ = CASES[name]
    with torch.no_grad():
        o32, o16 = fn(Env(dtype=torch.float32)), fn(Env(dtype=torch.bfloat16))
    for a, b in zip(o32, o16, strict=True):
        assert b.dtype == torch.bfloat16
        torch.testing.assert_close(b.float(), a, atol=0.1, rtol=0.05)


# ------------------------------------------------------------------------------ invalid arguments


def _e(*shape: int, device: str = "cpu") -> torch.Tensor:
    return torch.zeros(shape, device=device)


def _rnn(d: str, x=(2, 3), h=(2, 4), W=(4, 3), U=(4, 4), b=(4,)) -> torch.Tensor:
    return rnn_cell(*(_e(*shape, device=d) for shape in (x, h, W, U, b)))


def _gru(d: str, x=(2, 3), h=(2, 4), W_z=(4, 7), W_r=(4, 7), W_h=(4, 7)) -> torch.Tensor:
    return gru_cell(*(_e(*shape, device=d) for shape in (x, h, W_z, W_r, W_h)))


def _sgns(d: str, c=(4, 8), o=(4, 8), n=(4, 2, 8)) -> torch.Tensor:
    return skipgram_negative_sampling_loss(*(_e(*shape, device=d) for shape in (c, o, n)))


def _ids(*shape: int, device: str = "cpu") -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.long, device=device)


def _encdec(d: str) -> EncoderDecoder:
    return EncoderDecoder(10, 8, 2, 1, 1, 4).to(d)


INVALID = {
    "ngram_n": (lambda d: NGramLM(0), r"n must be an int >= 1"),
    "ngram_k": (lambda d: NGramLM(2, k=-1.0), r"k must be >= 0"),
    "ngram_unfitted": (lambda d: NGramLM(2).prob("a", ("b",)), r"call fit"),
    "ngram_short_context": (
        lambda d: NGramLM(3).fit(SENTENCES).prob("a", ("b",)),
        r"context must hold at least n-1 = 2",
    ),
    "ngram_sentences_str": (lambda d: NGramLM(2).fit("a latte"), r"sentences must be a list"),
    "ngram_tokens_str": (
        lambda d: NGramLM(2).fit(SENTENCES).sentence_logprob("i want"),
        r"tokens must be a list",
    ),
    "rnn_W": (lambda d: _rnn(d, W=(3, 4)), r"W must have shape \(d_h, d_in\) = \(4, 3\)"),
    "rnn_U": (lambda d: _rnn(d, U=(4, 3)), r"U must have shape"),
    "rnn_b": (lambda d: _rnn(d, b=(3,)), r"b must have shape"),
    "rnn_batch": (lambda d: _rnn(d, h=(5, 4)), r"same leading dimensions"),
    "gru_W_r": (
        lambda d: _gru(d, W_r=(4, 6)),
        r"W_r must have shape \(d_h, d_h \+ d_in\) = \(4, 7\)",
    ),
    "gru_batch": (lambda d: _gru(d, x=(3,)), r"same leading dimensions"),
    "pairs_window": (lambda d: skipgram_pairs([1, 2, 3], 0), r"window must be an int >= 1"),
    "pairs_rank": (
        lambda d: skipgram_pairs(_ids(2, 3), 1),
        r"token_ids must be a 1-D integer tensor",
    ),
    "sgns_context": (
        lambda d: _sgns(d, o=(4, 6)),
        r"center_vecs and context_vecs must have the same shape",
    ),
    "sgns_negatives": (
        lambda d: _sgns(d, n=(4, 8)),
        r"negative_vecs must have shape \(\.\.\., K, d\)",
    ),
    "mlm_float": (lambda d: mask_tokens_for_mlm(_e(2, 5, device=d), 3, 10), r"integer tensor"),
    "mlm_prob": (
        lambda d: mask_tokens_for_mlm(_ids(2, 5, device=d), 3, 10, mask_prob=1.5),
        r"mask_prob must be in \[0, 1\]",
    ),
    "mlm_mask_id": (
        lambda d: mask_tokens_for_mlm(_ids(2, 5, device=d), 12, 10),
        r"mask_token_id must be in \[0, vocab_size=10\)",
    ),
    "mlm_vocab": (
        lambda d: mask_tokens_for_mlm(_ids(2, 5, device=d), 0, 0),
        r"vocab_size must be an int >= 1",
    ),
    "gpt_heads": (lambda d: GPT(10, 10, 1, 3, 8), r"d_model must be divisible by n_heads"),
    "gpt_layers": (lambda d: GPT(10, 8, 0, 2, 8), r"n_layers must be >= 1"),
    "gpt_too_long": (
        lambda d: GPT(10, 8, 1, 2, 4).to(d)(_ids(1, 5, device=d)),
        r"longer than max_seq_len=4",
    ),
    "gpt_rank": (
        lambda d: GPT(10, 8, 1, 2, 4).to(d)(_ids(5, device=d)),
        r"input_ids must have shape \(B, L\)",
    ),
    "encdec_src": (
        lambda d: _encdec(d)(_ids(1, 5, device=d), _ids(1, 3, device=d)),
        r"src_ids must have shape \(B, S\) with S <= max_seq_len=4",
    ),
    "encdec_batch": (
        lambda d: _encdec(d)(_ids(2, 3, device=d), _ids(1, 3, device=d)),
        r"the same B",
    ),
    "encdec_memory": (
        lambda d: _encdec(d).decode(_ids(1, 3, device=d), _e(1, 3, 6, device=d)),
        r"memory must have shape \(B=1, S, d_model=8\)",
    ),
    "count_layers": (lambda d: gpt_param_count(0, 768), r"n_layers must be an int >= 1"),
    "count_float": (lambda d: gpt_param_count(12, 768.0), r"d_model must be an int >= 1"),
    "flops_params": (lambda d: training_flops(0, 10), r"n_params must be > 0"),
    "flops_tokens": (lambda d: training_flops(10, -1), r"n_tokens must be >= 0"),
    "chinchilla_compute": (lambda d: chinchilla_optimal(-1.0), r"compute_flops must be > 0"),
    "chinchilla_ratio": (
        lambda d: chinchilla_optimal(1e20, tokens_per_param=0.0),
        r"tokens_per_param must be > 0",
    ),
}


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_argument_raises_value_error_naming_it(name, device):
    """Oracle: the contract: a ValueError naming the argument, on CPU and on meta tensors
    (the checks read shapes only)."""
    fn, match = INVALID[name]
    with pytest.raises(ValueError, match=match):
        fn(device)


# ------------------------------------------------------------------------------ copyability


def test_module_has_no_private_helpers():
    """Oracle: the notebook tools copy single public names; nothing private may exist, and
    the only other names are the imports (chapter 01's blocks included)."""
    private = [n for n in vars(architectures) if n.startswith("_") and not n.startswith("__")]
    assert private == []
    own = [
        n
        for n, v in vars(architectures).items()
        if (inspect.isfunction(v) or inspect.isclass(v)) and v.__module__ == architectures.__name__
    ]
    assert sorted(own) == sorted(PUBLIC_NAMES)


def test_public_names_work_when_copied_with_getsource_next_to_course_blocks():
    """Oracle: the module itself; each name's source, executed in a namespace holding what
    the notebook's first cell imports (course.blocks for chapter 01), gives the same results."""
    ns = {"math": math, "torch": torch, "nn": nn, "F": F, "Callable": Callable}
    ns.update({n: getattr(blocks, n) for n in blocks.__all__})
    for name in PUBLIC_NAMES:
        exec(inspect.getsource(getattr(architectures, name)), ns)
    lm, lm2 = NGramLM(2).fit(SENTENCES), ns["NGramLM"](2).fit(SENTENCES)
    assert lm2.sentence_logprob(SENTENCES[0]) == lm.sentence_logprob(SENTENCES[0])
    x, h, W, U, b = randn(2, 3), randn(2, 4), randn(4, 3), randn(4, 4), randn(4)
    torch.testing.assert_close(ns["rnn_cell"](x, h, W, U, b), rnn_cell(x, h, W, U, b))
    Ws = [randn(4, 7, seed=i) for i in range(3)]
    torch.testing.assert_close(ns["gru_cell"](x, h, *Ws), gru_cell(x, h, *Ws))
    torch.testing.assert_close(
        ns["skipgram_pairs"]([1, 2, 3, 4], 2), skipgram_pairs([1, 2, 3, 4], 2)
    )
    assert ns["gpt_param_count"](2, 16) == gpt_param_count(2, 16)
    assert ns["chinchilla_optimal"](1e21) == chinchilla_optimal(1e21)


def test_public_names_have_docstrings_with_shapes_and_type_hints():
    """Oracle: the conventions: a docstring with Args and Returns, full type hints."""
    for name in PUBLIC_NAMES:
        obj = getattr(architectures, name)
        assert "Args" in (inspect.getdoc(obj) or ""), name
        methods = (
            [m for m in vars(obj).values() if inspect.isfunction(m)]
            if inspect.isclass(obj)
            else [obj]
        )
        for fn in methods:
            sig = inspect.signature(fn)
            if fn.__name__ != "__init__":
                assert "Returns" in (inspect.getdoc(fn) or ""), (name, fn.__name__)
            assert sig.return_annotation is not inspect.Signature.empty, (name, fn.__name__)
            for p in sig.parameters.values():
                if p.name != "self":
                    assert p.annotation is not inspect.Parameter.empty, (name, p.name)
    assert architectures.__doc__ and "Chapter 02" in architectures.__doc__


# ------------------------------------------------------------------------------ course.blocks


def test_course_blocks_equal_chapter_01_blocks():
    """Oracle: solutions.attention, chapter 01's reference (tested there against PyTorch):
    same state_dict keys and the same outputs for every block the later notebooks import."""
    torch.manual_seed(0)
    x, ctx = randn(2, 5, 16, seed=50), randn(2, 7, 16, seed=51)
    A, B = attention, blocks
    masked = (x, None, attention.causal_mask(5))
    pairs = [
        (A.MultiHeadAttention(16, 4), B.MultiHeadAttention(16, 4), [(x,), (x, ctx), masked]),
        (A.FeedForward(16, 32, "relu"), B.FeedForward(16, 32, "relu"), [(x,)]),
        (A.FeedForward(16, 32), B.FeedForward(16, 32), [(x,)]),
        (A.TransformerBlock(16, 4, 32), B.TransformerBlock(16, 4, 32), [(x,)]),
        (A.TransformerBlock(16, 2, 24, False), B.TransformerBlock(16, 2, 24, False), [(x,)]),
    ]
    for ours, theirs, inputs in pairs:
        seeded_(ours, seed=52)
        assert list(theirs.state_dict()) == list(ours.state_dict())
        theirs.load_state_dict(ours.state_dict())
        for args in inputs:
            torch.testing.assert_close(theirs(*args), ours(*args), atol=1e-5, rtol=1e-4)
    for n in (0, 1, 6):
        assert torch.equal(blocks.causal_mask(n), attention.causal_mask(n))
