"""course/model.py: the course model as the notebooks load it, without solutions/.

Oracles: chapter 02's GPT (the reference) for the network, chapter 04's BPETokenizer
(the reference) for the tokenizer, both on the same weights and merges; the student
bundle's case (no solutions/) is simulated here and run for real in
test_release_nbgrader.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from course import corpus
from course import model as public
from solutions import course_model
from solutions.architectures import GPT
from solutions.course_model import prepare_data
from tests.tiny_course_model import TINY_CORPUS, use_tiny_draft


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_course_gpt_is_chapter_02_gpt_with_the_same_state_dict(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    ref = GPT(vocab_size=50, d_model=16, n_layers=2, n_heads=4, max_seq_len=12).to(dtype)
    mine = public.CourseGPT(50, 16, 2, 4, 12).to(dtype)
    assert list(mine.state_dict()) == list(ref.state_dict())
    mine.load_state_dict(ref.state_dict())
    ids = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(1))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(mine(ids), ref(ids), atol=tol, rtol=tol)
    assert mine.lm_head.weight is mine.tok_emb.weight


def test_course_gpt_runs_on_meta_tensors() -> None:
    with torch.device("meta"):
        model = public.CourseGPT(50, 16, 2, 4, 12)
    ids = torch.zeros(2, 7, dtype=torch.long, device="meta")
    out = model(ids)
    assert out.device.type == "meta" and out.shape == (2, 7, 50)


def test_course_gpt_names_a_wrong_input() -> None:
    model = public.CourseGPT(50, 16, 1, 4, 12)
    with pytest.raises(ValueError, match="input_ids"):
        model(torch.zeros(12, dtype=torch.long))
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 13, dtype=torch.long))


def test_course_tokenizer_encodes_and_decodes_like_chapter_04(tmp_path: Path) -> None:
    ref, _, _, _ = prepare_data(TINY_CORPUS, tmp_path, progress=False)
    mine = public.CourseTokenizer.from_file(tmp_path / "tokenizer.json")
    assert mine.vocab == ref.vocab
    texts = corpus.stdlib_documents(["textwrap", "heapq", "json"])[:60]
    texts += ["", "aaaa aaa", "naïve café — 東京 \x00 end", "  two  spaces\n\n"]
    for text in texts:
        assert mine.encode(text) == ref.encode(text), text[:60]
        assert mine.decode(mine.encode(text)) == text
    ids = torch.tensor(ref.encode(texts[0]))
    assert mine.decode(ids) == ref.decode(ids)


def _train_tiny(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_tiny_draft(monkeypatch)
    course_model.train_course_model("draft", folder, progress=False)


def test_load_course_model_without_solutions_reads_the_bundled_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _train_tiny(tmp_path / "cache", monkeypatch)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name in ("tokenizer.json", "draft.json", "draft.pt"):
        shutil.copy2(tmp_path / "cache" / name, bundle / name)
    monkeypatch.setattr(public, "_solutions_present", lambda: False)

    model, tok = public.load_course_model("draft", directory=bundle)
    ref, ref_tok = course_model.load_course_model("draft", tmp_path / "cache")
    ids = torch.tensor([ref_tok.encode("Return the value of")])
    assert tok.encode("Return the value of") == ids[0].tolist()
    assert not model.training
    torch.testing.assert_close(model(ids), ref(ids), atol=1e-6, rtol=1e-5)

    with pytest.raises(FileNotFoundError, match="make model"):
        public.load_course_model("draft", directory=tmp_path / "empty")
    with pytest.raises(ValueError, match="size"):
        public.load_course_model("huge", directory=bundle)


def test_load_course_model_trains_in_the_repository_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _train_tiny(tmp_path / "warm", monkeypatch)  # the patched configs stay for the call
    model, tok = public.load_course_model("draft", directory=tmp_path / "cold")
    assert (tmp_path / "cold" / "draft.pt").is_file()
    assert model(torch.tensor([tok.encode("If the")])).shape[-1] == len(tok.vocab)


def test_search_order_prefers_the_environment_then_the_repository_then_the_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLM_COURSE_CACHE", raising=False)
    assert public.model_folders() == [public.REPO_CACHE, public.BUNDLED]
    monkeypatch.setenv("LLM_COURSE_CACHE", str(tmp_path))
    assert public.model_folders() == [tmp_path]
    assert public.model_folders(tmp_path / "x") == [tmp_path / "x"]


@pytest.mark.parametrize("size", ["main", "draft"])
def test_the_real_course_models_load_the_same_through_both_doors(size: str) -> None:
    """The cached models of `make model` (trained here if missing): the public loader and
    the reference's give the same logits."""
    ref, ref_tok = course_model.load_course_model(size)
    mine, tok = public.load_course_model(size)
    text = "Return the number of items in the list."
    ids = torch.tensor([ref_tok.encode(text)])
    assert tok.encode(text) == ids[0].tolist()
    torch.testing.assert_close(mine(ids), ref(ids), atol=1e-5, rtol=1e-5)
