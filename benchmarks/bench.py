"""Time the generated backprop against plain numpy, the matmul floor, PyTorch and JAX.

Run ``python benchmarks/bench.py`` (``--help`` for options).  Every contender
for one configuration is timed interleaved, round after round, so that drift
in the machine's speed hits them all alike; the table shows medians over the
rounds and ratios taken within the same run.  PyTorch and JAX are optional
(``pip install -e '.[bench]'``); a column is left out when its package is
missing.  The run warns when another process used the CPU meanwhile, since
that makes the numbers (and OpenBLAS's threads) unreliable.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from derive import codegen, spec
from derive.derivation import derive


@dataclass(frozen=True)
class Config:
    name: str
    sizes: tuple[int, ...]
    batch: int
    dtype: type = np.float64


CONFIGS = {
    "A": Config("A", (20, 50, 10), 1),
    "B": Config("B", (20, 50, 10), 1024),
    "C": Config("C", (784, 256, 128, 10), 128),
    "D": Config("D", (1024, 1024, 1024, 1024), 512),
    "C32": Config("C32", (784, 256, 128, 10), 128, np.float32),
    "D32": Config("D32", (1024, 1024, 1024, 1024), 512, np.float32),
}


def generate(sizes: tuple[int, ...], folder: Path):
    """Generate (without the proof, which the CLI runs) and import the module for ``sizes``."""
    network = spec.network(",".join(map(str, sizes)))
    name = codegen.default_module_name(network)
    path = folder / f"{name}.py"
    path.write_text(codegen.render(derive(network), name), encoding="utf-8")
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


# --- contenders --------------------------------------------------------------


def seed_backprop(params, x, y):
    """The seed's backprop (lists of z and activations, np.dot), with tanh and the l2 loss."""
    ws = [w for w, _ in params]
    bs = [b for _, b in params]
    zs, activations = [], [x]
    for w, b in zip(ws, bs, strict=False):
        x = np.dot(x, w) + b
        zs.append(x)
        x = np.tanh(x)
        activations.append(x)
    deltas, w_grad, b_grad = [], [], []
    for i in range(len(zs)):
        if i == 0:
            delta = 2 * (activations[-1] - y) * (1 - np.tanh(zs[-1]) ** 2)
        else:
            delta = np.dot(deltas[i - 1], ws[-i].T) * (1 - np.tanh(zs[-i - 1]) ** 2)
        deltas.append(delta)
        b_grad.append(np.sum(delta, axis=0))
        w_grad.append(np.dot(activations[-2 - i].T, delta))
    return w_grad, b_grad


def matmul_floor(params, x, y) -> Callable[[], None]:
    """Only the products backprop must do, into preallocated outputs:
    z_l = a_{l-1} W_l, ∂L/∂W_l = a_{l-1}ᵀ δ_l, and δ_{l-1} = δ_l W_lᵀ for l ≥ 2."""
    m = x.shape[0]
    acts = [x] + [np.full((m, w.shape[1]), 0.5, x.dtype) for w, _ in params]
    zs = [np.empty_like(a) for a in acts[1:]]
    deltas = [np.full_like(a, 0.5) for a in acts[1:]]
    grads = [np.empty_like(w) for w, _ in params]
    depth = len(params)

    def run() -> None:
        for k in range(depth):
            np.dot(acts[k], params[k][0], zs[k])
        for k in range(depth - 1, -1, -1):
            np.dot(acts[k].T, deltas[k], grads[k])
            if k > 0:
                np.dot(deltas[k], params[k][0].T, deltas[k - 1])

    return run


def torch_contender(params, x, y):
    try:
        import torch
    except ImportError:
        return None
    ps = [torch.tensor(a, requires_grad=True) for pair in params for a in pair]
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def run():
        h = tx
        for k in range(0, len(ps), 2):
            h = torch.tanh(h @ ps[k] + ps[k + 1])
        value = ((h - ty) ** 2).sum()
        return value.item(), torch.autograd.grad(value, ps)

    return run


def jax_contender(params, x, y):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    if x.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)

    def loss(ps, x, y):
        h = x
        for w, b in ps:
            h = jnp.tanh(h @ w + b)
        return jnp.sum((h - y) ** 2)

    step = jax.jit(jax.value_and_grad(loss))
    ps = [(jnp.asarray(w), jnp.asarray(b)) for w, b in params]
    jx, jy = jnp.asarray(x), jnp.asarray(y)

    def run():
        return jax.block_until_ready(step(ps, jx, jy))

    return run


# --- measurement -------------------------------------------------------------


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class LoadWatch:
    """Measures how much CPU other processes used while we ran."""

    def __init__(self) -> None:
        self.start = _cpu_jiffies()
        self.own = os.times()
        self.wall = time.monotonic()

    def foreign_cores(self) -> float | None:
        """Average number of cores busy with other processes since the start."""
        end = _cpu_jiffies()
        if self.start is None or end is None:
            return None
        tick = os.sysconf("SC_CLK_TCK")
        busy = (end[0] - self.start[0]) / tick
        own = os.times()
        mine = (own.user - self.own.user) + (own.system - self.own.system)
        return max(0.0, busy - mine) / max(1e-9, time.monotonic() - self.wall)


def calibrate(fn: Callable[[], object], target: float) -> int:
    """Calls per sample so that one sample takes about ``target`` seconds."""
    fn()
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - t
        if elapsed >= target / 4 or n >= 1 << 20:
            return max(1, int(n * target / max(elapsed, 1e-9)))
        n *= 4


def measure(
    contenders: dict[str, Callable[[], object]], rounds: int, sample: float
) -> dict[str, float]:
    """Median seconds per call of each contender, timed interleaved over ``rounds``."""
    counts = {name: calibrate(fn, sample) for name, fn in contenders.items()}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn, n = contenders[name], counts[name]
            t = time.perf_counter()
            for _ in range(n):
                fn()
            times[name].append((time.perf_counter() - t) / n)
    return {name: statistics.median(ts) for name, ts in times.items()}


def check_same(module, params, x, y) -> None:
    """The generated gradients equal the seed-style ones (so both time the same work)."""
    _, grads = module.backprop(params, x, y)
    w_grad, b_grad = seed_backprop(params, x, y)
    tol = 1e-3 if x.dtype == np.float32 else 1e-9
    for (dw, db), sw, sb in zip(grads, reversed(w_grad), reversed(b_grad), strict=False):
        scale = max(1.0, float(np.abs(sw).max()))
        if not (
            np.allclose(dw, sw, atol=tol * scale, rtol=tol)
            and np.allclose(db.ravel(), sb, atol=tol * scale, rtol=tol)
        ):
            raise SystemExit("generated gradients differ from the seed-style ones; not timing")


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(
        f"{p.get('internal_api')} {p.get('version')} {p.get('architecture')}"
        f" x{p.get('num_threads')}"
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    )


def limit_threads(n: int) -> None:
    """Cap every thread pool (needs threadpoolctl for numpy's BLAS)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'}"
        f" intra_op_parallelism_threads={n}"
    )
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs", default="A,B,C,D,C32", help=f"comma list from {', '.join(CONFIGS)}"
    )
    parser.add_argument(
        "--rounds", type=int, default=15, help="interleaved rounds per config (median over them)"
    )
    parser.add_argument("--sample", type=float, default=0.05, help="seconds per timed sample")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        help="limit BLAS, PyTorch and XLA to this many threads "
        "(1 gives stable numbers on a shared machine)",
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        limit_threads(args.threads)

    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )
    print(f"# BLAS: {blas_info()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}")
    try:
        import torch

        print(f"# torch {torch.__version__} ({torch.get_num_threads()} threads)")
    except ImportError:
        pass
    try:
        import jax

        print(f"# jax {jax.__version__}")
    except ImportError:
        pass
    print(
        "# load average at start:",
        Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else "?",
    )

    columns = ["floor", "derive", "derive out=", "seed numpy", "torch", "jax"]
    rows = []
    watch = LoadWatch()
    with tempfile.TemporaryDirectory() as tmp:
        modules: dict[tuple[int, ...], object] = {}
        for key in args.configs.split(","):
            cfg = CONFIGS[key.strip()]
            if cfg.sizes not in modules:
                modules[cfg.sizes] = generate(cfg.sizes, Path(tmp))
            module = modules[cfg.sizes]
            rng = np.random.default_rng(1)
            params = module.init_params(seed=0, dtype=cfg.dtype)
            x = rng.standard_normal((cfg.batch, cfg.sizes[0])).astype(cfg.dtype)
            y = rng.uniform(-0.9, 0.9, (cfg.batch, cfg.sizes[-1])).astype(cfg.dtype)
            check_same(module, params, x, y)
            contenders: dict[str, Callable[[], object]] = {
                "floor": matmul_floor(params, x, y),
                "derive": lambda m=module, p=params, x=x, y=y: m.backprop(p, x, y),
                "seed numpy": lambda p=params, x=x, y=y: seed_backprop(p, x, y),
            }
            try:
                _, buffers = module.backprop(params, x, y)
                module.backprop(params, x, y, out=buffers)
                contenders["derive out="] = lambda m=module, p=params, x=x, y=y, o=buffers: (
                    m.backprop(p, x, y, out=o)
                )
            except TypeError:
                pass
            if not args.no_torch and (fn := torch_contender(params, x, y)) is not None:
                contenders["torch"] = fn
            if not args.no_jax and (fn := jax_contender(params, x, y)) is not None:
                contenders["jax"] = fn
            config_watch = LoadWatch()
            medians = measure(contenders, args.rounds, args.sample)
            foreign = config_watch.foreign_cores()
            rows.append((cfg, medians, foreign))
            print(
                f"# {cfg.name} done; other processes used {foreign:.2f} cores"
                if foreign is not None
                else f"# {cfg.name} done",
                flush=True,
            )

    present = [c for c in columns if any(c in m for _, m, _ in rows)]
    header = [
        "config",
        *[f"{c} µs" for c in present],
        "derive/floor",
        "derive/seed",
        "derive/torch",
        "derive/jax",
    ]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cfg, m, _ in rows:
        cells = [f"{cfg.name} {list(cfg.sizes)} m={cfg.batch} {np.dtype(cfg.dtype).name}"]
        cells += [f"{m[c] * 1e6:,.0f}" if c in m else "–" for c in present]
        for other in ("floor", "seed numpy", "torch", "jax"):
            cells.append(f"{m['derive'] / m[other]:.2f}" if other in m else "–")
        print("| " + " | ".join(cells) + " |")
    foreign = watch.foreign_cores()
    if foreign is not None and foreign > 0.1:
        print(
            f"\nWARNING: other processes kept {foreign:.2f} cores busy on average during the run; "
            "the numbers are not from a quiet machine.",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
