"""The examples run and check themselves (each exits 1 if its own check fails)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_dask_lbfgs_on_a_local_cluster():
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    pytest.importorskip("scipy", reason="scipy is not installed")
    # one L-BFGS iteration: the loss per row falls 4.08 -> 1.68, the example's check is "lower"
    result = run("dask_lbfgs.py", "--rows", "4000", "--chunk", "2000", "--maxiter", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "relative gradient gap" in result.stdout
    assert "on 2 workers" in result.stdout


@pytest.mark.slow
def test_torch_ddp_gives_the_one_process_trajectory():
    pytest.importorskip("torch.distributed", reason="torch is not installed")
    result = run("torch_ddp_allreduce.py", "--steps", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 processes vs one, 5 SGD steps" in result.stdout
