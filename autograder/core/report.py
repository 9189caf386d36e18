"""Plain-text reports of exercise results, for the terminal and the notebook."""

from __future__ import annotations

import textwrap

from autograder.core.evaluate import ExerciseResult

_LABEL = {"passed": "PASS", "failed": "FAIL", "not_implemented": "TODO", "missing": "MISSING"}


def format_result(result: ExerciseResult, width: int = 100) -> str:
    """``PASS  gelu  1/1`` and, when it fails, the message and hint indented below."""
    head = f"{_LABEL.get(result.status, result.status.upper()):<7} {result.name:<32} "
    head += f"{result.score:g}/{result.max_score}"
    if result.passed:
        return head
    body = textwrap.fill(
        result.message, width, initial_indent="        ", subsequent_indent="        "
    )
    if result.hint:
        body += "\n" + textwrap.fill(
            "Hint: " + result.hint,
            width,
            initial_indent="        ",
            subsequent_indent="              ",
        )
    return head + "\n" + body


def format_report(title: str, results: list[ExerciseResult]) -> str:
    lines = [title, ""] + [format_result(r) for r in results]
    score = sum(r.score for r in results)
    total = sum(r.max_score for r in results)
    passed = sum(r.passed for r in results)
    todo = sum(r.status == "not_implemented" for r in results)
    lines += [
        "",
        f"{passed} of {len(results)} exercises pass, {todo} not implemented yet; "
        f"{score:g}/{total} points on these inputs",
    ]
    return "\n".join(lines)
