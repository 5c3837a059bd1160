"""Time the generator and the import of a generated module, as fresh processes.

Run ``python benchmarks/bench_generator.py``.  Each command is run
``--repeat`` times, interleaved, and the table shows medians of wall time
and the ratios the performance issue sets targets for:

* ``python -m derive --layers 20,50,10`` (with the proof) against
  ``python -c "import sympy"``: target ≤ 2.5×;
* depth 30 (``--layers 20,...,20``): target ≤ 10 s;
* ``import mlp_20_50_10`` against ``import numpy``: target ≤ 1.2×.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wall(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    py = sys.executable
    depth30 = ",".join(["20"] * 31)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        derive = [py, "-m", "derive", "--out", str(out), "--force", "--layers"]
        subprocess.run([*derive, "20,50,10"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([py, "-c", "import mlp_20_50_10"], cwd=out, check=True)  # writes the .pyc
        commands = {
            "python -c pass": ([py, "-c", "pass"], out),
            "import sympy": ([py, "-c", "import sympy"], out),
            "derive 20,50,10": ([*derive, "20,50,10"], ROOT),
            "derive depth 30": ([*derive, depth30], ROOT),
            "import numpy": ([py, "-c", "import numpy"], out),
            "import mlp_20_50_10": ([py, "-c", "import mlp_20_50_10"], out),
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, (cmd, cwd) in commands.items():
                times[name].append(wall(cmd, cwd))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, median of {args.repeat} runs")
    print("| command | median s |")
    print("|---|---|")
    for name, value in med.items():
        print(f"| {name} | {value:.3f} |")
    print()
    ratio = med["derive 20,50,10"] / med["import sympy"]
    print(f"derive 20,50,10 / import sympy = {ratio:.2f} (target ≤ 2.5)")
    print(f"derive depth 30 = {med['derive depth 30']:.2f} s (target ≤ 10)")
    module, numpy = med["import mlp_20_50_10"], med["import numpy"]
    print(f"import mlp_20_50_10 / import numpy = {module / numpy:.2f} (target ≤ 1.2)")
    base = med["python -c pass"]
    print(f"  the same without interpreter start-up: {(module - base) / (numpy - base):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
