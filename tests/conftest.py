"""Shared fixtures: the repository root and the trained course models."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")


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
# `make test` runs the suite on several workers with ``--dist loadgroup``. A test that
# uses a module- or session-scoped fixture (a built book, a released class, a graded zip)
# stays on one worker with the other tests of its file, so the fixture is made once; every
# other test is a unit of its own and goes to whichever worker is free. The slow tests are
# handed out first (the groups among them before the single tests), so that the longest
# ones do not start last and run alone at the end.
CHEAP_SHARED = {"root", "models"}  # shared fixtures that are cheap to make on every worker


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    grouped = set()
    for item in items:
        if _shares_a_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
            grouped.add(id(item))
    order = {id(item): i for i, item in enumerate(items)}

    def key(item: pytest.Item) -> tuple[bool, bool, int]:  # slow groups, slow tests, the rest
        slow = item.get_closest_marker("slow") is not None
        return (not slow, id(item) not in grouped, order[id(item)])

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
