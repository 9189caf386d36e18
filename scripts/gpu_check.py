"""`make gpu-check`: every reference on a GPU, in float32 and bfloat16, and every notebook.

Two parts, one table:

1. References. For every exercise of every chapter, each of its grading cases (the
   seeded inputs of autograder/SLUG.py) is run by the reference on the CPU in float32,
   then again with every tensor of the case moved to the device (float32, then with
   its float32 tensors cast to bfloat16). The device's answer must live on the device
   and have the dtype of the inputs, and, moved back, equal the CPU's within the
   exercise's tolerance (bfloat16: 3e-2, or the exercise's if looser). Exercises whose
   answers are random draws (the device's generator is another stream) and those that
   take models or tokenizers are checked for the device and dtype only.
2. Notebooks. Every chapter notebook with the reference filled in runs top to bottom
   with ``LLM_COURSE_DEVICE`` set, so ``course.helpers.pick_device()`` returns the
   device: its self-checks must all pass and its figures be drawn.

    python scripts/gpu_check.py                  # CUDA (fails when there is none)
    python scripts/gpu_check.py --device cpu     # the same machinery on the CPU
    python scripts/gpu_check.py --skip-notebooks --chapters 01 04
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder.core.chapters import CHAPTERS, load_spec, resolve_chapter  # noqa: E402
from autograder.core.drivers import run_case, to_plain  # noqa: E402
from autograder.core.materialize import exercise_generator  # noqa: E402
from autograder.core.spec import DTYPE_TOLERANCE, Exercise  # noqa: E402

# A bfloat16 answer against the float32 answer to the same (bfloat16-rounded) inputs:
# three times the grader's bfloat16 tolerance, for the longer computations checked here.
BF16_CHECK = 3 * max(DTYPE_TOLERANCE["bfloat16"].atol, DTYPE_TOLERANCE["bfloat16"].rtol)


@dataclass
class Row:
    part: str
    chapter: str
    item: str
    dtype: str
    cases: int
    result: str
    seconds: float


def _move(value: Any, device: torch.device, dtype: torch.dtype | None) -> Any:
    """The case with every tensor on ``device`` (float32 tensors cast to ``dtype``)."""
    if isinstance(value, torch.Tensor):
        if dtype is not None and value.dtype == torch.float32:
            return value.to(device=device, dtype=dtype)
        return value.to(device)
    if isinstance(value, torch.Generator):
        return torch.Generator(device=device).manual_seed(value.initial_seed())
    if isinstance(value, dict):
        return {k: _move(v, device, dtype) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_move(v, device, dtype) for v in value)
    return value


def _upcast(value: Any) -> Any:
    """bfloat16 tensors back to float32 (after ``_move`` rounded them)."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype == torch.bfloat16 else value
    if isinstance(value, dict):
        return {k: _upcast(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_upcast(v) for v in value)
    return value


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _tensors(v)]
    return []


def _has(value: Any, kind: type) -> bool:
    if isinstance(value, kind):
        return True
    if isinstance(value, dict):
        return any(_has(v, kind) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has(v, kind) for v in value)
    return False


def _compare(
    expected: Any, actual: Any, atol: float, rtol: float, path: str = "", integers: bool = True
) -> str | None:
    """What differs between two answers (None: they agree); ``integers``: compare those too."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
            return f"{path or 'output'}: shape {getattr(actual, 'shape', type(actual))}"
        if expected.is_floating_point():
            a, e = actual.double(), expected.double()
            same = (a == e) | (a.isnan() & e.isnan())  # equal infinities too
            bad = ~((a - e).abs() <= atol + rtol * e.abs()) & ~same
            if bool(bad.any()):
                worst = float((a - e).abs().nan_to_num(float("inf")).max())
                return f"{path or 'output'}: differs from the CPU by up to {worst:.3g}"
            return None
        if integers and not torch.equal(actual, expected):
            return f"{path or 'output'}: integers differ"
        return None
    if isinstance(expected, dict) and isinstance(actual, dict):
        for k in expected:
            if k in actual and (
                msg := _compare(expected[k], actual[k], atol, rtol, f"{path}.{k}", integers)
            ):
                return msg
        return None
    if isinstance(expected, list | tuple) and isinstance(actual, list | tuple):
        for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
            if msg := _compare(e, a, atol, rtol, f"{path}[{i}]", integers):
                return msg
        return None
    if isinstance(expected, float) and isinstance(actual, float):
        ok = actual == expected or abs(actual - expected) <= atol + rtol * abs(expected)
        ok = ok or (expected != expected and actual != actual)
        return None if ok else f"{path or 'output'}: {actual} vs {expected}"
    return None


def check_exercise(ex: Exercise, device: torch.device, dtype: str) -> tuple[int, str]:
    """(cases run, "ok" or what failed) for the reference of ``ex`` on ``device``."""
    low = torch.bfloat16 if dtype == "bfloat16" else None
    own_driver = ex.driver not in ("call", "module")  # it may build float32 models itself
    skip = f"skipped: the driver {ex.driver.rpartition(':')[2]} builds float32 models"
    reference = ex.reference()
    cases = ex.make_cases(exercise_generator(ex.name, 0))
    run, compared = 0, 0
    for case in cases:
        args = {k: case[k] for k in case if k not in ("label", "expected")}
        if low is not None:  # the CPU answer to the inputs bfloat16 can hold: the same rounding
            args = _move(_move(args, torch.device("cpu"), low), torch.device("cpu"), None)
            args = _upcast(args)
        try:
            expected = to_plain(run_case(reference, ex.driver, dict(args)))
        except Exception:  # noqa: BLE001 - a case about bad input: the CPU raises too
            continue
        moved = _move(args, device, low)
        if ex.driver == "module":
            moved["device"] = str(device)
            if low is not None:
                moved["dtype"] = "bfloat16"
        cast = low is not None and any(t.dtype == torch.float32 for t in _tensors(args))
        try:
            answer = run_case(reference, ex.driver, moved)
        except Exception as exc:  # noqa: BLE001 - the point of the check
            if cast and own_driver and "dtype" in str(exc):
                return run, skip
            return run, f"{case['label']}: raised {type(exc).__name__}: {exc}"[:300]
        run += 1
        for t in _tensors(answer) if _tensors(args) else []:  # no tensor in: CPU by contract
            if t.device.type != device.type:
                return run, f"{case['label']}: an output on {t.device}, not {device}"
            if cast and t.dtype == torch.float32:
                return run, skip if own_driver else f"{case['label']}: float32 for bfloat16 inputs"
        if device.type == "meta" or _has(args, torch.Generator):
            continue  # no values on meta; another device's generator draws other numbers
        tol = ex.tolerance
        if cast:  # computed in bfloat16: near the float32 answer; ids and counts may move
            atol, rtol = max(tol.atol, BF16_CHECK), max(tol.rtol, BF16_CHECK)
        else:
            atol, rtol = max(tol.atol, 1e-5), max(tol.rtol, 1e-4)
        if msg := _compare(expected, to_plain(answer), atol, rtol, integers=not cast):
            return run, f"{case['label']}: {msg}"
        compared += 1
    if compared < run:
        return run, f"ok ({compared} of {run} cases by value, the rest random draws)"
    return run, "ok"


def check_references(chapters: list[str], device: torch.device, dtypes: list[str]) -> list[Row]:
    rows = []
    for key in chapters:
        spec = load_spec(resolve_chapter(key))
        for ex in spec.exercises:
            for dtype in dtypes:
                start = time.perf_counter()
                n, result = check_exercise(ex, device, dtype)
                rows.append(
                    Row(
                        "reference",
                        spec.key,
                        ex.name,
                        dtype,
                        n,
                        result,
                        time.perf_counter() - start,
                    )
                )
                print(f"{spec.key} {ex.name} {dtype}: {result}", flush=True)
    return rows


def check_notebooks(chapters: list[str], device: torch.device) -> list[Row]:
    import importlib

    from tests.notebook_tools import count_images, execute, outputs_text, with_reference

    rows = []
    os.environ["LLM_COURSE_DEVICE"] = str(device)
    for key in chapters:
        info = resolve_chapter(key)
        module = importlib.import_module(f"solutions.{info.slug}")
        path = ROOT / "course" / f"{info.key}.ipynb"
        start = time.perf_counter()
        exercises = len(load_spec(info).exercises)
        try:
            nb = execute(with_reference(path, module), path.parent, strict=True, timeout=600)
            text = outputs_text(nb)
            passed = text.count("PASS")
            result = "ok" if passed == exercises else f"{passed} of {exercises} self-checks pass"
            result += f", {count_images(nb)} figures"
        except Exception as exc:  # noqa: BLE001 - reported in the table
            result = f"failed: {type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]}"
        rows.append(
            Row("notebook", info.key, f"{info.key}.ipynb", "float32", exercises, result,
                time.perf_counter() - start)
        )  # fmt: skip
        print(f"{info.key} notebook: {result}", flush=True)
    return rows


def table(rows: list[Row], device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    lines = [
        f"gpu-check on {name}, torch {torch.__version__}",
        "",
        "| part | chapter | item | dtype | cases | result | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.part} | {r.chapter} | {r.item} | {r.dtype} | {r.cases} | {r.result} "
            f"| {r.seconds:.1f} |"
        )
    failed = [r for r in rows if not r.result.startswith(("ok", "skipped"))]
    skipped = sum(r.result.startswith("skipped") for r in rows)
    lines += [
        "",
        f"{len(rows) - len(failed) - skipped} of {len(rows)} checks pass, {skipped} skipped",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--chapters", nargs="*", default=[c.number for c in CHAPTERS])
    parser.add_argument("--dtypes", nargs="*", default=["float32", "bfloat16"])
    parser.add_argument("--skip-notebooks", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "_build" / "gpu_check.md"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "meta":
        parser.error("--device meta has no values to compare; use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "gpu-check: no CUDA device here (torch.cuda.is_available() is False); run it on "
            "a machine with a GPU, or pass --device cpu to try the check itself"
        )
        return 2
    rows = check_references(args.chapters, device, args.dtypes)
    if not args.skip_notebooks:
        rows += check_notebooks(args.chapters, device)
    text = table(rows, device)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n", encoding="utf-8")
    print("\n" + text)
    return 0 if all(r.result.startswith(("ok", "skipped")) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
