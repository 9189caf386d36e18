"""Chapter 04 beyond one process: data and tensor parallelism on torch.distributed.

Two processes are started with torch.multiprocessing.spawn and joined in a gloo
process group on the CPU (the same code runs with nccl on GPUs). Oracles, computed
here in one process: training on the whole batch (data parallelism by hand must give
the same parameters), one nn.Linear and a dense two-layer MLP (tensor parallelism must
give the same outputs and, shard by shard, the same gradients).

Then the grader's own way of running ranks (forked processes, autograder/public/
training.py) is checked: a rank that never reaches a collective is reported instead
of hanging, a stub's NotImplementedError comes through, and the reference gets full
marks for the three distributed exercises inside the bubblewrap sandbox.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp_mp
import torch.nn as nn
import torch.nn.functional as F

from autograder.public.training import run_ranks
from solutions.training import (
    AdamW,
    ColumnParallelLinear,
    RowParallelLinear,
    all_reduce_gradients,
)

WORLD = 2
STEPS = 3


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 5, generator=g), torch.randint(3, (8,), generator=g)


def full_layer(n_in: int, n_out: int, seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out)


def inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return (
        torch.randn(2, 3, 8, generator=g),
        torch.randn(2, 3, 6, generator=g),
        torch.randn(2, 3, 8, generator=g),
    )


def _worker(rank: int, world: int, folder: str) -> None:
    """One rank: every check's results saved to folder/rank{r}.pt."""
    torch.set_num_threads(1)
    store = dist.FileStore(os.path.join(folder, "store"), world)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    out = {}

    # data parallelism by hand: each rank trains on its half of the batch
    model = make_model()
    opt = AdamW(model.parameters(), lr=0.05)
    x, y = batch()
    share = x.shape[0] // world
    for _ in range(STEPS):
        loss = F.cross_entropy(
            model(x[rank * share : (rank + 1) * share]), y[rank * share : (rank + 1) * share]
        )
        opt.zero_grad()
        loss.backward()
        all_reduce_gradients(model)
        opt.step()
    out["ddp"] = [p.detach().clone() for p in model.parameters()]

    # tensor parallelism: each layer against one nn.Linear
    xin, probe, _ = inputs()
    for name, cls in (("column", ColumnParallelLinear), ("row", RowParallelLinear)):
        full = full_layer(8, 6, seed=3)
        layer = cls(8, 6)
        with torch.no_grad():
            if name == "column":
                k = 6 // world
                layer.weight.copy_(full.weight[rank * k : (rank + 1) * k])
                layer.bias.copy_(full.bias[rank * k : (rank + 1) * k])
            else:
                k = 8 // world
                layer.weight.copy_(full.weight[:, rank * k : (rank + 1) * k])
                layer.bias.copy_(full.bias)
        xr = xin.clone().requires_grad_()
        yr = layer(xr)
        (yr * probe).sum().backward()
        out[name] = (yr.detach(), xr.grad, layer.weight.grad, layer.bias.grad)

    # the Megatron MLP: column (kept split) -> GELU -> row (split input)
    _, _, xm = inputs()
    fc1, fc2 = full_layer(8, 12, seed=4), full_layer(12, 8, seed=5)
    col = ColumnParallelLinear(8, 12, gather_output=False)
    row = RowParallelLinear(12, 8, input_is_parallel=True)
    k = 12 // world
    with torch.no_grad():
        col.weight.copy_(fc1.weight[rank * k : (rank + 1) * k])
        col.bias.copy_(fc1.bias[rank * k : (rank + 1) * k])
        row.weight.copy_(fc2.weight[:, rank * k : (rank + 1) * k])
        row.bias.copy_(fc2.bias)
    xr = xm.clone().requires_grad_()
    ym = row(F.gelu(col(xr)))
    ym.pow(2).sum().backward()
    out["mlp"] = (ym.detach(), xr.grad, col.weight.grad, row.weight.grad, row.bias.grad)
    torch.save(out, os.path.join(folder, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    folder = tmp_path_factory.mktemp("ranks")
    tmp_mp.spawn(_worker, args=(WORLD, str(folder)), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_data_parallel_training_equals_single_process_training(ranks):
    """Oracle: the same model trained in one process on the whole batch (mean loss)."""
    model = make_model()
    opt = AdamW(model.parameters(), lr=0.05)
    x, y = batch()
    for _ in range(STEPS):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for r in range(WORLD):
        for ours, single in zip(ranks[r]["ddp"], model.parameters(), strict=True):
            torch.testing.assert_close(ours, single.detach(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["column", "row"])
def test_parallel_linear_equals_one_nn_linear_forward_and_backward(ranks, name):
    """Oracle: one nn.Linear(8, 6) with the full weights; every rank returns the full
    output and input gradient, and holds its shard of the weight gradient."""
    full = full_layer(8, 6, seed=3)
    xin, probe, _ = inputs()
    x = xin.clone().requires_grad_()
    y = full(x)
    (y * probe).sum().backward()
    for r in range(WORLD):
        out, x_grad, w_grad, b_grad = ranks[r][name]
        torch.testing.assert_close(out, y.detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(x_grad, x.grad, atol=1e-5, rtol=1e-5)
        if name == "column":
            k = 6 // WORLD
            torch.testing.assert_close(w_grad, full.weight.grad[r * k : (r + 1) * k])
            torch.testing.assert_close(b_grad, full.bias.grad[r * k : (r + 1) * k])
        else:
            k = 8 // WORLD
            torch.testing.assert_close(w_grad, full.weight.grad[:, r * k : (r + 1) * k])
            torch.testing.assert_close(b_grad, full.bias.grad)


def test_megatron_mlp_equals_the_dense_mlp(ranks):
    """Oracle: fc2(gelu(fc1(x))) with the full layers, in one process."""
    fc1, fc2 = full_layer(8, 12, seed=4), full_layer(12, 8, seed=5)
    _, _, xm = inputs()
    x = xm.clone().requires_grad_()
    y = fc2(F.gelu(fc1(x)))
    y.pow(2).sum().backward()
    k = 12 // WORLD
    for r in range(WORLD):
        out, x_grad, w1_grad, w2_grad, b2_grad = ranks[r]["mlp"]
        torch.testing.assert_close(out, y.detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(x_grad, x.grad, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            w1_grad, fc1.weight.grad[r * k : (r + 1) * k], atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(
            w2_grad, fc2.weight.grad[:, r * k : (r + 1) * k], atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(b2_grad, fc2.bias.grad, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------- the grader's forked ranks


def test_forked_ranks_give_the_results_of_spawned_ones():
    """Oracle: the all-reduced mean, computed by hand (3 ranks)."""

    def work(rank, world):
        model = nn.Linear(2, 1)
        for p in model.parameters():
            p.grad = torch.full_like(p, float(rank + 1))
        all_reduce_gradients(model)
        return [p.grad for p in model.parameters()]

    for grads in run_ranks(work, 3):
        assert all(torch.equal(g, torch.full_like(g, 2.0)) for g in grads)


def test_a_rank_stuck_in_a_collective_is_reported_not_waited_for():
    """Oracle: the helper's contract: a timeout that names the waiting ranks."""

    def work(rank, world):
        if rank == 0:
            dist.all_reduce(torch.ones(1))  # rank 1 never joins
        return rank

    with pytest.raises(RuntimeError, match=r"did not finish within 3 s"):
        run_ranks(work, 2, timeout=3.0)


def test_a_stub_is_not_implemented_and_an_error_names_its_rank():
    """Oracle: the helper's contract (what the self-check shows for a stub or a bug)."""

    def stub(rank, world):
        raise NotImplementedError

    def bug(rank, world):
        if rank == 1:
            raise ValueError("bad shard")
        dist.barrier()

    with pytest.raises(NotImplementedError):
        run_ranks(stub, 2)
    with pytest.raises(RuntimeError, match=r"rank 1 of 2 raised ValueError: bad shard"):
        run_ranks(bug, 2)


@pytest.mark.slow
def test_reference_gets_full_marks_for_the_distributed_exercises_in_the_sandbox(root: Path):
    """Oracle: the grader itself, isolated (bubblewrap when it works here): forking ranks
    and a gloo group over the sandbox's loopback device work."""
    from autograder.core.chapters import resolve_chapter
    from autograder.core.evaluate import evaluate
    from autograder.core.grading import expectations
    from autograder.core.materialize import jobs_for
    from autograder.core.sandbox import IsolatedExecutor

    names = ["all_reduce_gradients", "ColumnParallelLinear", "RowParallelLinear"]
    chapter = expectations(resolve_chapter("04"))
    exercises = [e for e in chapter["exercises"] if e["name"] in names]
    executor = IsolatedExecutor()
    results = evaluate(
        exercises, executor(root / "solutions" / "training.py", jobs_for(chapter, names))
    )
    assert [(r.name, r.status) for r in results] == [(n, "passed") for n in names], [
        r.feedback() for r in results
    ]
