"""The course model, for the notebooks: ``model, tokenizer = load_course_model()``.

Chapter 04 trains the course's own small GPT on the standard library's docstrings
(``make model``; the code is ``solutions/course_model.py``). The chapters after it
fine-tune, align, sample from, evaluate and speed up that model, and their
notebooks load it from here, so they work without solutions/ (the student
bundle has none) and whatever state a student's chapter 02 and 04 exercises are
in. Two pieces make that possible, both public and short:

- ``CourseGPT``: chapter 02's GPT (same ``state_dict`` keys, same function), made
  of the fused blocks of ``course.blocks``.
- ``CourseTokenizer``: chapter 04's byte-level BPE, reading the learned merges.

Chapter 10 has a third model, trained on the small text tasks of ``course.tasks``
with a character tokenizer: ``model, tokenizer = load_task_model()``.

Where the weights come from, first found wins: ``directory`` if given, then
``$LLM_COURSE_CACHE``, then the repository's ``.cache/course_model/`` (what
``make model`` writes), then ``course/data/course_model/`` (what ``llm-course
release`` puts in the student bundle). In the repository, where solutions/ is
present, a missing or outdated model is trained first (a few minutes, in a child
process on the kernels ``make model`` pins, so it is the model the website shows).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
from pathlib import Path

import torch
import torch.nn as nn

from course.blocks import TransformerBlock
from course.tasks import ALPHABET, CharTokenizer

__all__ = [
    "EOS_ID",
    "CourseGPT",
    "CourseTokenizer",
    "load_course_model",
    "load_task_model",
    "model_folders",
]

HERE = Path(__file__).resolve().parent
REPO_CACHE = HERE.parent / ".cache" / "course_model"
BUNDLED = HERE / "data" / "course_model"
SIZES = ("main", "draft")
EOS_ID = 0  # documents end with the NUL byte, id 0: generation can stop there
FILES = ("tokenizer.json", "{size}.json", "{size}.pt")  # what one model needs
TASK_MODEL = "tasks"  # chapter 10's model of small tasks: tasks.json and tasks.pt


class CourseGPT(nn.Module):
    """A decoder-only transformer: ids (B, L) -> next-token logits (B, L, vocab_size).

    Learned token and position embeddings, ``n_layers`` causal pre-norm blocks, a
    final layer norm, and an output layer tied to the token embedding. Its
    ``state_dict`` is that of chapter 02's ``GPT`` with the same arguments.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        max_seq_len: int,
        d_ff: int | None = None,
    ) -> None:
        super().__init__()
        self.max_seq_len = max_seq_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_seq_len, d_model)
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, n_heads, d_ff, causal=True) for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # tied

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (B, L), got {tuple(input_ids.shape)}")
        if input_ids.shape[1] > self.max_seq_len:
            raise ValueError(
                f"input_ids has length {input_ids.shape[1]}, longer than "
                f"max_seq_len={self.max_seq_len}"
            )
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)  # (L,)
        h = self.tok_emb(input_ids) + self.pos_emb(pos)  # (B, L, d_model)
        for block in self.blocks:
            h = block(h)  # (B, L, d_model)
        return self.lm_head(self.ln_f(h))  # (B, L, vocab_size)


class CourseTokenizer:
    """Byte-level BPE from learned merges: ``encode(str) -> list[int]``, ``decode``.

    Ids 0..255 are bytes; merge i (a pair of ids) makes id 256 + i. The text is
    first cut into chunks by ``pattern``; inside a chunk the earliest learned merge
    present is applied until none is.
    """

    def __init__(self, merges: list[tuple[int, int]], pattern: str | None) -> None:
        self.pattern = pattern
        self.rank = {tuple(pair): 256 + i for i, pair in enumerate(merges)}
        self.vocab = {i: bytes([i]) for i in range(256)}
        for (a, b), new in self.rank.items():
            self.vocab[new] = self.vocab[a] + self.vocab[b]
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_file(cls, path: str | Path) -> CourseTokenizer:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls([tuple(m) for m in saved["merges"]], saved["pattern"])

    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = list(chunk.encode("utf-8"))
        while len(ids) > 1:
            ranks = [self.rank.get(p, math.inf) for p in zip(ids, ids[1:], strict=False)]
            best = min(ranks)
            if best == math.inf:
                return ids
            merged, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and ranks[i] == best:
                    merged.append(best)
                    i += 2
                else:
                    merged.append(ids[i])
                    i += 1
            ids = merged
        return ids

    def encode(self, text: str) -> list[int]:
        chunks = re.findall(self.pattern, text) if self.pattern is not None else [text]
        out: list[int] = []
        for chunk in chunks:
            if chunk not in self._cache:
                self._cache[chunk] = self._encode_chunk(chunk)
            out.extend(self._cache[chunk])
        return out

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")


def cache_folder() -> Path:
    """Where ``make model`` writes: ``$LLM_COURSE_CACHE``, else .cache/course_model/."""
    return Path(os.environ.get("LLM_COURSE_CACHE", REPO_CACHE))


def model_folders(directory: str | Path | None = None) -> list[Path]:
    """Where ``load_course_model`` looks, in order."""
    if directory is not None:
        return [Path(directory)]
    if "LLM_COURSE_CACHE" in os.environ:
        return [cache_folder()]
    return [cache_folder(), BUNDLED]


def _complete(folder: Path, size: str) -> bool:
    return all((folder / f.format(size=size)).is_file() for f in FILES)


def _solutions_present() -> bool:
    """True in the course repository, False in the student bundle."""
    return importlib.util.find_spec("solutions") is not None


def _train_with_solutions(size: str, directory: str | Path | None) -> None:
    """In the repository: train (or validate the cache of) the model with chapter 04's code."""
    from solutions.course_model import train_course_model

    train_course_model(size, directory)


def load_course_model(
    size: str = "main",
    device: str | torch.device | None = None,
    directory: str | Path | None = None,
) -> tuple[CourseGPT, CourseTokenizer]:
    """The course model ``size`` ("main" or "draft") in eval mode, and its tokenizer.

    The main model has 4 layers of width 128, the draft model 2 of width 64; both
    read at most 128 ids and share one tokenizer of 1024 ids.

    Raises:
        ValueError: ``size`` is not "main" or "draft".
        FileNotFoundError: no folder has the model and it cannot be trained here.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    if _solutions_present():
        _train_with_solutions(size, directory)  # trains only when missing or outdated
    folders = model_folders(directory)
    folder = next((f for f in folders if _complete(f, size)), None)
    if folder is None:
        raise FileNotFoundError(
            f"no course model {size!r} in {', '.join(str(f) for f in folders)}: in the "
            "course repository run `make model`; the student bundle ships it in "
            "course/data/course_model/"
        )
    meta = json.loads((folder / f"{size}.json").read_text(encoding="utf-8"))
    config = meta["fingerprint"]["config"]
    tokenizer = CourseTokenizer.from_file(folder / "tokenizer.json")
    model = CourseGPT(
        len(tokenizer.vocab),
        config["d_model"],
        config["n_layers"],
        config["n_heads"],
        config["max_seq_len"],
    )
    state = torch.load(folder / f"{size}.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


def load_task_model(
    device: str | torch.device | None = None,
    directory: str | Path | None = None,
) -> tuple[CourseGPT, CharTokenizer]:
    """Chapter 10's "tasks" model in eval mode, and its character tokenizer.

    A GPT trained on the episodes of ``course.tasks`` (examples of unnamed small
    tasks, one per line), so it continues a few-shot prompt of ``build_prompt``. It
    reads at most ``max_seq_len`` characters (its ``tasks.json`` says how many).
    Found like ``load_course_model``'s models; in the repository, trained first
    when missing or outdated (about four minutes).

    Raises:
        FileNotFoundError: no folder has the model and it cannot be trained here.
    """
    if _solutions_present():
        from solutions.task_model import train_task_model

        train_task_model(directory)  # trains only when missing or outdated
    folders = model_folders(directory)
    names = (f"{TASK_MODEL}.json", f"{TASK_MODEL}.pt")
    folder = next((f for f in folders if all((f / n).is_file() for n in names)), None)
    if folder is None:
        raise FileNotFoundError(
            f"no tasks model in {', '.join(str(f) for f in folders)}: in the course "
            "repository run `make model`"
        )
    meta = json.loads((folder / names[0]).read_text(encoding="utf-8"))
    alphabet = meta["fingerprint"]["alphabet"]
    if alphabet != ALPHABET:
        raise ValueError(f"{folder / names[0]} was trained on another alphabet than course.tasks")
    config = meta["fingerprint"]["config"]
    model = CourseGPT(
        len(alphabet), config["d_model"], config["n_layers"], config["n_heads"],
        config["max_seq_len"],
    )  # fmt: skip
    state = torch.load(folder / names[1], map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    if device is not None:
        model = model.to(device)
    return model.eval(), CharTokenizer(alphabet)
