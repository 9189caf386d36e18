"""Chapter 10's drivers: plain data in, plain data out.

They run beside student code and ship to students, so they never import
solutions/ or a grading spec. The model of every case is
``autograder.core.draws.TableLM`` built from ``case["state"]`` (``table`` and
``prev``, so a dtype variant of the case casts the model too): logits(t) =
table[ids_t] + prev[ids_{t-1}], a causal model that depends on the last two
tokens, so reading the logits one position off changes the answer. The drivers
record what the model was asked: the shape of the ids of each call, and whether
gradients were being recorded.

- ``vote_with_none_flag``: ``majority_vote``; returns (answer, whether it is None), so
  a None answer is an answer the grader can compare (None alone means "it raised").
- ``logprob_with_table``: ``sequence_logprob`` with a table that requires
  gradients; returns (log-probability, whether it carries a gradient, the shapes
  of the model's inputs).
- ``classify_with_table``: ``classify_by_likelihood``; returns (scores, best, the
  shapes of the model's inputs).
- ``self_consistency_with_table``: ``self_consistency`` with ``decode`` (token
  ids -> the characters ``case["vocab"]`` gives them) and ``parse`` (the last match
  of the regular expression ``case["pattern"]``, its first group, or None) and a
  generator seeded with ``case["seed"]``; returns (answer, answers, whether the
  model always ran without gradients).
- ``constrained_with_table``: ``constrained_decode``; returns (index, the shapes of
  the model's inputs, whether the model always ran without gradients).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from autograder.core.draws import TableLM
from autograder.core.spec import Case


class RecordingLM(TableLM):
    """A ``TableLM`` that records the shape of each input and whether grad was enabled."""

    def __init__(self, table: torch.Tensor, prev: torch.Tensor | None = None) -> None:
        super().__init__(table, prev)
        self.shapes: list[tuple[int, ...]] = []
        self.grad_enabled: list[bool] = []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(int(n) for n in ids.shape))
        self.grad_enabled.append(torch.is_grad_enabled())
        return super().forward(ids)


def _model(case: Case, requires_grad: bool = False) -> RecordingLM:
    state = case["state"]
    table = state["table"].detach().clone().requires_grad_(requires_grad)
    return RecordingLM(table, state["prev"])


def _detached(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value


def vote_with_none_flag(obj: Any, case: Case) -> tuple[Any, bool]:
    """``obj(*args)``; returns (answer, answer is None)."""
    answer = obj(*case.get("args", []), **case.get("kwargs", {}))
    return answer, answer is None


def logprob_with_table(obj: Any, case: Case) -> Any:
    """``obj(model, prompt_ids=..., continuation_ids=...)`` with a table that requires gradients.

    Returns (logprob, differentiable, model_inputs): whether the answer carries a
    gradient back to the table, and the shapes of the ids the model was called with.
    """
    model = _model(case, requires_grad=True)
    with torch.enable_grad():
        answer = obj(model, *case.get("args", []), **case.get("kwargs", {}))
    differentiable = isinstance(answer, torch.Tensor) and answer.requires_grad
    return _detached(answer), differentiable, model.shapes


def classify_with_table(obj: Any, case: Case) -> Any:
    """``obj(model, prompt_ids=..., label_ids=..., **kwargs)``; returns (scores, best,
    model_inputs), or the answer itself when it is not a pair."""
    model = _model(case)
    answer = obj(model, *case.get("args", []), **case.get("kwargs", {}))
    if not isinstance(answer, tuple | list) or len(answer) != 2:
        return answer  # the comparison says what is wrong with it
    scores, best = answer
    return _detached(scores), best, model.shapes


def _decoder(vocab: str):
    def decode(ids: list[int]) -> str:
        return "".join(vocab[int(i)] for i in ids)

    return decode


def _parser(pattern: str):
    def parse(text: str) -> str | None:
        found = re.findall(pattern, text)
        return found[-1] if found else None

    return parse


def self_consistency_with_table(obj: Any, case: Case) -> Any:
    """``obj(model, **kwargs, decode=..., parse=..., generator=...)``; returns (answer,
    answers, no_grad), or the answer itself when it is not a pair."""
    model = _model(case, requires_grad=True)
    generator = torch.Generator().manual_seed(case["seed"])
    decode, parse = _decoder(case["vocab"]), _parser(case["pattern"])
    kwargs = {**case.get("kwargs", {}), "decode": decode, "parse": parse, "generator": generator}
    with torch.enable_grad():
        answer = obj(model, *case.get("args", []), **kwargs)
    if not isinstance(answer, tuple | list) or len(answer) != 2:
        return answer
    no_grad = bool(model.grad_enabled) and not any(model.grad_enabled)
    return answer[0], answer[1], no_grad


def constrained_with_table(obj: Any, case: Case) -> Any:
    """``obj(model, prompt_ids=..., options=...)``; returns (index, model_inputs, no_grad)."""
    model = _model(case, requires_grad=True)
    with torch.enable_grad():
        answer = obj(model, *case.get("args", []), **case.get("kwargs", {}))
    no_grad = bool(model.grad_enabled) and not any(model.grad_enabled)
    return answer, model.shapes, no_grad
