"""Small conveniences for the student notebooks: the device, figures that wait for you, and
swapping the layers of a model."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable

import torch
from torch import nn


def pick_device() -> torch.device:
    """The GPU when there is one (CUDA, or Apple's MPS), else the CPU.

    ``$LLM_COURSE_DEVICE`` (e.g. "cpu", "cuda") overrides the choice (``make gpu-check``).
    """
    forced = os.environ.get("LLM_COURSE_DEVICE")
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class when_implemented:  # noqa: N801 - reads as a sentence: `with when_implemented("gelu"):`
    """Run a figure cell once the exercises it needs work; until then say what is missing.

    >>> with when_implemented("gelu"):
    ...     plot(gelu(x))
    """

    def __init__(self, *needs: str) -> None:
        self.needs = needs

    def __enter__(self) -> when_implemented:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> bool:
        if exc_type is not None and issubclass(exc_type, NotImplementedError):
            what = " and ".join(self.needs) if self.needs else "the exercises above"
            if "matplotlib.pyplot" in sys.modules:  # drop the half-drawn figure
                sys.modules["matplotlib.pyplot"].close("all")
            verb = "are" if len(self.needs) > 1 else "is"
            print(f"(This figure appears once {what} {verb} implemented.)")
            return True
        return False


def replace_modules(
    model: nn.Module,
    kind: type[nn.Module],
    make: Callable[[nn.Module], nn.Module],
    under: str = "",
) -> nn.Module:
    """Replace, in place, every submodule of type ``kind`` whose qualified name starts with
    ``under`` by ``make(submodule)``, and return ``model``.

    A submodule is replaced by setting it on its parent: ``blocks.0.attn.q_proj`` is the
    attribute ``q_proj`` of ``model.get_submodule("blocks.0.attn")``. The names are listed
    before anything is replaced, so the new modules' own children are never visited.

    >>> replace_modules(model, nn.Linear, Int8Linear.from_float, under="blocks.")
    """
    for name, module in list(model.named_modules()):
        if name and isinstance(module, kind) and name.startswith(under):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, make(module))
    return model
