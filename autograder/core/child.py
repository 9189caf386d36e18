"""The student side of grading as its own process: plain data in, plain data out.

``python -m autograder.core.child PLAN_JSON FD [ANSWER_FD [GO_FD]]``

``PLAN_JSON`` (written by the parent, read-only here) names the submission, the
jobs file (``{"jobs": [...], "skip": [...]}``, read with
``torch.load(weights_only=True)``) and, without bubblewrap, the paths the process
may read and write (``confine``: applied with Landlock before any student code
runs; if that fails nothing is run). The child reports on the pipe ``FD`` only,
in the framed messages of :mod:`autograder.core.channel`: the statement being
loaded, the job being run, and each job's result; with ``ANSWER_FD`` it may also
ask the parent for the answers of the functions a job names as ``stand_ins``
(:func:`autograder.core.channel.ask`; only when the plan's ``"ask"`` is not false).
The parent compares the answers with the expected ones itself: they are never in
this process.

With ``GO_FD`` the child is started before its submission is known (a warm
child: the parent starts the next one while it grades the current one). It
imports torch, the grader and what the course's notebooks import, then waits for
one byte on ``GO_FD``; only then does it read ``PLAN_JSON`` (the parent has
put the submission and the jobs into this child's own private folder meanwhile).
End of file instead of the byte means it is not needed: it exits, having run
nothing. Its sandbox is the same as for a child started with its plan.

With ``"probe"`` in the plan the child runs no submission: it tries to read and
write the paths listed there and prints, as one JSON line, those it could. The
parent runs it once to prove the isolation holds before grading anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from typing import Any

CONFINE_FAILED = 98  # exit status: the isolation could not be set up, nothing was run


def _confine(plan: dict[str, Any]) -> None:
    confine = plan.get("confine")
    if confine is None:
        return
    from autograder.core.landlock import LandlockUnavailable, restrict

    try:
        restrict(confine["read"], confine["write"])
    except LandlockUnavailable as exc:
        print(f"cannot confine the grading process: {exc}", file=sys.stderr)
        raise SystemExit(CONFINE_FAILED) from None


def _probe(plan: dict[str, Any]) -> int:
    """Try every secret path; print what this process could read, write and import.

    The parent decides what is a leak: it compares the hashes with the real files
    and looks for the files written here.
    """
    probe = plan["probe"]
    read: dict[str, str] = {}
    for path in probe["read"]:
        try:
            with open(path, "rb") as f:
                read[path] = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            pass
    for folder in probe["write"]:
        try:
            with open(os.path.join(folder, f".llm-course-probe-{probe['token']}"), "w") as f:
                f.write("x")
        except OSError:
            pass
    imported = ""
    try:
        import solutions

        imported = str(getattr(solutions, "__file__", None) or list(solutions.__path__))
    except (ImportError, OSError):
        pass
    print(json.dumps({"read": read, "imported": imported}))
    return 0


# What the course's notebooks import, imported by a warm child while it waits (a
# submission that imports them then finds them loaded); none of them is required.
WARM_IMPORTS = (
    "torch.nn.functional",
    "matplotlib.pyplot",
    "autograder.selfcheck",
    "course.helpers",
)


def _warm_up() -> None:
    import importlib

    for name in WARM_IMPORTS:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the submission will meet the same error itself
            pass


def _wait_for_go(go_fd: int) -> bool:
    """Block until the parent says go (True) or closes the pipe (False)."""
    try:
        while True:
            try:
                return os.read(go_fd, 1) != b""
            except InterruptedError:  # pragma: no cover - retried by Python already
                continue
    except OSError:
        return False
    finally:
        os.close(go_fd)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3, 4):
        print(
            "usage: python -m autograder.core.child PLAN_JSON FD [ANSWER_FD [GO_FD]]",
            file=sys.stderr,
        )
        return 2
    fd = int(argv[1])
    answer_fd = int(argv[2]) if len(argv) >= 3 else None
    if len(argv) == 4:
        import torch  # noqa: F401 - imported while the parent has no submission for us yet

        import autograder.core.runner  # noqa: F401

        _warm_up()
        if not _wait_for_go(int(argv[3])):
            return 0
    with open(argv[0], encoding="utf-8") as f:
        plan = json.load(f)
    if plan.get("probe"):
        _confine(plan)
        return _probe(plan)

    import torch

    from autograder.core.channel import ask, encode_result, write_frame
    from autograder.core.runner import JobResult, run_jobs

    if not plan.get("ask", True):
        answer_fd = None

    spec = torch.load(plan["jobs_file"], weights_only=True)
    torch.set_num_threads(1)  # the same answer whatever else runs beside it
    _confine(plan)
    if plan.get("reap"):  # no pid namespace: orphans of student code come here
        _become_subreaper()

    def on_result(i: int, result: JobResult) -> None:
        write_frame(fd, b"R", encode_result(i, result))

    run_jobs(
        plan["submission"],
        spec["jobs"],
        skip=set(spec.get("skip", [])),
        on_statement=lambda key: write_frame(fd, b"L", key.encode("ascii", "replace")[:200]),
        on_start=lambda i: write_frame(fd, b"S", struct.pack(">I", i)),
        on_result=on_result,
        ask=None if answer_fd is None else (lambda n, a, k: ask(fd, answer_fd, n, a, k)),
    )
    if plan.get("reap"):
        _kill_descendants()
    return 0


def _become_subreaper() -> None:
    """Processes the student's code starts and abandons become this process's children."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _kill_descendants() -> None:
    """Before exiting, end what the student's code left running (the parent sweeps too)."""
    import signal

    from autograder.core.sandbox import process_tree

    for pid in reversed(process_tree(os.getpid())[1:]):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _exit_now(status: int) -> None:
    """Exit without Python's slow shutdown (a second with torch loaded): the results are
    sent already, and what the student's code left to do at exit is not run."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or replaced stream
            pass
    os._exit(status)


if __name__ == "__main__":
    _exit_now(main(sys.argv[1:]))
