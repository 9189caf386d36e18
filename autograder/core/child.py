"""The student side of grading as its own process: plain data in, plain data out.

``python -m autograder.core.child SUBMISSION JOBS_IN RESULTS_OUT`` loads the jobs
with ``torch.load(weights_only=True)``, runs them on the submission with
:func:`autograder.core.runner.run_jobs`, and writes the results with
``torch.save``. The parent reads them back with ``weights_only=True`` too, so
nothing the student's code returns can run code in the parent.
"""

from __future__ import annotations

import sys

import torch

from autograder.core.runner import run_jobs


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m autograder.core.child SUBMISSION JOBS_IN RESULTS_OUT")
        return 2
    submission, jobs_in, results_out = argv
    jobs = torch.load(jobs_in, weights_only=True)
    results = run_jobs(submission, jobs)
    torch.save(results, results_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
