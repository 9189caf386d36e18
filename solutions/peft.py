"""Chapter 05: parameter-efficient fine-tuning, the reference implementation.

Full fine-tuning updates every weight of a pretrained model, and AdamW keeps two
more numbers per weight. Parameter-efficient methods freeze the pretrained
weights and train a small number of new ones:

1. ``LoRALinear``: a frozen ``nn.Linear`` plus a low-rank update
   ``scaling · B A`` (Hu et al., 2021), ``B`` starting at zero so the model is
   unchanged at step 0; ``merge`` folds the update back into one ``nn.Linear``.
2. ``apply_lora``: wrap the chosen linear layers of a model, freeze the rest.
3. ``count_parameters``: how many numbers a model has, or trains.
4. ``Adapter``: a residual bottleneck MLP inserted in the network (Houlsby et
   al., 2019), the identity at initialisation.
5. ``SoftPrompt``: trained vectors put before the input embeddings (Lester et
   al., 2021).
6. ``NF4_LEVELS``, ``quantize_nf4``, ``dequantize_nf4``: the 4-bit NormalFloat
   data type of QLoRA (Dettmers et al., 2023), blockwise absmax scaling.
7. ``QLoRALinear``: LoRA on top of a base weight stored in NF4.

Everything keeps the device and dtype of its inputs. Shape checks read shapes
only, so all of it runs on ``meta`` tensors (quantization included: the nearest
level is an argmin).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# The 16 NormalFloat4 values of QLoRA (as published in bitsandbytes): 7 negative
# and 8 positive quantiles of N(0, 1), an exact zero, scaled to [-1, 1].
NF4_LEVELS = torch.tensor(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ]
)


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update: W x + b + (alpha/r) B A x.

    Attributes (these names are the state_dict keys):
        base: the ``nn.Linear`` given, its weight and bias frozen (requires_grad False).
        lora_A: Parameter (r, in_features), random (Kaiming-uniform, like nn.Linear).
        lora_B: Parameter (out_features, r), zeros: the layer starts as ``base``.
        dropout: ``nn.Dropout(dropout)``, applied to the input of the LoRA path only.
        in_features, out_features: those of base (the layer replaces an nn.Linear).
        r, alpha, scaling: as given, scaling = alpha / r.

    Args:
        base: the pretrained layer (in_features -> out_features).
        r: rank of the update, >= 1.
        alpha: the update is multiplied by alpha / r.
        dropout: dropout probability on the LoRA path, in [0, 1).
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ValueError(f"base must be an nn.Linear, got {type(base).__name__}")
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"r must be an int >= 1, got {r!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.base = base
        self.in_features, self.out_features = base.in_features, base.out_features
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(
            torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype)
        )
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in_features) -> (..., out_features)."""
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape (..., {self.in_features}), got {tuple(x.shape)}")
        update = self.dropout(x) @ self.lora_A.T @ self.lora_B.T  # (..., out_features)
        return self.base(x) + self.scaling * update  # (..., out_features)

    def merge(self) -> nn.Linear:
        """A new ``nn.Linear`` with weight W + scaling · B A (same bias): one matmul again."""
        w = self.base.weight
        merged = nn.Linear(
            self.base.in_features,
            self.base.out_features,
            bias=self.base.bias is not None,
            device=w.device,
            dtype=w.dtype,
        )
        with torch.no_grad():
            merged.weight.copy_(w + self.scaling * self.lora_B @ self.lora_A)  # (out, in)
            if self.base.bias is not None:
                merged.bias.copy_(self.base.bias)
        return merged


def apply_lora(
    model: nn.Module, target_modules: list[str], r: int = 8, alpha: float = 16.0
) -> nn.Module:
    """Wrap the targeted ``nn.Linear`` layers of ``model`` in ``LoRALinear``, freeze the rest.

    A linear layer is targeted when its qualified name (as in ``named_modules``)
    ends with one of ``target_modules`` at a dot boundary: it equals the target
    or ends with "." + target ("q_proj" matches "blocks.0.attn.q_proj", and so
    does "attn.q_proj", but "proj" matches neither). Every parameter of the
    model is frozen, then only the new ``lora_A`` and ``lora_B`` are trainable.
    The model is changed in place and returned.

    Args:
        model: any module.
        target_modules: non-empty list of name suffixes.
        r, alpha: passed to every ``LoRALinear``.

    Returns:
        model.
    """
    if isinstance(target_modules, str) or len(target_modules) == 0:
        raise ValueError(
            f"target_modules must be a non-empty list of names, got {target_modules!r}"
        )
    targets = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and any(name == t or name.endswith("." + t) for t in target_modules)
    ]
    for p in model.parameters():
        p.requires_grad_(False)
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), r=r, alpha=alpha))
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """The number of scalars in the parameters of ``model`` (a shared tensor counts once).

    Buffers are not parameters and are not counted. With ``trainable_only`` only
    the parameters with ``requires_grad`` count.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class Adapter(nn.Module):
    """A residual bottleneck adapter: x + up(gelu(down(x))), the identity at initialisation.

    Attributes (these names are the state_dict keys):
        down: ``nn.Linear(d_model, bottleneck)``, default initialisation.
        up: ``nn.Linear(bottleneck, d_model)``, weight and bias zeros.

    The activation is the exact GELU (``F.gelu``, erf form).

    Args:
        d_model: width of the input and the output.
        bottleneck: hidden width, >= 1 (usually much smaller than d_model).
    """

    def __init__(self, d_model: int, bottleneck: int) -> None:
        super().__init__()
        if d_model < 1 or bottleneck < 1:
            raise ValueError(
                f"d_model and bottleneck must be >= 1, got d_model={d_model}, "
                f"bottleneck={bottleneck}"
            )
        self.down = nn.Linear(d_model, bottleneck)
        self.up = nn.Linear(bottleneck, d_model)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., d_model) -> (..., d_model)."""
        if x.dim() < 1 or x.shape[-1] != self.down.in_features:
            raise ValueError(
                f"x must have shape (..., {self.down.in_features}), got {tuple(x.shape)}"
            )
        return x + self.up(F.gelu(self.down(x)))  # (..., d_model)


class SoftPrompt(nn.Module):
    """``n_tokens`` trained vectors put before the input embeddings (prompt tuning).

    Attributes (this name is the state_dict key):
        prompt: Parameter (n_tokens, d_model), normal with std 0.02 at initialisation.

    Args:
        n_tokens: number of virtual tokens, >= 1.
        d_model: embedding width.
    """

    def __init__(self, n_tokens: int, d_model: int) -> None:
        super().__init__()
        if n_tokens < 1 or d_model < 1:
            raise ValueError(
                f"n_tokens and d_model must be >= 1, got n_tokens={n_tokens}, d_model={d_model}"
            )
        self.prompt = nn.Parameter(0.02 * torch.randn(n_tokens, d_model))

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        """embeds (B, L, d_model) -> (B, n_tokens + L, d_model), the prompt first."""
        if embeds.dim() != 3 or embeds.shape[-1] != self.prompt.shape[1]:
            raise ValueError(
                f"embeds must have shape (B, L, {self.prompt.shape[1]}), got {tuple(embeds.shape)}"
            )
        B = embeds.shape[0]
        prompt = self.prompt.to(embeds.dtype).expand(B, -1, -1)  # (B, n_tokens, d_model)
        return torch.cat([prompt, embeds], dim=1)  # (B, n_tokens + L, d_model)


def quantize_nf4(w: torch.Tensor, block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """4-bit NormalFloat quantization with one absmax scale per block.

    ``w`` is flattened (row-major) and cut into blocks of ``block_size``
    consecutive values; each block is divided by its largest absolute value and
    every value is replaced by the index of the nearest of the 16 ``NF4_LEVELS``.
    A block of zeros has absmax 0 and codes 7 (the level 0.0). One code per byte
    here; a real kernel packs two 4-bit codes into each byte.

    Args:
        w: any shape, numel a multiple of block_size, floating point.
        block_size: values per block, >= 1.

    Returns:
        codes: (numel,) uint8 in [0, 15].
        absmax: (numel // block_size,) in w's dtype.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
    if w.numel() == 0 or w.numel() % block_size != 0:
        raise ValueError(
            f"w.numel() = {w.numel()} must be a positive multiple of block_size = {block_size}"
        )
    blocks = w.reshape(-1, block_size)  # (n_blocks, block_size)
    absmax = blocks.abs().amax(dim=1)  # (n_blocks,)
    scaled = blocks / absmax.clamp_min(torch.finfo(w.dtype).tiny)[:, None]  # in [-1, 1]
    levels = NF4_LEVELS.to(device=w.device, dtype=w.dtype)  # (16,)
    codes = (scaled[..., None] - levels).abs().argmin(dim=-1)  # (n_blocks, block_size)
    return codes.reshape(-1).to(torch.uint8), absmax


def dequantize_nf4(
    codes: torch.Tensor, absmax: torch.Tensor, shape: tuple[int, ...], block_size: int = 64
) -> torch.Tensor:
    """The weights back from ``quantize_nf4``: NF4_LEVELS[code] times its block's absmax.

    Args:
        codes: (numel,) integers in [0, 15].
        absmax: (numel // block_size,), floating point.
        shape: the shape of the weight, with prod(shape) == numel.
        block_size: as used to quantize.

    Returns:
        w: tensor of ``shape`` in absmax's dtype.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
    if codes.dim() != 1 or math.prod(shape) != codes.numel():
        raise ValueError(
            f"codes must be 1-D with prod(shape) = {math.prod(shape)} values, "
            f"got shape {tuple(codes.shape)}"
        )
    if absmax.dim() != 1 or absmax.numel() * block_size != codes.numel():
        raise ValueError(
            f"absmax must have shape ({codes.numel() // block_size},) for block_size="
            f"{block_size}, got {tuple(absmax.shape)}"
        )
    levels = NF4_LEVELS.to(device=absmax.device, dtype=absmax.dtype)  # (16,)
    values = levels[codes.long()].view(-1, block_size)  # (n_blocks, block_size)
    return (values * absmax[:, None]).reshape(shape)  # shape


class QLoRALinear(nn.Module):
    """LoRA on a base weight stored in NF4: dequantize(W) x + b + (alpha/r) B A x.

    The base weight is quantized once, at construction (``quantize_nf4``), and
    only its codes and scales are kept; the full-precision weight is not.

    Attributes (these names are the state_dict keys):
        codes: buffer (out_features * in_features,) uint8, the NF4 codes of W.
        absmax: buffer (out_features * in_features // block_size,), W's dtype.
        bias: buffer (out_features,) copied from base (absent if base has none),
            frozen.
        lora_A: Parameter (r, in_features), Kaiming-uniform like ``LoRALinear``.
        lora_B: Parameter (out_features, r), zeros.
        in_features, out_features, r, alpha, scaling (= alpha / r), block_size.

    Args:
        base: the pretrained ``nn.Linear``; its weight's numel must be a multiple
            of block_size.
        r: rank of the update, >= 1.
        alpha: the update is multiplied by alpha / r.
        block_size: values per absmax block.
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, block_size: int = 64):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ValueError(f"base must be an nn.Linear, got {type(base).__name__}")
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"r must be an int >= 1, got {r!r}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.r, self.alpha, self.scaling, self.block_size = r, alpha, alpha / r, block_size
        w = base.weight.detach()
        codes, absmax = quantize_nf4(w, block_size)  # (out*in,), (out*in // block_size,)
        self.register_buffer("codes", codes)
        self.register_buffer("absmax", absmax)
        self.register_buffer("bias", None if base.bias is None else base.bias.detach().clone())
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(
            torch.zeros(self.out_features, r, device=w.device, dtype=w.dtype)
        )
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in_features) -> (..., out_features)."""
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape (..., {self.in_features}), got {tuple(x.shape)}")
        shape = (self.out_features, self.in_features)
        weight = dequantize_nf4(self.codes, self.absmax, shape, self.block_size)  # (out, in)
        update = x @ self.lora_A.T @ self.lora_B.T  # (..., out_features)
        return F.linear(x, weight.to(x.dtype), self.bias) + self.scaling * update
