"""Stand-ins: the reference answers, from the parent, in place of a student's failing
function or class, so that one mistake costs one exercise.

The reference never enters the student's process. A stand-in sends its arguments out as
plain data and gets plain data back (see :func:`autograder.core.channel.ask`):

- a function: the answer, the state after the call of each generator argument, and
  the tensors (or parameters' gradients) the reference changed in place, which are
  copied back into the caller's objects (as ``clip_grad_norm`` changes ``p.grad``);
- where gradients flow through the call, a second question in ``backward``: the
  reference's vector-Jacobian product for the gradient that arrives, so training
  through a stand-in works (``torch.autograd.Function``);
- a class (an ``nn.Module``): the constructor's question returns the reference's
  parameters and buffers, under the reference's names, so a caller can load its state
  into it; each ``forward`` sends the module's current state with its inputs and the
  parent answers with ``torch.func.functional_call``, gradients included.

The child side is :func:`stand_in`; the parent side is :func:`answer_with`.
"""

from __future__ import annotations

import importlib
import inspect
import types
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from autograder.core.drivers import clone_nested

Ask = Callable[[str, list[Any], dict[str, Any]], Any]

# Plain-data markers for what a tensor alone cannot say.
GENERATOR = "__torch_generator_state__"  # a torch.Generator: its state
PARAMETER = "__parameter__"  # an nn.Parameter: data, grad, requires_grad
LINEAR = "__linear__"  # an nn.Linear argument (LoRA wraps one): its parameters
RECIPE = "__recipe__"  # a model the grader built from plain data: how to build it again
OBJECT = "__object__"  # a plain object (a KVCache): its attributes, as the reference's class
MARKERS = (GENERATOR, PARAMETER, LINEAR, RECIPE, OBJECT)
# The models a recipe may name (the grader's own test models, built by the public
# drivers, which set ``model.stand_in_recipe = (kind, args)``): kind -> module, builder.
RECIPES = {
    "table_lm": ("autograder.core.draws", "TableLM"),
    "course_gpt": ("autograder.public.inference", "build_gpt"),
}
# Keyword arguments of a question that are not the function's own.
VJP = "__vjp__"  # a backward question: the gradient arriving at each output tensor
CONSTRUCT = "__construct__"  # a class's constructor
MODULE = "__module__"  # a class's forward: its constructor's arguments and current state
METHOD = "__method__"  # a plain class's method or property: the object's attributes, the name


def _is_marker(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in MARKERS


def leaves(value: Any) -> list[Any]:
    """Every leaf of nested lists, tuples and dicts (a marker counts as one leaf), in an
    order both sides of a question agree on."""
    if isinstance(value, list | tuple):
        return [leaf for v in value for leaf in leaves(v)]
    if isinstance(value, dict) and not _is_marker(value):
        return [leaf for v in value.values() for leaf in leaves(v)]
    return [value]


def _rebuild(value: Any, tensors: Iterator[torch.Tensor]) -> Any:
    """``value`` with each tensor leaf replaced by the next of ``tensors``."""
    if isinstance(value, torch.Tensor):
        return next(tensors)
    if isinstance(value, list | tuple):
        return type(value)(_rebuild(v, tensors) for v in value)
    if isinstance(value, dict) and not _is_marker(value):
        return {k: _rebuild(v, tensors) for k, v in value.items()}
    return value


def _attributes(obj: Any) -> dict[str, Any]:
    """A plain object's public attributes (what travels for it)."""
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


# ----------------------------------------------------------------- the child's side


def _materialize(value: Any) -> Any:
    """Lists for one-shot iterators (``model.parameters()``), so they can be sent and
    their items still be reached afterwards."""
    if isinstance(value, types.GeneratorType | map | filter | zip):
        return [_materialize(v) for v in value]
    if isinstance(value, list | tuple):
        return type(value)(_materialize(v) for v in value)
    if isinstance(value, dict):
        return {k: _materialize(v) for k, v in value.items()}
    return value


def _plain(value: Any, name: str) -> Any:
    """An argument as plain data (CPU tensors, numbers, strings, markers)."""
    if isinstance(value, nn.Parameter):
        grad = None if value.grad is None else value.grad.detach().to("cpu")
        data = value.detach().to("cpu")
        return {PARAMETER: {"data": data, "grad": grad, "requires_grad": value.requires_grad}}
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if value is None or isinstance(value, bool | int | float | str | torch.dtype):
        return value
    if isinstance(value, torch.device):
        return "cpu"  # the parent answers on its CPU; the answer is moved back
    if isinstance(value, torch.Generator):  # its state goes, the state after comes back
        return {GENERATOR: value.get_state()}
    recipe = getattr(value, "stand_in_recipe", None)
    if isinstance(value, nn.Module) and isinstance(recipe, tuple) and recipe[0] in RECIPES:
        return {RECIPE: {"kind": recipe[0], "args": _plain(list(recipe[1]), name)}}
    if type(value) is nn.Linear:
        bias = None if value.bias is None else _plain(value.bias, name)
        return {LINEAR: {"weight": _plain(value.weight, name), "bias": bias}}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v, name) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain(v, name) for k, v in value.items()}
    kind = getattr(type(value), "stand_in_kind", type(value).__name__)
    if not isinstance(value, nn.Module) and hasattr(value, "__dict__"):
        return {OBJECT: {"kind": kind, "state": _plain(_attributes(value), name)}}
    raise TypeError(f"the reference's `{name}` cannot stand in for a {type(value).__name__}")


def _first_device(values: list[Any]) -> torch.device | None:
    for v in values:
        if isinstance(v, torch.device):
            return v
        if isinstance(v, torch.Tensor):
            return v.device
    return None


def _to_device(value: Any, device: torch.device | None) -> Any:
    if device is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list | tuple):
        return type(value)(_to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


def _write_back(originals: list[Any], changed: dict[str, Any]) -> None:
    """Copy what the reference changed in place into the caller's own objects."""
    with torch.no_grad():
        for index, new in changed.items():
            leaf = originals[int(index)]
            if isinstance(leaf, nn.Parameter) and isinstance(new, dict):
                leaf.copy_(new["data"].to(leaf.device, leaf.dtype))
                grad = new["grad"]
                leaf.grad = None if grad is None else grad.to(leaf.device, leaf.dtype)
            elif isinstance(leaf, torch.Tensor) and isinstance(new, torch.Tensor):
                leaf.copy_(new.to(leaf.device, leaf.dtype))
            elif isinstance(new, dict) and OBJECT in new:
                device = _first_device(leaves(list(vars(leaf).values())))
                for key, v in new[OBJECT].items():
                    setattr(leaf, key, _to_device(v, device))


def _ask_call(name: str, ask: Ask, args: Any, kwargs: Any) -> Any:
    """The parent's answer for ``name(*args, **kwargs)``, differentiable where the
    arguments require gradients."""
    args, kwargs = _materialize(list(args)), _materialize(dict(kwargs))
    originals = leaves([args, kwargs])
    plain_args, plain_kwargs = _plain(args, name), _plain(kwargs, name)
    device = _first_device(originals)
    reply = ask(name, plain_args, plain_kwargs)
    generators = [a for a in originals if isinstance(a, torch.Generator)]
    for generator, state in zip(generators, reply.get("generator_states", []), strict=True):
        generator.set_state(state)  # as if the reference had drawn from it here
    _write_back(originals, reply.get("changed", {}))
    value = reply["value"]
    outputs = [o for o in leaves(value) if isinstance(o, torch.Tensor)]
    if device is not None:
        outputs = [o.to(device) for o in outputs]
    wrt = [
        i for i, leaf in enumerate(originals)
        if isinstance(leaf, torch.Tensor) and leaf.requires_grad
    ] if torch.is_grad_enabled() else []  # fmt: skip
    if wrt and any(o.is_floating_point() for o in outputs):
        inputs = [originals[i] for i in wrt]
        outputs = list(_differentiable(name, ask, plain_args, plain_kwargs, wrt, inputs, outputs))
    return _rebuild(value, iter(outputs))


def _differentiable(
    name: str,
    ask: Ask,
    plain_args: list[Any],
    plain_kwargs: dict[str, Any],
    wrt: list[int],
    inputs: list[torch.Tensor],
    outputs: list[torch.Tensor],
) -> tuple[torch.Tensor, ...]:
    """``outputs`` joined to the graph of ``inputs``: their gradient is the reference's
    vector-Jacobian product, asked of the parent when backward reaches them."""

    class ReferenceAnswer(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
            ctx.mark_non_differentiable(*[o for o in outputs if not o.is_floating_point()])
            return tuple(outputs)

        @staticmethod
        def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
            arriving = [None if g is None else g.detach().to("cpu") for g in grads]
            question = {**plain_kwargs, VJP: {"wrt": wrt, "grad_outputs": arriving}}
            answer = ask(name, plain_args, question)["value"]
            return tuple(
                None if g is None else g.to(t.device, t.dtype)
                for g, t in zip(answer, inputs, strict=True)
            )

    return ReferenceAnswer.apply(*inputs)


def _register(module: nn.Module, key: str, tensor: torch.Tensor, kind: list[Any]) -> None:
    """Put ``tensor`` at the dotted ``key`` of ``module`` (making plain submodules on the
    way), as a parameter or a (non-)persistent buffer."""
    *path, leaf = key.split(".")
    for part in path:
        if part not in module._modules:
            module.add_module(part, nn.Module())
        module = module._modules[part]  # type: ignore[assignment]
    is_parameter, flag = kind
    if is_parameter:
        module.register_parameter(leaf, nn.Parameter(tensor, requires_grad=bool(flag)))
    else:
        module.register_buffer(leaf, tensor, persistent=bool(flag))


def stand_in_class(name: str, ask: Ask) -> type[nn.Module]:
    """An ``nn.Module`` with the reference's parameters and buffers whose forward the
    parent computes (the reference class's code stays with the parent)."""

    class StandIn(nn.Module):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__()
            args, kwargs = _materialize(list(args)), _materialize(dict(kwargs))
            init = [_plain(args, name), _plain(kwargs, name)]
            reply = ask(name, init[0], {**init[1], CONSTRUCT: True})
            self._stand_in_init = init
            for key, (tensor, *kind) in reply["value"].items():
                _register(self, key, tensor, kind)

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            state = dict(self.named_parameters()) | dict(self.named_buffers())
            module = {"init": self._stand_in_init, "state": state}
            return _ask_call(name, ask, args, {**kwargs, MODULE: module})

    StandIn.__name__ = StandIn.__qualname__ = name
    return StandIn


def stand_in_object_class(name: str, ask: Ask) -> type:
    """A plain class (not a module) whose methods and properties the parent runs on the
    reference's class with this object's attributes, which come back changed."""

    def call(self: Any, method: str, args: Any, kwargs: Any) -> Any:
        state = _attributes(self)
        question = {**kwargs, METHOD: {"state": state, "name": method}}
        value, after = _ask_call(name, ask, args, question)
        device = _first_device(leaves(list(state.values())))
        for key in list(vars(self)):
            if not key.startswith("_") and key not in after:
                delattr(self, key)
        for key, v in after.items():
            setattr(self, key, _to_device(v, device))
        return value

    def method(attribute: str) -> Callable[..., Any]:
        def asks_the_parent(self: Any, *args: Any, **kwargs: Any) -> Any:
            return call(self, attribute, args, kwargs)

        asks_the_parent.__name__ = attribute
        return asks_the_parent

    class StandIn:
        stand_in_kind = name

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            args, kwargs = _materialize(list(args)), _materialize(dict(kwargs))
            reply = ask(name, _plain(args, name), {**_plain(kwargs, name), CONSTRUCT: True})
            described = reply["value"]
            for attribute in described["methods"]:
                if not hasattr(StandIn, attribute):
                    setattr(StandIn, attribute, method(attribute))
            for attribute in described["properties"]:
                if not hasattr(StandIn, attribute):
                    getter = method(attribute)
                    setattr(StandIn, attribute, property(lambda self, g=getter: g(self)))
            for key, v in described["state"].items():
                setattr(self, key, v)

    StandIn.__name__ = StandIn.__qualname__ = name
    return StandIn


def stand_in(name: str, ask: Ask, kind: str = "function") -> Any:
    """What replaces the student's ``name`` while a job runs: a function or a class
    (``kind="class"``) that asks the parent for every answer."""
    if kind == "class":
        return stand_in_class(name, ask)
    if kind == "object":
        return stand_in_object_class(name, ask)

    def answered_by_the_parent(*args: Any, **kwargs: Any) -> Any:
        return _ask_call(name, ask, args, kwargs)

    answered_by_the_parent.__name__ = name
    return answered_by_the_parent


# ---------------------------------------------------------------- the parent's side


def _revive(value: Any, made: list[torch.Generator], classes: dict[str, type] | None = None) -> Any:
    """Plain data with its markers turned back into objects (generators in ``made``;
    a plain object as an instance of ``classes[kind]``, the reference's class)."""
    if _is_marker(value):
        ((key, inner),) = value.items()
        if key == OBJECT:
            cls = (classes or {})[str(inner["kind"])]  # KeyError for any other class
            obj = cls.__new__(cls)
            obj.__dict__.update(_revive(dict(inner["state"]), made, classes))
            return obj
        if key == GENERATOR:
            generator = torch.Generator()
            generator.set_state(inner)
            made.append(generator)
            return generator
        if key == PARAMETER:
            p = nn.Parameter(inner["data"].clone(), requires_grad=bool(inner["requires_grad"]))
            p.grad = None if inner["grad"] is None else inner["grad"].clone()
            return p
        if key == RECIPE:
            module, builder = RECIPES[str(inner["kind"])]  # KeyError for anything else
            args = _revive(list(inner["args"]), made)
            return getattr(importlib.import_module(module), builder)(*args)
        weight, bias = _revive(inner["weight"], made), _revive(inner["bias"], made)
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        linear.weight = weight
        if bias is not None:
            linear.bias = bias
        return linear
    if isinstance(value, list | tuple):
        return type(value)(_revive(v, made, classes) for v in value)
    if isinstance(value, dict):
        return {k: _revive(v, made, classes) for k, v in value.items()}
    return value


def _snapshot(leaf: Any) -> Any:
    if isinstance(leaf, nn.Parameter):
        return (leaf.detach().clone(), None if leaf.grad is None else leaf.grad.clone())
    if isinstance(leaf, torch.Tensor):
        return leaf.detach().clone()
    if hasattr(leaf, "__dict__") and not isinstance(leaf, nn.Module | torch.Generator):
        return clone_nested(_attributes(leaf))
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
            and a.shape == b.shape and torch.equal(a, b)
        )  # fmt: skip
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _changes(flat: list[Any], before: list[Any]) -> dict[str, Any]:
    """The leaves a call changed in place: tensors' values, parameters' data and grads."""
    changed: dict[str, Any] = {}
    for i, (leaf, old) in enumerate(zip(flat, before, strict=True)):
        if isinstance(leaf, nn.Parameter):
            data, grad = old
            same_grad = (grad is None) == (leaf.grad is None) and (
                grad is None or torch.equal(grad, leaf.grad)
            )
            if not torch.equal(data, leaf.detach()) or not same_grad:
                changed[str(i)] = {"data": leaf.detach(), "grad": leaf.grad}
        elif isinstance(leaf, torch.Tensor) and not torch.equal(old, leaf.detach()):
            changed[str(i)] = leaf.detach()
        elif isinstance(old, dict) and not _same(old, _attributes(leaf)):
            changed[str(i)] = {OBJECT: _attributes(leaf)}
    return changed


def _call(target: Any, args: list[Any], kwargs: dict[str, Any], module: Any) -> Any:
    if module is None:
        return target(*args, **kwargs)
    init_args, init_kwargs = module["init"]
    instance = target(*init_args, **init_kwargs)
    return torch.func.functional_call(instance, module["state"], tuple(args), kwargs)


def _describe(instance: nn.Module) -> dict[str, list[Any]]:
    """A new module's parameters and buffers: key -> [tensor, is_parameter, flag]
    (requires_grad for a parameter, persistent for a buffer)."""
    persistent = set(instance.state_dict())
    described: dict[str, list[Any]] = {}
    for key, p in instance.named_parameters():
        described[key] = [p.detach(), True, p.requires_grad]
    for key, b in instance.named_buffers():
        described[key] = [b.detach(), False, key in persistent]
    return described


def _describe_object(instance: Any) -> dict[str, Any]:
    """A new plain object: its attributes, and the names of its class's public methods
    and properties (the stand-in's class asks the parent for each)."""
    cls = type(instance)
    names = [n for n in dir(cls) if not n.startswith("_")]
    return {
        "state": _attributes(instance),
        "methods": [n for n in names if inspect.isfunction(getattr(cls, n))],
        "properties": [n for n in names if isinstance(getattr(cls, n), property)],
    }


def answer_with(references: dict[str, Any], classes: dict[str, type] | None = None) -> Ask:
    """The parent's answers for stand-ins, computed by ``references[name]`` (a function,
    an ``nn.Module`` class or a plain class) on the arguments sent. ``classes`` are the
    plain classes an argument may be revived as (by name: a student's KVCache becomes
    the reference's, with the student's attributes)."""
    classes = {**(classes or {}), **{n: r for n, r in references.items() if inspect.isclass(r)}}

    def answer(name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        kwargs = dict(kwargs)
        vjp, module = kwargs.pop(VJP, None), kwargs.pop(MODULE, None)
        construct, method = kwargs.pop(CONSTRUCT, False), kwargs.pop(METHOD, None)
        made: list[torch.Generator] = []
        args, kwargs = _revive(list(args), made, classes), _revive(kwargs, made, classes)
        module = _revive(module, made, classes)
        target = references[name]
        if construct:
            instance = target(*args, **kwargs)
            if isinstance(instance, nn.Module):
                return {"value": _describe(instance)}
            return {"value": _describe_object(instance)}
        if method is not None:
            return _method(target, _revive(method, made, classes), args, kwargs)
        flat = leaves([args, {**kwargs, MODULE: module} if module is not None else kwargs])
        if vjp is not None:
            return {"value": _vjp(target, args, kwargs, module, flat, vjp)}
        before = [_snapshot(leaf) for leaf in flat]
        value = _call(target, args, kwargs, module)
        return {
            "value": value,
            "generator_states": [g.get_state() for g in made],
            "changed": _changes(flat, before),
        }

    return answer


def _method(cls: type, method: dict[str, Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    """A plain class's method (or property) run on an object with the attributes sent:
    the value, and the attributes after."""
    obj = cls.__new__(cls)
    obj.__dict__.update(method["state"])
    name = str(method["name"])
    if name.startswith("_"):
        raise ValueError("only public methods and properties")
    attribute = inspect.getattr_static(obj, name)
    value = (
        getattr(obj, name)
        if isinstance(attribute, property)
        else getattr(obj, name)(*args, **kwargs)
    )
    return {"value": [value, _attributes(obj)], "generator_states": [], "changed": {}}


def _vjp(
    target: Any,
    args: list[Any],
    kwargs: dict[str, Any],
    module: Any,
    flat: list[Any],
    vjp: dict[str, Any],
) -> list[torch.Tensor | None]:
    """The gradient of the reference's outputs, weighted by the arriving ``grad_outputs``,
    with respect to the inputs at ``wrt``."""
    inputs = [flat[i] for i in vjp["wrt"]]
    for t in inputs:
        if not t.requires_grad:
            t.requires_grad_(True)
    with torch.enable_grad():
        value = _call(target, args, kwargs, module)
    outs = [o for o in leaves(value) if isinstance(o, torch.Tensor)]
    pairs = [
        (o, g) for o, g in zip(outs, vjp["grad_outputs"], strict=True)
        if g is not None and o.requires_grad
    ]  # fmt: skip
    if not pairs:
        return [None for _ in inputs]
    grads = torch.autograd.grad(
        [o for o, _ in pairs], inputs, [g.to(o.dtype) for o, g in pairs], allow_unused=True
    )
    return list(grads)
