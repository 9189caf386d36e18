"""Chapter 09's drivers and checkers: plain data in, plain data out.

They run beside student code and ship to students, so they never import
solutions/ or a grading spec. The models they build are the public
``course.model.CourseGPT`` (same submodules and ``state_dict`` as chapter 02's
GPT) with the weights of the case, and ``autograder.core.draws.TableLM``, a table language model.

- ``int8_linear``: ``Int8Linear.from_float`` on an ``nn.Linear`` of the case, then
  the layer rebuilt with the constructor and its own ``state_dict``.
- ``flash``: ``flash_attention`` on the case; on cases with ``max_elements`` it
  also runs under a dispatch mode that records every tensor an operation makes:
  none may hold more than ``max_elements`` values, and PyTorch's fused attention
  must not be called. ``check_flash`` says which.
- ``kv_cache_calls``: a sequence of ``update`` / ``crop`` calls on a ``KVCache``.
- ``forward_in_chunks``: ``forward_with_cache`` on consecutive chunks of ids,
  with ``SimpleCache`` (the documented ``KVCache`` API), so it is graded apart
  from the student's own ``KVCache``.
- ``generate_cached`` / ``check_generate_cached``: greedy ids, and whether the
  model's token embedding saw each token only once (prefill + one per step).
- ``batch_generate``, ``prefix_requests``: build the model, run the requests.
- ``speculative`` / ``check_speculative``: at temperature 0 the target's greedy
  tokens and the exact counts; with the target as its own draft every proposal
  is accepted, each round gives gamma + 1 tokens and the tokens are the
  reference's (they depend only on the documented use of the generator); and on a
  tiny vocabulary the first two tokens of many seeded runs follow the target's
  exact distribution (Pearson's chi-square, rare outcomes pooled: ``pool_rare``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from autograder.core.compare import compare_outputs
from autograder.core.draws import TableLM, chi_square, chi_square_threshold
from autograder.core.spec import Case, Tolerance
from course.model import CourseGPT


def build_gpt(config: dict[str, int], state: dict[str, torch.Tensor]) -> CourseGPT:
    """The course GPT of ``config`` with the weights ``state``, in eval mode."""
    model = CourseGPT(**config)
    model.load_state_dict(state)
    # how a stand-in's parent builds the same model (autograder.core.stand_ins)
    model.stand_in_recipe = ("course_gpt", [config, state])
    return model.eval()


class SimpleCache:
    """The ``KVCache`` API of the chapter: ``keys``/``values`` lists, ``length``,
    ``update(layer, k, v) -> (all keys, all values)``, ``crop(length)``."""

    def __init__(self, n_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers

    @property
    def length(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[-2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=-2)
            v = torch.cat([self.values[layer], v], dim=-2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def crop(self, length: int) -> None:
        for i in range(len(self.keys)):
            if self.keys[i] is not None:
                self.keys[i] = self.keys[i][..., :length, :]
                self.values[i] = self.values[i][..., :length, :]


# ------------------------------------------------------------------- Int8Linear


def int8_linear(obj: Any, case: Case) -> tuple[Any, Any, Any]:
    """``layer = obj.from_float(linear)``; returns (weight_int8, scale, output of a layer
    built with ``obj(in, out, bias)`` that loaded ``layer.state_dict()``)."""
    weight = case["weight"]  # (out, in)
    bias = case.get("bias")
    linear = torch.nn.Linear(
        weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype
    )
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    layer = obj.from_float(linear)
    state = layer.state_dict()
    for name in ("weight_int8", "scale"):
        if name not in state:
            raise KeyError(
                f"the layer's state_dict has no {name!r} (it has {sorted(state)}): register "
                "the buffers named in the docstring"
            )
    fresh = obj(weight.shape[1], weight.shape[0], bias=bias is not None)
    fresh.load_state_dict(state)
    with torch.no_grad():
        y = fresh(*case["args"])
    return state["weight_int8"], state["scale"], y


# -------------------------------------------------------------- flash_attention


class _Recorder(TorchDispatchMode):
    """Records the largest tensor any operation returns, and the operations' names."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.add(str(func))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def flash(obj: Any, case: Case) -> tuple[Any, bool]:
    """(output, tiled): ``tiled`` is False when an operation made a tensor of more than
    ``case["max_elements"]`` values or PyTorch's fused attention was called."""
    if "max_elements" not in case:
        return obj(*case["args"], **case.get("kwargs", {})), True
    with _Recorder() as rec:
        out = obj(*case["args"], **case.get("kwargs", {}))
    fused = any("scaled_dot_product" in op for op in rec.ops)
    return out, rec.largest <= case["max_elements"] and not fused


def check_flash(case: Case, actual: Any, tolerance: Tolerance) -> str | None:
    """The output must equal attention's; on long cases it must also be computed in tiles."""
    if not isinstance(actual, tuple | list) or len(actual) != 2:
        return "should return the attention output, a tensor"
    problem = compare_outputs(case["expected"][0], actual[0], tolerance, ("out",))
    if problem:
        return problem
    if actual[1] is not True:
        q, k = case["args"][0], case["args"][1]
        return (
            f"the output is right, but your function made a tensor of more than "
            f"{case['max_elements']} values (or called PyTorch's fused attention): with "
            f"Lq = {q.shape[-2]} and Lk = {k.shape[-2]} that is a score matrix far larger than "
            "a tile. Flash attention never holds the (Lq, Lk) scores: loop over blocks of "
            "keys with a running max, a running sum and a rescaled accumulator"
        )
    return None


# --------------------------------------------------------------------- KV cache


def kv_cache_calls(obj: Any, case: Case) -> list[Any]:
    """``cache = obj(n_layers)``, then the case's calls in order; records what each
    ``update`` returns, ``cache.length`` after each call, and layer 0's keys after a crop."""
    cache = obj(case["n_layers"])
    recorded: list[Any] = []
    for call in case["calls"]:
        if call[0] == "update":
            _, layer, k, v = call
            recorded.append(tuple(cache.update(layer, k, v)))
        else:
            cache.crop(call[1])
            recorded.append(cache.keys[0])
        recorded.append(cache.length)
    return recorded


def forward_in_chunks(obj: Any, case: Case) -> tuple[Any, int]:
    """``obj(model, ids[:, a:b], cache, ...)`` for consecutive chunks; returns the chunks'
    logits concatenated (zero where ``key_mask`` marks padding) and the cache length."""
    model = build_gpt(case["config"], case["state"])
    ids = case["args"][0]  # (B, L)
    cache = SimpleCache(case["config"]["n_layers"])
    positions, key_mask = case.get("positions"), case.get("key_mask")  # (B, L) each or None
    outs = []
    with torch.no_grad():
        for a, b in case["chunks"]:
            kwargs = {}
            if positions is not None:
                kwargs = {"positions": positions[:, a:b], "key_mask": key_mask[:, :b]}
            outs.append(obj(model, ids[:, a:b], cache, **kwargs))
    logits = torch.cat(outs, dim=1)  # (B, L, V)
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask[..., None], 0.0)  # padding rows are free
    return logits, cache.length


def generate_cached(obj: Any, case: Case) -> tuple[Any, bool]:
    """``obj(model, ids, n)``; also whether the model embedded each token at most once."""
    model = build_gpt(case["config"], case["state"])
    ids, n = case["args"]
    seen = [0]

    def count(module, inputs, output):  # a forward hook on the token embedding
        seen[0] += inputs[0].numel()

    handle = model.tok_emb.register_forward_hook(count)
    try:
        out = obj(model, ids, n)
    finally:
        handle.remove()
    return out, seen[0] <= ids.shape[0] * (ids.shape[1] + n)


def check_generate_cached(case: Case, actual: Any, tolerance: Tolerance) -> str | None:
    """The greedy ids exactly, computed with the cache (each token embedded once)."""
    if not isinstance(actual, tuple | list) or len(actual) != 2:
        return "should return the ids, a tensor"
    problem = compare_outputs(case["expected"][0], actual[0], tolerance, ("ids",))
    if problem:
        return problem
    if actual[1] is not True:
        return (
            "the tokens are right, but the model's token embedding saw more tokens than the "
            "prompt plus one per step: your loop recomputes the prefix. Run the prompt once "
            "(the prefill), then only each new token, with forward_with_cache and one KVCache"
        )
    return None


def batch_generate(obj: Any, case: Case) -> Any:
    """``obj(model, prompts, max_new_tokens, pad_id=...)``."""
    model = build_gpt(case["config"], case["state"])
    return obj(model, *case["args"], **case.get("kwargs", {}))


def prefix_requests(obj: Any, case: Case) -> tuple[list[Any], list[Any], Any, list[Any]]:
    """``pc = obj(model)``; ``pc.generate(prompt, n)`` for each prompt of the case, then
    ``pc.prefill(last)``. Returns (the generated ids, a copy of ``pc.stats`` after each
    request, the last prefill's logits, the ids of ``pc.entries`` in order)."""
    model = build_gpt(case["config"], case["state"])
    pc = obj(model)
    outs, stats = [], []
    for prompt in case["args"][0]:
        outs.append(pc.generate(prompt, case["max_new_tokens"]))
        stats.append(dict(pc.stats))
    logits, _ = pc.prefill(case["args"][0][-1])
    return outs, stats, logits, [ids for ids, _ in pc.entries]


# ---------------------------------------------------------- speculative decoding


def speculative(obj: Any, case: Case) -> Any:
    """``obj(target, draft, ids, n, gamma=..., temperature=..., generator=...)``.

    Cases with ``target_config``: one call on course GPTs; returns (ids, stats).
    Cases with ``runs``: ``runs`` calls on ``TableLM`` bigram tables, seeds seed..seed+runs-1;
    returns (counts of the first two new tokens (V * V,), summed stats).
    """
    kwargs = case.get("kwargs", {})
    if "runs" not in case:
        target = build_gpt(case["target_config"], case["target_state"])
        draft = build_gpt(case["draft_config"], case["draft_state"])
        g = torch.Generator().manual_seed(case["seed"])
        return obj(target, draft, *case["args"], **kwargs, generator=g)
    target, draft = TableLM(case["target_table"]), TableLM(case["draft_table"])
    ids, n = case["args"]
    V = case["target_table"].shape[0]
    counts = torch.zeros(V * V, dtype=torch.int64)
    totals: dict[str, int] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny operations: threads only cost time
    try:
        for r in range(case["runs"]):
            g = torch.Generator().manual_seed(case["seed"] + r)
            out, stats = obj(target, draft, ids, n, **kwargs, generator=g)
            first, second = int(out[0, ids.shape[1]]), int(out[0, ids.shape[1] + 1])
            counts[first * V + second] += 1
            for key, value in stats.items():
                totals[key] = totals.get(key, 0) + value
    finally:
        torch.set_num_threads(threads)
    return counts, totals


STATS_KEYS = ("proposed", "accepted", "target_forwards", "draft_forwards", "rounds")


def _check_stats(stats: Any) -> str | None:
    if not isinstance(stats, dict) or any(k not in stats for k in STATS_KEYS):
        return f"stats should be a dict with the keys {list(STATS_KEYS)}, got {stats!r}"
    if any(not isinstance(stats[k], int) for k in STATS_KEYS):
        return f"the counts in stats should be ints, got {stats!r}"
    return None


def pool_rare(
    counts: torch.Tensor, probs: torch.Tensor, runs: int, least: float = 5.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The outcomes expected fewer than ``least`` times in ``runs`` pooled into one, so the
    chi-square statistic keeps its nominal tail (a rare outcome drawn once would otherwise
    add about 1 / expected to it and fail an honest answer about once in 2500 gradings)."""
    rare = (probs > 0) & (probs * runs < least)
    if int(rare.sum()) < 2:
        return counts, probs
    keep = ~rare
    pooled_counts = torch.cat([counts[keep], counts[rare].sum().reshape(1)])
    pooled_probs = torch.cat([probs[keep], probs[rare].sum().reshape(1)])
    return pooled_counts, pooled_probs


def check_speculative(case: Case, actual: Any, tolerance: Tolerance) -> str | None:
    """Greedy cases exactly; self-draft cases by their counts and tokens; sampled cases by
    chi-square."""
    if not isinstance(actual, tuple | list) or len(actual) != 2:
        return "should return (ids, stats)"
    answer, stats = actual
    problem = _check_stats(stats)
    if problem:
        return problem
    expected_answer, expected_stats = case["expected"]
    kind = case["kind"]
    if kind == "greedy":
        problem = compare_outputs(expected_answer, answer, tolerance, ("ids",))
        if problem:
            return problem + " (at temperature 0 the answer is the target's greedy decoding)"
        for key in STATS_KEYS:
            if stats[key] != expected_stats[key]:
                return (
                    f"the tokens are right but stats[{key!r}] is {stats[key]}, expected "
                    f"{expected_stats[key]} (each round proposes min(gamma, tokens still "
                    "needed) tokens, runs the target once, and adds a bonus token when all "
                    "are accepted)"
                )
        return None
    if kind == "self":
        if not isinstance(answer, torch.Tensor) or answer.shape != expected_answer.shape:
            return f"ids should have shape {tuple(expected_answer.shape)}"
        problem = compare_outputs(expected_answer, answer, tolerance, ("ids",))
        if problem:
            return problem + (
                " (with the target as its own draft every proposal is accepted, so the tokens "
                "depend only on how the generator is consumed: per round the k draft draws "
                "torch.multinomial(q, 1, generator=generator) on (1, V), then one "
                "torch.rand(k, generator=generator), then one draw from the residual or p_{k+1})"
            )
        if stats["accepted"] != stats["proposed"]:
            return (
                f"with the target as its own draft (p = q) every proposal must be accepted, "
                f"but stats say {stats['accepted']} of {stats['proposed']}"
            )
        if stats["target_forwards"] != expected_stats["target_forwards"]:
            return (
                f"with the target as its own draft stats['target_forwards'] is "
                f"{stats['target_forwards']}, expected {expected_stats['target_forwards']}: "
                "when all gamma proposals are accepted, draw a bonus token from the target's "
                "last distribution, so one target pass gives gamma + 1 tokens"
            )
        return None
    counts = answer
    if not isinstance(counts, torch.Tensor) or counts.shape != case["target_probs"].shape:
        return "should return the ids, a tensor of shape (1, L + max_new_tokens)"
    stat, dof = chi_square(*pool_rare(counts, case["target_probs"], case["runs"]))
    limit = chi_square_threshold(dof)
    banned = (counts > 0) & (case["target_probs"] == 0)
    if stat > limit or bool(banned.any()):
        return (
            f"over {case['runs']} seeded runs the first two generated tokens do not follow "
            f"the target model's distribution (chi-square {stat:.0f} with {dof} degrees of "
            f"freedom, above {limit:.0f}): speculative sampling must give exactly the "
            "target's distribution"
        )
    return None
