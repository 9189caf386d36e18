"""One mistake costs one exercise: an exercise that fails only because a function of the
student's that it calls fails is graded again with the reference standing in, and the
reference's code never reaches the student's process (only its answers do)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder.core.chapters import resolve_chapter
from autograder.core.executors import in_process
from autograder.core.grading import _closure, grade_submission
from autograder.core.sandbox import IsolatedExecutor, bwrap_works, landlock_works

ROOT = Path(__file__).resolve().parent.parent
INFO = resolve_chapter("01")
MODES = (["bwrap"] if bwrap_works() else []) + (["process"] if landlock_works() else [])

WRONG_GELU_AND_MASK = """

def gelu(x):
    return x * torch.sigmoid(1.702 * x)


def causal_mask(seq_len, device=None):
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).triu()
"""


def _submission(tmp_path: Path, extra: str, scrub: str = "") -> Path:
    """The reference's source (without the text ``scrub``) with ``extra`` appended."""
    source = (ROOT / "solutions/attention.py").read_text()
    path = tmp_path / "01_attention.py"
    path.write_text((source.replace(scrub, "(scrubbed)") if scrub else source) + extra)
    return path


@pytest.mark.parametrize("mode", MODES)
def test_a_wrong_function_costs_only_its_own_exercise(tmp_path: Path, mode: str) -> None:
    path = _submission(tmp_path, WRONG_GELU_AND_MASK)
    results = {r.name: r for r in grade_submission(path, INFO, IsolatedExecutor(isolation=mode))}
    assert not results["gelu"].passed and not results["causal_mask"].passed
    assert results["FeedForward"].passed and results["TransformerBlock"].passed
    assert "reference stands in for your `gelu`" in results["FeedForward"].message
    assert "`causal_mask`, `gelu`" in results["TransformerBlock"].message
    assert sum(r.score for r in results.values()) == 14


def test_an_exercise_wrong_in_itself_still_fails_and_says_so(tmp_path: Path) -> None:
    broken_block = WRONG_GELU_AND_MASK + (
        "\n\n_RIGHT_BLOCK = TransformerBlock\n\n\nclass TransformerBlock(_RIGHT_BLOCK):\n"
        "    def forward(self, x):\n        return super().forward(x) * 2\n"
    )
    path = _submission(tmp_path, broken_block)
    results = {r.name: r for r in grade_submission(path, INFO, IsolatedExecutor())}
    assert not results["TransformerBlock"].passed
    assert "fails even with the reference standing in" in results["TransformerBlock"].message
    assert results["FeedForward"].passed


def test_the_self_check_grades_once_and_names_the_failing_dependency(tmp_path: Path) -> None:
    path = _submission(tmp_path, WRONG_GELU_AND_MASK)
    results = {r.name: r for r in grade_submission(path, INFO, executor=in_process)}
    assert not results["FeedForward"].passed
    assert "uses your gelu, which does not pass yet" in results["FeedForward"].message


def test_nothing_of_the_reference_reaches_the_student_while_it_stands_in(tmp_path: Path) -> None:
    """While the reference answers for causal_mask, the student's block looks everywhere for
    the reference's source or bytecode (once per process: the first forward call searches
    everything it can see, stopping at the first trace); it answers wrong if it finds any."""
    marker = "True on and below the diagonal"  # from the reference's causal_mask docstring
    assert marker in (ROOT / "solutions/attention.py").read_text()
    spy = (
        WRONG_GELU_AND_MASK
        + f"""

_RIGHT_BLOCK = TransformerBlock


_LEAKS = []  # the answer of the first search (the stand-in is the same for every case)


def _reference_leaks():
    if not _LEAKS:
        _LEAKS.append(_search_for_the_reference())
    return _LEAKS[0]


def _search_for_the_reference():
    import gc, inspect, os, sys

    def leaks(text):
        return {marker!r} in text or text.startswith("solutions")

    try:
        if leaks(inspect.getsource(causal_mask)):
            return True
    except (OSError, TypeError):
        pass
    code = getattr(causal_mask, "__code__", None)
    found = [repr(c) for c in code.co_consts] if code is not None else []
    found += [repr(v) for v in (getattr(causal_mask, "__closure__", None) or ())]
    found += [repr(getattr(c, "cell_contents", "")) for c in (causal_mask.__closure__ or ())]
    found += [n for n in sys.modules if n.startswith(("solutions", "autograder.attention"))]
    found += [repr(o)[:500] for o in gc.get_objects() if isinstance(o, str) and {marker!r} in o]
    if any(leaks(text) for text in found):
        return True
    system = ("/proc", "/sys", "/dev", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc")
    for top in ("/", "/tmp", os.getcwd()):
        for dirpath, dirnames, filenames in os.walk(top):
            if dirpath.startswith(system):
                dirnames[:] = []
                continue
            for name in filenames:
                ours = name in ("attention.py", "attention.pyc") or name.startswith("attention.c")
                if os.path.basename(dirpath) == "solutions":
                    return True
                if ours:  # the grader's own public/attention.py may be there: read it
                    try:
                        with open(os.path.join(dirpath, name), "rb") as f:
                            if leaks(f.read().decode("latin-1")):
                                return True
                    except OSError:
                        pass
    return False


class TransformerBlock(_RIGHT_BLOCK):
    def forward(self, x):
        out = super().forward(x)
        return out * 0 if _reference_leaks() else out
"""
    )
    path = _submission(tmp_path, spy, scrub=marker)  # the student's own copy says nothing
    results = {r.name: r for r in grade_submission(path, INFO, IsolatedExecutor())}
    assert results["TransformerBlock"].passed, results["TransformerBlock"].message
    # the spy does see the reference where nothing isolates it (so this test can fail)
    exposed = grade_submission(path, INFO, IsolatedExecutor(isolation="none"))
    assert not {r.name: r for r in exposed}["TransformerBlock"].passed


def test_stand_ins_reach_through_a_failing_class_to_the_function_it_calls() -> None:
    deps = {
        "TransformerBlock": ["MultiHeadAttention", "FeedForward", "causal_mask"],
        "FeedForward": ["gelu"],
        "MultiHeadAttention": ["scaled_dot_product_attention"],
    }
    failing = {"FeedForward", "gelu", "TransformerBlock"}
    assert _closure("TransformerBlock", deps, failing) == {"FeedForward", "gelu"}
    assert _closure("MultiHeadAttention", deps, failing) == set()
