"""Grading spec of chapter 07 (sampling): inputs, tolerances and the usual mistakes.

The filters and greedy are compared exactly. ``sample_next_token`` is random:
its draws pass when they equal the reference's (the docstring fixes the use of
the generator: one torch.multinomial call) or else when a checker finds no
filtered token, frequencies that pass a chi-square test and a function that
follows its generator. ``generate`` fixes its use of the generator too (one
sample_next_token call per step), so it is compared exactly, on a tiny
deterministic table model (``autograder.public.sampling.TableLM``).
``best_of_n`` is checked through what its scoring function was shown. Hidden
from students: it imports the reference.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

import solutions.sampling as ref
from autograder.core.cases import call_case, randn
from autograder.core.spec import (
    ALL_CASES,
    Case,
    ChapterSpec,
    Exercise,
    Mistake,
    Promise,
    Tolerance,
)

PUBLIC = "autograder.public.sampling"
EXACT = Tolerance(0.0, 0.0)
NEG = float("-inf")

# ---------------------------------------------------------------------------- greedy

GREEDY = Exercise(
    name="greedy",
    points=1,
    summary="the most probable token",
    make_cases=lambda g: [
        call_case("a batch of rows", randn(g, 4, 10, scale=2.0)),
        call_case("leading dimensions", randn(g, 2, 3, 7, scale=2.0)),
        call_case("one row", randn(g, 1, 5)),
        call_case(
            "ties: the first index",
            torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, -1.0, 5.0, 5.0]]),
        ),
    ],
    reference=lambda: ref.greedy,
    output_names=("ids",),
    tolerance=EXACT,
    mistakes=(
        Mistake(
            "argmin",
            "your answer matches the LEAST probable token (argmin): greedy takes argmax.",
            lambda logits: logits.argmin(dim=-1),
        ),
        Mistake(
            "first_dim",
            "your answer matches an argmax over the first dimension: the vocabulary is the "
            "LAST dimension, argmax(dim=-1).",
            lambda logits: logits.argmax(dim=0),
        ),
        Mistake(
            "last_on_ties",
            "your answer matches the LAST of the largest logits on ties: greedy returns the "
            "first index of the largest logit (what torch.argmax returns).",
            lambda logits: logits.shape[-1] - 1 - logits.flip(-1).argmax(dim=-1),
        ),
    ),
    promises=(
        Promise("The most probable token: argmax over the vocabulary.", ALL_CASES),
        Promise("logits: shape (..., V).", ("leading dimensions",)),
        Promise("ids: shape (...), int64, the index of the largest logit", ALL_CASES),
        Promise("(the first on ties)", ("ties: the first index",)),
    ),
)

# ----------------------------------------------------------------- apply_temperature

TEMPERATURE = Exercise(
    name="apply_temperature",
    points=1,
    summary="logits / T",
    make_cases=lambda g: [
        call_case("T = 0.5", randn(g, 3, 8), 0.5),
        call_case("T = 2 with leading dimensions", randn(g, 2, 2, 6), 2.0),
        call_case("T = 1", randn(g, 2, 5), 1.0),
    ],
    reference=lambda: ref.apply_temperature,
    output_names=("logits",),
    tolerance=Tolerance(1e-6, 1e-6),
    mistakes=(
        Mistake(
            "multiplied",
            "your answer matches logits * T: the temperature DIVIDES the logits, "
            "softmax(logits / T), so T < 1 sharpens.",
            lambda logits, temperature: logits * temperature,
        ),
        Mistake(
            "probabilities",
            "your answer matches softmax(logits / T): return the scaled logits, not "
            "probabilities (the filters and the sampler work on logits).",
            lambda logits, temperature: (logits / temperature).softmax(dim=-1),
        ),
    ),
    promises=(
        Promise(
            "Logits divided by the temperature: softmax(logits / T).",
            ("T = 0.5", "T = 2 with leading dimensions"),
        ),
        Promise("logits: shape (..., V).", ("T = 2 with leading dimensions",)),
        Promise(
            "temperature: T > 0.",
            why="a precondition on the caller's temperature (T = 0 is sample_next_token's "
            "business); no behaviour is promised for T <= 0",
        ),
        Promise(
            "T < 1 sharpens the distribution, T > 1 flattens it.",
            ("T = 0.5", "T = 2 with leading dimensions"),
        ),
        Promise("shape (..., V), same dtype as logits.", ALL_CASES),
    ),
)

# ---------------------------------------------------------------------- top_k_filter


def _top_k_variant(kind: str) -> Callable:
    def top_k(logits, k):
        k = min(k, logits.shape[-1])
        largest = kind != "smallest"
        kth = torch.topk(logits, k, dim=-1, largest=largest).values[..., -1:]
        if kind == "smallest":
            return logits.masked_fill(logits > kth, NEG)
        if kind == "drop_kth":
            return logits.masked_fill(logits <= kth, NEG)
        if kind == "zero":
            return logits.masked_fill(logits < kth, 0.0)
        return logits.masked_fill(logits < kth, NEG)

    return top_k


def _top_k_cases(g: torch.Generator) -> list[Case]:
    ties = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.5, -1.0], [0.0, 0.0, 0.0, 1.0, -2.0, 5.0]])
    return [
        call_case("k = 3", randn(g, 4, 10, scale=2.0), 3),
        call_case("k = 1 with leading dimensions", randn(g, 2, 3, 8), 1),
        call_case("ties at the k-th value, k = 3", ties, 3),
        call_case("k larger than V", randn(g, 2, 5), 9),
    ]


TOP_K = Exercise(
    name="top_k_filter",
    points=2,
    summary="keep the k largest logits, -inf elsewhere",
    make_cases=_top_k_cases,
    reference=lambda: ref.top_k_filter,
    output_names=("logits",),
    tolerance=EXACT,
    mistakes=(
        Mistake(
            "drop_kth",
            "your answer matches removing the k-th largest too (<= instead of <): values "
            "STRICTLY below the k-th largest become -inf, so k tokens survive.",
            _top_k_variant("drop_kth"),
        ),
        Mistake(
            "smallest",
            "your answer keeps the k SMALLEST logits: keep the largest (torch.topk's default "
            "largest=True).",
            _top_k_variant("smallest"),
        ),
        Mistake(
            "zero_fill",
            "your answer sets the filtered logits to 0: a logit of 0 still has probability "
            "exp(0) / Z > 0; filtered logits must be -inf.",
            _top_k_variant("zero"),
        ),
    ),
    promises=(
        Promise(
            "Keep the k largest logits of each row; every value strictly below the k-th "
            "largest becomes -inf",
            ("k = 3", "k = 1 with leading dimensions", "ties at the k-th value, k = 3"),
        ),
        Promise("(so ties with the k-th largest are all kept)", ("ties at the k-th value, k = 3",)),
        Promise("logits: shape (..., V).", ("k = 1 with leading dimensions",)),
        Promise("k: number of tokens to keep, k >= 1", ("k = 3", "k = 1 with leading dimensions")),
        Promise("(k > V keeps everything)", ("k larger than V",)),
        Promise("shape (..., V), same dtype as logits.", ALL_CASES),
    ),
)

# ---------------------------------------------------------------------- top_p_filter


def _top_p_variant(kind: str) -> Callable:
    def top_p(logits, p):
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        cum = probs.cumsum(dim=-1)
        if kind == "inclusive":
            drop = cum > p  # drops the token that crosses p
        elif kind == "exact_mass":
            drop = cum - probs > p  # keeps tokens once the mass before them equals p
        elif kind == "unsorted":
            probs_u = logits.softmax(dim=-1)
            drop_u = probs_u.cumsum(dim=-1) - probs_u >= p
            return logits.masked_fill(drop_u, NEG)
        else:
            drop = cum - probs >= p
        fill = 0.0 if kind == "zero" else NEG
        sorted_logits = sorted_logits.masked_fill(drop, fill)
        return torch.empty_like(logits).scatter(-1, order, sorted_logits)

    return top_p


TOP_P = Exercise(
    name="top_p_filter",
    points=2,
    summary="keep the nucleus: the fewest top tokens with mass >= p",
    make_cases=lambda g: [
        call_case("p = 0.9", randn(g, 4, 10, scale=2.0), 0.9),
        call_case("p = 0.5 with leading dimensions", randn(g, 2, 3, 8, scale=1.5), 0.5),
        call_case("p = 1 keeps everything", randn(g, 2, 6), 1.0),
        call_case("tiny p keeps the top token", randn(g, 3, 7), 0.01),
        # probabilities 1/2, 1/2, 0, 0 and 1, 0, 0, 0 exactly (exp(-1e4) is 0 in float32 and
        # float64): the mass before the zero-probability tokens is exactly p = 1
        call_case(
            "the mass reaches p exactly",
            torch.tensor([[0.0, -1e4, 0.0, -1e4], [-1e4, 2.0, -1e4, -1e4]]),
            1.0,
        ),
    ],
    reference=lambda: ref.top_p_filter,
    output_names=("logits",),
    tolerance=EXACT,
    mistakes=(
        Mistake(
            "exact_mass",
            "your answer keeps tokens once the tokens before them already reach p exactly "
            "(here p = 1 and the other tokens have probability 0): token j is kept only while "
            "the mass of the tokens before it is still BELOW p (before < p, strictly).",
            _top_p_variant("exact_mass"),
        ),
        Mistake(
            "inclusive",
            "your answer matches dropping the token whose cumulative probability crosses p "
            "(cumsum > p): that token is needed to REACH p. Keep a token when the mass of "
            "the tokens before it is still below p.",
            _top_p_variant("inclusive"),
        ),
        Mistake(
            "unsorted",
            "your answer matches a cumulative sum in vocabulary order: sort the "
            "probabilities in decreasing order first, then scatter back.",
            _top_p_variant("unsorted"),
        ),
        Mistake(
            "zero_fill",
            "your answer sets the filtered logits to 0: a logit of 0 still has probability "
            "exp(0) / Z > 0; filtered logits must be -inf.",
            _top_p_variant("zero"),
        ),
    ),
    promises=(
        Promise(
            "Nucleus filter: keep the smallest set of most probable tokens whose total "
            "probability is at least p",
            ("p = 0.9", "p = 0.5 with leading dimensions", "the mass reaches p exactly"),
        ),
        Promise("(always at least the most probable one)", ("tiny p keeps the top token",)),
        Promise("the rest -inf.", ("p = 0.9", "p = 0.5 with leading dimensions")),
        Promise(
            "Sorted by decreasing probability, token j is kept when the probability of the "
            "tokens before it is still below p.",
            ("p = 0.9", "p = 0.5 with leading dimensions", "the mass reaches p exactly"),
        ),
        Promise("logits: shape (..., V).", ("p = 0.5 with leading dimensions",)),
        Promise(
            "p: the probability mass to keep, 0 < p <= 1.",
            ("p = 1 keeps everything", "tiny p keeps the top token", "the mass reaches p exactly"),
        ),
        Promise("shape (..., V), same dtype as logits.", ALL_CASES),
    ),
)

# ----------------------------------------------------------------- sample_next_token


def _sample_variant(kind: str) -> Callable:
    def sample(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
        if temperature == 0 and kind != "no_greedy":
            return logits.argmax(dim=-1)
        if kind == "no_greedy" and temperature == 0:
            temperature = 1.0  # ignores "0 means greedy"
        if kind == "filter_first":
            if top_k is not None:
                logits = ref.top_k_filter(logits, top_k)
            if top_p is not None:
                logits = ref.top_p_filter(logits, top_p)
            logits = logits / temperature
        else:
            logits = logits * temperature if kind == "multiplied" else logits / temperature
            if top_p is not None and kind == "top_p_first":
                logits = ref.top_p_filter(logits, top_p)
            if top_k is not None and kind != "ignore_top_k":
                logits = ref.top_k_filter(logits, top_k)
            if top_p is not None and kind != "top_p_first":
                logits = ref.top_p_filter(logits, top_p)
        probs = F.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    return sample


def _sample_case(label: str, logits: torch.Tensor, g: torch.Generator, **kwargs) -> Case:
    T = kwargs.get("temperature", 1.0)
    if T == 0:
        target = F.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    else:
        filtered = logits / T
        if kwargs.get("top_k") is not None:
            filtered = ref.top_k_filter(filtered, kwargs["top_k"])
        if kwargs.get("top_p") is not None:
            filtered = ref.top_p_filter(filtered, kwargs["top_p"])
        target = filtered.softmax(-1)
    seed = int(torch.randint(0, 2**31 - 2, (1,), generator=g))
    return {
        "label": label,
        "args": [logits],
        "kwargs": kwargs,
        "seed": seed,
        "repeats": 1000,
        "target_probs": target,
    }


def _sample_cases(g: torch.Generator) -> list[Case]:
    return [
        _sample_case("T = 1, no filter", randn(g, 2, 6), g),
        _sample_case("T = 0.5, top_k = 3", randn(g, 2, 8), g, temperature=0.5, top_k=3),
        _sample_case(
            "T = 2, top_p = 0.7", randn(g, 2, 8, scale=2.0), g, temperature=2.0, top_p=0.7
        ),
        _sample_case("T = 0 is greedy", randn(g, 2, 8), g, temperature=0.0),
        _sample_case(
            "T = 0.7, top_k = 4 and top_p = 0.8", randn(g, 2, 10, scale=2.0), g,
            temperature=0.7, top_k=4, top_p=0.8,
        ),
        # top-k then top-p keeps token 0 alone (0.3 / 0.55 >= 0.5); top-p first would keep
        # tokens 0 and 1 (the mass before token 1 is 0.3 < 0.5)
        _sample_case(
            "top_k = 2 then top_p = 0.5: the order matters",
            torch.tensor([[0.3, 0.25, 0.2, 0.15, 0.1], [0.1, 0.15, 0.2, 0.25, 0.3]]).log(), g,
            top_k=2, top_p=0.5,
        ),
    ]  # fmt: skip


SAMPLE_POWER = (
    "Measured once by simulation (300 grading seeds, 10000..10299, each case graded as in "
    "grading: 1000 draws per logits row, three calls per case). Every usual wrong answer "
    "failed at 300 of 300 seeds (power >= 0.99 at 95% confidence): the mutants "
    "sample_temperature_multiplied, sample_filters_before_temperature, sample_ignores_top_k, "
    "sample_top_p_before_top_k, sample_draws_at_temperature_zero and the Mistakes multiplied, "
    "filter_first, top_p_first, ignore_top_k, no_greedy. Top-p before top-k is caught by the "
    "case 'top_k = 2 then top_p = 0.5: the order matters' (added: the random cases caught it "
    "at 2 of 10 seeds); a generator used at T = 0 by the state check of the T = 0 case. "
    "False alarms: an answer that draws like the reference equals its draws and never fails; "
    "honest answers that draw otherwise (inverse CDF with torch.rand, Gumbel-max) failed at 0 "
    "of 300 seeds each; the z = 6 chi-square threshold puts a false alarm near 1e-9 per row "
    "(8 random rows) where no expected count is small. Not checked here: that the generator "
    "is consumed by exactly one torch.multinomial call (other valid draws pass; generate "
    "checks that use exactly)."
)

SAMPLE = Exercise(
    name="sample_next_token",
    points=3,
    summary="temperature, top-k, top-p, then one draw",
    make_cases=_sample_cases,
    reference=lambda: ref.sample_next_token,
    driver=f"{PUBLIC}:sample_draws",
    checker=f"{PUBLIC}:check_samples",
    output_names=("ids", "follows_generator", "uses_generator"),
    tolerance=EXACT,
    depends_on=("apply_temperature", "top_k_filter", "top_p_filter"),
    mistakes=(
        Mistake(
            "multiplied",
            "your draws match logits multiplied by the temperature: divide by it.",
            _sample_variant("multiplied"),
        ),
        Mistake(
            "filter_first",
            "your draws match filtering BEFORE the temperature: apply the temperature first, "
            "then top-k, then top-p (the nucleus depends on the temperature).",
            _sample_variant("filter_first"),
        ),
        Mistake(
            "top_p_first",
            "your draws match applying top-p BEFORE top-k: the order is temperature, then "
            "top-k, then top-p (the nucleus is taken over the k tokens top-k kept).",
            _sample_variant("top_p_first"),
        ),
        Mistake(
            "ignore_top_k",
            "your draws match ignoring top_k: apply top_k_filter when top_k is not None.",
            _sample_variant("ignore_top_k"),
        ),
        Mistake(
            "no_greedy",
            "your draws match sampling at temperature 1 when temperature is 0: temperature 0 "
            "means greedy (argmax), without touching the generator.",
            _sample_variant("no_greedy"),
        ),
    ),
    promises=(
        Promise(
            "Draw one token per row: temperature, then top-k, then top-p, then a draw.",
            (
                "T = 0.5, top_k = 3",
                "T = 2, top_p = 0.7",
                "T = 0.7, top_k = 4 and top_p = 0.8",
                "top_k = 2 then top_p = 0.5: the order matters",
            ),
        ),
        Promise(
            "The generator is consumed by exactly one call",
            (
                "T = 1, no filter",
                "T = 0.5, top_k = 3",
                "T = 2, top_p = 0.7",
                "T = 0.7, top_k = 4 and top_p = 0.8",
            ),
        ),
        Promise(
            "With temperature 0 the answer is ``greedy(logits)`` and the generator is not used.",
            ("T = 0 is greedy",),
        ),
        Promise("logits: shape (B, V), the next-token logits.", ALL_CASES),
        Promise(
            "temperature: T >= 0;",
            ("T = 1, no filter", "T = 0.5, top_k = 3", "T = 2, top_p = 0.7", "T = 0 is greedy"),
        ),
        Promise("0 means greedy.", ("T = 0 is greedy",)),
        Promise(
            "top_k: keep the k most probable tokens (None: no top-k filter).",
            ("T = 0.5, top_k = 3", "T = 2, top_p = 0.7", "T = 1, no filter"),
        ),
        Promise(
            "top_p: keep the nucleus of mass p (None: no top-p filter).",
            ("T = 2, top_p = 0.7", "T = 0.5, top_k = 3", "T = 1, no filter"),
        ),
        Promise(
            "generator: the source of randomness.",
            ("T = 1, no filter", "T = 0.5, top_k = 3", "T = 2, top_p = 0.7"),
        ),
        Promise("ids: shape (B,), int64.", ALL_CASES),
    ),
    power=SAMPLE_POWER,
)

# -------------------------------------------------------------------------- generate


def _generate_variant(kind: str) -> Callable:
    def generate(model, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                 eos_token_id=None, generator=None):  # fmt: skip
        ids = input_ids
        finished = torch.zeros(ids.shape[0], dtype=torch.bool)
        for _ in range(max(max_new_tokens, 1) if kind == "at_least_one" else max_new_tokens):
            if kind == "last_token_only":
                logits = model(ids[:, -1:])[:, -1, :]
            elif kind == "first_position":
                logits = model(ids)[:, 0, :]
            else:
                logits = model(ids)[:, -1, :]
            nxt = ref.sample_next_token(logits, temperature, top_k, top_p, generator)
            if eos_token_id is not None:
                if kind != "no_padding":
                    nxt = nxt.masked_fill(finished, eos_token_id)
                finished = finished | (nxt == eos_token_id)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            if eos_token_id is not None and bool(finished.all()) and kind != "no_stop":
                break
        return ids

    return generate


def _table_case(g: torch.Generator, V: int, label: str, args: list, scale: float = 2.0,
                seed: bool = True, **kwargs) -> Case:  # fmt: skip
    return {
        "label": label,
        "args": args,
        "kwargs": kwargs,
        "table": randn(g, V, V, scale=scale),
        "prev": randn(g, V, V, scale=scale / 2),
        "seed": int(torch.randint(0, 2**31 - 2, (1,), generator=g)) if seed else None,
    }


def _prompt(g: torch.Generator, B: int, L: int, V: int) -> torch.Tensor:
    return torch.randint(0, V, (B, L), generator=g)


def _generate_cases(g: torch.Generator) -> list[Case]:
    V = 7
    cases = [
        _table_case(g, V, "greedy (T = 0), B = 2", [_prompt(g, 2, 3, V), 5], temperature=0.0),
        _table_case(
            g, V, "sampling with an end token", [_prompt(g, 4, 2, V), 8], scale=1.0,
            eos_token_id=0,
        ),
        _table_case(g, V, "T = 0.8, top_k = 3", [_prompt(g, 3, 4, V), 6], temperature=0.8, top_k=3),
        _table_case(
            g, V, "T = 1.5, top_p = 0.6, end token", [_prompt(g, 3, 2, V), 10], scale=1.0,
            temperature=1.5, top_p=0.6, eos_token_id=2,
        ),
    ]  # fmt: skip
    from autograder.core.draws import TableLM

    case = _table_case(g, V, "greedy until an end token", [_prompt(g, 1, 2, V), 8], temperature=0.0)
    free = ref.generate(TableLM(case["table"], case["prev"]), case["args"][0], 3, temperature=0.0)
    case["kwargs"]["eos_token_id"] = int(free[0, -1])  # every row ends within 3 steps
    nothing = _table_case(
        g, V, "max_new_tokens = 0 returns the prompt", [_prompt(g, 2, 3, V), 0], temperature=0.7
    )
    return [*cases, case, nothing]


GENERATE_SAMPLED = ("sampling with an end token", "T = 0.8, top_k = 3",
                    "T = 1.5, top_p = 0.6, end token")  # fmt: skip
GENERATE_STEPS = (*GENERATE_SAMPLED, "greedy (T = 0), B = 2", "greedy until an end token")
GENERATE_POWER = (
    "generate is compared token for token with the reference (its docstring fixes the use of "
    "the generator), so an answer that follows the docstring never fails (false alarm 0) and "
    "a wrong one fails whenever a token differs. Simulated once over 150 grading seeds "
    "(10000..10149): the mutants generate_no_padding, generate_no_early_stop, "
    "generate_last_token_only, generate_first_position, "
    "generate_adds_a_token_when_asked_for_none and the Mistakes no_padding, no_stop, "
    "last_token_only, first_position, at_least_one each failed at 150 of 150 seeds (power >= "
    "0.98 at 95% confidence)."
)

GENERATE = Exercise(
    name="generate",
    points=3,
    summary="the autoregressive loop with an end token",
    make_cases=_generate_cases,
    reference=lambda: ref.generate,
    driver=f"{PUBLIC}:generate_with_table",
    checker=f"{PUBLIC}:check_generate",
    output_names=("ids",),
    tolerance=EXACT,
    depends_on=("sample_next_token",),
    mistakes=(
        Mistake(
            "no_padding",
            "your answer matches rows that keep sampling after their end token: once a row "
            "has emitted eos_token_id, every later token of that row is eos_token_id.",
            _generate_variant("no_padding"),
        ),
        Mistake(
            "no_stop",
            "your answer matches running all max_new_tokens steps even when every row has "
            "finished: stop as soon as every row has emitted eos_token_id.",
            _generate_variant("no_stop"),
        ),
        Mistake(
            "last_token_only",
            "your answer matches feeding the model only the last token: run the model on "
            "the whole sequence so far and take the logits of the last position.",
            _generate_variant("last_token_only"),
        ),
        Mistake(
            "first_position",
            "your answer matches the logits of the FIRST position, model(ids)[:, 0]: the "
            "next token comes from the last position, model(ids)[:, -1].",
            _generate_variant("first_position"),
        ),
        Mistake(
            "at_least_one",
            "your answer matches adding a token even when max_new_tokens is 0: with "
            "max_new_tokens = 0 the answer is the prompt itself.",
            _generate_variant("at_least_one"),
        ),
    ),
    promises=(
        Promise("Autoregressive decoding: append one sampled token per step.", ALL_CASES),
        Promise(
            "Each step runs the model on the whole sequence so far, takes the logits of the "
            "last position and calls ``sample_next_token`` once on the (B, V) batch",
            GENERATE_STEPS,
        ),
        Promise(
            "(so the generator is consumed by one ``torch.multinomial`` call per step when "
            "temperature > 0)",
            GENERATE_SAMPLED,
        ),
        Promise(
            "A row that has emitted ``eos_token_id`` is finished: from then on it gets "
            "``eos_token_id`` (padding) whatever was drawn for it.",
            ("sampling with an end token", "T = 1.5, top_p = 0.6, end token"),
        ),
        Promise(
            "Decoding stops after ``max_new_tokens`` steps, or as soon as every row is finished.",
            (
                "greedy (T = 0), B = 2",
                "T = 0.8, top_k = 3",
                "greedy until an end token",
                "T = 1.5, top_p = 0.6, end token",
                "max_new_tokens = 0 returns the prompt",
            ),
        ),
        Promise("model: a callable mapping ids (B, L) to logits (B, L, V).", ALL_CASES),
        Promise("input_ids: shape (B, L), the prompts (int64).", ALL_CASES),
        Promise(
            "max_new_tokens: the most tokens to add, >= 0.",
            ("greedy (T = 0), B = 2", "max_new_tokens = 0 returns the prompt"),
        ),
        Promise(
            "temperature, top_k, top_p: as in ``sample_next_token`` (0: greedy).",
            ("greedy (T = 0), B = 2", "T = 0.8, top_k = 3", "T = 1.5, top_p = 0.6, end token"),
        ),
        Promise(
            "eos_token_id: the end-of-sequence token, or None to always run max_new_tokens steps.",
            ("sampling with an end token", "greedy (T = 0), B = 2", "T = 0.8, top_k = 3"),
        ),
        Promise("generator: the source of randomness.", GENERATE_SAMPLED),
        Promise(
            "ids: shape (B, L + new), new <= max_new_tokens; the prompts come first.", ALL_CASES
        ),
    ),
    power=GENERATE_POWER,
)

# ----------------------------------------------------------------------- beam_search


def _beam_variant(kind: str) -> Callable:
    def beam_search(model, input_ids, beam_width, max_new_tokens, length_penalty=1.0,
                    eos_token_id=None):  # fmt: skip
        beams = input_ids
        scores = torch.zeros(1)
        finished = []
        lp = 0.0 if kind == "no_normalisation" else length_penalty
        for step in range(1, max_new_tokens + 1):
            logits = model(beams)[:, -1, :]
            logp = logits.float() if kind == "raw_logits" else F.log_softmax(logits.float(), -1)
            V = logp.shape[-1]
            if kind == "not_cumulative":
                cand = logp.flatten()
            else:
                cand = (scores[:, None] + logp).flatten()
            top = cand.topk(min(2 * beam_width, cand.numel()))
            kb, kt, ks = [], [], []
            for rank, (s, index) in enumerate(
                zip(top.values.tolist(), top.indices.tolist(), strict=True)
            ):
                beam, token = divmod(index, V)
                if kind == "not_cumulative":
                    s = s + float(scores[beam])
                if eos_token_id is not None and token == eos_token_id:
                    if rank < beam_width or kind == "eos_any_rank":
                        seq = torch.cat([beams[beam], beams.new_tensor([token])])
                        n = max(step - 1, 1) if kind == "eos_not_counted" else step
                        finished.append((s / n**lp, seq))
                else:
                    kb.append(beam)
                    kt.append(token)
                    ks.append(s)
                if len(kb) == beam_width:
                    break
            beams = torch.cat([beams[torch.tensor(kb)], torch.tensor(kt)[:, None]], dim=1)
            scores = torch.tensor(ks)
            if (len(finished) >= beam_width and kind != "no_early_stop") or not kb:
                break
        if not (kind == "alive_not_counted" and finished):
            for s, seq in zip(scores.tolist(), beams, strict=True):
                finished.append((s / step**lp, seq))
        best = max(range(len(finished)), key=lambda i: finished[i][0])
        return finished[best][1][None, :]

    return beam_search


# What each beam case must tell apart from the reference: its tables are drawn again until
# every mistake named here gives another answer than the reference (at most 400 draws).
BEAM_SEPARATES = {
    "beam_width = 1 is greedy": (),
    "beam_width = 3": ("raw_logits", "not_cumulative"),
    "beam_width = 4, longer": ("raw_logits", "not_cumulative"),
    "end token, length_penalty = 1": ("no_normalisation", "alive_not_counted", "no_early_stop"),
    "end token, length_penalty = 2": ("no_normalisation", "eos_not_counted"),
    "end token beyond the beam width": ("eos_any_rank",),
}


def _separating_case(g: torch.Generator, V: int, label: str, prompt_len: int, args: list,
                     scale: float, eos_boost: float = 0.0, **kwargs) -> Case:  # fmt: skip
    """A beam case whose tables make every mistake of BEAM_SEPARATES[label] answer otherwise
    (``eos_boost`` is added to the end token's logits, so it is often a candidate)."""
    from autograder.core.draws import TableLM

    prompt = _prompt(g, 1, prompt_len, V)
    for _ in range(400):
        case = _table_case(g, V, label, [prompt, *args], scale=scale, seed=False, **kwargs)
        if eos_boost:
            case["table"][:, kwargs["eos_token_id"]] += eos_boost
        model = TableLM(case["table"], case["prev"])
        want = ref.beam_search(model, *case["args"], **kwargs)
        if all(
            not torch.equal(_beam_variant(kind)(model, *case["args"], **kwargs), want)
            for kind in BEAM_SEPARATES[label]
        ):
            return case
    raise RuntimeError(f"no table separates the mistakes of beam case {label!r}")


def _beam_cases(g: torch.Generator) -> list[Case]:
    V = 6
    return [
        _separating_case(g, V, "beam_width = 1 is greedy", 2, [1, 4], 2.0),
        _separating_case(g, V, "beam_width = 3", 3, [3, 4], 3.0),
        _separating_case(g, V, "beam_width = 4, longer", 1, [4, 6], 1.0),
        _separating_case(g, V, "end token, length_penalty = 1", 2, [3, 6], 1.0, eos_token_id=0),
        _separating_case(
            g, V, "end token, length_penalty = 2", 2, [2, 6], 1.0, eos_token_id=1,
            length_penalty=2.0,
        ),
        _separating_case(
            g, V, "end token beyond the beam width", 2, [2, 5], 1.0, eos_boost=1.0,
            eos_token_id=2,
        ),
    ]  # fmt: skip


BEAM = Exercise(
    name="beam_search",
    points=3,
    summary="keep the W best partial sequences by log-probability",
    make_cases=_beam_cases,
    reference=lambda: ref.beam_search,
    driver=f"{PUBLIC}:beam_with_table",
    output_names=("ids",),
    tolerance=EXACT,
    mistakes=(
        Mistake(
            "raw_logits",
            "your answer matches ranking candidates by summed raw logits: convert each "
            "step's logits to log-probabilities (log_softmax) before adding them to the "
            "beam scores.",
            _beam_variant("raw_logits"),
        ),
        Mistake(
            "not_cumulative",
            "your answer matches ranking candidates by the last token's log-probability "
            "alone: a candidate's score is its beam's total log-probability plus the new "
            "token's.",
            _beam_variant("not_cumulative"),
        ),
        Mistake(
            "no_normalisation",
            "your answer matches comparing finished sequences by their raw total "
            "log-probability: divide by (number of generated tokens) ** length_penalty.",
            _beam_variant("no_normalisation"),
        ),
        Mistake(
            "eos_any_rank",
            "your answer matches finishing every candidate that ends in the end token, even "
            "beyond the first beam_width of the ranking: only a candidate ranked below "
            "beam_width is finished.",
            _beam_variant("eos_any_rank"),
        ),
        Mistake(
            "no_early_stop",
            "your answer matches searching on after beam_width sequences are finished: stop "
            "as soon as beam_width sequences have ended with the end token.",
            _beam_variant("no_early_stop"),
        ),
        Mistake(
            "alive_not_counted",
            "your answer matches choosing among the sequences that ended with the end token "
            "only: when the search stops, the alive beams count as finished too.",
            _beam_variant("alive_not_counted"),
        ),
        Mistake(
            "eos_not_counted",
            "your answer matches a length that leaves out the end token: the end token counts "
            "as a generated token in score / (number of generated tokens) ** length_penalty.",
            _beam_variant("eos_not_counted"),
        ),
    ),
    promises=(
        Promise(
            "Beam search: keep the ``beam_width`` best partial sequences by total log-probability.",
            ALL_CASES,
        ),
        Promise(
            "At every step each alive beam is extended by every token; candidates are ranked "
            "by beam score + log p(token) (log_softmax of the last logits).",
            ("beam_width = 3", "beam_width = 4, longer"),
        ),
        Promise(
            "Going down that ranking, a candidate ending in ``eos_token_id`` is finished",
            ("end token, length_penalty = 1", "end token, length_penalty = 2"),
        ),
        Promise("(if its rank is below ``beam_width``)", ("end token beyond the beam width",)),
        Promise(
            "the others become the new alive beams until there are ``beam_width`` of them.",
            ("beam_width = 3", "beam_width = 4, longer", "end token beyond the beam width"),
        ),
        Promise(
            "Search stops after ``max_new_tokens`` steps or once ``beam_width`` sequences are "
            "finished; the alive beams then count as finished too.",
            ("end token, length_penalty = 1", "beam_width = 4, longer"),
        ),
        Promise(
            "The answer is the finished sequence with the largest score / (number of "
            "generated tokens) ** length_penalty",
            ("end token, length_penalty = 1", "end token, length_penalty = 2"),
        ),
        Promise("(an end token counts as generated)", ("end token, length_penalty = 2",)),
        Promise("model: a callable mapping ids (B, L) to logits (B, L, V).", ALL_CASES),
        Promise("input_ids: shape (1, L), one prompt.", ALL_CASES),
        Promise(
            "beam_width: W >= 1 (1 is greedy decoding).",
            ("beam_width = 1 is greedy", "beam_width = 3", "beam_width = 4, longer"),
        ),
        Promise("max_new_tokens: the most tokens to add, >= 1.", ALL_CASES),
        Promise(
            "length_penalty: the exponent of the length normalisation (0: raw sums, which "
            "favour short sequences; larger values favour long ones).",
            ("end token, length_penalty = 1", "end token, length_penalty = 2"),
        ),
        Promise(
            "eos_token_id: the end-of-sequence token, or None.",
            ("beam_width = 3", "end token, length_penalty = 1", "end token beyond the beam width"),
        ),
        Promise(
            "ids: shape (1, L + new), the prompt followed by the best continuation.", ALL_CASES
        ),
    ),
)

# ------------------------------------------------------------------------- best_of_n


def _best_variant(kind: str) -> Callable:
    def best_of_n(model, input_ids, n, score_fn, **sampling):
        if kind == "no_sampling_args":
            sampling = {"max_new_tokens": sampling["max_new_tokens"],
                        "generator": sampling.get("generator")}  # fmt: skip
        samples = ref.generate(model, input_ids.expand(n, -1), **sampling)
        scores = score_fn(samples)
        if kind == "last_on_ties":
            best = len(scores) - 1 - scores.flip(0).argmax()
        else:
            best = scores.argmin() if kind == "argmin" else scores.argmax()
        return samples[best][None, :]

    return best_of_n


def _best_cases(g: torch.Generator) -> list[Case]:
    V = 7
    cases = [
        _table_case(g, V, "n = 5, T = 1", [_prompt(g, 1, 2, V), 5], scale=1.0, max_new_tokens=4),
        _table_case(
            g, V, "n = 8, T = 1.2, end token", [_prompt(g, 1, 3, V), 8], scale=1.0,
            max_new_tokens=6, temperature=1.2, eos_token_id=3,
        ),
        _table_case(
            g, V, "n = 8, top_k = 1 (every sample greedy)", [_prompt(g, 1, 2, V), 8], scale=0.5,
            max_new_tokens=5, top_k=1,
        ),
    ]  # fmt: skip
    for case in cases:
        case["token_values"] = randn(g, V)
    last = cases[-1]
    from autograder.core.draws import TableLM

    greedy = ref.generate(TableLM(last["table"], last["prev"]), last["args"][0], 5, temperature=0)
    last["greedy"] = greedy.expand(last["args"][1], -1).clone()
    tie = _table_case(
        g, V, "every score ties: the first sample", [_prompt(g, 1, 2, V), 6], scale=1.0,
        max_new_tokens=3, temperature=1.5,
    )  # fmt: skip
    tie["token_values"] = torch.zeros(V)  # every sample scores 0: the first one is the answer
    for _ in range(100):  # a seed whose first and last samples differ
        samples = ref.generate(
            TableLM(tie["table"], tie["prev"]), tie["args"][0].expand(6, -1), 3,
            temperature=1.5, generator=torch.Generator().manual_seed(tie["seed"]),
        )  # fmt: skip
        if not torch.equal(samples[0], samples[-1]):
            break
        tie["seed"] = int(torch.randint(0, 2**31 - 2, (1,), generator=g))
    cases.append(tie)
    return cases


BEST_POWER = (
    "The checks are deterministic given the samples score_fn is shown (the answer must be "
    "the first best-scored of n samples that start with the prompt), so an honest answer "
    "never fails (false alarm 0, also measured: the reference failed at 0 of 300 grading "
    "seeds). Simulated once over 300 grading seeds (10000..10299): the mutants "
    "best_of_n_argmin, best_of_n_drops_sampling_args, best_of_n_last_on_ties and the "
    "Mistakes argmin, no_sampling_args, last_on_ties each failed at 300 of 300 seeds (power "
    ">= 0.99 at 95% confidence). Dropping the sampling arguments is caught only by 'n = 8, "
    "top_k = 1 (every sample greedy)': with n = 4 on a table of scale 2 its samples at T = 1 "
    "were all greedy at 1 of 150 seeds, so n is 8 and the table flatter (scale 0.5). Not "
    "checked (by design: a mistake in generate must not cost best_of_n too): that the "
    "samples are exactly those of ONE generate call with the given generator, or that "
    "eos_token_id and the temperature reach generate."
)

BEST = Exercise(
    name="best_of_n",
    points=2,
    summary="sample n, keep the best-scored",
    make_cases=_best_cases,
    reference=lambda: ref.best_of_n,
    driver=f"{PUBLIC}:best_of_n_with_table",
    checker=f"{PUBLIC}:check_best_of_n",
    output_names=("ids", "samples_scored", "scores"),
    tolerance=EXACT,
    depends_on=("generate",),
    mistakes=(
        Mistake(
            "argmin",
            "your answer matches the LOWEST-scored sample: best-of-N keeps the highest "
            "score (argmax).",
            _best_variant("argmin"),
        ),
        Mistake(
            "no_sampling_args",
            "your answer matches samples drawn without the sampling arguments: pass "
            "**sampling (temperature, top_k, top_p, eos_token_id, generator) on to generate.",
            _best_variant("no_sampling_args"),
        ),
        Mistake(
            "last_on_ties",
            "your answer matches the LAST of the best-scored samples on ties: return the "
            "first of them (what argmax returns).",
            _best_variant("last_on_ties"),
        ),
    ),
    promises=(
        Promise(
            "Best-of-N: sample n continuations, return the one ``score_fn`` scores highest.",
            ALL_CASES,
        ),
        Promise(
            "The n samples come from ONE call ``generate(model, input_ids.expand(n, -1), "
            "**sampling)`` (so they consume the generator like a batch of n rows)",
            ("n = 8, top_k = 1 (every sample greedy)",),
        ),
        Promise("then ONE call ``score_fn(samples)`` scores them all.", ALL_CASES),
        Promise("model: a callable mapping ids (B, L) to logits (B, L, V).", ALL_CASES),
        Promise("input_ids: shape (1, L), one prompt.", ALL_CASES),
        Promise("n: the number of samples, >= 1.", ALL_CASES),
        Promise(
            "score_fn: maps samples (n, L + new) to scores (n,) (a reward model, a verifier, "
            "the model's own log-probability...).",
            ALL_CASES,
        ),
        Promise(
            "**sampling: the arguments of ``generate`` (max_new_tokens, temperature, top_k, "
            "top_p, eos_token_id, generator).",
            ("n = 8, top_k = 1 (every sample greedy)", "n = 5, T = 1"),
        ),
        Promise(
            "ids: shape (1, L + new), the best sample",
            ("n = 5, T = 1", "n = 8, T = 1.2, end token"),
        ),
        Promise("(the first of the best on ties)", ("every score ties: the first sample",)),
    ),
    power=BEST_POWER,
)

SPEC = ChapterSpec(
    number="07",
    slug="sampling",
    title="Decoding and sampling",
    exercises=(GREEDY, TEMPERATURE, TOP_K, TOP_P, SAMPLE, GENERATE, BEAM, BEST),
)
