"""Full-batch training on a Dask cluster: gradients, evaluation and L-BFGS.

The data is a row-chunked ``dask.array`` kept on the workers; the generated
array API module computes the loss and gradients on it lazily, and Dask
sums the per-chunk products (the sum-of-shards lemma, ``derive.shards``).
scipy's L-BFGS sees one function: params in, (loss, gradient) out.

    python examples/dask_lbfgs.py                  # 20 000 rows, 2 local workers, seconds
    python examples/dask_lbfgs.py --rows 2000000   # bigger than is pleasant on one core
    python examples/dask_lbfgs.py --scheduler tcp://host:8786   # an existing cluster

Dask is for data that does not fit one machine, with few, large steps
(full-batch L-BFGS).  Its per-task overhead (milliseconds) makes it wrong for
minibatch SGD; see examples/torch_ddp_allreduce.py for data-parallel SGD.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster
from scipy.optimize import minimize

MODULE = Path(__file__).resolve().parent.parent / "generated" / "array_api" / "mlp_20_50_10.py"


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TEACHER = 11
"""The seed of the network whose outputs (plus noise) are the targets."""


def make_data(mlp, rows: int, chunk: int, seed: int):
    """A teacher network's outputs plus noise, generated chunk by chunk on the workers."""
    teacher = mlp.init_params(TEACHER)
    xs = da.random.default_rng(seed).standard_normal((rows, mlp.SIZES[0]), chunks=(chunk, -1))
    ys = xs.map_blocks(
        lambda block: mlp.forward(teacher, block), chunks=(chunk, mlp.SIZES[-1]), dtype=xs.dtype
    )
    noise = da.random.default_rng(seed + 2).standard_normal(ys.shape, chunks=(chunk, -1))
    return xs, ys + 0.01 * noise


def flatten(params) -> np.ndarray:
    return np.concatenate([np.ravel(a) for pair in params for a in pair])


def unflatten(theta: np.ndarray, mlp):
    params, start = [], 0
    for n_in, n_out in zip(mlp.SIZES[:-1], mlp.SIZES[1:], strict=True):
        w = theta[start : start + n_in * n_out].reshape(n_in, n_out)
        start += n_in * n_out
        b = theta[start : start + n_out].reshape(1, n_out)
        start += n_out
        params.append((w, b))
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=5_000, help="rows per chunk (per task)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--maxiter", type=int, default=10)
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler")
    parser.add_argument("--processes", action="store_true", help="worker processes, not threads")
    args = parser.parse_args(argv)

    mlp = load(MODULE)
    if args.scheduler:
        client = Client(args.scheduler)
    else:
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=args.processes,
            dashboard_address=None,
        )
        client = Client(cluster)
    with client:
        x, y = make_data(mlp, args.rows, args.chunk, seed=0)
        x, y = client.persist([x, y])  # the data lives on the workers from here on
        rows = args.rows

        def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
            # params are small: sent as one-chunk arrays; the result is (1 + params) numbers
            params = [tuple(da.from_array(a) for a in pair) for pair in unflatten(theta, mlp)]
            value, grads = client.compute(mlp.backprop(params, x, y), sync=True)
            return float(value) / rows, flatten(grads) / rows

        theta = flatten(mlp.init_params(seed=3))

        # The cluster's full-batch gradient equals numpy's on the same rows (checked on 2 chunks).
        sample = slice(0, min(rows, 2 * args.chunk))
        xs, ys = dask.compute(x[sample], y[sample])
        local_value, local_grads = mlp.backprop(unflatten(theta, mlp), xs, ys)
        dask_params = [tuple(da.from_array(a) for a in pair) for pair in unflatten(theta, mlp)]
        value, grads = client.compute(mlp.backprop(dask_params, x[sample], y[sample]), sync=True)
        gap = np.max(np.abs(flatten(grads) - flatten(local_grads))) / np.max(
            np.abs(flatten(local_grads))
        )
        print(f"cluster vs numpy on {sample.stop} rows: relative gradient gap {gap:.1e}")
        if not gap <= 1e-12 or not abs(float(value) - float(local_value)) <= 1e-12 * abs(
            float(local_value)
        ):
            print("error: the cluster's gradient differs from numpy's", file=sys.stderr)
            return 1

        before, _ = loss_and_gradient(theta)
        start = time.perf_counter()
        result = minimize(
            loss_and_gradient,
            theta,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": args.maxiter},
        )
        seconds = time.perf_counter() - start
        after, _ = loss_and_gradient(result.x)
        held_x, held_y = make_data(mlp, 2_000, 2_000, seed=10)  # evaluation on new rows
        held = mlp.loss(unflatten(result.x, mlp), *dask.compute(held_x, held_y)) / 2_000
        print(
            f"{rows} rows in {x.numblocks[0]} chunks on {len(client.scheduler_info()['workers'])} "
            f"workers: loss per row {before:.4f} -> {after:.4f} in {result.nit} L-BFGS iterations "
            f"({result.nfev} gradient evaluations, {seconds:.1f} s); held-out {float(held):.4f}"
        )
        if not after < before:
            print("error: L-BFGS did not lower the loss", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
