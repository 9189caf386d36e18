"""The course model: a small GPT trained by the course's own code, offline, in minutes.

Later chapters (fine-tuning, alignment, sampling, evaluation, inference) need a
real language model, and there is no internet to download one. So the course
trains its own, with chapter 04's reference code on chapter 02's ``GPT``:

1. Corpus: the docstrings and comments of the running interpreter's standard
   library (``course.corpus``), each paragraph cleaned with ``normalize_text``,
   the documents deduplicated with ``deduplicate``, then split into train and
   validation *by document* with a seeded shuffle.
2. Tokenizer: one ``BPETokenizer`` trained on the training split (GPT-2-like
   chunking), shared by both models, so the small one can serve as the draft
   model of speculative decoding and the student of distillation (chapter 09).
3. Models: ``"main"`` (4 layers, d_model 128) and ``"draft"`` (2 layers,
   d_model 64), each initialised as chapter 02's ``GPT`` from a fixed seed and
   trained on a fixed number of CPU threads, so a second run gives the same
   weights. Training takes the fast path (``solutions.fast.train_fast``: chapter
   04's loop through PyTorch's fused routines, with bfloat16 matrix products where
   the CPU has them natively); ``tests/test_fast_path.py`` shows it gives the losses
   of chapter 04's readable ``train_language_model``.

Everything lands in a cache folder (``.cache/course_model/`` at the repository
root, or ``$LLM_COURSE_CACHE``): the tokenizer (JSON of the merges), the token
ids, and per model its ``state_dict`` and a JSON of its configuration and
numbers (validation loss and perplexity, training time, samples). A second
call finds them and trains nothing.

    python -m solutions.course_model          # `make model`: both models, and
                                              # chapter 10's (solutions.task_model)
    from solutions.course_model import load_course_model
    model, tokenizer = load_course_model()      # or load_course_model("draft")
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import math
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from course.corpus import stdlib_documents
from course.model import EOS_ID, REPO_CACHE, SIZES, cache_folder
from solutions.architectures import GPT
from solutions.fast import autocast_dtype, fused_copy, train_fast
from solutions.training import BPETokenizer, cross_entropy, deduplicate, normalize_text

DEFAULT_CACHE = REPO_CACHE  # course.model reads what this module writes, from one place
# GPT-2's chunking (contractions, words with their leading space, numbers,
# punctuation, spaces) written for Python's `re`: every character is in a chunk. The
# NUL character is a chunk of its own, so its byte id 0 is never merged into a token.
SPLIT_PATTERN = (
    r"""\x00|'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w\x00]|_)+|\s+(?!\S)|\s+"""
)
# Documents are joined by NUL, which cleaning removes from inside them: id 0 marks the
# end of a document (generation can stop there). Paragraphs are separated by "\n".
DOC_SEPARATOR = "\x00"


@dataclass(frozen=True)
class CorpusConfig:
    """How the text and the tokenizer are made."""

    vocab_size: int = 1024
    dedup_threshold: float = 0.8
    min_chars: int = 30  # shorter documents (one-word comments) are dropped
    val_fraction: float = 0.05
    seed: int = 0
    modules: tuple[str, ...] | None = None  # None: the whole standard library


@dataclass(frozen=True)
class ModelConfig:
    """The architecture and the training run of one model."""

    d_model: int
    n_layers: int
    n_heads: int
    max_seq_len: int
    steps: int
    batch_size: int
    max_lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 2


CORPUS = CorpusConfig()  # the corpus of `make model`

CONFIGS: dict[str, ModelConfig] = {
    "main": ModelConfig(
        d_model=128, n_layers=4, n_heads=4, max_seq_len=128, steps=500, batch_size=32,
        max_lr=3e-3, min_lr=3e-4, warmup_steps=40,
    ),
    "draft": ModelConfig(
        d_model=64, n_layers=2, n_heads=4, max_seq_len=128, steps=600, batch_size=32,
        max_lr=4e-3, min_lr=4e-4, warmup_steps=40,
    ),
}  # fmt: skip
SHIPPED = (CORPUS, dict(CONFIGS))  # the recipe as shipped (a test may swap CORPUS or CONFIGS)


def cache_dir(path: str | Path | None = None) -> Path:
    """The cache folder: ``path``, else ``$LLM_COURSE_CACHE``, else .cache/course_model."""
    return Path(path) if path is not None else cache_folder()


def _atomic_write(path: Path, write: Any) -> None:
    """``write(tmp_path)``, then rename over ``path``: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_json(path: Path, value: Any) -> None:
    _atomic_write(
        path, lambda p: p.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------- the text


def clean_documents(raw: list[str], config: CorpusConfig) -> list[str]:
    """Normalise every paragraph (``normalize_text``) and drop the short documents.

    A document's paragraphs (separated by blank lines) become lines: a docstring's
    line wraps are layout, its paragraphs are structure.
    """
    docs = []
    for doc in raw:
        paragraphs = [normalize_text(p) for p in re.split(r"\n\s*\n", doc.replace("\x00", ""))]
        text = "\n".join(p for p in paragraphs if p)
        if len(text) >= config.min_chars:
            docs.append(text)
    return docs


def split_documents(docs: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded shuffle of the documents, then the first ``val_fraction`` for validation."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(val_fraction * len(docs)))
    val = [docs[i] for i in order[:n_val]]
    train = [docs[i] for i in order[n_val:]]
    return train, val


def prepare_data(
    config: CorpusConfig | None = None,
    directory: str | Path | None = None,
    progress: bool = True,
) -> tuple[BPETokenizer, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The tokenizer and the train and validation token ids, from the cache or made now.

    Returns:
        tokenizer, train_ids (N,), val_ids (M,) (int64), and the corpus statistics.
    """
    config = config or CORPUS
    folder = cache_dir(directory)
    wanted = {
        "config": dataclasses.asdict(config),
        "pattern": SPLIT_PATTERN,
        "separator": DOC_SEPARATOR,
        "python": platform.python_version(),
        "stdlib": str(Path(sys.base_prefix).resolve()),
    }
    stats = _read_json(folder / "corpus.json")
    tokens_path, tok_path = folder / "tokens.pt", folder / "tokenizer.json"
    if stats and all(stats.get(k) == v for k, v in wanted.items()) and tokens_path.exists():
        saved = _read_json(tok_path)
        if saved is not None:
            tokenizer = BPETokenizer([tuple(m) for m in saved["merges"]], saved["pattern"])
            ids = torch.load(tokens_path, weights_only=True)
            return tokenizer, ids["train"], ids["val"], stats

    start = time.perf_counter()
    say = print if progress else (lambda *a, **k: None)
    modules = list(config.modules) if config.modules is not None else None
    raw = stdlib_documents(modules)
    cleaned = clean_documents(raw, config)
    docs = deduplicate(cleaned, threshold=config.dedup_threshold)
    train_docs, val_docs = split_documents(docs, config.val_fraction, config.seed)
    train_text, val_text = DOC_SEPARATOR.join(train_docs), DOC_SEPARATOR.join(val_docs)
    say(
        f"corpus: {len(raw)} documents, {len(cleaned)} after cleaning, "
        f"{len(docs)} after deduplication"
    )
    tokenizer = BPETokenizer.train(train_text, config.vocab_size, SPLIT_PATTERN)
    train_ids = torch.tensor(tokenizer.encode(train_text), dtype=torch.long)
    val_ids = torch.tensor(tokenizer.encode(val_text), dtype=torch.long)
    stats = {
        **wanted,
        "documents_raw": len(raw),
        "documents_cleaned": len(cleaned),
        "documents_kept": len(docs),
        "documents_train": len(train_docs),
        "documents_val": len(val_docs),
        "chars_train": len(train_text),
        "chars_val": len(val_text),
        "tokens_train": len(train_ids),
        "tokens_val": len(val_ids),
        "bytes_per_token": len(train_text.encode("utf-8")) / max(1, len(train_ids)),
        "sha256": hashlib.sha256((train_text + "\0" + val_text).encode("utf-8")).hexdigest(),
        "seconds": round(time.perf_counter() - start, 1),
    }
    say(
        f"tokenizer: {config.vocab_size} ids, {stats['bytes_per_token']:.2f} bytes per token; "
        f"{len(train_ids)} training and {len(val_ids)} validation tokens"
    )
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(tok_path, {"pattern": SPLIT_PATTERN, "merges": [list(m) for m in tokenizer.merges]})
    buffer = io.BytesIO()
    torch.save({"train": train_ids, "val": val_ids}, buffer)
    _atomic_write(tokens_path, lambda p: p.write_bytes(buffer.getvalue()))
    _write_json(folder / "corpus.json", stats)  # last: it marks the cache as complete
    return tokenizer, train_ids, val_ids, stats


# ------------------------------------------------------------------------ the models


@torch.no_grad()
def evaluate_loss(
    model: torch.nn.Module, ids: torch.Tensor, block_size: int, batch_size: int = 64
) -> float:
    """The mean next-token cross-entropy over consecutive windows of ``ids`` (all of them)."""
    model.eval()
    n = (len(ids) - 1) // block_size
    x = ids[: n * block_size].view(n, block_size)  # (n, T)
    y = ids[1 : n * block_size + 1].view(n, block_size)  # (n, T)
    total = 0.0
    for i in range(0, n, batch_size):
        logits = model(x[i : i + batch_size])
        total += float(cross_entropy(logits, y[i : i + batch_size])) * len(x[i : i + batch_size])
    return total / max(1, n)


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    tokenizer: BPETokenizer,
    prompt: str,
    max_new_tokens: int = 48,
    temperature: float = 0.8,
    top_k: int = 40,
    seed: int = 0,
) -> str:
    """Continue ``prompt`` by sampling (top-k, temperature); stops at the end of a document.

    A plain loop for the closing note; chapter 07 treats sampling properly.
    """
    model.eval()
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long)
    limit = model.max_seq_len
    for _ in range(max_new_tokens):
        logits = model(ids[:, -limit:])[0, -1] / temperature  # (V,)
        kth = torch.topk(logits, top_k).values[-1]
        probs = torch.softmax(logits.masked_fill(logits < kth, float("-inf")), dim=-1)
        token = torch.multinomial(probs, 1, generator=g)  # (1,)
        if int(token) == EOS_ID:
            break
        ids = torch.cat([ids, token[None]], dim=1)
    return tokenizer.decode(ids[0].tolist())


PROMPTS = ("Return the", "If the file", "This module provides", "The default value")


TRAINER = "solutions.fast.train_fast"  # the loop that trains the course models
# The course models train with float32 matrix products on every machine. "auto" would use
# bfloat16 where the CPU multiplies it natively (AVX512-BF16): a different model there,
# whose numbers differ from the ones the theory pages state and check.
PRECISION = "float32"
# float32 products still round differently on different CPUs (AVX2 and AVX-512 kernels sum
# in other orders), and a few thousand steps turn that into another model: the same recipe
# gave a tasks model that added three-digit numbers with steps right 0.76 of the time on
# one machine and 0.16 on another. `make model`, `make book` and `make test` run with
# these settings, which select the AVX2 kernels of PyTorch and of MKL on any x86-64 CPU that
# has them, so that every such machine trains the same models.
PINNED_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}


def kernels_pinned() -> bool:
    """Whether this process runs on the kernels of ``PINNED_KERNELS`` (its environment
    says so; a process picks its kernels once, at its first tensor operation)."""
    return all(os.environ.get(name) == value for name, value in PINNED_KERNELS.items())


def train_in_pinned_child(size: str, directory: str | Path | None, force: bool) -> None:
    """Train the default model ``size`` ("main", "draft" or "tasks") in a child Python
    whose environment pins the kernels, so that a model trained from a notebook or a
    plain ``pytest`` is the one ``make model`` trains; it writes the cache as usual."""
    command = [sys.executable, "-m", "solutions.course_model", "--size", size]
    command += ["--cache-dir", str(directory)] if directory is not None else []
    command += ["--force"] if force else []
    print(f"training the {size} model in a child process on the pinned kernels")
    subprocess.run(command, env={**os.environ, **PINNED_KERNELS}, check=True)


def cached_or_child(
    folder: Path,
    name: str,
    wanted: dict[str, Any],
    build: Callable[[], torch.nn.Module],
    default: bool,
    force: bool,
) -> tuple[torch.nn.Module, dict[str, Any]] | None:
    """The cached model ``name`` (built by ``build``, in eval mode) and its JSON when the
    cache holds it for the fingerprint ``wanted``; for the default recipe in a process
    whose kernels are not pinned, first trained by a pinned child; else None (train here).
    """

    def cached() -> tuple[torch.nn.Module, dict[str, Any]] | None:
        meta = _read_json(folder / f"{name}.json")
        weights = folder / f"{name}.pt"
        if not (meta and meta.get("fingerprint") == wanted and weights.exists()):
            return None
        model = build()
        model.load_state_dict(torch.load(weights, weights_only=True))
        return model.eval(), meta

    found = None if force else cached()
    if found is None and default and not kernels_pinned():
        train_in_pinned_child(name, folder, force)
        found = cached()
        if found is None:
            raise RuntimeError(f"the child process left no up-to-date model in {folder}")
    return found


def cpu_kernels() -> dict[str, str | None]:
    """The CPU kernels in use: PyTorch's capability and MKL's code path (None: MKL's own
    choice). Recorded beside each trained model."""
    return {
        "aten": torch.backends.cpu.get_cpu_capability(),
        "MKL_CBWR": os.environ.get("MKL_CBWR"),
    }


def trainer_fingerprint() -> dict[str, str]:
    """The training loop and the dtype of its matrix products, in every course model's
    fingerprint."""
    low = autocast_dtype("cpu", PRECISION)
    return {"loop": TRAINER, "matmul_dtype": str(low or torch.float32)}


def _fingerprint(config: ModelConfig, corpus: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    return {
        "config": dataclasses.asdict(config),
        "corpus": corpus["sha256"],
        "vocab_size": vocab_size,
        "trainer": trainer_fingerprint(),
    }


def _build(config: ModelConfig, vocab_size: int) -> GPT:
    return GPT(vocab_size, config.d_model, config.n_layers, config.n_heads, config.max_seq_len)


def save_trained_model(
    folder: Path,
    name: str,
    model: torch.nn.Module,
    fingerprint: dict[str, Any],
    config: ModelConfig,
    seconds: float,
    history: list[float],
    train_tokens: int,
    val_loss: float,
    samples: dict[str, str],
) -> dict[str, Any]:
    """Write ``name``.pt (the weights) and then ``name``.json (its fingerprint and numbers:
    size, speed, losses, samples, the weights' sha256) into ``folder``, each atomically;
    the JSON comes last, so it marks the model as complete. Returns the JSON's content."""
    tokens = config.steps * config.batch_size * config.max_seq_len
    meta = {
        "size": name,
        "fingerprint": fingerprint,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(seconds, 1),
        "tokens_seen": tokens,
        "tokens_per_second": round(tokens / seconds),
        "epochs": round(tokens / train_tokens, 2),
        "train_loss_last_50": sum(history[-50:]) / max(1, len(history[-50:])),
        "val_loss": val_loss,
        "val_perplexity": math.exp(val_loss),
        "loss_history": history[::10],
        "samples": samples,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_kernels": cpu_kernels(),
        "sha256": None,
    }
    buffer = io.BytesIO()  # saved through a buffer: the same weights give the same bytes
    torch.save(model.state_dict(), buffer)
    _atomic_write(folder / f"{name}.pt", lambda p: p.write_bytes(buffer.getvalue()))
    meta["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    _write_json(folder / f"{name}.json", meta)  # last: it marks the model as complete
    return meta


def train_course_model(
    size: str = "main",
    directory: str | Path | None = None,
    force: bool = False,
    config: ModelConfig | None = None,
    corpus: CorpusConfig | None = None,
    progress: bool = True,
) -> tuple[GPT, BPETokenizer, dict[str, Any]]:
    """Train the model ``size`` ("main" or "draft"), or load it when the cache has it.

    The cached model is used when its configuration, its corpus (by hash) and its
    tokenizer match the ones asked for; ``force`` retrains anyway. Training is
    deterministic: the seed fixes the initial weights and the batches, and
    ``config.threads`` fixes the CPU threads (so the order of float sums).
    The default model, asked for in a process whose kernels are not pinned (a notebook,
    a plain ``pytest``), is trained in a child process that pins them
    (``train_in_pinned_child``), so that it is the model ``make model`` trains.

    Returns:
        (model in eval mode on the CPU, tokenizer, metadata with the numbers).
    """
    shipped = CORPUS == SHIPPED[0] and CONFIGS.get(size) == SHIPPED[1].get(size)
    default = config is None and corpus is None and shipped  # the model make model trains
    if config is None:
        if size not in CONFIGS:
            raise ValueError(f"size must be one of {', '.join(CONFIGS)}, got {size!r}")
        config = CONFIGS[size]
    folder = cache_dir(directory)
    tokenizer, train_ids, val_ids, stats = prepare_data(corpus, folder, progress)
    wanted = _fingerprint(config, stats, len(tokenizer.vocab))
    found = cached_or_child(
        folder, size, wanted, lambda: _build(config, len(tokenizer.vocab)), default, force
    )
    if found is not None:
        return found[0], tokenizer, found[1]

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(config.seed)
        fast = fused_copy(_build(config, len(tokenizer.vocab)))  # chapter 02's initial weights
        start = time.perf_counter()
        history = train_fast(
            fast,
            train_ids,
            steps=config.steps,
            batch_size=config.batch_size,
            block_size=config.max_seq_len,
            max_lr=config.max_lr,
            min_lr=config.min_lr,
            warmup_steps=config.warmup_steps,
            weight_decay=config.weight_decay,
            grad_clip=config.grad_clip,
            generator=torch.Generator().manual_seed(config.seed),
            progress=progress,
            precision=PRECISION,
        )
        seconds = time.perf_counter() - start
        model = _build(config, len(tokenizer.vocab))
        model.load_state_dict(fast.state_dict())
        val_loss = evaluate_loss(model, val_ids, config.max_seq_len)
        samples = {p: sample(model, tokenizer, p, seed=i) for i, p in enumerate(PROMPTS)}
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    meta = save_trained_model(
        folder, size, model, wanted, config, seconds, history, len(train_ids), val_loss, samples
    )
    return model.eval(), tokenizer, meta


def load_course_model(
    size: str = "main",
    directory: str | Path | None = None,
    train_if_missing: bool = True,
) -> tuple[GPT, BPETokenizer]:
    """The course model ``size`` ("main" or "draft") and the tokenizer, from the cache.

    The model maps ids (B, L), L <= 128, to logits (B, L, V); both models share the
    tokenizer (V = 1024). Documents end with ``EOS_ID`` (0, the NUL byte).

    When the cache has no such model it is trained first (a few minutes), unless
    ``train_if_missing`` is False (then FileNotFoundError says to run `make model`).
    """
    if not train_if_missing:
        folder = cache_dir(directory)
        if not (folder / f"{size}.json").exists() or not (folder / f"{size}.pt").exists():
            raise FileNotFoundError(f"no course model {size!r} in {folder}: run `make model`")
    model, tokenizer, _ = train_course_model(size, directory, progress=train_if_missing)
    return model, tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train (or reuse) the course models.")
    parser.add_argument("--size", choices=[*SIZES, "tasks", "all"], default="all")
    parser.add_argument("--force", action="store_true", help="retrain even if cached")
    parser.add_argument("--cache-dir", default=None, help=f"default: {DEFAULT_CACHE}")
    args = parser.parse_args(argv)
    sizes = SIZES if args.size == "all" else tuple(s for s in SIZES if s == args.size)
    start = time.perf_counter()
    rows = []
    for size in sizes:
        _, _, meta = train_course_model(size, args.cache_dir, force=args.force)
        rows.append(meta)
    if args.size in ("all", "tasks"):  # chapter 10's model of small tasks, its own corpus
        from solutions.task_model import train_task_model

        rows.append(train_task_model(args.cache_dir, force=args.force)[2])
    folder = cache_dir(args.cache_dir)
    print(f"\ncourse models in {folder} (ready in {time.perf_counter() - start:.0f} s)")
    print("| model | parameters | steps x tokens | train time | tokens/s | val loss | val ppl |")
    print("|---|---|---|---|---|---|---|")
    for meta in rows:
        cfg = meta["fingerprint"]["config"]
        print(
            f"| {meta['size']} | {meta['parameters']:,} | {cfg['steps']} x "
            f"{cfg['batch_size'] * cfg['max_seq_len']} | {meta['train_seconds']:.0f} s | "
            f"{meta['tokens_per_second']:,} | {meta['val_loss']:.3f} | "
            f"{meta['val_perplexity']:.1f} |"
        )
    for meta in rows:
        print(f"\nsamples of {meta['size']}:")
        for text in meta["samples"].values():
            print("  " + json.dumps(text, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
