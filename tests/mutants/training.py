"""Mutants of solutions/training.py (chapter 04)."""

from tests.mutants import Mutant

READY = (  # the start of a parallel layer's __init__, up to its divisibility check
    "ready = dist.is_available() and dist.is_initialized()\n"
    "        self.world_size = dist.get_world_size() if ready else 1\n"
    "        self.rank = dist.get_rank() if ready else 0\n"
    "        if "
)

MUTANTS = (
    # normalize_text
    Mutant(
        "normalize_nfc",
        "normalize_text",
        (('unicodedata.normalize("NFKC", text)', 'unicodedata.normalize("NFC", text)'),),
        "use NFKC",
    ),
    Mutant(
        "normalize_spaces_only",
        "normalize_text",
        (('return " ".join(text.split())', 'return re.sub(" +", " ", text).strip()'),),
        "tabs, line breaks",
    ),
    Mutant(
        "normalize_no_strip",
        "normalize_text",
        (('return " ".join(text.split())', 'return re.sub(r"\\s+", " ", text)'),),
        "at the start or the end",
    ),
    # deduplicate
    Mutant(
        "dedup_against_all",
        "deduplicate",
        (
            (
                """        if any(
            n / (len(shingles) + len(kept_shingles[j]) - n) >= threshold for j, n in shared.items()
        ):
            continue
        for s in shingles:
            index[s].append(len(kept))
        kept.append(doc)""",
                """        duplicate = any(
            n / (len(shingles) + len(kept_shingles[j]) - n) >= threshold for j, n in shared.items()
        )
        for s in shingles:
            index[s].append(len(kept_shingles))
        kept_shingles.append(shingles)
        if duplicate:
            continue
        kept.append(doc)""",
            ),
            (
                "        kept_texts.add(doc)\n        kept_shingles.append(shingles)",
                "        kept_texts.add(doc)",
            ),
        ),
        "KEPT so far",
    ),
    Mutant(
        "dedup_strict_threshold",
        "deduplicate",
        ((">= threshold for j, n in shared.items()", "> threshold for j, n in shared.items()"),),
        "(>= threshold)",
    ),
    Mutant(
        "dedup_word_sets",
        "deduplicate",
        (
            (
                "shingles = {tuple(words[i : i + shingle_size]) for i in range(count)}",
                "shingles = {(w,) for w in words}",
            ),
        ),
        "sets of single words",
    ),
    # BPETokenizer
    Mutant(
        "bpe_ties_largest",
        "BPETokenizer",
        (
            ("heap = [(-n, a, b) for (a, b), n", "heap = [(-n, -a, -b) for (a, b), n"),
            (
                "counts.get((heap[0][1], heap[0][2]), 0)",
                "counts.get((-heap[0][1], -heap[0][2]), 0)",
            ),
            (
                "_, a, b = heapq.heappop(heap)",
                "_, a, b = heapq.heappop(heap)\n            a, b = -a, -b",
            ),
            (
                "heapq.heappush(heap, (-counts[pair], pair[0], pair[1]))",
                "heapq.heappush(heap, (-counts[pair], -pair[0], -pair[1]))",
            ),
        ),
        "ties by the largest pair",
    ),
    Mutant(
        "bpe_pattern_ignored",
        "BPETokenizer",
        (
            (
                "chunks = Counter(re.findall(pattern, text) if pattern is not None else [text])",
                "chunks = Counter([text])",
            ),
        ),
        "across chunk boundaries",
    ),
    Mutant(
        "bpe_encode_leftmost",
        "BPETokenizer",
        (
            (
                """                    pair = min(
                        zip(ids[:-1], ids[1:], strict=True),
                        key=lambda p: self.merges.get(p, math.inf),
                    )""",
                """                    pair = next(
                        (p for p in zip(ids[:-1], ids[1:], strict=True) if p in self.merges),
                        (-1, -1),
                    )""",
            ),
        ),
        "leftmost pair",
    ),
    Mutant(
        "bpe_decode_per_token",
        "BPETokenizer",
        (
            (
                'return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")',
                'return "".join(self.vocab[i].decode("utf-8", errors="replace") for i in ids)',
            ),
        ),
        "each token on its own",
    ),
    # cross_entropy
    Mutant(
        "ce_mean_over_all",
        "cross_entropy",
        (("(nll.sum() / keep.sum())", "(nll.sum() / keep.numel())"),),
        "ALL positions",
    ),
    Mutant(
        "ce_sum",
        "cross_entropy",
        (("(nll.sum() / keep.sum())", "nll.sum()"),),
        "sum of the per-position losses",
    ),
    Mutant(
        "ce_naive_softmax",
        "cross_entropy",
        (
            (
                "log_probs = work - torch.logsumexp(work, dim=-1, keepdim=True)",
                "log_probs = torch.log(work.exp() / work.exp().sum(-1, keepdim=True))",
            ),
        ),
        "logsumexp",
    ),
    Mutant(
        "ce_fixed_ignore_index",
        "cross_entropy",
        (("keep = targets != ignore_index", "keep = targets != -100"),),
        "use the ignore_index argument",
    ),
    # get_batch
    Mutant(
        "batch_no_shift",
        "get_batch",
        (("return data[index], data[index + 1]", "return data[index], data[index]"),),
        "y equals x",
    ),
    Mutant(
        "batch_short_range",
        "get_batch",
        (
            (
                "data.shape[0] - block_size, (batch_size,)",
                "data.shape[0] - block_size - 1, (batch_size,)",
            ),
        ),
        "stop one short",
    ),
    Mutant(
        "batch_global_rng",
        "get_batch",
        (("generator=generator, device=draw_on", "device=draw_on"),),
        "draw the offsets from `generator`",
    ),
    # lr_schedule
    Mutant(
        "lr_warmup_plus_one",
        "lr_schedule",
        (("return max_lr * step / warmup_steps", "return max_lr * (step + 1) / warmup_steps"),),
        "it starts at 0",
    ),
    Mutant(
        "lr_cosine_to_zero",
        "lr_schedule",
        (
            (
                "return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))",
                "return max_lr * 0.5 * (1.0 + math.cos(math.pi * progress))",
            ),
        ),
        "it ends at min_lr",
    ),
    Mutant(
        "lr_cosine_from_zero",
        "lr_schedule",
        (
            (
                "progress = (step - warmup_steps) / (total_steps - warmup_steps)",
                "progress = step / total_steps",
            ),
        ),
        "starts after the warmup",
    ),
    # clip_grad_norm
    Mutant(
        "clip_always",
        "clip_grad_norm",
        (
            (
                "scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)",
                "scale = max_norm / (total + 1e-6)",
            ),
        ),
        "even when the norm is below it",
    ),
    Mutant(
        "clip_norm_after",
        "clip_grad_norm",
        (
            (
                "        g.detach().mul_(scale.to(g.dtype))\n    return total",
                "        g.detach().mul_(scale.to(g.dtype))\n"
                "    return torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))",
            ),
        ),
        "norm AFTER clipping",
    ),
    Mutant(
        "clip_sum_of_norms",
        "clip_grad_norm",
        (("total = torch.linalg.vector_norm(norms)  # ()", "total = norms.sum()  # ()"),),
        "sum of the per-parameter norms",
    ),
    # AdamW
    Mutant(
        "adamw_no_bias_correction",
        "AdamW",
        (
            (
                "denom = (v.sqrt() / math.sqrt(1.0 - beta2**t)).add_(eps)",
                "denom = v.sqrt().add_(eps)",
            ),
            ("value=-lr / (1.0 - beta1**t)", "value=-lr"),
        ),
        "without bias correction",
    ),
    Mutant(
        "adamw_l2",
        "AdamW",
        (
            (
                "p.mul_(1.0 - lr * weight_decay)  # decoupled weight decay",
                "g = g + weight_decay * p  # L2, through the gradient",
            ),
        ),
        "Adam with L2",
    ),
    Mutant(
        "adamw_decay_without_lr",
        "AdamW",
        (("p.mul_(1.0 - lr * weight_decay)", "p.mul_(1.0 - weight_decay)"),),
        "scaled by the",
    ),
    Mutant(
        "adamw_eps_inside_sqrt",
        "AdamW",
        (
            (
                "denom = (v.sqrt() / math.sqrt(1.0 - beta2**t)).add_(eps)",
                "denom = (v / (1.0 - beta2**t) + eps).sqrt()",
            ),
        ),
        "sqrt(v_hat + eps)",
    ),
    # train_language_model
    Mutant(
        "loop_no_zero_grad",
        "train_language_model",
        (("        optimizer.zero_grad()\n        loss.backward()", "        loss.backward()"),),
        "never clears the gradients",
    ),
    Mutant(
        "loop_no_schedule",
        "train_language_model",
        (('            group["lr"] = lr', "            pass"),),
        "never sets the learning rate",
    ),
    Mutant(
        "loop_clip_after_step",
        "train_language_model",
        (
            (
                """        if grad_clip is not None:
            clip_grad_norm(model.parameters(), grad_clip)
        optimizer.step()""",
                """        optimizer.step()
        if grad_clip is not None:
            clip_grad_norm(model.parameters(), grad_clip)""",
            ),
        ),
        "clipping after optimizer.step()",
    ),
    Mutant(
        "loop_targets_not_shifted",
        "train_language_model",
        (("loss = cross_entropy(model(x), y)  # ()", "loss = cross_entropy(model(x), x)  # ()"),),
        "against x itself",
    ),
    # all_reduce_gradients
    Mutant(
        "allreduce_sum",
        "all_reduce_gradients",
        (("flat /= dist.get_world_size()", "pass"),),
        "SUM over the ranks",
    ),
    Mutant(
        "allreduce_halved",
        "all_reduce_gradients",
        (("flat /= dist.get_world_size()", "flat /= 2"),),
        "dividing by 2",
    ),
    # ColumnParallelLinear
    Mutant(
        "column_input_grad_not_summed",
        "ColumnParallelLinear",
        (
            (
                "x.register_hook(sum_over_ranks)  # backward: the input gradient summed over ranks",
                "pass",
            ),
        ),
        "each rank's own part",
    ),
    Mutant(
        "column_output_detached",
        "ColumnParallelLinear",
        (("pieces[self.rank] = y  # our own slice keeps its gradient path", "pass"),),
        "carries no gradient",
    ),
    # RowParallelLinear
    Mutant(
        "row_no_all_reduce",
        "RowParallelLinear",
        (("dist.all_reduce(total)  # the sum of every rank's partial product", "pass"),),
        "partial product",
    ),
    Mutant(
        "row_bias_before_reduce",
        "RowParallelLinear",
        (
            (
                "partial = F.linear(x, self.weight)  # (..., out_features)",
                "partial = F.linear(x, self.weight, self.bias)",
            ),
            (
                "return partial if self.bias is None else partial + self.bias",
                "return partial",
            ),
        ),
        "counted world_size times",
    ),
    Mutant(
        "row_input_grad_not_summed",
        "RowParallelLinear",
        (("x.register_hook(sum_over_ranks)  # backward: each rank fills its own slice", "pass"),),
        "own slice only",
    ),
    # cases added with the docstring promises (autograder/training.py)
    Mutant(
        "normalize_empty_raises",
        "normalize_text",
        (("if not isinstance(text, str):", "if not isinstance(text, str) or not text:"),),
        "the empty string",
    ),
    Mutant(
        "dedup_short_no_shingle",
        "deduplicate",
        (
            (
                "count = max(len(words) - shingle_size + 1, 1) if words else 0",
                "count = max(len(words) - shingle_size + 1, 0)",
            ),
        ),
        "shorter than shingle_size",
    ),
    Mutant(
        "bpe_merge_pair_overlapping",
        "BPETokenizer",
        (("                i += 2\n", "                i += 1 if pair[0] == pair[1] else 2\n"),),
        "replacing occurrences that overlap",
    ),
    Mutant(
        "bpe_counts_without_overlaps",
        "BPETokenizer",
        (
            (
                "        for w, (ids, f) in enumerate(zip(words, freqs, strict=True)):\n"
                "            for pair in zip(ids[:-1], ids[1:], strict=True):\n",
                "        for w, (ids, f) in enumerate(zip(words, freqs, strict=True)):\n"
                "            for j, pair in enumerate(zip(ids[:-1], ids[1:], strict=True)):\n"
                "                if j and pair[0] == pair[1] == ids[j - 1]:\n"
                "                    continue\n",
            ),
        ),
        "until no pair is left",
    ),
    Mutant(
        "bpe_no_early_stop",
        "BPETokenizer",
        (
            (
                "            if not heap:\n                break\n",
                "            if not heap:\n"
                "                raise ValueError('no pair left to merge')\n",
            ),
        ),
        "no pair left to merge",
    ),
    Mutant(
        "bpe_decode_no_tensor",
        "BPETokenizer",
        (("        if isinstance(ids, torch.Tensor):\n", "        if False:\n"),),
        "ids holds",
    ),
    Mutant(
        "ce_all_ignored_zero",
        "cross_entropy",
        (
            (
                "return (nll.sum() / keep.sum()).to(logits.dtype)",
                "return (nll.sum() / keep.sum().clamp_min(1)).to(logits.dtype)",
            ),
        ),
        "loss is 0 when every target is ignored",
    ),
    Mutant(
        "ce_no_upcast",
        "cross_entropy",
        (
            (
                "work = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) "
                "else logits",
                "work = logits",
            ),
        ),
        "computed in bfloat16",
    ),
    Mutant(
        "batch_own_generator",
        "get_batch",
        (
            (
                "draw_on = generator.device if generator is not None else data.device",
                "generator = generator if generator is not None else torch.Generator()\n"
                "    draw_on = generator.device",
            ),
        ),
        "a new torch.Generator() of its own",
    ),
    Mutant(
        "lr_total_equals_warmup",
        "lr_schedule",
        (("    if step >= total_steps:", "    if step > total_steps:"),),
        "warmup 5 = total 5",
    ),
    Mutant(
        "clip_iterates_twice",
        "clip_grad_norm",
        (
            (
                "for g in grads:\n        g.detach().mul_(scale.to(g.dtype))",
                "for p in parameters:\n"
                "        if p.grad is not None:\n"
                "            p.grad.detach().mul_(scale.to(p.grad.dtype))",
            ),
        ),
        "a generator is empty the second time",
    ),
    Mutant(
        "adamw_closure_dropped",
        "AdamW",
        (("loss = closure()", "closure()"),),
        "returns None",
    ),
    Mutant(
        "adamw_default_lr",
        "AdamW",
        (("lr: float = 1e-3,\n        betas", "lr: float = 1e-2,\n        betas"),),
        "every default",
    ),
    Mutant(
        "loop_default_betas",
        "train_language_model",
        (("betas=(0.9, 0.95)", "betas=(0.9, 0.999)"),),
        "betas (0.9, 0.999)",
    ),
    Mutant(
        "loop_decay_everything",
        "train_language_model",
        (
            (
                '{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},\n'
                '            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},',
                '{"params": params, "weight_decay": weight_decay},',
            ),
        ),
        "weight decay on every parameter",
    ),
    Mutant(
        "loop_weight_decay_ignored",
        "train_language_model",
        (('"weight_decay": weight_decay},', '"weight_decay": 0.1},'),),
        "weight_decay=0.5",
    ),
    Mutant(
        "loop_no_step_fails",
        "train_language_model",
        (
            (
                "return torch.stack(losses).tolist() if losses else []",
                "return torch.stack(losses).tolist()",
            ),
        ),
        "steps = 0",
    ),
    Mutant(
        "loop_no_progress_bar",
        "train_language_model",
        (("disable=not progress", "disable=True"),),
        "progress bar shown",
    ),
    Mutant(
        "loop_default_no_clipping",
        "train_language_model",
        (("grad_clip: float | None = 1.0,", "grad_clip: float | None = None,"),),
        "the default optimizer",
    ),
    Mutant(
        "loop_default_no_decay",
        "train_language_model",
        (("weight_decay: float = 0.1,", "weight_decay: float = 0.0,"),),
        "the default optimizer",
    ),
    Mutant(
        "allreduce_per_parameter",
        "all_reduce_gradients",
        (
            (
                "    flat = torch.cat([g.reshape(-1) for g in grads])  # (total,)\n"
                "    dist.all_reduce(flat, op=dist.ReduceOp.SUM)",
                "    for g in grads:\n"
                "        dist.all_reduce(g)\n"
                "    flat = torch.cat([g.reshape(-1) for g in grads])  # (total,)",
            ),
        ),
        "one dist.all_reduce per parameter",
    ),
    Mutant(
        "allreduce_needs_group",
        "all_reduce_gradients",
        (
            (
                "    if not dist.is_available() or not dist.is_initialized():\n"
                "        return\n    grads",
                "    grads",
            ),
        ),
        "no process group",
    ),
    Mutant(
        "column_needs_group",
        "ColumnParallelLinear",
        (
            (
                READY + "out_features",
                READY.replace("if ready else", "if True else") + "out_features",
            ),
        ),
        "no process group",
    ),
    Mutant(
        "column_default_slice",
        "ColumnParallelLinear",
        (("gather_output: bool = True", "gather_output: bool = False"),),
        "by default",
    ),
    Mutant(
        "row_needs_group",
        "RowParallelLinear",
        ((READY + "in_features", READY.replace("if ready else", "if True else") + "in_features"),),
        "no process group",
    ),
    Mutant(
        "row_default_parallel_input",
        "RowParallelLinear",
        (("input_is_parallel: bool = False,", "input_is_parallel: bool = True,"),),
        "by default",
    ),
)
