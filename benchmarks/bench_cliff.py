"""The deep-network cliff: a plain call that page-faults its gradients back in every time.

Run ``python benchmarks/bench_cliff.py``.  It generates modules for a width-50
network of several depths, runs the shallower ones first in the same process
(as ``bench.py`` does with several configs), then times the depth-64, batch-1
plain call and the ``out=`` call interleaved, with the minor page faults and
the system time per call (from ``getrusage``).  ``--mallopt`` sets glibc's
trim threshold from inside the process first (what ``MALLOC_TRIM_THRESHOLD_``
does from the environment), to show the cause and the remedy.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from derive import naming, spec
from derive.backends.numpy import module as numpy_module
from derive.derivation import derive

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3


def generate(sizes: tuple[int, ...], folder: Path):
    network = spec.network(",".join(map(str, sizes)))
    name = naming.default_module_name(network)
    path = folder / f"{name}.py"
    path.write_text(numpy_module.render(derive(network), name), encoding="utf-8")
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def one_block(params):
    """Fresh gradient arrays shaped like ``params``, all views of one new buffer: the remedy
    the generated module could adopt (glibc serves a freed large block again without faults)."""
    buffer = np.empty(sum(w.size + b.size for w, b in params), params[0][0].dtype)
    grads, start = [], 0
    for w, b in params:
        dw = buffer[start : start + w.size].reshape(w.shape)
        start += w.size
        db = buffer[start : start + b.size].reshape(b.shape)
        start += b.size
        grads.append((dw, db))
    return grads


def per_call(fn, calls: int) -> tuple[float, float, float, float]:
    """(seconds, CPU seconds, minor faults, system seconds) per call, over ``calls`` calls.

    CPU time is reported beside wall time because on a shared machine the
    wall time also counts the time spent waiting for a core."""
    before, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed, after = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return (
        elapsed / calls,
        cpu / calls,
        (after.ru_minflt - before.ru_minflt) / calls,
        (after.ru_stime - before.ru_stime) / calls,
    )


def allocation_pattern(params, calls: int, rounds: int) -> None:
    """The plain call's allocation pattern alone: fresh gradient arrays, written, then freed.

    Separate arrays per layer (what the generated module returns) against one
    buffer cut into views; no backprop, so the faults are the allocator's alone.
    """

    def separate():
        return [(np.empty_like(w), np.empty_like(b)) for w, b in params]

    print("| allocation | minor faults per call | system µs per call |")
    print("|---|---|---|")
    for name, make in (("separate arrays", separate), ("one block", lambda: one_block(params))):
        rows = []
        for _ in range(rounds):
            rows.append(per_call(lambda make=make: [g.fill(1.0) for p in make() for g in p], calls))
        print(
            f"| {name} | {statistics.median(r[2] for r in rows):.0f} "
            f"| {statistics.median(r[3] for r in rows) * 1e6:,.0f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument("--before", default="2,8,16,32", help="depths run first (empty: none)")
    parser.add_argument("--before-batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument(
        "--mallopt", type=int, metavar="BYTES", help="set M_TRIM_THRESHOLD to BYTES first"
    )
    parser.add_argument(
        "--calls-to-time",
        default="plain,out=",
        help="comma list from: plain, out=, block (one freed 1.25 MiB block raises glibc's "
        "thresholds for the whole process, so time it apart from plain)",
    )
    parser.add_argument(
        "--pattern-only",
        action="store_true",
        help="time only the allocation pattern of the plain call's gradients (numpy, no module)",
    )
    args = parser.parse_args(argv)
    if args.pattern_only:
        if args.mallopt is not None:
            ctypes.CDLL("libc.so.6").mallopt(M_TRIM_THRESHOLD, args.mallopt)
        params = [(np.empty((args.width, args.width)), np.empty((1, args.width)))] * args.depth
        allocation_pattern(params, args.calls, args.rounds)
        return 0
    if args.mallopt is not None:
        libc = ctypes.CDLL("libc.so.6")
        if not libc.mallopt(M_TRIM_THRESHOLD, args.mallopt):
            raise SystemExit("mallopt failed")
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        for depth in [int(d) for d in args.before.split(",") if d]:
            sizes = (args.width,) * (depth + 1)
            module = generate(sizes, Path(tmp))
            params = module.init_params(seed=0)
            x = rng.standard_normal((args.before_batch, args.width))
            y = rng.uniform(-0.9, 0.9, (args.before_batch, args.width))
            for _ in range(20):
                module.backprop(params, x, y)
        module = generate((args.width,) * (args.depth + 1), Path(tmp))
    params = module.init_params(seed=0)
    x = rng.standard_normal((1, args.width))
    y = rng.uniform(-0.9, 0.9, (1, args.width))
    _, out = module.backprop(params, x, y)
    known = {
        "plain": lambda: module.backprop(params, x, y),
        "out=": lambda: module.backprop(params, x, y, out=out),
        "block": lambda: module.backprop(params, x, y, out=one_block(params)),
    }
    contenders = {name: known[name] for name in args.calls_to_time.split(",")}
    samples: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in contenders}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            samples[name].append(per_call(fn, args.calls))
    grad_bytes = sum(w.nbytes + b.nbytes for w, b in params)
    print(
        f"# depth {args.depth}, width {args.width}, m=1, after depths {args.before or '(none)'} "
        f"at m={args.before_batch}; gradients {grad_bytes / 2**20:.2f} MiB; "
        f"mallopt M_TRIM_THRESHOLD={args.mallopt}"
    )
    print("| call | wall µs | CPU µs | minor faults | system µs |")
    print("|---|---|---|---|---|")
    for name, rows in samples.items():
        t, cpu, faults, sys_t = (statistics.median(col) for col in zip(*rows, strict=True))
        print(f"| {name} | {t * 1e6:,.0f} | {cpu * 1e6:,.0f} | {faults:.0f} | {sys_t * 1e6:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
