"""One mistake costs one exercise: each of the project's mutants, graded together with the
exercises that call the mutated one, loses its own exercise and none of theirs (they are
graded again with the reference standing in for the student's failing functions)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from autograder.core.chapters import CHAPTERS, load_spec
from autograder.core.executors import in_process_answering
from autograder.core.grading import grade_submission

ROOT = Path(__file__).resolve().parent.parent
PRESENT = [c for c in CHAPTERS if (ROOT / "tests" / "mutants" / f"{c.slug}.py").exists()]


def _callers(spec, name: str) -> list[str]:
    """The exercises that call ``name``, directly or through others."""
    found: list[str] = []
    changed = True
    while changed:
        changed = False
        for ex in spec.exercises:
            if ex.name not in found and ({name, *found} & set(ex.depends_on)):
                found.append(ex.name)
                changed = True
    return found


# Where no stand-in can answer yet, a mistake still costs its callers too (strict xfail:
# when one of these starts passing, move it out of the list).
CLASS = "its callers use a class the student wrote: classes have no stand-in yet"
GRADIENTS = "its callers differentiate through it: a stand-in's answer carries no gradient"
MODEL = "its callers pass it the model (a callable) or a cache it updates: not plain data"
KNOWN = {
    **dict.fromkeys(["01-mha_scale_by_d_model", "01-mha_no_out_proj", "01-ff_exact_gelu",
                     "01-ff_no_activation", "01-mha_reshape_without_transpose",
                     "05-lora_scaling_alpha"], CLASS),
    **dict.fromkeys(["03-routing_softmax_over_all_experts_first", "03-routing_softmax_over_tokens",
                     "03-routing_smallest_logits", "03-routing_raw_logits_as_weights",
                     "03-lb_f_divided_by_T_times_k", "03-lb_missing_factor_E",
                     "03-lb_counts_first_choice_only", "03-lb_softmax_over_tokens",
                     "03-lb_probabilities_detached", "04-ce_sum", "04-clip_always"], GRADIENTS),
    **dict.fromkeys(["07-top_k_drops_kth", "07-top_k_smallest", "07-top_k_zero_fill",
                     "07-generate_last_token_only", "07-generate_first_position",
                     "09-kv_returns_new_only", "09-fwd_no_offset", "09-kv_prepend",
                     "09-fwd_new_keys_only", "09-fwd_no_causal_mask", "09-fwd_ignores_key_mask"],
                    MODEL),
}  # fmt: skip

CASES = []
for info in PRESENT:
    spec = load_spec(info)
    for mutant in importlib.import_module(f"tests.mutants.{info.slug}").MUTANTS:
        callers = _callers(spec, mutant.exercise)
        if callers:
            ident = f"{info.number}-{mutant.name}"
            marks = [pytest.mark.xfail(strict=True, reason=KNOWN[ident])] if ident in KNOWN else []
            CASES.append(pytest.param(info, mutant, callers, id=ident, marks=marks))


def test_most_mutants_with_callers_cost_only_their_own_exercise() -> None:
    assert len(CASES) - len(KNOWN) >= 56, "fewer mutants are contained than when this was written"


@pytest.mark.parametrize("info, mutant, callers", CASES)
def test_a_mutant_costs_its_own_exercise_and_none_that_call_it(info, mutant, callers, tmp_path):
    path = mutant.write(importlib.import_module(f"solutions.{info.slug}"), tmp_path)
    only = [mutant.exercise, *callers]
    results = {r.name: r for r in grade_submission(path, info, in_process_answering, only=only)}
    assert not results[mutant.exercise].passed
    lost = {n: results[n].message for n in callers if not results[n].passed}
    assert not lost, f"{mutant.name} also cost {lost}"
