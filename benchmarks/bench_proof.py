"""Time the end-to-end proof per depth: the expanding check against the field one.

Run ``python benchmarks/bench_proof.py``.  Each (method, depth, activations)
runs in a fresh process (SymPy's cache starts cold, as in a CLI run) that
times ``proof.check_end_to_end`` alone, on widths 3, 2, 3, ... as the proof
uses them; ``--repeat`` runs give a median.  A run that exceeds ``--timeout``
is reported as "> T" and deeper depths of that method are not tried.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPTHS = (2, 3, 4, 5, 6, 8, 12, 20, 30)
MIXED = ("tanh", "relu", "gelu", "sigmoid", "softplus", "identity")

ONE_RUN = """
import sys, time
from derive import proof, spec
from derive.derivation import derive
method, depth, activation = sys.argv[1], int(sys.argv[2]), sys.argv[3]
derivation = derive(spec.network(",".join(["3"] * (depth + 1)), activation))
start = time.perf_counter()
check = proof.check_end_to_end(derivation, method=method)
seconds = time.perf_counter() - start
assert check.ok, check.detail
print(seconds)
"""


def activations(kind: str, depth: int) -> str:
    if kind == "tanh":
        return "tanh"
    return ",".join(MIXED[k % len(MIXED)] for k in range(depth))


def run_once(method: str, depth: int, kind: str, timeout: float) -> float | None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", ONE_RUN, method, str(depth), activations(kind, depth)]
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=True
        )
    except subprocess.TimeoutExpired:
        return None
    return float(done.stdout.strip().splitlines()[-1])


def load() -> float:
    """The 1-minute load average (other work on a shared machine slows everything)."""
    return os.getloadavg()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--depths", default=",".join(map(str, DEPTHS)))
    parser.add_argument("--methods", default="expand,field")
    args = parser.parse_args(argv)
    depths = [int(d) for d in args.depths.split(",")]
    methods = args.methods.split(",")
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
        f"load average {load():.1f} at start; median of {args.repeat} fresh process(es); "
        f"seconds in check_end_to_end, batch 2, widths 3,2,3,..."
    )
    header = [f"{m} ({k})" for m in methods for k in ("tanh", "mixed")]
    print("| depth | " + " | ".join(header) + " |")
    print("|---|" + "---|" * len(header))
    gave_up: set[tuple[str, str]] = set()
    for depth in depths:
        cells = []
        for method in methods:
            for kind in ("tanh", "mixed"):
                if (method, kind) in gave_up:
                    cells.append("not run")
                    continue
                times = []
                for _ in range(args.repeat):
                    seconds = run_once(method, depth, kind, args.timeout)
                    if seconds is None:
                        break
                    times.append(seconds)
                if len(times) < args.repeat:
                    gave_up.add((method, kind))
                    cells.append(f"> {args.timeout:.0f}")
                else:
                    cells.append(f"{statistics.median(times):.2f}")
        print(f"| {depth} | " + " | ".join(cells) + " |", flush=True)
    print(f"# load average {load():.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
