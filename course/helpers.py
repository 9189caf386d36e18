"""Small conveniences for the student notebooks: the device, and figures that wait for you."""

from __future__ import annotations

import sys
import types

import torch


def pick_device() -> torch.device:
    """The GPU when there is one (CUDA, or Apple's MPS), else the CPU."""
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
