"""The reference of chapter 05 (solutions/peft.py) against independent oracles.

Oracles: ``F.linear`` with the explicitly merged weight W + (alpha/r) B A for the
LoRA layers; a walk over ``named_parameters`` with ``data_ptr`` bookkeeping for
the parameter count; the NF4 levels derived here from normal quantiles
(``torch.special.ndtri``, QLoRA's construction) and the values published with
bitsandbytes; a slow Python loop (nearest level of each value, one by one) for
the quantization. Everything runs on ``meta`` tensors too: the quantizer's
nearest level is an argmin, not a data-dependent branch.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import solutions.peft as P
from course.helpers import replace_modules
from solutions.architectures import GPT

# The NF4 values as printed in the QLoRA paper's appendix / bitsandbytes (rounded there).
PUBLISHED_NF4 = [
    -1.0, -0.6962, -0.5251, -0.3949, -0.2844, -0.1848, -0.0911, 0.0,
    0.0796, 0.1609, 0.2461, 0.3379, 0.4407, 0.5626, 0.7230, 1.0,
]  # fmt: skip


def _linear(n_in: int, n_out: int, bias: bool = True, seed: int = 0, **kw) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out, bias=bias, **kw)


def _randomise_b(layer: nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g))


# --------------------------------------------------------------------------- LoRALinear


def test_lora_starts_as_the_base_layer_with_only_a_and_b_trainable() -> None:
    base = _linear(6, 5)
    x = torch.randn(2, 3, 6)
    expected = base(x)
    layer = P.LoRALinear(base, r=2, alpha=4.0)
    assert torch.equal(layer.lora_B, torch.zeros(5, 2)) and layer.lora_A.abs().sum() > 0
    assert torch.allclose(layer(x), expected)
    assert sorted(n for n, p in layer.named_parameters() if p.requires_grad) == [
        "lora_A",
        "lora_B",
    ]
    assert layer.scaling == 2.0
    layer(x).square().sum().backward()
    assert layer.lora_B.grad.abs().sum() > 0  # B learns from step 0 (A is random)
    assert layer.lora_A.grad.abs().sum() == 0  # A's gradient goes through B = 0


@pytest.mark.parametrize("r, alpha, bias", [(1, 1.0, True), (3, 6.0, False), (8, 16.0, True)])
def test_lora_forward_and_merge_match_the_merged_weight(r: int, alpha: float, bias: bool) -> None:
    base = _linear(7, 4, bias=bias)
    layer = P.LoRALinear(base, r=r, alpha=alpha)
    _randomise_b(layer)
    x = torch.randn(3, 2, 7)
    w = base.weight + alpha / r * layer.lora_B @ layer.lora_A  # the oracle's merged weight
    expected = F.linear(x, w, base.bias)
    assert torch.allclose(layer(x), expected, atol=1e-5)
    merged = layer.merge()
    assert type(merged) is nn.Linear and torch.allclose(merged(x), expected, atol=1e-5)
    assert (merged.bias is None) == (not bias)


def test_lora_dropout_only_touches_the_low_rank_path() -> None:
    base = _linear(8, 8)
    layer = P.LoRALinear(base, r=4, dropout=0.5)
    x = torch.randn(16, 8)
    layer.train()
    assert torch.allclose(layer(x), base(x))  # B = 0: whatever dropout does, nothing changes
    _randomise_b(layer)
    torch.manual_seed(0)
    a = layer(x)
    torch.manual_seed(1)
    b = layer(x)
    assert not torch.allclose(a, b)  # train mode: dropout is random
    layer.eval()
    expected = F.linear(x, base.weight + layer.scaling * layer.lora_B @ layer.lora_A, base.bias)
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_lora_bad_arguments() -> None:
    base = _linear(4, 3)
    for kwargs, word in (({"r": 0}, "r"), ({"dropout": 1.0}, "dropout"), ({"r": 2.5}, "r")):
        with pytest.raises(ValueError, match=word):
            P.LoRALinear(base, **kwargs)
    with pytest.raises(ValueError, match="base"):
        P.LoRALinear(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="x"):
        P.LoRALinear(base)(torch.randn(2, 5))


# --------------------------------------------------------------------------- apply_lora


def _tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(vocab_size=17, d_model=16, n_layers=2, n_heads=2, max_seq_len=12)


def test_apply_lora_wraps_the_targets_and_freezes_the_rest() -> None:
    model = _tiny_gpt()
    ids = torch.randint(17, (2, 9))
    before = model(ids)
    out = P.apply_lora(model, ["q_proj", "v_proj"], r=2, alpha=4.0)
    assert out is model
    wrapped = sorted(n for n, m in model.named_modules() if isinstance(m, P.LoRALinear))
    assert wrapped == [f"blocks.{i}.attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{w}.lora_{x}" for w in wrapped for x in "AB"}
    assert torch.allclose(model(ids), before)  # unchanged at step 0
    assert P.count_parameters(model, trainable_only=True) == 4 * (
        2 * 16 + 16 * 2
    )  # 4 layers, A (2, 16) and B (16, 2)


def test_apply_lora_matches_at_dot_boundaries() -> None:
    model = nn.Module()
    model.attn = nn.Module()
    model.crossattn = nn.Module()
    model.attn.c_proj = nn.Linear(4, 4)
    model.crossattn.c_proj = nn.Linear(4, 4)
    model.c_projection = nn.Linear(4, 4)
    P.apply_lora(model, ["attn.c_proj"])
    kinds = {n: type(m).__name__ for n, m in model.named_children()}
    assert type(model.attn.c_proj) is P.LoRALinear
    assert type(model.crossattn.c_proj) is nn.Linear and kinds["c_projection"] == "Linear"
    with pytest.raises(ValueError, match="target_modules"):
        P.apply_lora(nn.Linear(2, 2), [])


def test_merging_every_lora_layer_gives_the_same_logits() -> None:
    model = P.apply_lora(_tiny_gpt(), ["q_proj", "k_proj", "v_proj", "out_proj", "fc1"], r=3)
    for m in model.modules():
        if isinstance(m, P.LoRALinear):
            _randomise_b(m, seed=len(m.lora_B))
    ids = torch.randint(17, (3, 10))
    lora_logits = model(ids)
    replace_modules(model, P.LoRALinear, P.LoRALinear.merge)
    assert not any(isinstance(m, P.LoRALinear) for m in model.modules())
    assert torch.allclose(model(ids), lora_logits, atol=1e-5)


# ---------------------------------------------------------------------- count_parameters


def _unique_count(model: nn.Module, trainable_only: bool) -> int:
    seen, total = set(), 0
    for _, p in model.named_parameters(remove_duplicate=False):
        if p.data_ptr() in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(p.data_ptr())
        total += math.prod(p.shape)
    return total


def test_count_parameters_counts_shared_weights_once_and_no_buffers() -> None:
    model = _tiny_gpt()  # the output layer is tied to the token embedding
    model.register_buffer("extra", torch.zeros(100))
    model.ln_f.weight.requires_grad_(False)
    for flag in (False, True):
        assert P.count_parameters(model, flag) == _unique_count(model, flag)
    assert P.count_parameters(model) - P.count_parameters(model, True) == 16


# ------------------------------------------------------------------ Adapter and SoftPrompt


def test_adapter_is_the_identity_at_first_then_the_bottleneck_formula() -> None:
    torch.manual_seed(0)
    adapter = P.Adapter(8, 3)
    x = torch.randn(2, 5, 8)
    assert torch.equal(adapter(x), x)
    with torch.no_grad():
        adapter.up.weight.normal_()
        adapter.up.bias.normal_()
    h = F.gelu(x @ adapter.down.weight.T + adapter.down.bias)
    expected = x + h @ adapter.up.weight.T + adapter.up.bias
    assert torch.allclose(adapter(x), expected, atol=1e-6)
    assert sorted(adapter.state_dict()) == ["down.bias", "down.weight", "up.bias", "up.weight"]
    with pytest.raises(ValueError, match="bottleneck"):
        P.Adapter(8, 0)
    with pytest.raises(ValueError, match="x"):
        adapter(torch.randn(2, 7))


def test_soft_prompt_comes_first_and_learns() -> None:
    sp = P.SoftPrompt(3, 4)
    embeds = torch.randn(2, 5, 4)
    out = sp(embeds)
    assert out.shape == (2, 8, 4)
    assert torch.equal(out[:, 3:], embeds)
    assert torch.equal(out[0, :3], sp.prompt) and torch.equal(out[1, :3], sp.prompt)
    out.sum().backward()
    assert torch.equal(sp.prompt.grad, torch.full((3, 4), 2.0))  # one copy per sequence
    with pytest.raises(ValueError, match="embeds"):
        sp(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="n_tokens"):
        P.SoftPrompt(0, 4)


# ---------------------------------------------------------------------------------- NF4


def _derived_nf4() -> torch.Tensor:
    """QLoRA's construction: quantiles of N(0, 1) at evenly spaced probabilities."""
    offset = 0.5 * (1 / 32 + 1 / 30)  # 0.9677...: 1 - offset is the outermost probability
    offset = 1 - offset
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])  # 8
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])  # 7
    levels = torch.cat([pos, neg, torch.zeros(1, dtype=torch.float64)]).sort().values
    return levels / levels.abs().max()


def test_nf4_levels_are_the_qlora_levels() -> None:
    derived = _derived_nf4()
    assert abs(1 - 0.5 * (1 / 32 + 1 / 30) - 0.9677083) < 1e-7
    assert P.NF4_LEVELS.shape == (16,) and P.NF4_LEVELS.dtype == torch.float32
    assert torch.allclose(P.NF4_LEVELS.double(), derived, atol=1e-6)
    assert torch.allclose(P.NF4_LEVELS.double(), torch.tensor(PUBLISHED_NF4).double(), atol=1e-4)
    assert P.NF4_LEVELS[7] == 0 and P.NF4_LEVELS[0] == -1 and P.NF4_LEVELS[15] == 1
    assert bool((P.NF4_LEVELS[1:] > P.NF4_LEVELS[:-1]).all())


def _loop_quantize(w: torch.Tensor, block_size: int) -> tuple[list[int], list[float]]:
    flat = w.reshape(-1).tolist()
    levels = P.NF4_LEVELS.double().tolist()
    codes, scales = [], []
    for start in range(0, len(flat), block_size):
        block = flat[start : start + block_size]
        m = max(abs(v) for v in block)
        scales.append(m)
        for v in block:
            s = v / m if m > 0 else 0.0
            codes.append(min(range(16), key=lambda i: abs(s - levels[i])))
    return codes, scales


@pytest.mark.parametrize("shape, block", [((8, 16), 64), ((4, 24), 32), ((128,), 16), ((3, 5), 5)])
def test_quantize_matches_a_loop_and_dequantize_inverts_it(shape, block: int) -> None:
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(block), dtype=torch.float64)
    w.view(-1)[:block] = 0.0  # a block of zeros: codes of the level 0
    codes, absmax = P.quantize_nf4(w, block)
    loop_codes, loop_scales = _loop_quantize(w, block)
    assert codes.dtype == torch.uint8 and codes.tolist() == loop_codes
    assert torch.allclose(absmax, torch.tensor(loop_scales, dtype=torch.float64))
    assert codes[:block].tolist() == [7] * block
    back = P.dequantize_nf4(codes, absmax, shape, block)
    assert back.shape == shape and back.dtype == torch.float64
    expected = P.NF4_LEVELS.double()[codes.long()] * absmax.repeat_interleave(block)
    assert torch.equal(back.reshape(-1), expected)
    # The values that are levels times their absmax come back exactly.
    again = P.quantize_nf4(back, block)[0]
    assert torch.equal(again, codes)


def test_nf4_beats_uniform_4bit_on_normal_weights() -> None:
    w = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    codes, absmax = P.quantize_nf4(w, 64)
    nf4_err = (P.dequantize_nf4(codes, absmax, w.shape, 64) - w).square().mean()
    blocks = w.reshape(-1, 64)
    scale = blocks.abs().amax(1, keepdim=True)
    uniform = torch.linspace(-1, 1, 16)  # 16 evenly spaced levels, the same absmax blocks
    nearest = uniform[(blocks[..., None] / scale[..., None] - uniform).abs().argmin(-1)]
    uni_err = (nearest * scale - blocks).square().mean()
    assert nf4_err < 0.9 * uni_err, (float(nf4_err), float(uni_err))


def test_quantize_bad_arguments() -> None:
    with pytest.raises(ValueError, match="block_size"):
        P.quantize_nf4(torch.randn(10), 4)
    with pytest.raises(ValueError, match="block_size"):
        P.quantize_nf4(torch.randn(8), 0)
    codes, absmax = P.quantize_nf4(torch.randn(4, 8), 8)
    with pytest.raises(ValueError, match="shape"):
        P.dequantize_nf4(codes, absmax, (5, 8), 8)
    with pytest.raises(ValueError, match="absmax"):
        P.dequantize_nf4(codes, absmax[:3], (4, 8), 8)


# --------------------------------------------------------------------------- QLoRALinear


def test_qlora_is_lora_on_the_dequantized_weight_and_keeps_no_float_weight() -> None:
    base = _linear(32, 8)
    layer = P.QLoRALinear(base, r=2, alpha=4.0, block_size=32)
    assert sorted(layer.state_dict()) == ["absmax", "bias", "codes", "lora_A", "lora_B"]
    assert sorted(n for n, p in layer.named_parameters()) == ["lora_A", "lora_B"]
    assert layer.codes.dtype == torch.uint8 and layer.absmax.shape == (8,)
    _randomise_b(layer)
    x = torch.randn(3, 32)
    codes, absmax = _loop_quantize(base.weight.detach(), 32)
    w_q = (P.NF4_LEVELS[torch.tensor(codes)] * torch.tensor(absmax).repeat_interleave(32)).view(
        8, 32
    )
    expected = F.linear(x, w_q + 2.0 * layer.lora_B @ layer.lora_A, base.bias)
    assert torch.allclose(layer(x), expected, atol=1e-5)
    err = (w_q - base.weight).abs().max()
    assert 0 < err < 0.2 * base.weight.abs().max()  # quantized: close, not equal
    no_bias = P.QLoRALinear(_linear(16, 4, bias=False), block_size=16)
    assert "bias" not in no_bias.state_dict() and no_bias(torch.randn(2, 16)).shape == (2, 4)


# ------------------------------------------------------------------ devices and dtypes


def _all_on(device: str, dtype: torch.dtype) -> list[torch.Tensor]:
    base = nn.Linear(16, 8, device=device, dtype=dtype)
    x = torch.randn(2, 3, 16, device=device, dtype=dtype)
    lora = P.LoRALinear(base, r=2)
    qlora = P.QLoRALinear(base, r=2, block_size=16)
    adapter = P.Adapter(16, 4).to(device=device, dtype=dtype)
    prompt = P.SoftPrompt(2, 16).to(device=device, dtype=dtype)
    codes, absmax = P.quantize_nf4(x, 16)
    return [
        lora(x),
        lora.merge().weight,
        qlora(x),
        adapter(x),
        prompt(x),
        codes,
        absmax,
        P.dequantize_nf4(codes, absmax, x.shape, 16),
    ]


def test_everything_runs_on_meta() -> None:
    outs = _all_on("meta", torch.float32)
    assert all(o.device.type == "meta" for o in outs)
    assert [tuple(o.shape) for o in outs] == [
        (2, 3, 8), (8, 16), (2, 3, 8), (2, 3, 16), (2, 5, 16), (96,), (6,), (2, 3, 16),
    ]  # fmt: skip
    model = P.apply_lora(GPT(17, 16, 1, 2, 8).to("meta"), ["q_proj"])
    assert model.blocks[0].attn.q_proj.lora_A.device.type == "meta"


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtypes_are_kept(dtype: torch.dtype) -> None:
    outs = _all_on("cpu", dtype)
    assert outs[5].dtype == torch.uint8
    assert all(o.dtype == dtype for i, o in enumerate(outs) if i != 5)
