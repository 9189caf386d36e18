"""The chapters and how a user may name one on the command line."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from autograder.core.spec import ChapterSpec

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures"


@dataclass(frozen=True)
class ChapterInfo:
    number: str
    slug: str
    title: str

    @property
    def key(self) -> str:
        return f"{self.number}_{self.slug}"

    @property
    def notebook(self) -> str:
        """The student notebook's path relative to the repository root."""
        return f"course/{self.key}.ipynb"

    @property
    def fixture(self) -> Path:
        return FIXTURE_DIR / f"{self.key}.pt"


CHAPTERS: tuple[ChapterInfo, ...] = (
    ChapterInfo("01", "attention", "Attention and the transformer block"),
    ChapterInfo("02", "architectures", "Architectures, from n-grams to GPT"),
    ChapterInfo("03", "moe", "Mixture of experts"),
    ChapterInfo("04", "training", "Training"),
    ChapterInfo("05", "peft", "Parameter-efficient fine-tuning"),
    ChapterInfo("06", "alignment", "Alignment: SFT, reward models, RLHF, DPO, GRPO"),
    ChapterInfo("07", "sampling", "Sampling"),
    ChapterInfo("08", "evaluation", "Evaluation"),
    ChapterInfo("09", "inference", "Inference acceleration"),
    ChapterInfo(
        "10", "prompting", "Using language models: prompting, in-context learning, retrieval"
    ),
)


class UnknownChapter(ValueError):
    pass


def resolve_chapter(name: str) -> ChapterInfo:
    """Accept ``01``, ``1``, ``attention`` or ``01_attention``."""
    text = name.strip().lower().removesuffix(".ipynb")
    for info in CHAPTERS:
        if text in (info.number, info.number.lstrip("0"), info.slug, info.key):
            return info
    known = ", ".join(f"{c.number} ({c.slug})" for c in CHAPTERS)
    raise UnknownChapter(f"unknown chapter {name!r}; the chapters are {known}")


def chapter_from_filename(path: str | Path) -> ChapterInfo | None:
    """The chapter a notebook's file name refers to (``01_attention.ipynb``), if any."""
    stem = Path(path).stem.lower()
    for info in CHAPTERS:
        if stem.startswith(info.key) or stem == info.slug:
            return info
    return None


def load_spec(info: ChapterInfo) -> ChapterSpec:
    """Import the chapter's grading spec (needs solutions/: instructors only)."""
    module = importlib.import_module(f"autograder.{info.slug}")
    return module.SPEC
