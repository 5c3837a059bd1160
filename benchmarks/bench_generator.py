"""Time the generator and the import of a generated module, as fresh processes.

Run ``python benchmarks/bench_generator.py``.  Each command is run
``--repeat`` times, interleaved, and the table shows medians of wall time
and the ratios the performance issue sets targets for:

* ``python -m derive --layers 20,50,10`` (with the proof) against
  ``python -c "import sympy"``: target ≤ 2.5×;
* depth 30 (``--layers 20,...,20``): target ≤ 10 s;
* ``import mlp_20_50_10`` against ``import numpy``: target ≤ 1.2×.

Every command runs with a bytecode cache, as an installed package does (pip compiles
``.pyc`` files; a checkout writes ``__pycache__`` on its first run): the children get
``PYTHONPYCACHEPREFIX`` in the temporary folder and no ``PYTHONDONTWRITEBYTECODE``, and
each command runs once untimed first.  ``--no-bytecode-cache`` keeps the environment
as it is (where ``PYTHONDONTWRITEBYTECODE=1`` is set, derive is compiled on every run
while SymPy's ``.pyc`` files came with its installation).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wall(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system, the child's) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return seconds, cpu


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores from /proc/stat (steal counts as busy)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        type=Path,
        help="also run 'python -m derive --layers 20,50,10' from this source tree (e.g. an "
        "older commit's, from git worktree or git archive), interleaved with the rest",
    )
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="run the commands in this environment as it is, without a bytecode cache of "
        "their own (see the module's docstring)",
    )
    args = parser.parse_args(argv)
    py = sys.executable
    depth30 = ",".join(["20"] * 31)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        env = dict(os.environ)
        if not args.no_bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        bytecode = (
            f"PYTHONDONTWRITEBYTECODE={env.get('PYTHONDONTWRITEBYTECODE', '')!r}"
            if args.no_bytecode_cache
            else "a bytecode cache (PYTHONPYCACHEPREFIX, warmed by one untimed run)"
        )
        derive = [py, "-m", "derive", "--out", str(out), "--force", "--layers"]
        subprocess.run(
            [*derive, "20,50,10"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
        )
        commands = {
            "python -c pass": ([py, "-c", "pass"], out),
            "import sympy": ([py, "-c", "import sympy"], out),
            "derive 20,50,10": ([*derive, "20,50,10"], ROOT),
            "derive depth 30": ([*derive, depth30], ROOT),
            **(
                {"baseline derive 20,50,10": ([*derive, "20,50,10"], args.baseline.resolve())}
                if args.baseline
                else {}
            ),
            "import numpy": ([py, "-c", "import numpy"], out),
            "import mlp_20_50_10": ([py, "-c", "import mlp_20_50_10"], out),
        }
        for cmd, cwd in commands.values():  # writes the bytecode caches (and the .pyc files)
            subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        load_start = os.getloadavg()[0]
        busy0, total0 = busy_jiffies()
        ours0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(args.repeat):
            for name, (cmd, cwd) in commands.items():
                seconds, cpu = wall(cmd, cwd, env)
                times[name].append(seconds)
                cpus[name].append(cpu)
        busy1, total1 = busy_jiffies()
        ours1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = ours1.ru_utime - ours0.ru_utime + ours1.ru_stime - ours0.ru_stime
    ticks = os.sysconf("SC_CLK_TCK")
    cores = os.cpu_count() or 1
    # cores other processes kept busy: all busy time minus our children's, over the wall time
    foreign = ((busy1 - busy0) / ticks - ours) / ((total1 - total0) / ticks / cores)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    cpu_med = {name: statistics.median(ts) for name, ts in cpus.items()}
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, median of {args.repeat} "
        f"interleaved runs; load average {load_start:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at end; other processes kept {foreign:.2f} of {cores} "
        f"cores busy; {bytecode}"
    )
    print("| command | median wall s | median CPU s |")
    print("|---|---|---|")
    for name, value in med.items():
        print(f"| {name} | {value:.3f} | {cpu_med[name]:.3f} |")
    print()
    ratio = med["derive 20,50,10"] / med["import sympy"]
    pairs = [d / s for d, s in zip(times["derive 20,50,10"], times["import sympy"], strict=True)]
    cpu_ratio = cpu_med["derive 20,50,10"] / cpu_med["import sympy"]
    print(
        f"derive 20,50,10 / import sympy = {ratio:.2f} wall (per round: "
        f"{min(pairs):.2f}–{max(pairs):.2f}), {cpu_ratio:.2f} CPU (target ≤ 2.5)"
    )
    if args.baseline:
        base = "baseline derive 20,50,10"
        print(
            f"baseline derive 20,50,10 / import sympy = {med[base] / med['import sympy']:.2f} "
            f"wall, {cpu_med[base] / cpu_med['import sympy']:.2f} CPU"
        )
    if foreign > 0.1:
        print(
            f"WARNING: other processes kept {foreign:.2f} cores busy: the wall times are "
            "not from a quiet machine (the CPU-time ratio is the fairer one)"
        )
    print(f"derive depth 30 = {med['derive depth 30']:.2f} s (target ≤ 10)")
    module, numpy = med["import mlp_20_50_10"], med["import numpy"]
    print(f"import mlp_20_50_10 / import numpy = {module / numpy:.2f} (target ≤ 1.2)")
    base = med["python -c pass"]
    print(f"  the same without interpreter start-up: {(module - base) / (numpy - base):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
