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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# derive (SymPy) is imported where a module is generated: --conditions-only never needs it


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


def load_baseline(folder: Path, sizes: tuple[int, ...]):
    """The module for ``sizes`` that ``folder`` holds (an older derive's), or None."""
    from derive import naming, spec

    name = naming.default_module_name(spec.network(",".join(map(str, sizes))))
    path = folder / f"{name}.py"
    if not path.exists():
        return None
    module_spec = importlib.util.spec_from_file_location(f"baseline_{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def generate(sizes: tuple[int, ...], folder: Path):
    """Generate (without the proof, which the CLI runs) and import the module for ``sizes``."""
    from derive import naming, spec
    from derive.backends.numpy import module as numpy_module
    from derive.derivation import derive

    network = spec.network(",".join(map(str, sizes)))
    name = naming.default_module_name(network)
    path = folder / f"{name}.py"
    path.write_text(numpy_module.render(derive(network), name), encoding="utf-8")
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


# --- conditions --------------------------------------------------------------


def proc_stat_jiffies(text: str) -> dict[str, tuple[int, int]]:
    """(busy, total) jiffies per line of /proc/stat: "cpu" for the machine, "cpu0", ... per core."""
    result = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or not fields[0].startswith("cpu"):
            continue
        values = [int(v) for v in fields[1:9]]
        idle = values[3] + values[4]  # idle + iowait
        result[fields[0]] = (sum(values) - idle, sum(values))
    return result


def _read_proc_stat() -> dict[str, tuple[int, int]] | None:
    try:
        return proc_stat_jiffies(Path("/proc/stat").read_text())
    except OSError:
        return None


def foreign_cores(
    before: dict[str, tuple[int, int]],
    after: dict[str, tuple[int, int]],
    own_seconds: float,
    wall_seconds: float,
    cpus: set[int] | None,
    tick: float,
) -> float:
    """Average number of the watched cores (all when ``cpus`` is None) kept busy by other processes.

    Busy time of the watched cores minus this process's own CPU time (all of
    it ran on them when the process is pinned to them), over the wall time.
    """
    keys = ["cpu"] if cpus is None else [f"cpu{c}" for c in sorted(cpus)]
    busy = sum(after[k][0] - before[k][0] for k in keys) / tick
    return max(0.0, busy - own_seconds) / max(wall_seconds, 1e-9)


class LoadWatch:
    """Measures how much CPU other processes used while we ran (from /proc/stat, not our own time)."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        self.cpus = cpus
        self.start = _read_proc_stat()
        self.own = os.times()
        self.wall = time.monotonic()
        self.loadavg = os.getloadavg()

    def foreign_cores(self) -> float | None:
        """Average number of watched cores busy with other processes since the start."""
        end = _read_proc_stat()
        if self.start is None or end is None:
            return None
        own = os.times()
        mine = (own.user - self.own.user) + (own.system - self.own.system)
        return foreign_cores(
            self.start,
            end,
            mine,
            time.monotonic() - self.wall,
            self.cpus,
            os.sysconf("SC_CLK_TCK"),
        )


def cpu_model() -> str:
    """The CPU's model name and its widest x86 vector extension, from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model, flags = "?", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "?":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    vector = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "")
    return f"{model} ({vector})" if vector else model


def thread_affinities() -> tuple[int, set[int]]:
    """How many threads this process has and the union of the cores they may run on."""
    tasks = Path("/proc/self/task")
    allowed: set[int] = set()
    count = 0
    for task in tasks.iterdir() if tasks.exists() else []:
        try:
            allowed |= os.sched_getaffinity(int(task.name))
        except OSError:
            continue  # the thread ended meanwhile
        count += 1
    return count, allowed


def pin_process(cpus: set[int]) -> None:
    """Restrict every existing thread, and through inheritance every later one, to ``cpus``."""
    for task in Path("/proc/self/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except OSError:
            continue
    os.sched_setaffinity(0, cpus)


def blas_pools() -> list[dict]:
    """threadpoolctl's view of the BLAS and OpenMP libraries loaded now (empty without it)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return threadpool_info()


def blas_info() -> str:
    """Library, version, kernel (core type) and thread count of every loaded BLAS and OpenMP pool."""
    pools = blas_pools()
    if not pools:
        return "threadpoolctl not installed (kernel and threads unknown)"
    return "; ".join(
        f"{p.get('internal_api')} {p.get('version')}"
        + (f" kernel={p['architecture']}" if p.get("architecture") else "")
        + f" threads={p.get('num_threads')} ({Path(p.get('filepath', '?')).name})"
        for p in pools
    )


def blas_environment() -> str:
    names = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
    return ", ".join(f"{n}={os.environ.get(n, '(unset)')}" for n in names)


def limit_threads(n: int, torch: bool = True) -> None:
    """Cap every library's threads to ``n``: XLA through XLA_FLAGS (before jax is imported),
    PyTorch through set_num_threads, then every BLAS/OpenMP pool loaded by then (numpy's and
    PyTorch's) through threadpoolctl."""
    if "jax" in sys.modules:
        raise SystemExit("limit_threads must run before jax is imported (XLA reads XLA_FLAGS once)")
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = (
        f"{flags} --xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'}"
        f" intra_op_parallelism_threads={n}"
    ).strip()
    if torch and importlib.util.find_spec("torch"):
        import torch as torch_module

        torch_module.set_num_threads(n)
        if n == 1:
            try:
                torch_module.set_num_interop_threads(1)
            except RuntimeError:  # only allowed before PyTorch's first parallel work
                pass
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)


# --- measurement -------------------------------------------------------------


CLOCKS = {
    # wall time: what a user waits for; also counts time spent waiting for a busy core
    "wall": time.perf_counter,
    # CPU time of all this process's threads: robust to other processes taking turns on
    # our core, but it adds up the work of every thread (fair only with one thread each)
    "cpu": time.process_time,
}


def calibrate(fn: Callable[[], object], target: float, clock: Callable[[], float]) -> int:
    """Calls per sample so that one sample takes about ``target`` seconds."""
    fn()
    n = 1
    while True:
        t = clock()
        for _ in range(n):
            fn()
        elapsed = clock() - t
        if elapsed >= target / 4 or n >= 1 << 20:
            return max(1, int(n * target / max(elapsed, 1e-9)))
        n *= 4


def measure(
    contenders: dict[str, Callable[[], object]],
    rounds: int,
    sample: float,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per call of each contender, timed interleaved over ``rounds``."""
    counts = {name: calibrate(fn, sample, clock) for name, fn in contenders.items()}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn, n = contenders[name], counts[name]
            t = clock()
            for _ in range(n):
                fn()
            times[name].append((clock() - t) / n)
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


SETUPS = {
    "default": [],
    "pinned": ["--pin", "{cpus}"],
    "default-unset": ["--unset-coretype"],
    "pinned-unset": ["--pin", "{cpus}", "--unset-coretype"],
}
KERNEL_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
WARN_FOREIGN_CORES = 0.1


def parse_cpus(text: str) -> set[int]:
    """ "0" or "0,1" or "0-3" -> a set of core numbers, each one this process may use."""
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        try:
            cpus |= set(range(int(low), int(high or low) + 1))
        except ValueError:
            raise SystemExit(
                f"bench.py: --pin {text!r}: expected core numbers like 0 or 0,1"
            ) from None
    if not cpus or not cpus <= os.sched_getaffinity(0):
        raise SystemExit(
            f"bench.py: --pin {text!r}: allowed cores are {sorted(os.sched_getaffinity(0))}"
        )
    return cpus


def run_setups(args: argparse.Namespace) -> int:
    """Run each named setup as a fresh process (kernel variables are read when numpy loads)."""
    common = ["--configs", args.configs, "--rounds", str(args.rounds), "--sample", str(args.sample)]
    common += ["--clock", args.clock]
    common += ["--no-torch"] * args.no_torch + ["--no-jax"] * args.no_jax
    for name in args.setups.split(","):
        if name not in SETUPS:
            raise SystemExit(
                f"bench.py: --setups: unknown setup {name!r}; known: {', '.join(SETUPS)}"
            )
        extra = [a.format(cpus=args.pin or "0") for a in SETUPS[name]]
        print(f"\n## setup {name}: bench.py {' '.join(common + extra)}", flush=True)
        code = subprocess.run([sys.executable, __file__, *common, *extra], check=False).returncode
        if code:
            return code
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs", default="A,B,C,D,C32", help=f"comma list from {', '.join(CONFIGS)}"
    )
    parser.add_argument(
        "--rounds", type=int, default=15, help="interleaved rounds per config (median over them)"
    )
    parser.add_argument("--sample", type=float, default=0.05, help="seconds per timed sample")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall time, or this process's CPU time (fair on a busy machine when every "
        "contender runs one thread, e.g. with --pin 0)",
    )
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        help="limit BLAS, PyTorch and XLA to this many threads (without pinning them)",
    )
    parser.add_argument(
        "--pin",
        metavar="CPUS",
        help="run every thread of every contender on these cores (e.g. 0 or 0,1) "
        "and limit each library to that many threads",
    )
    parser.add_argument(
        "--unset-coretype",
        action="store_true",
        help="run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from the environment, "
        "so that OpenBLAS picks its kernel for this CPU itself",
    )
    parser.add_argument(
        "--setups",
        help=f"run these setups one after the other, each in a fresh process: "
        f"comma list from {', '.join(SETUPS)} (pinned ones use --pin, default core 0)",
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        type=Path,
        help="also time the modules this folder holds (e.g. generated by an older derive, "
        "named as derive names them), interleaved with the rest: columns 'baseline' and "
        "'baseline out='",
    )
    parser.add_argument(
        "--conditions-only",
        action="store_true",
        help="print the conditions (CPU, BLAS kernel and threads, setup) and time nothing",
    )
    args = parser.parse_args(argv)
    if args.setups:
        return run_setups(args)
    if args.unset_coretype and any(v in os.environ for v in KERNEL_VARIABLES):
        # numpy already loaded OpenBLAS with these: start again without them, this command only.
        env = {k: v for k, v in os.environ.items() if k not in KERNEL_VARIABLES}
        os.execve(sys.executable, [sys.executable, __file__, *sys.argv[1:]], env)
    pinned = parse_cpus(args.pin) if args.pin else None
    threads = args.threads or (len(pinned) if pinned else None)
    if threads:
        limit_threads(threads, torch=not args.no_torch)
    torch_version = jax_version = None
    if not args.no_torch and importlib.util.find_spec("torch"):
        import torch

        torch_version = f"torch {torch.__version__} ({torch.get_num_threads()} intra-op threads)"
    if not args.no_jax and importlib.util.find_spec("jax"):
        import jax

        jax_version = f"jax {jax.__version__} (XLA_FLAGS={os.environ.get('XLA_FLAGS', '(unset)')})"
    if pinned:
        pin_process(pinned)

    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_model()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"
    )
    print(f"# BLAS: {blas_info()}")
    print(f"# environment: {blas_environment()}")
    for line in (torch_version, jax_version):
        if line:
            print(f"# {line}")
    if pinned:
        setup = (
            f"pinned: every thread on cores {sorted(pinned)}, each library at {threads} thread(s)"
        )
    elif threads:
        setup = f"not pinned, each library at {threads} thread(s)"
    else:
        setup = "library defaults, not pinned"
    setup += f"; {args.clock} clock"
    print(f"# setup: {setup}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    if args.conditions_only:
        return 0

    columns = [
        "floor",
        "derive",
        "derive out=",
        "baseline",
        "baseline out=",
        "seed numpy",
        "torch",
        "jax",
    ]
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
            base = load_baseline(args.baseline, cfg.sizes) if args.baseline else None
            if base is not None:
                check_same(base, params, x, y)
                _, base_grads = base.backprop(params, x, y)
                contenders["baseline"] = lambda m=base, p=params, x=x, y=y: m.backprop(p, x, y)
                contenders["baseline out="] = lambda m=base, p=params, x=x, y=y, o=base_grads: (
                    m.backprop(p, x, y, out=o)
                )
            if not args.no_torch and (fn := torch_contender(params, x, y)) is not None:
                contenders["torch"] = fn
            if not args.no_jax and (fn := jax_contender(params, x, y)) is not None:
                contenders["jax"] = fn
            on_cores, machine = LoadWatch(pinned), LoadWatch()
            medians = measure(contenders, args.rounds, args.sample, CLOCKS[args.clock])
            foreign, foreign_machine = on_cores.foreign_cores(), machine.foreign_cores()
            n_threads, allowed = thread_affinities()
            if pinned and not allowed <= pinned:
                raise SystemExit(f"a thread escaped the pinning: cores {sorted(allowed)}")
            rows.append((cfg, medians, foreign))
            print(
                f"# {cfg.name} done; other processes kept {_cores(foreign)} of our cores "
                f"and {_cores(foreign_machine)} of the machine's busy; "
                f"{n_threads} threads, on cores {sorted(allowed)}",
                flush=True,
            )
            if foreign is not None and foreign > WARN_FOREIGN_CORES:
                print(
                    f"WARNING: {cfg.name}: other processes kept {foreign:.2f} of the cores we ran "
                    "on busy; its numbers are not from a quiet machine.",
                    file=sys.stderr,
                    flush=True,
                )

    present = [c for c in columns if any(c in m for _, m, _ in rows)]
    header = [
        "config",
        *[f"{c} µs" for c in present],
        "derive/floor",
        *(["out=/floor", "baseline/floor", "baseline out=/floor"] if args.baseline else []),
        "derive/seed",
        "derive/torch",
        "derive/jax",
        "foreign load",
    ]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cfg, m, foreign in rows:
        cells = [f"{cfg.name} {list(cfg.sizes)} m={cfg.batch} {np.dtype(cfg.dtype).name}"]
        cells += [f"{m[c] * 1e6:,.0f}" if c in m else "–" for c in present]
        cells.append(f"{m['derive'] / m['floor']:.2f}")
        if args.baseline:
            for mine in ("derive out=", "baseline", "baseline out="):
                cells.append(f"{m[mine] / m['floor']:.2f}" if mine in m else "–")
        for other in ("seed numpy", "torch", "jax"):
            cells.append(f"{m['derive'] / m[other]:.2f}" if other in m else "–")
        cells.append(_cores(foreign))
        print("| " + " | ".join(cells) + " |")
    foreign = watch.foreign_cores()
    print(
        f"\n# {setup}; BLAS {blas_info()}; load average at end {os.getloadavg()[0]:.2f}; "
        f"other processes used {_cores(foreign)} of the machine's cores over the whole run"
    )
    if foreign is not None and foreign > WARN_FOREIGN_CORES:
        print(
            f"WARNING: other processes kept {foreign:.2f} cores busy on average during the run; "
            "the numbers are not from a quiet machine.",
            file=sys.stderr,
        )
    return 0


def _cores(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f} cores"


if __name__ == "__main__":
    sys.exit(main())
