"""Chapter 05's drivers: how the fine-tuning exercises are called and what is recorded.

They run beside student code and ship to students: plain data in, plain data
out, never an import of solutions/ or of a grading spec. The layers are built
from a case's plain weights, so the answer also says which parameters the
student's code leaves trainable: freezing is half of what these methods do.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from autograder.core.drivers import StateDictMismatch
from autograder.core.spec import Case


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted ``name`` under ``root``, making empty parents as needed."""
    *parents, last = name.split(".")
    node = root
    for part in parents:
        if not hasattr(node, part):
            node.add_module(part, nn.Module())
        node = getattr(node, part)
    node.add_module(last, module)


def toy_model(layout: list[list[Any]]) -> nn.Module:
    """A module tree (no forward) from plain rows; weights follow ``torch.manual_seed(0)``.

    Rows: ["linear", name, in, out, bias], ["embedding", name, n, d], ["norm", name, d],
    ["buffer", name, n] (on the root), ["tie", name, source] (name.weight = source.weight),
    ["freeze", name] (that parameter's requires_grad is False).
    """
    torch.manual_seed(0)
    root = nn.Module()
    for row in layout:
        kind, name = row[0], row[1]
        if kind == "linear":
            _set_module(root, name, nn.Linear(row[2], row[3], bias=row[4]))
        elif kind == "embedding":
            _set_module(root, name, nn.Embedding(row[2], row[3]))
        elif kind == "norm":
            _set_module(root, name, nn.LayerNorm(row[2]))
        elif kind == "buffer":
            root.register_buffer(name, torch.zeros(row[2]))
        elif kind == "tie":
            root.get_submodule(name).weight = root.get_submodule(row[2]).weight
        elif kind == "freeze":
            root.get_parameter(name).requires_grad_(False)
    return root


def _trainable(module: nn.Module) -> list[str]:
    return sorted(n for n, p in module.named_parameters() if p.requires_grad)


def _load(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state``; only names the module lacks are an error (it may hold more)."""
    result = module.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise StateDictMismatch([], result.unexpected_keys)


def _same(actual: Any, expected: torch.Tensor) -> bool:
    """``actual`` is a tensor equal to ``expected`` up to float rounding."""
    return (
        isinstance(actual, torch.Tensor)
        and actual.shape == expected.shape
        and bool(torch.allclose(actual.detach().to(expected.dtype), expected, atol=1e-6, rtol=1e-5))
    )


def kaiming_uniform_like_linear(weight: Any, fan_in: int) -> bool:
    """``weight`` looks drawn as nn.Linear draws its weight: Kaiming-uniform with a = sqrt(5),
    i.e. uniform on [-b, b] with b = 1 / sqrt(fan_in).

    Every value within the bound, and the standard deviation within 20% of the
    uniform's b / sqrt(3) (for n >= 256 values that is over 7 standard errors of the
    sample's; the spec states the false alarm rate and the power).
    """
    if not isinstance(weight, torch.Tensor) or weight.numel() < 2:
        return False
    w = weight.detach().double()
    bound = 1 / math.sqrt(fan_in)
    spread = float(w.std()) / (bound / math.sqrt(3))
    return bool(w.abs().max() <= bound * (1 + 1e-6)) and 0.8 < spread < 1.2


def normal_with_std(weight: Any, std: float) -> bool:
    """``weight`` looks drawn from N(0, std^2): sample std within 20% of ``std``, the mean
    within 5 standard errors of 0, and not a uniform draw (kurtosis above 2.4; a uniform's is
    1.8, a normal's 3)."""
    if not isinstance(weight, torch.Tensor) or weight.numel() < 2:
        return False
    w = weight.detach().double().flatten()
    n, sd = w.numel(), float(w.std())
    if not 0.8 < sd / std < 1.2 or abs(float(w.mean())) > 5 * std / math.sqrt(n):
        return False
    return float(((w - w.mean()) ** 4).mean() / w.var(unbiased=False) ** 2) > 2.4


def _attributes(layer: nn.Module, names: tuple[str, ...]) -> dict[str, Any]:
    """The layer's attributes by name (plain numbers; "missing" where it has none)."""
    found = {}
    for name in names:
        value = getattr(layer, name, "missing")
        found[name] = value if isinstance(value, int | float | str) else repr(value)
    return found


def _base_linear(case: Case) -> nn.Linear:
    weight, bias = case["base_weight"], case.get("base_bias")
    base = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        base.weight.copy_(weight)
        if bias is not None:
            base.bias.copy_(bias)
    return base


LORA_ATTRIBUTES = ("in_features", "out_features", "r", "alpha", "scaling")


def lora_layer(obj: Any, case: Case) -> tuple[Any, ...]:
    """``LoRALinear``: wrap the case's base layer, run it fresh, load A and B, run, merge.

    Returns (whether the fresh layer computes what the base layer does, in eval
    mode; the same in training mode, where dropout must leave the base path alone;
    whether lora_B gets a gradient at initialisation; trainable parameter names;
    output; merged weight; merged output; whether training mode changes the output
    of the layer with the case's A and B on ``case["x_many"]``, i.e. dropout acts on
    the LoRA path; the attributes in_features, out_features, r, alpha, scaling; and,
    for a case with ``check_init``, whether the fresh lora_A looks Kaiming-uniform like
    nn.Linear's weight, else None). The outputs are for ``case["x"]`` in eval mode.
    """
    base = _base_linear(case)
    x, many = case["x"], case["x_many"]
    with torch.no_grad():
        expected = base(x)
    layer = obj(base, **case.get("init", {}))
    if not isinstance(layer, nn.Module):
        raise TypeError(f"{type(layer).__name__} is not a torch.nn.Module subclass")
    layer.train()
    with torch.no_grad():
        base_alone = _same(layer(x), expected)
    layer.eval()
    with torch.enable_grad():
        fresh = layer(x)
        b = dict(layer.named_parameters()).get("lora_B")
        learns = False
        if b is not None and isinstance(fresh, torch.Tensor) and fresh.requires_grad:
            (g,) = torch.autograd.grad(fresh.square().sum(), b, allow_unused=True)
            learns = g is not None and bool(g.abs().sum() > 0)
    unchanged = _same(fresh, expected)
    trainable = _trainable(layer)
    init_ok = None
    if case.get("check_init"):
        init_ok = kaiming_uniform_like_linear(getattr(layer, "lora_A", None), base.in_features)
    attributes = _attributes(layer, LORA_ATTRIBUTES)
    _load(layer, case["state"])
    with torch.no_grad():
        out = layer(x)
        merged = layer.merge()
        if not isinstance(merged, nn.Linear):
            raise TypeError(f"merge() should return an nn.Linear, got {type(merged).__name__}")
        merged_out = merged(x)
        eval_many = layer(many)
        layer.train()
        dropout_acts = not _same(layer(many), eval_many)
        layer.eval()
    return (
        unchanged,
        base_alone,
        learns,
        trainable,
        out,
        merged.weight.detach(),
        merged_out,
        dropout_acts,
        attributes,
        init_ok,
    )


def lora_model(obj: Any, case: Case) -> tuple[Any, ...]:
    """``apply_lora``: a toy model, LoRA applied, then every original linear layer run on x.

    The case's ``lora`` weights (by qualified name + ".lora_A"/".lora_B") are loaded
    after wrapping, so a wrapped layer's output shows its scaling. Returns (wrapped
    layer names, trainable parameter names, the outputs of the linear layers in
    layout order, whether the model returned is the model given).
    """
    model = toy_model(case["layout"])
    linears = [row[1] for row in case["layout"] if row[0] == "linear"]
    result = obj(model, *case.get("args", []), **case.get("kwargs", {}))
    if not isinstance(result, nn.Module):
        raise TypeError(f"apply_lora should return the model, got {type(result).__name__}")
    wrapped = sorted(n for n in linears if type(result.get_submodule(n)) is not nn.Linear)
    trainable = _trainable(result)
    own = result.state_dict()
    fitting = {k: v for k, v in case["lora"].items() if k in own and own[k].shape == v.shape}
    result.load_state_dict(fitting, strict=False)  # layers left unwrapped keep their weights
    result.eval()
    with torch.no_grad():
        outputs = [result.get_submodule(n)(case["inputs"][n]) for n in linears]
    return wrapped, trainable, outputs, result is model


def parameter_counts(obj: Any, case: Case) -> tuple[Any, Any]:
    """``count_parameters`` on a toy model: (all parameters, trainable only)."""
    model = toy_model(case["layout"])
    return obj(model), obj(model, trainable_only=True)


def adapter_forward(obj: Any, case: Case) -> tuple[Any, Any, Any]:
    """``Adapter``: (whether a fresh adapter returns its input, output with the case's weights,
    and for a case with ``check_init`` whether the fresh down layer has nn.Linear's default
    initialisation, else None)."""
    module = obj(**case["init"])
    if not isinstance(module, nn.Module):
        raise TypeError(f"{type(module).__name__} is not a torch.nn.Module subclass")
    module.eval()
    with torch.no_grad():
        identity = _same(module(case["x"]), case["x"])
    init_ok = None
    if case.get("check_init"):
        down = getattr(module, "down", None)
        init_ok = isinstance(down, nn.Linear) and kaiming_uniform_like_linear(
            down.weight, case["init"]["d_model"]
        )
    _load(module, case["state"])
    with torch.no_grad():
        out = module(case["x"])
    return identity, out, init_ok


def soft_prompt_forward(obj: Any, case: Case) -> tuple[Any, Any, Any]:
    """``SoftPrompt``: (output, gradient of sum(output · probe) with respect to the prompt,
    and for a case with ``check_init`` whether the fresh prompt looks drawn from
    N(0, 0.02^2), else None)."""
    module = obj(**case["init"])
    if not isinstance(module, nn.Module):
        raise TypeError(f"{type(module).__name__} is not a torch.nn.Module subclass")
    init_ok = None
    if case.get("check_init"):
        init_ok = normal_with_std(dict(module.named_parameters()).get("prompt"), 0.02)
    _load(module, case["state"])
    module.eval()
    prompt = dict(module.named_parameters()).get("prompt")
    with torch.enable_grad():
        out = module(case["embeds"])
        grad = torch.zeros_like(case["state"]["prompt"])
        if (
            prompt is not None
            and isinstance(out, torch.Tensor)
            and out.requires_grad
            and out.shape == case["probe"].shape
        ):
            (g,) = torch.autograd.grad((out * case["probe"]).sum(), prompt, allow_unused=True)
            grad = grad if g is None else g.detach()
    return (out.detach() if isinstance(out, torch.Tensor) else out), grad, init_ok


def qlora_layer(obj: Any, case: Case) -> tuple[Any, ...]:
    """``QLoRALinear``: built on the case's base layer; run fresh, load A and B, run again.

    Returns (whether the fresh layer's output stays the same when lora_B is set
    to zeros, trainable parameter names, state_dict keys, output with lora_B at
    zeros, output with the case's lora_A and lora_B, the shape and dtype of each
    buffer, the attributes in_features, out_features, r, alpha, scaling, block_size,
    and for a case with ``check_init`` whether the fresh lora_A looks Kaiming-uniform
    like nn.Linear's weight, else None), the outputs for ``case["x"]``.
    """
    layer = obj(_base_linear(case), **case.get("init", {}))
    if not isinstance(layer, nn.Module):
        raise TypeError(f"{type(layer).__name__} is not a torch.nn.Module subclass")
    layer.eval()
    x = case["x"]
    trainable = _trainable(layer)
    keys = sorted(layer.state_dict().keys())
    buffers = {n: f"{tuple(b.shape)} {b.dtype}" for n, b in layer.named_buffers()}
    attributes = _attributes(layer, (*LORA_ATTRIBUTES, "block_size"))
    init_ok = None
    if case.get("check_init"):
        n_in = case["base_weight"].shape[1]
        init_ok = kaiming_uniform_like_linear(getattr(layer, "lora_A", None), n_in)
    with torch.no_grad():
        fresh = layer(x)
        _load(layer, {"lora_B": torch.zeros_like(case["state"]["lora_B"])})
        quantized = layer(x)
    _load(layer, case["state"])
    with torch.no_grad():
        out = layer(x)
    return _same(fresh, quantized), trainable, keys, quantized, out, buffers, attributes, init_ok
