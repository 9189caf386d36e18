"""Chapter 02's drivers and checker: plain data in, plain data out.

They run beside student code and ship to students, so they never import
solutions/ or a grading spec.

- ``labelled_methods``: like the ``methods`` driver, but each recorded answer is
  stored under the call's label (``"P(latte | iced)"``), so a wrong number is
  reported with the query that produced it.
- ``rnn_with_activation``: the activation of ``rnn_cell`` is a function, which
  plain case data cannot hold; the case names it ("tanh", "relu", "identity").
- ``forward_and_param_count``: the ``module`` driver, plus the number of
  distinct parameters, which tells a tied output layer from an untied one
  (their outputs agree once both are loaded with the same weights).
- ``mlm_draws`` and ``check_mlm``: masking is random, so the grade checks the
  properties and statistics of the answer rather than equality with the
  reference's draws.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from autograder.core.drivers import StateDictMismatch
from autograder.core.spec import Case, Tolerance


def labelled_methods(obj: Any, case: Case) -> dict[str, Any]:
    """Build ``obj(**case["init"])`` and call ``case["calls"]`` in order.

    Each call is ``{"method", "args", "kwargs", "label"}``; the answer maps the
    label of each call that has one to its result (calls without a label, like
    ``fit``, are made but not recorded).
    """
    instance = obj(*case.get("init_args", []), **case.get("init", {}))
    answers: dict[str, Any] = {}
    for call in case["calls"]:
        method = getattr(instance, call["method"], None)
        if method is None:
            raise AttributeError(f"{type(instance).__name__} has no method {call['method']!r}")
        result = method(*call.get("args", []), **call.get("kwargs", {}))
        if call.get("label"):
            answers[call["label"]] = result
    return answers


ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda t: t}


def rnn_with_activation(obj: Any, case: Case) -> Any:
    """Call ``obj(*args, **kwargs)`` with ``kwargs["activation"]`` turned from a name into
    the function (no activation key: the function's default)."""
    kwargs = dict(case.get("kwargs", {}))
    if "activation" in kwargs:
        kwargs["activation"] = ACTIVATIONS[kwargs["activation"]]
    return obj(*case.get("args", []), **kwargs)


def forward_and_param_count(obj: Any, case: Case) -> tuple[Any, int]:
    """Build the module, load the case's weights, run forward without gradients.

    Returns (output, number of parameters): ``parameters()`` lists a tied weight
    once, so an output layer with its own matrix shows up in the count.
    """
    module = obj(**case.get("init", {}))
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{type(module).__name__} is not a torch.nn.Module subclass")
    state = case.get("state")
    if state is not None:
        result = module.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise StateDictMismatch(result.missing_keys, result.unexpected_keys)
    module.eval()
    with torch.no_grad():
        output = module(*case.get("args", []), **case.get("kwargs", {}))
    return output, sum(p.numel() for p in module.parameters())


def mlm_draws(obj: Any, case: Case) -> tuple[Any, Any, bool]:
    """Call ``obj`` with ``generator`` seeded by ``case["seed"]``, again with the same
    seed, and once with another seed.

    Returns (inputs, labels, follows_generator), the last True when the two calls
    seeded alike agree and the differently seeded one does not.
    """
    args, kwargs = case.get("args", []), case.get("kwargs", {})

    def draw(seed: int) -> Any:
        fresh = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
        return obj(*fresh, **kwargs, generator=torch.Generator().manual_seed(seed))

    first, again, other = draw(case["seed"]), draw(case["seed"]), draw(case["seed"] + 1)

    def same(a: Any, b: Any) -> bool:
        if not (isinstance(a, tuple | list) and isinstance(b, tuple | list) and len(a) == len(b)):
            return False
        return all(
            isinstance(x, torch.Tensor)
            and isinstance(y, torch.Tensor)
            and x.shape == y.shape
            and bool((x == y).all())
            for x, y in zip(a, b, strict=True)
        )

    follows = same(first, again) and not same(first, other)
    if not isinstance(first, tuple | list) or len(first) != 2:
        return first  # the checker says what is wrong with its shape
    return first[0], first[1], follows


def _sigmas(observed: float, expected: float, n: int) -> float:
    """How many binomial standard deviations ``observed`` is from ``expected`` (n trials)."""
    sd = math.sqrt(max(expected * (1 - expected), 1e-12) / max(n, 1))
    return abs(observed - expected) / sd


SIGMAS = 6.0  # an honest implementation fails a statistical check once in ~10^9 draws
MIN_FOR_STATS = 300  # fewer selected positions than this: only the exact properties


def check_mlm(case: Case, actual: Any, tolerance: Tolerance) -> str | None:
    """The properties of a correct BERT masking, and its 80/10/10 statistics."""
    del tolerance  # the checks are exact or statistical
    ids, mask_id, vocab_size = case["args"][0], case["args"][1], case["args"][2]
    p = case.get("kwargs", {}).get("mask_prob", 0.15)
    special_ids = list(case.get("kwargs", {}).get("special_token_ids", ()))
    if not isinstance(actual, tuple | list) or len(actual) != 3:
        return "should return a tuple (inputs, labels)"
    inputs, labels, follows = actual
    for name, t in (("inputs", inputs), ("labels", labels)):
        if not isinstance(t, torch.Tensor):
            return f"`{name}` should be a tensor, got a {type(t).__name__}"
        if t.shape != ids.shape:
            return f"`{name}` has shape {tuple(t.shape)}, expected {tuple(ids.shape)}"
        if t.dtype != ids.dtype:
            return f"`{name}` has dtype {t.dtype}, expected {ids.dtype} (the dtype of input_ids)"

    selected = labels != -100
    is_special = torch.isin(ids, torch.tensor(special_ids, dtype=ids.dtype))
    if bool((labels[selected] != ids[selected]).any()):
        if bool((labels[selected] == inputs[selected]).all()):
            return (
                "`labels` holds the corrupted inputs at the selected positions: the labels must "
                "be the ORIGINAL token ids (what the model has to recover), -100 elsewhere"
            )
        return "`labels` must hold the original token id at every selected position, else -100"
    if bool((inputs[~selected] != ids[~selected]).any()):
        count = int((inputs[~selected] != ids[~selected]).sum())
        return (
            f"`inputs` differs from input_ids at {count} positions whose label is -100: only "
            "selected positions may change, and each selected position has its original id "
            "as its label"
        )
    if bool(((inputs < 0) | (inputs >= vocab_size)).any()):
        return f"`inputs` holds ids outside [0, vocab_size={vocab_size})"

    n_normal = int((~is_special).sum())
    rate = float((selected & ~is_special).sum()) / max(n_normal, 1)
    if p in (0.0, 1.0) and n_normal > 0 and rate != p:
        return (
            f"with mask_prob={p:g} you selected {rate:.1%} of the non-special positions, "
            f"expected exactly {p:.0%}"
        )
    if 0.0 < p < 1.0 and n_normal >= MIN_FOR_STATS and _sigmas(rate, p, n_normal) > SIGMAS:
        return (
            f"you selected {rate:.1%} of the non-special positions; with mask_prob={p:g} "
            f"about {p:.1%} should be (labels must be -100 at every position that was not "
            "selected)"
        )
    if bool((selected & is_special).any()):
        return (
            f"special tokens were selected ({int((selected & is_special).sum())} positions): "
            f"tokens in special_token_ids={tuple(special_ids)} must never be selected"
        )

    m = int(selected.sum())
    if m >= MIN_FOR_STATS:
        sel_in, sel_ids = inputs[selected], ids[selected]
        frac_mask = float((sel_in == mask_id).float().mean())
        frac_same = float((sel_in == sel_ids).float().mean())
        frac_random = 1.0 - frac_mask - frac_same
        expected = {
            "mask": 0.8 + 0.1 / vocab_size,
            "same": 0.1 + 0.1 / vocab_size,
            "random": 0.1 * (1 - 2 / vocab_size),
        }
        observed = {"mask": frac_mask, "same": frac_same, "random": frac_random}
        wrong = [k for k in expected if _sigmas(observed[k], expected[k], m) > SIGMAS]
        if wrong:
            return (
                f"among the {m} selected positions {frac_mask:.1%} became [MASK], "
                f"{frac_random:.1%} a random token and {frac_same:.1%} stayed unchanged; "
                "the 80/10/10 rule expects about 80% [MASK], 10% random, 10% unchanged"
            )
    if follows is not True:
        return (
            "your function does not draw its randomness from `generator`: two calls with "
            "generators seeded alike must give the same answer, and another seed another one "
            "(pass generator=generator to torch.rand / torch.randint)"
        )
    return None
