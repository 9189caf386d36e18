"""Shared fixtures: the repository root and the trained course models."""

from __future__ import annotations

import functools
import json
import os
import re
import resource
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

# Under xdist the cores are shared out between the workers: each worker, and (through the
# environment) the kernels, sandboxes and book page executions it starts, computes on
# cores / workers threads, one on two cores. Multi-threaded PyTorch beside another busy
# process spins in OpenMP's barriers: chapter 04's notebook took 125 CPU-seconds in the
# suite and 21 alone. Tests that need a thread count set their own.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS >= 2:
    _THREADS = str(max(1, (os.cpu_count() or 1) // _WORKERS))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = _THREADS
    torch.set_num_threads(int(_THREADS))


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="module")
def models():
    """The trained course models (main, draft, tokenizer) in eval mode; one CPU thread for
    the tests of the module (small models: one thread never oversubscribes a shared CPU)."""
    from solutions.course_model import load_course_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    main, tokenizer = load_course_model("main")
    draft, _ = load_course_model("draft")
    yield main.eval(), draft.eval(), tokenizer
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ scheduling (xdist)
# `make test` runs the suite on several workers. A test file that defines a module- or
# session-scoped fixture (a built book, a released class, a graded zip) is one unit of work,
# kept on one worker so the fixture is made once; every other test, and the tests of such a
# file listed in SPREAD (which use none of those fixtures: checked at collection), is a unit
# of its own and goes to whichever worker is free. The slow units are handed out first, the
# files before the single tests, so the longest ones do not start last and run alone.
# (xdist's own --dist loadgroup cannot do this with pytest 9: it renames node ids through an
# attribute pytest 9 no longer reads, so the groups are silently ignored.)
SPREAD = (
    "tests/test_release_nbgrader.py::test_release_of_some_chapters_ships_only_theirs",
    "tests/test_release_nbgrader.py::test_release_names_an_unknown_chapter",
)
CHEAP_SHARED = {"root", "models"}  # shared fixtures that are cheap to make on every worker
_SHARED_FIXTURE = re.compile(r"""scope\s*=\s*["'](module|package|session)["']""")


@functools.cache
def _file_shares_fixtures(path: str) -> bool:
    """Whether the test file defines a module-, package- or session-scoped fixture."""
    return bool(_SHARED_FIXTURE.search((ROOT / path).read_text(encoding="utf-8")))


def scope_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, or the test alone."""
    path = nodeid.split("::", 1)[0]
    if nodeid.startswith(SPREAD) or not _file_shares_fixtures(path):
        return nodeid
    return path


def _shares_a_fixture(item: pytest.Item) -> bool:
    """Whether the test uses a module- or session-scoped fixture of this suite's own."""
    info = getattr(item, "_fixtureinfo", None)
    for name in getattr(item, "fixturenames", ()):
        defs = info.name2fixturedefs.get(name) if info is not None else None
        if not defs or name in CHEAP_SHARED:
            continue
        ours = getattr(defs[-1].func, "__module__", "").startswith("tests")  # not pytest's own
        if ours and defs[-1].scope in ("module", "package", "session"):
            return True
    return False


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class ByScope(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return ByScope(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    alone = [i for i in items if scope_of(i.nodeid) == i.nodeid and _shares_a_fixture(i)]
    if alone:
        raise pytest.UsageError(
            f"{alone[0].nodeid} uses a module- or session-scoped fixture but would run apart "
            "from its file: remove it from SPREAD in tests/conftest.py"
        )
    order = {id(item): i for i, item in enumerate(items)}

    def key(item: pytest.Item) -> tuple[bool, bool, int]:  # slow files, slow tests, the rest
        slow = item.get_closest_marker("slow") is not None
        return (not slow, scope_of(item.nodeid) == item.nodeid, order[id(item)])

    items.sort(key=key)


# ------------------------------------------------------- CPU per test, when asked for
# LLM_COURSE_TEST_CPU=FILE appends one JSON line per test: its wall time and the CPU time of
# the worker and of the processes it waited for (kernels, sandboxed children, nbgrader).
_CPU_LOG = os.environ.get("LLM_COURSE_TEST_CPU")


def _cpu() -> tuple[float, float]:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    if not _CPU_LOG:
        yield
        return
    wall, (me, kids) = time.perf_counter(), _cpu()
    yield
    me2, kids2 = _cpu()
    row = {"test": item.nodeid, "wall": time.perf_counter() - wall, "cpu": me2 - me,
           "children": kids2 - kids}  # fmt: skip
    with open(_CPU_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
