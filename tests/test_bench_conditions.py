"""The benchmark harness records its conditions truthfully (no timing is asserted here)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "bench.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("bench", bench)  # dataclasses look their module up
_spec.loader.exec_module(bench)

STAT_BEFORE = "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0\ncpu1 50 0 50 400 0 0 0 0\n"
# 2 s at 100 ticks/s: cpu0 fully busy (200 ticks), cpu1 busy 50 ticks.
STAT_AFTER = (
    "cpu  300 0 150 950 0 0 0 0 0 0\ncpu0 200 0 100 400 0 0 0 0\ncpu1 100 0 50 550 0 0 0 0\n"
)


def test_foreign_load_subtracts_our_own_time_and_counts_only_watched_cores():
    before = bench.proc_stat_jiffies(STAT_BEFORE)
    after = bench.proc_stat_jiffies(STAT_AFTER)
    assert before["cpu0"] == (100, 500)
    # Machine: 250 busy ticks = 2.5 s busy over 2 s, of which 1.5 s were ours -> 0.5 core foreign.
    assert bench.foreign_cores(before, after, 1.5, 2.0, None, 100) == pytest.approx(0.5)
    # Pinned to cpu0: 2.0 s busy, 1.5 s ours -> 0.25 core; cpu1's load is not ours to count.
    assert bench.foreign_cores(before, after, 1.5, 2.0, {0}, 100) == pytest.approx(0.25)
    # All the busy time ours: nothing foreign (never negative).
    assert bench.foreign_cores(before, after, 3.0, 2.0, None, 100) == 0.0


def test_bad_core_list_is_refused():
    with pytest.raises(SystemExit, match="--pin"):
        bench.parse_cpus("x")
    with pytest.raises(SystemExit, match="allowed cores"):
        bench.parse_cpus(str(max(os.sched_getaffinity(0)) + 1000))


def test_cpu_model_and_blas_are_named():
    assert bench.cpu_model().strip() not in ("", "?")
    info = bench.blas_info()
    if bench.blas_pools():
        # the kernel threadpoolctl reports for numpy's OpenBLAS is printed with the table
        kernels = [p["architecture"] for p in bench.blas_pools() if p.get("architecture")]
        assert all(f"kernel={k}" in info for k in kernels)


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="needs two cores to tell pinned from not"
)
def test_pinning_reaches_threads_started_before_it():
    one = min(os.sched_getaffinity(0))
    script = textwrap.dedent(
        f"""
        import importlib.util, threading, time
        spec = importlib.util.spec_from_file_location("bench", {str(ROOT / "benchmarks" / "bench.py")!r})
        import sys; bench = importlib.util.module_from_spec(spec); sys.modules['bench'] = bench
        spec.loader.exec_module(bench)
        stop = threading.Event()
        worker = threading.Thread(target=stop.wait); worker.start()
        before = bench.thread_affinities()
        bench.pin_process({{{one}}})
        after = bench.thread_affinities()
        stop.set(); worker.join()
        print(before[0], sorted(before[1]), sorted(after[1]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split(maxsplit=1)
    threads, rest = int(out[0]), out[1]
    assert threads >= 2
    # before pinning the threads may use every core (negative control), after only the one
    assert rest.strip() == f"{sorted(os.sched_getaffinity(0))} {[one]}"


FAST = ("--no-torch", "--no-jax")


def _conditions(env_extra: dict[str, str], *flags: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in bench.KERNEL_VARIABLES}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--conditions-only", *FAST, *flags],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
    ).stdout


@pytest.mark.skipif(
    not bench.blas_pools() or "avx2" not in bench.cpu_model(),
    reason="needs threadpoolctl and a CPU for which OpenBLAS picks a newer kernel than Sandybridge",
)
def test_unset_coretype_drops_the_variables_for_that_command_and_openblas_picks_its_own():
    forced = {"OPENBLAS_CORETYPE": "Sandybridge", "OPENBLAS_L2_SIZE": "262144"}
    # negative control: with the variables set, the forced kernel runs and is reported
    kept = _conditions(forced)
    assert "kernel=Sandybridge" in kept and "OPENBLAS_CORETYPE=Sandybridge" in kept
    unset = _conditions(forced, "--unset-coretype")
    assert "OPENBLAS_CORETYPE=(unset)" in unset and "OPENBLAS_L2_SIZE=(unset)" in unset
    assert "kernel=" in unset and "kernel=Sandybridge" not in unset
