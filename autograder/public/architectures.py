"""Chapter 02's drivers and checker: plain data in, plain data out.

They run beside student code and ship to students, so they never import
solutions/ or a grading spec.

- ``labelled_methods``: like the ``methods`` driver, but each recorded answer is
  stored under the call's label (``"P(latte | iced)"``), so a wrong number is
  reported with the query that produced it; an entry may also read an attribute
  (``vocab``, ``ngram_counts``...) or record whether a method returned the object.
- ``rnn_with_activation``: the activation of ``rnn_cell`` is a function, which
  plain case data cannot hold; the case names it ("tanh", "relu", "identity").
- ``forward_and_param_count``: the ``module`` driver, plus the number of
  distinct parameters, which tells a tied output layer from an untied one
  (their outputs agree once both are loaded with the same weights).
- ``encoder_decoder_parts``: the same, plus ``encode(src)`` and ``decode(tgt,
  memory)`` on a memory of the case's own, so both documented methods are graded.
- ``gpt_forward_and_init`` and ``check_gpt``: the same for ``GPT``; a case with
  ``"init_seed"`` instead builds the model without loading weights and answers the
  mean and standard deviation of every initial parameter, which ``check_gpt``
  compares statistically (GPT-2's initialisation is part of the contract).
- ``check_float``: the usual comparison, but an int where a float is expected fails.
- ``mlm_draws`` and ``check_mlm``: masking is random, so the grade checks the
  properties and statistics of the answer rather than equality with the
  reference's draws.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from autograder.core.compare import compare_outputs
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
        if "attribute" in call:  # {"attribute": "vocab", "label": ...}: read it, made plain
            answers[call["label"]] = _plain_attribute(getattr(instance, call["attribute"], None))
            continue
        method = getattr(instance, call["method"], None)
        if method is None:
            raise AttributeError(f"{type(instance).__name__} has no method {call['method']!r}")
        result = method(*call.get("args", []), **call.get("kwargs", {}))
        if call.get("returns_self"):  # record whether the method returned the object
            answers[call["label"]] = result is instance
        elif call.get("label"):
            answers[call["label"]] = result
    return answers


def _plain_attribute(value: Any) -> Any:
    """A set (or list) as a sorted list, a dict with tuple keys with "a b" string keys."""
    if isinstance(value, set | frozenset | list | tuple):
        return sorted(value, key=repr)
    if isinstance(value, dict):
        return {" ".join(k) if isinstance(k, tuple) else str(k): v for k, v in value.items()}
    return value


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
    module = _loaded(obj, case)
    with torch.no_grad():
        output = module(*case.get("args", []), **case.get("kwargs", {}))
    return output, sum(p.numel() for p in module.parameters())


def encoder_decoder_parts(obj: Any, case: Case) -> tuple[Any, int, Any, Any]:
    """``forward_and_param_count``, then ``encode(src_ids)`` and ``decode(tgt_ids,
    case["memory"])``: (logits, n_parameters, memory, decoded logits)."""
    module = _loaded(obj, case)
    with torch.no_grad():
        logits = module(*case.get("args", []))
        memory = module.encode(case["args"][0])
        decoded = module.decode(case["args"][1], case["memory"])
    return logits, sum(p.numel() for p in module.parameters()), memory, decoded


def gpt_forward_and_init(obj: Any, case: Case) -> tuple[Any, Any, Any]:
    """(logits, n_parameters, None) like ``forward_and_param_count``; for a case with
    ``init_seed``: (None, n_parameters, {name: [mean, std]}) of the freshly built model,
    its initial weights drawn after ``torch.manual_seed(init_seed)`` (the caller's
    random state is restored afterwards)."""
    if "init_seed" not in case:
        output, count = forward_and_param_count(obj, case)
        return output, count, None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case["init_seed"])
        module = obj(**case.get("init", {}))
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{type(module).__name__} is not a torch.nn.Module subclass")
    stats = {
        name: [float(p.detach().double().mean()), float(p.detach().double().std())]
        for name, p in module.named_parameters()
    }
    return None, sum(p.numel() for p in module.parameters()), stats


# Initial weights: a standard deviation within 15% of the reference's, and a mean
# within 15% of that standard deviation (exact for constants). With at least 4096
# entries per matrix the sample std of an honest draw is within 1.1% (one sd), so
# 15% is over 13 sd away; the usual wrong initialisations are 40% to 5000% away.
INIT_BAND = 0.15


def check_gpt(case: Case, actual: Any, tolerance: Tolerance) -> str | None:
    """Checker: the usual comparison, and for an init case the statistics of every weight."""
    names = ("logits", "n_parameters", "initial weights")
    expected = case["expected"]
    if "init_seed" not in case or not isinstance(actual, tuple | list) or len(actual) != 3:
        return compare_outputs(expected, actual, tolerance, names)
    problem = compare_outputs(expected[:2], actual[:2], tolerance, names[:2])
    if problem:
        return problem
    stats = actual[2]
    if not isinstance(stats, dict):
        return "`initial weights` could not be read"
    missing = sorted(set(expected[2]) - set(stats))
    if missing:
        return f"the freshly built model has no parameters {missing}"
    for name, (mean, std) in expected[2].items():
        got_mean, got_std = stats[name]
        if abs(got_std - std) > INIT_BAND * std + 1e-12 or abs(got_mean - mean) > (
            INIT_BAND * std + 1e-12
        ):
            return (
                f"the initial `{name}` has mean {got_mean:.4g} and std {got_std:.4g}, "
                f"expected mean {mean:.4g} and std {std:.4g} (GPT-2's initialisation: normal "
                "with std 0.02, biases zero, attn.out_proj and ff.fc2 with std "
                "0.02 / sqrt(2 n_layers))"
            )
    return None


def check_float(case: Case, actual: Any, tolerance: Tolerance) -> str | None:
    """Checker: the usual comparison, and a float where a float is expected (the comparison
    alone accepts an int for a float, e.g. ``6 * N * D`` of integer arguments)."""
    expected = case["expected"]
    if isinstance(expected, float) and isinstance(actual, int) and not isinstance(actual, bool):
        return f"`output` should be a float, got an int ({actual!r}): return float(...)"
    return compare_outputs(expected, actual, tolerance, ("output",))


def _loaded(obj: Any, case: Case) -> torch.nn.Module:
    """``obj(**case["init"])`` with the case's weights loaded, in eval mode."""
    module = obj(**case.get("init", {}))
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{type(module).__name__} is not a torch.nn.Module subclass")
    state = case.get("state")
    if state is not None:
        result = module.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise StateDictMismatch(result.missing_keys, result.unexpected_keys)
    return module.eval()


def mlm_draws(obj: Any, case: Case) -> tuple[Any, Any, bool]:
    """Call ``obj`` with ``generator`` seeded by ``case["seed"]``, again with the same
    seed, and once with another seed.

    Returns (inputs, labels, follows_generator), the last True when the two calls
    seeded alike agree and the differently seeded one does not.
    """
    args, kwargs = case.get("args", []), case.get("kwargs", {})
    copies = [[a.clone() if isinstance(a, torch.Tensor) else a for a in args] for _ in range(2)]

    def draw(seed: int, use: list[Any]) -> Any:
        return obj(*use, **kwargs, generator=torch.Generator().manual_seed(seed))

    # The first call gets the case's own tensors, so that the grader sees an input
    # changed in place; the other two get copies.
    first = draw(case["seed"], list(args))
    again, other = draw(case["seed"], copies[0]), draw(case["seed"] + 1, copies[1])

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
# Every id must show among the random replacements once each is expected this often
# (m/10/V times): an honest answer then misses one with probability < V·exp(-35).
MIN_DRAWS_PER_ID = 40


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
    if m >= MIN_FOR_STATS and m * 0.1 / vocab_size >= MIN_DRAWS_PER_ID:
        replaced = selected & (inputs != ids) & (inputs != mask_id)
        seen = set(inputs[replaced].tolist())
        missing = [v for v in range(vocab_size) if v != mask_id and v not in seen]
        if missing:
            return (
                f"among the {m} selected positions your random replacements never used the "
                f"ids {missing}: draw them uniformly from [0, vocab_size={vocab_size}) "
                "(torch.randint(vocab_size, ...), every id, special or not)"
            )
    if follows is not True:
        return (
            "your function does not draw its randomness from `generator`: two calls with "
            "generators seeded alike must give the same answer, and another seed another one "
            "(pass generator=generator to torch.rand / torch.randint)"
        )
    return None
