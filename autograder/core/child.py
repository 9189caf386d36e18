"""The student side of grading as its own process: plain data in, plain data out.

``python -m autograder.core.child SUBMISSION JOBS_FILE OUT_DIR``

``JOBS_FILE`` holds ``{"jobs": [...], "skip": [...]}`` and is read with
``torch.load(weights_only=True)``. The child leaves its progress in ``OUT_DIR``
for the supervising parent (:mod:`autograder.core.sandbox`):

- ``loading``: the key of the submission's statement being run (see the loader);
- ``started``: the index of the job being run;
- ``result_I.pt``: job I's result, written with ``torch.save`` and renamed into place.

The parent reads results back with ``weights_only=True`` too, so nothing the
student's code returns can run code in the parent, and it compares them with
the expected answers itself: they are never in this process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from autograder.core.runner import JobResult, run_jobs


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m autograder.core.child SUBMISSION JOBS_FILE OUT_DIR")
        return 2
    submission, jobs_file, out = argv[0], argv[1], Path(argv[2])
    spec = torch.load(jobs_file, weights_only=True)
    torch.set_num_threads(1)  # the same answer whatever else runs beside it

    def on_result(i: int, result: JobResult) -> None:
        tmp = out / f".result_{i}.pt"
        torch.save(result, tmp)
        os.replace(tmp, out / f"result_{i}.pt")

    run_jobs(
        submission,
        spec["jobs"],
        skip=set(spec.get("skip", [])),
        on_statement=lambda key: _write(out / "loading", key),
        on_start=lambda i: _write(out / "started", str(i)),
        on_result=on_result,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
