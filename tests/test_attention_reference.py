"""The chapter 01 reference (solutions/attention.py) is correct.

Every test names its independent oracle in its docstring: a PyTorch routine where one
exists (F.scaled_dot_product_attention, nn.MultiheadAttention, F.layer_norm,
F.rms_norm, F.gelu), else a slow, obviously-correct Python loop written here.
"""

import copy
import inspect
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from solutions import attention
from solutions.attention import (
    FeedForward,
    MultiHeadAttention,
    TransformerBlock,
    apply_rope,
    causal_mask,
    gelu,
    layer_norm,
    rms_norm,
    scaled_dot_product_attention,
    sinusoidal_positional_encoding,
)

PUBLIC_NAMES = [
    "scaled_dot_product_attention",
    "causal_mask",
    "MultiHeadAttention",
    "sinusoidal_positional_encoding",
    "apply_rope",
    "layer_norm",
    "rms_norm",
    "gelu",
    "FeedForward",
    "TransformerBlock",
]

META = torch.device("meta")


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Seeded standard normal tensor on the CPU."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def random_mask(*shape: int, seed: int = 0) -> torch.Tensor:
    """Seeded bool mask (True = allowed) where every query row allows key 0."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(*shape, generator=g) < 0.5
    mask[..., 0] = True
    return mask


def seeded_(module: nn.Module, seed: int = 0, scale: float = 0.3) -> nn.Module:
    """Overwrite every parameter with seeded normal values (LayerNorm gains around 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g) * scale
            p.copy_(1.0 + noise if name.startswith("ln") and name.endswith("weight") else noise)
    return module


def torch_mha_like(ours: MultiHeadAttention, bias: bool = True) -> nn.MultiheadAttention:
    """nn.MultiheadAttention(batch_first=True) holding the same weights as ours."""
    d_model = ours.n_heads * ours.d_head
    ref = nn.MultiheadAttention(d_model, ours.n_heads, bias=bias, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(
            torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight])
        )
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        if bias:
            ref.in_proj_bias.copy_(
                torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias])
            )
            ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ref.eval()


# --------------------------------------------------------------------------- attention


def test_sdpa_matches_torch_sdpa_without_mask():
    """Oracle: F.scaled_dot_product_attention; batch and head dims, Lq != Lk, dv != d."""
    q, k, v = randn(2, 3, 4, 8, seed=1), randn(2, 3, 6, 8, seed=2), randn(2, 3, 6, 5, seed=3)
    out, weights = scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 3, 4, 5) and weights.shape == (2, 3, 4, 6)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))


def test_sdpa_matches_torch_sdpa_without_batch_dims():
    """Oracle: F.scaled_dot_product_attention on plain 2-D (L, d) inputs."""
    q, k, v = randn(4, 8, seed=1), randn(7, 8, seed=2), randn(7, 3, seed=3)
    out, _ = scaled_dot_product_attention(q, k, v)
    ref = F.scaled_dot_product_attention(q[None], k[None], v[None])[0]
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("mask_shape", [(2, 3, 4, 6), (4, 6), (2, 1, 1, 6), (1, 3, 4, 6)])
def test_sdpa_matches_torch_sdpa_with_boolean_mask(mask_shape):
    """Oracle: F.scaled_dot_product_attention with the same bool mask (True = allowed),
    full-size and broadcast masks."""
    q, k, v = randn(2, 3, 4, 8, seed=1), randn(2, 3, 6, 8, seed=2), randn(2, 3, 6, 5, seed=3)
    mask = random_mask(*mask_shape, seed=4)
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert torch.all(weights[~mask.expand(2, 3, 4, 6)] == 0)


def test_sdpa_matches_torch_sdpa_with_causal_mask():
    """Oracle: F.scaled_dot_product_attention(is_causal=True) against causal_mask."""
    q, k, v = randn(2, 3, 5, 8, seed=1), randn(2, 3, 5, 8, seed=2), randn(2, 3, 5, 4, seed=3)
    out, _ = scaled_dot_product_attention(q, k, v, causal_mask(5))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_sdpa_weights_rows_sum_to_one():
    """Oracle: the definition of softmax (every row is a probability distribution)."""
    q, k, v = randn(2, 4, 8, seed=1), randn(2, 6, 8, seed=2), randn(2, 6, 5, seed=3)
    for mask in (None, random_mask(2, 4, 6, seed=4)):
        _, weights = scaled_dot_product_attention(q, k, v, mask)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4))
        assert torch.all(weights >= 0)


def test_sdpa_weights_and_output_match_explicit_loop():
    """Oracle: a slow loop with math.exp over every (batch, query, key) triple."""
    q, k, v = randn(2, 3, 4, seed=1), randn(2, 5, 4, seed=2), randn(2, 5, 3, seed=3)
    mask = random_mask(2, 3, 5, seed=4)
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    d = q.shape[-1]
    for b in range(2):
        for i in range(3):
            logits = [
                sum(float(q[b, i, c]) * float(k[b, j, c]) for c in range(d)) / math.sqrt(d)
                for j in range(5)
            ]
            exps = [math.exp(s) if bool(mask[b, i, j]) else 0.0 for j, s in enumerate(logits)]
            total = sum(exps)
            for j in range(5):
                assert weights[b, i, j].item() == pytest.approx(exps[j] / total, abs=1e-6)
            for c in range(3):
                expected = sum(exps[j] / total * float(v[b, j, c]) for j in range(5))
                assert out[b, i, c].item() == pytest.approx(expected, abs=1e-5)


def test_sdpa_fully_masked_row_gets_uniform_weights_not_nan():
    """Oracle: the documented choice (finfo.min fill): a row with no allowed key is
    uniform, so rows still sum to 1 and nothing is NaN."""
    q, k, v = randn(3, 4, seed=1), randn(5, 4, seed=2), randn(5, 2, seed=3)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(weights[1], torch.full((5,), 0.2))
    assert not out.isnan().any()


# --------------------------------------------------------------------------- causal mask


@pytest.mark.parametrize("seq_len", [0, 1, 2, 7])
def test_causal_mask_matches_double_loop(seq_len):
    """Oracle: a double Python loop, mask[i][j] = (j <= i)."""
    mask = causal_mask(seq_len)
    expected = [[j <= i for j in range(seq_len)] for i in range(seq_len)]
    assert mask.dtype == torch.bool and mask.shape == (seq_len, seq_len)
    assert mask.tolist() == expected


# --------------------------------------------------------------------------- multi-head


def test_mha_has_the_contract_attributes():
    """Oracle: the contract (four nn.Linear(d_model, d_model), n_heads, d_head)."""
    mha = MultiHeadAttention(12, 3, bias=False)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        layer = getattr(mha, name)
        assert isinstance(layer, nn.Linear)
        assert (layer.in_features, layer.out_features, layer.bias) == (12, 12, None)
    assert (mha.n_heads, mha.d_head) == (3, 4)


@pytest.mark.parametrize("bias", [True, False])
def test_mha_self_attention_matches_torch_multihead_attention(bias):
    """Oracle: nn.MultiheadAttention(batch_first=True) with copied weights."""
    ours = seeded_(MultiHeadAttention(16, 4, bias=bias), seed=5)
    ref = torch_mha_like(ours, bias=bias)
    x = randn(2, 5, 16, seed=6)
    expected, _ = ref(x, x, x, need_weights=False)
    torch.testing.assert_close(ours(x), expected)


def test_mha_cross_attention_matches_torch_multihead_attention():
    """Oracle: nn.MultiheadAttention(query=x, key=value=context), S != L."""
    ours = seeded_(MultiHeadAttention(16, 4), seed=5)
    ref = torch_mha_like(ours)
    x, ctx = randn(2, 5, 16, seed=6), randn(2, 7, 16, seed=7)
    expected, _ = ref(x, ctx, ctx, need_weights=False)
    out = ours(x, context=ctx)
    assert out.shape == (2, 5, 16)
    torch.testing.assert_close(out, expected)


def test_mha_causal_mask_matches_torch_with_inverted_attn_mask():
    """Oracle: nn.MultiheadAttention with attn_mask = ~causal_mask (torch's bool
    attn_mask uses True = NOT allowed)."""
    ours = seeded_(MultiHeadAttention(16, 4), seed=5)
    ref = torch_mha_like(ours)
    x = randn(2, 6, 16, seed=6)
    mask = causal_mask(6)
    expected, _ = ref(x, x, x, attn_mask=~mask, need_weights=False)
    torch.testing.assert_close(ours(x, mask=mask), expected)


def test_mha_padding_mask_matches_torch_key_padding_mask():
    """Oracle: nn.MultiheadAttention key_padding_mask (True = padding) against our
    (B, 1, 1, S) mask (True = allowed) in cross-attention."""
    ours = seeded_(MultiHeadAttention(16, 2), seed=5)
    ref = torch_mha_like(ours)
    x, ctx = randn(2, 3, 16, seed=6), randn(2, 5, 16, seed=7)
    allowed = torch.tensor([[True] * 5, [True, True, True, False, False]])
    expected, _ = ref(x, ctx, ctx, key_padding_mask=~allowed, need_weights=False)
    torch.testing.assert_close(ours(x, context=ctx, mask=allowed[:, None, None, :]), expected)


# --------------------------------------------------------------------------- positions


@pytest.mark.parametrize("seq_len,d_model", [(7, 10), (1, 2), (16, 32)])
def test_sinusoidal_matches_python_loop(seq_len, d_model):
    """Oracle: a Python loop with math.sin / math.cos of p / 10000^(2i/d_model)."""
    pe = sinusoidal_positional_encoding(seq_len, d_model)
    assert pe.shape == (seq_len, d_model) and pe.dtype == torch.float32
    expected = torch.zeros(seq_len, d_model, dtype=torch.float64)
    for p in range(seq_len):
        for i in range(d_model // 2):
            angle = p / 10000 ** (2 * i / d_model)
            expected[p, 2 * i] = math.sin(angle)
            expected[p, 2 * i + 1] = math.cos(angle)
    torch.testing.assert_close(pe.double(), expected, atol=1e-6, rtol=0)
    pe64 = sinusoidal_positional_encoding(seq_len, d_model, dtype=torch.float64)
    assert pe64.dtype == torch.float64
    torch.testing.assert_close(pe64, expected, atol=1e-12, rtol=0)


def rope_loop(x: torch.Tensor, positions: list[float], base: float = 10000.0) -> torch.Tensor:
    """Slow rotate-half RoPE on (L, d): pair (i, i + d/2) rotated by p * base^(-2i/d)."""
    L, d = x.shape
    half = d // 2
    out = torch.zeros(L, d, dtype=torch.float64)
    for p in range(L):
        for i in range(half):
            theta = positions[p] * base ** (-2 * i / d)
            c, s = math.cos(theta), math.sin(theta)
            a, b = float(x[p, i]), float(x[p, i + half])
            out[p, i] = a * c - b * s
            out[p, i + half] = b * c + a * s
    return out


def test_rope_matches_slow_rotate_half_loop_default_positions():
    """Oracle: rope_loop, a per-element loop of the rotate-half formula, positions 0..L-1."""
    x = randn(2, 3, 6, 8, seed=8)
    out = apply_rope(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    for b in range(2):
        for h in range(3):
            expected = rope_loop(x[b, h], list(range(6)))
            torch.testing.assert_close(out[b, h].double(), expected, atol=1e-5, rtol=1e-5)


def test_rope_matches_slow_loop_with_custom_positions_and_base():
    """Oracle: rope_loop with explicit positions (1-D and batched (B, 1, L)) and base."""
    x = randn(2, 3, 4, 6, seed=9)
    pos = torch.tensor([3, 7, 0, 12])
    out = apply_rope(x, positions=pos, base=500.0)
    for b in range(2):
        expected = rope_loop(x[b, 1], pos.tolist(), base=500.0)
        torch.testing.assert_close(out[b, 1].double(), expected, atol=1e-5, rtol=1e-5)
    batched = torch.tensor([[0, 1, 2, 3], [10, 11, 12, 13]])[:, None, :]  # (B, 1, L)
    out = apply_rope(x, positions=batched)
    for b in range(2):
        expected = rope_loop(x[b, 2], batched[b, 0].tolist())
        torch.testing.assert_close(out[b, 2].double(), expected, atol=1e-5, rtol=1e-5)


def test_rope_dot_product_depends_only_on_relative_position():
    """Oracle: the RoPE property <rope(q, m), rope(k, n)> = f(q, k, m - n)."""
    q, k = randn(1, 16, seed=10, dtype=torch.float64), randn(1, 16, seed=11, dtype=torch.float64)

    def score(m: int, n: int) -> torch.Tensor:
        qm = apply_rope(q, positions=torch.tensor([m]))
        kn = apply_rope(k, positions=torch.tensor([n]))
        return (qm * kn).sum()

    for offset in (0, 3, -5):
        ref = score(offset, 0) if offset >= 0 else score(0, -offset)
        for start in (1, 7, 40):
            torch.testing.assert_close(score(start + offset, start), ref)
    assert not torch.isclose(score(3, 0), score(4, 0))


def test_rope_preserves_norms():
    """Oracle: a rotation preserves the Euclidean norm of each (L, d) row."""
    x = randn(2, 5, 8, seed=12)
    out = apply_rope(x, positions=torch.arange(5) * 3)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))


def test_rope_at_position_zero_is_identity():
    """Oracle: angle 0 means cos = 1, sin = 0."""
    x = randn(3, 4, 8, seed=13)
    torch.testing.assert_close(apply_rope(x, positions=torch.zeros(4)), x)


# --------------------------------------------------------------------------- norms and MLP


def test_layer_norm_matches_torch_layer_norm():
    """Oracle: F.layer_norm (biased variance), with and without bias."""
    x = randn(2, 3, 10, seed=14) * 3 + 1
    w, b = randn(10, seed=15), randn(10, seed=16)
    torch.testing.assert_close(layer_norm(x, w, b), F.layer_norm(x, (10,), w, b, eps=1e-5))
    torch.testing.assert_close(
        layer_norm(x, w, None, eps=1e-3), F.layer_norm(x, (10,), w, None, eps=1e-3)
    )


def test_rms_norm_matches_manual_formula_and_torch_rms_norm():
    """Oracle: the float64 formula x / sqrt(mean(x^2) + eps) * w, and F.rms_norm when
    this torch has it."""
    x = randn(2, 3, 10, seed=17) * 2
    w = randn(10, seed=18)
    x64, w64 = x.double(), w.double()
    manual = x64 / torch.sqrt((x64**2).mean(-1, keepdim=True) + 1e-6) * w64
    torch.testing.assert_close(rms_norm(x, w).double(), manual, atol=1e-5, rtol=1e-5)
    if hasattr(F, "rms_norm"):
        torch.testing.assert_close(rms_norm(x, w, eps=1e-4), F.rms_norm(x, (10,), w, eps=1e-4))


def test_gelu_matches_torch_tanh_gelu():
    """Oracle: F.gelu(approximate="tanh")."""
    x = torch.linspace(-6, 6, 241)
    torch.testing.assert_close(gelu(x), F.gelu(x, approximate="tanh"))
    torch.testing.assert_close(
        gelu(randn(3, 4, seed=19)), F.gelu(randn(3, 4, seed=19), approximate="tanh")
    )


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_feedforward_matches_manual_composition(activation):
    """Oracle: F.linear + F.gelu(approximate="tanh") / F.relu with the same weights;
    the state_dict keys are the contract's fc1 / fc2."""
    ff = seeded_(FeedForward(8, 32, activation=activation), seed=20)
    assert set(ff.state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert (ff.fc1.in_features, ff.fc1.out_features) == (8, 32)
    assert (ff.fc2.in_features, ff.fc2.out_features) == (32, 8)
    x = randn(2, 3, 5, 8, seed=21)
    act = (lambda h: F.gelu(h, approximate="tanh")) if activation == "gelu" else F.relu
    h = F.linear(x, ff.fc1.weight, ff.fc1.bias)
    expected = F.linear(act(h), ff.fc2.weight, ff.fc2.bias)
    out = ff(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected)


# --------------------------------------------------------------------------- block


def test_transformer_block_has_the_contract_attributes():
    """Oracle: the contract (ln1, attn, ln2, ff, causal)."""
    block = TransformerBlock(16, 4, 64, causal=False)
    assert isinstance(block.ln1, nn.LayerNorm) and isinstance(block.ln2, nn.LayerNorm)
    assert isinstance(block.attn, MultiHeadAttention) and isinstance(block.ff, FeedForward)
    assert block.causal is False and block.ff.fc1.out_features == 64
    assert {k.split(".")[0] for k in block.state_dict()} == {"ln1", "attn", "ln2", "ff"}


@pytest.mark.parametrize("causal", [True, False])
def test_transformer_block_equals_manual_composition(causal):
    """Oracle: F.layer_norm + nn.MultiheadAttention (copied weights, inverted causal
    mask) + F.gelu(tanh) MLP, composed by hand as a pre-norm residual block."""
    block = seeded_(TransformerBlock(16, 4, 32, causal=causal), seed=22).eval()
    x = randn(2, 6, 16, seed=23)
    ref_attn = torch_mha_like(block.attn)
    h = F.layer_norm(x, (16,), block.ln1.weight, block.ln1.bias)
    attn_mask = ~causal_mask(6) if causal else None
    a, _ = ref_attn(h, h, h, attn_mask=attn_mask, need_weights=False)
    x1 = x + a
    h2 = F.layer_norm(x1, (16,), block.ln2.weight, block.ln2.bias)
    ff = block.ff
    m = F.linear(
        F.gelu(F.linear(h2, ff.fc1.weight, ff.fc1.bias), approximate="tanh"),
        ff.fc2.weight,
        ff.fc2.bias,
    )
    out = block(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x1 + m)


def test_transformer_block_is_causal():
    """Oracle: causality by perturbation: changing inputs after t leaves outputs <= t
    unchanged (and changes later outputs)."""
    block = seeded_(TransformerBlock(16, 4, 32), seed=24)
    x = randn(2, 8, 16, seed=25)
    out = block(x)
    for t in range(7):
        x2 = x.clone()
        x2[:, t + 1 :] = randn(2, 7 - t, 16, seed=100 + t)
        out2 = block(x2)
        torch.testing.assert_close(out2[:, : t + 1], out[:, : t + 1])
        assert not torch.allclose(out2[:, t + 1 :], out[:, t + 1 :])


def test_non_causal_transformer_block_sees_the_future():
    """Oracle: perturbation: with causal=False the first output depends on the last input."""
    block = seeded_(TransformerBlock(16, 4, 32, causal=False), seed=24)
    x = randn(2, 8, 16, seed=25)
    x2 = x.clone()
    x2[:, -1] = randn(2, 16, seed=26)  # not a constant shift, which LayerNorm would erase
    assert not torch.allclose(block(x)[:, 0], block(x2)[:, 0])


# --------------------------------------------------------------------------- GPU-capability


class Env:
    """Makes the same seeded inputs and modules on any device and dtype."""

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.device, self.dtype = torch.device(device), dtype
        self.seed = 1000

    def randn(self, *shape: int) -> torch.Tensor:
        self.seed += 1
        return randn(*shape, seed=self.seed).to(device=self.device, dtype=self.dtype)

    def mask(self, *shape: int) -> torch.Tensor:
        self.seed += 1
        return random_mask(*shape, seed=self.seed).to(self.device)

    def module(self, module: nn.Module) -> nn.Module:
        self.seed += 1
        return seeded_(module, seed=self.seed).to(device=self.device, dtype=self.dtype)


# name -> (function of an Env returning a tuple of outputs, their expected shapes)
CASES = {
    "sdpa": (
        lambda e: scaled_dot_product_attention(
            e.randn(2, 3, 4, 8), e.randn(2, 3, 6, 8), e.randn(2, 3, 6, 5), e.mask(2, 1, 4, 6)
        ),
        [(2, 3, 4, 5), (2, 3, 4, 6)],
    ),
    "sinusoidal_positional_encoding": (
        lambda e: (sinusoidal_positional_encoding(9, 12, device=e.device, dtype=e.dtype),),
        [(9, 12)],
    ),
    "apply_rope": (lambda e: (apply_rope(e.randn(2, 3, 5, 8)),), [(2, 3, 5, 8)]),
    "apply_rope_positions": (
        lambda e: (apply_rope(e.randn(2, 5, 8), positions=torch.arange(5, device=e.device) + 2),),
        [(2, 5, 8)],
    ),
    "layer_norm": (
        lambda e: (layer_norm(e.randn(2, 5, 16), e.randn(16), e.randn(16)),),
        [(2, 5, 16)],
    ),
    "rms_norm": (lambda e: (rms_norm(e.randn(2, 5, 16), e.randn(16)),), [(2, 5, 16)]),
    "gelu": (lambda e: (gelu(e.randn(3, 7)),), [(3, 7)]),
    "mha_self_causal": (
        lambda e: (
            e.module(MultiHeadAttention(16, 4))(e.randn(2, 5, 16), mask=causal_mask(5, e.device)),
        ),
        [(2, 5, 16)],
    ),
    "mha_cross": (
        lambda e: (e.module(MultiHeadAttention(16, 2))(e.randn(2, 5, 16), e.randn(2, 7, 16)),),
        [(2, 5, 16)],
    ),
    "feedforward_gelu": (
        lambda e: (e.module(FeedForward(16, 32))(e.randn(2, 5, 16)),),
        [(2, 5, 16)],
    ),
    "feedforward_relu": (
        lambda e: (e.module(FeedForward(16, 32, activation="relu"))(e.randn(2, 5, 16)),),
        [(2, 5, 16)],
    ),
    "transformer_block_causal": (
        lambda e: (e.module(TransformerBlock(16, 4, 32))(e.randn(2, 5, 16)),),
        [(2, 5, 16)],
    ),
    "transformer_block_bidirectional": (
        lambda e: (e.module(TransformerBlock(16, 4, 32, causal=False))(e.randn(2, 5, 16)),),
        [(2, 5, 16)],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_runs_on_meta_device_with_correct_shapes(name):
    """Oracle: the contract's shapes; meta tensors prove no tensor is created on the
    wrong device and no value is read."""
    fn, shapes = CASES[name]
    outs = fn(Env(META))
    assert [tuple(o.shape) for o in outs] == shapes
    assert all(o.device.type == "meta" for o in outs)


def test_causal_mask_runs_on_meta_device():
    """Oracle: the contract (bool (L, L) on the requested device)."""
    mask = causal_mask(6, device=META)
    assert mask.device.type == "meta" and mask.dtype == torch.bool and mask.shape == (6, 6)


@pytest.mark.parametrize("name", list(CASES))
def test_float64_matches_float32(name):
    """Oracle: the float32 result of the same function on the same seeded inputs."""
    fn, _ = CASES[name]
    outs32, outs64 = fn(Env(dtype=torch.float32)), fn(Env(dtype=torch.float64))
    for o32, o64 in zip(outs32, outs64, strict=True):
        assert o64.dtype == torch.float64
        torch.testing.assert_close(o64.float(), o32, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_bfloat16_stays_bfloat16_and_close_to_float32(name):
    """Oracle: the float32 result, with a tolerance loose enough for bfloat16's 8 bits."""
    fn, _ = CASES[name]
    outs32, outs16 = fn(Env(dtype=torch.float32)), fn(Env(dtype=torch.bfloat16))
    for o32, o16 in zip(outs32, outs16, strict=True):
        assert o16.dtype == torch.bfloat16
        torch.testing.assert_close(o16.float(), o32, atol=5e-2, rtol=2e-2)


# --------------------------------------------------------------------------- invalid arguments


def _e(*shape: int, device: str = "cpu") -> torch.Tensor:
    return torch.zeros(shape, device=device)


INVALID = {
    "sdpa_q_rank": (
        lambda d: scaled_dot_product_attention(
            _e(8, device=d), _e(4, 8, device=d), _e(4, 8, device=d)
        ),
        r"q must have at least 2 dimensions",
    ),
    "sdpa_k_rank": (
        lambda d: scaled_dot_product_attention(
            _e(3, 8, device=d), _e(8, device=d), _e(4, 8, device=d)
        ),
        r"k must have at least 2 dimensions",
    ),
    "sdpa_v_rank": (
        lambda d: scaled_dot_product_attention(
            _e(3, 8, device=d), _e(4, 8, device=d), _e(8, device=d)
        ),
        r"v must have at least 2 dimensions",
    ),
    "sdpa_qk_dim": (
        lambda d: scaled_dot_product_attention(
            _e(3, 8, device=d), _e(4, 6, device=d), _e(4, 8, device=d)
        ),
        r"q and k must have the same last dimension",
    ),
    "sdpa_kv_len": (
        lambda d: scaled_dot_product_attention(
            _e(3, 8, device=d), _e(4, 8, device=d), _e(5, 8, device=d)
        ),
        r"k and v must have the same length",
    ),
    "sdpa_batch": (
        lambda d: scaled_dot_product_attention(
            _e(2, 3, 8, device=d), _e(3, 4, 8, device=d), _e(3, 4, 8, device=d)
        ),
        r"batch\) dimensions of q, k and v",
    ),
    "sdpa_mask_dtype": (
        lambda d: scaled_dot_product_attention(
            _e(3, 8, device=d), _e(4, 8, device=d), _e(4, 8, device=d), mask=_e(3, 4, device=d)
        ),
        r"mask must be a bool tensor",
    ),
    "sdpa_mask_shape": (
        lambda d: scaled_dot_product_attention(
            _e(3, 8, device=d),
            _e(4, 8, device=d),
            _e(4, 8, device=d),
            mask=torch.ones(4, 3, dtype=torch.bool, device=d),
        ),
        r"mask must be broadcastable to \(\.\.\., Lq, Lk\)",
    ),
    "sdpa_mask_grows_output": (
        lambda d: scaled_dot_product_attention(
            _e(3, 8, device=d),
            _e(4, 8, device=d),
            _e(4, 8, device=d),
            mask=torch.ones(2, 3, 4, dtype=torch.bool, device=d),
        ),
        r"mask must be broadcastable",
    ),
    "causal_mask_seq_len": (lambda d: causal_mask(-1, device=d), r"seq_len must be >= 0"),
    "mha_divisible": (lambda d: MultiHeadAttention(10, 3), r"d_model must be divisible by n_heads"),
    "mha_n_heads": (lambda d: MultiHeadAttention(8, 0), r"n_heads must be >= 1"),
    "mha_x_dim": (
        lambda d: MultiHeadAttention(8, 2).to(d)(_e(2, 3, 6, device=d)),
        r"x must have shape \(B, L, d_model=8\)",
    ),
    "mha_x_rank": (
        lambda d: MultiHeadAttention(8, 2).to(d)(_e(3, 8, device=d)),
        r"x must have shape",
    ),
    "mha_context_dim": (
        lambda d: MultiHeadAttention(8, 2).to(d)(_e(2, 3, 8, device=d), _e(2, 4, 6, device=d)),
        r"context must have shape",
    ),
    "mha_context_batch": (
        lambda d: MultiHeadAttention(8, 2).to(d)(_e(2, 3, 8, device=d), _e(3, 4, 8, device=d)),
        r"context must have shape \(B=2",
    ),
    "mha_mask_shape": (
        lambda d: MultiHeadAttention(8, 2).to(d)(
            _e(2, 3, 8, device=d), mask=torch.ones(4, 4, dtype=torch.bool, device=d)
        ),
        r"mask must be broadcastable",
    ),
    "sinusoidal_odd": (lambda d: sinusoidal_positional_encoding(4, 7, device=d), r"d_model"),
    "sinusoidal_seq_len": (
        lambda d: sinusoidal_positional_encoding(-2, 8, device=d),
        r"seq_len must be >= 0",
    ),
    "rope_odd": (lambda d: apply_rope(_e(2, 5, 7, device=d)), r"last dimension of x .*d=7"),
    "rope_rank": (lambda d: apply_rope(_e(8, device=d)), r"x must have at least 2 dimensions"),
    "rope_positions_len": (
        lambda d: apply_rope(_e(2, 5, 8, device=d), positions=torch.arange(4, device=d)),
        r"positions must have shape \(L,\) or \(\.\.\., L\) with L=5",
    ),
    "rope_positions_broadcast": (
        lambda d: apply_rope(_e(2, 3, 5, 8, device=d), positions=_e(2, 5, device=d)),
        r"positions of shape \(2, 5\) do not broadcast with x",
    ),
    "layer_norm_weight": (
        lambda d: layer_norm(_e(2, 8, device=d), _e(6, device=d), _e(8, device=d)),
        r"weight must have shape \(d,\) = \(8,\)",
    ),
    "layer_norm_bias": (
        lambda d: layer_norm(_e(2, 8, device=d), _e(8, device=d), _e(6, device=d)),
        r"bias must have shape \(d,\) = \(8,\)",
    ),
    "layer_norm_scalar": (
        lambda d: layer_norm(_e(device=d), _e(1, device=d), None),
        r"x must have at least 1 dimension",
    ),
    "rms_norm_weight": (
        lambda d: rms_norm(_e(2, 8, device=d), _e(2, 8, device=d)),
        r"weight must have shape \(d,\)",
    ),
    "feedforward_activation": (
        lambda d: FeedForward(8, 16, activation="swish"),
        r"activation must be 'gelu' or 'relu'",
    ),
    "feedforward_x": (
        lambda d: FeedForward(8, 16).to(d)(_e(2, 6, device=d)),
        r"x must have shape \(\.\.\., d_model=8\)",
    ),
    "block_divisible": (lambda d: TransformerBlock(10, 3, 20), r"d_model must be divisible"),
    "block_x_rank": (
        lambda d: TransformerBlock(8, 2, 16).to(d)(_e(5, 8, device=d)),
        r"x must have shape \(B, L, d_model\)",
    ),
}


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_argument_raises_value_error_naming_it(name, device):
    """Oracle: the contract: a ValueError that names the argument, on CPU and on meta
    tensors (the checks read shapes only)."""
    fn, match = INVALID[name]
    with pytest.raises(ValueError, match=match):
        fn(device)


# --------------------------------------------------------------------------- copyability


def test_module_has_no_private_helpers():
    """Oracle: the notebook tool copies single public names; nothing private may exist."""
    private = [n for n in vars(attention) if n.startswith("_") and not n.startswith("__")]
    assert private == []
    public = [n for n, v in vars(attention).items() if inspect.isfunction(v) or inspect.isclass(v)]
    assert sorted(public) == sorted(PUBLIC_NAMES)


def test_public_names_work_when_copied_with_getsource():
    """Oracle: the module itself; each name's inspect.getsource, executed in a namespace
    holding only math, torch, nn and F, gives the same results."""
    ns = {"math": math, "torch": torch, "nn": nn, "F": F}
    for name in PUBLIC_NAMES:
        exec(inspect.getsource(getattr(attention, name)), ns)
    x = randn(2, 5, 16, seed=30)
    block = seeded_(TransformerBlock(16, 4, 32), seed=31)
    copied = ns["TransformerBlock"](16, 4, 32)
    copied.load_state_dict(block.state_dict())
    torch.testing.assert_close(copied(x), block(x))
    torch.testing.assert_close(ns["apply_rope"](x), apply_rope(x))
    pe = ns["sinusoidal_positional_encoding"](5, 16)
    torch.testing.assert_close(pe, sinusoidal_positional_encoding(5, 16))
    torch.testing.assert_close(
        ns["rms_norm"](x, torch.ones(16)), rms_norm(x, torch.ones(16)), rtol=0, atol=0
    )
    w, b = torch.ones(16), torch.zeros(16)
    torch.testing.assert_close(ns["layer_norm"](x, w, b), layer_norm(x, w, b))


def test_public_names_have_docstrings_with_shapes_and_type_hints():
    """Oracle: the conventions: a docstring with Args/Returns and full type hints."""
    for name in PUBLIC_NAMES:
        obj = getattr(attention, name)
        doc = inspect.getdoc(obj) or ""
        assert "Args" in doc, name
        fns = [obj.__init__, obj.forward] if inspect.isclass(obj) else [obj]
        if inspect.isclass(obj):
            assert "Returns" in (inspect.getdoc(obj.forward) or ""), name
        else:
            assert "Returns" in doc, name
        for fn in fns:
            sig = inspect.signature(fn)
            assert sig.return_annotation is not inspect.Signature.empty, (name, fn)
            for p in sig.parameters.values():
                if p.name != "self":
                    assert p.annotation is not inspect.Parameter.empty, (name, p.name)
    assert attention.__doc__ and "Chapter 01" in attention.__doc__


def test_modules_can_be_deep_copied_and_moved():
    """Oracle: nn.Module semantics (the autograder copies and moves reference modules)."""
    block = TransformerBlock(8, 2, 16)
    clone = copy.deepcopy(block).to(torch.float64)
    assert clone.attn.q_proj.weight.dtype == torch.float64
