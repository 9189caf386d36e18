"""Grading answers that are random draws: a table language model whose exact
distributions are known, and Pearson's chi-square test of counted draws against them.

Used by the drivers and checkers of the sampling (07) and inference (09) chapters and by
their reference tests. Like every module of autograder/core it ships to students.
"""

from __future__ import annotations

import math

import torch

Z_SCORE = 6.0  # an honest implementation fails a statistical check once in ~10^9 draws


class TableLM(torch.nn.Module):
    """logits (B, L, V) = table[ids] + prev[ids shifted right by one] (nothing at t = 0).

    Without ``prev`` it is a bigram model: the next token depends on the last one only.
    """

    def __init__(self, table: torch.Tensor, prev: torch.Tensor | None = None) -> None:
        super().__init__()
        self.table = table  # (V, V)
        self.prev = torch.zeros_like(table) if prev is None else prev  # (V, V)
        # how a stand-in's parent builds the same model (autograder.core.stand_ins)
        self.stand_in_recipe = ("table_lm", [table, prev])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2:
            raise ValueError(f"the model expects ids of shape (B, L), got {tuple(ids.shape)}")
        logits = self.table[ids]  # (B, L, V)
        shifted = self.prev[ids[:, :-1]]  # (B, L - 1, V)
        return torch.cat([logits[:, :1], logits[:, 1:] + shifted], dim=1)


def chi_square_threshold(dof: int, z: float = Z_SCORE) -> float:
    """The upper quantile of a chi-square with ``dof`` degrees of freedom at the normal
    quantile z (Wilson-Hilferty approximation)."""
    a = 2.0 / (9.0 * dof)
    return dof * (1.0 - a + z * math.sqrt(a)) ** 3


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int]:
    """Pearson's statistic of ``counts`` (K,) against ``probs`` (K,) on the outcomes of
    probability > 0, and its degrees of freedom."""
    support = probs > 0
    n = float(counts.sum())
    expected = probs[support].double() * n
    stat = float(((counts[support].double() - expected) ** 2 / expected).sum())
    return stat, int(support.sum()) - 1
