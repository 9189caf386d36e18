"""Shared fixtures: the repository root and the trained course models."""

from __future__ import annotations

import os
import sys
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
