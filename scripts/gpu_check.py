"""`make gpu-check`: every reference on a GPU, in float32 and bfloat16, and every notebook.

Two parts, one table:

1. References. For every exercise of every chapter, each of its grading cases (the
   seeded inputs of autograder/SLUG.py) is run by the reference on the CPU, then again
   with every tensor of the case moved to the device (float32, then with its float32
   tensors cast to bfloat16). The device's answer must live on the device and have the
   dtype of the inputs, and, moved back, equal the CPU's (the grader's comparison) within
   the exercise's tolerance; a bfloat16 answer is compared on its floating outputs with
   the CPU's float32 answer to the same bfloat16-rounded inputs, within 9e-2. Cases that
   draw from a generator (the device's is another stream) are checked for the device and
   dtype only; drivers that build float32 models of their own are skipped in bfloat16.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder.core.chapters import CHAPTERS, load_spec, resolve_chapter  # noqa: E402
from autograder.core.compare import compare_outputs  # noqa: E402
from autograder.core.drivers import run_case, to_plain  # noqa: E402
from autograder.core.materialize import exercise_generator  # noqa: E402
from autograder.core.spec import DTYPE_TOLERANCE, Exercise, Tolerance  # noqa: E402
from autograder.core.stand_ins import leaves  # noqa: E402

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


def _map(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``value`` with ``fn`` applied to every leaf of its nested dicts, lists and tuples."""
    if isinstance(value, dict):
        return {k: _map(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_map(v, fn) for v in value)
    return fn(value)


def _to(device: torch.device, dtype: torch.dtype | None) -> Callable[[Any], Any]:
    """A leaf on ``device``, float32 tensors in ``dtype``; a generator anew from its seed."""

    def move(leaf: Any) -> Any:
        if isinstance(leaf, torch.Tensor):
            cast = dtype is not None and leaf.dtype == torch.float32
            return leaf.to(device=device, dtype=dtype if cast else leaf.dtype)
        if isinstance(leaf, torch.Generator):
            return torch.Generator(device=device).manual_seed(leaf.initial_seed())
        return leaf

    return move


def _rounded(leaf: Any) -> Any:
    """A float32 tensor through bfloat16 and back (the inputs a bfloat16 run sees)."""
    if isinstance(leaf, torch.Tensor) and leaf.dtype == torch.float32:
        return leaf.bfloat16().float()
    return leaf


def _floats_only(leaf: Any) -> Any:
    """Floating tensors in float32, everything else (ids, counts) dropped: what a bfloat16
    answer is compared on, since rounding may move an argmax or a count."""
    if isinstance(leaf, torch.Tensor) and leaf.is_floating_point():
        return leaf.float()
    return leaf if isinstance(leaf, float) else None


def _tensors(value: Any) -> list[torch.Tensor]:
    return [leaf for leaf in leaves(value) if isinstance(leaf, torch.Tensor)]


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
        cast = low is not None and any(t.dtype == torch.float32 for t in _tensors(args))
        if cast:  # the CPU answer to the inputs bfloat16 can hold: the same rounding
            args = _map(args, _rounded)
        try:
            expected = to_plain(run_case(reference, ex.driver, dict(args)))
        except Exception:  # noqa: BLE001 - a case about bad input: the CPU raises too
            continue
        moved = _map(args, _to(device, low))
        if ex.driver == "module":
            moved["device"] = str(device)
            if low is not None:
                moved["dtype"] = "bfloat16"
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
        if any(isinstance(leaf, torch.Generator) for leaf in leaves(args)):
            continue  # another device's generator draws other numbers
        answer = to_plain(answer)
        tol = ex.tolerance
        if cast:  # computed in bfloat16: near the float32 answer
            tol = Tolerance(max(tol.atol, BF16_CHECK), max(tol.rtol, BF16_CHECK))
            expected, answer = _map(expected, _floats_only), _map(answer, _floats_only)
        else:
            tol = Tolerance(max(tol.atol, 1e-5), max(tol.rtol, 1e-4))
        if msg := compare_outputs(expected, answer, tol, tuple(ex.output_names)):
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
