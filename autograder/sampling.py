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
from autograder.core.spec import Case, ChapterSpec, Exercise, Mistake, Tolerance

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
)

# ---------------------------------------------------------------------- top_p_filter


def _top_p_variant(kind: str) -> Callable:
    def top_p(logits, p):
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        cum = probs.cumsum(dim=-1)
        if kind == "inclusive":
            drop = cum > p  # drops the token that crosses p
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
    ],
    reference=lambda: ref.top_p_filter,
    output_names=("logits",),
    tolerance=EXACT,
    mistakes=(
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
            if top_k is not None and kind != "ignore_top_k":
                logits = ref.top_k_filter(logits, top_k)
            if top_p is not None:
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
    ]  # fmt: skip


SAMPLE = Exercise(
    name="sample_next_token",
    points=3,
    summary="temperature, top-k, top-p, then one draw",
    make_cases=_sample_cases,
    reference=lambda: ref.sample_next_token,
    driver=f"{PUBLIC}:sample_draws",
    checker=f"{PUBLIC}:check_samples",
    output_names=("ids", "follows_generator"),
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
)

# -------------------------------------------------------------------------- generate


def _generate_variant(kind: str) -> Callable:
    def generate(model, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                 eos_token_id=None, generator=None):  # fmt: skip
        ids = input_ids
        finished = torch.zeros(ids.shape[0], dtype=torch.bool)
        for _ in range(max_new_tokens):
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
    return [*cases, case]


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
    ),
)

# ----------------------------------------------------------------------- beam_search


def _beam_variant(kind: str) -> Callable:
    def beam_search(model, input_ids, beam_width, max_new_tokens, length_penalty=1.0,
                    eos_token_id=None):  # fmt: skip
        beams = input_ids
        scores = torch.zeros(1)
        finished = []
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
                    if rank < beam_width:
                        seq = torch.cat([beams[beam], beams.new_tensor([token])])
                        lp = 0.0 if kind == "no_normalisation" else length_penalty
                        finished.append((s / step**lp, seq))
                else:
                    kb.append(beam)
                    kt.append(token)
                    ks.append(s)
                if len(kb) == beam_width:
                    break
            beams = torch.cat([beams[torch.tensor(kb)], torch.tensor(kt)[:, None]], dim=1)
            scores = torch.tensor(ks)
            if len(finished) >= beam_width or not kb:
                break
        lp = 0.0 if kind == "no_normalisation" else length_penalty
        for s, seq in zip(scores.tolist(), beams, strict=True):
            finished.append((s / step**lp, seq))
        best = max(range(len(finished)), key=lambda i: finished[i][0])
        return finished[best][1][None, :]

    return beam_search


def _beam_cases(g: torch.Generator) -> list[Case]:
    V = 6
    return [
        _table_case(g, V, "beam_width = 1 is greedy", [_prompt(g, 1, 2, V), 1, 4], seed=False),
        _table_case(g, V, "beam_width = 3", [_prompt(g, 1, 3, V), 3, 4], seed=False),
        _table_case(g, V, "beam_width = 4, longer", [_prompt(g, 1, 1, V), 4, 6], scale=1.0,
                    seed=False),
        _table_case(
            g, V, "end token, length_penalty = 1", [_prompt(g, 1, 2, V), 3, 6], scale=1.0,
            seed=False, eos_token_id=0,
        ),
        _table_case(
            g, V, "end token, length_penalty = 2", [_prompt(g, 1, 2, V), 2, 6], scale=1.0,
            seed=False, eos_token_id=1, length_penalty=2.0,
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
            g, V, "n = 4, top_k = 1 (every sample greedy)", [_prompt(g, 1, 2, V), 4],
            max_new_tokens=5, top_k=1,
        ),
    ]  # fmt: skip
    for case in cases:
        case["token_values"] = randn(g, V)
    last = cases[-1]
    from autograder.core.draws import TableLM

    greedy = ref.generate(TableLM(last["table"], last["prev"]), last["args"][0], 5, temperature=0)
    last["greedy"] = greedy.expand(last["args"][1], -1).clone()
    return cases


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
    ),
)

SPEC = ChapterSpec(
    number="07",
    slug="sampling",
    title="Decoding and sampling",
    exercises=(GREEDY, TEMPERATURE, TOP_K, TOP_P, SAMPLE, GENERATE, BEAM, BEST),
)
