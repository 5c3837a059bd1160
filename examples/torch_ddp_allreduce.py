"""Synchronous data-parallel SGD: two processes, gradients all-reduced with torch.distributed.

Each process holds half the rows and computes the gradient of its shard with
the generated array API module on torch tensors; ``all_reduce`` sums the
shard gradients, which is the full-batch gradient for a summed loss (the
sum-of-shards lemma, ``derive.shards``; a mean loss would weight by rows).
Every process then takes the same step, so the trajectory is the
one-process trajectory on all rows: this script checks that, on 127.0.0.1
with the gloo backend (CPU), and exits 1 if they differ.

    python examples/torch_ddp_allreduce.py            # 2 processes, 20 steps
    python examples/torch_ddp_allreduce.py --steps 100

Across machines, start one process per machine with torchrun and the same
code; this is the tool for minibatch SGD, where Dask's per-task overhead
would dominate every step.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

MODULE = Path(__file__).resolve().parent.parent / "generated" / "array_api" / "mlp_20_50_10.py"
ROWS, LEARNING_RATE = 256, 1e-3


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data(mlp):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, mlp.SIZES[0]))
    return torch.asarray(x), torch.asarray(np.tanh(x[:, : mlp.SIZES[-1]]))


def train(mlp, x, y, steps: int, reduce=None) -> list[float]:
    """SGD on (x, y); ``reduce`` sums a gradient over processes. Returns the losses."""
    params = mlp.init_params(seed=1, xp=torch)
    losses = []
    for _ in range(steps):
        value, grads = mlp.backprop(params, x, y)
        if reduce is not None:
            value = reduce(value)
            grads = [(reduce(dw), reduce(db)) for dw, db in grads]
        losses.append(float(value))
        params = [
            (w - LEARNING_RATE * dw, b - LEARNING_RATE * db)
            for (w, b), (dw, db) in zip(params, grads, strict=True)
        ]
    return [*losses, *(float(a.abs().sum()) for pair in params for a in pair)]


def worker(rank: int, world: int, port: int, steps: int, results) -> None:
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        mlp = load(MODULE)
        x, y = data(mlp)
        shard = slice(rank * ROWS // world, (rank + 1) * ROWS // world)

        def all_reduce(t: torch.Tensor) -> torch.Tensor:
            t = t.clone()
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            return t

        results[rank] = train(mlp, x[shard], y[shard], steps, all_reduce)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # localhost only
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(
            worker,
            args=(args.processes, free_port(), args.steps, results),
            nprocs=args.processes,
        )
        shared = [list(results[rank]) for rank in range(args.processes)]
    mlp = load(MODULE)
    alone = train(mlp, *data(mlp), args.steps)
    gap = max(
        abs(a - b) / max(abs(b), 1e-300) for run in shared for a, b in zip(run, alone, strict=True)
    )
    print(
        f"{args.processes} processes vs one, {args.steps} SGD steps: loss {alone[0]:.4f} -> "
        f"{alone[args.steps - 1]:.4f}; largest relative difference {gap:.1e}"
    )
    if not gap <= 1e-12:
        print("error: the all-reduced trajectory differs from one process's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
