"""Wrong answers of the kinds every exercise can get wrong, generated for every exercise.

Each is the reference's module with one public name wrapped: the wrapper calls
the reference and then makes one generic mistake, so the only thing wrong is
that mistake. The kinds:

- ``in_place``: the answer is right, but the first tensor argument (or the
  module's input) is changed in place afterwards;
- ``float32_out``: the answer is right, but floating outputs come back as float32
  whatever the inputs' dtype;
- ``ignores:P``: the optional parameter ``P`` is dropped (its default always used);
- ``default:P``: when ``P`` is omitted, another value than the documented default is used;
- ``raises_once``: the first call raises (a student's code that breaks on one input).

``source(module, base=...)`` wraps another version of the module's source (a project
mutant's), which makes a *variant* of that mutant: its mistake plus a generic one.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

MUTATE_FIRST_TENSOR = """
def _mutate_first_tensor(values):
    for value in values:
        if isinstance(value, torch.Tensor) and value.numel():
            if value.dtype == torch.bool:
                value.logical_not_()
            else:
                value.add_(1)
            return


def _to_float32(value):
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, tuple | list):
        return type(value)(_to_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_float32(v) for k, v in value.items()}
    return value
"""


@dataclass(frozen=True)
class GenericMutant:
    kind: str  # in_place, float32_out, ignores, default, raises_once
    exercise: str
    parameter: str = ""
    wrong_default: Any = None

    @property
    def name(self) -> str:
        return f"{self.exercise}-{self.kind}" + (f":{self.parameter}" if self.parameter else "")

    @property
    def expect(self) -> str:
        """A phrase the feedback must contain (empty: failing is enough)."""
        return {"in_place": "changed its input in place", "float32_out": "expected float64"}.get(
            self.kind, ""
        )

    def source(self, module: ModuleType, base: str | None = None) -> str:
        obj = getattr(module, self.exercise)
        original = f"_ORIGINAL_{self.exercise.upper()}"
        head = (inspect.getsource(module) if base is None else base) + "\n" + MUTATE_FIRST_TENSOR
        head += "\n_CALLS = []\n"
        head += f"\n{original} = {self.exercise}\n"
        if inspect.isclass(obj):
            body = (
                f"\n\nclass {self.exercise}({original}):\n"
                "    def forward(self, *args, **kwargs):\n"
                "        result = super().forward(*args, **kwargs)\n"
                f"{self._after('        ')}"
                "        return result\n"
            )
            return head + body
        before = ""
        if self.kind == "ignores":
            default = inspect.signature(obj).parameters[self.parameter].default
            position = self._position(obj)
            before = (
                f"    if {self.parameter!r} in kwargs:\n"
                f"        kwargs[{self.parameter!r}] = {default!r}\n"
                f"    if len(args) > {position}:\n"
                f"        args = (*args[:{position}], {default!r}, *args[{position + 1}:])\n"
            )
        elif self.kind == "default":
            before = (
                f"    if len(args) <= {self._position(obj)} and {self.parameter!r} not in kwargs:\n"
                f"        kwargs[{self.parameter!r}] = {self.wrong_default!r}\n"
            )
        return head + (
            f"\n\ndef {self.exercise}(*args, **kwargs):\n{before}"
            f"    result = {original}(*args, **kwargs)\n{self._after('    ')}    return result\n"
        )

    def _after(self, indent: str) -> str:
        if self.kind == "in_place":
            return f"{indent}_mutate_first_tensor([*args, *kwargs.values()])\n"
        if self.kind == "float32_out":
            return f"{indent}result = _to_float32(result)\n"
        if self.kind == "raises_once":
            return (
                f"{indent}_CALLS.append(1)\n"
                f"{indent}if len(_CALLS) == 1:\n"
                f"{indent}    raise RuntimeError('breaks on this input')\n"
            )
        return ""

    def _position(self, obj: Any) -> int:
        return list(inspect.signature(obj).parameters).index(self.parameter)

    def write(self, module: ModuleType, folder: Path) -> Path:
        path = folder / f"{self.name.replace(':', '_')}.py"
        path.write_text(self.source(module), encoding="utf-8")
        return path


def wrong_default(default: Any) -> Any:
    """Another plausible value for a documented default, or None when there is none to try."""
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        if not default:
            return 0.5
        return default * 100 if abs(default) < 1e-3 else default * 2
    return None


def is_literal(value: Any) -> bool:
    """Whether ``repr(value)`` is Python source for the same value."""
    if value is None or isinstance(value, bool | int | float | str):
        return True
    return isinstance(value, tuple | list) and all(is_literal(v) for v in value)


def optional_parameters(obj: Any) -> list[inspect.Parameter]:
    """A function's parameters with defaults (not ``*args``, ``**kwargs`` or ``generator``)."""
    if inspect.isclass(obj):
        return []
    return [
        p
        for p in inspect.signature(obj).parameters.values()
        if p.default is not p.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in ("generator", "device")
    ]
