"""Chapter 07's drivers and checkers: plain data in, plain data out.

They run beside student code and ship to students, so they never import
solutions/ or a grading spec.

- The models are ``autograder.core.draws.TableLM``: a tiny deterministic language
  model built from two tables, logits(t) = table[ids_t] + prev[ids_{t-1}], so the
  decoding exercises can be graded without a trained network (it depends on the
  last two tokens, so a loop that feeds the model only the last token gives other
  answers).
- ``sample_draws`` and ``check_samples``: ``sample_next_token`` on many copies
  of a few logit rows; the answer passes when it equals the reference's draws
  (same use of the generator) or, otherwise, when it never emits a filtered
  token, its frequencies pass a chi-square test against the filtered
  distribution, and it follows the generator.
- ``generate_with_table``, ``beam_with_table``: build the ``TableLM`` of the
  case and call the student's function with it; ``check_generate`` compares
  exactly and, on sampled cases, says how the generator must be used.
- ``best_of_n_with_table`` and ``check_best_of_n``: the scoring function records
  every candidate it is shown, so the check does not depend on how the
  generator was used: the answer must be the best-scored candidate.
"""

from __future__ import annotations

from typing import Any

import torch

from autograder.core.compare import compare_outputs
from autograder.core.draws import TableLM, chi_square, chi_square_threshold
from autograder.core.spec import Case, Tolerance


def _model(case: Case) -> TableLM:
    return TableLM(case["table"], case.get("prev"))


def _generator(case: Case, offset: int = 0) -> torch.Generator | None:
    return (
        None if case.get("seed") is None else torch.Generator().manual_seed(case["seed"] + offset)
    )


def sample_draws(obj: Any, case: Case) -> tuple[Any, bool, bool]:
    """Call ``obj(logits.repeat(repeats, 1), **kwargs, generator=...)`` three times:
    twice with ``case["seed"]``, once with another seed.

    Returns (draws of the first call, follows_generator, uses_generator): the second is
    True when the two calls seeded alike agree and the other seed gives other draws, the
    third when the first call changed its generator's state.
    """
    logits = case["args"][0].repeat(case["repeats"], 1)  # (repeats * R, V)
    kwargs = case.get("kwargs", {})
    used: list[bool] = []

    def draw(offset: int) -> Any:
        generator = _generator(case, offset)
        answer = obj(logits.clone(), **kwargs, generator=generator)
        fresh = _generator(case, offset)
        used.append(
            generator is not None and not torch.equal(generator.get_state(), fresh.get_state())
        )
        return answer

    first, again, other = draw(0), draw(0), draw(1)

    def same(a: Any, b: Any) -> bool:
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and bool((a == b).all())
        )

    return first, same(first, again) and not same(first, other), used[0]


def check_samples(case: Case, actual: Any, tolerance: Tolerance) -> str | None:
    """Draws of ``sample_next_token``: exact when they equal the reference's, else checked
    for filtered tokens, frequencies (chi-square) and the use of the generator."""
    del tolerance
    target = case["target_probs"]  # (R, V), the filtered distribution of each row
    R, V = target.shape
    if not isinstance(actual, tuple | list) or len(actual) != 3:
        return "should return a tensor of token ids"
    draws, follows, uses = actual
    n = case["repeats"] * R
    if not isinstance(draws, torch.Tensor):
        return f"should return a tensor of token ids, got a {type(draws).__name__}"
    if tuple(draws.shape) != (n,):
        return f"returned shape {tuple(draws.shape)}, expected ({n},): one token per row"
    if draws.dtype != torch.int64:
        return f"returned dtype {draws.dtype}, expected torch.int64 (token ids)"
    if case.get("kwargs", {}).get("temperature", 1.0) == 0 and uses:
        return (
            "at temperature 0 the answer is greedy(logits) and the generator must not be used, "
            "but your function changed the generator's state"
        )
    expected = case["expected"][0]
    if bool((draws == expected).all()):
        return None
    if bool(((draws < 0) | (draws >= V)).any()):
        return f"returned ids outside [0, V={V})"
    rows = draws.reshape(case["repeats"], R)  # row i * R + r holds logits row r
    for r in range(R):
        counts = torch.bincount(rows[:, r], minlength=V)  # (V,)
        banned = (counts > 0) & (target[r] == 0)
        if bool(banned.any()):
            token = int(banned.nonzero()[0])
            return (
                f"row {r}: token {token} was drawn {int(counts[token])} times although the "
                "filters give it probability 0 (it must never be emitted)"
            )
        stat, dof = chi_square(counts, target[r])
        if dof >= 1 and stat > chi_square_threshold(dof):
            freq = (counts.double() / counts.sum()).tolist()
            want = target[r].double().tolist()
            return (
                f"row {r}: the frequencies of your draws {[round(f, 3) for f in freq]} do not "
                f"match the filtered distribution {[round(p, 3) for p in want]} "
                f"(chi-square {stat:.1f} with {dof} degrees of freedom)"
            )
    deterministic = bool((target.max(dim=-1).values == 1).all())
    if not deterministic and follows is not True:
        return (
            "your function does not draw its randomness from `generator`: two calls with "
            "generators seeded alike must give the same answer, and another seed another one "
            "(pass generator=generator to torch.multinomial)"
        )
    return None


def generate_with_table(obj: Any, case: Case) -> Any:
    """``obj(TableLM(...), *args, **kwargs, generator=...)``."""
    kwargs = dict(case.get("kwargs", {}))
    if case.get("seed") is not None:
        kwargs["generator"] = _generator(case)
    return obj(_model(case), *case.get("args", []), **kwargs)


def beam_with_table(obj: Any, case: Case) -> Any:
    """``obj(TableLM(...), *args, **kwargs)`` (beam search uses no randomness)."""
    return obj(_model(case), *case.get("args", []), **case.get("kwargs", {}))


def best_of_n_with_table(obj: Any, case: Case) -> tuple[Any, list[Any], list[Any]]:
    """Call ``obj(TableLM(...), input_ids, n, score_fn, **sampling)``.

    ``score_fn(samples (n, L + new)) -> (n,)`` sums ``case["token_values"]`` over the
    generated tokens; it records what it was shown. Returns (answer, the samples it
    was shown, the scores it returned).
    """
    values = case["token_values"]  # (V,)
    prompt_len = case["args"][0].shape[1]
    shown: list[Any] = []
    given: list[Any] = []

    def score_fn(samples: torch.Tensor) -> torch.Tensor:
        scores = values[samples[:, prompt_len:]].sum(dim=-1)  # (n,)
        shown.append(samples.detach().clone())
        given.append(scores.clone())
        return scores

    kwargs = dict(case.get("kwargs", {}))
    if case.get("seed") is not None:
        kwargs["generator"] = _generator(case)
    answer = obj(_model(case), *case["args"], score_fn, **kwargs)
    return answer, shown, given


def check_best_of_n(case: Case, actual: Any, tolerance: Tolerance) -> str | None:
    """The answer must be the best-scored of n samples of the prompt, drawn with the given
    sampling arguments."""
    del tolerance
    prompt, n = case["args"][0], case["args"][1]
    if not isinstance(actual, tuple | list) or len(actual) != 3:
        return "should return a tensor of token ids"
    answer, shown, given = actual
    if not isinstance(answer, torch.Tensor):
        return f"should return a tensor of token ids, got a {type(answer).__name__}"
    if answer.dim() != 2 or answer.shape[0] != 1:
        return f"returned shape {tuple(answer.shape)}, expected (1, L + new)"
    if not shown:
        return "never called score_fn: score the n samples with score_fn(samples)"
    samples = [s for s in shown if isinstance(s, torch.Tensor) and s.dim() == 2]
    if len(samples) != len(shown) or len({s.shape[1] for s in samples}) != 1:
        return "score_fn must be given the samples as a tensor of shape (n, L + new)"
    samples_t = torch.cat(samples)  # (n, L + new)
    scores = torch.cat(given)  # (n,)
    if samples_t.shape[0] != n:
        return f"score_fn was shown {samples_t.shape[0]} samples in all, expected n={n}"
    L = prompt.shape[1]
    if not bool((samples_t[:, :L] == prompt).all()):
        return "the samples given to score_fn do not all start with the prompt"
    max_new = case["kwargs"].get("max_new_tokens")
    if samples_t.shape[1] - L > max_new:
        return f"the samples are longer than the prompt + max_new_tokens={max_new}"
    if "greedy" in case:
        if samples_t.shape != case["greedy"].shape or not bool((samples_t == case["greedy"]).all()):
            return (
                "with these sampling arguments every sample is the greedy continuation, but "
                "yours are not: pass the sampling arguments (**sampling) on to generate"
            )
    if answer.shape != samples_t[:1].shape:
        return f"returned shape {tuple(answer.shape)}, expected {tuple(samples_t[:1].shape)}"
    best = samples_t[int(scores.argmax())]
    if not bool((answer[0] == best).all()):
        matches = (samples_t == answer).all(dim=-1)
        if bool(matches.any()):
            return (
                f"returned a sample with score {float(scores[matches][0]):.3f}, but the best "
                f"score is {float(scores.max()):.3f}: return the sample with the HIGHEST score"
            )
        return "returned a sequence that is not one of the samples given to score_fn"
    return None


def check_generate(case: Case, actual: Any, tolerance: Tolerance) -> str | None:
    """``generate`` is compared exactly; on a sampled case a mismatch may come from a
    sampler that uses the generator in another (valid) way, which the message says."""
    problem = compare_outputs(case["expected"], actual, tolerance, ("ids",))
    if problem and case.get("kwargs", {}).get("temperature", 1.0) != 0:
        problem += (
            " (sampled cases are compared token for token: each step must call your "
            "sample_next_token once on the (B, V) logits of the last position, and it must "
            "draw with one torch.multinomial(probs, 1, generator=generator) call, as its "
            "docstring says)"
        )
    return problem
