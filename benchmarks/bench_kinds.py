"""Time a network with layer kinds: derive's numpy module against PyTorch eager and JAX jit.

Run ``python benchmarks/bench_kinds.py`` (``--help`` for options).  The network is the
issue's [784, 256, (256 residual + layer norm) x2, 10] (tanh, the l2 loss) at m = 128,
float32 and float64.  As in ``bench.py`` (whose helpers this reuses), the contenders of
one row are timed interleaved, round after round, and the table shows medians and ratios
from the same run, with the load other processes put on the machine; each contender is
first checked to compute the same loss and gradients as derive.
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
from bench import CLOCKS, LoadWatch, _cores, blas_info, limit_threads, measure  # noqa: E402

from derive import spec  # noqa: E402
from derive.backends.numpy import module as numpy_module  # noqa: E402
from derive.derivation import derive  # noqa: E402

LAYERS = "784,256,256+res,ln,256+res,ln,10"
"""The issue's benchmark network: a dense layer, then (residual + layer norm) twice, then 10."""


def generate(folder: Path, timed: bool = False):
    """The benchmark network's module; ``timed``: its backprop adds each identity's time
    (the statements from one comment line to the next) to ``_TIMES``."""
    network = spec.network(LAYERS, "tanh", "l2")
    path = folder / "bench_kinds_module.py"
    source = numpy_module.render(derive(network), path.stem)
    path.write_text(timed_source(source) if timed else source, encoding="utf-8")
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def timed_source(source: str) -> str:
    """``source`` with a clock read at each comment line of ``backprop``'s body."""
    lines = source.splitlines()
    start = lines.index("    ws = _take_workspace(m, dtype)")
    end = lines.index("    _give_back(ws)")
    out = [*lines[:start], "    _t, _label = _clock(), 'checks'"]
    for line in lines[start:end]:
        if line.startswith("    # "):
            out.append("    _TIMES[_label] = _TIMES.get(_label, 0.0) + _clock() - _t")
            out.append(f"    _t, _label = _clock(), {line[6:]!r}")
        out.append(line)
    out += ["    _TIMES[_label] = _TIMES.get(_label, 0.0) + _clock() - _t", *lines[end:]]
    header = "import numpy as np\n"
    timed = "\n".join(out).replace(header, f"{header}from time import perf_counter as _clock\n", 1)
    return timed.replace("\n_GENERATOR", "\n_TIMES: dict[str, float] = {}\n_GENERATOR", 1)


def profile(calls: int) -> None:
    """Where derive's step goes: each identity's share of ``backprop`` with ``out=``."""
    with tempfile.TemporaryDirectory() as tmp:
        module = generate(Path(tmp), timed=True)
        for dtype in ("float32", "float64"):
            rng = np.random.default_rng(1)
            params = module.init_params(seed=0, dtype=dtype)
            x = rng.standard_normal((128, 784)).astype(dtype)
            y = rng.uniform(-0.9, 0.9, (128, 10)).astype(dtype)
            grads = [tuple(np.empty_like(a) for a in pair) for pair in params]
            for _ in range(3):
                module.backprop(params, x, y, grads)
            module._TIMES.clear()
            for _ in range(calls):
                module.backprop(params, x, y, grads)
            total = sum(module._TIMES.values())
            print(f"\n{dtype}: {total / calls * 1e6:,.0f} µs per step (timed statements)")
            for label, spent in sorted(module._TIMES.items(), key=lambda kv: -kv[1])[:15]:
                print(f"  {spent / calls * 1e6:8,.0f} µs {spent / total:5.1%}  {label}")


def torch_contender(params, x, y, eps):
    """The same network in PyTorch eager: F.layer_norm and autograd."""
    import torch
    import torch.nn.functional as F

    (w1, b1), (w2, b2), (g3, be3), (w4, b4), (g5, be5), (w6, b6) = [
        tuple(torch.tensor(a, requires_grad=True) for a in pair) for pair in params
    ]
    ps = [w1, b1, w2, b2, g3, be3, w4, b4, g5, be5, w6, b6]
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    n = w2.shape[1]

    def run():
        a1 = torch.tanh(tx @ w1 + b1)
        a2 = torch.tanh(a1 @ w2 + b2) + a1
        a3 = F.layer_norm(a2, (n,), g3[0], be3[0], eps)
        a4 = torch.tanh(a3 @ w4 + b4) + a3
        a5 = F.layer_norm(a4, (n,), g5[0], be5[0], eps)
        value = ((torch.tanh(a5 @ w6 + b6) - ty) ** 2).sum()
        return value.item(), torch.autograd.grad(value, ps)

    return run


def jax_contender(params, x, y, eps):
    import jax
    import jax.numpy as jnp

    if x.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)

    def norm(a, g, b):
        mu = a.mean(axis=1, keepdims=True)
        var = ((a - mu) ** 2).mean(axis=1, keepdims=True)
        return (a - mu) / jnp.sqrt(var + eps) * g + b

    def loss(ps, x, y):
        (w1, b1), (w2, b2), (g3, be3), (w4, b4), (g5, be5), (w6, b6) = ps
        a1 = jnp.tanh(x @ w1 + b1)
        a3 = norm(jnp.tanh(a1 @ w2 + b2) + a1, g3, be3)
        a5 = norm(jnp.tanh(a3 @ w4 + b4) + a3, g5, be5)
        return jnp.sum((jnp.tanh(a5 @ w6 + b6) - y) ** 2)

    step = jax.jit(jax.value_and_grad(loss))
    ps = [tuple(jnp.asarray(a) for a in pair) for pair in params]
    jx, jy = jnp.asarray(x), jnp.asarray(y)

    def run():
        return jax.block_until_ready(step(ps, jx, jy))

    return run


def matmul_floor(params, x):
    """The network's matrix products alone (forward a W, backward aᵀ δ and δ Wᵀ), in numpy:
    the BLAS work no emitted code avoids."""
    weights = [pair[0] for pair in params if pair[0].shape[0] != 1]
    acts = [x] + [np.ones((x.shape[0], w.shape[1]), x.dtype) for w in weights]

    def run():
        for k, w in enumerate(weights):
            acts[k] @ w
            acts[k].T @ acts[k + 1]
            if k:
                acts[k + 1] @ w.T

    return run


def prime_sgemm() -> None:
    """One 64 x 128 by 128 x 384 float32 product.  Measured on the 2-vCPU EPYC VM with
    numpy's bundled OpenBLAS 0.3.31 (Haswell kernels): until a process has run a float32
    product with about 352 or more output columns, a 128 x 784 by 784 x 256 product takes
    4.3 ms (12 ms under load, its wall time three times its CPU time) instead of 1.6 ms,
    in every thread; after one such product it stays fast.  float64 is not affected."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 128)).astype(np.float32)
    np.dot(a, rng.standard_normal((128, 384)).astype(np.float32))


def sgemm_state(primed: bool) -> str:
    """The state of OpenBLAS's float32 products the run starts in (``prime_sgemm``)."""
    if primed:
        return "primed by one 64x128x384 product (--prime-sgemm)"
    return "not primed (numpy's OpenBLAS sgemm may run in its slow state: see --prime-sgemm)"


def check_same(run, module, params, x, y, rtol) -> None:
    """A contender's loss and gradients equal derive's (so both time the same work)."""
    value, grads = module.backprop(params, x, y)
    other_value, other = run()
    flat = []
    for g in other:  # torch: one tensor per parameter; jax: one pair per layer
        flat += [np.asarray(t) for t in g] if isinstance(g, (tuple, list)) else [np.asarray(g)]
    ours = [g for pair in grads for g in pair]
    assert np.isclose(float(other_value), value, rtol=rtol), (other_value, value)
    for mine, theirs in zip(ours, flat, strict=True):
        scale = max(1.0, float(np.abs(mine).max()))
        assert np.allclose(mine, theirs, rtol=rtol, atol=rtol * scale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--sample", type=float, default=0.1, help="seconds per timed sample")
    parser.add_argument("--threads", type=int, default=1, help="BLAS, PyTorch and XLA threads")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument(
        "--prime-sgemm",
        action="store_true",
        help="first run one float32 product with 384 output columns (see prime_sgemm)",
    )
    parser.add_argument(
        "--profile", type=int, metavar="CALLS", help="time each identity over CALLS steps"
    )
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    if args.prime_sgemm:
        prime_sgemm()
    if args.profile:
        print(f"# {sgemm_state(args.prime_sgemm)}; load average {os.getloadavg()[0]:.2f}")
        profile(args.profile)
        return 0
    import torch

    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}"
    )
    print(f"# BLAS: {blas_info()}; {args.threads} thread(s) per library; {args.clock} clock")
    print(f"# network --layers {LAYERS} (tanh, l2), m = {args.batch}")
    print(f"# float32 products before timing: {sgemm_state(args.prime_sgemm)}")
    print(f"# load average at start {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    watch = LoadWatch()
    with tempfile.TemporaryDirectory() as tmp:
        module = generate(Path(tmp))
        for dtype, rtol in (("float32", 1e-3), ("float64", 1e-9)):
            rng = np.random.default_rng(1)
            params = module.init_params(seed=0, dtype=dtype)
            x = rng.standard_normal((args.batch, 784)).astype(dtype)
            y = rng.uniform(-0.9, 0.9, (args.batch, 10)).astype(dtype)
            grads = [tuple(np.empty_like(a) for a in pair) for pair in params]
            contenders = {
                "numpy matmuls": matmul_floor(params, x),
                "derive": lambda p=params, x=x, y=y: module.backprop(p, x, y),
                "derive out=": lambda p=params, x=x, y=y, g=grads: module.backprop(p, x, y, g),
            }
            contenders["torch eager"] = torch_contender(params, x, y, module.EPS)
            check_same(contenders["torch eager"], module, params, x, y, rtol)
            if not args.no_jax and importlib.util.find_spec("jax"):
                contenders["jax jit"] = jax_contender(params, x, y, module.EPS)
                value, grads = contenders["jax jit"]()
                check_same(lambda v=value, g=grads: (v, g), module, params, x, y, rtol)
            machine = LoadWatch()
            medians = measure(contenders, args.rounds, args.sample, CLOCKS[args.clock])
            rows.append((dtype, medians, machine.foreign_cores(), os.getloadavg()[0]))
            print(f"# {dtype} done", flush=True)
    names = list(rows[0][1])
    header = [
        "dtype",
        *[f"{n} µs" for n in names],
        "derive/matmuls",
        "derive/torch",
        "derive out=/torch",
        "derive/jax",
        "foreign load",
    ]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for dtype, m, foreign, load in rows:
        cells = [dtype, *[f"{m[n] * 1e6:,.0f}" for n in names]]
        cells.append(f"{m['derive'] / m['numpy matmuls']:.2f}")
        cells.append(f"{m['derive'] / m['torch eager']:.2f}")
        cells.append(f"{m['derive out='] / m['torch eager']:.2f}")
        cells.append(f"{m['derive'] / m['jax jit']:.2f}" if "jax jit" in m else "–")
        cells.append(f"{_cores(foreign)} (load avg {load:.2f})")
        print("| " + " | ".join(cells) + " |")
    print(
        f"\n# load average at end {os.getloadavg()[0]:.2f}; other processes used "
        f"{_cores(watch.foreign_cores())} of the machine's cores over the whole run"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
