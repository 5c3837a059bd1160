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
start = time.perf_counter()
check = check_normalization(layer, size)
seconds = time.perf_counter() - start
assert check.ok, check.detail
print(seconds)
"""


def one_run(kind: str, m: int, n: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", ONE_RUN, kind, str(m), str(n)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print("| kind | m x n | proof (s) |")
    print("|---|---|---|")
    for kind in ("layer", "batch"):
        for m, n in ((2, 3), (3, 2), (3, 4), (4, 3)):
            times = [one_run(kind, m, n) for _ in range(args.repeat)]
            print(f"| {kind} norm | {m} x {n} | {statistics.median(times):.2f} |")


if __name__ == "__main__":
    main()
