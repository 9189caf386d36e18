"""Grading spec of chapter 10 (prompting): inputs, tolerances and the usual mistakes.

The string exercises (``few_shot_prompt``, ``majority_vote``, ``retrieval_prompt``)
are compared exactly. The exercises that take a language model are run on a tiny
deterministic table model built by the drivers of ``autograder.public.prompting``
(logits(t) = table[ids_t] + prev[ids_{t-1}], causal, depending on the last two
tokens), which also record the shapes the model was called with and whether it ran
without gradients. ``self_consistency`` fixes its use of the generator (one
``torch.multinomial`` call per step on the whole batch), so its draws are compared
exactly with the reference's. Cases whose point is to tell the reference from a usual
mistake are drawn again until they do (see ``_separating``). Hidden from students: it
imports the reference.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import solutions.prompting as ref
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

PUBLIC = "autograder.public.prompting"
EXACT = Tolerance(0.0, 0.0)
# sums of a few float32 log-probabilities of size ~10: float32 rounding is ~1e-6
LOGPROB_TOL = Tolerance(1e-5, 1e-5)
WORDS = "the cat dog sat on a mat rug and ran to big red who wrote it".split()


def _randint(g: torch.Generator, high: int) -> int:
    return int(torch.randint(high, (1,), generator=g))


def _ids(g: torch.Generator, n: int, V: int) -> torch.Tensor:
    return torch.randint(0, V, (n,), generator=g)


def _state(g: torch.Generator, V: int, scale: float = 2.0) -> dict[str, torch.Tensor]:
    """The tables of a ``TableLM`` (see autograder.public.prompting)."""
    return {"table": randn(g, V, V, scale=scale), "prev": randn(g, V, V, scale=scale / 2)}


def _model(case: Case) -> Any:
    from autograder.public.prompting import RecordingLM

    return RecordingLM(case["state"]["table"], case["state"]["prev"])


def _separating(make: Callable[[], Case], reference: Callable, mistakes: list[Callable],
                run: Callable[[Callable, Case], Any], label: str) -> Case:  # fmt: skip
    """``make()`` drawn again until every mistake answers otherwise than the reference."""
    for _ in range(500):
        case = make()
        want = run(reference, case)
        if all(not _same(run(m, case), want) for m in mistakes):
            return case
    raise RuntimeError(f"no draw separates the mistakes of case {label!r}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# ------------------------------------------------------------------ few_shot_prompt

DEFAULT_TEMPLATE = "in: {input} -> out: {output}\n"


def _prompt_variant(kind: str) -> Callable:
    def few_shot_prompt(examples, query, template=DEFAULT_TEMPLATE):
        o = template.index("{output}")
        if kind == "format":
            parts = [template.format(input=x, output=y) for x, y in examples]
            parts.append(template[:o].format(input=query))
        elif kind == "rescans":
            parts = [template.replace("{input}", x).replace("{output}", y) for x, y in examples]
            parts.append(template[:o].replace("{input}", query))
        else:
            i = template.index("{input}")
            before, middle, after = template[:i], template[i + 7 : o], template[o + 8 :]
            parts = [before + x + middle + y + after for x, y in examples]
            query_after = after if kind == "not_cut" else ""
            parts.append(before + query + middle + query_after)
        if kind == "newline_joined":
            return "\n".join(parts)
        prompt = "".join(parts)
        return prompt.rstrip() if kind == "stripped" else prompt

    return few_shot_prompt


def _pairs(g: torch.Generator, n: int) -> list[tuple[str, str]]:
    return [(WORDS[_randint(g, len(WORDS))], WORDS[_randint(g, len(WORDS))]) for _ in range(n)]


def _few_shot_cases(g: torch.Generator) -> list[Case]:
    return [
        call_case("three examples, the default template", _pairs(g, 3), WORDS[_randint(g, 8)]),
        call_case("zero-shot: no examples", [], "bird"),
        call_case(
            "text after {output} in the template", _pairs(g, 2), "red",
            template="Q: {input}\nA: {output}\n\n",
        ),
        call_case("braces and placeholders in the text", [("{x} {output}", "{input}}")], "{}"),
        call_case(
            "doubled braces in the template are literal", _pairs(g, 2), "mat",
            template="{{{input}}} => {output};\n",
        ),
        call_case("the docstring example", [("2+2", "4")], "3+3"),
        call_case(
            "zero-shot with a template of its own", [], "x", template="Q: {input}\nA: {output}\n\n"
        ),
        call_case(
            "{output} ends the template", _pairs(g, 2), "dog", template="<{input}|{output}>"
        ),
    ]  # fmt: skip


FEW_SHOT = Exercise(
    name="few_shot_prompt",
    points=1,
    summary="worked examples, then the query cut before {output}",
    make_cases=_few_shot_cases,
    reference=lambda: ref.few_shot_prompt,
    output_names=("prompt",),
    tolerance=EXACT,
    mistakes=(
        Mistake(
            "not_cut",
            "your answer matches the query rendered with the WHOLE template (an empty output "
            "and the text after {output}): cut the template just before {output} for the "
            "query, so the prompt ends where the answer starts.",
            _prompt_variant("not_cut"),
        ),
        Mistake(
            "format",
            "your answer matches template.format(...): str.format turns '{{' into '{' (and "
            "fails on other braces); put x and y in place of the placeholders literally, by "
            "cutting the template at {input} and {output}.",
            _prompt_variant("format"),
        ),
        Mistake(
            "rescans",
            "your answer matches chained str.replace calls: the second replace also rewrites "
            "a placeholder that was inside the inserted text. Cut the template at {input} and "
            "{output} and concatenate the pieces, so the inserted text is copied as it is.",
            _prompt_variant("rescans"),
        ),
        Mistake(
            "newline_joined",
            "your answer matches joining the rendered examples with '\\n': concatenate them "
            "as they are (the template already ends with whatever separates examples).",
            _prompt_variant("newline_joined"),
        ),
        Mistake(
            "stripped",
            "your answer matches a prompt with its trailing whitespace stripped: keep the "
            "template's text up to {output} exactly (the space after 'out:' is part of it).",
            _prompt_variant("stripped"),
        ),
    ),
    promises=(
        Promise(
            "A few-shot prompt: the worked examples, then the query, ending where its answer "
            "starts.",
            ALL_CASES,
        ),
        Promise(
            "The template must contain the placeholder ``{input}`` exactly once and, after it, "
            "the placeholder ``{output}`` exactly once.",
            why="a precondition on the caller's template: bad templates raise ValueError, "
            "which grading does not score",
        ),
        Promise(
            "An example (x, y) is rendered by putting x in place of ``{input}`` and y in place "
            "of ``{output}``, literally: not with ``str.format`` and without scanning the "
            "inserted text again, so braces (even the placeholder strings themselves) inside x "
            "or y are copied as they are.",
            (
                "braces and placeholders in the text",
                "doubled braces in the template are literal",
            ),
        ),
        Promise(
            "The prompt is the rendered examples concatenated in their order, followed by the "
            "query rendered with the template cut just before ``{output}`` (nothing of the "
            "template after that point is added).",
            (
                "three examples, the default template",
                "text after {output} in the template",
                "{output} ends the template",
            ),
        ),
        Promise(
            "With no examples the prompt is the query alone (zero-shot).",
            ("zero-shot: no examples", "zero-shot with a template of its own"),
        ),
        Promise('``few_shot_prompt([("2+2", "4")], "3+3")`` is', ("the docstring example",)),
        Promise('``"in: 2+2 -> out: 4\\nin: 3+3 -> out: "``.', ("the docstring example",)),
        Promise(
            "examples: the (input, output) pairs of strings, in order; may be empty.",
            ("three examples, the default template", "zero-shot: no examples"),
        ),
        Promise("query: the input whose output the model should write.", ALL_CASES),
        Promise(
            "template: the text of one example, with ``{input}`` before ``{output}``.",
            ("text after {output} in the template", "doubled braces in the template are literal"),
        ),
        Promise("The prompt, a string.", ALL_CASES),
    ),
)

# ----------------------------------------------------------------- sequence_logprob


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)


def _logprob_variant(kind: str) -> Callable:
    def sequence_logprob(model, prompt_ids, continuation_ids):
        if kind == "no_grad":
            with torch.no_grad():
                return _logprob_variant("")(model, prompt_ids, continuation_ids)
        P = prompt_ids.shape[0]
        full = torch.cat([prompt_ids.long(), continuation_ids.long()])  # (P + C,)
        if kind == "per_token_calls":
            rows = [model(full[None, : P + c])[0, -1] for c in range(continuation_ids.shape[0])]
            logits, targets = torch.stack(rows), full[P:]
        elif kind == "own_position":
            logits, targets = model(full[None])[0, P:], full[P:]
        elif kind == "full_sequence":
            logits, targets = model(full[None])[0, P - 1 : -1], full[P:]
        elif kind == "prompt_scored":
            logits, targets = model(full[None, :-1])[0], full[1:]
        else:
            logits, targets = model(full[None, :-1])[0, P - 1 :], full[P:]
        logp = logits if kind == "raw_logits" else _log_softmax(logits)
        token = logp.gather(-1, targets[:, None])[:, 0]
        total = token.mean() if kind == "mean" else token.sum()
        return total.to(logits.dtype)

    return sequence_logprob


def _logprob_case(g: torch.Generator, label: str, P: int, C: int, V: int,
                  ids_dtype: torch.dtype = torch.long) -> Case:  # fmt: skip
    return {
        "label": label,
        "args": [],
        "kwargs": {
            "prompt_ids": _ids(g, P, V).to(ids_dtype),
            "continuation_ids": _ids(g, C, V).to(ids_dtype),
        },
        "state": _state(g, V),
    }


def _logprob_cases(g: torch.Generator) -> list[Case]:
    bf16 = _logprob_case(g, "bfloat16 logits: the answer in bfloat16", 3, 3, 9)
    bf16["state"] = {k: v.to(torch.bfloat16) for k, v in bf16["state"].items()}
    bf16["dtype"] = "bfloat16"  # graded at bfloat16's tolerance
    return [
        _logprob_case(g, "P = 4, C = 3", 4, 3, 10),
        _logprob_case(g, "a one-token prompt, P = 1", 1, 4, 8),
        _logprob_case(g, "a one-token continuation, C = 1", 5, 1, 8),
        _logprob_case(g, "int32 token ids, V = 20", 3, 5, 20, torch.int32),
        bf16,
        _logprob_case(g, "P = 2, C = 6", 2, 6, 7),
    ]


LOGPROB = Exercise(
    name="sequence_logprob",
    points=2,
    summary="log p(continuation | prompt), one forward pass",
    make_cases=_logprob_cases,
    reference=lambda: ref.sequence_logprob,
    driver=f"{PUBLIC}:logprob_with_table",
    output_names=("logprob", "differentiable", "model_inputs"),
    tolerance=LOGPROB_TOL,
    dtypes=("float64",),
    mistakes=(
        Mistake(
            "own_position",
            "your answer matches reading each continuation token's log-probability at its OWN "
            "position: the logits at position t predict token t + 1, so token c of the "
            "continuation is scored by the logits at position P - 1 + c.",
            _logprob_variant("own_position"),
        ),
        Mistake(
            "raw_logits",
            "your answer matches summing raw logits: take log_softmax over the vocabulary "
            "first, then pick each token's entry.",
            _logprob_variant("raw_logits"),
        ),
        Mistake(
            "mean",
            "your answer matches the MEAN log-probability per token: log p(continuation | "
            "prompt) is the SUM over the continuation's tokens.",
            _logprob_variant("mean"),
        ),
        Mistake(
            "prompt_scored",
            "your answer matches scoring the prompt's tokens too: only the continuation's "
            "tokens are summed, each conditioned on the prompt and the tokens before it.",
            _logprob_variant("prompt_scored"),
        ),
        Mistake(
            "full_sequence",
            "your answer matches running the model on the whole prompt + continuation: the "
            "last continuation token is predicted, never read, so the model runs once on "
            "cat(prompt_ids, continuation_ids[:-1]) (P + C - 1 tokens).",
            _logprob_variant("full_sequence"),
        ),
        Mistake(
            "per_token_calls",
            "your answer matches one model call per continuation token: one forward pass on "
            "cat(prompt_ids, continuation_ids[:-1]) gives every logit needed at once.",
            _logprob_variant("per_token_calls"),
        ),
        Mistake(
            "no_grad",
            "your answer carries no gradient: do not use torch.no_grad (or .detach()) inside; "
            "the log-probability must be differentiable with respect to the model's "
            "parameters (chapter 06 trains through it).",
            _logprob_variant("no_grad"),
        ),
    ),
    promises=(
        Promise(
            "log p(continuation | prompt): the sum of the log-probabilities of the "
            "continuation's tokens.",
            ALL_CASES,
        ),
        Promise(
            "Σ_{c=0}^{C-1} log softmax(logits at the position before token c)[token c], each "
            "continuation token conditioned on the whole prompt and the continuation tokens "
            "before it.",
            ("P = 4, C = 3", "a one-token prompt, P = 1", "P = 2, C = 6"),
        ),
        Promise(
            "One forward pass, ``model(ids[None])`` with ``ids = cat(prompt_ids, "
            "continuation_ids[:-1])`` of length P + C - 1 (the last continuation token is "
            "predicted, never read).",
            ALL_CASES,
        ),
        Promise(
            "The log-softmax is computed in float32 when the logits are float16 or bfloat16 "
            "(otherwise in their dtype) and the sum is returned in the dtype of the logits, on "
            "their device.",
            ("bfloat16 logits: the answer in bfloat16", "P = 4, C = 3"),
        ),
        Promise(
            "No ``torch.no_grad`` inside: the result is differentiable with respect to the "
            "model's parameters.",
            ALL_CASES,
        ),
        Promise("model: a causal language model, ids (B, T) -> logits (B, T, V).", ALL_CASES),
        Promise(
            "prompt_ids: shape (P,), integer token ids, P >= 1.",
            ("a one-token prompt, P = 1", "int32 token ids, V = 20"),
        ),
        Promise(
            "continuation_ids: shape (C,), integer token ids, C >= 1.",
            ("a one-token continuation, C = 1", "int32 token ids, V = 20"),
        ),
        Promise("shape (), the log-probability (<= 0).", ALL_CASES),
    ),
)

# ----------------------------------------------------------- classify_by_likelihood


def _classify_variant(kind: str) -> Callable:
    def classify_by_likelihood(model, prompt_ids, label_ids, normalize=False):
        P, n = prompt_ids.shape[0], len(label_ids)
        lengths = torch.tensor([lab.shape[0] for lab in label_ids])
        L = int(lengths.max())
        if kind == "one_call_per_label":
            scores = torch.stack(
                [_logprob_variant("")(model, prompt_ids, lab) for lab in label_ids]
            )
            dtype = scores.dtype
        else:
            width = P + L if kind == "own_position" else P + L - 1
            ids = torch.zeros(n, width, dtype=torch.long)
            ids[:, :P] = prompt_ids
            targets = torch.zeros(n, L, dtype=torch.long)
            for i, lab in enumerate(label_ids):
                stop = lab.shape[0] if kind == "own_position" else lab.shape[0] - 1
                ids[i, P : P + stop] = lab[:stop]
                targets[i, : lab.shape[0]] = lab
            logits = model(ids)
            dtype = logits.dtype
            pred = logits[:, P:] if kind == "own_position" else logits[:, P - 1 :]
            logp = pred if kind == "raw_logits" else _log_softmax(pred)
            token = logp.gather(-1, targets[..., None])[..., 0]  # (n, L)
            if kind != "padding_scored":
                token = token * (torch.arange(L)[None, :] < lengths[:, None])
            scores = token.sum(-1)
        if normalize and kind != "normalize_ignored":
            if kind == "normalize_with_prompt":
                scores = scores / (lengths + P)
            elif kind == "normalize_by_longest":
                scores = scores / L
            else:
                scores = scores / lengths
        scores = scores.to(dtype)
        if kind == "last_on_ties":
            return scores, n - 1 - int(scores.flip(0).argmax())
        return scores, int(scores.argmax())

    return classify_by_likelihood


def _labels(g: torch.Generator, lengths: list[int], V: int) -> list[torch.Tensor]:
    return [_ids(g, n, V) for n in lengths]


def _classify_case(g: torch.Generator, label: str, P: int, lengths: list[int], V: int,
                   **kwargs: Any) -> Case:  # fmt: skip
    return {
        "label": label,
        "args": [],
        "kwargs": {"prompt_ids": _ids(g, P, V), "label_ids": _labels(g, lengths, V), **kwargs},
        "state": _state(g, V),
    }


def _run_classify(fn: Callable, case: Case) -> Any:
    return fn(_model(case), *case["args"], **case["kwargs"])[1]


def _classify_cases(g: torch.Generator) -> list[Case]:
    def winner_changes() -> Case:  # normalize=True picks another label than the raw sum
        case = _classify_case(g, "normalize=True changes the winner", 3, [1, 3, 2], 8,
                              normalize=True)  # fmt: skip
        return case

    norm = _separating(
        winner_changes, ref.classify_by_likelihood,
        [_classify_variant("normalize_ignored"), _classify_variant("normalize_with_prompt")],
        _run_classify, "normalize=True changes the winner",
    )  # fmt: skip

    def tie() -> Case:
        case = _classify_case(g, "the same label twice: the lowest index", 2, [2, 1], 7)
        labels = case["kwargs"]["label_ids"]
        labels.append(labels[0].clone())  # labels 0 and 2 are identical
        return case

    tied = _separating(
        tie, ref.classify_by_likelihood, [_classify_variant("last_on_ties")], _run_classify,
        "the same label twice: the lowest index",
    )  # fmt: skip
    bf16 = _classify_case(g, "bfloat16 logits: the scores in bfloat16", 2, [2, 1, 3], 9)
    bf16["state"] = {k: v.to(torch.bfloat16) for k, v in bf16["state"].items()}
    bf16["dtype"] = "bfloat16"
    return [
        _classify_case(g, "3 labels of different lengths", 4, [1, 3, 2], 10),
        _classify_case(
            g, "normalize=True, labels of different lengths", 3, [2, 4, 1], 9, normalize=True
        ),  # fmt: skip
        norm,
        tied,
        _classify_case(g, "one-token labels, P = 1", 1, [1, 1, 1, 1], 8),
        _classify_case(g, "a single label", 3, [3], 8, normalize=True),
        bf16,
        _classify_case(g, "2 labels, normalize=False given", 2, [4, 2], 8, normalize=False),
    ]


CLASSIFY = Exercise(
    name="classify_by_likelihood",
    points=2,
    summary="score each label by its log-likelihood after the prompt, one batch",
    make_cases=_classify_cases,
    reference=lambda: ref.classify_by_likelihood,
    driver=f"{PUBLIC}:classify_with_table",
    output_names=("scores", "best", "model_inputs"),
    tolerance=LOGPROB_TOL,
    dtypes=("float64",),
    mistakes=(
        Mistake(
            "own_position",
            "your answer matches reading each label token's log-probability at its OWN "
            "position: the logits at position t predict token t + 1, so label token j is "
            "scored by the logits at position P - 1 + j (and row i is cat(prompt_ids, "
            "label_ids[i][:-1])).",
            _classify_variant("own_position"),
        ),
        Mistake(
            "padding_scored",
            "your answer matches also scoring the padding of the shorter labels: mask out the "
            "positions past each label's own length before summing.",
            _classify_variant("padding_scored"),
        ),
        Mistake(
            "raw_logits",
            "your answer matches summing raw logits: take log_softmax over the vocabulary "
            "first, then pick each token's entry.",
            _classify_variant("raw_logits"),
        ),
        Mistake(
            "normalize_ignored",
            "your answer matches ignoring normalize: with normalize=True each score is "
            "divided by its label's number of tokens.",
            _classify_variant("normalize_ignored"),
        ),
        Mistake(
            "normalize_with_prompt",
            "your answer matches dividing by the prompt's length plus the label's: normalize "
            "divides by the label's number of tokens L_i only (the prompt is not scored).",
            _classify_variant("normalize_with_prompt"),
        ),
        Mistake(
            "normalize_by_longest",
            "your answer matches dividing every score by the longest label's length (the "
            "padded width): divide each by its OWN label's number of tokens.",
            _classify_variant("normalize_by_longest"),
        ),
        Mistake(
            "last_on_ties",
            "your answer matches the LAST of the best-scored labels on ties: return the lowest "
            "index (what argmax returns).",
            _classify_variant("last_on_ties"),
        ),
        Mistake(
            "one_call_per_label",
            "your answer matches one model call per label: score every label in ONE forward "
            "pass over a batch of n_labels rows, padded on the right with 0 to the longest.",
            _classify_variant("one_call_per_label"),
        ),
    ),
    promises=(
        Promise(
            "Zero-shot classification: score each label by its log-likelihood after the prompt.",
            ALL_CASES,
        ),
        Promise(
            "The score of label i is log p(label_ids[i] | prompt), the sum over its tokens of "
            "log softmax(logits at the position before the token)[token] (the value of "
            "``sequence_logprob(model, prompt_ids, label_ids[i])``)",
            ("3 labels of different lengths", "one-token labels, P = 1"),
        ),
        Promise(
            "with ``normalize=True`` it is divided by the label's number of tokens (the mean "
            "log-probability per token, which does not favour short labels).",
            ("normalize=True, labels of different lengths", "normalize=True changes the winner"),
        ),
        Promise(
            "The labels may have different lengths: they are scored in ONE forward pass over "
            "a batch of n_labels rows, row i being ``cat(prompt_ids, label_ids[i][:-1])`` "
            "padded on the right with token 0 to the longest row",
            ("3 labels of different lengths", "normalize=True, labels of different lengths"),
        ),
        Promise(
            "(the model is causal, so the padding never changes a scored position).",
            why="a fact about causal models: no answer depends on the padding's value, so "
            "only the batch's shape is checked (model_inputs)",
        ),
        Promise(
            "The log-softmax is computed in float32 when the logits are float16 or bfloat16 "
            "(otherwise in their dtype); the scores are returned in the dtype of the logits, "
            "on their device.",
            ("bfloat16 logits: the scores in bfloat16", "3 labels of different lengths"),
        ),
        Promise(
            "The function is self-contained: it does not call ``sequence_logprob``.",
            why="about the reference's code (it can be copied on its own into a notebook); a "
            "student's may call their own sequence_logprob as long as the model runs once",
        ),
        Promise("model: a causal language model, ids (B, T) -> logits (B, T, V).", ALL_CASES),
        Promise("prompt_ids: shape (P,), integer token ids, P >= 1.", ("one-token labels, P = 1",)),
        Promise(
            "label_ids: a non-empty list of n_labels tensors of shape (L_i,), L_i >= 1,",
            ("3 labels of different lengths", "a single label", "one-token labels, P = 1"),
        ),
        Promise(
            'integer token ids: the tokens of each label\'s verbalisation (e.g. " positive", '
            '" negative").',
            ALL_CASES,
        ),
        Promise(
            "normalize: divide each score by its label's number of tokens L_i.",
            ("normalize=True, labels of different lengths", "2 labels, normalize=False given"),
        ),
        Promise(
            "(scores, best): scores of shape (n_labels,); best, a Python int, the index of the "
            "largest score",
            ALL_CASES,
        ),
        Promise("(the lowest such index on ties).", ("the same label twice: the lowest index",)),
    ),
)

# -------------------------------------------------------------------- majority_vote


def _vote(answers: list, kind: str = "") -> Any:
    if kind == "stripped":
        answers = [a if a is None else a.strip() for a in answers]
    counts = Counter(a for a in answers if a is not None or kind == "counts_none")
    if not counts:
        return None
    best = max(counts.values())
    tied = [a for a, c in counts.items() if c == best]
    if kind == "tie_latest":
        return tied[-1]
    if kind == "tie_alphabetical":
        return min(tied, key=lambda a: (a is None, a or ""))
    return tied[0]


def _vote_variant(kind: str) -> Callable:
    def majority_vote(answers):
        return _vote(answers, kind)

    return majority_vote


def _vote_cases(g: torch.Generator) -> list[Case]:
    pool = ["12", "7", "9", None]
    draws = torch.multinomial(torch.tensor([0.5, 0.2, 0.2, 0.1]), 11, True, generator=g)
    random_list = [pool[int(i)] for i in draws]
    return [
        call_case("a clear majority", random_list),
        call_case("a tie: the earliest first occurrence wins", ["7", "3", "3", "7", "9"]),
        call_case("a tie of three answers", ["c", None, "a", "b", "b", "a", "c"]),
        call_case("None ignored, even when most common", [None, "4", None, "5", None, "4"]),
        call_case("only None: None", [None, None, None]),
        call_case("an empty list: None", []),
        call_case("exact strings: ' 4' is not '4'", ["4", " 4", "5", "5", "4 "]),
        call_case("one answer", ["42"]),
    ]


VOTE = Exercise(
    name="majority_vote",
    points=1,
    summary="the most common non-None answer, ties to the earliest",
    make_cases=_vote_cases,
    reference=lambda: ref.majority_vote,
    driver=f"{PUBLIC}:vote_with_none_flag",
    output_names=("answer", "answer_is_none"),
    tolerance=EXACT,
    mistakes=(
        Mistake(
            "counts_none",
            "your answer matches counting None as an answer: None entries are chains whose "
            "answer could not be parsed; they do not vote.",
            _vote_variant("counts_none"),
        ),
        Mistake(
            "tie_latest",
            "your answer matches breaking ties in favour of the answer seen LAST: among the "
            "answers with the largest count, the one whose first occurrence comes earliest "
            "wins (Counter keeps first-occurrence order).",
            _vote_variant("tie_latest"),
        ),
        Mistake(
            "tie_alphabetical",
            "your answer matches breaking ties by sorting the answers: among the answers with "
            "the largest count, the one whose first occurrence comes earliest wins.",
            _vote_variant("tie_alphabetical"),
        ),
        Mistake(
            "stripped",
            "your answer matches answers normalised (stripped) before counting: majority_vote "
            "compares them as exact strings (normalising is parse's job).",
            _vote_variant("stripped"),
        ),
    ),
    promises=(
        Promise(
            "The most common answer, None entries ignored.",
            ("a clear majority", "None ignored, even when most common"),
        ),
        Promise(
            "Answers are compared as exact strings (normalise them when parsing, e.g. strip "
            "spaces).",
            ("exact strings: ' 4' is not '4'",),
        ),
        Promise(
            "None entries stand for chains whose answer could not be parsed and do not vote.",
            ("None ignored, even when most common", "a tie of three answers"),
        ),
        Promise(
            "Among the answers with the largest count, the one whose first occurrence comes "
            "earliest in the list wins.",
            ("a tie: the earliest first occurrence wins", "a tie of three answers"),
        ),
        Promise("answers: a list of strings or None.", ALL_CASES),
        Promise(
            "The winning answer, or None when the list is empty or holds only None.",
            ("only None: None", "an empty list: None", "one answer"),
        ),
    ),
)

# ----------------------------------------------------------------- self_consistency

VOCAB = "0123=x."  # token i decodes to VOCAB[i]
ANSWER = r"=(\d)"  # the last "=" followed by a digit is the answer


def _sc_variant(kind: str) -> Callable:
    def self_consistency(model, prompt_ids, n_samples, max_new_tokens, decode, parse,
                         temperature=1.0, generator=None):  # fmt: skip
        T = 1.0 if kind == "temperature_ignored" else temperature
        P = prompt_ids.shape[0]
        with torch.no_grad():
            if kind == "chain_by_chain":
                rows = []
                for _ in range(n_samples):
                    ids = prompt_ids[None]
                    for _ in range(max_new_tokens):
                        probs = F.softmax(model(ids)[:, -1, :] / T, dim=-1)
                        nxt = torch.multinomial(probs, 1, generator=generator)
                        ids = torch.cat([ids, nxt], dim=1)
                    rows.append(ids[0])
                ids = torch.stack(rows)
            else:
                ids = prompt_ids[None].expand(n_samples, P)
                for _ in range(max_new_tokens):
                    if kind == "last_token_only":
                        logits = model(ids[:, -1:])[:, -1, :]
                    else:
                        logits = model(ids)[:, -1, :]
                    if kind == "argmax":
                        nxt = logits.argmax(dim=-1, keepdim=True)
                    else:
                        scaled = logits * T if kind == "multiplied" else logits / T
                        nxt = torch.multinomial(F.softmax(scaled, dim=-1), 1, generator=generator)
                    ids = torch.cat([ids, nxt], dim=1)
        start = 0 if kind == "decodes_the_prompt" else P
        answers = [parse(decode(row)) for row in ids[:, start:].tolist()]
        vote = {"counts_none": "counts_none", "tie_latest": "tie_latest"}.get(kind, "")
        return _vote(answers, vote), answers

    return self_consistency


def _run_sc(fn: Callable, case: Case) -> Any:
    from autograder.public.prompting import self_consistency_with_table

    return self_consistency_with_table(fn, case)[:2]


def _sc_case(g: torch.Generator, label: str, P: int, n: int, steps: int,
             no_answer: bool = False, **kwargs: Any) -> Case:  # fmt: skip
    """A prompt ending in "=1"; with ``no_answer`` the model never draws "=", so no chain
    has an answer (but the prompt's text has one)."""
    V = len(VOCAB)
    prompt = _ids(g, P, V)
    prompt[-2:] = torch.tensor([VOCAB.index("="), VOCAB.index("1")])  # the prompt holds "=1"
    state = _state(g, V, scale=1.0)
    state["table"][:, VOCAB.index("=")] += -torch.inf if no_answer else 1.0
    return {
        "label": label,
        "args": [],
        "kwargs": {"prompt_ids": prompt, "n_samples": n, "max_new_tokens": steps, **kwargs},
        "state": state,
        "seed": int(torch.randint(0, 2**31 - 2, (1,), generator=g)),
        "vocab": VOCAB,
        "pattern": ANSWER,
    }


SC_ALWAYS = ("chain_by_chain", "last_token_only", "argmax", "decodes_the_prompt")


def _sc_cases(g: torch.Generator) -> list[Case]:
    def sep(label: str, kinds: tuple[str, ...], P: int, n: int, steps: int,
            condition: Callable[[Any], bool] | None = None, **kwargs: Any) -> Case:  # fmt: skip
        def make() -> Case:
            for _ in range(200):
                case = _sc_case(g, label, P, n, steps, **kwargs)
                if condition is None or condition(_run_sc(ref.self_consistency, case)):
                    return case
            raise RuntimeError(f"no draw meets the condition of case {label!r}")

        mistakes = [_sc_variant(k) for k in kinds]
        return _separating(make, ref.self_consistency, mistakes, _run_sc, label)

    def tie(want: Any) -> bool:
        counts = Counter(a for a in want[1] if a is not None)
        top = sorted(counts.values(), reverse=True)
        return len(top) >= 2 and top[0] == top[1]

    def none_most_common(want: Any) -> bool:
        counts = Counter(want[1])
        return want[0] is not None and counts[None] > counts[want[0]]

    return [
        sep("8 chains, T = 1", SC_ALWAYS, 3, 8, 6),
        sep(
            "6 chains, T = 0.5",
            (*SC_ALWAYS, "temperature_ignored", "multiplied"),
            4,
            6,
            5,
            temperature=0.5,
        ),  # fmt: skip
        sep(
            "5 chains, T = 2",
            ("temperature_ignored", "multiplied", "chain_by_chain"),
            2,
            5,
            6,
            temperature=2.0,
        ),  # fmt: skip
        sep("a tie: the earliest row's answer", ("tie_latest",), 3, 6, 4, tie),
        sep(
            "None is the most common: it does not vote", ("counts_none",), 3, 7, 3, none_most_common
        ),  # fmt: skip
        sep("no chain finds an answer: None", ("decodes_the_prompt",), 2, 4, 3, no_answer=True),
        sep("one chain, one token", ("decodes_the_prompt",), 2, 1, 1),
    ]


SC_POWER = (
    "self_consistency is compared answer for answer with the reference (its docstring fixes "
    "the use of the generator: one torch.multinomial call per step on the (n_samples, V) "
    "batch), so an answer that follows the docstring never fails (false alarm 0; measured: "
    "the reference failed at 0 of 100 grading seeds, 2026..2125). Each case is drawn again "
    "until every mistake it is meant for answers otherwise (see _sc_cases), so each usual "
    "mistake fails at least one case at every seed by construction; measured once over the "
    "same 100 seeds, the Mistakes chain_by_chain, temperature_ignored, multiplied, argmax, "
    "last_token_only, decodes_the_prompt, counts_none and tie_latest each failed at 100 of "
    "100 (power >= 0.97 at 95% confidence). Not checked: that the probabilities are drawn "
    "from in the logits' dtype (see the promise)."
)

SELF_CONSISTENCY = Exercise(
    name="self_consistency",
    points=3,
    summary="sample n chains in one batch, parse, majority vote",
    make_cases=_sc_cases,
    reference=lambda: ref.self_consistency,
    driver=f"{PUBLIC}:self_consistency_with_table",
    output_names=("answer", "answers", "model_ran_without_grad"),
    tolerance=EXACT,
    dtypes=(),
    mistakes=(
        Mistake(
            "chain_by_chain",
            "your answers match sampling the chains one after the other (a loop over chains, "
            "each with its own decoding loop): sample them as ONE batch, one "
            "torch.multinomial call per step on the (n_samples, V) probabilities, so the "
            "generator is consumed step by step.",
            _sc_variant("chain_by_chain"),
        ),
        Mistake(
            "temperature_ignored",
            "your answers match sampling at temperature 1 whatever the temperature: divide "
            "the logits by the temperature before the softmax.",
            _sc_variant("temperature_ignored"),
        ),
        Mistake(
            "multiplied",
            "your answers match logits MULTIPLIED by the temperature: divide them, "
            "softmax(logits / temperature).",
            _sc_variant("multiplied"),
        ),
        Mistake(
            "argmax",
            "your answers match greedy decoding (argmax): self-consistency SAMPLES each token "
            "with torch.multinomial(probs, 1, generator=generator), so the chains differ.",
            _sc_variant("argmax"),
        ),
        Mistake(
            "last_token_only",
            "your answers match feeding the model only the last token: run it on the whole "
            "batch of sequences so far and take the logits of the last position.",
            _sc_variant("last_token_only"),
        ),
        Mistake(
            "decodes_the_prompt",
            "your answers match parsing the prompt's text too: parse(decode(new_ids)) reads "
            "only the tokens sampled for the chain, not the prompt.",
            _sc_variant("decodes_the_prompt"),
        ),
        Mistake(
            "counts_none",
            "your answer matches counting None in the vote: chains whose answer could not be "
            "parsed (None) do not vote.",
            _sc_variant("counts_none"),
        ),
        Mistake(
            "tie_latest",
            "your answer matches breaking ties in favour of the answer seen LAST: ties go to "
            "the answer whose first occurrence comes earliest in row order.",
            _sc_variant("tie_latest"),
        ),
    ),
    promises=(
        Promise(
            "Self-consistency (Wang et al., 2023): sample several chains, majority-vote their "
            "answers.",
            ALL_CASES,
        ),
        Promise(
            "The n_samples chains are sampled as ONE batch: ids start as the prompt repeated "
            "n_samples times, shape (n_samples, P).",
            ("8 chains, T = 1", "6 chains, T = 0.5", "5 chains, T = 2"),
        ),
        Promise(
            "Each of the max_new_tokens steps (no early stop: an end token is just another "
            "token, which ``decode`` or ``parse`` may cut at) runs the model on the whole "
            "batch so far, takes the logits of the last position, ``logits = "
            "model(ids)[:, -1, :]`` of shape (n_samples, V), and draws exactly once "
            "``torch.multinomial(F.softmax(logits / temperature, dim=-1), 1, "
            "generator=generator)``",
            ("8 chains, T = 1", "6 chains, T = 0.5", "5 chains, T = 2"),
        ),
        Promise(
            "(in the dtype of the logits)",
            why="the float32 table model's logits are float32; drawing from probabilities in "
            "float64 instead changes a token only when a uniform draw falls within float32 "
            "rounding of a boundary, which no seeded case can be made to show reliably",
        ),
        Promise("then appends the drawn column to ids.", ("8 chains, T = 1",)),
        Promise(
            "This is the draw order of chapter 07's ``generate`` without filters, so both give "
            "the same tokens from the same generator state.",
            ("8 chains, T = 1", "6 chains, T = 0.5"),
        ),
        Promise("The model runs under ``torch.no_grad``.", ALL_CASES),
        Promise(
            "Row r's new token ids, as a list of Python ints, give ``parse(decode(new_ids))``, "
            "a string or None (no answer found).",
            ("8 chains, T = 1", "no chain finds an answer: None"),
        ),
        Promise(
            "The answer is the majority vote of these: the most common non-None string (exact "
            "equality), ties going to the one whose first occurrence comes earliest in row "
            "order, None when every chain gives None.",
            (
                "a tie: the earliest row's answer",
                "None is the most common: it does not vote",
                "no chain finds an answer: None",
            ),
        ),
        Promise("model: a causal language model, ids (B, T) -> logits (B, T, V).", ALL_CASES),
        Promise("prompt_ids: shape (P,), integer token ids, P >= 1.", ALL_CASES),
        Promise(
            "n_samples: the number of chains, >= 1.", ("8 chains, T = 1", "one chain, one token")
        ),
        Promise(
            "max_new_tokens: the tokens sampled per chain, >= 1.",
            ("8 chains, T = 1", "one chain, one token"),
        ),
        Promise("decode: maps a list of token ids to text.", ALL_CASES),
        Promise("parse: maps a chain's text to its final answer, or None.", ALL_CASES),
        Promise(
            "temperature: T > 0 (self-consistency needs diverse samples; there is no greedy mode).",
            ("6 chains, T = 0.5", "5 chains, T = 2", "8 chains, T = 1"),
        ),
        Promise("generator: the source of randomness.", ALL_CASES),
        Promise(
            "(answer, answers): the majority answer (a string or None) and the list of the "
            "n_samples parsed answers in row order.",
            ALL_CASES,
        ),
    ),
    power=SC_POWER,
)

# --------------------------------------------------------------- constrained_decode


def _constrained_variant(kind: str) -> Callable:
    def constrained_decode(model, prompt_ids, options):
        options = [[int(t) for t in opt] for opt in options]
        prompt = prompt_ids.long()
        with contextlib.nullcontext() if kind == "with_grad" else torch.no_grad():
            if kind == "likelihood":
                scores = []
                for opt in options:
                    ids = torch.cat([prompt, torch.tensor(opt[:-1], dtype=torch.long)])
                    logp = _log_softmax(model(ids[None])[0, prompt.shape[0] - 1 :])
                    scores.append(float(logp[torch.arange(len(opt)), torch.tensor(opt)].sum()))
                return max(range(len(options)), key=lambda i: (scores[i], -i))
            if kind == "first_token_only":
                logits = model(prompt[None])[0, -1]
                firsts = sorted({o[0] for o in options})
                token = max(firsts, key=lambda t: (float(logits[t]), -t))
                return next(i for i, o in enumerate(options) if o[0] == token)
            if kind == "unconstrained":
                ids = prompt
                for _ in range(max(len(o) for o in options)):
                    token = model(ids[None])[0, -1].argmax()
                    ids = torch.cat([ids, token[None]])
                greedy = ids[prompt.shape[0] :].tolist()

                def common(o: list[int]) -> int:
                    n = 0
                    while n < len(o) and o[n] == greedy[n]:
                        n += 1
                    return n

                return max(range(len(options)), key=lambda i: (common(options[i]), -i))
            chosen: list[int] = []
            alive = list(range(len(options)))
            while True:
                if kind == "no_append":
                    logits = model(prompt[None])[0, -1]
                else:
                    ids = torch.cat([prompt, torch.tensor(chosen, dtype=torch.long)])
                    logits = model(ids[None])[0, -1]
                step = len(chosen)
                if kind == "tie_first_option":
                    best = None
                    for i in alive:
                        t = options[i][step]
                        if best is None or float(logits[t]) > float(logits[best]):
                            best = t
                    token = best
                else:
                    allowed = sorted({options[i][step] for i in alive})
                    token = max(allowed, key=lambda t: (float(logits[t].detach()), -t))
                chosen.append(token)
                alive = [i for i in alive if options[i][step] == token]
                for i in alive:
                    if len(options[i]) == step + 1:
                        return i

    return constrained_decode


def _constrained_case(g: torch.Generator, label: str, P: int, V: int,
                      shapes: list[list[int | None]]) -> Case:  # fmt: skip
    """Options shaped by ``shapes``: each a list of token slots, None a fresh random token,
    an int the same token as that slot of option 0 (a shared first token). Prefix-free
    options are redrawn until they are."""
    for _ in range(100):
        options = []
        for shape in shapes:
            opt = [
                int(_ids(g, 1, V)) if s is None else options[0][s] for s in shape
            ]  # fmt: skip
            options.append(opt)
        ok = all(
            not (len(a) <= len(b) and b[: len(a)] == a)
            for i, a in enumerate(options) for j, b in enumerate(options) if i != j
        )  # fmt: skip
        if ok:
            break
    return {
        "label": label,
        "args": [],
        "kwargs": {"prompt_ids": _ids(g, P, V), "options": [torch.tensor(o) for o in options]},
        "state": _state(g, V),
    }


def _run_constrained(fn: Callable, case: Case) -> Any:
    return fn(_model(case), **case["kwargs"])


def _constrained_cases(g: torch.Generator) -> list[Case]:
    def sep(label: str, kinds: tuple[str, ...], P: int, V: int, shapes: list) -> Case:
        return _separating(
            lambda: _constrained_case(g, label, P, V, shapes), ref.constrained_decode,
            [_constrained_variant(k) for k in kinds], _run_constrained, label,
        )  # fmt: skip

    # a tie between the first tokens of two options: the lower token id wins
    tie = _constrained_case(g, "tied first tokens: the lowest token id", 2, 8, [[None], [None]])
    lo, hi = 2, 6
    tie["kwargs"]["options"] = [torch.tensor([hi]), torch.tensor([lo, 5])]
    prompt = tie["kwargs"]["prompt_ids"]
    a, b = int(prompt[-1]), int(prompt[-2])
    tie["state"]["table"][a, lo] = tie["state"]["table"][a, hi] = 5.0
    tie["state"]["prev"][b, lo] = tie["state"]["prev"][b, hi] = 1.0
    return [
        sep("single-token options", ("unconstrained",), 3, 8, [[None], [None], [None]]),
        sep(
            "a shared first token: greedy is not the likelihood", ("likelihood",), 3, 8,
            [[None, None], [0, None], [None, None, None]],
        ),
        sep(
            "a shared first token: the second token decides", ("first_token_only",), 2, 8,
            [[None, None], [0, None, None], [None]],
        ),
        sep(
            "options of different lengths, P = 1", ("no_append", "likelihood"), 1, 8,
            [[None, None, None], [0, None], [None, None]],
        ),
        sep(
            "a higher logit outside the options", ("unconstrained",), 2, 10,
            [[None, None], [None, None]],
        ),
        tie,
    ]  # fmt: skip


CONSTRAINED = Exercise(
    name="constrained_decode",
    points=3,
    summary="greedy decoding restricted to a trie of options",
    make_cases=_constrained_cases,
    reference=lambda: ref.constrained_decode,
    driver=f"{PUBLIC}:constrained_with_table",
    output_names=("index", "model_inputs", "model_ran_without_grad"),
    tolerance=EXACT,
    dtypes=(),
    mistakes=(
        Mistake(
            "likelihood",
            "your answer matches scoring every option in full and taking the most probable "
            "(that is classify_by_likelihood): constrained decoding commits greedily, one "
            "token at a time, to the allowed token with the largest logit.",
            _constrained_variant("likelihood"),
        ),
        Mistake(
            "first_token_only",
            "your answer matches deciding on the first token alone and returning the first "
            "option that starts with it: keep decoding, one allowed token per step, until the "
            "chosen tokens equal a whole option.",
            _constrained_variant("first_token_only"),
        ),
        Mistake(
            "unconstrained",
            "your answer matches an unconstrained argmax over the whole vocabulary: at each "
            "step only the next tokens of the options consistent with the tokens chosen so "
            "far are allowed; take the largest logit among those.",
            _constrained_variant("unconstrained"),
        ),
        Mistake(
            "no_append",
            "your answer matches reading the logits of the prompt at every step: run the "
            "model on cat(prompt_ids, chosen) so each step sees the tokens chosen so far.",
            _constrained_variant("no_append"),
        ),
        Mistake(
            "tie_first_option",
            "your answer matches breaking ties by the order of the options: on equal logits "
            "the allowed token with the LOWEST token id wins.",
            _constrained_variant("tie_first_option"),
        ),
        Mistake(
            "with_grad",
            "your model calls record gradients: run the decoding under torch.no_grad().",
            _constrained_variant("with_grad"),
        ),
    ),
    promises=(
        Promise(
            "Greedy decoding restricted to a fixed set of answers (a trie of token sequences).",
            ALL_CASES,
        ),
        Promise("The chosen tokens start empty.", ALL_CASES),
        Promise(
            "At each step the model runs on ``cat(prompt_ids, chosen)[None]`` and reads the "
            "logits of the last position; the allowed tokens are the next tokens of the "
            "options that begin with the tokens chosen so far, and the allowed token with the "
            "largest logit is appended",
            (
                "a shared first token: the second token decides",
                "options of different lengths, P = 1",
                "a higher logit outside the options",
            ),
        ),
        Promise("(ties: the lowest token id).", ("tied first tokens: the lowest token id",)),
        Promise(
            "Decoding stops as soon as the chosen tokens equal a whole option, and that "
            "option's index is returned.",
            (
                "options of different lengths, P = 1",
                "a shared first token: the second token decides",
            ),
        ),
        Promise(
            "Because the options are prefix-free, this happens exactly once, after at most "
            "the longest option's length steps.",
            ("options of different lengths, P = 1",),
        ),
        Promise("The model runs under ``torch.no_grad``.", ALL_CASES),
        Promise(
            "Unlike ``classify_by_likelihood``, which scores every option in full, this "
            "commits greedily to one token at a time, starting with the first: an option "
            "whose first token has a lower logit is never considered, even if its whole "
            "sequence is more probable.",
            ("a shared first token: greedy is not the likelihood",),
        ),
        Promise("model: a causal language model, ids (B, T) -> logits (B, T, V).", ALL_CASES),
        Promise(
            "prompt_ids: shape (P,), integer token ids, P >= 1.",
            ("options of different lengths, P = 1",),
        ),
        Promise(
            "options: a non-empty list of tensors of shape (L_i,), L_i >= 1, integer token ids "
            "in [0, V) (V is checked after the first forward pass); prefix-free: no option "
            "equals another or is a prefix of another.",
            ALL_CASES,
        ),
        Promise("The index in ``options`` of the decoded option, a Python int.", ALL_CASES),
    ),
)

# ---------------------------------------------------------------------- bm25_scores


def _bm25(query, documents, k1=1.5, b=0.75, kind: str = "") -> torch.Tensor:
    """BM25 in float64, with a usual mistake."""
    if kind == "swapped":
        k1, b = b, k1
    if kind == "no_length_norm":
        b = 0.0
    if kind == "unique_query":
        query = list(dict.fromkeys(query))
    N = len(documents)
    counts = [Counter(d) for d in documents]
    dl = torch.tensor([len(d) for d in documents], dtype=torch.float64)
    avgdl = dl.mean()
    rel = dl / avgdl if (avgdl > 0 or kind == "unguarded_nan") else torch.zeros_like(dl)
    scores = torch.zeros(N, dtype=torch.float64)
    for q in query:
        tf = torch.tensor([c[q] for c in counts], dtype=torch.float64)
        n = float((tf > 0).sum())
        if kind == "idf_no_plus_one":
            idf = torch.log(torch.tensor((N - n + 0.5) / (n + 0.5), dtype=torch.float64))
        else:
            idf = torch.log1p(torch.tensor((N - n + 0.5) / (n + 0.5), dtype=torch.float64))
        if kind == "unsaturated":
            term = tf
        else:
            term = tf * (k1 + 1) / (tf + k1 * (1 - b + b * rel))
            if kind != "unguarded_nan":
                term = torch.where(tf > 0, term, 0.0)
        scores = scores + idf * term
    return scores


def _bm25_variant(kind: str) -> Callable:
    def bm25_scores(query, documents, k1=1.5, b=0.75):
        return _bm25(query, documents, k1, b, kind).to(torch.float32)

    return bm25_scores


def _doc(g: torch.Generator, n: int, words: list[str] = WORDS[:8]) -> list[str]:
    return [words[_randint(g, len(words))] for _ in range(n)]


def _bm25_cases(g: torch.Generator) -> list[Case]:
    docs = [_doc(g, 3 + _randint(g, 8)) for _ in range(5)]
    everywhere = [[*_doc(g, 2 + _randint(g, 5)), "cat"] for _ in range(4)]
    return [
        call_case("5 documents, the defaults", ["cat", "sat", "mat", "red"], docs),
        call_case("a term in most documents", ["cat", "dog"], everywhere),
        call_case(
            "a repeated query term counts twice", ["dog", "dog", "rug"],
            [["dog", "ran"], ["rug", "rug", "a"], ["the", "dog", "dog", "sat", "on", "rug"]],
        ),
        call_case(
            "an empty document among others", ["cat", "on"],
            [["cat", "on", "the", "mat"], [], ["on", "on", "a", "rug"]],
        ),
        call_case("every document empty: zeros", ["cat"], [[], [], []]),
        call_case("an empty query: zeros", [], [["cat"], ["dog", "ran"]]),
        call_case("k1 = 0: only presence counts", ["cat", "sat"], docs, k1=0.0),
        call_case("b = 0: no length normalisation", ["cat", "mat"], docs, b=0.0),
        call_case("b = 1, k1 = 2.5", ["dog", "the", "on"], docs, k1=2.5, b=1.0),
        call_case("one document", ["a", "rug"], [["a", "rug", "a", "mat", "a"]], k1=0.8),
        call_case(
            "exact strings: 'Cat' is not 'cat'", ["Cat", "cat"],
            [["cat", "Cat", "cat"], ["the", "CAT"], ["cat"]], k1=1.2, b=0.5,
        ),
    ]  # fmt: skip


BM25 = Exercise(
    name="bm25_scores",
    points=2,
    summary="Okapi BM25 of each document against the query",
    make_cases=_bm25_cases,
    reference=lambda: ref.bm25_scores,
    output_names=("scores",),
    # float64 sums of a few terms cast to float32: a float32 computation is within ~1e-6
    tolerance=Tolerance(1e-5, 1e-5),
    mistakes=(
        Mistake(
            "idf_no_plus_one",
            "your answer matches idf = ln((N - n + 0.5) / (n + 0.5)), which is negative for a "
            "term in more than half the documents: BM25's idf here is ln(1 + (N - n + 0.5) / "
            "(n + 0.5)), always positive.",
            _bm25_variant("idf_no_plus_one"),
        ),
        Mistake(
            "no_length_norm",
            "your answer matches BM25 without length normalisation (as if b = 0): the "
            "saturation term is k1 · (1 - b + b · |D| / avgdl).",
            _bm25_variant("no_length_norm"),
        ),
        Mistake(
            "swapped",
            "your answer matches k1 and b swapped: k1 is the term-frequency saturation "
            "(default 1.5), b the length normalisation (default 0.75).",
            _bm25_variant("swapped"),
        ),
        Mistake(
            "unsaturated",
            "your answer matches idf · f(q, D), a term frequency that grows without bound: "
            "BM25 saturates it, f · (k1 + 1) / (f + k1 · (1 - b + b · |D| / avgdl)).",
            _bm25_variant("unsaturated"),
        ),
        Mistake(
            "unique_query",
            "your answer matches counting each distinct query term once: the sum runs over "
            "the query's tokens, so a repeated term counts once per occurrence.",
            _bm25_variant("unique_query"),
        ),
        Mistake(
            "unguarded_nan",
            "your answer matches 0 / 0 = nan: an absent term contributes 0, also when k1 = 0 "
            "(test f(q, D) > 0, e.g. with torch.where), and when every document is empty "
            "|D| / avgdl is taken as 0, so every score is 0, never nan.",
            _bm25_variant("unguarded_nan"),
        ),
    ),
    promises=(
        Promise("Okapi BM25 relevance of each document to a query (Robertson et al.).", ALL_CASES),
        Promise(
            "With N documents, n(q) the number of documents containing the term q, f(q, D) the "
            "number of times q occurs in D, |D| the number of tokens of D and avgdl the mean "
            "of |D| over the documents:",
            ("5 documents, the defaults", "a term in most documents"),
        ),
        Promise(
            "idf(q) = ln(1 + (N - n(q) + 0.5) / (n(q) + 0.5)) score(D) = Σ_{q in query} idf(q) "
            "· f(q, D) · (k1 + 1) / (f(q, D) + k1 · (1 - b + b · |D| / avgdl))",
            ("5 documents, the defaults", "a term in most documents", "b = 1, k1 = 2.5"),
        ),
        Promise(
            "The sum runs over the query's tokens, so a term repeated in the query counts "
            "once per occurrence.",
            ("a repeated query term counts twice",),
        ),
        Promise(
            "A term absent from D contributes 0 (also when k1 = 0).",
            ("k1 = 0: only presence counts", "an empty document among others"),
        ),
        Promise(
            "When avgdl is 0 (every document empty) |D| / avgdl is taken as 0, so every score "
            "is 0, never nan.",
            ("every document empty: zeros",),
        ),
        Promise("An empty query gives zeros.", ("an empty query: zeros",)),
        Promise(
            "Terms are compared as exact strings (tokenise and lowercase before calling).",
            ("exact strings: 'Cat' is not 'cat'",),
        ),
        Promise(
            "Computed in float64 and returned as float32 on the CPU: counting words is done on "
            "Python strings, so there is no device to follow.",
            ALL_CASES,
        ),
        Promise("query: the query's tokens, a list of strings (not a string).", ALL_CASES),
        Promise(
            "documents: a non-empty list of N documents, each a list of token strings.",
            ("5 documents, the defaults", "one document"),
        ),
        Promise(
            "k1: term-frequency saturation, >= 0 (0: only presence counts).",
            ("k1 = 0: only presence counts", "b = 1, k1 = 2.5", "5 documents, the defaults"),
        ),
        Promise(
            "b: length normalisation, in [0, 1] (0: none, 1: full).",
            ("b = 0: no length normalisation", "b = 1, k1 = 2.5", "5 documents, the defaults"),
        ),
        Promise(
            "scores: shape (N,), float32, CPU; score(D) for each document in order.", ALL_CASES
        ),
    ),
)

# ------------------------------------------------------------------ retrieval_prompt


def _retrieval_variant(kind: str) -> Callable:
    def retrieval_prompt(question, documents, k=2, k1=1.5, b=0.75):
        def words(text: str) -> list[str]:
            if kind == "split_whitespace":
                return text.lower().split()
            return re.findall(r"\w+", text if kind == "not_lowercased" else text.lower())

        scores = _bm25(words(question), [words(d) for d in documents], k1, b)
        order = sorted(range(len(documents)), key=lambda i: (-float(scores[i]), i))
        if kind == "ties_last":
            order = sorted(range(len(documents)), key=lambda i: (-float(scores[i]), -i))
        indices = order[:k]
        if kind == "original_order":
            indices = sorted(indices)
        first = 0 if kind == "numbered_from_0" else 1
        text = [d.lower() if kind == "lowercased_text" else d for d in documents]
        lines = "".join(f"[{r + first}] {text[i]}\n" for r, i in enumerate(indices))
        return lines + f"Question: {question}\nAnswer (cite the passages by number):", indices

    return retrieval_prompt


SENTENCES = [
    "The cat sat on the mat.",
    "Who wrote it? The dog wrote it, on a red rug.",
    "A big dog ran to the cat and the rug.",
    "Red, red, red: the mat is red!",
    "The rug is big; the cat is not.",
    "Nobody wrote anything on the mat.",
    "THE DOG SAT.",
    "it was the cat who ran",
]


def _corpus(g: torch.Generator, n: int) -> list[str]:
    order = torch.randperm(len(SENTENCES), generator=g)[:n]
    return [SENTENCES[int(i)] for i in order]


def _run_retrieval(fn: Callable, case: Case) -> Any:
    return fn(*case["args"], **case["kwargs"])[1]


def _retrieval_cases(g: torch.Generator) -> list[Case]:
    questions = ["Who wrote on the red rug?", "Did the dog sit on the mat?",
                 "Which cat ran to the big rug?", "Is the mat red?"]  # fmt: skip

    def sep(label: str, kinds: list[Callable], n: int, **kwargs: Any) -> Case:
        def make() -> Case:
            return call_case(label, questions[_randint(g, 4)], _corpus(g, n), **kwargs)

        return _separating(make, ref.retrieval_prompt, kinds, _run_retrieval, label)

    def params(**override: Any) -> Callable:  # the reference with a parameter overridden
        def retrieval_prompt(question, documents, k=2, k1=1.5, b=0.75):
            given = {"k": k, "k1": k1, "b": b, **override}
            return ref.retrieval_prompt(question, documents, **given)

        return retrieval_prompt

    return [
        sep("3 of 6 passages", [_retrieval_variant("original_order")], 6, k=3),
        call_case(
            "the docstring example", "Who wrote it?", ["a b", "who wrote"], k=1
        ),
        call_case(
            "capitals and punctuation", "WHO wrote it?",
            ["who? WROTE!", "Nothing here.", "It, it, it."], k=2,
        ),
        sep("the default k", [_retrieval_variant("original_order")], 5),
        call_case("k larger than N retrieves all", "the cat", ["a dog", "the cat", "cat"], k=5),
        call_case(
            "equal scores: the lower index first", "rug",
            ["no match", "a rug", "nothing", "a rug", "also none"], k=5,
        ),
        sep("k1 given", [params(k1=1.5), params(k1=3.0)], 6, k=3, k1=0.3),
        sep("b given", [params(b=0.75), params(b=0.0)], 6, k=3, b=1.0),
        sep("the default k1 and b", [params(k1=3.0), params(b=0.0)], 6, k=4),
    ]  # fmt: skip


RETRIEVAL = Exercise(
    name="retrieval_prompt",
    points=2,
    summary="BM25 top-k passages, numbered, then the question",
    make_cases=_retrieval_cases,
    reference=lambda: ref.retrieval_prompt,
    output_names=("prompt", "indices"),
    tolerance=EXACT,
    mistakes=(
        Mistake(
            "not_lowercased",
            "your answer matches words compared without lowercasing: tokenise the question "
            "and the documents with re.findall(r'\\w+', text.lower()).",
            _retrieval_variant("not_lowercased"),
        ),
        Mistake(
            "split_whitespace",
            "your answer matches words split on whitespace (punctuation stays attached, "
            "'it?' is not 'it'): tokenise with re.findall(r'\\w+', text.lower()).",
            _retrieval_variant("split_whitespace"),
        ),
        Mistake(
            "numbered_from_0",
            "your answer matches passages numbered from 0: number them from 1, '[1] ' for the "
            "best.",
            _retrieval_variant("numbered_from_0"),
        ),
        Mistake(
            "original_order",
            "your answer matches the retrieved passages in their original order: list them "
            "in rank order, best first (and return their indices in that order).",
            _retrieval_variant("original_order"),
        ),
        Mistake(
            "ties_last",
            "your answer matches equal scores ranked by DEcreasing index: equal scores go in "
            "increasing index order (a stable sort by decreasing score).",
            _retrieval_variant("ties_last"),
        ),
        Mistake(
            "lowercased_text",
            "your answer matches the passages written lowercased: lowercase only to score; "
            "the prompt shows each document's original text.",
            _retrieval_variant("lowercased_text"),
        ),
    ),
    promises=(
        Promise(
            "Retrieval-augmented prompt: the k passages BM25 ranks best, then the question.",
            ALL_CASES,
        ),
        Promise(
            "The question and each document are tokenised as lowercase words, "
            '``re.findall(r"\\w+", text.lower())``',
            ("capitals and punctuation", "3 of 6 passages"),
        ),
        Promise(
            "and each document is scored by Okapi BM25 against the question's words (the "
            "formula of ``bm25_scores``, computed here again so that the function stands "
            "alone: idf(q) = ln(1 + (N - n(q) + 0.5) / (n(q) + 0.5)), score(D) = Σ_q idf(q) · "
            "f(q, D) · (k1 + 1) / (f(q, D) + k1 · (1 - b + b · |D| / avgdl)), a repeated "
            "question word counting once per occurrence, |D| / avgdl taken as 0 when every "
            "document is empty).",
            ("3 of 6 passages", "k1 given", "b given"),
        ),
        Promise(
            "The documents are ranked by decreasing score, equal scores in increasing index "
            "order, and the first min(k, N) are retrieved.",
            (
                "3 of 6 passages",
                "equal scores: the lower index first",
                "k larger than N retrieves all",
            ),
        ),
        Promise(
            "The prompt has one line per retrieved passage, in rank order, numbered from 1: "
            '``"[1] " + text + "\\n"`` with the document\'s original text, then '
            '``"Question: " + question + "\\nAnswer (cite the passages by number):"``.',
            ("3 of 6 passages", "capitals and punctuation"),
        ),
        Promise(
            '``retrieval_prompt("Who wrote it?", ["a b", "who wrote"], k=1)`` is',
            ("the docstring example",),
        ),
        Promise(
            '``("[1] who wrote\\nQuestion: Who wrote it?\\nAnswer (cite the passages by '
            'number):", [1])``.',
            ("the docstring example",),
        ),
        Promise("question: the question, a string.", ALL_CASES),
        Promise("documents: a non-empty list of N passages (strings).", ALL_CASES),
        Promise(
            "k: the number of passages to retrieve, >= 1 (k > N retrieves all).",
            ("the docstring example", "k larger than N retrieves all", "the default k"),
        ),
        Promise(
            "k1, b: the BM25 parameters, k1 >= 0 and b in [0, 1].",
            ("k1 given", "b given", "the default k1 and b"),
        ),
        Promise(
            "(prompt, indices): the prompt string and the list of the retrieved documents' "
            "indices in rank order (Python ints).",
            ALL_CASES,
        ),
    ),
)

# ------------------------------------------------------------------ induction_scores


def _induction_variant(kind: str) -> Callable:
    def induction_scores(attention, period):
        T = attention.shape[-1]
        t = torch.arange(period, T)
        if kind == "reads_the_copy":
            return attention[..., t, t - period].mean(dim=-1)
        if kind == "transposed":
            return attention[..., t - period + 1, t].mean(dim=-1)
        if kind == "keeps_row_period_minus_1":
            t = torch.arange(period - 1, T)
        values = attention[..., t, t - period + 1]
        if kind == "divided_by_T":
            return values.sum(dim=-1) / T
        if kind == "sum":
            return values.sum(dim=-1)
        return values.mean(dim=-1)

    return induction_scores


def _attention(g: torch.Generator, *shape: int) -> torch.Tensor:
    """Random attention weights (rows sum to 1, not causal: the transposed reading differs)."""
    return randn(g, *shape, scale=1.5).softmax(dim=-1)


def _perfect(T: int, period: int) -> torch.Tensor:
    att = torch.zeros(T, T)
    att[0, 0] = 1.0
    for t in range(1, T):
        att[t, t - period + 1 if t >= period else 0] = 1.0
    return att


def _induction_cases(g: torch.Generator) -> list[Case]:
    return [
        call_case("(n_layers, n_heads, T, T), period 4", _attention(g, 2, 3, 10, 10), 4),
        call_case("(n_heads, T, T), period 1", _attention(g, 4, 6, 6), 1),
        call_case("period T - 1: one query", _attention(g, 2, 7, 7), 6),
        call_case("one head (T, T), period 3", _attention(g, 9, 9), 3),
        call_case("a perfect induction head scores 1", torch.stack([_perfect(12, 5)] * 2), 5),
    ]


INDUCTION = Exercise(
    name="induction_scores",
    points=2,
    summary="mean attention from t to t - period + 1",
    make_cases=_induction_cases,
    reference=lambda: ref.induction_scores,
    output_names=("scores",),
    tolerance=Tolerance(1e-6, 1e-5),
    mistakes=(
        Mistake(
            "reads_the_copy",
            "your answer matches the attention to the earlier copy itself, position t - "
            "period: an induction head looks at the token AFTER it, position t - period + 1.",
            _induction_variant("reads_the_copy"),
        ),
        Mistake(
            "keeps_row_period_minus_1",
            "your answer matches a mean that also counts query position period - 1 (the "
            "first entry of the diagonal at offset -(period - 1)): only the T - period "
            "positions t >= period are repeated tokens.",
            _induction_variant("keeps_row_period_minus_1"),
        ),
        Mistake(
            "divided_by_T",
            "your answer matches dividing by T: the mean is over the T - period query "
            "positions t in [period, T) only.",
            _induction_variant("divided_by_T"),
        ),
        Mistake(
            "transposed",
            "your answer matches attention[..., t - period + 1, t]: row t is the query, so "
            "read attention[..., t, t - period + 1].",
            _induction_variant("transposed"),
        ),
        Mistake(
            "sum",
            "your answer matches the SUM over the query positions: the score is their mean "
            "(1 for a perfect induction head).",
            _induction_variant("sum"),
        ),
    ),
    promises=(
        Promise(
            "How strongly attention behaves like an induction head on a repeated sequence.",
            ALL_CASES,
        ),
        Promise(
            "The sequence repeats with the given period: token t equals token t - period for "
            "t >= period.",
            ALL_CASES,
        ),
        Promise(
            "At such a position an induction head attends to the token right after the "
            "earlier copy of the current token, position t - period + 1.",
            ("(n_layers, n_heads, T, T), period 4", "a perfect induction head scores 1"),
        ),
        Promise(
            "The score is the mean over the T - period query positions t in [period, T) of "
            "``attention[..., t, t - period + 1]``: 1 for a perfect induction head, 0 for a "
            "head that never looks there.",
            (
                "(n_layers, n_heads, T, T), period 4",
                "a perfect induction head scores 1",
                "period T - 1: one query",
            ),  # fmt: skip
        ),
        Promise(
            "Only shapes are read, so it runs on ``meta`` tensors; the dtype and device are "
            "those of ``attention``.",
            ("(n_layers, n_heads, T, T), period 4", "a perfect induction head scores 1"),
        ),
        Promise(
            "attention: shape (..., T, T), attention weights, row t (the query) over the "
            "keys, e.g. (n_layers, n_heads, T, T) or (n_heads, T, T).",
            (
                "(n_layers, n_heads, T, T), period 4",
                "(n_heads, T, T), period 1",
                "one head (T, T), period 3",
            ),  # fmt: skip
        ),
        Promise(
            "period: the length of the repeated block, 1 <= period < T.",
            ("(n_heads, T, T), period 1", "period T - 1: one query"),
        ),
        Promise(
            "shape (...), one score per leading index (e.g. per layer and head).",
            ("(n_layers, n_heads, T, T), period 4", "one head (T, T), period 3"),
        ),
    ),
)

SPEC = ChapterSpec(
    number="10",
    slug="prompting",
    title="Using language models: prompting, in-context learning, retrieval",
    exercises=(
        FEW_SHOT,
        LOGPROB,
        CLASSIFY,
        VOTE,
        SELF_CONSISTENCY,
        CONSTRAINED,
        BM25,
        RETRIEVAL,
        INDUCTION,
    ),
)
