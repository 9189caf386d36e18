"""A course model small enough to train in a test: two stdlib modules, one layer, six steps."""

from __future__ import annotations

import pytest

from solutions import course_model
from solutions.course_model import CorpusConfig, ModelConfig

TINY_CORPUS = CorpusConfig(vocab_size=300, modules=("textwrap", "heapq"))
TINY = ModelConfig(
    d_model=16, n_layers=1, n_heads=2, max_seq_len=16, steps=6, batch_size=4,
    max_lr=1e-2, min_lr=1e-3, warmup_steps=2, threads=1,
)  # fmt: skip


def use_tiny_draft(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the default corpus and the "draft" model tiny for the rest of the test."""
    monkeypatch.setattr(course_model, "CORPUS", TINY_CORPUS)
    monkeypatch.setitem(course_model.CONFIGS, "draft", TINY)
