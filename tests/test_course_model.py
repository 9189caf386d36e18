"""The course model pipeline (solutions/course_model.py, course/corpus.py), on tiny configs.

The real models take minutes (`make model`); here a 1-layer model trains for a few steps
on the text of two modules, in a temporary cache folder. Oracles: the files the
pipeline promises, determinism (the same seed gives the same weights, bit for bit), and
the cache (a second call trains nothing).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from course import corpus
from solutions import course_model
from solutions.course_model import (
    load_course_model,
    prepare_data,
    split_documents,
    train_course_model,
)
from tests.tiny_course_model import TINY, TINY_CORPUS, use_tiny_draft


def test_stdlib_documents_are_real_text_in_a_fixed_order():
    """Oracle: the source files themselves (ast.get_docstring of the module) and a second call."""
    docs = corpus.stdlib_documents(["textwrap"])
    source = (corpus.stdlib_root() / "textwrap.py").read_text(encoding="utf-8")
    assert ast.get_docstring(ast.parse(source)) == docs[0]
    assert any("wrap" in d for d in docs[1:]) and len(docs) > 10
    assert corpus.stdlib_documents(["textwrap"]) == docs
    files = corpus.stdlib_files()
    assert files == sorted(files) and not any("test" in p.parts for p in files)


def test_split_is_by_document_and_seeded():
    """Oracle: set arithmetic; the same seed gives the same split."""
    docs = [f"document {i}" for i in range(100)]
    train, val = split_documents(docs, 0.1, seed=3)
    assert len(val) == 10 and sorted(train + val) == sorted(docs) and not set(train) & set(val)
    assert split_documents(docs, 0.1, seed=3) == (train, val)
    assert split_documents(docs, 0.1, seed=4) != (train, val)


def test_prepare_data_caches_tokenizer_and_tokens(tmp_path: Path):
    """Oracle: the cache files, and decode(train ids) giving back cleaned text."""
    tok, train_ids, val_ids, stats = prepare_data(TINY_CORPUS, tmp_path, progress=False)
    assert {p.name for p in tmp_path.iterdir()} >= {"tokenizer.json", "tokens.pt", "corpus.json"}
    assert len(tok.vocab) == 300 and train_ids.dtype == torch.long and len(val_ids) > 0
    assert stats["documents_kept"] <= stats["documents_cleaned"] <= stats["documents_raw"]
    text = tok.decode(train_ids.tolist())
    assert course_model.DOC_SEPARATOR in text and "  " not in text
    eos = course_model.EOS_ID
    assert (train_ids == eos).sum() == stats["documents_train"] - 1  # one between documents
    assert tok.encode("end.\x00Start") == tok.encode("end.") + [eos] + tok.encode("Start")
    again = prepare_data(TINY_CORPUS, tmp_path, progress=False)
    assert again[0].merges == tok.merges and torch.equal(again[1], train_ids)


def test_training_is_deterministic_and_the_cache_is_reused(tmp_path: Path, monkeypatch):
    """Oracle: bit-identical weights from two trainings with the same seed; a second call
    returns the cached model without calling the training loop."""
    model, tok, meta = train_course_model("main", tmp_path, config=TINY, corpus=TINY_CORPUS,
                                          progress=False)  # fmt: skip
    assert {"main.pt", "main.json"} <= {p.name for p in tmp_path.iterdir()}
    assert meta["val_loss"] > 0 and meta["val_perplexity"] == pytest.approx(
        torch.tensor(meta["val_loss"]).exp().item(), rel=1e-5
    )
    assert set(meta["samples"]) == set(course_model.PROMPTS)
    first = (tmp_path / "main.pt").read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model should have been used")

    monkeypatch.setattr(course_model, "train_fast", no_training)
    cached, _, meta2 = train_course_model("main", tmp_path, config=TINY, corpus=TINY_CORPUS,
                                          progress=False)  # fmt: skip
    assert meta2 == meta
    for a, b in zip(cached.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    monkeypatch.undo()
    _, _, meta3 = train_course_model("main", tmp_path, force=True, config=TINY,
                                     corpus=TINY_CORPUS, progress=False)  # fmt: skip
    assert (tmp_path / "main.pt").read_bytes() == first
    assert meta3["val_loss"] == meta["val_loss"]


def test_load_course_model_uses_the_configs_and_says_when_missing(tmp_path: Path, monkeypatch):
    """Oracle: the documented behaviour: FileNotFoundError naming `make model` when asked
    not to train; otherwise a model mapping (B, L) ids to (B, L, V) logits."""
    with pytest.raises(FileNotFoundError, match="make model"):
        load_course_model("draft", tmp_path, train_if_missing=False)
    use_tiny_draft(monkeypatch)
    model, tok = load_course_model("draft", tmp_path)
    ids = torch.tensor([tok.encode("Return the")])
    assert model(ids).shape == (1, ids.shape[1], len(tok.vocab))
    meta = json.loads((tmp_path / "draft.json").read_text())
    assert meta["fingerprint"]["config"]["d_model"] == 16
    model2, _ = load_course_model("draft", tmp_path, train_if_missing=False)
    assert torch.equal(model2.tok_emb.weight, model.tok_emb.weight)
