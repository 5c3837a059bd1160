"""Time the array API module against the numpy target, PyTorch autograd, jax.grad and numpy-vs-Dask.

Run ``python benchmarks/bench_array_api.py`` (``--help`` for options).  As in
``bench.py``, the contenders of one row are timed interleaved, round after
round, with one BLAS thread, and the table shows medians and ratios from
the same run.  Each contender is first checked to compute the same loss.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from bench import CONFIGS, LoadWatch, blas_info, limit_threads, measure  # noqa: E402

from derive import naming, spec  # noqa: E402
from derive.backends import array_api  # noqa: E402
from derive.backends.numpy import module as numpy_module  # noqa: E402
from derive.derivation import derive  # noqa: E402


def load(path: Path):
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def modules(sizes: tuple[int, ...], folder: Path):
    """(array API module, numpy target module) for ``sizes``, tanh and l2."""
    network = spec.network(",".join(map(str, sizes)))
    derivation = derive(network)
    name = naming.default_module_name(network)
    (folder / f"aa_{name}.py").write_text(array_api.render(derivation, name), encoding="utf-8")
    (folder / f"np_{name}.py").write_text(numpy_module.render(derivation, name), encoding="utf-8")
    return load(folder / f"aa_{name}.py"), load(folder / f"np_{name}.py")


def inputs(sizes: tuple[int, ...], batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, sizes[0])), rng.standard_normal((batch, sizes[-1]))


def same_value(label: str, got: float, want: float) -> None:
    if not abs(got - want) <= 1e-9 * abs(want):
        raise SystemExit(f"{label}: loss {got} differs from the numpy target's {want}; not timing")


def numpy_row(aa, target, config):
    x, y = inputs(config.sizes, config.batch)
    params = target.init_params(0)
    out = [(np.empty_like(w), np.empty_like(b)) for w, b in params]
    same_value(
        "array API on numpy", float(aa.backprop(params, x, y)[0]), target.backprop(params, x, y)[0]
    )
    return {
        "numpy target": lambda: target.backprop(params, x, y, out),
        "array API on numpy": lambda: aa.backprop(params, x, y),
    }


def torch_row(aa, target, config):
    import torch

    x, y = inputs(config.sizes, config.batch)
    params = target.init_params(0)
    want = target.backprop(params, x, y)[0]
    tp = aa.as_params(params, torch)
    tx, ty = torch.asarray(x), torch.asarray(y)
    leaves = [a.clone().requires_grad_(True) for pair in tp for a in pair]

    def autograd():
        h = tx
        for k in range(0, len(leaves), 2):
            h = torch.tanh(h @ leaves[k] + leaves[k + 1])
        value = ((h - ty) ** 2).sum()
        return value, torch.autograd.grad(value, leaves)

    same_value("array API on torch", float(aa.backprop(tp, tx, ty)[0]), want)
    same_value("torch autograd", float(autograd()[0]), want)
    return {"torch eager autograd": autograd, "array API on torch": lambda: aa.backprop(tp, tx, ty)}


def jax_row(aa, target, config):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    x, y = inputs(config.sizes, config.batch)
    params = target.init_params(0)
    want = target.backprop(params, x, y)[0]
    jp = aa.as_params(params, jnp)
    jx, jy = jnp.asarray(x), jnp.asarray(y)

    def loss(ps, x, y):
        h = x
        for w, b in ps:
            h = jnp.tanh(h @ w + b)
        return jnp.sum((h - y) ** 2)

    grad = jax.jit(jax.value_and_grad(loss))
    ours = jax.jit(aa.backprop)
    same_value("array API under jit", float(ours(jp, jx, jy)[0]), want)
    same_value("jax.grad", float(grad(jp, jx, jy)[0]), want)
    return {
        "jax.jit(jax.value_and_grad(loss))": lambda: jax.block_until_ready(grad(jp, jx, jy)),
        "jax.jit(array API backprop)": lambda: jax.block_until_ready(ours(jp, jx, jy)),
    }


def dask_rows(aa, target, rows_list, workers, rounds):
    """Seconds per full-batch backprop: numpy on all rows vs Dask, one chunk per worker."""
    import dask.array as da
    from distributed import Client, LocalCluster

    sizes = (20, 50, 10)
    params = target.init_params(0)
    results = []
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(limit_threads, 1)
        dparams = [tuple(da.from_array(a) for a in pair) for pair in params]
        for rows in rows_list:
            x, y = inputs(sizes, rows)
            dx, dy = (da.from_array(a, chunks=(-(-rows // workers), -1)) for a in (x, y))
            dx, dy = client.persist([dx, dy])
            want = target.backprop(params, x, y)[0]
            same_value(
                "Dask", float(client.compute(aa.backprop(dparams, dx, dy)[0]).result()), want
            )
            timed = measure(
                {
                    "numpy": lambda x=x, y=y: target.backprop(params, x, y),
                    "dask": lambda dx=dx, dy=dy: client.compute(
                        aa.backprop(dparams, dx, dy), sync=True
                    ),
                },
                rounds,
                0.3,
            )
            results.append((rows, timed["numpy"], timed["dask"]))
    return results


def fmt(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs" if seconds < 1e-2 else f"{seconds * 1e3:,.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sample", type=float, default=0.2, help="seconds per timed sample")
    parser.add_argument("--dask-rows", default="20000,200000,1000000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma list of: numpy,torch,jax,dask")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    limit_threads(1)
    print(f"# {platform.platform()}, Python {platform.python_version()}, numpy {np.__version__}")
    print(f"# BLAS: {blas_info()}; one thread; {os.cpu_count()} CPUs; {args.rounds} rounds")
    watch = LoadWatch()
    start = time.perf_counter()
    plan = [("numpy", numpy_row, "BC"), ("torch", torch_row, "ABC"), ("jax", jax_row, "C")]
    print("| backend | config | baseline | baseline time | array API | array API time | ratio |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for lib, row, names in plan:
            if lib in skip:
                continue
            for name in names:
                config = CONFIGS[name]
                aa, target = modules(config.sizes, Path(tmp))
                contenders = row(aa, target, config)
                timed = measure(contenders, args.rounds, args.sample)
                (base, base_t), (ours, ours_t) = timed.items()
                print(
                    f"| {lib} | {name} {list(config.sizes)} m={config.batch} | {base} | "
                    f"{fmt(base_t)} | {ours} | {fmt(ours_t)} | {ours_t / base_t:.2f}× |",
                    flush=True,
                )
        if "dask" not in skip:
            aa, target = modules((20, 50, 10), Path(tmp))
            rows_list = [int(r) for r in args.dask_rows.split(",")]
            print(
                f"\n| rows (20-50-10, {args.workers} worker processes) | numpy | Dask | Dask / numpy |"
            )
            print("|---|---|---|---|")
            for rows, np_t, dask_t in dask_rows(aa, target, rows_list, args.workers, args.rounds):
                print(
                    f"| {rows:,} | {fmt(np_t)} | {fmt(dask_t)} | {dask_t / np_t:.2f}× |", flush=True
                )
    busy = watch.foreign_cores()
    load = "unknown" if busy is None else f"{busy:.2f}"
    print(f"\n# {time.perf_counter() - start:.0f} s; other processes used {load} cores meanwhile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
