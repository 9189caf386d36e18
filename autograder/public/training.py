"""Chapter 04's drivers and checker: how the training exercises are called and judged.

They run beside student code and ship to students: plain data in, plain data
out, never an import of solutions/ or of a grading spec.

The distributed exercises (``all_reduce_gradients``, ``ColumnParallelLinear``,
``RowParallelLinear``) need several processes. :func:`run_ranks` forks them
from the process that holds the student's code (so functions defined in a
notebook need no pickling) and joins them into a gloo process group through a
file in a temporary folder: no network is needed beyond the loopback device,
which exists in the grading sandbox too.
"""

from __future__ import annotations

import contextlib
import io
import math
import multiprocessing as mp
import os
import re
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from multiprocessing.connection import wait
from typing import Any

import torch
import torch.nn as nn

from autograder.core.drivers import StateDictMismatch
from autograder.core.loader import student_error
from autograder.core.spec import Case, Tolerance

RANK_TIMEOUT = 20.0  # seconds for all ranks of one case; an honest case takes well under one

# ----------------------------------------------------------------- one-process drivers


def call_with_generator(obj: Any, case: Case) -> Any:
    """``get_batch``: call with a fresh generator seeded by ``case["seed"]``, twice.

    Returns (x, y, x_again, y_again); the second call gets a new generator with
    the same seed, so a function that really draws from ``generator`` repeats itself.
    With ``case["global_rng"]`` no generator is given: the global generator is
    seeded with ``case["seed"]`` before each call instead.
    """
    args, kwargs = case.get("args", []), case.get("kwargs", {})
    answers = []
    for _ in range(2):
        if case.get("global_rng"):
            torch.manual_seed(case["seed"])
            answers.append(obj(*args, **kwargs))
        else:
            generator = torch.Generator().manual_seed(case["seed"])
            answers.append(obj(*args, generator=generator, **kwargs))
    (x, y), (x2, y2) = answers
    return x, y, x2, y2


def schedule_curve(obj: Any, case: Case) -> torch.Tensor:
    """``lr_schedule``: the learning rate at every step of ``case["steps"]``, as float64."""
    rates = [obj(step, *case.get("args", []), **case.get("kwargs", {})) for step in case["steps"]]
    for step, rate in zip(case["steps"], rates, strict=True):
        if isinstance(rate, bool) or not isinstance(rate, int | float | torch.Tensor):
            raise TypeError(
                f"lr_schedule({step}, ...) returned a {type(rate).__name__}, not a float"
            )
    return torch.tensor([float(r) for r in rates], dtype=torch.float64)


def clip_gradients(obj: Any, case: Case) -> tuple[torch.Tensor, list[Any]]:
    """``clip_grad_norm``: parameters holding ``case["grads"]`` (None: no gradient).

    Returns (total_norm as float64, the gradients after the call).
    """
    params = []
    for grad in case["grads"]:
        p = torch.zeros(grad.shape if grad is not None else (2,), requires_grad=True)
        p.grad = None if grad is None else grad.clone()
        params.append(p)
    target = params[0] if case.get("single") else params
    if case.get("iterator"):  # what model.parameters() gives: it can be iterated once
        target = (p for p in params)
    total = obj(target, *case.get("args", []), **case.get("kwargs", {}))
    if not isinstance(total, int | float | torch.Tensor) or isinstance(total, bool):
        raise TypeError(f"clip_grad_norm should return the total norm, got {type(total).__name__}")
    total = torch.as_tensor(total).detach().to(torch.float64).reshape(())
    return total, [None if p.grad is None else p.grad.detach() for p in params]


def optimizer_trajectory(obj: Any, case: Case) -> tuple[Any, ...]:
    """``AdamW``: run ``len(case["noise"])`` steps on a fixed quadratic, record the parameters.

    Parameter i starts at ``case["params"][i]`` and gets, at step t, the gradient
    ``curvature[i] * (p - center[i]) + noise[t][i]`` (None for a frozen parameter).
    ``case["groups"]`` lists parameter groups as {"params": [indices], **options};
    ``case["lrs"]``, when given, is written into every group before each step. With
    ``case["closure"]`` the gradients are set by a closure passed to ``step``, which
    returns the loss sum(curvature * (p - center)^2 / 2 + noise * p).
    Returns (all parameters, flattened and concatenated, after each step: (steps, n);
    what each ``step`` call returned, as a float64 tensor, NaN for None; the state of
    each parameter at the end, [step, exp_avg, exp_avg_sq], or None without state).
    """
    params = [p.clone().requires_grad_(True) for p in case["params"]]
    groups = case.get("groups")
    if groups:
        spec = [{**g, "params": [params[i] for i in g["params"]]} for g in groups]
    else:
        spec = params
    opt = obj(spec, **case.get("init", {}))
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"{type(opt).__name__} is not a torch.optim.Optimizer subclass")
    frozen = set(case.get("frozen", []))
    rows, returned = [], []
    for t, noise in enumerate(case["noise"]):
        if case.get("lrs") is not None:
            for group in opt.param_groups:
                group["lr"] = case["lrs"][t]

        def set_gradients(noise: list[torch.Tensor] = noise) -> torch.Tensor:
            loss = torch.zeros((), dtype=torch.float64)
            for i, p in enumerate(params):
                if i in frozen:
                    p.grad = None
                    continue
                gap = p.detach() - case["center"][i]
                p.grad = case["curvature"][i] * gap + noise[i]
                loss = loss + (case["curvature"][i] * gap**2 / 2 + noise[i] * p.detach()).sum()
            return loss

        if case.get("closure"):
            for p in params:
                p.grad = None  # only the closure sets them
            result = opt.step(set_gradients)
        else:
            set_gradients()
            result = opt.step()
        returned.append(math.nan if result is None else float(result))
        rows.append(torch.cat([p.detach().reshape(-1) for p in params]))
    state = []
    for p in params:
        st = opt.state.get(p, {})
        if not st:
            state.append(None)
            continue
        keys = ("step", "exp_avg", "exp_avg_sq")
        if any(k not in st for k in keys):
            state.append(f"state keys {sorted(map(str, st))}, expected {list(keys)}")
            continue
        step = st["step"]
        state.append([float(step), st["exp_avg"].detach(), st["exp_avg_sq"].detach()])
    return torch.stack(rows), torch.tensor(returned, dtype=torch.float64), state


def _merges_tensor(tok: Any) -> torch.Tensor:
    merges = getattr(tok, "merges", None)
    if not isinstance(merges, dict):
        raise TypeError(
            "the tokenizer's `merges` should be a dict {(a, b): new_id}, got "
            f"{type(merges).__name__}"
        )
    rows = [[int(pair[0]), int(pair[1]), int(new_id)] for pair, new_id in merges.items()]
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), 3)


def _encode(tok: Any, text: str) -> torch.Tensor:
    ids = tok.encode(text)
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ids
    ):
        raise TypeError(f"encode should return a list of ints, got {type(ids).__name__}")
    return torch.tensor(ids, dtype=torch.long)


def _vocab(tok: Any) -> Any:
    """The tokenizer's ``vocab`` as [id, list of bytes] rows in id order, or what is wrong."""
    vocab = getattr(tok, "vocab", None)
    if not isinstance(vocab, dict) or not all(isinstance(v, bytes) for v in vocab.values()):
        return "no `vocab` dict {id: bytes}"
    return [[int(i), list(vocab[i])] for i in sorted(vocab)]


def bpe_methods(obj: Any, case: Case) -> tuple[Any, ...]:
    """``BPETokenizer``: train (``BPETokenizer.train``) or build from merges, then use it.

    With ``case["text"]`` the tokenizer is ``obj.train(text, vocab_size[, pattern])``,
    else ``obj(case["merges"], pattern)``. Returns (merges as an (M, 3) tensor of
    [a, b, new_id] rows in learning order, the ids of each text of
    ``case["encode"]`` (encode must return a list of ints), the text of each id list
    of ``case["decode"]``, decode(encode(s)) for each s of ``case["roundtrip"]``, the
    text of each id list of ``case["decode"]`` given as a 1-D int64 tensor, the
    ``vocab`` attribute as [id, bytes] rows, the ``pattern`` attribute, and
    ``obj.merge_pair(ids, pair, new_id)`` for each [ids, pair, new_id] of
    ``case["merge_pair"]``).
    """
    pattern = case.get("pattern")
    extra = {} if pattern is None else {"pattern": pattern}
    if "text" in case:
        tok = obj.train(case["text"], case["vocab_size"], **extra)
    else:
        tok = obj([tuple(m) for m in case["merges"]], **extra)
    encoded = [_encode(tok, t) for t in case["encode"]]
    decoded = [tok.decode(list(ids)) for ids in case["decode"]]
    roundtrip = [tok.decode(list(tok.encode(t))) for t in case["roundtrip"]]
    from_tensors = [tok.decode(torch.tensor(ids, dtype=torch.long)) for ids in case["decode"]]
    pattern_attribute = getattr(tok, "pattern", "no `pattern` attribute")
    merged = [obj.merge_pair(list(i), tuple(p), n) for i, p, n in case.get("merge_pair", [])]
    return (
        _merges_tensor(tok),
        encoded,
        decoded,
        roundtrip,
        from_tensors,
        _vocab(tok),
        pattern_attribute,
        merged,
    )


class Bigram(nn.Module):
    """The model the training loop is graded with: logits = table[ids] (a bigram model)."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab_size, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids)  # (B, T, V)


class GainBigram(Bigram):
    """A bigram model with a bias (a 1-D parameter) and logits scaled by ``gain``: the model of
    the cases with the default optimizer (which decays matrices, not biases); a gain of 8
    makes gradient norms above 1, so the default clipping acts."""

    def __init__(self, vocab_size: int, gain: float) -> None:
        super().__init__(vocab_size)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self.gain = gain

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.gain * (self.table(ids) + self.bias)  # (B, T, V)


PROGRESS_BAR = re.compile(r"\d+/\d+ \[")  # tqdm's "12/12 [00:00<00:00, ...]"


class RecordingSGD(torch.optim.SGD):
    """SGD with momentum that notes, at each step, the learning rate and the gradient norm."""

    def __init__(self, params: Any) -> None:
        super().__init__(params, lr=0.0, momentum=0.9)
        self.lrs: list[float] = []
        self.grad_norms: list[float] = []

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        grads = [
            p.grad.reshape(-1) for g in self.param_groups for p in g["params"] if p.grad is not None
        ]
        norm = float(torch.linalg.vector_norm(torch.cat(grads))) if grads else 0.0
        self.lrs.append(float(self.param_groups[0]["lr"]))
        self.grad_norms.append(norm)
        return super().step(closure)


def train_loop(obj: Any, case: Case) -> tuple[Any, ...]:
    """``train_language_model``: train a bigram model with a recording SGD optimizer.

    The loop gets ``optimizer=`` (SGD with momentum 0.9 that records what the
    loop did), ``generator=`` (seeded by ``case["seed"]``) and ``progress=False``.
    With ``case["default_optimizer"]`` it gets no optimizer (its own AdamW) and
    trains a :class:`GainBigram` of gain ``case["gain"]``; with
    ``case["default_progress"]`` no ``progress`` argument is given. Returns (the
    loss history, the learning rate of each optimizer step, the gradient norm at
    each step (both empty with the default optimizer), the final parameters of the
    model, whether a tqdm progress bar was written to stderr).
    """
    if case.get("default_optimizer"):
        model: nn.Module = GainBigram(case["vocab_size"], case["gain"])
    else:
        model = Bigram(case["vocab_size"])
    model.load_state_dict(case["state"])
    opt = None if case.get("default_optimizer") else RecordingSGD(model.parameters())
    extra: dict[str, Any] = {} if opt is None else {"optimizer": opt}
    if not case.get("default_progress"):
        extra["progress"] = False
    shown = io.StringIO()
    with contextlib.redirect_stderr(shown):
        history = obj(
            model,
            case["data"].clone(),
            generator=torch.Generator().manual_seed(case["seed"]),
            **extra,
            **case.get("kwargs", {}),
        )
    if isinstance(history, torch.Tensor):
        history = history.reshape(-1).tolist()
    if not isinstance(history, list | tuple):
        raise TypeError(
            f"train_language_model should return a list of losses, got {type(history).__name__}"
        )
    losses = torch.tensor([float(v) for v in history], dtype=torch.float64)
    return (
        losses,
        torch.tensor([] if opt is None else opt.lrs, dtype=torch.float64),
        torch.tensor([] if opt is None else opt.grad_norms, dtype=torch.float64),
        [p.detach() for p in model.parameters()],
        bool(PROGRESS_BAR.search(shown.getvalue())),
    )


# ------------------------------------------------------------------------- checker


def check_batch(case: Case, actual: Any, tol: Tolerance) -> str | None:
    """``get_batch``: valid windows, y shifted by one, the generator used, the documented draw."""
    del tol
    if not isinstance(actual, tuple | list) or len(actual) != 4:
        return "should return a tuple (x, y)"
    x, y, x2, y2 = actual
    data, batch, block = case["args"][0], case["args"][1], case["args"][2]
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            return f"`{name}` should be a tensor, got a {type(t).__name__}"
        if tuple(t.shape) != (batch, block):
            return (
                f"`{name}` has shape {tuple(t.shape)}, expected (batch_size, block_size) = "
                f"{(batch, block)}"
            )
        if t.dtype != data.dtype:
            return f"`{name}` has dtype {t.dtype}, expected the dtype of data, {data.dtype}"
    n = data.shape[0]
    windows = data.unfold(0, block, 1)  # (n - block + 1, block): every window of data
    offsets = []
    for b in range(batch):
        found = (windows == x[b]).all(dim=-1).nonzero().flatten()
        if found.numel() == 0:
            return f"row {b} of x is not a window of consecutive tokens of data"
        o = int(found[0])
        if o > n - block - 1:
            return (
                f"row {b} of x starts at offset {o}: then y would run past the end of data; "
                f"offsets go from 0 to N - block_size - 1 = {n - block - 1}"
            )
        if torch.equal(y[b], x[b]):
            return "y equals x: y must be x shifted by one position, y[b, t] = data[o_b + t + 1]"
        if not torch.equal(y[b], data[o + 1 : o + block + 1]):
            return (
                f"row {b} of y is not row {b} of x shifted by one position: "
                "y[b, t] must be data[o_b + t + 1], the token that follows x[b, t]"
            )
        offsets.append(o)
    if not (torch.equal(x, x2) and torch.equal(y, y2)):
        return (
            "two calls with generators of the same seed gave different batches: draw the "
            "offsets from `generator` (torch.randint(..., generator=generator))"
        )
    if case.get("coverage"):
        missing = sorted(set(range(n - block)) - set(offsets))
        if missing:
            return (
                f"in {batch} draws the offset {missing[-1]} never came up: offsets go from 0 "
                f"to N - block_size - 1 = {n - block - 1} (randint's upper bound is exclusive: "
                "torch.randint(N - block_size, ...))"
            )
    ex, ey = case["expected"][0], case["expected"][1]
    if not (torch.equal(x, ex) and torch.equal(y, ey)):
        return (
            "your windows are valid, but not the ones the documented draw gives: draw all "
            "offsets with one call, torch.randint(N - block_size, (batch_size,), "
            "generator=generator, device=generator.device), and take row b from offset b"
        )
    return None


# --------------------------------------------------------------------- distributed


def _send(conn: Any, value: Any) -> None:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    conn.send_bytes(buffer.getvalue())
    conn.close()


def _rank_main(
    fn: Callable[[int, int], Any],
    rank: int,
    world_size: int,
    store: str,
    conn: Any,
    timeout: float,
) -> None:  # pragma: no cover - runs in a forked process
    import torch.distributed as dist

    torch.set_num_threads(1)  # a forked process must not reuse the parent's OpenMP pool
    try:
        dist.init_process_group(
            "gloo",
            store=dist.FileStore(store, world_size),
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout + 10),  # the parent's deadline comes first
        )
        result = ("ok", fn(rank, world_size))
    except NotImplementedError as exc:
        result = ("todo", str(exc))
    except BaseException as exc:  # noqa: BLE001 - student code may raise anything
        result = ("error", student_error(exc))
    try:
        _send(conn, result)
    except Exception as exc:  # noqa: BLE001 - an answer torch.save cannot write
        _send(conn, ("error", f"its answer could not be sent back: {student_error(exc)}"))
    # Stay in the group until the parent has every rank's answer and ends us all: a rank
    # that left early would turn another rank's unmatched collective into a confusing
    # "connection reset" instead of the parent's "did not finish".
    time.sleep(timeout + 10)


def run_ranks(
    fn: Callable[[int, int], Any], world_size: int, timeout: float = RANK_TIMEOUT
) -> list[Any]:
    """``fn(rank, world_size)`` in ``world_size`` forked processes joined in a gloo group.

    Each process is one rank of the default process group (gloo backend,
    initialised through a file, so only the loopback device is needed). Returns
    the results in rank order; they travel back with ``torch.save``, so they
    should be tensors, numbers, strings, None, or lists, tuples and dicts of those.
    Raises NotImplementedError when a rank did, RuntimeError when a rank failed,
    died, or the ranks did not finish within ``timeout`` seconds (a collective
    that not every rank calls waits forever).
    """
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed")
    if "fork" not in mp.get_all_start_methods():
        raise RuntimeError("running several ranks needs the 'fork' start method (Linux, macOS)")
    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="llm-course-ranks-") as tmp:
        store = os.path.join(tmp, "store")
        procs, readers = [], {}
        for rank in range(world_size):
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_rank_main, args=(fn, rank, world_size, store, writer, timeout)
            )
            proc.daemon = True
            proc.start()
            writer.close()
            procs.append(proc)
            readers[reader] = rank
        raw: dict[int, bytes | None] = {}
        deadline = time.monotonic() + timeout
        problem = ""
        try:
            while readers and not problem:
                left = deadline - time.monotonic()
                if left <= 0:
                    waiting = sorted(readers.values())
                    problem = (
                        f"rank(s) {waiting} did not finish within {timeout:g} s: does every rank "
                        "call the same collectives (all_reduce, all_gather) in the same order?"
                    )
                    break
                for reader in wait(list(readers), timeout=min(left, 1.0)):
                    rank = readers.pop(reader)
                    try:
                        raw[rank] = reader.recv_bytes()
                    except (EOFError, OSError):
                        raw[rank] = None
                    if raw[rank] is None:
                        problem = f"rank {rank} died (killed, or out of memory?)"
                    else:
                        status, value = torch.load(io.BytesIO(raw[rank]), weights_only=True)
                        if status == "todo":
                            for proc in procs:
                                proc.kill()
                            raise NotImplementedError(value)
                        if status == "error":
                            problem = f"rank {rank} of {world_size} raised {value}"
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
                proc.join(timeout=5)
    if problem:
        raise RuntimeError(problem)
    return [torch.load(io.BytesIO(raw[r]), weights_only=True)[1] for r in range(world_size)]


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


@contextlib.contextmanager
def _counting_all_reduce(counter: list[int]) -> Any:
    """``torch.distributed.all_reduce`` counts its calls in ``counter`` meanwhile (a call through
    a name bound before, ``from torch.distributed import all_reduce``, is not seen)."""
    import torch.distributed as dist

    original = dist.all_reduce

    def counted(*args: Any, **kwargs: Any) -> Any:
        counter.append(1)
        return original(*args, **kwargs)

    dist.all_reduce = counted
    try:
        yield
    finally:
        dist.all_reduce = original


def data_parallel_grads(obj: Any, case: Case) -> tuple[list[list[Any]], list[bool], list[bool]]:
    """``all_reduce_gradients``: each rank's replica holds its own gradients; call obj(model).

    Returns (for every rank, the gradients after the call (None where a parameter
    had none), in the order of ``named_parameters()``; for every rank, whether the
    call made at most one ``dist.all_reduce`` call (one flat buffer); for every
    rank, whether it returned None). With ``case["no_group"]`` it runs in this
    process, without a process group, as rank 0 of 1.
    """

    def work(rank: int, world_size: int) -> tuple[list[Any], bool, bool]:
        model = _mlp(case["sizes"])
        model.load_state_dict(case["state"])
        for name, p in model.named_parameters():
            grad = case["grads"][rank].get(name)
            p.grad = None if grad is None else grad.clone()
        calls: list[int] = []
        with _counting_all_reduce(calls):
            returned = obj(model)
        grads = [None if p.grad is None else p.grad.detach() for p in model.parameters()]
        return grads, len(calls) <= 1, returned is None

    if case.get("no_group"):
        per_rank = [work(0, 1)]
    else:
        per_rank = run_ranks(work, case["world_size"])
    return tuple([r[i] for r in per_rank] for i in range(3))  # type: ignore[return-value]


def tensor_parallel_layer(obj: Any, case: Case) -> tuple[list[Any], ...]:
    """``ColumnParallelLinear`` / ``RowParallelLinear`` on ``case["world_size"]`` ranks.

    Rank r builds ``obj(**case["init"])``, loads ``case["rank_states"][r]`` (its
    shard of one full linear layer), runs forward on ``case["rank_inputs"][r]``
    and backward from sum(y * ``case["rank_probes"][r]``). Returns (output,
    input_grad, weight_grad, bias_grad), each a list with one entry per rank. With
    ``case["no_group"]`` it runs in this process, without a process group.
    """

    def work(rank: int, world_size: int) -> tuple[Any, ...]:
        layer = obj(**case.get("init", {}))
        if not isinstance(layer, nn.Module):
            raise TypeError(f"{type(layer).__name__} is not a torch.nn.Module subclass")
        result = layer.load_state_dict(case["rank_states"][rank], strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise StateDictMismatch(result.missing_keys, result.unexpected_keys)
        x = case["rank_inputs"][rank].clone().requires_grad_(True)
        y = layer(x)
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"forward should return a tensor, got {type(y).__name__}")
        probe = case["rank_probes"][rank]
        if y.shape == probe.shape and y.requires_grad:
            (y * probe).sum().backward()
        grads = dict(layer.named_parameters())
        weight, bias = grads.get("weight"), grads.get("bias")
        return (
            y.detach(),
            torch.zeros_like(x) if x.grad is None else x.grad,
            None if weight is None or weight.grad is None else weight.grad,
            None if bias is None or bias.grad is None else bias.grad,
        )

    if case.get("no_group"):  # one process, no process group: a plain linear layer
        per_rank = [work(0, 1)]
    else:
        per_rank = run_ranks(work, case["world_size"])
    return tuple([r[i] for r in per_rank] for i in range(4))
