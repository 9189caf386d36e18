"""Loading a submission: only definitions run, and every problem becomes a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autograder.core.loader import SubmissionError, load_submission


def notebook(tmp_path: Path, *cells: str, name: str = "sub.ipynb") -> Path:
    nb = {
        "cells": [{"cell_type": "code", "source": c, "metadata": {}, "outputs": []} for c in cells],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / name
    path.write_text(json.dumps(nb))
    return path


def test_only_imports_definitions_and_constants_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = notebook(
        tmp_path,
        "import math\nLIMIT = 3\nlowercase = 1",
        f"open({str(marker)!r}, 'w').write('top-level code ran')\n"
        "def f(x):\n    return math.sqrt(x) + LIMIT",
        "print('hello')\nraise RuntimeError('top-level code must not run')",
    )
    sub = load_submission(path)
    f, _ = sub.lookup("f")
    assert f(4.0) == 5.0
    assert not marker.exists()
    assert "lowercase" not in sub.namespace
    assert sub.notes == []


def test_magics_and_shell_lines_are_ignored(tmp_path: Path) -> None:
    path = notebook(tmp_path, "%matplotlib inline\n!pip install nothing\ndef g():\n    return 1")
    assert load_submission(path).lookup("g")[0]() == 1


def test_not_json_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_text('{"cells": [')
    with pytest.raises(
        SubmissionError, match="broken.ipynb is not a valid notebook: it is not JSON"
    ):
        load_submission(path)


def test_json_that_is_not_a_notebook_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "list.ipynb"
    path.write_text("[1, 2]")
    with pytest.raises(SubmissionError, match="not a Jupyter notebook"):
        load_submission(path)


def test_other_file_types_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "answer.txt"
    path.write_text("def f(): pass")
    with pytest.raises(SubmissionError, match=r"must be a \.ipynb notebook or a \.py file"):
        load_submission(path)


def test_syntax_error_is_charged_to_the_functions_of_that_cell_only(tmp_path: Path) -> None:
    path = notebook(tmp_path, "def ok():\n    return 1", "def bad(x):\n    return x +\n")
    sub = load_submission(path)
    assert sub.lookup("ok")[0]() == 1
    obj, reason = sub.lookup("bad")
    assert obj is None
    assert reason == "cell 2 has a syntax error on line 2: invalid syntax"


def test_missing_function_names_the_file(tmp_path: Path) -> None:
    sub = load_submission(notebook(tmp_path, "def other():\n    pass"))
    assert sub.lookup("gelu") == (None, "`gelu` is not defined in sub.ipynb")


def test_failed_import_is_reported_with_the_missing_name(tmp_path: Path) -> None:
    sub = load_submission(notebook(tmp_path, "import not_a_real_module_xyz\ndef f():\n    pass"))
    assert sub.lookup("f")[0] is not None
    _, reason = sub.lookup("gelu")
    assert "cell 1: `import not_a_real_module_xyz` failed: ModuleNotFoundError" in reason


def test_sys_exit_while_defining_costs_only_that_name(tmp_path: Path) -> None:
    path = notebook(
        tmp_path,
        "import sys\n@sys.exit\ndef f():\n    pass\n\ndef g():\n    return 2",
    )
    sub = load_submission(path)
    assert sub.lookup("g")[0]() == 2
    obj, reason = sub.lookup("f")
    assert obj is None and "SystemExit" in reason


def test_later_definition_wins_like_running_top_to_bottom(tmp_path: Path) -> None:
    sub = load_submission(notebook(tmp_path, "def f():\n    return 1", "def f():\n    return 2"))
    assert sub.lookup("f")[0]() == 2


def test_python_file_submission(tmp_path: Path) -> None:
    path = tmp_path / "answers.py"
    path.write_text(
        "def f():\n    return 3\n\nif __name__ == '__main__':\n    raise SystemExit(1)\n"
    )
    assert load_submission(path).lookup("f")[0]() == 3


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SubmissionError, match="does not exist"):
        load_submission(tmp_path / "nowhere.ipynb")


def test_an_imported_object_does_not_count_as_the_students_own(tmp_path: Path) -> None:
    sub = load_submission(
        notebook(tmp_path, "from course.blocks import FeedForward\nfrom math import sqrt")
    )
    obj, reason = sub.lookup("FeedForward")
    assert obj is None
    assert (
        reason == "`FeedForward` is imported from course.blocks, not defined in sub.ipynb: "
        "write your own"
    )
    assert sub.lookup("sqrt")[0] is None


def test_deeply_nested_json_is_a_clear_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "01_attention.ipynb"
    path.write_text("[" * 100_000)
    with pytest.raises(SubmissionError, match="its JSON is nested too deeply to read"):
        load_submission(path)


def test_json_the_parser_refuses_otherwise_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "big.ipynb"
    path.write_text('{"cells": [], "n": 1' + "0" * 5000 + "}")  # past int's digit limit
    with pytest.raises(SubmissionError, match="big.ipynb is not a valid notebook"):
        load_submission(path)


def test_deeply_nested_code_costs_only_its_cell(tmp_path: Path) -> None:
    path = notebook(
        tmp_path,
        "def ok():\n    return 1",
        "def deep():\n    return " + "-" * 100_000 + "1",  # the parser's stack overflows
        "def also_deep():\n    return " + "+".join(["1"] * 100_000),  # RecursionError
    )
    sub = load_submission(path)
    assert sub.lookup("ok")[0]() == 1
    obj, reason = sub.lookup("deep")
    assert obj is None and reason == "cell 2 cannot be parsed: its code is nested too deeply"
    obj, reason = sub.lookup("also_deep")
    assert obj is None and reason == "cell 3 cannot be parsed: its code is nested too deeply"


class _Finalized:
    def __del__(self) -> None:  # a finalizer lets the collector switch threads mid-parse
        pass


def test_submissions_load_on_several_threads_at_once(tmp_path: Path) -> None:
    """Classes are graded in-process on several threads. CPython 3.11's AST converter keeps
    its recursion depth in state all threads share; unguarded, concurrent parsing failed
    with "SystemError: AST constructor recursion depth mismatch" (found in test_batch).
    Frequent thread switches and garbage collections make the race show within a second."""
    import gc
    import sys
    import threading

    body = "".join(f"    y{i} = [(a, {{b: (c, [d])}}) for a in x if a]\n" for i in range(60))
    path = tmp_path / "sub.py"
    path.write_text(f"def f(x):\n{body}    return x\n")
    failures: list[BaseException] = []

    def load_many(worker: int) -> None:
        for i in range(60):
            cycle = _Finalized()
            cycle.self = cycle  # garbage only the collector frees
            try:
                sub = load_submission(path, module_name=f"threaded_{worker}_{i}")
                assert callable(sub.namespace["f"]) and not sub.broken
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                failures.append(exc)
                return

    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(10, 1, 1)
    try:
        threads = [threading.Thread(target=load_many, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
    assert failures == []
