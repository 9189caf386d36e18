"""The reference of chapter 10 (solutions/prompting.py) against independent oracles.

Oracles: strings written out by hand for the prompts; for the log-likelihoods a loop
that calls the model once per continuation token on the growing prefix, in float64;
for self-consistency a replay of the documented draw order with a second generator
(and chapter 07's ``generate``, which the docstring says draws the same tokens); for
constrained decoding a slow walk over the options with Python lists, and a model whose
logits are set by hand for every prefix; for BM25 a computation by hand on a tiny
corpus (in the comments) and the formula written again with ``math`` over Python
lists; for the induction score a loop over query positions and a hand-built perfect
induction pattern.

Exceptions to the meta-device rule, and why: ``classify_by_likelihood`` and
``constrained_decode`` return a Python int and ``self_consistency`` decodes sampled
tokens (data, not shapes); ``bm25_scores`` and ``retrieval_prompt`` count words in
Python strings. ``sequence_logprob`` and ``induction_scores`` run on ``meta``.
"""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest
import torch
import torch.nn.functional as F

from solutions.architectures import GPT
from solutions.prompting import (
    bm25_scores,
    classify_by_likelihood,
    constrained_decode,
    few_shot_prompt,
    induction_scores,
    majority_vote,
    retrieval_prompt,
    self_consistency,
    sequence_logprob,
)
from solutions.sampling import generate

V = 13


@pytest.fixture(scope="module")
def gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(vocab_size=V, d_model=16, n_layers=2, n_heads=2, max_seq_len=32).eval()


class PrefixTableLM(torch.nn.Module):
    """Logits set by hand: position t of a row gets ``table[tuple(row[: t + 1])]``
    (zeros for a prefix not in the table). Causal by construction."""

    def __init__(self, table: dict[tuple[int, ...], list[float]], vocab: int) -> None:
        super().__init__()
        self.table, self.vocab = table, vocab
        self.calls: list[list[int]] = []
        self.grad_enabled: list[bool] = []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = ids.tolist()
        self.calls.extend(rows)
        self.grad_enabled.append(torch.is_grad_enabled())
        out = [
            [self.table.get(tuple(row[: t + 1]), [0.0] * self.vocab) for t in range(len(row))]
            for row in rows
        ]
        return torch.tensor(out, dtype=torch.float32)


def _logprob_loop(model, prompt: list[int], continuation: list[int]) -> float:
    """Σ_c log p(continuation[c] | prompt + continuation[:c]), one model call per token."""
    total = 0.0
    for c, token in enumerate(continuation):
        prefix = torch.tensor([prompt + continuation[:c]])
        with torch.no_grad():
            last = model(prefix)[0, -1].double()
        total += float(last[token] - torch.logsumexp(last, dim=0))
    return total


# ------------------------------------------------------------------ few_shot_prompt


def test_few_shot_prompt_renders_examples_in_order_then_cuts_the_query_before_output() -> None:
    got = few_shot_prompt([("cat", "chat"), ("dog", "chien")], "bird")
    assert got == "in: cat -> out: chat\nin: dog -> out: chien\nin: bird -> out: "


def test_few_shot_prompt_docstring_example() -> None:
    assert few_shot_prompt([("2+2", "4")], "3+3") == "in: 2+2 -> out: 4\nin: 3+3 -> out: "


def test_few_shot_prompt_with_no_examples_is_the_zero_shot_query() -> None:
    assert few_shot_prompt([], "bird") == "in: bird -> out: "
    assert few_shot_prompt([], "x", template="Q: {input}\nA: {output}\n\n") == "Q: x\nA: "


def test_few_shot_prompt_custom_template_drops_the_text_after_output_for_the_query() -> None:
    template = "<{input}|{output}>\n"
    assert few_shot_prompt([("a", "b")], "c", template) == "<a|b>\n<c|"


def test_few_shot_prompt_copies_braces_and_placeholders_in_the_text_literally() -> None:
    # str.format would fail on "{x}"; a second str.replace would rewrite "{output}" in x.
    got = few_shot_prompt([("{x} {output}", "{input}}")], "{}")
    assert got == "in: {x} {output} -> out: {input}}\nin: {} -> out: "


@pytest.mark.parametrize(
    "template",
    [
        "in: {input} ->",  # no {output}
        "out: {output}",  # no {input}
        "{output} <- {input}",  # wrong order
        "{input} {input} {output}",  # twice
        "{input} {output} {output}",
    ],
)
def test_few_shot_prompt_rejects_bad_templates(template: str) -> None:
    with pytest.raises(ValueError, match="template"):
        few_shot_prompt([("a", "b")], "c", template)


def test_few_shot_prompt_rejects_an_example_that_is_not_a_pair() -> None:
    with pytest.raises(ValueError, match=r"examples\[1\]"):
        few_shot_prompt([("a", "b"), ("c",)], "d")


# ----------------------------------------------------------------- sequence_logprob


@pytest.mark.parametrize("P,C", [(1, 1), (3, 1), (1, 4), (5, 6)])
def test_sequence_logprob_matches_a_token_by_token_loop(gpt: GPT, P: int, C: int) -> None:
    g = torch.Generator().manual_seed(P * 10 + C)
    prompt, cont = torch.randint(0, V, (P,), generator=g), torch.randint(0, V, (C,), generator=g)
    got = sequence_logprob(gpt, prompt, cont).detach()
    assert got.shape == () and got.dtype == torch.float32
    assert float(got) == pytest.approx(_logprob_loop(gpt, prompt.tolist(), cont.tolist()), abs=1e-4)
    assert float(got) <= 0


def test_sequence_logprob_makes_one_forward_pass_without_the_last_token() -> None:
    model = PrefixTableLM({(1,): [0.0, 2.0, 0.0], (1, 2): [1.0, 0.0, 0.0]}, vocab=3)
    got = sequence_logprob(model, torch.tensor([1]), torch.tensor([1, 0]))
    assert model.calls == [[1, 1]]  # prompt + continuation[:-1], once
    # hand: log softmax([0, 2, 0])[1] + log softmax(zeros(3))[0] (prefix (1, 1) not in table)
    expected = (2 - math.log(2 + math.exp(2))) - math.log(3)
    assert float(got) == pytest.approx(expected, abs=1e-6)


def test_sequence_logprob_is_differentiable(gpt: GPT) -> None:
    out = sequence_logprob(gpt, torch.tensor([1, 2]), torch.tensor([3]))
    assert out.requires_grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_sequence_logprob_returns_the_dtype_of_the_logits(gpt: GPT, dtype: torch.dtype) -> None:
    prompt, cont = torch.tensor([1, 2, 3]), torch.tensor([4, 5])
    model = GPT(V, 16, 2, 2, 32).eval()
    model.load_state_dict(gpt.state_dict())
    model = model.to(dtype)
    got = sequence_logprob(model, prompt, cont).detach()
    assert got.dtype == dtype
    if dtype == torch.float64:  # the loop on the same float64 model
        assert float(got) == pytest.approx(_logprob_loop(model, [1, 2, 3], [4, 5]), abs=1e-9)
    assert float(got) == pytest.approx(_logprob_loop(gpt, [1, 2, 3], [4, 5]), abs=0.1)


class FixedLM(torch.nn.Module):
    """The same logits (V,) at every position, in their dtype."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*ids.shape, -1)


def test_sequence_logprob_computes_bfloat16_logits_in_float32() -> None:
    # seed 2 is a case where a bfloat16 log-softmax, or a bfloat16 sum of the token
    # log-probabilities, gives -20.75 instead of -20.875
    g = torch.Generator().manual_seed(2)
    logits = (torch.randn(50, generator=g) * 3).bfloat16()
    cont = torch.randint(0, 50, (3,), generator=g)
    got = sequence_logprob(FixedLM(logits), torch.tensor([0]), cont)
    expected = F.log_softmax(logits.float(), dim=-1)[cont].sum().bfloat16()
    assert got.dtype == torch.bfloat16 and torch.equal(got, expected)
    assert not torch.equal(got, F.log_softmax(logits, dim=-1)[cont].sum())


def test_sequence_logprob_runs_on_meta() -> None:
    model = GPT(V, 16, 1, 2, 32).to("meta")
    ids = torch.zeros(3, dtype=torch.long, device="meta")
    got = sequence_logprob(model, ids, ids[:2])
    assert got.device.type == "meta" and got.shape == () and got.dtype == torch.float32


def test_sequence_logprob_bad_arguments_name_the_argument(gpt: GPT) -> None:
    ok = torch.tensor([1, 2])
    for prompt, cont, word in (
        (torch.tensor([], dtype=torch.long), ok, "prompt_ids"),
        (ok[None], ok, "prompt_ids"),
        (ok.float(), ok, "prompt_ids"),
        (ok, torch.tensor([], dtype=torch.long), "continuation_ids"),
        (ok, ok[None], "continuation_ids"),
        (ok, ok.float(), "continuation_ids"),
    ):
        with pytest.raises(ValueError, match=word):
            sequence_logprob(gpt, prompt, cont)
    with pytest.raises(ValueError, match="model"):
        sequence_logprob(lambda ids: torch.zeros(ids.shape[1], V), ok, ok)


# ----------------------------------------------------------- classify_by_likelihood


def _labels(g: torch.Generator) -> list[torch.Tensor]:
    return [torch.randint(0, V, (n,), generator=g) for n in (1, 3, 2, 4, 1)]


@pytest.mark.parametrize("normalize", [False, True])
def test_classify_by_likelihood_matches_sequence_logprob_per_label(gpt: GPT, normalize) -> None:
    g = torch.Generator().manual_seed(1)
    prompt, labels = torch.randint(0, V, (4,), generator=g), _labels(g)
    scores, best = classify_by_likelihood(gpt, prompt, labels, normalize=normalize)
    expected = torch.stack(
        [sequence_logprob(gpt, prompt, lab) / (len(lab) if normalize else 1) for lab in labels]
    ).detach()
    assert scores.shape == (len(labels),) and scores.dtype == torch.float32
    torch.testing.assert_close(scores.detach(), expected, rtol=1e-5, atol=1e-5)
    loop = [_logprob_loop(gpt, prompt.tolist(), lab.tolist()) for lab in labels]
    loop = [s / (len(lab) if normalize else 1) for s, lab in zip(loop, labels, strict=True)]
    assert best == max(range(len(loop)), key=lambda i: (loop[i], -i))
    assert isinstance(best, int)


def test_classify_by_likelihood_normalize_changes_the_winner_between_lengths() -> None:
    # after the prompt (0,): p(3) = 0.4, p(1) = 0.3; after (0, 1): p(2) = 0.9.
    # sums:  [3] -> ln 0.4 = -0.92;  [1, 2] -> ln 0.3 + ln 0.9 = -1.31: label 0 wins.
    # means: [3] -> -0.92;           [1, 2] -> -1.31 / 2 = -0.65:     label 1 wins.
    rest = math.log(0.1 / 3)
    table = {
        (0,): [math.log(0.3), math.log(0.3), -30.0, math.log(0.4)],
        (0, 1): [rest, rest, math.log(0.9), rest],
    }
    model = PrefixTableLM(table, vocab=4)
    labels = [torch.tensor([3]), torch.tensor([1, 2])]
    scores, best = classify_by_likelihood(model, torch.tensor([0]), labels)
    assert best == 0
    expected = [math.log(0.4), math.log(0.3) + math.log(0.9)]
    torch.testing.assert_close(scores, torch.tensor(expected), rtol=0, atol=1e-5)
    scores, best = classify_by_likelihood(model, torch.tensor([0]), labels, normalize=True)
    assert best == 1
    expected[1] /= 2
    torch.testing.assert_close(scores, torch.tensor(expected), rtol=0, atol=1e-5)


def test_classify_by_likelihood_scores_all_labels_in_one_padded_batch() -> None:
    model = PrefixTableLM({}, vocab=5)
    classify_by_likelihood(
        model, torch.tensor([4, 4]), [torch.tensor([1, 2, 3]), torch.tensor([2])]
    )
    assert model.calls == [[4, 4, 1, 2], [4, 4, 0, 0]]


def test_classify_by_likelihood_does_not_call_sequence_logprob(monkeypatch) -> None:
    import solutions.prompting as module

    def boom(*args, **kwargs):
        raise AssertionError("classify_by_likelihood must stand alone")

    monkeypatch.setattr(module, "sequence_logprob", boom)
    model = PrefixTableLM({}, vocab=3)
    assert module.classify_by_likelihood(model, torch.tensor([0]), [torch.tensor([1])])[1] == 0


def test_classify_by_likelihood_ties_go_to_the_lowest_index() -> None:
    model = PrefixTableLM({}, vocab=6)  # uniform: every token has log p = -log 6
    labels = [torch.tensor([1, 2]), torch.tensor([3]), torch.tensor([4])]
    scores, best = classify_by_likelihood(model, torch.tensor([0]), labels)
    assert best == 1 and float(scores[1]) == float(scores[2])
    scores, best = classify_by_likelihood(model, torch.tensor([0]), labels, normalize=True)
    assert best == 0 and torch.allclose(scores, torch.full((3,), -math.log(6)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_classify_by_likelihood_keeps_the_dtype_of_the_logits(gpt: GPT, dtype) -> None:
    model = GPT(V, 16, 2, 2, 32).eval()
    model.load_state_dict(gpt.state_dict())
    labels = [torch.tensor([1]), torch.tensor([2, 3])]
    scores, _ = classify_by_likelihood(model.to(dtype), torch.tensor([5, 6]), labels)
    assert scores.dtype == dtype


def test_classify_by_likelihood_bad_arguments_name_the_argument(gpt: GPT) -> None:
    ok = torch.tensor([1, 2])
    for prompt, labels, word in (
        (torch.tensor([], dtype=torch.long), [ok], "prompt_ids"),
        (ok[None], [ok], "prompt_ids"),
        (ok.float(), [ok], "prompt_ids"),
        (ok, [], "label_ids"),
        (ok, [ok, torch.tensor([], dtype=torch.long)], r"label_ids\[1\]"),
        (ok, [ok[None]], r"label_ids\[0\]"),
        (ok, [ok.float()], r"label_ids\[0\]"),
    ):
        with pytest.raises(ValueError, match=word):
            classify_by_likelihood(gpt, prompt, labels)


# -------------------------------------------------------------------- majority_vote


def _vote_loop(answers: list[str | None]) -> str | None:
    best, best_count = None, 0
    for a in answers:  # first occurrences in order; a later answer must beat, not tie
        if a is not None and answers.count(a) > best_count:
            best, best_count = a, answers.count(a)
    return best


def test_majority_vote_examples() -> None:
    assert majority_vote(["4", "5", "4"]) == "4"
    assert majority_vote(["5", "4", "4", "5"]) == "5"  # tie: the first to appear
    assert majority_vote([None, "7", None, None, "8", "8"]) == "8"  # None never wins
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None
    assert majority_vote(["4", " 4"]) == "4"  # exact strings: " 4" is another answer


def test_majority_vote_matches_a_loop_on_random_lists() -> None:
    rng = random.Random(0)
    for _ in range(300):
        answers = [rng.choice(["a", "b", "c", None]) for _ in range(rng.randint(0, 9))]
        assert majority_vote(answers) == _vote_loop(answers), answers


def test_majority_vote_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match=r"answers\[1\]"):
        majority_vote(["1", 1])


# ----------------------------------------------------------------- self_consistency


def _decode(ids: list[int]) -> str:
    return " ".join(map(str, ids))


def _replay(model, prompt, n, steps, temperature, g) -> list[list[int]]:
    ids = prompt[None].repeat(n, 1)
    for _ in range(steps):
        with torch.no_grad():
            last = model(ids)[:, -1, :]
        probs = torch.softmax(last / temperature, dim=-1)
        ids = torch.cat([ids, torch.multinomial(probs, 1, generator=g)], dim=1)
    return ids[:, prompt.shape[0] :].tolist()


@pytest.mark.parametrize("temperature", [0.7, 1.0, 2.5])
def test_self_consistency_replays_one_batched_draw_per_step(gpt: GPT, temperature: float) -> None:
    prompt = torch.tensor([3, 1, 4])
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    answer, answers = self_consistency(
        gpt, prompt, 6, 5, _decode, lambda s: s, temperature=temperature, generator=g1
    )
    rows = _replay(gpt, prompt, 6, 5, temperature, g2)
    assert answers == [_decode(r) for r in rows]
    assert answer == _vote_loop(answers)
    # the same amount of randomness consumed: the next draws agree
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))


def test_self_consistency_draws_the_tokens_of_chapter_07_generate(gpt: GPT) -> None:
    prompt = torch.tensor([2, 7])
    _, answers = self_consistency(
        gpt, prompt, 4, 6, _decode, lambda s: s, 1.3, torch.Generator().manual_seed(3)
    )
    ids = generate(
        gpt, prompt[None].expand(4, -1), 6, 1.3, generator=torch.Generator().manual_seed(3)
    )
    assert answers == [_decode(r) for r in ids[:, 2:].tolist()]


def test_self_consistency_parses_each_row_in_order_and_votes_with_the_tie_rule(gpt: GPT) -> None:
    def run(parsed: list[str | None]):
        it = iter(parsed)
        return self_consistency(
            gpt, torch.tensor([1]), len(parsed), 2, _decode, lambda s: next(it),
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip

    assert run(["5", "4", "4", "5", None]) == ("5", ["5", "4", "4", "5", None])
    assert run([None, "9", "8", "8"]) == ("8", [None, "9", "8", "8"])
    assert run([None, None, None]) == (None, [None, None, None])


def test_self_consistency_decodes_exactly_max_new_tokens_per_row(gpt: GPT) -> None:
    seen: list[list[int]] = []

    def decode(ids: list[int]) -> str:
        seen.append(ids)
        return "x"

    self_consistency(gpt, torch.tensor([1, 2]), 3, 4, decode, lambda s: s)
    assert len(seen) == 3 and all(len(s) == 4 and all(type(t) is int for t in s) for s in seen)


def test_self_consistency_and_constrained_decode_run_the_model_without_grad() -> None:
    model = PrefixTableLM({}, vocab=3)
    self_consistency(model, torch.tensor([0]), 2, 3, _decode, lambda s: s)
    constrained_decode(model, torch.tensor([0]), [torch.tensor([1, 2]), torch.tensor([2])])
    assert model.grad_enabled and not any(model.grad_enabled)


def test_self_consistency_bad_arguments_name_the_argument(gpt: GPT) -> None:
    ok = torch.tensor([1, 2])
    for kwargs, word in (
        ({"prompt_ids": ok[None]}, "prompt_ids"),
        ({"prompt_ids": torch.tensor([], dtype=torch.long)}, "prompt_ids"),
        ({"prompt_ids": ok.float()}, "prompt_ids"),
        ({"n_samples": 0}, "n_samples"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
    ):
        args = {"prompt_ids": ok, "n_samples": 2, "max_new_tokens": 2, "temperature": 1.0}
        args.update(kwargs)
        with pytest.raises(ValueError, match=word):
            self_consistency(gpt, decode=_decode, parse=lambda s: s, **args)


# --------------------------------------------------------------- constrained_decode


def _constrained_loop(model, prompt: list[int], options: list[list[int]]) -> int:
    chosen: list[int] = []
    while True:
        with torch.no_grad():
            last = model(torch.tensor([prompt + chosen]))[0, -1].tolist()
        allowed = sorted({o[len(chosen)] for o in options if o[: len(chosen)] == chosen})
        best = allowed[0]
        for t in allowed:
            if last[t] > last[best]:
                best = t
        chosen.append(best)
        if chosen in options:
            return options.index(chosen)


def _prefix_free(options: list[list[int]]) -> bool:
    return not any(
        a[: len(b)] == b for a, b in itertools.permutations(options, 2) if len(a) >= len(b)
    )


def test_constrained_decode_matches_a_walk_over_the_options_on_random_models() -> None:
    rng = random.Random(0)
    n_cases = 0
    while n_cases < 60:
        vocab = rng.randint(3, 6)
        options = [
            [rng.randrange(vocab) for _ in range(rng.randint(1, 3))]
            for _ in range(rng.randint(1, 5))
        ]
        if not _prefix_free(options):
            continue
        n_cases += 1
        table = {}
        for o in options:  # hand-set logits on every prefix the decoding can visit
            for t in range(len(o)):
                # few distinct values, so ties between tokens happen
                table[(0, *o[:t])] = [float(rng.randint(0, 2)) for _ in range(vocab)]
        model = PrefixTableLM(table, vocab)
        opts = [torch.tensor(o) for o in options]
        got = constrained_decode(model, torch.tensor([0]), opts)
        assert isinstance(got, int)
        assert got == _constrained_loop(model, [0], options), (options, table)


def test_constrained_decode_picks_the_lowest_token_id_on_ties() -> None:
    model = PrefixTableLM({(0,): [0.0, 5.0, 5.0, 5.0]}, vocab=4)
    opts = [torch.tensor([3]), torch.tensor([2]), torch.tensor([0]), torch.tensor([1])]
    assert constrained_decode(model, torch.tensor([0]), opts) == 3  # token 1: lowest of the max


def test_constrained_decode_ignores_a_higher_logit_outside_the_options() -> None:
    model = PrefixTableLM({(0,): [9.0, 1.0, 2.0], (0, 2): [9.0, 3.0, 0.0]}, vocab=3)
    opts = [torch.tensor([1]), torch.tensor([2, 1]), torch.tensor([2, 2])]
    assert constrained_decode(model, torch.tensor([0]), opts) == 1
    assert model.calls == [[0], [0, 2]]  # one pass per step on prompt + chosen tokens


def test_constrained_decode_commits_greedily_where_classify_sums_the_whole_label() -> None:
    # first step: token 1 (p ~ 0.55) beats token 3 (p ~ 0.45); but after 1, token 2 is
    # nearly impossible while after 3 token 4 is certain.
    big = 30.0
    table = {
        (0,): [-big, math.log(0.55), -big, math.log(0.45), -big],
        (0, 1): [0.0, 0.0, -big, 0.0, 0.0],
        (0, 3): [-big, -big, -big, -big, big],
    }
    model = PrefixTableLM(table, vocab=5)
    opts = [torch.tensor([1, 2]), torch.tensor([3, 4])]
    assert constrained_decode(model, torch.tensor([0]), opts) == 0
    assert classify_by_likelihood(model, torch.tensor([0]), opts)[1] == 1


def test_constrained_decode_on_a_gpt_returns_the_argmax_option_for_single_tokens(gpt) -> None:
    prompt = torch.tensor([4, 5, 6])
    with torch.no_grad():
        last = gpt(prompt[None])[0, -1]
    opts = [torch.tensor([t]) for t in (9, 2, 7, 0)]
    expected = max(range(4), key=lambda i: float(last[opts[i][0]]))
    assert constrained_decode(gpt, prompt, opts) == expected


@pytest.mark.parametrize(
    "options",
    [
        [[1, 2], [1, 2]],  # duplicate
        [[1], [1, 2]],  # prefix
        [[3], [1, 2, 3], [1, 2]],
    ],
)
def test_constrained_decode_rejects_options_that_are_not_prefix_free(options) -> None:
    model = PrefixTableLM({}, vocab=4)
    with pytest.raises(ValueError, match="prefix-free"):
        constrained_decode(model, torch.tensor([0]), [torch.tensor(o) for o in options])


def test_constrained_decode_bad_arguments_name_the_argument() -> None:
    model = PrefixTableLM({}, vocab=4)
    ok = torch.tensor([1, 2])
    for prompt, options, word in (
        (torch.tensor([], dtype=torch.long), [ok], "prompt_ids"),
        (ok[None], [ok], "prompt_ids"),
        (ok.float(), [ok], "prompt_ids"),
        (ok, [], "options"),
        (ok, [torch.tensor([], dtype=torch.long)], r"options\[0\]"),
        (ok, [ok, ok[None]], r"options\[1\]"),
        (ok, [ok.float()], r"options\[0\]"),
        (ok, [torch.tensor([-1])], "options"),
        (ok, [torch.tensor([7])], "options"),  # >= V
        (ok, [torch.tensor([1]), torch.tensor([2, 7])], "options"),  # >= V, never reached
    ):
        with pytest.raises(ValueError, match=word):
            constrained_decode(model, prompt, options)


# ---------------------------------------------------------------------- bm25_scores

CORPUS = [["the", "cat", "sat"], ["the", "dog"], ["cat", "cat", "dog", "runs"]]


def _bm25_loop(query, docs, k1=1.5, b=0.75) -> list[float]:
    N = len(docs)
    avgdl = sum(len(d) for d in docs) / N
    out = []
    for d in docs:
        s = 0.0
        for q in query:
            n_q = sum(1 for e in docs if q in e)
            f = d.count(q)
            if f == 0:
                continue
            idf = math.log(1 + (N - n_q + 0.5) / (n_q + 0.5))
            rel = len(d) / avgdl if avgdl > 0 else 0.0
            s += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * rel))
        out.append(s)
    return out


def test_bm25_scores_by_hand_on_a_tiny_corpus() -> None:
    # N = 3, avgdl = (3 + 2 + 4) / 3 = 3; "cat" is in 2 documents:
    # idf = ln(1 + (3 - 2 + 0.5) / (2 + 0.5)) = ln 1.6.
    # D0: f = 1, |D|/avgdl = 1: 1 * 2.5 / (1 + 1.5 * 1) = 1            -> ln 1.6
    # D1: f = 0                                                         -> 0
    # D2: f = 2, |D|/avgdl = 4/3: 2 * 2.5 / (2 + 1.5 * (0.25 + 1)) = 5 / 3.875
    got = bm25_scores(["cat"], CORPUS)
    expected = torch.tensor([math.log(1.6), 0.0, math.log(1.6) * 5 / 3.875])
    assert got.dtype == torch.float32 and got.device.type == "cpu" and got.shape == (3,)
    torch.testing.assert_close(got, expected)


def test_bm25_scores_compare_terms_as_exact_strings() -> None:
    assert torch.equal(bm25_scores(["Cat", "cat."], CORPUS), torch.zeros(3))


def test_bm25_scores_count_a_repeated_query_term_once_per_occurrence() -> None:
    one, two = bm25_scores(["cat", "dog"], CORPUS), bm25_scores(["cat", "dog", "cat"], CORPUS)
    torch.testing.assert_close(two, one + bm25_scores(["cat"], CORPUS))


@pytest.mark.parametrize("k1,b", [(1.5, 0.75), (1.2, 0.0), (2.0, 1.0), (0.0, 0.5)])
def test_bm25_scores_match_the_formula_on_random_corpora(k1: float, b: float) -> None:
    rng = random.Random(int(k1 * 10 + b * 100))
    words = "a b c d e f g".split()
    for _ in range(30):
        docs = [[rng.choice(words) for _ in range(rng.randint(0, 8))] for _ in range(5)]
        query = [rng.choice(words + ["zzz"]) for _ in range(rng.randint(0, 4))]
        got = bm25_scores(query, docs, k1=k1, b=b)
        expected = torch.tensor(_bm25_loop(query, docs, k1, b), dtype=torch.float32)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_bm25_scores_empty_query_and_empty_documents_give_zeros_not_nan() -> None:
    assert torch.equal(bm25_scores([], CORPUS), torch.zeros(3))
    assert torch.equal(bm25_scores(["cat"], [[], []]), torch.zeros(2))
    assert torch.equal(bm25_scores(["cat"], [[], []], k1=0.0), torch.zeros(2))


def test_bm25_scores_bad_arguments_name_the_argument() -> None:
    for call, word in (
        (lambda: bm25_scores(["cat"], []), "documents"),
        (lambda: bm25_scores("cat", CORPUS), "query"),
        (lambda: bm25_scores(["cat"], ["the cat"]), r"documents\[0\]"),
        (lambda: bm25_scores(["cat"], CORPUS, k1=-0.1), "k1"),
        (lambda: bm25_scores(["cat"], CORPUS, b=1.5), "b"),
        (lambda: bm25_scores(["cat"], CORPUS, b=-0.1), "b"),
    ):
        with pytest.raises(ValueError, match=word):
            call()


# ----------------------------------------------------------------- retrieval_prompt

PASSAGES = [
    "Paris is the capital of France.",
    "The cat sat on the mat.",
    "Berlin is the capital of Germany; Berlin is large.",
    "France borders Germany.",
]


def test_retrieval_prompt_writes_the_numbered_passages_then_the_question() -> None:
    prompt, idx = retrieval_prompt("What is the capital of Germany?", PASSAGES, k=2)
    words = [re.findall(r"\w+", p.lower()) for p in PASSAGES]
    ranking = _bm25_loop(re.findall(r"\w+", "what is the capital of germany"), words)
    assert idx == sorted(range(4), key=lambda i: (-ranking[i], i))[:2] == [2, 0]
    assert prompt == (
        "[1] Berlin is the capital of Germany; Berlin is large.\n"
        "[2] Paris is the capital of France.\n"
        "Question: What is the capital of Germany?\n"
        "Answer (cite the passages by number):"
    )


def test_retrieval_prompt_docstring_example() -> None:
    assert retrieval_prompt("Who wrote it?", ["a b", "who wrote"], k=1) == (
        "[1] who wrote\nQuestion: Who wrote it?\nAnswer (cite the passages by number):",
        [1],
    )


def test_retrieval_prompt_tokenises_lowercase_words() -> None:
    _, idx = retrieval_prompt("MAT!!", PASSAGES, k=1)
    assert idx == [1]  # "mat." in passage 1


def test_retrieval_prompt_breaks_ties_by_index_and_caps_k_at_the_documents() -> None:
    prompt, idx = retrieval_prompt("unrelated words", PASSAGES, k=10)
    assert idx == [0, 1, 2, 3]  # every score is 0
    assert prompt.startswith("[1] Paris") and "[4] France borders Germany.\n" in prompt
    _, idx = retrieval_prompt("capital", ["x capital", "y", "z capital"], k=3)
    assert idx == [0, 2, 1]


def test_retrieval_prompt_matches_the_bm25_ranking_on_random_corpora() -> None:
    rng = random.Random(1)
    words = "alpha beta gamma delta eps".split()
    for _ in range(30):
        docs = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 6))) for _ in range(6)]
        question = " ".join(rng.choice(words).upper() for _ in range(rng.randint(1, 3))) + "?"
        k, k1, b = rng.randint(1, 7), rng.choice([0.5, 1.5]), rng.choice([0.0, 0.75])
        _, idx = retrieval_prompt(question, docs, k=k, k1=k1, b=b)
        s = _bm25_loop(question.lower().rstrip("?").split(), [d.split() for d in docs], k1, b)
        # equal scores computed in a different order may differ by rounding: compare rounded
        assert idx == sorted(range(6), key=lambda i: (-round(s[i], 9), i))[: min(k, 6)]


def test_retrieval_prompt_bad_arguments_name_the_argument() -> None:
    for call, word in (
        (lambda: retrieval_prompt("q", PASSAGES, k=0), "k"),
        (lambda: retrieval_prompt("q", []), "documents"),
        (lambda: retrieval_prompt("q", [["a"]]), r"documents\[0\]"),
        (lambda: retrieval_prompt(["q"], PASSAGES), "question"),
        (lambda: retrieval_prompt("q", PASSAGES, k1=-1.0), "k1"),
        (lambda: retrieval_prompt("q", PASSAGES, b=2.0), "b"),
    ):
        with pytest.raises(ValueError, match=word):
            call()


# ----------------------------------------------------------------- induction_scores


def _induction_loop(att: torch.Tensor, period: int) -> torch.Tensor:
    T = att.shape[-1]
    flat = att.reshape(-1, T, T)
    out = []
    for a in flat:
        vals = [float(a[t, t - period + 1]) for t in range(period, T)]
        out.append(sum(vals) / len(vals))
    return torch.tensor(out, dtype=torch.float64).reshape(att.shape[:-2])


@pytest.mark.parametrize("period", [1, 2, 5, 9])
def test_induction_scores_match_a_loop_over_queries(period: int) -> None:
    g = torch.Generator().manual_seed(period)
    att = F.softmax(torch.randn(2, 3, 10, 10, generator=g, dtype=torch.float64), dim=-1)
    got = induction_scores(att, period)
    assert got.shape == (2, 3) and got.dtype == torch.float64
    torch.testing.assert_close(got, _induction_loop(att, period))


def test_induction_scores_a_perfect_induction_head_scores_one() -> None:
    T, period = 12, 5
    att = torch.tril(torch.ones(T, T))
    att = att / att.sum(-1, keepdim=True)  # uniform causal on the first copy
    for t in range(period, T):
        att[t] = 0.0
        att[t, t - period + 1] = 1.0
    assert float(induction_scores(att, period)) == 1.0
    prev_token = torch.zeros(T, T)  # a previous-token head: never the induction target
    prev_token[0, 0] = 1.0
    for t in range(1, T):
        prev_token[t, t - 1] = 1.0
    assert float(induction_scores(prev_token, period)) == 0.0


def test_induction_scores_on_a_gpt_attention_shape_per_layer_and_head() -> None:
    att = torch.rand(4, 2, 8, 8)  # (n_layers, n_heads, T, T)
    assert induction_scores(att, 3).shape == (4, 2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_induction_scores_keep_the_dtype(dtype: torch.dtype) -> None:
    att = F.softmax(torch.randn(3, 7, 7), dim=-1).to(dtype)
    got = induction_scores(att, 2)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), _induction_loop(att, 2), rtol=2e-2, atol=2e-2)


def test_induction_scores_run_on_meta() -> None:
    got = induction_scores(torch.empty(2, 4, 9, 9, device="meta"), 4)
    assert got.device.type == "meta" and got.shape == (2, 4)


def test_induction_scores_bad_arguments_name_the_argument() -> None:
    att = torch.rand(2, 6, 6)
    for call, word in (
        (lambda: induction_scores(att, 0), "period"),
        (lambda: induction_scores(att, 6), "period"),
        (lambda: induction_scores(att, 2.0), "period"),
        (lambda: induction_scores(torch.rand(6), 2), "attention"),
        (lambda: induction_scores(torch.rand(2, 6, 5), 2), "attention"),
    ):
        with pytest.raises(ValueError, match=word):
            call()
