"""Chapter 05's claims on the trained course models (``make model``; trained here if missing).

The page book/05_peft.md shows each of these once; here they are checked in other
configurations, so a change to the reference or to the course model that breaks one
fails the suite and not only the website build:

- merging every LoRA layer gives the logits of the unmerged model (main and draft model,
  attention-only and every-linear targets);
- NF4's error is lower than evenly spaced 4-bit levels with the same absmax blocks on
  every linear layer of both models, at block sizes 64 (QLoRA's), 128 and 256 (at 32 the
  scaled weights of a block are flatter than a normal and uniform levels win on a few
  layers: NF4's levels assume normal weights);
- the main model with every block's linear layers in ``QLoRALinear`` (NF4, B = 0) stays
  close to the float32 model on the validation text;
- fine-tuning on tkinter's documents (a domain the corpus leaves out) with LoRA at rank 4
  on the attention only: the held-out loss falls, the optimizer holds 8 bytes per trained
  parameter, and full fine-tuning with the same steps and batches learns more and forgets
  more of the original domain.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch
import torch.nn as nn

import solutions.peft as P
from course.corpus import file_documents, stdlib_files, stdlib_root
from course.helpers import replace_modules
from solutions.course_model import (
    CORPUS,
    DOC_SEPARATOR,
    clean_documents,
    evaluate_loss,
    prepare_data,
)
from solutions.training import deduplicate, train_language_model


@pytest.mark.parametrize("size", ["main", "draft"])
@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], ["q_proj", "k_proj", "fc1", "fc2"]])
def test_merged_lora_gives_the_same_logits(models, size: str, targets: list[str]) -> None:
    main, draft, tok = models
    model = P.apply_lora(copy.deepcopy(main if size == "main" else draft), targets, r=4)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, P.LoRALinear):
                m.lora_B.copy_(0.1 * torch.randn(m.lora_B.shape, generator=g))
    ids = torch.tensor([tok.encode("Return a new list of the items, sorted by key.")])
    with torch.no_grad():
        lora = model(ids)
        assert not torch.allclose(lora, (main if size == "main" else draft)(ids), atol=1e-3)
        merged = replace_modules(model, P.LoRALinear, P.LoRALinear.merge)(ids)
    assert torch.allclose(merged, lora, atol=1e-4), (merged - lora).abs().max()


def _uniform_4bit(w: torch.Tensor, block_size: int) -> torch.Tensor:
    blocks = w.reshape(-1, block_size)
    scale = blocks.abs().amax(dim=1, keepdim=True)
    levels = torch.linspace(-1, 1, 16)
    nearest = (blocks[..., None] / scale[..., None] - levels).abs().argmin(dim=-1)
    return (levels[nearest] * scale).reshape(w.shape)


@pytest.mark.parametrize("block_size", [64, 128, 256])
def test_nf4_beats_uniform_on_every_linear_layer(models, block_size: int) -> None:
    main, draft, _ = models
    layers = [
        (size, name, m.weight.detach())
        for size, model in (("main", main), ("draft", draft))
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name.startswith("blocks.")
    ]
    assert len(layers) == 24 + 12
    for size, name, w in layers:
        codes, absmax = P.quantize_nf4(w, block_size)
        nf4 = (P.dequantize_nf4(codes, absmax, w.shape, block_size) - w).square().mean()
        uniform = (_uniform_4bit(w, block_size) - w).square().mean()
        assert nf4 < uniform, (size, name, float(nf4), float(uniform))


def test_the_main_model_in_nf4_stays_close(models) -> None:
    main, _, _ = models
    _, _, val_ids, _ = prepare_data(CORPUS, progress=False)
    val = val_ids[:8192]
    qlora = lambda layer: P.QLoRALinear(layer, r=4)  # noqa: E731
    quantized = replace_modules(copy.deepcopy(main), nn.Linear, qlora, under="blocks.")
    n_q = sum(isinstance(m, P.QLoRALinear) for m in quantized.modules())
    full, nf4 = evaluate_loss(main, val, 64), evaluate_loss(quantized, val, 64)
    assert n_q == 24 and full < nf4 < full + 0.1, (full, nf4)


@pytest.mark.slow
def test_lora_learns_less_and_forgets_less_than_full_fine_tuning(models) -> None:
    main, _, tok = models
    corpus_files = {str(p) for p in stdlib_files()}
    files = sorted((stdlib_root() / "tkinter").rglob("*.py"))
    assert files and not any(str(p) in corpus_files for p in files)
    docs = deduplicate(clean_documents([d for f in files for d in file_documents(f)], CORPUS))
    random.Random(1).shuffle(docs)  # another split than the page's

    def ids(part: list[str]) -> torch.Tensor:
        return torch.tensor(tok.encode(DOC_SEPARATOR.join(part) + DOC_SEPARATOR))

    held, train = ids(docs[: len(docs) // 5]), ids(docs[len(docs) // 5 :])
    orig = prepare_data(CORPUS, progress=False)[2][:4096]
    results = {}
    for kind, lr in (("lora", 1e-2), ("full", 1e-3)):
        torch.manual_seed(0)
        model = copy.deepcopy(main)
        if kind == "lora":
            P.apply_lora(model, ["q_proj", "k_proj", "v_proj", "out_proj"], r=4, alpha=8.0)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        model.train()
        train_language_model(
            model, train, 40, 8, 64, max_lr=lr, min_lr=lr / 10, warmup_steps=5,
            optimizer=opt, generator=torch.Generator().manual_seed(1), progress=False,
        )  # fmt: skip
        state = [t for s in opt.state.values() for t in s.values() if t.dim() > 0]
        n = P.count_parameters(model, trainable_only=True)
        assert sum(t.numel() * t.element_size() for t in state) == 8 * n
        results[kind] = (n, evaluate_loss(model, held, 64), evaluate_loss(model, orig, 64))
    before = (evaluate_loss(main, held, 64), evaluate_loss(main, orig, 64))
    (n_lora, held_lora, orig_lora), (n_full, held_full, orig_full) = (
        results["lora"],
        results["full"],
    )
    assert n_lora == 4 * 4 * 4 * (128 + 128) and n_full == P.count_parameters(main)
    assert held_full < held_lora < before[0] - 0.1, (before, results)
    assert before[1] < orig_lora < orig_full, (before, results)
