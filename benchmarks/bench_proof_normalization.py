"""Time the normalizations' exact proofs per kind and size, each in a fresh process.

Run ``python benchmarks/bench_proof_normalization.py``.  Each (kind, size) runs in
its own process (SymPy's cache cold, as in a CLI run) and times
``proof_normalization.check_normalization``: the derivation and simplification,
SymPy's diff of the independent forward, and both decisions; ``--repeat`` runs give
a median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ONE_RUN = """
import sys, time
from derive import normalization
from derive.proof_normalization import check_normalization
layer = {"layer": normalization.LAYER_NORM, "batch": normalization.BATCH_NORM}[sys.argv[1]]
size = (int(sys.argv[2]), int(sys.argv[3]))
start, cpu = time.perf_counter(), time.process_time()
check = check_normalization(layer, size)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
assert check.ok, check.detail
print(seconds, cpu)
"""


def one_run(kind: str, m: int, n: int) -> tuple[float, float]:
    """(wall, CPU) seconds of one proof; CPU time is the fairer number on a shared machine."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", ONE_RUN, kind, str(m), str(n)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=ROOT,  # python -c puts the working folder first on sys.path: this checkout's derive
    )
    wall, cpu = done.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print("| kind | m x n | proof, wall (s) | proof, CPU (s) |")
    print("|---|---|---|---|")
    for kind in ("layer", "batch"):
        for m, n in ((2, 3), (3, 2), (3, 4), (4, 3)):
            runs = [one_run(kind, m, n) for _ in range(args.repeat)]
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"| {kind} norm | {m} x {n} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
